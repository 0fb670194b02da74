//! Minimal IMAP4rev1 client (RFC 3501) for the commands the daemon needs,
//! plus IDLE (RFC 2177), MOVE (RFC 6851) and UIDPLUS (RFC 4315) when offered.
//!
//! Responses are parsed just enough to extract what we use; literals are
//! always consumed by their announced byte count, so message bodies are
//! byte-exact and never confused with protocol text. Unsolicited untagged
//! responses (`* 3 EXISTS`, flag updates, ...) may arrive at any point and are
//! skipped unless the command asked for them.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::tls::MailConnection;
use super::{
    server_text, Deadlines, FetchedMessage, MailboxError, Result, ServerEndpoint, TlsMode,
    DEFAULT_MAX_MESSAGE_SIZE,
};

/// One response line may be long: `* SEARCH` lists every matching UID.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Bound for the protocol text of the untagged responses one command keeps
/// (literal contents are never kept, except the body `UID FETCH` asks for):
/// a server flooding a command with unsolicited responses fails the
/// command instead of growing memory.
const MAX_KEPT_TEXT: usize = 2 * MAX_LINE;
/// RFC 2177: servers may drop an IDLE client after 30 minutes of inactivity.
const MAX_IDLE: Duration = Duration::from_secs(29 * 60);

#[derive(Debug)]
pub struct ImapClient {
    conn: MailConnection,
    next_tag: u32,
    /// Upper-cased; `None` until the server announced them in the current
    /// state (they change after STARTTLS and after login).
    capabilities: Option<Vec<String>>,
    max_message_size: usize,
    deadlines: Deadlines,
}

/// State of a mailbox after SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    /// UIDs are only comparable across sessions while this stays the same.
    pub uid_validity: u32,
    pub uid_next: Option<u32>,
    pub exists: u32,
}

/// Why [`ImapClient::idle`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    /// The server announced a changed message count; search for new UIDs.
    NewMail,
    /// Nothing arrived within the wait.
    Timeout,
}

/// One server response with its literals split out: `segments[i]` is the
/// text that announced `literals[i]`, the last segment ends the response.
#[derive(Debug, Default)]
struct Response {
    segments: Vec<Vec<u8>>,
    /// Each kept up to the message size bound (the rest hashed, not kept).
    literals: Vec<FetchedMessage>,
}

impl Response {
    fn first_line(&self) -> &[u8] {
        self.segments.first().map_or(&[], Vec::as_slice)
    }

    /// Protocol text without literal contents, upper-cased for matching.
    fn upper_text(&self) -> Vec<u8> {
        self.segments.concat().to_ascii_uppercase()
    }

    /// `* <number> <keyword>`, e.g. `* 4 EXISTS` gives `(4, "EXISTS")`.
    fn numbered(&self) -> Option<(u32, String)> {
        let text = std::str::from_utf8(self.first_line().strip_prefix(b"* ")?).ok()?;
        let mut words = text.split_ascii_whitespace();
        let number = words.next()?.parse().ok()?;
        Some((number, words.next()?.to_ascii_uppercase()))
    }

    fn is_bye(&self) -> bool {
        starts_with_ignore_case(self.first_line(), b"* BYE")
    }
}

/// One argument of a command; literals let LOGIN send any password.
enum Arg<'a> {
    Text(&'a str),
    Literal(&'a [u8]),
}

impl ImapClient {
    /// Connects, reads the greeting and, for [`TlsMode::StartTls`], upgrades
    /// before anything else is sent.
    pub async fn connect(endpoint: &ServerEndpoint) -> Result<Self> {
        let mut client = Self {
            conn: MailConnection::open(endpoint).await?,
            next_tag: 1,
            capabilities: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            deadlines: Deadlines::default(),
        };
        client
            .conn
            .start_deadline("greeting", client.deadlines.command);
        client.read_greeting().await?;
        client.conn.clear_deadline();
        if endpoint.tls == TlsMode::StartTls {
            client.run("STARTTLS").await?;
            client.conn = client.conn.start_tls(endpoint).await?;
            // Capabilities seen in plain text may have been forged.
            client.capabilities = None;
        }
        Ok(client)
    }

    /// Changes the largest message [`ImapClient::uid_fetch`] keeps whole
    /// (default [`DEFAULT_MAX_MESSAGE_SIZE`]); a larger one is kept truncated.
    pub fn set_max_message_size(&mut self, limit: usize) {
        self.max_message_size = limit.max(1);
    }

    /// Changes the overall deadlines of a fetch and of other commands.
    pub fn set_deadlines(&mut self, deadlines: Deadlines) {
        self.deadlines = deadlines;
    }

    /// False once an error left the session out of step (reconnect).
    pub fn is_usable(&self) -> bool {
        self.conn.is_usable()
    }

    /// Capabilities for the current state, asking the server if needed.
    pub async fn capabilities(&mut self) -> Result<&[String]> {
        if self.capabilities.is_none() {
            self.run("CAPABILITY").await?;
        }
        self.capabilities
            .as_deref()
            .ok_or_else(|| MailboxError::Protocol {
                command: "CAPABILITY".into(),
                response: "no capability list in the reply".into(),
            })
    }

    pub async fn has_capability(&mut self, name: &str) -> Result<bool> {
        let name = name.to_ascii_uppercase();
        Ok(self.capabilities().await?.contains(&name))
    }

    /// LOGIN; arguments that a quoted string cannot carry (non-ASCII, line
    /// breaks) are sent as literals. Errors never contain the password.
    pub async fn login(&mut self, user: &str, password: &SecretString) -> Result<()> {
        if self.has_capability("LOGINDISABLED").await? {
            return Err(MailboxError::Unsupported("LOGIN (LOGINDISABLED: use TLS)"));
        }
        let user_arg = quoted(user);
        let password_arg = quoted(password.expose_secret());
        let args = [
            Arg::Text("LOGIN "),
            as_arg(&user_arg, user),
            Arg::Text(" "),
            as_arg(&password_arg, password.expose_secret()),
        ];
        let tag = self.send(&args, "LOGIN").await;
        self.capabilities = None;
        match self.finish(&tag?, "LOGIN").await {
            Err(MailboxError::Protocol { response, .. }) => Err(MailboxError::Auth {
                user: user.to_owned(),
                response,
            }),
            other => other.map(drop),
        }
    }

    pub async fn select(&mut self, folder: &str) -> Result<Selected> {
        let command = format!("SELECT {}", mailbox_name(folder)?);
        let responses = self.run(&command).await?;
        let mut uid_validity = None;
        let mut uid_next = None;
        let mut exists = 0;
        for response in &responses {
            if let Some((count, keyword)) = response.numbered() {
                if keyword == "EXISTS" {
                    exists = count;
                }
            }
            let text = response.upper_text();
            uid_validity = uid_validity.or_else(|| response_code_number(&text, b"[UIDVALIDITY "));
            uid_next = uid_next.or_else(|| response_code_number(&text, b"[UIDNEXT "));
        }
        let uid_validity = uid_validity.ok_or_else(|| MailboxError::Protocol {
            command,
            response: "no UIDVALIDITY in the reply".into(),
        })?;
        Ok(Selected {
            uid_validity,
            uid_next,
            exists,
        })
    }

    /// UIDs of all messages in the selected folder, ascending.
    pub async fn uid_search_all(&mut self) -> Result<Vec<u32>> {
        self.search("UID SEARCH ALL", 1).await
    }

    /// UIDs >= `min_uid`, ascending. `n:*` always matches the highest UID
    /// even when it is below `n`, so the result is filtered.
    pub async fn uid_search_from(&mut self, min_uid: u32) -> Result<Vec<u32>> {
        let min_uid = min_uid.max(1);
        self.search(&format!("UID SEARCH UID {min_uid}:*"), min_uid)
            .await
    }

    async fn search(&mut self, command: &str, min_uid: u32) -> Result<Vec<u32>> {
        let responses = self.run(command).await?;
        let mut uids: Vec<u32> = responses
            .iter()
            .filter_map(|r| strip_prefix_ignore_case(r.first_line(), b"* SEARCH"))
            .flat_map(|rest| rest.split(u8::is_ascii_whitespace))
            .filter_map(|word| std::str::from_utf8(word).ok()?.parse().ok())
            .filter(|&uid| uid >= min_uid)
            .collect();
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// The full message (RFC 5322 bytes, exactly as stored), without setting
    /// `\Seen`; `None` if no message has this UID (e.g. already expunged).
    /// A message over the size bound comes back truncated (its first bytes,
    /// with its full size and hash). Only the body asked for is kept: other
    /// responses, solicited or not, are read and dropped as they arrive.
    /// The whole fetch is bounded by the message deadline.
    pub async fn uid_fetch(&mut self, uid: u32) -> Result<Option<FetchedMessage>> {
        let command = format!("UID FETCH {uid} (BODY.PEEK[])");
        let tag = self.send(&[Arg::Text(&command)], &command).await?;
        self.conn.start_deadline(&command, self.deadlines.message);
        let mut body = None;
        let result = loop {
            let response = match self.read_response().await {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            if let Some(status) = tagged_status(&response, &tag) {
                break if starts_with_ignore_case(status, b"OK") {
                    Ok(())
                } else {
                    Err(MailboxError::Protocol {
                        command: command.clone(),
                        response: server_text(status),
                    })
                };
            }
            if let Err(e) = self.check_untagged(&response, &tag, &command) {
                break Err(e);
            }
            self.note_capabilities(&response);
            if body.is_none() && is_fetch_of(&response, uid) {
                let mut response = response;
                body = body_literal_index(&response)
                    .map(|i| std::mem::take(&mut response.literals[i]));
            }
        };
        self.conn.clear_deadline();
        result.map(|()| body)
    }

    /// Moves messages, with MOVE if offered, else COPY + delete.
    pub async fn uid_move(&mut self, uids: &[u32], folder: &str) -> Result<()> {
        let Some(set) = uid_set(uids) else {
            return Ok(());
        };
        let folder = mailbox_name(folder)?;
        if self.has_capability("MOVE").await? {
            self.run(&format!("UID MOVE {set} {folder}")).await?;
            return Ok(());
        }
        self.run(&format!("UID COPY {set} {folder}")).await?;
        self.delete_set(&set).await
    }

    /// Deletes messages for good: `\Deleted` then UID EXPUNGE. Without
    /// UIDPLUS this falls back to EXPUNGE, which also removes messages other
    /// clients flagged `\Deleted` in this folder.
    pub async fn uid_delete(&mut self, uids: &[u32]) -> Result<()> {
        match uid_set(uids) {
            Some(set) => self.delete_set(&set).await,
            None => Ok(()),
        }
    }

    async fn delete_set(&mut self, set: &str) -> Result<()> {
        self.run(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
            .await?;
        if self.has_capability("UIDPLUS").await? {
            self.run(&format!("UID EXPUNGE {set}")).await?;
        } else {
            self.run("EXPUNGE").await?;
        }
        Ok(())
    }

    /// Creates the folder unless it exists. CREATE first and LIST only on
    /// failure: servers differ in how they report "already exists".
    pub async fn create_folder_if_missing(&mut self, folder: &str) -> Result<()> {
        let name = mailbox_name(folder)?;
        let error = match self.run(&format!("CREATE {name}")).await {
            Ok(_) => return Ok(()),
            Err(error @ MailboxError::Protocol { .. }) => error,
            Err(other) => return Err(other),
        };
        let listed = self.run(&format!("LIST \"\" {name}")).await?;
        if listed
            .iter()
            .any(|r| starts_with_ignore_case(r.first_line(), b"* LIST "))
        {
            Ok(())
        } else {
            Err(error)
        }
    }

    /// Waits in IDLE until the server reports new mail or `max_wait` passes
    /// (capped at 29 minutes as RFC 2177 asks, so callers simply loop).
    /// Only changes during the IDLE are seen: search before idling.
    pub async fn idle(&mut self, max_wait: Duration) -> Result<IdleOutcome> {
        if !self.has_capability("IDLE").await? {
            return Err(MailboxError::Unsupported("IDLE"));
        }
        let deadline = Instant::now() + max_wait.min(MAX_IDLE);
        let tag = self.send(&[Arg::Text("IDLE")], "IDLE").await?;
        let mut outcome = IdleOutcome::Timeout;
        loop {
            let response = self.read_response().await?;
            if response.first_line().starts_with(b"+") {
                break;
            }
            self.check_untagged(&response, &tag, "IDLE")?;
            if is_new_mail(&response) {
                outcome = IdleOutcome::NewMail;
            }
        }
        // Waiting is what IDLE is for: no command deadline until DONE.
        self.conn.clear_deadline();
        while outcome == IdleOutcome::Timeout {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !self.conn.wait_readable(remaining).await? {
                break;
            }
            let response = self.read_response().await?;
            self.check_untagged(&response, &tag, "IDLE")?;
            if is_new_mail(&response) {
                outcome = IdleOutcome::NewMail;
            }
        }
        self.conn.start_deadline("IDLE", self.deadlines.command);
        self.conn.write_all(b"DONE\r\n").await?;
        self.finish(&tag, "IDLE").await?;
        Ok(outcome)
    }

    /// Keeps the session alive and checks that it still is.
    pub async fn noop(&mut self) -> Result<()> {
        self.run("NOOP").await.map(drop)
    }

    pub async fn logout(mut self) -> Result<()> {
        match self.run("LOGOUT").await {
            // The server may close right after its BYE.
            Ok(_) | Err(MailboxError::ConnectionClosed) => Ok(()),
            Err(other) => Err(other),
        }
    }

    async fn read_greeting(&mut self) -> Result<()> {
        let greeting = self.read_response().await?;
        let line = greeting.first_line();
        if starts_with_ignore_case(line, b"* OK") || starts_with_ignore_case(line, b"* PREAUTH") {
            self.note_capabilities(&greeting);
            Ok(())
        } else {
            self.conn.poison();
            Err(MailboxError::Protocol {
                command: "greeting".into(),
                response: server_text(line),
            })
        }
    }

    /// Runs a command without literals; its text appears in errors.
    async fn run(&mut self, command: &str) -> Result<Vec<Response>> {
        let tag = self.send(&[Arg::Text(command)], command).await?;
        self.finish(&tag, command).await
    }

    /// Writes a tagged command. Literals are synchronizing: each waits for
    /// the server's `+` so we never send data a server has refused.
    async fn send(&mut self, args: &[Arg<'_>], describe: &str) -> Result<String> {
        let tag = format!("A{:04}", self.next_tag);
        self.next_tag = self.next_tag.wrapping_add(1);
        tracing::debug!(tag, command = describe, "imap command");
        // Cleared when the tagged completion is read (`finish`).
        self.conn.start_deadline(describe, self.deadlines.command);
        let mut pending = format!("{tag} ").into_bytes();
        for arg in args {
            match arg {
                Arg::Text(text) => pending.extend_from_slice(text.as_bytes()),
                Arg::Literal(bytes) => {
                    pending.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                    self.conn.write_all(&pending).await?;
                    self.await_continuation(&tag, describe).await?;
                    pending = bytes.to_vec();
                }
            }
        }
        pending.extend_from_slice(b"\r\n");
        self.conn.write_all(&pending).await?;
        Ok(tag)
    }

    async fn await_continuation(&mut self, tag: &str, describe: &str) -> Result<()> {
        loop {
            let response = self.read_response().await?;
            if response.first_line().starts_with(b"+") {
                return Ok(());
            }
            if let Some(status) = tagged_status(&response, tag) {
                return Err(MailboxError::Protocol {
                    command: describe.to_owned(),
                    response: server_text(status),
                });
            }
            self.check_untagged(&response, tag, describe)?;
        }
    }

    /// Collects untagged responses up to the tagged completion of `tag`,
    /// without their literal contents (no command but `UID FETCH` needs
    /// them) and within [`MAX_KEPT_TEXT`] bytes of protocol text.
    async fn finish(&mut self, tag: &str, describe: &str) -> Result<Vec<Response>> {
        let result = self.finish_inner(tag, describe).await;
        self.conn.clear_deadline();
        result
    }

    async fn finish_inner(&mut self, tag: &str, describe: &str) -> Result<Vec<Response>> {
        let mut untagged = Vec::new();
        let mut kept = 0usize;
        loop {
            let mut response = self.read_response().await?;
            if let Some(status) = tagged_status(&response, tag) {
                self.note_capabilities(&response);
                return if starts_with_ignore_case(status, b"OK") {
                    Ok(untagged)
                } else {
                    Err(MailboxError::Protocol {
                        command: describe.to_owned(),
                        response: server_text(status),
                    })
                };
            }
            if !(describe == "LOGOUT" && response.is_bye()) {
                self.check_untagged(&response, tag, describe)?;
            }
            self.note_capabilities(&response);
            response.literals.clear();
            kept += response.segments.iter().map(Vec::len).sum::<usize>();
            if kept > MAX_KEPT_TEXT {
                self.conn.poison();
                return Err(MailboxError::Protocol {
                    command: describe.to_owned(),
                    response: format!(
                        "the server sent more than {MAX_KEPT_TEXT} bytes of responses to one command"
                    ),
                });
            }
            untagged.push(response);
        }
    }

    /// Untagged responses are expected anywhere; BYE (the server is going
    /// away) or anything else is an error that ends the session.
    fn check_untagged(&mut self, response: &Response, tag: &str, describe: &str) -> Result<()> {
        let line = response.first_line();
        if line.starts_with(b"* ") && !response.is_bye() {
            return Ok(());
        }
        self.conn.poison();
        let response = if tagged_status(response, tag).is_some() || response.is_bye() {
            server_text(line)
        } else {
            format!("unexpected response {:?}", server_text(line))
        };
        Err(MailboxError::Protocol {
            command: describe.to_owned(),
            response,
        })
    }

    /// Reads one response, following `{n}` literals by exact byte count.
    async fn read_response(&mut self) -> Result<Response> {
        let mut response = Response::default();
        loop {
            let mut line = self.conn.read_line(MAX_LINE).await?;
            trim_line_end(&mut line);
            let literal = literal_len(&line);
            response.segments.push(line);
            let Some(len) = literal else {
                return Ok(response);
            };
            // Kept up to the size bound, hashed whole: one response never
            // holds more than max_message_size of literal, however large
            // the server says it is.
            let literal = self.conn.read_bounded(len, self.max_message_size).await?;
            response.literals.push(literal);
            if response.literals.len() > 64 {
                self.conn.poison();
                return Err(MailboxError::Protocol {
                    command: "read".into(),
                    response: "more than 64 literals in one response".into(),
                });
            }
        }
    }

    fn note_capabilities(&mut self, response: &Response) {
        let line = response.first_line();
        let list = strip_prefix_ignore_case(line, b"* CAPABILITY ").or_else(|| {
            let upper = line.to_ascii_uppercase();
            let start = find(&upper, b"[CAPABILITY ")? + b"[CAPABILITY ".len();
            let end = start + line[start..].iter().position(|&b| b == b']')?;
            Some(&line[start..end])
        });
        if let Some(list) = list {
            let text = String::from_utf8_lossy(list).to_ascii_uppercase();
            self.capabilities = Some(text.split_ascii_whitespace().map(str::to_owned).collect());
        }
    }
}

/// The status part (`OK ...`, `NO ...`, `BAD ...`) of our tagged completion.
fn tagged_status<'a>(response: &'a Response, tag: &str) -> Option<&'a [u8]> {
    response
        .first_line()
        .strip_prefix(tag.as_bytes())?
        .strip_prefix(b" ")
}

fn is_new_mail(response: &Response) -> bool {
    matches!(response.numbered(), Some((_, keyword)) if keyword == "EXISTS")
}

fn is_fetch_of(response: &Response, uid: u32) -> bool {
    matches!(response.numbered(), Some((_, keyword)) if keyword == "FETCH")
        && response_code_number(&response.upper_text(), b"UID ") == Some(uid)
}

/// Index of the literal holding `BODY[]`, i.e. the one announced right after it.
fn body_literal_index(response: &Response) -> Option<usize> {
    (0..response.literals.len()).find(|&i| {
        let segment = response.segments[i].to_ascii_uppercase();
        let Some(open) = segment.iter().rposition(|&b| b == b'{') else {
            return false;
        };
        segment[..open].trim_ascii_end().ends_with(b"BODY[]")
    })
}

/// The number following `key` (e.g. `[UIDVALIDITY `) in upper-cased text.
fn response_code_number(upper: &[u8], key: &[u8]) -> Option<u32> {
    let mut from = 0;
    while let Some(pos) = find(&upper[from..], key) {
        let start = from + pos;
        // `UID ` must be a whole word, not the tail of e.g. `XUID `.
        let boundary = start == 0 || !upper[start - 1].is_ascii_alphanumeric();
        let digits: &[u8] = &upper[start + key.len()..];
        let end = digits
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(digits.len());
        if boundary && end > 0 {
            return std::str::from_utf8(&digits[..end]).ok()?.parse().ok();
        }
        from = start + 1;
    }
    None
}

/// Length of the literal a line announces with a trailing `{n}` (or `{n+}`).
fn literal_len(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn trim_line_end(line: &mut Vec<u8>) {
    while matches!(line.last(), Some(b'\r' | b'\n')) {
        line.pop();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn strip_prefix_ignore_case<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    starts_with_ignore_case(line, prefix).then(|| &line[prefix.len()..])
}

/// A quoted string, or `None` when the value needs a literal (RFC 3501
/// quoted strings are 7-bit without CR/LF/NUL).
fn quoted(value: &str) -> Option<String> {
    if !value
        .bytes()
        .all(|b| (1..0x80).contains(&b) && b != b'\r' && b != b'\n')
    {
        return None;
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

fn as_arg<'a>(quoted: &'a Option<String>, raw: &'a str) -> Arg<'a> {
    match quoted {
        Some(text) => Arg::Text(text),
        None => Arg::Literal(raw.as_bytes()),
    }
}

/// Folder names are sent as quoted strings. Non-ASCII names would need
/// modified UTF-7 (RFC 3501 section 5.1.3), which we do not implement.
fn mailbox_name(folder: &str) -> Result<String> {
    quoted(folder)
        .filter(|_| !folder.is_empty())
        .ok_or_else(|| MailboxError::Protocol {
            command: "folder name".into(),
            response: format!("{folder:?} must be non-empty ASCII without line breaks"),
        })
}

/// Compact UID set (`1:3,7`); `None` for no UIDs.
fn uid_set(uids: &[u32]) -> Option<String> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for uid in sorted {
        match ranges.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(uid) => *end = uid,
            _ => ranges.push((uid, uid)),
        }
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|&(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}:{end}")
            }
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(segments: &[&[u8]], literals: &[&[u8]]) -> Response {
        Response {
            segments: segments.iter().map(|s| s.to_vec()).collect(),
            literals: literals
                .iter()
                .map(|l| FetchedMessage::whole(l.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(quoted(r#"a "b" \c"#).as_deref(), Some(r#""a \"b\" \\c""#));
        assert_eq!(quoted("pä"), None);
        assert_eq!(quoted("a\r\nb"), None);
    }

    #[test]
    fn parses_literal_announcements() {
        assert_eq!(literal_len(b"* 1 FETCH (UID 4 BODY[] {123}"), Some(123));
        assert_eq!(literal_len(b"A1 LOGIN {5+}"), Some(5));
        assert_eq!(literal_len(b"* OK done"), None);
        assert_eq!(literal_len(b"* OK {}"), None);
    }

    #[test]
    fn finds_body_and_uid_in_fetch() {
        let r = response(
            &[b"* 2 FETCH (FLAGS (\\Seen) BODY[] {5}", b" UID 17)"],
            &[b"hello"],
        );
        assert!(is_fetch_of(&r, 17));
        assert!(!is_fetch_of(&r, 2));
        assert_eq!(body_literal_index(&r), Some(0));
        let flags_only = response(&[b"* 2 FETCH (UID 17 FLAGS (\\Seen))"], &[]);
        assert_eq!(body_literal_index(&flags_only), None);
    }

    #[test]
    fn reads_response_codes() {
        let text = b"* OK [UIDVALIDITY 1795756659] UIDS VALID";
        assert_eq!(
            response_code_number(text, b"[UIDVALIDITY "),
            Some(1795756659)
        );
        assert_eq!(
            response_code_number(b"* 1 FETCH (XUID 3 UID 9)", b"UID "),
            Some(9)
        );
    }

    #[test]
    fn builds_uid_sets() {
        assert_eq!(uid_set(&[7, 1, 2, 3, 3]).as_deref(), Some("1:3,7"));
        assert_eq!(uid_set(&[]), None);
    }
}
