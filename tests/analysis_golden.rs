//! Golden tests of the analysis engine: every fixture in
//! `tests/fixtures/bounces` goes through the analyzer and the default rules,
//! and the object `inmail qualify --json` would print for it must equal
//! `tests/fixtures/golden/<family>.json` exactly. The same fixture converted
//! to CRLF and to CR-only line endings must give the very same object.
//!
//! `UPDATE_GOLDEN=1 cargo test --test analysis_golden` rewrites the golden
//! files from the engine's output — except those of [`KNOWN_WRONG`] cases,
//! which hold the correct expectation written by hand. Review every change.

mod common;

use common::{golden_dir, json_diff, qualify_fixture, LineEnding};
use serde_json::Value;

/// Cases where the engine is wrong today: `family` for the golden comparison,
/// `family/crlf` or `family/cr` for a line-ending variant. They are asserted to
/// be *still* wrong, not skipped: when the engine is fixed the test fails until
/// the entry is removed, so the list never outlives the bugs it records.
const KNOWN_WRONG: &[(&str, &str)] = &[];

macro_rules! golden_tests {
    ($($test:ident => $family:literal),+ $(,)?) => {
        $(
            #[test]
            fn $test() {
                check($family);
            }
        )+
        const FAMILIES: &[&str] = &[$($family),+];
    };
}

golden_tests! {
    amazonses_json => "amazonses-json",
    arf => "arf",
    arf_redacted => "arf-redacted",
    autoreply => "autoreply",
    blocked_ip => "blocked-ip",
    courier => "courier",
    delay => "delay",
    delivered => "delivered",
    domino => "domino",
    exchange2003 => "exchange2003",
    exchange2007 => "exchange2007",
    exim => "exim",
    exim_delay => "exim-delay",
    exim_warning => "exim-warning",
    gmail => "gmail",
    gmail_disabled => "gmail-disabled",
    global_dsn => "global-dsn",
    host_unknown => "host-unknown",
    human_reply => "human-reply",
    mailbox_full => "mailbox-full",
    mailing_list => "mailing-list",
    mbox => "mbox",
    not_bounce_newsletter => "not-bounce-newsletter",
    office365 => "office365",
    opensmtpd => "opensmtpd",
    postfix => "postfix",
    postfix_data => "postfix-data",
    qmail => "qmail",
    sendmail => "sendmail",
    sendmail_plain => "sendmail-plain",
    sendmail_transcript => "sendmail-transcript",
    spf_auth => "spf-auth",
    with_tracking => "with-tracking",
    yahoo => "yahoo",
}

fn check(family: &str) {
    let lf = qualify_fixture(family, LineEnding::Lf);
    let mut failures = Vec::new();
    record(family, compare_with_golden(family, &lf), &mut failures);
    for ending in [LineEnding::Crlf, LineEnding::Cr] {
        let case = format!("{family}/{}", ending.name());
        let other = qualify_fixture(family, ending);
        let diff = json_diff(&lf, &other);
        let outcome = if diff.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "differs from the LF result:\n  {}",
                diff.join("\n  ")
            ))
        };
        record(&case, outcome, &mut failures);
    }
    assert!(failures.is_empty(), "\n{}\n", failures.join("\n\n"));
}

fn known_wrong(case: &str) -> Option<&'static str> {
    KNOWN_WRONG
        .iter()
        .find(|(c, _)| *c == case)
        .map(|(_, why)| *why)
}

/// Files the outcome of one case: a failure is expected exactly for the
/// KNOWN_WRONG cases.
fn record(case: &str, outcome: Result<(), String>, failures: &mut Vec<String>) {
    match (known_wrong(case), outcome) {
        (None, Ok(())) => {}
        (None, Err(e)) => failures.push(format!("{case}: {e}")),
        (Some(why), Err(e)) => eprintln!("{case}: known wrong ({why}):\n{e}"),
        (Some(why), Ok(())) => failures.push(format!(
            "{case}: listed in KNOWN_WRONG ({why}) but now correct: remove it from the list"
        )),
    }
}

fn compare_with_golden(family: &str, actual: &Value) -> Result<(), String> {
    let path = golden_dir().join(format!("{family}.json"));
    let pretty = serde_json::to_string_pretty(actual).expect("JSON values serialise") + "\n";
    // A known-wrong golden file is the hand-written truth: never regenerate it.
    if std::env::var_os("UPDATE_GOLDEN").is_some() && known_wrong(family).is_none() {
        std::fs::write(&path, pretty)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    })?;
    let expected: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let diff = json_diff(&expected, actual);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "differs from {}:\n  {}\nactual:\n{pretty}",
            path.display(),
            diff.join("\n  ")
        ))
    }
}

#[test]
fn every_fixture_has_a_test_and_a_golden_file() {
    let mut on_disk = common::fixture_families();
    on_disk.sort();
    let mut listed: Vec<&str> = FAMILIES.to_vec();
    listed.sort_unstable();
    assert_eq!(
        on_disk, listed,
        "fixtures on disk and golden_tests! entries differ"
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        // the other tests are writing the golden files right now
        return;
    }
    let mut golden: Vec<String> = std::fs::read_dir(golden_dir())
        .expect("golden folder is readable")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    golden.sort();
    assert_eq!(
        on_disk, golden,
        "every fixture needs exactly one golden file"
    );
}

#[test]
fn known_wrong_entries_name_real_cases() {
    for (case, why) in KNOWN_WRONG {
        let (family, variant_ok) = match case.split_once('/') {
            Some((family, variant)) => (family, variant == "crlf" || variant == "cr"),
            None => (*case, true),
        };
        assert!(
            FAMILIES.contains(&family) && variant_ok,
            "KNOWN_WRONG names no test case: {case}"
        );
        assert!(
            !why.trim().is_empty(),
            "KNOWN_WRONG entry {case} needs an explanation"
        );
    }
}
