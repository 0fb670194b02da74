//! Complaints: RFC 5965 feedback reports (ARF), the feedback loops that
//! return the complained-about message without a report part (Microsoft's
//! JMRP), and `List-Unsubscribe` mail requests (RFC 2369 §3.2).

use super::headers::first_address;
use super::{fields, headers, mime, Analysis, RecipientReport};
use crate::model::{EmailAddress, MessageKind};
use regex::Regex;
use std::sync::LazyLock;

pub(super) fn complaint(a: &mut Analysis, addr: EmailAddress, feedback_type: &str) {
    a.kind = MessageKind::Arf;
    a.feedback_type = Some(feedback_type.to_string());
    a.recipients
        .push(RecipientReport::complaint(addr, feedback_type));
}

pub(super) fn parse(msg: &mime::Message, report: &str, a: &mut Analysis) {
    let fields = fields::parse_fields(report);
    let mut addrs: Vec<EmailAddress> = Vec::new();
    for (k, v) in &fields {
        match k.as_ref() {
            "feedback-type" => a.feedback_type = Some(v.trim().to_ascii_lowercase()),
            "original-rcpt-to" | "removal-recipient" => {
                if let Some(ad) = headers::first_address(v) {
                    if !addrs.contains(&ad) {
                        addrs.push(ad);
                    }
                }
            }
            _ => {}
        }
    }
    if addrs.is_empty() {
        // The complainant is the recipient of the returned message.
        if let Some(orig) = &msg.original_headers {
            if let Some(to) = mime::header_value(orig, "to") {
                addrs.extend(headers::addresses(to));
            }
        }
    }
    if addrs.is_empty() {
        // Feedback loops that redact the recipient still leave the envelope:
        // the returned message's delivery headers, or the VERP address the
        // platform sent it from.
        if let Some(orig) = &msg.original_headers {
            for name in ["x-original-to", "delivered-to"] {
                if let Some(ad) = mime::header_value(orig, name).and_then(headers::first_address) {
                    addrs.push(ad);
                    break;
                }
            }
        }
        addrs.extend(
            a.original
                .verp_recipient
                .clone()
                .filter(|_| addrs.is_empty()),
        );
    }
    a.kind = MessageKind::Arf;
    let feedback_type = a.feedback_type.clone().unwrap_or_else(|| "abuse".into());
    for ad in addrs {
        a.recipients
            .push(RecipientReport::complaint(ad, &feedback_type));
    }
}

/// Microsoft's JMRP and similar feedback loops send the complained-about
/// message as a plain attachment, without a `message/feedback-report` part.
pub fn complaint_without_report(msg: &mime::Message) -> Option<EmailAddress> {
    let orig = msg.original_headers.as_deref()?;
    if let Some(v) = mime::first_header(orig, "x-hmxmroriginalrecipient") {
        return first_address(v);
    }
    let subject = msg.header("subject")?;
    if COMPLAINT_SUBJECT.is_match(subject) {
        return mime::first_header(orig, "to").and_then(first_address);
    }
    None
}

static COMPLAINT_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    crate::text::rx(
        r"(?i)^\s*(?:complaint about message from|abuse report|spam complaint|fbl report)",
    )
    .expect("complaint subject regex")
});

/// A `List-Unsubscribe: <mailto:...?subject=unsubscribe>` request: the sender
/// asks to stop receiving mail, which a platform must honour like a complaint.
pub fn unsubscribe_request(msg: &mime::Message) -> Option<EmailAddress> {
    let subject = msg.header("subject")?;
    if !subject.trim().eq_ignore_ascii_case("unsubscribe") {
        return None;
    }
    msg.header("from").and_then(first_address)
}
