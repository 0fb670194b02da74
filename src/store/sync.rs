//! Synchronous failures: recipients the remote server refused during the SMTP
//! dialogue, reported by the sender. Each is applied through the same path as
//! a bounce recipient ([`Store::apply_claimed`]), so quarantine, counting,
//! sender-side categories, retries and the "to qualify" queue behave the
//! same; only idempotence differs: by the sender's id instead of a message
//! hash.

use super::apply::{BounceInput, FailureMode, RecipientOutcome};
use super::deliveries::{insert_logs, DeliveryRecord, Insert};
use super::{is_deadlock, Result, SqlContext, Store, StoreError};
use crate::analysis::{Analysis, RecipientReport};
use crate::domain::AddressStatus;
use crate::model::{BounceType, Category, MessageKind, Reason};
use crate::rules::Verdict;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// One synchronous failure, qualified, ready to apply.
#[derive(Debug, Clone)]
pub struct SyncFailureInput {
    /// The sender's idempotence key: a repeated id changes nothing.
    pub id: Option<String>,
    /// The refused recipient as a bounce would report it.
    pub report: RecipientReport,
    pub verdict: Verdict,
    /// Without angle brackets.
    pub message_id: Option<String>,
    pub tracking_id: Option<String>,
    pub delivery: Option<String>,
    pub profile_id: Option<String>,
    /// When the server refused; the send time of a log created for it.
    pub at: DateTime<Utc>,
}

/// What one synchronous failure did, as returned (and remembered by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncFailureResult {
    pub address: String,
    #[serde(rename = "type")]
    pub bounce_type: BounceType,
    pub reason: Reason,
    pub category: Category,
    pub rule: String,
    pub qualified: bool,
    pub counted: bool,
    pub status_before: AddressStatus,
    pub status_after: AddressStatus,
    /// The address's error count after this failure.
    pub error_count: i32,
}

impl From<&RecipientOutcome> for SyncFailureResult {
    fn from(o: &RecipientOutcome) -> Self {
        Self {
            address: o.address.clone(),
            bounce_type: o.bounce_type,
            reason: o.reason,
            category: o.category,
            rule: o.rule.clone(),
            qualified: o.qualified,
            counted: o.counted,
            status_before: o.status_before,
            status_after: o.status_after,
            error_count: o.error_count_after,
        }
    }
}

impl Store {
    /// Applies synchronous failures in one transaction: all or nothing.
    /// Returns one result per input, in input order; an id seen before (in
    /// an earlier call or earlier in this batch) changes nothing and returns
    /// the result it had the first time.
    pub async fn record_sync_failures(
        &self,
        inputs: &[SyncFailureInput],
        now: DateTime<Utc>,
    ) -> Result<Vec<SyncFailureResult>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
            let done = match self.record_sync_in(&mut tx, inputs, now).await {
                Ok(out) => tx
                    .commit()
                    .await
                    .ctx("committing synchronous failures")
                    .map(|()| out),
                Err(e) => Err(e),
            };
            match done {
                Ok(out) => return Ok(out),
                Err(e) if attempt < 3 && is_deadlock(&e) => {
                    tracing::warn!(attempt, error = %e, "deadlock while recording synchronous failures; retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn record_sync_in(
        &self,
        conn: &mut PgConnection,
        inputs: &[SyncFailureInput],
        now: DateTime<Utc>,
    ) -> Result<Vec<SyncFailureResult>> {
        // The first occurrence of each id, in the batch.
        let mut first: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, f) in inputs.iter().enumerate() {
            if let Some(id) = f.id.as_deref() {
                first.entry(id).or_insert(i);
            }
        }
        let (claimed, known) = claim_ids(conn, first.keys().copied(), now).await?;
        let fresh: Vec<bool> = inputs
            .iter()
            .enumerate()
            .map(|(i, f)| match f.id.as_deref() {
                None => true,
                Some(id) => first.get(id) == Some(&i) && claimed.contains(id),
            })
            .collect();

        // A delivery never registered gets its log now, as registered at `at`.
        let mut logs: Vec<DeliveryRecord> = Vec::new();
        let mut seen = HashSet::new();
        for (f, _) in inputs.iter().zip(&fresh).filter(|(_, &new)| new) {
            let address = f.report.address.key();
            if seen.insert((address.clone(), f.message_id.clone(), f.tracking_id.clone())) {
                logs.push(DeliveryRecord {
                    message_id: f.message_id.clone(),
                    address,
                    delivery: f.delivery.clone(),
                    profile_id: f.profile_id.clone(),
                    tracking_id: f.tracking_id.clone(),
                    sent_at: f.at,
                });
            }
        }
        insert_logs(conn, &logs, &mut HashMap::new(), Insert::Unknown).await?;

        let bounces: Vec<BounceInput> = inputs
            .iter()
            .zip(&fresh)
            .filter(|(_, &new)| new)
            .map(|(f, _)| as_bounce(f))
            .collect();
        let outcomes = self
            .apply_claimed(
                conn,
                &bounces,
                &vec![true; bounces.len()],
                FailureMode::Sync,
                now,
            )
            .await?;

        let mut results: Vec<Option<SyncFailureResult>> = vec![None; inputs.len()];
        let mut outcomes = outcomes.iter();
        for (i, _) in fresh.iter().enumerate().filter(|(_, &f)| f) {
            let o = outcomes
                .next()
                .ok_or_else(|| StoreError::Input("one outcome per synchronous failure".into()))?;
            results[i] = Some(o.into());
        }
        // Remember the result of each id claimed here.
        let (mut ids, mut json) = (Vec::new(), Vec::new());
        for (id, &i) in &first {
            if let (true, Some(r)) = (claimed.contains(*id), &results[i]) {
                ids.push(*id);
                json.push(
                    serde_json::to_string(r).map_err(|e| {
                        StoreError::Input(format!("synchronous failure result: {e}"))
                    })?,
                );
            }
        }
        if !ids.is_empty() {
            sqlx::query(
                "UPDATE sync_failures s SET result = t.r::jsonb
                   FROM unnest($1::text[], $2::text[]) AS t(id, r) WHERE s.id = t.id",
            )
            .bind(&ids)
            .bind(&json)
            .execute(&mut *conn)
            .await
            .ctx("remembering synchronous failure results")?;
        }
        inputs
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if let Some(r) = &results[i] {
                    return Ok(r.clone());
                }
                let id = f.id.as_deref().unwrap_or_default();
                known
                    .get(id)
                    .cloned()
                    .or_else(|| first.get(id).and_then(|&j| results[j].clone()))
                    .ok_or_else(|| {
                        StoreError::Input(format!("synchronous failure {id:?} has no result"))
                    })
            })
            .collect()
    }
}

/// Claims ids for this transaction (inserted sorted, so concurrent batches
/// sharing ids wait for each other instead of deadlocking). Returns the ids
/// claimed, and the results remembered for the others.
async fn claim_ids<'a>(
    conn: &mut PgConnection,
    ids: impl Iterator<Item = &'a str>,
    now: DateTime<Utc>,
) -> Result<(HashSet<String>, HashMap<String, SyncFailureResult>)> {
    let ids: BTreeSet<&str> = ids.collect();
    if ids.is_empty() {
        return Ok((HashSet::new(), HashMap::new()));
    }
    let ids: Vec<&str> = ids.into_iter().collect();
    let claimed: HashSet<String> = sqlx::query_scalar(
        "INSERT INTO sync_failures (id, created_at)
         SELECT t.id, $2 FROM unnest($1::text[]) AS t(id) ORDER BY 1
         ON CONFLICT (id) DO NOTHING
         RETURNING id",
    )
    .bind(&ids)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .ctx("claiming synchronous failure ids")?
    .into_iter()
    .collect();
    let others: Vec<&str> = ids
        .into_iter()
        .filter(|id| !claimed.contains(*id))
        .collect();
    let mut known = HashMap::new();
    if !others.is_empty() {
        let rows: Vec<(String, Option<sqlx::types::Json<SyncFailureResult>>)> =
            sqlx::query_as("SELECT id, result FROM sync_failures WHERE id = ANY($1)")
                .bind(&others)
                .fetch_all(&mut *conn)
                .await
                .ctx("reading remembered synchronous failures")?;
        for (id, result) in rows {
            let result = result.ok_or_else(|| {
                StoreError::Input(format!("synchronous failure {id:?} has no stored result"))
            })?;
            known.insert(id, result.0);
        }
    }
    Ok((claimed, known))
}

/// A synchronous failure as the apply path takes a bounce: one message with
/// one recipient, tied to what was sent by the ids the sender gave.
fn as_bounce(f: &SyncFailureInput) -> BounceInput {
    let mut analysis = Analysis::empty(MessageKind::Bounce);
    analysis.original.message_id = f.message_id.clone();
    analysis.original.tracking_id = f.tracking_id.clone();
    analysis.recipients.push(f.report.clone());
    BounceInput {
        // not a message: the events of a synchronous failure have no hash
        message_hash: [0; 32],
        source: match &f.report.remote_mta {
            Some(mta) => format!("sync:{mta}"),
            None => "sync".into(),
        },
        analysis,
        verdicts: vec![f.verdict.clone()],
    }
}
