//! The rules file: TOML `[[rule]]` tables with exactly the fields of [`Rule`].

use super::{Rule, RulesError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<Rule>,
}

/// Reads and checks a rules file: every pattern compiles (case-insensitive,
/// as the engine matches) and ids are unique.
pub fn load_file(path: &Path) -> Result<Vec<Rule>, RulesError> {
    let file_error = |message: String| RulesError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let parsed: RulesFile = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    let mut ids = HashSet::new();
    for r in &parsed.rule {
        if !ids.insert(r.id.as_str()) {
            return Err(RulesError::Duplicate(r.id.clone()));
        }
        regex::RegexBuilder::new(&r.pattern)
            .case_insensitive(true)
            .build()
            .map_err(|source| RulesError::BadPattern {
                id: r.id.clone(),
                source,
            })?;
    }
    Ok(parsed.rule)
}

/// Writes rules in the file format (for `inmail rules export`).
pub fn to_toml(rules: &[Rule]) -> Result<String, RulesError> {
    toml::to_string(&RulesFile {
        rule: rules.to_vec(),
    })
    .map_err(|e| RulesError::File {
        path: "-".into(),
        message: e.to_string(),
    })
}
