//! The database commands: migrate, ingest, address, rules, qualifications,
//! requalify, report, deliveries, cleanup, quarantine.
//!
//! `cli::run` is synchronous, so each command builds its own tokio runtime.

use super::inputs;
use crate::app::rule_set;
use crate::config::Settings;
use crate::model::{BounceType, Category, Reason};
use crate::ops::{self, ingest::Message};
use crate::rules::{self, Rule};
use crate::store::{
    AddressInfo, AddressStatus, BounceInput, QualificationStatus, RecipientOutcome, Report, Store,
    StoreSettings,
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create or update the database schema.
    Migrate,
    /// Analyse, qualify and apply messages in the database; one line per recipient.
    Ingest(IngestArgs),
    /// An address's status, counters, reason, and the events that led there.
    Address(AddressArgs),
    /// The qualification rules stored in the database.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// The "to qualify" queue of bounce texts no rule explained.
    #[command(subcommand)]
    Qualifications(QualificationsCommand),
    /// Run the current rules again over the queued texts.
    Requalify,
    /// Bounce summary: by type and reason, by domain, quarantines and releases.
    Report(ReportArgs),
    /// What was sent, for correlation.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Lift due mailbox-full quarantines, reset quiet counters, purge old events and stored messages.
    Cleanup,
    /// Put addresses on or off the lists by hand.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// One JSON object per recipient result.
    #[arg(long)]
    pub json: bool,
    /// Messages applied per transaction.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Message files, folders (plain or maildir), mbox files, or `-` for standard input.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AddressArgs {
    pub address: String,
    #[arg(long)]
    pub json: bool,
    /// How many recent events to show.
    #[arg(long, default_value_t = 10)]
    pub events: i64,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// All rules with their hit counts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add one rule (refused if its pattern does not compile).
    Add(RuleArgs),
    /// Disable a rule (kept for its history).
    Disable { id: String },
    /// Qualify a diagnostic text with the database rules.
    Test {
        text: String,
        /// Recipient address, for domain-scoped rules.
        #[arg(long, default_value = "test@example.com")]
        address: String,
    },
    /// Insert or update rules from a TOML rules file.
    Import { file: PathBuf },
    /// Print the enabled rules as a TOML rules file.
    Export,
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    #[arg(long)]
    pub id: String,
    /// Case-insensitive regex matched against the diagnostic text.
    #[arg(long)]
    pub pattern: String,
    #[arg(long = "type")]
    pub bounce_type: BounceType,
    #[arg(long)]
    pub reason: Reason,
    #[arg(long)]
    pub category: Category,
    #[arg(long, default_value_t = 100)]
    pub priority: i32,
    #[arg(long)]
    pub domain: Option<String>,
    /// What says the text means this (RFC section, MTA documentation,
    /// provider's error-code page).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum QualificationsCommand {
    /// Queued texts, most frequent first.
    List {
        /// Also rows already kept, ignored or matched.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Qualify a queued text: creates a rule from its shape.
    Keep {
        id: i64,
        #[arg(long = "type")]
        bounce_type: BounceType,
        #[arg(long)]
        reason: Reason,
        /// Defaults to the category matching the reason.
        #[arg(long)]
        category: Option<Category>,
    },
    /// Drop a queued text from the queue.
    Ignore { id: i64 },
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Period: a number followed by s, m, h, d or w.
    #[arg(long, default_value = "7d")]
    pub since: String,
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// Import a CSV: header `message_id,address[,delivery,profile_id,tracking_id,sent_at]`; `-` for stdin.
    Import { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Addresses that are not simply valid, or only those of one status.
    List {
        #[arg(long, value_parser = ["erroneous", "quarantined", "denylisted", "allowlisted"])]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Make an address valid again, whatever its status.
    Release { address: String },
    /// Put an address in quarantine, on the denylist or on the allowlist.
    Add {
        address: String,
        #[arg(long, value_parser = ["quarantined", "denylisted", "allowlisted"])]
        status: String,
    },
}

pub fn run(config: Option<&Path>, cmd: DbCommand) -> anyhow::Result<i32> {
    init_logging();
    let settings = Settings::load(config)?;
    settings.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(dispatch(&settings, cmd))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INMAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Another command path may have installed one already; that one wins.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn open(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.database, StoreSettings::from(settings)).await?;
    store.check_migrated().await?;
    Ok(store)
}

async fn dispatch(settings: &Settings, cmd: DbCommand) -> anyhow::Result<i32> {
    if let DbCommand::Migrate = cmd {
        let store = Store::connect(&settings.database, StoreSettings::from(settings)).await?;
        store.migrate().await?;
        println!("database schema is up to date");
        return Ok(0);
    }
    let store = open(settings).await?;
    let now = Utc::now();
    match cmd {
        DbCommand::Migrate => Ok(0),
        DbCommand::Ingest(args) => ingest(settings, &store, args).await,
        DbCommand::Address(args) => address(&store, args).await,
        DbCommand::Rules(c) => rules_command(&store, c).await,
        DbCommand::Qualifications(c) => qualifications(&store, c).await,
        DbCommand::Requalify => {
            let set = rule_set(settings, &store).await?;
            let s = ops::qualifications::requalify(&store, &set).await?;
            println!(
                "{} queued texts checked, {} now explained by a rule",
                s.checked, s.matched
            );
            Ok(0)
        }
        DbCommand::Report(args) => report(&store, args, now).await,
        DbCommand::Deliveries(DeliveriesCommand::Import { file }) => {
            let s = if file.as_os_str() == "-" {
                ops::deliveries::import_csv(&store, std::io::stdin().lock(), now).await?
            } else {
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                ops::deliveries::import_csv(&store, std::io::BufReader::new(f), now).await?
            };
            println!(
                "{} delivery logs imported ({} already registered)",
                s.accepted, s.duplicates
            );
            Ok(0)
        }
        DbCommand::Cleanup => {
            let c = ops::cleanup::cleanup(&store, now, settings.quarantine.retention_days).await?;
            let (s, intake) = (c.summary, c.intake_purged);
            println!(
                "released {}, reset {}, purged {} events, {} message hashes and {intake} stored messages",
                s.released, s.reset, s.purged_events, s.purged_messages
            );
            Ok(0)
        }
        DbCommand::Quarantine(QuarantineCommand::List {
            status,
            limit,
            json,
        }) => {
            let status = status
                .map(|s| s.parse::<AddressStatus>().map_err(anyhow::Error::msg))
                .transpose()?;
            let rows = ops::addresses::list(&store, status, limit).await?;
            for r in &rows {
                if json {
                    println!("{}", serde_json::to_string(r)?);
                } else {
                    println!(
                        "{:<40} {:<12} errors={:<2} {:<16} {:<20} since {}{}",
                        r.address,
                        r.status,
                        r.error_count,
                        r.last_reason.as_deref().unwrap_or("-"),
                        r.last_category.as_deref().unwrap_or("-"),
                        r.quarantined_at
                            .or(r.last_error_at)
                            .map(|t| t.format("%F %T").to_string())
                            .unwrap_or_else(|| "-".into()),
                        r.release_at
                            .map(|t| format!(", release {}", t.format("%F")))
                            .unwrap_or_default(),
                    );
                }
            }
            if !json && rows.is_empty() {
                println!("no addresses in that state");
            }
            Ok(0)
        }
        DbCommand::Quarantine(QuarantineCommand::Release { address }) => {
            set_status(&store, &address, AddressStatus::Valid, now).await
        }
        DbCommand::Quarantine(QuarantineCommand::Add { address, status }) => {
            let status: AddressStatus = status.parse().map_err(anyhow::Error::msg)?;
            set_status(&store, &address, status, now).await
        }
    }
}

/// A manual status change, audited as made by `cli:$USER`.
async fn set_status(
    store: &Store,
    address: &str,
    status: AddressStatus,
    now: DateTime<Utc>,
) -> anyhow::Result<i32> {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let info = ops::status::set_status(
        store,
        address,
        status,
        None,
        None,
        &format!("cli:{user}"),
        now,
    )
    .await?;
    let before = info
        .events
        .first()
        .map_or("?", |e| e.status_before.as_str());
    println!("{}: {before} -> {}", info.address, info.status);
    Ok(0)
}

async fn ingest(settings: &Settings, store: &Store, args: IngestArgs) -> anyhow::Result<i32> {
    let set = rule_set(settings, store).await?;
    let analyzer = crate::pipeline::analyzer_from(settings)?;
    let (files, errors) = inputs::expand(&args.paths);
    for e in &errors {
        eprintln!("inmail: cannot read {e}");
    }
    // Read lazily, on the analysis thread; unreadable files are reported there.
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(errors.len()));
    let unreadable = std::sync::Arc::clone(&failures);
    let messages = files.into_iter().flat_map(move |f| match inputs::read(&f) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("inmail: cannot read {e}");
            unreadable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Vec::new()
        }
    });
    let messages = messages.map(|m| Message {
        source: m.source,
        data: m.data,
    });
    let started = std::time::Instant::now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let s = ops::ingest::ingest(
        store,
        analyzer,
        set,
        messages,
        args.batch,
        |batch, outcomes| {
            let mut rest = outcomes.iter();
            for input in batch {
                let n = input.analysis.recipients.len();
                if n == 0 {
                    print_no_recipient(&mut out, input, args.json)?;
                }
                for o in rest.by_ref().take(n) {
                    print_outcome(&mut out, o, args.json)?;
                }
            }
            Ok(())
        },
    )
    .await;
    out.flush()?;
    let s = s?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "ingested {} messages ({} recipients, {} duplicate) in {secs:.2}s = {:.0} messages/s",
        s.messages,
        s.recipients,
        s.duplicates,
        s.messages as f64 / secs.max(1e-9)
    );
    let failures = failures.load(std::sync::atomic::Ordering::Relaxed);
    Ok(if failures > 0 { 1 } else { 0 })
}

fn print_no_recipient(
    out: &mut impl Write,
    input: &BounceInput,
    json: bool,
) -> std::io::Result<()> {
    if json {
        let v = serde_json::json!({
            "source": input.source,
            "message_hash": hex::encode(input.message_hash),
            "kind": input.analysis.kind,
            "recipients": 0,
            "error": input.analysis.error,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "{} -: {} (no failed recipient)",
            input.source, input.analysis.kind
        )?;
    }
    Ok(())
}

fn print_outcome(out: &mut impl Write, o: &RecipientOutcome, json: bool) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(o)?)?;
        return Ok(());
    }
    let counted = match o.not_counted {
        None => "counted".to_owned(),
        Some(why) => format!("not counted: {}", why.as_str()),
    };
    writeln!(
        out,
        "{} {}: {}/{} [{}] rule={} correlated={} {}->{} errors={}->{} {}",
        o.source,
        o.address,
        o.bounce_type,
        o.reason,
        o.category,
        o.rule,
        o.correlated_by.as_str(),
        o.status_before,
        o.status_after,
        o.error_count_before,
        o.error_count_after,
        counted
    )?;
    Ok(())
}

async fn address(store: &Store, args: AddressArgs) -> anyhow::Result<i32> {
    let Some(info) = ops::addresses::lookup(store, &args.address, args.events).await? else {
        if args.json {
            println!("null");
        } else {
            println!("{}: unknown (nothing recorded)", args.address);
        }
        return Ok(0);
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print_address(&info);
    }
    Ok(0)
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
}

fn print_address(i: &AddressInfo) {
    println!("address:      {}", i.address);
    println!("status:       {}", i.status);
    println!("errors:       {}", i.error_count);
    println!("first error:  {}", opt_time(i.first_error_at));
    println!("last error:   {}", opt_time(i.last_error_at));
    println!("last counted: {}", opt_time(i.last_significant_error_at));
    println!(
        "last reason:  {} / {} / {}",
        i.last_type.as_deref().unwrap_or("-"),
        i.last_reason.as_deref().unwrap_or("-"),
        i.last_category.as_deref().unwrap_or("-")
    );
    println!("last text:    {}", i.last_text.as_deref().unwrap_or("-"));
    println!("quarantined:  {}", opt_time(i.quarantined_at));
    println!("release at:   {}", opt_time(i.release_at));
    println!("events (most recent first):");
    for e in &i.events {
        let why = if e.counted {
            "counted".into()
        } else {
            format!(
                "not counted: {}",
                e.not_counted_why.as_deref().unwrap_or("-")
            )
        };
        println!(
            "  {} {} {}/{} rule={} correlated={} {}->{} errors={}->{} {} {}",
            e.occurred_at.to_rfc3339(),
            e.kind,
            e.bounce_type.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("-"),
            e.rule_id.as_deref().unwrap_or("-"),
            e.correlation,
            e.status_before,
            e.status_after,
            e.count_before,
            e.count_after,
            if e.kind == "bounce" { why.as_str() } else { "" },
            e.diagnostic.as_deref().unwrap_or("")
        );
    }
}

async fn rules_command(store: &Store, cmd: RulesCommand) -> anyhow::Result<i32> {
    match cmd {
        RulesCommand::List { json } => {
            let rules = ops::rules::list(store).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rules)?);
            }
            for r in rules.iter().filter(|_| !json) {
                println!(
                    "{:<24} {:>4} {:<8} {:<8} {:<16} {:<20} hits={:<6} {}  {}",
                    r.rule.id,
                    r.rule.priority,
                    if r.enabled { "enabled" } else { "disabled" },
                    r.rule.bounce_type,
                    r.rule.reason,
                    r.rule.category,
                    r.hit_count,
                    r.rule.domain.as_deref().unwrap_or("*"),
                    r.rule.pattern
                );
                println!(
                    "{:<24} source: {}",
                    "",
                    r.rule.source.as_deref().unwrap_or("(none)")
                );
            }
        }
        RulesCommand::Add(a) => {
            let rule = Rule {
                id: a.id,
                pattern: a.pattern,
                bounce_type: a.bounce_type,
                reason: a.reason,
                category: a.category,
                priority: a.priority,
                domain: a.domain,
                source: a.source,
            };
            let rule = ops::rules::add(store, rule).await?;
            println!("rule {} added", rule.id);
        }
        RulesCommand::Disable { id } => {
            ops::rules::disable(store, &id).await?;
            println!("rule {id} disabled");
        }
        RulesCommand::Test { text, address } => {
            let t = ops::rules::test(store, text, &address).await?;
            println!("{}", serde_json::to_string(&t.verdict)?);
            let why = t.verdict.explanation();
            if !why.is_empty() {
                println!("{why}");
            }
            if let Some(source) = t.source {
                println!("source: {source}");
            }
        }
        RulesCommand::Import { file } => {
            let rules = rules::load_file(&file)?;
            let s = ops::rules::import(store, &rules).await?;
            println!("{} rules inserted, {} updated", s.inserted, s.updated);
        }
        RulesCommand::Export => print!("{}", ops::rules::export_toml(store).await?),
    }
    Ok(0)
}

async fn qualifications(store: &Store, cmd: QualificationsCommand) -> anyhow::Result<i32> {
    match cmd {
        QualificationsCommand::List { all, json } => {
            let rows = ops::qualifications::list(
                store,
                (!all).then_some(QualificationStatus::ToQualify),
                None,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            for q in rows {
                println!(
                    "#{:<6} {:>6}x {:<10} last {}  {}\n         e.g. {}",
                    q.id,
                    q.count,
                    q.status.as_str(),
                    q.last_seen_at.to_rfc3339(),
                    q.normalised,
                    q.first_text
                );
            }
        }
        QualificationsCommand::Keep {
            id,
            bounce_type,
            reason,
            category,
        } => {
            let rule = ops::qualifications::keep(store, id, bounce_type, reason, category).await?;
            println!("rule {} created: {}", rule.id, rule.pattern);
        }
        QualificationsCommand::Ignore { id } => {
            ops::qualifications::ignore(store, id).await?;
            println!("#{id} ignored");
        }
    }
    Ok(0)
}

async fn report(store: &Store, args: ReportArgs, now: DateTime<Utc>) -> anyhow::Result<i32> {
    let r = ops::report::report(store, &args.since, now).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if args.csv {
        print_report_csv(&r)?;
    } else {
        print_report(&r);
    }
    Ok(0)
}

fn print_report(r: &Report) {
    println!(
        "bounces from {} to {}",
        r.since.to_rfc3339(),
        r.until.to_rfc3339()
    );
    println!("\nby type and reason:");
    for row in &r.by_reason {
        println!(
            "  {:<8} {:<18} {:>8}",
            row.bounce_type, row.reason, row.count
        );
    }
    println!("\nby recipient domain:            hard     soft  ignored  sender-side");
    for d in &r.by_domain {
        println!(
            "  {:<28} {:>6} {:>8} {:>8} {:>12}",
            d.domain, d.hard, d.soft, d.ignored, d.sender_side
        );
    }
    println!(
        "\nquarantined {}, denylisted {}, released {}, uncorrelated bounces {}",
        r.quarantined, r.denylisted, r.released, r.uncorrelated
    );
}

fn print_report_csv(r: &Report) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    w.write_record(["section", "key", "type", "count"])?;
    for row in &r.by_reason {
        w.write_record([
            "reason",
            row.reason.as_str(),
            row.bounce_type.as_str(),
            &row.count.to_string(),
        ])?;
    }
    for d in &r.by_domain {
        for (t, n) in [
            ("hard", d.hard),
            ("soft", d.soft),
            ("ignored", d.ignored),
            ("sender_side", d.sender_side),
        ] {
            w.write_record(["domain", d.domain.as_str(), t, &n.to_string()])?;
        }
    }
    for (k, n) in [
        ("quarantined", r.quarantined),
        ("denylisted", r.denylisted),
        ("released", r.released),
        ("uncorrelated", r.uncorrelated),
    ] {
        w.write_record(["total", k, "", &n.to_string()])?;
    }
    w.flush()?;
    Ok(())
}
