//! Transport shared by the IMAP and POP3 clients: TCP, optionally wrapped in
//! TLS (from the start or after a STARTTLS/STLS upgrade), with a timeout on
//! every read and write.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::{MailboxError, Result, ServerEndpoint, TlsMode};

/// Builds a connector that verifies server certificates against the public
/// web PKI, or — when `ca_file` is given — against exactly the CAs in that
/// PEM file, as operators of a private CA expect. There is intentionally no
/// way to skip verification.
pub fn connector(ca_file: Option<&Path>) -> Result<TlsConnector> {
    let roots = match ca_file {
        Some(path) => load_ca_file(path)?,
        None => RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    };
    // An explicit provider avoids depending on which rustls crypto features
    // other crates in the build happen to enable.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MailboxError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn load_ca_file(path: &Path) -> Result<RootCertStore> {
    let tls_error = |what: String| MailboxError::Tls(format!("CA file {}: {what}", path.display()));
    let pem = std::fs::read(path).map_err(|e| tls_error(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| tls_error(e.to_string()))?;
        roots.add(cert).map_err(|e| tls_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(tls_error("no certificate found".into()));
    }
    Ok(roots)
}

/// A mail server connection before or after TLS is in place.
#[derive(Debug)]
pub enum MailStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

async fn with_timeout<T>(
    operation: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(after, fut)
        .await
        .unwrap_or(Err(MailboxError::Timeout { operation, after }))
}

/// Buffered, line-oriented connection used by both protocol clients.
///
/// Any I/O failure or timeout leaves the protocol state unknown (a reply may
/// be half read), so the connection then refuses further use instead of
/// misinterpreting the next bytes.
#[derive(Debug)]
pub(crate) struct MailConnection {
    reader: BufReader<MailStream>,
    timeout: Duration,
    broken: bool,
    /// The overall deadline of the command in progress, if any: when it
    /// passes, the read in progress fails with [`MailboxError::Deadline`].
    deadline: Option<Deadline>,
}

#[derive(Debug, Clone)]
struct Deadline {
    at: tokio::time::Instant,
    after: Duration,
    command: String,
}

impl MailConnection {
    /// Opens TCP and, for [`TlsMode::Implicit`], completes the TLS handshake.
    pub(crate) async fn open(endpoint: &ServerEndpoint) -> Result<Self> {
        let connect = async {
            TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|source| MailboxError::Connect {
                    endpoint: endpoint.to_string(),
                    source,
                })
        };
        let tcp = with_timeout("connect", endpoint.timeout, connect).await?;
        tcp.set_nodelay(true)?;
        let stream = match endpoint.tls {
            TlsMode::Implicit => handshake(tcp, endpoint).await?,
            TlsMode::StartTls | TlsMode::None => MailStream::Plain(tcp),
        };
        Ok(Self {
            reader: BufReader::new(stream),
            timeout: endpoint.timeout,
            broken: false,
            deadline: None,
        })
    }

    /// Upgrades after the server accepted STARTTLS/STLS. Bytes the server sent
    /// before the handshake would be spliced into the encrypted session by an
    /// attacker (the STARTTLS injection class of bugs), so they are refused.
    pub(crate) async fn start_tls(self, endpoint: &ServerEndpoint) -> Result<Self> {
        if !self.reader.buffer().is_empty() {
            return Err(MailboxError::Protocol {
                command: "STARTTLS".into(),
                response: "server sent data before the TLS handshake".into(),
            });
        }
        let tcp = match self.reader.into_inner() {
            MailStream::Plain(tcp) => tcp,
            MailStream::Tls(_) => {
                return Err(MailboxError::Tls("connection already uses TLS".into()));
            }
        };
        Ok(Self {
            reader: BufReader::new(handshake(tcp, endpoint).await?),
            ..self
        })
    }

    /// Starts the overall deadline of `command` (replacing any other).
    pub(crate) fn start_deadline(&mut self, command: &str, after: Duration) {
        self.deadline = Some(Deadline {
            at: tokio::time::Instant::now() + after,
            after,
            command: command.to_owned(),
        });
    }

    /// The command completed (or waits without a deadline, as IDLE does).
    pub(crate) fn clear_deadline(&mut self) {
        self.deadline = None;
    }

    /// Marks the protocol state as unknown; see the type documentation.
    pub(crate) fn poison(&mut self) {
        self.broken = true;
    }

    pub(crate) fn is_usable(&self) -> bool {
        !self.broken
    }

    fn check_usable(&self) -> Result<()> {
        if self.broken {
            Err(MailboxError::ConnectionBroken)
        } else {
            Ok(())
        }
    }

    fn track<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.check_usable()?;
        let stream = self.reader.get_mut();
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await?;
            Ok(())
        };
        let result = with_timeout("write", self.timeout, write).await;
        let result = match (&result, &self.deadline) {
            (Err(_), Some(d)) if tokio::time::Instant::now() >= d.at => {
                Err(MailboxError::Deadline {
                    command: d.command.clone(),
                    after: d.after,
                })
            }
            _ => result,
        };
        self.track(result)
    }

    /// Waits up to `wait` for the server to send something, without consuming
    /// it. Returns false when nothing arrived; this is how IDLE waits.
    pub(crate) async fn wait_readable(&mut self, wait: Duration) -> Result<bool> {
        self.check_usable()?;
        match tokio::time::timeout(wait, self.reader.fill_buf()).await {
            Err(_) => Ok(false),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => self.track(Err(e.into())),
        }
    }

    /// Reads one line including its terminator (LF or CRLF). Fails rather
    /// than buffer more than `max` bytes.
    pub(crate) async fn read_line(&mut self, max: usize) -> Result<Vec<u8>> {
        self.check_usable()?;
        let result = self.read_line_inner(max).await;
        self.track(result)
    }

    async fn read_line_inner(&mut self, max: usize) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let available = self.fill().await?;
            let (used, done) = match memchr::memchr(b'\n', available) {
                Some(end) => (end + 1, true),
                None => (available.len(), false),
            };
            line.extend_from_slice(&available[..used]);
            self.reader.consume(used);
            if done {
                return Ok(line);
            }
            if line.len() > max {
                return Err(MailboxError::Protocol {
                    command: "read".into(),
                    response: format!("server line longer than {max} bytes"),
                });
            }
        }
    }

    /// Reads `len` bytes (an IMAP literal) keeping only the first `limit`
    /// and hashing all: memory stays bounded whatever the server announces,
    /// and the session stays in step.
    pub(crate) async fn read_bounded(
        &mut self,
        len: u64,
        limit: usize,
    ) -> Result<super::FetchedMessage> {
        let mut message = super::BoundedMessage::new(limit, Some(len));
        let mut remaining = len;
        while remaining > 0 {
            let step = usize::try_from(remaining.min(1 << 20)).unwrap_or(1 << 20);
            self.consume_exact(step, |chunk| message.push(chunk))
                .await?;
            remaining -= step as u64;
        }
        Ok(message.finish())
    }

    async fn consume_exact(&mut self, len: usize, mut sink: impl FnMut(&[u8])) -> Result<()> {
        self.check_usable()?;
        let mut remaining = len;
        while remaining > 0 {
            let available = match self.fill().await {
                Ok(available) => available,
                Err(e) => return self.track(Err(e)),
            };
            let used = available.len().min(remaining);
            sink(&available[..used]);
            self.reader.consume(used);
            remaining -= used;
        }
        Ok(())
    }

    /// Buffered bytes, waiting (bounded by the timeout) when there are none;
    /// end of stream is an error because both protocols end sessions explicitly.
    async fn fill(&mut self) -> Result<&[u8]> {
        let after = self.timeout;
        let (wait, deadline) = match &self.deadline {
            Some(d) => {
                let left = d.at.saturating_duration_since(tokio::time::Instant::now());
                if left < after {
                    (left, Some(d.clone()))
                } else {
                    (after, None)
                }
            }
            None => (after, None),
        };
        match tokio::time::timeout(wait, self.reader.fill_buf()).await {
            Err(_) => Err(match deadline {
                Some(d) => MailboxError::Deadline {
                    command: d.command,
                    after: d.after,
                },
                None => MailboxError::Timeout {
                    operation: "read",
                    after,
                },
            }),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok([])) => Err(MailboxError::ConnectionClosed),
            Ok(Ok(available)) => Ok(available),
        }
    }
}

async fn handshake(tcp: TcpStream, endpoint: &ServerEndpoint) -> Result<MailStream> {
    let connector = connector(endpoint.ca_file.as_deref())?;
    let server_name = ServerName::try_from(endpoint.host.clone())
        .map_err(|e| MailboxError::Tls(format!("invalid server name {:?}: {e}", endpoint.host)))?;
    let connect = async {
        connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| classify_handshake_error(e, &endpoint.host))
    };
    let tls = with_timeout("TLS handshake", endpoint.timeout, connect).await?;
    Ok(MailStream::Tls(Box::new(tls)))
}

/// Separates "the server is not who it claims" from other TLS failures, since
/// the operator fixes them differently (CA file vs. network/server setup).
fn classify_handshake_error(error: io::Error, host: &str) -> MailboxError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(reason)) => MailboxError::CertificateRejected {
            host: host.to_owned(),
            reason: format!("{reason:?}"),
        },
        Some(other) => MailboxError::Tls(format!("handshake with {host} failed: {other}")),
        None => MailboxError::Tls(format!("handshake with {host} failed: {error}")),
    }
}
