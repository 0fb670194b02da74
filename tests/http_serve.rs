//! `inmail serve` and `inmail run` as processes: both serve the API when
//! `[http] listen` is set, answer the same over one database, log one JSON
//! line per request (route template, status, token name; never the token),
//! and stop cleanly on SIGTERM. Bad `[http]` settings are refused naming
//! the key.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "serve-token-0123456789abcdef";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn config(dir: &std::path::Path, url: &str, port: u16) -> std::path::PathBuf {
    let file = dir.join(format!("inmail-{port}.toml"));
    std::fs::write(
        &file,
        format!(
            "[database]\nurl = \"{url}\"\n[log]\nlevel = \"info\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[http.token]]\nname = \"sender\"\nscope = \"read\"\ntoken_env = \"INMAIL_TEST_SERVE_TOKEN\"\n"
        ),
    )
    .expect("config file");
    file
}

fn spawn(args: &[&str], config: &std::path::Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_inmail"));
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env_remove("INMAIL_CONFIG")
        .env("INMAIL_TEST_SERVE_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("INMAIL__") {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().expect("inmail starts")
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "port {port} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stop(mut child: Child) -> String {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    assert!(status.success(), "exit status {status}: {log}");
    log
}

#[tokio::test]
async fn serve_and_run_answer_the_same_over_one_database_and_stop_on_sigterm() {
    let url = common::fresh_database("http_serve").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (p1, p2) = (free_port(), free_port());
    let serve = spawn(&["serve"], &config(dir.path(), &url, p1));
    let run = spawn(&["run"], &config(dir.path(), &url, p2));
    let client = reqwest::Client::new();
    wait_ready(&client, p1).await;
    wait_ready(&client, p2).await;

    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    inmail::store::Store::from_pool(pool.clone(), Default::default())
        .quarantine_add(
            "q@example.com",
            inmail::store::AddressStatus::Quarantined,
            chrono::Utc::now(),
        )
        .await
        .expect("quarantine");
    pool.close().await;
    let mut answers = Vec::new();
    for port in [p1, p2] {
        let r = client
            .post(format!("http://127.0.0.1:{port}/v1/addresses/check"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"addresses": ["a@example.com", "Q@example.com"]}))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        let v: serde_json::Value = r.json().await.expect("json");
        answers.push(v);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0]["excluded"][0]["address"], "Q@example.com");

    let log = stop(serve);
    stop(run);
    // one JSON line per request, with the route template and the token's name
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["route"] == "/v1/addresses/check")
        .unwrap_or_else(|| panic!("a request line in\n{log}"));
    assert_eq!(line["method"], "POST");
    assert_eq!(line["status"], 200);
    assert_eq!(line["token"], "sender");
    assert!(line["duration_ms"].is_number());
    assert!(!log.contains(TOKEN), "the token is never logged");
    assert!(!log.contains("a@example.com"), "bodies are never logged");
    common::drop_database(&url).await;
}

#[test]
fn bad_http_settings_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[http]\nlisten = \"nowhere\"\nmax_body_bytes = 0\n\
         [[http.token]]\nname = \"sender\"\nscope = \"read\"\ntoken_env = \"INMAIL_TEST_UNSET_TOKEN_VAR\"\n\
         [[http.token]]\nname = \"sender\"\nscope = \"write\"\ntoken_file = \"/nonexistent/token\"\n",
    )
    .expect("config");
    let out = common::inmail(["check-config", "--config", file.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for key in [
        "http.listen = \"nowhere\"",
        "http.max_body_bytes = 0",
        "http.token[0] (sender).token_env = \"INMAIL_TEST_UNSET_TOKEN_VAR\"",
        "http.token[1].name = \"sender\": duplicate token name",
        "http.token[1] (sender).token_file",
    ] {
        assert!(err.contains(key), "{key} in\n{err}");
    }
    let file = dir.path().join("scope.toml");
    std::fs::write(
        &file,
        "[[http.token]]\nname = \"x\"\nscope = \"admin\"\ntoken_env = \"X\"\n",
    )
    .expect("config");
    let out = common::inmail(["check-config", "--config", file.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("admin"), "{err}");

    // serve without a listen address says what is missing
    let out = common::inmail(["serve"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("http.listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The daemon's counters come from where things happen: the pipeline after
/// each commit, the source as it goes up; `run` serves them on its API.
#[tokio::test]
async fn the_running_daemon_feeds_its_metrics_from_the_pipeline_and_the_sources() {
    use inmail::config::{Mailbox, MaildirMailbox, Settings};
    let url = common::fresh_database("http_metrics").await;
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    common::register_deliveries(
        &inmail::store::Store::from_pool(pool.clone(), Default::default()),
        0..3,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    common::make_maildir(&md);
    let mut s = Settings::default();
    s.daemon.workers = 1;
    s.mailboxes.push(Mailbox::Maildir(MaildirMailbox {
        poll_interval_secs: Some(1),
        ..MaildirMailbox::new("bounces", &md)
    }));
    let store = inmail::store::Store::from_pool(pool.clone(), Default::default());
    let app = inmail::app::App::build_with_store(s, store, inmail::pipeline::system_clock())
        .await
        .expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(app.run_with_listener(Some(listener), stop.clone()));
    for i in 0..3 {
        common::deliver(&md, &format!("m{i}.host"), &common::dsn(i));
    }
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = match client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains("inmail_messages_processed_total{kind=\"dsn\"} 3") {
            break text;
        }
        assert!(Instant::now() < deadline, "never processed:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        text.contains("inmail_source_up{mailbox=\"bounces\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("inmail_recipient_results_total{type=\"hard\",reason=\"user_unknown\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("inmail_address_transitions_total{to=\"quarantined\"} 3"),
        "{text}"
    );
    assert!(text.contains("inmail_intake_backlog 0"), "{text}");
    stop.cancel();
    run.await.expect("join").expect("run");
    pool.close().await;
    common::drop_database(&url).await;
}
