//! Hostile mail servers against a real PostgreSQL: the fake servers of
//! `tests/fake_servers` do what a real Dovecot will not (a UIDL listed twice
//! or reused, a message dribbled at one byte a second or never ending,
//! refused, huge unsolicited responses). Each test asserts what a user
//! cares about: every good message stored and processed exactly once,
//! nothing acknowledged before it is committed, the log line that explains.
//!
//! export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
//! cargo test --test reliability_remote

mod common;
mod fake_servers;

use common::{dsn, register_deliveries};
use fake_servers::{FakeMessage, FakeServer, Logs, Send};
use inmail::app::App;
use inmail::config::{
    ImapAfter, ImapMailbox, Mailbox, Pop3After, Pop3Mailbox, ServerSettings, Settings, TlsMode,
};
use inmail::pipeline::system_clock;
use inmail::source::remote::RemoteSource;
use inmail::store::{Store, StoreSettings};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct Env {
    store: Store,
    pool: PgPool,
    _dir: tempfile::TempDir,
    password_file: std::path::PathBuf,
}

async fn env(opts: PgPoolOptions, conn: PgConnectOptions, n: usize) -> Env {
    let pool = opts
        .max_connections(10)
        .connect_with(conn)
        .await
        .expect("pool");
    let store = Store::from_pool(pool.clone(), StoreSettings::default());
    register_deliveries(&store, 0..n).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "secret\n").expect("password file");
    Env {
        store,
        pool,
        _dir: dir,
        password_file,
    }
}

impl Env {
    fn settings(&self, kind: MailboxKind, server: &FakeServer) -> Settings {
        let mut s = Settings::default();
        s.daemon.batch_size = 2;
        s.daemon.workers = 1;
        s.mailboxes
            .push(self.mailbox(kind, &format!("fake{}", server.port), server.port));
        s
    }

    /// A mailbox on the fake server at `port` (IMAP: `after = "delete"`).
    fn mailbox(&self, kind: MailboxKind, name: &str, port: u16) -> Mailbox {
        let server = ServerSettings {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            username: "bounces".into(),
            password_env: None,
            password_file: Some(self.password_file.clone()),
            ca_file: None,
        };
        match kind {
            MailboxKind::Imap => Mailbox::Imap(ImapMailbox {
                name: name.into(),
                server,
                folder: "INBOX".into(),
                after: ImapAfter::Delete,
                poll_interval_secs: Some(60),
            }),
            MailboxKind::Pop3 => Mailbox::Pop3(Pop3Mailbox {
                name: name.into(),
                server,
                after: Pop3After::Delete,
                poll_interval_secs: Some(60),
            }),
        }
    }

    async fn app(&self, s: Settings) -> App {
        App::build_with_store(s, self.store.clone(), system_clock())
            .await
            .expect("build")
    }

    async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect(sql)
    }
}

/// The two kinds of remote mailbox.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MailboxKind {
    Imap,
    Pop3,
}

fn remote(app: &App) -> RemoteSource {
    let source = &app.sources()[0];
    source
        .downcast_ref::<RemoteSource>()
        .unwrap_or_else(|| panic!("not a remote source: {source:?}"))
        .clone()
}

/// A bounce for user{i} with `padding` bytes of returned original after
/// the report (where a real bounce carries the attachments).
fn big_dsn(i: usize, padding: usize) -> String {
    let mut m = dsn(i);
    let end = m.rfind("--=_b").expect("closing boundary");
    let mut pad = String::with_capacity(padding + padding / 70 * 2);
    pad.push_str("--=_b");
    pad.push_str(&i.to_string());
    pad.push_str("\r\nContent-Type: application/octet-stream\r\n\r\n");
    while pad.len() < padding {
        pad.push_str("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5\r\n");
    }
    m.insert_str(end, &pad);
    m
}

#[sqlx::test(migrations = "./migrations")]
async fn a_uidl_listed_twice_with_different_content_stores_both_messages(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let e = env(opts, conn, 3).await;
    let server = fake_servers::pop3(
        e.pool.clone(),
        vec![
            FakeMessage::new("same-uidl", dsn(0)),
            FakeMessage::new("same-uidl", dsn(1)),
            FakeMessage::new("other", dsn(2)),
        ],
    )
    .await;
    let logs = Logs::global();
    let s = e
        .app(e.settings(MailboxKind::Pop3, &server))
        .await
        .run_once()
        .await
        .expect("run");
    assert_eq!((s.stored, s.duplicates), (3, 0), "{s:?}");
    assert!(s.failed_sources.is_empty(), "{s:?}");
    assert_eq!(
        e.scalar("SELECT count(*) FROM intake WHERE status = 'done'")
            .await,
        3
    );
    assert_eq!(
        e.scalar("SELECT count(DISTINCT address) FROM bounce_events")
            .await,
        3
    );
    assert!(server.remaining().is_empty(), "all deleted after commit");
    assert_eq!(server.violations(), Vec::<String>::new());
    assert!(server.commands().last().is_some_and(|c| c == "QUIT"));
    assert!(
        logs.lines_of(&format!("fake{}", server.port))
            .contains("reused a uid"),
        "the reuse is logged: {}",
        logs.lines_of(&format!("fake{}", server.port))
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_uidl_reused_after_a_delete_is_a_new_message(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let e = env(opts, conn, 2).await;
    let server = fake_servers::pop3(e.pool.clone(), vec![FakeMessage::new("1", dsn(0))]).await;
    let app = e.app(e.settings(MailboxKind::Pop3, &server)).await;
    let source = remote(&app);
    let cancel = CancellationToken::new();
    let first = source.drain(&cancel, &|| {}).await.expect("drain");
    assert_eq!((first.stored, first.duplicates), (1, 0));
    assert!(server.remaining().is_empty());
    // The server hands out UIDL "1" again, for a new message.
    server.set_messages(vec![FakeMessage::new("1", dsn(1))]);
    let second = source.drain(&cancel, &|| {}).await.expect("drain");
    assert_eq!(
        (second.stored, second.duplicates),
        (1, 0),
        "not a duplicate"
    );
    assert!(server.remaining().is_empty());
    assert_eq!(server.violations(), Vec::<String>::new());
    assert_eq!(
        e.scalar("SELECT count(*) FROM intake WHERE mailbox LIKE 'fake%' AND uid = '1'")
            .await,
        2
    );
    // The same content under another UIDL is a duplicate: deleted, stored once.
    server.set_messages(vec![FakeMessage::new("9", dsn(1))]);
    let third = source.drain(&cancel, &|| {}).await.expect("drain");
    assert_eq!((third.stored, third.duplicates), (0, 1));
    assert!(server.remaining().is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn a_pop3_message_over_the_size_bound_is_stored_truncated_and_the_rest_committed(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let e = env(opts, conn, 3).await;
    let big = big_dsn(1, 300_000);
    let server = fake_servers::pop3(
        e.pool.clone(),
        vec![
            FakeMessage::new("a", dsn(0)),
            FakeMessage::new("big", big.clone()),
            FakeMessage::new("c", dsn(2)),
        ],
    )
    .await;
    let mut settings = e.settings(MailboxKind::Pop3, &server);
    settings.daemon.max_message_bytes = 64 * 1024;
    let logs = Logs::global();
    let s = e.app(settings).await.run_once().await.expect("run");
    let text = logs.lines_of(&format!("fake{}", server.port));
    assert!(
        text.contains("stored truncated") && text.contains("\"uid\":\"big\""),
        "the truncation is logged: {text}"
    );
    assert_eq!((s.stored, s.duplicates, s.skipped), (3, 0, 0), "{s:?}");
    assert!(server.remaining().is_empty(), "all three deleted");
    assert_eq!(server.violations(), Vec::<String>::new());
    assert!(server.commands().last().is_some_and(|c| c == "QUIT"));
    let (kept, original): (i64, Option<i64>) = sqlx::query_as(
        "SELECT octet_length(raw)::int8, original_size FROM intake WHERE uid = 'big'",
    )
    .fetch_one(&e.pool)
    .await
    .expect("row");
    assert_eq!((kept, original), (64 * 1024, Some(big.len() as i64)));
    // The report is in the first bytes: the bounce still counts.
    assert_eq!(
        e.scalar("SELECT count(*) FROM bounce_events WHERE address = 'user1@d1.example'")
            .await,
        1
    );
    // Fetched again (a crash before QUIT), it is a duplicate: the hash is
    // the whole message's.
    server.set_messages(vec![FakeMessage::new("big", big)]);
    let again = remote(&e.app(e.settings(MailboxKind::Pop3, &server)).await)
        .drain(&CancellationToken::new(), &|| {})
        .await
        .expect("drain");
    assert_eq!((again.stored, again.duplicates), (0, 1));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_dribbling_pop3_server_is_cut_by_the_message_deadline_and_the_rest_committed(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let e = env(opts, conn, 4).await;
    let server = fake_servers::pop3(
        e.pool.clone(),
        vec![
            FakeMessage::new("a", dsn(0)),
            FakeMessage::new("slow", dsn(1)).sent(Send::Dribble(Duration::from_millis(200))),
            FakeMessage::new("endless", dsn(2)).sent(Send::Endless),
            FakeMessage::new("refused", dsn(3)).sent(Send::Refuse),
            FakeMessage::new("d", dsn(3) + "\r\n"),
        ],
    )
    .await;
    let mut settings = e.settings(MailboxKind::Pop3, &server);
    settings.daemon.message_timeout_secs = 1;
    let logs = Logs::global();
    let s = e.app(settings).await.run_once().await.expect("run");
    assert_eq!((s.stored, s.skipped), (2, 3), "{s:?}");
    assert!(s.failed_sources.is_empty(), "{s:?}");
    let mut left = server.remaining();
    left.sort();
    assert_eq!(
        left,
        ["endless", "refused", "slow"],
        "only the bad ones stay"
    );
    assert_eq!(server.violations(), Vec::<String>::new());
    assert!(server.commands().last().is_some_and(|c| c == "QUIT"));
    let text = logs.lines_of(&format!("fake{}", server.port));
    assert!(text.contains("mail server stalled on a message"), "{text}");
    assert!(
        text.contains("\"uid\":\"slow\"") && text.contains("\"uid\":\"endless\""),
        "{text}"
    );
    assert!(text.contains("message could not be fetched"), "{text}");
}

#[sqlx::test(migrations = "./migrations")]
async fn shutdown_cuts_a_stalled_fetch(opts: PgPoolOptions, conn: PgConnectOptions) {
    let e = env(opts, conn, 2).await;
    let server = fake_servers::pop3(
        e.pool.clone(),
        vec![
            FakeMessage::new("a", dsn(0)),
            FakeMessage::new("slow", dsn(1)).sent(Send::Dribble(Duration::from_secs(1))),
        ],
    )
    .await;
    let source = remote(&e.app(e.settings(MailboxKind::Pop3, &server)).await);
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.cancel();
    });
    // The message deadline is 300 s: only the cancellation can end this.
    let drained = tokio::time::timeout(Duration::from_secs(60), source.drain(&cancel, &|| {}))
        .await
        .expect("the drain returns when cancelled")
        .expect("drain");
    assert_eq!(drained.stored, 1, "the batch in hand is committed");
    assert_eq!(server.violations(), Vec::<String>::new());
}

#[sqlx::test(migrations = "./migrations")]
async fn unsolicited_imap_responses_are_not_kept_and_every_message_is_taken(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let e = env(opts, conn, 3).await;
    let server = fake_servers::imap(
        e.pool.clone(),
        vec![
            FakeMessage::new("1", dsn(0)),
            FakeMessage::new("2", dsn(1)),
            FakeMessage::new("3", dsn(2)),
        ],
        5,
        3 * 1024 * 1024,
    )
    .await;
    let mut settings = e.settings(MailboxKind::Imap, &server);
    settings.daemon.max_message_bytes = 1024 * 1024;
    let s = e.app(settings).await.run_once().await.expect("run");
    assert_eq!((s.stored, s.duplicates), (3, 0), "{s:?}");
    assert_eq!(
        e.scalar("SELECT count(DISTINCT address) FROM bounce_events")
            .await,
        3
    );
    assert_eq!(server.violations(), Vec::<String>::new());
    // Each stored body is the message itself, not an unsolicited literal.
    assert_eq!(
        e.scalar("SELECT count(*) FROM intake WHERE original_size IS NOT NULL")
            .await,
        0
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_dribbling_imap_fetch_is_set_aside_without_moving_the_checkpoint_past_it(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let e = env(opts, conn, 3).await;
    let server = fake_servers::imap(
        e.pool.clone(),
        vec![
            FakeMessage::new("1", dsn(0)),
            FakeMessage::new("2", dsn(1)).sent(Send::Dribble(Duration::from_millis(300))),
            FakeMessage::new("3", dsn(2)),
        ],
        0,
        0,
    )
    .await;
    let mut settings = e.settings(MailboxKind::Imap, &server);
    settings.daemon.message_timeout_secs = 1;
    let s = e.app(settings).await.run_once().await.expect("run");
    assert_eq!((s.stored, s.skipped), (2, 1), "{s:?}");
    assert_eq!(server.violations(), Vec::<String>::new());
    // UID 2 is not taken: the checkpoint stays below it, so a restart
    // fetches it again.
    assert_eq!(
        e.scalar("SELECT last_uid FROM mailbox_checkpoints WHERE mailbox LIKE 'fake%'")
            .await,
        1
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn run_once_drains_every_mailbox_when_one_server_is_dead(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let e = env(opts, conn, 2).await;
    // A port nobody listens on, listed first.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    common::make_maildir(&md);
    common::deliver(&md, "1.host", &dsn(0));
    common::deliver(&md, "2.host", &dsn(1));
    let server = fake_servers::pop3(e.pool.clone(), vec![]).await;
    let mut settings = e.settings(MailboxKind::Pop3, &server);
    let dead_name = format!("dead{dead}");
    settings.mailboxes[0] = e.mailbox(MailboxKind::Pop3, &dead_name, dead);
    settings.mailboxes.push(Mailbox::maildir("local", &md));
    let logs = Logs::global();
    let s = e.app(settings).await.run_once().await.expect("run");
    assert_eq!(
        s.stored, 2,
        "the maildir after the dead server is drained: {s:?}"
    );
    assert_eq!(s.failed_sources.len(), 1, "{s:?}");
    assert_eq!(s.failed_sources[0].mailbox, dead_name);
    assert_eq!(common::count_files(&md.join("new")), 0);
    assert!(
        logs.lines_of(&dead_name).contains("mailbox drain failed"),
        "{}",
        logs.lines_of(&dead_name)
    );
}
