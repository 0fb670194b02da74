//! Settings: built-in defaults, then a TOML file, then `INMAIL__SECTION__KEY`
//! environment variables (last wins). [`Settings::validate`] runs at startup
//! and names the key and the bad value of every problem it finds.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use std::path::{Path, PathBuf};

mod mailbox;
pub use mailbox::{
    ImapAfter, ImapMailbox, Mailbox, MaildirAfter, MaildirMailbox, Pop3After, Pop3Mailbox,
    ServerSettings, TlsMode,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid settings:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub analysis: AnalysisSettings,
    pub correlation: CorrelationSettings,
    pub quarantine: QuarantineSettings,
    pub retry: RetrySettings,
    pub log: LogSettings,
    pub daemon: DaemonSettings,
    pub http: HttpSettings,
    #[serde(rename = "mailbox", skip_serializing_if = "Vec::is_empty")]
    pub mailboxes: Vec<Mailbox>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/db`; kept secret because it may carry a password.
    /// Serialised (by `check-config`) with the password masked.
    #[serde(serialize_with = "serialize_masked_url")]
    pub url: Option<SecretString>,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
            connect_timeout_secs: 5,
        }
    }
}

impl DatabaseSettings {
    /// The URL with any password replaced, for logs and `check-config`.
    pub fn masked_url(&self) -> Option<String> {
        self.url
            .as_ref()
            .map(|u| mask_url_password(u.expose_secret()))
    }
}

fn serialize_masked_url<S: Serializer>(
    url: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&mask_url_password(u.expose_secret())),
        None => s.serialize_none(),
    }
}

fn serialize_masked_secret<S: Serializer>(
    secret: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_some("****"),
        None => s.serialize_none(),
    }
}

/// The database URL with every credential masked, for logs, errors and
/// `check-config`: the password of the user-info part (`user:****@host`,
/// even when the password holds a raw `@`, `:` or `/`), and the value of
/// every `password=` / `sslpassword=` parameter, in a URL query or in a
/// `key=value` connection string. A URL that does not parse is masked the
/// same way: the masking never depends on the URL being valid.
pub fn mask_url_password(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => {
            // user-info ends at the last `@`: a password may hold `@`, `/`,
            // `?` or `:` that a strict parser would reject. An `@` in the
            // query makes this mask more than needed, never less.
            match rest.rfind('@') {
                Some(at) => {
                    let (creds, host) = rest.split_at(at);
                    match creds.split_once(':') {
                        Some((user, _)) => format!("{scheme}://{user}:****{host}"),
                        None => format!("{scheme}://{creds}{host}"),
                    }
                }
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    // `password=...` / `sslpassword=...` anywhere (query or keyword form).
    let lower = out.to_ascii_lowercase();
    let mut masked = String::with_capacity(out.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(pos) = lower[from..].find("password=") {
        let start = from + pos + "password=".len();
        let end = lower[start..]
            .find(['&', ' ', '\t', ';', '#'])
            .map_or(lower.len(), |e| start + e);
        masked.push_str(&out[last..start]);
        masked.push_str("****");
        last = end;
        from = end.max(start);
    }
    if last > 0 {
        masked.push_str(&out[last..]);
        out = masked;
    }
    out
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisSettings {
    pub max_message_bytes: usize,
    pub max_part_bytes: usize,
    pub max_parts: usize,
    pub max_recipients: usize,
    /// Rules file used when the database has none (and by `qualify` without `--rules`).
    pub rules_file: Option<PathBuf>,
    /// `soft` or `ignored`: see [`crate::rules::DelayWarnings`].
    pub delay_warnings: crate::rules::DelayWarnings,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        let l = crate::analysis::Limits::default();
        Self {
            max_message_bytes: l.max_message_bytes,
            max_part_bytes: l.max_part_bytes,
            max_parts: l.max_parts,
            max_recipients: l.max_recipients,
            rules_file: None,
            delay_warnings: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorrelationSettings {
    pub tracking_header: String,
    pub verp_pattern: String,
    /// HMAC key for signed VERP tokens; without it only tracking ids and Message-IDs correlate.
    #[serde(serialize_with = "serialize_masked_secret")]
    pub verp_secret: Option<SecretString>,
    /// Count bounces that cannot be tied to a delivery (for platforms that cannot track).
    pub count_uncorrelated: bool,
}

impl Default for CorrelationSettings {
    fn default() -> Self {
        Self {
            tracking_header: "X-Inmail-Id".into(),
            verp_pattern: crate::analysis::DEFAULT_VERP_PATTERN.into(),
            verp_secret: None,
            count_uncorrelated: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuarantineSettings {
    /// Soft errors that put an address in quarantine.
    pub soft_error_threshold: i32,
    /// Minimum time between two counted soft errors.
    pub soft_error_min_interval_hours: i64,
    /// Quiet time after which the error counter starts again from zero.
    pub reset_after_days: i64,
    /// Mailbox-full quarantines are lifted after this long.
    pub mailbox_full_release_days: i64,
    /// bounce_events and raw intake older than this are purged by cleanup.
    pub retention_days: i64,
}

impl Default for QuarantineSettings {
    fn default() -> Self {
        Self {
            soft_error_threshold: 5,
            soft_error_min_interval_hours: 24,
            reset_after_days: 10,
            mailbox_full_release_days: 30,
            retention_days: 180,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// First retries, this many, `quick_interval_minutes` apart ...
    pub quick_retries: i32,
    pub quick_interval_minutes: i64,
    /// ... then one a day, this many times.
    pub daily_retries: i32,
    /// Default validity of a delivery when the delivery row gives none.
    pub validity_days: i64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            quick_retries: 5,
            quick_interval_minutes: 60,
            daily_retries: 4,
            validity_days: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or
    /// `EnvFilter` directives naming targets, e.g. `info,inmail=debug,sqlx=warn`.
    /// Checked by [`check_log_level`]: an unknown level is an error, not a
    /// filter that silences everything.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonSettings {
    /// Concurrent analysis/apply workers.
    pub workers: usize,
    /// Messages a worker claims and applies in one transaction.
    pub batch_size: usize,
    /// Upper bound of the messages in one maildir batch (with `batch_size`);
    /// the reader stays one batch ahead of the store, so memory is bounded
    /// by `batch_bytes` rather than by a count.
    pub queue_capacity: usize,
    /// Deadline for finishing work in hand after SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// Attempts before a message is parked as failed.
    pub max_attempts: i32,
    /// How often the cleanup job runs.
    pub cleanup_interval_secs: u64,
    /// Safety-net rescan / poll interval for sources.
    pub poll_interval_secs: u64,
    /// Size bound of a fetched message, the same for every source (maildir,
    /// IMAP, POP3): a larger message is stored truncated to its first
    /// `max_message_bytes` bytes, marked with its full size (see
    /// docs/daemon.md, "Big messages"), and acknowledged like any other.
    pub max_message_bytes: usize,
    /// Byte budget of one intake batch (fetching and storing) and of one
    /// worker claim: batches are cut at `batch_size` messages or this many
    /// bytes, whichever comes first (a single bigger message is a batch of
    /// its own), so no statement nears PostgreSQL's 1 GB message limit and
    /// memory stays bounded whatever the mailbox holds.
    pub batch_bytes: usize,
    /// Deadline for fetching one message (IMAP FETCH, POP3 RETR), however
    /// the server dribbles it; on expiry the stall is logged, the message
    /// is set aside (retried on the slow schedule) and the session reopened.
    pub message_timeout_secs: u64,
    /// Deadline for any other mailbox command (whole reply, not per read).
    pub command_timeout_secs: u64,
    /// A message set aside (unreadable file, stalled fetch) is tried again
    /// after this long.
    pub skipped_retry_secs: u64,
}

/// Default `daemon.max_message_bytes`: twice what the analysis reads
/// (`analysis.max_message_bytes`, 2 MiB), so a stored message always holds
/// all the analysis can use; each message in flight costs a few times its
/// size (the batch stored, the one read ahead, the statement's copies), and
/// 4 MiB keeps a mailbox of 10 MB bounces under the 150 MiB target (README).
pub const DEFAULT_FETCH_BYTES: usize = 4 * 1024 * 1024;

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            batch_size: 200,
            queue_capacity: 1000,
            shutdown_timeout_secs: 30,
            max_attempts: 5,
            cleanup_interval_secs: 3600,
            poll_interval_secs: 60,
            max_message_bytes: DEFAULT_FETCH_BYTES,
            batch_bytes: 4 * 1024 * 1024,
            message_timeout_secs: 300,
            command_timeout_secs: 120,
            skipped_retry_secs: 900,
        }
    }
}

impl Settings {
    /// Defaults, then `file` (if any), then `INMAIL__…` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut b = config::Config::builder();
        if let Some(f) = file {
            b = b.add_source(
                config::File::from(f)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        b = b.add_source(
            config::Environment::with_prefix("INMAIL")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let s: Settings = b.build()?.try_deserialize()?;
        Ok(s)
    }

    /// Every problem at once, each naming its key and value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut e = Vec::new();
        let q = &self.quarantine;
        let positive = |e: &mut Vec<String>, key: &str, v: i64| {
            if v <= 0 {
                e.push(format!("{key} = {v}: must be greater than 0"));
            }
        };
        positive(
            &mut e,
            "quarantine.soft_error_threshold",
            q.soft_error_threshold.into(),
        );
        positive(&mut e, "quarantine.reset_after_days", q.reset_after_days);
        positive(
            &mut e,
            "quarantine.mailbox_full_release_days",
            q.mailbox_full_release_days,
        );
        positive(&mut e, "quarantine.retention_days", q.retention_days);
        if q.soft_error_min_interval_hours < 0 {
            e.push(format!(
                "quarantine.soft_error_min_interval_hours = {}: must not be negative",
                q.soft_error_min_interval_hours
            ));
        }
        positive(&mut e, "daemon.workers", self.daemon.workers as i64);
        positive(&mut e, "daemon.batch_size", self.daemon.batch_size as i64);
        positive(
            &mut e,
            "daemon.queue_capacity",
            self.daemon.queue_capacity as i64,
        );
        positive(
            &mut e,
            "daemon.max_attempts",
            self.daemon.max_attempts.into(),
        );
        positive(
            &mut e,
            "analysis.max_message_bytes",
            self.analysis.max_message_bytes as i64,
        );
        let d = &self.daemon;
        positive(
            &mut e,
            "daemon.max_message_bytes",
            d.max_message_bytes as i64,
        );
        positive(&mut e, "daemon.batch_bytes", d.batch_bytes as i64);
        positive(
            &mut e,
            "daemon.message_timeout_secs",
            d.message_timeout_secs as i64,
        );
        positive(
            &mut e,
            "daemon.command_timeout_secs",
            d.command_timeout_secs as i64,
        );
        positive(
            &mut e,
            "daemon.skipped_retry_secs",
            d.skipped_retry_secs as i64,
        );
        if d.max_message_bytes > 512 * 1024 * 1024 {
            e.push(format!(
                "daemon.max_message_bytes = {}: at most 536870912 (512 MiB; PostgreSQL refuses \
                 a message over 1 GB)",
                d.max_message_bytes
            ));
        }
        if let Err(err) = check_log_level(&self.log.level) {
            e.push(format!("log.level = {:?}: {err}", self.log.level));
        }
        if let Err(err) = regex::Regex::new(&self.correlation.verp_pattern) {
            e.push(format!(
                "correlation.verp_pattern = {:?}: {err}",
                self.correlation.verp_pattern
            ));
        }
        if self.correlation.tracking_header.trim().is_empty() {
            e.push("correlation.tracking_header = \"\": must name a header".into());
        }
        if let Some(url) = &self.database.url {
            let u = url.expose_secret();
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                e.push(format!(
                    "database.url = {:?}: must start with postgres://",
                    mask_url_password(u)
                ));
            } else if let Err(err) = check_database_url(u) {
                e.push(format!("database.url = {:?}: {err}", mask_url_password(u)));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.mailboxes.iter().enumerate() {
            let name = m.name();
            let key = |k: &str| format!("mailbox[{i}] ({name}).{k}");
            if name.trim().is_empty() {
                e.push(format!(
                    "mailbox[{i}].name = \"\": every mailbox needs a name"
                ));
            }
            if !names.insert(name) {
                e.push(format!(
                    "{} = {name:?}: duplicate mailbox name",
                    key("name")
                ));
            }
            // What the text alone decides was decided when the table was
            // read (see `mailbox.rs`); what is left needs the machine.
            match m {
                Mailbox::Maildir(m) => {
                    let p = &m.path;
                    if !p.is_dir() {
                        e.push(format!("{} = {:?}: not a directory", key("path"), p));
                    } else {
                        let missing: Vec<&str> = ["cur", "new", "tmp"]
                            .into_iter()
                            .filter(|sub| !p.join(sub).is_dir())
                            .collect();
                        if !missing.is_empty() {
                            e.push(format!(
                                "{} = {:?}: not a maildir (no {}/)",
                                key("path"),
                                p,
                                missing.join("/, ")
                            ));
                        }
                    }
                }
                Mailbox::Imap(ImapMailbox { server, .. })
                | Mailbox::Pop3(Pop3Mailbox { server, .. }) => {
                    match (&server.password_env, &server.password_file) {
                        (Some(v), _) if std::env::var_os(v).is_none() => e.push(format!(
                            "{} = {v:?}: environment variable is not set",
                            key("password_env")
                        )),
                        (None, Some(p)) if !p.is_file() => e.push(format!(
                            "{} = {:?}: file does not exist",
                            key("password_file"),
                            p
                        )),
                        _ => {}
                    }
                    if let Some(ca) = &server.ca_file {
                        if !ca.is_file() {
                            e.push(format!(
                                "{} = {:?}: file does not exist",
                                key("ca_file"),
                                ca
                            ));
                        }
                    }
                }
            }
        }
        self.http.validate(&mut e);
        if e.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(e))
        }
    }
}

/// The level names `[log] level` accepts on their own.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `[log] level` value: comma-separated directives, each a level
/// name or `target=level` (`target[span]=level` too). A bare word that is
/// not a level (`warning`, `inf`) would be read by `EnvFilter` as a target
/// name and silence every other line, errors included: refused here.
pub fn check_log_level(level: &str) -> Result<(), String> {
    let expected = "expected trace, debug, info, warn, error or off, or directives such as \
                    \"info,inmail=debug\"";
    if level.trim().is_empty() {
        return Err(format!("empty; {expected}"));
    }
    for directive in level.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let lvl = match directive.rsplit_once('=') {
            Some((target, lvl)) if !target.trim().is_empty() => lvl.trim(),
            Some(_) => return Err(format!("{directive:?} has no target; {expected}")),
            None if directive.contains('[') => continue,
            None => directive,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(lvl)) {
            return Err(format!("unknown level {lvl:?}; {expected}"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(drop)
        .map_err(|err| format!("{err}; {expected}"))
}

/// What `run` would refuse in a `postgres://` URL: it must parse (port in
/// range, valid escapes). The error never holds the URL itself.
fn check_database_url(url: &str) -> Result<(), String> {
    use std::str::FromStr;
    sqlx::postgres::PgConnectOptions::from_str(url)
        .map(drop)
        .map_err(|err| {
            // sqlx may echo the URL; keep only what is safe to print.
            let text = err.to_string();
            if text.contains(url) || text.to_ascii_lowercase().contains("password") {
                "not a valid PostgreSQL URL".to_owned()
            } else {
                format!("not a valid PostgreSQL URL: {text}")
            }
        })
}

/// `[http]`: the HTTP API (`inmail serve`, and `inmail run` when `listen` is set).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// `host:port` to listen on; unset: no HTTP server.
    pub listen: Option<String>,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// A request taking longer is answered 503 (timeout).
    pub request_timeout_secs: u64,
    /// Requests handled at once; more wait their turn.
    pub max_concurrent_requests: usize,
    /// The bearer tokens allowed on `/v1`.
    #[serde(rename = "token", skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenSettings>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: None,
            max_body_bytes: 8 * 1024 * 1024,
            request_timeout_secs: 30,
            max_concurrent_requests: 256,
            tokens: Vec::new(),
        }
    }
}

/// What a token may do: `read` (lookups, check, lists) or `write` (also changes).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    Read,
    Write,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// One `[[http.token]]` table; the secret comes from `token_env` or `token_file`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Logged as the actor of each request, never the secret.
    pub name: String,
    pub scope: TokenScope,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// File holding the token (first line).
    pub token_file: Option<PathBuf>,
}

/// A token with its secret read.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub scope: TokenScope,
    pub secret: SecretString,
}

/// Tokens shorter than this are refused: guessable.
pub const MIN_TOKEN_LEN: usize = 16;

impl TokenSettings {
    /// The secret from `token_env` or `token_file`, trimmed.
    pub fn read_secret(&self) -> Result<SecretString, String> {
        let raw = match (&self.token_env, &self.token_file) {
            (Some(v), None) => std::env::var(v)
                .map_err(|_| format!("token_env = {v:?}: environment variable is not set"))?,
            (None, Some(p)) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("token_file = {p:?}: cannot read it: {e}"))?;
                text.lines().next().unwrap_or_default().to_owned()
            }
            (None, None) => return Err("token_env: set token_env or token_file".into()),
            (Some(_), Some(_)) => {
                return Err("token_env: set token_env or token_file, not both".into())
            }
        };
        let secret = raw.trim();
        if secret.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "{}: the token must be at least {MIN_TOKEN_LEN} characters long",
                if self.token_env.is_some() {
                    "token_env"
                } else {
                    "token_file"
                }
            ));
        }
        Ok(SecretString::from(secret.to_owned()))
    }
}

impl HttpSettings {
    /// The address to listen on, when the server is wanted.
    pub fn listen_addr(&self) -> Option<Result<std::net::SocketAddr, String>> {
        self.listen.as_deref().map(|l| {
            use std::net::ToSocketAddrs;
            l.to_socket_addrs()
                .map_err(|e| format!("http.listen = {l:?}: {e}"))?
                .next()
                .ok_or_else(|| format!("http.listen = {l:?}: resolves to no address"))
        })
    }

    /// Every token with its secret (validated by [`Settings::validate`]).
    pub fn api_tokens(&self) -> Result<Vec<ApiToken>, ConfigError> {
        let mut out = Vec::with_capacity(self.tokens.len());
        let mut e = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            match t.read_secret() {
                Ok(secret) => out.push(ApiToken {
                    name: t.name.clone(),
                    scope: t.scope,
                    secret,
                }),
                Err(m) => e.push(format!("http.token[{i}] ({}).{m}", t.name)),
            }
        }
        if e.is_empty() {
            Ok(out)
        } else {
            Err(ConfigError::Invalid(e))
        }
    }

    fn validate(&self, e: &mut Vec<String>) {
        if let Some(Err(m)) = self.listen_addr() {
            e.push(m);
        }
        if self.max_body_bytes == 0 {
            e.push("http.max_body_bytes = 0: must be greater than 0".into());
        }
        if self.request_timeout_secs == 0 {
            e.push("http.request_timeout_secs = 0: must be greater than 0".into());
        }
        if self.max_concurrent_requests == 0 {
            e.push("http.max_concurrent_requests = 0: must be greater than 0".into());
        }
        let mut names = std::collections::HashSet::new();
        let mut secrets = std::collections::HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if t.name.trim().is_empty() {
                e.push(format!(
                    "http.token[{i}].name = \"\": every token needs a name"
                ));
            } else if !names.insert(t.name.as_str()) {
                e.push(format!(
                    "http.token[{i}].name = {:?}: duplicate token name",
                    t.name
                ));
            }
            match t.read_secret() {
                Ok(s) => {
                    if !secrets.insert(s.expose_secret().to_owned()) {
                        e.push(format!(
                            "http.token[{i}] ({}): the same secret as another token",
                            t.name
                        ));
                    }
                }
                Err(m) => e.push(format!("http.token[{i}] ({}).{m}", t.name)),
            }
        }
    }
}
