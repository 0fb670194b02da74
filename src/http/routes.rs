//! The handlers. Each parses its request, calls one operation from
//! [`crate::ops`] (the same the CLI calls) and serialises what comes back;
//! none holds SQL or business logic of its own.

use super::auth::{Reader, Writer};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::ApiState;
use crate::model::{BounceType, Category, Reason};
use crate::ops;
use crate::store::{AddressInfo, Qualification, Report};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

pub const TAG_HEALTH: &str = "health";
pub const TAG_ADDRESSES: &str = "addresses";
pub const TAG_SENDING: &str = "sending";
pub const TAG_QUALIFICATION: &str = "qualification";

#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// Always `ok`.
    pub status: &'static str,
}

/// The process runs.
#[utoipa::path(get, path = "/livez", tag = TAG_HEALTH,
    responses((status = 200, description = "The process runs", body = Live)))]
pub async fn livez() -> Json<Live> {
    Json(Live { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `database`, `schema` and `rules`.
    pub checks: BTreeMap<&'static str, Check>,
}

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Ready to serve: the database answers, its schema is current and the
/// rules are loaded. A load balancer routes only to ready instances.
#[utoipa::path(get, path = "/readyz", tag = TAG_HEALTH,
    responses((status = 200, description = "Ready", body = Ready),
              (status = 503, description = "Not ready; the body names each check", body = Ready)))]
pub async fn readyz(state: axum::extract::State<ApiState>) -> Response {
    let store = state.store();
    let timed =
        |r: Result<Result<(), crate::store::StoreError>, tokio::time::error::Elapsed>| match r {
            Ok(Ok(())) => Check {
                ok: true,
                message: None,
            },
            Ok(Err(e)) => Check {
                ok: false,
                message: Some(e.to_string()),
            },
            Err(_) => Check {
                ok: false,
                message: Some(format!("no answer within {} s", READY_TIMEOUT.as_secs())),
            },
        };
    let database = timed(tokio::time::timeout(READY_TIMEOUT, store.ping()).await);
    let schema = if database.ok {
        timed(tokio::time::timeout(READY_TIMEOUT, store.check_migrated()).await)
    } else {
        Check {
            ok: false,
            message: Some("not checked: the database does not answer".into()),
        }
    };
    let n = state.pipeline().rules().rules().len();
    let rules = Check {
        ok: n > 0,
        message: Some(format!("{n} rules loaded")),
    };
    let ok = database.ok && schema.ok && rules.ok;
    let body = Ready {
        status: if ok { "ready" } else { "not_ready" },
        checks: BTreeMap::from([("database", database), ("schema", schema), ("rules", rules)]),
    };
    if ok {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(super::error::RETRY_AFTER_SECS),
        );
        r
    }
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = TAG_HEALTH,
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(state: axum::extract::State<ApiState>) -> Response {
    // The gauges of the shared database, read now; when it does not answer
    // they keep their last value.
    let store = state.store();
    let m = state.metrics();
    if let Ok(Ok(n)) = tokio::time::timeout(READY_TIMEOUT, store.count_intake_backlog()).await {
        m.intake_backlog.set(n);
    }
    if let Ok(Ok(n)) = tokio::time::timeout(READY_TIMEOUT, store.count_to_qualify()).await {
        m.qualification_queue.set(n);
    }
    match m.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => ApiError::internal().into_response(),
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = TAG_HEALTH,
    responses((status = 200, description = "The OpenAPI 3.1 document of every route", content_type = "application/json", body = Object)))]
pub async fn openapi(
    axum::Extension(doc): axum::Extension<std::sync::Arc<utoipa::openapi::OpenApi>>,
) -> Json<utoipa::openapi::OpenApi> {
    Json((*doc).clone())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// How many recent events to include (default 20, at most 1000).
    pub events: Option<i64>,
}

/// What `inmail address --json` shows: status, counters, last reason and
/// the most recent events, newest first.
#[utoipa::path(get, path = "/v1/addresses/{address}", tag = TAG_ADDRESSES,
    security(("bearer" = [])),
    params(("address" = String, Path, description = "The address (compared lowercased)"), EventsQuery),
    responses((status = 200, body = AddressInfo),
              (status = 404, description = "inmail never saw this address", body = ErrorBody),
              (status = 422, description = "Not an address", body = ErrorBody)))]
pub async fn get_address(
    _: Reader,
    state: axum::extract::State<ApiState>,
    ApiPath(address): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<AddressInfo>, ApiError> {
    let events = q.events.unwrap_or(ops::addresses::DEFAULT_EVENTS);
    ops::addresses::lookup(state.store(), &address, events)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("{address}: inmail never saw this address")))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// At most 10,000.
    pub addresses: Vec<String>,
}

/// The send-time check: of these addresses, the ones a sender must not mail
/// now (quarantined, denylisted), with why, in input order.
#[utoipa::path(post, path = "/v1/addresses/check", tag = TAG_SENDING,
    security(("bearer" = [])),
    request_body = CheckRequest,
    responses((status = 200, body = ops::addresses::CheckResult),
              (status = 422, description = "More than 10,000 addresses", body = ErrorBody)))]
pub async fn check_addresses(
    _: Reader,
    state: axum::extract::State<ApiState>,
    ApiJson(req): ApiJson<CheckRequest>,
) -> Result<Json<ops::addresses::CheckResult>, ApiError> {
    Ok(Json(
        ops::addresses::check(state.store(), &req.addresses, state.now()).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QualificationsQuery {
    /// `to_qualify` (default), `keep`, `ignore`, `matched` or `all`.
    pub status: Option<String>,
    /// At most this many rows (default 100).
    pub limit: Option<usize>,
}

/// The "to qualify" queue, most frequent first, as `inmail qualifications list` shows it.
#[utoipa::path(get, path = "/v1/qualifications", tag = TAG_QUALIFICATION,
    security(("bearer" = [])),
    params(QualificationsQuery),
    responses((status = 200, body = Vec<Qualification>)))]
pub async fn list_qualifications(
    _: Reader,
    state: axum::extract::State<ApiState>,
    ApiQuery(q): ApiQuery<QualificationsQuery>,
) -> Result<Json<Vec<Qualification>>, ApiError> {
    let status = match q.status.as_deref().unwrap_or("to_qualify") {
        "all" => None,
        s => Some(ops::qualifications::parse_status(s)?),
    };
    Ok(Json(
        ops::qualifications::list(state.store(), status, Some(q.limit.unwrap_or(100))).await?,
    ))
}

/// What to do with a queued text.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum QualificationAction {
    /// Qualify it: creates rule `q<id>` from its shape.
    Keep {
        #[serde(rename = "type")]
        #[schema(value_type = String, example = "hard")]
        bounce_type: BounceType,
        #[schema(value_type = String, example = "user_unknown")]
        reason: Reason,
        /// Defaults to the category matching the reason.
        #[schema(value_type = Option<String>)]
        category: Option<Category>,
    },
    /// Drop it from the queue.
    Ignore,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QualificationDone {
    pub id: i64,
    /// `keep` or `ignore`.
    pub status: &'static str,
    /// The rule created by `keep`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// Keep (with a verdict) or ignore a queued text, as `inmail qualifications keep|ignore` does.
#[utoipa::path(post, path = "/v1/qualifications/{id}", tag = TAG_QUALIFICATION,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The queue row")),
    request_body = QualificationAction,
    responses((status = 200, body = QualificationDone),
              (status = 404, body = ErrorBody),
              (status = 409, description = "Already kept", body = ErrorBody)))]
pub async fn qualify(
    Writer(actor): Writer,
    state: axum::extract::State<ApiState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(action): ApiJson<QualificationAction>,
) -> Result<Json<QualificationDone>, ApiError> {
    let done = match action {
        QualificationAction::Keep {
            bounce_type,
            reason,
            category,
        } => {
            let rule =
                ops::qualifications::keep(state.store(), id, bounce_type, reason, category).await?;
            tracing::info!(target: "inmail::http", actor = %actor.name, id, rule = %rule.id, "qualification kept");
            QualificationDone {
                id,
                status: "keep",
                rule_id: Some(rule.id),
                pattern: Some(rule.pattern),
            }
        }
        QualificationAction::Ignore => {
            ops::qualifications::ignore(state.store(), id).await?;
            tracing::info!(target: "inmail::http", actor = %actor.name, id, "qualification ignored");
            QualificationDone {
                id,
                status: "ignore",
                rule_id: None,
                pattern: None,
            }
        }
    };
    Ok(Json(done))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Period: a number followed by s, m, h, d or w (default 7d).
    pub since: Option<String>,
}

/// What `inmail report --json` prints.
#[utoipa::path(get, path = "/v1/report", tag = TAG_QUALIFICATION,
    security(("bearer" = [])),
    params(ReportQuery),
    responses((status = 200, body = Report), (status = 422, body = ErrorBody)))]
pub async fn report(
    _: Reader,
    state: axum::extract::State<ApiState>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Json<Report>, ApiError> {
    Ok(Json(
        ops::report::report(
            state.store(),
            q.since.as_deref().unwrap_or("7d"),
            state.now(),
        )
        .await?,
    ))
}

/// Change an address's status by hand; an audit event (kind `manual`)
/// records the token's name. Returns the address as `GET` shows it.
#[utoipa::path(put, path = "/v1/addresses/{address}/status", tag = TAG_ADDRESSES,
    security(("bearer" = [])),
    params(("address" = String, Path, description = "The address (compared lowercased)")),
    request_body = super::schemas::StatusChange,
    responses((status = 200, body = AddressInfo),
              (status = 422, description = "Not an address, or a status that cannot be set by hand", body = ErrorBody)))]
pub async fn put_status(
    Writer(actor): Writer,
    state: axum::extract::State<ApiState>,
    ApiPath(address): ApiPath<String>,
    ApiJson(change): ApiJson<ops::status::StatusChange>,
) -> Result<Json<AddressInfo>, ApiError> {
    let info = ops::status::set_status(
        state.store(),
        &address,
        change.status,
        change.reason,
        change.note,
        &actor.name,
        state.now(),
    )
    .await?;
    if let Some(e) = info.events.first() {
        state
            .metrics()
            .record_transition(&e.status_before, &e.status_after);
    }
    Ok(Json(info))
}

/// Register what was sent: idempotent on (message_id, address), all or nothing.
#[utoipa::path(post, path = "/v1/deliveries", tag = TAG_SENDING,
    security(("bearer" = [])),
    request_body(content = Vec<super::schemas::NewDelivery>, description = "At most 10,000 delivery logs"),
    responses((status = 200, body = super::schemas::RegisterSummary),
              (status = 422, description = "A bad item (index, field) or more than 10,000", body = ErrorBody)))]
pub async fn post_deliveries(
    _: Writer,
    state: axum::extract::State<ApiState>,
    ApiJson(items): ApiJson<Vec<ops::deliveries::NewDelivery>>,
) -> Result<Json<ops::deliveries::RegisterSummary>, ApiError> {
    Ok(Json(
        ops::deliveries::register_deliveries(state.store(), items, state.now()).await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailuresResult {
    /// One per failure, in input order.
    #[schema(value_type = Vec<super::schemas::SyncFailureResult>)]
    pub results: Vec<ops::failures::SyncFailureResult>,
}

/// Synchronous failures (refusals met during the SMTP dialogue), each
/// qualified by the same rules and code path as a bounce recipient and
/// applied with the same quarantine semantics; all or nothing. A repeated
/// `id` changes nothing and returns the first result.
#[utoipa::path(post, path = "/v1/failures", tag = TAG_SENDING,
    security(("bearer" = [])),
    request_body(content = Vec<super::schemas::SyncFailure>, description = "At most 10,000 failures"),
    responses((status = 200, body = FailuresResult),
              (status = 422, description = "A bad item (index, field) or more than 10,000", body = ErrorBody)))]
pub async fn post_failures(
    _: Writer,
    state: axum::extract::State<ApiState>,
    ApiJson(items): ApiJson<Vec<ops::failures::SyncFailure>>,
) -> Result<Json<FailuresResult>, ApiError> {
    let rules = state.pipeline().rules();
    let results =
        ops::failures::record_sync_failures(state.store(), &rules, items, state.now()).await?;
    let m = state.metrics();
    for r in &results {
        m.record_result(
            r.bounce_type.as_str(),
            r.reason.as_str(),
            r.status_before.as_str(),
            r.status_after.as_str(),
        );
    }
    Ok(Json(FailuresResult { results }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RetriesQuery {
    /// RFC 3339; default now.
    #[param(value_type = Option<String>, format = DateTime)]
    pub due_before: Option<chrono::DateTime<chrono::Utc>>,
    /// 1 to 10,000 (default 1,000).
    pub limit: Option<i64>,
}

/// Delivery logs whose temporary failure is due for another attempt, oldest first.
#[utoipa::path(get, path = "/v1/retries", tag = TAG_SENDING,
    security(("bearer" = [])),
    params(RetriesQuery),
    responses((status = 200, body = Vec<super::schemas::DueRetry>),
              (status = 400, description = "due_before is not an RFC 3339 time", body = ErrorBody),
              (status = 422, description = "limit out of range", body = ErrorBody)))]
pub async fn get_retries(
    _: Reader,
    state: axum::extract::State<ApiState>,
    ApiQuery(q): ApiQuery<RetriesQuery>,
) -> Result<Json<Vec<ops::retries::DueRetry>>, ApiError> {
    Ok(Json(
        ops::retries::due_retries(
            state.store(),
            q.due_before.unwrap_or_else(|| state.now()),
            q.limit.unwrap_or(1000),
        )
        .await?,
    ))
}
