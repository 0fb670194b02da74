//! The periodic housekeeping, also run by hand (`inmail cleanup`).

use super::OpsError;
use crate::store::{CleanupSummary, Store};
use chrono::{DateTime, Duration, Utc};

/// What one cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub summary: CleanupSummary,
    /// Stored (intake) messages purged.
    pub intake_purged: u64,
}

/// Lifts mailbox-full quarantines that are due, resets the counters of
/// quiet addresses, purges events and message hashes past the retention
/// period, then the stored messages older than `retention_days`.
pub async fn cleanup(
    store: &Store,
    now: DateTime<Utc>,
    retention_days: i64,
) -> Result<Cleanup, OpsError> {
    let summary = store.cleanup(now).await?;
    let intake_purged = store
        .purge_intake(now - Duration::days(retention_days))
        .await?;
    Ok(Cleanup {
        summary,
        intake_purged,
    })
}
