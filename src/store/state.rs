//! The address state machine and the retry schedule, as pure functions over
//! rows already read (and locked) by the caller: the SQL around them stays
//! dumb and the rules are unit-testable without a database.

use super::apply::NotCounted;
use crate::config::{QuarantineSettings, RetrySettings};
use crate::model::{BounceType, Category, Reason};
use crate::rules::Verdict;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AddressStatus {
    Valid,
    Erroneous,
    Quarantined,
    Denylisted,
    Allowlisted,
}

impl AddressStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Erroneous => "erroneous",
            Self::Quarantined => "quarantined",
            Self::Denylisted => "denylisted",
            Self::Allowlisted => "allowlisted",
        }
    }
}

impl FromStr for AddressStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "valid" => Self::Valid,
            "erroneous" => Self::Erroneous,
            "quarantined" => Self::Quarantined,
            "denylisted" => Self::Denylisted,
            "allowlisted" => Self::Allowlisted,
            other => return Err(format!("unknown address status {other:?}")),
        })
    }
}

impl fmt::Display for AddressStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mutable part of an `addresses` row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AddressRow {
    pub status: AddressStatus,
    pub error_count: i32,
    pub first_error_at: Option<DateTime<Utc>>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_significant_error_at: Option<DateTime<Utc>>,
    pub last_type: Option<String>,
    pub last_reason: Option<String>,
    pub last_category: Option<String>,
    pub last_text: Option<String>,
    pub quarantined_at: Option<DateTime<Utc>>,
    pub release_at: Option<DateTime<Utc>>,
}

impl AddressRow {
    /// An address nothing has happened to yet.
    pub fn fresh() -> Self {
        Self {
            status: AddressStatus::Valid,
            error_count: 0,
            first_error_at: None,
            last_error_at: None,
            last_significant_error_at: None,
            last_type: None,
            last_reason: None,
            last_category: None,
            last_text: None,
            quarantined_at: None,
            release_at: None,
        }
    }
}

/// One recipient's failure as the state machine sees it.
pub(crate) struct Failure<'a> {
    pub verdict: &'a Verdict,
    pub text: Option<&'a str>,
    pub correlated: bool,
}

/// Whether a failure may touch an address row at all; rows of failures that
/// may not are never locked nor written.
pub(crate) fn may_change_address(f: &Failure<'_>, count_uncorrelated: bool) -> bool {
    is_failure(f.verdict) && (f.correlated || count_uncorrelated)
}

fn is_failure(v: &Verdict) -> bool {
    v.category == Category::SpamComplaint
        || matches!(v.bounce_type, BounceType::Hard | BounceType::Soft)
}

/// Applies one failure to `row`. `Ok(())` when it counted against the
/// address; otherwise why not (the row may still record the error text).
pub(crate) fn apply_failure(
    row: &mut AddressRow,
    f: &Failure<'_>,
    now: DateTime<Utc>,
    q: &QuarantineSettings,
    count_uncorrelated: bool,
) -> Result<(), NotCounted> {
    let v = f.verdict;
    if !is_failure(v) {
        return Err(NotCounted::NotAFailure);
    }
    if !f.correlated && !count_uncorrelated {
        return Err(NotCounted::Uncorrelated);
    }
    if v.category.sender_side() {
        return Err(NotCounted::SenderSide);
    }
    match row.status {
        AddressStatus::Allowlisted => return Err(NotCounted::Allowlisted),
        AddressStatus::Denylisted => {
            record_error(row, f, now);
            return Err(NotCounted::Denylisted);
        }
        _ => {}
    }
    if v.category == Category::SpamComplaint {
        record_error(row, f, now);
        row.status = AddressStatus::Denylisted;
        row.quarantined_at = Some(now);
        row.release_at = None;
        return Ok(());
    }
    expire_counter(row, now, q);
    record_error(row, f, now);
    match v.bounce_type {
        BounceType::Hard => {
            count(row, now);
            quarantine(row, v.reason, now, q);
            Ok(())
        }
        _ if row.status == AddressStatus::Quarantined => Err(NotCounted::AlreadyQuarantined),
        _ => {
            let min_interval = Duration::hours(q.soft_error_min_interval_hours);
            if row
                .last_significant_error_at
                .is_some_and(|last| now - last < min_interval)
            {
                return Err(NotCounted::WithinInterval);
            }
            count(row, now);
            if row.error_count >= q.soft_error_threshold {
                quarantine(row, v.reason, now, q);
            } else {
                row.status = AddressStatus::Erroneous;
            }
            Ok(())
        }
    }
}

/// A counter whose last counted error is older than the reset period starts
/// again from zero; `cleanup` does the same in bulk for quiet addresses.
pub(crate) fn expire_counter(row: &mut AddressRow, now: DateTime<Utc>, q: &QuarantineSettings) {
    let quiet = row
        .last_significant_error_at
        .is_some_and(|last| now - last > Duration::days(q.reset_after_days));
    if quiet
        && row.error_count > 0
        && matches!(row.status, AddressStatus::Valid | AddressStatus::Erroneous)
    {
        row.error_count = 0;
        row.status = AddressStatus::Valid;
    }
}

fn record_error(row: &mut AddressRow, f: &Failure<'_>, now: DateTime<Utc>) {
    row.first_error_at.get_or_insert(now);
    row.last_error_at = Some(now);
    row.last_type = Some(f.verdict.bounce_type.as_str().into());
    row.last_reason = Some(f.verdict.reason.as_str().into());
    row.last_category = Some(f.verdict.category.as_str().into());
    row.last_text = f.text.map(str::to_owned);
}

fn count(row: &mut AddressRow, now: DateTime<Utc>) {
    row.error_count = row.error_count.saturating_add(1);
    row.last_significant_error_at = Some(now);
}

fn quarantine(row: &mut AddressRow, reason: Reason, now: DateTime<Utc>, q: &QuarantineSettings) {
    if row.status != AddressStatus::Quarantined || row.quarantined_at.is_none() {
        row.quarantined_at = Some(now);
    }
    row.status = AddressStatus::Quarantined;
    // Only a full mailbox is expected to heal by itself.
    row.release_at =
        (reason == Reason::MailboxFull).then(|| now + Duration::days(q.mailbox_full_release_days));
}

/// The retry policy of one delivery: the [retry] settings with the
/// delivery's own overrides applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub validity: Duration,
    pub quick_retries: i32,
    pub quick_interval: Duration,
    pub daily_retries: i32,
}

impl RetryPolicy {
    pub fn new(
        r: &RetrySettings,
        validity_secs: Option<i64>,
        quick_retries: Option<i32>,
        quick_interval_secs: Option<i64>,
        daily_retries: Option<i32>,
    ) -> Self {
        Self {
            validity: validity_secs.map_or(Duration::days(r.validity_days), Duration::seconds),
            quick_retries: quick_retries.unwrap_or(r.quick_retries),
            quick_interval: quick_interval_secs.map_or(
                Duration::minutes(r.quick_interval_minutes),
                Duration::seconds,
            ),
            daily_retries: daily_retries.unwrap_or(r.daily_retries),
        }
    }

    /// When the `retries_done + 1`-th retry of a delivery sent at `sent_at`
    /// is due, or `None` when the schedule is exhausted or the delivery's
    /// validity would be over by then.
    pub fn next_retry(
        &self,
        retries_done: i32,
        sent_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let expires = sent_at + self.validity;
        let wait = if retries_done < self.quick_retries {
            self.quick_interval
        } else if retries_done < self.quick_retries.saturating_add(self.daily_retries) {
            Duration::days(1)
        } else {
            return None;
        };
        Some(now + wait).filter(|at| *at <= expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid timestamp") + Duration::hours(h)
    }

    #[test]
    fn retry_schedule_quick_then_daily_then_stops() {
        let p = RetryPolicy::new(&RetrySettings::default(), None, None, None, None);
        let sent = at(0);
        assert_eq!(p.next_retry(0, sent, at(1)), Some(at(2)));
        assert_eq!(p.next_retry(4, sent, at(5)), Some(at(6)));
        assert_eq!(p.next_retry(5, sent, at(6)), Some(at(30)));
        assert_eq!(p.next_retry(9, sent, at(90)), None);
        // past the validity (5 days by default)
        assert_eq!(p.next_retry(6, sent, at(24 * 5)), None);
    }
}
