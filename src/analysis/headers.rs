//! Header-level evidence: is this a bounce, an auto-reply, and what ties it to
//! the message that was sent.

use super::{mime, Correlation};
use crate::model::{
    address_byte, local_part_of, EmailAddress, OriginalRef, LABEL_BYTE, LOCAL_BYTE,
};
use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    crate::text::rx(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+").expect("address regex")
});

/// Every address in a header or text fragment, in order, parsed.
pub fn addresses(s: &str) -> impl Iterator<Item = EmailAddress> + '_ {
    address_spans(s).filter_map(|m| m.parse().ok())
}

/// Every address in a header or text fragment, in order, as
/// [`EmailAddress::normalized`] gives it: for checks that keep none.
pub fn normalized_addresses(s: &str) -> impl Iterator<Item = Cow<'_, str>> + '_ {
    address_spans(s).filter_map(|m| EmailAddress::normalized(m).ok())
}

pub fn first_address(s: &str) -> Option<EmailAddress> {
    address_spans(s).find_map(|m| m.parse().ok())
}

/// The address-shaped spans of a text, as [`ADDRESS`] finds them. ASCII text
/// (nearly all of it) is scanned from each `@` outwards, which skips the
/// prose between addresses at memchr speed; other text goes to the regex,
/// whose `\w` is Unicode's.
pub fn address_spans(s: &str) -> AddressSpans<'_> {
    if s.is_ascii() {
        AddressSpans::Ascii(AsciiAddresses { s, pos: 0 })
    } else {
        AddressSpans::Other(ADDRESS.find_iter(s))
    }
}

pub enum AddressSpans<'a> {
    Ascii(AsciiAddresses<'a>),
    Other(regex::Matches<'static, 'a>),
}

impl<'a> Iterator for AddressSpans<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        match self {
            Self::Ascii(it) => it.next(),
            Self::Other(it) => it.next().map(|m| m.as_str()),
        }
    }
}

pub struct AsciiAddresses<'a> {
    s: &'a str,
    /// Where the next search starts (the end of the previous match).
    pos: usize,
}

impl<'a> Iterator for AsciiAddresses<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        let local_char = |c: u8| address_byte(c) & LOCAL_BYTE != 0;
        let label_char = |c: u8| address_byte(c) & LABEL_BYTE != 0;
        let label_end =
            |from: usize| from + b[from..].iter().take_while(|&&c| label_char(c)).count();
        let mut search = self.pos;
        while let Some(at) = memchr::memchr(b'@', &b[search..]).map(|i| search + i) {
            search = at + 1;
            let start = at
                - b[self.pos..at]
                    .iter()
                    .rev()
                    .take_while(|&&c| local_char(c))
                    .count();
            let mut end = label_end(at + 1);
            if start == at || end == at + 1 {
                continue;
            }
            let mut labels = 1;
            while b.get(end) == Some(&b'.') {
                let next = label_end(end + 1);
                if next == end + 1 {
                    break;
                }
                end = next;
                labels += 1;
            }
            if labels < 2 {
                continue;
            }
            self.pos = end;
            return Some(&self.s[start..end]);
        }
        self.pos = b.len();
        None
    }
}

static DAEMON_LOCAL: LazyLock<Regex> = LazyLock::new(|| {
    crate::text::rx(r"(?i)^(?:mailer[-_.]?daemon|mail[-_.]?daemon|post[-_.]?master|mmdf|mail[-_.]?delivery[-_.]?(?:subsystem|system)?|bounce[sd]?|returned[-_.]?mail|mail[-_.]?administrator|smtp[-_.]?gateway|mdaemon|[^@]+-(?:owner|admin|request)|owner-[^@]+)(?:[-+.].*)?$").expect("daemon regex")
});

/// Whether an address is a mail system's own (RFC 5321 §4.5.1 postmaster,
/// MAILER-DAEMON and the like, RFC 2142 §4-§5 role mailboxes, list
/// owners): the reporting side, never a failed recipient.
pub fn is_daemon_address(address: &str) -> bool {
    let local = local_part_of(address);
    DAEMON_LOCAL.is_match(local) || ROLE_LOCAL.is_match(local)
}

/// RFC 2142's role mailboxes that speak for a mail system.
static ROLE_LOCAL: LazyLock<Regex> = LazyLock::new(|| {
    crate::text::rx(r"(?i)^(?:postmaster|hostmaster|abuse|noc|security|webmaster|mailer-daemon|mail-daemon|double-bounce|no-?reply)$")
        .expect("role regex")
});

static DAEMON_NAME: LazyLock<Regex> = LazyLock::new(|| {
    crate::text::rx(r"(?i)mail delivery (?:sub)?system|mailer[- ]daemon|post ?master|system administrator|mail administrator|mail delivery service|delivery status notification|internet mail delivery|mail router|notes mail router|e-?mail delivery").expect("daemon name regex")
});

static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    crate::text::rx(concat!(
        r"(?i)undeliver|undelivered|returned mail|return(?:ed)? to sender|delivery status notification|",
        r"failure notice|delivery fail|mail delivery|could not be delivered|cannot be delivered|non-?deliver|",
        r"not delivered|delivery has failed|mail system error|delivery notification|could not send|",
        r"delivery problem|mail failure|failed mail|bounced? (?:mail|message|notification|e-?mail)|",
        r"message not delivered|permanent error|delivery report|unable to deliver|failed delivery|",
        r"delivery error|delivery delayed|delayed mail|warning: message|unzustellbar|nicht zustellbar|",
        r"non remis|non recapitabile|no se puede entregar|no entregado|état de remise|mail error|",
        r"returned message|message you sent|rejected (?:mail|message)|notificación|not be delivered|",
        r"未送達|不達|エラー|送信失敗|退信|退回|系统退信|mail delivery failure|error sending|not (?:a )?member"
    ))
    .expect("bounce subject regex")
});

static AUTO_REPLY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    crate::text::rx(concat!(
        r"(?i)^\s*(?:auto(?:matic)?[ -]?(?:reply|response|answer|antwort)|autoreply|auto:|",
        r"out of (?:the )?office|away from (?:the |my )?(?:office|desk)|away until|on vacation|vacation|",
        r"abwesenheit|abwesend|automatische antwort|réponse automatique|absence|absent|",
        r"respuesta automática|respuesta automatica|fuera de la oficina|risposta automatica|fuori ufficio|",
        r"resposta automática|ausente|automatisch antwoord|afwezig|niet aanwezig|autosvar|frånvaro|",
        r"automaattinen vastaus|自動応答|自動返信|不在|自动回复|out-of-office|ooo\b)"
    ))
    .expect("auto-reply subject regex")
});

static DELAY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    crate::text::rx(r"(?i)\bdelay(?:ed)?\b|warning: could not send message for past|not yet been delivered|still being retried|delivery status notification \(delay\)|temporarily (?:undeliverable|delayed)")
        .expect("delay subject regex")
});

/// Evidence, from the headers, that a message is a delivery report.
#[derive(Debug, Default)]
pub struct Signals {
    pub daemon_sender: bool,
    pub bounce_subject: bool,
    pub null_return_path: bool,
    pub report: bool,
    pub failed_recipients: Vec<EmailAddress>,
    /// The subject says delivery is only delayed and still being retried.
    pub delay_warning: bool,
}

impl Signals {
    /// Strong evidence: the text may be trusted to name failed recipients.
    pub fn strong(&self) -> bool {
        self.daemon_sender
            || self.bounce_subject
            || self.report
            || !self.failed_recipients.is_empty()
    }
    pub fn is_bounce(&self) -> bool {
        self.strong() || self.null_return_path
    }
}

pub fn bounce_signals(msg: &mime::Message) -> Signals {
    let mut s = Signals::default();
    if let Some(from) = msg.header("from") {
        let addr_daemon =
            normalized_addresses(from).any(|a| DAEMON_LOCAL.is_match(local_part_of(&a)));
        let name_part = from.split('<').next().unwrap_or("");
        s.daemon_sender = addr_daemon
            || DAEMON_NAME.is_match(name_part)
            || (!from.contains('@') && DAEMON_LOCAL.is_match(from.trim()));
    }
    if let Some(subj) = msg.header("subject") {
        s.bounce_subject = BOUNCE_SUBJECT.is_match(subj) && !AUTO_REPLY_SUBJECT.is_match(subj);
        s.delay_warning = DELAY_SUBJECT.is_match(subj);
    }
    // list managers (Mailman, fml, Sympa) answer from their admin address
    s.daemon_sender |= msg.header("x-list-administrivia").is_some();
    s.null_return_path = msg.headers_named("return-path").any(|v| {
        let t = v.trim();
        t == "<>" || t.is_empty() || t.eq_ignore_ascii_case("<mailer-daemon>")
    });
    s.report = msg.content_type == "multipart/report";
    for v in msg.headers_named("x-failed-recipients") {
        for a in addresses(v) {
            if !s.failed_recipients.contains(&a) {
                s.failed_recipients.push(a);
            }
        }
    }
    s
}

/// RFC 3834 and the common vendor markers of automatic replies.
pub fn is_auto_reply(msg: &mime::Message) -> bool {
    let h = |n: &str| msg.header(n).map(str::trim);
    if h("auto-submitted")
        .and_then(|v| v.get(..12))
        .is_some_and(|v| v.eq_ignore_ascii_case("auto-replied"))
    {
        return true;
    }
    if [
        "x-autoreply",
        "x-autorespond",
        "x-autoresponder",
        "x-auto-response",
    ]
    .iter()
    .any(|n| msg.header(n).is_some())
    {
        return true;
    }
    if h("precedence").is_some_and(|v| v.eq_ignore_ascii_case("auto_reply")) {
        return true;
    }
    msg.header("subject")
        .is_some_and(|s| AUTO_REPLY_SUBJECT.is_match(s))
}

/// Message-ID, tracking id and VERP recipient of the message that bounced.
pub fn original_ref(msg: &mime::Message, corr: &Correlation) -> OriginalRef {
    let mut o = OriginalRef::default();
    let orig = super::original::headers(msg);
    // lowercased once, by the parse
    let tracking: &str = &msg.tracking_header;
    if let Some(h) = orig {
        o.message_id = mime::first_header(h, "message-id")
            .map(clean_id)
            .filter(|s| !s.is_empty());
        o.tracking_id = mime::first_header(h, tracking)
            .map(|v| v.trim().to_string())
            .filter(|s| !s.is_empty());
    }
    if o.tracking_id.is_none() {
        // some MTAs return only the body, or the platform put the id on the bounce path
        o.tracking_id = msg
            .header(tracking)
            .map(|v| v.trim().to_string())
            .filter(|s| !s.is_empty());
    }
    // A bounce goes to the envelope sender, so its own headers carry the VERP
    // address. A feedback report goes to the feedback-loop address instead:
    // there the envelope sender is the report's Original-Mail-From and the
    // returned message's Return-Path.
    let report_fields = msg
        .feedback_report
        .as_deref()
        .map(super::fields::parse_fields)
        .unwrap_or_default();
    let sources = [
        "x-original-to",
        "delivered-to",
        "envelope-to",
        "x-envelope-to",
        "to",
    ]
    .into_iter()
    .flat_map(|name| msg.headers_named(name))
    .chain(
        report_fields
            .iter()
            .filter(|(k, _)| k == "original-mail-from")
            .map(|(_, v)| v.as_ref()),
    )
    .chain(
        orig.into_iter()
            .flatten()
            .filter(|(k, _)| k == "return-path")
            .map(|(_, v)| &**v),
    );
    for v in sources {
        for a in normalized_addresses(v) {
            // nearly no address is one: the groups are read only from a match
            if !corr.verp_pattern.is_match(&a) {
                continue;
            }
            if let Some(c) = corr.verp_pattern.captures(&a) {
                let (Some(l), Some(d)) = (c.name("local"), c.name("domain")) else {
                    continue;
                };
                if let Ok(addr) = format!("{}@{}", l.as_str(), d.as_str()).parse() {
                    o.verp_recipient = Some(addr);
                    o.verp_token = c.name("token").map(|t| t.as_str().to_string());
                    return o;
                }
            }
        }
    }
    o
}

fn clean_id(v: &str) -> String {
    let v = v.trim();
    match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => v[a + 1..b].trim().to_string(),
        _ => v.trim_matches(['<', '>']).trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn by_regex(s: &str) -> Vec<&str> {
        ADDRESS.find_iter(s).map(|m| m.as_str()).collect()
    }

    #[test]
    fn ascii_scanner_finds_what_the_regex_finds() {
        for s in [
            "",
            "kim@example.org",
            "<kim@example.org>, \"Lee\" <lee.x+tag@mail.example.co.uk>.",
            "a@b@c.com",
            "x@y",
            "x@y..com z@w.org.",
            "@example.org kim@",
            "foo@bar.-baz.com ok@a-b.c_d",
            "550 5.1.1 <user@example.com>... User unknown; from=<a@b.c>",
        ] {
            assert_eq!(address_spans(s).collect::<Vec<_>>(), by_regex(s), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn ascii_scanner_agrees_with_the_regex(s in "[a-c.@_+< -]{0,40}") {
            prop_assert_eq!(address_spans(&s).collect::<Vec<_>>(), by_regex(&s));
        }

        #[test]
        fn ascii_scanner_agrees_on_every_ascii_byte(s in "([\\x00-\\x7F]|[a@.]){0,60}") {
            prop_assert_eq!(address_spans(&s).collect::<Vec<_>>(), by_regex(&s));
        }
    }
}
