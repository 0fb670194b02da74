//! Free-text bounces: the formats of qmail, older Sendmail, Exim, Exchange,
//! Domino, Courier and friends. They share a shape — a preamble, then each
//! failed address followed by the remote server's answer, then a copy of the
//! original — so one reader covers them: cut the copy off, find the addresses
//! that are not the sender's, and take the lines around each as its diagnostic.

use super::{headers, mime, Analysis, RecipientReport};
use crate::model::{EmailAddress, EnhancedStatus, ReplyCode};
use regex::Regex;
use std::sync::{Arc, LazyLock};

/// Longest diagnostic kept per recipient.
const MAX_DIAGNOSTIC: usize = 1000;
/// Lines that may follow an address line as part of its explanation.
const MAX_BLOCK_LINES: usize = 8;

static ORIGINAL_MARKER: LazyLock<super::Phrases> = LazyLock::new(|| {
    super::Phrases::new(concat!(
        r"(?i)(?:below this line is a copy of the message|this is a copy of the message|",
        r"a copy of the original message|(?:the )?original message (?:follows|headers?)|",
        r"original message\s*[\-=_*]{2,}|returned message|unsent message follows|",
        r"(?:the )?header of the original message|header of the returned message|message headers follow|",
        r"returned mail follows|headers? of (?:the )?(?:original|returned|your) message|",
        r"undelivered message headers|forwarded message|original message header|",
        r"content-type: message/(?:rfc822|global)|content-type: text/rfc822-headers|",
        r"your message reads|the text you sent follows|rejected message|original e-?mail|",
        r"message text follows|\[message headers\]|--- original message|original message:)"
    ))
    .expect("original marker regex")
});

static HEADER_LINE: LazyLock<Regex> = LazyLock::new(|| {
    super::rx(r"^(?:Return-Path|Received|Message-I[dD]|From|Date|Subject|MIME-Version|To|X-[\w-]+|Content-Type|DKIM-Signature|Delivered-To):\s")
        .expect("header line regex")
});

static STATUS: LazyLock<Regex> =
    LazyLock::new(|| super::rx(r"[245]\.\d{1,3}\.\d{1,3}").expect("status regex"));
static REPLY: LazyLock<Regex> = LazyLock::new(|| super::rx(r"[245][0-5]\d").expect("reply regex"));

static TEMPORARY: LazyLock<super::Phrases> = LazyLock::new(|| {
    super::Phrases::new(r"(?i)temporar|will (?:be )?retr|still (?:be )?trying|has been delayed|delayed|deferred|not yet been delivered|will keep trying|will continue|try again later|will be retried")
        .expect("temporary regex")
});

static EXCLUDED_LINE: LazyLock<super::Phrases> = LazyLock::new(|| {
    super::Phrases::new(r"(?i)message-?id|in-reply-to|references:|mail from|envelope-from|from:|sender:|reply-to:|return-path|smtp\.mailfrom|header\.from|\bfrom=<|\bby\s+\S+\s+with\b|\bdkim|\bid\s+<|contact|assistance|問い合わせ|ご連絡")
        .expect("excluded line regex")
});

static SERVICE_LOCAL: LazyLock<Regex> = LazyLock::new(|| {
    super::rx(r"(?i)^(?:mailer[-_.]?daemon|postmaster|abuse|hostmaster|webmaster|mail[-_.]?daemon|noreply|no-reply|double-bounce)$")
        .expect("service regex")
});

fn boundary_ok(s: &str, start: usize, end: usize, dots_allowed_after: bool) -> bool {
    let b = s.as_bytes();
    let before_ok = start == 0 || {
        let c = b[start - 1];
        !(c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'/' || c == b'_')
    };
    let after_ok = end >= b.len() || {
        let c = b[end];
        if c == b'.' {
            dots_allowed_after && b.get(end + 1).is_none_or(|n| !n.is_ascii_digit())
        } else {
            !(c.is_ascii_alphanumeric() || c == b'-' || c == b'/' || c == b'_' || c == b'@')
        }
    };
    before_ok && after_ok
}

static REPLY_THEN_STATUS: LazyLock<Regex> = LazyLock::new(|| {
    super::rx(r"[245][0-5]\d[ \-]+['#(]?([245]\.\d{1,3}\.\d{1,3})").expect("reply+status regex")
});

/// The RFC 3463 enhanced status code of a text: the one a remote server gave
/// next to its reply code (`550 5.1.1`, `550-'5.7.1`) if any, else the first.
pub fn find_status(s: &str) -> Option<EnhancedStatus> {
    reply_status(s).or_else(|| first_status(s))
}

/// The enhanced status code a server gave right after its reply code.
pub fn reply_status(s: &str) -> Option<EnhancedStatus> {
    REPLY_THEN_STATUS
        .captures_iter(s)
        .filter_map(|c| c.get(1))
        .filter(|m| boundary_ok(s, m.start(), m.end(), true))
        .find_map(|m| m.as_str().parse().ok())
}

/// The first enhanced status code in a text, wherever it stands.
pub fn first_status(s: &str) -> Option<EnhancedStatus> {
    STATUS
        .find_iter(s)
        .filter(|m| boundary_ok(s, m.start(), m.end(), true))
        .find_map(|m| m.as_str().parse().ok())
}

static SMTP_COMMAND: LazyLock<super::Phrases> = LazyLock::new(|| {
    super::Phrases::new(concat!(
        r"(?i)(?:in reply to (?:the )?)?(?:end of data|data command|>>> data|final data|our data|after data\b|",
        r"rcpt to|does not like recipient|our rcpt|has rejected address|mail from|sender was rejected|our mail from|",
        r"\b(?:helo|ehlo)\b|refused to talk to me|initial (?:greeting|connection)|during connect)"
    ))
    .expect("smtp command regex")
});

/// Which command a mention of [`SMTP_COMMAND`] names (a plain search, no captures: cheap).
fn command_named(mention: &str) -> crate::model::SmtpCommand {
    use crate::model::SmtpCommand as C;
    let m = mention.to_ascii_lowercase();
    if m.contains("data") {
        C::Data
    } else if m.contains("rcpt") || m.contains("recipient") || m.contains("address") {
        C::RcptTo
    } else if m.contains("mail from") || m.contains("sender") {
        C::MailFrom
    } else if m.contains("helo") || m.contains("ehlo") {
        C::Helo
    } else {
        C::Connect
    }
}

/// The SMTP command a failure answered, from the words around it: the mention
/// nearest the reply code, before it (">>> RCPT TO", "after MAIL FROM") or,
/// for "in reply to ... command", after it.
pub fn find_smtp_command(s: &str) -> Option<crate::model::SmtpCommand> {
    let lower = super::ascii_lower(s);
    let commands = SMTP_COMMAND.on_lowercase();
    if !commands.is_match(&lower) {
        return None;
    }
    let reply_at = reply_code_at(s).map(|(p, _)| p);
    let mut best: Option<(usize, crate::model::SmtpCommand)> = None;
    let mut last = None;
    for m in commands.find_iter(&lower) {
        let cmd = command_named(m.as_str());
        last = Some(cmd);
        let Some(p) = reply_at else { continue };
        let in_reply = m
            .as_str()
            .get(..8)
            .is_some_and(|x| x.eq_ignore_ascii_case("in reply"));
        let distance = match in_reply {
            true if m.start() > p => m.start() - p,
            false if m.start() < p => p - m.start(),
            _ => continue,
        };
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, cmd));
        }
    }
    // with a known reply, a command named only after it is the next step of the dialogue
    best.map(|(_, c)| c)
        .or(if reply_at.is_none() { last } else { None })
}

/// The first SMTP reply code in a text (`550 ...`, `550-...`, `said: 550`).
pub fn find_reply_code(s: &str) -> Option<ReplyCode> {
    reply_code_at(s).map(|(_, c)| c)
}

fn reply_code_at(s: &str) -> Option<(usize, ReplyCode)> {
    REPLY.find_iter(s).find_map(|m| {
        let b = s.as_bytes();
        let before_ok = m.start() == 0 || {
            let c = b[m.start() - 1];
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
        let after_ok = m.end() >= b.len()
            || matches!(
                b[m.end()],
                b' ' | b'-' | b'\t' | b'\n' | b'\r' | b')' | b',' | b';' | b':' | b']' | b'"'
            );
        if !(before_ok && after_ok) {
            return None;
        }
        m.as_str().parse().ok().map(|c| (m.start(), c))
    })
}

/// The human-readable part of a report, without the copy of the original.
pub fn report_text(msg: &mime::Message) -> String {
    let mut out = String::new();
    for (i, t) in msg.texts.iter().enumerate() {
        let cut = cut_point(t, msg.original_marker(i));
        out.push_str(&t[..cut]);
        out.push('\n');
        if cut < t.len() {
            break;
        }
    }
    out
}

/// The first marker of the returned original that stands at the start of a
/// line (after decoration such as `----- `): the same words inside a
/// sentence are prose. Kept out of the regex so its literal prefilter works.
pub fn find_original_marker(t: &str) -> Option<(usize, usize)> {
    let lower = super::ascii_lower(t);
    ORIGINAL_MARKER
        .on_lowercase()
        .find_iter(&lower)
        .map(|m| (m.start(), m.end()))
        .find(|&(start, _)| {
            let line_start = memchr::memrchr(b'\n', &t.as_bytes()[..start]).map_or(0, |i| i + 1);
            t[line_start..start].bytes().all(|b| {
                b.is_ascii_whitespace() || matches!(b, b'-' | b'=' | b'_' | b'*' | b'#' | b'>')
            })
        })
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
    for line in super::lines_inclusive(t) {
        let l = line.trim_end();
        // cheap pre-check: a header line starts with a capital and has a colon early
        let maybe_header = l.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
            && l.as_bytes().iter().take(40).any(|&b| b == b':');
        if maybe_header && HEADER_LINE.is_match(l) {
            if run == 0 {
                run_start = pos;
            }
            run += 1;
            if run >= 3 {
                return Some(run_start);
            }
        } else if !(run > 0 && line.starts_with([' ', '\t']) && !l.trim().is_empty()) {
            run = 0;
        }
        pos += line.len();
    }
    None
}

/// Headers of an original message copied inline after the report text.
pub fn inline_original(msg: &mime::Message) -> Option<Vec<mime::Header>> {
    for (i, t) in msg.texts.iter().enumerate() {
        let mut start = None;
        if let Some((_, end)) = msg.original_marker(i) {
            let after =
                memchr::memchr(b'\n', &t.as_bytes()[end..]).map_or(t.len(), |i| end + i + 1);
            start = Some(after);
        }
        let from = start.unwrap_or(0);
        if let Some(h) = header_block_start(&t[from..]) {
            let block = mime::parse_header_block(&t.as_bytes()[from + h..], &msg.tracking_header);
            if !block.is_empty() {
                return Some(block);
            }
        }
    }
    None
}

/// Addresses a report names that are not failed recipients: its own
/// envelope and the original's sender.
fn excluded_addresses(msg: &mime::Message) -> Vec<EmailAddress> {
    let mut ex = Vec::new();
    for name in ["from", "to", "reply-to", "return-path", "sender", "cc"] {
        for v in msg.headers_named(name) {
            ex.extend(headers::all_addresses(v));
        }
    }
    if let Some(h) = msg.original() {
        for name in ["from", "return-path", "sender", "reply-to"] {
            for v in mime::header_values(h, name) {
                ex.extend(headers::all_addresses(v));
            }
        }
    }
    ex
}

static RECIPIENT_LIST: LazyLock<super::Phrases> = LazyLock::new(|| {
    super::Phrases::new(r"(?i)(?:following|these|the) (?:recipients?|address(?:\(es\)|es)?|destinations?|users?)(?:\(s\))?|could not be delivered to|was not delivered to|were not delivered to|delivery to the following|failed recipients?|recipient address(?:es)?:")
        .expect("recipient list regex")
});

fn candidate_recipients(region: &str, excluded: &[EmailAddress]) -> Vec<EmailAddress> {
    // A report that announces its list of failed addresses is read from there:
    // what comes before is a summary of the original (its To: may differ).
    if let Some(m) = RECIPIENT_LIST
        .on_lowercase()
        .find(&super::ascii_lower(region))
    {
        let after = collect_candidates(&region[m.start()..], excluded);
        if !after.is_empty() {
            return after;
        }
    }
    collect_candidates(region, excluded)
}

fn collect_candidates(region: &str, excluded: &[EmailAddress]) -> Vec<EmailAddress> {
    // Lowercasing ASCII keeps line boundaries, so the copy's lines pair up
    // with the region's; each line with an address is classified once.
    let lower = super::ascii_lower(region);
    let with_at: Vec<(&str, bool)> = super::lines(region)
        .zip(super::lines(&lower))
        .filter(|(l, _)| memchr::memchr(b'@', l.as_bytes()).is_some())
        .map(|(l, low)| {
            let excluded = EXCLUDED_LINE.on_lowercase().is_match(low) && !l.contains("RCPT");
            (l, excluded)
        })
        .collect();
    // An address named once as a contact or a sender ("please contact
    // <support@...>") is not a recipient where the text names it again.
    let mut named_otherwise: Vec<EmailAddress> = excluded.to_vec();
    for (line, _) in with_at.iter().filter(|(_, excluded)| *excluded) {
        named_otherwise.extend(headers::address_spans(line).filter_map(|m| m.parse().ok()));
    }
    let mut out: Vec<EmailAddress> = Vec::new();
    for (line, _) in with_at.iter().filter(|(_, excluded)| !*excluded) {
        for m in headers::address_spans(line) {
            let Ok(a) = m.parse::<EmailAddress>() else {
                continue;
            };
            if SERVICE_LOCAL.is_match(a.local_part())
                || named_otherwise.iter().any(|e| e.same_key(&a))
                || out.iter().any(|o| o.same_key(&a))
            {
                continue;
            }
            out.push(a);
        }
    }
    out
}

/// The lines of `region` that explain `address`: each line naming it, with
/// the lines that follow until a blank line or another address.
pub fn block_for(region: &str, address: &str) -> Option<String> {
    let lines: Vec<&str> = super::lines(region).collect();
    blocks(&lines, address, &[])
}

fn blocks(lines: &[&str], address: &str, others: &[&str]) -> Option<String> {
    let needle = address.to_ascii_lowercase();
    let mut out = String::new();
    let mut occurrences = 0;
    let mut i = 0;
    // lines before this one are in `out` already
    let mut consumed = 0;
    while i < lines.len() && occurrences < 4 && out.len() < MAX_DIAGNOSTIC {
        if !contains_ci(lines[i], &needle) {
            i += 1;
            continue;
        }
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
        let mut i = 0;
        while i < b.len() {
            while i < b.len() && space(b[i]) {
                i += 1;
            }
            let start = i;
            while i < b.len() && !space(b[i]) {
                i += 1;
            }
            if start < i {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&line[start..i]);
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
        let mut c = String::new();
        // a long report is collapsed only as far as the context keeps
        for line in super::lines_inclusive(&region) {
            push_collapsed(&mut c, line);
            if c.len() >= 4 * MAX_DIAGNOSTIC {
                break;
            }
        }
        truncate_chars(&mut c, 4 * MAX_DIAGNOSTIC);
        c.into()
    };
    let lines: Vec<&str> = super::lines(&region).collect();
    if rcpts.is_empty() && signals.strong() {
        // A report that names nobody: the original's recipient is the one who failed.
        if let Some(to) = msg.original().and_then(|h| mime::first_header(h, "to")) {
            rcpts.extend(
                headers::all_addresses(to)
                    .into_iter()
                    .filter(|a| !excluded.iter().any(|e| e.same_key(a)))
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
        let diag = blocks(&lines, &keys[i], &others);
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
        r.context = Some(context.clone());
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

static FAILURE_PHRASE: LazyLock<super::Phrases> = LazyLock::new(|| {
    super::Phrases::new(r"(?i)could not be delivered|couldn.t be delivered|undeliverable|delivery (?:has )?failed|was not delivered|not be delivered|permanent(?:ly)? (?:error|failure|fatal)|unable to deliver|failed to deliver|delivery to the following|did not reach")
        .expect("failure phrase regex")
});

/// A reply code or an enhanced status code from the remote side.
pub fn has_smtp_evidence(a: &Analysis) -> bool {
    a.recipients.iter().any(|r| {
        r.reply_code.is_some_and(|c| c.class() >= 4) || (r.status.is_some() && !r.status_inferred)
    })
}
