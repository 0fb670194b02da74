//! The `inmail` command line: one subcommand per job. Each handler returns an
//! exit code; errors bubble up as `anyhow` with context.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub mod daemon;
pub mod db;
pub mod inputs;
pub mod qualify;
pub mod serve;

#[derive(Debug, Parser)]
#[command(
    name = "inmail",
    version,
    about = "Bounce-processing daemon: qualify bounces, keep address lists clean"
)]
pub struct Cli {
    /// TOML settings file (INMAIL__SECTION__KEY environment variables override it).
    #[arg(long, short = 'c', global = true, env = "INMAIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log as readable text instead of JSON.
    #[arg(long, global = true)]
    pub pretty: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse and qualify messages without touching the database.
    Qualify(qualify::QualifyArgs),
    /// The failure categories with their default type and reason.
    Categories {
        /// As a Markdown table (the one in README.md).
        #[arg(long)]
        markdown: bool,
    },
    /// The daemon: drain the configured mailboxes into the store (`--once`: drain and exit);
    /// serves the HTTP API too when `[http] listen` is set.
    Run(daemon::RunArgs),
    /// The HTTP API alone, without mailbox work (needs `[http] listen`).
    Serve(serve::ServeArgs),
    /// Messages stored by the daemon: list them, retry failed ones.
    #[command(subcommand)]
    Intake(daemon::IntakeCommand),
    /// Validate a settings file and print the effective settings (secrets masked).
    CheckConfig(daemon::CheckConfigArgs),
    /// Health check for containers: the database answers and is migrated.
    Health(daemon::HealthArgs),
    #[command(flatten)]
    Db(db::DbCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Qualify(args) => qualify::run(cli.config.as_deref(), args),
        Command::Categories { markdown } => {
            print!("{}", qualify::categories_table(markdown));
            Ok(0)
        }
        Command::Run(args) => daemon::run(cli.config.as_deref(), cli.pretty, args),
        Command::Serve(args) => serve::run(cli.config.as_deref(), cli.pretty, args),
        Command::Intake(cmd) => daemon::intake(cli.config.as_deref(), cmd),
        Command::CheckConfig(args) => daemon::check_config(cli.config.as_deref(), args),
        Command::Health(args) => daemon::health(cli.config.as_deref(), args),
        Command::Db(cmd) => db::run(cli.config.as_deref(), cmd),
    }
}
