//! The PostgreSQL store: everything a qualified bounce changes lives here, and
//! this is the only module that speaks SQL. What a change means (the address
//! state machine, correlation, the retry schedule, the shape of a queued
//! text) is decided in [`crate::domain`]; the store reads and locks the
//! rows, calls it, and writes the result back.
//!
//! Queries are checked at run time (`sqlx::query` with binds) so that building
//! the crate never needs a live database. Every function that depends on the
//! time takes `now` from its caller, so tests drive the clock.
//!
//! Batch writes go through `unnest($1::type[], ...)`: one statement per table
//! per batch whatever the number of recipients, which is what makes `apply`
//! fast (see `tests/store.rs::bench_apply_20000`).

mod admin;
mod apply;
mod check;
mod deliveries;
mod intake;
mod queue;
mod rules;
mod storable;
mod sync;

pub use admin::{
    AddressEvent, AddressInfo, AddressSummary, CleanupSummary, DomainCount, ManualChange, Report,
    ReportRow,
};
pub use apply::{BounceInput, RecipientOutcome};
pub use check::ExcludedRow;
pub use deliveries::{DeliveryRecord, DeliveryRegistration, DueRetry};
pub use intake::{
    content_hash, is_connection_error, is_outage, Backoff, Checkpoint, ClaimLimits, ClaimedMessage,
    FailureSummary, IntakeCounts, IntakeInsert, IntakeRow, IntakeStatus, MailboxLease, NewIntake,
    Truncated,
};
pub use queue::{Qualification, QualificationStatus, RequalifySummary};
pub use rules::{RuleChanges, RuleImportSummary, StoredRule, RULES_CHANNEL};
pub use storable::storable;
pub use sync::{SyncFailureInput, SyncFailureResult};
// The domain values the store's results are made of.
pub use crate::domain::{AddressStatus, CorrelatedBy, NotCounted};

use crate::config::{
    mask_url_password, DatabaseSettings, QuarantineSettings, RetrySettings, Settings,
};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// The migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no database configured: set [database] url in the settings file or INMAIL__DATABASE__URL"
    )]
    NoUrl,
    #[error("invalid database url {url}: {cause}")]
    BadUrl { url: String, cause: sqlx::Error },
    #[error("PostgreSQL at {url} is unreachable: {cause}")]
    Unreachable { url: String, cause: sqlx::Error },
    #[error("the database is not migrated ({detail}): run `inmail migrate`")]
    NotMigrated { detail: String },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error while {context}: {cause}")]
    Sqlx {
        context: &'static str,
        cause: sqlx::Error,
    },
    #[error("rule {id}: {error}")]
    InvalidRule { id: String, error: String },
    #[error("rule {0} already exists")]
    RuleExists(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("invalid input: {0}")]
    Input(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Wraps a sqlx error with what the store was doing.
pub(crate) trait SqlContext<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}
impl<T> SqlContext<T> for std::result::Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|cause| StoreError::Sqlx { context, cause })
    }
}

/// A deadlock (which the lock ordering should prevent): the transaction may
/// be retried rather than the error surfaced.
pub(crate) fn is_deadlock(e: &StoreError) -> bool {
    match e {
        StoreError::Sqlx {
            cause: sqlx::Error::Database(db),
            ..
        } => db.code().as_deref() == Some("40P01"),
        _ => false,
    }
}

/// The settings the store acts on: the subset of [`Settings`] that decides
/// what a bounce changes.
#[derive(Debug, Clone, Default)]
pub struct StoreSettings {
    pub quarantine: QuarantineSettings,
    pub retry: RetrySettings,
    /// HMAC key of signed VERP tokens (see [`crate::domain::verp_token`]).
    pub verp_secret: Option<SecretString>,
    /// Count bounces that cannot be tied to a delivery log.
    pub count_uncorrelated: bool,
}

impl From<&Settings> for StoreSettings {
    fn from(s: &Settings) -> Self {
        Self {
            quarantine: s.quarantine.clone(),
            retry: s.retry.clone(),
            verp_secret: s.correlation.verp_secret.clone(),
            count_uncorrelated: s.correlation.count_uncorrelated,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    settings: StoreSettings,
}

impl Store {
    /// Connects eagerly so that an unreachable server is reported here, with
    /// the (password-masked) URL, rather than on the first query.
    pub async fn connect(db: &DatabaseSettings, settings: StoreSettings) -> Result<Self> {
        let url = db.url.as_ref().ok_or(StoreError::NoUrl)?;
        let masked = mask_url_password(url.expose_secret());
        let opts = PgConnectOptions::from_str(url.expose_secret()).map_err(|cause| {
            StoreError::BadUrl {
                url: masked.clone(),
                cause,
            }
        })?;
        // A single probe connection first: a pool reports any failure as a
        // bare "timed out", hiding "connection refused" or a bad password.
        let timeout = Duration::from_secs(db.connect_timeout_secs.max(1));
        let unreachable = |cause| StoreError::Unreachable {
            url: masked.clone(),
            cause,
        };
        let probe = tokio::time::timeout(timeout, PgConnection::connect_with(&opts))
            .await
            .map_err(|_| unreachable(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())))?
            .map_err(unreachable)?;
        probe.close().await.map_err(unreachable)?;
        let pool = PgPoolOptions::new()
            .max_connections(db.max_connections.max(1))
            .acquire_timeout(timeout)
            .connect_with(opts)
            .await
            .map_err(unreachable)?;
        Ok(Self { pool, settings })
    }

    /// For callers that already hold a pool (tests, the daemon).
    pub fn from_pool(pool: PgPool, settings: StoreSettings) -> Self {
        Self { pool, settings }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Fails with [`StoreError::NotMigrated`] unless every embedded migration
    /// has been applied successfully.
    pub async fn check_migrated(&self) -> Result<()> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .ctx("checking migrations")?;
        if !exists {
            return Err(StoreError::NotMigrated {
                detail: "no migration has been applied".into(),
            });
        }
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("checking migrations")?;
        let missing: Vec<String> = MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::NotMigrated {
                detail: format!("missing: {}", missing.join(", ")),
            })
        }
    }
}
