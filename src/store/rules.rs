//! Rules in `qualification_rules`: load, insert, import, export, disable,
//! and the NOTIFY channel that makes running processes reload them.

use super::{Result, SqlContext, Store, StoreError};
use crate::rules::Rule;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgConnection, Row};
use std::time::Duration;

/// Channel the `qualification_rules` triggers notify on.
pub const RULES_CHANNEL: &str = "inmail_rules";

const RULE_COLUMNS: &str =
    "id, pattern, bounce_type, reason, category, priority, domain, source, enabled, origin, hit_count, last_hit_at";

/// A rule with its bookkeeping, as `inmail rules list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredRule {
    #[serde(flatten)]
    pub rule: Rule,
    pub enabled: bool,
    pub origin: String,
    pub hit_count: i64,
    pub last_hit_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleImportSummary {
    pub inserted: u64,
    pub updated: u64,
}

/// Refuses what the engine could not compile. Patterns are matched
/// case-insensitively, so they are checked that way.
pub(crate) fn validate_rule(rule: &Rule) -> Result<()> {
    let invalid = |error: String| StoreError::InvalidRule {
        id: rule.id.clone(),
        error,
    };
    if rule.id.trim().is_empty() {
        return Err(invalid("empty rule id".into()));
    }
    if rule.source.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(invalid(
            "an empty source: leave it out or say what the text means".into(),
        ));
    }
    if let Some(d) = &rule.domain {
        if d.trim().is_empty() || d.chars().any(|c| c.is_whitespace() || c.is_uppercase()) {
            return Err(invalid(format!(
                "domain {d:?} must be a lowercase domain name"
            )));
        }
    }
    crate::rules::check_rule(rule).map_err(|e| invalid(e.to_string()))
}

/// Parses a row; a rule that would not compile (it got in by SQL) is an
/// error the caller logs and skips.
fn stored_rule_from_row(r: &PgRow) -> Result<StoredRule> {
    let get = |e| StoreError::Sqlx {
        context: "reading a rule",
        cause: e,
    };
    let id: String = r.try_get("id").map_err(get)?;
    let invalid = |error: String| StoreError::InvalidRule {
        id: id.clone(),
        error,
    };
    let text = |col: &str| -> Result<String> { r.try_get(col).map_err(get) };
    let rule = Rule {
        pattern: text("pattern")?,
        bounce_type: text("bounce_type")?
            .parse()
            .map_err(|e| invalid(format!("{e}")))?,
        reason: text("reason")?
            .parse()
            .map_err(|e| invalid(format!("{e}")))?,
        category: text("category")?
            .parse()
            .map_err(|e| invalid(format!("{e}")))?,
        priority: r.try_get("priority").map_err(get)?,
        domain: r.try_get("domain").map_err(get)?,
        source: r.try_get("source").map_err(get)?,
        id: id.clone(),
    };
    validate_rule(&rule)?;
    Ok(StoredRule {
        rule,
        enabled: r.try_get("enabled").map_err(get)?,
        origin: text("origin")?,
        hit_count: r.try_get("hit_count").map_err(get)?,
        last_hit_at: r.try_get("last_hit_at").map_err(get)?,
    })
}

pub(crate) async fn insert_rule_in(
    conn: &mut PgConnection,
    rule: &Rule,
    origin: &str,
) -> Result<()> {
    validate_rule(rule)?;
    let inserted = sqlx::query(
        "INSERT INTO qualification_rules (id, pattern, bounce_type, reason, category, priority, domain, origin, source)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&rule.id)
    .bind(&rule.pattern)
    .bind(rule.bounce_type.as_str())
    .bind(rule.reason.as_str())
    .bind(rule.category.as_str())
    .bind(rule.priority)
    .bind(&rule.domain)
    .bind(origin)
    .bind(&rule.source)
    .execute(&mut *conn)
    .await
    .ctx("inserting a rule")?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::RuleExists(rule.id.clone()));
    }
    Ok(())
}

impl Store {
    /// Every rule, enabled or not, in evaluation order. Rules that would not
    /// compile are skipped with a warning.
    pub async fn list_rules(&self) -> Result<Vec<StoredRule>> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM qualification_rules ORDER BY priority, id"
        ))
        .fetch_all(&self.pool)
        .await
        .ctx("reading rules")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            match stored_rule_from_row(r) {
                Ok(rule) => out.push(rule),
                Err(StoreError::InvalidRule { id, error }) => {
                    tracing::warn!(rule = %id, %error, "skipping an invalid rule in qualification_rules: fix or disable it");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The enabled, valid rules, for the engine.
    pub async fn load_rules(&self) -> Result<Vec<Rule>> {
        Ok(self
            .list_rules()
            .await?
            .into_iter()
            .filter(|r| r.enabled)
            .map(|r| r.rule)
            .collect())
    }

    /// Adds one rule; refuses an invalid pattern and an existing id.
    pub async fn insert_rule(&self, rule: &Rule) -> Result<()> {
        let mut conn = self.pool.acquire().await.ctx("acquiring a connection")?;
        insert_rule_in(&mut conn, rule, "manual").await
    }

    pub async fn disable_rule(&self, id: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE qualification_rules SET enabled = false, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .ctx("disabling a rule")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "rule",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Upserts rules by id in one statement, after checking them all: a file
    /// with one bad rule changes nothing. An operator's `enabled` choice and
    /// the hit counts survive a re-import.
    pub async fn import_rules(&self, rules: &[Rule]) -> Result<RuleImportSummary> {
        let mut seen = std::collections::HashSet::new();
        for r in rules {
            validate_rule(r)?;
            if !seen.insert(r.id.as_str()) {
                return Err(StoreError::InvalidRule {
                    id: r.id.clone(),
                    error: "duplicate rule id".into(),
                });
            }
        }
        let col = |f: fn(&Rule) -> &str| rules.iter().map(f).collect::<Vec<_>>();
        let priority: Vec<i32> = rules.iter().map(|r| r.priority).collect();
        let domain: Vec<Option<&str>> = rules.iter().map(|r| r.domain.as_deref()).collect();
        let source: Vec<Option<&str>> = rules.iter().map(|r| r.source.as_deref()).collect();
        let inserted: Vec<bool> = sqlx::query_scalar(
            "INSERT INTO qualification_rules AS q (id, pattern, bounce_type, reason, category, priority, domain, source, origin)
             SELECT t.*, 'import' FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                            $6::int4[], $7::text[], $8::text[]) AS t ORDER BY 1
             ON CONFLICT (id) DO UPDATE
                SET pattern = EXCLUDED.pattern, bounce_type = EXCLUDED.bounce_type, reason = EXCLUDED.reason,
                    category = EXCLUDED.category, priority = EXCLUDED.priority, domain = EXCLUDED.domain,
                    source = EXCLUDED.source, updated_at = now()
             RETURNING (xmax = 0)",
        )
        .bind(col(|r| r.id.as_str()))
        .bind(col(|r| r.pattern.as_str()))
        .bind(col(|r| r.bounce_type.as_str()))
        .bind(col(|r| r.reason.as_str()))
        .bind(col(|r| r.category.as_str()))
        .bind(&priority)
        .bind(&domain)
        .bind(&source)
        .fetch_all(&self.pool)
        .await
        .ctx("importing rules")?;
        let new = inserted.iter().filter(|i| **i).count() as u64;
        Ok(RuleImportSummary {
            inserted: new,
            updated: inserted.len() as u64 - new,
        })
    }

    /// The enabled rules, in the rules-file shape.
    pub async fn export_rules(&self) -> Result<Vec<Rule>> {
        self.load_rules().await
    }

    /// A receiver that yields whenever the rules change (NOTIFY from the
    /// `qualification_rules` triggers).
    pub async fn listen_rule_changes(&self) -> Result<RuleChanges> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .ctx("connecting the rules listener")?;
        listener
            .listen(RULES_CHANNEL)
            .await
            .ctx("listening for rule changes")?;
        Ok(RuleChanges { listener })
    }
}

/// Rule-change notifications. Several changes in a short time may be
/// reported once; a lost connection is reported as a change (notifications
/// may have been missed while reconnecting).
pub struct RuleChanges {
    listener: PgListener,
}

impl RuleChanges {
    /// Waits for the next change.
    pub async fn changed(&mut self) -> Result<()> {
        // `None` means the connection dropped and was re-established: some
        // notification may have been missed, so it counts as a change too.
        let _notification = self
            .listener
            .try_recv()
            .await
            .ctx("waiting for rule changes")?;
        self.drain().await;
        Ok(())
    }

    /// Swallows notifications that arrived together, so one burst of edits
    /// means one reload.
    async fn drain(&mut self) {
        while let Ok(Ok(Some(_))) =
            tokio::time::timeout(Duration::from_millis(50), self.listener.try_recv()).await
        {
        }
    }
}
