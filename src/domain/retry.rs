//! The retry schedule of a delivery whose recipient failed: quick retries,
//! then daily ones, within the delivery's validity; never for an address
//! that must not be mailed, never for a hard failure.

use crate::config::RetrySettings;
use crate::model::{BounceType, Category};
use crate::rules::Verdict;
use chrono::{DateTime, Duration, Utc};

/// The retry policy of one delivery: the [retry] settings with the
/// delivery's own overrides applied.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
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

/// What a failure does to its delivery log's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryDecision {
    /// Retries scheduled so far, the new one included.
    pub retry_count: i32,
    /// When the next attempt is due, if one is.
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// Whether a failure marks its delivery log failed at all: hard and soft
/// failures do, a spam complaint or an ignored message does not.
pub fn fails_delivery(v: &Verdict) -> bool {
    matches!(v.bounce_type, BounceType::Hard | BounceType::Soft)
        && v.category != Category::SpamComplaint
}

/// The schedule after a failure of a delivery (see [`fails_delivery`]) that
/// has had `retries_done` retries: a soft failure of an address that may
/// still be mailed (`excluded` false) schedules the next retry while the
/// schedule and the validity allow.
pub fn after_failure(
    policy: &RetryPolicy,
    v: &Verdict,
    retries_done: i32,
    sent_at: DateTime<Utc>,
    excluded: bool,
    now: DateTime<Utc>,
) -> RetryDecision {
    let next = (v.bounce_type == BounceType::Soft && !excluded)
        .then(|| policy.next_retry(retries_done, sent_at, now))
        .flatten();
    RetryDecision {
        retry_count: if next.is_some() {
            retries_done + 1
        } else {
            retries_done
        },
        next_retry_at: next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid timestamp") + Duration::hours(h)
    }

    fn verdict(t: BounceType, category: Category) -> Verdict {
        Verdict {
            bounce_type: t,
            reason: crate::model::Reason::NotDefined,
            category,
            rule: "test".into(),
            qualified: true,
            why: crate::rules::Explanation::Text(String::new()),
        }
    }

    #[test]
    fn only_a_soft_failure_of_a_mailable_address_schedules_a_retry() {
        let p = RetryPolicy::new(&RetrySettings::default(), None, None, None, None);
        let soft = verdict(BounceType::Soft, Category::MailboxFull);
        let d = after_failure(&p, &soft, 0, at(0), false, at(1));
        assert_eq!((d.retry_count, d.next_retry_at), (1, Some(at(2))));
        let d = after_failure(&p, &soft, 3, at(0), true, at(1));
        assert_eq!((d.retry_count, d.next_retry_at), (3, None));
        let hard = verdict(BounceType::Hard, Category::UserUnknown);
        assert!(fails_delivery(&hard));
        let d = after_failure(&p, &hard, 0, at(0), false, at(1));
        assert_eq!((d.retry_count, d.next_retry_at), (0, None));
        assert!(!fails_delivery(&verdict(
            BounceType::Hard,
            Category::SpamComplaint
        )));
        assert!(!fails_delivery(&verdict(
            BounceType::Ignored,
            Category::AutoReply
        )));
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
