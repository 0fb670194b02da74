//! IMAP and POP3 mailboxes as bounce sources.
//!
//! The contract is the intake's (see `store::intake`): a fetched message is
//! first stored raw in PostgreSQL ([`Store::intake_insert_batch`], one
//! committed statement per batch, deduplicated by mailbox + uid and by
//! content hash), and only after that commit is it acknowledged on the
//! server. Nothing is ever acknowledged that has not been committed.
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
//! **Failures.** Every loop survives a mail server or PostgreSQL going away:
//! it logs once per state change (`source up`, `source down`, `recovered`),
//! backs off (0.5 s doubling to 30 s) and resumes by itself. Passwords come
//! from `password_env` or the first line of `password_file` and appear in no
//! log and no error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::imap::{IdleOutcome, ImapClient, Selected};
use super::maildir::DrainSummary;
use super::pop3::Pop3Client;
use super::{tls, MailboxError, ServerEndpoint, TlsMode, DEFAULT_MAX_MESSAGE_SIZE};
use crate::backoff::{sleep_or_cancel, OutageBackoff};
use crate::config::{DaemonSettings, MailboxKind, MailboxSettings};
use crate::pipeline::Clock;
use crate::store::{Checkpoint, IntakeInsert, MailboxLease, NewIntake, Store, StoreError};

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

fn mailbox_outage(e: &MailboxError) -> bool {
    match e {
        MailboxError::Connect { .. }
        | MailboxError::Io(_)
        | MailboxError::Timeout { .. }
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

/// A configured IMAP or POP3 mailbox.
#[derive(Clone)]
pub struct RemoteSource {
    name: String,
    kind: MailboxKind,
    endpoint: ServerEndpoint,
    username: String,
    password: SecretString,
    folder: String,
    after: RemoteAfter,
    poll: Duration,
    batch_size: usize,
    max_message_size: usize,
    store: Store,
    clock: Clock,
    metrics: Option<Arc<crate::metrics::Metrics>>,
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

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn kind_str(kind: MailboxKind) -> &'static str {
    match kind {
        MailboxKind::Imap => "imap",
        MailboxKind::Pop3 => "pop3",
        MailboxKind::Maildir => "maildir",
    }
}

impl RemoteSource {
    /// Builds the source from its `[[mailbox]]` table, checking every
    /// setting it uses: the error names the mailbox and the key (never the
    /// password). Reads the password and loads `ca_file` now, so a bad one
    /// stops the daemon at start rather than at the first fetch.
    pub fn new(
        m: &MailboxSettings,
        daemon: &DaemonSettings,
        store: Store,
        clock: Clock,
    ) -> Result<Self, RemoteError> {
        let err = |key: &'static str, message: String| RemoteError::Config {
            mailbox: m.name.clone(),
            key,
            message,
        };
        let kind = m.kind;
        if kind == MailboxKind::Maildir {
            return Err(err("kind", "a maildir is not a remote mailbox".into()));
        }
        let host = m.host.as_deref().map(str::trim).unwrap_or_default();
        if host.is_empty() {
            return Err(err("host", "required for IMAP and POP3".into()));
        }
        if host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(err("host", format!("{host:?} is not a host name")));
        }
        let tls: TlsMode = match m.tls.as_deref() {
            None => TlsMode::Implicit,
            Some(t) => t.parse().map_err(|e| err("tls", e))?,
        };
        if tls == TlsMode::None && !is_loopback(host) {
            return Err(err(
                "tls",
                format!(
                    "\"none\" would send the password in clear text; it is allowed only for a \
                     loopback host (localhost, 127.0.0.1, ::1), not {host:?}: use \"implicit\" \
                     or \"starttls\""
                ),
            ));
        }
        let port = match m.port {
            Some(0) => return Err(err("port", "0 is not a port".into())),
            Some(p) => p,
            None => match (kind, tls) {
                (MailboxKind::Imap, TlsMode::Implicit) => 993,
                (MailboxKind::Imap, _) => 143,
                (_, TlsMode::Implicit) => 995,
                _ => 110,
            },
        };
        let username = m.username.as_deref().unwrap_or_default().to_owned();
        if username.trim().is_empty() {
            return Err(err("username", "required for IMAP and POP3".into()));
        }
        let password = read_password(m).map_err(|(key, message)| err(key, message))?;
        if let Some(ca) = &m.ca_file {
            if tls != TlsMode::None {
                tls::connector(Some(ca)).map_err(|e| err("ca_file", e.to_string()))?;
            }
        }
        let folder = match (kind, m.folder.as_deref()) {
            (MailboxKind::Pop3, Some(_)) => {
                return Err(err("folder", "POP3 has no folders; remove the key".into()))
            }
            (MailboxKind::Pop3, None) => String::new(),
            (_, f) => f.unwrap_or("INBOX").to_owned(),
        };
        if kind == MailboxKind::Imap {
            check_folder_name(&folder).map_err(|message| err("folder", message))?;
        }
        let after = match (kind, m.after.as_deref()) {
            (MailboxKind::Pop3, None | Some("delete")) => RemoteAfter::Delete,
            (MailboxKind::Pop3, Some(other)) => {
                return Err(err(
                    "after",
                    format!(
                        "{other:?} is not possible with POP3 (no folders, no flags): use \"delete\""
                    ),
                ))
            }
            (_, None | Some("seen")) => RemoteAfter::Seen,
            (_, Some("delete")) => RemoteAfter::Delete,
            (_, Some("move")) => {
                let to = m
                    .move_to
                    .as_deref()
                    .ok_or_else(|| err("move_to", "required when after = \"move\"".into()))?;
                check_folder_name(to).map_err(|message| err("move_to", message))?;
                if to == folder {
                    return Err(err("move_to", format!("{to:?} is the folder being read")));
                }
                RemoteAfter::Move(to.to_owned())
            }
            (_, Some(other)) => {
                return Err(err(
                    "after",
                    format!("{other:?}: expected \"seen\", \"delete\" or \"move\""),
                ))
            }
        };
        let poll = Duration::from_secs(
            m.poll_interval_secs
                .unwrap_or(daemon.poll_interval_secs)
                .max(1),
        );
        Ok(Self {
            name: m.name.clone(),
            kind,
            endpoint: ServerEndpoint {
                host: host.to_owned(),
                port,
                tls,
                ca_file: m.ca_file.clone(),
                timeout: DEFAULT_TIMEOUT,
            },
            username,
            password,
            folder,
            after,
            poll,
            batch_size: daemon.batch_size.max(1),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            store,
            clock,
            metrics: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> MailboxKind {
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

    /// Changes the largest message fetched; a larger one is left on the
    /// server (logged) and skipped.
    pub fn set_max_message_size(&mut self, limit: usize) {
        self.max_message_size = limit;
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
            MailboxKind::Pop3 => {
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
                tracing::info!(mailbox = %self.name, kind = kind_str(self.kind), endpoint = %self.endpoint, "mailbox server reachable, login accepted");
                Ok(())
            }
            Err(e) if e.is_outage() => {
                tracing::warn!(mailbox = %self.name, kind = kind_str(self.kind), error = %e, "mailbox server unreachable at start; will retry");
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
        on_batch: &(dyn Fn() + Send + Sync),
    ) -> Result<DrainSummary, RemoteError> {
        match self.kind {
            MailboxKind::Pop3 => self.drain_pop3(cancel, on_batch).await,
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
        on_batch: &(dyn Fn() + Send + Sync),
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
        let stored = results
            .iter()
            .filter(|r| matches!(r, IntakeInsert::Stored(_)))
            .count();
        Ok((stored, results.len() - stored))
    }

    /// The IMAP drain over an open session: repeats until a search finds
    /// nothing past the checkpoint (mail that arrived meanwhile included).
    async fn drain_imap(
        &self,
        s: &mut ImapSession,
        cancel: &CancellationToken,
        on_batch: &(dyn Fn() + Send + Sync),
    ) -> Result<DrainSummary, RemoteError> {
        let se = |e| self.server_error(e);
        let validity = s.selected.uid_validity;
        let mut summary = DrainSummary::default();
        let mut warned_validity = false;
        loop {
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
            let uids = s.client.uid_search_from(start).await.map_err(se)?;
            if uids.is_empty() {
                return Ok(summary);
            }
            for chunk in uids.chunks(self.batch_size) {
                if cancel.is_cancelled() {
                    return Ok(summary);
                }
                let mut items = Vec::with_capacity(chunk.len());
                let mut taken = Vec::with_capacity(chunk.len());
                for &uid in chunk {
                    match s.client.uid_fetch(uid).await {
                        Ok(Some(raw)) => {
                            items.push(NewIntake {
                                uid: format!("{validity}:{uid}"),
                                raw,
                            });
                            taken.push(uid);
                        }
                        Ok(None) => summary.vanished += 1,
                        Err(MailboxError::MessageTooLarge { size, limit }) => {
                            tracing::warn!(mailbox = %self.name, kind = "imap", uid, size, limit, "message too large: left in the folder and skipped");
                        }
                        Err(e) => return Err(se(e)),
                    }
                }
                // 1. commit
                self.commit_batch(items, &mut summary, on_batch).await?;
                // 2. acknowledge what is committed (stored or duplicate)
                match &self.after {
                    RemoteAfter::Seen => {}
                    RemoteAfter::Delete => s.client.uid_delete(&taken).await.map_err(se)?,
                    RemoteAfter::Move(to) => s.client.uid_move(&taken, to).await.map_err(se)?,
                }
                // 3. advance the checkpoint past the batch
                let last = chunk.last().copied().unwrap_or(0);
                self.store
                    .set_checkpoint(
                        &self.name,
                        Checkpoint {
                            uid_validity: i64::from(validity),
                            last_uid: i64::from(last),
                        },
                        (self.clock)(),
                    )
                    .await
                    .map_err(|e| self.store_error(e))?;
            }
        }
    }

    /// The POP3 drain: one session, QUIT at the end makes the DELEs final.
    async fn drain_pop3(
        &self,
        cancel: &CancellationToken,
        on_batch: &(dyn Fn() + Send + Sync),
    ) -> Result<DrainSummary, RemoteError> {
        let se = |e| self.server_error(e);
        let mut client = self.open_pop3().await?;
        let listing = client.uidl().await.map_err(se)?;
        let mut summary = DrainSummary::default();
        for chunk in listing.chunks(self.batch_size) {
            if cancel.is_cancelled() {
                break;
            }
            let mut items = Vec::with_capacity(chunk.len());
            let mut taken = Vec::with_capacity(chunk.len());
            for (msgno, uidl) in chunk {
                match client.retr(*msgno).await {
                    Ok(raw) => {
                        items.push(NewIntake {
                            uid: uidl.clone(),
                            raw,
                        });
                        taken.push(*msgno);
                    }
                    Err(MailboxError::MessageTooLarge { size, limit }) => {
                        tracing::warn!(mailbox = %self.name, kind = "pop3", uidl = %uidl, size, limit, "message too large: left on the server and skipped");
                    }
                    Err(e) => return Err(se(e)),
                }
            }
            // 1. commit
            self.commit_batch(items, &mut summary, on_batch).await?;
            // 2. mark for deletion; final only at QUIT
            for msgno in taken {
                client.dele(msgno).await.map_err(se)?;
            }
        }
        client.quit().await.map_err(se)?;
        Ok(summary)
    }

    /// The daemon loop: holds the mailbox lease, drains, waits for new mail
    /// (IMAP IDLE, else polling), and survives the server or the database
    /// going away. Returns when `cancel` fires (the batch in hand is
    /// finished first).
    /// Reports the source's state as `inmail_source_up{mailbox}`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub async fn run(self, wake: Arc<Notify>, cancel: CancellationToken) {
        let kind = kind_str(self.kind);
        let name = self.name.clone();
        let mut state = SourceState::new(&name, kind, self.metrics.clone());
        let mut retry = OutageBackoff::new();
        let lease_retry = self.poll.min(Duration::from_secs(5));
        let mut lease: Option<MailboxLease> = None;
        let mut waiting_logged = false;
        let mut session: Option<ImapSession> = None;
        let w = Arc::clone(&wake);
        let on_batch = move || w.notify_waiters();
        while !cancel.is_cancelled() {
            // 1. hold the lease
            if let Some(l) = lease.as_mut() {
                if let Err(e) = l.check().await {
                    tracing::warn!(mailbox = %name, kind, error = %e, "lost the mailbox lease");
                    lease = None;
                    session = None;
                }
            }
            if lease.is_none() {
                match self.store.try_lease(&name).await {
                    Ok(Some(l)) => {
                        tracing::info!(mailbox = %name, kind, "mailbox lease taken; fetching");
                        waiting_logged = false;
                        lease = Some(l);
                    }
                    Ok(None) => {
                        if !waiting_logged {
                            tracing::info!(mailbox = %name, kind, "another instance fetches this mailbox; waiting for its lease");
                            waiting_logged = true;
                        }
                        if sleep_or_cancel(lease_retry, &cancel).await {
                            break;
                        }
                        continue;
                    }
                    Err(e) => {
                        let d = retry.bump();
                        state.down(&self.store_error(e), d);
                        if sleep_or_cancel(d, &cancel).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            // 2. drain
            let result = match self.kind {
                MailboxKind::Pop3 => self.drain_pop3(&cancel, &on_batch).await,
                _ => {
                    if session.is_none() {
                        let opened = tokio::select! {
                            _ = cancel.cancelled() => break,
                            r = self.open_imap() => r,
                        };
                        match opened {
                            Ok(s) => {
                                tracing::info!(
                                    mailbox = %name,
                                    kind,
                                    endpoint = %self.endpoint,
                                    folder = %self.folder,
                                    uid_validity = s.selected.uid_validity,
                                    exists = s.selected.exists,
                                    idle = s.idle,
                                    "connected"
                                );
                                session = Some(s);
                            }
                            Err(e) => {
                                let d = retry.bump();
                                state.down(&e, d);
                                if sleep_or_cancel(d, &cancel).await {
                                    break;
                                }
                                continue;
                            }
                        }
                    }
                    match session.as_mut() {
                        Some(s) => self.drain_imap(s, &cancel, &on_batch).await,
                        None => continue,
                    }
                }
            };
            match result {
                Ok(s) => {
                    state.up();
                    retry.reset();
                    if s.stored + s.duplicates + s.vanished > 0 {
                        tracing::info!(mailbox = %name, kind, stored = s.stored, duplicates = s.duplicates, vanished = s.vanished, "fetched");
                    }
                }
                Err(e) => {
                    session = None;
                    if e.is_store() {
                        lease = None; // its session may be gone too
                    }
                    let d = retry.bump();
                    state.down(&e, d);
                    if sleep_or_cancel(d, &cancel).await {
                        break;
                    }
                    continue;
                }
            }
            // 3. wait for new mail
            match session.as_mut() {
                Some(s) if s.idle => {
                    state.waiting("idle");
                    let outcome = tokio::select! {
                        _ = cancel.cancelled() => break,
                        r = s.client.idle(self.poll) => r,
                    };
                    match outcome {
                        Ok(IdleOutcome::NewMail) => {
                            tracing::debug!(mailbox = %name, kind, "IDLE: new mail");
                        }
                        Ok(IdleOutcome::Timeout) => {}
                        Err(e) => {
                            session = None;
                            let d = retry.bump();
                            state.down(&self.server_error(e), d);
                            if sleep_or_cancel(d, &cancel).await {
                                break;
                            }
                        }
                    }
                }
                _ => {
                    state.waiting("poll");
                    if sleep_or_cancel(self.poll, &cancel).await {
                        break;
                    }
                }
            }
        }
        if let Some(s) = session {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.client.logout()).await;
        }
        if let Some(l) = lease {
            l.release().await;
        }
    }
}

/// The password from `password_env` (preferred) or the first line of
/// `password_file`; errors name the key, never the value.
fn read_password(m: &MailboxSettings) -> Result<SecretString, (&'static str, String)> {
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

/// IMAP folder names are sent as quoted strings (7-bit, no line breaks).
fn check_folder_name(folder: &str) -> Result<(), String> {
    if folder.is_empty()
        || !folder
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(format!(
            "{folder:?}: must be non-empty printable ASCII without quotes or backslashes"
        ));
    }
    Ok(())
}

/// Logs a source's state only when it changes.
struct SourceState {
    name: String,
    kind: &'static str,
    up: Option<bool>,
    waiting: Option<&'static str>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl SourceState {
    fn new(name: &str, kind: &'static str, metrics: Option<Arc<crate::metrics::Metrics>>) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            up: None,
            waiting: None,
            metrics,
        }
    }

    fn up(&mut self) {
        if let Some(m) = &self.metrics {
            m.set_source_up(&self.name, true);
        }
        match self.up {
            Some(true) => {}
            Some(false) => {
                tracing::info!(mailbox = %self.name, kind = self.kind, state = "up", "source {} recovered", self.name);
            }
            None => {
                tracing::info!(mailbox = %self.name, kind = self.kind, state = "up", "source {} is up", self.name);
            }
        }
        self.up = Some(true);
    }

    fn down(&mut self, error: &RemoteError, retry_in: Duration) {
        self.waiting = None;
        if let Some(m) = &self.metrics {
            m.set_source_up(&self.name, false);
        }
        if self.up != Some(false) {
            tracing::error!(
                mailbox = %self.name,
                kind = self.kind,
                state = "down",
                error = %error,
                outage = error.is_outage(),
                retry_in_ms = retry_in.as_millis() as u64,
                "source {} is down; reconnecting with backoff",
                self.name
            );
            self.up = Some(false);
        } else {
            tracing::debug!(mailbox = %self.name, kind = self.kind, error = %error, retry_in_ms = retry_in.as_millis() as u64, "still down");
        }
    }

    /// `idle` or `poll`: logged when the way of waiting changes.
    fn waiting(&mut self, how: &'static str) {
        if self.waiting != Some(how) {
            tracing::info!(mailbox = %self.name, kind = self.kind, wait = how, "waiting for new mail ({how})");
            self.waiting = Some(how);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("mail.example.com"));
        assert!(!is_loopback("10.0.0.1"));
    }

    #[test]
    fn folder_names() {
        assert!(check_folder_name("INBOX").is_ok());
        assert!(check_folder_name("Processed/Bounces").is_ok());
        assert!(check_folder_name("").is_err());
        assert!(check_folder_name("a\"b").is_err());
        assert!(check_folder_name("pä").is_err());
    }

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
