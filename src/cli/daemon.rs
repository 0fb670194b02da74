//! `inmail run` (the daemon, or `--once` for cron), `inmail intake`
//! (list / retry stored messages) and `inmail check-config`.

use crate::app::App;
use crate::config::{LogFormat, Settings};
use crate::store::{Store, StoreSettings};
use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Drain every mailbox and the intake queue, then exit (for cron).
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Subcommand)]
pub enum IntakeCommand {
    /// Stored messages, newest first (without their content).
    List {
        /// Only messages parked as failed.
        #[arg(long)]
        failed: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Queue failed messages again for an immediate attempt.
    Retry {
        /// Intake ids; every failed message with --all.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Print the effective settings as JSON instead of TOML.
    #[arg(long)]
    pub json: bool,
    /// Only validate (exit status and errors), print nothing else: for ExecStartPre.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Give up on the database after this many seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}

fn load(config: Option<&Path>) -> anyhow::Result<Settings> {
    let settings = Settings::load(config)?;
    settings.validate()?;
    Ok(settings)
}

pub(crate) fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(config: Option<&Path>, pretty: bool, args: RunArgs) -> anyhow::Result<i32> {
    let settings = load(config)?;
    let format = if pretty {
        LogFormat::Pretty
    } else {
        settings.log.format
    };
    crate::telemetry::init(format, &settings.log.level);
    let rt = runtime(std::thread::available_parallelism().map_or(2, |n| n.get()))?;
    rt.block_on(async move {
        if args.once {
            let s = App::build(settings).await?.run_once().await?;
            println!("{}", serde_json::to_string(&s)?);
            // Every mailbox was drained that could be; the status says
            // whether one could not (each is named in the summary and logged).
            if !s.failed_sources.is_empty() {
                let names: Vec<&str> = s
                    .failed_sources
                    .iter()
                    .map(|f| f.mailbox.as_str())
                    .collect();
                eprintln!("inmail: mailboxes failed: {}", names.join(", "));
                return Ok(2);
            }
            return Ok(0);
        }
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signals.cancel();
        });
        let Some(app) = App::build_when_reachable(&settings, &shutdown).await? else {
            return Ok(0);
        };
        app.run_until_stopped(shutdown).await?;
        Ok(0)
    })
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
                _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub fn intake(config: Option<&Path>, cmd: IntakeCommand) -> anyhow::Result<i32> {
    let settings = load(config)?;
    runtime(1)?.block_on(async move {
        let store = Store::connect(&settings.database, StoreSettings::from(&settings)).await?;
        store.check_migrated().await?;
        match cmd {
            IntakeCommand::List {
                failed,
                limit,
                json,
            } => {
                let rows = store.list_intake(failed, limit).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                    return Ok(0);
                }
                for r in rows {
                    // A message stored truncated shows its full size too.
                    let size = match r.original_size {
                        Some(full) => format!("{}B (truncated, {full}B)", r.size),
                        None => format!("{}B", r.size),
                    };
                    println!(
                        "#{:<8} {:<7} {:<12} {:<40} {:>8} attempts={} received={} {}",
                        r.id,
                        r.status.as_str(),
                        r.mailbox,
                        r.uid,
                        size,
                        r.attempts,
                        r.received_at.to_rfc3339(),
                        r.last_error.as_deref().unwrap_or("")
                    );
                }
                Ok(0)
            }
            IntakeCommand::Retry { ids, all } => {
                let n = if all {
                    store.retry_intake(None, Utc::now()).await?
                } else {
                    store.retry_intake(Some(&ids), Utc::now()).await?
                };
                println!("{n} messages queued again");
                Ok(0)
            }
        }
    })
}

pub fn check_config(config: Option<&Path>, args: CheckConfigArgs) -> anyhow::Result<i32> {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("inmail: {e}");
            return Ok(1);
        }
    };
    // The same checks as `run` makes before connecting (see
    // `app::check_settings`): what one accepts, the other accepts.
    if let Err(e) = crate::app::check_settings(&settings) {
        eprintln!("inmail: {e}");
        return Ok(1);
    }
    if args.quiet {
        return Ok(0);
    }
    // Secrets are masked by the settings' serialisers; mailbox passwords
    // are only named (password_env / password_file), never read here.
    if args.json {
        println!("{}", serde_json::to_string_pretty(&settings)?);
    } else {
        print!("{}", toml::to_string(&settings)?);
    }
    eprintln!("settings are valid");
    Ok(0)
}

/// The container health check: settings valid, the database answers and is
/// migrated. Exit 0 healthy, 1 not (with the reason on stderr).
pub fn health(config: Option<&Path>, args: HealthArgs) -> anyhow::Result<i32> {
    let settings = load(config)?;
    let rt = runtime(1)?;
    let checked = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(args.timeout_secs), async {
            let store = Store::connect(&settings.database, StoreSettings::from(&settings)).await?;
            store.check_migrated().await
        })
        .await
    });
    match checked {
        Ok(Ok(())) => {
            println!("healthy");
            Ok(0)
        }
        Ok(Err(e)) => {
            eprintln!("inmail: unhealthy: {e}");
            Ok(1)
        }
        Err(_) => {
            eprintln!(
                "inmail: unhealthy: the database did not answer within {}s",
                args.timeout_secs
            );
            Ok(1)
        }
    }
}
