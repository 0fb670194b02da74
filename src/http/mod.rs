//! The HTTP API: the send path asks inmail which addresses not to mail,
//! tells it what was sent and what failed at once; plus health and metrics.
//!
//! axum with tower layers: a body limit (`http.max_body_bytes`, 413), a
//! per-request timeout (503), a concurrency limit, panics caught into a 500
//! JSON body (the server keeps serving), and one JSON log line per request
//! (method, route template, status, duration, token name — never a token
//! nor a body) that also feeds `inmail_http_requests_total` and
//! `inmail_http_request_duration_seconds`. The OpenAPI 3.1 document is
//! generated from the handlers' types (utoipa) by the same calls that
//! mount them, so it lists exactly the routes the router serves.
//!
//! Every handler calls the operations in [`crate::ops`], never SQL. The
//! server is stateless: any number of instances on one database answer the
//! same.

pub mod auth;
pub mod error;
pub mod extract;
pub mod routes;
mod schemas;

use crate::config::{ApiToken, HttpSettings};
use crate::metrics::{Metrics, RouteLabels, RouteStatusLabels};
use crate::pipeline::Pipeline;
use crate::store::Store;
use auth::{ActorSlot, Tokens};
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, Utc};
use error::ApiError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

struct Inner {
    store: Store,
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    tokens: Tokens,
}

/// What every handler shares: cheap to clone.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

impl ApiState {
    /// `pipeline` gives the rule set in force and the clock.
    pub fn new(
        store: Store,
        pipeline: Arc<Pipeline>,
        metrics: Arc<Metrics>,
        tokens: &[ApiToken],
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            pipeline,
            metrics,
            tokens: Tokens::new(tokens),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.0.pipeline
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    pub(crate) fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.0.pipeline.now()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "inmail",
        description = "Bounce processing as a service: the send-time check, deliveries, synchronous failures, retries, the qualification queue, health and metrics."
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "health", description = "Liveness, readiness, metrics, this document"),
        (name = "addresses", description = "What inmail knows about an address"),
        (name = "sending", description = "The send path: check, deliveries, failures, retries"),
        (name = "qualification", description = "The to-qualify queue and the report"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The routes with their OpenAPI description, before the layers.
fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::livez))
        .routes(routes!(routes::readyz))
        .routes(routes!(routes::metrics))
        .routes(routes!(routes::openapi))
        .routes(routes!(routes::get_address))
        .routes(routes!(routes::put_status))
        .routes(routes!(routes::check_addresses))
        .routes(routes!(routes::post_deliveries))
        .routes(routes!(routes::post_failures))
        .routes(routes!(routes::get_retries))
        .routes(routes!(routes::list_qualifications))
        .routes(routes!(routes::qualify))
        .routes(routes!(routes::report))
}

/// The OpenAPI document of every route [`router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The whole API, with its layers.
pub fn router(state: ApiState, settings: &HttpSettings) -> Router {
    let (routes, doc) = api_routes().split_for_parts();
    let metrics = Arc::clone(state.metrics());
    let app = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(Arc::new(doc)))
        .with_state(state);
    with_layers(app, metrics, settings)
}

/// The layers every route runs under, outermost first: the request log and
/// metrics, panics turned into 500, the timeout (503), the concurrency
/// limit, the body limit (413).
pub fn with_layers(router: Router, metrics: Arc<Metrics>, settings: &HttpSettings) -> Router {
    router
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(move |req, next| {
                    log_request(Arc::clone(&metrics), req, next)
                }))
                .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::unavailable("the request took too long; try again")
                }))
                .timeout(Duration::from_secs(settings.request_timeout_secs.max(1)))
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    settings.max_concurrent_requests.max(1),
                )),
        )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

fn panicked(p: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let text = p
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    tracing::error!(target: "inmail::http", panic = %text, "a request handler panicked");
    ApiError::internal().into_response()
}

/// One log line and the metrics per request.
async fn log_request(metrics: Arc<Metrics>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let actor = ActorSlot::default();
    req.extensions_mut().insert(actor.clone());
    let response = next.run(req).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics
        .http_requests
        .get_or_create(&RouteStatusLabels {
            route: route.clone(),
            status,
        })
        .inc();
    metrics
        .http_request_duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "inmail::http",
        method = %method,
        route = %route,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        token = actor.0.get().map(String::as_str),
        "request"
    );
    response
}

/// Serves `router` on `listener` until `shutdown` fires, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(target: "inmail::http", listen = %addr, "HTTP API listening");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
