//! Signed VERP tokens.
//!
//! Format: the first 16 lowercase hex characters (8 bytes) of
//! HMAC-SHA256(secret, lowercased address). A sender puts it in the return
//! path (`bounces+TOKEN+local=domain@...`, whatever `correlation.verp_pattern`
//! extracts as `token`); a bounce whose VERP recipient carries a valid token
//! for the recipient address correlates to that address. Without the token a
//! VERP address is trivially forgeable, so it does not correlate by itself.

use hmac::{Hmac, Mac};
use sha2::Sha256;

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
