//! Operations: what the front ends (`cli/`, `http/`) do, written once.
//!
//! Each operation takes the [`Store`](crate::store::Store) (and the rule set
//! or settings it needs), validates its typed input, runs its unit of work in
//! one transaction and returns typed results. The front ends only parse
//! arguments or requests and print or serialise what comes back; neither
//! holds SQL or business logic of its own.

pub mod addresses;
pub mod cleanup;
pub mod deliveries;
pub mod failures;
pub mod ingest;
pub mod qualifications;
pub mod report;
pub mod retries;
pub mod rules;
pub mod status;

use crate::rules::RulesError;
use crate::store::{is_outage, StoreError};

/// Why an operation refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The input is wrong; `index` is the position of the faulty item in a
    /// batch and `field` its faulty field, when one item is at fault.
    #[error("{message}")]
    Invalid {
        index: Option<usize>,
        field: Option<&'static str>,
        message: String,
    },
    /// The thing asked about does not exist.
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A deliveries CSV is malformed.
    #[error(transparent)]
    Csv(#[from] deliveries::CsvError),
    /// The rules do not compile.
    #[error(transparent)]
    Rules(#[from] RulesError),
}

impl OpsError {
    /// The database is unreachable: the caller may retry later.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Store(e) if is_outage(e))
    }
}
