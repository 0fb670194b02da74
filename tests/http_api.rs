//! The HTTP API through a real client against a real server and PostgreSQL:
//! every route, every error code, token scopes, the panic guard, the
//! OpenAPI document against the router.

mod http_common;

use chrono::Utc;
use http_common::*;
use inmail::store::AddressStatus;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

async fn quarantine(s: &TestServer, address: &str, status: AddressStatus) {
    s.store
        .quarantine_add(address, status, Utc::now())
        .await
        .expect("status set");
}

#[sqlx::test(migrations = "./migrations")]
async fn livez_readyz_and_metrics_answer_without_a_token(pool: PgPool) {
    let s = start(pool).await;
    let a = s.get("/livez", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, json!({"status": "ok"}));
    let a = s.get("/readyz", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["status"], "ready");
    for check in ["database", "schema", "rules"] {
        assert_eq!(a.body["checks"][check]["ok"], true, "{}", a.text);
    }
    let a = s.get("/metrics", None).await;
    assert_eq!(a.status, StatusCode::OK);
    for (name, kind) in [
        ("inmail_messages_processed", "counter"),
        ("inmail_recipient_results", "counter"),
        ("inmail_address_transitions", "counter"),
        ("inmail_intake_backlog", "gauge"),
        ("inmail_qualification_queue", "gauge"),
        ("inmail_source_up", "gauge"),
        ("inmail_http_requests", "counter"),
        ("inmail_http_request_duration_seconds", "histogram"),
        ("inmail_build_info", "gauge"),
    ] {
        let line = format!("# TYPE {name} {kind}");
        assert!(a.text.contains(&line), "{line} missing from\n{}", a.text);
    }
    assert!(a.text.contains("inmail_intake_backlog 0"), "{}", a.text);
    assert!(a.text.contains(&format!(
        "inmail_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // the requests above are counted by route template and status
    assert!(
        a.text
            .contains("inmail_http_requests_total{route=\"/livez\",status=\"200\"} 1"),
        "{}",
        a.text
    );
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_missing_or_unknown_token_is_401_and_a_read_token_on_a_write_route_is_403(pool: PgPool) {
    let s = start(pool).await;
    for token in [None, Some("not-a-known-token-at-all")] {
        let a = s.get("/v1/addresses/a@example.com", token).await;
        assert_error(&a, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(
            a.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
    }
    // a token of another scheme is not a bearer token
    let a = s
        .client
        .get(format!("{}/v1/report", s.base))
        .basic_auth("reader", Some(READ))
        .send()
        .await
        .expect("answer");
    assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
    // read token: read routes yes, write routes no
    assert_eq!(s.get("/v1/report", Some(READ)).await.status, StatusCode::OK);
    let a = s
        .post(
            "/v1/qualifications/1",
            Some(READ),
            &json!({"action": "ignore"}),
        )
        .await;
    assert_error(&a, StatusCode::FORBIDDEN, "forbidden");
    // the write token includes read
    assert_eq!(
        s.get("/v1/report", Some(WRITE)).await.status,
        StatusCode::OK
    );
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn an_address_is_shown_as_the_cli_shows_it_and_an_unknown_one_is_404(pool: PgPool) {
    let s = start(pool).await;
    let a = s.get("/v1/addresses/nobody@example.com", Some(READ)).await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found");
    let a = s.get("/v1/addresses/not%20an%20address", Some(READ)).await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    quarantine(&s, "Bob@Example.com", AddressStatus::Quarantined).await;
    quarantine(&s, "bob@example.com", AddressStatus::Denylisted).await;
    let a = s.get("/v1/addresses/BOB@example.com", Some(READ)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let cli = inmail::ops::addresses::lookup(&s.store, "bob@example.com", 20)
        .await
        .expect("lookup")
        .expect("known");
    assert_eq!(a.body, serde_json::to_value(&cli).expect("json"));
    // the one-round-trip read says what the two-query one says
    let reference = s
        .store
        .address_info("bob@example.com", 20)
        .await
        .expect("address_info")
        .expect("known");
    assert_eq!(a.body, serde_json::to_value(&reference).expect("json"));
    assert_eq!(a.body["status"], "denylisted");
    let events = a.body["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["status_after"], "denylisted", "newest first");

    let a = s
        .get("/v1/addresses/bob@example.com?events=1", Some(READ))
        .await;
    assert_eq!(a.body["events"].as_array().map(Vec::len), Some(1));
    let a = s
        .get("/v1/addresses/bob@example.com?events=x", Some(READ))
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "bad_request");
    let a = s
        .get("/v1/addresses/bob@example.com?color=red", Some(READ))
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "bad_request");
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_check_lists_only_addresses_not_to_mail_in_input_order_and_the_invalid_ones(
    pool: PgPool,
) {
    let s = start(pool).await;
    quarantine(&s, "q@example.com", AddressStatus::Quarantined).await;
    quarantine(&s, "d@example.com", AddressStatus::Denylisted).await;
    quarantine(&s, "a@example.com", AddressStatus::Allowlisted).await;
    // erroneous: a counted soft error that did not quarantine
    sqlx::query(
        "INSERT INTO addresses (address, domain, status, error_count, updated_at)
         VALUES ('e@example.com', 'example.com', 'erroneous', 1, now())",
    )
    .execute(s.store.pool())
    .await
    .expect("erroneous row");
    let body = json!({"addresses": [
        "D@example.com", "fresh@example.com", "not an address", "a@example.com",
        "e@example.com", "q@example.com", "", "d@example.com"
    ]});
    let a = s.post("/v1/addresses/check", Some(READ), &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["checked"], 6);
    let excluded: Vec<(&str, &str)> = a.body["excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap_or_default(),
                e["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        excluded,
        [
            ("D@example.com", "denylisted"),
            ("q@example.com", "quarantined"),
            ("d@example.com", "denylisted")
        ]
    );
    assert!(a.body["excluded"][1]["since"].is_string());
    let invalid: Vec<u64> = a.body["invalid"]
        .as_array()
        .expect("invalid")
        .iter()
        .filter_map(|i| i["index"].as_u64())
        .collect();
    assert_eq!(invalid, [2, 6]);

    let a = s
        .post("/v1/addresses/check", Some(READ), &json!({"addresses": []}))
        .await;
    assert_eq!(a.body, json!({"checked": 0, "excluded": [], "invalid": []}));
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn bad_bodies_get_400_413_415_and_422_with_a_clear_message(pool: PgPool) {
    let s = start_with(pool, |s| s.http.max_body_bytes = 400_000).await;
    let raw = |body: &'static str, ctype: &'static str| {
        s.client
            .post(format!("{}/v1/addresses/check", s.base))
            .bearer_auth(READ)
            .header("content-type", ctype)
            .body(body)
    };
    let r = raw("{\"addresses\": [", "application/json")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"], "malformed_json");

    let a = s
        .post(
            "/v1/addresses/check",
            Some(READ),
            &json!({"addresses": [], "extra": 1}),
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "unknown_field");
    assert_eq!(a.body["field"], "extra");

    let a = s
        .post("/v1/addresses/check", Some(READ), &json!({"addresses": 7}))
        .await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    let r = raw("{\"addresses\": []}", "text/plain")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let many: Vec<String> = (0..10_001).map(|i| format!("u{i}@x.example")).collect();
    let a = s
        .post(
            "/v1/addresses/check",
            Some(READ),
            &json!({ "addresses": many }),
        )
        .await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(a.body["field"], "addresses");

    let huge: Vec<String> = (0..40_000).map(|i| format!("user{i}@x.example")).collect();
    let a = s
        .post(
            "/v1/addresses/check",
            Some(READ),
            &json!({ "addresses": huge }),
        )
        .await;
    assert_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn unknown_routes_are_404_and_wrong_methods_405_in_json(pool: PgPool) {
    let s = start(pool).await;
    let a = s.get("/v2/nothing", Some(READ)).await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found");
    let a = s.call(Method::DELETE, "/v1/report", Some(READ), None).await;
    assert_error(&a, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let a = s.call(Method::POST, "/livez", None, None).await;
    assert_error(&a, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_qualification_queue_is_listed_kept_and_ignored_as_the_cli_does(pool: PgPool) {
    let s = start(pool).await;
    for (i, (text, count)) in [("mailbox unavailable <ID> quota", 3), ("odd refusal", 1)]
        .iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO message_qualifications (text_hash, normalised, first_text, first_seen_at, last_seen_at, count)
             VALUES ($1, $2, $2, now(), now(), $3)",
        )
        .bind(vec![i as u8; 32])
        .bind(text)
        .bind(*count as i64)
        .execute(s.store.pool())
        .await
        .expect("queue row");
    }
    let a = s.get("/v1/qualifications", Some(READ)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let rows = a.body.as_array().expect("rows").clone();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["count"], 3, "most frequent first");
    let first = rows[0]["id"].as_i64().expect("id");
    let second = rows[1]["id"].as_i64().expect("id");
    let a = s.get("/v1/qualifications?limit=1", Some(READ)).await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(1));
    let a = s.get("/v1/qualifications?status=bogus", Some(READ)).await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    let a = s
        .post(
            &format!("/v1/qualifications/{first}"),
            Some(WRITE),
            &json!({"action": "keep", "type": "soft", "reason": "mailbox_full"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["rule_id"], format!("q{first}"));
    let a = s
        .post(
            &format!("/v1/qualifications/{first}"),
            Some(WRITE),
            &json!({"action": "keep", "type": "soft", "reason": "mailbox_full"}),
        )
        .await;
    assert_error(&a, StatusCode::CONFLICT, "conflict");
    let a = s
        .post(
            &format!("/v1/qualifications/{second}"),
            Some(WRITE),
            &json!({"action": "keep", "type": "soft", "reason": "no_such_reason"}),
        )
        .await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let a = s
        .post(
            &format!("/v1/qualifications/{second}"),
            Some(WRITE),
            &json!({"action": "ignore"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = s.get("/v1/qualifications", Some(READ)).await;
    assert_eq!(a.body, json!([]), "nothing left to qualify");
    let a = s.get("/v1/qualifications?status=all", Some(READ)).await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(2));
    let a = s
        .post(
            "/v1/qualifications/999999",
            Some(WRITE),
            &json!({"action": "ignore"}),
        )
        .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found");
    let a = s
        .post(
            "/v1/qualifications/abc",
            Some(WRITE),
            &json!({"action": "ignore"}),
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "bad_request");
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_report_is_what_the_cli_prints_and_a_bad_period_is_422(pool: PgPool) {
    let s = start(pool).await;
    quarantine(&s, "q@example.com", AddressStatus::Quarantined).await;
    let a = s.get("/v1/report?since=1d", Some(READ)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["quarantined"], 1);
    for key in ["since", "until", "by_reason", "by_domain", "denylisted"] {
        assert!(a.body.get(key).is_some(), "{key} in {}", a.text);
    }
    let a = s.get("/v1/report?since=soon", Some(READ)).await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(a.body["field"], "since");
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_panicking_handler_answers_500_in_json_and_the_server_keeps_serving(pool: PgPool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings_with_tokens(dir.path());
    let store = inmail::store::Store::from_pool(pool, Default::default());
    let metrics = std::sync::Arc::new(inmail::metrics::Metrics::new());
    let router = axum::Router::new()
        .route(
            "/boom",
            axum::routing::get(|| async {
                if std::hint::black_box(true) {
                    panic!("handler bug");
                }
                "never"
            }),
        )
        .route("/fine", axum::routing::get(|| async { "fine" }));
    let router = inmail::http::with_layers(router, std::sync::Arc::clone(&metrics), &settings.http);
    let s = serve(router, store, metrics, dir).await;
    let a = s.get("/boom", None).await;
    assert_error(&a, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    assert!(
        !a.text.contains("handler bug"),
        "no internals leak: {}",
        a.text
    );
    let a = s.get("/fine", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text, "fine");
    s.stop().await;
}

/// Placeholder values for the path parameters of a templated route.
fn concrete(path: &str) -> String {
    path.replace("{address}", "someone@example.com")
        .replace("{id}", "1")
}

#[sqlx::test(migrations = "./migrations")]
async fn openapi_json_lists_every_route_the_router_serves(pool: PgPool) {
    let s = start(pool).await;
    let a = s.get("/openapi.json", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1")));
    let paths = a.body["paths"].as_object().expect("paths").clone();
    // every documented operation is served: the router answers neither
    // "no such route" nor "method not allowed"
    let mut documented = Vec::new();
    for (path, item) in &paths {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_none() {
                continue;
            }
            documented.push(format!("{} {path}", method.to_uppercase()));
            let m: Method = method.to_uppercase().parse().expect("method");
            let body = json!({});
            let a = s
                .call(
                    m,
                    &concrete(path),
                    Some(WRITE),
                    (method != "get").then_some(&body),
                )
                .await;
            assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(a.body["message"], "no such route", "{method} {path}");
        }
    }
    documented.sort();
    // every route of the API is documented
    let mut served: Vec<String> = [
        "GET /livez",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /v1/addresses/{address}",
        "POST /v1/addresses/check",
        "PUT /v1/addresses/{address}/status",
        "POST /v1/deliveries",
        "POST /v1/failures",
        "GET /v1/retries",
        "GET /v1/qualifications",
        "POST /v1/qualifications/{id}",
        "GET /v1/report",
    ]
    .iter()
    .map(|r| r.to_string())
    .collect();
    served.sort();
    assert_eq!(documented, served);
    // and the /v1 operations declare the bearer scheme
    for (path, item) in &paths {
        if path.starts_with("/v1") {
            for (_, op) in item.as_object().expect("item") {
                if op.is_object() && op.get("responses").is_some() {
                    assert!(op.get("security").is_some(), "{path} declares its security");
                }
            }
        }
    }
    s.stop().await;
}
