//! The address state machine, as pure functions over rows already read (and
//! locked) by the store: the SQL around them stays dumb and the rules are
//! unit-testable without a database.

use crate::config::QuarantineSettings;
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

impl AddressStatus {
    /// An address the sender must not mail now: never retried, and refused
    /// by the send-time check.
    pub fn excluded(self) -> bool {
        matches!(self, Self::Quarantined | Self::Denylisted)
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

/// Why a recipient's failure did not count against its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotCounted {
    /// The message was processed before.
    Duplicate,
    /// Ignored (auto-reply, delay) or no failure at all.
    NotAFailure,
    /// Not tied to any delivery to this address (possibly forged).
    Uncorrelated,
    /// The sending side is at fault; counted per domain instead.
    SenderSide,
    Allowlisted,
    Denylisted,
    AlreadyQuarantined,
    /// A soft error within the minimum interval after the last counted one.
    WithinInterval,
}

impl NotCounted {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::NotAFailure => "not_a_failure",
            Self::Uncorrelated => "uncorrelated",
            Self::SenderSide => "sender_side",
            Self::Allowlisted => "allowlisted",
            Self::Denylisted => "denylisted",
            Self::AlreadyQuarantined => "already_quarantined",
            Self::WithinInterval => "within_interval",
        }
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

/// Whether an operator may set `status` by hand: `erroneous` is only ever
/// reached by counting failures.
pub(crate) fn settable_by_hand(status: AddressStatus) -> Result<(), String> {
    if status == AddressStatus::Erroneous {
        return Err(
            "cannot set status erroneous by hand: use valid, quarantined, denylisted or allowlisted"
                .into(),
        );
    }
    Ok(())
}

/// Sets a status by hand (one [`settable_by_hand`]): `valid` lifts any
/// quarantine or list status with a zero counter; `quarantined` and
/// `denylisted` start now with no automatic release; `allowlisted` stops
/// every failure from counting. `reason` becomes the last reason.
pub(crate) fn set_by_hand(
    row: &mut AddressRow,
    status: AddressStatus,
    reason: Option<Reason>,
    now: DateTime<Utc>,
) {
    row.status = status;
    row.release_at = None;
    match status {
        AddressStatus::Valid => {
            row.error_count = 0;
            row.quarantined_at = None;
        }
        AddressStatus::Allowlisted => row.quarantined_at = None,
        _ => row.quarantined_at = Some(now),
    }
    if let Some(reason) = reason {
        row.last_reason = Some(reason.as_str().to_owned());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid timestamp") + Duration::hours(h)
    }

    #[test]
    fn erroneous_cannot_be_set_by_hand_and_valid_clears_the_counter() {
        assert!(settable_by_hand(AddressStatus::Erroneous).is_err());
        let mut row = AddressRow::fresh();
        set_by_hand(
            &mut row,
            AddressStatus::Quarantined,
            Some(Reason::Refused),
            at(0),
        );
        assert_eq!(row.status, AddressStatus::Quarantined);
        assert_eq!(row.quarantined_at, Some(at(0)));
        assert_eq!(row.last_reason.as_deref(), Some("refused"));
        row.error_count = 3;
        set_by_hand(&mut row, AddressStatus::Valid, None, at(1));
        assert_eq!((row.status, row.error_count), (AddressStatus::Valid, 0));
        assert_eq!(row.quarantined_at, None);
        assert!(AddressStatus::Denylisted.excluded() && !AddressStatus::Allowlisted.excluded());
    }
}
