//! Peak memory against an IMAP server that floods a FETCH with unsolicited
//! responses carrying huge literals (20 of 48 MB by default, as in the
//! issue): what the client keeps per command is bounded, so the process
//! stays under the 150 MiB target. A measurement, not a unit test: it runs
//! alone in this binary (the peak RSS, VmHWM, is the process's) and only
//! when asked, through `scripts/bench-imap-flood.sh`.
//!
//! FLOOD_COUNT=20 FLOOD_MB=48 cargo test --test reliability_imap_memory -- --ignored --nocapture

mod common;
mod fake_servers;

use fake_servers::FakeMessage;
use inmail::app::App;
use inmail::config::{ImapAfter, ImapMailbox, Mailbox, ServerSettings, Settings, TlsMode};
use inmail::pipeline::system_clock;
use inmail::source::remote::RemoteSource;
use inmail::store::{Store, StoreSettings};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[ignore = "a measurement: run by scripts/bench-imap-flood.sh"]
#[sqlx::test(migrations = "./migrations")]
async fn a_flood_of_unsolicited_imap_literals_stays_under_the_memory_target(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let count = env_number("FLOOD_COUNT", 20);
    let size = env_number("FLOOD_MB", 48) * 1024 * 1024;
    let pool = opts.connect_with(conn).await.expect("pool");
    let store = Store::from_pool(pool.clone(), StoreSettings::default());
    let server = fake_servers::imap(
        pool.clone(),
        vec![FakeMessage::new("1", common::dsn(0))],
        count,
        size,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "x\n").expect("pw");
    let mut s = Settings::default();
    s.mailboxes.push(Mailbox::Imap(ImapMailbox {
        name: "flood".into(),
        server: ServerSettings {
            host: "127.0.0.1".into(),
            port: server.port,
            tls: TlsMode::None,
            username: "u".into(),
            password_env: None,
            password_file: Some(pw),
            ca_file: None,
        },
        folder: "INBOX".into(),
        after: ImapAfter::Delete,
        poll_interval_secs: None,
    }));
    let before = peak_rss_mib();
    let app = App::build_with_store(s, store, system_clock())
        .await
        .expect("build");
    let Some(source) = app.sources()[0].downcast_ref::<RemoteSource>() else {
        panic!("not remote")
    };
    let drained = source
        .drain(&tokio_util::sync::CancellationToken::new(), &|| {})
        .await
        .expect("drain");
    let peak = peak_rss_mib();
    println!(
        "imap flood: {count} unsolicited literals of {} MB before one FETCH: stored {}, peak RSS {peak} MiB (before the drain {before} MiB)",
        size / (1024 * 1024),
        drained.stored
    );
    assert_eq!(drained.stored, 1);
    assert!(peak <= 150, "peak RSS {peak} MiB over the 150 MiB target");
}
