//! The reads behind the HTTP API's send-time check and health: which of a
//! batch of addresses a sender must not mail now, the size of the "to
//! qualify" queue, and a ping.

use super::{Result, SqlContext, Store};
use chrono::{DateTime, Utc};
use sqlx::FromRow;

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
