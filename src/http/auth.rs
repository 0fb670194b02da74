//! Bearer tokens: `Authorization: Bearer <token>` on every `/v1` route.
//!
//! Secrets are kept only as SHA-256 digests and a presented token is
//! compared with every one of them in constant time (`subtle`), so neither
//! the time taken nor an early exit tells which token, or how much of one,
//! matched. Unknown or missing → 401 with `WWW-Authenticate: Bearer`; a read
//! token on a write route → 403.

use super::error::ApiError;
use super::ApiState;
use crate::config::{ApiToken, TokenScope};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum_extra::headers::authorization::Bearer;
use axum_extra::headers::Authorization;
use axum_extra::TypedHeader;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use subtle::ConstantTimeEq;

struct Known {
    name: String,
    scope: TokenScope,
    digest: [u8; 32],
}

/// The configured tokens.
pub struct Tokens(Vec<Known>);

impl Tokens {
    pub fn new(tokens: &[ApiToken]) -> Self {
        Self(
            tokens
                .iter()
                .map(|t| Known {
                    name: t.name.clone(),
                    scope: t.scope,
                    digest: Sha256::digest(t.secret.expose_secret().as_bytes()).into(),
                })
                .collect(),
        )
    }

    /// The name and scope of the token `presented`, looking at every
    /// configured token whatever the outcome.
    fn find(&self, presented: &str) -> Option<(&str, TokenScope)> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for k in &self.0 {
            if bool::from(k.digest.ct_eq(&digest)) {
                found = Some((k.name.as_str(), k.scope));
            }
        }
        found
    }
}

/// Where the request log finds the name of the token that authenticated a
/// request (set by the extractors below).
#[derive(Clone, Default)]
pub struct ActorSlot(pub Arc<OnceLock<String>>);

/// Who made the request: the token's name.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub scope: TokenScope,
}

async fn authenticate(
    parts: &mut Parts,
    state: &ApiState,
    needed: TokenScope,
) -> Result<Actor, ApiError> {
    let TypedHeader(Authorization(bearer)) =
        TypedHeader::<Authorization<Bearer>>::from_request_parts(parts, &())
            .await
            .map_err(|_| {
                ApiError::unauthorized("a bearer token is required: Authorization: Bearer <token>")
            })?;
    let (name, scope) = state
        .tokens()
        .find(bearer.token())
        .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
    if let Some(slot) = parts.extensions.get::<ActorSlot>() {
        let _ = slot.0.set(name.to_owned());
    }
    if scope < needed {
        return Err(ApiError::forbidden(format!(
            "token {name:?} has scope {}; this route needs {}",
            scope.as_str(),
            needed.as_str()
        )));
    }
    Ok(Actor {
        name: name.to_owned(),
        scope,
    })
}

/// A token with the `read` scope (or `write`, which includes it).
pub struct Reader(pub Actor);

/// A token with the `write` scope.
pub struct Writer(pub Actor);

impl FromRequestParts<ApiState> for Reader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        authenticate(parts, state, TokenScope::Read)
            .await
            .map(Reader)
    }
}

impl FromRequestParts<ApiState> for Writer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        authenticate(parts, state, TokenScope::Write)
            .await
            .map(Writer)
    }
}
