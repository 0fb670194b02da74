//! The retry schedule: delivery logs due for another attempt.
//!
//! A soft failure (bounce or synchronous) of a delivery still valid
//! schedules the next attempt: `[retry] quick_retries` attempts
//! `quick_interval_minutes` apart, then `daily_retries` a day apart, all
//! within the delivery's validity (each delivery may override these), never
//! for an address quarantined or denylisted. Registering a later delivery of
//! the same sending to the same address is that retry: it ends the earlier
//! log's schedule and carries it on.

use super::OpsError;
use crate::store::Store;
use chrono::{DateTime, Utc};

pub use crate::store::DueRetry;

/// Most rows one call returns.
pub const MAX_LIMIT: i64 = 10_000;

/// Delivery logs whose retry is due at or before `due_before`, oldest
/// first, at most `limit` (1 to [`MAX_LIMIT`]).
pub async fn due_retries(
    store: &Store,
    due_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DueRetry>, OpsError> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(OpsError::Invalid {
            index: None,
            field: Some("limit"),
            message: format!("limit {limit}: between 1 and {MAX_LIMIT}"),
        });
    }
    Ok(store.due_retries(due_before, limit).await?)
}
