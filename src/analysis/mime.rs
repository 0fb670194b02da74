//! MIME walking: the one place that touches `mailparse`. It flattens a message
//! into what the classifiers need (top headers, report parts, the returned
//! original's headers, human-readable text), with every size bounded.

use super::Limits;
use mailparse::ParsedMail;
use std::borrow::Cow;

/// A message reduced to the parts the analysis looks at.
#[derive(Debug, Default)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    /// Bodies of `message/delivery-status` and `message/global-delivery-status` parts.
    pub delivery_status: Vec<String>,
    /// Body of a `message/feedback-report` part.
    pub feedback_report: Option<String>,
    /// Headers of the returned original (message/rfc822, text/rfc822-headers).
    pub original_headers: Option<Vec<(String, String)>>,
    /// Human-readable text parts of the report itself, in order.
    pub texts: Vec<String>,
    pub content_type: String,
    /// The first attached message, whole: some gateways forward a bounce as an attachment.
    pub attached: Option<Vec<u8>>,
    /// Header name of the platform's tracking id, lowercase.
    pub tracking_header: String,
    inline_original: std::cell::OnceCell<Option<Vec<(String, String)>>>,
    /// One per text, searched on first use: most reports are cut at the first text.
    original_markers: Vec<std::cell::OnceCell<Option<(usize, usize)>>>,
}

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

/// Whether the analysis reads a header. Most headers of a bounce are
/// Received and X- lines it never reads: the length check rejects them cheaply.
fn is_wanted(key: &[u8], tracking: &str) -> bool {
    key.eq_ignore_ascii_case(tracking.as_bytes())
        || WANTED_HEADERS
            .iter()
            .any(|w| w.len() == key.len() && key.eq_ignore_ascii_case(w.as_bytes()))
}

impl Message {
    /// Headers of the returned original: its MIME part, or a copy inline in the text.
    pub fn original(&self) -> Option<&[(String, String)]> {
        match &self.original_headers {
            Some(h) if !h.is_empty() => Some(h),
            _ => self
                .inline_original
                .get_or_init(|| super::text::inline_original(self))
                .as_deref(),
        }
    }

    /// Where the copy of the original starts in text `i`, searched once.
    pub fn original_marker(&self, i: usize) -> Option<(usize, usize)> {
        let (cell, text) = (self.original_markers.get(i)?, self.texts.get(i)?);
        *cell.get_or_init(|| super::text::find_original_marker(text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.headers, name)
    }
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn parse(bytes: &[u8], limits: &Limits, tracking_header: &str) -> Result<Message, String> {
        let mut m = Self::parse_structure(bytes, limits, &tracking_header.to_ascii_lowercase())?;
        m.tracking_header = tracking_header.to_ascii_lowercase();
        m.original_markers = m.texts.iter().map(|_| Default::default()).collect();
        Ok(m)
    }

    fn parse_structure(bytes: &[u8], limits: &Limits, tracking: &str) -> Result<Message, String> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Message::default());
        }
        // mailparse recurses once per nesting level; a hostile message can nest
        // thousands deep. Real bounces have a handful of parts, so past the
        // limit only the top headers are trusted and the rest is read as text.
        let nested = memchr::memmem::find_iter(bytes, b"ultipart/").count();
        if nested > limits.max_parts {
            return Self::headers_only(bytes, limits, tracking);
        }
        let parsed =
            mailparse::parse_mail(bytes).map_err(|e| format!("unreadable MIME structure: {e}"))?;
        let mut m = Message {
            headers: collect_headers(&parsed.headers, tracking),
            content_type: parsed.ctype.mimetype.to_ascii_lowercase(),
            ..Message::default()
        };
        let mut stack: Vec<&ParsedMail> = vec![&parsed];
        let mut visited = 0usize;
        // HTML parts are read only when there is no plain text: decoding and
        // stripping them is left until then.
        let mut html: Vec<&ParsedMail> = Vec::new();
        while let Some(part) = stack.pop() {
            visited += 1;
            if visited > limits.max_parts {
                break;
            }
            let mt = part.ctype.mimetype.to_ascii_lowercase();
            if mt.starts_with("multipart/") {
                if part.subparts.is_empty() {
                    // Declared multipart but no boundary found: the body is all there is.
                    m.texts.push(raw_text(part, limits));
                }
                stack.extend(part.subparts.iter().rev());
                continue;
            }
            match mt.as_str() {
                "message/delivery-status" | "message/global-delivery-status" => {
                    m.delivery_status.push(raw_text(part, limits))
                }
                "message/feedback-report" => {
                    m.feedback_report
                        .get_or_insert_with(|| raw_text(part, limits));
                }
                "message/rfc822"
                | "message/global"
                | "text/rfc822-headers"
                | "message/rfc822-headers"
                | "message/global-headers"
                    if m.original_headers.is_none() =>
                {
                    let body = raw_body(part, limits);
                    m.original_headers = Some(parse_header_block(&body, tracking));
                    if mt.starts_with("message/") {
                        m.attached = Some(body);
                    }
                }
                t if t.starts_with("text/plain") || t == "text" => {
                    m.texts.push(decoded_text(part, limits))
                }
                "text/html" => html.push(part),
                // a part without a usable Content-Type (broken MIME) is read as text
                "" => m.texts.push(decoded_text(part, limits)),
                _ => {}
            }
        }
        if m.texts.is_empty() {
            m.texts = html
                .into_iter()
                .map(|part| strip_html(&decoded_text(part, limits)))
                .collect();
        }
        if m.delivery_status.is_empty() {
            // Reports whose MIME structure broke still carry the DSN fields inline.
            if let Some(fields) = m.texts.iter().find_map(|t| inline_delivery_status(t)) {
                m.delivery_status.push(fields);
            }
        }
        Ok(m)
    }

    fn headers_only(bytes: &[u8], limits: &Limits, tracking: &str) -> Result<Message, String> {
        let (headers, end) =
            mailparse::parse_headers(bytes).map_err(|e| format!("unreadable headers: {e}"))?;
        let body = bytes.get(end..).unwrap_or_default();
        let body = &body[..body.len().min(limits.max_part_bytes)];
        Ok(Message {
            headers: collect_headers(&headers, tracking),
            texts: vec![String::from_utf8_lossy(body).into_owned()],
            content_type: "text/plain".into(),
            ..Message::default()
        })
    }
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

pub fn header_value(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn collect_headers(h: &[mailparse::MailHeader], tracking: &str) -> Vec<(String, String)> {
    h.iter()
        .filter_map(|x| {
            let k = x.get_key_ref();
            let wanted = is_wanted(k.as_bytes(), tracking);
            wanted.then(|| (k.to_ascii_lowercase(), x.get_value()))
        })
        .collect()
}

/// Headers of an embedded message or header block, tolerant of junk before
/// them. Only the wanted headers are parsed: a returned original often carries
/// dozens of Received lines nobody reads.
pub fn parse_header_block(body: &[u8], tracking: &str) -> Vec<(String, String)> {
    let mut pos = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let mut out = Vec::new();
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
            if is_wanted(key, tracking) {
                if let Ok((h, consumed)) = mailparse::parse_header(rest) {
                    out.push((h.get_key().to_ascii_lowercase(), h.get_value()));
                    pos += consumed.max(1);
                    continue;
                }
            }
        }
        pos += line_end;
    }
    out
}

/// Every header of a block whose name is `name`, lowercase names compared.
pub fn first_header<'a>(block: &'a [(String, String)], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn raw_body(part: &ParsedMail, limits: &Limits) -> Vec<u8> {
    // a body whose transfer encoding is broken is read as it stands
    let mut b = part
        .get_body_raw()
        .unwrap_or_else(|_| match part.get_body_encoded() {
            mailparse::body::Body::Base64(b) | mailparse::body::Body::QuotedPrintable(b) => {
                b.get_raw().to_vec()
            }
            mailparse::body::Body::SevenBit(b) | mailparse::body::Body::EightBit(b) => {
                b.get_raw().to_vec()
            }
            mailparse::body::Body::Binary(b) => b.get_raw().to_vec(),
        });
    b.truncate(limits.max_part_bytes);
    b
}

fn raw_text(part: &ParsedMail, limits: &Limits) -> String {
    String::from_utf8_lossy(&raw_body(part, limits)).into_owned()
}

fn decoded_text(part: &ParsedMail, limits: &Limits) -> String {
    let mut s = match part.get_body() {
        Ok(s) => s,
        Err(_) => raw_text(part, limits),
    };
    if s.len() > limits.max_part_bytes {
        let mut cut = limits.max_part_bytes;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
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
    block: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    block
        .iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
