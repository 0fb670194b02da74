//! The send path's write operations against a real PostgreSQL: deliveries
//! registered, synchronous failures applied like bounces, the retry
//! schedule, manual status changes. Each `#[sqlx::test]` gets a fresh
//! database on the server DATABASE_URL names.
//!
//! source scripts/lib/postgres.sh && pg_provision
//! cargo test --test ops_send_path

use chrono::{DateTime, Duration, Utc};
use inmail::analysis::Analyzer;
use inmail::model::{BounceType, Category, Reason};
use inmail::ops::deliveries::{register_deliveries, NewDelivery, RegisterSummary};
use inmail::ops::failures::{record_sync_failures, SyncFailure, SyncFailureResult};
use inmail::ops::retries::due_retries;
use inmail::ops::status::set_status;
use inmail::ops::OpsError;
use inmail::rules::RuleSet;
use inmail::store::{AddressStatus, BounceInput, Store, StoreSettings};
use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

static RULES: LazyLock<RuleSet> = LazyLock::new(RuleSet::default_set);
static SEQ: AtomicU64 = AtomicU64::new(0);

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-01T08:00:00Z")
        .expect("constant time")
        .with_timezone(&Utc)
}

fn hours(h: i64) -> DateTime<Utc> {
    t0() + Duration::hours(h)
}

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, StoreSettings::default())
}

const USER_UNKNOWN: &str = "550 5.1.1 <{addr}>: Recipient address rejected: User unknown";
const MAILBOX_FULL: &str = "452 4.2.2 <{addr}>: Mailbox full";

fn reply(template: &str, addr: &str) -> String {
    template.replace("{addr}", addr)
}

fn delivery(message_id: &str, address: &str, tracking_id: &str) -> NewDelivery {
    NewDelivery {
        message_id: message_id.into(),
        address: address.into(),
        delivery: Some("march".into()),
        profile_id: None,
        tracking_id: Some(tracking_id.into()),
        sent_at: Some(t0()),
    }
}

fn failure(address: &str, tracking_id: &str, reply: String) -> SyncFailure {
    SyncFailure {
        id: None,
        address: address.into(),
        message_id: None,
        tracking_id: Some(tracking_id.into()),
        delivery: None,
        profile_id: None,
        reply,
        remote_mta: Some("mx.example.org".into()),
        at: None,
    }
}

/// A DSN for `addr` quoting `diagnostic`, tied to the sent message by its
/// tracking header; every call is a distinct message.
fn dsn(addr: &str, tracking_id: &str, status: &str, diagnostic: &str) -> Vec<u8> {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "Return-Path: <>\r\n\
         From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n\
         To: <bounces@sender.example>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <dsn-{n}@mx.example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\
         \r\n\
         --b\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         Your message could not be delivered.\r\n\
         \r\n\
         --b\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.example.org\r\n\
         \r\n\
         Final-Recipient: rfc822; {addr}\r\n\
         Action: failed\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\
         \r\n\
         --b\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         From: News <news@sender.example>\r\n\
         To: {addr}\r\n\
         Subject: Our March newsletter\r\n\
         X-Inmail-Id: {tracking_id}\r\n\
         \r\n\
         --b--\r\n"
    )
    .into_bytes()
}

/// What a failure did to its address: counted, status after, count after.
type Effect = (bool, AddressStatus, i32);

async fn bounce(
    s: &Store,
    addr: &str,
    tracking_id: &str,
    template: &str,
    now: DateTime<Utc>,
) -> Effect {
    let diagnostic = reply(template, addr);
    let status = &diagnostic[4..9];
    let raw = dsn(addr, tracking_id, status, &diagnostic);
    let analysis = Analyzer::default().analyse(&raw);
    assert_eq!(analysis.recipients.len(), 1, "{analysis:?}");
    let verdicts = analysis
        .recipients
        .iter()
        .map(|r| RULES.qualify(r))
        .collect();
    let out = s
        .apply_batch(&[BounceInput::new(&raw, "test", analysis, verdicts)], now)
        .await
        .expect("bounce applied");
    assert!(out[0].correlated, "{:?}", out[0]);
    (
        out[0].counted,
        out[0].status_after,
        out[0].error_count_after,
    )
}

async fn sync(
    s: &Store,
    addr: &str,
    tracking_id: &str,
    template: &str,
    now: DateTime<Utc>,
) -> Effect {
    let r = record_sync_failures(
        s,
        &RULES,
        vec![failure(addr, tracking_id, reply(template, addr))],
        now,
    )
    .await
    .expect("failure recorded");
    (r[0].counted, r[0].status_after, r[0].error_count)
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("count")
}

#[sqlx::test(migrations = "./migrations")]
async fn registering_the_same_deliveries_twice_counts_them_as_duplicates(pool: PgPool) {
    let s = store(pool.clone());
    let batch = vec![
        delivery("<m1@sender.example>", "Ann@Example.org", "t1"),
        delivery("m2@sender.example", "bob@example.org", "t2"),
        // the same log as the first: brackets and case do not matter
        delivery("m1@sender.example", "ann@example.org", "t1"),
    ];
    let first = register_deliveries(&s, batch.clone(), t0()).await.unwrap();
    assert_eq!(
        first,
        RegisterSummary {
            accepted: 2,
            duplicates: 1
        }
    );
    let again = register_deliveries(&s, batch, hours(1)).await.unwrap();
    assert_eq!(
        again,
        RegisterSummary {
            accepted: 0,
            duplicates: 3
        }
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM delivery_logs").await, 2);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_bad_address_rejects_the_whole_batch_and_names_its_index(pool: PgPool) {
    let s = store(pool.clone());
    let batch = vec![
        delivery("m1", "ann@example.org", "t1"),
        delivery("m2", "not an address", "t2"),
    ];
    match register_deliveries(&s, batch, t0()).await {
        Err(OpsError::Invalid {
            index: Some(1),
            field: Some("address"),
            ..
        }) => {}
        other => panic!("expected the second item's address refused, got {other:?}"),
    }
    let too_many = vec![delivery("m", "ann@example.org", "t"); 10_001];
    assert!(matches!(
        register_deliveries(&s, too_many, t0()).await,
        Err(OpsError::Invalid { index: None, .. })
    ));
    assert_eq!(count(&pool, "SELECT count(*) FROM delivery_logs").await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn soft_sync_failures_and_bounces_count_alike_once_a_day(pool: PgPool) {
    let s = store(pool.clone());
    register_deliveries(
        &s,
        vec![
            delivery("m-a", "ann@example.org", "ta"),
            delivery("m-b", "bob@example.org", "tb"),
        ],
        t0(),
    )
    .await
    .unwrap();
    // ann: bounce, then sync failures; bob: the same, all bounces.
    let ann = vec![
        bounce(&s, "ann@example.org", "ta", MAILBOX_FULL, hours(1)).await,
        sync(&s, "ann@example.org", "ta", MAILBOX_FULL, hours(3)).await,
        sync(&s, "ann@example.org", "ta", MAILBOX_FULL, hours(26)).await,
    ];
    let bob = vec![
        bounce(&s, "bob@example.org", "tb", MAILBOX_FULL, hours(1)).await,
        bounce(&s, "bob@example.org", "tb", MAILBOX_FULL, hours(3)).await,
        bounce(&s, "bob@example.org", "tb", MAILBOX_FULL, hours(26)).await,
    ];
    assert_eq!(ann, bob);
    assert_eq!(
        ann,
        vec![
            (true, AddressStatus::Erroneous, 1),
            (false, AddressStatus::Erroneous, 1),
            (true, AddressStatus::Erroneous, 2),
        ]
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM delivery_logs WHERE failure_mode = 'sync'"
        )
        .await,
        1
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_hard_sync_failure_quarantines_like_a_hard_bounce(pool: PgPool) {
    let s = store(pool);
    register_deliveries(
        &s,
        vec![
            delivery("m-c", "cat@example.org", "tc"),
            delivery("m-d", "dan@example.org", "td"),
        ],
        t0(),
    )
    .await
    .unwrap();
    let cat = vec![
        bounce(&s, "cat@example.org", "tc", MAILBOX_FULL, hours(1)).await,
        sync(&s, "cat@example.org", "tc", USER_UNKNOWN, hours(2)).await,
    ];
    let dan = vec![
        bounce(&s, "dan@example.org", "td", MAILBOX_FULL, hours(1)).await,
        bounce(&s, "dan@example.org", "td", USER_UNKNOWN, hours(2)).await,
    ];
    assert_eq!(cat, dan);
    assert_eq!(cat[1], (true, AddressStatus::Quarantined, 2));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_sync_failure_for_a_delivery_never_registered_creates_its_log(pool: PgPool) {
    let s = store(pool.clone());
    let mut f = failure(
        "eve@example.org",
        "te",
        reply(USER_UNKNOWN, "eve@example.org"),
    );
    f.message_id = Some("<m-e@sender.example>".into());
    f.delivery = Some("march".into());
    f.at = Some(hours(1));
    let multi = failure(
        "fay@example.org",
        "tf",
        "550-5.1.1 The email account that you tried to reach does not exist.\r\n\
         550 5.1.1 Please try double-checking the recipient's email address."
            .into(),
    );
    let r = record_sync_failures(&s, &RULES, vec![f, multi], hours(2))
        .await
        .unwrap();
    assert_eq!(r.len(), 2);
    for x in &r {
        assert_eq!(
            (x.bounce_type, x.reason),
            (BounceType::Hard, Reason::UserUnknown),
            "{x:?}"
        );
        assert!(x.counted && x.qualified, "{x:?}");
        assert_eq!(x.status_after, AddressStatus::Quarantined);
    }
    let (mode, sent, mid): (String, DateTime<Utc>, String) = sqlx::query_as(
        "SELECT failure_mode, sent_at, message_id FROM delivery_logs WHERE address = 'eve@example.org'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (mode.as_str(), sent, mid.as_str()),
        ("sync", hours(1), "m-e@sender.example")
    );
    // registering the delivery afterwards finds it known
    let late = register_deliveries(
        &s,
        vec![delivery("m-e@sender.example", "eve@example.org", "te")],
        hours(3),
    )
    .await
    .unwrap();
    assert_eq!(late.duplicates, 1);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_repeated_id_changes_nothing_and_returns_the_first_result(pool: PgPool) {
    let s = store(pool.clone());
    register_deliveries(&s, vec![delivery("m-g", "gus@example.org", "tg")], t0())
        .await
        .unwrap();
    let mut f = failure(
        "gus@example.org",
        "tg",
        reply(MAILBOX_FULL, "gus@example.org"),
    );
    f.id = Some("attempt-1".into());
    let first = record_sync_failures(&s, &RULES, vec![f.clone()], hours(1))
        .await
        .unwrap();
    // the same id, a different reply, a day later, twice in one batch
    let mut again = f.clone();
    again.reply = reply(USER_UNKNOWN, "gus@example.org");
    let mut fresh = f.clone();
    fresh.id = Some("attempt-2".into());
    let second = record_sync_failures(&s, &RULES, vec![again.clone(), fresh, again], hours(30))
        .await
        .unwrap();
    assert_eq!(second[0], first[0]);
    assert_eq!(second[2], first[0]);
    assert_eq!(second[1].error_count, 2, "{:?}", second[1]);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM bounce_events WHERE address = 'gus@example.org'"
        )
        .await,
        2
    );
    // within one batch, the first occurrence decides
    let mut x = failure(
        "gus@example.org",
        "tg",
        reply(USER_UNKNOWN, "gus@example.org"),
    );
    x.id = Some("attempt-3".into());
    let mut y = x.clone();
    y.reply = reply(MAILBOX_FULL, "gus@example.org");
    let r = record_sync_failures(&s, &RULES, vec![x, y], hours(31))
        .await
        .unwrap();
    assert_eq!(r[0], r[1]);
    assert_eq!(r[0].bounce_type, BounceType::Hard);
}

#[sqlx::test(migrations = "./migrations")]
async fn an_unexplained_reply_goes_to_the_qualification_queue(pool: PgPool) {
    let s = store(pool.clone());
    register_deliveries(&s, vec![delivery("m-h", "hal@example.org", "th")], t0())
        .await
        .unwrap();
    let r = record_sync_failures(
        &s,
        &RULES,
        vec![failure(
            "hal@example.org",
            "th",
            "the gnomes frobnicated your envelope".into(),
        )],
        hours(1),
    )
    .await
    .unwrap();
    let expected = SyncFailureResult {
        address: "hal@example.org".into(),
        bounce_type: BounceType::Soft,
        reason: Reason::NotDefined,
        category: Category::Undefined,
        rule: "builtin:undefined".into(),
        qualified: false,
        counted: true,
        status_before: AddressStatus::Valid,
        status_after: AddressStatus::Erroneous,
        error_count: 1,
    };
    assert_eq!(r[0], expected);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM message_qualifications WHERE status = 'to_qualify'"
        )
        .await,
        1
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn invalid_failures_reject_the_whole_batch(pool: PgPool) {
    let s = store(pool.clone());
    let ok = failure(
        "ivy@example.org",
        "ti",
        reply(USER_UNKNOWN, "ivy@example.org"),
    );
    let mut untied = ok.clone();
    untied.tracking_id = None;
    let mut bad = ok.clone();
    bad.address = "ivy at example.org".into();
    for (item, field) in [(untied, "message_id"), (bad, "address")] {
        match record_sync_failures(&s, &RULES, vec![ok.clone(), item], t0()).await {
            Err(OpsError::Invalid {
                index: Some(1),
                field: Some(f),
                ..
            }) => assert_eq!(f, field),
            other => panic!("expected item 1's {field} refused, got {other:?}"),
        }
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM bounce_events").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM delivery_logs").await, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_soft_failure_is_due_for_retry_until_a_later_delivery_ends_it(pool: PgPool) {
    let s = store(pool.clone());
    register_deliveries(&s, vec![delivery("m-j", "joe@example.org", "tj")], t0())
        .await
        .unwrap();
    sync(&s, "joe@example.org", "tj", MAILBOX_FULL, hours(1)).await;
    assert!(due_retries(&s, hours(1), 10).await.unwrap().is_empty());
    let due = due_retries(&s, hours(2), 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    let d = &due[0];
    assert_eq!(
        (
            d.address.as_str(),
            d.message_id.as_deref(),
            d.delivery.as_deref()
        ),
        ("joe@example.org", Some("m-j"), Some("march"))
    );
    assert_eq!((d.retry_count, d.next_retry_at), (1, hours(2)));
    assert_eq!(
        (d.bounce_type, d.reason),
        (BounceType::Soft, Reason::MailboxFull)
    );
    assert!(d
        .diagnostic
        .as_deref()
        .is_some_and(|t| t.contains("Mailbox full")));

    // the retry, registered: the schedule moves to it
    let mut retry = delivery("m-j2", "joe@example.org", "tj2");
    retry.sent_at = Some(hours(2));
    register_deliveries(&s, vec![retry], hours(2))
        .await
        .unwrap();
    assert!(due_retries(&s, hours(100), 10).await.unwrap().is_empty());
    // and its failure carries on from the retries done
    sync(&s, "joe@example.org", "tj2", MAILBOX_FULL, hours(3)).await;
    let due = due_retries(&s, hours(100), 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        (
            due[0].message_id.as_deref(),
            due[0].retry_count,
            due[0].next_retry_at
        ),
        (Some("m-j2"), 2, hours(4))
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn no_retry_is_due_for_a_quarantined_address(pool: PgPool) {
    let s = store(pool.clone());
    register_deliveries(
        &s,
        vec![
            delivery("m-k", "kim@example.org", "tk"),
            delivery("m-l", "lou@example.org", "tl"),
        ],
        t0(),
    )
    .await
    .unwrap();
    sync(&s, "kim@example.org", "tk", MAILBOX_FULL, hours(1)).await;
    sync(&s, "lou@example.org", "tl", MAILBOX_FULL, hours(1)).await;
    assert_eq!(due_retries(&s, hours(5), 10).await.unwrap().len(), 2);
    set_status(
        &s,
        "kim@example.org",
        AddressStatus::Quarantined,
        None,
        None,
        "tester",
        hours(1),
    )
    .await
    .unwrap();
    let due = due_retries(&s, hours(5), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].address, "lou@example.org");
    // a failure of a quarantined address schedules nothing at all
    sync(&s, "kim@example.org", "tk", MAILBOX_FULL, hours(2)).await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM delivery_logs WHERE address = 'kim@example.org' AND next_retry_at IS NOT NULL"
        )
        .await,
        0
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_manual_status_change_is_audited_with_its_actor(pool: PgPool) {
    let s = store(pool);
    let info = set_status(
        &s,
        "Mia@Example.org",
        AddressStatus::Denylisted,
        Some(Reason::Refused),
        Some("asked us by phone".into()),
        "sender",
        t0(),
    )
    .await
    .unwrap();
    assert_eq!(
        (info.address.as_str(), info.status),
        ("mia@example.org", AddressStatus::Denylisted)
    );
    assert_eq!(info.last_reason.as_deref(), Some("refused"));
    let e = &info.events[0];
    assert_eq!(
        (e.kind.as_str(), e.actor.as_deref(), e.note.as_deref()),
        ("manual", Some("sender"), Some("asked us by phone"))
    );
    assert_eq!(
        (e.status_before.as_str(), e.status_after.as_str()),
        ("valid", "denylisted")
    );
    let info = set_status(
        &s,
        "mia@example.org",
        AddressStatus::Valid,
        None,
        None,
        "cli:ops",
        hours(1),
    )
    .await
    .unwrap();
    assert_eq!((info.status, info.events.len()), (AddressStatus::Valid, 2));
    assert_eq!(info.events[0].actor.as_deref(), Some("cli:ops"));
    assert!(matches!(
        set_status(
            &s,
            "mia@example.org",
            AddressStatus::Erroneous,
            None,
            None,
            "x",
            hours(2)
        )
        .await,
        Err(OpsError::Invalid {
            field: Some("status"),
            ..
        })
    ));
}

/// The write operations' throughput, without HTTP: 50,000 deliveries
/// registered in batches of 10,000, then 20,000 synchronous failures of
/// those deliveries (hard, soft, sender-side and unexplained replies) in
/// batches of `INMAIL_BENCH_BATCH` (1,000 by default). Run with
/// `cargo test --release --test ops_send_path -- --ignored bench --nocapture`.
#[sqlx::test(migrations = "./migrations")]
#[ignore]
async fn bench_register_and_sync_failures(pool: PgPool) {
    const DELIVERIES: usize = 50_000;
    const FAILURES: usize = 20_000;
    let batch: usize = std::env::var("INMAIL_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(1000);
    let s = store(pool);
    let address = |i: usize| format!("user{i}@d{}.example", i % 50);
    let items: Vec<NewDelivery> = (0..DELIVERIES)
        .map(|i| delivery(&format!("<m{i}@bench>"), &address(i), &format!("trk-{i}")))
        .collect();
    let start = std::time::Instant::now();
    for chunk in items.chunks(10_000) {
        let r = register_deliveries(&s, chunk.to_vec(), t0()).await.unwrap();
        assert_eq!(r.accepted, chunk.len() as u64);
    }
    let register = start.elapsed();
    let replies = [
        USER_UNKNOWN,
        MAILBOX_FULL,
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        "550 the gnomes refused {addr}",
    ];
    let failures: Vec<SyncFailure> = (0..FAILURES)
        .map(|i| {
            let a = address(i);
            let mut f = failure(
                &a,
                &format!("trk-{i}"),
                reply(replies[i % replies.len()], &a),
            );
            f.id = Some(format!("f{i}"));
            f
        })
        .collect();
    let start = std::time::Instant::now();
    for chunk in failures.chunks(batch) {
        let r = record_sync_failures(&s, &RULES, chunk.to_vec(), hours(1))
            .await
            .unwrap();
        assert_eq!(r.len(), chunk.len());
    }
    let sync = start.elapsed();
    println!(
        "BENCH ops: register {DELIVERIES} deliveries in batches of 10000: {:.2}s = {:.0} rows/s; \
         {FAILURES} sync failures in batches of {batch}: {:.2}s = {:.0} failures/s",
        register.as_secs_f64(),
        DELIVERIES as f64 / register.as_secs_f64(),
        sync.as_secs_f64(),
        FAILURES as f64 / sync.as_secs_f64(),
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_sender_side_refusal_is_counted_per_domain_not_against_the_address(pool: PgPool) {
    let s = store(pool.clone());
    register_deliveries(&s, vec![delivery("m-n", "ned@example.org", "tn")], t0())
        .await
        .unwrap();
    let r = record_sync_failures(
        &s,
        &RULES,
        vec![failure(
            "ned@example.org",
            "tn",
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"
                .into(),
        )],
        hours(1),
    )
    .await
    .unwrap();
    assert!(r[0].category.sender_side(), "{:?}", r[0]);
    assert!(!r[0].counted, "{:?}", r[0]);
    assert_eq!(
        (r[0].status_after, r[0].error_count),
        (AddressStatus::Valid, 0)
    );
    assert_eq!(
        count(
            &pool,
            "SELECT sum(count)::int8 FROM domain_sender_failures WHERE domain = 'example.org'"
        )
        .await,
        1
    );
}

/// The migration that makes (message_id, address) unique merges the
/// duplicates an earlier double import left: the most informative row stays
/// and the audit trail points at it.
#[sqlx::test(migrations = false)]
async fn the_unique_index_migration_merges_existing_duplicates(pool: PgPool) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (before, after): (Vec<_>, Vec<_>) = files.into_iter().partition(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n < "20261201000010")
    });
    let run = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    for p in &before {
        sqlx::raw_sql(&run(p)).execute(&pool).await.unwrap();
    }
    sqlx::raw_sql(
        "INSERT INTO delivery_logs (id, address, message_id, sent_at, status) VALUES
           (1, 'a@x.org', 'm1', '2025-01-01', 'sent'),
           (2, 'a@x.org', 'm1', '2025-01-02', 'failed'),
           (3, 'a@x.org', 'm1', '2025-01-03', 'sent'),
           (4, 'b@x.org', 'm1', '2025-01-01', 'sent'),
           (5, 'c@x.org', NULL, '2025-01-01', 'sent'),
           (6, 'c@x.org', NULL, '2025-01-01', 'sent');
         INSERT INTO bounce_events (occurred_at, kind, address, domain, delivery_log_id, correlation,
                                    status_before, status_after, count_before, count_after)
         VALUES (now(), 'bounce', 'a@x.org', 'x.org', 3, 'message_id', 'valid', 'valid', 0, 0);",
    )
    .execute(&pool)
    .await
    .unwrap();
    for p in &after {
        sqlx::raw_sql(&run(p)).execute(&pool).await.unwrap();
    }
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM delivery_logs ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids, vec![2, 4, 5, 6]);
    let linked: i64 = sqlx::query_scalar("SELECT delivery_log_id FROM bounce_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(linked, 2);
}

/// Concurrent requests with the same deliveries and the same failure ids
/// neither deadlock nor apply anything twice.
#[sqlx::test(migrations = "./migrations")]
async fn concurrent_repeats_apply_once(pool: PgPool) {
    const N: usize = 500;
    let s = store(pool.clone());
    let items: Vec<NewDelivery> = (0..N)
        .map(|i| {
            delivery(
                &format!("m{i}"),
                &format!("u{i}@example.org"),
                &format!("t{i}"),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for k in 0..4 {
        let (s, mut batch) = (s.clone(), items.clone());
        if k % 2 == 1 {
            batch.reverse();
        }
        tasks.push(tokio::spawn(async move {
            register_deliveries(&s, batch, t0()).await.unwrap()
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.accepted + r.duplicates, N as u64);
        accepted += r.accepted;
    }
    assert_eq!(accepted, N as u64);

    let failures: Vec<SyncFailure> = (0..N)
        .map(|i| {
            let a = format!("u{i}@example.org");
            let mut f = failure(&a, &format!("t{i}"), reply(MAILBOX_FULL, &a));
            f.id = Some(format!("f{i}"));
            f
        })
        .collect();
    let mut tasks = Vec::new();
    for k in 0..4 {
        let (s, mut batch) = (s.clone(), failures.clone());
        if k % 2 == 1 {
            batch.reverse();
        }
        tasks.push(tokio::spawn(async move {
            let mut r = record_sync_failures(&s, &RULES, batch, hours(1))
                .await
                .unwrap();
            if k % 2 == 1 {
                r.reverse();
            }
            r
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
    assert!(results[0].iter().all(|r| r.counted && r.error_count == 1));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM bounce_events").await,
        N as i64
    );
}
