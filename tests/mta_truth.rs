//! The truth set made by real MTAs: Postfix, Exim, OpenSMTPD and Sendmail
//! (provisioned by `scripts/lib/mta.sh`) deliver test messages through a
//! scripted SMTP peer that answers each recipient with a chosen reply
//! (`tests/mta/cases.rs`, each reply with its primary source), or fail them by
//! themselves (unknown local user, no such domain, connection refused, queue
//! lifetime, relay denied, message too large). The bounces they send come
//! back to the peer's maildir; `inmail qualify --json` must give each
//! recipient the status, type, reason and category of the cause acted out.
//!
//! The engine does not get every case right yet: the failures it is known to
//! have are listed in `tests/mta/known_gaps.txt`, and the test fails only on a
//! failure missing from that list. It prints a score table per MTA either way.
//!
//! Environment (set by `scripts/test.sh` through `mta_provision`):
//! `INMAIL_TEST_MTAS` (the MTAs to run), `INMAIL_TEST_MTA_DIR`,
//! `INMAIL_TEST_MTA_SH`. Optional: `INMAIL_TEST_MTA_SAVE=DIR` keeps a copy of
//! every bounce as `DIR/<mta>/<message>-<phase>-<cases>.eml`,
//! `INMAIL_TEST_MTA_REPORT=FILE` writes the failing cases as Markdown, and
//! `INMAIL_TEST_MTA_WRITE_GAPS=1` rewrites `tests/mta/known_gaps.txt` with
//! this run's failures (after a change to the engine: review the diff).

#[path = "mta/cases.rs"]
mod cases;
mod common;
#[path = "mta/peer.rs"]
mod peer;

use cases::{Act, Case};
use inmail::model::{BounceType, Category, Reason};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long an MTA gets to send every bounce; the queue lifetimes in
/// `mta.sh` are 40 s, so the expiry bounces come within about a minute.
const BOUNCE_DEADLINE: Duration = Duration::from_secs(150);
/// Once every message has a bounce, how long to wait at most for the
/// recipients no bounce has named yet: OpenSMTPD splits a message's failures
/// over several bounces, and Sendmail may report a local failure in one of
/// its own at a later queue run.
const STRAGGLERS: Duration = Duration::from_secs(20);
/// How often the MTAs are asked for a queue run (`mta_kick`).
const KICK_EVERY: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Phase {
    Delay,
    Final,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Delay => "delay",
            Phase::Final => "final",
        }
    }
}

#[derive(Debug, Clone)]
struct Expected {
    status: Option<String>,
    bounce_type: BounceType,
    reason: Reason,
    category: Category,
}

#[derive(Debug, Clone, Default)]
struct Got {
    found: bool,
    status: Option<String>,
    bounce_type: Option<String>,
    reason: Option<String>,
    category: Option<String>,
    diagnostic: Option<String>,
    kind: Option<String>,
    recipients: Vec<String>,
}

struct Outcome {
    mta: String,
    case: &'static Case,
    phase: Phase,
    address: String,
    expected: Expected,
    got: Got,
    bounce: Option<String>,
}

impl Outcome {
    fn status_ok(&self) -> Option<bool> {
        self.expected
            .status
            .as_ref()
            .map(|s| self.got.status.as_deref() == Some(s.as_str()))
    }
    fn type_ok(&self) -> bool {
        self.got.bounce_type.as_deref() == Some(self.expected.bounce_type.as_str())
    }
    fn reason_ok(&self) -> bool {
        self.got.reason.as_deref() == Some(self.expected.reason.as_str())
    }
    fn category_ok(&self) -> bool {
        self.got.category.as_deref() == Some(self.expected.category.as_str())
    }
    fn passed(&self) -> bool {
        self.got.found
            && self.status_ok().unwrap_or(true)
            && self.type_ok()
            && self.reason_ok()
            && self.category_ok()
    }
    /// Truth soft or ignored, verdict hard: a live address quarantined.
    fn false_hard(&self) -> bool {
        self.expected.bounce_type != BounceType::Hard
            && self.got.bounce_type.as_deref() == Some("hard")
    }
    fn key(&self) -> (String, String, String) {
        (
            self.mta.clone(),
            self.case.id.to_string(),
            self.phase.as_str().to_string(),
        )
    }
}

/// The recipient address a case is sent to (see `mta.sh` for the routing).
fn address(c: &Case) -> String {
    const NAMES: [&str; 8] = ["ann", "bob", "carla", "dev", "eve", "fred", "gina", "hugo"];
    const UTF8_NAMES: [&str; 3] = ["josé", "zoë", "björn"];
    let n: usize = c.id[1..].parse().unwrap_or(0);
    let domain = match c.act {
        Act::UnknownLocalUser => "local.test",
        Act::NoSuchDomain => "nxdomain.invalid",
        Act::ConnectionRefused => "refused.test",
        Act::RelayDenied | Act::TooLarge => "strict.test",
        _ if c.utf8 => "bücher.test",
        _ => "peer.test",
    };
    let name = if c.utf8 {
        UTF8_NAMES[n % UTF8_NAMES.len()]
    } else {
        NAMES[n % NAMES.len()]
    };
    format!("{name}.{}@{domain}", c.id)
}

fn expected(mta: &str, c: &Case, phase: Phase) -> Expected {
    let status = cases::expected_status(mta, c, phase == Phase::Final);
    let (bounce_type, reason) = c.category.default_verdict();
    match phase {
        Phase::Final => Expected {
            status,
            bounce_type,
            reason,
            category: c.category,
        },
        Phase::Delay => Expected {
            status,
            bounce_type: BounceType::Soft,
            reason,
            category: if c.category.sender_side() {
                c.category
            } else {
                Category::Delayed
            },
        },
    }
}

fn message_id(mta: &str, group: usize) -> String {
    format!("<g{group:02}.{mta}@sender.test>")
}

/// A plain newsletter-like message with an 8-bit UTF-8 body; the size case
/// is padded past the strict listener's 4000-byte limit.
fn message(mta: &str, group: usize, rcpts: &[String], large: bool) -> Vec<u8> {
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Sender <{}>\r\nTo: {}\r\nSubject: Truth set message {group:02}\r\n\
         Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: {}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         Bonjour, voilà le message numéro {group} — grüße aus Köln.\r\n",
        peer::SENDER,
        rcpts
            .iter()
            .map(|r| format!("<{r}>"))
            .collect::<Vec<_>>()
            .join(", "),
        message_id(mta, group),
    );
    if large {
        for i in 0..120 {
            let _ = write!(
                m,
                "line {i:03}: padding to make the message larger than 4000 bytes.\r\n"
            );
        }
    }
    m.into_bytes()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A bounce is a delay warning when its Subject says so (Postfix "Delayed
/// Mail", Exim "Warning: message ... delayed", Sendmail "Warning: could not
/// send message", OpenSMTPD "Delayed").
fn phase_of(bounce: &[u8]) -> Phase {
    let head_end = bounce
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| bounce.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(bounce.len());
    let head = String::from_utf8_lossy(&bounce[..head_end]).to_ascii_lowercase();
    let subject = head
        .lines()
        .find(|l| l.starts_with("subject:"))
        .unwrap_or("");
    if subject.contains("delay") || subject.contains("warning") {
        Phase::Delay
    } else {
        Phase::Final
    }
}

/// Stops the MTA when the run ends, however it ends.
struct Running {
    name: String,
    work: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = mta_sh(&["mta_stop", &self.name, &self.work.to_string_lossy()]);
    }
}

fn mta_sh(args: &[&str]) -> std::io::Result<std::process::Output> {
    let script = std::env::var("INMAIL_TEST_MTA_SH").unwrap_or_default();
    std::process::Command::new("bash")
        .arg("-c")
        .arg("source \"$0\" && \"$@\"")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

async fn run_mta(name: String, root: PathBuf) -> Result<Vec<Outcome>, String> {
    let work = root.join("run").join(&name);
    // an instance a killed run left behind
    let _ = mta_sh(&["mta_stop", &name, &work.join("mta").to_string_lossy()]);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let peer = peer::Peer::start(&work.join("peer-maildir"))
        .await
        .map_err(|e| format!("peer: {e}"))?;
    // A port chosen free may be taken by the time the MTA binds it (the other
    // MTAs' connections use the same range): a few attempts with new ports.
    let mut attempt = 0;
    let (port, _running) = loop {
        attempt += 1;
        let (port, strict, closed) = (free_port(), free_port(), free_port());
        let mta_work = work.join("mta");
        let _ = std::fs::remove_dir_all(&mta_work);
        let args: Vec<String> = vec![
            "mta_start".into(),
            name.clone(),
            mta_work.to_string_lossy().into_owned(),
            peer.port.to_string(),
            port.to_string(),
            strict.to_string(),
            closed.to_string(),
        ];
        let started = tokio::task::spawn_blocking(move || {
            mta_sh(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("bash: {e}"))?;
        let running = Running {
            name: name.clone(),
            work: mta_work,
        };
        if started.status.success() {
            break (port, running);
        }
        drop(running);
        if attempt == 3 {
            return Err(format!(
                "{name} did not start: {}",
                String::from_utf8_lossy(&started.stderr)
            ));
        }
    };

    let groups = cases::groups(&name);
    // the recipients each (message, phase) should name, ASCII ones only: a
    // UTF-8 address is written in more than one way (RFC 6533)
    let mut named: BTreeMap<(usize, Phase), Vec<String>> = BTreeMap::new();
    for (g, cases) in groups.iter().enumerate() {
        for c in cases.iter().filter(|c| !c.utf8) {
            for &phase in phases_of(&name, c) {
                named
                    .entry((g, phase))
                    .or_default()
                    .push(address(c).to_ascii_lowercase());
            }
        }
    }
    let mut wanted: BTreeSet<(usize, Phase)> = BTreeSet::new();
    for (g, cases) in groups.iter().enumerate() {
        let rcpts: Vec<String> = cases.iter().map(|c| address(c)).collect();
        let utf8 = cases.iter().any(|c| c.utf8);
        let large = cases.iter().any(|c| c.act == Act::TooLarge);
        peer::submit(port, &rcpts, &message(&name, g, &rcpts, large), utf8)
            .await
            .map_err(|e| format!("{name}: submitting message {g:02}: {e}"))?;
        let temporary = cases.iter().any(|c| c.act.temporary());
        if !temporary || cases::reports_expiry(&name) {
            wanted.insert((g, Phase::Final));
        }
        if temporary {
            wanted.insert((g, Phase::Delay));
        }
    }

    // every bounce of each (message, phase): OpenSMTPD splits a message's
    // failures over several bounces. When each has one, the recipients none
    // has named yet get a few more seconds.
    let mut bounces: BTreeMap<(usize, Phase), Vec<Vec<u8>>> = BTreeMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + BOUNCE_DEADLINE;
    let mut complete_at: Option<Instant> = None;
    let mut last_kick = Instant::now();
    loop {
        let now = Instant::now();
        let all_named = || {
            named.iter().all(|(key, addrs)| {
                let lower: Vec<String> = bounces
                    .get(key)
                    .map(|list| {
                        list.iter()
                            .map(|b| String::from_utf8_lossy(b).to_ascii_lowercase())
                            .collect()
                    })
                    .unwrap_or_default();
                addrs
                    .iter()
                    .all(|a| lower.iter().any(|b| b.contains(a.as_str())))
            })
        };
        if now >= deadline || complete_at.is_some_and(|t| now >= t + STRAGGLERS || all_named()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if last_kick.elapsed() >= KICK_EVERY {
            // a queue run now: OpenSMTPD's retry delay is not configurable
            let work = work.join("mta").to_string_lossy().into_owned();
            let name = name.clone();
            let _ = tokio::task::spawn_blocking(move || mta_sh(&["mta_kick", &name, &work])).await;
            last_kick = Instant::now();
        }
        let mut files: Vec<(String, Vec<u8>)> = peer::stored(&peer.maildir).into_iter().collect();
        files.sort();
        for (file, bytes) in files {
            if !seen.insert(file) {
                continue;
            }
            let Some(g) =
                (0..groups.len()).find(|&g| contains(&bytes, message_id(&name, g).as_bytes()))
            else {
                continue;
            };
            bounces
                .entry((g, phase_of(&bytes)))
                .or_default()
                .push(bytes);
        }
        if complete_at.is_none() && wanted.iter().all(|k| bounces.contains_key(k)) {
            complete_at = Some(Instant::now());
        }
    }

    let dir = work.join("bounces");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let save = std::env::var_os("INMAIL_TEST_MTA_SAVE").map(|d| PathBuf::from(d).join(&name));
    if let Some(s) = &save {
        let _ = std::fs::remove_dir_all(s);
        let _ = std::fs::create_dir_all(s);
    }
    let mut files_of: HashMap<(usize, Phase), Vec<String>> = HashMap::new();
    for ((g, phase), list) in &bounces {
        let ids: Vec<&str> = groups[*g].iter().map(|c| c.id).collect();
        for (i, bytes) in list.iter().enumerate() {
            let more = if i == 0 {
                String::new()
            } else {
                format!("-{i}")
            };
            let file = format!("g{g:02}-{}-{}{more}.eml", phase.as_str(), ids.join("-"));
            std::fs::write(dir.join(&file), bytes).map_err(|e| e.to_string())?;
            if let Some(s) = &save {
                let _ = std::fs::write(s.join(&file), bytes);
            }
            files_of.entry((*g, *phase)).or_default().push(file);
        }
    }

    let out = common::inmail([
        std::ffi::OsStr::new("qualify"),
        "--json".as_ref(),
        dir.as_os_str(),
    ]);
    let mut results: HashMap<String, Value> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("qualify output: {e}"))?;
        let source = v["source"].as_str().unwrap_or("");
        let file = Path::new(source)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        results.insert(file, v);
    }

    let mut outcomes = Vec::new();
    for (g, cases) in groups.iter().enumerate() {
        for c in cases {
            for &phase in phases_of(&name, c) {
                let addr = address(c);
                // the bounce that lists the recipient, else the first one
                let files = files_of.get(&(g, phase)).cloned().unwrap_or_default();
                let pick = files
                    .iter()
                    .map(|f| {
                        (
                            f,
                            results
                                .get(f)
                                .map(|v| got_for(v, &addr))
                                .unwrap_or_default(),
                        )
                    })
                    .find(|(_, got)| got.found)
                    .or_else(|| {
                        files.first().map(|f| {
                            (
                                f,
                                results
                                    .get(f)
                                    .map(|v| got_for(v, &addr))
                                    .unwrap_or_default(),
                            )
                        })
                    });
                let (file, got) = match pick {
                    Some((f, got)) => (Some(f.clone()), got),
                    None => (None, Got::default()),
                };
                outcomes.push(Outcome {
                    mta: name.clone(),
                    case: c,
                    phase,
                    address: addr,
                    expected: expected(&name, c, phase),
                    got,
                    bounce: file,
                });
            }
        }
    }
    Ok(outcomes)
}

/// The bounces a case is reported in: a permanent failure in the final one;
/// a temporary one in a delay warning, and in the final one too where the
/// MTA reports the expiry of its queue lifetime.
fn phases_of(mta: &str, c: &Case) -> &'static [Phase] {
    if !c.act.temporary() {
        &[Phase::Final]
    } else if cases::reports_expiry(mta) {
        &[Phase::Delay, Phase::Final]
    } else {
        &[Phase::Delay]
    }
}

fn got_for(v: &Value, addr: &str) -> Got {
    let recipients = v["recipients"].as_array().cloned().unwrap_or_default();
    let listed: Vec<String> = recipients
        .iter()
        .filter_map(|r| r["address"].as_str().map(str::to_string))
        .collect();
    let s = |r: &Value, k: &str| r[k].as_str().map(str::to_string);
    let hit = recipients.iter().find(|r| {
        r["address"]
            .as_str()
            .is_some_and(|a| a.to_lowercase() == addr.to_lowercase())
    });
    match hit {
        Some(r) => Got {
            found: true,
            status: s(r, "status"),
            bounce_type: s(r, "type"),
            reason: s(r, "reason"),
            category: s(r, "category"),
            diagnostic: s(r, "diagnostic"),
            kind: s(v, "kind"),
            recipients: listed,
        },
        None => Got {
            kind: s(v, "kind"),
            recipients: listed,
            ..Got::default()
        },
    }
}

type Key = (String, String, String);

fn known_gaps_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mta/known_gaps.txt")
}

/// Rewrites `known_gaps.txt` with this run's failures, keeping the comment
/// lines and the "varies:" entries (`INMAIL_TEST_MTA_WRITE_GAPS=1`, after a
/// change to the engine).
fn write_known_gaps(outcomes: &[Outcome]) {
    let path = known_gaps_path();
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut text: String = old
        .lines()
        .filter(|l| l.starts_with('#') || l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let kept: Vec<&str> = old.lines().filter(|l| l.contains("# varies:")).collect();
    let show = |s: Option<&str>| s.unwrap_or("-").to_string();
    for o in outcomes.iter().filter(|o| !o.passed()) {
        let key = o.key();
        if kept.iter().any(|l| {
            let mut w = l.split_whitespace();
            (w.next(), w.next(), w.next()) == (Some(&key.0), Some(&key.1), Some(&key.2))
        }) {
            continue;
        }
        let got = if o.got.found {
            format!(
                "{} / {} / {} / {}",
                show(o.got.status.as_deref()),
                show(o.got.bounce_type.as_deref()),
                show(o.got.reason.as_deref()),
                show(o.got.category.as_deref())
            )
        } else {
            "no such recipient in the bounce".to_string()
        };
        let _ = writeln!(
            text,
            "{:<9} {} {:<5}  # expected {} / {} / {} / {}; got {got}",
            key.0,
            key.1,
            key.2,
            o.expected.status.as_deref().unwrap_or("(not scored)"),
            o.expected.bounce_type,
            o.expected.reason,
            o.expected.category,
        );
    }
    for l in kept {
        let _ = writeln!(text, "{l}");
    }
    let _ = std::fs::write(path, text);
}

/// The known gaps, and among them those whose bounce varies with timing.
fn known_gaps() -> (BTreeSet<Key>, BTreeSet<Key>) {
    let path = known_gaps_path();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut gaps = BTreeSet::new();
    let mut varying = BTreeSet::new();
    for line in text.lines() {
        let (entry, comment) = line.split_once('#').unwrap_or((line, ""));
        let mut w = entry.split_whitespace();
        let (Some(m), Some(c), Some(p)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let key = (m.to_string(), c.to_string(), p.to_string());
        if comment.trim_start().starts_with("varies:") {
            varying.insert(key.clone());
        }
        gaps.insert(key);
    }
    (gaps, varying)
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.1}", 100.0 * n as f64 / d as f64)
    }
}

/// One score row: cases, then recipient / status / type / reason / category /
/// all five, in percent, and the false-hard count.
fn score_row(label: &str, o: &[&Outcome]) -> String {
    let n = o.len();
    let found = o.iter().filter(|x| x.got.found).count();
    let scored_status: Vec<bool> = o.iter().filter_map(|x| x.status_ok()).collect();
    let status = scored_status.iter().filter(|&&b| b).count();
    let t = o.iter().filter(|x| x.type_ok()).count();
    let r = o.iter().filter(|x| x.reason_ok()).count();
    let c = o.iter().filter(|x| x.category_ok()).count();
    let all = o.iter().filter(|x| x.passed()).count();
    let fh = o.iter().filter(|x| x.false_hard()).count();
    format!(
        "| {label} | {n} | {} | {} | {} | {} | {} | {} | {fh} |",
        pct(found, n),
        pct(status, scored_status.len()),
        pct(t, n),
        pct(r, n),
        pct(c, n),
        pct(all, n),
    )
}

fn report(outcomes: &[Outcome], versions: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{versions}");
    let _ = writeln!(
        s,
        "| MTA | cases | recipient | status | type | reason | category | all five | false hard |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    let mut mtas: Vec<&str> = outcomes.iter().map(|o| o.mta.as_str()).collect();
    mtas.dedup();
    for m in &mtas {
        let o: Vec<&Outcome> = outcomes.iter().filter(|o| o.mta == *m).collect();
        let _ = writeln!(s, "{}", score_row(m, &o));
    }
    let all: Vec<&Outcome> = outcomes.iter().collect();
    let _ = writeln!(s, "{}", score_row("all", &all));
    let cats: BTreeSet<&str> = outcomes
        .iter()
        .map(|o| o.expected.category.as_str())
        .collect();
    let reasons: BTreeSet<&str> = outcomes
        .iter()
        .map(|o| o.expected.reason.as_str())
        .collect();
    let _ = writeln!(
        s,
        "\n{} expected categories, {} expected reasons ({})",
        cats.len(),
        reasons.len(),
        reasons.into_iter().collect::<Vec<_>>().join(", ")
    );
    s
}

fn failure_notes(outcomes: &[Outcome], gaps: &BTreeSet<Key>) -> String {
    let mut s = String::from(
        "# Real-MTA truth set: failing cases\n\n\
         Made by `tests/mta_truth.rs` (cases and sources: `tests/mta/cases.rs`).\n\
         Bounces: `INMAIL_TEST_MTA_SAVE` folder, `<mta>/<message>-<phase>-<cases>.eml`.\n\n",
    );
    for o in outcomes.iter().filter(|o| !o.passed()) {
        let what = match o.case.act.reply() {
            Some(r) => format!("peer replied `{}`", r.replace('\n', " ")),
            None => format!("{:?} (made by the MTA)", o.case.act),
        };
        let got = if o.got.found {
            format!(
                "status {} / {} / {} / {}",
                o.got.status.as_deref().unwrap_or("-"),
                o.got.bounce_type.as_deref().unwrap_or("-"),
                o.got.reason.as_deref().unwrap_or("-"),
                o.got.category.as_deref().unwrap_or("-"),
            )
        } else if o.bounce.is_none() {
            "no bounce arrived".to_string()
        } else {
            format!(
                "recipient not found (kind {}, recipients {:?})",
                o.got.kind.as_deref().unwrap_or("-"),
                o.got.recipients
            )
        };
        let _ = writeln!(
            s,
            "## {} {} {}{}\n- cause: {} — {} (source: {})\n- recipient: `{}`; bounce: `{}`\n- expected: status {} / {} / {} / {}\n- got: {}\n- diagnostic read: `{}`\n",
            o.mta,
            o.case.id,
            o.phase.as_str(),
            if gaps.contains(&o.key()) { " (known gap)" } else { "" },
            o.case.category,
            what,
            o.case.source,
            o.address,
            o.bounce.as_deref().unwrap_or("-"),
            o.expected.status.as_deref().unwrap_or("(not scored)"),
            o.expected.bounce_type,
            o.expected.reason,
            o.expected.category,
            got,
            o.got.diagnostic.as_deref().unwrap_or("-").replace('\n', " "),
        );
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bounce_a_real_mta_sends_is_qualified_as_the_cause_that_was_acted_out() {
    let mtas: Vec<String> = std::env::var("INMAIL_TEST_MTAS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let root = std::env::var_os("INMAIL_TEST_MTA_DIR").map(PathBuf::from);
    let (Some(root), false) = (root, mtas.is_empty()) else {
        eprintln!(
            "mta_truth: SKIPPED: no MTA provisioned (as root: source scripts/lib/mta.sh && mta_provision target/mta)"
        );
        return;
    };
    let versions = std::fs::read_dir(&root)
        .map(|_| {
            mtas.iter()
                .map(|m| {
                    let read =
                        |f: &str| std::fs::read_to_string(root.join(m).join(f)).unwrap_or_default();
                    format!(
                        "{m} {} (Debian {})",
                        read("mta-version").trim(),
                        read("version").trim()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    eprintln!("mta_truth: MTAs: {versions}");
    let lookup = std::net::ToSocketAddrs::to_socket_addrs(&("nxdomain.invalid", 25u16));
    // EAI_NONAME ("Name or service not known") is the resolver's NXDOMAIN
    if !lookup
        .as_ref()
        .is_err_and(|e| e.to_string().contains("not known"))
    {
        cases::RESOLVER_ANSWERS.store(false, std::sync::atomic::Ordering::Relaxed);
        eprintln!("mta_truth: the resolver gives no NXDOMAIN for nxdomain.invalid ({lookup:?}): the no-such-domain case is left out");
    }

    let runs: Vec<_> = mtas
        .iter()
        .map(|m| tokio::spawn(run_mta(m.clone(), root.clone())))
        .collect();
    let mut outcomes = Vec::new();
    let mut errors = Vec::new();
    for r in runs {
        match r.await {
            Ok(Ok(o)) => outcomes.extend(o),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }

    if std::env::var_os("INMAIL_TEST_MTA_WRITE_GAPS").is_some() {
        write_known_gaps(&outcomes);
    }
    let (gaps, varying) = known_gaps();
    let scores = report(&outcomes, &format!("MTAs: {versions}"));
    eprintln!("{scores}");
    // cargo test hides a passing test's output: scripts/test.sh prints this
    let _ = std::fs::write(root.join("scores.md"), &scores);
    if let Some(path) = std::env::var_os("INMAIL_TEST_MTA_REPORT") {
        let text = format!(
            "{}\n{}",
            report(&outcomes, &format!("MTAs: {versions}")),
            failure_notes(&outcomes, &gaps)
        );
        let _ = std::fs::write(path, text);
    }
    assert!(errors.is_empty(), "MTA runs failed: {errors:#?}");

    let unexpected: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed() && !gaps.contains(&o.key()))
        .map(|o| {
            format!(
                "{} {} {}: expected {:?} {}/{}/{}, got {:?}",
                o.mta,
                o.case.id,
                o.phase.as_str(),
                o.expected.status,
                o.expected.bounce_type,
                o.expected.reason,
                o.expected.category,
                o.got
            )
        })
        .collect();
    let fixed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.passed() && gaps.contains(&o.key()) && !varying.contains(&o.key()))
        .map(|o| format!("{} {} {}", o.mta, o.case.id, o.phase.as_str()))
        .collect();
    if !fixed.is_empty() {
        eprintln!(
            "mta_truth: now right, remove from tests/mta/known_gaps.txt: {}",
            fixed.join(", ")
        );
    }
    assert!(
        unexpected.is_empty(),
        "{} case(s) fail that tests/mta/known_gaps.txt does not list:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}
