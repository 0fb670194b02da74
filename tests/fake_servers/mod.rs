//! Small IMAP and POP3 servers that misbehave on purpose, for what a real
//! Dovecot never does: a UIDL listed twice, a UIDL reused after a delete,
//! a message sent at one byte a second or never ending, unsolicited huge
//! responses. Plain TCP on 127.0.0.1 (`tls = "none"` is allowed on
//! loopback). Every DELE / expunge is checked against PostgreSQL at the
//! moment it arrives: acknowledging a message that is not committed in
//! intake is recorded as a violation.

#![allow(dead_code)] // each test crate uses a different subset

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the server sends one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    /// All at once.
    Normal,
    /// One byte every `Duration`.
    Dribble(Duration),
    /// Lines forever, never the end.
    Endless,
    /// `-ERR` to RETR.
    Refuse,
}

#[derive(Debug, Clone)]
pub struct FakeMessage {
    pub uid: String,
    pub body: Vec<u8>,
    pub send: Send,
}

impl FakeMessage {
    pub fn new(uid: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            uid: uid.into(),
            body: body.into(),
            send: Send::Normal,
        }
    }

    pub fn sent(mut self, send: Send) -> Self {
        self.send = send;
        self
    }
}

/// What the server holds and what it saw.
#[derive(Debug, Default)]
pub struct MailboxState {
    pub messages: Vec<FakeMessage>,
    /// Commands in arrival order (`RETR 2`, `DELE 1`, `QUIT`...).
    pub commands: Vec<String>,
    /// Acknowledgements of messages not committed in intake at that moment.
    pub violations: Vec<String>,
    /// Sessions opened.
    pub sessions: usize,
}

#[derive(Clone)]
pub struct FakeServer {
    pub port: u16,
    pub state: Arc<Mutex<MailboxState>>,
}

impl FakeServer {
    pub fn state(&self) -> std::sync::MutexGuard<'_, MailboxState> {
        self.state.lock().expect("fake server state")
    }

    pub fn set_messages(&self, messages: Vec<FakeMessage>) {
        self.state().messages = messages;
    }

    pub fn commands(&self) -> Vec<String> {
        self.state().commands.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    pub fn remaining(&self) -> Vec<String> {
        self.state()
            .messages
            .iter()
            .map(|m| m.uid.clone())
            .collect()
    }
}

async fn committed(pool: &PgPool, body: &[u8]) -> bool {
    let hash: Vec<u8> = Sha256::digest(body).to_vec();
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM intake WHERE content_hash = $1")
        .bind(hash)
        .fetch_one(pool)
        .await
        .is_ok_and(|n| n > 0)
}

async fn write(out: &mut tokio::net::tcp::OwnedWriteHalf, bytes: &[u8]) -> bool {
    out.write_all(bytes).await.is_ok()
}

/// Sends `data` as `send` says; false when the client went away.
async fn send_body(out: &mut tokio::net::tcp::OwnedWriteHalf, data: &[u8], send: &Send) -> bool {
    match send {
        Send::Normal | Send::Refuse => write(out, data).await,
        Send::Dribble(every) => {
            for b in data {
                if !write(out, std::slice::from_ref(b)).await {
                    return false;
                }
                tokio::time::sleep(*every).await;
            }
            true
        }
        Send::Endless => loop {
            if !write(out, b"X-Padding: endless endless endless endless\r\n").await {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        },
    }
}

/// POP3 dot-stuffing with CRLF line ends.
fn stuffed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A POP3 server over `messages`; `pool` checks each DELE.
pub async fn pop3(pool: PgPool, messages: Vec<FakeMessage>) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = FakeServer {
        port,
        state: Arc::new(Mutex::new(MailboxState {
            messages,
            ..Default::default()
        })),
    };
    let s = server.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(pop3_session(stream, s.clone(), pool.clone()));
        }
    });
    server
}

async fn pop3_session(stream: TcpStream, server: FakeServer, pool: PgPool) {
    let (read, mut out) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    // The session's view: numbers fixed at its start, deletions at QUIT.
    let listing: Vec<FakeMessage> = {
        let mut st = server.state();
        st.sessions += 1;
        st.messages.clone()
    };
    let mut deleted: Vec<usize> = Vec::new();
    if !write(&mut out, b"+OK fake POP3 ready\r\n").await {
        return;
    }
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("").to_ascii_uppercase();
        let arg: Option<usize> = words.next().and_then(|w| w.parse().ok());
        if cmd != "PASS" {
            server.state().commands.push(line.clone());
        }
        let msg = |n: Option<usize>| {
            n.and_then(|n| n.checked_sub(1))
                .and_then(|i| listing.get(i))
        };
        let ok = match cmd.as_str() {
            "USER" | "PASS" | "NOOP" => write(&mut out, b"+OK\r\n").await,
            "UIDL" => {
                let mut text = b"+OK\r\n".to_vec();
                for (i, m) in listing.iter().enumerate() {
                    if !deleted.contains(&i) {
                        text.extend_from_slice(format!("{} {}\r\n", i + 1, m.uid).as_bytes());
                    }
                }
                text.extend_from_slice(b".\r\n");
                write(&mut out, &text).await
            }
            "LIST" => match msg(arg) {
                Some(m) => {
                    let n = arg.unwrap_or(0);
                    write(&mut out, format!("+OK {n} {}\r\n", m.body.len()).as_bytes()).await
                }
                None => write(&mut out, b"-ERR no such message\r\n").await,
            },
            "RETR" => match msg(arg) {
                Some(m) if m.send == Send::Refuse => {
                    write(&mut out, b"-ERR cannot read this one\r\n").await
                }
                Some(m) => {
                    write(&mut out, b"+OK message follows\r\n").await
                        && send_body(&mut out, &stuffed(&m.body), &m.send).await
                        && write(&mut out, b".\r\n").await
                }
                None => write(&mut out, b"-ERR no such message\r\n").await,
            },
            "DELE" => match (arg, msg(arg)) {
                (Some(n), Some(m)) => {
                    if !committed(&pool, &m.body).await {
                        server
                            .state()
                            .violations
                            .push(format!("DELE {n} ({}) before commit", m.uid));
                    }
                    deleted.push(n - 1);
                    write(&mut out, b"+OK\r\n").await
                }
                _ => write(&mut out, b"-ERR no such message\r\n").await,
            },
            "QUIT" => {
                let gone: Vec<FakeMessage> = deleted.iter().map(|&i| listing[i].clone()).collect();
                {
                    let mut st = server.state();
                    // Remove exactly the messages this session deleted (by
                    // identity: uid and content), once each.
                    for g in gone {
                        if let Some(pos) = st
                            .messages
                            .iter()
                            .position(|m| m.uid == g.uid && m.body == g.body)
                        {
                            st.messages.remove(pos);
                        }
                    }
                }
                let _ = write(&mut out, b"+OK bye\r\n").await;
                return;
            }
            _ => write(&mut out, b"-ERR unknown command\r\n").await,
        };
        if !ok {
            return;
        }
    }
}

/// An IMAP server over `messages` (UIDs 1..=n, UIDVALIDITY 7). Before the
/// FETCH of each message it sends `unsolicited` untagged FETCH responses of
/// another UID, each with a literal of `unsolicited_size` bytes.
pub async fn imap(
    pool: PgPool,
    messages: Vec<FakeMessage>,
    unsolicited: usize,
    unsolicited_size: usize,
) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = FakeServer {
        port,
        state: Arc::new(Mutex::new(MailboxState {
            messages,
            ..Default::default()
        })),
    };
    let s = server.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(imap_session(
                stream,
                s.clone(),
                pool.clone(),
                unsolicited,
                unsolicited_size,
            ));
        }
    });
    server
}

async fn imap_session(
    stream: TcpStream,
    server: FakeServer,
    pool: PgPool,
    unsolicited: usize,
    unsolicited_size: usize,
) {
    let (read, mut out) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    server.state().sessions += 1;
    if !write(
        &mut out,
        b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] fake IMAP ready\r\n",
    )
    .await
    {
        return;
    }
    let junk = vec![b'j'; unsolicited_size];
    while let Ok(Some(line)) = lines.next_line().await {
        let (tag, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let upper = rest.to_ascii_uppercase();
        server.state().commands.push(if upper.starts_with("LOGIN") {
            "LOGIN".into()
        } else {
            rest.to_owned()
        });
        let messages = server.state().messages.clone();
        let uid_of = |i: usize| i + 1;
        let done = |text: &str| format!("{tag} OK {text} completed\r\n");
        let mut reply: Vec<u8> = Vec::new();
        if upper.starts_with("CAPABILITY") {
            reply.extend_from_slice(b"* CAPABILITY IMAP4rev1 UIDPLUS\r\n");
            reply.extend_from_slice(done("CAPABILITY").as_bytes());
        } else if upper.starts_with("LOGIN") || upper.starts_with("NOOP") {
            reply.extend_from_slice(done("").as_bytes());
        } else if upper.starts_with("SELECT") {
            reply.extend_from_slice(
                format!(
                    "* {} EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT {}] ok\r\n",
                    messages.len(),
                    messages.len() + 1
                )
                .as_bytes(),
            );
            reply.extend_from_slice(
                format!("{tag} OK [READ-WRITE] SELECT completed\r\n").as_bytes(),
            );
        } else if upper.starts_with("UID SEARCH") {
            let from: usize = upper
                .split_whitespace()
                .nth(3)
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let uids: Vec<String> = (0..messages.len())
                .map(uid_of)
                .filter(|&u| u >= from)
                .map(|u| u.to_string())
                .collect();
            reply.extend_from_slice(format!("* SEARCH {}\r\n", uids.join(" ")).as_bytes());
            reply.extend_from_slice(done("SEARCH").as_bytes());
        } else if upper.starts_with("UID FETCH") {
            let uid: usize = upper
                .split_whitespace()
                .nth(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if !write(&mut out, &reply).await {
                return;
            }
            for _ in 0..unsolicited {
                let head = format!("* 99 FETCH (UID 999 BODY[] {{{}}}\r\n", junk.len());
                if !(write(&mut out, head.as_bytes()).await
                    && write(&mut out, &junk).await
                    && write(&mut out, b")\r\n").await)
                {
                    return;
                }
            }
            if let Some(m) = uid.checked_sub(1).and_then(|i| messages.get(i)) {
                let head = format!("* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n", m.body.len());
                if !(write(&mut out, head.as_bytes()).await
                    && send_body(&mut out, &m.body, &m.send).await
                    && write(&mut out, b")\r\n").await)
                {
                    return;
                }
            }
            reply.extend_from_slice(done("FETCH").as_bytes());
        } else if upper.starts_with("UID STORE") || upper.starts_with("UID EXPUNGE") {
            if upper.starts_with("UID EXPUNGE") {
                // The set is a list of single UIDs or ranges a:b.
                let set = upper.split_whitespace().nth(2).unwrap_or("").to_owned();
                for part in set.split(',') {
                    let (a, b) = part.split_once(':').unwrap_or((part, part));
                    let (a, b): (usize, usize) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                    for uid in a..=b {
                        if let Some(m) = uid.checked_sub(1).and_then(|i| messages.get(i)) {
                            if !committed(&pool, &m.body).await {
                                server
                                    .state()
                                    .violations
                                    .push(format!("expunge of UID {uid} before commit"));
                            }
                        }
                    }
                }
            }
            reply.extend_from_slice(done("").as_bytes());
        } else if upper.starts_with("LOGOUT") {
            let _ = write(
                &mut out,
                format!("* BYE\r\n{tag} OK LOGOUT completed\r\n").as_bytes(),
            )
            .await;
            return;
        } else {
            reply.extend_from_slice(format!("{tag} BAD unknown\r\n").as_bytes());
        }
        if !write(&mut out, &reply).await {
            return;
        }
    }
}

/// Log lines of the whole test process, captured by one global subscriber
/// (a per-test `set_default` misses events when tests run in parallel:
/// tracing caches a callsite's interest across threads). Tests tell their
/// lines apart by their mailbox name, unique per test.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The process-wide capture (installed on first use).
    pub fn global() -> Logs {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_env_filter("info")
                .with_writer(move || writer.clone())
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
            logs
        })
        .clone()
    }

    /// The lines that name `mailbox` (as a field, `"mailbox":"NAME"`).
    pub fn lines_of(&self, mailbox: &str) -> String {
        let needle = format!("\"mailbox\":\"{mailbox}\"");
        let all = String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned();
        all.lines()
            .filter(|l| l.contains(&needle))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}
