//! What status and reply codes mean when no rule explains the text.

use crate::model::{Category, EnhancedStatus, ReplyCode};

/// RFC 3463 / RFC 5248 subject.detail → category. Generic codes (x.0.0) and
/// codes whose meaning varies by vendor return None: the text must decide.
pub fn category_for_status(s: EnhancedStatus) -> Option<Category> {
    use Category as C;
    if s.class == 2 {
        return Some(C::Delivered);
    }
    Some(match (s.subject, s.detail) {
        (1, 0) | (1, 1) | (1, 3) | (1, 4) | (1, 5) | (1, 10) => C::UserUnknown,
        (1, 2) => C::InvalidDomain,
        (1, 6) => C::HasMoved,
        (1, 7) | (1, 8) => C::SenderRejected,
        (2, 0) => C::Filtered,
        (2, 1) => C::AccountDisabled,
        (2, 2) | (3, 1) => C::MailboxFull,
        (2, 3) | (3, 4) => C::MessageTooLarge,
        (2, 4) => C::MailerError,
        (3, 0) | (3, 2) | (3, 5) | (4, 3) | (4, 5) => C::SystemError,
        (3, 3) => C::NotCompliant,
        (4, 0) | (4, 1) | (4, 2) | (4, 6) => C::NetworkError,
        (4, 4) => C::InvalidDomain,
        (4, 7) => C::Expired,
        (5, 3) => C::RateLimited,
        (5, _) => C::SyntaxError,
        (6, _) => C::ContentRejected,
        (7, 1) | (7, 0) | (7, 2) => C::PolicyViolation,
        (7, 13) | (7, 14) => C::AccountDisabled,
        (7, 25) => C::MissingPtr,
        (7, 20..=27) => C::AuthFailure,
        (7, 28) => C::RateLimited,
        (7, _) => C::SecurityError,
        _ => return None,
    })
}

/// RFC 5321 reply codes that say enough on their own.
pub fn category_for_reply(c: ReplyCode) -> Option<Category> {
    use Category as C;
    Some(match c.value() {
        200..=299 => C::Delivered,
        421 | 451 => C::SystemError,
        450 => C::SystemError,
        452 => C::MailboxFull,
        551 => C::HasMoved,
        552 => C::MailboxFull,
        553 => C::UserUnknown,
        554 => C::PolicyViolation,
        _ => return None,
    })
}
