//! Build, then run: [`App::build`] connects to PostgreSQL, checks the schema,
//! compiles the rules and builds the sources (any problem is reported there,
//! before anything runs); [`App::run_until_stopped`] is the daemon,
//! [`App::run_once`] the one-shot drain for cron.
//!
//! The running daemon is a set of tasks under one `TaskTracker`:
//! - one [`supervisor`] loop per mailbox, whatever its kind: takes the
//!   mailbox's lease (an advisory lock, see [`Store::try_lease`]; instances
//!   without it retry every few seconds), drains the backlog, then waits the
//!   source's way (inotify on a maildir's `new/`, IMAP IDLE, polling every
//!   `poll_interval_secs`);
//! - `daemon.workers` [`workers`] looping on [`Pipeline::process_once`],
//!   woken by the fetchers and by a 1 s tick (rows stored by other
//!   instances, retries coming due); `run --once` runs the same loop until
//!   the queue is empty;
//! - the cleanup job every `cleanup_interval_secs`;
//! - a rules listener that reloads the rule set when the table changes.
//!
//! Every loop survives errors: it logs once per state change (`source …
//! is down` / `recovered`, `database worker … is down` / `recovered`),
//! backs off (0.5 s doubling to 30 s) and resumes by itself.

mod health;
pub(crate) mod supervisor;
pub(crate) mod workers;

use crate::analysis::Analyzer;
use crate::backoff::{sleep_or_cancel, OutageBackoff};
use crate::clock::{system_clock, Clock};
use crate::config::Settings;
use crate::http::{self, ApiState};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineSettings};
use crate::rules::{self, RuleSet};
use crate::source::Source;
use crate::store::{Backoff, IntakeCounts, Store, StoreSettings};
use anyhow::Context;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use supervisor::wake_workers;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use workers::Until;

pub struct App {
    settings: Settings,
    store: Store,
    pipeline: Arc<Pipeline>,
    sources: Vec<Source>,
    metrics: Arc<Metrics>,
}

/// What [`App::run_once`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    /// New intake rows fetched from the mailboxes.
    pub stored: usize,
    /// Fetched messages that were already stored.
    pub duplicates: usize,
    /// Intake rows processed (done, or charged a failed attempt).
    pub processed: usize,
    /// Messages left in their mailbox for a later retry (unreadable file,
    /// a fetch that failed on its own account); see `daemon.skipped_retry_secs`.
    pub skipped: usize,
    /// Mailboxes skipped because another instance holds their lease.
    pub skipped_sources: Vec<String>,
    /// Mailboxes whose drain failed (each also logged); the others were
    /// drained all the same. `inmail run --once` exits with status 2 when
    /// this is not empty.
    pub failed_sources: Vec<FailedSource>,
    /// The intake table afterwards.
    pub intake: IntakeCounts,
    pub elapsed_secs: f64,
}

/// A mailbox whose drain failed in [`App::run_once`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedSource {
    pub mailbox: String,
    pub error: String,
}

/// Every check `run` makes before it connects to anything, and
/// `check-config` makes as well (so that they never disagree): the
/// settings' own rules ([`Settings::validate`]: keys, ranges, the database
/// URL parsed, log level, maildir structure, ports), then each mailbox built
/// the way `run` builds it (TLS mode, loopback rule, password readable, CA
/// file loadable, folder names, `after`/`move_to`). Nothing is created and
/// no server is contacted. The error lists every problem, each naming its key.
pub fn check_settings(settings: &Settings) -> Result<(), crate::config::ConfigError> {
    let mut problems = match settings.validate() {
        Ok(()) => Vec::new(),
        Err(crate::config::ConfigError::Invalid(p)) => p,
        Err(other) => return Err(other),
    };
    for m in &settings.mailboxes {
        // `validate` already named a missing or incomplete maildir path.
        let path_key = format!("({}).path", m.name());
        if problems.iter().any(|p| p.contains(&path_key)) {
            continue;
        }
        if let Err(e) = crate::source::build(m, &settings.daemon) {
            problems.push(e.to_string());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::config::ConfigError::Invalid(problems))
    }
}

impl App {
    /// Connects, checks migrations, compiles the rules (database, else
    /// `analysis.rules_file`, else the bundled set) and builds the sources.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        check_settings(&settings)?;
        let store = Store::connect(&settings.database, StoreSettings::from(&settings)).await?;
        Self::build_with_store(settings, store, system_clock()).await
    }

    /// [`App::build`] over an existing store (tests), with a clock.
    pub async fn build_with_store(
        settings: Settings,
        store: Store,
        clock: Clock,
    ) -> anyhow::Result<App> {
        store.check_migrated().await?;
        let rules = rule_set(&settings, &store).await?;
        tracing::info!(rules = rules.rules().len(), "rules compiled");
        let analyzer = analyzer_from(&settings)?;
        let metrics = Arc::new(Metrics::new());
        let pipeline = Arc::new(
            Pipeline::new(
                store.clone(),
                analyzer,
                rules,
                PipelineSettings {
                    batch_size: settings.daemon.batch_size,
                    max_attempts: settings.daemon.max_attempts,
                    backoff: Backoff::default(),
                    batch_bytes: settings.daemon.batch_bytes,
                    read_prefix: crate::pipeline::analysis_prefix(
                        settings.analysis.max_message_bytes,
                    ),
                },
                Arc::clone(&clock),
            )
            .with_metrics(Arc::clone(&metrics)),
        );
        let mut sources = Vec::new();
        for m in &settings.mailboxes {
            let source = crate::source::build(m, &settings.daemon)?
                .into_source(store.clone(), Arc::clone(&clock));
            source.fetch().check_at_startup().await?;
            sources.push(source);
        }
        Ok(App {
            settings,
            store,
            pipeline,
            sources,
            metrics,
        })
    }

    /// [`App::build`]; a database that is not up yet (boot order, failover)
    /// is waited for with the outage backoff, not fatal. `None`: stopped
    /// while waiting.
    pub async fn build_when_reachable(
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<App>> {
        let mut backoff = OutageBackoff::new();
        let mut logged = false;
        loop {
            match App::build(settings.clone()).await {
                Ok(app) => {
                    if logged {
                        tracing::info!(state = "up", "database reachable");
                    }
                    return Ok(Some(app));
                }
                Err(e) if is_unreachable(&e) => {
                    if !logged {
                        tracing::error!(error = %format!("{e:#}"), state = "down", "database unreachable at startup; waiting for it");
                        logged = true;
                    }
                    if sleep_or_cancel(backoff.bump(), shutdown).await {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The HTTP API over this app's store, rules and metrics.
    pub fn api_router(&self) -> anyhow::Result<axum::Router> {
        let tokens = self.settings.http.api_tokens()?;
        let state = ApiState::new(
            self.store.clone(),
            Arc::clone(&self.pipeline),
            Arc::clone(&self.metrics),
            &tokens,
        );
        Ok(http::router(state, &self.settings.http))
    }

    /// Binds `[http] listen`, when it is set.
    pub async fn bind_http(&self) -> anyhow::Result<Option<tokio::net::TcpListener>> {
        let Some(addr) = self.settings.http.listen_addr() else {
            return Ok(None);
        };
        let addr = addr.map_err(anyhow::Error::msg)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("http.listen = {addr}: cannot listen"))?;
        Ok(Some(listener))
    }

    /// `inmail serve`: the HTTP API alone on `listener` (no mailbox, no
    /// worker), with the rules kept current, until `shutdown` fires; the
    /// requests in flight then finish within `daemon.shutdown_timeout_secs`.
    pub async fn serve_api(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let router = self.api_router()?;
        let tracker = TaskTracker::new();
        tracker.spawn(workers::rules_loop(
            self.settings.clone(),
            self.store.clone(),
            Arc::clone(&self.pipeline),
            shutdown.clone(),
        ));
        let server = tracker.spawn(http::serve(listener, router, shutdown.clone()));
        tracker.close();
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        shutdown.cancelled().await;
        let deadline = Duration::from_secs(self.settings.daemon.shutdown_timeout_secs);
        if tokio::time::timeout(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline passed; exiting with requests in flight");
        }
        if server.is_finished() {
            server
                .await
                .context("the HTTP server task")?
                .context("serving HTTP")?;
        }
        Ok(())
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Drains every source once (skipping those whose lease another
    /// instance holds) while the workers process the intake queue; returns
    /// when both are done. Rows waiting for a retry later are left queued.
    pub async fn run_once(self) -> anyhow::Result<RunSummary> {
        let started = Instant::now();
        let wake = Arc::new(Notify::new());
        let fetching = Arc::new(AtomicBool::new(true));
        let processed = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let mut workers = tokio::task::JoinSet::new();
        for n in 0..self.settings.daemon.workers.max(1) {
            workers.spawn(workers::worker_loop(
                n,
                Arc::clone(&self.pipeline),
                Arc::clone(&wake),
                Arc::clone(&processed),
                Until::Drained {
                    fetching: Arc::clone(&fetching),
                },
            ));
        }

        // Each mailbox on its own: one that fails (a dead server, a missing
        // directory) is logged and reported, and the others are drained.
        let mut summary = RunSummary::default();
        for source in &self.sources {
            let failed = |summary: &mut RunSummary, error: String| {
                tracing::error!(mailbox = source.name(), error = %error, "mailbox drain failed; the other mailboxes go on");
                summary.failed_sources.push(FailedSource {
                    mailbox: source.name().to_owned(),
                    error,
                });
            };
            let lease = match self.store.try_lease(source.name()).await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    tracing::info!(
                        mailbox = source.name(),
                        "another instance holds this mailbox's lease; skipped"
                    );
                    summary.skipped_sources.push(source.name().to_owned());
                    continue;
                }
                Err(e) => {
                    failed(&mut summary, format!("taking the mailbox lease: {e}"));
                    continue;
                }
            };
            let w = Arc::clone(&wake);
            let res = source.drain(&cancel, &move || wake_workers(&w)).await;
            lease.release().await;
            match res {
                Ok(d) => {
                    tracing::info!(
                        mailbox = source.name(),
                        stored = d.stored,
                        duplicates = d.duplicates,
                        vanished = d.vanished,
                        skipped = d.skipped,
                        "mailbox drained"
                    );
                    summary.stored += d.stored;
                    summary.duplicates += d.duplicates;
                    summary.skipped += d.skipped;
                }
                Err(e) => failed(&mut summary, e.to_string()),
            }
        }
        fetching.store(false, Ordering::Release);
        wake.notify_waiters();
        let mut worker_error = None;
        while let Some(r) = workers.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    worker_error = Some(anyhow::Error::new(e).context("processing intake"))
                }
                Err(e) => worker_error = Some(anyhow::anyhow!("a worker panicked: {e}")),
            }
        }
        if let Some(e) = worker_error {
            return Err(e);
        }
        summary.processed = processed.load(Ordering::Relaxed);
        summary.intake = self.store.intake_counts(self.pipeline.now()).await?;
        summary.elapsed_secs = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// The daemon: runs until `shutdown` fires, then stops fetching, lets
    /// the workers finish the batch in hand and returns within
    /// `daemon.shutdown_timeout_secs`.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let listener = self.bind_http().await?;
        self.run_with_listener(listener, shutdown).await
    }

    /// [`App::run_until_stopped`] serving the HTTP API on `listener` (when
    /// given) next to the mailboxes; both stop on `shutdown`.
    pub async fn run_with_listener(
        self,
        listener: Option<tokio::net::TcpListener>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        if let Some(listener) = listener {
            let router = self.api_router()?;
            let cancel = shutdown.clone();
            tracker.spawn(async move {
                if let Err(e) = http::serve(listener, router, cancel).await {
                    tracing::error!(error = %e, "the HTTP server stopped");
                }
            });
        }
        let wake = Arc::new(Notify::new());
        let d = &self.settings.daemon;

        for source in self.sources.iter().cloned() {
            tracker.spawn(supervisor::supervise(
                source,
                self.store.clone(),
                Arc::clone(&wake),
                Arc::clone(&self.metrics),
                shutdown.clone(),
            ));
        }
        let processed = Arc::new(AtomicUsize::new(0));
        for n in 0..d.workers.max(1) {
            tracker.spawn(workers::worker_loop(
                n,
                Arc::clone(&self.pipeline),
                Arc::clone(&wake),
                Arc::clone(&processed),
                Until::Stopped(shutdown.clone()),
            ));
        }
        tracker.spawn(workers::cleanup_loop(
            self.store.clone(),
            Arc::clone(&self.pipeline),
            Duration::from_secs(d.cleanup_interval_secs.max(1)),
            self.settings.quarantine.retention_days,
            shutdown.clone(),
        ));
        tracker.spawn(workers::rules_loop(
            self.settings.clone(),
            self.store.clone(),
            Arc::clone(&self.pipeline),
            shutdown.clone(),
        ));
        tracker.close();

        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        tracing::info!(
            mailboxes = self.sources.len(),
            workers = d.workers,
            "inmail is running"
        );
        shutdown.cancelled().await;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let deadline = Duration::from_secs(d.shutdown_timeout_secs);
        tracing::info!(
            deadline_secs = deadline.as_secs(),
            "stopping: no more fetching, finishing the messages in hand"
        );
        if tokio::time::timeout(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown deadline passed; exiting with work in hand (uncommitted work is rolled back and redone later)"
            );
        } else {
            tracing::info!("stopped");
        }
        Ok(())
    }
}

/// The database is down or unreachable (rather than refusing): worth waiting for.
fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::store::StoreError>()
            .is_some_and(crate::store::is_outage)
    })
}

/// The database rules; when the table is empty, `analysis.rules_file`,
/// else the bundled default set (`config/rules.toml`). Delay warnings count
/// as `analysis.delay_warnings` says.
pub async fn rule_set(settings: &Settings, store: &Store) -> anyhow::Result<RuleSet> {
    let stored = store.load_rules().await?;
    let set = if !stored.is_empty() {
        RuleSet::compile(stored).context("compiling the database rules")?
    } else {
        match &settings.analysis.rules_file {
            Some(file) => RuleSet::compile(rules::load_file(file)?)
                .with_context(|| format!("rules file {}", file.display()))?,
            None => RuleSet::default_set(),
        }
    };
    Ok(set.with_delay_warnings(settings.analysis.delay_warnings))
}

/// The analyser `[analysis]` and `[correlation]` describe (the daemon,
/// `inmail qualify` and `inmail ingest` build theirs here).
pub fn analyzer_from(settings: &Settings) -> anyhow::Result<Analyzer> {
    Ok(crate::pipeline::analyzer_from(settings)?)
}
