//! Parse + qualify throughput, one thread, default rules.
//!
//! Reads every message of `INMAIL_BENCH_DIR` (default: the shared corpus beside
//! the project, else the test fixtures) into memory first, so only analysis
//! and qualification are timed.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use inmail::analysis::Analyzer;
use inmail::rules::RuleSet;
use std::path::PathBuf;

/// The allocator the `inmail` binary runs with (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn corpus() -> Vec<Vec<u8>> {
    let dirs: Vec<PathBuf> = match std::env::var_os("INMAIL_BENCH_DIR") {
        Some(d) => vec![d.into()],
        None => vec![
            "../shared/corpus/bounces".into(),
            "../shared/corpus/unlabelled-bounces".into(),
            "tests/fixtures/bounces".into(),
        ],
    };
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        out.extend(paths.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    assert!(
        !out.is_empty(),
        "no messages to benchmark: set INMAIL_BENCH_DIR"
    );
    out
}

fn bench(c: &mut Criterion) {
    let msgs = corpus();
    let analyzer = Analyzer::default();
    let rules = RuleSet::default_set();
    let mut g = c.benchmark_group("qualify");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.sample_size(20);
    g.bench_function(format!("parse_and_qualify_{}_messages", msgs.len()), |b| {
        b.iter(|| {
            let mut n = 0usize;
            for m in &msgs {
                let a = analyzer.analyse(m);
                for r in &a.recipients {
                    n += rules.qualify(r).qualified as usize;
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
