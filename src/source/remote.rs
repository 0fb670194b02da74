//! IMAP and POP3 mailboxes as bounce sources.
//!
//! The contract is the intake's (see `store::intake`): a fetched message is
//! first stored raw in PostgreSQL ([`Store::intake_insert_batch`], one
//! committed statement per batch, deduplicated by content hash: a UID or
//! UIDL is a hint, never an identity), and only after that commit is it
//! acknowledged on the server. Nothing is ever acknowledged that has not been committed.
//!
//! **IMAP.** Connect (implicit TLS, STARTTLS, or plain on loopback only),
//! LOGIN, SELECT the folder. The position in the folder is a checkpoint
//! `(UIDVALIDITY, last UID)` in `mailbox_checkpoints`; a drain searches
//! `UID last+1:*` (from 1 when UIDVALIDITY changed: the store skips what it
//! already has by content hash), fetches in batches of `daemon.batch_size`
//! (`BODY.PEEK[]`: the `\Seen` flag is left alone), stores the batch, then
//! acknowledges it and only then advances the checkpoint:
//! - `after = "seen"` (default): nothing on the server; the checkpoint
//!   alone says what was taken, the messages stay where they are (and
//!   unread, for a human to look at);
//! - `after = "move"`: `UID MOVE` to `move_to` (created if missing), or
//!   `UID COPY` + `\Deleted` + `EXPUNGE` without the MOVE extension;
//! - `after = "delete"`: `\Deleted` + `UID EXPUNGE` (plain `EXPUNGE` without
//!   UIDPLUS).
//!
//! A crash between commit and acknowledgement re-fetches the batch next
//! time: the store reports duplicates, which are then acknowledged. The
//! daemon loop keeps its session and waits in IDLE when the server offers
//! it (woken by `EXISTS`, and re-draining at least every
//! `poll_interval_secs`), else polls every `poll_interval_secs`.
//!
//! **POP3.** Connect (implicit TLS or STLS), USER/PASS, UIDL; RETR in
//! batches, store the batch, DELE its messages (and duplicates), and QUIT
//! at the end of the drain, which is what makes the deletions final: a
//! connection dropped before QUIT deletes nothing, and the next drain finds
//! the messages again as duplicates. The intake uid is the UIDL string.
//! POP3 has no folders and no flags, so only `after = "delete"` (the
//! default for POP3) is accepted. Polled every `poll_interval_secs`.
//!
//! **Failures.** An error ends the drain with a [`RemoteError`] saying
//! whether it is an outage (server or database unreachable) or needs an
//! operator; the daemon's supervision loop (`app::supervisor`) logs it once
//! per state change, backs off and reconnects. Passwords come from
//! `password_env` or the first line of `password_file` and appear in no log
//! and no error.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::imap::{IdleOutcome, ImapClient, Selected};
use super::pop3::Pop3Client;
use super::{
    note_stored, tls, Deadlines, DrainSummary, Fetch, FetchError, MailboxError, OnBatch, Prepared,
    ServerEndpoint, Session, SetAside, Source, TlsMode,
};
use crate::backoff::sleep_or_cancel;
use crate::clock::Clock;
use crate::config::{DaemonSettings, ImapAfter, ImapMailbox, Pop3Mailbox, ServerSettings};
use crate::store::{Checkpoint, NewIntake, Store, StoreError};

/// Bound for connecting and for every network read or write.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of a remote source. Each names its mailbox; none carries a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// A setting is missing or wrong (found while building the source).
    #[error("mailbox {mailbox}: {key}: {message}")]
    Config {
        mailbox: String,
        key: &'static str,
        message: String,
    },
    /// The mail server refused, failed or went away.
    #[error("mailbox {mailbox} ({endpoint}): {error}")]
    Server {
        mailbox: String,
        endpoint: String,
        error: MailboxError,
    },
    /// PostgreSQL failed (storing, or reading/writing the checkpoint).
    #[error("mailbox {mailbox}: {error}")]
    Store { mailbox: String, error: StoreError },
}

impl RemoteError {
    /// True when the server or the database is unreachable (worth retrying
    /// as is), false for refusals that need an operator (bad password,
    /// certificate that does not verify, missing folder, bad setting).
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Config { .. } => false,
            Self::Store { error, .. } => crate::store::is_outage(error),
            Self::Server { error, .. } => mailbox_outage(error),
        }
    }

    /// True for database errors: the lease session may be gone as well.
    pub fn is_store(&self) -> bool {
        matches!(self, Self::Store { .. })
    }

    /// The protocol-level error, for server errors.
    pub fn mailbox_error(&self) -> Option<&MailboxError> {
        match self {
            Self::Server { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<RemoteError> for FetchError {
    fn from(e: RemoteError) -> Self {
        let (outage, store) = (e.is_outage(), e.is_store());
        FetchError::new(e, outage, store)
    }
}

/// A fetch failure that is the message's, not the server's: it refused this
/// message, or stalled on it past the message deadline. The message is set
/// aside and the rest of the mailbox goes on.
fn is_message_failure(e: &MailboxError) -> bool {
    match e {
        MailboxError::Deadline { .. } => true,
        MailboxError::Protocol { .. } => !mailbox_outage(e),
        _ => false,
    }
}

/// How a POP3 session's pass over the listing ended.
enum Pop3Pass {
    /// Through the listing (or cancelled): QUIT.
    Complete,
    /// A message stalled the session: the batch in hand is committed; start
    /// a new session.
    Reopen,
    /// Shutdown cut a fetch: the batch in hand is committed; no QUIT.
    Cancelled,
}

fn mailbox_outage(e: &MailboxError) -> bool {
    match e {
        MailboxError::Connect { .. }
        | MailboxError::Io(_)
        | MailboxError::Timeout { .. }
        | MailboxError::Deadline { .. }
        | MailboxError::ConnectionClosed
        | MailboxError::ConnectionBroken => true,
        // `* BYE` from an IMAP server shutting down or logging us out;
        // temporary failures (POP3 `[SYS/TEMP]`, RFC 3206; IMAP
        // `[UNAVAILABLE]`, RFC 5530), e.g. "-ERR [SYS/TEMP] Server shutting down."
        MailboxError::Protocol { response, .. } => {
            let r = response.to_ascii_uppercase();
            r.contains("* BYE")
                || r.contains("[SYS/TEMP]")
                || r.contains("[UNAVAILABLE]")
                || r.contains("SHUTTING DOWN")
        }
        _ => false,
    }
}

/// What to do on the server once a message is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteAfter {
    /// IMAP only: leave it; the checkpoint records what was taken.
    Seen,
    /// IMAP: `\Deleted` + expunge; POP3: DELE, final at QUIT.
    Delete,
    /// IMAP only: to this folder.
    Move(String),
}

/// The two protocols a [`RemoteSource`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imap => "imap",
            Self::Pop3 => "pop3",
        }
    }
}

/// A configured IMAP or POP3 mailbox.
#[derive(Clone)]
pub struct RemoteSource {
    name: String,
    kind: Protocol,
    endpoint: ServerEndpoint,
    username: String,
    password: SecretString,
    folder: String,
    after: RemoteAfter,
    poll: Duration,
    batch_size: usize,
    batch_bytes: usize,
    max_message_size: usize,
    deadlines: Deadlines,
    set_aside: SetAside,
    store: Store,
    clock: Clock,
}

impl fmt::Debug for RemoteSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSource")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("folder", &self.folder)
            .field("after", &self.after)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

/// An open IMAP session with the folder selected.
struct ImapSession {
    client: ImapClient,
    selected: Selected,
    idle: bool,
}

impl RemoteSource {
    /// An IMAP mailbox: see [`RemoteSource::prepare`].
    pub fn prepare_imap(m: &ImapMailbox, daemon: &DaemonSettings) -> Result<Prepared, RemoteError> {
        let after = match &m.after {
            ImapAfter::Seen => RemoteAfter::Seen,
            ImapAfter::Delete => RemoteAfter::Delete,
            ImapAfter::Move { to } => RemoteAfter::Move(to.clone()),
        };
        Self::prepare(
            &m.name,
            Protocol::Imap,
            &m.server,
            m.folder.clone(),
            after,
            m.poll_interval_secs,
            daemon,
        )
    }

    /// A POP3 mailbox: see [`RemoteSource::prepare`].
    pub fn prepare_pop3(m: &Pop3Mailbox, daemon: &DaemonSettings) -> Result<Prepared, RemoteError> {
        Self::prepare(
            &m.name,
            Protocol::Pop3,
            &m.server,
            String::new(),
            RemoteAfter::Delete,
            m.poll_interval_secs,
            daemon,
        )
    }

    /// Reads the password and loads `ca_file` now, so that a bad one stops
    /// the daemon at start (and `check-config`) rather than at the first
    /// fetch; the error names the mailbox and the key, never the password.
    /// The rest of the table was checked when it was read.
    fn prepare(
        name: &str,
        kind: Protocol,
        server: &ServerSettings,
        folder: String,
        after: RemoteAfter,
        poll_interval_secs: Option<u64>,
        daemon: &DaemonSettings,
    ) -> Result<Prepared, RemoteError> {
        let err = |key: &'static str, message: String| RemoteError::Config {
            mailbox: name.to_owned(),
            key,
            message,
        };
        let password = read_password(server).map_err(|(key, message)| err(key, message))?;
        if let Some(ca) = &server.ca_file {
            if server.tls != TlsMode::None {
                tls::connector(Some(ca)).map_err(|e| err("ca_file", e.to_string()))?;
            }
        }
        let name = name.to_owned();
        let endpoint = ServerEndpoint {
            host: server.host.clone(),
            port: server.port,
            tls: server.tls,
            ca_file: server.ca_file.clone(),
            timeout: DEFAULT_TIMEOUT,
        };
        let username = server.username.clone();
        let poll = Duration::from_secs(
            poll_interval_secs
                .unwrap_or(daemon.poll_interval_secs)
                .max(1),
        );
        let (batch_size, batch_bytes) = (daemon.batch_size.max(1), daemon.batch_bytes.max(1));
        let max_message_size = daemon.max_message_bytes.max(1);
        let deadlines = Deadlines {
            message: Duration::from_secs(daemon.message_timeout_secs.max(1)),
            command: Duration::from_secs(daemon.command_timeout_secs.max(1)),
        };
        let set_aside = SetAside::new(Duration::from_secs(daemon.skipped_retry_secs.max(1)));
        Ok(Prepared::new(move |store, clock| {
            Source::new(Self {
                name,
                kind,
                endpoint,
                username,
                password,
                folder,
                after,
                poll,
                batch_size,
                batch_bytes,
                max_message_size,
                deadlines,
                set_aside,
                store,
                clock,
            })
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn protocol(&self) -> Protocol {
        self.kind
    }

    pub fn endpoint(&self) -> &ServerEndpoint {
        &self.endpoint
    }

    pub fn after(&self) -> &RemoteAfter {
        &self.after
    }

    pub fn poll_interval(&self) -> Duration {
        self.poll
    }

    /// Changes the bound for connecting and each network read or write
    /// (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.endpoint.timeout = timeout;
    }

    /// Changes the largest message kept whole; a larger one is stored
    /// truncated (logged), see `daemon.max_message_bytes`.
    pub fn set_max_message_size(&mut self, limit: usize) {
        self.max_message_size = limit.max(1);
    }

    /// Changes the overall deadlines of a fetch and of other commands.
    pub fn set_deadlines(&mut self, deadlines: Deadlines) {
        self.deadlines = deadlines;
    }

    fn server_error(&self, error: MailboxError) -> RemoteError {
        RemoteError::Server {
            mailbox: self.name.clone(),
            endpoint: self.endpoint.to_string(),
            error,
        }
    }

    fn store_error(&self, error: StoreError) -> RemoteError {
        RemoteError::Store {
            mailbox: self.name.clone(),
            error,
        }
    }

    /// Connects and logs in (IMAP: also selects the folder and creates
    /// `move_to`), then logs out. Nothing is fetched.
    pub async fn check(&self) -> Result<(), RemoteError> {
        match self.kind {
            Protocol::Pop3 => {
                let client = self.open_pop3().await?;
                client.quit().await.map_err(|e| self.server_error(e))
            }
            _ => {
                let session = self.open_imap().await?;
                session
                    .client
                    .logout()
                    .await
                    .map_err(|e| self.server_error(e))
            }
        }
    }

    /// [`RemoteSource::check`] at start: a refusal (bad credentials, a
    /// certificate that does not verify, a missing folder) is returned; a
    /// server that is merely unreachable is logged and left to the fetch
    /// loop, which retries until it answers.
    pub async fn check_at_startup(&self) -> Result<(), RemoteError> {
        match self.check().await {
            Ok(()) => {
                tracing::info!(mailbox = %self.name, kind = self.kind.as_str(), endpoint = %self.endpoint, "mailbox server reachable, login accepted");
                Ok(())
            }
            Err(e) if e.is_outage() => {
                tracing::warn!(mailbox = %self.name, kind = self.kind.as_str(), error = %e, "mailbox server unreachable at start; will retry");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches everything new once, stores it and acknowledges what was
    /// stored, then logs out (IMAP) or QUITs (POP3). Stops between batches
    /// when `cancel` fires. `on_batch` is called after each committed batch.
    pub async fn drain(
        &self,
        cancel: &CancellationToken,
        on_batch: OnBatch<'_>,
    ) -> Result<DrainSummary, RemoteError> {
        match self.kind {
            Protocol::Pop3 => self.drain_pop3(cancel, on_batch).await,
            _ => {
                let mut session = self.open_imap().await?;
                let summary = self.drain_imap(&mut session, cancel, on_batch).await?;
                // Everything is committed and acknowledged already.
                let _ = session.client.logout().await;
                Ok(summary)
            }
        }
    }

    async fn open_imap(&self) -> Result<ImapSession, RemoteError> {
        let se = |e| self.server_error(e);
        let mut client = ImapClient::connect(&self.endpoint).await.map_err(se)?;
        client.set_max_message_size(self.max_message_size);
        client.set_deadlines(self.deadlines);
        client
            .login(&self.username, &self.password)
            .await
            .map_err(se)?;
        if let RemoteAfter::Move(to) = &self.after {
            client.create_folder_if_missing(to).await.map_err(se)?;
        }
        let selected = client.select(&self.folder).await.map_err(se)?;
        let idle = client.has_capability("IDLE").await.map_err(se)?;
        Ok(ImapSession {
            client,
            selected,
            idle,
        })
    }

    async fn open_pop3(&self) -> Result<Pop3Client, RemoteError> {
        let se = |e| self.server_error(e);
        let mut client = Pop3Client::connect(&self.endpoint).await.map_err(se)?;
        client.set_max_message_size(self.max_message_size);
        client.set_deadlines(self.deadlines);
        client
            .login(&self.username, &self.password)
            .await
            .map_err(se)?;
        Ok(client)
    }

    /// Stores a fetched batch in intake (one commit) and counts it; the
    /// caller acknowledges the batch on the server only after this returns.
    async fn commit_batch(
        &self,
        items: Vec<NewIntake>,
        summary: &mut DrainSummary,
        on_batch: OnBatch<'_>,
    ) -> Result<(), RemoteError> {
        let (stored, dup) = self.store_batch(&items).await?;
        summary.stored += stored;
        summary.duplicates += dup;
        if stored > 0 {
            on_batch();
        }
        Ok(())
    }

    /// Stores a batch with one committed statement: (stored, duplicates).
    async fn store_batch(&self, items: &[NewIntake]) -> Result<(usize, usize), RemoteError> {
        if items.is_empty() {
            return Ok((0, 0));
        }
        let results = self
            .store
            .intake_insert_batch(&self.name, items, (self.clock)())
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(note_stored(&self.name, self.kind.as_str(), items, &results))
    }

    /// Sets a message aside after a fetch failure that is the message's
    /// (the server refused it, or stalled past the message deadline): logged
    /// the first time, counted, retried after `daemon.skipped_retry_secs`.
    fn set_message_aside(&self, key: &str, uid: &str, error: &MailboxError) {
        let first = self.set_aside.set_aside(key);
        let stalled = matches!(error, MailboxError::Deadline { .. });
        if first {
            tracing::warn!(
                mailbox = %self.name,
                kind = self.kind.as_str(),
                uid,
                error = %error,
                stalled,
                retry_in_secs = self.set_aside.retry_after().as_secs(),
                "{}",
                if stalled {
                    "mail server stalled on a message: set aside, the rest of the mailbox goes on"
                } else {
                    "message could not be fetched: set aside, the rest of the mailbox goes on"
                }
            );
        }
    }

    /// The IMAP drain over an open session: repeats until a search finds
    /// nothing past what this drain took (mail that arrived meanwhile
    /// included). A message whose fetch fails on its own account (refused,
    /// or stalled past the message deadline) is set aside and the session
    /// reopened; the checkpoint is not advanced past it, so it is fetched
    /// again when due (and after a restart) while the rest goes on.
    async fn drain_imap(
        &self,
        s: &mut ImapSession,
        cancel: &CancellationToken,
        on_batch: OnBatch<'_>,
    ) -> Result<DrainSummary, RemoteError> {
        let se = |e| self.server_error(e);
        let mut summary = DrainSummary::default();
        let mut warned_validity = false;
        // Highest UID this drain has dealt with (stored, skipped or set aside).
        let mut cursor: u32 = 0;
        // The first UID set aside and not taken: the checkpoint stays below it.
        let mut held_back: Option<u32> = None;
        let mut skipped = std::collections::HashSet::new();
        let mut cursor_validity = s.selected.uid_validity;
        loop {
            let validity = s.selected.uid_validity;
            if validity != cursor_validity {
                // A reopened session found the folder renumbered: what this
                // drain took is known by content now, not by UID.
                cursor = 0;
                held_back = None;
                cursor_validity = validity;
            }
            let checkpoint = self
                .store
                .checkpoint(&self.name)
                .await
                .map_err(|e| self.store_error(e))?;
            let start = match checkpoint {
                Some(c) if c.uid_validity == i64::from(validity) => {
                    u32::try_from(c.last_uid.saturating_add(1)).unwrap_or(u32::MAX)
                }
                Some(c) => {
                    if !warned_validity {
                        tracing::warn!(
                            mailbox = %self.name,
                            kind = "imap",
                            old = c.uid_validity,
                            new = validity,
                            "UIDVALIDITY changed: reading the folder from the start (what is already stored is skipped by content)"
                        );
                        warned_validity = true;
                    }
                    1
                }
                None => 1,
            };
            let uids = s
                .client
                .uid_search_from(start.max(cursor.saturating_add(1)))
                .await
                .map_err(se)?;
            if uids.is_empty() {
                return Ok(summary);
            }
            let mut reopen = false;
            let mut rest = uids.as_slice();
            while !rest.is_empty() && !reopen {
                if cancel.is_cancelled() {
                    return Ok(summary);
                }
                let mut items = Vec::new();
                let mut taken = Vec::new();
                let mut bytes = 0usize;
                let mut last = 0;
                while let Some((&uid, tail)) = rest.split_first() {
                    if items.len() >= self.batch_size
                        || (bytes >= self.batch_bytes && !items.is_empty())
                    {
                        break;
                    }
                    rest = tail;
                    let key = format!("{validity}:{uid}");
                    if !self.set_aside.is_due(&key) {
                        skipped.insert(uid);
                        summary.skipped = skipped.len();
                        held_back = held_back.or(Some(uid));
                        last = uid;
                        continue;
                    }
                    let fetched = tokio::select! {
                        _ = cancel.cancelled() => {
                            // The session is out of step: store what is in
                            // hand; it is acknowledged next time, as a duplicate.
                            self.commit_batch(items, &mut summary, on_batch).await?;
                            return Ok(summary);
                        }
                        r = s.client.uid_fetch(uid) => r,
                    };
                    match fetched {
                        Ok(Some(message)) => {
                            self.set_aside.clear(&key);
                            let item = message.into_intake(key);
                            bytes += item.held_bytes();
                            items.push(item);
                            taken.push(uid);
                        }
                        Ok(None) => summary.vanished += 1,
                        Err(e) if is_message_failure(&e) => {
                            self.set_message_aside(&key, &key, &e);
                            skipped.insert(uid);
                            summary.skipped = skipped.len();
                            held_back = held_back.or(Some(uid));
                            // A stall leaves the session unusable: commit
                            // what is in hand, then reopen.
                            reopen = !s.client.is_usable();
                            if reopen {
                                last = uid;
                                break;
                            }
                        }
                        Err(e) => return Err(se(e)),
                    }
                    last = uid;
                }
                // 1. commit
                self.commit_batch(items, &mut summary, on_batch).await?;
                if reopen {
                    tracing::info!(mailbox = %self.name, kind = "imap", "reopening the session after a stalled message");
                    *s = self.open_imap().await?;
                    if s.selected.uid_validity != validity {
                        // UIDs of the old session mean nothing now: what was
                        // stored comes back as duplicates.
                        break;
                    }
                }
                // 2. acknowledge what is committed (stored or duplicate)
                match &self.after {
                    RemoteAfter::Seen => {}
                    RemoteAfter::Delete => s.client.uid_delete(&taken).await.map_err(se)?,
                    RemoteAfter::Move(to) => s.client.uid_move(&taken, to).await.map_err(se)?,
                }
                cursor = cursor.max(last);
                // 3. advance the checkpoint past the batch, not past a
                //    message set aside
                let through = match held_back {
                    Some(h) => h.saturating_sub(1),
                    None => last,
                };
                if through >= start && s.selected.uid_validity == validity {
                    self.store
                        .set_checkpoint(
                            &self.name,
                            Checkpoint {
                                uid_validity: i64::from(validity),
                                last_uid: i64::from(through),
                            },
                            (self.clock)(),
                        )
                        .await
                        .map_err(|e| self.store_error(e))?;
                }
            }
        }
    }

    /// The POP3 drain: sessions until one goes through the whole listing;
    /// QUIT at its end makes the DELEs final. A message whose RETR fails on
    /// its own account (refused, or stalled past the message deadline) is
    /// set aside; a stall leaves the session unusable, so the batch in hand
    /// is committed and a new session started (the DELEs of the abandoned
    /// one are not final: those messages come back as duplicates and are
    /// deleted then).
    async fn drain_pop3(
        &self,
        cancel: &CancellationToken,
        on_batch: OnBatch<'_>,
    ) -> Result<DrainSummary, RemoteError> {
        let mut summary = DrainSummary::default();
        let mut skipped = std::collections::HashSet::new();
        loop {
            let mut client = self.open_pop3().await?;
            let pass = self
                .pop3_session(&mut client, cancel, on_batch, &mut summary, &mut skipped)
                .await;
            summary.skipped = skipped.len();
            match pass? {
                Pop3Pass::Complete => {
                    client.quit().await.map_err(|e| self.server_error(e))?;
                    return Ok(summary);
                }
                Pop3Pass::Cancelled => return Ok(summary),
                Pop3Pass::Reopen => {
                    tracing::info!(mailbox = %self.name, kind = "pop3", "reopening the session after a stalled message");
                }
            }
        }
    }

    async fn pop3_session(
        &self,
        client: &mut Pop3Client,
        cancel: &CancellationToken,
        on_batch: OnBatch<'_>,
        summary: &mut DrainSummary,
        skipped: &mut std::collections::HashSet<String>,
    ) -> Result<Pop3Pass, RemoteError> {
        let se = |e| self.server_error(e);
        let listing = client.uidl().await.map_err(se)?;
        let mut rest = listing.as_slice();
        while !rest.is_empty() {
            if cancel.is_cancelled() {
                return Ok(Pop3Pass::Complete);
            }
            let mut items = Vec::new();
            let mut taken = Vec::new();
            let mut bytes = 0usize;
            let mut reopen = false;
            while let Some(((msgno, uidl), tail)) = rest.split_first() {
                if items.len() >= self.batch_size
                    || (bytes >= self.batch_bytes && !items.is_empty())
                {
                    break;
                }
                rest = tail;
                if !self.set_aside.is_due(uidl) {
                    skipped.insert(uidl.clone());
                    continue;
                }
                let fetched = tokio::select! {
                    _ = cancel.cancelled() => {
                        // The session is out of step: store what is in hand,
                        // no QUIT (nothing deleted; duplicates next time).
                        self.commit_batch(items, summary, on_batch).await?;
                        return Ok(Pop3Pass::Cancelled);
                    }
                    r = client.retr(*msgno) => r,
                };
                match fetched {
                    Ok(message) => {
                        self.set_aside.clear(uidl);
                        let item = message.into_intake(uidl.clone());
                        bytes += item.held_bytes();
                        items.push(item);
                        taken.push(*msgno);
                    }
                    Err(e) if is_message_failure(&e) => {
                        self.set_message_aside(uidl, uidl, &e);
                        skipped.insert(uidl.clone());
                        if !client.is_usable() {
                            reopen = true;
                            break;
                        }
                    }
                    Err(e) => return Err(se(e)),
                }
            }
            // 1. commit
            self.commit_batch(items, summary, on_batch).await?;
            if reopen {
                return Ok(Pop3Pass::Reopen);
            }
            // 2. mark for deletion; final only at QUIT
            for msgno in taken {
                client.dele(msgno).await.map_err(se)?;
            }
        }
        Ok(Pop3Pass::Complete)
    }
}

impl Fetch for RemoteSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    fn poll_interval(&self) -> Duration {
        self.poll
    }

    fn set_aside_count(&self) -> usize {
        self.set_aside.len()
    }

    fn check_at_startup(&self) -> BoxFuture<'_, Result<(), FetchError>> {
        Box::pin(async move {
            RemoteSource::check_at_startup(self)
                .await
                .map_err(FetchError::from)
        })
    }

    fn drain<'a>(
        &'a self,
        cancel: &'a CancellationToken,
        on_batch: OnBatch<'a>,
    ) -> BoxFuture<'a, Result<DrainSummary, FetchError>> {
        Box::pin(async move {
            RemoteSource::drain(self, cancel, on_batch)
                .await
                .map_err(FetchError::from)
        })
    }

    fn session(&self) -> Box<dyn Session + '_> {
        Box::new(RemoteSession {
            source: self,
            imap: None,
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The daemon's view of a remote mailbox: IMAP keeps its session between
/// drains and waits in IDLE when the server offers it (re-draining at
/// least every `poll_interval_secs`), else polls; POP3 connects for each
/// drain and polls.
struct RemoteSession<'a> {
    source: &'a RemoteSource,
    imap: Option<ImapSession>,
}

impl RemoteSession<'_> {
    async fn drain_imap(
        &mut self,
        cancel: &CancellationToken,
        on_batch: OnBatch<'_>,
    ) -> Result<DrainSummary, RemoteError> {
        let source = self.source;
        if self.imap.is_none() {
            let opened = tokio::select! {
                _ = cancel.cancelled() => return Ok(DrainSummary::default()),
                r = source.open_imap() => r?,
            };
            tracing::info!(
                mailbox = %source.name,
                kind = "imap",
                endpoint = %source.endpoint,
                folder = %source.folder,
                uid_validity = opened.selected.uid_validity,
                exists = opened.selected.exists,
                idle = opened.idle,
                "connected"
            );
            self.imap = Some(opened);
        }
        match self.imap.as_mut() {
            Some(s) => source.drain_imap(s, cancel, on_batch).await,
            None => Ok(DrainSummary::default()),
        }
    }
}

impl Session for RemoteSession<'_> {
    fn drain<'a>(
        &'a mut self,
        cancel: &'a CancellationToken,
        on_batch: OnBatch<'a>,
    ) -> BoxFuture<'a, Result<DrainSummary, FetchError>> {
        Box::pin(async move {
            match self.source.kind {
                Protocol::Pop3 => self.source.drain_pop3(cancel, on_batch).await,
                Protocol::Imap => self.drain_imap(cancel, on_batch).await,
            }
            .map_err(FetchError::from)
        })
    }

    fn wait_mode(&self) -> &'static str {
        match &self.imap {
            Some(s) if s.idle => "idle",
            _ => "poll",
        }
    }

    fn wait<'a>(
        &'a mut self,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        Box::pin(async move {
            let source = self.source;
            match self.imap.as_mut() {
                Some(s) if s.idle => {
                    let outcome = tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        r = s.client.idle(source.poll) => r,
                    };
                    match outcome {
                        Ok(IdleOutcome::NewMail) => {
                            tracing::debug!(mailbox = %source.name, kind = "imap", "IDLE: new mail");
                            Ok(())
                        }
                        Ok(IdleOutcome::Timeout) => Ok(()),
                        Err(e) => Err(source.server_error(e).into()),
                    }
                }
                _ => {
                    sleep_or_cancel(source.poll, cancel).await;
                    Ok(())
                }
            }
        })
    }

    fn reset(&mut self) {
        self.imap = None;
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        let imap = self.imap;
        Box::pin(async move {
            if let Some(s) = imap {
                let _ = tokio::time::timeout(Duration::from_secs(2), s.client.logout()).await;
            }
        })
    }
}

/// The password from `password_env` (preferred) or the first line of
/// `password_file`; errors name the key, never the value.
fn read_password(m: &ServerSettings) -> Result<SecretString, (&'static str, String)> {
    if let Some(var) = &m.password_env {
        return match std::env::var(var) {
            Ok(p) if !p.is_empty() => Ok(SecretString::from(p)),
            Ok(_) => Err((
                "password_env",
                format!("environment variable {var} is empty"),
            )),
            Err(std::env::VarError::NotPresent) => Err((
                "password_env",
                format!("environment variable {var} is not set"),
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err((
                "password_env",
                format!("environment variable {var} is not valid UTF-8"),
            )),
        };
    }
    if let Some(path) = &m.password_file {
        let text = std::fs::read(path).map_err(|e| {
            (
                "password_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let text = String::from_utf8(text).map_err(|_| {
            (
                "password_file",
                format!("{} is not valid UTF-8", path.display()),
            )
        })?;
        let first = text.lines().next().unwrap_or("");
        if first.is_empty() {
            return Err((
                "password_file",
                format!("the first line of {} is empty", path.display()),
            ));
        }
        return Ok(SecretString::from(first.to_owned()));
    }
    Err((
        "password_env",
        "set password_env or password_file".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages() {
        assert!(mailbox_outage(&MailboxError::ConnectionClosed));
        assert!(mailbox_outage(&MailboxError::Protocol {
            command: "IDLE".into(),
            response: "* BYE Server shutting down.".into()
        }));
        assert!(mailbox_outage(&MailboxError::Protocol {
            command: "DELE 3".into(),
            response: "-ERR [SYS/TEMP] Server shutting down.".into()
        }));
        assert!(!mailbox_outage(&MailboxError::Auth {
            user: "u".into(),
            response: "NO".into()
        }));
        assert!(!mailbox_outage(&MailboxError::CertificateRejected {
            host: "h".into(),
            reason: "unknown issuer".into()
        }));
    }
}
