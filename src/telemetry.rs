//! Logging for the long-running commands: JSON lines by default (one object
//! per event, with the current span's fields), or readable text with
//! `--pretty` / `[log] format = "pretty"`. `INMAIL_LOG` (an `EnvFilter`
//! directive) overrides `[log] level`. Logs go to standard error, so a
//! command's own output (summaries) stays on standard output.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. A second call (tests, or another command
/// path that already installed one) is a no-op.
pub fn init(format: LogFormat, level: &str) {
    // An INMAIL_LOG that is not a level would silence every line (errors
    // included): it is ignored, with a word on standard error.
    let from_env = std::env::var("INMAIL_LOG").ok().filter(|v| {
        let ok = crate::config::check_log_level(v).is_ok();
        if !ok {
            eprintln!(
                "inmail: INMAIL_LOG = {v:?} is not a log level; using [log] level = {level:?}"
            );
        }
        ok
    });
    let filter = from_env
        .as_deref()
        .map_or_else(|| EnvFilter::try_new(level), EnvFilter::try_new)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
