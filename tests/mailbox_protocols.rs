//! IMAP and POP3 clients against a real Dovecot (never a mock).
//!
//! The server comes from `scripts/lib/dovecot.sh`; run the tests with
//!
//! ```sh
//! source scripts/lib/dovecot.sh && dovecot_start "$PWD/target/dovecot"
//! CARGO_TARGET_DIR=... cargo test --test mailbox_protocols
//! ```
//!
//! (or through `scripts/test.sh`, which does the same). Isolation: every test
//! logs in as its own account (`bounces1`..`bounces12`) and empties that
//! account's Maildir first, so tests run in parallel and on a reused server.
//! The restart test takes [`SERVER`] exclusively; all others share it.

use std::os::unix::fs::{chown, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inmail::source::imap::{IdleOutcome, ImapClient};
use inmail::source::pop3::Pop3Client;
use inmail::source::{MailboxError, ServerEndpoint, TlsMode};
use secrecy::SecretString;
use tokio::sync::RwLock;

/// Shared by every test, held exclusively while Dovecot restarts.
static SERVER: RwLock<()> = RwLock::const_new(());

const TIMEOUT: Duration = Duration::from_secs(10);

struct TestEnv {
    dir: PathBuf,
    imap_port: u16,
    imaps_port: u16,
    pop3_port: u16,
    pop3s_port: u16,
    password: String,
    ca_file: PathBuf,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the test Dovecot. Run them via scripts/test.sh, \
             or first `source scripts/lib/dovecot.sh && dovecot_start \"$PWD/target/dovecot\"` \
             in the same shell"
        )
    })
}

fn port(name: &str) -> u16 {
    var(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a port"))
}

fn test_env() -> TestEnv {
    TestEnv {
        dir: PathBuf::from(var("INMAIL_TEST_DOVECOT_DIR")),
        imap_port: port("INMAIL_TEST_IMAP_PORT"),
        imaps_port: port("INMAIL_TEST_IMAPS_PORT"),
        pop3_port: port("INMAIL_TEST_POP3_PORT"),
        pop3s_port: port("INMAIL_TEST_POP3S_PORT"),
        password: var("INMAIL_TEST_MAIL_PASSWORD"),
        ca_file: PathBuf::from(var("INMAIL_TEST_CA_FILE")),
    }
}

impl TestEnv {
    fn endpoint(&self, port: u16, tls: TlsMode) -> ServerEndpoint {
        ServerEndpoint {
            host: "localhost".into(),
            port,
            tls,
            ca_file: Some(self.ca_file.clone()),
            timeout: TIMEOUT,
        }
    }

    fn imaps(&self) -> ServerEndpoint {
        self.endpoint(self.imaps_port, TlsMode::Implicit)
    }

    fn imap_starttls(&self) -> ServerEndpoint {
        self.endpoint(self.imap_port, TlsMode::StartTls)
    }

    fn pop3s(&self) -> ServerEndpoint {
        self.endpoint(self.pop3s_port, TlsMode::Implicit)
    }

    fn pop3_stls(&self) -> ServerEndpoint {
        self.endpoint(self.pop3_port, TlsMode::StartTls)
    }

    fn password(&self) -> SecretString {
        SecretString::from(self.password.clone())
    }

    /// Account `bounces{n}` with an empty Maildir.
    fn account(&self, n: u32) -> Account {
        let user = format!("bounces{n}");
        let home = self.dir.join("home").join(&user);
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
}

#[derive(Clone)]
struct Account {
    user: String,
    maildir: PathBuf,
    uid: u32,
    gid: u32,
}

impl Account {
    fn own(&self, path: &Path) {
        chown(path, Some(self.uid), Some(self.gid)).expect("chown to dovecot");
    }

    /// Delivers like an MTA: write in `tmp/`, then rename into `new/`.
    fn deliver(&self, name: &str, message: &[u8]) {
        let tmp = self.maildir.join("tmp").join(name);
        std::fs::write(&tmp, message).expect("write message");
        self.own(&tmp);
        std::fs::rename(&tmp, self.maildir.join("new").join(name)).expect("deliver message");
    }

    fn messages_on_disk(&self, folder: &str) -> usize {
        ["new", "cur"]
            .iter()
            .map(|sub| {
                std::fs::read_dir(self.maildir.join(folder).join(sub))
                    .map(|entries| entries.count())
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// A bounce with the awkward parts: CRLF, lines that need dot-stuffing, a
/// lone `.` line, 8-bit bytes, and optionally a body large enough to span
/// many reads.
fn message(id: u32, padding: usize) -> Vec<u8> {
    let mut m = format!(
        "From: MAILER-DAEMON@example.org\r\nTo: bounces@example.com\r\n\
         Subject: Undelivered Mail {id}\r\nMessage-ID: <bounce-{id}@example.org>\r\n\r\n\
         .leading dot line\r\n.\r\n..two dots\r\nfinal recipient: rfc822; user{id}@example.net\r\n"
    )
    .into_bytes();
    m.extend_from_slice(b"8bit: caf\xc3\xa9\r\n");
    for i in 0..padding {
        m.extend_from_slice(
            format!("padding line {i:08} ..........................\r\n").as_bytes(),
        );
    }
    m
}

async fn pop3_login(endpoint: &ServerEndpoint, env: &TestEnv, account: &Account) -> Pop3Client {
    let mut client = Pop3Client::connect(endpoint).await.expect("pop3 connect");
    client
        .login(&account.user, &env.password())
        .await
        .expect("pop3 login");
    client
}

async fn imap_login(endpoint: &ServerEndpoint, env: &TestEnv, account: &Account) -> ImapClient {
    let mut client = ImapClient::connect(endpoint).await.expect("imap connect");
    client
        .login(&account.user, &env.password())
        .await
        .expect("imap login");
    client
}

/// Retrieves every message and checks it against what was delivered.
async fn pop3_retrieve_all(client: &mut Pop3Client, expected: &[Vec<u8>]) -> Vec<(u32, String)> {
    let listing = client.uidl().await.expect("UIDL");
    assert_eq!(listing.len(), expected.len());
    let mut seen = Vec::new();
    for (msgno, _) in &listing {
        let body = client.retr(*msgno).await.expect("RETR");
        assert_eq!(body.truncated, None);
        let body = body.raw;
        assert!(expected.contains(&body), "RETR {msgno} is not byte-exact");
        seen.push(body);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), expected.len());
    listing
}

#[tokio::test]
async fn pop3s_uidl_retr_and_dele_quit_removes() {
    let _server = SERVER.read().await;
    let env = test_env();
    let account = env.account(1);
    let messages = [message(1, 0), message(2, 8000)];
    account.deliver("1.pop3s", &messages[0]);
    account.deliver("2.pop3s", &messages[1]);

    let mut client = pop3_login(&env.pop3s(), &env, &account).await;
    let listing = pop3_retrieve_all(&mut client, &messages).await;
    client.noop().await.expect("NOOP");
    let (deleted, _) = &listing[0];
    client.dele(*deleted).await.expect("DELE");
    client.quit().await.expect("QUIT");

    let mut client = pop3_login(&env.pop3s(), &env, &account).await;
    let remaining = client.uidl().await.expect("UIDL");
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].1, listing[1].1, "the other message survives");
    client.quit().await.expect("QUIT");
    assert_eq!(account.messages_on_disk(""), 1);
}

#[tokio::test]
async fn pop3_stls_dele_without_quit_removes_nothing() {
    let _server = SERVER.read().await;
    let env = test_env();
    let account = env.account(2);
    let messages = [message(3, 10), message(4, 0)];
    account.deliver("3.stls", &messages[0]);
    account.deliver("4.stls", &messages[1]);

    let mut client = pop3_login(&env.pop3_stls(), &env, &account).await;
    let listing = pop3_retrieve_all(&mut client, &messages).await;
    for (msgno, _) in &listing {
        client.dele(*msgno).await.expect("DELE");
    }
    drop(client); // connection lost before QUIT

    let mut client = pop3_login(&env.pop3_stls(), &env, &account).await;
    assert_eq!(client.uidl().await.expect("UIDL"), listing);
    client.quit().await.expect("QUIT");
    assert_eq!(account.messages_on_disk(""), 2);
}

#[tokio::test]
async fn pop3_retr_over_size_limit_keeps_the_first_bytes_and_the_session() {
    let _server = SERVER.read().await;
    let env = test_env();
    let account = env.account(9);
    let big = message(5, 2000);
    account.deliver("big", &big);

    let mut client = pop3_login(&env.pop3s(), &env, &account).await;
    client.set_max_message_size(10_000);
    let fetched = client
        .retr(1)
        .await
        .expect("RETR of a message over the bound");
    assert_eq!(fetched.raw, big[..10_000]);
    let t = fetched.truncated.expect("marked truncated");
    assert_eq!(t.original_size, big.len() as u64);
    assert_eq!(t.content_hash, inmail::store::content_hash(&big));
    client.noop().await.expect("session still usable");
    client.quit().await.expect("QUIT");
}

#[tokio::test]
async fn imaps_select_search_fetch_is_byte_exact() {
    let _server = SERVER.read().await;
    let env = test_env();
    let account = env.account(3);
    let messages = [message(10, 0), message(11, 6000), message(12, 3)];
    for (i, m) in messages.iter().enumerate() {
        account.deliver(&format!("{i}.imaps"), m);
    }

    let mut client = imap_login(&env.imaps(), &env, &account).await;
    assert!(client
        .has_capability("IMAP4rev1")
        .await
        .expect("CAPABILITY"));
    let selected = client.select("INBOX").await.expect("SELECT");
    assert!(selected.uid_validity > 0);
    assert_eq!(selected.exists, 3);
    assert_eq!(selected.uid_next, Some(4));

    let uids = client.uid_search_all().await.expect("SEARCH");
    assert_eq!(uids, [1, 2, 3]);
    // Arrives mid-session: Dovecot announces it (`* 4 EXISTS`, `* 1 RECENT`)
    // at its next mailbox sync, here the NOOP, not during FETCH.
    account.deliver("late.imaps", &message(13, 0));
    client.noop().await.expect("NOOP");
    let mut fetched = Vec::new();
    for uid in uids {
        let body = client
            .uid_fetch(uid)
            .await
            .expect("FETCH")
            .expect("exists")
            .raw;
        assert!(messages.contains(&body), "UID {uid} is not byte-exact");
        fetched.push(body);
    }
    fetched.sort();
    fetched.dedup();
    assert_eq!(fetched.len(), 3);
    assert_eq!(
        client.uid_fetch(4).await.expect("FETCH").map(|m| m.raw),
        Some(message(13, 0))
    );

    assert_eq!(client.uid_search_from(3).await.expect("SEARCH"), [3, 4]);
    assert_eq!(
        client.uid_search_from(10).await.expect("SEARCH"),
        Vec::<u32>::new(),
        "n:* must not return the last message below n"
    );
    assert_eq!(client.uid_fetch(99).await.expect("FETCH"), None);
    client.logout().await.expect("LOGOUT");
}

#[tokio::test]
async fn imap_starttls_move_and_delete() {
    let _server = SERVER.read().await;
    let env = test_env();
    let account = env.account(4);
    for i in 0..3 {
        account.deliver(&format!("{i}.move"), &message(20 + i, 0));
    }

    let mut client = imap_login(&env.imap_starttls(), &env, &account).await;
    client.select("INBOX").await.expect("SELECT");
    client
        .create_folder_if_missing("Processed")
        .await
        .expect("CREATE");
    client
        .create_folder_if_missing("Processed")
        .await
        .expect("CREATE is idempotent");
    client.uid_move(&[1, 2], "Processed").await.expect("MOVE");
    assert_eq!(client.uid_search_all().await.expect("SEARCH"), [3]);
    client.uid_delete(&[3]).await.expect("delete");
    assert!(client.uid_search_all().await.expect("SEARCH").is_empty());

    let processed = client.select("Processed").await.expect("SELECT");
    assert_eq!(processed.exists, 2);
    let moved = client.uid_search_all().await.expect("SEARCH");
    assert_eq!(moved.len(), 2);
    let body = client.uid_fetch(moved[0]).await.expect("FETCH");
    assert!(body.is_some());
    client.logout().await.expect("LOGOUT");

    assert_eq!(account.messages_on_disk(""), 0);
    assert_eq!(account.messages_on_disk(".Processed"), 2);
}

#[tokio::test]
async fn imap_idle_wakes_up_on_new_mail() {
    let _server = SERVER.read().await;
    let env = test_env();
    let account = env.account(5);

    let mut client = imap_login(&env.imaps(), &env, &account).await;
    client.select("INBOX").await.expect("SELECT");
    let delivery = {
        let account = account.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            account.deliver("idle", &message(30, 0));
        })
    };
    let started = Instant::now();
    let outcome = client.idle(Duration::from_secs(10)).await.expect("IDLE");
    assert_eq!(outcome, IdleOutcome::NewMail);
    assert!(started.elapsed() < Duration::from_secs(9));
    delivery.await.expect("delivery task");
    assert_eq!(client.uid_search_all().await.expect("SEARCH"), [1]);
    client.logout().await.expect("LOGOUT");
}

#[tokio::test]
async fn imap_idle_times_out_without_mail() {
    let _server = SERVER.read().await;
    let env = test_env();
    let account = env.account(6);

    let mut client = imap_login(&env.imap_starttls(), &env, &account).await;
    client.select("INBOX").await.expect("SELECT");
    let started = Instant::now();
    let outcome = client.idle(Duration::from_secs(1)).await.expect("IDLE");
    assert_eq!(outcome, IdleOutcome::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));
    client.noop().await.expect("session usable after IDLE");
    client.logout().await.expect("LOGOUT");
}

#[tokio::test]
async fn plain_connections_work_on_loopback() {
    let _server = SERVER.read().await;
    let env = test_env();
    let account = env.account(10);
    account.deliver("plain", &message(40, 0));

    let imap = env.endpoint(env.imap_port, TlsMode::None);
    let mut client = imap_login(&imap, &env, &account).await;
    client.select("INBOX").await.expect("SELECT");
    let body = client.uid_fetch(1).await.expect("FETCH").map(|m| m.raw);
    assert_eq!(body, Some(message(40, 0)));
    client.logout().await.expect("LOGOUT");

    let pop3 = env.endpoint(env.pop3_port, TlsMode::None);
    let mut client = pop3_login(&pop3, &env, &account).await;
    assert_eq!(client.retr(1).await.expect("RETR").raw, message(40, 0));
    client.quit().await.expect("QUIT");
}

#[tokio::test]
async fn tls_without_the_test_ca_is_refused() {
    let _server = SERVER.read().await;
    let env = test_env();
    let untrusted = |mut endpoint: ServerEndpoint| {
        endpoint.ca_file = None; // public web PKI roots only
        endpoint
    };
    let errors = [
        ImapClient::connect(&untrusted(env.imaps())).await.err(),
        ImapClient::connect(&untrusted(env.imap_starttls()))
            .await
            .err(),
        Pop3Client::connect(&untrusted(env.pop3s())).await.err(),
        Pop3Client::connect(&untrusted(env.pop3_stls())).await.err(),
    ];
    for err in errors {
        let err = err.expect("an untrusted certificate must be refused");
        assert!(
            matches!(err, MailboxError::CertificateRejected { .. }),
            "unexpected error: {err}"
        );
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_password() {
    let _server = SERVER.read().await;
    let env = test_env();
    let account = env.account(7);
    let wrong = "Wr0ng \"secret\" pässword";
    let password = SecretString::from(wrong);

    let mut imap = ImapClient::connect(&env.imaps()).await.expect("connect");
    let imap_err = imap
        .login(&account.user, &password)
        .await
        .expect_err("refused");
    let mut pop3 = Pop3Client::connect(&env.pop3s()).await.expect("connect");
    let pop3_err = pop3
        .login(&account.user, &password)
        .await
        .expect_err("refused");

    for err in [imap_err, pop3_err] {
        assert!(matches!(err, MailboxError::Auth { .. }), "{err}");
        for rendered in [err.to_string(), format!("{err:?}")] {
            assert!(!rendered.contains("secret"), "password leaked: {rendered}");
            assert!(rendered.contains(&account.user), "{rendered}");
        }
    }
    assert!(!format!("{password:?}").contains("secret"));
}

#[tokio::test]
async fn closed_port_fails_fast() {
    test_env(); // like every test here, refuse to run without the harness
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let endpoint = ServerEndpoint {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::Implicit,
        ca_file: None,
        timeout: TIMEOUT,
    };
    let started = Instant::now();
    let imap_err = ImapClient::connect(&endpoint)
        .await
        .expect_err("closed port");
    let pop3_err = Pop3Client::connect(&endpoint)
        .await
        .expect_err("closed port");
    assert!(started.elapsed() < Duration::from_secs(2));
    for err in [imap_err, pop3_err] {
        assert!(matches!(err, MailboxError::Connect { .. }), "{err}");
    }
}

#[tokio::test]
async fn server_restart_breaks_live_sessions_and_reconnect_works() {
    let _server = SERVER.write().await;
    let env = test_env();
    let account = env.account(8);

    let mut imap = imap_login(&env.imaps(), &env, &account).await;
    imap.select("INBOX").await.expect("SELECT");
    let mut pop3 = pop3_login(&env.pop3s(), &env, &account).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lib/dovecot.sh");
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"set -euo pipefail; source "$1"; dovecot_restart "$2""#)
        .arg("restart")
        .arg(script)
        .arg(&env.dir)
        .status()
        .expect("run dovecot_restart");
    assert!(status.success(), "dovecot_restart failed");

    let imap_err = imap.noop().await.expect_err("session ended by the restart");
    let pop3_err = pop3.noop().await.expect_err("session ended by the restart");
    eprintln!("after restart: imap: {imap_err}; pop3: {pop3_err}");
    assert!(matches!(
        imap.noop().await,
        Err(MailboxError::ConnectionBroken)
    ));

    let mut imap = imap_login(&env.imaps(), &env, &account).await;
    imap.select("INBOX").await.expect("SELECT after restart");
    imap.logout().await.expect("LOGOUT");
    let pop3 = pop3_login(&env.pop3s(), &env, &account).await;
    pop3.quit().await.expect("QUIT");
}
