//! A local maildir as a bounce source.
//!
//! What is pending: every file in `new/`, and every file in `cur/` whose
//! flags lack `S` (a mail client or an IMAP server may have moved a message
//! to `cur/` without reading it; a bounce mailbox is read by nobody else, so
//! unseen means unprocessed). `tmp/` is never read: messages there are still
//! being written.
//!
//! [`MaildirSource::drain`] lists what is pending, reads files in batches on
//! a blocking thread (a bounded channel between reading and storing is the
//! backpressure: at most `queue_capacity` messages in memory), stores each
//! batch in the intake table with one statement, and only after that
//! statement has committed moves the batch's files out of the way:
//! - `after = "seen"` (default): to `cur/` with the `S` flag (`NAME:2,S`);
//! - `after = "move"`: to the maildir folder `move_to` (an absolute path, or
//!   a Maildir++ subfolder `ROOT/.move_to`, created if missing), in its `cur/`
//!   with the `S` flag;
//! - `after = "delete"`: removed.
//!
//! A file that vanished between listing and reading (another instance took
//! it) is skipped, not an error. A file that cannot be read (permissions:
//! an MTA delivering with mode 0600 as another user) is set aside: logged
//! once with its path and the error, counted (`skipped` in the drain
//! summary and the `fetched` log line), retried every
//! `daemon.skipped_retry_secs`; the drain goes on with the other files. A
//! file whose name is not UTF-8 is taken like any other (its uid is the
//! name with the invalid bytes replaced). Every file is read up to
//! `daemon.max_message_bytes` (the rest is hashed, not kept: see
//! `store::Truncated`), and batches are cut at `daemon.batch_size` files or
//! `daemon.batch_bytes` bytes. The intake uid is the file's unique name
//! (the part before `:2,`, which stays the same when flags change): a hint
//! for the logs; the content hash says what is a duplicate.

use super::{
    note_stored, BoundedMessage, DrainSummary, Fetch, FetchError, OnBatch, Prepared, Session,
    SetAside, Source,
};
use crate::clock::Clock;
use crate::config::{DaemonSettings, MaildirAfter, MaildirMailbox};
use crate::store::{NewIntake, Store, StoreError};
use futures::future::BoxFuture;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("maildir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mailbox {name}: {message}")]
    Config { name: String, message: String },
    #[error("mailbox {0}: the reading thread failed")]
    Reader(String),
}

impl SourceError {
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Store(e) => crate::store::is_outage(e),
            _ => false,
        }
    }
}

impl From<SourceError> for FetchError {
    fn from(e: SourceError) -> Self {
        let (outage, store) = (e.is_outage(), matches!(e, SourceError::Store(_)));
        FetchError::new(e, outage, store)
    }
}

/// What to do with a file once it is stored ([`MaildirAfter`] with the
/// `move` destination resolved against the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Seen,
    Delete,
    /// Into this maildir's `cur/`.
    Move(PathBuf),
}

#[derive(Clone)]
pub struct MaildirSource {
    name: String,
    root: PathBuf,
    after: After,
    poll: Duration,
    store: Store,
    batch_size: usize,
    batch_bytes: usize,
    max_message_bytes: usize,
    set_aside: SetAside,
    clock: Clock,
}

impl std::fmt::Debug for MaildirSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaildirSource")
            .field("name", &self.name)
            .field("root", &self.root)
            .field("after", &self.after)
            .finish()
    }
}

struct Fetched {
    path: PathBuf,
    item: NewIntake,
}

impl MaildirSource {
    /// Every check building the source makes, without a store and without
    /// creating anything (`check-config` runs it too, so that it accepts
    /// exactly what `run` accepts).
    pub fn prepare(m: &MaildirMailbox, daemon: &DaemonSettings) -> Result<Prepared, SourceError> {
        let root = m.path.clone();
        let after = match &m.after {
            MaildirAfter::Seen => After::Seen,
            MaildirAfter::Delete => After::Delete,
            MaildirAfter::Move { to } => {
                let p = Path::new(to);
                After::Move(if p.is_absolute() {
                    p.to_path_buf()
                } else if to.starts_with('.') {
                    root.join(to)
                } else {
                    root.join(format!(".{to}"))
                })
            }
        };
        check_structure(&root)?;
        if let After::Move(dest) = &after {
            // `run` creates it; it must at least be creatable.
            if dest.exists() && !dest.is_dir() {
                return Err(SourceError::Config {
                    name: m.name.clone(),
                    message: format!("move_to: {} is not a directory", dest.display()),
                });
            }
        }
        let name = m.name.clone();
        let poll = Duration::from_secs(
            m.poll_interval_secs
                .unwrap_or(daemon.poll_interval_secs)
                .max(1),
        );
        let batch_size = daemon.batch_size.min(daemon.queue_capacity).max(1);
        let batch_bytes = daemon.batch_bytes.max(1);
        let max_message_bytes = daemon.max_message_bytes.max(1);
        let set_aside = SetAside::new(Duration::from_secs(daemon.skipped_retry_secs.max(1)));
        Ok(Prepared::new(move |store, clock| {
            Source::new(Self {
                name,
                root,
                after,
                poll,
                store,
                batch_size,
                batch_bytes,
                max_message_bytes,
                set_aside,
                clock,
            })
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `new/` (watched for arrivals).
    pub fn new_dir(&self) -> PathBuf {
        self.root.join("new")
    }

    /// Checks the maildir is there (`cur/`, `new/`, `tmp/`), creating the
    /// `move` destination if needed.
    pub fn check(&self) -> Result<(), SourceError> {
        self.check_structure()?;
        if let After::Move(dest) = &self.after {
            for sub in ["cur", "new", "tmp"] {
                let p = dest.join(sub);
                std::fs::create_dir_all(&p)
                    .map_err(|source| SourceError::Io { path: p, source })?;
            }
        }
        Ok(())
    }

    /// Checks the maildir is there (`cur/`, `new/`, `tmp/`), changing nothing.
    pub fn check_structure(&self) -> Result<(), SourceError> {
        check_structure(&self.root)
    }

    /// Pending files: `new/*`, then `cur/*` without the `S` flag, each sorted
    /// by name (maildir names start with the delivery time).
    pub fn list_pending(&self) -> Result<Vec<PathBuf>, SourceError> {
        let mut out = list_dir(&self.root.join("new"))?;
        out.sort();
        let mut cur: Vec<PathBuf> = list_dir(&self.root.join("cur"))?
            .into_iter()
            .filter(|p| !p.file_name().is_some_and(|n| has_seen_flag(n.as_bytes())))
            .collect();
        cur.sort();
        out.extend(cur);
        Ok(out)
    }

    /// Stores everything pending in intake and moves it out of the way.
    /// Stops between batches when `cancel` fires (the batch in hand is
    /// finished). `on_batch` is called after each stored batch (to wake
    /// the workers).
    pub async fn drain(
        &self,
        cancel: &CancellationToken,
        on_batch: OnBatch<'_>,
    ) -> Result<DrainSummary, SourceError> {
        let me = self.clone();
        let files = tokio::task::spawn_blocking(move || me.list_pending())
            .await
            .map_err(|_| SourceError::Reader(self.name.clone()))??;
        let mut summary = DrainSummary::default();
        if files.is_empty() {
            return Ok(summary);
        }
        // One batch read ahead of the one being stored: memory is bounded
        // by two batches (queued or being read, and storing), each within
        // `batch_bytes` (or one message up to `max_message_bytes`).
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ReadBatch>(1);
        let (batch_size, batch_bytes, limit) =
            (self.batch_size, self.batch_bytes, self.max_message_bytes);
        let reader_cancel = cancel.clone();
        let set_aside = self.set_aside.clone();
        let mailbox = self.name.clone();
        let handle = tokio::runtime::Handle::current();
        let reader = tokio::task::spawn_blocking(move || -> Result<(), SourceError> {
            let mut permit = match handle.block_on(tx.reserve()) {
                Ok(p) => Some(p),
                Err(_) => return Ok(()),
            };
            let mut batch = ReadBatch::default();
            let mut bytes = 0usize;
            for path in files {
                if reader_cancel.is_cancelled() {
                    return Ok(());
                }
                let key = path.to_string_lossy().into_owned();
                if !set_aside.is_due(&key) {
                    batch.skipped += 1;
                    continue;
                }
                match read_bounded(&path, limit) {
                    Ok(item) => {
                        set_aside.clear(&key);
                        let Some(name) = path.file_name() else {
                            continue;
                        };
                        if name.to_str().is_none() {
                            tracing::warn!(mailbox = %mailbox, path = %path.display(), "maildir file name is not UTF-8: taken with the invalid bytes replaced in its uid");
                        }
                        let uid = name_lossy(unique_part(name.as_bytes()));
                        let item = item.into_intake(uid);
                        bytes += item.held_bytes();
                        batch.items.push(Fetched { item, path });
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => batch.vanished += 1,
                    Err(e) => {
                        if set_aside.set_aside(&key) {
                            tracing::error!(mailbox = %mailbox, path = %path.display(), error = %e, retry_in_secs = set_aside.retry_after().as_secs(), "cannot read a maildir file: set aside, the other files go on");
                        }
                        batch.skipped += 1;
                    }
                }
                if batch.items.len() >= batch_size || bytes >= batch_bytes {
                    let Some(room) = permit.take() else {
                        return Ok(());
                    };
                    room.send(std::mem::take(&mut batch));
                    bytes = 0;
                    // Wait for room before reading the next batch: one
                    // batch queued while one is stored, never a third in hand.
                    match handle.block_on(tx.reserve()) {
                        Ok(p) => permit = Some(p),
                        Err(_) => return Ok(()), // the storing side stopped
                    }
                }
            }
            if let Some(permit) = permit {
                permit.send(batch);
            }
            Ok(())
        });
        let mut result = Ok(());
        while let Some(batch) = rx.recv().await {
            summary.vanished += batch.vanished;
            summary.skipped += batch.skipped;
            if batch.items.is_empty() {
                continue;
            }
            match self.store_batch(batch.items).await {
                Ok((stored, dup)) => {
                    summary.stored += stored;
                    summary.duplicates += dup;
                    on_batch();
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if cancel.is_cancelled() {
                break;
            }
        }
        drop(rx);
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if result.is_ok() {
                    result = Err(e);
                }
            }
            Err(_) => {
                if result.is_ok() {
                    result = Err(SourceError::Reader(self.name.clone()));
                }
            }
        }
        result.map(|()| summary)
    }

    /// Files set aside now (unreadable, waiting for their retry).
    pub fn set_aside_count(&self) -> usize {
        self.set_aside.len()
    }

    /// Stores one batch (one committed statement), then moves its files.
    async fn store_batch(&self, batch: Vec<Fetched>) -> Result<(usize, usize), SourceError> {
        let (paths, items): (Vec<PathBuf>, Vec<NewIntake>) =
            batch.into_iter().map(|f| (f.path, f.item)).unzip();
        let results = self
            .store
            .intake_insert_batch(&self.name, &items, (self.clock)())
            .await?;
        let (stored, dup) = note_stored(&self.name, "maildir", &items, &results);
        drop(items);
        // Committed: every file of the batch is now durable in intake
        // (stored now, or before as a duplicate) and may leave the mailbox.
        let after = self.after.clone();
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || -> Result<(), SourceError> {
            for p in &paths {
                finish(&root, &after, p)?;
            }
            Ok(())
        })
        .await
        .map_err(|_| SourceError::Reader(self.name.clone()))??;
        Ok((stored, dup))
    }
}

impl Fetch for MaildirSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "maildir"
    }

    fn poll_interval(&self) -> Duration {
        self.poll
    }

    fn set_aside_count(&self) -> usize {
        self.set_aside.len()
    }

    fn check_at_startup(&self) -> BoxFuture<'_, Result<(), FetchError>> {
        Box::pin(async move { self.check().map_err(FetchError::from) })
    }

    fn drain<'a>(
        &'a self,
        cancel: &'a CancellationToken,
        on_batch: OnBatch<'a>,
    ) -> BoxFuture<'a, Result<DrainSummary, FetchError>> {
        Box::pin(async move {
            MaildirSource::drain(self, cancel, on_batch)
                .await
                .map_err(FetchError::from)
        })
    }

    fn session(&self) -> Box<dyn Session + '_> {
        Box::new(MaildirSession::new(self))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The daemon's view of a maildir: drains, and between them an inotify
/// watch on `new/` (a coalescing signal) behind the periodic rescan.
struct MaildirSession<'a> {
    source: &'a MaildirSource,
    events: tokio::sync::mpsc::Receiver<()>,
    /// Keeps the channel open without a watcher (no event ever comes).
    _sender: tokio::sync::mpsc::Sender<()>,
    watcher: Option<notify::RecommendedWatcher>,
}

impl<'a> MaildirSession<'a> {
    fn new(source: &'a MaildirSource) -> Self {
        use notify::Watcher;
        let (sender, events) = tokio::sync::mpsc::channel::<()>(1);
        let tx = sender.clone();
        let watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
            let _ = tx.try_send(());
        })
        .and_then(|mut w| {
            w.watch(&source.new_dir(), notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(mailbox = %source.name, error = %e, "cannot watch new/; relying on the periodic rescan");
                None
            }
        };
        Self {
            source,
            events,
            _sender: sender,
            watcher,
        }
    }
}

impl Session for MaildirSession<'_> {
    fn drain<'a>(
        &'a mut self,
        cancel: &'a CancellationToken,
        on_batch: OnBatch<'a>,
    ) -> BoxFuture<'a, Result<DrainSummary, FetchError>> {
        Fetch::drain(self.source, cancel, on_batch)
    }

    fn wait_mode(&self) -> &'static str {
        if self.watcher.is_some() {
            "inotify"
        } else {
            "poll"
        }
    }

    fn wait<'a>(
        &'a mut self,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        Box::pin(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = self.events.recv() => {
                    // let a burst of deliveries settle into one drain
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while self.events.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(self.source.poll) => {}
            }
            Ok(())
        })
    }

    fn reset(&mut self) {}

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// What the reading thread hands over: a batch, and what it skipped.
#[derive(Default)]
struct ReadBatch {
    items: Vec<Fetched>,
    vanished: usize,
    skipped: usize,
}

fn name_lossy(name: impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(name.as_ref()).into_owned()
}

/// Reads a file up to `limit` bytes, hashing all of it (bounded memory
/// whatever the file's size).
fn read_bounded(path: &Path, limit: usize) -> io::Result<super::FetchedMessage> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata().ok().map(|m| m.len());
    let mut message = BoundedMessage::new(limit, size);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(message.finish()),
            Ok(n) => message.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `cur/`, `new/` and `tmp/` are directories.
fn check_structure(root: &Path) -> Result<(), SourceError> {
    for sub in ["cur", "new", "tmp"] {
        let p = root.join(sub);
        if !p.is_dir() {
            return Err(SourceError::Io {
                path: p,
                source: io::Error::new(io::ErrorKind::NotFound, "not a maildir directory"),
            });
        }
    }
    Ok(())
}

/// Moves (or deletes) one stored file. A file already gone is fine.
fn finish(root: &Path, after: &After, path: &Path) -> Result<(), SourceError> {
    let Some(name) = path.file_name() else {
        return Ok(());
    };
    let seen = OsString::from_vec(seen_name(name.as_bytes()));
    let res = match after {
        After::Delete => std::fs::remove_file(path),
        After::Seen => std::fs::rename(path, root.join("cur").join(&seen)),
        After::Move(dest) => std::fs::rename(path, dest.join("cur").join(&seen)),
    };
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SourceError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Regular files of `dir` whose name does not start with `.`; names that
/// are not UTF-8 included.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let io_err = |source| SourceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err)? {
        let e = match e {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(e)),
        };
        let name = e.file_name();
        if name.as_bytes().starts_with(b".") {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_file()) {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// The unique part of a maildir file name: everything before `:2,` (or
/// before the first `:`).
pub fn unique_part(name: &[u8]) -> &[u8] {
    match memchr::memchr(b':', name) {
        Some(i) => &name[..i],
        None => name,
    }
}

/// The flags of a `cur/` name (`NAME:2,FLAGS`), if it has an info part.
fn flags(name: &[u8]) -> Option<&[u8]> {
    memchr::memmem::find(name, b":2,").map(|i| &name[i + 3..])
}

fn has_seen_flag(name: &[u8]) -> bool {
    flags(name).is_some_and(|f| f.contains(&b'S'))
}

/// `NAME:2,FLAGS` with `S` added (flags kept sorted, as maildir wants).
pub fn seen_name(name: &[u8]) -> Vec<u8> {
    let unique = unique_part(name);
    let mut f: Vec<u8> = flags(name).unwrap_or(b"").to_vec();
    if !f.contains(&b'S') {
        f.push(b'S');
    }
    f.sort_unstable();
    f.dedup();
    let mut out = unique.to_vec();
    out.extend_from_slice(b":2,");
    out.extend_from_slice(&f);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(unique_part(b"123.abc.host"), b"123.abc.host");
        assert_eq!(unique_part(b"123.abc.host:2,RS"), b"123.abc.host");
        assert_eq!(seen_name(b"123.h"), b"123.h:2,S");
        assert_eq!(seen_name(b"123.h:2,T"), b"123.h:2,ST");
        assert_eq!(seen_name(b"123.h:2,RS"), b"123.h:2,RS");
        assert_eq!(seen_name(b"1.\xff.h"), b"1.\xff.h:2,S");
        assert!(has_seen_flag(b"1.h:2,FS"));
        assert!(!has_seen_flag(b"1.h:2,F"));
        assert!(!has_seen_flag(b"1.h"));
    }
}
