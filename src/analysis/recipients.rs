//! Which addresses of a free-text report are failed recipients: every
//! address of the report's text, minus the report's own envelope, the
//! original's sender and addresses on lines that name something else
//! (`From:`, `Message-ID`, contact lines).

use super::{blocks, original};
use super::{headers, mime};
use crate::model::{same_key, EmailAddress};
use std::borrow::Cow;
use std::sync::LazyLock;

static EXCLUDED_LINE: LazyLock<crate::text::Phrases> = LazyLock::new(|| {
    crate::text::Phrases::new(r"(?i)message-?id|in-reply-to|references:|mail from|envelope-from|from:|sender:|reply-to:|return-path|smtp\.mailfrom|header\.from|\bfrom=<|\bby\s+\S+\s+with\b|\bdkim|\bid\s+<|contact|assistance|問い合わせ|ご連絡")
        .expect("excluded line regex")
});

/// Addresses a report names that are not failed recipients: its own
/// envelope and the original's sender.
/// Normalised ([`EmailAddress::normalized`]), lent by the headers.
pub(super) fn excluded_addresses<'m>(msg: &'m mime::Message) -> Vec<Cow<'m, str>> {
    let mut ex = Vec::new();
    for name in ["from", "to", "reply-to", "return-path", "sender", "cc"] {
        for v in msg.headers_named(name) {
            ex.extend(headers::normalized_addresses(v));
        }
    }
    if let Some(h) = original::headers(msg) {
        for name in ["from", "return-path", "sender", "reply-to"] {
            for v in mime::header_values(h, name) {
                ex.extend(headers::normalized_addresses(v));
            }
        }
    }
    ex
}

static RECIPIENT_LIST: LazyLock<crate::text::Phrases> = LazyLock::new(|| {
    crate::text::Phrases::new(r"(?i)(?:following|these|the) (?:recipients?|address(?:\(es\)|es)?|destinations?|users?)(?:\(s\))?|could not be delivered to|was not delivered to|were not delivered to|delivery to the following|failed recipients?|recipient address(?:es)?:")
        .expect("recipient list regex")
});

pub(super) fn candidate_recipients(region: &str, excluded: &[Cow<'_, str>]) -> Vec<EmailAddress> {
    let lower = crate::text::ascii_lower(region);
    // A report that announces its list of failed addresses is read from there:
    // what comes before is a summary of the original (its To: may differ).
    if let Some(m) = RECIPIENT_LIST.on_lowercase().find(&lower) {
        let from = m.start();
        let after = collect_candidates(&region[from..], &lower[from..], excluded);
        if !after.is_empty() {
            return after;
        }
    }
    collect_candidates(region, &lower, excluded)
}

/// `lower` is `region` ASCII-lowercased: the same lines at the same offsets,
/// so the copy's lines pair up with the region's and each line with an
/// address is classified once.
fn collect_candidates(region: &str, lower: &str, excluded: &[Cow<'_, str>]) -> Vec<EmailAddress> {
    let with_at: Vec<(&str, bool)> = blocks::lines_with_at(region)
        .map(|(from, to)| (&region[from..to], &lower[from..to]))
        .map(|(l, low)| {
            let excluded = EXCLUDED_LINE.on_lowercase().is_match(low) && !l.contains("RCPT");
            (l, excluded)
        })
        .collect();
    // An address named once as a contact or a sender ("please contact
    // <support@...>") is not a recipient where the text names it again.
    let mut named_here = Vec::new();
    for (line, _) in with_at.iter().filter(|(_, excluded)| *excluded) {
        named_here.extend(headers::normalized_addresses(line));
    }
    let named_otherwise = || excluded.iter().chain(&named_here);
    let mut out: Vec<EmailAddress> = Vec::new();
    for (line, _) in with_at.iter().filter(|(_, excluded)| !*excluded) {
        for a in headers::normalized_addresses(line) {
            // The reporting side's own addresses are never a failed
            // recipient. An address of the bounce's own headers is one only
            // where the report lists it as one (a sender that mailed
            // itself, a forward back to the sender): elsewhere it is the
            // sender named in prose.
            if headers::is_daemon_address(&a)
                || (named_otherwise().any(|e| same_key(e, &a)) && !lists_recipient(line, &a))
                || out.iter().any(|o| same_key(o.as_str(), &a))
            {
                continue;
            }
            out.push(EmailAddress::from_normalized(a));
        }
    }
    out
}

/// Whether `line` gives `address` the place a report gives each failed
/// recipient: alone on its line, bare or in angle brackets, and followed by
/// nothing but a colon (qmail-send's `<user@host>:` paragraphs, Postfix
/// bounce(5)'s `<user@host>: reason`, Exim deliver.c's indented address
/// after "The following address(es) failed:") or Sendmail's `... reason`.
fn lists_recipient(line: &str, address: &str) -> bool {
    let t = line.trim();
    let t = t.strip_prefix('<').unwrap_or(t);
    if t.len() < address.len()
        || !t.as_bytes()[..address.len()].eq_ignore_ascii_case(address.as_bytes())
    {
        return false;
    }
    let rest = t[address.len()..]
        .strip_prefix('>')
        .unwrap_or(&t[address.len()..]);
    rest.is_empty() || rest.starts_with(':') || rest.starts_with("...")
}
