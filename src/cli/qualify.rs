//! `inmail qualify`: the analysis engine on files, folders, mboxes or stdin,
//! without a database.

use super::inputs;
use crate::analysis::Analysis;
use crate::config::Settings;
use crate::pipeline::{analyzer_from, process};
use crate::rules::{RuleSet, Verdict};
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct QualifyArgs {
    /// One JSON object per message, one per line.
    #[arg(long)]
    pub json: bool,
    /// Say why each recipient got its result.
    #[arg(long)]
    pub explain: bool,
    /// Rules file (TOML) instead of the bundled default rules.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Message files, folders (plain or maildir), mbox files, or `-` for standard input.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// The JSON contract of `qualify --json`, one per message.
#[derive(Serialize)]
pub struct MessageResult<'a> {
    pub source: &'a str,
    pub kind: crate::model::MessageKind,
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_type: Option<&'a str>,
    pub original: &'a crate::model::OriginalRef,
    pub recipients: Vec<RecipientResult<'a>>,
}

#[derive(Serialize)]
pub struct RecipientResult<'a> {
    pub address: &'a crate::model::EmailAddress,
    pub action: Option<crate::model::Action>,
    pub status: Option<crate::model::EnhancedStatus>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub status_inferred: bool,
    pub reply_code: Option<crate::model::ReplyCode>,
    pub diagnostic: Option<&'a str>,
    pub remote_mta: Option<&'a str>,
    #[serde(flatten)]
    pub verdict: &'a Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<std::borrow::Cow<'a, str>>,
}

pub fn result<'a>(
    source: &'a str,
    a: &'a Analysis,
    verdicts: &'a [Verdict],
    explain: bool,
) -> MessageResult<'a> {
    MessageResult {
        source,
        kind: a.kind,
        error: a.error.as_deref(),
        truncated: a.truncated,
        feedback_type: a.feedback_type.as_deref(),
        original: &a.original,
        recipients: a
            .recipients
            .iter()
            .zip(verdicts)
            .map(|(r, v)| RecipientResult {
                address: &r.address,
                action: r.action,
                status: r.status,
                status_inferred: r.status_inferred,
                reply_code: r.reply_code,
                diagnostic: r.diagnostic.as_deref(),
                remote_mta: r.remote_mta.as_deref(),
                verdict: v,
                explanation: explain.then(|| v.explanation()),
            })
            .collect(),
    }
}

pub fn run(config: Option<&Path>, args: QualifyArgs) -> anyhow::Result<i32> {
    let settings = Settings::load(config)?;
    settings.validate()?;
    let analyzer = analyzer_from(&settings)?;
    let rules_path = args
        .rules
        .as_ref()
        .or(settings.analysis.rules_file.as_ref());
    let compile = || -> anyhow::Result<RuleSet> {
        Ok(match rules_path {
            Some(p) => RuleSet::compile(crate::rules::load_file(p)?)
                .with_context(|| format!("rules file {}", p.display()))?,
            None => RuleSet::default_set(),
        }
        .with_delay_warnings(settings.analysis.delay_warnings))
    };
    // Compiling the rules and listing the folders are the start-up's two
    // serial parts, independent of each other: one core each.
    let (rules, (files, mut errors)) = std::thread::scope(|scope| {
        let listing = scope.spawn(|| inputs::expand(&args.paths));
        let rules = compile();
        let listed = match listing.join() {
            Ok(listed) => listed,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (rules, listed)
    });
    let rules = rules?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let render = |f: &PathBuf| render_file(f, &analyzer, &rules, &args);
    for window in files.chunks(WINDOW * threads) {
        for rendered in in_parallel(window, threads, &render) {
            match rendered {
                Ok(bytes) => out.write_all(&bytes)?,
                Err(e) => errors.push(e),
            }
        }
    }
    out.flush()?;
    for e in &errors {
        eprintln!("inmail: cannot read {e}");
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// Files a thread reads, analyses and renders at a time. The messages of a
/// folder are independent of one another, so they are processed on every
/// core, a window of files at a time, and written in the order given.
const WINDOW: usize = 512;
/// Threads beyond this gain nothing: writing the output becomes the bound.
const MAX_THREADS: usize = 8;

/// One file's lines of output (every message of an mbox), or why it could
/// not be read.
fn render_file(
    f: &Path,
    analyzer: &crate::analysis::Analyzer,
    rules: &RuleSet,
    args: &QualifyArgs,
) -> Result<Vec<u8>, inputs::InputError> {
    let msgs = inputs::read(f)?;
    let mut out = Vec::new();
    for m in msgs {
        let q = process(analyzer, rules, &m.data);
        let res = result(&m.source, &q.analysis, &q.verdicts, args.explain);
        let written = if args.json {
            serde_json::to_writer(&mut out, &res)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
        } else {
            write_table(&mut out, &res)
        };
        // writing to a Vec fails only when serialising does, which these
        // plain structs never do: say so rather than drop the message
        if let Err(error) = written {
            return Err(inputs::InputError {
                path: f.to_path_buf(),
                error,
            });
        }
    }
    Ok(out)
}

/// `f` over `items` on up to `threads` threads (this one among them),
/// results in the items' order. Each thread takes the next item when it is
/// done with one, so a few large files do not leave a core idle.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: &(impl Fn(&T) -> R + Sync),
) -> Vec<R> {
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut done = work();
        for h in helpers {
            match h.join() {
                Ok(d) => done.extend(d),
                // the analysis never panics on input (tests/analysis_robustness.rs);
                // if it did, the panic is the process's, as it was on one thread
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        done
    });
    done.sort_unstable_by_key(|&(i, _)| i);
    done.into_iter().map(|(_, r)| r).collect()
}

fn write_table(out: &mut impl Write, r: &MessageResult) -> std::io::Result<()> {
    write!(out, "{}  [{}]", r.source, r.kind)?;
    if let Some(e) = r.error {
        write!(out, "  error: {e}")?;
    }
    if r.truncated {
        write!(out, "  (truncated)")?;
    }
    writeln!(out)?;
    for x in &r.recipients {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "  {:<40} {:<7} {:<5} {:<4} {:<16} {:<20} {}{}",
            x.address.as_str(),
            x.verdict.bounce_type.as_str(),
            opt(x.status.map(|s| s.to_string())),
            opt(x.reply_code.map(|s| s.to_string())),
            x.verdict.reason.as_str(),
            x.verdict.category.as_str(),
            x.verdict.rule,
            if x.verdict.qualified {
                ""
            } else {
                "  (to qualify)"
            },
        )?;
        if let Some(e) = &x.explanation {
            writeln!(out, "      why: {e}")?;
            if let Some(d) = x.diagnostic {
                let d: String = d.chars().take(200).collect();
                writeln!(out, "      diagnostic: {d}")?;
            }
        }
    }
    Ok(())
}

/// The category taxonomy, generated from [`crate::model::Category`] so the
/// documentation cannot drift from the code.
pub fn categories_table(markdown: bool) -> String {
    use crate::model::Category;
    let mut out = String::new();
    if markdown {
        out.push_str("| category | default type | default reason | sender side | meaning |\n");
        out.push_str("|---|---|---|---|---|\n");
    }
    for c in Category::ALL {
        let (t, r) = c.default_verdict();
        let side = if c.sender_side() { "yes" } else { "" };
        if markdown {
            out.push_str(&format!(
                "| `{c}` | {t} | {r} | {side} | {} |\n",
                c.describe()
            ));
        } else {
            out.push_str(&format!(
                "{:<22} {:<8} {:<17} {:<4} {}\n",
                c.as_str(),
                t.as_str(),
                r.as_str(),
                side,
                c.describe()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::in_parallel;

    #[test]
    fn work_shared_between_threads_comes_back_in_the_items_order() {
        let items: Vec<u64> = (0..5_000).collect();
        // uneven work, so the threads finish their items out of order
        let slow = |&x: &u64| (0..(x % 97) * 50).fold(x, |a, b| a.wrapping_add(b));
        let expected: Vec<u64> = items.iter().map(slow).collect();
        for threads in [1, 2, 3, 8] {
            assert_eq!(
                in_parallel(&items, threads, &slow),
                expected,
                "{threads} threads"
            );
        }
        assert!(in_parallel(&[] as &[u64], 4, &slow).is_empty());
    }
}
