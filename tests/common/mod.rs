//! Helpers shared by the integration tests that run the analysis engine on the
//! fixtures in `tests/fixtures/bounces`.

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
