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
    let filter = EnvFilter::try_from_env("INMAIL_LOG")
        .or_else(|_| EnvFilter::try_new(level))
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
