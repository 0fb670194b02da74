//! What was sent: delivery logs registered by the sender (API, CSV import,
//! or created by a synchronous failure), and the retry schedule read back.
//!
//! A delivery log is unique per (message id, address): registering the same
//! one twice changes nothing. A later log of the same delivery (sending) to
//! the same address is a retry of the earlier one: it ends the earlier log's
//! schedule and carries it on (retries done, first send time).

use super::{is_deadlock, Result, SqlContext, Store, StoreError};
use crate::model::{BounceType, Reason};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use std::collections::{BTreeSet, HashMap};

/// Delivery logs inserted per statement.
const CHUNK: usize = 10_000;

/// One delivery log to register, already validated and normalised: the
/// address is its key (lowercase), the Message-ID has no angle brackets and
/// empty optional values are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub message_id: Option<String>,
    pub address: String,
    /// The delivery's (sending's) name; created when new.
    pub delivery: Option<String>,
    pub profile_id: Option<String>,
    pub tracking_id: Option<String>,
    pub sent_at: DateTime<Utc>,
}

/// What a registration did: new logs, and logs already registered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRegistration {
    pub accepted: u64,
    pub duplicates: u64,
}

/// A delivery log whose temporary failure is due for another attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueRetry {
    pub delivery_log_id: i64,
    pub message_id: Option<String>,
    pub address: String,
    pub delivery: Option<String>,
    pub profile_id: Option<String>,
    pub tracking_id: Option<String>,
    /// Retries scheduled so far, this one included.
    pub retry_count: i32,
    pub next_retry_at: DateTime<Utc>,
    #[serde(rename = "type")]
    pub bounce_type: BounceType,
    pub reason: Reason,
    pub diagnostic: Option<String>,
}

/// Which logs an insert leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Those whose (message id, address) is registered already.
    New,
    /// Also those that a tracking id or Message-ID already ties to a log of
    /// the address: a synchronous failure creates a log only for a delivery
    /// never registered.
    Unknown,
}

impl Store {
    /// Registers delivery logs in one transaction: all or nothing.
    pub async fn register_deliveries(
        &self,
        rows: &[DeliveryRecord],
    ) -> Result<DeliveryRegistration> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
            let mut names = HashMap::new();
            let mut accepted = 0;
            let mut failed = None;
            for chunk in rows.chunks(CHUNK) {
                match insert_logs(&mut tx, chunk, &mut names, Insert::New).await {
                    Ok(n) => accepted += n,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let result = match failed {
                Some(e) => Err(e),
                None => tx.commit().await.ctx("committing delivery logs"),
            };
            match result {
                Ok(()) => {
                    return Ok(DeliveryRegistration {
                        accepted,
                        duplicates: rows.len() as u64 - accepted,
                    })
                }
                Err(e) if attempt < 3 && is_deadlock(&e) => {
                    tracing::warn!(attempt, error = %e, "deadlock while registering deliveries; retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Delivery logs whose temporary failure is due at or before
    /// `due_before`, oldest first; never those of an address that must not
    /// be mailed now (quarantined, denylisted), whatever happened to it after
    /// the retry was scheduled.
    pub async fn due_retries(
        &self,
        due_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueRetry>> {
        let rows = sqlx::query(
            "SELECT l.id, l.message_id, l.address, d.name, l.profile_id, l.tracking_id, l.retry_count,
                    l.next_retry_at, l.failure_type, l.failure_reason, l.error_text
               FROM delivery_logs l
               LEFT JOIN deliveries d ON d.id = l.delivery_id
              WHERE l.next_retry_at <= $1
                AND NOT EXISTS (SELECT 1 FROM addresses a
                                 WHERE a.address = l.address AND a.status IN ('quarantined', 'denylisted'))
              ORDER BY l.next_retry_at, l.id
              LIMIT $2",
        )
        .bind(due_before)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .ctx("listing due retries")?;
        rows.iter()
            .map(|r| {
                let get = |e| StoreError::Sqlx {
                    context: "reading a due retry",
                    cause: e,
                };
                let bounce_type: Option<String> = r.try_get(8).map_err(get)?;
                let reason: Option<String> = r.try_get(9).map_err(get)?;
                let parse_err = |e: crate::model::ParseError| StoreError::Input(e.to_string());
                Ok(DueRetry {
                    delivery_log_id: r.try_get(0).map_err(get)?,
                    message_id: r.try_get(1).map_err(get)?,
                    address: r.try_get(2).map_err(get)?,
                    delivery: r.try_get(3).map_err(get)?,
                    profile_id: r.try_get(4).map_err(get)?,
                    tracking_id: r.try_get(5).map_err(get)?,
                    retry_count: r.try_get(6).map_err(get)?,
                    next_retry_at: r.try_get(7).map_err(get)?,
                    bounce_type: bounce_type
                        .as_deref()
                        .unwrap_or("soft")
                        .parse()
                        .map_err(parse_err)?,
                    reason: reason
                        .as_deref()
                        .unwrap_or("not_defined")
                        .parse()
                        .map_err(parse_err)?,
                    diagnostic: r.try_get(10).map_err(get)?,
                })
            })
            .collect()
    }
}

/// Inserts one chunk of delivery logs, creating the deliveries it names
/// (`names` caches their ids across chunks), and ends the schedules the new
/// logs retry. Returns how many logs were new.
pub(crate) async fn insert_logs(
    conn: &mut PgConnection,
    rows: &[DeliveryRecord],
    names: &mut HashMap<String, i64>,
    which: Insert,
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let missing: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.delivery.as_deref())
        .filter(|n| !names.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        let missing: Vec<&str> = missing.into_iter().collect();
        // DO NOTHING, not an update: an existing delivery's row stays
        // unlocked, so concurrent registrations of one sending run side by side.
        sqlx::query(
            "INSERT INTO deliveries (name) SELECT unnest($1::text[]) ORDER BY 1
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&missing)
        .execute(&mut *conn)
        .await
        .ctx("creating deliveries")?;
        let ids: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, name FROM deliveries WHERE name = ANY($1)")
                .bind(&missing)
                .fetch_all(&mut *conn)
                .await
                .ctx("reading deliveries")?;
        names.extend(ids.into_iter().map(|(id, name)| (name, id)));
    }
    let delivery_ids: Vec<Option<i64>> = rows
        .iter()
        .map(|r| r.delivery.as_ref().and_then(|n| names.get(n).copied()))
        .collect();
    // Sorted by the unique key: concurrent registrations of the same logs
    // wait for each other instead of deadlocking.
    let inserted = sqlx::query(
        "INSERT INTO delivery_logs (delivery_id, address, message_id, tracking_id, profile_id, sent_at)
         SELECT t.did, t.addr, t.mid, t.tid, t.pid, t.sent
           FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
                AS t(did, addr, mid, tid, pid, sent)
          WHERE NOT $7 OR NOT EXISTS (
                SELECT 1 FROM delivery_logs l
                 WHERE l.address = t.addr AND (l.tracking_id = t.tid OR l.message_id = t.mid))
          ORDER BY t.mid, t.addr
         ON CONFLICT (message_id, address) DO NOTHING
         RETURNING id, delivery_id, address, sent_at",
    )
    .bind(&delivery_ids)
    .bind(rows.iter().map(|r| r.address.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.message_id.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.tracking_id.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.profile_id.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.sent_at).collect::<Vec<_>>())
    .bind(which == Insert::Unknown)
    .fetch_all(&mut *conn)
    .await
    .ctx("inserting delivery logs")?;
    let count = inserted.len() as u64;
    let (mut id, mut did, mut addr, mut sent) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in &inserted {
        let what = "reading new delivery logs";
        let d: Option<i64> = r.try_get(1).ctx(what)?;
        let Some(d) = d else { continue };
        let (i, a, t): (i64, String, DateTime<Utc>) = (
            r.try_get(0).ctx(what)?,
            r.try_get(2).ctx(what)?,
            r.try_get(3).ctx(what)?,
        );
        id.push(i);
        did.push(d);
        addr.push(a);
        sent.push(t);
    }
    if !id.is_empty() {
        end_schedules(conn, &id, &did, &addr, &sent).await?;
    }
    Ok(count)
}

/// A new log of a delivery to an address whose earlier log awaits a retry is
/// that retry: the earlier schedule ends, and the new log carries it on (the
/// retries done and the first send, from which the validity runs).
async fn end_schedules(
    conn: &mut PgConnection,
    id: &[i64],
    did: &[i64],
    addr: &[String],
    sent: &[DateTime<Utc>],
) -> Result<()> {
    sqlx::query(
        "WITH ended AS (
             UPDATE delivery_logs l SET next_retry_at = NULL
               FROM unnest($1::int8[], $2::int8[], $3::text[], $4::timestamptz[]) AS t(id, did, addr, sent)
              WHERE l.next_retry_at IS NOT NULL AND l.address = t.addr AND l.delivery_id = t.did
                AND l.id <> t.id AND l.sent_at <= t.sent
             RETURNING t.id AS new_id, l.retry_count, COALESCE(l.first_sent_at, l.sent_at) AS first_sent
         )
         UPDATE delivery_logs n
            SET retry_count = GREATEST(n.retry_count, e.rc), first_sent_at = e.fs
           FROM (SELECT new_id, max(retry_count) AS rc, min(first_sent) AS fs FROM ended GROUP BY new_id) e
          WHERE n.id = e.new_id",
    )
    .bind(id)
    .bind(did)
    .bind(addr)
    .bind(sent)
    .execute(&mut *conn)
    .await
    .ctx("ending retried schedules")?;
    Ok(())
}
