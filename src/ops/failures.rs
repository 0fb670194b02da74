//! Synchronous failures: replies refused during the SMTP dialogue, qualified
//! and applied exactly like a bounce recipient.
//!
//! The reply text becomes a [`RecipientReport`] the way the analysis reads a
//! DSN's Diagnostic-Code ([`RecipientReport::from_smtp_reply`]), the rule set
//! gives its verdict, and the store applies it through the bounce path: same
//! counting, quarantine, sender-side categories, retries and "to qualify"
//! queue. Its delivery log is marked `failure_mode = 'sync'` (and created
//! when the delivery was never registered).

use super::deliveries::{non_empty, normalise_message_id};
use super::OpsError;
use crate::analysis::RecipientReport;
use crate::model::EmailAddress;
use crate::rules::RuleSet;
use crate::store::{Store, SyncFailureInput};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::store::SyncFailureResult;

/// Most items one call accepts.
pub const MAX_BATCH: usize = 10_000;

/// Longest reply kept; a longer one is refused rather than cut silently.
pub const MAX_REPLY_BYTES: usize = 4096;

/// One recipient the remote server refused during the SMTP dialogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncFailure {
    /// The sender's idempotence key: a repeated id changes nothing and gets
    /// the first result back.
    #[serde(default)]
    pub id: Option<String>,
    pub address: String,
    /// What ties the failure to what was sent: at least one of `message_id`
    /// and `tracking_id`.
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub tracking_id: Option<String>,
    #[serde(default)]
    pub delivery: Option<String>,
    #[serde(default)]
    pub profile_id: Option<String>,
    /// The SMTP answer as received: `550 5.1.1 <a@b>: Recipient address
    /// rejected: User unknown`, or several `550-...` lines.
    pub reply: String,
    #[serde(default)]
    pub remote_mta: Option<String>,
    /// When the server refused; `now` when absent.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// Qualifies and applies at most [`MAX_BATCH`] synchronous failures, all or
/// nothing. Returns one result per item, in input order.
pub async fn record_sync_failures(
    store: &Store,
    rules: &RuleSet,
    items: Vec<SyncFailure>,
    now: DateTime<Utc>,
) -> Result<Vec<SyncFailureResult>, OpsError> {
    if items.len() > MAX_BATCH {
        return Err(OpsError::Invalid {
            index: None,
            field: None,
            message: format!(
                "{} failures in one request: at most {MAX_BATCH}",
                items.len()
            ),
        });
    }
    let inputs = items
        .into_iter()
        .enumerate()
        .map(|(index, f)| input(rules, index, f, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(store.record_sync_failures(&inputs, now).await?)
}

fn input(
    rules: &RuleSet,
    index: usize,
    f: SyncFailure,
    now: DateTime<Utc>,
) -> Result<SyncFailureInput, OpsError> {
    let invalid = |field: &'static str, message: String| OpsError::Invalid {
        index: Some(index),
        field: Some(field),
        message,
    };
    let address: EmailAddress = f
        .address
        .parse()
        .map_err(|e: crate::model::ParseError| invalid("address", e.to_string()))?;
    let message_id = f.message_id.as_deref().and_then(normalise_message_id);
    let tracking_id = non_empty(f.tracking_id);
    if message_id.is_none() && tracking_id.is_none() {
        return Err(invalid(
            "message_id",
            "a failure needs a message_id or a tracking_id to tie it to what was sent".into(),
        ));
    }
    if f.reply.trim().is_empty() {
        return Err(invalid("reply", "empty reply".into()));
    }
    if f.reply.len() > MAX_REPLY_BYTES {
        return Err(invalid(
            "reply",
            format!(
                "reply of {} bytes: at most {MAX_REPLY_BYTES}",
                f.reply.len()
            ),
        ));
    }
    let id = match f.id {
        Some(id) if id.is_empty() => return Err(invalid("id", "empty id".into())),
        id => id,
    };
    let report = RecipientReport::from_smtp_reply(address, &f.reply, non_empty(f.remote_mta));
    let verdict = rules.qualify(&report);
    Ok(SyncFailureInput {
        id,
        report,
        verdict,
        message_id,
        tracking_id,
        delivery: non_empty(f.delivery),
        profile_id: non_empty(f.profile_id),
        at: f.at.unwrap_or(now),
    })
}
