//! The one supervision loop every mailbox runs under, whatever its kind:
//! hold the mailbox's lease, drain, wait for more the source's way (IMAP
//! IDLE, inotify, polling), and on any failure log once per state change,
//! report `inmail_source_up`, back off ([`OutageBackoff`]) and resume.

use super::health::Health;
use crate::backoff::{sleep_or_cancel, OutageBackoff};
use crate::metrics::Metrics;
use crate::source::Source;
use crate::store::{MailboxLease, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Wakes every idle worker, and leaves a permit for one that is between
/// two steps (so a batch stored meanwhile is not missed until the tick).
pub(crate) fn wake_workers(n: &Notify) {
    n.notify_waiters();
    n.notify_one();
}

/// A failure of the mailbox (its database, its server): the source is
/// reported down, in the log once and in `inmail_source_up`, and the
/// delay to wait before trying again is returned.
fn went_down(
    retry: &mut OutageBackoff,
    health: &mut Health,
    metrics: &Metrics,
    name: &str,
    error: &dyn std::fmt::Display,
    outage: bool,
) -> Duration {
    let d = retry.bump();
    health.down(error, Some(outage), d);
    metrics.set_source_up(name, false);
    d
}

/// Runs `source` until `cancel` fires (the batch in hand is finished
/// first), then closes its session and releases the lease.
pub(crate) async fn supervise(
    source: Source,
    store: Store,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let fetch = source.fetch();
    let name = fetch.name().to_owned();
    let kind = fetch.kind();
    let mut health = Health::source(&name, kind);
    let mut retry = OutageBackoff::new();
    // another instance's lease is tried again this often
    let lease_retry = fetch.poll_interval().min(Duration::from_secs(5));
    let mut lease: Option<MailboxLease> = None;
    let mut waiting_logged = false;
    let mut waiting: Option<&'static str> = None;
    let mut session = fetch.session();
    let w = Arc::clone(&wake);
    let on_batch = move || wake_workers(&w);
    while !cancel.is_cancelled() {
        // 1. hold the lease
        if let Some(l) = lease.as_mut() {
            if let Err(e) = l.check().await {
                tracing::warn!(mailbox = %name, kind, error = %e, "lost the mailbox lease");
                lease = None;
                session.reset();
            }
        }
        if lease.is_none() {
            match store.try_lease(&name).await {
                Ok(Some(l)) => {
                    tracing::info!(mailbox = %name, kind, "mailbox lease taken; fetching");
                    waiting_logged = false;
                    lease = Some(l);
                }
                Ok(None) => {
                    if health.is_down() {
                        // the database answers again; another instance fetches
                        health.up();
                        metrics.set_source_up(&name, true);
                    }
                    if !waiting_logged {
                        tracing::info!(mailbox = %name, kind, "another instance fetches this mailbox; waiting for its lease");
                        waiting_logged = true;
                    }
                    if sleep_or_cancel(lease_retry, &cancel).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    let outage = crate::store::is_outage(&e);
                    let d = went_down(&mut retry, &mut health, &metrics, &name, &e, outage);
                    if sleep_or_cancel(d, &cancel).await {
                        break;
                    }
                    continue;
                }
            }
        }
        // 2. drain
        match session.drain(&cancel, &on_batch).await {
            Ok(s) => {
                health.up();
                metrics.set_source_up(&name, true);
                let set_aside = fetch.set_aside_count();
                metrics.record_drain(&name, s.skipped, set_aside);
                retry.reset();
                if !s.is_empty() {
                    tracing::info!(mailbox = %name, kind, stored = s.stored, duplicates = s.duplicates, vanished = s.vanished, skipped = s.skipped, set_aside, "fetched");
                }
            }
            Err(e) => {
                session.reset();
                if e.is_store() {
                    lease = None; // its session may be gone too
                }
                let d = went_down(&mut retry, &mut health, &metrics, &name, &e, e.is_outage());
                waiting = None;
                if sleep_or_cancel(d, &cancel).await {
                    break;
                }
                continue;
            }
        }
        // 3. wait for new mail
        let how = session.wait_mode();
        if waiting != Some(how) {
            tracing::info!(mailbox = %name, kind, wait = how, "waiting for new mail ({how})");
            waiting = Some(how);
        }
        if let Err(e) = session.wait(&cancel).await {
            session.reset();
            let d = went_down(&mut retry, &mut health, &metrics, &name, &e, e.is_outage());
            waiting = None;
            if sleep_or_cancel(d, &cancel).await {
                break;
            }
        }
    }
    session.close().await;
    if let Some(l) = lease {
        l.release().await;
    }
}
