//! The reads behind the HTTP API's send-time check and health: which of a
//! batch of addresses a sender must not mail now, the size of the "to
//! qualify" queue, and a ping.

use super::admin::{AddressEvent, AddressInfo};
use super::apply::address_from_row;
use super::{Result, SqlContext, Store, StoreError};
use crate::domain::state::AddressRow;
use chrono::{DateTime, Utc};
use sqlx::{FromRow, Row};

/// An address a sender must not mail now (quarantined or denylisted).
#[derive(Debug, Clone, FromRow)]
pub struct ExcludedRow {
    pub address: String,
    pub status: String,
    pub last_reason: Option<String>,
    pub last_category: Option<String>,
    pub quarantined_at: Option<DateTime<Utc>>,
    pub release_at: Option<DateTime<Utc>>,
}

impl Store {
    /// What [`Store::address_info`] returns, in one round trip (the API's
    /// `GET /v1/addresses/{a}` is on the send path): the row of `key` (a
    /// normalised address) and its `events` most recent events; `None`
    /// when nothing is known about it.
    pub async fn address_view(&self, key: &str, events: i64) -> Result<Option<AddressInfo>> {
        let row = sqlx::query(
            "SELECT a.address, a.status, a.error_count, a.first_error_at, a.last_error_at,
                    a.last_significant_error_at, a.last_type, a.last_reason, a.last_category,
                    a.last_text, a.quarantined_at, a.release_at,
                    (SELECT json_agg(e ORDER BY e.occurred_at DESC, e.id DESC)
                       FROM (SELECT id, occurred_at, kind, source, delivery_log_id, correlation,
                                    bounce_type, reason, category, enhanced_status, reply_code,
                                    diagnostic, rule_id, counted, not_counted_why, status_before,
                                    status_after, count_before, count_after, actor, note
                               FROM bounce_events WHERE address = k.key
                              ORDER BY occurred_at DESC, id DESC LIMIT $2) e) AS events
               FROM (SELECT $1::text AS key) k LEFT JOIN addresses a ON a.address = k.key",
        )
        .bind(key)
        .bind(events)
        .fetch_one(&self.pool)
        .await
        .ctx("reading an address")?;
        let events: Option<serde_json::Value> =
            row.try_get("events").ctx("reading address events")?;
        let history: Vec<AddressEvent> = match events {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| StoreError::Input(format!("reading address events: {e}")))?,
        };
        let known: Option<String> = row.try_get("address").ctx("reading an address")?;
        let r = match known {
            Some(_) => address_from_row(&row)?.1,
            None if history.is_empty() => return Ok(None),
            None => AddressRow::fresh(),
        };
        Ok(Some(AddressInfo {
            address: key.to_owned(),
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

    /// The rows of `keys` (normalised addresses) that are denylisted, or
    /// quarantined without a release already due at `now`: one index probe
    /// per key, whatever the size of the table.
    pub async fn excluded_addresses(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<ExcludedRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as::<_, ExcludedRow>(
            "SELECT address, status, last_reason, last_category, quarantined_at, release_at
               FROM addresses
              WHERE address = ANY($1)
                AND (status = 'denylisted'
                     OR (status = 'quarantined' AND (release_at IS NULL OR release_at > $2)))",
        )
        .bind(keys)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .ctx("checking addresses")
    }

    /// Rows of the "to qualify" queue still waiting for a person.
    pub async fn count_to_qualify(&self) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM message_qualifications WHERE status = 'to_qualify'",
        )
        .fetch_one(&self.pool)
        .await
        .ctx("counting the to-qualify queue")
    }

    /// Stored messages not yet processed (queued, due or not).
    pub async fn count_intake_backlog(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM intake WHERE status = 'queued'")
            .fetch_one(&self.pool)
            .await
            .ctx("counting the intake backlog")
    }

    /// The database answers a query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .ctx("pinging the database")?;
        Ok(())
    }
}
