//! Capped exponential backoff for the loops that wait out an outage (a
//! database or a mailbox gone away): 0.5 s doubling to 30 s, back to the
//! start after a success.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub struct OutageBackoff {
    next: Duration,
}

impl Default for OutageBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl OutageBackoff {
    pub const MIN: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Self { next: Self::MIN }
    }

    pub fn reset(&mut self) {
        self.next = Self::MIN;
    }

    /// The delay to wait now; the next one doubles, up to [`OutageBackoff::MAX`].
    pub fn bump(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }
}

/// Sleeps unless cancelled first; true when cancelled.
pub async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped() {
        let mut r = OutageBackoff::new();
        let delays: Vec<_> = (0..10).map(|_| r.bump()).collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(30));
        r.reset();
        assert_eq!(r.bump(), Duration::from_millis(500));
    }
}
