//! `apply`: what a batch of analysed and qualified messages changes.
//!
//! One batch costs a fixed number of statements whatever its size: claim the
//! message hashes (idempotence), correlate every recipient to a delivery log,
//! lock the address rows that may change (sorted, so concurrent batches never
//! deadlock), run the state machine in memory, then write addresses, events,
//! delivery logs, per-domain sender-side counters, the qualification queue
//! and rule hit counts with one `unnest` statement each.

use super::queue::{self, QueueEntry};
use super::{is_deadlock, Result, SqlContext, Store, StoreError};
use crate::analysis::{Analysis, RecipientReport};
use crate::domain::correlation::{self, CorrelatedBy};
use crate::domain::normalise::{domain_of, kept_text, unreadable_report_text};
use crate::domain::retry::{self, RetryPolicy};
use crate::domain::state::{self, AddressRow, AddressStatus, Failure, NotCounted};
use crate::model::{BounceType, Category, Reason};
use crate::rules::Verdict;
use chrono::{DateTime, NaiveDate, Utc};
use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// One analysed message with one verdict per recipient (same order).
#[derive(Debug, Clone)]
pub struct BounceInput {
    /// SHA-256 of the raw message: the idempotence key.
    pub message_hash: [u8; 32],
    /// Where the message came from (path, mailbox/uid), for the audit trail.
    pub source: String,
    pub analysis: Analysis,
    pub verdicts: Vec<Verdict>,
}

impl BounceInput {
    pub fn new(
        raw: &[u8],
        source: impl Into<String>,
        analysis: Analysis,
        verdicts: Vec<Verdict>,
    ) -> Self {
        Self {
            message_hash: Sha256::digest(raw).into(),
            source: source.into(),
            analysis,
            verdicts,
        }
    }
}

/// How a failure reached inmail, as `delivery_logs.failure_mode` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FailureMode {
    /// A bounce: a message received after the sending MTA accepted it.
    #[default]
    Async,
    /// Refused during the SMTP dialogue, reported by the sender.
    Sync,
}

impl FailureMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::Sync => "sync",
        }
    }
}

/// What happened to one recipient of one message.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientOutcome {
    /// Hex SHA-256 of the message.
    pub message_hash: String,
    pub source: String,
    pub address: String,
    pub delivery_log_id: Option<i64>,
    pub correlated: bool,
    pub correlated_by: CorrelatedBy,
    #[serde(rename = "type")]
    pub bounce_type: BounceType,
    pub reason: Reason,
    pub category: Category,
    pub rule: String,
    pub qualified: bool,
    pub status_before: AddressStatus,
    pub status_after: AddressStatus,
    pub error_count_before: i32,
    pub error_count_after: i32,
    pub counted: bool,
    pub not_counted: Option<NotCounted>,
    pub duplicate: bool,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// One recipient of one message of the batch.
struct Item<'a> {
    input: &'a BounceInput,
    report: &'a RecipientReport,
    verdict: &'a Verdict,
    key: String,
    domain: String,
    duplicate: bool,
}

impl Item<'_> {
    fn text(&self) -> Option<&str> {
        kept_text(self.report.diagnostic.as_deref())
    }
}

/// The delivery log a recipient was tied to.
#[derive(Debug, Clone)]
struct LogLink {
    id: i64,
    /// When the delivery's first attempt was sent: its validity runs from there.
    sent_at: DateTime<Utc>,
    retry_count: i32,
    policy: RetryPolicy,
}

/// One row of `bounce_events`; also used for manual and scheduled changes.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub kind: &'static str,
    pub message_hash: Option<Vec<u8>>,
    pub source: Option<String>,
    pub address: String,
    pub domain: String,
    pub delivery_log_id: Option<i64>,
    pub correlation: &'static str,
    pub bounce_type: Option<String>,
    pub reason: Option<String>,
    pub category: Option<String>,
    pub enhanced_status: Option<String>,
    pub reply_code: Option<i16>,
    pub diagnostic: Option<String>,
    pub rule_id: Option<String>,
    pub counted: bool,
    pub not_counted_why: Option<String>,
    pub status_before: AddressStatus,
    pub status_after: AddressStatus,
    pub count_before: i32,
    pub count_after: i32,
    /// Who made a manual change (an API token's name, `cli:$USER`).
    pub actor: Option<String>,
    pub note: Option<String>,
}

impl EventRow {
    /// A state change not caused by a bounce (release, reset, operator).
    pub(crate) fn state_change(
        kind: &'static str,
        address: &str,
        before: (AddressStatus, i32),
        after: (AddressStatus, i32),
    ) -> Self {
        Self {
            kind,
            message_hash: None,
            source: None,
            address: address.to_owned(),
            domain: domain_of(address).to_owned(),
            delivery_log_id: None,
            correlation: CorrelatedBy::None.as_str(),
            bounce_type: None,
            reason: None,
            category: None,
            enhanced_status: None,
            reply_code: None,
            diagnostic: None,
            rule_id: None,
            counted: false,
            not_counted_why: None,
            status_before: before.0,
            status_after: after.0,
            count_before: before.1,
            count_after: after.1,
            actor: None,
            note: None,
        }
    }
}

struct LogUpdate {
    verdict: Verdict,
    text: Option<String>,
    retry_count: i32,
    next_retry_at: Option<DateTime<Utc>>,
}

struct SenderFailure {
    count: i64,
    last_text: Option<String>,
}

/// Everything a batch writes, accumulated in memory then flushed with one
/// statement per table. Maps are ordered so rows are written (and locked) in
/// a consistent order across concurrent batches.
#[derive(Default)]
struct Writes {
    mode: FailureMode,
    events: Vec<EventRow>,
    logs: BTreeMap<i64, LogUpdate>,
    sender: BTreeMap<(String, NaiveDate, String), SenderFailure>,
    queue: BTreeMap<Vec<u8>, QueueEntry>,
    hits: BTreeMap<String, i64>,
}

impl Store {
    /// Applies a batch inside the caller's transaction (the daemon marks its
    /// intake rows done in the same one). Returns one outcome per recipient,
    /// in input order; messages already processed change nothing and come
    /// back marked `duplicate`.
    pub async fn apply(
        &self,
        conn: &mut PgConnection,
        inputs: &[BounceInput],
        now: DateTime<Utc>,
    ) -> Result<Vec<RecipientOutcome>> {
        let inputs = &*storable_inputs(inputs);
        check_inputs(inputs)?;
        let fresh = claim_messages(conn, inputs, now).await?;
        self.apply_claimed(conn, inputs, &fresh, FailureMode::Async, now)
            .await
    }

    /// [`Store::apply`] once idempotence is settled: `fresh[i]` says whether
    /// input `i` is new (the others change nothing). Bounces and synchronous
    /// failures both go through here, so they count alike.
    pub(crate) async fn apply_claimed(
        &self,
        conn: &mut PgConnection,
        inputs: &[BounceInput],
        fresh: &[bool],
        mode: FailureMode,
        now: DateTime<Utc>,
    ) -> Result<Vec<RecipientOutcome>> {
        check_inputs(inputs)?;
        let items = items(inputs, fresh);
        let links = self.correlate(conn, &items).await?;

        let count_uncorrelated = self.settings.count_uncorrelated;
        let mut lock = BTreeSet::new();
        let mut read = BTreeSet::new();
        for (item, (by, _)) in items.iter().zip(&links) {
            let f = Failure {
                verdict: item.verdict,
                text: None,
                correlated: *by != CorrelatedBy::None,
            };
            if !item.duplicate && state::may_change_address(&f, count_uncorrelated) {
                lock.insert(item.key.clone());
            } else {
                read.insert(item.key.clone());
            }
        }
        read.retain(|k| !lock.contains(k));
        let mut rows = lock_addresses(conn, &lock, now).await?;
        rows.extend(fetch_addresses(conn, &read, false).await?);

        let mut writes = Writes {
            mode,
            ..Writes::default()
        };
        for (input, _) in inputs.iter().zip(fresh).filter(|(_, fresh)| **fresh) {
            if let Some(text) = unreadable_report_text(&input.analysis, &input.message_hash) {
                queue::enqueue(&mut writes.queue, &text);
            }
        }
        let mut outcomes = Vec::with_capacity(items.len());
        for (item, (by, link)) in items.iter().zip(links) {
            let row = rows
                .entry(item.key.clone())
                .or_insert_with(AddressRow::fresh);
            outcomes.push(self.decide(item, by, link, row, &mut writes, now));
        }
        let changed: Vec<(&String, &AddressRow)> =
            lock.iter().filter_map(|k| rows.get_key_value(k)).collect();
        update_addresses(conn, &changed, now).await?;
        writes.flush(conn, now).await?;
        Ok(outcomes)
    }

    /// [`Store::apply`] in a transaction of its own. A deadlock (which the
    /// lock ordering should prevent) is retried rather than surfaced.
    pub async fn apply_batch(
        &self,
        inputs: &[BounceInput],
        now: DateTime<Utc>,
    ) -> Result<Vec<RecipientOutcome>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
            match self.apply(&mut tx, inputs, now).await {
                Ok(out) => {
                    tx.commit().await.ctx("committing a batch")?;
                    return Ok(out);
                }
                Err(e) if attempt < 3 && is_deadlock(&e) => {
                    tracing::warn!(attempt, error = %e, "deadlock while applying a batch; retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs the state machine for one recipient and records its writes.
    fn decide(
        &self,
        item: &Item<'_>,
        by: CorrelatedBy,
        link: Option<LogLink>,
        row: &mut AddressRow,
        w: &mut Writes,
        now: DateTime<Utc>,
    ) -> RecipientOutcome {
        let before = (row.status, row.error_count);
        let v = item.verdict;
        let result = if item.duplicate {
            Err(NotCounted::Duplicate)
        } else {
            let f = Failure {
                verdict: v,
                text: item.text(),
                correlated: by != CorrelatedBy::None,
            };
            state::apply_failure(
                row,
                &f,
                now,
                &self.settings.quarantine,
                self.settings.count_uncorrelated,
            )
        };
        let not_counted = result.err();
        let mut next_retry_at = None;
        if !item.duplicate {
            if not_counted == Some(NotCounted::SenderSide) {
                let e = w
                    .sender
                    .entry((
                        item.domain.clone(),
                        now.date_naive(),
                        v.category.as_str().to_owned(),
                    ))
                    .or_insert(SenderFailure {
                        count: 0,
                        last_text: None,
                    });
                e.count += 1;
                e.last_text = item.text().map(str::to_owned);
            }
            // A delay warning leaves the delivery as sent: the sending MTA
            // still holds the message, so neither a failure nor a retry.
            let delay_warning = item.report.hint == Some(Category::Delayed);
            // Never retried: an address the sender must not mail now.
            let excluded = row.status.excluded();
            if let Some(link) = link.as_ref().filter(|_| !delay_warning) {
                next_retry_at = w.record_delivery_failure(link, v, item.text(), excluded, now);
            }
            if !v.qualified {
                if let Some(text) = item.text() {
                    queue::enqueue(&mut w.queue, text);
                }
            }
            *w.hits.entry(v.rule.clone()).or_default() += 1;
            let mut event = self.event(item, by, link.as_ref(), not_counted, before, row);
            if w.mode == FailureMode::Sync {
                // not a received message: nothing to find it by
                event.message_hash = None;
            }
            w.events.push(event);
        }
        RecipientOutcome {
            message_hash: hex::encode(item.input.message_hash),
            source: item.input.source.clone(),
            address: item.key.clone(),
            delivery_log_id: link.as_ref().map(|l| l.id),
            correlated: by != CorrelatedBy::None,
            correlated_by: by,
            bounce_type: v.bounce_type,
            reason: v.reason,
            category: v.category,
            rule: v.rule.clone(),
            qualified: v.qualified,
            status_before: before.0,
            status_after: row.status,
            error_count_before: before.1,
            error_count_after: row.error_count,
            counted: !item.duplicate && not_counted.is_none(),
            not_counted,
            duplicate: item.duplicate,
            next_retry_at,
        }
    }

    fn event(
        &self,
        item: &Item<'_>,
        by: CorrelatedBy,
        link: Option<&LogLink>,
        not_counted: Option<NotCounted>,
        before: (AddressStatus, i32),
        row: &AddressRow,
    ) -> EventRow {
        let v = item.verdict;
        EventRow {
            kind: "bounce",
            message_hash: Some(item.input.message_hash.to_vec()),
            source: Some(item.input.source.clone()),
            address: item.key.clone(),
            domain: item.domain.clone(),
            delivery_log_id: link.map(|l| l.id),
            correlation: by.as_str(),
            bounce_type: Some(v.bounce_type.as_str().into()),
            reason: Some(v.reason.as_str().into()),
            category: Some(v.category.as_str().into()),
            enhanced_status: item.report.status.map(|s| s.to_string()),
            reply_code: item
                .report
                .reply_code
                .and_then(|c| i16::try_from(c.value()).ok()),
            diagnostic: item.text().map(str::to_owned),
            rule_id: Some(v.rule.clone()),
            counted: not_counted.is_none(),
            not_counted_why: not_counted.map(|n| n.as_str().to_owned()),
            status_before: before.0,
            status_after: row.status,
            count_before: before.1,
            count_after: row.error_count,
            actor: None,
            note: None,
        }
    }

    /// Ties each fresh recipient to a delivery log: tracking id, then
    /// Message-ID, then a valid signed VERP token. One query for the batch.
    async fn correlate(
        &self,
        conn: &mut PgConnection,
        items: &[Item<'_>],
    ) -> Result<Vec<(CorrelatedBy, Option<LogLink>)>> {
        let mut out = vec![(CorrelatedBy::None, None); items.len()];
        let mut idx = Vec::new();
        let (mut addr, mut tid, mut mid, mut verp) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, item) in items.iter().enumerate().filter(|(_, it)| !it.duplicate) {
            let original = &item.input.analysis.original;
            let verp_ok = self.verp_correlates(item);
            if verp_ok {
                out[i].0 = CorrelatedBy::Verp;
            }
            idx.push(i);
            addr.push(item.key.clone());
            tid.push(correlation::tracking_key(original.tracking_id.as_deref()));
            mid.push(correlation::message_id_key(original.message_id.as_deref()));
            verp.push(verp_ok);
        }
        if idx.is_empty() {
            return Ok(out);
        }
        let rows = sqlx::query(CORRELATE_SQL)
            .bind(&addr)
            .bind(&tid)
            .bind(&mid)
            .bind(&verp)
            .fetch_all(&mut *conn)
            .await
            .ctx("correlating bounces to delivery logs")?;
        for r in rows {
            let ordinal: i64 = r.try_get(0).ctx("reading correlation")?;
            let Some(&i) = usize::try_from(ordinal - 1).ok().and_then(|o| idx.get(o)) else {
                continue;
            };
            let how: String = r.try_get(2).ctx("reading correlation")?;
            out[i] = (correlated_by(&how), Some(self.log_link(&r)?));
        }
        Ok(out)
    }

    fn log_link(&self, r: &PgRow) -> Result<LogLink> {
        let get = |e| StoreError::Sqlx {
            context: "reading correlation",
            cause: e,
        };
        Ok(LogLink {
            id: r.try_get(1).map_err(get)?,
            sent_at: r.try_get(3).map_err(get)?,
            retry_count: r.try_get(4).map_err(get)?,
            policy: RetryPolicy::new(
                &self.settings.retry,
                r.try_get(5).map_err(get)?,
                r.try_get(6).map_err(get)?,
                r.try_get(7).map_err(get)?,
                r.try_get(8).map_err(get)?,
            ),
        })
    }

    fn verp_correlates(&self, item: &Item<'_>) -> bool {
        let original = &item.input.analysis.original;
        correlation::verp_correlates(
            self.settings
                .verp_secret
                .as_ref()
                .map(|s| s.expose_secret()),
            original.verp_recipient.as_ref(),
            original.verp_token.as_deref(),
            &item.key,
        )
    }
}

const CORRELATE_SQL: &str = r#"
SELECT t.i, d.id, d.how, d.first_sent, d.retry_count,
       extract(epoch FROM dv.validity)::int8, dv.quick_retries,
       extract(epoch FROM dv.quick_interval)::int8, dv.daily_retries
FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) WITH ORDINALITY AS t(addr, tid, mid, verp, i)
CROSS JOIN LATERAL (
    SELECT c.* FROM (
        (SELECT l.id, l.delivery_id, COALESCE(l.first_sent_at, l.sent_at) AS first_sent, l.retry_count,
                'tracking_id' AS how, 1 AS pref
           FROM delivery_logs l
          WHERE t.tid IS NOT NULL AND l.tracking_id = t.tid AND l.address = t.addr
          ORDER BY l.sent_at DESC LIMIT 1)
        UNION ALL
        (SELECT l.id, l.delivery_id, COALESCE(l.first_sent_at, l.sent_at), l.retry_count, 'message_id', 2
           FROM delivery_logs l
          WHERE t.mid IS NOT NULL AND l.message_id = t.mid AND l.address = t.addr
          ORDER BY l.sent_at DESC LIMIT 1)
        UNION ALL
        (SELECT l.id, l.delivery_id, COALESCE(l.first_sent_at, l.sent_at), l.retry_count, 'verp', 3
           FROM delivery_logs l
          WHERE t.verp AND l.address = t.addr
          ORDER BY l.sent_at DESC LIMIT 1)
    ) c
    ORDER BY c.pref LIMIT 1
) d
LEFT JOIN deliveries dv ON dv.id = d.delivery_id
"#;

fn correlated_by(how: &str) -> CorrelatedBy {
    match how {
        "tracking_id" => CorrelatedBy::TrackingId,
        "message_id" => CorrelatedBy::MessageId,
        _ => CorrelatedBy::Verp,
    }
}

impl Writes {
    /// Marks the delivery failed and schedules a retry for soft failures of a
    /// delivery still valid. Returns the retry time.
    fn record_delivery_failure(
        &mut self,
        link: &LogLink,
        v: &Verdict,
        text: Option<&str>,
        excluded: bool,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if !retry::fails_delivery(v) {
            return None;
        }
        // A second bounce for the same log in this batch continues from the first.
        let done = self
            .logs
            .get(&link.id)
            .map_or(link.retry_count, |u| u.retry_count);
        let d = retry::after_failure(&link.policy, v, done, link.sent_at, excluded, now);
        self.logs.insert(
            link.id,
            LogUpdate {
                verdict: v.clone(),
                text: text.map(str::to_owned),
                retry_count: d.retry_count,
                next_retry_at: d.next_retry_at,
            },
        );
        d.next_retry_at
    }

    async fn flush(self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<()> {
        insert_events(conn, &self.events, now).await?;
        self.update_logs(conn, now).await?;
        self.upsert_sender_failures(conn, now).await?;
        queue::upsert(conn, &self.queue, now).await?;
        self.count_rule_hits(conn, now).await
    }

    async fn update_logs(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<()> {
        if self.logs.is_empty() {
            return Ok(());
        }
        let n = self.logs.len();
        let (mut id, mut ft, mut fr, mut fc, mut et, mut rc, mut nr) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (k, u) in &self.logs {
            id.push(*k);
            ft.push(u.verdict.bounce_type.as_str());
            fr.push(u.verdict.reason.as_str());
            fc.push(u.verdict.category.as_str());
            et.push(u.text.clone());
            rc.push(u.retry_count);
            nr.push(u.next_retry_at);
        }
        sqlx::query(
            "UPDATE delivery_logs l SET status = 'failed', failure_type = t.ft, failure_reason = t.fr,
                    failure_category = t.fc, error_text = t.et, failure_mode = $9, bounced_at = $8,
                    retry_count = t.rc, next_retry_at = t.nr
             FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::timestamptz[])
                  AS t(id, ft, fr, fc, et, rc, nr)
             WHERE l.id = t.id",
        )
        .bind(&id)
        .bind(&ft)
        .bind(&fr)
        .bind(&fc)
        .bind(&et)
        .bind(&rc)
        .bind(&nr)
        .bind(now)
        .bind(self.mode.as_str())
        .execute(&mut *conn)
        .await
        .ctx("updating delivery logs")?;
        Ok(())
    }

    async fn upsert_sender_failures(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if self.sender.is_empty() {
            return Ok(());
        }
        let (mut dom, mut day, mut cat, mut cnt, mut txt) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((d, dy, c), f) in &self.sender {
            dom.push(d.as_str());
            day.push(*dy);
            cat.push(c.as_str());
            cnt.push(f.count);
            txt.push(f.last_text.as_deref());
        }
        sqlx::query(
            "INSERT INTO domain_sender_failures AS s (domain, day, category, count, last_at, last_text)
             SELECT t.d, t.dy, t.c, t.n, $6, t.x
               FROM unnest($1::text[], $2::date[], $3::text[], $4::int8[], $5::text[]) AS t(d, dy, c, n, x)
              ORDER BY t.d, t.dy, t.c
             ON CONFLICT (domain, day, category) DO UPDATE
                SET count = s.count + EXCLUDED.count,
                    last_at = GREATEST(s.last_at, EXCLUDED.last_at),
                    last_text = COALESCE(EXCLUDED.last_text, s.last_text)",
        )
        .bind(&dom)
        .bind(&day)
        .bind(&cat)
        .bind(&cnt)
        .bind(&txt)
        .bind(now)
        .execute(&mut *conn)
        .await
        .ctx("counting sender-side failures")?;
        Ok(())
    }

    /// One statement for the whole batch. The rows are locked in id order
    /// first (the CTE is materialised because of FOR UPDATE) so that
    /// concurrent batches hitting the same rules queue up instead of
    /// deadlocking.
    async fn count_rule_hits(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<()> {
        if self.hits.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = self.hits.keys().map(String::as_str).collect();
        let counts: Vec<i64> = self.hits.values().copied().collect();
        sqlx::query(
            "WITH locked AS (SELECT id FROM qualification_rules WHERE id = ANY($1) ORDER BY id FOR UPDATE)
             UPDATE qualification_rules r
                SET hit_count = r.hit_count + t.n,
                    last_hit_at = GREATEST(r.last_hit_at, $3)
               FROM unnest($1::text[], $2::int8[]) AS t(id, n)
               JOIN locked USING (id)
              WHERE r.id = t.id",
        )
        .bind(&ids)
        .bind(&counts)
        .bind(now)
        .execute(&mut *conn)
        .await
        .ctx("counting rule hits")?;
        Ok(())
    }
}

fn check_inputs(inputs: &[BounceInput]) -> Result<()> {
    for i in inputs {
        if i.verdicts.len() != i.analysis.recipients.len() {
            return Err(StoreError::Input(format!(
                "message {} ({}): {} verdicts for {} recipients",
                hex::encode(i.message_hash),
                i.source,
                i.verdicts.len(),
                i.analysis.recipients.len()
            )));
        }
    }
    Ok(())
}

/// Records every message hash of the batch. Returns, per input, whether it
/// is new: a hash seen before (or earlier in this batch) is a duplicate.
/// Hashes are inserted sorted so concurrent batches sharing messages wait for
/// each other instead of deadlocking.
async fn claim_messages(
    conn: &mut PgConnection,
    inputs: &[BounceInput],
    now: DateTime<Utc>,
) -> Result<Vec<bool>> {
    let mut first: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    for (i, input) in inputs.iter().enumerate() {
        first.entry(input.message_hash).or_insert(i);
    }
    let hashes: Vec<Vec<u8>> = first.keys().map(|h| h.to_vec()).collect();
    let sources: Vec<&str> = first.values().map(|&i| inputs[i].source.as_str()).collect();
    let counts: Vec<i32> = first
        .values()
        .map(|&i| i32::try_from(inputs[i].analysis.recipients.len()).unwrap_or(i32::MAX))
        .collect();
    let claimed: Vec<Vec<u8>> = sqlx::query_scalar(
        "INSERT INTO processed_messages (message_hash, processed_at, source, recipients)
         SELECT t.h, $4, t.s, t.n FROM unnest($1::bytea[], $2::text[], $3::int4[]) AS t(h, s, n)
          ORDER BY t.h
         ON CONFLICT (message_hash) DO NOTHING
         RETURNING message_hash",
    )
    .bind(&hashes)
    .bind(&sources)
    .bind(&counts)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .ctx("recording processed messages")?;
    let claimed: HashSet<Vec<u8>> = claimed.into_iter().collect();
    Ok(inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            first.get(&input.message_hash) == Some(&i)
                && claimed.contains(input.message_hash.as_slice())
        })
        .collect())
}

fn items<'a>(inputs: &'a [BounceInput], fresh: &[bool]) -> Vec<Item<'a>> {
    inputs
        .iter()
        .zip(fresh)
        .flat_map(|(input, &fresh)| {
            input
                .analysis
                .recipients
                .iter()
                .zip(&input.verdicts)
                .map(move |(report, verdict)| Item {
                    input,
                    report,
                    verdict,
                    key: report.address.key(),
                    domain: report.address.domain().to_lowercase(),
                    duplicate: !fresh,
                })
        })
        .collect()
}

const ADDRESS_COLUMNS: &str = "address, status, error_count, first_error_at, last_error_at, \
     last_significant_error_at, last_type, last_reason, last_category, last_text, quarantined_at, release_at";

pub(crate) fn address_from_row(r: &PgRow) -> Result<(String, AddressRow)> {
    let get = |e| StoreError::Sqlx {
        context: "reading an address",
        cause: e,
    };
    let status: String = r.try_get("status").map_err(get)?;
    let row = AddressRow {
        status: status.parse().map_err(StoreError::Input)?,
        error_count: r.try_get("error_count").map_err(get)?,
        first_error_at: r.try_get("first_error_at").map_err(get)?,
        last_error_at: r.try_get("last_error_at").map_err(get)?,
        last_significant_error_at: r.try_get("last_significant_error_at").map_err(get)?,
        last_type: r.try_get("last_type").map_err(get)?,
        last_reason: r.try_get("last_reason").map_err(get)?,
        last_category: r.try_get("last_category").map_err(get)?,
        last_text: r.try_get("last_text").map_err(get)?,
        quarantined_at: r.try_get("quarantined_at").map_err(get)?,
        release_at: r.try_get("release_at").map_err(get)?,
    };
    Ok((r.try_get("address").map_err(get)?, row))
}

/// Reads address rows, locking them in address order when `lock`.
pub(crate) async fn fetch_addresses(
    conn: &mut PgConnection,
    keys: &BTreeSet<String>,
    lock: bool,
) -> Result<HashMap<String, AddressRow>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let sql = format!(
        "SELECT {ADDRESS_COLUMNS} FROM addresses WHERE address = ANY($1) ORDER BY address{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let rows = sqlx::query(&sql)
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await
        .ctx("reading addresses")?;
    rows.iter().map(address_from_row).collect()
}

/// Creates the missing rows then locks all of them, both in address order,
/// so two batches touching the same addresses serialise without deadlock and
/// no increment is lost.
pub(crate) async fn lock_addresses(
    conn: &mut PgConnection,
    keys: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, AddressRow>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let addrs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let domains: Vec<&str> = addrs.iter().map(|a| domain_of(a)).collect();
    sqlx::query(
        "INSERT INTO addresses (address, domain, updated_at)
         SELECT t.a, t.d, $3 FROM unnest($1::text[], $2::text[]) AS t(a, d) ORDER BY t.a
         ON CONFLICT (address) DO NOTHING",
    )
    .bind(&addrs)
    .bind(&domains)
    .bind(now)
    .execute(&mut *conn)
    .await
    .ctx("creating address rows")?;
    fetch_addresses(conn, keys, true).await
}

/// Writes back address rows (already locked by the caller).
pub(crate) async fn update_addresses(
    conn: &mut PgConnection,
    rows: &[(&String, &AddressRow)],
    now: DateTime<Utc>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&AddressRow) -> Option<DateTime<Utc>>| {
        rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>()
    };
    let txt = |f: &dyn Fn(&AddressRow) -> Option<&str>| {
        rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>()
    };
    let addr: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    let status: Vec<&str> = rows.iter().map(|(_, r)| r.status.as_str()).collect();
    let count: Vec<i32> = rows.iter().map(|(_, r)| r.error_count).collect();
    sqlx::query(
        "UPDATE addresses a SET status = t.status, error_count = t.error_count,
                first_error_at = t.first_error_at, last_error_at = t.last_error_at,
                last_significant_error_at = t.lsig, last_type = t.last_type, last_reason = t.last_reason,
                last_category = t.last_category, last_text = t.last_text,
                quarantined_at = t.quarantined_at, release_at = t.release_at, updated_at = $13
           FROM unnest($1::text[], $2::text[], $3::int4[], $4::timestamptz[], $5::timestamptz[],
                       $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[],
                       $11::timestamptz[], $12::timestamptz[])
                AS t(address, status, error_count, first_error_at, last_error_at, lsig, last_type,
                     last_reason, last_category, last_text, quarantined_at, release_at)
          WHERE a.address = t.address",
    )
    .bind(&addr)
    .bind(&status)
    .bind(&count)
    .bind(col(&|r| r.first_error_at))
    .bind(col(&|r| r.last_error_at))
    .bind(col(&|r| r.last_significant_error_at))
    .bind(txt(&|r| r.last_type.as_deref()))
    .bind(txt(&|r| r.last_reason.as_deref()))
    .bind(txt(&|r| r.last_category.as_deref()))
    .bind(txt(&|r| r.last_text.as_deref()))
    .bind(col(&|r| r.quarantined_at))
    .bind(col(&|r| r.release_at))
    .bind(now)
    .execute(&mut *conn)
    .await
    .ctx("updating addresses")?;
    Ok(())
}

pub(crate) async fn insert_events(
    conn: &mut PgConnection,
    events: &[EventRow],
    now: DateTime<Utc>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    fn col<'e, T>(events: &'e [EventRow], f: impl Fn(&'e EventRow) -> T) -> Vec<T> {
        events.iter().map(f).collect()
    }
    sqlx::query(
        "INSERT INTO bounce_events (occurred_at, kind, message_hash, source, address, domain, delivery_log_id,
                correlation, bounce_type, reason, category, enhanced_status, reply_code, diagnostic, rule_id,
                counted, not_counted_why, status_before, status_after, count_before, count_after, actor, note)
         SELECT $1, t.* FROM unnest($2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::int8[],
                $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int2[], $14::text[],
                $15::text[], $16::bool[], $17::text[], $18::text[], $19::text[], $20::int4[], $21::int4[],
                $22::text[], $23::text[]) AS t",
    )
    .bind(now)
    .bind(col(events, |e| e.kind))
    .bind(col(events, |e| e.message_hash.as_deref()))
    .bind(col(events, |e| e.source.as_deref()))
    .bind(col(events, |e| e.address.as_str()))
    .bind(col(events, |e| e.domain.as_str()))
    .bind(col(events, |e| e.delivery_log_id))
    .bind(col(events, |e| e.correlation))
    .bind(col(events, |e| e.bounce_type.as_deref()))
    .bind(col(events, |e| e.reason.as_deref()))
    .bind(col(events, |e| e.category.as_deref()))
    .bind(col(events, |e| e.enhanced_status.as_deref()))
    .bind(col(events, |e| e.reply_code))
    .bind(col(events, |e| e.diagnostic.as_deref()))
    .bind(col(events, |e| e.rule_id.as_deref()))
    .bind(col(events, |e| e.counted))
    .bind(col(events, |e| e.not_counted_why.as_deref()))
    .bind(col(events, |e| e.status_before.as_str()))
    .bind(col(events, |e| e.status_after.as_str()))
    .bind(col(events, |e| e.count_before))
    .bind(col(events, |e| e.count_after))
    .bind(col(events, |e| e.actor.as_deref()))
    .bind(col(events, |e| e.note.as_deref()))
    .execute(&mut *conn)
    .await
    .ctx("recording bounce events")?;
    Ok(())
}

/// A bounce's texts going into the database made storable (see
/// [`super::storable`]).
fn has_nul(input: &BounceInput) -> bool {
    let a = &input.analysis;
    let nul = |s: &str| s.contains('\0');
    let opt = |s: &Option<String>| s.as_deref().is_some_and(nul);
    nul(&input.source)
        || opt(&a.error)
        || opt(&a.subject)
        || opt(&a.from)
        || opt(&a.reporting_mta)
        || opt(&a.arrival_date)
        || opt(&a.feedback_type)
        || opt(&a.original.message_id)
        || opt(&a.original.tracking_id)
        || opt(&a.original.verp_token)
        || input.verdicts.iter().any(|v| nul(&v.rule))
        || a.recipients.iter().any(|r| {
            opt(&r.original_recipient)
                || opt(&r.diagnostic)
                || opt(&r.remote_mta)
                || opt(&r.last_attempt)
                || r.context.as_deref().is_some_and(nul)
                || r.extra_fields.iter().any(|(k, v)| nul(k) || nul(v))
        })
}

/// The inputs with every text storable: borrowed unless one holds a NUL.
fn storable_inputs(inputs: &[BounceInput]) -> std::borrow::Cow<'_, [BounceInput]> {
    if !inputs.iter().any(has_nul) {
        return std::borrow::Cow::Borrowed(inputs);
    }
    let mut owned = inputs.to_vec();
    for input in &mut owned {
        if !has_nul(input) {
            continue;
        }
        super::storable::fix(&mut input.source);
        let a = &mut input.analysis;
        for s in [
            &mut a.error,
            &mut a.subject,
            &mut a.from,
            &mut a.reporting_mta,
            &mut a.arrival_date,
            &mut a.feedback_type,
            &mut a.original.message_id,
            &mut a.original.tracking_id,
            &mut a.original.verp_token,
        ] {
            super::storable::fix_opt(s);
        }
        for v in &mut input.verdicts {
            super::storable::fix(&mut v.rule);
        }
        for r in &mut a.recipients {
            for s in [
                &mut r.original_recipient,
                &mut r.diagnostic,
                &mut r.remote_mta,
                &mut r.last_attempt,
            ] {
                super::storable::fix_opt(s);
            }
            if let Some(c) = &r.context {
                if c.contains('\0') {
                    r.context = Some(c.replace('\0', "\u{FFFD}").into());
                }
            }
            for (k, v) in &mut r.extra_fields {
                super::storable::fix(k);
                super::storable::fix(v);
            }
        }
    }
    std::borrow::Cow::Owned(owned)
}
