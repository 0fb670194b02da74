//! What status and reply codes mean when no rule explains the text.
//!
//! [`ENHANCED`] is the IANA "Simple Mail Transfer Protocol (SMTP) Enhanced
//! Status Codes" registry (RFC 3463, RFC 5248 and the RFCs that registered
//! codes since: 3886, 4468, 4954, 6531, 6710, 7293, 7372, 7505, 8617, 8689),
//! every `X.subject.detail` entry with the registry's own wording, its
//! reference and the category it stands for. A code the registry does not
//! list (vendor codes such as 5.7.606 or 4.7.650) falls back on its subject
//! (RFC 3463 §3.2–3.8); [`REPLIES`] is RFC 5321 §4.2 for the reply codes.
//!
//! To change what a code means, change its row: the test walks the table.

use crate::model::{Category, EnhancedStatus, ReplyCode};

/// One registered enhanced status code.
#[derive(Debug, Clone, Copy)]
pub struct StatusEntry {
    pub subject: u16,
    pub detail: u16,
    /// The registry's sample text for the code.
    pub wording: &'static str,
    /// The registry's reference for the code.
    pub reference: &'static str,
    /// What the code means for qualification. [`Category::Undefined`]: the
    /// code says nothing about the failure (generic, informational or a
    /// success detail), and the text must decide.
    pub category: Category,
}

const fn e(
    subject: u16,
    detail: u16,
    wording: &'static str,
    reference: &'static str,
    category: Category,
) -> StatusEntry {
    StatusEntry {
        subject,
        detail,
        wording,
        reference,
        category,
    }
}

use Category as C;

/// The IANA registry of enhanced status codes, in its order.
pub const ENHANCED: &[StatusEntry] = &[
    e(0, 0, "Other undefined Status", "RFC 3463 §3.1", C::Undefined),
    e(1, 0, "Other address status", "RFC 3463 §3.2", C::UserUnknown),
    e(1, 1, "Bad destination mailbox address", "RFC 3463 §3.2", C::UserUnknown),
    e(1, 2, "Bad destination system address", "RFC 3463 §3.2", C::InvalidDomain),
    e(1, 3, "Bad destination mailbox address syntax", "RFC 3463 §3.2", C::UserUnknown),
    e(1, 4, "Destination mailbox address ambiguous", "RFC 3463 §3.2", C::UserUnknown),
    // "should be used for positive delivery reports": no failure in it
    e(1, 5, "Destination address valid", "RFC 3463 §3.2", C::Undefined),
    e(1, 6, "Destination mailbox has moved, No forwarding address", "RFC 3463 §3.2", C::HasMoved),
    e(1, 7, "Bad sender's mailbox address syntax", "RFC 3463 §3.2", C::SenderRejected),
    e(1, 8, "Bad sender's system address", "RFC 3463 §3.2", C::SenderRejected),
    // a success detail: the next system gives no further status
    e(1, 9, "Message relayed to non-compliant mailer", "RFC 3886", C::Undefined),
    e(1, 10, "Recipient address has null MX", "RFC 7505", C::DomainNotAccepting),
    e(2, 0, "Other or undefined mailbox status", "RFC 3463 §3.3", C::Filtered),
    e(2, 1, "Mailbox disabled, not accepting messages", "RFC 3463 §3.3", C::AccountDisabled),
    e(2, 2, "Mailbox full", "RFC 3463 §3.3", C::MailboxFull),
    e(2, 3, "Message length exceeds administrative limit", "RFC 3463 §3.3", C::MessageTooLarge),
    e(2, 4, "Mailing list expansion problem", "RFC 3463 §3.3", C::MailerError),
    e(3, 0, "Other or undefined mail system status", "RFC 3463 §3.4", C::SystemError),
    e(3, 1, "Mail system full", "RFC 3463 §3.4", C::SystemError),
    e(3, 2, "System not accepting network messages", "RFC 3463 §3.4", C::SystemError),
    e(3, 3, "System not capable of selected features", "RFC 3463 §3.4", C::NotCompliant),
    e(3, 4, "Message too big for system", "RFC 3463 §3.4", C::MessageTooLarge),
    e(3, 5, "System incorrectly configured", "RFC 3463 §3.4", C::SystemError),
    // the message was accepted; only its priority changed
    e(3, 6, "Requested priority was changed", "RFC 6710", C::Undefined),
    e(4, 0, "Other or undefined network or routing status", "RFC 3463 §3.5", C::NetworkError),
    e(4, 1, "No answer from host", "RFC 3463 §3.5", C::NetworkError),
    e(4, 2, "Bad connection", "RFC 3463 §3.5", C::NetworkError),
    e(4, 3, "Directory server failure", "RFC 3463 §3.5", C::NetworkError),
    e(4, 4, "Unable to route", "RFC 3463 §3.5", C::InvalidDomain),
    e(4, 5, "Mail system congestion", "RFC 3463 §3.5", C::SystemError),
    e(4, 6, "Routing loop detected", "RFC 3463 §3.5", C::NetworkError),
    e(4, 7, "Delivery time expired", "RFC 3463 §3.5", C::Expired),
    e(5, 0, "Other or undefined protocol status", "RFC 3463 §3.6", C::SyntaxError),
    e(5, 1, "Invalid command", "RFC 3463 §3.6", C::SyntaxError),
    e(5, 2, "Syntax error", "RFC 3463 §3.6", C::SyntaxError),
    e(5, 3, "Too many recipients", "RFC 3463 §3.6", C::RateLimited),
    e(5, 4, "Invalid command arguments", "RFC 3463 §3.6", C::SyntaxError),
    e(5, 5, "Wrong protocol version", "RFC 3463 §3.6", C::SyntaxError),
    e(5, 6, "Authentication Exchange line is too long", "RFC 4954 §6", C::SyntaxError),
    e(6, 0, "Other or undefined media error", "RFC 3463 §3.7", C::ContentRejected),
    e(6, 1, "Media not supported", "RFC 3463 §3.7", C::ContentRejected),
    e(6, 2, "Conversion required and prohibited", "RFC 3463 §3.7", C::ContentRejected),
    e(6, 3, "Conversion required but not supported", "RFC 3463 §3.7", C::ContentRejected),
    // a detail of a delivery that happened
    e(6, 4, "Conversion with loss performed", "RFC 3463 §3.7", C::Undefined),
    e(6, 5, "Conversion Failed", "RFC 3463 §3.7", C::ContentRejected),
    e(6, 6, "Message content not available", "RFC 4468", C::ContentRejected),
    e(6, 7, "Non-ASCII addresses not permitted for that sender/recipient", "RFC 6531", C::ContentRejected),
    e(6, 8, "UTF-8 string reply is required, but not permitted by the SMTP client", "RFC 6531", C::ContentRejected),
    e(6, 9, "UTF-8 header message cannot be transferred to one or more recipients, so the message must be rejected", "RFC 6531", C::ContentRejected),
    e(6, 10, "(deprecated: a duplicate of X.6.8)", "RFC 6531; IANA registry note", C::ContentRejected),
    e(7, 0, "Other or undefined security status", "RFC 3463 §3.8", C::PolicyViolation),
    e(7, 1, "Delivery not authorized, message refused", "RFC 3463 §3.8", C::PolicyViolation),
    // "the sender is not authorized to send a message to the intended mailing list"
    e(7, 2, "Mailing list expansion prohibited", "RFC 3463 §3.8", C::SenderRejected),
    e(7, 3, "Security conversion required but not possible", "RFC 3463 §3.8", C::SecurityError),
    e(7, 4, "Security features not supported", "RFC 3463 §3.8", C::SecurityError),
    e(7, 5, "Cryptographic failure", "RFC 3463 §3.8", C::SecurityError),
    e(7, 6, "Cryptographic algorithm not supported", "RFC 3463 §3.8", C::SecurityError),
    e(7, 7, "Message integrity failure", "RFC 3463 §3.8", C::SecurityError),
    e(7, 8, "Authentication credentials invalid", "RFC 4954 §6", C::SecurityError),
    e(7, 9, "Authentication mechanism is too weak", "RFC 4954 §6", C::SecurityError),
    e(7, 10, "Encryption Needed", "RFC 5248", C::SecurityError),
    e(7, 11, "Encryption required for requested authentication mechanism", "RFC 4954 §6", C::SecurityError),
    e(7, 12, "A password transition is needed", "RFC 4954 §6", C::SecurityError),
    e(7, 13, "User Account Disabled", "RFC 5248", C::AccountDisabled),
    e(7, 14, "Trust relationship required", "RFC 5248", C::SecurityError),
    e(7, 15, "Priority Level is too low", "RFC 6710", C::PolicyViolation),
    e(7, 16, "Message is too big for the specified priority", "RFC 6710", C::MessageTooLarge),
    // the address now belongs to someone else: what was sent to no longer exists
    e(7, 17, "Mailbox owner has changed", "RFC 7293", C::HasMoved),
    e(7, 18, "Domain owner has changed", "RFC 7293", C::HasMoved),
    e(7, 19, "RRVS test cannot be completed", "RFC 7293", C::SecurityError),
    e(7, 20, "No passing DKIM signature found", "RFC 7372", C::AuthFailure),
    e(7, 21, "No acceptable DKIM signature found", "RFC 7372", C::AuthFailure),
    e(7, 22, "No valid author-matched DKIM signature found", "RFC 7372", C::AuthFailure),
    e(7, 23, "SPF validation failed", "RFC 7372", C::AuthFailure),
    e(7, 24, "SPF validation error", "RFC 7372", C::AuthFailure),
    e(7, 25, "Reverse DNS validation failed", "RFC 7372", C::MissingPtr),
    e(7, 26, "Multiple authentication checks failed", "RFC 7372", C::AuthFailure),
    e(7, 27, "Sender address has null MX", "RFC 7505", C::SenderRejected),
    e(7, 28, "Mail flood detected", "IANA SMTP Enhanced Status Codes registry, X.7.28", C::RateLimited),
    e(7, 29, "ARC validation failure", "RFC 8617", C::AuthFailure),
    e(7, 30, "REQUIRETLS support required", "RFC 8689", C::SecurityError),
];

/// Where the registry is.
pub const REGISTRY: &str =
    "IANA SMTP Enhanced Status Codes registry (https://www.iana.org/assignments/smtp-enhanced-status-codes)";

/// The meaning of a code the registry does not list, from its subject alone.
#[derive(Debug, Clone, Copy)]
pub struct SubjectEntry {
    pub subject: u16,
    pub wording: &'static str,
    pub reference: &'static str,
    pub category: Category,
}

const fn s(
    subject: u16,
    wording: &'static str,
    reference: &'static str,
    category: Category,
) -> SubjectEntry {
    SubjectEntry {
        subject,
        wording,
        reference,
        category,
    }
}

/// RFC 3463's subjects, for unregistered details (vendor codes). Addressing,
/// mailbox and network subjects say too little about an unknown detail
/// (5.1.x could be the sender or the recipient): the text decides there.
pub const SUBJECTS: &[SubjectEntry] = &[
    s(3, "Mail System Status", "RFC 3463 §3.4", C::SystemError),
    s(
        5,
        "Mail Delivery Protocol Status",
        "RFC 3463 §3.6",
        C::SyntaxError,
    ),
    s(
        6,
        "Message Content or Message Media Status",
        "RFC 3463 §3.7",
        C::ContentRejected,
    ),
    s(
        7,
        "Security or Policy Status",
        "RFC 3463 §3.8",
        C::SecurityError,
    ),
];

/// The registry's entry for a code, if it lists it.
pub fn registered(s: EnhancedStatus) -> Option<&'static StatusEntry> {
    ENHANCED
        .iter()
        .find(|e| e.subject == s.subject && e.detail == s.detail)
}

/// Class 2 (RFC 3463 §2 "Success"), a registered code, or a subject:
/// what the status says, and the text that says so.
pub fn status_meaning(s: EnhancedStatus) -> Option<(Category, String)> {
    if s.class == 2 {
        return Some((C::Delivered, "RFC 3463 §2: 2.XXX.XXX Success".to_owned()));
    }
    if let Some(e) = registered(s) {
        return (e.category != C::Undefined).then(|| {
            (
                e.category,
                format!(
                    "{}: X.{}.{} \"{}\" ({})",
                    REGISTRY, e.subject, e.detail, e.wording, e.reference
                ),
            )
        });
    }
    SUBJECTS.iter().find(|e| e.subject == s.subject).map(|e| {
        (
            e.category,
            format!(
                "{}: X.{}.XXX \"{}\" (unregistered detail)",
                e.reference, e.subject, e.wording
            ),
        )
    })
}

/// What a status says about the failure; None leaves it to the text.
pub fn category_for_status(s: EnhancedStatus) -> Option<Category> {
    status_meaning(s).map(|(c, _)| c)
}

/// One RFC 5321 (or extension) reply code that says enough on its own.
#[derive(Debug, Clone, Copy)]
pub struct ReplyEntry {
    pub code: u16,
    pub wording: &'static str,
    pub reference: &'static str,
    pub category: Category,
}

const fn r(
    code: u16,
    wording: &'static str,
    reference: &'static str,
    category: Category,
) -> ReplyEntry {
    ReplyEntry {
        code,
        wording,
        reference,
        category,
    }
}

/// Reply codes with one meaning. 550 is not here: RFC 5321 gives it for
/// "mailbox not found, no access, or command rejected for policy reasons"
/// alike, so only the text can tell which; nor is 554 "Transaction failed",
/// which names no cause at all.
pub const REPLIES: &[ReplyEntry] = &[
    r(421, "Service not available, closing transmission channel", "RFC 5321 §4.2.3", C::SystemError),
    r(450, "Requested mail action not taken: mailbox unavailable (e.g., mailbox busy or temporarily blocked for policy reasons)", "RFC 5321 §4.2.3", C::SystemError),
    r(451, "Requested action aborted: local error in processing", "RFC 5321 §4.2.3", C::SystemError),
    r(452, "Requested action not taken: insufficient system storage", "RFC 5321 §4.2.3", C::MailboxFull),
    r(521, "Host does not accept mail", "RFC 7504", C::DomainNotAccepting),
    r(551, "User not local; please try <forward-path>", "RFC 5321 §4.2.3", C::HasMoved),
    r(552, "Requested mail action aborted: exceeded storage allocation", "RFC 5321 §4.2.3", C::MailboxFull),
    r(553, "Requested action not taken: mailbox name not allowed (e.g., mailbox syntax incorrect)", "RFC 5321 §4.2.3", C::UserUnknown),
    r(556, "Domain does not accept mail", "RFC 7504", C::DomainNotAccepting),
];

/// What a reply code says, and the text that says so.
pub fn reply_meaning(c: ReplyCode) -> Option<(Category, String)> {
    if (200..=299).contains(&c.value()) {
        return Some((
            C::Delivered,
            "RFC 5321 §4.2.1: 2yz Positive Completion reply".to_owned(),
        ));
    }
    REPLIES.iter().find(|e| e.code == c.value()).map(|e| {
        (
            e.category,
            format!("{}: {} \"{}\"", e.reference, e.code, e.wording),
        )
    })
}

/// RFC 5321 reply codes that say enough on their own.
pub fn category_for_reply(c: ReplyCode) -> Option<Category> {
    reply_meaning(c).map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every registered code, in both failure classes, has a meaning (or
    /// leaves it to the text on purpose), a wording and a reference; the
    /// table holds each code once, in the registry's order.
    #[test]
    fn every_registered_code_is_walked_and_means_what_the_registry_says() {
        let mut last = (0, 0);
        for (i, e) in ENHANCED.iter().enumerate() {
            assert!(
                i == 0 || (e.subject, e.detail) > last,
                "X.{}.{} is out of order or repeated",
                e.subject,
                e.detail
            );
            last = (e.subject, e.detail);
            assert!(!e.wording.is_empty() && !e.reference.is_empty());
            for class in [4, 5] {
                let st = EnhancedStatus::new(class, e.subject, e.detail);
                let meaning = status_meaning(st);
                match e.category {
                    C::Undefined => assert!(meaning.is_none(), "{st}"),
                    c => {
                        let (got, source) = meaning.expect("a registered code has a meaning");
                        assert_eq!(got, c, "{st}");
                        assert!(source.contains(e.wording), "{st}: {source}");
                        assert!(source.contains(e.reference), "{st}: {source}");
                    }
                }
            }
        }
        // the registry as of its last update: 81 codes
        assert_eq!(ENHANCED.len(), 81);
    }

    #[test]
    fn the_bulk_sender_codes_of_2024_have_their_registry_meaning() {
        for (code, want) in [
            ("5.7.26", C::AuthFailure),
            ("5.7.27", C::SenderRejected),
            ("5.7.30", C::SecurityError),
            ("5.1.10", C::DomainNotAccepting),
            ("5.7.25", C::MissingPtr),
            // vendor details fall back on the subject
            ("5.7.515", C::SecurityError),
            ("4.7.650", C::SecurityError),
        ] {
            let st: EnhancedStatus = code.parse().expect("status");
            assert_eq!(category_for_status(st), Some(want), "{code}");
        }
        for code in ["5.1.99", "4.2.50", "5.4.99", "5.0.0", "5.1.5", "2.6.4"] {
            let st: EnhancedStatus = code.parse().expect("status");
            let want = (st.class == 2).then_some(C::Delivered);
            assert_eq!(category_for_status(st), want, "{code}");
        }
    }

    #[test]
    fn every_reply_entry_has_its_wording() {
        for e in REPLIES {
            let c: ReplyCode = e.code.to_string().parse().expect("reply code");
            let (cat, source) = reply_meaning(c).expect("listed");
            assert_eq!(cat, e.category);
            assert!(source.contains(e.wording) && source.contains(e.reference));
        }
        let c: ReplyCode = "550".parse().expect("reply code");
        assert_eq!(category_for_reply(c), None);
    }
}
