//! Free-text bounces: the formats of qmail, older Sendmail, Exim, Exchange,
//! Domino, Courier and friends. They share a shape — a preamble, then each
//! failed address followed by the remote server's answer, then a copy of the
//! original — so one reader covers them: cut the copy off, find the addresses
//! that are not the sender's, and take the lines around each as its diagnostic.

use super::{headers, mime, Analysis, RecipientReport};
use crate::model::{same_key, EmailAddress, EnhancedStatus, ReplyCode};
use regex::Regex;
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

/// Longest diagnostic kept per recipient.
const MAX_DIAGNOSTIC: usize = 1000;
/// Lines that may follow an address line as part of its explanation.
const MAX_BLOCK_LINES: usize = 8;

/// Phrases that introduce the copy of the original when they start a line.
const ORIGINAL_MARKER_PATTERN: &str = concat!(
    r"(?i)(?:below this line is a copy of the message|this is a copy of the message|",
    r"a copy of the original message|(?:the )?original message (?:follows|headers?)|",
    r"original message\s*[\-=_*]{2,}|returned message|unsent message follows|",
    r"(?:the )?header of the original message|header of the returned message|message headers follow|",
    r"returned mail follows|headers? of (?:the )?(?:original|returned|your) message|",
    r"undelivered message headers|forwarded message|original message header|",
    r"content-type: message/(?:rfc822|global)|content-type: text/rfc822-headers|",
    r"your message reads|the text you sent follows|rejected message|original e-?mail|",
    r"message text follows|\[message headers\]|--- original message|original message:)"
);

/// What may stand before a marker on its line: spaces and decoration such
/// as `----- `. The same words inside a sentence are prose.
fn marker_decoration(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'-' | b'=' | b'_' | b'*' | b'#' | b'>')
}

static ORIGINAL_MARKER: LazyLock<super::anchored::LineStartPhrases> = LazyLock::new(|| {
    super::anchored::LineStartPhrases::new(ORIGINAL_MARKER_PATTERN, marker_decoration)
        .expect("original marker regex")
});

/// Names that start an inline copy of a message's headers.
const HEADER_NAMES: &[&[u8]] = &[
    b"Return-Path",
    b"Received",
    b"Message-ID",
    b"Message-Id",
    b"From",
    b"Date",
    b"Subject",
    b"MIME-Version",
    b"To",
    b"Content-Type",
    b"DKIM-Signature",
    b"Delivered-To",
];

/// Whether a line starts like a mail header, as the regex
/// `^(?:Return-Path|Received|Message-I[dD]|From|Date|Subject|MIME-Version|To|X-[\w-]+|Content-Type|DKIM-Signature|Delivered-To):\s`
/// decides, by comparing names (checked against it by a property test). A
/// line after a report is tested; as a regex the call alone cost more.
fn is_header_line(l: &str) -> bool {
    let b = l.as_bytes();
    let name_end = if let Some(rest) = b.strip_prefix(b"X-") {
        let run = rest
            .iter()
            .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            .count();
        if rest.get(run).is_some_and(|c| !c.is_ascii()) {
            // a name with letters beyond ASCII: Unicode's `\w` decides
            return HEADER_LINE.is_match(l);
        }
        if run == 0 {
            return false;
        }
        2 + run
    } else {
        match HEADER_NAMES.iter().find(|n| b.starts_with(n)) {
            Some(n) => n.len(),
            None => return false,
        }
    };
    if b.get(name_end) != Some(&b':') {
        return false;
    }
    match b.get(name_end + 1) {
        Some(&c) if c.is_ascii() => matches!(c, b'\t'..=b'\r' | b' '),
        Some(_) => l[name_end + 1..].starts_with(char::is_whitespace),
        None => false,
    }
}

/// Whether `c` is the first letter of a name [`is_header_line`] accepts.
fn starts_a_header_name(c: u8) -> bool {
    matches!(c, b'C' | b'D' | b'F' | b'M' | b'R' | b'S' | b'T' | b'X')
}

/// The pattern [`is_header_line`] implements, for names its byte test leaves
/// open.
static HEADER_LINE: LazyLock<Regex> = LazyLock::new(|| {
    crate::text::rx(r"^(?:Return-Path|Received|Message-I[dD]|From|Date|Subject|MIME-Version|To|X-[\w-]+|Content-Type|DKIM-Signature|Delivered-To):\s")
        .expect("header line regex")
});

static TEMPORARY: LazyLock<crate::text::Phrases> = LazyLock::new(|| {
    crate::text::Phrases::new(r"(?i)temporar|will (?:be )?retr|still (?:be )?trying|has been delayed|delayed|deferred|not yet been delivered|will keep trying|will continue|try again later|will be retried")
        .expect("temporary regex")
});

static EXCLUDED_LINE: LazyLock<crate::text::Phrases> = LazyLock::new(|| {
    crate::text::Phrases::new(r"(?i)message-?id|in-reply-to|references:|mail from|envelope-from|from:|sender:|reply-to:|return-path|smtp\.mailfrom|header\.from|\bfrom=<|\bby\s+\S+\s+with\b|\bdkim|\bid\s+<|contact|assistance|問い合わせ|ご連絡")
        .expect("excluded line regex")
});

fn boundary_ok(s: &str, start: usize, end: usize, dots_allowed_after: bool) -> bool {
    let b = s.as_bytes();
    let before_ok = start == 0 || {
        let c = b[start - 1];
        !(c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'/' || c == b'_')
    };
    before_ok && ends_ok(s, end, dots_allowed_after)
}

/// Whether a code ending at `end` ends there (no digit, letter or address
/// character runs on).
fn ends_ok(s: &str, end: usize, dots_allowed_after: bool) -> bool {
    let b = s.as_bytes();
    end >= b.len() || {
        let c = b[end];
        if c == b'.' {
            dots_allowed_after && b.get(end + 1).is_none_or(|n| !n.is_ascii_digit())
        } else {
            !(c.is_ascii_alphanumeric() || c == b'-' || c == b'/' || c == b'_' || c == b'@')
        }
    }
}

/// The RFC 3463 enhanced status code of a text: the one a remote server gave
/// next to its reply code (`550 5.1.1`, `550-'5.7.1`) if any, else the first.
pub fn find_status(s: &str) -> Option<EnhancedStatus> {
    reply_status(s).or_else(|| first_status(s))
}

/// The enhanced status code a server gave right after its reply code.
pub fn reply_status(s: &str) -> Option<EnhancedStatus> {
    // what stands before it is the reply code and its separator, `-` on the
    // lines of a multi-line reply (RFC 5321 §4.2.1: `550-5.1.1 ...`)
    codes::reply_then_status(s.as_bytes())
        .filter(|&(start, end)| {
            boundary_ok(s, start, end, true)
                || (s.as_bytes()[..start].ends_with(b"-") && ends_ok(s, end, true))
        })
        .find_map(|(start, end)| s[start..end].parse().ok())
}

/// The first enhanced status code in a text, wherever it stands.
pub fn first_status(s: &str) -> Option<EnhancedStatus> {
    codes::statuses(s.as_bytes())
        .filter(|&(start, end)| boundary_ok(s, start, end, true))
        .find_map(|(start, end)| s[start..end].parse().ok())
}

/// Phrases naming the SMTP command a server answered, lowercase, in the
/// order they are tried at one position. A regex alternation of them with an
/// optional "in reply to (the )" before walked its lazy DFA over every byte of
/// a report; as plain literals they are found by a vectorised scan, and the
/// few conditions a literal cannot say are checked around each match.
const SMTP_COMMAND_PHRASES: &[&str] = &[
    "end of data",
    "data command",
    ">>> data",
    "final data",
    "our data",
    "after data",
    "rcpt to",
    "does not like recipient",
    "our rcpt",
    "has rejected address",
    "mail from",
    "sender was rejected",
    "our mail from",
    "helo",
    "ehlo",
    "refused to talk to me",
    "initial greeting",
    "initial connection",
    "during connect",
    // a report that names the command answered after the reply, in its own
    // section ("SMTP command" then "DATA"): the reply came first
    "smtp command data",
    "smtp command rcpt to",
    "smtp command mail from",
];

/// Whether a phrase names the command after the reply it answered, as
/// "in reply to ..." does.
fn names_command_after_reply(phrase: &str) -> bool {
    phrase.starts_with("smtp command ")
}

/// What may stand before a phrase as part of its mention, longest first.
const IN_REPLY_TO: [&str; 2] = ["in reply to the ", "in reply to "];

static SMTP_COMMAND: LazyLock<aho_corasick::AhoCorasick> = LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(SMTP_COMMAND_PHRASES)
        .expect("smtp command phrases")
});

/// The command each phrase of [`SMTP_COMMAND_PHRASES`] names, worked out once.
static PHRASE_COMMANDS: LazyLock<Vec<crate::model::SmtpCommand>> = LazyLock::new(|| {
    SMTP_COMMAND_PHRASES
        .iter()
        .map(|p| command_named(p))
        .collect()
});

/// Which command a phrase of [`SMTP_COMMAND_PHRASES`] names.
fn command_named(phrase: &str) -> crate::model::SmtpCommand {
    use crate::model::SmtpCommand as C;
    if phrase.contains("data") {
        C::Data
    } else if phrase.contains("rcpt") || phrase.contains("recipient") || phrase.contains("address")
    {
        C::RcptTo
    } else if phrase.contains("mail from") || phrase.contains("sender") {
        C::MailFrom
    } else if phrase.contains("helo") || phrase.contains("ehlo") {
        C::Helo
    } else {
        C::Connect
    }
}

/// A mention of an SMTP command in a lowercased text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mention {
    /// Where it starts, "in reply to" included.
    start: usize,
    /// "in reply to ...": the command comes after the reply it names.
    in_reply: bool,
    command: crate::model::SmtpCommand,
}

/// Every mention, left to right and not overlapping, as the regex
/// `(?:in reply to (?:the )?)?(?:end of data|...|after data\b|...|\b(?:helo|ehlo)\b|...)`
/// finds them in an ASCII-lowercased text: no two phrases can match at one
/// position, so a phrase whose word boundary fails leaves its position to
/// the next one.
fn smtp_mentions(b: &[u8]) -> impl Iterator<Item = Mention> + '_ {
    let word = |i: usize| {
        b.get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    };
    // where the search resumes, and where the last mention ended: a prefix
    // may not reach back into it
    let (mut from, mut region) = (0, 0);
    std::iter::from_fn(move || {
        while from < b.len() {
            let m = SMTP_COMMAND.find(aho_corasick::Input::new(b).range(from..))?;
            let (start, end) = (m.start(), m.end());
            let phrase = SMTP_COMMAND_PHRASES[m.pattern().as_usize()];
            let bounded = match phrase {
                "after data" => !word(end),
                "helo" | "ehlo" => !(start.checked_sub(1).is_some_and(word) || word(end)),
                _ => true,
            };
            if !bounded {
                from = start + 1;
                continue;
            }
            let prefix = IN_REPLY_TO
                .iter()
                .find(|p| start >= region + p.len() && b[..start].ends_with(p.as_bytes()));
            (from, region) = (end, end);
            return Some(Mention {
                start: prefix.map_or(start, |p| start - p.len()),
                in_reply: prefix.is_some() || names_command_after_reply(phrase),
                command: PHRASE_COMMANDS[m.pattern().as_usize()],
            });
        }
        None
    })
}

/// The SMTP command a failure answered, from the words around it: the mention
/// nearest the reply code, before it (">>> RCPT TO", "after MAIL FROM") or,
/// for "in reply to ... command", after it.
pub fn find_smtp_command(s: &str) -> Option<crate::model::SmtpCommand> {
    let mut copy = crate::text::LowercaseCopy::new();
    let mut mentions = smtp_mentions(copy.of(s.as_bytes())).peekable();
    mentions.peek()?;
    let reply_at = reply_code_at(s).map(|(p, _)| p);
    let mut best: Option<(usize, crate::model::SmtpCommand)> = None;
    let mut last = None;
    for m in mentions {
        last = Some(m.command);
        let Some(p) = reply_at else { continue };
        let distance = match m.in_reply {
            true if m.start > p => m.start - p,
            false if m.start < p => p - m.start,
            _ => continue,
        };
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, m.command));
        }
    }
    // with a known reply, a command named only after it is the next step of the dialogue
    best.map(|(_, c)| c)
        .or(if reply_at.is_none() { last } else { None })
}

/// Whether a text is the start of a multi-line SMTP reply without its last
/// line: every reply code in it is followed by `-` (RFC 5321 §4.2.1).
pub fn is_cut_multiline_reply(s: &str) -> bool {
    let b = s.trim_start().as_bytes();
    b.len() > 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b'-' && {
        let code = &b[..3];
        !b.windows(4).any(|w| &w[..3] == code && w[3] == b' ')
    }
}

/// The first SMTP reply code in a text (`550 ...`, `550-...`, `said: 550`).
pub fn find_reply_code(s: &str) -> Option<ReplyCode> {
    reply_code_at(s).map(|(_, c)| c)
}

fn reply_code_at(s: &str) -> Option<(usize, ReplyCode)> {
    let b = s.as_bytes();
    codes::replies(b).find_map(|start| {
        let end = start + 3;
        let before_ok = start == 0 || {
            let c = b[start - 1];
            matches!(
                c,
                b' ' | b'\t'
                    | b'\n'
                    | b'('
                    | b'['
                    | b'<'
                    | b'"'
                    | b'\''
                    | b'='
                    | b':'
                    | b';'
                    | b'>'
            )
        };
        let after_ok = end >= b.len()
            || matches!(
                b[end],
                b' ' | b'-' | b'\t' | b'\n' | b'\r' | b')' | b',' | b';' | b':' | b']' | b'"'
            );
        if !(before_ok && after_ok) {
            return None;
        }
        s[start..end].parse().ok().map(|c| (start, c))
    })
}

/// Where the text's SMTP codes are, found by hand: these searches run over
/// every report and diagnostic, and as regexes (`[245][0-5]\d`, a class with
/// no literal to scan for) their DFA walked every byte. Each finds what
/// the regex in its comment finds, leftmost first and without overlaps
/// (checked against it by property tests).
mod codes {
    /// Where a `[245]\.\d{1,3}\.\d{1,3}` match at `at` ends.
    fn status_at(b: &[u8], at: usize) -> Option<usize> {
        if !matches!(b.get(at), Some(b'2' | b'4' | b'5')) || b.get(at + 1) != Some(&b'.') {
            return None;
        }
        let digits = |from: usize| {
            b[from.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
        };
        // the subject's digits must be followed by the dot, so no fewer would do
        let subject = digits(at + 2);
        if !(1..=3).contains(&subject) || b.get(at + 2 + subject) != Some(&b'.') {
            return None;
        }
        let detail_from = at + 3 + subject;
        let detail = digits(detail_from).min(3);
        (detail >= 1).then_some(detail_from + detail)
    }

    /// `[245]\.\d{1,3}\.\d{1,3}`: (start, end) of each match.
    pub(super) fn statuses(b: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut from = 0;
        std::iter::from_fn(move || {
            // every match has a dot second: scan for the dots
            let mut dots = memchr::memchr_iter(b'.', b.get(from + 1..)?);
            let found = dots.find_map(|i| {
                let start = from + i;
                status_at(b, start).map(|end| (start, end))
            })?;
            from = found.1;
            Some(found)
        })
    }

    /// Where a `[245][0-5]\d` match at `at` ends.
    fn reply_at(b: &[u8], at: usize) -> Option<usize> {
        match b.get(at..at + 3)? {
            [b'2' | b'4' | b'5', b'0'..=b'5', c] if c.is_ascii_digit() => Some(at + 3),
            _ => None,
        }
    }

    /// `[245][0-5]\d`: the start of each match (three bytes long).
    pub(super) fn replies(b: &[u8]) -> impl Iterator<Item = usize> + '_ {
        let mut from = 0;
        std::iter::from_fn(move || {
            let rest = b.get(from..)?;
            let start = memchr::memchr3_iter(b'2', b'4', b'5', rest)
                .map(|i| from + i)
                .find(|&i| reply_at(b, i).is_some())?;
            from = start + 3;
            Some(start)
        })
    }

    /// `[245][0-5]\d[ \-]+['#(]?([245]\.\d{1,3}\.\d{1,3})`: the status
    /// group of each match. The reply code, the separators and the optional
    /// quote come from disjoint byte sets, so no backtracking could change
    /// where the status starts.
    pub(super) fn reply_then_status(b: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut from = 0;
        std::iter::from_fn(move || {
            let rest = b.get(from..)?;
            let found = memchr::memchr3_iter(b'2', b'4', b'5', rest)
                .map(|i| from + i)
                .find_map(|start| {
                    let mut at = reply_at(b, start)?;
                    let separators = b[at..]
                        .iter()
                        .take_while(|&&c| matches!(c, b' ' | b'-'))
                        .count();
                    if separators == 0 {
                        return None;
                    }
                    at += separators;
                    if matches!(b.get(at), Some(b'\'' | b'#' | b'(')) {
                        at += 1;
                    }
                    status_at(b, at).map(|end| (at, end))
                })?;
            from = found.1;
            Some(found)
        })
    }

    #[cfg(test)]
    mod tests {
        use proptest::prelude::*;

        fn regex(p: &str) -> regex::Regex {
            crate::text::rx(p).expect("reference regex")
        }

        proptest! {
            #[test]
            fn scanners_find_what_the_regexes_find(s in "[0-9 .\\-'#(a]{0,40}") {
                let b = s.as_bytes();
                let statuses: Vec<_> = regex(r"[245]\.\d{1,3}\.\d{1,3}")
                    .find_iter(&s)
                    .map(|m| (m.start(), m.end()))
                    .collect();
                prop_assert_eq!(super::statuses(b).collect::<Vec<_>>(), statuses);
                let replies: Vec<_> = regex(r"[245][0-5]\d").find_iter(&s).map(|m| m.start()).collect();
                prop_assert_eq!(super::replies(b).collect::<Vec<_>>(), replies);
                let then: Vec<_> = regex(r"[245][0-5]\d[ \-]+['#(]?([245]\.\d{1,3}\.\d{1,3})")
                    .captures_iter(&s)
                    .filter_map(|c| c.get(1))
                    .map(|m| (m.start(), m.end()))
                    .collect();
                prop_assert_eq!(super::reply_then_status(b).collect::<Vec<_>>(), then);
            }
        }
    }
}

/// The human-readable part of a report, without the copy of the original.
pub fn report_text(msg: &mime::Message) -> String {
    let mut out = String::new();
    for (i, t) in msg.texts.iter().enumerate() {
        let cut = cut_point(t, msg.original_marker(i));
        out.reserve(cut + 1);
        out.push_str(&t[..cut]);
        out.push('\n');
        if cut < t.len() {
            break;
        }
    }
    out
}

/// The first marker of the returned original that stands at the start of a
/// line (after decoration such as `----- `).
pub fn find_original_marker(t: &str) -> Option<(usize, usize)> {
    ORIGINAL_MARKER.find(t)
}

fn cut_point(t: &str, marker: Option<(usize, usize)>) -> usize {
    let mut cut = t.len();
    if let Some((start, _)) = marker {
        if start > 0 {
            cut = start;
        }
    }
    if let Some(h) = header_block_start(&t[..cut]) {
        if h > 0 {
            cut = h;
        }
    }
    cut
}

/// Start of three or more consecutive unindented header lines (an inline copy).
fn header_block_start(t: &str) -> Option<usize> {
    let mut run = 0;
    let mut run_start = 0;
    let mut pos = 0;
    for line in crate::text::lines_inclusive(t) {
        // cheap pre-check: a header line starts with the capital of one of
        // the names (most prose lines start with another) and has a colon early
        let header = line
            .as_bytes()
            .first()
            .is_some_and(|&c| starts_a_header_name(c))
            && {
                let l = line.trim_end();
                is_header_line(l) && l.as_bytes().iter().take(40).any(|&b| b == b':')
            };
        if header {
            if run == 0 {
                run_start = pos;
            }
            run += 1;
            if run >= 3 {
                return Some(run_start);
            }
        } else if !(run > 0 && line.starts_with([' ', '\t']) && !line.trim().is_empty()) {
            run = 0;
        }
        pos += line.len();
    }
    None
}

/// Headers of an original message copied inline after the report text.
pub fn inline_original<'a>(msg: &mime::Message<'a>) -> Option<Vec<mime::Header<'a>>> {
    for (i, t) in msg.texts.iter().enumerate() {
        let mut start = None;
        if let Some((_, end)) = msg.original_marker(i) {
            let after =
                memchr::memchr(b'\n', &t.as_bytes()[end..]).map_or(t.len(), |i| end + i + 1);
            start = Some(after);
        }
        let from = start.unwrap_or(0);
        let Some(h) = header_block_start(&t[from..]) else {
            continue;
        };
        let block = match t {
            // a text lent by the message lends its headers too
            Cow::Borrowed(t) => {
                mime::parse_header_block(&t.as_bytes()[from + h..], &msg.tracking_header)
            }
            // a decoded one is the message's own: the headers keep their values
            Cow::Owned(t) => {
                mime::parse_header_block(&t.as_bytes()[from + h..], &msg.tracking_header)
                    .into_iter()
                    .map(|(k, v)| (k, Cow::Owned(v.into_owned())))
                    .collect()
            }
        };
        if !block.is_empty() {
            return Some(block);
        }
    }
    None
}

/// Addresses a report names that are not failed recipients: its own
/// envelope and the original's sender.
/// Normalised ([`EmailAddress::normalized`]), lent by the headers.
fn excluded_addresses<'m>(msg: &'m mime::Message) -> Vec<Cow<'m, str>> {
    let mut ex = Vec::new();
    for name in ["from", "to", "reply-to", "return-path", "sender", "cc"] {
        for v in msg.headers_named(name) {
            ex.extend(headers::normalized_addresses(v));
        }
    }
    if let Some(h) = msg.original() {
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

fn candidate_recipients(region: &str, excluded: &[Cow<'_, str>]) -> Vec<EmailAddress> {
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
    let with_at: Vec<(&str, bool)> = lines_with_at(region)
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

/// A report's text split into lines once, for the recipients whose lines
/// are looked for in it.
pub struct Region<'a> {
    text: &'a str,
    lines: Vec<&'a str>,
}

impl<'a> Region<'a> {
    pub fn new(text: &'a str) -> Self {
        // counted first: the lines are collected without growing the Vec
        let mut lines = Vec::with_capacity(memchr::memchr_iter(b'\n', text.as_bytes()).count() + 1);
        lines.extend(crate::text::lines(text));
        Self { text, lines }
    }

    /// Byte offset in the text where line `i` starts.
    fn start(&self, i: usize) -> Option<usize> {
        let line = self.lines.get(i)?;
        Some(line.as_ptr() as usize - self.text.as_ptr() as usize)
    }

    /// The first line from line `from` on that names `needle_lower` (ASCII
    /// case aside). An address is found from its `@`, rare in prose, rather
    /// than by testing every line.
    fn next_naming(&self, needle_lower: &str, from: usize) -> Option<usize> {
        let (text, n) = (self.text.as_bytes(), needle_lower.as_bytes());
        let Some(at) = memchr::memchr(b'@', n) else {
            return (from..self.lines.len()).find(|&i| contains_ci(self.lines[i], needle_lower));
        };
        let first = self.start(from)?;
        let ats = text.get(first + at..)?;
        memchr::memchr_iter(b'@', ats)
            .map(|p| first + p)
            .find(|&start| {
                text.get(start..start + n.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(n))
            })
            .map(|start| {
                let base = self.text.as_ptr() as usize;
                self.lines
                    .partition_point(|l| l.as_ptr() as usize - base <= start)
                    - 1
            })
    }
}

/// Byte ranges of the lines of `text` (as [`crate::text::lines`] splits it) that
/// hold an `@`, found from the `@`s: most lines of a report have none.
fn lines_with_at(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let b = text.as_bytes();
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = from + memchr::memchr(b'@', b.get(from..)?)?;
        let start = memchr::memrchr(b'\n', &b[..at]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &b[at..]).map_or(b.len(), |i| at + i);
        from = end;
        let end = if b[..end].ends_with(b"\r") {
            end - 1
        } else {
            end
        };
        Some((start, end))
    })
}

/// The lines of `region` that explain `address`: each line naming it, with
/// the lines that follow until a blank line or another address.
/// The other recipients' addresses end it: in a report that lists every
/// recipient with its reply, one line each (OpenSMTPD), each recipient's
/// diagnostic ends where the next one's starts.
pub fn block_for(region: &Region<'_>, address: &str, others: &[&str]) -> Option<String> {
    blocks(region, address, others)
}

fn blocks(region: &Region<'_>, address: &str, others: &[&str]) -> Option<String> {
    let lines = &region.lines;
    let needle = crate::text::ascii_lower(address);
    let mut out = String::new();
    let mut occurrences = 0;
    let mut i = 0;
    // lines before this one are in `out` already
    let mut consumed = 0;
    while i < lines.len() && occurrences < 4 && out.len() < MAX_DIAGNOSTIC {
        let Some(next) = region.next_naming(&needle, i) else {
            break;
        };
        if occurrences == 0 {
            // a block is a few lines: room for them at once
            out.reserve(256);
        }
        i = next;
        occurrences += 1;
        // In a session transcript the dialogue that failed stands before the
        // line naming the address (Sendmail: ">>> DATA", "<<< 550 ...", then
        // "421 host (smtp)... Deferred", then "554 <address>... ...").
        let mut k = i;
        while k > consumed && i - k < 4 && is_transcript_line(lines[k - 1], &needle, others) {
            k -= 1;
        }
        for l in &lines[k..i] {
            push_collapsed(&mut out, l);
        }
        push_collapsed(&mut out, lines[i]);
        let mut j = i + 1;
        while j < lines.len() && j <= i + MAX_BLOCK_LINES {
            let l = lines[j];
            if l.trim().is_empty() {
                // an address alone on its line is explained by the next paragraph
                if j == i + 1 && is_bare_address_line(lines[i]) {
                    j += 1;
                    continue;
                }
                break;
            }
            if contains_ci(l, &needle)
                || others.iter().any(|o| contains_ci(l, o))
                || is_sendmail_entry(l)
                || l.trim_start().starts_with("While talking to")
            {
                break;
            }
            push_collapsed(&mut out, l);
            j += 1;
        }
        i = j.max(i + 1);
        consumed = i;
    }
    if out.is_empty() {
        return None;
    }
    truncate_chars(&mut out, MAX_DIAGNOSTIC);
    Some(out)
}

/// A line of the SMTP dialogue (">>> RCPT TO:<...>", "<<< 550 ...") or a
/// Sendmail summary about a host rather than an address, that does not name
/// another recipient.
fn is_transcript_line(l: &str, needle: &str, others: &[&str]) -> bool {
    let t = l.trim_start();
    let dialogue = t.starts_with(">>>") || t.starts_with("<<<");
    let host_entry = is_sendmail_entry(t) && !t.contains('@');
    (dialogue || host_entry)
        && (contains_ci(l, needle) || !others.iter().any(|o| contains_ci(l, o)))
}

/// Sendmail's one-line summary per recipient or host:
/// "554 <kim@example.org>... 550 Host unknown", "550 example.org (smtp)... Deferred".
fn is_sendmail_entry(l: &str) -> bool {
    let b = l.as_bytes();
    b.len() > 4
        && b[..3].iter().all(u8::is_ascii_digit)
        && b[3] == b' '
        && l[4..]
            .split_whitespace()
            .take(2)
            .any(|w| w.ends_with("..."))
}

fn is_bare_address_line(l: &str) -> bool {
    let t = l.trim().trim_end_matches(':');
    !t.contains(' ') || t.split_whitespace().count() <= 3
}

/// ASCII case-insensitive substring test: addresses differ in case between
/// a DSN field and the transcript quoting it.
fn contains_ci(hay: &str, needle_lower: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle_lower.as_bytes());
    let Some(&first) = n.first() else { return true };
    if h.len() < n.len() {
        return false;
    }
    let candidates = &h[..=h.len() - n.len()];
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), candidates)
        .any(|i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn push_collapsed(out: &mut String, line: &str) {
    if line.is_ascii() {
        // the words `split_whitespace` finds, without decoding characters
        let b = line.as_bytes();
        let space = |c: u8| matches!(c, b'\t'..=b'\r' | b' ');
        let start = b.iter().position(|&c| !space(c)).unwrap_or(b.len());
        let end = b.iter().rposition(|&c| !space(c)).map_or(start, |i| i + 1);
        let inner = &b[start..end];
        // Most lines are words with single spaces between them already: then
        // they are copied whole, found by two scans that vectorise.
        static DOUBLE_SPACE: LazyLock<memchr::memmem::Finder<'static>> =
            LazyLock::new(|| memchr::memmem::Finder::new(b"  "));
        let control_space = inner
            .iter()
            .fold(false, |seen, &c| seen | matches!(c, b'\t'..=b'\r'));
        if !control_space && DOUBLE_SPACE.find(inner).is_none() {
            if !inner.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&line[start..end]);
            }
            return;
        }
        let mut i = start;
        while i < end {
            while i < end && space(b[i]) {
                i += 1;
            }
            let word = i;
            while i < end && !space(b[i]) {
                i += 1;
            }
            if word < i {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&line[word..i]);
            }
        }
        return;
    }
    for w in line.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
}

pub fn truncate_chars(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Without a Status, the class comes from the reply code, or from the words.
pub fn infer_status(r: &mut RecipientReport) {
    let class = match r.reply_code {
        Some(c) if c.class() == 4 || c.class() == 5 => c.class(),
        _ => {
            let d = r.diagnostic.as_deref().unwrap_or("");
            if r.action == Some(crate::model::Action::Delayed) || TEMPORARY.is_match(d) {
                4
            } else if r.hint.is_some() {
                return;
            } else {
                5
            }
        }
    };
    r.status = Some(EnhancedStatus::new(class, 0, 0));
    r.status_inferred = true;
}

pub fn parse_bounce(msg: &mime::Message, signals: &headers::Signals, a: &mut Analysis) {
    let region = report_text(msg);
    if region.trim().is_empty() {
        return;
    }
    let excluded = excluded_addresses(msg);
    let mut rcpts = if signals.failed_recipients.is_empty() {
        candidate_recipients(&region, &excluded)
    } else {
        signals.failed_recipients.clone()
    };
    let context: Arc<str> = {
        // Collapsing never lengthens the text, and the loop stops a line
        // past the cut: one allocation, not a growth by doubling.
        let mut c = String::with_capacity(region.len().min(8 * MAX_DIAGNOSTIC));
        // a long report is collapsed only as far as the context keeps
        for line in crate::text::lines_inclusive(&region) {
            push_collapsed(&mut c, line);
            if c.len() >= 4 * MAX_DIAGNOSTIC {
                break;
            }
        }
        truncate_chars(&mut c, 4 * MAX_DIAGNOSTIC);
        c.into()
    };
    let report = Region::new(&region);
    if rcpts.is_empty() && signals.strong() {
        // A report that names nobody: the original's recipient is the one who failed.
        if let Some(to) = msg.original().and_then(|h| mime::first_header(h, "to")) {
            rcpts.extend(
                headers::addresses(to)
                    .filter(|a| !excluded.iter().any(|e| same_key(e, a.as_str())))
                    .take(1),
            );
        }
    }
    let keys: Vec<String> = rcpts.iter().map(|r| r.key()).collect();
    let temporary_report = TEMPORARY.is_match(&context);
    let delay_warning = signals.delay_warning;
    for (i, addr) in rcpts.into_iter().enumerate() {
        let others: Vec<&str> = keys
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, k)| k.as_str())
            .collect();
        let mut r = RecipientReport::new(addr);
        let diag = blocks(&report, &keys[i], &others);
        r.reply_code = diag.as_deref().and_then(find_reply_code);
        r.status = diag.as_deref().and_then(find_status);
        if r.status.is_none() && r.reply_code.is_none() && keys.len() == 1 {
            r.reply_code = find_reply_code(&context);
            r.status = find_status(&context);
        }
        r.smtp_command = diag.as_deref().and_then(find_smtp_command);
        if r.smtp_command.is_none() && keys.len() == 1 {
            r.smtp_command = find_smtp_command(&context);
        }
        r.diagnostic = diag.or_else(|| Some(context.to_string()));
        // The whole text explains a recipient only when it names no other:
        // with several, the others' reasons are in it too, and each
        // recipient's diagnostic ends where the next one's block starts.
        r.context = (keys.len() == 1).then(|| context.clone());
        if delay_warning {
            r.hint = Some(crate::model::Category::Delayed);
        }
        if r.status.is_none() {
            if (temporary_report || delay_warning) && r.reply_code.is_none() {
                r.status = Some(EnhancedStatus::new(4, 0, 0));
                r.status_inferred = true;
            } else {
                infer_status(&mut r);
            }
        }
        a.recipients.push(r);
    }
    if !signals.strong() && !has_smtp_evidence(a) && !FAILURE_PHRASE.is_match(&context) {
        // A null return path alone is weak: demand a failure in the text.
        a.recipients.clear();
    }
}

static FAILURE_PHRASE: LazyLock<crate::text::Phrases> = LazyLock::new(|| {
    crate::text::Phrases::new(r"(?i)could not be delivered|couldn.t be delivered|undeliverable|delivery (?:has )?failed|was not delivered|not be delivered|permanent(?:ly)? (?:error|failure|fatal)|unable to deliver|failed to deliver|delivery to the following|did not reach")
        .expect("failure phrase regex")
});

/// A reply code or an enhanced status code from the remote side.
pub fn has_smtp_evidence(a: &Analysis) -> bool {
    a.recipients.iter().any(|r| {
        r.reply_code.is_some_and(|c| c.class() >= 4) || (r.status.is_some() && !r.status_inferred)
    })
}

#[cfg(test)]
mod tests {
    use super::{lines_with_at, push_collapsed};
    use proptest::prelude::*;

    proptest! {
        /// The lines found from their `@` are the lines holding one.
        #[test]
        fn lines_with_at_are_the_lines_holding_one(text in "[a@\r\n]{0,40}") {
            let ours: Vec<&str> = lines_with_at(&text).map(|(s, e)| &text[s..e]).collect();
            let expected: Vec<&str> = crate::text::lines(&text).filter(|l| l.contains('@')).collect();
            prop_assert_eq!(ours, expected);
        }

        /// Collapsing is `split_whitespace` joined by single spaces, whichever
        /// path a line takes.
        #[test]
        fn collapses_like_split_whitespace(
            prefix in "[a b\t\r\x0b\x0c]{0,6}",
            line in "[ab \t\r\x0b\x0c\u{a0}é]{0,24}",
        ) {
            let mut ours = prefix.clone();
            push_collapsed(&mut ours, &line);
            let words: Vec<&str> = line.split_whitespace().collect();
            let mut expected = prefix;
            if !words.is_empty() {
                if !expected.is_empty() {
                    expected.push(' ');
                }
                expected.push_str(&words.join(" "));
            }
            prop_assert_eq!(ours, expected);
        }
    }
}

#[cfg(test)]
mod smtp_command_tests {
    use super::{smtp_mentions, SMTP_COMMAND_PHRASES};
    use proptest::prelude::*;

    /// The regex the literal search stands for, as it was written.
    fn reference(lower: &str) -> Vec<(usize, bool, crate::model::SmtpCommand)> {
        let re = crate::text::rx(concat!(
            r"(?:in reply to (?:the )?)?(?:end of data|data command|>>> data|final data|our data|after data\b|",
            r"rcpt to|does not like recipient|our rcpt|has rejected address|mail from|sender was rejected|our mail from|",
            r"\b(?:helo|ehlo)\b|refused to talk to me|initial (?:greeting|connection)|during connect|",
            r"smtp command data|smtp command rcpt to|smtp command mail from)"
        ))
        .expect("reference regex");
        re.find_iter(lower)
            .map(|m| {
                let text = m.as_str();
                let in_reply = text.starts_with("in reply") || text.starts_with("smtp command");
                let phrase = SMTP_COMMAND_PHRASES
                    .iter()
                    .find(|p| text.ends_with(*p))
                    .expect("a phrase ends every match");
                (m.start(), in_reply, super::command_named(phrase))
            })
            .collect()
    }

    proptest! {
        #[test]
        fn mentions_are_the_regex_matches(
            pieces in proptest::collection::vec(0usize..16, 0..14),
        ) {
            const PIECES: [&str; 16] = [
                "in reply to ", "the ", "data command", "after data", "after datax",
                "helo", "ehlo", "xhelo", "rcpt to", "mail from", "our ", " ", "_",
                "initial greeting", "end of data", "in reply",
            ];
            let text: String = pieces.iter().map(|&i| PIECES[i]).collect();
            let lower = text.to_ascii_lowercase();
            let ours: Vec<_> = smtp_mentions(lower.as_bytes())
                .map(|m| (m.start, m.in_reply, m.command))
                .collect();
            prop_assert_eq!(ours, reference(&lower));
        }
    }
}

#[cfg(test)]
mod header_line_tests {
    use super::{is_header_line, starts_a_header_name, HEADER_LINE, HEADER_NAMES};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn is_header_line_agrees_with_the_regex(
            l in "(Return-Path|Received|Message-I[dD]|Message-|From|Date|Subject|MIME-Version|To|X-|X|Content-Type|DKIM-Signature|Delivered-To|FromX|x-)?[a-zA-Z0-9_\\-é۳ß\u{2028}]{0,4}:?[ \t\u{0b}\u{a0}\u{2003}a:é]?.{0,3}"
        ) {
            prop_assert_eq!(is_header_line(&l), HEADER_LINE.is_match(&l), "{:?}", l);
        }
    }

    #[test]
    fn every_header_name_starts_with_a_precheck_letter() {
        for n in HEADER_NAMES.iter().copied().chain([&b"X-"[..]]) {
            assert!(starts_a_header_name(n[0]), "{}", String::from_utf8_lossy(n));
        }
    }

    #[test]
    fn header_lines() {
        for (l, want) in [
            ("From: a", true),
            ("X-Mailer: b", true),
            ("X-: b", false),
            ("X-é: b", true),
            ("To:\u{a0}x", true),
            ("To:x", false),
            ("Message-Id:\tx", true),
            ("Message-iD: x", false),
            ("Fromage: x", false),
            ("Subject:", false),
        ] {
            assert_eq!(is_header_line(l), want, "{l:?}");
            assert_eq!(HEADER_LINE.is_match(l), want, "{l:?}");
        }
    }
}

#[cfg(test)]
mod marker_tests {
    use super::{find_original_marker, marker_decoration, ORIGINAL_MARKER_PATTERN};
    use proptest::prelude::*;

    /// Every match of the phrases in the lowercased text, then the first
    /// one after nothing but decoration on its line.
    fn reference(t: &str) -> (Option<(usize, usize)>, bool) {
        let phrases = crate::text::Phrases::new(ORIGINAL_MARKER_PATTERN).expect("compiles");
        let lower = crate::text::ascii_lower(t);
        let mut spans_a_line = false;
        for m in phrases.on_lowercase().find_iter(&lower) {
            let line_start =
                memchr::memrchr(b'\n', &t.as_bytes()[..m.start()]).map_or(0, |i| i + 1);
            if t.as_bytes()[line_start..m.start()]
                .iter()
                .all(|&b| marker_decoration(b))
            {
                return (Some((m.start(), m.end())), spans_a_line);
            }
            spans_a_line |= m.as_str().contains('\n');
        }
        (None, spans_a_line)
    }

    const PIECES: &[&str] = &[
        "original message",
        "Original Message",
        "ORIGINAL MESSAGE:",
        "--- Original Message ---",
        "-----",
        "===",
        "> ",
        " ",
        "\t",
        "\n",
        "\r\n",
        "x",
        "The ",
        "returned message",
        "This is a copy of the message",
        "Content-Type: message/rfc822",
        "content-type: MESSAGE/global",
        "headers of your message",
        "the text you sent follows",
        "Forwarded Message",
        "original e-mail",
        "[Message Headers]",
        "meſſage",
        "\u{212A}",
        "\u{a0}",
        "é",
        "follows",
    ];

    proptest! {
        /// The line-start search finds what filtering all matches found,
        /// except where a match in a sentence ran on into the next line
        /// and hid the start of a marker there (now found).
        #[test]
        fn finds_what_filtering_every_match_found(
            picks in proptest::collection::vec(0..PIECES.len(), 0..14)
        ) {
            let t: String = picks.iter().map(|&i| PIECES[i]).collect();
            let (want, spans_a_line) = reference(&t);
            prop_assume!(!spans_a_line);
            prop_assert_eq!(find_original_marker(&t), want, "{:?}", t);
        }
    }

    #[test]
    fn a_marker_counts_only_at_a_line_start() {
        let t = "I read the original message follows here\n----- Original Message -----\nFrom: a";
        let (start, end) = find_original_marker(t).expect("the second line is a marker");
        assert_eq!(&t[start..end], "--- Original Message");
        assert_eq!(find_original_marker("see the returned message below"), None);
        assert_eq!(find_original_marker("  Returned message\n"), Some((2, 18)));
    }
}
