//! Address lookup, the list of addresses not simply valid, and the
//! send-time check.

use super::OpsError;
use crate::model::EmailAddress;
use crate::store::{AddressInfo, AddressStatus, AddressSummary, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

/// Most addresses one check (or one write batch) takes.
pub const MAX_BATCH: usize = 10_000;

/// Events shown with an address when the caller does not say.
pub const DEFAULT_EVENTS: i64 = 20;

/// Most events one lookup returns.
pub const MAX_EVENTS: i64 = 1000;

/// The store's key of `address` (lowercased), or why it is not an address.
pub fn address_key(address: &str) -> Result<String, String> {
    address
        .parse::<EmailAddress>()
        .map(|a| a.key())
        .map_err(|e| e.to_string())
}

/// What `inmail address --json` shows: the address's row and its `events`
/// most recent events; `None` when nothing is known about it.
pub async fn lookup(
    store: &Store,
    address: &str,
    events: i64,
) -> Result<Option<AddressInfo>, OpsError> {
    let key = address_key(address).map_err(|message| OpsError::Invalid {
        index: None,
        field: Some("address"),
        message,
    })?;
    if !(0..=MAX_EVENTS).contains(&events) {
        return Err(OpsError::Invalid {
            index: None,
            field: Some("events"),
            message: format!("events = {events}: must be between 0 and {MAX_EVENTS}"),
        });
    }
    Ok(store.address_view(&key, events).await?)
}

/// Addresses that are not simply valid, or only those of `status`, most
/// recent change first, at most `limit`.
pub async fn list(
    store: &Store,
    status: Option<AddressStatus>,
    limit: i64,
) -> Result<Vec<AddressSummary>, OpsError> {
    Ok(store.list_addresses(status, limit).await?)
}

/// An address the sender must not mail now, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Exclusion {
    /// As the caller wrote it.
    pub address: String,
    /// `quarantined` or `denylisted`.
    pub status: String,
    pub reason: Option<String>,
    pub category: Option<String>,
    /// When it was put on the list.
    pub since: Option<DateTime<Utc>>,
    /// When a quarantine is lifted by itself (mailbox full), if it is.
    pub release_at: Option<DateTime<Utc>>,
}

/// A string of the batch that is not an address.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct InvalidAddress {
    /// Its position in the batch.
    pub index: usize,
    pub address: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CheckResult {
    /// Addresses looked at (the valid ones).
    pub checked: usize,
    /// Those a sender must not mail now, in input order.
    pub excluded: Vec<Exclusion>,
    /// Strings that are not addresses, in input order.
    pub invalid: Vec<InvalidAddress>,
}

/// The send-time check: which of `addresses` a sender must not mail at
/// `now` — denylisted ones, and quarantined ones whose release is not due.
/// Erroneous and allowlisted addresses are sendable. Strings that are not
/// addresses are listed in `invalid` without failing the batch.
pub async fn check(
    store: &Store,
    addresses: &[String],
    now: DateTime<Utc>,
) -> Result<CheckResult, OpsError> {
    if addresses.len() > MAX_BATCH {
        return Err(OpsError::Invalid {
            index: None,
            field: Some("addresses"),
            message: format!(
                "{} addresses: at most {MAX_BATCH} per request",
                addresses.len()
            ),
        });
    }
    let mut invalid = Vec::new();
    let mut keys: Vec<Option<String>> = Vec::with_capacity(addresses.len());
    for (index, a) in addresses.iter().enumerate() {
        match address_key(a) {
            Ok(k) => keys.push(Some(k)),
            Err(message) => {
                invalid.push(InvalidAddress {
                    index,
                    address: a.clone(),
                    message,
                });
                keys.push(None);
            }
        }
    }
    let mut unique: Vec<String> = keys.iter().flatten().cloned().collect();
    unique.sort_unstable();
    unique.dedup();
    let rows = store.excluded_addresses(&unique, now).await?;
    let by_key: HashMap<&str, _> = rows.iter().map(|r| (r.address.as_str(), r)).collect();
    let excluded = addresses
        .iter()
        .zip(&keys)
        .filter_map(|(a, k)| {
            let r = by_key.get(k.as_deref()?)?;
            Some(Exclusion {
                address: a.clone(),
                status: r.status.clone(),
                reason: r.last_reason.clone(),
                category: r.last_category.clone(),
                since: r.quarantined_at,
                release_at: r.release_at,
            })
        })
        .collect();
    Ok(CheckResult {
        checked: addresses.len() - invalid.len(),
        excluded,
        invalid,
    })
}
