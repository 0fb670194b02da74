//! Hostile maildirs and bad settings against a real PostgreSQL: one bad
//! input never stops the rest, nothing is lost, and `check-config` refuses
//! exactly what `run` refuses, without ever printing a credential.
//!
//! export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
//! cargo test --test reliability_maildir

mod common;

use common::*;
use inmail::app::App;
use inmail::config::{Mailbox, MaildirAfter, MaildirMailbox, Settings};
use inmail::pipeline::system_clock;
use inmail::store::{Store, StoreSettings};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_inmail");

fn settings(maildir: &Path) -> Settings {
    let mut s = Settings::default();
    s.daemon.batch_size = 4;
    s.daemon.workers = 2;
    s.mailboxes.push(Mailbox::maildir("bounces", maildir));
    s
}

async fn setup(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
    n: usize,
    md: &Path,
) -> (Store, PgPool) {
    let pool = opts
        .max_connections(10)
        .connect_with(conn)
        .await
        .expect("pool");
    let store = Store::from_pool(pool.clone(), StoreSettings::default());
    register_deliveries(&store, 0..n).await;
    make_maildir(md);
    (store, pool)
}

async fn run_once(s: Settings, store: &Store) -> inmail::app::RunSummary {
    App::build_with_store(s, store.clone(), system_clock())
        .await
        .expect("build")
        .run_once()
        .await
        .expect("run")
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

/// A bounce for user{i} with `padding` bytes of returned original after
/// the report.
fn big_dsn(i: usize, padding: usize) -> String {
    let mut m = dsn(i);
    let end = m.rfind("--=_b").expect("closing boundary");
    let mut pad = format!("--=_b{i}\r\nContent-Type: application/octet-stream\r\n\r\n");
    while pad.len() < padding {
        pad.push_str("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5\r\n");
    }
    m.insert_str(end, &pad);
    m
}

#[sqlx::test(migrations = "./migrations")]
async fn a_maildir_name_reused_after_delete_is_a_new_message(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    let (store, pool) = setup(opts, conn, 2, &md).await;
    let mut s = settings(&md);
    s.mailboxes[0] = Mailbox::Maildir(MaildirMailbox {
        after: MaildirAfter::Delete,
        ..MaildirMailbox::new("bounces", &md)
    });
    deliver(&md, "1700000000.1.host", &dsn(0));
    let first = run_once(s.clone(), &store).await;
    assert_eq!((first.stored, first.duplicates), (1, 0));
    assert_eq!(count_files(&md.join("new")), 0);
    // The MTA delivers a new bounce under the same name.
    deliver(&md, "1700000000.1.host", &dsn(1));
    let second = run_once(s, &store).await;
    assert_eq!(
        (second.stored, second.duplicates),
        (1, 0),
        "not a duplicate"
    );
    assert_eq!(count_files(&md.join("new")), 0);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM intake WHERE status = 'done'").await,
        2
    );
    assert_eq!(
        scalar(&pool, "SELECT count(DISTINCT address) FROM bounce_events").await,
        2
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_file_name_that_is_not_utf8_is_processed_and_moved(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    let (store, pool) = setup(opts, conn, 2, &md).await;
    let name = std::ffi::OsStr::from_bytes(b"1700000000.\xff\xfe.host");
    std::fs::write(md.join("new").join(name), dsn(0)).expect("write");
    deliver(&md, "1700000001.2.host", &dsn(1));
    let s = run_once(settings(&md), &store).await;
    assert_eq!(s.stored, 2, "{s:?}");
    assert_eq!(count_files(&md.join("new")), 0, "nothing left behind");
    let seen = std::ffi::OsStr::from_bytes(b"1700000000.\xff\xfe.host:2,S");
    assert!(md.join("cur").join(seen).exists());
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM intake WHERE uid = '1700000000.\u{FFFD}\u{FFFD}.host'"
        )
        .await,
        1
    );
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bounce_events").await, 2);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_nul_in_a_diagnostic_is_stored_as_the_replacement_character(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    let (store, pool) = setup(opts, conn, 2, &md).await;
    let poisoned = dsn(0).replace("User unknown", "User\0unknown");
    assert!(poisoned.contains('\0'));
    deliver(&md, "1.host", &poisoned);
    deliver(&md, "2.host", &dsn(1));
    let s = run_once(settings(&md), &store).await;
    assert_eq!(s.stored, 2);
    assert_eq!(s.intake.done, 2, "{s:?}");
    assert_eq!(s.intake.failed + s.intake.queued, 0, "{s:?}");
    let diagnostic: String = sqlx::query_scalar(
        "SELECT diagnostic FROM bounce_events WHERE address = 'user0@d0.example'",
    )
    .fetch_one(&pool)
    .await
    .expect("the correlated bounce is counted");
    assert!(diagnostic.contains("User\u{FFFD}unknown"), "{diagnostic}");
    // The raw message stays byte-exact.
    let raw: Vec<u8> = sqlx::query_scalar("SELECT raw FROM intake WHERE uid = '1.host'")
        .fetch_one(&pool)
        .await
        .expect("raw");
    assert_eq!(raw, poisoned.as_bytes());
}

#[sqlx::test(migrations = "./migrations")]
async fn big_bounces_are_stored_truncated_in_batches_by_bytes_beside_the_others(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    let (store, pool) = setup(opts, conn, 12, &md).await;
    for i in 0..12 {
        let body = if i % 2 == 0 {
            big_dsn(i, 400_000)
        } else {
            dsn(i)
        };
        deliver(&md, &format!("17000000{i:02}.{i}.host"), &body);
    }
    let mut s = settings(&md);
    s.daemon.max_message_bytes = 128 * 1024;
    s.daemon.batch_bytes = 200 * 1024;
    s.analysis.max_message_bytes = 64 * 1024;
    let summary = run_once(s, &store).await;
    assert_eq!(
        (summary.stored, summary.intake.done),
        (12, 12),
        "{summary:?}"
    );
    assert_eq!(count_files(&md.join("new")), 0);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM intake WHERE original_size > 400000 AND octet_length(raw) = 131072").await,
        6
    );
    assert_eq!(
        scalar(&pool, "SELECT count(DISTINCT address) FROM bounce_events").await,
        12,
        "every bounce counted, the big ones from their first bytes"
    );
}

#[test]
fn rfc6533_escaped_utf8_addresses_are_decoded() {
    let raw = dsn(0).replace(
        "Final-Recipient: rfc822; user0@d0.example",
        "Final-Recipient: utf-8; \\x{F6}laf@ex\\x{E4}mple.test",
    );
    let a = inmail::analysis::Analyzer::default().analyse(raw.as_bytes());
    let addresses: Vec<&str> = a.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addresses, ["ölaf@exämple.test"]);
    // The raw UTF-8 form keeps working.
    let raw = dsn(0).replace(
        "Final-Recipient: rfc822; user0@d0.example",
        "Final-Recipient: utf-8; ölaf@exämple.test",
    );
    let a = inmail::analysis::Analyzer::default().analyse(raw.as_bytes());
    assert_eq!(a.recipients[0].address.as_str(), "ölaf@exämple.test");
}

/// `inmail run --once` as an unprivileged user (the shipped unit's
/// `User=inmail`) over a maildir where the MTA left a file it cannot read.
#[sqlx::test(migrations = "./migrations")]
async fn an_unreadable_file_is_set_aside_logged_and_the_others_processed(
    opts: PgPoolOptions,
    conn: PgConnectOptions,
) {
    use std::os::unix::fs::PermissionsExt;
    let url = {
        let pool = opts.connect_with(conn.clone()).await.expect("pool");
        let store = Store::from_pool(pool.clone(), StoreSettings::default());
        register_deliveries(&store, 0..20).await;
        let db: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&pool)
            .await
            .expect("name");
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
        let (server, _) = base.rsplit_once('/').expect("url with a path");
        format!("{server}/{db}")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    make_maildir(&md);
    for i in 0..19 {
        deliver(&md, &format!("17000000{i:02}.{i}.host"), &dsn(i));
    }
    let bad = md.join("new").join("1700000099.mta.host");
    std::fs::write(&bad, dsn(19)).expect("write");
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg = dir.path().join("inmail.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{url}\"\n[daemon]\nbatch_size = 5\n\
             [[mailbox]]\nname = \"bounces\"\nkind = \"maildir\"\npath = \"{}\"\n",
            md.display()
        ),
    )
    .expect("config");
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        // The file stays root's (the MTA's); everything else is the daemon's.
        for p in [
            dir.path().to_path_buf(),
            md.clone(),
            md.join("new"),
            md.join("cur"),
            md.join("tmp"),
            cfg.clone(),
        ] {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).expect("chown");
        }
        for e in std::fs::read_dir(md.join("new")).expect("new/") {
            let p = e.expect("entry").path();
            if p != bad {
                std::os::unix::fs::chown(&p, Some(65534), Some(65534)).expect("chown");
            }
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        Command::new(BIN)
    };
    let out = cmd
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .env_remove("INMAIL__DATABASE__URL")
        .env("INMAIL_LOG", "info")
        .output()
        .expect("run inmail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the summary is JSON");
    assert_eq!(summary["stored"], 19, "{summary}");
    assert_eq!(summary["skipped"], 1, "{summary}");
    assert_eq!(summary["intake"]["done"], 19, "{summary}");
    assert!(bad.exists(), "the unreadable file stays for a later retry");
    assert_eq!(count_files(&md.join("new")), 1);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot read a maildir file"))
        .collect();
    assert_eq!(lines.len(), 1, "logged once: {stderr}");
    assert!(
        lines[0].contains("1700000099.mta.host") && lines[0].contains("ermission denied"),
        "{}",
        lines[0]
    );
    let _ = std::fs::remove_dir_all(dir.path());
}

fn write_config(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("config");
    p
}

fn inmail_with(args: &[&str], cfg: &Path) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--config")
        .arg(cfg)
        .env_remove("INMAIL_CONFIG");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("INMAIL__") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("inmail runs")
}

#[test]
fn check_config_never_prints_a_database_credential() {
    let dir = tempfile::tempdir().expect("tempdir");
    let forms = [
        ("postgres://u:s3cr@t-1@db.example/inmail", "s3cr"),
        ("postgres://u:s3cr3t-2@db.example:5432/inmail", "s3cr3t-2"),
        (
            "postgres://u@db.example/inmail?password=s3cr3t-3",
            "s3cr3t-3",
        ),
        (
            "postgres://u@db.example/inmail?sslmode=require&password=s3cr3t-4&application_name=x",
            "s3cr3t-4",
        ),
        (
            "postgres://u@db.example/inmail?sslpassword=s3cr3t-5",
            "s3cr3t-5",
        ),
        ("postgres://u:s3c/r3t-6@db.example/inmail", "s3c/r3t-6"),
        ("postgres://u:s3c?r3t-7@db.example/inmail", "r3t-7"),
        ("postgres://:s3cr3t-8@db.example/inmail", "s3cr3t-8"),
        ("postgresql://u:s3cr3t-9@db.example/inmail", "s3cr3t-9"),
        ("postgres://u:s3cr3t%40-10@db.example/inmail", "s3cr3t"),
        ("host=db.example user=u password=s3cr3t-11", "s3cr3t-11"),
        (
            "postgres://u:s3cr3t-12@db.example:99999/inmail",
            "s3cr3t-12",
        ),
        ("postgres://u:s3cr3t-13@[db.example/inmail", "s3cr3t-13"),
    ];
    for (i, (url, secret)) in forms.iter().enumerate() {
        let cfg = write_config(
            dir.path(),
            &format!("{i}.toml"),
            &format!("[database]\nurl = \"{url}\"\n"),
        );
        for args in [&["check-config"][..], &["check-config", "--json"][..]] {
            let out = inmail_with(args, &cfg);
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!all.contains(secret), "{url}: the password leaked:\n{all}");
            assert!(
                all.contains("db.example"),
                "{url}: the host is shown:\n{all}"
            );
        }
        assert!(
            !inmail::config::mask_url_password(url).contains(secret),
            "{url}"
        );
    }
}

/// Each of these is refused by `check-config` (exit 1) and by `run` (which
/// stops before connecting), both naming the key.
#[test]
fn check_config_refuses_what_run_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    make_maildir(&md);
    let not_maildir = dir.path().join("plain");
    std::fs::create_dir_all(&not_maildir).expect("dir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "x\n").expect("pw");
    let ok_db = "[database]\nurl = \"postgres://u@127.0.0.1:1/none\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("port", "[database]\nurl = \"postgres://u:p@db.example:99999/x\"\n".into(), "database.url"),
        ("malformed", "[database]\nurl = \"postgres://u:p@[db.example/x\"\n".into(), "database.url"),
        (
            "not a maildir",
            format!("{ok_db}[[mailbox]]\nname = \"m\"\nkind = \"maildir\"\npath = \"{}\"\n", not_maildir.display()),
            "path",
        ),
        (
            "mailbox port 0",
            format!(
                "{ok_db}[[mailbox]]\nname = \"p\"\nkind = \"pop3\"\nhost = \"127.0.0.1\"\nport = 0\ntls = \"none\"\nusername = \"u\"\npassword_file = \"{}\"\n",
                pw.display()
            ),
            "port",
        ),
        ("log level warning", format!("{ok_db}[log]\nlevel = \"warning\"\n"), "log.level"),
        ("log level inf", format!("{ok_db}[log]\nlevel = \"inf\"\n"), "log.level"),
        (
            "imap folder",
            format!(
                "{ok_db}[[mailbox]]\nname = \"i\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\ntls = \"none\"\nusername = \"u\"\npassword_file = \"{}\"\nfolder = \"a\\\"b\"\n",
                pw.display()
            ),
            "folder",
        ),
    ];
    for (what, text, key) in cases {
        let cfg = write_config(dir.path(), "case.toml", &text);
        let check = inmail_with(&["check-config"], &cfg);
        let check_err = String::from_utf8_lossy(&check.stderr);
        assert_eq!(
            check.status.code(),
            Some(1),
            "{what}: check-config accepted it: {check_err}"
        );
        assert!(check_err.contains(key), "{what}: {check_err}");
        let run = inmail_with(&["run", "--once"], &cfg);
        let run_err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{what}: run accepted it");
        assert!(run_err.contains(key), "{what}: {run_err}");
    }
    // And what check-config accepts, run gets past the settings with.
    let good = write_config(
        dir.path(),
        "good.toml",
        &format!("{ok_db}[log]\nlevel = \"warn,inmail=debug\"\n[[mailbox]]\nname = \"m\"\nkind = \"maildir\"\npath = \"{}\"\n", md.display()),
    );
    let check = inmail_with(&["check-config", "--quiet"], &good);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let run = inmail_with(&["run", "--once"], &good);
    let run_err = String::from_utf8_lossy(&run.stderr);
    assert!(
        run_err.contains("unreachable"),
        "only the database stops it: {run_err}"
    );
}
