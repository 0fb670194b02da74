//! OpenAPI descriptions of the write operations' types (defined in
//! [`crate::ops`] without a schema): the handlers take and return the ops
//! types themselves; these only document them, field for field.
#![allow(dead_code)] // documentation only: never built

use chrono::{DateTime, Utc};
use utoipa::ToSchema;

/// One delivery log: what `inmail deliveries import` takes per CSV row.
#[derive(ToSchema)]
pub struct NewDelivery {
    /// With or without angle brackets.
    pub message_id: String,
    pub address: String,
    /// The delivery's (sending's) name; created when new.
    pub delivery: Option<String>,
    pub profile_id: Option<String>,
    pub tracking_id: Option<String>,
    /// When it was sent (RFC 3339); now when absent.
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(ToSchema)]
pub struct RegisterSummary {
    /// New delivery logs.
    pub accepted: u64,
    /// Items whose (message_id, address) was registered already.
    pub duplicates: u64,
}

/// One recipient the remote server refused during the SMTP dialogue.
#[derive(ToSchema)]
pub struct SyncFailure {
    /// The sender's idempotence key: a repeated id changes nothing and gets the first result back.
    pub id: Option<String>,
    pub address: String,
    /// At least one of message_id and tracking_id.
    pub message_id: Option<String>,
    pub tracking_id: Option<String>,
    pub delivery: Option<String>,
    pub profile_id: Option<String>,
    /// The SMTP answer as received, e.g. `550 5.1.1 <a@b>: Recipient address rejected: User unknown`; multi-line allowed.
    #[schema(example = "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown")]
    pub reply: String,
    pub remote_mta: Option<String>,
    /// When the server refused (RFC 3339); now when absent.
    pub at: Option<DateTime<Utc>>,
}

/// What one synchronous failure did.
#[derive(ToSchema)]
pub struct SyncFailureResult {
    pub address: String,
    /// hard, soft, ignored or none.
    #[schema(rename = "type")]
    pub bounce_type: String,
    pub reason: String,
    pub category: String,
    /// The rule that decided.
    pub rule: String,
    /// A rule explained the text (else it joined the to-qualify queue).
    pub qualified: bool,
    /// It counted against the address.
    pub counted: bool,
    pub status_before: String,
    pub status_after: String,
    /// The address's error count after this failure.
    pub error_count: i32,
}

/// A delivery log due for another attempt.
#[derive(ToSchema)]
pub struct DueRetry {
    pub delivery_log_id: i64,
    pub message_id: Option<String>,
    pub address: String,
    pub delivery: Option<String>,
    pub profile_id: Option<String>,
    pub tracking_id: Option<String>,
    /// Retries scheduled so far, this one included.
    pub retry_count: i32,
    pub next_retry_at: DateTime<Utc>,
    #[schema(rename = "type")]
    pub bounce_type: String,
    pub reason: String,
    pub diagnostic: Option<String>,
}

/// The body of `PUT /v1/addresses/{address}/status`.
#[derive(ToSchema)]
pub struct StatusChange {
    /// valid, quarantined, denylisted or allowlisted.
    pub status: String,
    /// A reason (e.g. `user_unknown`) recorded with the change.
    pub reason: Option<String>,
    /// Free text kept in the audit event.
    pub note: Option<String>,
}
