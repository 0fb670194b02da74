//! The Prometheus metrics of one running app (`GET /metrics`).
//!
//! Each [`App`](crate::app::App) owns one [`Metrics`] with its own
//! registry (no global state: tests run several apps in one process). The
//! counters are fed where things happen — the pipeline after each commit,
//! the sources when they go up or down, the HTTP layer per request; the
//! gauges that describe the shared database (intake backlog, qualification
//! queue) are read from it when scraped, so every instance on one database
//! reports the same value.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub r#type: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailboxLabels {
    pub mailbox: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatusLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub messages_processed: Family<KindLabels, Counter>,
    pub recipient_results: Family<ResultLabels, Counter>,
    pub address_transitions: Family<TransitionLabels, Counter>,
    pub intake_backlog: Gauge,
    pub qualification_queue: Gauge,
    pub source_up: Family<MailboxLabels, Gauge>,
    pub source_skipped: Family<MailboxLabels, Counter>,
    pub source_set_aside: Family<MailboxLabels, Gauge>,
    pub http_requests: Family<RouteStatusLabels, Counter>,
    pub http_request_duration: HistogramFamily<RouteLabels>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            messages_processed: Family::default(),
            recipient_results: Family::default(),
            address_transitions: Family::default(),
            intake_backlog: Gauge::default(),
            qualification_queue: Gauge::default(),
            source_up: Family::default(),
            source_skipped: Family::default(),
            source_set_aside: Family::default(),
            http_requests: Family::default(),
            http_request_duration: Family::new_with_constructor(request_histogram),
            registry: Registry::default(),
        };
        registry.register(
            "inmail_messages_processed",
            "Stored messages processed, by analysis kind",
            m.messages_processed.clone(),
        );
        registry.register(
            "inmail_recipient_results",
            "Failed recipients qualified (bounces and synchronous failures), by type and reason",
            m.recipient_results.clone(),
        );
        registry.register(
            "inmail_address_transitions",
            "Address status changes, by new status",
            m.address_transitions.clone(),
        );
        registry.register(
            "inmail_intake_backlog",
            "Stored messages waiting to be processed",
            m.intake_backlog.clone(),
        );
        registry.register(
            "inmail_qualification_queue",
            "Bounce texts waiting in the to-qualify queue",
            m.qualification_queue.clone(),
        );
        registry.register(
            "inmail_source_up",
            "1 when the mailbox answers, 0 while it is down",
            m.source_up.clone(),
        );
        registry.register(
            "inmail_source_skipped_messages",
            "Messages a drain could not take (unreadable file, refused or stalled fetch), by mailbox",
            m.source_skipped.clone(),
        );
        registry.register(
            "inmail_source_set_aside",
            "Messages set aside until their slow retry, by mailbox",
            m.source_set_aside.clone(),
        );
        registry.register(
            "inmail_http_requests",
            "HTTP requests answered, by route template and status",
            m.http_requests.clone(),
        );
        registry.register(
            "inmail_http_request_duration_seconds",
            "HTTP request durations, by route template",
            m.http_request_duration.clone(),
        );
        let build: Family<VersionLabels, Gauge> = Family::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("inmail_build_info", "The running version", build);
        Self { registry, ..m }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    pub fn set_source_up(&self, mailbox: &str, up: bool) {
        self.source_up
            .get_or_create(&MailboxLabels {
                mailbox: mailbox.to_owned(),
            })
            .set(i64::from(up));
    }

    /// What one drain of `mailbox` could not take, and how many of its
    /// messages wait for their slow retry.
    pub fn record_drain(&self, mailbox: &str, skipped: usize, set_aside: usize) {
        let labels = MailboxLabels {
            mailbox: mailbox.to_owned(),
        };
        self.source_skipped
            .get_or_create(&labels)
            .inc_by(u64::try_from(skipped).unwrap_or(u64::MAX));
        self.source_set_aside
            .get_or_create(&labels)
            .set(i64::try_from(set_aside).unwrap_or(i64::MAX));
    }

    /// One failed recipient qualified and applied (a bounce recipient or a
    /// synchronous failure).
    pub fn record_result(&self, bounce_type: &str, reason: &str, before: &str, after: &str) {
        self.recipient_results
            .get_or_create(&ResultLabels {
                r#type: bounce_type.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
        self.record_transition(before, after);
    }

    pub fn record_transition(&self, before: &str, after: &str) {
        if before != after {
            self.address_transitions
                .get_or_create(&TransitionLabels {
                    to: after.to_owned(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_that_skipped_messages_is_counted_by_mailbox() {
        let m = Metrics::new();
        m.record_drain("bounces", 2, 2);
        m.record_drain("bounces", 1, 3);
        m.record_drain("other", 0, 0);
        let text = m.encode().expect("metrics encode");
        assert!(
            text.contains("inmail_source_skipped_messages_total{mailbox=\"bounces\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("inmail_source_set_aside{mailbox=\"bounces\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("inmail_source_skipped_messages_total{mailbox=\"other\"} 0"),
            "{text}"
        );
    }
}
