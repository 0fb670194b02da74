//! The one health state of the daemon's loops (a mailbox, a worker, the
//! cleanup job, the rules listener): each logs only when its state changes,
//! not once per retry.

use std::time::Duration;

pub(crate) struct Health {
    component: &'static str,
    name: String,
    /// A mailbox's kind (`maildir`, `imap`, `pop3`), for sources.
    kind: Option<&'static str>,
    up: Option<bool>,
    /// Log the first `up` too (a source says it is up; a worker does not).
    announce: bool,
}

impl Health {
    pub(crate) fn new(component: &'static str, name: &str) -> Self {
        Self {
            component,
            name: name.to_owned(),
            kind: None,
            up: None,
            announce: false,
        }
    }

    /// A mailbox: its first success is logged as well.
    pub(crate) fn source(name: &str, kind: &'static str) -> Self {
        Self {
            kind: Some(kind),
            announce: true,
            ..Self::new("source", name)
        }
    }

    pub(crate) fn is_down(&self) -> bool {
        self.up == Some(false)
    }

    pub(crate) fn up(&mut self) {
        match self.up {
            Some(true) => {}
            Some(false) => {
                tracing::info!(component = self.component, name = %self.name, kind = self.kind, state = "up", "{} {} recovered", self.component, self.name);
            }
            None if self.announce => {
                tracing::info!(component = self.component, name = %self.name, kind = self.kind, state = "up", "{} {} is up", self.component, self.name);
            }
            None => {}
        }
        self.up = Some(true);
    }

    /// `outage`: the error is an outage (worth retrying as is) rather than
    /// a refusal needing an operator, when the caller knows.
    pub(crate) fn down(
        &mut self,
        error: &dyn std::fmt::Display,
        outage: Option<bool>,
        retry_in: Duration,
    ) {
        let retry_in_ms = retry_in.as_millis() as u64;
        if self.up != Some(false) {
            tracing::error!(
                component = self.component,
                name = %self.name,
                kind = self.kind,
                state = "down",
                error = %error,
                outage,
                retry_in_ms,
                "{} {} is down; retrying with backoff",
                self.component,
                self.name
            );
            self.up = Some(false);
        } else {
            tracing::debug!(component = self.component, name = %self.name, error = %error, retry_in_ms, "still down");
        }
    }
}
