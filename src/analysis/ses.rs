//! Amazon SES event notifications (bounce, complaint, delivery), delivered by
//! SNS as a JSON document in the mail body, sometimes wrapped in an SNS
//! envelope whose `Message` holds the SES JSON as a string.

use super::{headers, Analysis, RecipientReport};
use crate::model::{Action, Category, EmailAddress, MessageKind};
use serde_json::Value;

/// The SES notification in a text, if it is one.
fn notification(text: &str) -> Option<Value> {
    let t = text.trim();
    if !t.starts_with('{') {
        return None;
    }
    // SNS folds long lines as "!\n " and appends an unsubscribe footer.
    let first = |s: &str| {
        serde_json::Deserializer::from_str(s)
            .into_iter::<Value>()
            .next()?
            .ok()
    };
    let v = first(t).or_else(|| first(&t.replace("!\r\n ", "").replace("!\n ", "")))?;
    let inner = match v.get("Message").and_then(Value::as_str) {
        Some(m) => serde_json::from_str(m).ok()?,
        None => v,
    };
    let kind = inner
        .get("notificationType")
        .or_else(|| inner.get("eventType"));
    kind.is_some().then_some(inner)
}

/// Fills `a` from an SES notification; false when the text is not one.
pub fn parse(text: &str, tracking_header: &str, a: &mut Analysis) -> bool {
    let Some(n) = notification(text) else {
        return false;
    };
    let kind = n
        .get("notificationType")
        .or_else(|| n.get("eventType"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let mail = n.get("mail");
    if let Some(mail) = mail {
        original(mail, tracking_header, a);
    }
    match kind {
        "Bounce" => bounce(&n, a),
        "Complaint" => complaint(&n, a),
        "Delivery" => delivery(&n, mail, a),
        _ => {}
    }
    !a.recipients.is_empty()
}

/// The entries of the array `key` of `v` that carry a usable `emailAddress`.
fn recipients_at<'a>(
    v: &'a Value,
    key: &str,
) -> impl Iterator<Item = (&'a Value, EmailAddress)> + 'a {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r,
                str_at(r, &["emailAddress"]).and_then(headers::first_address)?,
            ))
        })
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn original(mail: &Value, tracking_header: &str, a: &mut Analysis) {
    let Some(hs) = mail.get("headers").and_then(Value::as_array) else {
        return;
    };
    for h in hs {
        let (Some(name), Some(value)) = (str_at(h, &["name"]), str_at(h, &["value"])) else {
            continue;
        };
        if name.eq_ignore_ascii_case("message-id") {
            a.original.message_id = Some(value.trim().trim_matches(['<', '>']).to_string());
        } else if name.eq_ignore_ascii_case(tracking_header) {
            a.original.tracking_id = Some(value.trim().to_string());
        }
    }
}

fn bounce(n: &Value, a: &mut Analysis) {
    let b = &n["bounce"];
    let transient = str_at(b, &["bounceType"]) == Some("Transient");
    a.kind = MessageKind::Bounce;
    a.reporting_mta =
        str_at(b, &["reportingMTA"]).map(|s| s.trim_start_matches("dsn;").trim().to_string());
    for (r, addr) in recipients_at(b, "bouncedRecipients") {
        let mut rep = RecipientReport::new(addr);
        rep.action = str_at(r, &["action"]).and_then(|s| s.parse().ok());
        rep.status = str_at(r, &["status"]).and_then(super::find_status);
        rep.diagnostic = str_at(r, &["diagnosticCode"]).map(|d| {
            d.split_once(';')
                .filter(|(t, _)| t.len() < 12)
                .map(|(_, d)| d.trim())
                .unwrap_or(d)
                .to_string()
        });
        rep.reply_code = rep.diagnostic.as_deref().and_then(super::find_reply_code);
        if rep.status.is_none() {
            rep.status = Some(crate::model::EnhancedStatus::new(
                if transient { 4 } else { 5 },
                0,
                0,
            ));
            rep.status_inferred = true;
        }
        a.recipients.push(rep);
    }
}

fn complaint(n: &Value, a: &mut Analysis) {
    let c = &n["complaint"];
    a.kind = MessageKind::Arf;
    a.feedback_type = Some(
        str_at(c, &["complaintFeedbackType"])
            .unwrap_or("abuse")
            .to_string(),
    );
    let feedback_type = a.feedback_type.clone().unwrap_or_default();
    for (_, addr) in recipients_at(c, "complainedRecipients") {
        a.recipients
            .push(RecipientReport::complaint(addr, &feedback_type));
    }
}

fn delivery(n: &Value, mail: Option<&Value>, a: &mut Analysis) {
    let d = &n["delivery"];
    a.kind = MessageKind::Dsn;
    let smtp = str_at(d, &["smtpResponse"]).map(str::to_string);
    let rcpts = d
        .get("recipients")
        .or_else(|| mail.and_then(|m| m.get("destination")));
    for r in rcpts.and_then(Value::as_array).into_iter().flatten() {
        let Some(addr) = r.as_str().and_then(headers::first_address) else {
            continue;
        };
        let mut rep = RecipientReport::new(addr);
        rep.action = Some(Action::Delivered);
        rep.hint = Some(Category::Delivered);
        rep.reply_code = smtp.as_deref().and_then(super::find_reply_code);
        rep.status = smtp.as_deref().and_then(super::find_status);
        rep.diagnostic = smtp.clone();
        a.recipients.push(rep);
    }
}
