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
//! it) is skipped, not an error. The intake key is the file's unique name:
//! the part before `:2,`, which stays the same when flags change.

use crate::config::MailboxSettings;
use crate::pipeline::Clock;
use crate::store::{IntakeInsert, NewIntake, Store, StoreError};
use std::io;
use std::path::{Path, PathBuf};
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

/// What to do with a file once it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Seen,
    Delete,
    /// Into this maildir's `cur/`.
    Move(PathBuf),
}

/// What one [`MaildirSource::drain`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainSummary {
    /// New intake rows.
    pub stored: usize,
    /// Already stored (same uid or same content): removed from the mailbox only.
    pub duplicates: usize,
    /// Listed, then gone before we read it.
    pub vanished: usize,
}

#[derive(Clone)]
pub struct MaildirSource {
    name: String,
    root: PathBuf,
    after: After,
    store: Store,
    batch_size: usize,
    queue_capacity: usize,
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
    pub fn new(
        m: &MailboxSettings,
        store: Store,
        batch_size: usize,
        queue_capacity: usize,
        clock: Clock,
    ) -> Result<Self, SourceError> {
        let config = |message: String| SourceError::Config {
            name: m.name.clone(),
            message,
        };
        let root = m
            .path
            .clone()
            .ok_or_else(|| config("path is required for a maildir".into()))?;
        let after = match m.after.as_deref().unwrap_or("seen") {
            "seen" => After::Seen,
            "delete" => After::Delete,
            "move" => {
                let to = m
                    .move_to
                    .as_deref()
                    .ok_or_else(|| config("after = \"move\" needs move_to".into()))?;
                let p = Path::new(to);
                After::Move(if p.is_absolute() {
                    p.to_path_buf()
                } else if to.starts_with('.') {
                    root.join(to)
                } else {
                    root.join(format!(".{to}"))
                })
            }
            other => return Err(config(format!("unknown after = {other:?}"))),
        };
        Ok(Self {
            name: m.name.clone(),
            root,
            after,
            store,
            batch_size: batch_size.max(1),
            queue_capacity: queue_capacity.max(1),
            clock,
        })
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
        for sub in ["cur", "new", "tmp"] {
            let p = self.root.join(sub);
            if !p.is_dir() {
                return Err(SourceError::Io {
                    path: p,
                    source: io::Error::new(io::ErrorKind::NotFound, "not a maildir directory"),
                });
            }
        }
        if let After::Move(dest) = &self.after {
            for sub in ["cur", "new", "tmp"] {
                let p = dest.join(sub);
                std::fs::create_dir_all(&p)
                    .map_err(|source| SourceError::Io { path: p, source })?;
            }
        }
        Ok(())
    }

    /// Pending files: `new/*`, then `cur/*` without the `S` flag, each sorted
    /// by name (maildir names start with the delivery time).
    pub fn list_pending(&self) -> Result<Vec<PathBuf>, SourceError> {
        let mut out = list_dir(&self.root.join("new"))?;
        out.sort();
        let mut cur: Vec<PathBuf> = list_dir(&self.root.join("cur"))?
            .into_iter()
            .filter(|p| !file_name(p).is_some_and(has_seen_flag))
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
        on_batch: &(dyn Fn() + Send + Sync),
    ) -> Result<DrainSummary, SourceError> {
        let me = self.clone();
        let files = tokio::task::spawn_blocking(move || me.list_pending())
            .await
            .map_err(|_| SourceError::Reader(self.name.clone()))??;
        let mut summary = DrainSummary::default();
        if files.is_empty() {
            return Ok(summary);
        }
        let depth = (self.queue_capacity / self.batch_size).max(1);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<Fetched>, usize)>(depth);
        let batch_size = self.batch_size;
        let reader_cancel = cancel.clone();
        let reader = tokio::task::spawn_blocking(move || -> Result<(), SourceError> {
            for chunk in files.chunks(batch_size) {
                if reader_cancel.is_cancelled() {
                    break;
                }
                let mut batch = Vec::with_capacity(chunk.len());
                let mut vanished = 0;
                for path in chunk {
                    match std::fs::read(path) {
                        Ok(raw) => {
                            let Some(uid) = file_name(path).map(unique_part) else {
                                continue;
                            };
                            batch.push(Fetched {
                                item: NewIntake {
                                    uid: uid.to_owned(),
                                    raw,
                                },
                                path: path.clone(),
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => vanished += 1,
                        Err(source) => {
                            return Err(SourceError::Io {
                                path: path.clone(),
                                source,
                            })
                        }
                    }
                }
                if tx.blocking_send((batch, vanished)).is_err() {
                    break; // the storing side stopped (error or shutdown)
                }
            }
            Ok(())
        });
        let mut result = Ok(());
        while let Some((batch, vanished)) = rx.recv().await {
            summary.vanished += vanished;
            if batch.is_empty() {
                continue;
            }
            match self.store_batch(batch).await {
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

    /// Stores one batch (one committed statement), then moves its files.
    async fn store_batch(&self, batch: Vec<Fetched>) -> Result<(usize, usize), SourceError> {
        let (paths, items): (Vec<PathBuf>, Vec<NewIntake>) =
            batch.into_iter().map(|f| (f.path, f.item)).unzip();
        let results = self
            .store
            .intake_insert_batch(&self.name, &items, (self.clock)())
            .await?;
        drop(items);
        let stored = results
            .iter()
            .filter(|r| matches!(r, IntakeInsert::Stored(_)))
            .count();
        let dup = results.len() - stored;
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

/// Moves (or deletes) one stored file. A file already gone is fine.
fn finish(root: &Path, after: &After, path: &Path) -> Result<(), SourceError> {
    let Some(name) = file_name(path) else {
        return Ok(());
    };
    let res = match after {
        After::Delete => std::fs::remove_file(path),
        After::Seen => std::fs::rename(path, root.join("cur").join(seen_name(name))),
        After::Move(dest) => std::fs::rename(path, dest.join("cur").join(seen_name(name))),
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
        if name.to_str().is_none_or(|n| n.starts_with('.')) {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_file()) {
            out.push(e.path());
        }
    }
    Ok(out)
}

fn file_name(p: &Path) -> Option<&str> {
    p.file_name().and_then(|n| n.to_str())
}

/// The unique part of a maildir file name: everything before `:2,` (or
/// before the first `:`).
pub fn unique_part(name: &str) -> &str {
    name.split_once(':').map_or(name, |(u, _)| u)
}

/// The flags of a `cur/` name (`NAME:2,FLAGS`), if it has an info part.
fn flags(name: &str) -> Option<&str> {
    name.split_once(":2,").map(|(_, f)| f)
}

fn has_seen_flag(name: &str) -> bool {
    flags(name).is_some_and(|f| f.contains('S'))
}

/// `NAME:2,FLAGS` with `S` added (flags kept sorted, as maildir wants).
pub fn seen_name(name: &str) -> String {
    let unique = unique_part(name);
    let mut f: Vec<char> = flags(name).unwrap_or("").chars().collect();
    if !f.contains(&'S') {
        f.push('S');
    }
    f.sort_unstable();
    f.dedup();
    let f: String = f.into_iter().collect();
    format!("{unique}:2,{f}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(unique_part("123.abc.host"), "123.abc.host");
        assert_eq!(unique_part("123.abc.host:2,RS"), "123.abc.host");
        assert_eq!(seen_name("123.h"), "123.h:2,S");
        assert_eq!(seen_name("123.h:2,T"), "123.h:2,ST");
        assert_eq!(seen_name("123.h:2,RS"), "123.h:2,RS");
        assert!(has_seen_flag("1.h:2,FS"));
        assert!(!has_seen_flag("1.h:2,F"));
        assert!(!has_seen_flag("1.h"));
    }
}
