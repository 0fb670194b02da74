//! What a diagnostic says in SMTP terms: the reply code (RFC 5321 §4.2),
//! the enhanced status code (RFC 3463), the command the reply answered
//! (`in reply to RCPT TO`, Postfix's and Exim's wording), and the status a
//! recipient without one gets from its text.

use super::RecipientReport;
use crate::model::{EnhancedStatus, ReplyCode};
use std::sync::LazyLock;

pub(super) static TEMPORARY: LazyLock<crate::text::Phrases> = LazyLock::new(|| {
    crate::text::Phrases::new(r"(?i)temporar|will (?:be )?retr|still (?:be )?trying|has been delayed|delayed|deferred|not yet been delivered|will keep trying|will continue|try again later|will be retried")
        .expect("temporary regex")
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

/// The enhanced status code a server gave with its reply: right after its
/// reply code, or else in qmail's trailer.
pub fn reply_status(s: &str) -> Option<EnhancedStatus> {
    // what stands before it is the reply code and its separator, `-` on the
    // lines of a multi-line reply (RFC 5321 §4.2.1: `550-5.1.1 ...`)
    codes::reply_then_status(s.as_bytes())
        .filter(|&(start, end)| {
            boundary_ok(s, start, end, true)
                || (s.as_bytes()[..start].ends_with(b"-") && ends_ok(s, end, true))
        })
        .find_map(|(start, end)| s[start..end].parse().ok())
        .or_else(|| qmail_trailer(s))
}

/// qmail ends each of its replies and reports with its enhanced code in
/// `(#X.Y.Z)` (qmail-smtpd.c: "553 sorry, that domain isn't in my list of
/// allowed rcpthosts (#5.7.1)"; qmail-remote.c, qmail-send.c): the server's
/// own code, as a leading one is elsewhere. The last one counts, as it ends
/// the reply.
fn qmail_trailer(s: &str) -> Option<EnhancedStatus> {
    s.rmatch_indices("(#").find_map(|(at, _)| {
        let rest = &s[at + 2..];
        let end = rest.find(')')?;
        let code = &rest[..end];
        (end <= 11 && code.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
            .then(|| code.parse().ok())
            .flatten()
    })
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

    #[test]
    fn a_qmail_trailer_is_the_replys_own_code() {
        let st = |s: &str| super::reply_status(s).map(|s| s.to_string());
        assert_eq!(
            st("553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)").as_deref(),
            Some("5.7.1")
        );
        // a leading code stays first; a trailer that is no code is none
        assert_eq!(
            st("550 5.1.1 no mailbox (#5.7.1)").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(st("550 no mailbox (#issue 12)"), None);
        assert_eq!(st("550 no mailbox (#5.1.1 trailing)"), None);
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
