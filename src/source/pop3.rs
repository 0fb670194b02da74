//! Minimal POP3 client (RFC 1939, STLS from RFC 2595).
//!
//! POP3 deletes only when the session ends with QUIT: [`Pop3Client::dele`]
//! merely marks, [`Pop3Client::quit`] commits. Dropping the client without
//! `quit` therefore deletes nothing, which lets the caller commit deletions
//! only after the messages are safely processed.

use secrecy::{ExposeSecret, SecretString};

use super::tls::MailConnection;
use super::{
    server_text, BoundedMessage, Deadlines, FetchedMessage, MailboxError, Result, ServerEndpoint,
    TlsMode, DEFAULT_MAX_MESSAGE_SIZE,
};

/// RFC 1939 caps status lines at 512 octets; allow generous slack for
/// servers that exceed it without letting a broken one stream forever.
const MAX_STATUS_LINE: usize = 8 * 1024;
/// Bound for one line of a multi-line reply (RFC 5322 allows 998 octets).
const MAX_DATA_LINE: usize = 1024 * 1024;
/// Bound for the UIDL listing, which grows with the mailbox.
const MAX_LISTING: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct Pop3Client {
    conn: MailConnection,
    max_message_size: usize,
    deadlines: Deadlines,
}

impl Pop3Client {
    /// Connects, reads the greeting and, for [`TlsMode::StartTls`], upgrades
    /// with STLS before anything else is sent.
    pub async fn connect(endpoint: &ServerEndpoint) -> Result<Self> {
        let mut client = Self {
            conn: MailConnection::open(endpoint).await?,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            deadlines: Deadlines::default(),
        };
        client
            .conn
            .start_deadline("greeting", client.deadlines.command);
        let greeting = client.read_status("greeting").await;
        client.conn.clear_deadline();
        greeting?;
        if endpoint.tls == TlsMode::StartTls {
            client.command("STLS").await?;
            client.conn = client.conn.start_tls(endpoint).await?;
        }
        Ok(client)
    }

    /// Changes the largest message [`Pop3Client::retr`] keeps whole
    /// (default [`DEFAULT_MAX_MESSAGE_SIZE`]); a larger one is kept truncated.
    pub fn set_max_message_size(&mut self, limit: usize) {
        self.max_message_size = limit.max(1);
    }

    /// Changes the overall deadlines of a RETR and of other commands.
    pub fn set_deadlines(&mut self, deadlines: Deadlines) {
        self.deadlines = deadlines;
    }

    /// False once an error left the session out of step (reconnect).
    pub fn is_usable(&self) -> bool {
        self.conn.is_usable()
    }

    /// USER/PASS login. The password is only ever written to the socket.
    pub async fn login(&mut self, user: &str, password: &SecretString) -> Result<()> {
        let auth_error = |response: String| MailboxError::Auth {
            user: user.to_owned(),
            response,
        };
        if has_line_break(user) || has_line_break(password.expose_secret()) {
            return Err(auth_error(
                "user name or password contains a line break".into(),
            ));
        }
        self.command(&format!("USER {user}"))
            .await
            .map_err(|e| as_auth_error(e, user))?;
        let pass = format!("PASS {}\r\n", password.expose_secret());
        self.conn.start_deadline("PASS", self.deadlines.command);
        let result = match self.conn.write_all(pass.as_bytes()).await {
            Ok(()) => self.read_status("PASS").await,
            Err(e) => Err(e),
        };
        self.conn.clear_deadline();
        result.map_err(|e| as_auth_error(e, user))?;
        Ok(())
    }

    /// Message numbers and their unique ids, which survive across sessions
    /// while message numbers do not.
    pub async fn uidl(&mut self) -> Result<Vec<(u32, String)>> {
        self.command("UIDL").await?;
        self.conn.start_deadline("UIDL", self.deadlines.message);
        let listing = self.read_multiline(MAX_LISTING).await;
        self.conn.clear_deadline();
        let listing = listing?;
        if listing.truncated.is_some() {
            self.conn.poison();
            return Err(MailboxError::Protocol {
                command: "UIDL".into(),
                response: format!("listing longer than {MAX_LISTING} bytes"),
            });
        }
        listing
            .raw
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.is_empty())
            .map(parse_uidl_line)
            .collect()
    }

    /// Retrieves a message: dot-unstuffed, CRLF line endings as sent by the
    /// server, without the terminating `.` line. A message over the size
    /// bound is read to its end (so the session stays usable) but only its
    /// first bytes are kept (see [`FetchedMessage`]). The whole transfer is
    /// bounded by the message deadline: a server that dribbles or never ends
    /// fails with [`MailboxError::Deadline`], and the session is then
    /// unusable (reconnect).
    pub async fn retr(&mut self, msgno: u32) -> Result<FetchedMessage> {
        let command = format!("RETR {msgno}");
        self.command(&command).await?;
        self.conn.start_deadline(&command, self.deadlines.message);
        let message = self.read_multiline(self.max_message_size).await;
        self.conn.clear_deadline();
        message
    }

    /// The size the server gives for a message (`LIST msgno`), if it does.
    pub async fn list_size(&mut self, msgno: u32) -> Result<Option<u64>> {
        let listed = self.command(&format!("LIST {msgno}")).await?;
        Ok(parse_list_size(&listed))
    }

    /// Marks a message for deletion; it is removed only by [`Pop3Client::quit`].
    pub async fn dele(&mut self, msgno: u32) -> Result<()> {
        self.command(&format!("DELE {msgno}")).await.map(drop)
    }

    /// Keeps the session alive and checks that it still is.
    pub async fn noop(&mut self) -> Result<()> {
        self.command("NOOP").await.map(drop)
    }

    /// Ends the session, which makes the deletions final. An error means the
    /// server may not have deleted anything.
    pub async fn quit(mut self) -> Result<()> {
        self.command("QUIT").await.map(drop)
    }

    /// Sends a command (no secrets: it is echoed in errors) and returns the
    /// text of the positive reply.
    async fn command(&mut self, command: &str) -> Result<Vec<u8>> {
        tracing::debug!(command, "pop3 command");
        self.conn.start_deadline(command, self.deadlines.command);
        let result = match self
            .conn
            .write_all(format!("{command}\r\n").as_bytes())
            .await
        {
            Ok(()) => self.read_status(command).await,
            Err(e) => Err(e),
        };
        self.conn.clear_deadline();
        result
    }

    async fn read_status(&mut self, command: &str) -> Result<Vec<u8>> {
        let line = self.conn.read_line(MAX_STATUS_LINE).await?;
        if let Some(text) = line.strip_prefix(b"+OK") {
            return Ok(text.to_vec());
        }
        if !line.starts_with(b"-ERR") {
            // Not a POP3 status: we can no longer tell where replies start.
            self.conn.poison();
        }
        Err(MailboxError::Protocol {
            command: command.to_owned(),
            response: server_text(&line),
        })
    }

    /// Reads the body of a multi-line reply up to the `.` line, undoing the
    /// dot-stuffing of lines that start with `.`; keeps at most `limit`
    /// bytes (the rest is hashed, not kept).
    async fn read_multiline(&mut self, limit: usize) -> Result<FetchedMessage> {
        let mut data = BoundedMessage::new(limit, None);
        loop {
            let line = self.conn.read_line(MAX_DATA_LINE).await?;
            if line == b".\r\n" || line == b".\n" {
                return Ok(data.finish());
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            data.push(line);
        }
    }
}

fn has_line_break(s: &str) -> bool {
    s.contains(['\r', '\n'])
}

fn as_auth_error(error: MailboxError, user: &str) -> MailboxError {
    match error {
        MailboxError::Protocol { response, .. } => MailboxError::Auth {
            user: user.to_owned(),
            response,
        },
        other => other,
    }
}

/// `msgno uid` as in RFC 1939 section 7.
fn parse_uidl_line(line: &[u8]) -> Result<(u32, String)> {
    let malformed = || MailboxError::Protocol {
        command: "UIDL".into(),
        response: format!("malformed line {:?}", server_text(line)),
    };
    let text = std::str::from_utf8(line).map_err(|_| malformed())?;
    let mut fields = text.split_ascii_whitespace();
    let msgno = fields
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(malformed)?;
    let uid = fields.next().ok_or_else(malformed)?;
    Ok((msgno, uid.to_owned()))
}

/// Size from a `+OK msgno size` LIST reply; absent if the server is vague,
/// in which case the limit is enforced while reading instead.
fn parse_list_size(reply: &[u8]) -> Option<u64> {
    std::str::from_utf8(reply)
        .ok()?
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uidl_and_list_replies() {
        assert_eq!(
            parse_uidl_line(b"3 000000027a1b2c3d").ok(),
            Some((3, "000000027a1b2c3d".to_owned()))
        );
        assert!(parse_uidl_line(b"x y").is_err());
        assert_eq!(parse_list_size(b" 2 1234"), Some(1234));
        assert_eq!(parse_list_size(b" message follows"), None);
    }
}
