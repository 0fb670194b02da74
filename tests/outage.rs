//! PostgreSQL going away under a running daemon: a TCP proxy between the
//! daemon and the server is cut (every live session dropped, new ones
//! refused), then restored. While it is cut nothing may be acknowledged
//! (files stay in new/); afterwards the daemon resumes by itself and every
//! message is processed exactly once.

mod common;

use common::*;
use inmail::app::App;
use inmail::config::{Mailbox, MaildirMailbox, Settings};
use inmail::store::{Store, StoreSettings};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards 127.0.0.1:port to the server; `cut` drops every session.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    sessions: Arc<Mutex<CancellationToken>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let sessions = Arc::new(Mutex::new(CancellationToken::new()));
        let (up2, sessions2) = (Arc::clone(&up), Arc::clone(&sessions));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let cut = sessions2.lock().expect("lock").clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Proxy { port, up, sessions }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut s = self.sessions.lock().expect("lock");
        s.cancel();
        *s = CancellationToken::new();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

async fn wait_done(pool: &PgPool, n: i64, secs: u64) -> i64 {
    let mut done = 0;
    for _ in 0..secs * 20 {
        done = scalar(pool, "SELECT count(*) FROM intake WHERE status = 'done'").await;
        if done >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done
}

#[sqlx::test(migrations = "./migrations")]
async fn database_outage_pauses_then_resumes(opts: PgPoolOptions, conn: PgConnectOptions) {
    if std::env::var_os("INMAIL_TEST_LOG").is_some() {
        inmail::telemetry::init(
            inmail::config::LogFormat::Pretty,
            "inmail=info,inmail::result=warn",
        );
    }
    let direct = opts.connect_with(conn.clone()).await.expect("pool");
    let n = 100usize;
    register_deliveries(
        &Store::from_pool(direct.clone(), StoreSettings::default()),
        0..n,
    )
    .await;
    let upstream = format!("{}:{}", conn.get_host(), conn.get_port());
    let proxy = Proxy::start(upstream).await;
    let proxied = PgPoolOptions::new()
        .max_connections(6)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(conn.clone().host("127.0.0.1").port(proxy.port))
        .await
        .expect("proxied pool");
    let store = Store::from_pool(proxied, StoreSettings::default());

    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    make_maildir(&md);
    let mut s = Settings::default();
    s.daemon.batch_size = 10;
    s.daemon.workers = 2;
    s.mailboxes.push(Mailbox::Maildir(MaildirMailbox {
        poll_interval_secs: Some(1),
        ..MaildirMailbox::new("bounces", &md)
    }));
    let app = App::build_with_store(s, store, inmail::pipeline::system_clock())
        .await
        .expect("build");
    let stop = CancellationToken::new();
    let run = tokio::spawn(app.run_until_stopped(stop.clone()));

    for i in 0..n / 2 {
        deliver(&md, &format!("a{i:03}.host"), &dsn(i));
    }
    assert_eq!(wait_done(&direct, (n / 2) as i64, 30).await, (n / 2) as i64);

    proxy.cut();
    for i in n / 2..n {
        deliver(&md, &format!("b{i:03}.host"), &dsn(i));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Nothing acknowledged that is not committed.
    assert_eq!(
        count_files(&md.join("new")),
        n / 2,
        "files left while the database is away"
    );
    assert_eq!(
        scalar(&direct, "SELECT count(*) FROM intake").await,
        (n / 2) as i64
    );

    proxy.restore();
    assert_eq!(
        wait_done(&direct, n as i64, 60).await,
        n as i64,
        "resumed by itself"
    );
    stop.cancel();
    run.await.expect("join").expect("run");
    assert_eq!(count_files(&md.join("new")), 0);
    assert_eq!(
        scalar(&direct, "SELECT count(*) FROM bounce_events").await,
        n as i64
    );
    assert_eq!(
        scalar(
            &direct,
            "SELECT count(DISTINCT message_hash) FROM bounce_events"
        )
        .await,
        n as i64
    );
}
