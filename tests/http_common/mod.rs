//! A real inmail HTTP server on a loopback port over a real database, and a
//! real HTTP client (reqwest) to talk to it.

#![allow(dead_code)] // each test crate uses a different subset

use inmail::app::App;
use inmail::config::{Settings, TokenScope, TokenSettings};
use inmail::metrics::Metrics;
use inmail::store::{Store, StoreSettings};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const READ: &str = "read-token-0123456789abcdef";
pub const WRITE: &str = "write-token-0123456789abcdef";

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

/// Settings with a `reader` (read) and a `writer` (write) token in files.
pub fn settings_with_tokens(dir: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    for (name, scope, secret) in [
        ("reader", TokenScope::Read, READ),
        ("writer", TokenScope::Write, WRITE),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, format!("{secret}\n")).expect("token file");
        s.http.tokens.push(TokenSettings {
            name: name.into(),
            scope,
            token_env: None,
            token_file: Some(file),
        });
    }
    s
}

pub async fn start(pool: PgPool) -> TestServer {
    start_with(pool, |_| {}).await
}

pub async fn start_with(pool: PgPool, tweak: impl FnOnce(&mut Settings)) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_with_tokens(dir.path());
    tweak(&mut settings);
    settings.validate().expect("valid settings");
    let store = Store::from_pool(pool, StoreSettings::from(&settings));
    let app = App::build_with_store(settings, store.clone(), inmail::pipeline::system_clock())
        .await
        .expect("build");
    let router = app.api_router().expect("router");
    let metrics = Arc::clone(app.metrics());
    serve(router, store, metrics, dir).await
}

pub async fn serve(
    router: axum::Router,
    store: Store,
    metrics: Arc<Metrics>,
    dir: tempfile::TempDir,
) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let task = tokio::spawn(inmail::http::serve(listener, router, stop.clone()));
    TestServer {
        base,
        client: reqwest::Client::new(),
        store,
        metrics,
        stop,
        task,
        _dir: dir,
    }
}

impl TestServer {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("the server answers");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    /// Stops the server (requests in flight finish).
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("join").expect("served");
    }
}

/// An error body as the API promises it.
pub fn assert_error(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(a.body["error"], code, "{}", a.text);
    assert!(
        a.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message: {}",
        a.text
    );
}
