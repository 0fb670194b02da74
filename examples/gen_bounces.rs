//! Generates a benchmark corpus: `OUT/deliveries.csv` (what was sent) and
//! `OUT/maildir/new/` with one RFC 3464 DSN per delivery, each returning the
//! original headers with the `X-Inmail-Id` tracking header.
//!
//! cargo run --release --example gen_bounces -- OUT [COUNT]

use std::fmt::Write as _;
use std::path::PathBuf;

const KINDS: [(&str, &str, &str); 3] = [
    (
        "5.1.1",
        "550 5.1.1 <{addr}>: Recipient address rejected: User unknown in virtual mailbox table",
        "failed",
    ),
    (
        "4.2.2",
        "452 4.2.2 <{addr}>: Mailbox full, quota exceeded",
        "failed",
    ),
    (
        "5.7.1",
        "554 5.7.1 Service unavailable; Client host [192.0.2.{k}] blocked using zen.spamhaus.org",
        "failed",
    ),
];

fn dsn(i: usize) -> String {
    let domain = format!("d{}.example", i % 50);
    let addr = format!("user{i}@{domain}");
    let (status, diag, action) = KINDS[i % KINDS.len()];
    let diag = diag
        .replace("{addr}", &addr)
        .replace("{k}", &(i % 250).to_string());
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
         This is the mail system at host mx.{domain}. Your message could not be delivered.\r\n\
         \r\n\
         --{b}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.{domain}\r\n\
         Arrival-Date: Sat, 01 Mar 2025 07:59:58 +0000\r\n\
         \r\n\
         Final-Recipient: rfc822; {addr}\r\n\
         Original-Recipient: rfc822; {addr}\r\n\
         Action: {action}\r\n\
         Status: {status}\r\n\
         Remote-MTA: dns; mx1.{domain}\r\n\
         Diagnostic-Code: smtp; {diag}\r\n\
         \r\n\
         --{b}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         From: News <news@sender.example>\r\n\
         To: {addr}\r\n\
         Subject: Our March newsletter\r\n\
         Date: Sat, 01 Mar 2025 07:00:00 +0000\r\n\
         Message-ID: <m{i}@sender.example>\r\n\
         X-Inmail-Id: trk-{i}\r\n\
         \r\n\
         --{b}--\r\n"
    );
    m
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: gen_bounces OUT [COUNT]");
        std::process::exit(2);
    };
    let count: usize = match args.next().map(|c| c.parse()) {
        None => 20_000,
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            eprintln!("gen_bounces: COUNT: {e}");
            std::process::exit(2);
        }
    };
    let maildir = out.join("maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub))?;
    }
    let mut csv = String::from("message_id,address,delivery,tracking_id,sent_at\n");
    for i in 0..count {
        let _ = writeln!(
            csv,
            "<m{i}@sender.example>,user{i}@d{}.example,bench,trk-{i},2025-03-01T07:00:00Z",
            i % 50
        );
        std::fs::write(maildir.join("new").join(format!("{i:08}.bench")), dsn(i))?;
    }
    std::fs::write(out.join("deliveries.csv"), csv)?;
    eprintln!("gen_bounces: {count} DSNs in {}", maildir.display());
    Ok(())
}
