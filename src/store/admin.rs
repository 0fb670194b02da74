//! Operator-facing reads and writes: address details, the bounce report,
//! cleanup and manual quarantine changes.

use super::apply::{self, insert_events, EventRow};
use super::{Result, SqlContext, Store, StoreError};
use crate::domain::state::{self, AddressRow, AddressStatus};
use crate::model::{EmailAddress, Reason};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AddressInfo {
    pub address: String,
    pub status: AddressStatus,
    pub error_count: i32,
    pub first_error_at: Option<DateTime<Utc>>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_significant_error_at: Option<DateTime<Utc>>,
    pub last_type: Option<String>,
    pub last_reason: Option<String>,
    pub last_category: Option<String>,
    pub last_text: Option<String>,
    pub quarantined_at: Option<DateTime<Utc>>,
    pub release_at: Option<DateTime<Utc>>,
    /// Most recent first.
    pub events: Vec<AddressEvent>,
}

/// One line of `inmail quarantine list`.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct AddressSummary {
    pub address: String,
    pub status: String,
    pub error_count: i32,
    pub last_reason: Option<String>,
    pub last_category: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub quarantined_at: Option<DateTime<Utc>>,
    pub release_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, FromRow, utoipa::ToSchema)]
pub struct AddressEvent {
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub source: Option<String>,
    pub delivery_log_id: Option<i64>,
    pub correlation: String,
    pub bounce_type: Option<String>,
    pub reason: Option<String>,
    pub category: Option<String>,
    pub enhanced_status: Option<String>,
    pub reply_code: Option<i16>,
    pub diagnostic: Option<String>,
    pub rule_id: Option<String>,
    pub counted: bool,
    pub not_counted_why: Option<String>,
    pub status_before: String,
    pub status_after: String,
    pub count_before: i32,
    pub count_after: i32,
    /// Who made a manual change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, FromRow, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReportRow {
    pub bounce_type: String,
    pub reason: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, FromRow, PartialEq, Eq, utoipa::ToSchema)]
pub struct DomainCount {
    pub domain: String,
    pub hard: i64,
    pub soft: i64,
    pub ignored: i64,
    /// Failures caused by the sending side (blocked IP, authentication...).
    pub sender_side: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub by_reason: Vec<ReportRow>,
    pub by_domain: Vec<DomainCount>,
    pub quarantined: i64,
    pub denylisted: i64,
    pub released: i64,
    pub uncorrelated: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CleanupSummary {
    pub released: u64,
    pub reset: u64,
    pub purged_events: u64,
    pub purged_messages: u64,
}

/// What a manual status change records besides the status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManualChange {
    /// Why, as the address's last reason and the event's.
    pub reason: Option<Reason>,
    /// Free text for the audit trail.
    pub note: Option<String>,
    /// Who: an API token's name, `cli:$USER`.
    pub actor: Option<String>,
}

fn normalise_address(address: &str) -> Result<String> {
    address
        .parse::<EmailAddress>()
        .map(|a| a.key())
        .map_err(|e| StoreError::Input(e.to_string()))
}

impl Store {
    /// The address's row and its `events` most recent events; `None` when
    /// nothing is known about it.
    pub async fn address_info(&self, address: &str, events: i64) -> Result<Option<AddressInfo>> {
        let key = normalise_address(address)?;
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        let row = apply::fetch_addresses(&mut conn, &BTreeSet::from([key.clone()]), false)
            .await?
            .remove(&key);
        let history: Vec<AddressEvent> = sqlx::query_as(
            "SELECT occurred_at, kind, source, delivery_log_id, correlation, bounce_type, reason, category,
                    enhanced_status, reply_code, diagnostic, rule_id, counted, not_counted_why,
                    status_before, status_after, count_before, count_after, actor, note
               FROM bounce_events WHERE address = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2",
        )
        .bind(&key)
        .bind(events)
        .fetch_all(&mut *conn)
        .await
        .ctx("reading address events")?;
        if row.is_none() && history.is_empty() {
            return Ok(None);
        }
        let r = row.unwrap_or_else(AddressRow::fresh);
        Ok(Some(AddressInfo {
            address: key,
            status: r.status,
            error_count: r.error_count,
            first_error_at: r.first_error_at,
            last_error_at: r.last_error_at,
            last_significant_error_at: r.last_significant_error_at,
            last_type: r.last_type,
            last_reason: r.last_reason,
            last_category: r.last_category,
            last_text: r.last_text,
            quarantined_at: r.quarantined_at,
            release_at: r.release_at,
            events: history,
        }))
    }

    /// The bounce summary over `[since, until)`.
    pub async fn report(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> Result<Report> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        let by_reason: Vec<ReportRow> = sqlx::query_as(
            "SELECT bounce_type, reason, count(*) AS count FROM bounce_events
              WHERE kind = 'bounce' AND occurred_at >= $1 AND occurred_at < $2
              GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        )
        .bind(since)
        .bind(until)
        .fetch_all(&mut *conn)
        .await
        .ctx("reporting by reason")?;
        let by_domain: Vec<DomainCount> = sqlx::query_as(
            "SELECT domain,
                    count(*) FILTER (WHERE bounce_type = 'hard' AND not_counted_why IS DISTINCT FROM 'sender_side') AS hard,
                    count(*) FILTER (WHERE bounce_type = 'soft' AND not_counted_why IS DISTINCT FROM 'sender_side') AS soft,
                    count(*) FILTER (WHERE bounce_type IN ('ignored', 'none')) AS ignored,
                    count(*) FILTER (WHERE not_counted_why = 'sender_side') AS sender_side
               FROM bounce_events
              WHERE kind = 'bounce' AND occurred_at >= $1 AND occurred_at < $2
              GROUP BY domain ORDER BY count(*) DESC, domain LIMIT 100",
        )
        .bind(since)
        .bind(until)
        .fetch_all(&mut *conn)
        .await
        .ctx("reporting by domain")?;
        let totals: PgRow = sqlx::query(
            "SELECT count(*) FILTER (WHERE status_after = 'quarantined' AND status_before <> 'quarantined') AS quarantined,
                    count(*) FILTER (WHERE status_after = 'denylisted' AND status_before <> 'denylisted') AS denylisted,
                    count(*) FILTER (WHERE status_before IN ('quarantined', 'denylisted')
                                       AND status_after IN ('valid', 'erroneous')) AS released,
                    count(*) FILTER (WHERE kind = 'bounce' AND correlation = 'none') AS uncorrelated
               FROM bounce_events WHERE occurred_at >= $1 AND occurred_at < $2",
        )
        .bind(since)
        .bind(until)
        .fetch_one(&mut *conn)
        .await
        .ctx("reporting quarantines")?;
        let get = |c: &str| -> Result<i64> { totals.try_get(c).ctx("reading report totals") };
        Ok(Report {
            since,
            until,
            by_reason,
            by_domain,
            quarantined: get("quarantined")?,
            denylisted: get("denylisted")?,
            released: get("released")?,
            uncorrelated: get("uncorrelated")?,
        })
    }

    /// The periodic housekeeping: lifts mailbox-full quarantines that are
    /// due, resets the counters of addresses quiet for the reset period, and
    /// purges events and processed-message hashes past the retention period.
    pub async fn cleanup(&self, now: DateTime<Utc>) -> Result<CleanupSummary> {
        let q = &self.settings.quarantine;
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let released = transition(
            &mut tx,
            "release",
            "status = 'quarantined' AND release_at <= $1 + make_interval(days => $2::int4)",
            0,
            now,
        )
        .await?;
        let reset = transition(
            &mut tx,
            "reset",
            "status IN ('valid', 'erroneous') AND error_count > 0
             AND last_significant_error_at < $1 - make_interval(days => $2::int4)",
            q.reset_after_days,
            now,
        )
        .await?;
        let retention = q.retention_days;
        let purged_events = purge(
            &mut tx,
            "DELETE FROM bounce_events WHERE occurred_at < $1 - make_interval(days => $2::int4)",
            retention,
            now,
        )
        .await?;
        let purged_messages = purge(&mut tx, "DELETE FROM processed_messages WHERE processed_at < $1 - make_interval(days => $2::int4)", retention, now).await?;
        purge(&mut tx, "DELETE FROM domain_sender_failures WHERE day < ($1 - make_interval(days => $2::int4))::date", retention, now).await?;
        // a sender's failure ids are remembered as long as the events they made
        purge(
            &mut tx,
            "DELETE FROM sync_failures WHERE created_at < $1 - make_interval(days => $2::int4)",
            retention,
            now,
        )
        .await?;
        tx.commit().await.ctx("committing cleanup")?;
        Ok(CleanupSummary {
            released,
            reset,
            purged_events,
            purged_messages,
        })
    }

    /// Addresses that are not simply valid (erroneous, quarantined, denylisted,
    /// allowlisted), or only those of `status`, most recent change first.
    pub async fn list_addresses(
        &self,
        status: Option<AddressStatus>,
        limit: i64,
    ) -> Result<Vec<AddressSummary>> {
        sqlx::query_as::<_, AddressSummary>(
            "SELECT address, status, error_count, last_reason, last_category, \
                    last_error_at, quarantined_at, release_at \
               FROM addresses \
              WHERE CASE WHEN $1::text IS NULL THEN status <> 'valid' ELSE status = $1 END \
              ORDER BY COALESCE(quarantined_at, last_error_at) DESC NULLS LAST, address \
              LIMIT $2",
        )
        .bind(status.map(|s| s.to_string()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|cause| StoreError::Sqlx {
            context: "listing addresses",
            cause,
        })
    }

    /// Lifts any quarantine or list status: the address is valid again with
    /// a zero counter. Returns the status it had.
    pub async fn quarantine_release(
        &self,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<AddressStatus> {
        self.set_address_status(address, AddressStatus::Valid, ManualChange::default(), now)
            .await
    }

    /// Puts an address on a list by hand: quarantined, denylisted or allowlisted.
    pub async fn quarantine_add(
        &self,
        address: &str,
        status: AddressStatus,
        now: DateTime<Utc>,
    ) -> Result<AddressStatus> {
        if matches!(status, AddressStatus::Valid | AddressStatus::Erroneous) {
            return Err(StoreError::Input(format!(
                "cannot set status {status} by hand: use quarantined, denylisted or allowlisted (or release)"
            )));
        }
        self.set_address_status(address, status, ManualChange::default(), now)
            .await
    }

    /// Sets an address's status by hand, in one transaction with its audit
    /// event (kind `manual`, naming `change.actor`). `valid` lifts any
    /// quarantine or list status with a zero counter; `quarantined` and
    /// `denylisted` start now with no automatic release; `allowlisted` stops
    /// every failure from counting. `erroneous` is only ever reached by
    /// counting failures. Returns the status the address had.
    pub async fn set_address_status(
        &self,
        address: &str,
        status: AddressStatus,
        change: ManualChange,
        now: DateTime<Utc>,
    ) -> Result<AddressStatus> {
        state::settable_by_hand(status).map_err(StoreError::Input)?;
        let key = normalise_address(address)?;
        let keys = BTreeSet::from([key.clone()]);
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let mut rows = apply::lock_addresses(&mut tx, &keys, now).await?;
        let mut row = rows.remove(&key).unwrap_or_else(AddressRow::fresh);
        let before = (row.status, row.error_count);
        state::set_by_hand(&mut row, status, change.reason, now);
        apply::update_addresses(&mut tx, &[(&key, &row)], now).await?;
        let mut event =
            EventRow::state_change("manual", &key, before, (row.status, row.error_count));
        event.reason = change.reason.map(|r| r.as_str().to_owned());
        event.actor = change.actor;
        event.note = change.note;
        insert_events(&mut tx, &[event], now).await?;
        tx.commit().await.ctx("committing a status change")?;
        Ok(before.0)
    }
}

/// Moves every address matching `filter` (`$1` = now, `$2` = a number of
/// days) back to valid with a zero counter, locking rows in address order,
/// and records one audit event per address.
async fn transition(
    conn: &mut PgConnection,
    kind: &'static str,
    filter: &str,
    days: i64,
    now: DateTime<Utc>,
) -> Result<u64> {
    let sql = format!(
        "WITH old AS (SELECT address, status, error_count FROM addresses WHERE {filter} ORDER BY address FOR UPDATE)
         UPDATE addresses a SET status = 'valid', error_count = 0, quarantined_at = NULL, release_at = NULL,
                updated_at = $1
           FROM old WHERE a.address = old.address
         RETURNING a.address, old.status, old.error_count"
    );
    let days = i32::try_from(days)
        .map_err(|_| StoreError::Input(format!("{days} days is out of range")))?;
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(days)
        .fetch_all(&mut *conn)
        .await
        .ctx("cleaning up addresses")?;
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let address: String = r.try_get(0).ctx("reading cleanup")?;
        let status: String = r.try_get(1).ctx("reading cleanup")?;
        let count: i32 = r.try_get(2).ctx("reading cleanup")?;
        let before = (status.parse().map_err(StoreError::Input)?, count);
        events.push(EventRow::state_change(
            kind,
            &address,
            before,
            (AddressStatus::Valid, 0),
        ));
    }
    insert_events(conn, &events, now).await?;
    Ok(events.len() as u64)
}

async fn purge(conn: &mut PgConnection, sql: &str, days: i64, now: DateTime<Utc>) -> Result<u64> {
    let days = i32::try_from(days)
        .map_err(|_| StoreError::Input(format!("{days} days is out of range")))?;
    let done = sqlx::query(sql)
        .bind(now)
        .bind(days)
        .execute(&mut *conn)
        .await
        .ctx("purging old rows")?;
    Ok(done.rows_affected())
}
