//! The "to qualify" queue: list, keep, ignore, requalify.

use super::OpsError;
use crate::model::{BounceType, Category, Reason};
use crate::rules::{Rule, RuleSet};
use crate::store::{Qualification, QualificationStatus, RequalifySummary, Store};

/// The queue rows of `status` (all of them when `None`), most frequent
/// first, at most `limit` when given.
pub async fn list(
    store: &Store,
    status: Option<QualificationStatus>,
    limit: Option<usize>,
) -> Result<Vec<Qualification>, OpsError> {
    let mut rows = store.list_qualifications(status).await?;
    if let Some(n) = limit {
        rows.truncate(n);
    }
    Ok(rows)
}

/// Keeps a queued text with a verdict: creates rule `q<ID>` from its shape.
pub async fn keep(
    store: &Store,
    id: i64,
    bounce_type: BounceType,
    reason: Reason,
    category: Option<Category>,
) -> Result<Rule, OpsError> {
    Ok(store
        .keep_qualification(id, bounce_type, reason, category)
        .await?)
}

/// Drops a queued text from the queue.
pub async fn ignore(store: &Store, id: i64) -> Result<(), OpsError> {
    Ok(store.ignore_qualification(id).await?)
}

/// Parses `to_qualify`, `keep`, `ignore` or `matched`.
pub fn parse_status(s: &str) -> Result<QualificationStatus, OpsError> {
    [
        QualificationStatus::ToQualify,
        QualificationStatus::Keep,
        QualificationStatus::Ignore,
        QualificationStatus::Matched,
    ]
    .into_iter()
    .find(|q| q.as_str() == s)
    .ok_or_else(|| OpsError::Invalid {
        index: None,
        field: Some("status"),
        message: format!(
            "unknown qualification status {s:?}: expected to_qualify, keep, ignore or matched"
        ),
    })
}

/// Runs `rules` (the rule set in force) over the queued texts and marks
/// those a rule now explains. Domain-scoped rules do not apply: a queue row
/// stands for texts from many domains.
pub async fn requalify(store: &Store, rules: &RuleSet) -> Result<RequalifySummary, OpsError> {
    Ok(store
        .requalify(|text| rules.first_match(text, "").map(|r| r.id.clone()))
        .await?)
}
