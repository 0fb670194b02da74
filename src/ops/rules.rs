//! The qualification rules stored in the database: list, add, disable,
//! test a text against them, import and export.

use super::OpsError;
use crate::analysis::RecipientReport;
use crate::model::EmailAddress;
use crate::rules::{Rule, RuleSet, Verdict};
use crate::store::{RuleImportSummary, Store, StoredRule};

/// Every stored rule with its hit count.
pub async fn list(store: &Store) -> Result<Vec<StoredRule>, OpsError> {
    Ok(store.list_rules().await?)
}

/// Adds one rule (refused if its pattern does not compile or its id is
/// taken); a domain scope is kept lowercased.
pub async fn add(store: &Store, mut rule: Rule) -> Result<Rule, OpsError> {
    rule.domain = rule.domain.map(|d| d.to_lowercase());
    store.insert_rule(&rule).await?;
    Ok(rule)
}

/// Disables a rule; it stays for its history.
pub async fn disable(store: &Store, id: &str) -> Result<(), OpsError> {
    Ok(store.disable_rule(id).await?)
}

/// What the stored rules say of a diagnostic text for a recipient `address`
/// (domain-scoped rules apply by its domain).
pub struct RuleTest {
    pub verdict: Verdict,
    /// The source of the rule that decided, when it names one.
    pub source: Option<String>,
}

pub async fn test(store: &Store, text: String, address: &str) -> Result<RuleTest, OpsError> {
    let set = RuleSet::compile(store.load_rules().await?)?;
    let address = address
        .parse::<EmailAddress>()
        .map_err(|e| OpsError::Invalid {
            index: None,
            field: Some("address"),
            message: e.to_string(),
        })?;
    let mut r = RecipientReport::new(address);
    r.diagnostic = Some(text);
    let verdict = set.qualify(&r);
    let source = set.source_of(&verdict).map(|s| s.into_owned());
    Ok(RuleTest { verdict, source })
}

/// Inserts or updates rules (a rules file's, read by the caller).
pub async fn import(store: &Store, rules: &[Rule]) -> Result<RuleImportSummary, OpsError> {
    Ok(store.import_rules(rules).await?)
}

/// The enabled rules as a TOML rules file (`[[rule]]` tables).
pub async fn export_toml(store: &Store) -> Result<String, OpsError> {
    #[derive(serde::Serialize)]
    struct RulesFile {
        rule: Vec<Rule>,
    }
    let rule = store.export_rules().await?;
    toml::to_string(&RulesFile { rule }).map_err(|e| OpsError::Invalid {
        index: None,
        field: None,
        message: e.to_string(),
    })
}
