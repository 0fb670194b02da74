//! The diagnostic of one recipient in a free-text report: the lines around
//! its address, ending where the next recipient's block starts, collapsed
//! to one line.

use std::sync::LazyLock;

/// Longest diagnostic kept per recipient.
pub(super) const MAX_DIAGNOSTIC: usize = 1000;
/// Lines that may follow an address line as part of its explanation.
const MAX_BLOCK_LINES: usize = 8;

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

    /// The whole multi-line reply whose first line a report quoted alone
    /// (`550-5.7.1 ... likely`, cut where its line ended), read from the
    /// report's text when the text has it in full: that line, then the lines
    /// that continue the same reply code, up to the one with a space after
    /// the code (RFC 5321 §4.2.1). A transcript's `<<< ` before each line
    /// (Sendmail's) is left out. None when the text holds no more of it.
    pub fn whole_reply(&self, first: &str) -> Option<String> {
        let first = first.trim();
        let code = first.get(..3)?;
        let body = first.get(4..)?.trim();
        if body.is_empty() {
            return None;
        }
        let reply_line = |l: &'a str| -> Option<(bool, &'a str)> {
            let l = l.trim_start();
            let l = l.strip_prefix("<<<").map_or(l, str::trim_start);
            let rest = l.strip_prefix(code)?;
            match rest.as_bytes().first() {
                Some(b'-') => Some((false, &rest[1..])),
                Some(b' ') => Some((true, &rest[1..])),
                None => Some((true, rest)),
                _ => None,
            }
        };
        let at = self
            .lines
            .iter()
            .position(|l| reply_line(l).is_some_and(|(_, t)| t.trim() == body))?;
        let mut out = first.to_owned();
        for l in &self.lines[at + 1..] {
            let (last, text) = reply_line(l)?;
            out.push('\n');
            out.push_str(code);
            out.push(if last { ' ' } else { '-' });
            out.push_str(text.trim_end());
            if last {
                return Some(out);
            }
        }
        None
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
pub(super) fn lines_with_at(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
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

pub(super) fn blocks(region: &Region<'_>, address: &str, others: &[&str]) -> Option<String> {
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
        // Sendmail writes the remote's reply ("<<< 553 5.1.2 ...") and then
        // its own line for the address, "550 5.1.1 <addr>... User unknown":
        // the status its mailer maps the reply code to (usersmtp.c,
        // smtprcpt(): 550, 551 and 553 all become EX_NOUSER, "User
        // unknown"), not the remote's words. With the reply at hand, the
        // reply is the diagnostic, and the exchange after the line is the
        // next recipient's.
        let entry = is_sendmail_entry(lines[i].trim_start());
        let replied = lines[k..i]
            .iter()
            .any(|l| l.trim_start().starts_with("<<<"));
        if !(entry && replied) {
            push_collapsed(&mut out, lines[i]);
        }
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
                || (entry && is_dialogue_line(l))
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
    let dialogue = is_dialogue_line(t);
    let host_entry = is_sendmail_entry(t) && !t.contains('@');
    (dialogue || host_entry)
        && (contains_ci(l, needle) || !others.iter().any(|o| contains_ci(l, o)))
}

/// A line of the SMTP dialogue in a transcript: a command sent (">>> ") or a
/// reply line received ("<<< "), as Sendmail writes them.
fn is_dialogue_line(l: &str) -> bool {
    let t = l.trim_start();
    t.starts_with(">>>") || t.starts_with("<<<")
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

pub(super) fn push_collapsed(out: &mut String, line: &str) {
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

#[cfg(test)]
mod tests {
    use super::{lines_with_at, push_collapsed, Region};
    use proptest::prelude::*;

    #[test]
    fn a_cut_reply_is_read_whole_from_a_transcript() {
        let text = "... while talking to [192.0.2.1]:\n>>> DATA\n\
                    <<< 550-5.7.1 [192.0.2.9] Our system has detected that this message is likely\n\
                    <<< 550-5.7.1 unsolicited mail.\n\
                    <<< 550 5.7.1 message has been blocked.\n\
                    554 5.0.0 Service unavailable\n";
        let region = Region::new(text);
        let cut = "550-5.7.1 [192.0.2.9] Our system has detected that this message is likely";
        assert_eq!(
            region.whole_reply(cut).as_deref(),
            Some(
                "550-5.7.1 [192.0.2.9] Our system has detected that this message is likely\n\
                 550-5.7.1 unsolicited mail.\n550 5.7.1 message has been blocked."
            )
        );
        // a text with no more of the reply, or that breaks it off, gives none
        assert_eq!(Region::new(cut).whole_reply(cut), None);
        let broken = format!("{cut}\n550-5.7.1 unsolicited\nthe end\n");
        assert_eq!(Region::new(&broken).whole_reply(cut), None);
    }

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
