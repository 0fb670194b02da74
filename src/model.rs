//! Typed values shared by every stage: addresses, status codes, verdicts.
//!
//! Everything that comes out of a message is parsed into one of these types
//! at the edge, so the rest of the crate never handles loose strings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest address we accept (RFC 5321 caps a path at 256 octets).
const MAX_ADDRESS_LEN: usize = 320;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not an email address: {0:?}")]
    Address(String),
    #[error("not an enhanced status code: {0:?}")]
    Status(String),
    #[error("not an SMTP reply code: {0:?}")]
    ReplyCode(String),
    #[error("unknown {what}: {value:?}")]
    Unknown { what: &'static str, value: String },
}

fn truncate_for_error(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A normalised mailbox address: trimmed, without angle brackets, domain lowercased.
/// The local part keeps its case (RFC 5321 says it may be significant), but
/// [`EmailAddress::key`] gives the fully lowercased form used for counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn local_part(&self) -> &str {
        local_part_of(&self.0)
    }
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
    /// The form addresses are compared and stored under.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
    /// `self.key() == other.key()`, without building either key when both
    /// are ASCII.
    pub fn same_key(&self, other: &EmailAddress) -> bool {
        same_key(&self.0, &other.0)
    }
    /// An address [`EmailAddress::normalized`] gave.
    pub(crate) fn from_normalized(address: std::borrow::Cow<'_, str>) -> Self {
        EmailAddress(address.into_owned())
    }
}

/// A control character, a space, `<`, `>` or `,`: never in an address.
const FORBIDDEN_BYTE: u8 = 1;
/// An ASCII alphanumeric or `.-_[]:`: what a domain may hold.
const DOMAIN_BYTE: u8 = 2;
/// Part of a non-ASCII character: checked by `char`s instead.
const NON_ASCII: u8 = 4;

static ADDRESS_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        table[i] = if !c.is_ascii() {
            NON_ASCII
        } else if c.is_ascii_control() || matches!(c, b' ' | b'<' | b'>' | b',') {
            FORBIDDEN_BYTE
        } else if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        {
            DOMAIN_BYTE
        } else {
            0
        };
        if c.is_ascii_alphanumeric() {
            table[i] |= LOCAL_BYTE | LABEL_BYTE;
        }
        i += 1;
    }
    let symbols = b".!#$%&'*+/=?^_`{|}~-";
    let mut k = 0;
    while k < symbols.len() {
        table[symbols[k] as usize] |= LOCAL_BYTE;
        k += 1;
    }
    table[b'_' as usize] |= LABEL_BYTE;
    table[b'-' as usize] |= LABEL_BYTE;
    table
};

/// An ASCII alphanumeric, `.` or one of RFC 5322 atext's symbols: what the
/// analysis' address scanner takes for a local part.
pub(crate) const LOCAL_BYTE: u8 = 8;
/// An ASCII alphanumeric, `_` or `-`: what it takes for a domain label
/// (`[\w-]` on ASCII).
pub(crate) const LABEL_BYTE: u8 = 16;

/// The classes of a byte, as the constants above name them.
pub(crate) fn address_byte(c: u8) -> u8 {
    ADDRESS_BYTES[usize::from(c)]
}

/// What stands around an address in a header or a sentence: spaces, angle
/// brackets, quotes, trailing punctuation.
fn trim_address(s: &str) -> &str {
    s.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .trim_end_matches(['.', ',', ';', ':'])
}

/// [`trim_address`] on ASCII, byte by byte: the analysis parses every
/// address-shaped span of a bounce, and six `char` trims cost more than the
/// rest of the parse.
fn trim_ascii_address(s: &str) -> &str {
    /// `(i, j)` narrowed past the bytes `start` takes at its front and `end` at its back.
    fn narrow(
        b: &[u8],
        (mut i, mut j): (usize, usize),
        start: impl Fn(u8) -> bool,
        end: impl Fn(u8) -> bool,
    ) -> (usize, usize) {
        while i < j && start(b[i]) {
            i += 1;
        }
        while j > i && end(b[j - 1]) {
            j -= 1;
        }
        (i, j)
    }
    let b = s.as_bytes();
    // what `char::is_whitespace` holds of ASCII
    let space = |c: u8| matches!(c, b'\t'..=b'\r' | b' ');
    let quote = |c: u8| c == b'"' || c == b'\'';
    let mut r = narrow(b, (0, b.len()), space, space);
    r = narrow(b, r, |c| c == b'<', |c| c == b'>');
    r = narrow(b, r, space, space);
    r = narrow(b, r, quote, quote);
    r = narrow(b, r, |_| false, |c| matches!(c, b'.' | b',' | b';' | b':'));
    &s[r.0..r.1]
}

impl EmailAddress {
    /// `s` as an [`EmailAddress`] holds it, lent by `s` when that is a
    /// slice of it (an ASCII address with a lowercase domain, nearly every
    /// one): for the checks that look at an address and keep none.
    pub fn normalized(s: &str) -> Result<std::borrow::Cow<'_, str>, ParseError> {
        use std::borrow::Cow;
        let t = if s.is_ascii() {
            trim_ascii_address(s)
        } else {
            trim_address(s)
        };
        let bad = || ParseError::Address(truncate_for_error(s));
        if t.len() > MAX_ADDRESS_LEN || t.len() < 3 {
            return Err(bad());
        }
        let at = memchr::memrchr(b'@', t.as_bytes()).ok_or_else(bad)?;
        let (local, domain) = (&t[..at], &t[at + 1..]);
        let d = domain.as_bytes();
        if local.is_empty()
            || d.is_empty()
            || local.len() > 64 * 4
            || memchr::memchr(b'.', d).is_none() && d[0] != b'[' && domain != "localhost"
            || d[0] == b'.'
            || d[d.len() - 1] == b'.'
            || d.windows(2).any(|w| w == b"..")
        {
            return Err(bad());
        }
        // One pass over the bytes with a class table: an analysis parses
        // every address-like span of a bounce, most of them short.
        let (mut seen, mut all) = (0u8, DOMAIN_BYTE);
        for &c in local.as_bytes() {
            seen |= ADDRESS_BYTES[usize::from(c)];
        }
        for &c in d {
            let class = ADDRESS_BYTES[usize::from(c)];
            seen |= class;
            all &= class;
        }
        if seen & NON_ASCII == 0 {
            // on ASCII, whitespace other than the space is a control
            // character and alphanumerics are ASCII ones: the table is the
            // checks below
            if seen & FORBIDDEN_BYTE != 0 || all & DOMAIN_BYTE == 0 {
                return Err(bad());
            }
            if !d.iter().any(u8::is_ascii_uppercase) {
                return Ok(Cow::Borrowed(t));
            }
            let mut out = String::with_capacity(t.len());
            out.push_str(local);
            out.push('@');
            out.push_str(domain);
            out[local.len() + 1..].make_ascii_lowercase();
            return Ok(Cow::Owned(out));
        }
        if t.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',')
        {
            return Err(bad());
        }
        if !domain
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
        {
            return Err(bad());
        }
        Ok(Cow::Owned(format!("{local}@{}", domain.to_lowercase())))
    }
}

/// [`EmailAddress::same_key`] of two normalised addresses.
pub(crate) fn same_key(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// The local part of a normalised address (see [`EmailAddress::local_part`]).
pub fn local_part_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(l, _)| l).unwrap_or(address)
}

impl FromStr for EmailAddress {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::normalized(s).map(|a| EmailAddress(a.into_owned()))
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> String {
        a.0
    }
}
impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 3463 enhanced status code `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnhancedStatus {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedStatus {
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }
    pub fn is_permanent(&self) -> bool {
        self.class == 5
    }
    pub fn is_transient(&self) -> bool {
        self.class == 4
    }
    pub fn is_success(&self) -> bool {
        self.class == 2
    }

    /// X.0.0, "other undefined status" (RFC 3463 §3.1): it says no more
    /// than its class.
    pub fn is_generic(&self) -> bool {
        self.subject == 0 && self.detail == 0
    }
}

impl FromStr for EnhancedStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError::Status(truncate_for_error(s));
        let t = s.trim();
        let mut it = t.splitn(3, '.');
        let (c, sub, det) = (
            it.next().ok_or_else(bad)?,
            it.next().ok_or_else(bad)?,
            it.next().ok_or_else(bad)?,
        );
        // the detail may be followed by text ("5.1.1 (user unknown)")
        let det = det
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or("");
        let num = |p: &str| -> Result<u16, ParseError> {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let class = num(c)?;
        if !matches!(class, 2 | 4 | 5) {
            return Err(bad());
        }
        Ok(Self {
            class: class as u8,
            subject: num(sub)?,
            detail: num(det)?,
        })
    }
}
impl TryFrom<String> for EnhancedStatus {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
impl From<EnhancedStatus> for String {
    fn from(s: EnhancedStatus) -> String {
        s.to_string()
    }
}
impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// A three-digit SMTP reply code (RFC 5321 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReplyCode(u16);

impl ReplyCode {
    pub fn value(&self) -> u16 {
        self.0
    }
    pub fn class(&self) -> u8 {
        (self.0 / 100) as u8
    }
}
impl FromStr for ReplyCode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let b = t.as_bytes();
        if b.len() == 3
            && matches!(b[0], b'2' | b'4' | b'5')
            && (b'0'..=b'5').contains(&b[1])
            && b[2].is_ascii_digit()
        {
            t.parse()
                .map(ReplyCode)
                .map_err(|_| ParseError::ReplyCode(t.into()))
        } else {
            Err(ParseError::ReplyCode(truncate_for_error(s)))
        }
    }
}
impl TryFrom<String> for ReplyCode {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
impl From<ReplyCode> for String {
    fn from(s: ReplyCode) -> String {
        s.to_string()
    }
}
impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name { $($(#[$vm])* $var),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn as_str(&self) -> &'static str { match self { $($name::$var => $s),+ } }
        }
        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // the names are lowercase: compared as they stand, a DSN's
                // `Action: Failed` needs no lowercase copy
                let t = s.trim();
                $(if t.eq_ignore_ascii_case($s) { return Ok($name::$var); })+
                Err(ParseError::Unknown { what: $what, value: truncate_for_error(&t.to_ascii_lowercase()) })
            }
        }
        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, Self::Error> { s.parse() }
        }
        impl From<$name> for &'static str { fn from(v: $name) -> &'static str { v.as_str() } }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// What a failure means for the address.
    BounceType, "bounce type" {
        /// The address is invalid: stop mailing it.
        Hard => "hard",
        /// Temporary or not the address's fault: count, retry.
        Soft => "soft",
        /// Not a failure of the address (auto-reply, delay warning).
        Ignored => "ignored",
        /// Not a failure at all (success DSN).
        None => "none",
    }
);

string_enum!(
    /// The coarse reason, as Campaign-style platforms name it.
    Reason, "reason" {
        UserUnknown => "user_unknown",
        MailboxFull => "mailbox_full",
        InvalidDomain => "invalid_domain",
        AccountDisabled => "account_disabled",
        Refused => "refused",
        Unreachable => "unreachable",
        NotDefined => "not_defined",
    }
);

string_enum!(
    /// What kind of message a bounce mailbox received.
    MessageKind, "message kind" {
        Dsn => "dsn",
        Arf => "arf",
        AutoReply => "auto_reply",
        Bounce => "bounce",
        NotBounce => "not_bounce",
    }
);

string_enum!(
    /// RFC 3464 Action field.
    Action, "action" {
        Failed => "failed",
        Delayed => "delayed",
        Delivered => "delivered",
        Relayed => "relayed",
        Expanded => "expanded",
    }
);

string_enum!(
    /// The SMTP command the remote server was answering when it refused.
    SmtpCommand, "SMTP command" {
        Connect => "connect",
        Helo => "helo",
        MailFrom => "mail_from",
        RcptTo => "rcpt_to",
        Data => "data",
    }
);

string_enum!(
    /// The fine-grained cause of a failure. Each has a default type and reason
    /// ([`Category::default_verdict`]) and says whether the sender, not the
    /// recipient, is at fault ([`Category::sender_side`]). This table is the one
    /// place the taxonomy is defined; README.md documents it.
    Category, "category" {
        UserUnknown => "user_unknown",
        HasMoved => "has_moved",
        InvalidDomain => "invalid_domain",
        DomainNotAccepting => "domain_not_accepting",
        MailboxFull => "mailbox_full",
        AccountDisabled => "account_disabled",
        Blocked => "blocked",
        BadReputation => "bad_reputation",
        SpamDetected => "spam_detected",
        VirusDetected => "virus_detected",
        ContentRejected => "content_rejected",
        PolicyViolation => "policy_violation",
        Filtered => "filtered",
        SenderRejected => "sender_rejected",
        AuthFailure => "auth_failure",
        MissingPtr => "missing_ptr",
        SecurityError => "security_error",
        RateLimited => "rate_limited",
        RelayDenied => "relay_denied",
        MessageTooLarge => "message_too_large",
        SyntaxError => "syntax_error",
        NotCompliant => "not_compliant",
        Expired => "expired",
        NetworkError => "network_error",
        SystemError => "system_error",
        MailerError => "mailer_error",
        OnHold => "on_hold",
        Undefined => "undefined",
        SpamComplaint => "spam_complaint",
        AutoReply => "auto_reply",
        Delayed => "delayed",
        Delivered => "delivered",
    }
);

impl Category {
    /// Default (type, reason) for a failure of this category.
    pub fn default_verdict(self) -> (BounceType, Reason) {
        use BounceType::*;
        use Category as C;
        match self {
            C::UserUnknown | C::HasMoved => (Hard, Reason::UserUnknown),
            C::InvalidDomain | C::DomainNotAccepting => (Soft, Reason::InvalidDomain),
            C::MailboxFull => (Soft, Reason::MailboxFull),
            C::AccountDisabled => (Soft, Reason::AccountDisabled),
            C::Blocked
            | C::BadReputation
            | C::SpamDetected
            | C::VirusDetected
            | C::ContentRejected
            | C::PolicyViolation
            | C::Filtered
            | C::SenderRejected
            | C::AuthFailure
            | C::MissingPtr
            | C::SecurityError
            | C::RelayDenied
            | C::NotCompliant
            | C::MessageTooLarge
            | C::SyntaxError
            | C::RateLimited => (Soft, Reason::Refused),
            C::Expired | C::NetworkError | C::SystemError | C::MailerError => {
                (Soft, Reason::Unreachable)
            }
            C::OnHold | C::Undefined => (Soft, Reason::NotDefined),
            C::SpamComplaint => (Hard, Reason::Refused),
            C::AutoReply => (Ignored, Reason::NotDefined),
            C::Delayed => (Soft, Reason::Unreachable),
            C::Delivered => (None, Reason::NotDefined),
        }
    }

    /// True when the failure is caused by the sending side (its IP, domain,
    /// authentication or volume): such failures never count against the recipient.
    pub fn sender_side(self) -> bool {
        matches!(
            self,
            Category::Blocked
                | Category::BadReputation
                | Category::AuthFailure
                | Category::MissingPtr
                | Category::RateLimited
                | Category::RelayDenied
                | Category::SenderRejected
        )
    }

    pub fn describe(self) -> &'static str {
        use Category as C;
        match self {
            C::UserUnknown => "the mailbox does not exist",
            C::HasMoved => "the address has moved and no longer receives mail",
            C::InvalidDomain => "the domain does not exist or has no mail host",
            C::DomainNotAccepting => "the domain accepts no mail (null MX)",
            C::MailboxFull => "the mailbox is over quota",
            C::AccountDisabled => "the account is disabled, suspended or inactive",
            C::Blocked => "the sending IP or host is blocked (sender side)",
            C::BadReputation => "the sending IP or domain has a poor reputation (sender side)",
            C::SpamDetected => "the message was judged to be spam",
            C::VirusDetected => "a virus was found in the message",
            C::ContentRejected => "the message content was refused",
            C::PolicyViolation => "refused by a site policy",
            C::Filtered => "dropped by a recipient-side filter or rule",
            C::SenderRejected => "the envelope sender was rejected (sender side)",
            C::AuthFailure => "SPF / DKIM / DMARC authentication failed (sender side)",
            C::MissingPtr => "the sending IP has no valid reverse DNS (sender side)",
            C::SecurityError => "a security requirement (TLS, auth) was not met",
            C::RateLimited => "too many messages, connections or recipients (sender side)",
            C::RelayDenied => "relaying was denied (sender side)",
            C::MessageTooLarge => "the message is too large",
            C::SyntaxError => "an SMTP protocol syntax error",
            C::NotCompliant => "the message breaks the mail format standards",
            C::Expired => "delivery kept failing until the queue lifetime ran out",
            C::NetworkError => "DNS or network failure while delivering",
            C::SystemError => "an error on the remote system",
            C::MailerError => "the remote delivery program failed",
            C::OnHold => "the cause cannot be decided yet",
            C::Undefined => "the cause could not be determined",
            C::SpamComplaint => "the recipient reported the message (feedback loop)",
            C::AutoReply => "an automatic reply (out of office, vacation)",
            C::Delayed => "a delay warning: delivery is still being tried",
            C::Delivered => "a success notification",
        }
    }
}

/// What ties a bounce back to the message that was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalRef {
    pub message_id: Option<String>,
    pub tracking_id: Option<String>,
    pub verp_recipient: Option<EmailAddress>,
    /// The raw VERP local-part token when it was signed (`bounces+TOKEN@`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verp_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `FromStr` compares the names ASCII-case-insensitively as they stand:
    /// right only while every name is lowercase.
    #[test]
    fn enum_names_are_lowercase_and_parse_in_any_case() {
        fn check<T: FromStr + PartialEq + fmt::Debug + Copy>(
            all: &[T],
            name: impl Fn(&T) -> &'static str,
        ) {
            for v in all {
                let n = name(v);
                assert_eq!(n, n.to_ascii_lowercase());
                assert_eq!(n.to_ascii_uppercase().parse::<T>().ok(), Some(*v));
            }
        }
        check(BounceType::ALL, |v| v.as_str());
        check(Reason::ALL, |v| v.as_str());
        check(MessageKind::ALL, |v| v.as_str());
        check(Action::ALL, |v| v.as_str());
        check(SmtpCommand::ALL, |v| v.as_str());
        check(Category::ALL, |v| v.as_str());
    }

    /// The character-by-character checks the ASCII fast path stands in for.
    fn by_chars(t: &str) -> bool {
        let domain = t.rsplit_once('@').map_or("", |(_, d)| d);
        !t.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',')
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
    }

    proptest! {
        #[test]
        fn ascii_addresses_parse_as_by_characters(s in "[a-cA-C0-9@.<>,;:'\"\\[\\]_\\- \t\x0b\x0c\x01\x7f]{0,20}") {
            let parsed = s.parse::<EmailAddress>();
            if let Ok(a) = &parsed {
                prop_assert!(by_chars(a.as_str()));
                prop_assert_eq!(a.domain(), a.domain().to_lowercase());
            }
            // a well-formed candidate the fast path rejected would show here
            let t = trim_address(&s);
            if parsed.is_err() && by_chars(t) {
                let ok_shape = t.rsplit_once('@').is_some_and(|(l, d)| {
                    !l.is_empty() && !d.is_empty() && (d.contains('.') || d.starts_with('[') || d == "localhost")
                        && !d.starts_with('.') && !d.ends_with('.') && !d.contains("..")
                }) && t.len() >= 3;
                prop_assert!(!ok_shape, "{t:?} rejected");
            }
        }
    }

    proptest! {
        #[test]
        fn ascii_trim_is_the_char_trim(s in "[a@.<>,;:'\" \t\x0b\x0c\r\n]{0,16}") {
            prop_assert_eq!(trim_ascii_address(&s), trim_address(&s));
        }
    }

    #[test]
    fn same_key_ignores_case() {
        let a: EmailAddress = "Kim@Example.ORG".parse().expect("address");
        let b: EmailAddress = "kim@example.org".parse().expect("address");
        let c: EmailAddress = "Ünal@example.org".parse().expect("address");
        let d: EmailAddress = "ünal@example.org".parse().expect("address");
        assert!(a.same_key(&b) && c.same_key(&d) && !a.same_key(&c));
        assert_eq!(a.as_str(), "Kim@example.org");
    }
}
