//! Crash test: the real `inmail run` binary is killed with SIGKILL at random
//! moments 20 times while draining a maildir of correlated bounces, then
//! restarted until drained. At the end every message must have had exactly
//! one set of effects, compared with a reference database that processed
//! the same corpus in one uninterrupted pass.
//!
//! N = 5,000 by default (`INMAIL_CRASH_N`), `INMAIL_CRASH_KILLS` = 20; about
//! 10 s on a 2-core machine, so it runs with the suite. With its log:
//!   scripts/crash-test.sh   (cargo test --release --test crash -- --nocapture)

mod common;

use common::*;
use inmail::store::{Store, StoreSettings};
use sqlx::PgPool;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_inmail");

fn config(dir: &Path, url: &str, maildir: &Path) -> std::path::PathBuf {
    config_with(dir, url, maildir, 50)
}

/// Small batches make the drain last long enough for every kill to land
/// mid-work, even with a release build.
fn config_with(dir: &Path, url: &str, maildir: &Path, batch: usize) -> std::path::PathBuf {
    let cfg = dir.join("inmail.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[database]
url = "{url}"
max_connections = 6

[daemon]
workers = 2
batch_size = {batch}
shutdown_timeout_secs = 5
poll_interval_secs = 1

[log]
level = "warn"

[[mailbox]]
name = "bounces"
kind = "maildir"
path = "{}"
"#,
            maildir.display(),
        ),
    )
    .expect("write config");
    cfg
}

async fn prepare(prefix: &str, dir: &Path, n: usize) -> (String, std::path::PathBuf, PgPool) {
    let url = fresh_database(prefix).await;
    let pool = PgPool::connect(&url).await.expect("connect");
    let store = Store::from_pool(pool.clone(), StoreSettings::default());
    register_deliveries(&store, 0..n).await;
    let md = dir.join("Maildir");
    make_maildir(&md);
    for i in 0..n {
        std::fs::write(md.join("new").join(format!("{i:08}.M{i}P1.bench")), dsn(i))
            .expect("write message");
    }
    let cfg = config_with(dir, &url, &md, 10);
    (url, cfg, pool)
}

fn run_once(cfg: &Path) {
    let out = Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(cfg)
        .env_remove("INMAIL__DATABASE__URL")
        .stderr(Stdio::inherit())
        .output()
        .expect("run --once");
    assert!(out.status.success(), "run --once failed: {out:?}");
    eprintln!(
        "run --once: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

async fn rows(pool: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sql).fetch_all(pool).await.expect(sql)
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_20_times_while_draining() {
    let n: usize = std::env::var("INMAIL_CRASH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let kills: usize = std::env::var("INMAIL_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let work = tempfile::tempdir().expect("tempdir");
    let crash_dir = work.path().join("crash");
    let ref_dir = work.path().join("reference");
    std::fs::create_dir_all(&crash_dir).expect("dir");
    std::fs::create_dir_all(&ref_dir).expect("dir");
    let (url, cfg, pool) = prepare("inmail_crash", &crash_dir, n).await;
    let (ref_url, ref_cfg, ref_pool) = prepare("inmail_crash_ref", &ref_dir, n).await;

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    eprintln!("seed {seed}");
    let mut rng = Lcg(seed);
    let started = Instant::now();
    let mut killed_mid_work = 0;
    for k in 0..kills {
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .env_remove("INMAIL__DATABASE__URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start inmail run");
        let ms = rng.range(30, 200);
        std::thread::sleep(Duration::from_millis(ms));
        let before = scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'done'").await;
        child.kill().expect("SIGKILL"); // SIGKILL on Unix
        let _ = child.wait();
        let queued = scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'queued'").await;
        let left = count_files(&crash_dir.join("Maildir/new"));
        if queued > 0 || left > 0 {
            killed_mid_work += 1;
        }
        eprintln!(
            "kill {:2} after {ms:4} ms: {before} done, {queued} queued, {left} files left in new/",
            k + 1
        );
    }
    // Restart and let it drain.
    run_once(&cfg);
    eprintln!(
        "crash run: {kills} kills ({killed_mid_work} with work in hand), drained in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    run_once(&ref_cfg);

    let n64 = n as i64;
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM intake").await,
        n64,
        "no intake row lost"
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'done'").await,
        n64
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM processed_messages").await,
        n64
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM bounce_events WHERE kind = 'bounce'"
        )
        .await,
        n64,
        "one event per recipient (one recipient per message)"
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM (SELECT message_hash FROM bounce_events GROUP BY 1 HAVING count(*) <> 1) d"
        )
        .await,
        0,
        "exactly one set of effects per message"
    );
    // What one pass gives: addresses, delivery logs, rule hits.
    for sql in [
        "SELECT address || ' ' || status || ' ' || error_count FROM addresses ORDER BY address",
        "SELECT address || ' ' || status || ' ' || retry_count || ' ' || coalesce(failure_type, '-') FROM delivery_logs ORDER BY address",
        "SELECT id || ' ' || hit_count FROM qualification_rules ORDER BY id",
        "SELECT domain || ' ' || category || ' ' || count FROM domain_sender_failures ORDER BY 1",
    ] {
        let got = rows(&pool, sql).await;
        let want = rows(&ref_pool, sql).await;
        assert_eq!(got.len(), want.len(), "{sql}");
        assert!(got == want, "{sql}: differs from the single-pass reference");
    }
    assert_eq!(count_files(&crash_dir.join("Maildir/new")), 0);
    assert_eq!(count_files(&crash_dir.join("Maildir/cur")), n);
    eprintln!("crash test passed: {n} messages, each with exactly one set of effects");
    pool.close().await;
    ref_pool.close().await;
    drop_database(&url).await;
    drop_database(&ref_url).await;
}

/// Three `inmail run` processes on one database and one maildir while mail
/// keeps arriving: each message processed once; SIGTERM stops each with
/// exit code 0 within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_one_maildir() {
    let n = 3000usize;
    let work = tempfile::tempdir().expect("tempdir");
    let url = fresh_database("inmail_three").await;
    let pool = PgPool::connect(&url).await.expect("connect");
    register_deliveries(
        &Store::from_pool(pool.clone(), StoreSettings::default()),
        0..n,
    )
    .await;
    let md = work.path().join("Maildir");
    make_maildir(&md);
    for i in 0..n / 2 {
        deliver(&md, &format!("{i:08}.first"), &dsn(i));
    }
    let cfg = config(work.path(), &url, &md);
    let mut children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(BIN)
                .args(["run", "--config"])
                .arg(&cfg)
                .env_remove("INMAIL__DATABASE__URL")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start inmail run")
        })
        .collect();
    for i in n / 2..n {
        deliver(&md, &format!("{i:08}.second"), &dsn(i));
        if i % 250 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut done = 0;
    for _ in 0..1200 {
        done = scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'done'").await;
        if done as usize == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in &children {
        let st = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(st.success());
    }
    let t = Instant::now();
    for c in &mut children {
        let status = c.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "exit code after SIGTERM");
    }
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "stopped within the deadline"
    );
    let n64 = n as i64;
    assert_eq!(done, n64);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM intake").await, n64);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM processed_messages").await,
        n64
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM bounce_events").await,
        n64
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(DISTINCT message_hash) FROM bounce_events"
        )
        .await,
        n64
    );
    assert_eq!(count_files(&md.join("new")), 0);
    assert_eq!(count_files(&md.join("cur")), n);
    eprintln!("three processes: {n} messages, each processed once; all exited 0 on SIGTERM");
    pool.close().await;
    drop_database(&url).await;
}
