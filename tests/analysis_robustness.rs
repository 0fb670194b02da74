//! Robustness of the analysis engine on hostile and damaged input: random
//! bytes, truncated, bit-flipped and line-ending-mangled fixtures must never
//! make `Analyzer::analyse` panic or exceed its limits, and damage must never
//! turn a message that is not a bounce into a failure. Also runs the compiled
//! `inmail qualify --json` on the fixtures folder.

mod common;

use common::{
    fixture_bytes, fixture_families, fixtures_dir, inmail, qualify_fixture, verdicts, LineEnding,
};
use inmail::analysis::{Analysis, Analyzer, Limits};
use inmail::model::{BounceType, MessageKind};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use std::sync::LazyLock;

/// Fixtures that are not bounces: no damage may make them report a failure.
const NOT_BOUNCES: &[&str] = &["human-reply", "not-bounce-newsletter"];

static FIXTURES: LazyLock<Vec<(String, Vec<u8>)>> = LazyLock::new(|| {
    fixture_families()
        .into_iter()
        .map(|f| {
            let bytes = fixture_bytes(&f);
            (f, bytes)
        })
        .collect()
});

/// Limits far below the defaults, so that random input actually reaches them.
fn tight_analyzer() -> Analyzer {
    Analyzer {
        limits: Limits {
            max_message_bytes: 8 * 1024,
            max_part_bytes: 2 * 1024,
            max_parts: 6,
            max_recipients: 1,
        },
        ..Analyzer::default()
    }
}

static ANALYZERS: LazyLock<[Analyzer; 2]> =
    LazyLock::new(|| [Analyzer::default(), tight_analyzer()]);

/// Analyses `raw` with the default and the tight limits and checks what must
/// hold for any input: bounded results that qualify and serialise.
fn analyse_checked(raw: &[u8]) -> Result<Vec<Analysis>, TestCaseError> {
    let mut out = Vec::new();
    for analyzer in ANALYZERS.iter() {
        let a = analyzer.analyse(raw);
        let limits = &analyzer.limits;
        prop_assert!(
            a.recipients.len() <= limits.max_recipients,
            "{} recipients",
            a.recipients.len()
        );
        // an mbox `From ` line is dropped before the size check, hence the margin
        if raw.len() > limits.max_message_bytes + 1024 {
            prop_assert!(
                a.truncated,
                "a {}-byte message is not marked truncated",
                raw.len()
            );
        }
        if a.kind == MessageKind::NotBounce {
            prop_assert!(a.recipients.is_empty(), "not_bounce with recipients");
        }
        let v = verdicts(&a);
        let json = inmail::cli::qualify::result("input", &a, &v, true);
        prop_assert!(serde_json::to_string(&json).is_ok());
        out.push(a);
    }
    Ok(out)
}

fn assert_no_failure(family: &str, analyses: &[Analysis]) -> Result<(), TestCaseError> {
    for a in analyses {
        for (r, v) in a.recipients.iter().zip(verdicts(a)) {
            prop_assert!(
                !matches!(v.bounce_type, BounceType::Hard | BounceType::Soft),
                "{family}: damaged copy reports a {} failure for {} ({})",
                v.bounce_type,
                r.address,
                v.rule
            );
        }
    }
    Ok(())
}

/// Checks `damaged`, a damaged copy of fixture number `index`.
fn check_damaged(index: usize, damaged: &[u8]) -> Result<(), TestCaseError> {
    let family = &FIXTURES[index].0;
    let analyses = analyse_checked(damaged)?;
    if NOT_BOUNCES.contains(&family.as_str()) {
        assert_no_failure(family, &analyses)?;
    }
    Ok(())
}

fn fixture_index() -> impl Strategy<Value = usize> {
    0..FIXTURES.len()
}

/// Text built from the vocabulary of bounces, so random input gets past the
/// header parser and into the MIME, DSN and free-text readers.
fn mail_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n".to_string()),
        Just("Subject: Undelivered Mail Returned to Sender\n".to_string()),
        Just("Return-Path: <>\n".to_string()),
        Just("X-Failed-Recipients: a@example.org, b@example.org\n".to_string()),
        Just(
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n"
                .to_string()
        ),
        Just("Content-Type: multipart/mixed; boundary=b\n".to_string()),
        Just("Content-Type: message/delivery-status\n".to_string()),
        Just("Content-Type: message/rfc822\n".to_string()),
        Just("Content-Type: message/feedback-report\n".to_string()),
        Just("Content-Transfer-Encoding: base64\n".to_string()),
        Just("Content-Transfer-Encoding: quoted-printable\n".to_string()),
        Just("--b\n".to_string()),
        Just("--b--\n".to_string()),
        Just("\n".to_string()),
        Just("Final-Recipient: rfc822; user@example.org\n".to_string()),
        Just("Action: failed\nStatus: 5.1.1\n".to_string()),
        Just("Diagnostic-Code: smtp; 550 5.1.1 User unknown\n".to_string()),
        Just("<user@example.org>:\nRemote host said: 552 5.2.2 mailbox full\n".to_string()),
        Just("--- Below this line is a copy of the message.\n".to_string()),
        Just("{\"notificationType\":\"Bounce\",\"bounce\":{\"bouncedRecipients\":[".to_string()),
        "[ -~]{0,40}\n?",
        "[\\x00-\\xff]{0,8}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..4096)) {
        let analyses = analyse_checked(&raw)?;
        assert_no_failure("random bytes", &analyses)?;
    }

    #[test]
    fn mail_like_text_never_panics(raw in mail_like()) {
        analyse_checked(&raw)?;
    }

    #[test]
    fn truncated_fixtures(index in fixture_index(), cut in any::<prop::sample::Index>()) {
        let bytes = &FIXTURES[index].1;
        check_damaged(index, &bytes[..cut.index(bytes.len() + 1)])?;
    }

    #[test]
    fn fixtures_with_flipped_bytes(
        index in fixture_index(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..16),
    ) {
        let mut bytes = FIXTURES[index].1.clone();
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        check_damaged(index, &bytes)?;
    }

    #[test]
    fn fixtures_with_mixed_line_endings(
        index in fixture_index(),
        choices in prop::collection::vec(0..3u8, 1..64),
    ) {
        let mut out = Vec::new();
        let mut n = 0;
        for &b in &FIXTURES[index].1 {
            if b != b'\n' {
                out.push(b);
                continue;
            }
            out.extend_from_slice(match choices[n % choices.len()] {
                0 => b"\n".as_slice(),
                1 => b"\r\n",
                _ => b"\r",
            });
            n += 1;
        }
        check_damaged(index, &out)?;
    }
}

#[test]
fn recipients_beyond_the_limit_are_cut_and_flagged() {
    let mut msg = String::from(concat!(
        "From: MAILER-DAEMON@mx.example.net\n",
        "Subject: Undelivered Mail Returned to Sender\n",
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n",
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n",
    ));
    for i in 0..40 {
        msg.push_str(&format!(
            "Final-Recipient: rfc822; user{i}@example.org\nAction: failed\nStatus: 5.1.1\n\n"
        ));
    }
    msg.push_str("--b--\n");
    let analyzer = Analyzer {
        limits: Limits {
            max_recipients: 5,
            ..Limits::default()
        },
        ..Analyzer::default()
    };
    let a = analyzer.analyse(msg.as_bytes());
    assert_eq!(a.recipients.len(), 5);
    assert!(a.truncated);
    assert_eq!(
        a.recipients[0].address.as_str(),
        "user0@example.org",
        "the first recipients are kept"
    );
}

#[test]
fn deeply_nested_multipart_does_not_overflow_the_stack() {
    // mailparse recurses per level: without the engine's guard this aborts the process
    let depth = 20_000;
    let mut msg = String::from("From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n");
    for i in 0..depth {
        msg.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
        ));
    }
    msg.push_str("Content-Type: text/plain\n\n<user@example.org>: 550 5.1.1 user unknown\n");
    let a = Analyzer::default().analyse(msg.as_bytes());
    assert!(a.recipients.len() <= 1);
}

#[test]
fn oversized_message_is_analysed_on_its_start() {
    let mut raw = fixture_bytes("postfix");
    raw.resize(raw.len() + 3 * 1024 * 1024, b'x');
    let a = Analyzer::default().analyse(&raw);
    assert!(a.truncated);
    assert_eq!(
        a.kind,
        MessageKind::Dsn,
        "the report in the first bytes is still read"
    );
}

// --- the compiled binary ---------------------------------------------------------

/// What the library gives for each fixture, one object per message, in the
/// order the CLI reads them (sorted file names, mbox messages in order).
fn expected_per_message() -> Vec<Value> {
    fixture_families()
        .iter()
        .flat_map(|f| match qualify_fixture(f, LineEnding::Lf) {
            Value::Array(v) => v,
            one => vec![one],
        })
        .collect()
}

#[test]
fn cli_prints_one_json_line_per_message_in_input_order() {
    let dir = fixtures_dir();
    let out = inmail(["qualify".as_ref(), "--json".as_ref(), dir.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit status {:?}, stderr: {stderr}",
        out.status
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let expected = expected_per_message();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "one line per message");
    let prefix = format!("{}/", dir.display());
    for (line, want) in lines.iter().zip(&expected) {
        let mut got: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let source = got["source"].as_str().expect("a source").to_string();
        got["source"] = Value::String(source.strip_prefix(&prefix).unwrap_or(&source).to_string());
        assert_eq!(&got, want, "the CLI and the library disagree");
    }
}

#[test]
fn cli_names_a_missing_path_and_fails() {
    let missing = fixtures_dir().join("no-such-message.eml");
    let out = inmail(["qualify".as_ref(), "--json".as_ref(), missing.as_os_str()]);
    assert!(!out.status.success(), "a missing path must fail");
    assert!(
        out.stdout.is_empty(),
        "nothing to print: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&missing.display().to_string()),
        "stderr does not name the path: {stderr}"
    );
}

#[test]
fn cli_reports_a_missing_path_after_the_readable_ones() {
    let good = fixtures_dir().join("postfix.eml");
    let missing = fixtures_dir().join("no-such-message.eml");
    let out = inmail([
        "qualify".as_ref(),
        "--json".as_ref(),
        good.as_os_str(),
        missing.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "the readable file is still qualified"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-message.eml"));
}
