//! MIME walking: the one place that touches `mailparse`. It flattens a message
//! into what the classifiers need (top headers, report parts, the returned
//! original's headers, human-readable text), with every size bounded.
//!
//! Why the structure is read here, with mailparse's rules (its header,
//! boundary and Content-Type reading, each held to mailparse's by a test
//! below), rather than by `mailparse::parse_mail`: only the headers the
//! analysis reads are decoded and a part is parsed only when the walk
//! visits it, where `parse_mail` splits out every header of every part (a
//! bounce's Received lines are most of its bytes) and builds each part's
//! Content-Type parameters up front. `inmail qualify --json` over the
//! shared corpus copied 20 times (6,840 messages) takes a median 195 ms
//! this way and 266 ms with the same walk over `parse_mail` (1.4 times as
//! long), with the same output. Measured with
//! `scripts/bench-qualify.sh BIN "env INMAIL_MIME_MAILPARSE=1 BIN"`, 21
//! alternated runs, BIN being a release build of commit 47f1088, which has
//! the mailparse walk. (The daemon end to end, `scripts/bench-daemon.sh`, is
//! bounded by PostgreSQL and shows no difference.) mailparse still decodes
//! what is rare: RFC 2047 encoded words, RFC 2231 parameters, base64 and
//! charsets beyond ASCII.

use super::Limits;
use std::borrow::Cow;
use std::sync::LazyLock;

/// A decoded header: its name lowercased (one of the names the analysis
/// reads, so mostly a static string) and its unfolded value, lent by the
/// message's bytes unless decoding changed it.
pub type Header<'a> = (Cow<'static, str>, Cow<'a, str>);

/// A message reduced to the parts the analysis looks at.
#[derive(Debug, Default)]
pub struct Message<'a> {
    pub headers: Vec<Header<'a>>,
    /// Bodies of `message/delivery-status` and `message/global-delivery-status` parts.
    pub delivery_status: Vec<Cow<'a, str>>,
    /// Body of a `message/feedback-report` part.
    pub feedback_report: Option<Cow<'a, str>>,
    /// Headers of the returned original (message/rfc822, text/rfc822-headers).
    pub original_headers: Option<Vec<Header<'a>>>,
    /// Human-readable text parts of the report itself, in order.
    pub texts: Vec<Cow<'a, str>>,
    /// The top-level media type, lowercase.
    pub content_type: Cow<'a, str>,
    /// The first attached message, whole: some gateways forward a bounce as an attachment.
    pub attached: Option<Cow<'a, [u8]>>,
    /// Header name of the platform's tracking id, lowercase.
    pub tracking_header: Cow<'a, str>,
    pub(super) inline_original: std::cell::OnceCell<Option<Vec<Header<'a>>>>,
    /// One per text (of the first few), searched on first use: most reports
    /// are cut at the first text.
    pub(super) original_markers: [std::cell::OnceCell<Option<(usize, usize)>>; MARKED_TEXTS],
}

/// Texts whose marker search is kept; a report has one or two.
const MARKED_TEXTS: usize = 4;

/// Headers the analysis reads; decoding only these keeps parsing cheap.
const WANTED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "subject",
    "reply-to",
    "sender",
    "return-path",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "auto-submitted",
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-auto-response",
    "precedence",
    "x-failed-recipients",
    "message-id",
    "x-hmxmroriginalrecipient",
    "content-type",
    "x-list-administrivia",
];

/// The lowercase name of a header the analysis reads, `None` for the others.
/// Most headers of a bounce are Received and X- lines it never reads: one
/// lowercase copy on the stack and a length-dispatched comparison reject them
/// cheaply, and a kept one is named by a static string, not a new one.
fn wanted_name(key: &[u8], tracking: &str) -> Option<Cow<'static, str>> {
    const LONGEST: usize = 26;
    let tracked = || Some(Cow::Owned(lowercase_name(key)));
    if key.len() > LONGEST {
        return if key.eq_ignore_ascii_case(tracking.as_bytes()) {
            tracked()
        } else {
            None
        };
    }
    // lengths of the wanted names, as bits: most headers are rejected here
    const LENGTHS: u32 = {
        let mut mask = 0u32;
        let mut i = 0;
        while i < WANTED_HEADERS.len() {
            mask |= 1 << WANTED_HEADERS[i].len();
            i += 1;
        }
        mask
    };
    if LENGTHS & (1 << key.len()) == 0 && key.len() != tracking.len() {
        return None;
    }
    let mut buf = [0u8; LONGEST];
    let lower = &mut buf[..key.len()];
    lower.copy_from_slice(key);
    lower.make_ascii_lowercase();
    let lower = &*lower;
    if lower == tracking.as_bytes() {
        return tracked();
    }
    WANTED_HEADERS
        .iter()
        .find(|w| w.as_bytes() == lower)
        .map(|w| Cow::Borrowed(*w))
}

/// A header's name as mailparse gives it, ASCII-lowercased: UTF-8, or else
/// Latin-1.
fn lowercase_name(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(k) if k.is_ascii() => k.to_ascii_lowercase(),
        _ => key
            .iter()
            .map(|&b| char::from(b.to_ascii_lowercase()))
            .collect(),
    }
}

impl<'a> Message<'a> {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| &**v)
    }

    pub fn parse(
        bytes: &'a [u8],
        limits: &Limits,
        tracking_header: &'a str,
    ) -> Result<Self, String> {
        let tracking = crate::text::ascii_lower(tracking_header);
        let mut m = Self::parse_structure(bytes, limits, &tracking)?;
        m.tracking_header = tracking;
        Ok(m)
    }

    fn parse_structure(bytes: &'a [u8], limits: &Limits, tracking: &str) -> Result<Self, String> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Message::default());
        }
        let top = Part::read(bytes, false, Some(tracking))
            .map_err(|e| format!("unreadable MIME structure: {e}"))?;
        let mut m = Message {
            content_type: top.ctype.mimetype.clone(),
            ..Message::default()
        };
        // a report's parts, nested once: no growth for the usual bounce
        let mut stack: Vec<Part> = Vec::with_capacity(8);
        stack.push(top);
        let mut visited = 0usize;
        // HTML parts are read only when there is no plain text: decoding and
        // stripping them is left until then.
        let mut html: Vec<Part> = Vec::new();
        while let Some(mut part) = stack.pop() {
            visited += 1;
            if visited > limits.max_parts {
                // Real bounces have a handful of parts; a hostile message can
                // nest thousands deep. Past the limit only the top headers are
                // trusted and the rest is read as text. (Counted as the walk
                // goes: a search of the whole message for `multipart/` cost
                // more than the rest of its parse.)
                return Self::headers_only(bytes, limits, tracking);
            }
            if visited == 1 {
                m.headers = std::mem::take(&mut part.headers);
            }
            // lowercase already: ours and mailparse's parse_content_type both lower it
            let mt = std::mem::take(&mut part.ctype.mimetype);
            if mt.starts_with("multipart/") {
                let digest = mt == "multipart/digest";
                // read in order (the first unreadable one is the error), then
                // reversed on the stack so that they are visited in order
                let base = stack.len();
                for raw in &part.subparts {
                    stack.push(
                        Part::read(raw, digest, None)
                            .map_err(|e| format!("unreadable MIME structure: {e}"))?,
                    );
                }
                if stack.len() == base {
                    // Declared multipart but no boundary found: the body is all there is.
                    m.texts.push(raw_text(&part, limits));
                }
                stack[base..].reverse();
                continue;
            }
            match &*mt {
                "message/delivery-status" | "message/global-delivery-status" => {
                    m.delivery_status.push(raw_text(&part, limits))
                }
                "message/feedback-report" => {
                    m.feedback_report
                        .get_or_insert_with(|| raw_text(&part, limits));
                }
                "message/rfc822"
                | "message/global"
                | "text/rfc822-headers"
                | "message/rfc822-headers"
                | "message/global-headers"
                    if m.original_headers.is_none() =>
                {
                    let body = raw_body(&part, limits);
                    m.original_headers = Some(match &body {
                        Cow::Borrowed(b) => parse_header_block(b, tracking),
                        // decoded here, kept below: the headers keep their values
                        Cow::Owned(b) => parse_header_block(b, tracking)
                            .into_iter()
                            .map(|(k, v)| (k, Cow::Owned(v.into_owned())))
                            .collect(),
                    });
                    if mt.starts_with("message/") {
                        m.attached = Some(body);
                    }
                }
                t if t.starts_with("text/plain") || t == "text" => {
                    m.texts.push(decoded_text(&part, limits))
                }
                "text/html" => html.push(part),
                // a part without a usable Content-Type (broken MIME) is read as text
                "" => m.texts.push(decoded_text(&part, limits)),
                _ => {}
            }
        }
        if m.texts.is_empty() && !diagnosed(&m.delivery_status) {
            m.texts = html
                .iter()
                .map(|part| Cow::Owned(strip_html(&decoded_text(part, limits))))
                .collect();
        }
        if m.delivery_status.is_empty() {
            // Reports whose MIME structure broke still carry the DSN fields inline.
            if let Some(fields) = m.texts.iter().find_map(|t| inline_delivery_status(t)) {
                m.delivery_status.push(Cow::Owned(fields));
            }
        }
        Ok(m)
    }

    fn headers_only(bytes: &'a [u8], limits: &Limits, tracking: &str) -> Result<Self, String> {
        let mut headers = Vec::new();
        let end = scan_headers(bytes, |key, header| {
            if let Some(name) = wanted_name(key, tracking) {
                headers.push((name, decode_value(header, key.len())));
            }
        })
        .map_err(|e| format!("unreadable headers: {e}"))?;
        let body = bytes.get(end..).unwrap_or_default();
        let body = &body[..body.len().min(limits.max_part_bytes)];
        Ok(Message {
            headers,
            texts: vec![String::from_utf8_lossy(body)],
            content_type: "text/plain".into(),
            ..Message::default()
        })
    }
}

/// Every recipient of the delivery-status parts has its own Diagnostic-Code.
/// The human part then adds nothing the rules need, and when it is HTML only
/// (AOL sends 60 KB of it) decoding and stripping it is most of the work.
fn diagnosed(reports: &[Cow<'_, str>]) -> bool {
    let count = |needle: &str| {
        reports
            .iter()
            .map(|r| {
                let mut n = 0;
                let mut from = 0;
                while let Some(i) = find_ci(&r[from..], needle) {
                    n += 1;
                    from += i + needle.len();
                }
                n
            })
            .sum::<usize>()
    };
    let recipients = count("final-recipient:");
    recipients > 0 && count("diagnostic-code:") >= recipients
}

/// One MIME entity, read the way mailparse reads it (same header and
/// boundary rules), but without decoding the headers nobody reads or
/// parsing the parts nobody visits: a bounce's Received lines and a
/// returned original's body are most of its bytes.
struct Part<'a> {
    ctype: ContentType<'a>,
    encoding: TransferEncoding,
    /// The wanted headers, when asked for (the top level).
    headers: Vec<Header<'a>>,
    body: &'a [u8],
    /// Raw bytes of each part of a multipart body.
    subparts: Vec<&'a [u8]>,
}

impl<'a> Part<'a> {
    fn read(raw: &'a [u8], in_digest: bool, wanted: Option<&str>) -> Result<Self, &'static str> {
        let mut content_type = None;
        let mut encoding = None;
        // a top-level header block keeps a dozen-odd of the wanted headers
        let mut headers = Vec::with_capacity(if wanted.is_some() { 16 } else { 0 });
        let body_start = scan_headers(raw, |key, header| {
            let first_type = content_type.is_none() && key.eq_ignore_ascii_case(b"content-type");
            let first_encoding =
                encoding.is_none() && key.eq_ignore_ascii_case(b"content-transfer-encoding");
            let kept = wanted.and_then(|tracking| wanted_name(key, tracking));
            if !(first_type || first_encoding || kept.is_some()) {
                return;
            }
            // decoded once, whoever needs it
            let value = decode_value(header, key.len());
            if first_type {
                content_type = Some(value.clone());
            } else if first_encoding {
                encoding = Some(TransferEncoding::named(&value));
            }
            if let Some(name) = kept {
                headers.push((name, value));
            }
        })?;
        let ctype = match content_type {
            Some(Cow::Borrowed(v)) => parse_content_type(v),
            Some(Cow::Owned(v)) => parse_content_type(&v).into_owned(),
            None if in_digest => parse_content_type("message/rfc822"),
            None => ContentType {
                mimetype: "text/plain".into(),
                charset: "us-ascii".into(),
                boundary: None,
            },
        };
        let mut part = Part {
            body: &raw[body_start..],
            ctype,
            encoding: encoding.unwrap_or(TransferEncoding::Other),
            headers,
            subparts: Vec::new(),
        };
        if part.ctype.mimetype.starts_with("multipart/") && raw.len() > body_start {
            if let Some(b) = &part.ctype.boundary {
                if let Some(body_end) =
                    split_multipart(raw, body_start, b.as_bytes(), &mut part.subparts)
                {
                    part.body = &raw[body_start..body_end];
                }
            }
        }
        Ok(part)
    }
}

/// The transfer encodings that change a body, as mailparse tells them: by
/// the lowercased value, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferEncoding {
    Base64,
    QuotedPrintable,
    /// 7bit, 8bit, binary, or anything else: the body as it stands.
    Other,
}

impl TransferEncoding {
    fn named(value: &str) -> Self {
        // No character outside ASCII lowercases into either name (the
        // Kelvin sign becomes a `k`, which neither has).
        if value.eq_ignore_ascii_case("base64") {
            Self::Base64
        } else if value.eq_ignore_ascii_case("quoted-printable") {
            Self::QuotedPrintable
        } else {
            Self::Other
        }
    }
}

/// What the walk reads of a Content-Type, lent by the header's value where
/// it needs no change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContentType<'a> {
    /// Lowercase.
    mimetype: Cow<'a, str>,
    charset: Cow<'a, str>,
    boundary: Option<Cow<'a, str>>,
}

impl ContentType<'_> {
    fn into_owned(self) -> ContentType<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        ContentType {
            mimetype: own(self.mimetype),
            charset: own(self.charset),
            boundary: self.boundary.map(own),
        }
    }

    /// mailparse's form, for its charset decoders.
    fn parsed(&self) -> mailparse::ParsedContentType {
        mailparse::ParsedContentType {
            mimetype: self.mimetype.to_string(),
            charset: self.charset.to_string(),
            params: self
                .boundary
                .iter()
                .map(|b| ("boundary".to_owned(), b.to_string()))
                .collect(),
        }
    }
}

/// A Content-Type value as mailparse's `parse_content_type` reads it, keeping
/// only what the walk reads: the charset, and the boundary (the one entry of
/// the parameter map). Values with RFC 2231 encoded or continued parameters
/// (a `*` in a name) go to mailparse; the rest, nearly all, are split here
/// without its decoding machinery, which costs more than the whole header
/// scan of a part.
fn parse_content_type(value: &str) -> ContentType<'_> {
    if value.as_bytes().contains(&b'*') {
        let parsed = mailparse::parse_content_type(value);
        return ContentType {
            boundary: parsed.params.get("boundary").cloned().map(Cow::Owned),
            mimetype: Cow::Owned(parsed.mimetype),
            charset: Cow::Owned(parsed.charset),
        };
    }
    // split at bytes, not chars: the value is a few dozen bytes and a
    // `char` searcher costs more per call than the loop
    let mut from = 0;
    let mut tokens = value.as_bytes().split(|&c| c == b';').map(|piece| {
        let token = &value[from..from + piece.len()];
        from += piece.len() + 1;
        token
    });
    let mimetype = tokens.next().unwrap_or_default().trim();
    let mimetype = if !mimetype.is_ascii() {
        Cow::Owned(mimetype.to_lowercase())
    } else if mimetype.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(mimetype.to_ascii_lowercase())
    } else {
        Cow::Borrowed(mimetype)
    };
    // the last of repeated parameters wins, as in mailparse's map
    let (mut charset, mut boundary) = (None, None);
    let pairs = tokens.filter_map(|kv| {
        let eq = kv.as_bytes().iter().position(|&c| c == b'=')?;
        Some((&kv[..eq], &kv[eq + 1..]))
    });
    for (key, value) in pairs {
        let key = key.trim();
        let slot = if key.eq_ignore_ascii_case("charset") {
            &mut charset
        } else if key.eq_ignore_ascii_case("boundary") {
            &mut boundary
        } else {
            continue;
        };
        let mut value = value.trim();
        if value.len() > 1 && value.starts_with('"') && value.ends_with('"') {
            value = &value[1..value.len() - 1];
        }
        *slot = Some(value);
    }
    ContentType {
        mimetype,
        charset: Cow::Borrowed(charset.unwrap_or("us-ascii")),
        boundary: boundary.map(Cow::Borrowed),
    }
}

/// Splits a multipart body at `--boundary` lines into `parts`; returns where
/// the preamble ends, or None when the boundary never occurs.
fn split_multipart<'a>(
    raw: &'a [u8],
    body_start: usize,
    boundary: &[u8],
    parts: &mut Vec<&'a [u8]>,
) -> Option<usize> {
    // the boundary line's length: `--` and the boundary
    let line_len = boundary.len() + 2;
    let first = find_line_prefix(raw, body_start, boundary)?;
    let mut boundary_end = first + line_len;
    while let Some(part_start) =
        memchr::memchr(b'\n', &raw[boundary_end..]).map(|i| boundary_end + i + 1)
    {
        let next = find_line_prefix(raw, part_start, boundary);
        let part_end = next.map_or(raw.len(), |x| strip_trailing_newline(raw, part_start, x));
        parts.push(&raw[part_start..part_end]);
        boundary_end = next.map_or(raw.len(), |x| x + line_len);
        if boundary_end + 2 > raw.len() || raw[boundary_end..].starts_with(b"--") {
            break;
        }
    }
    Some(strip_trailing_newline(raw, body_start, first))
}

/// First boundary line (`--` and `boundary`) at or after `from` that starts
/// a line or stands at `from`. Lines starting with `--` are rare,
/// so they are found with one searcher built once rather than one built per
/// boundary, which costs more than the search.
fn find_line_prefix(raw: &[u8], from: usize, boundary: &[u8]) -> Option<usize> {
    static LINE_DASHES: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\n--"));
    let line = |at: usize| raw[at..].starts_with(b"--") && raw[at + 2..].starts_with(boundary);
    if line(from) {
        return Some(from);
    }
    LINE_DASHES
        .find_iter(&raw[from..])
        .map(|i| from + i + 1)
        .find(|&i| line(i))
}

/// The newline just before a boundary belongs to the boundary.
fn strip_trailing_newline(raw: &[u8], start: usize, mut end: usize) -> usize {
    if end > start && raw[end - 1] == b'\n' {
        end -= 1;
        if end > start && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

/// Walks a header block, calling `each(name, header)` per header with its
/// bytes (continuation lines included), and returns where the body starts.
/// The rules are mailparse's: a header runs to the first newline not followed
/// by a space or tab; a line without a colon is a header with no value; the
/// block ends at an empty line.
fn scan_headers<'a>(
    raw: &'a [u8],
    mut each: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<usize, &'static str> {
    let mut ix = 0;
    while ix < raw.len() {
        match raw[ix] {
            b'\n' => return Ok(ix + 1),
            b'\r' if raw.get(ix + 1) == Some(&b'\n') => return Ok(ix + 2),
            b'\r' => return Err("headers were followed by a lone CR"),
            b' ' => return Err("a header starts with a space"),
            _ => {}
        }
        let rest = &raw[ix..];
        let span = HeaderSpan::of(rest);
        each(&rest[..span.key], &rest[..span.end]);
        ix += span.end;
    }
    Ok(raw.len())
}

/// Where the header that starts a text ends and how long its name is, found
/// in one pass: a bounce has dozens of headers and each search costs a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeaderSpan {
    /// Length of the header, its continuation lines included.
    end: usize,
    /// Length of its name: what stands before the colon on its first line,
    /// or that whole line (without its newline).
    key: usize,
}

impl HeaderSpan {
    fn of(rest: &[u8]) -> Self {
        let nl = memchr::memchr(b'\n', rest);
        let line = &rest[..nl.unwrap_or(rest.len())];
        let colon = memchr::memchr(b':', line);
        let key = colon.unwrap_or(line.len());
        let Some(nl) = nl else {
            return Self {
                end: rest.len(),
                key,
            };
        };
        let mut end = nl + 1;
        if colon.is_some() {
            while matches!(rest.get(end), Some(b' ' | b'\t')) {
                end = memchr::memchr(b'\n', &rest[end..]).map_or(rest.len(), |i| end + i + 1);
            }
        }
        Self { end, key }
    }
}

/// One header's value (its bytes and name length as [`HeaderSpan`] finds
/// them), decoded exactly as mailparse's `get_value` does: unfolded, RFC 2047
/// words decoded, UTF-8 or else Latin-1. Values without an encoded word,
/// nearly all of them, are unfolded here without its tokenizer.
fn decode_value(header: &[u8], key_len: usize) -> Cow<'_, str> {
    let key = &header[..key_len.min(header.len())];
    let mut value = &header[key.len().min(header.len())..];
    if value.first() == Some(&b':') {
        value = &value[1..];
        while let [b' ', rest @ ..] = value {
            value = rest;
        }
        while let [rest @ .., b'\r' | b'\n'] = value {
            value = rest;
        }
    } else {
        value = b"";
    }
    // nearly every value holds neither `=` nor a line break: one search says so
    let plain = memchr::memchr2(b'=', b'\n', value).is_none();
    if !plain && memchr::memchr_iter(b'=', value).any(|i| value.get(i + 1) == Some(&b'?')) {
        if let Ok((h, _)) = mailparse::parse_header(header) {
            return Cow::Owned(h.get_value());
        }
    }
    let text = match std::str::from_utf8(value) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => Cow::Owned(value.iter().map(|&b| char::from(b)).collect::<String>()),
    };
    // Latin-1 decoding keeps the bytes below 0x80, line breaks too
    if plain || memchr::memchr(b'\n', text.as_bytes()).is_none() {
        return match text {
            Cow::Borrowed(t) => Cow::Borrowed(t.trim_start()),
            Cow::Owned(t) => Cow::Owned(t.trim_start().to_owned()),
        };
    }
    let mut out = String::with_capacity(text.len());
    for (i, line) in crate::text::lines(&text).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(line.trim_start());
    }
    Cow::Owned(out)
}

/// The text from the first `Final-Recipient:` block's paragraph on, when a
/// text carries RFC 3464 fields without the MIME part around them.
fn inline_delivery_status(t: &str) -> Option<String> {
    let i = find_ci(t, "\nfinal-recipient:")?;
    // start at the paragraph holding it, so Action/Status before it are kept
    let para = t[..i].rfind("\n\n").map(|p| p + 2).unwrap_or(0);
    let start = find_ci(&t[..para], "\nreporting-mta:")
        .map(|p| p + 1)
        .unwrap_or(para);
    Some(t[start..].to_string())
}

/// First position of `needle` in `hay`, ASCII case-insensitive. Candidates
/// come from a memchr scan for the needle's first byte (both cases), which
/// skips most of a long text at once.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let Some(&first) = n.first() else {
        return Some(0);
    };
    let last_start = h.len().checked_sub(n.len())?;
    memchr::memchr2_iter(
        first.to_ascii_lowercase(),
        first.to_ascii_uppercase(),
        &h[..=last_start],
    )
    .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

pub fn header_value<'a>(headers: &'a [Header<'_>], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| &**v)
}

/// Headers of an embedded message or header block, tolerant of junk before
/// them. Only the wanted headers are parsed: a returned original often carries
/// dozens of Received lines nobody reads.
pub fn parse_header_block<'a>(body: &'a [u8], tracking: &str) -> Vec<Header<'a>> {
    let mut pos = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let mut out = Vec::with_capacity(8);
    while pos < body.len() {
        let rest = &body[pos..];
        let line_end = memchr::memchr(b'\n', rest)
            .map(|i| i + 1)
            .unwrap_or(rest.len());
        let line = &rest[..line_end];
        if line.iter().all(|b| *b == b'\r' || *b == b'\n') {
            break;
        }
        if !line[0].is_ascii_whitespace() {
            let Some(colon) = memchr::memchr(b':', line) else {
                break;
            };
            let key = &line[..colon];
            if let Some(name) = wanted_name(key, tracking) {
                let span = HeaderSpan::of(rest);
                out.push((name, decode_value(&rest[..span.end], span.key)));
                pos += span.end.max(1);
                continue;
            }
        }
        pos += line_end;
    }
    out
}

/// Every header of a block whose name is `name`, lowercase names compared.
pub fn first_header<'a>(block: &'a [Header<'_>], name: &str) -> Option<&'a str> {
    block.iter().find(|(k, _)| k == name).map(|(_, v)| &**v)
}

/// A part's body with its transfer encoding undone: lent by the message
/// unless it was encoded.
fn transfer_decoded<'a>(part: &Part<'a>) -> Result<Cow<'a, [u8]>, ()> {
    // mailparse's base64 decoder reads no Content-Type: one serves all parts
    static ANY_TYPE: LazyLock<mailparse::ParsedContentType> = LazyLock::new(Default::default);
    static BASE64: LazyLock<Option<String>> = LazyLock::new(|| Some("base64".to_owned()));
    Ok(match part.encoding {
        TransferEncoding::QuotedPrintable => Cow::Owned(decode_quoted_printable(part.body)),
        TransferEncoding::Base64 => {
            match mailparse::body::Body::new(part.body, &ANY_TYPE, &BASE64) {
                mailparse::body::Body::Base64(b) => Cow::Owned(b.get_decoded().map_err(|_| ())?),
                _ => Cow::Borrowed(part.body),
            }
        }
        TransferEncoding::Other => Cow::Borrowed(part.body),
    })
}

fn raw_body<'a>(part: &Part<'a>, limits: &Limits) -> Cow<'a, [u8]> {
    // a body whose transfer encoding is broken is read as it stands
    let mut b = transfer_decoded(part).unwrap_or(Cow::Borrowed(part.body));
    match &mut b {
        Cow::Borrowed(s) => *s = &s[..s.len().min(limits.max_part_bytes)],
        Cow::Owned(v) => v.truncate(limits.max_part_bytes),
    }
    b
}

fn raw_text<'a>(part: &Part<'a>, limits: &Limits) -> Cow<'a, str> {
    match raw_body(part, limits) {
        // the strict check is vectorised, the lossy one is not
        Cow::Borrowed(b) => match std::str::from_utf8(b) {
            Ok(t) => Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(b),
        },
        // valid UTF-8 (nearly always) keeps its buffer instead of being copied
        Cow::Owned(v) => Cow::Owned(
            String::from_utf8(v)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
    }
}

/// A text part decoded (transfer encoding, then charset, as mailparse does).
fn decoded_text<'a>(part: &Part<'a>, limits: &Limits) -> Cow<'a, str> {
    let text = transfer_decoded(part)
        .ok()
        .and_then(|bytes| in_charset(bytes, &part.ctype));
    let mut s = text.unwrap_or_else(|| raw_text(part, limits));
    if s.len() > limits.max_part_bytes {
        let mut cut = limits.max_part_bytes;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        match &mut s {
            Cow::Borrowed(t) => *t = &t[..cut],
            Cow::Owned(t) => t.truncate(cut),
        }
    }
    s
}

/// Bytes in a part's charset as text, the way mailparse decodes them. Most
/// bounce texts are plain ASCII, which every ASCII-compatible charset leaves
/// as it is: they are copied without a decoder. ISO-2022-JP (common in
/// Japanese bounces) counts as one while no escape or shift byte switches
/// it out of ASCII; its decoder walks byte by byte and costs more than the
/// rest of the message.
fn in_charset<'a>(bytes: Cow<'a, [u8]>, ctype: &ContentType<'_>) -> Option<Cow<'a, str>> {
    let label = &*ctype.charset;
    // the usual labels are known ASCII-compatible without the label table
    let identity = || {
        ["us-ascii", "utf-8", "iso-8859-1"]
            .iter()
            .any(|l| l.eq_ignore_ascii_case(label))
            || encoding_rs::Encoding::for_label(label.as_bytes()).is_some_and(|enc| {
                enc.is_ascii_compatible()
                    || (enc == encoding_rs::ISO_2022_JP
                        && memchr::memchr3(0x1b, 0x0e, 0x0f, &bytes).is_none())
            })
    };
    if bytes.is_ascii() && identity() {
        return match bytes {
            Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
            Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
        };
    }
    mailparse::body::Body::new(&bytes, &ctype.parsed(), &None)
        .get_body_text()
        .map(Cow::Owned)
}

trait BodyText {
    /// The body as text in its charset; None for an undecodable encoding.
    fn get_body_text(&self) -> Option<String>;
}

impl BodyText for mailparse::body::Body<'_> {
    fn get_body_text(&self) -> Option<String> {
        use mailparse::body::Body;
        match self {
            Body::Base64(b) | Body::QuotedPrintable(b) => b.get_decoded_as_string().ok(),
            Body::SevenBit(b) | Body::EightBit(b) => b.get_as_string().ok(),
            Body::Binary(b) => b.get_as_string().ok(),
        }
    }
}

/// Quoted-printable, decoded leniently the way mailparse's decoder does in
/// its robust mode (bytes outside printable ASCII dropped, trailing
/// whitespace ignored, broken escapes kept as they stand, lines joined by
/// CRLF), without its per-character detour through a `String`.
pub fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let allowed = |c: u8| matches!(c, b'\t' | b'\r' | b'\n' | b' '..=b'~');
    // a fold, not `all`: without the early exit the check vectorises
    let filtered: Cow<[u8]> = if !input.iter().fold(false, |bad, &c| bad | !allowed(c)) {
        Cow::Borrowed(input)
    } else {
        Cow::Owned(input.iter().copied().filter(|&c| allowed(c)).collect())
    };
    let data = &filtered[..];
    let mut out = Vec::with_capacity(data.len());
    // the previous line ended plainly: its line break is owed
    let mut pending_break = false;
    let mut pos = 0;
    while pos < data.len() {
        let nl = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
        let mut line = &data[pos..nl];
        pos = nl + 1;
        while let [rest @ .., b' ' | b'\t' | b'\r'] = line {
            line = rest;
        }
        if pending_break {
            out.extend_from_slice(b"\r\n");
        }
        pending_break = decode_qp_line(line, &mut out);
    }
    if pending_break && data.last() == Some(&b'\n') {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Decodes one line; false when it ends in a soft line break (`=`).
fn decode_qp_line(line: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < line.len() {
        let Some(eq) = memchr::memchr(b'=', &line[i..]).map(|e| i + e) else {
            out.extend_from_slice(&line[i..]);
            return true;
        };
        out.extend_from_slice(&line[i..eq]);
        match (line.get(eq + 1), line.get(eq + 2)) {
            (None, _) => return false,
            (Some(&u), None) => {
                out.extend_from_slice(&[b'=', u]);
                return true;
            }
            (Some(&u), Some(&l)) => {
                match (hex_value(u), hex_value(l)) {
                    (Some(h), Some(lo)) => out.push(h << 4 | lo),
                    _ => out.extend_from_slice(&[b'=', u, l]),
                }
                i = eq + 3;
            }
        }
    }
    true
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        let c = bytes[i];
        if !in_tag && c == b'<' {
            in_tag = true;
            let rest = &lower[i..];
            if rest.starts_with("<br")
                || rest.starts_with("<p")
                || rest.starts_with("</p")
                || rest.starts_with("<div")
                || rest.starts_with("</div")
                || rest.starts_with("<tr")
                || rest.starts_with("</tr")
                || rest.starts_with("<li")
            {
                out.push('\n');
            }
        } else if in_tag && c == b'>' {
            in_tag = false;
        } else if !in_tag {
            // copy whole UTF-8 sequences
            let len = utf8_len(c);
            if let Some(s) = html.get(i..i + len) {
                out.push_str(s);
            }
            i += len;
            continue;
        }
        i += 1;
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Caps the message at `max` bytes (at a line end) and turns CR-only line
/// endings into LF, which mailparse does not recognise. Drops an mbox `From `
/// separator line.
pub fn bound_and_normalise(raw: &[u8], max: usize) -> (Cow<'_, [u8]>, bool) {
    let mut bytes = raw;
    let mut truncated = false;
    if bytes.starts_with(b"From ") {
        let end = memchr::memchr(b'\n', bytes)
            .map(|i| i + 1)
            .unwrap_or(bytes.len());
        bytes = &bytes[end..];
    }
    if bytes.len() > max {
        let cut = memchr::memrchr(b'\n', &bytes[..max])
            .map(|i| i + 1)
            .unwrap_or(max);
        bytes = &bytes[..cut];
        truncated = true;
    }
    let has_lf = memchr::memchr(b'\n', bytes).is_some();
    if !has_lf && memchr::memchr(b'\r', bytes).is_some() {
        let v: Vec<u8> = bytes
            .iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect();
        return (Cow::Owned(v), truncated);
    }
    (Cow::Borrowed(bytes), truncated)
}

/// All header values of a block under `name`.
pub fn header_values<'a>(
    block: &'a [Header<'_>],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    block
        .iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| &**v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_qp(input: &[u8]) -> Vec<u8> {
        quoted_printable::decode(input, quoted_printable::ParseMode::Robust)
            .expect("robust mode never fails")
    }

    #[test]
    fn quoted_printable_matches_mailparse_on_edge_cases() {
        for case in [
            &b""[..],
            b"\n",
            b"a=\nb",
            b"a=\r\nb\r\n",
            b"caf=C3=A9 =3d=3D\n",
            b"trailing  \t\nspace",
            b"broken =ZZ escape=",
            b"=4",
            b"half =4\nline",
            b"==41=\n",
            b"8bit \xc3\xa9 dropped\n",
            b"lone\rcr\n\n\n",
        ] {
            assert_eq!(
                decode_quoted_printable(case),
                reference_qp(case),
                "{case:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn quoted_printable_matches_mailparse(
            input in proptest::collection::vec(
                prop_oneof![
                    Just(b'='), Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'\t'),
                    Just(b'A'), Just(b'f'), Just(b'3'), Just(b'z'), any::<u8>()
                ],
                0..200,
            )
        ) {
            prop_assert_eq!(decode_quoted_printable(&input), reference_qp(&input));
        }
    }

    proptest! {
        /// The copy of ASCII text is what mailparse's decoding gives, for
        /// every kind of label: ASCII-compatible, ISO-2022-JP with and
        /// without its escapes, UTF-16, the replacement encoding's, unknown.
        #[test]
        fn ascii_text_decodes_like_mailparse(
            bytes in proptest::collection::vec(
                prop_oneof![Just(0x1bu8), Just(0x0e), Just(b'+'), Just(b'$'), Just(b'B'), 0u8..0x80],
                0..40,
            ),
            label in prop_oneof![
                Just("us-ascii"), Just("UTF-8"), Just("iso-8859-1"), Just("windows-1252"),
                Just("shift_jis"), Just("iso-2022-jp"), Just("ISO-2022-JP"), Just("utf-16"),
                Just("utf-16be"), Just("iso-2022-kr"), Just("utf-7"), Just("x-unknown"), Just(""),
            ],
        ) {
            let ctype = ContentType {
                mimetype: "text/plain".into(),
                charset: label.into(),
                boundary: None,
            };
            let want = mailparse::body::Body::new(&bytes, &ctype.parsed(), &None).get_body_text();
            let lent = in_charset(Cow::Borrowed(&bytes), &ctype);
            let owned = in_charset(Cow::Owned(bytes.clone()), &ctype);
            prop_assert_eq!(lent.as_deref(), want.as_deref());
            prop_assert_eq!(owned.as_deref(), want.as_deref());
        }
    }

    proptest! {
        /// What the walk reads of a Content-Type (type, charset, boundary)
        /// is what mailparse reads, for values without quoted semicolons.
        #[test]
        fn content_types_read_like_mailparse(pieces in proptest::collection::vec(0usize..14, 0..10)) {
            const PIECES: [&str; 14] = [
                "text/plain", "Multipart/Report", ";", " ", "\t", "charset=", "CharSet = ",
                "\"utf-8\"", "iso-8859-1", "boundary=", "\"=_b1\"", "b2", "x=y", "é",
            ];
            let value: String = pieces.iter().map(|&i| PIECES[i]).collect();
            let ours = parse_content_type(&value);
            let theirs = mailparse::parse_content_type(&value);
            prop_assert_eq!(
                (&*ours.mimetype, &*ours.charset, ours.boundary.as_deref()),
                (
                    theirs.mimetype.as_str(),
                    theirs.charset.as_str(),
                    theirs.params.get("boundary").map(String::as_str)
                )
            );
        }
    }

    proptest! {
        #[test]
        fn headers_decode_like_mailparse(
            body in proptest::collection::vec(0usize..13, 0..12),
            key in "[A-Za-z-]{0,8}",
        ) {
            let mut raw = key.into_bytes();
            raw.extend_from_slice(b": ");
            const PIECES: [&[u8]; 13] = [
                b"\n ", b"\r\n\t", b"\r", b" ", b"=?", b"?=", b"=?utf-8?q?caf=C3=A9?=",
                b"=?iso-8859-1?b?6Q==?=", b"word", b"<a@b.c>", b"\xe9", b"\xc3\xa9", b":",
            ];
            for i in body {
                raw.extend_from_slice(PIECES[i]);
            }
            raw.extend_from_slice(b"\nNext: x\n");
            let span = HeaderSpan::of(&raw);
            let (h, consumed) = mailparse::parse_header(&raw).expect("mailparse");
            prop_assert_eq!(span.end, consumed);
            prop_assert_eq!(lowercase_name(&raw[..span.key]), h.get_key().to_ascii_lowercase());
            prop_assert_eq!(decode_value(&raw[..span.end], span.key), h.get_value());
        }
    }

    #[test]
    fn headers_split_like_mailparse() {
        let raw = b"Received: from a\n\tby b\nX-No-Colon\nSubject: hi\n there\nTo: x@y.z\n\nbody";
        let mut seen = Vec::new();
        let end = scan_headers(raw, |k, h| seen.push((k, h))).expect("headers");
        let (parsed, body) = mailparse::parse_headers(raw).expect("mailparse");
        assert_eq!(end, body);
        assert_eq!(seen.len(), parsed.len());
        for ((k, header), h) in seen.iter().zip(&parsed) {
            assert_eq!(*k, h.get_key().as_bytes());
            assert_eq!(lowercase_name(k), h.get_key().to_lowercase());
            assert_eq!(decode_value(header, k.len()), h.get_value());
        }
    }

    #[test]
    fn multipart_split_like_mailparse() {
        let raw = b"Content-Type: multipart/report; boundary=\"b\"\n\npreamble\n--b\nContent-Type: text/plain\n\none\n--b\r\nContent-Type: message/delivery-status\n\ntwo\r\n--b--\nepilogue\n";
        let part = Part::read(raw, false, Some("x-inmail-id")).expect("part");
        let parsed = mailparse::parse_mail(raw).expect("mailparse");
        assert_eq!(part.body, parsed.get_body_raw().expect("body").as_slice());
        assert_eq!(part.subparts.len(), parsed.subparts.len());
        for (ours, theirs) in part.subparts.iter().zip(&parsed.subparts) {
            assert_eq!(*ours, theirs.raw_bytes);
        }
    }
}
