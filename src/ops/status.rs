//! Setting an address's status by hand (quarantine, denylist, allowlist, valid), audited.

use super::OpsError;
use crate::model::{EmailAddress, Reason};
use crate::store::{AddressInfo, AddressStatus, ManualChange, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Events returned with the address after a change.
pub const EVENTS: i64 = 20;

/// The body of `PUT /v1/addresses/{address}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// valid, quarantined, denylisted or allowlisted.
    pub status: AddressStatus,
    #[serde(default)]
    pub reason: Option<Reason>,
    #[serde(default)]
    pub note: Option<String>,
}

/// Sets `address`'s status in one transaction with an audit event (kind
/// `manual`) naming `actor` — the API token's name, `cli:$USER` for the
/// command line — and returns the address as `inmail address` shows it.
/// `valid` lifts any quarantine or list status and zeroes the counter;
/// `erroneous` cannot be set by hand.
pub async fn set_status(
    store: &Store,
    address: &str,
    status: AddressStatus,
    reason: Option<Reason>,
    note: Option<String>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<AddressInfo, OpsError> {
    let key = address
        .parse::<EmailAddress>()
        .map_err(|e| OpsError::Invalid {
            index: None,
            field: Some("address"),
            message: e.to_string(),
        })?
        .key();
    if status == AddressStatus::Erroneous {
        return Err(OpsError::Invalid {
            index: None,
            field: Some("status"),
            message: "erroneous is reached by counting failures, not set by hand: \
                      use valid, quarantined, denylisted or allowlisted"
                .into(),
        });
    }
    let change = ManualChange {
        reason,
        note: note.filter(|n| !n.trim().is_empty()),
        actor: Some(actor.to_owned()),
    };
    store.set_address_status(&key, status, change, now).await?;
    store.address_info(&key, EVENTS).await?.ok_or_else(|| {
        OpsError::Store(StoreError::NotFound {
            what: "address",
            id: key,
        })
    })
}
