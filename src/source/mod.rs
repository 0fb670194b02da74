//! Mail retrieval from remote mailboxes (IMAP, POP3) over TLS.
//!
//! The protocol clients are deliberately small and hand-written: the daemon
//! needs only a handful of commands, and owning the parser lets us bound every
//! read (timeouts, line and literal sizes) instead of trusting the server.

pub mod imap;
pub mod maildir;
pub mod pop3;
pub mod remote;
pub mod tls;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// A configured mailbox of any kind, as the daemon drives it.
#[derive(Debug, Clone)]
pub enum Source {
    Maildir(maildir::MaildirSource),
    /// IMAP or POP3.
    Remote(remote::RemoteSource),
}

/// Why a [`Source::drain`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Maildir(#[from] maildir::SourceError),
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
}

impl FetchError {
    /// The database or the mail server is unreachable (retry as is).
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Maildir(e) => e.is_outage(),
            Self::Remote(e) => e.is_outage(),
        }
    }
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Self::Maildir(s) => s.name(),
            Self::Remote(s) => s.name(),
        }
    }

    /// Stores everything pending in intake, then acknowledges it (see
    /// [`maildir::MaildirSource::drain`], [`remote::RemoteSource::drain`]).
    pub async fn drain(
        &self,
        cancel: &tokio_util::sync::CancellationToken,
        on_batch: &(dyn Fn() + Send + Sync),
    ) -> Result<maildir::DrainSummary, FetchError> {
        Ok(match self {
            Self::Maildir(s) => s.drain(cancel, on_batch).await?,
            Self::Remote(s) => s.drain(cancel, on_batch).await?,
        })
    }
}

/// How the connection to the mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (imaps/993, pop3s/995).
    Implicit,
    /// Plain connection upgraded with STARTTLS (IMAP) or STLS (POP3) before login.
    StartTls,
    /// No TLS at all; only sensible on loopback or inside a trusted network.
    None,
}

impl TlsMode {
    fn as_str(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::StartTls => "starttls",
            TlsMode::None => "none",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "implicit" => Ok(TlsMode::Implicit),
            "starttls" => Ok(TlsMode::StartTls),
            "none" => Ok(TlsMode::None),
            other => Err(format!(
                "invalid TLS mode {other:?} (expected implicit, starttls or none)"
            )),
        }
    }
}

/// Where and how to reach a mail server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEndpoint {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// PEM file with the CA(s) to trust instead of the public web PKI, for
    /// servers whose certificate is issued by a private CA.
    pub ca_file: Option<PathBuf>,
    /// Upper bound for connecting and for each network read or write, so a
    /// stalled server cannot hang the daemon.
    pub timeout: Duration,
}

impl fmt::Display for ServerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (tls={})", self.host, self.port, self.tls)
    }
}

/// Errors of the mailbox protocol clients.
///
/// Credentials never appear here: authentication failures carry the user
/// name and the server's reply only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("TLS error: {0}")]
    Tls(String),
    #[error("certificate of {host} rejected: {reason}")]
    CertificateRejected { host: String, reason: String },
    #[error("{command} failed: {response}")]
    Protocol { command: String, response: String },
    #[error("login as {user:?} refused: {response}")]
    Auth { user: String, response: String },
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    #[error("connection closed by the server")]
    ConnectionClosed,
    #[error("connection unusable after an earlier error; reconnect")]
    ConnectionBroken,
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { size: u64, limit: usize },
    #[error("server does not support {0}")]
    Unsupported(&'static str),
}

pub type Result<T, E = MailboxError> = std::result::Result<T, E>;

/// Largest message the clients accept by default; bounces are small, and a
/// bound keeps a hostile or broken server from exhausting memory.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Server text for error messages: lossy UTF-8, without line ending, and
/// truncated so a chatty server cannot blow up logs.
pub(crate) fn server_text(raw: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\r', '\n']);
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_mode_round_trips() {
        for mode in [TlsMode::Implicit, TlsMode::StartTls, TlsMode::None] {
            assert_eq!(mode.to_string().parse::<TlsMode>(), Ok(mode));
        }
        assert!("tls".parse::<TlsMode>().is_err());
    }

    #[test]
    fn server_text_is_truncated() {
        let long = vec![b'x'; 500];
        assert_eq!(server_text(&long).chars().count(), 201);
        assert_eq!(server_text(b"+OK hi\r\n"), "+OK hi");
    }
}
