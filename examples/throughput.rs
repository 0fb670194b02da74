//! Parse + qualify every message of the folders given, N times, and print
//! messages/s: a quick profiling target (`perf record`, callgrind) and the
//! training run of `scripts/pgo.sh`.

/// The allocator the `inmail` binary runs with (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let mut msgs = Vec::new();
    for d in args.drain(..) {
        for e in std::fs::read_dir(&d).expect("folder").flatten() {
            if let Ok(b) = std::fs::read(e.path()) {
                msgs.push(b);
            }
        }
    }
    let analyzer = inmail::analysis::Analyzer::default();
    let rules = inmail::rules::RuleSet::default_set();
    let t = std::time::Instant::now();
    let mut n = 0usize;
    for _ in 0..rounds {
        for m in &msgs {
            let a = analyzer.analyse(m);
            for r in &a.recipients {
                n += rules.qualify(r).qualified as usize;
            }
        }
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "{} messages in {:.3} s: {:.0} messages/s ({n})",
        msgs.len() * rounds,
        dt,
        (msgs.len() * rounds) as f64 / dt
    );
}
