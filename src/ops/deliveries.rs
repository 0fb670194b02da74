//! Registering what was sent (the API's `POST /v1/deliveries`, the CLI's CSV import).
//!
//! Idempotent on (Message-ID, address): a log registered twice is counted
//! as a duplicate and changes nothing. A later log of the same delivery to
//! the same address is a retry of the earlier one and ends its schedule.

use super::OpsError;
use crate::model::EmailAddress;
use crate::store::{DeliveryRecord, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most items one call of [`register_deliveries`] accepts.
pub const MAX_BATCH: usize = 10_000;

/// One delivery log to register: what `deliveries import` takes per CSV row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDelivery {
    /// With or without angle brackets.
    pub message_id: String,
    pub address: String,
    /// The delivery's (sending's) name; created when new.
    #[serde(default)]
    pub delivery: Option<String>,
    #[serde(default)]
    pub profile_id: Option<String>,
    #[serde(default)]
    pub tracking_id: Option<String>,
    /// When it was sent; `now` when absent.
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
}

/// `{"accepted": N, "duplicates": M}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterSummary {
    /// New delivery logs.
    pub accepted: u64,
    /// Items whose (Message-ID, address) was registered already.
    pub duplicates: u64,
}

/// Registers at most [`MAX_BATCH`] delivery logs, all or nothing: every
/// address and Message-ID is checked first, and the first faulty item is
/// reported by its index.
pub async fn register_deliveries(
    store: &Store,
    items: Vec<NewDelivery>,
    now: DateTime<Utc>,
) -> Result<RegisterSummary, OpsError> {
    if items.len() > MAX_BATCH {
        return Err(OpsError::Invalid {
            index: None,
            field: None,
            message: format!(
                "{} deliveries in one request: at most {MAX_BATCH}",
                items.len()
            ),
        });
    }
    let rows = records(items, now, true)?;
    store_rows(store, &rows).await
}

/// The CLI's import: any number of rows, one transaction; a row may have no
/// Message-ID (such rows are never duplicates).
pub async fn import_deliveries(
    store: &Store,
    items: Vec<NewDelivery>,
    now: DateTime<Utc>,
) -> Result<RegisterSummary, OpsError> {
    let rows = records(items, now, false)?;
    store_rows(store, &rows).await
}

async fn store_rows(store: &Store, rows: &[DeliveryRecord]) -> Result<RegisterSummary, OpsError> {
    let r = store.register_deliveries(rows).await?;
    Ok(RegisterSummary {
        accepted: r.accepted,
        duplicates: r.duplicates,
    })
}

fn records(
    items: Vec<NewDelivery>,
    now: DateTime<Utc>,
    message_id_required: bool,
) -> Result<Vec<DeliveryRecord>, OpsError> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, d)| {
            let address = d
                .address
                .parse::<EmailAddress>()
                .map_err(|e| OpsError::Invalid {
                    index: Some(index),
                    field: Some("address"),
                    message: e.to_string(),
                })?
                .key();
            let message_id = normalise_message_id(&d.message_id);
            if message_id.is_none() && message_id_required {
                return Err(OpsError::Invalid {
                    index: Some(index),
                    field: Some("message_id"),
                    message: "empty message_id".into(),
                });
            }
            Ok(DeliveryRecord {
                message_id,
                address,
                delivery: non_empty(d.delivery),
                profile_id: non_empty(d.profile_id),
                tracking_id: non_empty(d.tracking_id),
                sent_at: d.sent_at.unwrap_or(now),
            })
        })
        .collect()
}

/// Message-IDs are stored without angle brackets; an empty one is none.
pub(crate) fn normalise_message_id(id: &str) -> Option<String> {
    let id = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty()).then(|| id.to_owned())
}

pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}
