//! Shared by the daemon tests: a corpus of RFC 3464 DSNs tied to registered
//! deliveries (the same shape as `examples/gen_bounces.rs`), maildirs, and
//! throw-away databases.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;

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
