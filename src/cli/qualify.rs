//! `inmail qualify`: the analysis engine on files, folders, mboxes or stdin.

use clap::Args;
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

pub fn run(config: Option<&Path>, args: QualifyArgs) -> anyhow::Result<i32> {
    let _ = (config, args);
    Ok(0)
}
