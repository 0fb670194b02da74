//! The one error model of the API: every error is
//! `{"error": "<code>", "message": "<text>"}`, plus `index` and `field` when
//! one item of a batch (or one field) is at fault.

use crate::ops::OpsError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Seconds a client should wait before retrying while the database is away.
pub const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: `bad_request`, `malformed_json`, `unknown_field`,
    /// `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `conflict`, `payload_too_large`, `unsupported_media_type`, `invalid`,
    /// `internal`, `unavailable`.
    pub error: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Position of the faulty item in a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The faulty field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error,
                message: message.into(),
                index: None,
                field: None,
            },
        }
    }

    pub fn at(mut self, index: Option<usize>, field: Option<String>) -> Self {
        self.body.index = index;
        self.body.field = field;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut r = (status, axum::Json(self.body)).into_response();
        let h = r.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        r
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        if e.is_outage() {
            return Self::unavailable(format!("the database is unavailable: {e}"));
        }
        match e {
            OpsError::Invalid {
                index,
                field,
                message,
            } => Self::invalid(message).at(index, field.map(str::to_owned)),
            OpsError::NotFound(what) => Self::not_found(format!("{what} not found")),
            OpsError::Store(e) => e.into(),
            OpsError::Rules(e) => Self::invalid(e.to_string()),
            OpsError::Csv(e) => Self::invalid(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if crate::store::is_outage(&e) {
            return Self::unavailable(format!("the database is unavailable: {e}"));
        }
        match e {
            StoreError::NotFound { .. } => Self::not_found(e.to_string()),
            StoreError::Input(m) => Self::invalid(m),
            StoreError::InvalidRule { .. } => Self::invalid(e.to_string()),
            StoreError::RuleExists(_) => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            StoreError::NotMigrated { .. } => Self::unavailable(e.to_string()),
            other => {
                tracing::error!(target: "inmail::http", error = %other, "request failed");
                Self::internal()
            }
        }
    }
}
