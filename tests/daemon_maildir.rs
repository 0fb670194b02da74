//! The daemon core over a temporary maildir and a real PostgreSQL (a fresh
//! database per test). Workers are driven with `process_once` and time with
//! an injected clock: no sleeping to wait for retries.
//!
//! export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
//! cargo test --test daemon_maildir

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use inmail::app::App;
use inmail::config::{Mailbox, MaildirMailbox, Settings};
use inmail::pipeline::Clock;
use inmail::store::{IntakeInsert, Store, StoreSettings};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-01T08:00:00Z")
        .expect("constant time")
        .with_timezone(&Utc)
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);
impl TestClock {
    fn new() -> Self {
        Self(Arc::new(AtomicI64::new(t0().timestamp_millis())))
    }
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.num_milliseconds(), Ordering::SeqCst);
    }
    fn clock(&self) -> Clock {
        let c = Arc::clone(&self.0);
        Arc::new(move || {
            DateTime::from_timestamp_millis(c.load(Ordering::SeqCst)).expect("valid time")
        })
    }
}

fn settings(maildir: &Path) -> Settings {
    let mut s = Settings::default();
    s.daemon.batch_size = 4;
    s.daemon.workers = 2;
    s.daemon.max_attempts = 3;
    s.daemon.shutdown_timeout_secs = 10;
    s.mailboxes.push(Mailbox::Maildir(MaildirMailbox {
        poll_interval_secs: Some(1),
        ..MaildirMailbox::new("bounces", maildir)
    }));
    s
}

async fn setup(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
    n: usize,
    maildir: &Path,
) -> (Store, PgPool) {
    let pool = opts
        .max_connections(10)
        .connect_with(conn)
        .await
        .expect("pool");
    let store = Store::from_pool(pool.clone(), StoreSettings::default());
    inmail::ops::deliveries::import_csv(&store, deliveries_csv(0..n).as_bytes(), t0())
        .await
        .expect("deliveries");
    make_maildir(maildir);
    (store, pool)
}

async fn app(s: Settings, store: &Store, clock: Clock) -> App {
    App::build_with_store(s, store.clone(), clock)
        .await
        .expect("build")
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

#[sqlx::test(migrations = "./migrations")]
async fn run_once_stores_processes_and_marks_seen(opts: PgPoolOptions, conn: PgConnectOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    let (store, pool) = setup(opts, conn, 10, &md).await;
    for i in 0..10 {
        deliver(&md, &format!("17000000{i:02}.M1P1.host"), &dsn(i));
    }
    let clock = TestClock::new();
    let s = app(settings(&md), &store, clock.clock())
        .await
        .run_once()
        .await
        .expect("run once");
    assert_eq!((s.stored, s.duplicates, s.processed), (10, 0, 10));
    assert_eq!(s.intake.done, 10);
    assert_eq!(count_files(&md.join("new")), 0);
    let cur: Vec<String> = std::fs::read_dir(md.join("cur"))
        .expect("cur")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(cur.len(), 10);
    assert!(cur.iter().all(|n| n.ends_with(":2,S")), "{cur:?}");
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM bounce_events WHERE kind = 'bounce'"
        )
        .await,
        10
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM bounce_events WHERE delivery_log_id IS NOT NULL"
        )
        .await,
        10
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM addresses WHERE status = 'quarantined'"
        )
        .await,
        10,
        "a correlated user-unknown quarantines the address"
    );
    // Nothing more to do: a second pass changes nothing.
    let s = app(settings(&md), &store, clock.clock())
        .await
        .run_once()
        .await
        .expect("again");
    assert_eq!((s.stored, s.processed), (0, 0));
}

#[sqlx::test(migrations = "./migrations")]
async fn files_stay_until_intake_commits(opts: PgPoolOptions, conn: PgConnectOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    let (store, pool) = setup(opts, conn, 3, &md).await;
    for i in 0..3 {
        deliver(&md, &format!("m{i}.host"), &dsn(i));
    }
    let clock = TestClock::new();
    let app = app(settings(&md), &store, clock.clock()).await;
    let source = &app.sources()[0];
    // The intake insert fails (table gone): nothing may leave new/.
    sqlx::query("ALTER TABLE intake RENAME TO intake_away")
        .execute(&pool)
        .await
        .expect("rename");
    let err = source.drain(&CancellationToken::new(), &|| {}).await;
    assert!(err.is_err());
    assert_eq!(count_files(&md.join("new")), 3);
    sqlx::query("ALTER TABLE intake_away RENAME TO intake")
        .execute(&pool)
        .await
        .expect("rename back");
    let d = source
        .drain(&CancellationToken::new(), &|| {})
        .await
        .expect("drain");
    assert_eq!(d.stored, 3);
    assert_eq!(count_files(&md.join("new")), 0);
    assert_eq!(count_files(&md.join("cur")), 3);
    // Stored, not yet processed.
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'queued'").await,
        3
    );
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 0);
    assert_eq!(app.pipeline().process_once().await.expect("process"), 3);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 3);
}

#[sqlx::test(migrations = "./migrations")]
async fn poisoned_message_is_retried_parked_and_retryable(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    let (store, pool) = setup(opts, conn, 6, &md).await;
    // A database failure tied to one message's data.
    sqlx::raw_sql(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.address = 'user3@d3.example' THEN RAISE EXCEPTION 'poisoned row'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER poison BEFORE INSERT ON bounce_events FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .execute(&pool)
    .await
    .expect("trigger");
    for i in 0..6 {
        deliver(&md, &format!("m{i}.host"), &dsn(i));
    }
    let clock = TestClock::new();
    let mut s = settings(&md);
    s.daemon.batch_size = 10;
    let app = app(s, &store, clock.clock()).await;
    app.sources()[0]
        .drain(&CancellationToken::new(), &|| {})
        .await
        .expect("drain");
    let p = app.pipeline();
    // The batch fails, is retried one by one: 5 done, the poisoned one charged.
    assert_eq!(p.process_once().await.expect("first"), 6);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'done'").await,
        5
    );
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 5);
    let attempts = |pool: PgPool| async move {
        scalar(
            &pool,
            "SELECT attempts::int8 FROM intake WHERE status <> 'done'",
        )
        .await
    };
    assert_eq!(attempts(pool.clone()).await, 1);
    // Not due yet: nothing to do until the backoff has passed.
    assert_eq!(p.process_once().await.expect("not due"), 0);
    clock.advance(Duration::hours(2));
    assert_eq!(p.process_once().await.expect("second"), 1);
    assert_eq!(attempts(pool.clone()).await, 2);
    clock.advance(Duration::hours(2));
    assert_eq!(p.process_once().await.expect("third"), 1);
    // max_attempts = 3: parked, visible, never dropped.
    let failed = store.list_intake(true, 10).await.expect("list");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 3);
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("poisoned row")),
        "{failed:?}"
    );
    clock.advance(Duration::days(1));
    assert_eq!(p.process_once().await.expect("parked"), 0);
    // The retention purge removes done rows only: the parked one stays.
    let purged = store.purge_intake(clock.clock()()).await.expect("purge");
    assert_eq!(purged, 5);
    assert_eq!(store.list_intake(true, 10).await.expect("list").len(), 1);
    // Fixed, then retried by the operator.
    sqlx::query("DROP TRIGGER poison ON bounce_events")
        .execute(&pool)
        .await
        .expect("drop trigger");
    assert_eq!(
        store
            .retry_intake(None, clock.clock()())
            .await
            .expect("retry"),
        1
    );
    assert_eq!(p.process_once().await.expect("retried"), 1);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'done'").await,
        1
    );
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 6);
    assert!(store.list_intake(true, 10).await.expect("list").is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn duplicates_are_processed_once(opts: PgPoolOptions, conn: PgConnectOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    let (store, pool) = setup(opts, conn, 3, &md).await;
    // Same content under two names; a third file in cur/ without S.
    deliver(&md, "a.host", &dsn(0));
    deliver(&md, "b.host", &dsn(0));
    deliver(&md, "c.host", &dsn(1));
    std::fs::write(md.join("cur").join("d.host:2,"), dsn(2)).expect("cur file");
    std::fs::write(md.join("cur").join("e.host:2,S"), dsn(2)).expect("seen file");
    // A uid is a hint: the same uid with other content is a new message.
    assert!(matches!(
        store
            .intake_insert("bounces", "c.host", b"other", t0())
            .await
            .expect("insert"),
        IntakeInsert::Stored(_)
    ));
    assert!(matches!(
        store
            .intake_insert("bounces", "c.host", b"other 2", t0())
            .await
            .expect("insert"),
        IntakeInsert::UidReused(_)
    ));
    // Same content again, whatever the uid: a duplicate.
    assert_eq!(
        store
            .intake_insert("bounces", "z.host", b"other 2", t0())
            .await
            .expect("insert"),
        IntakeInsert::Duplicate
    );
    let clock = TestClock::new();
    let s = app(settings(&md), &store, clock.clock())
        .await
        .run_once()
        .await
        .expect("run");
    // a, c (uid known, content new), d stored; b (same content as a) a duplicate; e already seen.
    assert_eq!((s.stored, s.duplicates), (3, 1), "{s:?}");
    assert_eq!(count_files(&md.join("new")), 0);
    assert!(md.join("cur").join("d.host:2,S").exists());
    assert_eq!(s.intake.done, 5);
    // user0, user1 and user2 once each; "other" is not a bounce (no recipient)
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 3);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM (SELECT message_hash FROM bounce_events GROUP BY 1 HAVING count(*) > 1) d").await,
        0
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn shutdown_finishes_the_batch_in_hand(opts: PgPoolOptions, conn: PgConnectOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    let n = 200;
    let (store, pool) = setup(opts, conn, n, &md).await;
    for i in 0..n {
        deliver(&md, &format!("m{i:04}.host"), &dsn(i));
    }
    let mut s = settings(&md);
    s.daemon.batch_size = 10;
    let daemon = app(s, &store, inmail::pipeline::system_clock()).await;
    let stop = CancellationToken::new();
    let run = tokio::spawn(daemon.run_until_stopped(stop.clone()));
    // Stop as soon as some work is done.
    for _ in 0..200 {
        if scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'done'").await > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(15), run)
        .await
        .expect("stops within the deadline")
        .expect("join")
        .expect("run");
    // Whatever was done is complete: each done row has its event, no more.
    let done = scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'done'").await;
    assert!(done > 0);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM bounce_events").await,
        done
    );
    // Every file is either still in new/ or stored.
    let stored = scalar(&pool, "SELECT count(*) FROM intake").await as usize;
    assert_eq!(stored + count_files(&md.join("new")), n);
    // A later run finishes the rest, once.
    let s2 = settings(&md);
    let r = app(s2, &store, inmail::pipeline::system_clock())
        .await
        .run_once()
        .await
        .expect("run once");
    assert_eq!(r.intake.done as usize, n);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM bounce_events").await as usize,
        n
    );
}

/// Three instances (each its own pool and lease connection) on one
/// database and one maildir, while mail keeps arriving: each message is
/// processed once, and only one instance fetches at a time.
#[sqlx::test(migrations = "./migrations")]
async fn three_instances_process_each_message_once(opts: PgPoolOptions, conn: PgConnectOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    let n = 600;
    let (store, pool) = setup(opts.clone(), conn.clone(), n, &md).await;
    let mut runs = Vec::new();
    let stop = CancellationToken::new();
    for _ in 0..3 {
        let p = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(conn.clone())
            .await
            .expect("pool");
        let st = Store::from_pool(p, StoreSettings::default());
        let mut s = settings(&md);
        s.daemon.batch_size = 25;
        let a = app(s, &st, inmail::pipeline::system_clock()).await;
        runs.push(tokio::spawn(a.run_until_stopped(stop.clone())));
    }
    for i in 0..n {
        deliver(&md, &format!("m{i:04}.host"), &dsn(i));
        if i % 100 == 99 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let mut done = 0;
    for _ in 0..600 {
        done = scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'done'").await;
        if done as usize == n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.cancel();
    for r in runs {
        r.await.expect("join").expect("run");
    }
    assert_eq!(done as usize, n);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM intake").await as usize,
        n
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM bounce_events").await as usize,
        n
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM processed_messages").await as usize,
        n
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(DISTINCT message_hash) FROM bounce_events"
        )
        .await as usize,
        n
    );
    assert_eq!(count_files(&md.join("new")), 0);
    assert_eq!(count_files(&md.join("cur")), n);
    let _ = store;
}
