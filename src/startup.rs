//! Build, then run: [`App::build`] connects to PostgreSQL, checks the schema,
//! compiles the rules and builds the sources (any problem is reported there,
//! before anything runs); [`App::run_until_stopped`] is the daemon,
//! [`App::run_once`] the one-shot drain for cron.
//!
//! The running daemon is a set of tasks under one `TaskTracker`:
//! - one fetcher per mailbox: takes the mailbox's lease (an advisory lock,
//!   see [`Store::try_lease`]; instances without it retry every few
//!   seconds), drains the backlog, then waits for an inotify event on
//!   `new/` or the `poll_interval_secs` rescan;
//! - `daemon.workers` workers looping on [`Pipeline::process_once`], woken
//!   by the fetchers and by a 1 s tick (rows stored by other instances,
//!   retries coming due);
//! - the cleanup job every `cleanup_interval_secs`;
//! - a rules listener that reloads the rule set when the table changes.
//!
//! Every loop survives errors: it logs once per state change (`source up`
//! / `source down`, `database up` / `database down`), backs off (0.5 s
//! doubling to 30 s) and resumes by itself.

use crate::analysis::Analyzer;
use crate::backoff::{sleep_or_cancel, OutageBackoff};
use crate::config::{MailboxKind, Settings};
use crate::http::{self, ApiState};
use crate::metrics::Metrics;
use crate::pipeline::{system_clock, Clock, Pipeline, PipelineSettings};
use crate::rules::{self, RuleSet};
use crate::source::maildir::{MaildirSource, SourceError};
use crate::source::remote::RemoteSource;
use crate::source::Source;
use crate::store::{Backoff, IntakeCounts, MailboxLease, Store, StoreSettings};
use anyhow::Context;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
        match m.kind {
            MailboxKind::Maildir => {
                // `validate` already named a missing or incomplete path.
                let path_key = format!("({}).path", m.name);
                if problems.iter().any(|p| p.contains(&path_key)) {
                    continue;
                }
                if let Err(e) = MaildirSource::parse(m) {
                    problems.push(e.to_string());
                }
            }
            MailboxKind::Imap | MailboxKind::Pop3 => {
                if let Err(e) = RemoteSource::parse(m, &settings.daemon) {
                    problems.push(e.to_string());
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::config::ConfigError::Invalid(problems))
    }
}

/// Logs a component's state only when it changes (not once per retry).
struct Health {
    what: &'static str,
    name: String,
    up: Option<bool>,
}

impl Health {
    fn new(what: &'static str, name: &str) -> Self {
        Self {
            what,
            name: name.to_owned(),
            up: None,
        }
    }

    fn up(&mut self) {
        if self.up != Some(true) {
            if self.up.is_some() {
                tracing::info!(component = self.what, name = %self.name, state = "up", "{} {} is up again", self.what, self.name);
            }
            self.up = Some(true);
        }
    }

    fn down(&mut self, error: &dyn std::fmt::Display, retry_in: Duration) {
        if self.up != Some(false) {
            tracing::error!(
                component = self.what,
                name = %self.name,
                state = "down",
                error = %error,
                retry_in_ms = retry_in.as_millis() as u64,
                "{} {} is down; retrying with backoff",
                self.what,
                self.name
            );
            self.up = Some(false);
        }
    }
}

/// Wakes every idle worker, and leaves a permit for one that is between
/// two steps (so a batch stored meanwhile is not missed until the tick).
fn wake_workers(n: &Notify) {
    n.notify_waiters();
    n.notify_one();
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
            match m.kind {
                MailboxKind::Maildir => {
                    let s =
                        MaildirSource::new(m, &settings.daemon, store.clone(), Arc::clone(&clock))?;
                    s.check()?;
                    sources.push(Source::Maildir(s));
                }
                MailboxKind::Imap | MailboxKind::Pop3 => {
                    let s =
                        RemoteSource::new(m, &settings.daemon, store.clone(), Arc::clone(&clock))?;
                    s.check_at_startup().await?;
                    sources.push(Source::Remote(s.with_metrics(Arc::clone(&metrics))));
                }
            }
        }
        Ok(App {
            settings,
            store,
            pipeline,
            sources,
            metrics,
        })
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
        tracker.spawn(rules_loop(
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
        for _ in 0..self.settings.daemon.workers.max(1) {
            let pipeline = Arc::clone(&self.pipeline);
            let wake = Arc::clone(&wake);
            let fetching = Arc::clone(&fetching);
            let processed = Arc::clone(&processed);
            workers.spawn(async move {
                let mut retry = OutageBackoff::new();
                let mut failures = 0;
                loop {
                    // read before the step: a batch stored after this read
                    // is seen by the next step
                    let still_fetching = fetching.load(Ordering::Acquire);
                    match pipeline.process_once().await {
                        Ok(0) if !still_fetching => return Ok(()),
                        Ok(0) => {
                            let _ =
                                tokio::time::timeout(Duration::from_millis(200), wake.notified())
                                    .await;
                        }
                        Ok(n) => {
                            processed.fetch_add(n, Ordering::Relaxed);
                            retry.reset();
                            failures = 0;
                        }
                        Err(e) => {
                            failures += 1;
                            if failures >= 6 {
                                return Err(anyhow::Error::new(e).context("processing intake"));
                            }
                            let d = retry.bump();
                            tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "processing failed; retrying");
                            tokio::time::sleep(d).await;
                        }
                    }
                }
            });
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
                Ok(Err(e)) => worker_error = Some(e),
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
            let cancel = shutdown.clone();
            let wake = Arc::clone(&wake);
            let store = self.store.clone();
            let poll = Duration::from_secs(
                self.settings
                    .mailboxes
                    .iter()
                    .find(|m| m.name == source.name())
                    .and_then(|m| m.poll_interval_secs)
                    .unwrap_or(d.poll_interval_secs)
                    .max(1),
            );
            match source {
                Source::Maildir(source) => tracker.spawn(fetch_loop(
                    source,
                    store,
                    wake,
                    poll,
                    cancel,
                    Arc::clone(&self.metrics),
                )),
                Source::Remote(source) => tracker.spawn(source.run(wake, cancel)),
            };
        }
        for n in 0..d.workers.max(1) {
            tracker.spawn(worker_loop(
                n,
                Arc::clone(&self.pipeline),
                Arc::clone(&wake),
                shutdown.clone(),
            ));
        }
        tracker.spawn(cleanup_loop(
            self.store.clone(),
            Arc::clone(&self.pipeline),
            Duration::from_secs(d.cleanup_interval_secs.max(1)),
            self.settings.quarantine.retention_days,
            shutdown.clone(),
        ));
        tracker.spawn(rules_loop(
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

async fn fetch_loop(
    source: MaildirSource,
    store: Store,
    wake: Arc<Notify>,
    poll: Duration,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let name = source.name().to_owned();
    let mut health = Health::new("source", &name);
    let mut retry = OutageBackoff::new();
    let lease_retry = poll.min(Duration::from_secs(5));
    // inotify on new/: a coalescing signal (capacity 1)
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = {
        use notify::Watcher;
        let tx = ev_tx.clone();
        notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
            let _ = tx.try_send(());
        })
        .and_then(|mut w| {
            w.watch(&source.new_dir(), notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        })
    };
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(mailbox = %name, error = %e, "cannot watch new/; relying on the periodic rescan");
            None
        }
    };
    let mut lease: Option<MailboxLease> = None;
    let mut waiting_logged = false;
    while !cancel.is_cancelled() {
        // 1. hold the lease
        if let Some(l) = lease.as_mut() {
            if let Err(e) = l.check().await {
                tracing::warn!(mailbox = %name, error = %e, "lost the mailbox lease");
                lease = None;
            }
        }
        if lease.is_none() {
            match store.try_lease(&name).await {
                Ok(Some(l)) => {
                    tracing::info!(mailbox = %name, "mailbox lease taken; fetching");
                    waiting_logged = false;
                    lease = Some(l);
                }
                Ok(None) => {
                    health.up();
                    metrics.set_source_up(&name, true);
                    if !waiting_logged {
                        tracing::info!(mailbox = %name, "another instance fetches this mailbox; waiting for its lease");
                        waiting_logged = true;
                    }
                    if sleep_or_cancel(lease_retry, &cancel).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    let d = retry.bump();
                    health.down(&e, d);
                    metrics.set_source_up(&name, false);
                    if sleep_or_cancel(d, &cancel).await {
                        break;
                    }
                    continue;
                }
            }
        }
        // 2. drain
        let w = Arc::clone(&wake);
        match source.drain(&cancel, &move || wake_workers(&w)).await {
            Ok(s) => {
                health.up();
                metrics.set_source_up(&name, true);
                metrics.record_drain(&name, s.skipped, source.set_aside_count());
                retry.reset();
                if s.stored + s.duplicates + s.skipped > 0 {
                    tracing::info!(mailbox = %name, stored = s.stored, duplicates = s.duplicates, vanished = s.vanished, skipped = s.skipped, set_aside = source.set_aside_count(), "fetched");
                }
            }
            Err(e) => {
                let d = retry.bump();
                health.down(&e, d);
                metrics.set_source_up(&name, false);
                if matches!(e, SourceError::Store(_)) {
                    lease = None; // its session may be gone too
                }
                if sleep_or_cancel(d, &cancel).await {
                    break;
                }
                continue;
            }
        }
        // 3. wait for new mail or the rescan
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ev_rx.recv() => {
                // let a burst of deliveries settle into one drain
                tokio::time::sleep(Duration::from_millis(20)).await;
                while ev_rx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(poll) => {}
        }
    }
    if let Some(l) = lease {
        l.release().await;
    }
}

async fn worker_loop(
    n: usize,
    pipeline: Arc<Pipeline>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut health = Health::new("database", &format!("worker {n}"));
    let mut retry = OutageBackoff::new();
    while !cancel.is_cancelled() {
        match pipeline.process_once().await {
            Ok(0) => {
                health.up();
                retry.reset();
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Ok(_) => {
                health.up();
                retry.reset();
            }
            Err(e) => {
                let d = retry.bump();
                health.down(&e, d);
                if sleep_or_cancel(d, &cancel).await {
                    break;
                }
            }
        }
    }
}

async fn cleanup_loop(
    store: Store,
    pipeline: Arc<Pipeline>,
    every: Duration,
    retention_days: i64,
    cancel: CancellationToken,
) {
    let mut health = Health::new("cleanup", "job");
    loop {
        let now = pipeline.now();
        let res = async {
            let s = store.cleanup(now).await?;
            let purged = store
                .purge_intake(now - chrono::Duration::days(retention_days))
                .await?;
            Ok::<_, crate::store::StoreError>((s, purged))
        }
        .await;
        match res {
            Ok((s, purged)) => {
                health.up();
                tracing::info!(
                    released = s.released,
                    reset = s.reset,
                    purged_events = s.purged_events,
                    purged_messages = s.purged_messages,
                    purged_intake = purged,
                    "cleanup done"
                );
            }
            Err(e) => health.down(&e, every),
        }
        if sleep_or_cancel(every, &cancel).await {
            break;
        }
    }
}

/// Reloads the rules when `qualification_rules` changes (LISTEN/NOTIFY).
async fn rules_loop(
    settings: Settings,
    store: Store,
    pipeline: Arc<Pipeline>,
    cancel: CancellationToken,
) {
    let mut retry = OutageBackoff::new();
    let mut health = Health::new("rules listener", "inmail_rules");
    while !cancel.is_cancelled() {
        let mut changes = match store.listen_rule_changes().await {
            Ok(c) => c,
            Err(e) => {
                let d = retry.bump();
                health.down(&e, d);
                if sleep_or_cancel(d, &cancel).await {
                    break;
                }
                continue;
            }
        };
        health.up();
        retry.reset();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = changes.changed() => {
                    if let Err(e) = r {
                        let d = retry.bump();
                        health.down(&e, d);
                        break;
                    }
                    match rule_set(&settings, &store).await {
                        Ok(set) => {
                            tracing::info!(rules = set.rules().len(), "rules reloaded");
                            pipeline.set_rules(set);
                        }
                        Err(e) => tracing::error!(error = %e, "rules changed but cannot be reloaded; keeping the current set"),
                    }
                }
            }
        }
    }
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

pub fn analyzer_from(settings: &Settings) -> anyhow::Result<Analyzer> {
    Ok(crate::pipeline::analyzer_from(settings)?)
}
