//! The loops beside the mailboxes: the workers (one loop for the daemon and
//! for `run --once`), the cleanup job and the rules listener. Each survives
//! errors the same way: [`Health`] logs the state changes, [`OutageBackoff`]
//! spaces the retries.

use super::health::Health;
use super::rule_set;
use crate::backoff::{sleep_or_cancel, OutageBackoff};
use crate::config::Settings;
use crate::pipeline::{Pipeline, PipelineError};
use crate::store::Store;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// When a worker stops.
pub(crate) enum Until {
    /// The daemon: at shutdown. An outage is waited out however long it lasts.
    Stopped(CancellationToken),
    /// `run --once`: when the queue is empty and fetching is over. It gives
    /// up after [`ONCE_GIVE_UP_AFTER`] failures in a row (about 15 s of
    /// backoff): a cron job reports a database gone rather than hang.
    Drained { fetching: Arc<AtomicBool> },
}

/// Failed steps in a row after which a `run --once` worker gives up.
pub(crate) const ONCE_GIVE_UP_AFTER: u32 = 6;

/// A worker: claims stored messages and processes them (`Pipeline::process_once`),
/// woken by the fetchers and by a tick (rows stored by other instances,
/// retries coming due). Adds what it processed to `processed`.
pub(crate) async fn worker_loop(
    n: usize,
    pipeline: Arc<Pipeline>,
    wake: Arc<Notify>,
    processed: Arc<AtomicUsize>,
    until: Until,
) -> Result<(), PipelineError> {
    let mut health = Health::new("database", &format!("worker {n}"));
    let mut retry = OutageBackoff::new();
    let mut failures = 0;
    let (cancel, tick) = match &until {
        Until::Stopped(cancel) => (cancel.clone(), Duration::from_secs(1)),
        Until::Drained { .. } => (CancellationToken::new(), Duration::from_millis(200)),
    };
    while !cancel.is_cancelled() {
        // read before the step: a batch stored after this read is seen by
        // the next step
        let fetching = match &until {
            Until::Stopped(_) => true,
            Until::Drained { fetching } => fetching.load(Ordering::Acquire),
        };
        match pipeline.process_once().await {
            Ok(0) if !fetching => return Ok(()),
            Ok(n) => {
                health.up();
                retry.reset();
                failures = 0;
                processed.fetch_add(n, Ordering::Relaxed);
                if n == 0 {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(tick) => {}
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if matches!(until, Until::Drained { .. }) && failures >= ONCE_GIVE_UP_AFTER {
                    return Err(e);
                }
                let d = retry.bump();
                health.down(&e, None, d);
                if sleep_or_cancel(d, &cancel).await {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Releases expired quarantines, purges old events and intake rows, every
/// `every`.
pub(crate) async fn cleanup_loop(
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
            Err(e) => health.down(&e, Some(crate::store::is_outage(&e)), every),
        }
        if sleep_or_cancel(every, &cancel).await {
            break;
        }
    }
}

/// Reloads the rules when `qualification_rules` changes (LISTEN/NOTIFY).
pub(crate) async fn rules_loop(
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
                health.down(&e, Some(crate::store::is_outage(&e)), d);
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
                        health.down(&e, None, d);
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
