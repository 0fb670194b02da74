//! The copy of the original message inside a report's text: where it starts
//! (a marker line such as `----- Original message -----`, or a run of header
//! lines), the text before it, and the headers it carries.

use super::mime::{self, Header, Message};
use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

/// Headers of the returned original: its MIME part, or a copy inline in the
/// text (searched once per message).
pub fn headers<'m, 'a>(msg: &'m Message<'a>) -> Option<&'m [Header<'a>]> {
    match &msg.original_headers {
        Some(h) if !h.is_empty() => Some(h),
        _ => msg
            .inline_original
            .get_or_init(|| inline_original(msg))
            .as_deref(),
    }
}

/// Where the copy of the original starts in text `i`, searched once.
pub fn marker(msg: &Message<'_>, i: usize) -> Option<(usize, usize)> {
    let text = msg.texts.get(i)?;
    match msg.original_markers.get(i) {
        Some(cell) => *cell.get_or_init(|| find_original_marker(text)),
        None => find_original_marker(text),
    }
}

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

/// The human-readable part of a report, without the copy of the original.
pub fn report_text(msg: &Message) -> String {
    let mut out = String::new();
    for (i, t) in msg.texts.iter().enumerate() {
        let cut = cut_point(t, marker(msg, i));
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
fn inline_original<'a>(msg: &Message<'a>) -> Option<Vec<Header<'a>>> {
    for (i, t) in msg.texts.iter().enumerate() {
        let mut start = None;
        if let Some((_, end)) = marker(msg, i) {
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
