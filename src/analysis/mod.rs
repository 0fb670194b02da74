//! Turns one raw message into a structured [`Analysis`]: what kind of message
//! it is, which recipients failed, with which codes and diagnostic text, and
//! what ties it to the message that was sent.
//!
//! This is the only module that uses `mailparse`. It never panics on input and
//! bounds the work per message ([`Limits`]): a capped message is analysed on its
//! first bytes and the result says `truncated`.

use crate::model::{Action, Category, EmailAddress, EnhancedStatus, MessageKind, OriginalRef, ReplyCode};
use serde::Serialize;

/// Bounds on the work spent on one message.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of a message that are analysed; the rest is ignored.
    pub max_message_bytes: usize,
    /// Bytes of one decoded MIME part that are looked at.
    pub max_part_bytes: usize,
    /// MIME parts visited.
    pub max_parts: usize,
    /// Recipients reported for one message.
    pub max_recipients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 2 * 1024 * 1024,
            max_part_bytes: 256 * 1024,
            max_parts: 64,
            max_recipients: 5000,
        }
    }
}

/// How the analysis ties a bounce to what was sent.
#[derive(Debug, Clone)]
pub struct Correlation {
    /// Header carrying the platform's own id in the messages it sends.
    pub tracking_header: String,
    /// Regex with named groups `local` and `domain` (and optionally `token`)
    /// matched against the bounce's envelope recipient.
    pub verp_pattern: regex::Regex,
}

impl Default for Correlation {
    fn default() -> Self {
        Self {
            tracking_header: "X-Inmail-Id".into(),
            verp_pattern: regex::Regex::new(DEFAULT_VERP_PATTERN).expect("default VERP pattern compiles"),
        }
    }
}

pub const DEFAULT_VERP_PATTERN: &str = r"^[^+@]+\+(?P<local>[^=@]+)=(?P<domain>[^=@+]+)@";

#[derive(Debug, Clone, Default)]
pub struct Analyzer {
    pub limits: Limits,
    pub correlation: Correlation,
}

/// The result of analysing one message.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub kind: MessageKind,
    /// Why the message could not be fully read, if it could not.
    pub error: Option<String>,
    /// The message was larger than the limits and only its start was analysed.
    pub truncated: bool,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub reporting_mta: Option<String>,
    pub arrival_date: Option<String>,
    /// ARF Feedback-Type (abuse, fraud, opt-out, ...).
    pub feedback_type: Option<String>,
    pub original: OriginalRef,
    pub recipients: Vec<RecipientReport>,
}

/// One recipient as the bounce reports it, before qualification.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientReport {
    pub address: EmailAddress,
    pub original_recipient: Option<String>,
    pub action: Option<Action>,
    pub status: Option<EnhancedStatus>,
    /// The status was not in the message but inferred from the reply code or text.
    pub status_inferred: bool,
    pub reply_code: Option<ReplyCode>,
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    pub last_attempt: Option<String>,
    /// What the message's structure alone says (auto-reply, complaint, delay,
    /// success); rules decide for plain failures.
    pub hint: Option<Category>,
    /// DSN fields this parser does not interpret, kept as they came.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_fields: Vec<(String, String)>,
}

impl RecipientReport {
    pub fn new(address: EmailAddress) -> Self {
        Self {
            address,
            original_recipient: None,
            action: None,
            status: None,
            status_inferred: false,
            reply_code: None,
            diagnostic: None,
            remote_mta: None,
            last_attempt: None,
            hint: None,
            extra_fields: Vec::new(),
        }
    }
}

impl Analysis {
    pub fn empty(kind: MessageKind) -> Self {
        Self {
            kind,
            error: None,
            truncated: false,
            subject: None,
            from: None,
            reporting_mta: None,
            arrival_date: None,
            feedback_type: None,
            original: OriginalRef::default(),
            recipients: Vec::new(),
        }
    }
}

impl Analyzer {
    pub fn new(limits: Limits, correlation: Correlation) -> Self {
        Self { limits, correlation }
    }

    /// Analyse one raw message. Never panics; problems land in `error`.
    pub fn analyse(&self, raw: &[u8]) -> Analysis {
        let _ = raw;
        Analysis::empty(MessageKind::NotBounce)
    }
}
