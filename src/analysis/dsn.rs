//! RFC 3464 / RFC 6533 delivery-status fields. Unknown fields are kept on the
//! recipient (`extra_fields`) rather than dropped.

use super::fields::{parse_fields, Field};
use super::{blocks, headers, mime::Message, original, smtp, Analysis, RecipientReport};
use crate::model::{Action, Category, EmailAddress, EnhancedStatus};
use std::borrow::Cow;

/// `rfc822; user@example.com` → the address (utf-8 and unknown types too).
/// The field holds one address (RFC 3464 §2.3.2), so the value is read
/// whole first: an address the prose scanner would pass over, such as
/// `user@localhost` (a domain without a dot), is still the recipient. A
/// `utf-8` address may carry escaped characters (`\x{F6}`), decoded first.
fn typed_address(v: &str) -> Option<EmailAddress> {
    let (kind, value) = match v.split_once(';') {
        Some((kind, value)) => (Some(kind.trim()), value),
        None => (None, v),
    };
    let value = match kind {
        Some(k) if k.eq_ignore_ascii_case("utf-8") && value.contains("\\x{") => {
            decode_utf8_addr(value)
        }
        _ => Cow::Borrowed(value),
    };
    let value = value.trim();
    let bare = value
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(value);
    bare.parse().ok().or_else(|| headers::first_address(value))
}

/// Decodes the `EmbeddedUnicodeChar`s of an RFC 6533 `utf-8` address
/// (section 3: `utf-8-addr-xtext` and `utf-8-addr-unitext` write a
/// character as `\x{HEXPOINT}`, 2 to 6 upper-case hex digits of its code
/// point, e.g. `\x{F6}laf@ex\x{E4}mple.test` is `ölaf@exämple.test`). A
/// sequence that is not a valid escape stays as it is.
fn decode_utf8_addr(value: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("\\x{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let decoded = after.find('}').and_then(|end| {
            let hex = &after[..end];
            ((2..=6).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(hex, 16).ok().and_then(char::from_u32))
                .flatten()
                .map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[at..at + 3]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `smtp; 550 5.1.1 ...` → `550 5.1.1 ...`
fn strip_type(v: &str) -> &str {
    match v.split_once(';') {
        Some((t, rest)) if t.len() < 20 && !t.contains(' ') => rest.trim(),
        _ => v.trim(),
    }
}

pub fn parse_reports(msg: &Message, a: &mut Analysis) {
    for body in &msg.delivery_status {
        parse_one(body, a);
    }
    let context: Option<std::sync::Arc<str>> = {
        let t = original::report_text(msg);
        (!t.trim().is_empty()).then(|| t.into())
    };
    // split into lines only when a recipient's fields leave a gap
    let region = std::cell::OnceCell::new();
    let region = || {
        context
            .as_deref()
            .map(|c| region.get_or_init(|| blocks::Region::new(c)))
    };
    // The report's text explains a recipient only when it is the only one:
    // with several, the others' reasons are in it too.
    let alone = a.recipients.len() == 1;
    let keys: Vec<String> = a
        .recipients
        .iter()
        .map(|r| r.address.as_str().to_ascii_lowercase())
        .collect();
    for (i, r) in a.recipients.iter_mut().enumerate() {
        let others: Vec<&str> = keys
            .iter()
            .enumerate()
            .filter(|&(j, k)| j != i && *k != keys[i])
            .map(|(_, k)| k.as_str())
            .collect();
        complete(r, &region, &others);
        r.context = context.clone().filter(|_| alone);
    }
}

fn parse_one(body: &str, a: &mut Analysis) {
    let fields = parse_fields(body);
    for block in fields.split(|(k, _)| k.is_empty()) {
        let finals: Vec<usize> = block
            .iter()
            .enumerate()
            .filter(|(_, (k, _))| k == "final-recipient")
            .map(|(i, _)| i)
            .collect();
        if finals.len() <= 1 {
            recipient_block(block, a);
            continue;
        }
        // Several recipients without blank lines between them: each starts at
        // its Final-Recipient (or the Original-Recipient just before it).
        let mut starts: Vec<usize> = finals
            .iter()
            .map(|&i| {
                if i > 0 && block[i - 1].0 == "original-recipient" {
                    i - 1
                } else {
                    i
                }
            })
            .collect();
        starts[0] = 0;
        for (n, &s) in starts.iter().enumerate() {
            let e = starts.get(n + 1).copied().unwrap_or(block.len());
            recipient_block(&block[s..e], a);
        }
    }
}

/// One group of fields: per-message fields, or one recipient's.
fn recipient_block(block: &[Field<'_>], a: &mut Analysis) {
    let addr = [
        "final-recipient",
        "original-recipient",
        "x-actual-recipient",
    ]
    .iter()
    .find_map(|name| {
        block
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| typed_address(v))
    });
    let Some(addr) = addr else {
        for (k, v) in block {
            match k.as_ref() {
                "reporting-mta" => a.reporting_mta = Some(strip_type(v).to_string()),
                "arrival-date" => a.arrival_date = Some(v.to_string()),
                _ => {}
            }
        }
        return;
    };
    let mut r = RecipientReport::new(addr);
    for (k, v) in block {
        match k.as_ref() {
            "final-recipient" => {}
            "original-recipient" => r.original_recipient = Some(strip_type(v).to_string()),
            "action" => r.action = v.split_whitespace().next().and_then(|w| w.parse().ok()),
            "status" => r.status = smtp::find_status(v),
            "diagnostic-code" => {
                let d = strip_type(v);
                if !d.is_empty() {
                    r.diagnostic = Some(d.to_string());
                }
            }
            "remote-mta" => r.remote_mta = Some(strip_type(v).to_string()),
            "last-attempt-date" => r.last_attempt = Some(v.to_string()),
            "reporting-mta" => a.reporting_mta = Some(strip_type(v).to_string()),
            "arrival-date" => a.arrival_date = Some(v.to_string()),
            _ => r.extra_fields.push((k.to_string(), v.to_string())),
        }
    }
    a.recipients.push(r);
}

/// The status a recipient's diagnostic text gives it: the remote server's
/// own code (next to its reply) is more precise than the reporting MTA's
/// summary (Sendmail's 4.4.7 when it gives up, a code it maps from a bare
/// reply) when both are of one class; a generic code (X.0.0) says least,
/// so any code in the text is better than a generic Status, and a generic
/// one in the text never replaces a specific Status.
fn remote_code_first(status: Option<EnhancedStatus>, text: &str) -> Option<EnhancedStatus> {
    let generic = status.is_none_or(|st| st.is_generic());
    if let Some(s) = smtp::reply_status(text)
        .filter(|s| generic || (!s.is_generic() && status.is_some_and(|st| st.class == s.class)))
    {
        return Some(s);
    }
    if generic {
        if let Some(s) = smtp::first_status(text) {
            return Some(s);
        }
    }
    status
}

/// Fills what the DSN fields left out from the diagnostic and the report text.
fn complete<'a>(
    r: &mut RecipientReport,
    context: &impl Fn() -> Option<&'a blocks::Region<'a>>,
    others: &[&str],
) {
    if let Some(d) = &r.diagnostic {
        if r.reply_code.is_none() {
            r.reply_code = smtp::find_reply_code(d);
        }
        r.status = remote_code_first(r.status, d);
    }
    if let Some(d) = &r.diagnostic {
        r.smtp_command = smtp::find_smtp_command(d);
    }
    let diag_empty = r.diagnostic.as_deref().is_none_or(|d| d.trim().len() < 4);
    // A Diagnostic-Code holding only the first line of a multi-line reply
    // (`550-5.7.1 ...`, RFC 5321 §4.2.1: the last line has a space after
    // the code) was cut: the text's lines about the recipient say more.
    let mut cut_reply = r
        .diagnostic
        .as_deref()
        .is_some_and(smtp::is_cut_multiline_reply);
    if cut_reply {
        // the report's text may quote the whole reply (Sendmail's
        // transcript does): read it there
        let whole = r
            .diagnostic
            .as_deref()
            .and_then(|d| context().and_then(|c| c.whole_reply(d)));
        if let Some(whole) = whole {
            r.diagnostic = Some(whole);
            cut_reply = false;
        }
    }
    // the text's lines about this recipient, only read when the fields left a gap
    let block = (r.smtp_command.is_none() || diag_empty || cut_reply)
        .then(|| context().and_then(|c| blocks::block_for(c, r.address.as_str(), others)))
        .flatten();
    if cut_reply && !diag_empty {
        if let Some(b) = block.as_deref() {
            let d = r.diagnostic.as_deref().unwrap_or("");
            if b.len() > d.len() && smtp::find_reply_code(b) == r.reply_code {
                r.diagnostic = Some(b.to_owned());
            }
        }
    }
    if r.smtp_command.is_none() {
        r.smtp_command = block.as_deref().and_then(smtp::find_smtp_command);
    }
    if diag_empty {
        {
            if let Some(block) = block {
                if r.reply_code.is_none() {
                    r.reply_code = smtp::find_reply_code(&block);
                }
                r.status = remote_code_first(r.status, &block);
                r.diagnostic = Some(block);
            }
        }
    }
    match r.action {
        Some(Action::Delayed) => r.hint = Some(Category::Delayed),
        Some(Action::Delivered | Action::Relayed | Action::Expanded) => {
            r.hint = Some(Category::Delivered)
        }
        _ => {}
    }
    if r.status.is_none() {
        smtp::infer_status(r);
    }
}
