//! Where the daemon gets the time from: the system clock in production, a
//! clock the test controls in tests. A low module of its own so that the
//! sources and the pipeline both take it without importing each other.

use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The current time, as the sources and the pipeline read it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}
