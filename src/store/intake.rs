//! Durable intake: raw messages as fetched, before analysis.
//!
//! The contract that makes "no bounce is ever lost" hold:
//! 1. a source stores what it fetched with [`Store::intake_insert_batch`]
//!    (one statement, committed on return) and only *then* removes the
//!    messages from its mailbox; a duplicate (same content hash) is already
//!    stored, so it may be removed as well. The uid a mailbox gives a
//!    message is a hint, never an identity: servers reuse POP3 UIDLs, a
//!    maildir name comes back after `after = "delete"`, a broken server
//!    lists one UIDL twice. A known uid with new content is a new message
//!    ([`IntakeInsert::UidReused`], which the sources log);
//! 2. a worker opens a transaction, [`Store::claim_intake`]s due rows
//!    (`FOR UPDATE SKIP LOCKED`: concurrent workers and instances never get
//!    the same row), applies them with [`Store::apply`], marks them done with
//!    [`Store::mark_intake_done`] and commits: all or nothing;
//! 3. when that fails the worker rolls back and calls
//!    [`Store::record_intake_failure`] in a separate transaction: the rows
//!    are retried with capped exponential backoff, then parked as `failed`
//!    (listed by [`Store::list_intake`], requeued by [`Store::retry_intake`]).
//!
//! Done rows keep their raw message until [`Store::purge_intake`] (run by
//! the cleanup job after the retention period); failed rows are never purged.

use super::{Result, SqlContext, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, Row};
use std::collections::HashMap;

/// The result of storing one fetched message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntakeInsert {
    /// Stored as a new queued row with this id.
    Stored(i64),
    /// Stored as a new queued row with this id although the mailbox already
    /// had a message under the same uid (with other content): the server
    /// reused the uid.
    UidReused(i64),
    /// Already stored (same content): nothing written.
    Duplicate,
}

impl IntakeInsert {
    /// A new row was written.
    pub fn is_stored(self) -> bool {
        !matches!(self, Self::Duplicate)
    }
}

/// One fetched message to store.
#[derive(Debug, Clone)]
pub struct NewIntake {
    /// The message's uid in its mailbox (maildir unique name, IMAP
    /// `validity:uid`, POP3 UIDL): a hint for the logs, not an identity.
    pub uid: String,
    /// The message, or its first bytes when `truncated` is set.
    pub raw: Vec<u8>,
    /// Set when `raw` holds only the first bytes of a larger message.
    pub truncated: Option<Truncated>,
}

/// What is known of a message whose `raw` was cut at the size bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    /// The whole message's size in bytes.
    pub original_size: u64,
    /// SHA-256 of the whole message (so that fetching it again is a duplicate).
    pub content_hash: [u8; 32],
}

impl NewIntake {
    /// A whole message.
    pub fn new(uid: impl Into<String>, raw: Vec<u8>) -> Self {
        Self {
            uid: uid.into(),
            raw,
            truncated: None,
        }
    }

    /// The identity of the message: SHA-256 of the whole of it.
    pub fn content_hash(&self) -> [u8; 32] {
        match &self.truncated {
            Some(t) => t.content_hash,
            None => content_hash(&self.raw),
        }
    }

    /// Bytes this item holds in memory (for batches sized by bytes).
    pub fn held_bytes(&self) -> usize {
        self.raw.len() + self.uid.len()
    }
}

/// A queued row claimed by a worker (locked until its transaction ends).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedMessage {
    pub id: i64,
    pub mailbox: String,
    pub uid: String,
    /// The stored message, or its first `prefix` bytes (see [`ClaimLimits`]).
    pub raw: Vec<u8>,
    /// SHA-256 of the whole message (the idempotence key).
    pub content_hash: Vec<u8>,
    /// Set when the fetched message was larger than the size bound and
    /// only its first bytes were stored: its full size.
    pub original_size: Option<i64>,
    /// Failed attempts so far.
    pub attempts: i32,
}

/// How much a worker claims at once: at most `rows` rows, and no more than
/// `bytes` of raw message in total (at least one row), each read only up to
/// `prefix` bytes (the analysis reads no further).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimits {
    pub rows: usize,
    pub bytes: usize,
    pub prefix: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntakeStatus {
    Queued,
    Done,
    Failed,
}

impl IntakeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "queued" => Ok(Self::Queued),
            "done" => Ok(Self::Done),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Input(format!(
                "unknown intake status {other:?}"
            ))),
        }
    }
}

/// One intake row without its raw bytes, for `inmail intake list`.
#[derive(Debug, Clone, Serialize)]
pub struct IntakeRow {
    pub id: i64,
    pub mailbox: String,
    pub uid: String,
    pub status: IntakeStatus,
    pub size: i64,
    /// Full size of a message stored truncated (only its first bytes kept).
    pub original_size: Option<i64>,
    pub attempts: i32,
    pub received_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// Row counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IntakeCounts {
    pub queued: i64,
    /// Queued rows whose next attempt is due at `now`.
    pub due: i64,
    pub done: i64,
    pub failed: i64,
}

/// How failed attempts are spaced: `base * 2^(attempts-1)`, at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: std::time::Duration,
    pub cap: std::time::Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: std::time::Duration::from_secs(5),
            cap: std::time::Duration::from_secs(3600),
        }
    }
}

/// What [`Store::record_intake_failure`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureSummary {
    /// Rows left queued for a later attempt.
    pub retried: u64,
    /// Rows parked as failed (attempts exhausted).
    pub parked: u64,
}

/// An IMAP source's position in its mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub uid_validity: i64,
    pub last_uid: i64,
}

pub fn content_hash(raw: &[u8]) -> [u8; 32] {
    Sha256::digest(raw).into()
}

impl Store {
    /// Stores one fetched message (committed on return).
    pub async fn intake_insert(
        &self,
        mailbox: &str,
        uid: &str,
        raw: &[u8],
        now: DateTime<Utc>,
    ) -> Result<IntakeInsert> {
        let item = NewIntake::new(uid, raw.to_vec());
        let mut out = self
            .intake_insert_batch(mailbox, std::slice::from_ref(&item), now)
            .await?;
        Ok(out.pop().unwrap_or(IntakeInsert::Duplicate))
    }

    /// Stores fetched messages with one statement (committed on return).
    /// One result per item, in order. A message is a duplicate only when its
    /// content is already stored (here or earlier in the batch); a uid the
    /// mailbox already used for other content is stored as a new message
    /// ([`IntakeInsert::UidReused`]).
    pub async fn intake_insert_batch(
        &self,
        mailbox: &str,
        items: &[NewIntake],
        now: DateTime<Utc>,
    ) -> Result<Vec<IntakeInsert>> {
        if mailbox.is_empty() {
            return Err(StoreError::Input("intake: empty mailbox name".into()));
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut uids: Vec<std::borrow::Cow<'_, str>> = Vec::with_capacity(items.len());
        let mut hashes: Vec<Vec<u8>> = Vec::with_capacity(items.len());
        let mut raws: Vec<&[u8]> = Vec::with_capacity(items.len());
        let mut sizes: Vec<Option<i64>> = Vec::with_capacity(items.len());
        let mut item_hashes = Vec::with_capacity(items.len());
        let mut seen_hash = std::collections::HashSet::with_capacity(items.len());
        for it in items {
            if it.uid.is_empty() {
                return Err(StoreError::Input(format!(
                    "intake: empty uid in mailbox {mailbox}"
                )));
            }
            let h = it.content_hash();
            item_hashes.push(h);
            if seen_hash.insert(h) {
                uids.push(super::storable(&it.uid));
                hashes.push(h.to_vec());
                raws.push(&it.raw);
                sizes.push(
                    it.truncated
                        .map(|t| i64::try_from(t.original_size).unwrap_or(i64::MAX)),
                );
            }
        }
        // The outer query reads the snapshot from before the insert: `reused`
        // says whether an older row of this mailbox has the same uid.
        let rows = sqlx::query(
            "WITH ins AS (
                INSERT INTO intake (mailbox, uid, content_hash, raw, original_size,
                                    received_at, next_attempt_at)
                SELECT $1, u, h, r, s, $6, $6
                  FROM unnest($2::text[], $3::bytea[], $4::bytea[], $5::int8[]) AS t(u, h, r, s)
                ON CONFLICT (content_hash) DO NOTHING
                RETURNING id, uid, content_hash)
             SELECT ins.id, ins.content_hash,
                    EXISTS (SELECT 1 FROM intake o
                             WHERE o.mailbox = $1 AND o.uid = ins.uid) AS reused
               FROM ins",
        )
        .bind(mailbox)
        .bind(&uids)
        .bind(&hashes)
        .bind(&raws)
        .bind(&sizes)
        .bind(now);
        // A connection keeps the buffers a big statement grew: one that
        // carried a big batch is closed rather than kept in the pool, so
        // memory stays bounded by the batch in hand.
        let bytes: usize = raws.iter().map(|r| r.len()).sum();
        let conn = self.pool.acquire().await.ctx("storing fetched messages")?;
        let rows = if bytes > 1024 * 1024 {
            // Taken out of the pool (which opens a replacement when needed)
            // and dropped after this statement.
            let mut own = conn.detach();
            rows.fetch_all(&mut own).await
        } else {
            let mut conn = conn;
            rows.fetch_all(&mut *conn).await
        }
        .ctx("storing fetched messages")?;
        let mut stored: HashMap<Vec<u8>, (i64, bool)> = HashMap::with_capacity(rows.len());
        for r in rows {
            stored.insert(r.get("content_hash"), (r.get("id"), r.get("reused")));
        }
        // The first occurrence of a content gets its id; any repeat is a
        // duplicate. A uid seen earlier in the batch with other content is
        // reused as well.
        let mut batch_uids: HashMap<&str, [u8; 32]> = HashMap::with_capacity(items.len());
        Ok(items
            .iter()
            .zip(item_hashes)
            .map(|(it, h)| {
                let reused_in_batch = batch_uids
                    .insert(it.uid.as_str(), h)
                    .is_some_and(|before| before != h);
                match stored.remove(h.as_slice()) {
                    Some((id, reused)) if reused || reused_in_batch => IntakeInsert::UidReused(id),
                    Some((id, _)) => IntakeInsert::Stored(id),
                    None => IntakeInsert::Duplicate,
                }
            })
            .collect())
    }

    /// Claims due queued rows, oldest first, within `limits` (rows and
    /// bytes), locking them until `conn`'s transaction ends; rows locked by
    /// others are skipped. Rows locked by the first step but over the byte
    /// budget stay queued (and are free again when the transaction ends).
    pub async fn claim_intake(
        &self,
        conn: &mut PgConnection,
        limits: ClaimLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedMessage>> {
        let rows = i64::try_from(limits.rows.max(1)).unwrap_or(i64::MAX);
        let candidates = sqlx::query(
            "SELECT id, octet_length(raw)::int8 AS size FROM intake
              WHERE status = 'queued' AND next_attempt_at <= $1
              ORDER BY next_attempt_at, id
              LIMIT $2
              FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(rows)
        .fetch_all(&mut *conn)
        .await
        .ctx("claiming intake rows")?;
        let prefix = limits.prefix.max(1);
        let mut ids = Vec::with_capacity(candidates.len());
        let mut budget = limits.bytes;
        for r in candidates {
            let size = usize::try_from(r.get::<i64, _>("size")).unwrap_or(usize::MAX);
            let held = size.min(prefix);
            if !ids.is_empty() && held > budget {
                break;
            }
            budget = budget.saturating_sub(held);
            ids.push(r.get::<i64, _>("id"));
        }
        self.read_claimed(conn, &ids, prefix).await
    }

    /// Claims the given rows if they are still queued and not locked by
    /// another transaction (used to retry the rows of a failed batch one by
    /// one), each read up to `prefix` bytes.
    pub async fn claim_intake_ids(
        &self,
        conn: &mut PgConnection,
        ids: &[i64],
        prefix: usize,
    ) -> Result<Vec<ClaimedMessage>> {
        let locked: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM intake
              WHERE id = ANY($1) AND status = 'queued'
              ORDER BY id
              FOR UPDATE SKIP LOCKED",
        )
        .bind(ids)
        .fetch_all(&mut *conn)
        .await
        .ctx("claiming intake rows")?;
        self.read_claimed(conn, &locked, prefix.max(1)).await
    }

    /// The rows (already locked by the caller's transaction), in claim order.
    async fn read_claimed(
        &self,
        conn: &mut PgConnection,
        ids: &[i64],
        prefix: usize,
    ) -> Result<Vec<ClaimedMessage>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = i32::try_from(prefix).unwrap_or(i32::MAX);
        sqlx::query_as::<_, ClaimedMessage>(
            "SELECT id, mailbox, uid, substring(raw FROM 1 FOR $2) AS raw, content_hash,
                    original_size, attempts
               FROM intake
              WHERE id = ANY($1)
              ORDER BY next_attempt_at, id",
        )
        .bind(ids)
        .bind(prefix)
        .fetch_all(&mut *conn)
        .await
        .ctx("reading claimed intake rows")
    }

    /// Tries to take the fetch lease of `mailbox`: a session-level advisory
    /// lock on a dedicated connection. It is held as long as the returned
    /// [`MailboxLease`] lives (and its connection does): when the process
    /// dies, PostgreSQL ends the session and another instance takes over.
    /// `None` when another session holds it.
    pub async fn try_lease(&self, mailbox: &str) -> Result<Option<MailboxLease>> {
        let mut conn = PgConnection::connect_with(&self.pool.connect_options())
            .await
            .ctx("opening the lease connection")?;
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('inmail:mailbox:' || $1))")
                .bind(mailbox)
                .fetch_one(&mut conn)
                .await
                .ctx("taking a mailbox lease")?;
        if got {
            Ok(Some(MailboxLease {
                conn,
                mailbox: mailbox.to_owned(),
            }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Marks claimed rows done, in the claiming transaction.
    pub async fn mark_intake_done(
        &self,
        conn: &mut PgConnection,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE intake SET status = 'done', processed_at = $2, last_error = NULL
              WHERE id = ANY($1) AND status = 'queued'",
        )
        .bind(ids)
        .bind(now)
        .execute(&mut *conn)
        .await
        .ctx("marking intake rows done")?;
        Ok(done.rows_affected())
    }

    /// Records a failed attempt on `ids` (in a transaction of its own, after
    /// the claiming one rolled back): the attempt count goes up, the next
    /// attempt is pushed back by `backoff`, and rows that reached
    /// `max_attempts` are parked as failed. Rows no longer queued are left alone.
    pub async fn record_intake_failure(
        &self,
        ids: &[i64],
        error: &str,
        now: DateTime<Utc>,
        max_attempts: i32,
        backoff: Backoff,
    ) -> Result<FailureSummary> {
        let error = super::storable(crate::domain::normalise::clip(error, 2000));
        let rows = sqlx::query(
            "UPDATE intake SET
                 attempts = attempts + 1,
                 last_error = $2,
                 status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'queued' END,
                 next_attempt_at = $4 + make_interval(secs =>
                     least($5::float8 * power(2::float8, least(attempts, 30)), $6::float8))
              WHERE id = ANY($1) AND status = 'queued'
              RETURNING status",
        )
        .bind(ids)
        .bind(error.as_ref())
        .bind(max_attempts)
        .bind(now)
        .bind(backoff.base.as_secs_f64())
        .bind(backoff.cap.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .ctx("recording an intake failure")?;
        let mut s = FailureSummary::default();
        for r in rows {
            if r.get::<String, _>("status") == "failed" {
                s.parked += 1;
            } else {
                s.retried += 1;
            }
        }
        Ok(s)
    }

    /// Intake rows, newest first, without their raw bytes.
    pub async fn list_intake(&self, failed_only: bool, limit: i64) -> Result<Vec<IntakeRow>> {
        let rows = sqlx::query(
            "SELECT id, mailbox, uid, status, length(raw)::int8 AS size, original_size, attempts,
                    received_at,
                    next_attempt_at, last_error, processed_at
               FROM intake
              WHERE NOT $1 OR status = 'failed'
              ORDER BY id DESC
              LIMIT $2",
        )
        .bind(failed_only)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing intake rows")?;
        rows.into_iter()
            .map(|r| {
                Ok(IntakeRow {
                    id: r.get("id"),
                    mailbox: r.get("mailbox"),
                    uid: r.get("uid"),
                    status: IntakeStatus::parse(r.get("status"))?,
                    size: r.get("size"),
                    original_size: r.get("original_size"),
                    attempts: r.get("attempts"),
                    received_at: r.get("received_at"),
                    next_attempt_at: r.get("next_attempt_at"),
                    last_error: r.get("last_error"),
                    processed_at: r.get("processed_at"),
                })
            })
            .collect()
    }

    /// Requeues failed rows (the given ids, or every failed row when `ids`
    /// is `None`) for an immediate attempt with a fresh attempt count.
    /// Queued rows among `ids` are made due now. Returns the rows changed.
    pub async fn retry_intake(&self, ids: Option<&[i64]>, now: DateTime<Utc>) -> Result<u64> {
        let q = match ids {
            Some(ids) => sqlx::query(
                "UPDATE intake SET status = 'queued', attempts = 0, next_attempt_at = $2
                  WHERE id = ANY($1) AND status IN ('failed', 'queued')",
            )
            .bind(ids)
            .bind(now),
            None => sqlx::query(
                "UPDATE intake SET status = 'queued', attempts = 0, next_attempt_at = $1
                  WHERE status = 'failed'",
            )
            .bind(now),
        };
        Ok(q.execute(&self.pool)
            .await
            .ctx("requeueing intake rows")?
            .rows_affected())
    }

    /// Deletes done rows processed before `older_than`. Failed and queued
    /// rows are never purged.
    pub async fn purge_intake(&self, older_than: DateTime<Utc>) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM intake WHERE status = 'done' AND processed_at < $1")
                .bind(older_than)
                .execute(&self.pool)
                .await
                .ctx("purging intake rows")?
                .rows_affected(),
        )
    }

    pub async fn intake_counts(&self, now: DateTime<Utc>) -> Result<IntakeCounts> {
        let r = sqlx::query(
            "SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
                    count(*) FILTER (WHERE status = 'queued' AND next_attempt_at <= $1) AS due,
                    count(*) FILTER (WHERE status = 'done') AS done,
                    count(*) FILTER (WHERE status = 'failed') AS failed
               FROM intake",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .ctx("counting intake rows")?;
        Ok(IntakeCounts {
            queued: r.get("queued"),
            due: r.get("due"),
            done: r.get("done"),
            failed: r.get("failed"),
        })
    }

    pub async fn checkpoint(&self, mailbox: &str) -> Result<Option<Checkpoint>> {
        let r = sqlx::query(
            "SELECT uid_validity, last_uid FROM mailbox_checkpoints WHERE mailbox = $1",
        )
        .bind(mailbox)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a mailbox checkpoint")?;
        Ok(r.map(|r| Checkpoint {
            uid_validity: r.get("uid_validity"),
            last_uid: r.get("last_uid"),
        }))
    }

    pub async fn set_checkpoint(
        &self,
        mailbox: &str,
        cp: Checkpoint,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO mailbox_checkpoints (mailbox, uid_validity, last_uid, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (mailbox) DO UPDATE
                SET uid_validity = EXCLUDED.uid_validity, last_uid = EXCLUDED.last_uid,
                    updated_at = EXCLUDED.updated_at",
        )
        .bind(mailbox)
        .bind(cp.uid_validity)
        .bind(cp.last_uid)
        .bind(now)
        .execute(&self.pool)
        .await
        .ctx("writing a mailbox checkpoint")?;
        Ok(())
    }
}

/// True for errors that mean "the database is not reachable" rather than
/// "this data is wrong": a worker backs off without charging an attempt.
pub fn is_outage(e: &StoreError) -> bool {
    match e {
        StoreError::Unreachable { .. } => true,
        StoreError::Sqlx { cause, .. } => is_connection_error(cause),
        _ => false,
    }
}

pub fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // class 08: connection exception; 57P01..03: admin shutdown, crash
            // shutdown, cannot connect now; 53300: too many connections.
            db.code().is_some_and(|c| {
                c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
            })
        }
        _ => false,
    }
}

/// A held fetch lease (see [`Store::try_lease`]).
#[derive(Debug)]
pub struct MailboxLease {
    conn: PgConnection,
    mailbox: String,
}

impl MailboxLease {
    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    /// Checks that the session (and so the lock) is still alive.
    pub async fn check(&mut self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .ctx("checking a mailbox lease")?;
        Ok(())
    }

    /// Releases the lock and closes the session.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext('inmail:mailbox:' || $1))")
            .bind(&self.mailbox)
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }
}
