//! The scripted SMTP peer every MTA of the truth set relays to: it answers
//! each recipient as its case says ([`super::cases::Act`]) and stores the
//! bounces sent to `bounces@sender.test` in a maildir. Also the small SMTP
//! client that submits the test messages to an MTA.

use super::cases::{Act, Case, CASES};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The address every test message is sent from; its bounces land in the maildir.
pub const SENDER: &str = "bounces@sender.test";

/// The case a recipient stands for: the last dot-separated part of its local
/// part is the case id (`ann.t001@peer.test`).
pub fn case_of(address: &str) -> Option<&'static Case> {
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    let id = local.rsplit('.').next()?;
    CASES.iter().find(|c| c.id == id)
}

/// An SMTP reply from a case table entry: lines separated by `\n`, the code
/// (and enhanced code, when the first line has one) repeated on each line,
/// `-` after the code on all but the last (RFC 5321 section 4.2.1).
pub fn render_reply(reply: &str, rcpt: &str) -> String {
    let reply = reply
        .replace("rcpt@peer.test", rcpt)
        .replace("rcpt@yahoo.com", rcpt);
    let lines: Vec<&str> = reply.split('\n').collect();
    let first = lines[0];
    let code = &first[..3];
    let enhanced = first[4..]
        .split_whitespace()
        .next()
        .filter(|w| w.split('.').count() == 3 && w.starts_with(['2', '4', '5']))
        .map(|w| format!("{w} "));
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        let text = if i == 0 {
            first[4..].to_string()
        } else {
            format!("{}{line}", enhanced.as_deref().unwrap_or(""))
        };
        out.push_str(&format!("{code}{sep}{text}\r\n"));
    }
    out
}

pub struct Peer {
    pub port: u16,
    pub maildir: PathBuf,
}

impl Peer {
    /// Listens on 127.0.0.1 (a port of its own) until the runtime ends.
    pub async fn start(maildir: &Path) -> std::io::Result<Peer> {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub))?;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let dir = Arc::new(maildir.to_path_buf());
        let counter = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let dir = dir.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    // a session that breaks is the MTA's business: it retries
                    let _ = session(stream, &dir, &counter).await;
                });
            }
        });
        Ok(Peer {
            port,
            maildir: maildir.to_path_buf(),
        })
    }
}

fn address_in(arg: &str) -> String {
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_string(),
        _ => String::new(),
    }
}

async fn session(stream: TcpStream, dir: &Path, counter: &AtomicU64) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write
        .write_all(b"220 peer.test ESMTP scripted peer\r\n")
        .await?;
    let mut accepted = 0usize;
    let mut sink = false;
    let mut data_reply: Option<(String, String)> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-peer.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 52428800\r\n".into(),
            "HELO" => "250 peer.test\r\n".into(),
            "MAIL" => {
                accepted = 0;
                sink = false;
                data_reply = None;
                "250 2.1.0 Ok\r\n".into()
            }
            "RCPT" => {
                let rcpt = address_in(&text);
                if rcpt.eq_ignore_ascii_case(SENDER) {
                    sink = true;
                    accepted += 1;
                    "250 2.1.5 Ok\r\n".into()
                } else {
                    match case_of(&rcpt).map(|c| c.act) {
                        Some(Act::Rcpt(r) | Act::Temp(r)) => {
                            let out = render_reply(r, &rcpt);
                            if out.starts_with("421") {
                                write.write_all(out.as_bytes()).await?;
                                return Ok(());
                            }
                            out
                        }
                        Some(Act::Data(r)) => {
                            accepted += 1;
                            data_reply = Some((r.to_string(), rcpt));
                            "250 2.1.5 Ok\r\n".into()
                        }
                        Some(_) => {
                            accepted += 1;
                            "250 2.1.5 Ok\r\n".into()
                        }
                        None => "550 5.1.1 not a case of the truth set\r\n".into(),
                    }
                }
            }
            "DATA" if accepted == 0 => "554 5.5.1 Error: no valid recipients\r\n".into(),
            "DATA" => {
                write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut message = Vec::new();
                loop {
                    line.clear();
                    if read.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let body = if line.starts_with(b"..") {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    message.extend_from_slice(body);
                }
                if let Some((r, rcpt)) = data_reply.take() {
                    render_reply(&r, &rcpt)
                } else {
                    if sink {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        let name = format!("{}.{n}.peer", std::process::id());
                        let tmp = dir.join("tmp").join(&name);
                        std::fs::write(&tmp, &message)?;
                        std::fs::rename(&tmp, dir.join("new").join(&name))?;
                    }
                    "250 2.0.0 Ok: queued\r\n".into()
                }
            }
            "RSET" => {
                accepted = 0;
                sink = false;
                data_reply = None;
                "250 2.0.0 Ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Error: command not recognized\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// Reads one (possibly multi-line) SMTP reply; returns its code and text.
async fn read_reply(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<(u16, String)> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed after {all:?}"),
            ));
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Ok((code, all));
        }
    }
}

/// Submits one message to an MTA's SMTP port, the way a sending application does.
pub async fn submit(
    port: u16,
    rcpts: &[String],
    message: &[u8],
    smtputf8: bool,
) -> Result<(), String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect to {port}: {e}"))?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let expect = |got: (u16, String), want: u16, what: &str| {
        if got.0 / 100 == want / 100 {
            Ok(())
        } else {
            Err(format!("{what}: {}", got.1.trim_end()))
        }
    };
    let io = |e: std::io::Error| e.to_string();
    expect(read_reply(&mut read).await.map_err(io)?, 220, "greeting")?;
    write
        .write_all(b"EHLO client.sender.test\r\n")
        .await
        .map_err(io)?;
    expect(read_reply(&mut read).await.map_err(io)?, 250, "EHLO")?;
    let params = if smtputf8 {
        " BODY=8BITMIME SMTPUTF8"
    } else {
        " BODY=8BITMIME"
    };
    write
        .write_all(format!("MAIL FROM:<{SENDER}>{params}\r\n").as_bytes())
        .await
        .map_err(io)?;
    expect(read_reply(&mut read).await.map_err(io)?, 250, "MAIL")?;
    for r in rcpts {
        write
            .write_all(format!("RCPT TO:<{r}>\r\n").as_bytes())
            .await
            .map_err(io)?;
        expect(
            read_reply(&mut read).await.map_err(io)?,
            250,
            &format!("RCPT {r}"),
        )?;
    }
    write.write_all(b"DATA\r\n").await.map_err(io)?;
    expect(read_reply(&mut read).await.map_err(io)?, 354, "DATA")?;
    let mut data = Vec::with_capacity(message.len() + 64);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    write.write_all(&data).await.map_err(io)?;
    expect(read_reply(&mut read).await.map_err(io)?, 250, "end of DATA")?;
    write.write_all(b"QUIT\r\n").await.map_err(io)?;
    let _ = read_reply(&mut read).await;
    Ok(())
}

/// The bounces in a maildir's `new/`, by file name.
pub fn stored(maildir: &Path) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    if let Ok(dir) = std::fs::read_dir(maildir.join("new")) {
        for e in dir.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                out.insert(e.file_name().to_string_lossy().into_owned(), bytes);
            }
        }
    }
    out
}
