//! The bounce report.

use super::OpsError;
use crate::store::{Report, Store};
use chrono::{DateTime, Duration, Utc};

/// `7d`, `12h`, `30m`, `2w`, `90s` (a bare number is hours).
pub fn parse_period(s: &str) -> Result<Duration, OpsError> {
    let bad = |message: String| OpsError::Invalid {
        index: None,
        field: Some("since"),
        message,
    };
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| {
        bad(format!(
            "{s:?}: expected a number followed by s, m, h, d or w"
        ))
    })?;
    let d = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" | "" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        other => {
            return Err(bad(format!(
                "{s:?}: unknown unit {other:?} (use s, m, h, d or w)"
            )))
        }
    };
    d.ok_or_else(|| bad(format!("{s:?}: period too long")))
}

/// What `inmail report --json` prints: the bounces of the `since` period
/// (see [`parse_period`]) up to `now`.
pub async fn report(store: &Store, since: &str, now: DateTime<Utc>) -> Result<Report, OpsError> {
    let period = parse_period(since)?;
    let from = now
        .checked_sub_signed(period)
        .ok_or_else(|| OpsError::Invalid {
            index: None,
            field: Some("since"),
            message: format!("{since:?}: period too long"),
        })?;
    Ok(store.report(from, now).await?)
}
