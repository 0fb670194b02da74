//! The store against a real PostgreSQL: each `#[sqlx::test]` gets a fresh
//! database (DATABASE_URL names the server). Time is always passed in, so
//! every rule about days and hours is tested by moving `now`.
//!
//! export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
//! cargo test --test store

use chrono::{DateTime, Duration, Utc};
use inmail::analysis::{Analysis, RecipientReport};
use inmail::config::QuarantineSettings;
use inmail::domain::{normalise_diagnostic, pattern_from_normalised, verp_token};
use inmail::model::{BounceType, Category, EmailAddress, MessageKind, Reason};
use inmail::ops::deliveries::{import_csv, CsvError};
use inmail::ops::OpsError;
use inmail::rules::{Explanation, Rule, Verdict};
use inmail::store::{
    AddressStatus, BounceInput, CorrelatedBy, NotCounted, QualificationStatus, RecipientOutcome,
    Store, StoreError, StoreSettings,
};
use secrecy::SecretString;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-01T08:00:00Z")
        .expect("constant time")
        .with_timezone(&Utc)
}

fn hours(h: i64) -> DateTime<Utc> {
    t0() + Duration::hours(h)
}

fn days(d: i64) -> DateTime<Utc> {
    t0() + Duration::days(d)
}

fn addr(a: &str) -> EmailAddress {
    a.parse().expect("test address")
}

fn verdict(t: BounceType, reason: Reason, category: Category) -> Verdict {
    Verdict {
        bounce_type: t,
        reason,
        category,
        rule: format!("test-{}", category.as_str()),
        qualified: true,
        why: Explanation::Text(String::new()),
    }
}

fn soft() -> Verdict {
    verdict(BounceType::Soft, Reason::Unreachable, Category::SystemError)
}
fn hard() -> Verdict {
    verdict(BounceType::Hard, Reason::UserUnknown, Category::UserUnknown)
}
fn full() -> Verdict {
    verdict(BounceType::Soft, Reason::MailboxFull, Category::MailboxFull)
}

/// How a bounce refers to what was sent.
#[derive(Clone, Default)]
struct Refs {
    tracking_id: Option<String>,
    message_id: Option<String>,
    verp: Option<(String, String)>,
}

fn tracking(id: &str) -> Refs {
    Refs {
        tracking_id: Some(id.into()),
        ..Refs::default()
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A message with one recipient per (address, verdict); every call builds
/// a distinct message (distinct hash) unless `raw` is given.
fn message(refs: &Refs, rcpts: &[(&str, Verdict)], text: &str) -> BounceInput {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let raw = format!("message {n} {text}");
    message_raw(raw.as_bytes(), refs, rcpts, text)
}

fn message_raw(raw: &[u8], refs: &Refs, rcpts: &[(&str, Verdict)], text: &str) -> BounceInput {
    let mut a = Analysis::empty(MessageKind::Dsn);
    a.original.tracking_id = refs.tracking_id.clone();
    a.original.message_id = refs.message_id.clone();
    if let Some((r, token)) = &refs.verp {
        a.original.verp_recipient = Some(addr(r));
        a.original.verp_token = Some(token.clone());
    }
    let mut verdicts = Vec::new();
    for (address, v) in rcpts {
        let mut r = RecipientReport::new(addr(address));
        r.diagnostic = Some(text.to_owned());
        a.recipients.push(r);
        verdicts.push(v.clone());
    }
    BounceInput::new(raw, "test", a, verdicts)
}

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, StoreSettings::default())
}

async fn deliver(s: &Store, csv: &str) {
    import_csv(s, csv.as_bytes(), t0())
        .await
        .expect("deliveries import");
}

/// Applies one message alone and returns its single outcome.
async fn one(s: &Store, input: BounceInput, now: DateTime<Utc>) -> RecipientOutcome {
    let mut out = s.apply_batch(&[input], now).await.expect("apply");
    assert_eq!(out.len(), 1);
    out.remove(0)
}

async fn status(s: &Store, a: &str) -> (AddressStatus, i32) {
    let info = s
        .address_info(a, 50)
        .await
        .expect("address info")
        .expect("known address");
    (info.status, info.error_count)
}

const BOB: &str = "bob@example.com";
const BOB_CSV: &str = "message_id,address,tracking_id,sent_at\n\
                       <m1@sender>,Bob@Example.com,t-bob,2025-03-01T07:00:00Z\n";

#[sqlx::test(migrations = "./migrations")]
async fn five_soft_errors_24h_apart_quarantine(pool: PgPool) {
    let s = store(pool);
    deliver(&s, BOB_CSV).await;
    for i in 0..5 {
        let o = one(
            &s,
            message(&tracking("t-bob"), &[(BOB, soft())], "451 try later"),
            hours(25 * i),
        )
        .await;
        assert!(o.counted, "error {i} counts: {o:?}");
        assert_eq!(o.error_count_after, i as i32 + 1);
        assert_eq!(o.correlated_by, CorrelatedBy::TrackingId);
        let expected = if i < 4 {
            AddressStatus::Erroneous
        } else {
            AddressStatus::Quarantined
        };
        assert_eq!(o.status_after, expected);
    }
    let info = s.address_info(BOB, 50).await.unwrap().unwrap();
    assert_eq!(info.status, AddressStatus::Quarantined);
    assert_eq!(
        info.release_at, None,
        "only mailbox_full quarantines lift themselves"
    );
    assert_eq!(info.events.len(), 5);
    assert_eq!(info.events[0].status_after, "quarantined");
}

#[sqlx::test(migrations = "./migrations")]
async fn five_soft_errors_within_one_day_count_once(pool: PgPool) {
    let s = store(pool);
    deliver(&s, BOB_CSV).await;
    for i in 0..5 {
        let o = one(
            &s,
            message(&tracking("t-bob"), &[(BOB, soft())], "451 later"),
            hours(4 * i),
        )
        .await;
        assert_eq!(o.counted, i == 0);
        if i > 0 {
            assert_eq!(o.not_counted, Some(NotCounted::WithinInterval));
        }
    }
    assert_eq!(status(&s, BOB).await, (AddressStatus::Erroneous, 1));
}

#[sqlx::test(migrations = "./migrations")]
async fn counter_resets_after_ten_quiet_days(pool: PgPool) {
    let s = store(pool);
    deliver(&s, BOB_CSV).await;
    one(
        &s,
        message(&tracking("t-bob"), &[(BOB, soft())], "x"),
        hours(0),
    )
    .await;
    one(
        &s,
        message(&tracking("t-bob"), &[(BOB, soft())], "x"),
        hours(25),
    )
    .await;
    assert_eq!(status(&s, BOB).await, (AddressStatus::Erroneous, 2));

    // Cleanup before the period: nothing; after: back to valid, audited.
    assert_eq!(
        s.cleanup(hours(25) + Duration::days(9))
            .await
            .unwrap()
            .reset,
        0
    );
    let c = s.cleanup(hours(25) + Duration::days(11)).await.unwrap();
    assert_eq!(c.reset, 1);
    assert_eq!(status(&s, BOB).await, (AddressStatus::Valid, 0));
    let info = s.address_info(BOB, 1).await.unwrap().unwrap();
    assert_eq!(info.events[0].kind, "reset");

    // Without cleanup, the next error after a quiet period starts from zero too.
    one(
        &s,
        message(&tracking("t-bob"), &[(BOB, soft())], "x"),
        days(20),
    )
    .await;
    one(
        &s,
        message(&tracking("t-bob"), &[(BOB, soft())], "x"),
        days(21),
    )
    .await;
    let o = one(
        &s,
        message(&tracking("t-bob"), &[(BOB, soft())], "x"),
        days(33),
    )
    .await;
    assert_eq!((o.error_count_before, o.error_count_after), (2, 1));
    assert_eq!(o.status_after, AddressStatus::Erroneous);
}

#[sqlx::test(migrations = "./migrations")]
async fn mailbox_full_quarantine_is_lifted_after_30_days(pool: PgPool) {
    let s = store(pool);
    deliver(&s, BOB_CSV).await;
    let mut last = None;
    for i in 0..5 {
        last = Some(
            one(
                &s,
                message(&tracking("t-bob"), &[(BOB, full())], "452 quota"),
                hours(25 * i),
            )
            .await,
        );
    }
    let quarantined_at = hours(100);
    assert_eq!(last.unwrap().status_after, AddressStatus::Quarantined);
    let info = s.address_info(BOB, 1).await.unwrap().unwrap();
    assert_eq!(info.release_at, Some(quarantined_at + Duration::days(30)));

    let c = s
        .cleanup(quarantined_at + Duration::days(29))
        .await
        .unwrap();
    assert_eq!(c.released, 0);
    assert_eq!(status(&s, BOB).await.0, AddressStatus::Quarantined);
    let c = s
        .cleanup(quarantined_at + Duration::days(30) + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(c.released, 1);
    assert_eq!(status(&s, BOB).await, (AddressStatus::Valid, 0));
    let info = s.address_info(BOB, 1).await.unwrap().unwrap();
    assert_eq!(info.events[0].kind, "release");
    assert_eq!(info.events[0].status_before, "quarantined");
}

#[sqlx::test(migrations = "./migrations")]
async fn hard_bounce_quarantines_at_once(pool: PgPool) {
    let s = store(pool);
    deliver(&s, BOB_CSV).await;
    let o = one(
        &s,
        message(
            &tracking("t-bob"),
            &[(BOB, hard())],
            "550 5.1.1 no such user",
        ),
        hours(1),
    )
    .await;
    assert!(o.counted);
    assert_eq!(
        (o.status_before, o.status_after),
        (AddressStatus::Valid, AddressStatus::Quarantined)
    );
    let info = s.address_info(BOB, 5).await.unwrap().unwrap();
    assert_eq!(info.last_reason.as_deref(), Some("user_unknown"));
    assert_eq!(info.release_at, None);
    assert_eq!(info.events[0].rule_id.as_deref(), Some("test-user_unknown"));
    assert_eq!(
        info.events[0].diagnostic.as_deref(),
        Some("550 5.1.1 no such user")
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn complaint_denylists(pool: PgPool) {
    let s = store(pool);
    deliver(&s, BOB_CSV).await;
    let v = verdict(BounceType::Hard, Reason::Refused, Category::SpamComplaint);
    let o = one(
        &s,
        message(&tracking("t-bob"), &[(BOB, v)], "abuse report"),
        hours(1),
    )
    .await;
    assert!(o.counted);
    assert_eq!(o.status_after, AddressStatus::Denylisted);
    // A later hard bounce leaves it denylisted.
    let o = one(
        &s,
        message(&tracking("t-bob"), &[(BOB, hard())], "550"),
        hours(2),
    )
    .await;
    assert_eq!(o.not_counted, Some(NotCounted::Denylisted));
    assert_eq!(status(&s, BOB).await.0, AddressStatus::Denylisted);
}

#[sqlx::test(migrations = "./migrations")]
async fn allowlisted_addresses_never_change(pool: PgPool) {
    let s = store(pool);
    deliver(&s, BOB_CSV).await;
    s.quarantine_add(BOB, AddressStatus::Allowlisted, t0())
        .await
        .unwrap();
    let o = one(
        &s,
        message(&tracking("t-bob"), &[(BOB, hard())], "550 user unknown"),
        hours(1),
    )
    .await;
    assert!(!o.counted);
    assert_eq!(o.not_counted, Some(NotCounted::Allowlisted));
    assert_eq!(status(&s, BOB).await, (AddressStatus::Allowlisted, 0));
    let info = s.address_info(BOB, 5).await.unwrap().unwrap();
    assert_eq!(
        info.events[0].not_counted_why.as_deref(),
        Some("allowlisted")
    );
    assert_eq!(info.events[1].kind, "manual");
}

#[sqlx::test(migrations = "./migrations")]
async fn sender_side_failures_count_per_domain_not_per_address(pool: PgPool) {
    let s = store(pool.clone());
    deliver(&s, BOB_CSV).await;
    let blocked = verdict(BounceType::Soft, Reason::Refused, Category::Blocked);
    for i in 0..3 {
        let text = "550 5.7.1 Service unavailable; client host blocked";
        let o = one(
            &s,
            message(&tracking("t-bob"), &[(BOB, blocked.clone())], text),
            hours(25 * i),
        )
        .await;
        assert_eq!(o.not_counted, Some(NotCounted::SenderSide));
        assert_eq!(o.status_after, AddressStatus::Valid);
    }
    assert_eq!(status(&s, BOB).await, (AddressStatus::Valid, 0));
    let n: i64 = sqlx::query_scalar(
        "SELECT sum(count)::int8 FROM domain_sender_failures WHERE domain = 'example.com' AND category = 'blocked'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 3);
    let r = s.report(t0(), days(7)).await.unwrap();
    let d = r
        .by_domain
        .iter()
        .find(|d| d.domain == "example.com")
        .expect("domain row");
    assert_eq!((d.sender_side, d.soft), (3, 0));
}

#[sqlx::test(migrations = "./migrations")]
async fn uncorrelated_bounce_changes_nothing(pool: PgPool) {
    let s = store(pool.clone());
    deliver(&s, BOB_CSV).await;
    // A forged bounce: right address, unknown tracking id; or a stranger.
    let o = one(
        &s,
        message(&tracking("forged"), &[(BOB, hard())], "550"),
        hours(1),
    )
    .await;
    assert_eq!(
        (o.correlated, o.not_counted),
        (false, Some(NotCounted::Uncorrelated))
    );
    let o = one(
        &s,
        message(&tracking("t-bob"), &[("eve@example.org", hard())], "550"),
        hours(1),
    )
    .await;
    assert_eq!(o.not_counted, Some(NotCounted::Uncorrelated));
    assert_eq!(status(&s, BOB).await, (AddressStatus::Valid, 0));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM addresses")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows, 0,
        "an uncorrelated bounce does not even create an address row"
    );
    let logged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bounce_events WHERE correlation = 'none'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(logged, 2, "but it is logged");

    // Platforms that cannot track may choose to count them.
    let settings = StoreSettings {
        count_uncorrelated: true,
        ..StoreSettings::default()
    };
    let counting = Store::from_pool(pool, settings);
    let o = one(
        &counting,
        message(&Refs::default(), &[(BOB, hard())], "550"),
        hours(2),
    )
    .await;
    assert!(o.counted);
    assert_eq!(o.status_after, AddressStatus::Quarantined);
}

#[sqlx::test(migrations = "./migrations")]
async fn correlation_by_message_id_and_signed_verp(pool: PgPool) {
    let settings = StoreSettings {
        verp_secret: Some(SecretString::from("k3y")),
        ..StoreSettings::default()
    };
    let s = Store::from_pool(pool.clone(), settings);
    deliver(&s, BOB_CSV).await;
    let by_mid = Refs {
        message_id: Some(" <m1@sender> ".into()),
        ..Refs::default()
    };
    let o = one(&s, message(&by_mid, &[(BOB, hard())], "550"), hours(1)).await;
    assert_eq!(o.correlated_by, CorrelatedBy::MessageId);
    assert!(o.delivery_log_id.is_some());

    let good = Refs {
        verp: Some((BOB.into(), verp_token("k3y", BOB))),
        ..Refs::default()
    };
    let o = one(&s, message(&good, &[(BOB, soft())], "451"), hours(2)).await;
    assert_eq!(o.correlated_by, CorrelatedBy::Verp);
    assert_eq!(o.delivery_log_id, Some(1));

    let forged = Refs {
        verp: Some((BOB.into(), verp_token("guess", BOB))),
        ..Refs::default()
    };
    let o = one(&s, message(&forged, &[(BOB, soft())], "451"), hours(3)).await;
    assert_eq!(o.correlated_by, CorrelatedBy::None);

    // Without a secret, a VERP address proves nothing.
    let unsigned = Store::from_pool(pool, StoreSettings::default());
    let o = one(&unsigned, message(&good, &[(BOB, soft())], "451"), hours(4)).await;
    assert_eq!(o.correlated_by, CorrelatedBy::None);
}

#[sqlx::test(migrations = "./migrations")]
async fn same_message_twice_changes_nothing(pool: PgPool) {
    let s = store(pool.clone());
    deliver(&s, BOB_CSV).await;
    let m = message_raw(b"raw bytes", &tracking("t-bob"), &[(BOB, soft())], "451");
    let first = one(&s, m.clone(), hours(0)).await;
    assert!(first.counted);
    let again = one(&s, m.clone(), hours(30)).await;
    assert!(again.duplicate && !again.counted);
    assert_eq!(again.not_counted, Some(NotCounted::Duplicate));
    // ...also twice within one batch.
    let m2 = message_raw(b"other raw", &tracking("t-bob"), &[(BOB, soft())], "451");
    let out = s.apply_batch(&[m2.clone(), m2], hours(60)).await.unwrap();
    assert_eq!((out[0].duplicate, out[1].duplicate), (false, true));
    assert_eq!(status(&s, BOB).await, (AddressStatus::Erroneous, 2));
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM bounce_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events, 2);
}

#[sqlx::test(migrations = "./migrations")]
async fn concurrent_batches_for_the_same_addresses_lose_no_increment(pool: PgPool) {
    // Count every error so that increments are easy to check.
    let settings = StoreSettings {
        quarantine: QuarantineSettings {
            soft_error_threshold: 1_000_000,
            soft_error_min_interval_hours: 0,
            ..QuarantineSettings::default()
        },
        ..StoreSettings::default()
    };
    let s = Store::from_pool(pool.clone(), settings.clone());
    deliver(
        &s,
        "message_id,address\nm-all,a@x.org\nm-all,b@x.org\nm-all,c@x.org\n",
    )
    .await;
    let opts = (*pool.connect_options()).clone();
    let other_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .unwrap();
    let other = Store::from_pool(other_pool, settings);
    let refs = Refs {
        message_id: Some("m-all".into()),
        ..Refs::default()
    };
    const BATCHES: usize = 20;
    const PER_BATCH: usize = 5;
    let run = |s: Store, order: [&'static str; 3]| {
        let refs = refs.clone();
        tokio::spawn(async move {
            for _ in 0..BATCHES {
                let batch: Vec<BounceInput> = (0..PER_BATCH)
                    .map(|_| message(&refs, &order.map(|a| (a, soft())), "451 busy"))
                    .collect();
                s.apply_batch(&batch, hours(1))
                    .await
                    .expect("concurrent apply");
            }
        })
    };
    let t1 = run(s.clone(), ["a@x.org", "b@x.org", "c@x.org"]);
    let t2 = run(other.clone(), ["c@x.org", "b@x.org", "a@x.org"]);
    let t3 = run(other, ["b@x.org", "a@x.org", "c@x.org"]);
    let (r1, r2, r3) = tokio::join!(t1, t2, t3);
    r1.unwrap();
    r2.unwrap();
    r3.unwrap();
    for a in ["a@x.org", "b@x.org", "c@x.org"] {
        assert_eq!(
            status(&s, a).await.1,
            (3 * BATCHES * PER_BATCH) as i32,
            "{a}"
        );
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn delivery_logs_record_failure_and_retry_schedule(pool: PgPool) {
    let s = store(pool.clone());
    deliver(
        &s,
        "message_id,address,delivery,tracking_id,sent_at\n\
                 m1,bob@example.com,spring,t-bob,2025-03-01T07:00:00Z\n\
                 m2,ann@example.com,spring,t-ann,2025-03-01T07:00:00Z\n",
    )
    .await;
    let o = one(
        &s,
        message(&tracking("t-bob"), &[(BOB, soft())], "451 later"),
        hours(0),
    )
    .await;
    assert_eq!(o.next_retry_at, Some(hours(1)));
    let o = one(
        &s,
        message(&tracking("t-bob"), &[(BOB, soft())], "451 later"),
        hours(1),
    )
    .await;
    assert_eq!(o.next_retry_at, Some(hours(2)));
    let row: (
        String,
        String,
        String,
        i32,
        Option<DateTime<Utc>>,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT status, failure_type, failure_mode, retry_count, next_retry_at, error_text
           FROM delivery_logs WHERE tracking_id = 't-bob'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "failed".into(),
            "soft".into(),
            "async".into(),
            2,
            Some(hours(2)),
            Some("451 later".into())
        )
    );

    // A per-delivery override: no quick retries, straight to daily.
    sqlx::query("UPDATE deliveries SET quick_retries = 0 WHERE name = 'spring'")
        .execute(&pool)
        .await
        .unwrap();
    let o = one(
        &s,
        message(&tracking("t-ann"), &[("ann@example.com", soft())], "451"),
        hours(0),
    )
    .await;
    assert_eq!(o.next_retry_at, Some(hours(24)));
    // Past the validity (5 days): no retry.
    let o = one(
        &s,
        message(&tracking("t-ann"), &[("ann@example.com", soft())], "451"),
        days(6),
    )
    .await;
    assert_eq!(o.next_retry_at, None);
    // Hard: failed, never retried.
    let o = one(
        &s,
        message(&tracking("t-bob"), &[(BOB, hard())], "550"),
        hours(3),
    )
    .await;
    assert_eq!(o.next_retry_at, None);
}

#[sqlx::test(migrations = "./migrations")]
async fn delay_warning_counts_soft_but_leaves_the_delivery_alone(pool: PgPool) {
    let s = store(pool.clone());
    deliver(&s, BOB_CSV).await;
    let mut input = message(
        &tracking("t-bob"),
        &[(
            BOB,
            verdict(BounceType::Soft, Reason::MailboxFull, Category::Delayed),
        )],
        "452 4.2.2 mailbox full",
    );
    input.analysis.recipients[0].hint = Some(Category::Delayed);
    let o = one(&s, input, hours(0)).await;
    assert!(o.counted, "{o:?}");
    assert_eq!(o.next_retry_at, None, "the sending MTA still holds it");
    assert_eq!(status(&s, BOB).await, (AddressStatus::Erroneous, 1));
    let row: (String, i32, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT status, retry_count, next_retry_at FROM delivery_logs WHERE tracking_id = 't-bob'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row, ("sent".into(), 0, None));
}

fn rule(id: &str, pattern: &str) -> Rule {
    Rule {
        id: id.into(),
        pattern: pattern.into(),
        bounce_type: BounceType::Hard,
        reason: Reason::UserUnknown,
        category: Category::UserUnknown,
        priority: 10,
        domain: None,
        source: None,
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn rules_import_insert_disable_and_invalid_patterns(pool: PgPool) {
    let s = store(pool.clone());
    let summary = s
        .import_rules(&[rule("r1", "user unknown"), rule("r2", "no such user")])
        .await
        .unwrap();
    assert_eq!((summary.inserted, summary.updated), (2, 0));
    let summary = s
        .import_rules(&[rule("r1", "user (is )?unknown")])
        .await
        .unwrap();
    assert_eq!((summary.inserted, summary.updated), (0, 1));

    let err = s.insert_rule(&rule("bad", "unclosed (")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidRule { ref id, .. } if id == "bad"),
        "{err}"
    );
    assert!(matches!(
        s.insert_rule(&rule("r2", "x")).await,
        Err(StoreError::RuleExists(_))
    ));
    assert!(s
        .import_rules(&[rule("ok", "x"), rule("bad", "[")])
        .await
        .is_err());
    assert_eq!(
        s.list_rules().await.unwrap().len(),
        2,
        "a bad file changes nothing"
    );

    // An invalid rule that got in by SQL is skipped, not fatal.
    sqlx::query("INSERT INTO qualification_rules (id, pattern, bounce_type, reason, category) VALUES ('sql', '(', 'hard', 'refused', 'blocked')")
        .execute(&pool)
        .await
        .unwrap();
    let ids: Vec<String> = s
        .load_rules()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["r1", "r2"]);

    s.disable_rule("r2").await.unwrap();
    let ids: Vec<String> = s
        .export_rules()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["r1"]);
    assert!(matches!(
        s.disable_rule("nope").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[sqlx::test(migrations = "./migrations")]
async fn rule_hits_are_counted_per_batch(pool: PgPool) {
    let s = store(pool);
    s.import_rules(&[rule("test-user_unknown", "user unknown")])
        .await
        .unwrap();
    let batch: Vec<BounceInput> = (0..3)
        .map(|_| message(&tracking("x"), &[(BOB, hard())], "550"))
        .collect();
    s.apply_batch(&batch, hours(1)).await.unwrap();
    let r = s.list_rules().await.unwrap().remove(0);
    assert_eq!((r.hit_count, r.last_hit_at), (3, Some(hours(1))));
}

#[sqlx::test(migrations = "./migrations")]
async fn rule_changes_are_notified_within_a_second(pool: PgPool) {
    let s = store(pool);
    let mut changes = s.listen_rule_changes().await.unwrap();
    s.insert_rule(&rule("r1", "user unknown")).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), changes.changed())
        .await
        .expect("notified within a second")
        .unwrap();
    // Hit counting on every batch must not make every process reload.
    s.apply_batch(
        &[message(&tracking("x"), &[(BOB, hard())], "550")],
        hours(1),
    )
    .await
    .unwrap();
    let quiet =
        tokio::time::timeout(std::time::Duration::from_millis(300), changes.changed()).await;
    assert!(quiet.is_err(), "hit counts do not notify");
    s.disable_rule("r1").await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), changes.changed())
        .await
        .expect("disable notified")
        .unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn unqualified_bounces_collapse_by_shape_keep_creates_a_rule(pool: PgPool) {
    let s = store(pool);
    let mut unknown = soft();
    unknown.qualified = false;
    unknown.rule = "builtin:none".into();
    let texts = [
        "550 5.1.1 <alice@corp.example>: Recipient rejected by mx12.corp.example (id 8F3A2B1C9D)",
        "550 5.1.1 <zed@other.example>: Recipient rejected by mx7.corp.example (id 77AB12CD34EF)",
    ];
    for t in texts {
        one(
            &s,
            message(&tracking("x"), &[(BOB, unknown.clone())], t),
            hours(1),
        )
        .await;
    }
    let queued = s
        .list_qualifications(Some(QualificationStatus::ToQualify))
        .await
        .unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].count, 2);
    assert_eq!(queued[0].first_text, texts[0]);

    let rule = s
        .keep_qualification(queued[0].id, BounceType::Hard, Reason::UserUnknown, None)
        .await
        .unwrap();
    let re = regex::RegexBuilder::new(&rule.pattern)
        .case_insensitive(true)
        .build()
        .unwrap();
    for t in texts {
        assert!(re.is_match(t), "{} should match {t}", rule.pattern);
    }
    assert!(!re.is_match("452 4.2.2 mailbox full"));
    assert!(s
        .load_rules()
        .await
        .unwrap()
        .iter()
        .any(|r| r.id == rule.id));

    // requalify marks queued texts a rule now explains.
    one(
        &s,
        message(
            &tracking("x"),
            &[(BOB, unknown.clone())],
            "421 too many connections from 10.0.0.1",
        ),
        hours(2),
    )
    .await;
    let summary = s
        .requalify(|text| text.contains("too many").then(|| "rate".to_owned()))
        .await
        .unwrap();
    assert_eq!((summary.checked, summary.matched), (1, 1));
    let matched = s
        .list_qualifications(Some(QualificationStatus::Matched))
        .await
        .unwrap();
    assert_eq!(matched[0].rule_id.as_deref(), Some("rate"));
    let id = matched[0].id;
    s.ignore_qualification(id).await.unwrap();
    assert!(s
        .list_qualifications(Some(QualificationStatus::Ignore))
        .await
        .unwrap()
        .iter()
        .any(|q| q.id == id));
}

#[test]
fn normalise_diagnostic_masks_what_varies() {
    let n = normalise_diagnostic(
        "550-5.1.1 The email account that you tried to reach does not exist. <john.doe@gmail.com> \
         a640c23a62f3a-ab7f5a9f1b3si123456766b.2 - gsmtp",
    );
    assert!(n.starts_with("550-5.1.1 the email account"), "{n}");
    assert!(n.contains("<addr>"), "{n}");
    assert!(!n.contains("john"), "{n}");
    assert!(
        !n.chars()
            .any(|c| c.is_ascii_digit() && !n.starts_with("550")),
        "{n}"
    );
    assert_eq!(
        normalise_diagnostic(
            "452 4.2.2 Mailbox   full (quota 10240 KB) on 2024-05-01 12:00:01 +0200 at 192.0.2.7"
        ),
        "452 4.2.2 mailbox full (quota <n> kb) on <date> at <ip>"
    );
    assert_eq!(
        normalise_diagnostic(
            "421 mx3.mail.example.net: Sat, 12 Apr 2025 10:11:12 queue id 4F2A9C1B0D"
        ),
        normalise_diagnostic(
            "421 mx19.mail.example.net: Sun, 13 Apr 2025 22:01:02 queue id AB99C01234"
        )
    );
    let p = pattern_from_normalised(&normalise_diagnostic(
        "550 5.1.1 <a@b.example>: user unknown (123)",
    ));
    let re = regex::RegexBuilder::new(&p)
        .case_insensitive(true)
        .build()
        .unwrap();
    assert!(
        re.is_match("550 5.1.1 <Zed@Elsewhere.example>: User unknown (9)"),
        "{p}"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn deliveries_csv_import_validates_and_is_all_or_nothing(pool: PgPool) {
    let s = store(pool.clone());
    let err = import_csv(
        &s,
        "message_id,address\nm1,ok@x.org\nm2,not-an-address\n".as_bytes(),
        t0(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, OpsError::Csv(CsvError { line: 3, .. })),
        "{err}"
    );
    let err = import_csv(&s, "address\nx@y.org\n".as_bytes(), t0())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("message_id"), "{err}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_logs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let sum = import_csv(
        &s,
        "address,message_id,delivery,profile_id,tracking_id,sent_at\n\
         Ann@X.org,<a@m>,d1,p1,t1,2025-01-01T00:00:00+01:00\nbo@x.org,,d1,,t2,\n"
            .as_bytes(),
        t0(),
    )
    .await
    .unwrap();
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((sum.accepted, deliveries), (2, 1));
    let (a, m, sent): (String, String, DateTime<Utc>) = sqlx::query_as(
        "SELECT address, message_id, sent_at FROM delivery_logs WHERE tracking_id = 't1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((a.as_str(), m.as_str()), ("ann@x.org", "a@m"));
    assert_eq!(
        sent,
        DateTime::parse_from_rfc3339("2024-12-31T23:00:00Z").unwrap()
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn report_summarises_the_period(pool: PgPool) {
    let s = store(pool);
    deliver(
        &s,
        "message_id,address,tracking_id\nm,bob@example.com,t1\nm,ann@example.org,t2\n",
    )
    .await;
    one(
        &s,
        message(&tracking("t1"), &[(BOB, hard())], "550"),
        hours(1),
    )
    .await;
    one(
        &s,
        message(&tracking("t2"), &[("ann@example.org", soft())], "451"),
        hours(1),
    )
    .await;
    let auto = verdict(BounceType::Ignored, Reason::NotDefined, Category::AutoReply);
    let o = one(
        &s,
        message(&tracking("t2"), &[("ann@example.org", auto)], "away"),
        hours(2),
    )
    .await;
    assert_eq!(o.not_counted, Some(NotCounted::NotAFailure));
    one(
        &s,
        message(&tracking("zz"), &[("eve@example.net", hard())], "550"),
        hours(2),
    )
    .await;
    s.quarantine_release(BOB, hours(3)).await.unwrap();

    let r = s.report(t0(), days(1)).await.unwrap();
    let get = |t: &str, reason: &str| {
        r.by_reason
            .iter()
            .find(|x| x.bounce_type == t && x.reason == reason)
            .map_or(0, |x| x.count)
    };
    assert_eq!(get("hard", "user_unknown"), 2);
    assert_eq!(get("soft", "unreachable"), 1);
    assert_eq!(get("ignored", "not_defined"), 1);
    assert_eq!((r.quarantined, r.released, r.uncorrelated), (1, 1, 1));
    assert_eq!(r.by_domain.len(), 3);
    assert!(s
        .report(days(2), days(3))
        .await
        .unwrap()
        .by_reason
        .is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn manual_quarantine_add_and_release(pool: PgPool) {
    let s = store(pool);
    s.quarantine_add("Carl@Example.com", AddressStatus::Denylisted, t0())
        .await
        .unwrap();
    assert_eq!(
        status(&s, "carl@example.com").await.0,
        AddressStatus::Denylisted
    );
    assert!(s
        .quarantine_add("carl@example.com", AddressStatus::Valid, t0())
        .await
        .is_err());
    let before = s
        .quarantine_release("carl@example.com", hours(1))
        .await
        .unwrap();
    assert_eq!(before, AddressStatus::Denylisted);
    let info = s
        .address_info("carl@example.com", 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.status, AddressStatus::Valid);
    assert_eq!(info.events.len(), 2);
    assert!(s
        .address_info("nobody@example.com", 10)
        .await
        .unwrap()
        .is_none());
}

#[sqlx::test(migrations = false)]
async fn unmigrated_database_is_a_clear_error(pool: PgPool) {
    let s = store(pool);
    let err = s.check_migrated().await.unwrap_err();
    assert!(matches!(err, StoreError::NotMigrated { .. }));
    assert!(err.to_string().contains("inmail migrate"), "{err}");
    s.migrate().await.unwrap();
    s.check_migrated().await.unwrap();
}

#[tokio::test]
async fn unreachable_server_is_a_clear_error() {
    let db = inmail::config::DatabaseSettings {
        url: Some(SecretString::from("postgres://u:secret@127.0.0.1:1/db")),
        max_connections: 1,
        connect_timeout_secs: 1,
    };
    let err = Store::connect(&db, StoreSettings::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{msg}");
    assert!(
        msg.contains("unreachable") && !msg.contains("secret"),
        "{msg}"
    );
}

/// The store's throughput: 20,000 correlated single-recipient bounces in
/// batches of BATCH. Run with
/// `cargo test --release --test store -- --ignored bench_apply --nocapture`.
#[sqlx::test(migrations = "./migrations")]
#[ignore]
async fn bench_apply_20000(pool: PgPool) {
    const N: usize = 20_000;
    let batch: usize = std::env::var("INMAIL_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(500);
    let s = store(pool);
    let mut csv = String::from("message_id,address,tracking_id,sent_at\n");
    for i in 0..N {
        csv.push_str(&format!(
            "m{i}@bench,user{i}@d{}.example,trk-{i},2025-03-01T07:00:00Z\n",
            i % 50
        ));
    }
    let start = std::time::Instant::now();
    deliver(&s, &csv).await;
    let import = start.elapsed();
    let kinds = [
        hard(),
        soft(),
        full(),
        verdict(BounceType::Soft, Reason::Refused, Category::Blocked),
    ];
    let inputs: Vec<BounceInput> = (0..N)
        .map(|i| {
            let address = format!("user{i}@d{}.example", i % 50);
            let v = kinds[i % kinds.len()].clone();
            message(
                &tracking(&format!("trk-{i}")),
                &[(address.as_str(), v)],
                "550 5.1.1 user unknown",
            )
        })
        .collect();
    let start = std::time::Instant::now();
    let mut counted = 0;
    for chunk in inputs.chunks(batch) {
        let out = s.apply_batch(chunk, hours(1)).await.expect("apply");
        counted += out.iter().filter(|o| o.correlated).count();
    }
    let elapsed = start.elapsed();
    assert_eq!(counted, N);
    println!(
        "BENCH apply: {N} correlated bounces in batches of {batch}: {:.2}s = {:.0} msgs/s (deliveries import {:.2}s)",
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64(),
        import.as_secs_f64()
    );
}

/// Issue 19, class 1: a real report whose failed recipient cannot be read
/// changes no address, but is never dropped: it goes to the to-qualify queue
/// naming the message, once however often the message is fetched.
#[sqlx::test(migrations = "./migrations")]
async fn a_report_whose_recipient_cannot_be_read_is_queued_to_qualify(pool: PgPool) {
    let s = store(pool);
    let mut a = Analysis::empty(MessageKind::Dsn);
    a.subject = Some("Undelivered Mail Returned to Sender".into());
    a.error = Some(inmail::analysis::UNREADABLE_RECIPIENT.into());
    let input = BounceInput::new(b"a report naming nobody", "test", a, Vec::new());
    let hash = hex::encode(input.message_hash);
    for _ in 0..2 {
        let out = s
            .apply_batch(std::slice::from_ref(&input), t0())
            .await
            .expect("apply");
        assert!(out.is_empty());
    }
    let queued = s
        .list_qualifications(Some(QualificationStatus::ToQualify))
        .await
        .expect("list");
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].count, 1);
    assert!(
        queued[0]
            .first_text
            .starts_with(inmail::analysis::UNREADABLE_RECIPIENT)
            && queued[0]
                .first_text
                .contains("(dsn; subject: Undelivered Mail Returned to Sender;")
            && queued[0].first_text.contains(&hash),
        "{}",
        queued[0].first_text
    );
}
