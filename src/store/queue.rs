//! The "to qualify" queue: bounce texts no rule explained, collapsed by
//! shape ([`normalise_diagnostic`]).

use super::{Result, SqlContext, Store, StoreError};
use crate::domain::normalise::{clip, normalise_diagnostic, rule_from_qualification};
use crate::model::{BounceType, Category, Reason};
use crate::rules::Rule;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::BTreeMap;

/// First text of a row is kept up to this many bytes.
const MAX_FIRST_TEXT: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QualificationStatus {
    ToQualify,
    Keep,
    Ignore,
    /// A rule added later explains it (set by requalify).
    Matched,
}

impl QualificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToQualify => "to_qualify",
            Self::Keep => "keep",
            Self::Ignore => "ignore",
            Self::Matched => "matched",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "to_qualify" => Self::ToQualify,
            "keep" => Self::Keep,
            "ignore" => Self::Ignore,
            "matched" => Self::Matched,
            other => {
                return Err(StoreError::Input(format!(
                    "unknown qualification status {other:?}"
                )))
            }
        })
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Qualification {
    pub id: i64,
    pub normalised: String,
    pub first_text: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub count: i64,
    pub status: QualificationStatus,
    pub rule_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RequalifySummary {
    pub checked: usize,
    pub matched: usize,
}

/// A queue row accumulated over a batch.
pub(crate) struct QueueEntry {
    normalised: String,
    first_text: String,
    count: i64,
}

pub(crate) fn enqueue(queue: &mut BTreeMap<Vec<u8>, QueueEntry>, text: &str) {
    let normalised = normalise_diagnostic(text);
    let hash = Sha256::digest(normalised.as_bytes()).to_vec();
    queue
        .entry(hash)
        .or_insert_with(|| QueueEntry {
            normalised,
            first_text: clip(text, MAX_FIRST_TEXT).to_owned(),
            count: 0,
        })
        .count += 1;
}

/// Upserts the batch's queue rows, in hash order (consistent lock order).
pub(crate) async fn upsert(
    conn: &mut PgConnection,
    queue: &BTreeMap<Vec<u8>, QueueEntry>,
    now: DateTime<Utc>,
) -> Result<()> {
    if queue.is_empty() {
        return Ok(());
    }
    let hashes: Vec<&[u8]> = queue.keys().map(Vec::as_slice).collect();
    let norm: Vec<&str> = queue.values().map(|e| e.normalised.as_str()).collect();
    let first: Vec<&str> = queue.values().map(|e| e.first_text.as_str()).collect();
    let count: Vec<i64> = queue.values().map(|e| e.count).collect();
    sqlx::query(
        "INSERT INTO message_qualifications AS q (text_hash, normalised, first_text, first_seen_at, last_seen_at, count)
         SELECT t.h, t.n, t.f, $5, $5, t.c FROM unnest($1::bytea[], $2::text[], $3::text[], $4::int8[]) AS t(h, n, f, c)
          ORDER BY t.h
         ON CONFLICT (text_hash) DO UPDATE
            SET count = q.count + EXCLUDED.count,
                last_seen_at = GREATEST(q.last_seen_at, EXCLUDED.last_seen_at)",
    )
    .bind(&hashes)
    .bind(&norm)
    .bind(&first)
    .bind(&count)
    .bind(now)
    .execute(&mut *conn)
    .await
    .ctx("queueing unqualified bounces")?;
    Ok(())
}

fn qualification_from_row(r: &PgRow) -> Result<Qualification> {
    let get = |e| StoreError::Sqlx {
        context: "reading a qualification",
        cause: e,
    };
    let status: String = r.try_get("status").map_err(get)?;
    Ok(Qualification {
        id: r.try_get("id").map_err(get)?,
        normalised: r.try_get("normalised").map_err(get)?,
        first_text: r.try_get("first_text").map_err(get)?,
        first_seen_at: r.try_get("first_seen_at").map_err(get)?,
        last_seen_at: r.try_get("last_seen_at").map_err(get)?,
        count: r.try_get("count").map_err(get)?,
        status: QualificationStatus::parse(&status)?,
        rule_id: r.try_get("rule_id").map_err(get)?,
    })
}

impl Store {
    /// Queue rows, most frequent first; all statuses when `status` is None.
    pub async fn list_qualifications(
        &self,
        status: Option<QualificationStatus>,
    ) -> Result<Vec<Qualification>> {
        let rows = sqlx::query(
            "SELECT id, normalised, first_text, first_seen_at, last_seen_at, count, status, rule_id
               FROM message_qualifications
              WHERE $1::text IS NULL OR status = $1
              ORDER BY count DESC, id",
        )
        .bind(status.map(QualificationStatus::as_str))
        .fetch_all(&self.pool)
        .await
        .ctx("listing qualifications")?;
        rows.iter().map(qualification_from_row).collect()
    }

    /// Keeps a queued text with a verdict: creates rule `q<ID>` from its
    /// shape (which notifies the running daemons) and marks the row `keep`.
    pub async fn keep_qualification(
        &self,
        id: i64,
        bounce_type: BounceType,
        reason: Reason,
        category: Option<Category>,
    ) -> Result<Rule> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let normalised: String = sqlx::query_scalar(
            "SELECT normalised FROM message_qualifications WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .ctx("reading a qualification")?
        .ok_or_else(|| StoreError::NotFound {
            what: "qualification",
            id: id.to_string(),
        })?;
        let rule = rule_from_qualification(id, &normalised, bounce_type, reason, category);
        super::rules::insert_rule_in(&mut tx, &rule, "qualification").await?;
        sqlx::query(
            "UPDATE message_qualifications SET status = 'keep', bounce_type = $2, reason = $3, category = $4, rule_id = $5
              WHERE id = $1",
        )
        .bind(id)
        .bind(rule.bounce_type.as_str())
        .bind(rule.reason.as_str())
        .bind(rule.category.as_str())
        .bind(&rule.id)
        .execute(&mut *tx)
        .await
        .ctx("keeping a qualification")?;
        tx.commit().await.ctx("committing a qualification")?;
        Ok(rule)
    }

    pub async fn ignore_qualification(&self, id: i64) -> Result<()> {
        let done = sqlx::query("UPDATE message_qualifications SET status = 'ignore' WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("ignoring a qualification")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "qualification",
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// Runs `matcher` (the current rule set: text → id of the rule that
    /// explains it) over the queued texts and marks those now explained.
    pub async fn requalify(
        &self,
        matcher: impl Fn(&str) -> Option<String>,
    ) -> Result<RequalifySummary> {
        let queued = self
            .list_qualifications(Some(QualificationStatus::ToQualify))
            .await?;
        let mut ids = Vec::new();
        let mut rules = Vec::new();
        for q in &queued {
            if let Some(rule) = matcher(&q.first_text) {
                ids.push(q.id);
                rules.push(rule);
            }
        }
        if !ids.is_empty() {
            sqlx::query(
                "UPDATE message_qualifications m SET status = 'matched', rule_id = t.r
                   FROM unnest($1::int8[], $2::text[]) AS t(id, r)
                  WHERE m.id = t.id AND m.status = 'to_qualify'",
            )
            .bind(&ids)
            .bind(&rules)
            .execute(&self.pool)
            .await
            .ctx("marking requalified texts")?;
        }
        Ok(RequalifySummary {
            checked: queued.len(),
            matched: ids.len(),
        })
    }
}
