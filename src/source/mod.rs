//! Where bounces come from. Each kind of mailbox is one file that
//! implements [`Fetch`] ([`maildir`]; [`remote`] for IMAP and POP3, over
//! the protocol clients [`imap`], [`pop3`] and [`tls`]), and [`build`] is
//! the one place a `[[mailbox]]` table becomes a [`Source`]. The daemon's
//! supervision loop (hold the lease, drain, wait, back off) is the same for
//! every kind and lives with the app; a source only knows how to drain its
//! mailbox into the intake table and how to wait for more.
//!
//! The protocol clients are deliberately small and hand-written: the daemon
//! needs only a handful of commands, and owning the parser lets us bound every
//! read (timeouts, line and literal sizes) instead of trusting the server.

pub mod imap;
pub mod maildir;
pub mod pop3;
pub mod remote;
pub mod tls;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{DaemonSettings, Mailbox};
use crate::store::Store;

pub use crate::config::TlsMode;

/// Called after each committed batch (the daemon wakes its workers).
pub type OnBatch<'a> = &'a (dyn Fn() + Send + Sync);

/// What one drain did, whatever the kind of source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainSummary {
    /// New intake rows.
    pub stored: usize,
    /// Already stored (same content): acknowledged in the mailbox only.
    pub duplicates: usize,
    /// Listed, then gone before we read it.
    pub vanished: usize,
    /// Set aside (unreadable, or a fetch that failed on its own account) or
    /// still waiting for its retry: left in the mailbox, tried again later.
    pub skipped: usize,
}

impl DrainSummary {
    /// Anything worth a log line happened.
    pub fn is_empty(&self) -> bool {
        self.stored + self.duplicates + self.vanished + self.skipped == 0
    }
}

/// A kind of mailbox: drains it into the intake table, and opens the
/// [`Session`] the daemon keeps between drains.
pub trait Fetch: fmt::Debug + Send + Sync + 'static {
    /// `[[mailbox]] name`.
    fn name(&self) -> &str;
    /// `[[mailbox]] kind`.
    fn kind(&self) -> &'static str;
    /// The rescan / poll period (`poll_interval_secs`).
    fn poll_interval(&self) -> Duration;
    /// Messages set aside now (waiting for their slow retry).
    fn set_aside_count(&self) -> usize;
    /// Checks at start what can be checked before the first drain (a
    /// maildir's folders, a server's login): a refusal is an error, a
    /// server merely unreachable is logged and left to the daemon.
    fn check_at_startup(&self) -> BoxFuture<'_, Result<(), FetchError>>;
    /// Stores everything pending in intake, then acknowledges it; opens and
    /// closes what it needs. Stops between batches when `cancel` fires.
    fn drain<'a>(
        &'a self,
        cancel: &'a CancellationToken,
        on_batch: OnBatch<'a>,
    ) -> BoxFuture<'a, Result<DrainSummary, FetchError>>;
    /// What the daemon runs: a connection or a watch kept between drains.
    fn session(&self) -> Box<dyn Session + '_>;
    fn as_any(&self) -> &dyn Any;
}

/// A source as the daemon runs it: drain, wait for more, drain again.
pub trait Session: Send {
    /// [`Fetch::drain`] over this session (connecting first when needed).
    fn drain<'a>(
        &'a mut self,
        cancel: &'a CancellationToken,
        on_batch: OnBatch<'a>,
    ) -> BoxFuture<'a, Result<DrainSummary, FetchError>>;
    /// How [`Session::wait`] waits now: `idle`, `poll` or `inotify`.
    fn wait_mode(&self) -> &'static str;
    /// Returns when there may be new mail: IMAP IDLE, an inotify event, or
    /// the poll interval; at once when `cancel` fires.
    fn wait<'a>(
        &'a mut self,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), FetchError>>;
    /// Forgets the connection after an error: the next drain reconnects.
    fn reset(&mut self);
    /// Ends the session (IMAP LOGOUT, bounded).
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A configured mailbox of any kind.
#[derive(Debug, Clone)]
pub struct Source(Arc<dyn Fetch>);

impl Source {
    pub fn new(fetch: impl Fetch) -> Self {
        Self(Arc::new(fetch))
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }

    pub fn fetch(&self) -> &dyn Fetch {
        &*self.0
    }

    /// See [`Fetch::drain`].
    pub async fn drain(
        &self,
        cancel: &CancellationToken,
        on_batch: OnBatch<'_>,
    ) -> Result<DrainSummary, FetchError> {
        self.0.drain(cancel, on_batch).await
    }

    /// The source as its own type (tests, kind-specific tools).
    pub fn downcast_ref<T: Fetch>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }
}

/// A `[[mailbox]]` table checked the way `run` checks it (keys, password
/// readable, CA file loadable), ready to become a [`Source`] once there is
/// a store. Nothing is created and no server is contacted.
pub struct Prepared(Box<dyn FnOnce(Store, Clock) -> Source + Send>);

impl Prepared {
    pub fn new(make: impl FnOnce(Store, Clock) -> Source + Send + 'static) -> Self {
        Self(Box::new(make))
    }

    pub fn into_source(self, store: Store, clock: Clock) -> Source {
        (self.0)(store, clock)
    }
}

/// The one place settings become sources: a new kind of mailbox is a file
/// implementing [`Fetch`] and an arm here.
pub fn build(m: &Mailbox, daemon: &DaemonSettings) -> Result<Prepared, FetchError> {
    match m {
        Mailbox::Maildir(m) => maildir::MaildirSource::prepare(m, daemon).map_err(FetchError::from),
        Mailbox::Imap(m) => remote::RemoteSource::prepare_imap(m, daemon).map_err(FetchError::from),
        Mailbox::Pop3(m) => remote::RemoteSource::prepare_pop3(m, daemon).map_err(FetchError::from),
    }
}

/// Why a source failed: its kind's own error, and what the daemon needs to
/// know of it.
pub struct FetchError {
    error: Box<dyn std::error::Error + Send + Sync>,
    outage: bool,
    store: bool,
}

impl FetchError {
    /// `outage`: the database or the mail server is unreachable (retry as
    /// is); `store`: the database failed (the lease session may be gone too).
    pub fn new(
        error: impl std::error::Error + Send + Sync + 'static,
        outage: bool,
        store: bool,
    ) -> Self {
        Self {
            error: Box::new(error),
            outage,
            store,
        }
    }

    /// The database or the mail server is unreachable (retry as is).
    pub fn is_outage(&self) -> bool {
        self.outage
    }

    /// PostgreSQL failed: the mailbox lease may be gone with its session.
    pub fn is_store(&self) -> bool {
        self.store
    }

    /// The kind's own error.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.error.downcast_ref()
    }
}

impl fmt::Debug for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.error, f)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Messages a source could not take (an unreadable maildir file, a fetch
/// that stalled past its deadline), each set aside until a retry time: the
/// rest of the mailbox goes on, the failure is logged once (when first set
/// aside) and counted, and the message is tried again on the slow schedule
/// (`daemon.skipped_retry_secs`). Shared by the clones of one source.
#[derive(Debug, Clone)]
pub struct SetAside {
    retry_after: Duration,
    until: Arc<Mutex<HashMap<String, tokio::time::Instant>>>,
}

impl SetAside {
    pub fn new(retry_after: Duration) -> Self {
        Self {
            retry_after,
            until: Arc::default(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::time::Instant>> {
        match self.until.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// False while `key` is set aside and its retry time has not come.
    pub fn is_due(&self, key: &str) -> bool {
        self.map()
            .get(key)
            .is_none_or(|t| *t <= tokio::time::Instant::now())
    }

    /// Sets `key` aside until the next retry; true the first time (log
    /// then), false when it was set aside already (a retry that failed again).
    pub fn set_aside(&self, key: &str) -> bool {
        let next = tokio::time::Instant::now() + self.retry_after;
        self.map().insert(key.to_owned(), next).is_none()
    }

    /// `key` was taken after all.
    pub fn clear(&self, key: &str) {
        self.map().remove(key);
    }

    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// How many are set aside now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Logs what deserves a line after a batch is stored: a uid the mailbox
/// reused for other content (stored as a new message), a message kept
/// truncated. Returns (stored, duplicates).
pub(crate) fn note_stored(
    mailbox: &str,
    kind: &'static str,
    items: &[crate::store::NewIntake],
    results: &[crate::store::IntakeInsert],
) -> (usize, usize) {
    use crate::store::IntakeInsert;
    let mut stored = 0;
    for (item, result) in items.iter().zip(results) {
        if result.is_stored() {
            stored += 1;
        }
        if let IntakeInsert::UidReused(id) = result {
            tracing::warn!(mailbox, kind, uid = %item.uid, intake_id = id, "the mailbox reused a uid for a message with other content: stored as a new message");
        }
        if let (Some(t), true) = (item.truncated, result.is_stored()) {
            tracing::warn!(mailbox, kind, uid = %item.uid, size = t.original_size, kept = item.raw.len(), "message larger than daemon.max_message_bytes: stored truncated (its first bytes, marked with its full size)");
        }
    }
    (stored, results.len() - stored)
}

/// Where and how to reach a mail server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEndpoint {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// PEM file with the CA(s) to trust instead of the public web PKI, for
    /// servers whose certificate is issued by a private CA.
    pub ca_file: Option<PathBuf>,
    /// Upper bound for connecting and for each network read or write, so a
    /// stalled server cannot hang the daemon.
    pub timeout: Duration,
}

/// Overall deadlines, on top of the per-read timeout: a server sending one
/// byte a second never trips a per-read timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// One message: IMAP `UID FETCH`, POP3 `RETR`.
    pub message: Duration,
    /// Any other command.
    pub command: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            message: Duration::from_secs(300),
            command: Duration::from_secs(120),
        }
    }
}

impl fmt::Display for ServerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (tls={})", self.host, self.port, self.tls)
    }
}

/// Errors of the mailbox protocol clients.
///
/// Credentials never appear here: authentication failures carry the user
/// name and the server's reply only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("TLS error: {0}")]
    Tls(String),
    #[error("certificate of {host} rejected: {reason}")]
    CertificateRejected { host: String, reason: String },
    #[error("{command} failed: {response}")]
    Protocol { command: String, response: String },
    #[error("login as {user:?} refused: {response}")]
    Auth { user: String, response: String },
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    /// The whole command took longer than its deadline (a stalling or
    /// dribbling server); the session is no longer usable.
    #[error("{command} did not complete within its deadline of {after:?} (server stalled)")]
    Deadline { command: String, after: Duration },
    #[error("connection closed by the server")]
    ConnectionClosed,
    #[error("connection unusable after an earlier error; reconnect")]
    ConnectionBroken,
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { size: u64, limit: usize },
    #[error("server does not support {0}")]
    Unsupported(&'static str),
}

pub type Result<T, E = MailboxError> = std::result::Result<T, E>;

/// Largest message the clients keep by default (`daemon.max_message_bytes`):
/// a larger one is kept truncated to this many bytes (see
/// [`FetchedMessage`]); a bound keeps a hostile or broken server from
/// exhausting memory.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = crate::config::DEFAULT_FETCH_BYTES;

/// A fetched message: whole, or its first bytes when it was larger than the
/// size bound (the rest was read and hashed, not kept, so the session stays
/// in step and the same message fetched again is recognised).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedMessage {
    pub raw: Vec<u8>,
    pub truncated: Option<crate::store::Truncated>,
}

impl FetchedMessage {
    pub fn whole(raw: Vec<u8>) -> Self {
        Self {
            raw,
            truncated: None,
        }
    }

    /// Into an intake item under `uid`.
    pub fn into_intake(self, uid: String) -> crate::store::NewIntake {
        crate::store::NewIntake {
            uid,
            raw: self.raw,
            truncated: self.truncated,
        }
    }
}

/// Keeps the first `limit` bytes of a stream and hashes all of it: the
/// bounded-memory reader every source uses for a message.
#[derive(Debug)]
pub(crate) struct BoundedMessage {
    limit: usize,
    kept: Vec<u8>,
    total: u64,
    hash: sha2::Sha256,
}

impl BoundedMessage {
    pub(crate) fn new(limit: usize, expected: Option<u64>) -> Self {
        use sha2::Digest;
        let cap = expected.map_or(8 * 1024, |e| e.min(limit as u64) as usize);
        Self {
            limit,
            kept: Vec::with_capacity(cap),
            total: 0,
            hash: sha2::Sha256::new(),
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        use sha2::Digest;
        self.hash.update(chunk);
        self.total += chunk.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    pub(crate) fn finish(self) -> FetchedMessage {
        use sha2::Digest;
        if self.total > self.kept.len() as u64 {
            FetchedMessage {
                raw: self.kept,
                truncated: Some(crate::store::Truncated {
                    original_size: self.total,
                    content_hash: self.hash.finalize().into(),
                }),
            }
        } else {
            FetchedMessage::whole(self.kept)
        }
    }
}

/// Server text for error messages: lossy UTF-8, without line ending, and
/// truncated so a chatty server cannot blow up logs.
pub(crate) fn server_text(raw: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\r', '\n']);
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_message_set_aside_is_due_again_after_the_retry_delay() {
        let aside = SetAside::new(Duration::from_secs(900));
        assert!(aside.is_due("new/1.host"));
        assert!(aside.set_aside("new/1.host"), "first time: log it");
        assert!(!aside.is_due("new/1.host"));
        tokio::time::advance(Duration::from_secs(899)).await;
        assert!(!aside.is_due("new/1.host"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(aside.is_due("new/1.host"), "retried on the slow schedule");
        assert!(
            !aside.set_aside("new/1.host"),
            "failed again: not logged again"
        );
        aside.clear("new/1.host");
        assert!(aside.is_empty());
    }

    #[test]
    fn a_bounded_message_keeps_its_first_bytes_and_hashes_all() {
        let mut m = BoundedMessage::new(4, None);
        m.push(b"abc");
        m.push(b"defg");
        let f = m.finish();
        assert_eq!(f.raw, b"abcd");
        let t = f.truncated.expect("truncated");
        assert_eq!(t.original_size, 7);
        assert_eq!(t.content_hash, crate::store::content_hash(b"abcdefg"));
        let mut m = BoundedMessage::new(7, None);
        m.push(b"abcdefg");
        assert_eq!(m.finish(), FetchedMessage::whole(b"abcdefg".to_vec()));
    }

    #[test]
    fn server_text_is_truncated() {
        let long = vec![b'x'; 500];
        assert_eq!(server_text(&long).chars().count(), 201);
        assert_eq!(server_text(b"+OK hi\r\n"), "+OK hi");
    }
}
