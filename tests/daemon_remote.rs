//! The IMAP and POP3 sources of the daemon against a real Dovecot (TLS on a
//! certificate made at test time) and a real PostgreSQL (a fresh database
//! per test).
//!
//! ```sh
//! source scripts/lib/postgres.sh && pg_provision
//! source scripts/lib/dovecot.sh && dovecot_start "$PWD/target/dovecot"
//! cargo test --test daemon_remote
//! ```
//!
//! Every test uses its own Dovecot account (`bounces1`..`bounces12`, Maildir
//! emptied first); the restart test holds [`SERVER`] exclusively.

mod common;

use common::{dsn, register_deliveries};
use inmail::app::App;
use inmail::config::{
    ImapAfter, ImapMailbox, Mailbox, Pop3After, Pop3Mailbox, ServerSettings, Settings, TlsMode,
};
use inmail::pipeline::system_clock;
use inmail::source::remote::{RemoteError, RemoteSource};
use inmail::source::{FetchError, MailboxError};
use inmail::store::{Store, StoreSettings};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::os::unix::fs::{chown, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

/// Shared by every test, held exclusively while Dovecot restarts.
static SERVER: RwLock<()> = RwLock::const_new(());

const PASSWORD_VAR: &str = "INMAIL_TEST_MAIL_PASSWORD";

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the test Dovecot and PostgreSQL. Run them via \
             scripts/test.sh, or first `source scripts/lib/postgres.sh && pg_provision && \
             source scripts/lib/dovecot.sh && dovecot_start \"$PWD/target/dovecot\"` in the same shell"
        )
    })
}

fn port(name: &str) -> u16 {
    var(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a port"))
}

fn dovecot_dir() -> PathBuf {
    PathBuf::from(var("INMAIL_TEST_DOVECOT_DIR"))
}

#[derive(Clone, Copy)]
enum Via {
    Imaps,
    ImapStartTls,
    Pop3s,
    Pop3Stls,
}

/// A Dovecot account with an empty Maildir.
struct Account {
    user: String,
    maildir: PathBuf,
    uid: u32,
    gid: u32,
}

impl Account {
    fn new(n: u32) -> Self {
        let user = format!("bounces{n}");
        let home = dovecot_dir().join("home").join(&user);
        let owner = std::fs::metadata(&home).expect("account home exists (see dovecot.sh)");
        let maildir = home.join("Maildir");
        if maildir.exists() {
            std::fs::remove_dir_all(&maildir).expect("reset Maildir");
        }
        let account = Account {
            user,
            maildir,
            uid: owner.uid(),
            gid: owner.gid(),
        };
        for sub in ["", "cur", "new", "tmp"] {
            let dir = account.maildir.join(sub);
            std::fs::create_dir_all(&dir).expect("create Maildir");
            account.own(&dir);
        }
        account
    }

    fn own(&self, path: &Path) {
        chown(path, Some(self.uid), Some(self.gid)).expect("chown to dovecot");
    }

    /// Delivers like an MTA: write in `tmp/`, then rename into `new/`.
    fn deliver(&self, name: &str, message: &str) {
        let tmp = self.maildir.join("tmp").join(name);
        std::fs::write(&tmp, message).expect("write message");
        self.own(&tmp);
        std::fs::rename(&tmp, self.maildir.join("new").join(name)).expect("deliver message");
    }

    /// Messages in INBOX (`""`) or a Maildir++ folder (`"Processed"`).
    fn on_disk(&self, folder: &str) -> usize {
        let root = if folder.is_empty() {
            self.maildir.clone()
        } else {
            self.maildir.join(format!(".{folder}"))
        };
        ["new", "cur"]
            .iter()
            .map(|sub| {
                std::fs::read_dir(root.join(sub))
                    .map(|entries| entries.count())
                    .unwrap_or(0)
            })
            .sum()
    }

    fn mailbox(&self, name: &str, via: Via) -> Mailbox {
        let (imap, port, tls) = match via {
            Via::Imaps => (true, port("INMAIL_TEST_IMAPS_PORT"), TlsMode::Implicit),
            Via::ImapStartTls => (true, port("INMAIL_TEST_IMAP_PORT"), TlsMode::StartTls),
            Via::Pop3s => (false, port("INMAIL_TEST_POP3S_PORT"), TlsMode::Implicit),
            Via::Pop3Stls => (false, port("INMAIL_TEST_POP3_PORT"), TlsMode::StartTls),
        };
        var(PASSWORD_VAR);
        let server = ServerSettings {
            host: "localhost".into(),
            port,
            tls,
            username: self.user.clone(),
            password_env: Some(PASSWORD_VAR.into()),
            password_file: None,
            ca_file: Some(PathBuf::from(var("INMAIL_TEST_CA_FILE"))),
        };
        if imap {
            Mailbox::Imap(ImapMailbox {
                name: name.into(),
                server,
                folder: "INBOX".into(),
                after: ImapAfter::Seen,
                poll_interval_secs: Some(60),
            })
        } else {
            Mailbox::Pop3(Pop3Mailbox {
                name: name.into(),
                server,
                after: Pop3After::Delete,
                poll_interval_secs: Some(60),
            })
        }
    }
}

/// The IMAP settings of `m`.
fn imap_of(m: &mut Mailbox) -> &mut ImapMailbox {
    match m {
        Mailbox::Imap(m) => m,
        other => panic!("not an IMAP mailbox: {other:?}"),
    }
}

/// The server settings of an IMAP or POP3 `m`.
fn server(m: &mut Mailbox) -> &mut ServerSettings {
    match m {
        Mailbox::Imap(m) => &mut m.server,
        Mailbox::Pop3(m) => &mut m.server,
        other => panic!("not a remote mailbox: {other:?}"),
    }
}

fn set_poll_interval(m: &mut Mailbox, secs: u64) {
    match m {
        Mailbox::Imap(m) => m.poll_interval_secs = Some(secs),
        Mailbox::Pop3(m) => m.poll_interval_secs = Some(secs),
        Mailbox::Maildir(m) => m.poll_interval_secs = Some(secs),
    }
}

fn settings(mailbox: Mailbox) -> Settings {
    let mut s = Settings::default();
    s.daemon.batch_size = 2;
    s.daemon.workers = 2;
    s.daemon.shutdown_timeout_secs = 10;
    s.mailboxes.push(mailbox);
    s
}

async fn setup(opts: PgPoolOptions, conn: PgConnectOptions, n: usize) -> (Store, PgPool) {
    let pool = opts
        .max_connections(10)
        .connect_with(conn)
        .await
        .expect("pool");
    let store = Store::from_pool(pool.clone(), StoreSettings::default());
    register_deliveries(&store, 0..n).await;
    (store, pool)
}

async fn app(s: Settings, store: &Store) -> App {
    App::build_with_store(s, store.clone(), system_clock())
        .await
        .expect("build")
}

fn remote(app: &App) -> &RemoteSource {
    let source = &app.sources()[0];
    source
        .downcast_ref::<RemoteSource>()
        .unwrap_or_else(|| panic!("not a remote source: {source:?}"))
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

async fn wait_for(pool: &PgPool, sql: &str, want: i64, within: Duration) {
    let start = Instant::now();
    loop {
        let got = scalar(pool, sql).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{sql}: {got}, expected {want} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dovecot(script: &str) {
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lib/dovecot.sh");
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(r#"set -euo pipefail; source "$1"; {script} "$2""#))
        .arg("dovecot")
        .arg(lib)
        .arg(dovecot_dir())
        .status()
        .expect("run dovecot.sh");
    assert!(status.success(), "{script} failed");
}

/// Drains `source`, cutting the server session (`doveadm kick`) once the
/// second batch is stored, and returns the error the drain ends with.
async fn drain_cut_after_two_batches(
    source: &inmail::source::remote::RemoteSource,
    user: &str,
) -> inmail::source::remote::RemoteError {
    let batches = AtomicUsize::new(0);
    source
        .drain(&CancellationToken::new(), &|| {
            if batches.fetch_add(1, Ordering::SeqCst) == 1 {
                kick(user);
            }
        })
        .await
        .expect_err("the session was cut")
}

/// Ends `user`'s live sessions (like a dropped connection) and waits until
/// Dovecot has none left.
fn kick(user: &str) {
    let conf = dovecot_dir().join("dovecot.conf");
    let doveadm = |args: &[&str]| {
        std::process::Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .args(args)
            .output()
            .expect("run doveadm")
    };
    doveadm(&["kick", user]);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let who = doveadm(&["who", user]);
        if !String::from_utf8_lossy(&who.stdout).contains(user) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{user} still has sessions after doveadm kick");
}

/// Captures log lines (the tests run on one thread: `set_default` sees
/// the spawned tasks too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
    fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn imaps_run_once_stores_processes_then_moves(opts: PgPoolOptions, conn: PgConnectOptions) {
    let _server = SERVER.read().await;
    let (store, pool) = setup(opts, conn, 5).await;
    let account = Account::new(1);
    for i in 0..5 {
        account.deliver(&format!("m{i}.host"), &dsn(i));
    }
    let mut m = account.mailbox("imaps-move", Via::Imaps);
    imap_of(&mut m).after = ImapAfter::Move {
        to: "Processed".into(),
    };
    let s = app(settings(m.clone()), &store)
        .await
        .run_once()
        .await
        .expect("run once");
    assert_eq!((s.stored, s.duplicates, s.processed), (5, 0, 5));
    assert_eq!(s.intake.done, 5);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 5);
    assert_eq!(account.on_disk(""), 0, "INBOX is empty");
    assert_eq!(account.on_disk("Processed"), 5, "all moved to Processed");
    let cp = store
        .checkpoint("imaps-move")
        .await
        .expect("checkpoint")
        .expect("checkpoint set");
    assert_eq!(cp.last_uid, 5);
    let uids: Vec<String> = sqlx::query_scalar("SELECT uid FROM intake ORDER BY uid")
        .fetch_all(&pool)
        .await
        .expect("uids");
    assert!(
        uids.iter()
            .all(|u| u.starts_with(&format!("{}:", cp.uid_validity))),
        "{uids:?}"
    );
    // Nothing new the second time.
    let s = app(settings(m), &store)
        .await
        .run_once()
        .await
        .expect("second run");
    assert_eq!((s.stored, s.duplicates, s.processed), (0, 0, 0));
    assert_eq!(scalar(&pool, "SELECT count(*) FROM intake").await, 5);
}

#[sqlx::test(migrations = "./migrations")]
async fn imap_after_seen_uses_the_checkpoint_and_delete_expunges(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let _server = SERVER.read().await;
    let (store, pool) = setup(opts, conn, 10).await;
    let account = Account::new(2);
    for i in 0..3 {
        account.deliver(&format!("m{i}.host"), &dsn(i));
    }
    // after = "seen" (the default): the checkpoint alone says what was taken.
    let a = app(settings(account.mailbox("seen", Via::ImapStartTls)), &store).await;
    let never = CancellationToken::new();
    let d = a.sources()[0].drain(&never, &|| {}).await.expect("drain");
    assert_eq!((d.stored, d.duplicates), (3, 0));
    assert_eq!(account.on_disk(""), 3, "messages stay");
    let d = a.sources()[0].drain(&never, &|| {}).await.expect("drain");
    assert_eq!(
        (d.stored, d.duplicates),
        (0, 0),
        "checkpoint: nothing re-fetched"
    );
    account.deliver("m3.host", &dsn(3));
    let d = a.sources()[0].drain(&never, &|| {}).await.expect("drain");
    assert_eq!((d.stored, d.duplicates), (1, 0));
    // A lost checkpoint (or a new UIDVALIDITY) re-reads from the start,
    // and the store recognises every message.
    sqlx::query("DELETE FROM mailbox_checkpoints")
        .execute(&pool)
        .await
        .expect("forget checkpoint");
    let d = a.sources()[0].drain(&never, &|| {}).await.expect("drain");
    assert_eq!((d.stored, d.duplicates), (0, 4));
    sqlx::query("UPDATE mailbox_checkpoints SET uid_validity = uid_validity + 1")
        .execute(&pool)
        .await
        .expect("other validity");
    let d = a.sources()[0].drain(&never, &|| {}).await.expect("drain");
    assert_eq!((d.stored, d.duplicates), (0, 4));

    // after = "delete": gone from the server once stored.
    let account = Account::new(3);
    for i in 5..8 {
        account.deliver(&format!("m{i}.host"), &dsn(i));
    }
    let mut m = account.mailbox("delete", Via::Imaps);
    imap_of(&mut m).after = ImapAfter::Delete;
    let a = app(settings(m), &store).await;
    let d = a.sources()[0].drain(&never, &|| {}).await.expect("drain");
    assert_eq!((d.stored, d.duplicates), (3, 0));
    assert_eq!(account.on_disk(""), 0);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM intake").await, 7);
}

#[sqlx::test(migrations = "./migrations")]
async fn imap_starttls_idle_wakes_the_daemon(opts: PgPoolOptions, conn: PgConnectOptions) {
    let _server = SERVER.read().await;
    let (store, pool) = setup(opts, conn, 3).await;
    let account = Account::new(4);
    let logs = Logs::default();
    let w = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish(),
    );
    let mut m = account.mailbox("idle", Via::ImapStartTls);
    imap_of(&mut m).after = ImapAfter::Move { to: "Done".into() };
    set_poll_interval(&mut m, 600); // only IDLE can wake it in time
    let daemon = app(settings(m), &store).await;
    let stop = CancellationToken::new();
    let run = tokio::spawn(daemon.run_until_stopped(stop.clone()));
    let start = Instant::now();
    while logs.count("waiting for new mail (idle)") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never idled: {}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..3 {
        account.deliver(&format!("m{i}.host"), &dsn(i));
        wait_for(
            &pool,
            "SELECT count(*) FROM intake WHERE status = 'done'",
            i as i64 + 1,
            Duration::from_secs(10),
        )
        .await;
    }
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 3);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("stops within the deadline")
        .expect("join")
        .expect("run");
    assert_eq!(account.on_disk(""), 0);
    assert_eq!(account.on_disk("Done"), 3);
    assert_eq!(
        logs.count("remote: connected"),
        1,
        "one session: {}",
        logs.text()
    );
    assert!(!logs.text().contains(&var(PASSWORD_VAR)), "password logged");
}

#[sqlx::test(migrations = "./migrations")]
async fn pop3s_run_once_deletes_after_commit(opts: PgPoolOptions, conn: PgConnectOptions) {
    let _server = SERVER.read().await;
    let (store, pool) = setup(opts, conn, 5).await;
    let account = Account::new(5);
    for i in 0..5 {
        account.deliver(&format!("m{i}.host"), &dsn(i));
    }
    let m = account.mailbox("pop3s", Via::Pop3s);
    let s = app(settings(m.clone()), &store)
        .await
        .run_once()
        .await
        .expect("run once");
    assert_eq!((s.stored, s.duplicates, s.processed), (5, 0, 5));
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 5);
    assert_eq!(account.on_disk(""), 0, "deleted at QUIT");
    let s = app(settings(m), &store)
        .await
        .run_once()
        .await
        .expect("second run");
    assert_eq!((s.stored, s.duplicates), (0, 0));
}

#[sqlx::test(migrations = "./migrations")]
async fn pop3_stls_dropped_before_quit_deletes_nothing(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let _server = SERVER.read().await;
    let (store, pool) = setup(opts, conn, 5).await;
    let account = Account::new(6);
    for i in 0..5 {
        account.deliver(&format!("m{i}.host"), &dsn(i));
    }
    let a = app(settings(account.mailbox("pop3", Via::Pop3Stls)), &store).await;
    let source = remote(&a);
    // Batches of 2: the first batch is stored and DELE'd, the second stored,
    // then the connection drops before its DELEs and before QUIT.
    let err = drain_cut_after_two_batches(source, &account.user).await;
    assert!(err.is_outage(), "{err}");
    assert!(err.to_string().contains("mailbox pop3"), "{err}");
    assert_eq!(account.on_disk(""), 5, "no QUIT: nothing deleted");
    assert_eq!(scalar(&pool, "SELECT count(*) FROM intake").await, 4);
    // The next drain finds the stored ones as duplicates and deletes all.
    let d = source
        .drain(&CancellationToken::new(), &|| {})
        .await
        .expect("drain");
    assert_eq!((d.stored, d.duplicates), (1, 4));
    assert_eq!(account.on_disk(""), 0);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM intake").await, 5);
    while a.pipeline().process_once().await.expect("process") > 0 {}
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 5);
}

#[sqlx::test(migrations = "./migrations")]
async fn imap_connection_cut_mid_drain_neither_skips_nor_repeats(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let _server = SERVER.read().await;
    let (store, pool) = setup(opts, conn, 5).await;
    let account = Account::new(12);
    for i in 0..5 {
        account.deliver(&format!("m{i}.host"), &dsn(i));
    }
    let mut m = account.mailbox("imap-cut", Via::ImapStartTls);
    imap_of(&mut m).after = ImapAfter::Move {
        to: "Processed".into(),
    };
    let a = app(settings(m), &store).await;
    let source = remote(&a);
    // Batches of 2: the first is stored, moved and checkpointed; the second
    // is stored, then the connection is cut before its MOVE.
    let err = drain_cut_after_two_batches(source, &account.user).await;
    assert!(err.is_outage(), "{err}");
    assert_eq!(scalar(&pool, "SELECT count(*) FROM intake").await, 4);
    assert_eq!(
        account.on_disk("Processed"),
        2,
        "only the first batch moved"
    );
    assert_eq!(account.on_disk(""), 3);
    let cp = store
        .checkpoint("imap-cut")
        .await
        .expect("cp")
        .expect("set");
    assert_eq!(cp.last_uid, 2);
    // Reconnect: the second batch comes again as duplicates, then the rest.
    let d = source
        .drain(&CancellationToken::new(), &|| {})
        .await
        .expect("drain");
    assert_eq!((d.stored, d.duplicates), (1, 2));
    assert_eq!(account.on_disk(""), 0);
    assert_eq!(account.on_disk("Processed"), 5);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM intake").await, 5);
    while a.pipeline().process_once().await.expect("process") > 0 {}
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 5);
}

#[sqlx::test(migrations = "./migrations")]
async fn nothing_is_acknowledged_without_commit(opts: PgPoolOptions, conn: PgConnectOptions) {
    let _server = SERVER.read().await;
    let (store, pool) = setup(opts, conn, 6).await;
    let imap = Account::new(7);
    let pop3 = Account::new(8);
    for i in 0..3 {
        imap.deliver(&format!("m{i}.host"), &dsn(i));
        pop3.deliver(&format!("m{i}.host"), &dsn(i + 3));
    }
    let mut m = imap.mailbox("imap-move", Via::Imaps);
    imap_of(&mut m).after = ImapAfter::Move {
        to: "Processed".into(),
    };
    let imap_app = app(settings(m), &store).await;
    let pop3_app = app(settings(pop3.mailbox("pop3-del", Via::Pop3s)), &store).await;
    // The store step fails: the intake table is gone.
    sqlx::query("ALTER TABLE intake RENAME TO intake_away")
        .execute(&pool)
        .await
        .expect("rename");
    let never = CancellationToken::new();
    for (a, account) in [(&imap_app, &imap), (&pop3_app, &pop3)] {
        let err = a.sources()[0]
            .drain(&never, &|| {})
            .await
            .expect_err("store fails");
        assert!(
            err.downcast_ref::<RemoteError>()
                .is_some_and(RemoteError::is_store),
            "{err}"
        );
        assert_eq!(account.on_disk(""), 3, "{err}: still in the mailbox");
    }
    assert_eq!(imap.on_disk("Processed"), 0);
    sqlx::query("ALTER TABLE intake_away RENAME TO intake")
        .execute(&pool)
        .await
        .expect("rename back");
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM mailbox_checkpoints").await,
        0
    );
    for (a, account) in [(&imap_app, &imap), (&pop3_app, &pop3)] {
        let d = a.sources()[0].drain(&never, &|| {}).await.expect("drain");
        assert_eq!(d.stored, 3);
        assert_eq!(account.on_disk(""), 0);
    }
    assert_eq!(imap.on_disk("Processed"), 3);
}

#[sqlx::test(migrations = "./migrations")]
async fn server_restart_during_the_loop_is_survived(opts: PgPoolOptions, conn: PgConnectOptions) {
    let _server = SERVER.write().await;
    let (store, pool) = setup(opts, conn, 4).await;
    let imap = Account::new(9);
    let pop3 = Account::new(10);
    let logs = Logs::default();
    let w = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish(),
    );
    let mut m = imap.mailbox("imap-restart", Via::Imaps);
    imap_of(&mut m).after = ImapAfter::Delete;
    set_poll_interval(&mut m, 600);
    let mut p = pop3.mailbox("pop3-restart", Via::Pop3s);
    set_poll_interval(&mut p, 1);
    let mut s = settings(m);
    s.mailboxes.push(p);
    let daemon = app(s, &store).await;
    let stop = CancellationToken::new();
    let run = tokio::spawn(daemon.run_until_stopped(stop.clone()));
    imap.deliver("m0.host", &dsn(0));
    pop3.deliver("m1.host", &dsn(1));
    let done = "SELECT count(*) FROM intake WHERE status = 'done'";
    wait_for(&pool, done, 2, Duration::from_secs(10)).await;

    dovecot("dovecot_restart");
    imap.deliver("m2.host", &dsn(2));
    pop3.deliver("m3.host", &dsn(3));
    wait_for(&pool, done, 4, Duration::from_secs(30)).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("stops within the deadline")
        .expect("join")
        .expect("run");
    assert_eq!(imap.on_disk(""), 0);
    assert_eq!(pop3.on_disk(""), 0);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 4);
    let text = logs.text();
    // The IMAP session (idling) sees the restart; logged once, then recovered.
    assert_eq!(
        logs.count("source imap-restart is down"),
        1,
        "one line per state change: {text}"
    );
    assert!(
        text.contains("source imap-restart recovered"),
        "recovery logged: {text}"
    );
    assert_eq!(logs.count("remote: connected"), 2, "{text}");
}

#[sqlx::test(migrations = "./migrations")]
async fn unverified_certificate_and_bad_settings_are_refused(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let _server = SERVER.read().await;
    let (store, _pool) = setup(opts, conn, 0).await;
    let account = Account::new(11);
    for via in [Via::Imaps, Via::ImapStartTls, Via::Pop3s, Via::Pop3Stls] {
        let mut m = account.mailbox("untrusted", via);
        server(&mut m).ca_file = None; // the test CA is not a public one
        let err = App::build_with_store(settings(m), store.clone(), system_clock())
            .await
            .err()
            .expect("refused");
        let text = format!("{err:#}");
        assert!(text.contains("mailbox untrusted"), "{text}");
        let cause = err
            .downcast_ref::<FetchError>()
            .and_then(FetchError::downcast_ref::<RemoteError>)
            .and_then(RemoteError::mailbox_error);
        assert!(
            matches!(cause, Some(MailboxError::CertificateRejected { .. })),
            "{text}"
        );
    }
    // Wrong password: refused at start, naming the mailbox, never the password.
    std::env::set_var("INMAIL_TEST_WRONG_PASSWORD", "not-the-password");
    let mut m = account.mailbox("wrongpw", Via::Imaps);
    server(&mut m).password_env = Some("INMAIL_TEST_WRONG_PASSWORD".into());
    let err = App::build_with_store(settings(m), store.clone(), system_clock())
        .await
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("mailbox wrongpw") && text.contains("refused"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");

    // What needs the machine (a password, a CA file) is checked when the
    // source is built ...
    let daemon = Settings::default().daemon;
    let check = |m: Mailbox, key: &str| {
        let err = inmail::source::build(&m, &daemon).err().expect("invalid");
        let text = err.to_string();
        assert!(
            text.contains(&format!("mailbox {}: {key}:", m.name())),
            "{key}: {text}"
        );
    };
    let mut m = account.mailbox("nopw", Via::Imaps);
    server(&mut m).password_env = Some("INMAIL_TEST_NO_SUCH_VAR".into());
    check(m, "password_env");
    let mut m = account.mailbox("pwfile", Via::Imaps);
    server(&mut m).password_env = None;
    server(&mut m).password_file = Some("/nonexistent/pw".into());
    check(m, "password_file");
    let mut m = account.mailbox("badca", Via::Imaps);
    server(&mut m).ca_file = Some("/nonexistent/ca.pem".into());
    check(m, "ca_file");
    // ... what the text alone decides, when the settings are read.
    let dir = tempfile::tempdir().expect("tempdir");
    let check_read = |name: &str, kind: &str, keys: &str, key: &str| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "[[mailbox]]\nname = \"{name}\"\nkind = \"{kind}\"\nusername = \"u\"\n\
                 password_env = \"{PASSWORD_VAR}\"\n{keys}"
            ),
        )
        .expect("write settings");
        let err = Settings::load(Some(&file)).expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains(&format!("mailbox {name}: {key}:")),
            "{key}: {text}"
        );
    };
    check_read(
        "plain",
        "imap",
        "host = \"mail.example.com\"\ntls = \"none\"\n",
        "tls",
    );
    check_read("nohost", "imap", "host = \" \"\n", "host");
    check_read(
        "pop3move",
        "pop3",
        "host = \"localhost\"\nafter = \"move\"\n",
        "after",
    );
    check_read(
        "nomoveto",
        "imap",
        "host = \"localhost\"\nafter = \"move\"\n",
        "move_to",
    );
    // A password file: first line only.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{}\nignored\n", var(PASSWORD_VAR))).expect("write pw");
    let mut m = account.mailbox("pwfile-ok", Via::Pop3s);
    server(&mut m).password_env = None;
    server(&mut m).password_file = Some(pw);
    let s = inmail::source::build(&m, &daemon)
        .unwrap_or_else(|e| panic!("valid: {e}"))
        .into_source(store.clone(), system_clock());
    let s = s.downcast_ref::<RemoteSource>().expect("a remote source");
    s.check().await.expect("login with the file's password");
}
