//! Helpers shared by the integration tests: the analysis engine on the
//! fixtures in `tests/fixtures/bounces`, and (below) the daemon tests' corpus,
//! maildirs and throw-away databases.

#![allow(dead_code)] // each test crate uses a different subset

use inmail::analysis::Analyzer;
use inmail::cli::{inputs, qualify};
use inmail::rules::{RuleSet, Verdict};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// Compiling the default rules is the slow part of a debug-build test: do it once.
pub static RULES: LazyLock<RuleSet> = LazyLock::new(RuleSet::default_set);

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces")
}

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// The fixture families (file names without `.eml`), in the order the CLI
/// reads a folder: sorted by file name, so `exim-delay.eml` before `exim.eml`.
pub fn fixture_families() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures folder is readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".eml") || n.ends_with(".mbox"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            n.trim_end_matches(".eml")
                .trim_end_matches(".mbox")
                .to_string()
        })
        .collect()
}

/// A fixture's file name: one message per `.eml`, several per `.mbox`.
pub fn fixture_name(family: &str) -> String {
    let mbox = format!("{family}.mbox");
    if fixtures_dir().join(&mbox).exists() {
        mbox
    } else {
        format!("{family}.eml")
    }
}

pub fn fixture_bytes(family: &str) -> Vec<u8> {
    let p = fixtures_dir().join(fixture_name(family));
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Line-ending conventions a fixture (written with LF) is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    Lf,
    Crlf,
    Cr,
}

impl LineEnding {
    pub fn name(self) -> &'static str {
        match self {
            LineEnding::Lf => "lf",
            LineEnding::Crlf => "crlf",
            LineEnding::Cr => "cr",
        }
    }

    pub fn convert(self, lf: &[u8]) -> Vec<u8> {
        let eol: &[u8] = match self {
            LineEnding::Lf => return lf.to_vec(),
            LineEnding::Crlf => b"\r\n",
            LineEnding::Cr => b"\r",
        };
        let mut out = Vec::with_capacity(lf.len() + lf.len() / 16);
        for &b in lf {
            if b == b'\n' {
                out.extend_from_slice(eol);
            } else {
                out.push(b);
            }
        }
        out
    }
}

/// Qualifies every recipient of one analysed message with the default rules.
pub fn verdicts(a: &inmail::analysis::Analysis) -> Vec<Verdict> {
    a.recipients.iter().map(|r| RULES.qualify(r)).collect()
}

/// The `qualify --json` objects for the messages of `path` (several for an
/// mbox), with sources named after `name` rather than the path, so results do
/// not depend on where the file lives. One message gives one object, several
/// an array.
pub fn qualify_file(path: &Path, name: &str) -> Value {
    let analyzer = Analyzer::default();
    let messages = inputs::read(path).unwrap_or_else(|e| panic!("cannot read {e}"));
    let prefix = path.display().to_string();
    let mut out: Vec<Value> = messages
        .iter()
        .map(|m| {
            let source = m.source.replacen(&prefix, name, 1);
            let a = analyzer.analyse(&m.data);
            let v = verdicts(&a);
            serde_json::to_value(qualify::result(&source, &a, &v, false))
                .expect("results serialise")
        })
        .collect();
    if out.len() == 1 {
        out.remove(0)
    } else {
        Value::Array(out)
    }
}

/// Like [`qualify_file`] for a fixture converted to `ending`; the converted
/// copy is written under the fixture's own file name in a scratch folder,
/// because the file name is part of the result and the mbox reader works on files.
pub fn qualify_fixture(family: &str, ending: LineEnding) -> Value {
    let name = fixture_name(family);
    if ending == LineEnding::Lf {
        return qualify_file(&fixtures_dir().join(&name), &name);
    }
    let dir = tempfile::tempdir().expect("scratch folder");
    let path = dir.path().join(&name);
    std::fs::write(&path, ending.convert(&fixture_bytes(family)))
        .expect("scratch file is writable");
    qualify_file(&path, &name)
}

/// Where two JSON values differ, one line per difference, by JSON path.
pub fn json_diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("$", expected, actual, &mut out);
    out
}

fn diff_at(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => diff_at(&format!("{path}.{k}"), ev, av, out),
                    None => out.push(format!("{path}.{k}: expected {ev}, missing")),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    out.push(format!("{path}.{k}: unexpected {av}"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff_at(&format!("{path}[{i}]"), ev, av, out);
            }
            if e.len() != a.len() {
                out.push(format!(
                    "{path}: expected {} elements, got {}",
                    e.len(),
                    a.len()
                ));
            }
        }
        _ if expected != actual => out.push(format!("{path}: expected {expected}, got {actual}")),
        _ => {}
    }
}

/// Runs the compiled `inmail` with `args`, on default settings whatever the
/// environment of the test run says.
pub fn inmail<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_inmail"));
    cmd.args(args).env_remove("INMAIL_CONFIG");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("INMAIL__") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("the inmail binary runs")
}

// --- for the daemon tests: a corpus of RFC 3464 DSNs tied to registered
// deliveries (the same shape as `examples/gen_bounces.rs`), maildirs, and
// throw-away databases.

use std::fmt::Write as _;

/// One DSN for recipient `user{i}@d{i%50}.example`, tracking id `trk-{i}`.
pub fn dsn(i: usize) -> String {
    dsn_for(i, &format!("user{i}@d{}.example", i % 50))
}

pub fn dsn_for(i: usize, addr: &str) -> String {
    let domain = addr.split_once('@').map_or("example", |(_, d)| d);
    let b = format!("=_b{i}");
    let mut m = String::with_capacity(2048);
    let _ = write!(
        m,
        "Return-Path: <>\r\n\
         From: Mail Delivery System <MAILER-DAEMON@mx.{domain}>\r\n\
         To: <bounces@sender.example>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: Sat, 01 Mar 2025 08:00:00 +0000\r\n\
         Message-ID: <dsn-{i}@mx.{domain}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{b}\"\r\n\
         \r\n\
         --{b}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         Your message could not be delivered.\r\n\
         \r\n\
         --{b}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.{domain}\r\n\
         \r\n\
         Final-Recipient: rfc822; {addr}\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{addr}>: Recipient address rejected: User unknown\r\n\
         \r\n\
         --{b}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         From: News <news@sender.example>\r\n\
         To: {addr}\r\n\
         Subject: Our March newsletter\r\n\
         Message-ID: <m{i}@sender.example>\r\n\
         X-Inmail-Id: trk-{i}\r\n\
         \r\n\
         --{b}--\r\n"
    );
    m
}

/// Registers the deliveries of [`deliveries_csv`] for `range`, as a
/// platform would before the bounces arrive.
pub async fn register_deliveries(store: &inmail::store::Store, range: std::ops::Range<usize>) {
    inmail::ops::deliveries::import_csv(
        store,
        deliveries_csv(range).as_bytes(),
        chrono::Utc::now(),
    )
    .await
    .expect("deliveries");
}

pub fn deliveries_csv(range: std::ops::Range<usize>) -> String {
    let mut csv = String::from("message_id,address,delivery,tracking_id,sent_at\n");
    for i in range {
        let _ = writeln!(
            csv,
            "<m{i}@sender.example>,user{i}@d{}.example,test,trk-{i},2025-03-01T07:00:00Z",
            i % 50
        );
    }
    csv
}

pub fn make_maildir(root: &Path) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).expect("create maildir");
    }
}

/// Delivers like an MTA: write in tmp/, rename into new/.
pub fn deliver(root: &Path, name: &str, content: &str) {
    let tmp = root.join("tmp").join(name);
    std::fs::write(&tmp, content).expect("write tmp");
    std::fs::rename(&tmp, root.join("new").join(name)).expect("rename into new");
}

pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter_map(Result::ok).count())
}

/// A fresh, migrated database on the server named by DATABASE_URL; returns its URL.
pub async fn fresh_database(prefix: &str) -> String {
    use sqlx::{Connection, Executor};
    let base = std::env::var("DATABASE_URL")
        .or_else(|_| std::env::var("INMAIL__DATABASE__URL"))
        .expect("DATABASE_URL (source scripts/lib/postgres.sh && pg_provision)");
    let (server, _) = base.rsplit_once('/').expect("database url with a path");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("{prefix}_{}_{}", std::process::id(), nanos % 1_000_000_000);
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("connect to the postgres database");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    let url = format!("{server}/{name}");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    inmail::store::MIGRATOR.run(&pool).await.expect("migrate");
    pool.close().await;
    url
}

/// Drops a database made by [`fresh_database`] (after closing its pools).
pub async fn drop_database(url: &str) {
    use sqlx::{Connection, Executor};
    let Some((server, name)) = url.rsplit_once('/') else {
        return;
    };
    if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{server}/postgres")).await {
        let _ = admin
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await;
    }
}

/// Simple deterministic pseudo-random numbers (no extra dependency).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}
