//! Text made storable: PostgreSQL refuses the NUL character in `text`
//! values (and invalid UTF-8, which a Rust `String` cannot hold anyway). A
//! bounce can carry a NUL in a diagnostic, a header or a UIDL; refusing the
//! row would park a genuine bounce for good. So every text that enters the
//! database from a message goes through [`storable`] here, at the store's
//! boundary (`storable_inputs` in `apply.rs` for [`crate::store::Store::apply`], the intake), and a NUL becomes
//! U+FFFD (the replacement character, as for invalid UTF-8). The raw message
//! itself is `bytea` and stays exactly as fetched.

use std::borrow::Cow;

/// `s` with every NUL replaced by U+FFFD; borrowed when there is none.
pub fn storable(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Replaces every NUL of `s` in place.
pub(super) fn fix(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

/// [`fix`] for an optional text.
pub(super) fn fix_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        fix(s);
    }
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
