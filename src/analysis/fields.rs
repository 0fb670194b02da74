//! Blocks of `Name: value` fields as the structured report parts carry them:
//! RFC 3464 §2.1 delivery-status groups (one per-message group, one per
//! recipient, blank lines between) and the RFC 5965 §3 feedback-report
//! part.

use std::borrow::Cow;

/// One `Name: value` field: the name lowercased, the value trimmed and
/// unfolded. Both borrow from the report unless they had to change.
pub type Field<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Field names the analysis reads, and the commonest others, spelled as it
/// compares them: a report's names are capitalised, and matching them here
/// spares a lowercase copy each.
const KNOWN_FIELDS: &[&str] = &[
    "final-recipient",
    "original-recipient",
    "x-actual-recipient",
    "action",
    "status",
    "diagnostic-code",
    "remote-mta",
    "last-attempt-date",
    "reporting-mta",
    "arrival-date",
    "feedback-type",
    "original-rcpt-to",
    "removal-recipient",
    "original-mail-from",
    // kept as extra fields, but common enough to spare their lowercase copy
    "received-from-mta",
    "x-postfix-sender",
    "x-postfix-queue-id",
    "original-envelope-id",
    "will-retry-until",
    "dsn-gateway",
];

fn field_name(k: &str) -> Cow<'_, str> {
    if let Some(known) = KNOWN_FIELDS.iter().find(|n| n.eq_ignore_ascii_case(k)) {
        return Cow::Borrowed(known);
    }
    if k.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(k.to_ascii_lowercase())
    } else {
        Cow::Borrowed(k)
    }
}

/// Header-style fields (`Name: value`, continuation lines folded), names lowercased.
/// A blank line is returned as the pseudo field `("", "")` so callers can see groups.
pub fn parse_fields(body: &str) -> Vec<Field<'_>> {
    // fields run about 40 bytes: one allocation for the usual report
    let mut out: Vec<Field<'_>> = Vec::with_capacity(body.len() / 32);
    for line in crate::text::lines(body) {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if out.last().is_some_and(|(k, _)| !k.is_empty()) {
                out.push((Cow::Borrowed(""), Cow::Borrowed("")));
            }
            continue;
        }
        if matches!(line.as_bytes().first(), Some(b' ' | b'\t')) {
            if let Some((k, v)) = out.last_mut() {
                if !k.is_empty() {
                    let v = v.to_mut();
                    v.push(' ');
                    v.push_str(line.trim());
                }
            }
            continue;
        }
        // byte searches: `split_once(':')` costs more than the rest of the line
        if let Some(colon) = memchr::memchr(b':', line.as_bytes()) {
            let (k, v) = (line[..colon].trim(), &line[colon + 1..]);
            if !k.is_empty() && k.len() < 64 && !k.as_bytes().contains(&b' ') {
                out.push((field_name(k), Cow::Borrowed(v.trim())));
            }
        }
    }
    out
}
