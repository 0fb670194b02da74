//! Bounce texts made comparable: the diagnostic kept with an address or an
//! event, and the shape of a text that no rule explained ([`normalise_diagnostic`]),
//! which masks what varies between two bounces of the same kind (addresses,
//! ids, numbers, dates, hosts) so that one queue row stands for all of them;
//! keeping a row turns its shape back into a rule ([`rule_from_qualification`]).

use crate::analysis::{Analysis, UNREADABLE_RECIPIENT};
use crate::model::{BounceType, Category, Reason};
use crate::rules::Rule;
use regex::Regex;
use std::sync::LazyLock;

/// Longest diagnostic text kept in a row; the rest only bloats the tables.
pub const MAX_TEXT: usize = 2000;

/// The longest prefix of `s` of at most `max` bytes ending on a char boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A recipient's diagnostic as an address row and an event keep it:
/// trimmed, none when empty, clipped to [`MAX_TEXT`].
pub fn kept_text(diagnostic: Option<&str>) -> Option<&str> {
    diagnostic
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| clip(t, MAX_TEXT))
}

/// The to-qualify text of a real report whose failed recipient cannot be
/// read (a delivery-status or feedback-report part, or a mailer daemon's
/// bounce, naming no address the analysis can read): no address can change,
/// so the message is put before a person rather than dropped. The text names
/// the message by its SHA-256, as `intake` keys it.
pub fn unreadable_report_text(a: &Analysis, message_hash: &[u8; 32]) -> Option<String> {
    if !a.recipients.is_empty() || a.error.as_deref() != Some(UNREADABLE_RECIPIENT) {
        return None;
    }
    let subject = a.subject.as_deref().map(str::trim).unwrap_or("");
    Some(format!(
        "{UNREADABLE_RECIPIENT} ({kind}; subject: {subject}; message sha256 {hash})",
        kind = a.kind.as_str(),
        hash = hex::encode(message_hash),
    ))
}

/// The domain part of an address key (empty when there is none).
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

struct Mask {
    re: Regex,
    token: &'static str,
    /// What the token becomes in a rule pattern.
    pattern: &'static str,
    /// Matches for which this returns true are left as they are.
    keep: fn(&str) -> bool,
}

fn mask(re: &str, token: &'static str, pattern: &'static str, keep: fn(&str) -> bool) -> Mask {
    Mask {
        re: Regex::new(re).expect("mask regexes are constant and tested"),
        token,
        pattern,
        keep,
    }
}

fn never(_: &str) -> bool {
    false
}

/// Identifiers mix letters and digits; plain words and plain numbers are not ids.
fn not_an_id(s: &str) -> bool {
    !(s.bytes().any(|b| b.is_ascii_digit()) && s.bytes().any(|b| b.is_ascii_alphabetic()))
}

/// Enhanced status codes and SMTP reply codes say what the bounce is.
fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    s.contains('.')
        || b.len() == 3
            && matches!(b[0], b'2' | b'4' | b'5')
            && (b'0'..=b'5').contains(&b[1])
            && b[2].is_ascii_digit()
}

/// Applied in order to lowercased text: the specific shapes first so that,
/// for example, an IP address is not masked one number at a time.
static MASKS: LazyLock<Vec<Mask>> = LazyLock::new(|| {
    vec![
        mask(
            r"<?[a-z0-9._%+=/!#$&'*^`{|}~-]+@(?:[a-z0-9-]+\.)+[a-z0-9-]{2,}>?|<?[a-z0-9._%+=-]+@\[[0-9a-f:.]+\]>?",
            "<addr>",
            r"\S+@\S+",
            never,
        ),
        mask(r"\bhttps?://\S+", "<url>", r"\S+", never),
        mask(
            r"\b(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+\d{1,2}\s+[a-z]{3}[a-z]*\s+\d{4}|\b\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:\s?z|\s?[+-]\d{2}:?\d{2})?)?|\b\d{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\s+\d{4}",
            "<date>",
            ".*?",
            never,
        ),
        mask(
            r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:\s*[+-]\d{4})?(?:\s*\([a-z]+\))?",
            "<time>",
            ".*?",
            never,
        ),
        mask(r"\[?\b\d{1,3}(?:\.\d{1,3}){3}\b\]?", "<ip>", r"\S+", never),
        mask(
            r"\[?\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){2,7}\b\]?",
            "<ip>",
            r"\S+",
            never,
        ),
        // Host names carrying digits (mx12.mail.example.net) vary per node.
        mask(
            r"\b[a-z0-9-]*\d[a-z0-9-]*(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",
            "<host>",
            r"\S+",
            never,
        ),
        mask(r"\b[a-z0-9_-]{6,}\b", "<id>", r"\S+", not_an_id),
        mask(r"\b[245]\.\d{1,3}\.\d{1,3}\b|\d+", "<n>", r"\d+", is_code),
    ]
});

/// The shape of a bounce text: lowercased, whitespace collapsed, with
/// addresses, URLs, dates, times, IPs, hosts with digits, ids and numbers
/// replaced by `<addr>`, `<url>`, `<date>`, `<time>`, `<ip>`, `<host>`,
/// `<id>` and `<n>`. SMTP reply codes and enhanced status codes are kept:
/// they are what tells two shapes apart.
pub fn normalise_diagnostic(text: &str) -> String {
    let mut s = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    for m in MASKS.iter() {
        s =
            m.re.replace_all(&s, |c: &regex::Captures<'_>| {
                if (m.keep)(&c[0]) {
                    c[0].to_owned()
                } else {
                    m.token.to_owned()
                }
            })
            .into_owned();
    }
    s
}

/// A case-insensitive rule pattern matching every text of the same shape:
/// the normalised text escaped, masks widened back, spaces made flexible.
pub fn pattern_from_normalised(normalised: &str) -> String {
    let mut out = regex::escape(normalised);
    out = out.replace(' ', r"\s+");
    for m in MASKS.iter() {
        out = out.replace(m.token, m.pattern);
    }
    out
}

/// The category a kept qualification gets when the operator names none.
pub fn category_for_reason(reason: Reason) -> Category {
    match reason {
        Reason::UserUnknown => Category::UserUnknown,
        Reason::MailboxFull => Category::MailboxFull,
        Reason::InvalidDomain => Category::InvalidDomain,
        Reason::AccountDisabled => Category::AccountDisabled,
        Reason::Refused => Category::PolicyViolation,
        Reason::Unreachable => Category::SystemError,
        Reason::NotDefined => Category::Undefined,
    }
}

/// The rule `q<ID>` that keeping queued text `id` (of shape `normalised`)
/// with a verdict creates; without a category, the one matching the reason.
pub fn rule_from_qualification(
    id: i64,
    normalised: &str,
    bounce_type: BounceType,
    reason: Reason,
    category: Option<Category>,
) -> Rule {
    Rule {
        id: format!("q{id}"),
        pattern: pattern_from_normalised(normalised),
        bounce_type,
        reason,
        category: category.unwrap_or_else(|| category_for_reason(reason)),
        priority: 50,
        domain: None,
        source: Some(format!("an operator's verdict on queued text #{id}")),
    }
}
