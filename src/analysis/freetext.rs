//! Free-text bounces: the formats of qmail, older Sendmail, Exim, Exchange,
//! Domino, Courier and friends. They share a shape — a preamble, then each
//! failed address followed by the remote server's answer, then a copy of the
//! original — so one reader covers them: cut the copy off, find the addresses
//! that are not the sender's, and take the lines around each as its diagnostic.
//!
//! The reader ([`parse_bounce`]) uses the pieces beside it: [`super::original`]
//! cuts the copy of the original off, [`super::recipients`] picks the failed
//! addresses, [`super::blocks`] takes each one's diagnostic and
//! [`super::smtp`] reads its codes.

use super::{blocks, headers, mime, original, recipients, smtp, Analysis, RecipientReport};
use crate::model::{same_key, EnhancedStatus};
use std::sync::{Arc, LazyLock};

pub fn parse_bounce(msg: &mime::Message, signals: &headers::Signals, a: &mut Analysis) {
    let region = original::report_text(msg);
    if region.trim().is_empty() {
        return;
    }
    let excluded = recipients::excluded_addresses(msg);
    let mut rcpts = if signals.failed_recipients.is_empty() {
        recipients::candidate_recipients(&region, &excluded)
    } else {
        signals.failed_recipients.clone()
    };
    let context: Arc<str> = {
        // Collapsing never lengthens the text, and the loop stops a line
        // past the cut: one allocation, not a growth by doubling.
        let mut c = String::with_capacity(region.len().min(8 * blocks::MAX_DIAGNOSTIC));
        // a long report is collapsed only as far as the context keeps
        for line in crate::text::lines_inclusive(&region) {
            blocks::push_collapsed(&mut c, line);
            if c.len() >= 4 * blocks::MAX_DIAGNOSTIC {
                break;
            }
        }
        blocks::truncate_chars(&mut c, 4 * blocks::MAX_DIAGNOSTIC);
        c.into()
    };
    let report = blocks::Region::new(&region);
    if rcpts.is_empty() && signals.strong() {
        // A report that names nobody: the original's recipient is the one who failed.
        if let Some(to) = original::headers(msg).and_then(|h| mime::first_header(h, "to")) {
            rcpts.extend(
                headers::addresses(to)
                    .filter(|a| !excluded.iter().any(|e| same_key(e, a.as_str())))
                    .take(1),
            );
        }
    }
    let keys: Vec<String> = rcpts.iter().map(|r| r.key()).collect();
    let temporary_report = smtp::TEMPORARY.is_match(&context);
    let delay_warning = signals.delay_warning;
    for (i, addr) in rcpts.into_iter().enumerate() {
        let others: Vec<&str> = keys
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, k)| k.as_str())
            .collect();
        let mut r = RecipientReport::new(addr);
        let diag = blocks::blocks(&report, &keys[i], &others);
        r.reply_code = diag.as_deref().and_then(smtp::find_reply_code);
        r.status = diag.as_deref().and_then(smtp::find_status);
        if r.status.is_none() && r.reply_code.is_none() && keys.len() == 1 {
            r.reply_code = smtp::find_reply_code(&context);
            r.status = smtp::find_status(&context);
        }
        r.smtp_command = diag.as_deref().and_then(smtp::find_smtp_command);
        if r.smtp_command.is_none() && keys.len() == 1 {
            r.smtp_command = smtp::find_smtp_command(&context);
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
                smtp::infer_status(&mut r);
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
