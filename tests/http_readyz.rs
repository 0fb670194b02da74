//! `/readyz` follows the database: 503 (naming the failed check, with
//! `Retry-After`) while PostgreSQL is stopped, 200 again once it is back —
//! and `/v1` routes answer 503 meanwhile instead of failing. The server
//! here is a private PostgreSQL cluster made by this test (initdb/pg_ctl in
//! a temporary folder), so stopping it disturbs nobody.

mod http_common;

use http_common::*;
use inmail::app::App;
use inmail::config::Settings;
use reqwest::StatusCode;
use secrecy::SecretString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The newest installed PostgreSQL's bin folder (as scripts/lib/postgres.sh finds it).
fn pg_bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (scripts/lib/postgres.sh installs them)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|d| d.join("initdb").is_file())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL tool as the cluster's owner: "postgres" when we are
/// root (initdb and postgres refuse root), ourselves otherwise.
fn as_owner(bin: &Path, args: &[&str]) {
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin)
            .args(args)
            .output()
    } else {
        Command::new(bin).args(args).output()
    }
    .expect("the PostgreSQL tool runs");
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn new() -> Cluster {
        let bin = pg_bindir();
        let dir = tempfile::Builder::new()
            .prefix("inmail-readyz-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(ok.success(), "chown the cluster folder to postgres");
        }
        let data = dir.path().join("data");
        as_owner(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let c = Cluster { bin, dir, port };
        c.start();
        c
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data");
        let mut all = vec!["-D", data.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        as_owner(&self.bin.join("pg_ctl"), &all);
    }

    fn start(&self) {
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        self.pg_ctl(&[
            "-l",
            log.to_str().expect("utf-8 path"),
            "-w",
            "-t",
            "60",
            "-o",
            &opts,
            "start",
        ]);
    }

    fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", &data.to_string_lossy(), "-m", "immediate", "stop"])
                .output()
        } else {
            Command::new(self.bin.join("pg_ctl"))
                .args(["-D", &data.to_string_lossy(), "-m", "immediate", "stop"])
                .output()
        };
    }
}

async fn readyz_until(s: &TestServer, want: StatusCode, within: Duration) -> Answer {
    let deadline = Instant::now() + within;
    loop {
        let a = s.get("/readyz", None).await;
        if a.status == want || Instant::now() > deadline {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn readyz_is_503_while_postgresql_is_stopped_and_200_after() {
    let cluster = Cluster::new();
    let pool = sqlx::PgPool::connect(&cluster.url())
        .await
        .expect("connect");
    inmail::store::MIGRATOR.run(&pool).await.expect("migrate");
    pool.close().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings: Settings = settings_with_tokens(dir.path());
    settings.database.url = Some(SecretString::from(cluster.url()));
    settings.database.connect_timeout_secs = 1;
    let app = App::build(settings).await.expect("build");
    let router = app.api_router().expect("router");
    let s = serve(
        router,
        app.store().clone(),
        std::sync::Arc::clone(app.metrics()),
        dir,
    )
    .await;

    let a = s.get("/readyz", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    cluster.stop();
    let a = readyz_until(&s, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    assert_eq!(a.body["status"], "not_ready");
    assert_eq!(a.body["checks"]["database"]["ok"], false, "{}", a.text);
    assert!(a.headers.contains_key("retry-after"));
    // the API says "later", it does not fail
    let a = s
        .post(
            "/v1/addresses/check",
            Some(READ),
            &serde_json::json!({"addresses": ["a@example.com"]}),
        )
        .await;
    assert_error(&a, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(a.headers.contains_key("retry-after"));
    // the process is alive all along
    assert_eq!(s.get("/livez", None).await.status, StatusCode::OK);

    cluster.start();
    let a = readyz_until(&s, StatusCode::OK, Duration::from_secs(60)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = s
        .post(
            "/v1/addresses/check",
            Some(READ),
            &serde_json::json!({"addresses": ["a@example.com"]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    s.stop().await;
}
