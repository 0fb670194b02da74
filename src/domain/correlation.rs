//! Correlation: how a bounce's recipient is tied to what was sent — by
//! tracking id, then Message-ID, then a signed VERP token — and the values
//! those ties are made of. The store looks the ties up; what counts as a
//! tie is decided here.
//!
//! Signed VERP tokens. Format: the first 16 lowercase hex characters (8 bytes) of
//! HMAC-SHA256(secret, lowercased address). A sender puts it in the return
//! path (`bounces+TOKEN+local=domain@...`, whatever `correlation.verp_pattern`
//! extracts as `token`); a bounce whose VERP recipient carries a valid token
//! for the recipient address correlates to that address. Without the token a
//! VERP address is trivially forgeable, so it does not correlate by itself.

use crate::model::EmailAddress;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// How a recipient was tied to a delivery log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrelatedBy {
    TrackingId,
    MessageId,
    Verp,
    None,
}

impl CorrelatedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrackingId => "tracking_id",
            Self::MessageId => "message_id",
            Self::Verp => "verp",
            Self::None => "none",
        }
    }
}

/// Message-IDs are stored and compared without angle brackets.
pub fn normalise_message_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_owned()
}

/// A bounce's tracking id as looked up: trimmed, none when empty.
pub fn tracking_key(id: Option<&str>) -> Option<String> {
    id.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// A bounce's Message-ID as looked up: normalised, none when empty.
pub fn message_id_key(id: Option<&str>) -> Option<String> {
    id.map(normalise_message_id).filter(|m| !m.is_empty())
}

/// Whether the bounce's VERP return path ties it to `address` (a key): only
/// with a valid signature, since an unsigned VERP address is trivially
/// forged, and only for the address the return path names.
pub fn verp_correlates(
    secret: Option<&str>,
    verp_recipient: Option<&EmailAddress>,
    token: Option<&str>,
    address: &str,
) -> bool {
    let (Some(secret), Some(recipient), Some(token)) = (secret, verp_recipient, token) else {
        return false;
    };
    recipient.key() == address && verify_verp_token(secret, address, token)
}

/// Length of a token in hex characters.
pub const VERP_TOKEN_LEN: usize = 16;

fn mac(secret: &[u8], address: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(address.to_lowercase().as_bytes());
    m
}

/// The token a sender puts in the VERP return path of a message to `address`.
pub fn verp_token(secret: &str, address: &str) -> String {
    let full = mac(secret.as_bytes(), address).finalize().into_bytes();
    hex::encode(&full[..VERP_TOKEN_LEN / 2])
}

/// Checks `token` against `address` in constant time.
pub fn verify_verp_token(secret: &str, address: &str, token: &str) -> bool {
    let token = token.trim();
    if token.len() != VERP_TOKEN_LEN {
        return false;
    }
    let Ok(bytes) = hex::decode(token.to_ascii_lowercase()) else {
        return false;
    };
    mac(secret.as_bytes(), address)
        .verify_truncated_left(&bytes)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verp_return_path_correlates_only_signed_and_for_its_own_address() {
        let bob: EmailAddress = "Bob@Example.com".parse().expect("address");
        let t = verp_token("k", "bob@example.com");
        let ok = |secret, token: &str, address| {
            verp_correlates(secret, Some(&bob), Some(token), address)
        };
        assert!(ok(Some("k"), &t, "bob@example.com"));
        assert!(!ok(None, &t, "bob@example.com"));
        assert!(!ok(Some("other"), &t, "bob@example.com"));
        assert!(!ok(Some("k"), &t, "eve@example.com"));
        assert!(!verp_correlates(
            Some("k"),
            None,
            Some(&t),
            "bob@example.com"
        ));
    }

    #[test]
    fn message_ids_and_tracking_ids_are_compared_trimmed_and_never_empty() {
        assert_eq!(normalise_message_id(" <a@b> "), "a@b");
        assert_eq!(message_id_key(Some("<>")), None);
        assert_eq!(tracking_key(Some("  t1 ")), Some("t1".into()));
        assert_eq!(tracking_key(Some("  ")), None);
    }

    #[test]
    fn token_round_trip_and_case_insensitive_address() {
        let t = verp_token("s3cret", "Bob@Example.com");
        assert_eq!(t.len(), VERP_TOKEN_LEN);
        assert!(verify_verp_token("s3cret", "bob@example.com", &t));
        assert!(verify_verp_token(
            "s3cret",
            "bob@example.com",
            &t.to_uppercase()
        ));
        assert!(!verify_verp_token("other", "bob@example.com", &t));
        assert!(!verify_verp_token("s3cret", "eve@example.com", &t));
        assert!(!verify_verp_token("s3cret", "bob@example.com", "zz"));
    }
}
