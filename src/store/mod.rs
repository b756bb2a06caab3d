//! Persistence. Only services call the store, never handlers. SQLite is the embedded default
//! (one file, WAL); PostgreSQL is chosen by a `postgres://` URL. SQL is written once where the
//! engines agree and branched where they differ; migrations live side by side in
//! `migrations/sqlite` and `migrations/postgres`, same numbering, same meaning.

/// Runs the same code against whichever pool the store holds: the SQL is portable, only the
/// pool's type differs.
macro_rules! with_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($p) => $body,
            $crate::store::Db::Postgres($p) => $body,
        }
    };
}

mod audit;
mod consent;
mod jobs;
mod keys;
mod meta;
mod rights;
mod sessions;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use audit::{AuditRepo, CheckpointRow, EntryRow, Extension, HeadRow, Pruned};
pub use consent::{ConsentRepo, ConsentRow, LedgerRow};
pub use jobs::{JobCounts, JobRow, JobsRepo};
pub use keys::{DataKeyRow, Keys, Tombstone};
pub use meta::Meta;
pub use rights::{RightsRepo, RightsRow};
pub use sessions::{PendingLogin, SessionRow, Sessions};

/// What went wrong talking to the store. Never carries query parameters (they may be
/// personal data), only the engine's error kind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("store query failed: {0}")]
    Query(#[source] sqlx::Error),
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("invalid store URL: {0}")]
    Url(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                Self::Unavailable(e)
            }
            other => Self::Query(other),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The connection pool of whichever engine the URL chose.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Connection pool occupancy, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub size: u32,
    pub idle: u32,
}

/// Options for opening the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_connections: 10, acquire_timeout: Duration::from_secs(5) }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens a pool for `url`. SQLite files (and their directory) are created when missing.
    pub async fn connect(url: &SecretString, opts: &StoreOptions) -> Result<Self, StoreError> {
        let url = url.expose_secret();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let co = PgConnectOptions::from_str(url).map_err(|_| StoreError::Url("unparseable postgres URL".into()))?;
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(co)
                .await?;
            return Ok(Self { db: Db::Postgres(pool) });
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::Url("expected sqlite:// or postgres://".into()))?;
        let memory = path == ":memory:";
        if !memory {
            ensure_parent_dir(Path::new(path))?;
        }
        let co = SqliteConnectOptions::from_str(&format!("sqlite:{path}"))
            .map_err(|_| StoreError::Url("unparseable sqlite URL".into()))?
            .create_if_missing(true)
            .journal_mode(if memory { SqliteJournalMode::Memory } else { SqliteJournalMode::Wal })
            // FULL: an acknowledged consent or withdrawal must survive a power cut.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { opts.max_connections })
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(co)
            .await?;
        Ok(Self { db: Db::Sqlite(pool) })
    }

    pub fn engine(&self) -> Engine {
        match self.db {
            Db::Sqlite(_) => Engine::Sqlite,
            Db::Postgres(_) => Engine::Postgres,
        }
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Applies pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let before = self.applied_migrations().await.unwrap_or(0);
        match &self.db {
            Db::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(self.applied_migrations().await?.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> Result<usize, StoreError> {
        let sql = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
        let n: i64 = with_pool!(&self.db, p => sqlx::query_scalar(sql).fetch_one(p).await?);
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Round-trips a trivial query: the readiness check.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(&self.db, p => sqlx::query("SELECT 1").execute(p).await.map(drop)?);
        Ok(())
    }

    pub fn pool_state(&self) -> PoolState {
        let (size, idle) = with_pool!(&self.db, p => (p.size(), p.num_idle()));
        PoolState { size, idle: u32::try_from(idle).unwrap_or(u32::MAX) }
    }

    /// Closes every connection; later queries fail as unavailable.
    pub async fn close(&self) {
        with_pool!(&self.db, p => p.close().await);
    }

    pub fn meta(&self) -> Meta<'_> {
        Meta::new(self)
    }

    pub fn sessions(&self) -> Sessions<'_> {
        Sessions::new(self)
    }

    pub fn audit(&self) -> AuditRepo<'_> {
        AuditRepo::new(self)
    }

    pub fn keys(&self) -> Keys<'_> {
        Keys::new(self)
    }

    pub fn consent(&self) -> ConsentRepo<'_> {
        ConsentRepo::new(self)
    }

    pub fn jobs(&self) -> JobsRepo<'_> {
        JobsRepo::new(self)
    }

    pub fn rights(&self) -> RightsRepo<'_> {
        RightsRepo::new(self)
    }
}

fn ensure_parent_dir(file: &Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir { path: dir.to_owned(), source })
        }
        _ => Ok(()),
    }
}
