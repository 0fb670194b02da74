//! `inmail qualify` as an operator uses it: the explanations name the rule that
//! decided, and a custom rules file replaces the bundled rules — or, when one
//! of its patterns is broken, is refused with the culprit's id.

mod common;

use common::{fixtures_dir, inmail};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A Postfix DSN for one recipient, rejected with "550 5.1.1 ... User unknown".
fn postfix_fixture() -> PathBuf {
    fixtures_dir().join("postfix.eml")
}

/// Runs `inmail qualify` with `args` before the fixture path; returns exit
/// success, stdout and stderr.
fn qualify(args: &[&str], fixture: &Path) -> (bool, String, String) {
    let mut all: Vec<&std::ffi::OsStr> = vec!["qualify".as_ref()];
    all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    all.push(fixture.as_os_str());
    let out = inmail(all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rules_file(toml: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temporary rules file");
    std::fs::write(f.path(), toml).expect("rules file is writable");
    f
}

#[test]
fn table_with_explain_names_the_rule() {
    let (ok, out, err) = qualify(&["--explain"], &postfix_fixture());
    assert!(ok, "stderr: {err}");
    let row = out
        .lines()
        .find(|l| l.contains("jdoe@example.org"))
        .expect("a row for the recipient");
    assert!(
        row.contains("user-unknown"),
        "the table row names the rule: {row}"
    );
    assert!(
        out.contains("why: rule user-unknown matched"),
        "the explanation names the rule:\n{out}"
    );
}

#[test]
fn json_with_explain_names_the_rule() {
    let (ok, out, err) = qualify(&["--json", "--explain"], &postfix_fixture());
    assert!(ok, "stderr: {err}");
    let v: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let r = &v["recipients"][0];
    assert_eq!(r["rule"], "user-unknown");
    let why = r["explanation"]
        .as_str()
        .expect("an explanation with --explain");
    assert!(why.contains("user-unknown"), "{why}");
}

#[test]
fn custom_rules_file_changes_the_verdict() {
    // deliberately absurd, so the verdict can only come from this file
    let rules = rules_file(
        r#"
[[rule]]
id = "test-unknown-means-full"
pattern = 'user unknown'
type = "soft"
reason = "mailbox_full"
category = "mailbox_full"
priority = 1
"#,
    );
    let path = rules.path().to_str().expect("UTF-8 temp path");
    let (ok, out, err) = qualify(&["--json", "--rules", path], &postfix_fixture());
    assert!(ok, "stderr: {err}");
    let v: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let r = &v["recipients"][0];
    assert_eq!(r["rule"], "test-unknown-means-full");
    assert_eq!(r["category"], "mailbox_full");
    assert_eq!(r["type"], "soft");
}

#[test]
fn rules_file_with_a_broken_pattern_names_the_rule() {
    let rules = rules_file(
        r#"
[[rule]]
id = "fine-rule"
pattern = 'mailbox full'
type = "soft"
reason = "mailbox_full"
category = "mailbox_full"

[[rule]]
id = "broken-rule"
pattern = 'user (unknown'
type = "hard"
reason = "user_unknown"
category = "user_unknown"
"#,
    );
    let path = rules.path().to_str().expect("UTF-8 temp path");
    let (ok, out, err) = qualify(&["--json", "--rules", path], &postfix_fixture());
    assert!(!ok, "a broken rules file must fail");
    assert!(
        out.is_empty(),
        "nothing is qualified with broken rules: {out}"
    );
    assert!(
        err.contains("broken-rule"),
        "the error names the rule: {err}"
    );
    assert!(
        !err.contains("fine-rule"),
        "only the broken rule is blamed: {err}"
    );
}
