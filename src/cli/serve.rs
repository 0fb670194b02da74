//! `inmail serve`: the HTTP API alone, without mailbox work. Any number of
//! `serve` and `run` processes on one database answer the same.

use super::daemon::{runtime, wait_for_signal};
use crate::app::App;
use crate::config::{LogFormat, Settings};
use anyhow::bail;
use clap::Args;
use std::path::Path;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct ServeArgs {}

pub fn run(config: Option<&Path>, pretty: bool, _args: ServeArgs) -> anyhow::Result<i32> {
    let mut settings = Settings::load(config)?;
    settings.validate()?;
    if settings.http.listen.is_none() {
        bail!("http.listen is not set: `inmail serve` needs an address to listen on ([http] listen or INMAIL__HTTP__LISTEN)");
    }
    // mailboxes are `inmail run`'s job
    settings.mailboxes.clear();
    let format = if pretty {
        LogFormat::Pretty
    } else {
        settings.log.format
    };
    crate::telemetry::init(format, &settings.log.level);
    let rt = runtime(std::thread::available_parallelism().map_or(2, |n| n.get()))?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signals.cancel();
        });
        let Some(app) = App::build_when_reachable(&settings, &shutdown).await? else {
            return Ok(0);
        };
        let Some(listener) = app.bind_http().await? else {
            bail!("http.listen is not set");
        };
        app.serve_api(listener, shutdown).await?;
        Ok(0)
    })
}
