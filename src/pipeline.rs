//! The worker: claims stored intake rows, analyses and qualifies them,
//! applies them to the store and marks them done, all in one transaction.
//!
//! [`process`] is the step itself — one raw message analysed and each failed
//! recipient qualified — and the only place it is written: the worker,
//! `inmail ingest` and `inmail qualify` all run it.
//!
//! [`Pipeline::process_once`] is one step: it claims up to `batch_size` due
//! rows (`FOR UPDATE SKIP LOCKED`, so any number of workers and instances
//! share the queue), runs the analysis on a blocking thread, calls
//! [`Store::apply`] in the same transaction, marks the rows done and
//! commits. A crash anywhere before the commit rolls everything back: the
//! rows are claimed again later, and nothing was counted.
//!
//! When a batch fails because of its data (an analysis panic, a constraint
//! violation...), it is rolled back and its rows are retried one by one,
//! each in its own transaction, so one poisoned message cannot hold back the
//! others; a row that fails alone is charged an attempt
//! ([`Store::record_intake_failure`]: capped exponential backoff, parked as
//! `failed` after `daemon.max_attempts`). When it fails because the database
//! is unreachable, nothing is charged and the error is returned: the caller
//! backs off and tries again.
//!
//! # Log lines
//!
//! After each commit, one `INFO` event per recipient, message
//! `"recipient result"`, target `inmail::result`, with these fields (stable;
//! absent values are omitted):
//!
//! | field | meaning |
//! |---|---|
//! | `mailbox` | `[[mailbox]] name` the message came from |
//! | `intake_id` | id of the `intake` row |
//! | `uid` | the message's uid in its mailbox (maildir unique name, IMAP `uidvalidity:uid`, POP3 UIDL): a hint, not an identity |
//! | `message_id` | Message-ID of the original (bounced) message, when the bounce names it |
//! | `message_hash` | hex SHA-256 of the raw bounce (the idempotence key) |
//! | `address` | the failed recipient, lowercased |
//! | `delivery_log_id` | the `delivery_logs` row it was tied to |
//! | `correlated_by` | `tracking_id`, `message_id`, `verp` or `none` |
//! | `type` | `hard`, `soft`, `ignored` or `none` |
//! | `reason` | e.g. `user_unknown`, `mailbox_full` |
//! | `category` | e.g. `user_unknown`, `spam_block` |
//! | `rule` | id of the rule that decided (or the built-in fallback) |
//! | `status` | the address's status after this bounce |
//! | `status_before` | its status before |
//! | `error_count` | its error counter after this bounce |
//! | `counted` | whether the failure counted against the address |
//! | `not_counted` | why not: `duplicate`, `uncorrelated`, `sender_side`, ... |
//!
//! A message without any failed recipient logs one `"no failed recipient"`
//! event with `mailbox`, `intake_id`, `uid`, `message_hash` and `kind`.
//! A failed attempt logs a `WARN` `"message failed"` with `intake_id`,
//! `mailbox`, `uid`, `attempts` and `error`; a parked one an `ERROR`
//! `"message parked as failed"`. Each message's events are inside a
//! `message` span carrying `intake_id`, `mailbox` and `uid`.

use crate::analysis::{Analysis, Analyzer};
use crate::config::Settings;
use crate::metrics::{KindLabels, Metrics};
use crate::rules::{RuleSet, Verdict};
use crate::store::{
    content_hash, is_outage, Backoff, BounceInput, ClaimLimits, ClaimedMessage, RecipientOutcome,
    Store, StoreError,
};
use chrono::{DateTime, Utc};
use std::sync::{Arc, RwLock};

pub use crate::clock::{system_clock, Clock};
/// One message analysed and qualified: one verdict per failed recipient of
/// the analysis, in the same order.
#[derive(Debug, Clone)]
pub struct Qualified {
    pub analysis: Analysis,
    pub verdicts: Vec<Verdict>,
}

impl Qualified {
    /// What the store applies for this message: `message_hash` is the
    /// SHA-256 of the whole raw message (its identity), `source` where it
    /// came from.
    pub fn into_input(self, message_hash: [u8; 32], source: String) -> BounceInput {
        BounceInput {
            message_hash,
            source,
            analysis: self.analysis,
            verdicts: self.verdicts,
        }
    }
}

/// The one step from a raw message to what it means: the analysis, then a
/// verdict for each failed recipient from `rules`.
pub fn process(analyzer: &Analyzer, rules: &RuleSet, raw: &[u8]) -> Qualified {
    let analysis = analyzer.analyse(raw);
    let verdicts = analysis
        .recipients
        .iter()
        .map(|r| rules.qualify(r))
        .collect();
    Qualified { analysis, verdicts }
}

/// [`process`] of a whole message, ready for the store.
pub fn process_input(
    analyzer: &Analyzer,
    rules: &RuleSet,
    raw: &[u8],
    source: String,
) -> BounceInput {
    process(analyzer, rules, raw).into_input(content_hash(raw), source)
}

/// The analyser the settings describe (`[analysis]` limits, `[correlation]`
/// tracking header and VERP pattern).
pub fn analyzer_from(settings: &Settings) -> Result<Analyzer> {
    let limits = crate::analysis::Limits {
        max_message_bytes: settings.analysis.max_message_bytes,
        max_part_bytes: settings.analysis.max_part_bytes,
        max_parts: settings.analysis.max_parts,
        max_recipients: settings.analysis.max_recipients,
    };
    let correlation = crate::analysis::Correlation {
        tracking_header: settings.correlation.tracking_header.clone(),
        verp_pattern: regex::Regex::new(&settings.correlation.verp_pattern).map_err(|e| {
            PipelineError::Setting {
                key: "correlation.verp_pattern",
                message: e.to_string(),
            }
        })?,
    };
    Ok(Analyzer::new(limits, correlation))
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("analysis failed: {0}")]
    Analysis(String),
    #[error("{key}: {message}")]
    Setting { key: &'static str, message: String },
}

impl PipelineError {
    /// The database is unreachable: back off, charge nothing.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Store(e) => is_outage(e),
            Self::Analysis(_) | Self::Setting { .. } => false,
        }
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// What the pipeline needs to know from the settings.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub batch_size: usize,
    pub max_attempts: i32,
    pub backoff: Backoff,
    /// Byte budget of one claim (`daemon.batch_bytes`): a batch holds at
    /// most `batch_size` rows and about this many bytes of message.
    pub batch_bytes: usize,
    /// How much of each stored message is read: the analysis reads no more
    /// than `analysis.max_message_bytes`, so neither does the worker (see
    /// [`analysis_prefix`]).
    pub read_prefix: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            batch_size: 200,
            max_attempts: 5,
            backoff: Backoff::default(),
            batch_bytes: 4 * 1024 * 1024,
            read_prefix: analysis_prefix(crate::analysis::Limits::default().max_message_bytes),
        }
    }
}

/// The prefix of a stored message that gives the same analysis as the
/// whole: the analysis cuts at `max_message_bytes` after skipping an mbox
/// `From ` line, so a little more is read than it keeps (which also tells
/// it that the message was cut).
pub fn analysis_prefix(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_add(64 * 1024)
}

/// Claimed, analysed and applied: what the log lines are made of.
struct Processed {
    id: i64,
    mailbox: String,
    uid: String,
    input: BounceInput,
}

pub struct Pipeline {
    store: Store,
    analyzer: Arc<Analyzer>,
    rules: RwLock<Arc<RuleSet>>,
    settings: PipelineSettings,
    clock: Clock,
    metrics: Option<Arc<Metrics>>,
}

impl Pipeline {
    pub fn new(
        store: Store,
        analyzer: Analyzer,
        rules: RuleSet,
        settings: PipelineSettings,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            analyzer: Arc::new(analyzer),
            rules: RwLock::new(Arc::new(rules)),
            settings,
            clock,
            metrics: None,
        }
    }

    /// Counts what each committed step processed into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Replaces the rule set (after a change in the database).
    pub fn set_rules(&self, rules: RuleSet) {
        match self.rules.write() {
            Ok(mut g) => *g = Arc::new(rules),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(rules),
        }
    }

    /// The rule set in force (the one the workers qualify with).
    pub fn rules(&self) -> Arc<RuleSet> {
        match self.rules.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// One step: claims up to `batch_size` due rows and processes them.
    /// Returns how many rows it handled (done, or charged a failed attempt);
    /// 0 when nothing is due.
    pub async fn process_once(&self) -> Result<usize> {
        let mut conn = self.acquire().await?;
        let mut big = false;
        let result = self.process_once_on(&mut conn, &mut big).await;
        if big {
            // Its buffers grew to the size of the batch and would stay so
            // in the pool: drop it, a fresh one costs less than the memory.
            drop(conn.detach());
        }
        result
    }

    async fn process_once_on(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
        big: &mut bool,
    ) -> Result<usize> {
        let now = self.now();
        let mut tx = begin_on(conn).await?;
        let limits = ClaimLimits {
            rows: self.settings.batch_size,
            bytes: self.settings.batch_bytes,
            prefix: self.settings.read_prefix,
        };
        let claimed = self.store.claim_intake(&mut tx, limits, now).await?;
        if claimed.is_empty() {
            let _ = tx.rollback().await;
            return Ok(0);
        }
        *big = claimed_bytes(&claimed) > BIG_BATCH_BYTES;
        let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        match self.apply_claimed(&mut tx, claimed, now).await {
            Ok(done) => match tx.commit().await {
                Ok(()) => {
                    self.count(&done.0, &done.1);
                    log_results(&done.0, &done.1);
                    Ok(ids.len())
                }
                Err(cause) => Err(StoreError::Sqlx {
                    context: "committing processed messages",
                    cause,
                }
                .into()),
            },
            Err(e) => {
                let _ = tx.rollback().await;
                if e.is_outage() {
                    return Err(e);
                }
                if ids.len() == 1 {
                    self.charge(&ids, &e, now).await?;
                    return Ok(1);
                }
                tracing::warn!(
                    messages = ids.len(),
                    error = %e,
                    "batch failed; retrying its messages one by one"
                );
                for id in &ids {
                    self.process_single(*id, now).await?;
                }
                Ok(ids.len())
            }
        }
    }

    /// Processes one row in a transaction of its own; charges it on failure.
    async fn process_single(&self, id: i64, now: DateTime<Utc>) -> Result<()> {
        let mut conn = self.acquire().await?;
        let mut big = false;
        let result = self.process_single_on(&mut conn, id, now, &mut big).await;
        if big {
            drop(conn.detach());
        }
        result
    }

    async fn process_single_on(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
        id: i64,
        now: DateTime<Utc>,
        big: &mut bool,
    ) -> Result<()> {
        let mut tx = begin_on(conn).await?;
        let claimed = self
            .store
            .claim_intake_ids(&mut tx, &[id], self.settings.read_prefix)
            .await?;
        *big = claimed_bytes(&claimed) > BIG_BATCH_BYTES;
        if claimed.is_empty() {
            // done or claimed by someone else meanwhile
            let _ = tx.rollback().await;
            return Ok(());
        }
        match self.apply_claimed(&mut tx, claimed, now).await {
            Ok(done) => {
                tx.commit().await.map_err(|cause| StoreError::Sqlx {
                    context: "committing a processed message",
                    cause,
                })?;
                self.count(&done.0, &done.1);
                log_results(&done.0, &done.1);
                Ok(())
            }
            Err(e) => {
                let _ = tx.rollback().await;
                if e.is_outage() {
                    return Err(e);
                }
                self.charge(&[id], &e, now).await
            }
        }
    }

    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        self.store.pool().acquire().await.map_err(|cause| {
            StoreError::Sqlx {
                context: "starting a transaction",
                cause,
            }
            .into()
        })
    }

    /// Analyses, qualifies and applies the claimed rows and marks them done
    /// inside `conn`'s transaction (the caller commits).
    async fn apply_claimed(
        &self,
        conn: &mut sqlx::PgConnection,
        claimed: Vec<ClaimedMessage>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Processed>, Vec<RecipientOutcome>)> {
        let analyzer = Arc::clone(&self.analyzer);
        let rules = self.rules();
        let processed =
            tokio::task::spawn_blocking(move || analyse_all(&analyzer, &rules, claimed))
                .await
                .map_err(|e| PipelineError::Analysis(panic_text(e)))?;
        let inputs: Vec<BounceInput> = processed.iter().map(|p| p.input.clone()).collect();
        let outcomes = self.store.apply(conn, &inputs, now).await?;
        let ids: Vec<i64> = processed.iter().map(|p| p.id).collect();
        self.store.mark_intake_done(conn, &ids, now).await?;
        Ok((processed, outcomes))
    }

    fn count(&self, processed: &[Processed], outcomes: &[RecipientOutcome]) {
        let Some(m) = &self.metrics else { return };
        for p in processed {
            m.messages_processed
                .get_or_create(&KindLabels {
                    kind: p.input.analysis.kind.as_str().to_owned(),
                })
                .inc();
        }
        for o in outcomes {
            m.record_result(
                o.bounce_type.as_str(),
                o.reason.as_str(),
                o.status_before.as_str(),
                o.status_after.as_str(),
            );
        }
    }

    async fn charge(&self, ids: &[i64], error: &PipelineError, now: DateTime<Utc>) -> Result<()> {
        let text = error.to_string();
        let s = self
            .store
            .record_intake_failure(
                ids,
                &text,
                now,
                self.settings.max_attempts,
                self.settings.backoff,
            )
            .await?;
        for id in ids {
            if s.parked > 0 {
                tracing::error!(intake_id = id, error = %text, "message parked as failed");
            } else {
                tracing::warn!(intake_id = id, error = %text, "message failed; will retry");
            }
        }
        Ok(())
    }
}

/// A batch over this many bytes of message closes its connection after
/// use (see [`Pipeline::process_once`]).
const BIG_BATCH_BYTES: usize = 1024 * 1024;

fn claimed_bytes(claimed: &[ClaimedMessage]) -> usize {
    claimed.iter().map(|c| c.raw.len()).sum()
}

async fn begin_on(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>> {
    use sqlx::Connection;
    conn.begin().await.map_err(|cause| {
        StoreError::Sqlx {
            context: "starting a transaction",
            cause,
        }
        .into()
    })
}

fn analyse_all(
    analyzer: &Analyzer,
    rules: &RuleSet,
    claimed: Vec<ClaimedMessage>,
) -> Vec<Processed> {
    claimed
        .into_iter()
        .map(|c| {
            // `raw` may be a prefix: the identity is the whole message's hash.
            let hash = <[u8; 32]>::try_from(c.content_hash.as_slice())
                .unwrap_or_else(|_| content_hash(&c.raw));
            let source = format!("{}/{}", c.mailbox, c.uid);
            let input = process(analyzer, rules, &c.raw).into_input(hash, source);
            Processed {
                id: c.id,
                input,
                mailbox: c.mailbox,
                uid: c.uid,
            }
        })
        .collect()
}

fn panic_text(e: tokio::task::JoinError) -> String {
    if e.is_panic() {
        let p = e.into_panic();
        if let Some(s) = p.downcast_ref::<&str>() {
            format!("analysis panicked: {s}")
        } else if let Some(s) = p.downcast_ref::<String>() {
            format!("analysis panicked: {s}")
        } else {
            "analysis panicked".into()
        }
    } else {
        "analysis task cancelled".into()
    }
}

fn log_results(processed: &[Processed], outcomes: &[RecipientOutcome]) {
    if !tracing::enabled!(target: "inmail::result", tracing::Level::INFO) {
        return;
    }
    let mut rest = outcomes.iter();
    for p in processed {
        let span = tracing::info_span!(
            "message",
            intake_id = p.id,
            mailbox = %p.mailbox,
            uid = %p.uid
        );
        let _g = span.enter();
        let a = &p.input.analysis;
        let n = a.recipients.len();
        let message_hash = hex::encode(p.input.message_hash);
        if n == 0 {
            tracing::info!(
                target: "inmail::result",
                mailbox = %p.mailbox,
                intake_id = p.id,
                uid = %p.uid,
                message_hash = %message_hash,
                kind = ?a.kind,
                "no failed recipient"
            );
        }
        for o in rest.by_ref().take(n) {
            tracing::info!(
                target: "inmail::result",
                mailbox = %p.mailbox,
                intake_id = p.id,
                uid = %p.uid,
                message_id = a.original.message_id.as_deref(),
                message_hash = %message_hash,
                address = %o.address,
                delivery_log_id = o.delivery_log_id,
                correlated_by = o.correlated_by.as_str(),
                "type" = %o.bounce_type,
                reason = %o.reason,
                category = %o.category,
                rule = %o.rule,
                status = %o.status_after,
                status_before = %o.status_before,
                error_count = o.error_count_after,
                counted = o.counted,
                not_counted = o.not_counted.map(|w| w.as_str()),
                "recipient result"
            );
        }
    }
}
