//! The send path through the API: deliveries, synchronous failures, retries
//! and manual status changes, against a real server and PostgreSQL —
//! idempotence, all-or-nothing batches, a synchronous failure counting
//! exactly like a bounce, and the check agreeing with `inmail address` on
//! randomly built states.

mod common;
mod http_common;

use chrono::Utc;
use http_common::*;
use inmail::analysis::Analyzer;
use inmail::store::BounceInput;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

/// The property names of schema `name` in `/openapi.json`.
async fn schema_keys(s: &TestServer, name: &str) -> Vec<String> {
    let doc = s.get("/openapi.json", None).await.body;
    let mut keys: Vec<String> = doc["components"]["schemas"][name]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {name}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn object_keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

async fn event_count(s: &TestServer, address: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM bounce_events WHERE address = $1")
        .bind(address)
        .fetch_one(s.store.pool())
        .await
        .expect("count")
}

#[sqlx::test(migrations = "./migrations")]
async fn deliveries_are_idempotent_and_a_bad_item_rejects_the_whole_batch(pool: PgPool) {
    let s = start(pool).await;
    let batch = json!([
        {"message_id": "<m1@sender.example>", "address": "a@example.com", "delivery": "spring", "tracking_id": "t1"},
        {"message_id": "m2@sender.example", "address": "B@example.com", "sent_at": "2026-01-01T10:00:00Z"},
        {"message_id": "<m3@sender.example>", "address": "c@example.com", "profile_id": "p3"}
    ]);
    let a = s.post("/v1/deliveries", Some(WRITE), &batch).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body, json!({"accepted": 3, "duplicates": 0}));
    assert_eq!(
        schema_keys(&s, "RegisterSummary").await,
        object_keys(&a.body)
    );
    let mut sent = object_keys(&batch[0]);
    sent.extend(object_keys(&batch[1]));
    sent.extend(object_keys(&batch[2]));
    sent.sort();
    sent.dedup();
    assert_eq!(schema_keys(&s, "NewDelivery").await, sent);
    let a = s.post("/v1/deliveries", Some(WRITE), &batch).await;
    assert_eq!(
        a.body,
        json!({"accepted": 0, "duplicates": 3}),
        "idempotent"
    );

    let bad = json!([
        {"message_id": "<m4@sender.example>", "address": "d@example.com"},
        {"message_id": "<m5@sender.example>", "address": "not an address"}
    ]);
    let a = s.post("/v1/deliveries", Some(WRITE), &bad).await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(a.body["index"], 1);
    assert_eq!(a.body["field"], "address");
    let a = s
        .post(
            "/v1/deliveries",
            Some(WRITE),
            &json!([{"message_id": "<m4@sender.example>", "address": "d@example.com"}]),
        )
        .await;
    assert_eq!(
        a.body,
        json!({"accepted": 1, "duplicates": 0}),
        "nothing of the rejected batch was written"
    );

    let a = s
        .post(
            "/v1/deliveries",
            Some(WRITE),
            &json!([{"message_id": "<m6@x>", "address": "e@example.com"}, {"message_id": "<m7@x>", "address": "f@example.com", "colour": "red"}]),
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "unknown_field");
    assert_eq!(a.body["index"], 1);
    assert_eq!(a.body["field"], "colour");
    let a = s
        .post(
            "/v1/deliveries",
            Some(WRITE),
            &json!([{"address": "e@example.com"}]),
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(a.body["field"], "message_id");
    let a = s
        .post(
            "/v1/deliveries",
            Some(WRITE),
            &json!([{"message_id": "<m8@x>", "address": "e@example.com", "sent_at": "yesterday"}]),
        )
        .await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(a.body["field"], "sent_at");

    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"message_id": format!("<x{i}@x>"), "address": format!("u{i}@x.example")}))
        .collect();
    let a = s
        .post("/v1/deliveries", Some(WRITE), &Value::Array(many))
        .await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let a = s.post("/v1/deliveries", Some(READ), &json!([])).await;
    assert_error(&a, StatusCode::FORBIDDEN, "forbidden");
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_failure_is_qualified_like_a_bounce_and_a_repeated_id_changes_nothing(pool: PgPool) {
    let s = start(pool).await;
    s.post(
        "/v1/deliveries",
        Some(WRITE),
        &json!([{"message_id": "<m1@sender.example>", "address": "gone@example.com", "tracking_id": "t1"}]),
    )
    .await;
    let failure = json!([{
        "id": "f-1",
        "address": "gone@example.com",
        "tracking_id": "t1",
        "reply": "550-5.1.1 <gone@example.com>: Recipient address rejected:\r\n550 5.1.1 User unknown in virtual mailbox table",
        "remote_mta": "mx.example.com"
    }]);
    let a = s.post("/v1/failures", Some(WRITE), &failure).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let r = &a.body["results"][0];
    assert_eq!(r["address"], "gone@example.com");
    assert_eq!(r["type"], "hard", "{}", a.text);
    assert_eq!(r["reason"], "user_unknown");
    assert_eq!(r["counted"], true);
    assert_eq!(r["status_before"], "valid");
    assert_eq!(r["status_after"], "quarantined");
    assert_eq!(r["error_count"], 1);
    let events = event_count(&s, "gone@example.com").await;
    // the OpenAPI document describes what is really returned
    assert_eq!(schema_keys(&s, "SyncFailureResult").await, object_keys(r));

    let again = s.post("/v1/failures", Some(WRITE), &failure).await;
    assert_eq!(again.body, a.body, "the first result, again");
    assert_eq!(
        event_count(&s, "gone@example.com").await,
        events,
        "nothing changed"
    );

    let log: String = sqlx::query_scalar(
        "SELECT failure_mode FROM delivery_logs WHERE address = 'gone@example.com'",
    )
    .fetch_one(s.store.pool())
    .await
    .expect("the delivery log");
    assert_eq!(log, "sync");

    // visible in the metrics and in GET
    let m = s.get("/metrics", None).await;
    assert!(
        m.text
            .contains("inmail_recipient_results_total{type=\"hard\",reason=\"user_unknown\"}"),
        "{}",
        m.text
    );
    assert!(m
        .text
        .contains("inmail_address_transitions_total{to=\"quarantined\"}"));
    let a = s.get("/v1/addresses/gone@example.com", Some(READ)).await;
    assert_eq!(a.body["status"], "quarantined");

    // a bad item fails the batch whole
    let a = s
        .post(
            "/v1/failures",
            Some(WRITE),
            &json!([
                {"address": "x@example.com", "message_id": "<m9@x>", "reply": "550 5.1.1 unknown"},
                {"address": "y@example.com", "reply": "550 5.1.1 unknown"}
            ]),
        )
        .await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(a.body["index"], 1);
    assert_eq!(event_count(&s, "x@example.com").await, 0);
    s.stop().await;
}

/// Applies the DSN `common::dsn_for(i, address)` (a 5.1.1 hard bounce
/// carrying tracking id `trk-{i}`) as the daemon would.
async fn bounce(s: &TestServer, i: usize, address: &str) {
    let raw = common::dsn_for(i, address);
    let analysis = Analyzer::default().analyse(raw.as_bytes());
    let verdicts = common::verdicts(&analysis);
    s.store
        .apply_batch(
            &[BounceInput::new(
                raw.as_bytes(),
                format!("test/{i}"),
                analysis,
                verdicts,
            )],
            Utc::now(),
        )
        .await
        .expect("bounce applied");
}

async fn state(s: &TestServer, address: &str) -> (Value, Value, Vec<(Value, Value)>) {
    let a = s.get(&format!("/v1/addresses/{address}"), Some(READ)).await;
    let events = a.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["counted"].clone(), e["status_after"].clone()))
        .collect();
    (
        a.body["status"].clone(),
        a.body["error_count"].clone(),
        events,
    )
}

#[sqlx::test(migrations = "./migrations")]
async fn a_sync_failure_and_a_bounce_for_one_address_count_like_two_bounces(pool: PgPool) {
    let s = start(pool).await;
    let deliveries: Vec<Value> = (1..=4)
        .map(|i| {
            let to = if i <= 2 { "both@d1.example" } else { "bounces@d3.example" };
            json!({"message_id": format!("<m{i}@sender.example>"), "address": to, "tracking_id": format!("trk-{i}")})
        })
        .collect();
    let a = s
        .post("/v1/deliveries", Some(WRITE), &Value::Array(deliveries))
        .await;
    assert_eq!(a.body["accepted"], 4, "{}", a.text);
    // one address: a synchronous failure, then a bounce
    let reply = "550 5.1.1 <both@d1.example>: Recipient address rejected: User unknown";
    let a = s
        .post(
            "/v1/failures",
            Some(WRITE),
            &json!([{"address": "both@d1.example", "tracking_id": "trk-1", "reply": reply}]),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    bounce(&s, 2, "both@d1.example").await;
    // the other: two bounces
    bounce(&s, 3, "bounces@d3.example").await;
    bounce(&s, 4, "bounces@d3.example").await;
    let (mixed, twice) = (
        state(&s, "both@d1.example").await,
        state(&s, "bounces@d3.example").await,
    );
    assert_eq!(mixed, twice);
    assert_eq!(mixed.0, "quarantined");
    // GET's one-query read agrees with the store's two-query one on bounce events too
    let get = s.get("/v1/addresses/both@d1.example", Some(READ)).await;
    let reference = s
        .store
        .address_info("both@d1.example", 20)
        .await
        .expect("address_info")
        .expect("known");
    assert_eq!(get.body, serde_json::to_value(&reference).expect("json"));
    assert_eq!(mixed.2.len(), 2);
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_soft_failure_is_due_for_retry_until_a_later_delivery_ends_it(pool: PgPool) {
    let s = start(pool).await;
    s.post(
        "/v1/deliveries",
        Some(WRITE),
        &json!([{"message_id": "<m1@sender.example>", "address": "full@example.com", "delivery": "news", "tracking_id": "t1"}]),
    )
    .await;
    let a = s
        .post(
            "/v1/failures",
            Some(WRITE),
            &json!([{"address": "full@example.com", "tracking_id": "t1", "delivery": "news",
                     "reply": "452 4.2.2 <full@example.com>: Mailbox full"}]),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["results"][0]["type"], "soft", "{}", a.text);
    let later = (Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let path = format!(
        "/v1/retries?due_before={}&limit=10",
        later.replace('+', "%2B")
    );
    let a = s.get(&path, Some(READ)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let rows = a.body.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{}", a.text);
    assert_eq!(rows[0]["address"], "full@example.com");
    assert_eq!(rows[0]["message_id"], "m1@sender.example");
    assert_eq!(rows[0]["type"], "soft");
    assert_eq!(schema_keys(&s, "DueRetry").await, object_keys(&rows[0]));
    // nothing is due yet right now
    let a = s.get("/v1/retries", Some(READ)).await;
    assert_eq!(a.body, json!([]), "{}", a.text);
    // the retry itself ends the schedule
    s.post(
        "/v1/deliveries",
        Some(WRITE),
        &json!([{"message_id": "<m2@sender.example>", "address": "full@example.com", "delivery": "news"}]),
    )
    .await;
    let a = s.get(&path, Some(READ)).await;
    assert!(
        a.body
            .as_array()
            .expect("rows")
            .iter()
            .all(|r| r["message_id"] != "m1@sender.example"),
        "{}",
        a.text
    );

    let a = s.get("/v1/retries?due_before=tomorrow", Some(READ)).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "bad_request");
    let a = s.get("/v1/retries?limit=0", Some(READ)).await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    s.stop().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_status_set_by_hand_is_audited_with_the_token_name(pool: PgPool) {
    let s = start(pool).await;
    let a = s
        .put(
            "/v1/addresses/Someone@Example.com/status",
            Some(WRITE),
            &json!({"status": "denylisted", "reason": "user_unknown", "note": "asked to be removed"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["address"], "someone@example.com");
    assert_eq!(a.body["status"], "denylisted");
    let e = &a.body["events"][0];
    assert_eq!(e["kind"], "manual");
    assert_eq!(e["actor"], "writer");
    assert_eq!(e["note"], "asked to be removed");
    let get = s.get("/v1/addresses/someone@example.com", Some(READ)).await;
    assert_eq!(get.body, a.body, "the address as in GET");
    let check = s
        .post(
            "/v1/addresses/check",
            Some(READ),
            &json!({"addresses": ["someone@example.com"]}),
        )
        .await;
    assert_eq!(check.body["excluded"][0]["status"], "denylisted");

    let a = s
        .put(
            "/v1/addresses/someone@example.com/status",
            Some(WRITE),
            &json!({"status": "valid"}),
        )
        .await;
    assert_eq!(a.body["status"], "valid");
    for bad in [json!({"status": "bogus"}), json!({"status": "erroneous"})] {
        let a = s
            .put(
                "/v1/addresses/someone@example.com/status",
                Some(WRITE),
                &bad,
            )
            .await;
        assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_eq!(a.body["field"], "status", "{}", a.text);
    }
    let a = s
        .put(
            "/v1/addresses/someone@example.com/status",
            Some(READ),
            &json!({"status": "valid"}),
        )
        .await;
    assert_error(&a, StatusCode::FORBIDDEN, "forbidden");
    s.stop().await;
}

mod agreement {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    const STATUSES: [&str; 4] = ["valid", "quarantined", "denylisted", "allowlisted"];

    /// Per address: the statuses set by hand, in order (none: never seen),
    /// and the case its address is written in when checked.
    fn states() -> impl Strategy<Value = Vec<(Vec<usize>, bool)>> {
        prop::collection::vec(
            (
                prop::collection::vec(0..STATUSES.len(), 0..4),
                any::<bool>(),
            ),
            1..40,
        )
    }

    #[test]
    fn the_check_agrees_with_inmail_address_on_random_states() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (s, url) = rt.block_on(async {
            let url = common::fresh_database("http_check").await;
            let pool = PgPool::connect(&url).await.expect("connect");
            (start(pool).await, url)
        });
        let mut runner = TestRunner::new(Config::with_cases(12));
        let cases = std::sync::atomic::AtomicUsize::new(0);
        runner
            .run(&states(), |states| {
                let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (excluded, expected) = rt.block_on(async {
                    let mut names = Vec::new();
                    for (i, (changes, upper)) in states.iter().enumerate() {
                        let name = format!("c{case}u{i}@d{}.example", i % 3);
                        for &c in changes {
                            let a = s
                                .put(
                                    &format!("/v1/addresses/{name}/status"),
                                    Some(WRITE),
                                    &json!({"status": STATUSES[c]}),
                                )
                                .await;
                            assert_eq!(a.status, StatusCode::OK, "{}", a.text);
                        }
                        names.push(if *upper { name.to_uppercase() } else { name });
                    }
                    let a = s
                        .post(
                            "/v1/addresses/check",
                            Some(READ),
                            &json!({"addresses": names}),
                        )
                        .await;
                    let excluded: Vec<String> = a.body["excluded"]
                        .as_array()
                        .expect("excluded")
                        .iter()
                        .map(|e| e["address"].as_str().unwrap_or_default().to_owned())
                        .collect();
                    // what `inmail address` says of each
                    let mut expected = Vec::new();
                    for n in &names {
                        let info = inmail::ops::addresses::lookup(&s.store, n, 1)
                            .await
                            .expect("lookup");
                        if info.is_some_and(|i| {
                            matches!(
                                i.status,
                                inmail::store::AddressStatus::Quarantined
                                    | inmail::store::AddressStatus::Denylisted
                            ) && i.release_at.is_none_or(|r| r > Utc::now())
                        }) {
                            expected.push(n.clone());
                        }
                    }
                    (excluded, expected)
                });
                prop_assert_eq!(excluded, expected);
                Ok(())
            })
            .expect("the check agrees with inmail address");
        rt.block_on(async {
            s.stop().await;
            common::drop_database(&url).await;
        });
    }
}
