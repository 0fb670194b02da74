//! Turns one raw message into a structured [`Analysis`]: what kind of message
//! it is, which recipients failed, with which codes and diagnostic text, and
//! what ties it to the message that was sent.
//!
//! This is the only module that uses `mailparse`. It never panics on input and
//! bounds the work per message ([`Limits`]): a capped message is analysed on its
//! first bytes and the result says `truncated`.
//!
//! The order of the checks matters: structured reports (RFC 3464 DSN, RFC 5965
//! ARF) are trusted first, then auto-replies, then the free-text bounces of
//! MTAs that predate or ignore RFC 3464 (`freetext.rs`), and only a message with
//! a bounce's envelope *and* a failure in its text is a bounce.
//!
//! One file per concern:
//!
//! | file | what it reads |
//! |---|---|
//! | `mime.rs` | the MIME walk: top headers, report parts, texts, the returned original's part |
//! | `original.rs` | the copy of the original inside a text, and the text before it |
//! | `headers.rs` | header signals: who sent it, auto-reply marks, the original's ids, VERP |
//! | `fields.rs` | `Name: value` blocks of report parts |
//! | `dsn.rs`, `arf.rs`, `ses.rs`, `autoreply.rs` | one structured format each (RFC 3464/6533, RFC 5965 and JMRP, Amazon SES JSON, RFC 3834) |
//! | `freetext.rs` | the free-text reader, with `recipients.rs` (which addresses failed), `blocks.rs` (each one's diagnostic) and `smtp.rs` (reply code, enhanced status, the command answered) |
//!
//! **Adding a format**: a structured one (its own MIME part or header) gets a
//! file beside `dsn.rs` with a `parse(msg, &mut Analysis)` and one call in
//! [`Analyzer::analyse`]'s order of checks, above the free-text reader; a new
//! free-text wording needs no code, only what its recipients and codes look
//! like, which the free-text reader already reads. What a failure *means*
//! (hard, soft, why) is never decided here: that is [`crate::rules`].

mod anchored;
mod arf;
mod autoreply;
mod blocks;
mod dsn;
mod fields;
mod freetext;
mod headers;
mod mime;
mod original;
mod recipients;
mod ses;
mod smtp;

use crate::model::{
    Action, Category, EmailAddress, EnhancedStatus, MessageKind, OriginalRef, ReplyCode,
    SmtpCommand,
};
use serde::Serialize;

pub use smtp::{find_reply_code, find_smtp_command, find_status};

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
            // lowercase: the form the analysis compares header names in
            tracking_header: "x-inmail-id".into(),
            verp_pattern: regex::Regex::new(DEFAULT_VERP_PATTERN)
                .expect("the built-in VERP pattern compiles"),
        }
    }
}

/// `bounces+alice=example.com@…` → `alice@example.com`; an optional signed
/// token comes first: `bounces+TOKEN.alice=example.com@…`.
pub const DEFAULT_VERP_PATTERN: &str =
    r"^[^+@]+\+(?:(?P<token>[0-9a-fA-F]{8,64})\.)?(?P<local>[^=@]+)=(?P<domain>[^=@+]+)@";

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
    /// The command the remote server refused, when the bounce says.
    pub smtp_command: Option<SmtpCommand>,
    pub remote_mta: Option<String>,
    pub last_attempt: Option<String>,
    /// What the message's structure alone says (auto-reply, complaint, delay,
    /// success); rules decide for plain failures.
    pub hint: Option<Category>,
    /// DSN fields this parser does not interpret, kept as they came.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_fields: Vec<(String, String)>,
    /// The bounce's human-readable text, for rules when the diagnostic alone
    /// explains nothing. Not serialised: it can be long and is per message.
    #[serde(skip)]
    pub context: Option<std::sync::Arc<str>>,
}

impl RecipientReport {
    /// A feedback-loop complainant: the structure alone decides.
    pub fn complaint(address: EmailAddress, feedback_type: &str) -> Self {
        let mut r = Self::new(address);
        r.hint = Some(Category::SpamComplaint);
        r.diagnostic = Some(format!("feedback-type: {feedback_type}"));
        r
    }

    /// A recipient the remote server refused during the SMTP dialogue, from
    /// its reply as received (`550 5.1.1 <a@b>: User unknown`, or several
    /// `550-...` lines). The reply is read as a DSN's Diagnostic-Code is: one
    /// line, reply code, enhanced status (the one next to the reply first),
    /// refused command, else a status class inferred. Rules then qualify it
    /// exactly as a bounce quoting the same reply.
    pub fn from_smtp_reply(address: EmailAddress, reply: &str, remote_mta: Option<String>) -> Self {
        let mut r = Self::new(address);
        let d = reply.split_whitespace().collect::<Vec<_>>().join(" ");
        r.reply_code = smtp::find_reply_code(&d);
        r.status = smtp::find_status(&d);
        r.smtp_command = smtp::find_smtp_command(&d);
        r.diagnostic = (!d.is_empty()).then_some(d);
        r.remote_mta = remote_mta;
        if r.status.is_none() {
            smtp::infer_status(&mut r);
        }
        r
    }

    pub fn new(address: EmailAddress) -> Self {
        Self {
            address,
            original_recipient: None,
            action: None,
            status: None,
            status_inferred: false,
            reply_code: None,
            diagnostic: None,
            smtp_command: None,
            remote_mta: None,
            last_attempt: None,
            hint: None,
            extra_fields: Vec::new(),
            context: None,
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
    pub fn new(limits: Limits, mut correlation: Correlation) -> Self {
        // the form every message compares it in, made once
        correlation.tracking_header.make_ascii_lowercase();
        Self {
            limits,
            correlation,
        }
    }

    /// Analyse one raw message. Never panics; problems land in `error`.
    pub fn analyse(&self, raw: &[u8]) -> Analysis {
        self.analyse_nested(raw, 0)
    }

    fn analyse_nested(&self, raw: &[u8], depth: u8) -> Analysis {
        let (bytes, truncated) = mime::bound_and_normalise(raw, self.limits.max_message_bytes);
        let mut a =
            match mime::Message::parse(&bytes, &self.limits, &self.correlation.tracking_header) {
                Ok(msg) => {
                    let a = self.classify(&msg);
                    match &msg.attached {
                        // A gateway that forwards the real bounce as an attachment.
                        Some(inner)
                            if depth == 0
                                && matches!(
                                    a.kind,
                                    MessageKind::NotBounce | MessageKind::Bounce
                                ) =>
                        {
                            let b = self.analyse_nested(inner, depth + 1);
                            let better = match a.kind {
                                MessageKind::NotBounce => {
                                    matches!(b.kind, MessageKind::Dsn | MessageKind::Bounce)
                                }
                                _ => b.kind == MessageKind::Dsn,
                            };
                            if better {
                                b
                            } else {
                                a
                            }
                        }
                        _ => a,
                    }
                }
                Err(e) => {
                    let mut a = Analysis::empty(MessageKind::NotBounce);
                    a.error = Some(e);
                    a
                }
            };
        a.truncated = truncated;
        if a.recipients.len() > self.limits.max_recipients {
            a.recipients.truncate(self.limits.max_recipients);
            a.truncated = true;
        }
        if a.recipients.is_empty()
            && a.kind != MessageKind::NotBounce
            && a.error.as_deref() != Some(UNREADABLE_RECIPIENT)
        {
            a.kind = MessageKind::NotBounce;
        }
        a
    }

    fn classify(&self, msg: &mime::Message) -> Analysis {
        let mut a = Analysis::empty(MessageKind::NotBounce);
        a.subject = msg.header("subject").map(str::to_owned);
        a.from = msg.header("from").map(str::to_owned);
        a.original = headers::original_ref(msg, &self.correlation);

        if let Some(report) = &msg.feedback_report {
            arf::parse(msg, report, &mut a);
            if !a.recipients.is_empty() {
                return a;
            }
        }
        if let Some(addr) = arf::complaint_without_report(msg) {
            arf::complaint(&mut a, addr, "abuse");
            return a;
        }
        if let Some(addr) = arf::unsubscribe_request(msg) {
            arf::complaint(&mut a, addr, "opt-out");
            return a;
        }
        // RFC 3464 §2: a delivery-status part is what makes a message a
        // DSN, whatever else it carries (Postfix and Exim put
        // `Auto-Submitted: auto-replied` on their bounces, as RFC 3834 §5
        // asks): it is never read as an automatic reply.
        let delivery_report = !msg.delivery_status.is_empty();
        if delivery_report {
            dsn::parse_reports(msg, &mut a);
            if !a.recipients.is_empty() {
                a.kind = MessageKind::Dsn;
                return a;
            }
        }
        if let Some(t) = msg.texts.first() {
            if ses::parse(t, &self.correlation.tracking_header, &mut a) {
                return a;
            }
        }
        let signals = headers::bounce_signals(msg);
        if !signals.is_bounce() && !delivery_report {
            if headers::is_auto_reply(msg) {
                autoreply::parse(msg, &mut a);
            }
            return a;
        }
        freetext::parse_bounce(msg, &signals, &mut a);
        let auto_replied = headers::is_auto_reply(msg);
        if auto_replied
            && !delivery_report
            && !signals.daemon_sender
            && !signals.report
            && signals.failed_recipients.is_empty()
            && !freetext::has_smtp_evidence(&a)
        {
            // Prose about a failure, from an auto-responder, without a single
            // SMTP code: too weak to act on; it is an automatic reply.
            a.recipients.clear();
        }
        // A daemon's report (a daemon sender, a report, a failure subject)
        // that is also marked auto-replied is still a report: its sender is
        // the reporting side, never an auto-replying recipient.
        let report = delivery_report || signals.report || signals.daemon_sender;
        if a.recipients.is_empty() && auto_replied && !report {
            autoreply::parse(msg, &mut a);
        } else if !a.recipients.is_empty() {
            a.kind = MessageKind::Bounce;
        } else if delivery_report || signals.strong() {
            // A real report whose failed recipient cannot be read: said so,
            // and kept a bounce rather than dropped as not one.
            a.kind = if delivery_report {
                MessageKind::Dsn
            } else if msg.feedback_report.is_some() {
                MessageKind::Arf
            } else {
                MessageKind::Bounce
            };
            a.error = Some(UNREADABLE_RECIPIENT.to_owned());
        }
        a
    }
}

/// The `error` of a delivery report that names no readable recipient.
pub const UNREADABLE_RECIPIENT: &str = "a delivery report whose failed recipient cannot be read";
