//! Registering what was sent (the API's `POST /v1/deliveries`, the CLI's CSV
//! import, read by [`read_csv`]).
//!
//! Idempotent on (Message-ID, address): a log registered twice is counted
//! as a duplicate and changes nothing. A later log of the same delivery to
//! the same address is a retry of the earlier one and ends its schedule.

use super::OpsError;
use crate::domain::correlation::message_id_key;
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

/// A deliveries CSV that cannot be imported, and the line at fault (the
/// header row is line 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deliveries CSV, line {line}: {message}")]
pub struct CsvError {
    pub line: u64,
    pub message: String,
}

/// [`import_deliveries`] of a CSV (see [`read_csv`]), all or nothing; an
/// invalid row is reported by its line.
pub async fn import_csv(
    store: &Store,
    reader: impl std::io::Read,
    now: DateTime<Utc>,
) -> Result<RegisterSummary, OpsError> {
    let items = read_csv(reader)?;
    match import_deliveries(store, items, now).await {
        Err(OpsError::Invalid {
            index: Some(i),
            message,
            ..
        }) => Err(CsvError {
            line: i as u64 + 2,
            message,
        }
        .into()),
        other => other,
    }
}

/// Reads a deliveries CSV: a header row naming at least `message_id` and
/// `address`, optionally `delivery`, `profile_id`, `tracking_id` and
/// `sent_at` (RFC 3339; empty means now), in any order and case. Values are
/// trimmed; the addresses are checked when the rows are imported.
pub fn read_csv(reader: impl std::io::Read) -> Result<Vec<NewDelivery>, CsvError> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| CsvError {
            line: 1,
            message: format!("reading the header row: {e}"),
        })?
        .clone();
    let find = |name: &str| headers.iter().position(|c| c.eq_ignore_ascii_case(name));
    let required = |name: &str| {
        find(name).ok_or_else(|| CsvError {
            line: 1,
            message: format!("the header row has no {name:?} column"),
        })
    };
    let (message_id, address) = (required("message_id")?, required("address")?);
    let (delivery, profile_id, tracking_id, sent_at) = (
        find("delivery"),
        find("profile_id"),
        find("tracking_id"),
        find("sent_at"),
    );
    let mut items = Vec::new();
    for (n, record) in csv.records().enumerate() {
        let line = n as u64 + 2;
        let bad = |message: String| CsvError { line, message };
        let rec = record.map_err(|e| bad(e.to_string()))?;
        let field = |i: Option<usize>| {
            i.and_then(|i| rec.get(i))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let sent_at = field(sent_at)
            .map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| bad(format!("sent_at {s:?} is not an RFC 3339 time: {e}")))
            })
            .transpose()?;
        items.push(NewDelivery {
            message_id: field(Some(message_id)).unwrap_or_default(),
            address: field(Some(address)).unwrap_or_default(),
            delivery: field(delivery),
            profile_id: field(profile_id),
            tracking_id: field(tracking_id),
            sent_at,
        });
    }
    Ok(items)
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
    message_id_key(Some(id))
}

pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}
