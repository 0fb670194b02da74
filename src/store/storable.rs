//! Text made storable: PostgreSQL refuses the NUL character in `text`
//! values (and invalid UTF-8, which a Rust `String` cannot hold anyway). A
//! bounce can carry a NUL in a diagnostic, a header or a UIDL; refusing the
//! row would park a genuine bounce for good. So every text that enters the
//! database from a message goes through [`storable`] here, at the store's
//! boundary ([`crate::store::Store::apply`], the intake), and a NUL becomes
//! U+FFFD (the replacement character, as for invalid UTF-8). The raw message
//! itself is `bytea` and stays exactly as fetched.

use std::borrow::Cow;

use super::apply::BounceInput;

/// `s` with every NUL replaced by U+FFFD; borrowed when there is none.
pub fn storable(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn fix(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

fn fix_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        fix(s);
    }
}

fn has_nul(input: &BounceInput) -> bool {
    let a = &input.analysis;
    let nul = |s: &str| s.contains('\0');
    let opt = |s: &Option<String>| s.as_deref().is_some_and(nul);
    nul(&input.source)
        || opt(&a.error)
        || opt(&a.subject)
        || opt(&a.from)
        || opt(&a.reporting_mta)
        || opt(&a.arrival_date)
        || opt(&a.feedback_type)
        || opt(&a.original.message_id)
        || opt(&a.original.tracking_id)
        || opt(&a.original.verp_token)
        || input.verdicts.iter().any(|v| nul(&v.rule))
        || a.recipients.iter().any(|r| {
            opt(&r.original_recipient)
                || opt(&r.diagnostic)
                || opt(&r.remote_mta)
                || opt(&r.last_attempt)
                || r.context.as_deref().is_some_and(nul)
                || r.extra_fields.iter().any(|(k, v)| nul(k) || nul(v))
        })
}

/// The inputs with every text storable: borrowed unless one holds a NUL.
pub(crate) fn storable_inputs(inputs: &[BounceInput]) -> Cow<'_, [BounceInput]> {
    if !inputs.iter().any(has_nul) {
        return Cow::Borrowed(inputs);
    }
    let mut owned = inputs.to_vec();
    for input in &mut owned {
        if !has_nul(input) {
            continue;
        }
        fix(&mut input.source);
        let a = &mut input.analysis;
        for s in [
            &mut a.error,
            &mut a.subject,
            &mut a.from,
            &mut a.reporting_mta,
            &mut a.arrival_date,
            &mut a.feedback_type,
            &mut a.original.message_id,
            &mut a.original.tracking_id,
            &mut a.original.verp_token,
        ] {
            fix_opt(s);
        }
        for v in &mut input.verdicts {
            fix(&mut v.rule);
        }
        for r in &mut a.recipients {
            for s in [
                &mut r.original_recipient,
                &mut r.diagnostic,
                &mut r.remote_mta,
                &mut r.last_attempt,
            ] {
                fix_opt(s);
            }
            if let Some(c) = &r.context {
                if c.contains('\0') {
                    r.context = Some(c.replace('\0', "\u{FFFD}").into());
                }
            }
            for (k, v) in &mut r.extra_fields {
                fix(k);
                fix(v);
            }
        }
    }
    Cow::Owned(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_becomes_the_replacement_character() {
        assert_eq!(storable("550 a\0b"), "550 a\u{FFFD}b");
        assert!(matches!(storable("clean"), Cow::Borrowed("clean")));
    }
}
