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
mod changes;
mod consent;
mod exports;
mod incidents;
mod jobs;
mod keys;
mod meta;
mod notify;
mod retention;
mod rights;
mod rights_apps;
mod rights_subjects;
mod sessions;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use audit::{AuditRepo, CheckpointRow, EntryRow, Extension, HeadRow, Pruned};
pub use changes::{Change, ChangeFeed, Heard};
pub use consent::{ConsentRepo, ConsentRow, LedgerRow};
pub use exports::{ExportRow, ExportsRepo};
pub use incidents::{IncidentRow, IncidentsRepo};
pub use jobs::{JobCounts, JobRow, JobsRepo};
pub use keys::{DataKeyRow, Keys, Tombstone};
pub use meta::Meta;
pub use notify::{NoticeRow, NotifyRepo};
pub use retention::{
    EliminationLineRow, EliminationListRow, HoldRow, RecordKey, RetentionEventRow, RetentionRepo, RetentionRow,
    RunItemRow,
};
pub use rights::{RightsRepo, RightsRow};
pub use rights_apps::{PropagationRow, RightsAppsRepo};
pub use rights_subjects::RightsSubjectsRepo;
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
    /// A command that only reads the store found none where the configuration points.
    #[error("no Guichet store at {0}: check `store.url` (and `data_dir`), or create it with `guichet migrate`")]
    Missing(String),
    #[error("cannot take the migration lock {path}: {source}")]
    MigrationLock { path: PathBuf, source: std::io::Error },
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

/// The most values one `IN (…)` list binds: far under SQLite's (32 766) and PostgreSQL's
/// (65 535) limits on bind parameters, and a page of a retention run at the default batch.
const IN_LIST_MAX: usize = 500;

/// Rows of `sql` where `{in}` stands for an `IN` list of `values`, bound after the `lead`
/// values (`$1`… are the lead ones): the reads a batch makes for all its keys at once instead
/// of one query per key. Each value is bound once (repeats dropped), at most [`IN_LIST_MAX`]
/// per query; no query when `values` is empty.
async fn fetch_in<T>(db: &Db, sql: &str, lead: &[&str], values: &[&str]) -> Result<Vec<T>, StoreError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let mut values = values.to_vec();
    values.sort_unstable();
    values.dedup();
    let mut out = Vec::new();
    for chunk in values.chunks(IN_LIST_MAX) {
        let list: Vec<String> = (lead.len() + 1..=lead.len() + chunk.len()).map(|i| format!("${i}")).collect();
        let sql = sql.replace("{in}", &list.join(", "));
        with_pool!(db, p => {
            let mut q = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql));
            for v in lead.iter().chain(chunk) {
                q = q.bind(*v);
            }
            out.extend(q.fetch_all(p).await?);
        });
    }
    Ok(out)
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
    /// PostgreSQL: the channel changes are announced on (see `changes`).
    channel: Option<Arc<str>>,
    /// SQLite file: where it is (for the migration lock); `None` in memory.
    file: Option<PathBuf>,
}

/// Whether a missing store may be created (`serve`, `migrate`) or must already exist
/// (commands that only read it, like `audit verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    IfMissing,
    Never,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens a pool for `url`. SQLite files (and their directory) are created when missing.
    pub async fn connect(url: &SecretString, opts: &StoreOptions) -> Result<Self, StoreError> {
        Self::open(url, opts, Create::IfMissing).await
    }

    /// Opens the store at `url`, which must already exist and have been migrated at least
    /// once: a read-only command pointed at the wrong place says so, and creates nothing.
    pub async fn connect_existing(url: &SecretString, opts: &StoreOptions) -> Result<Self, StoreError> {
        let store = Self::open(url, opts, Create::Never).await?;
        let sql = match store.db {
            Db::Sqlite(_) => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            Db::Postgres(_) => {
                "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'"
            }
        };
        let found: i64 = with_pool!(&store.db, p => sqlx::query_scalar(sql).fetch_one(p).await?);
        if found == 0 {
            store.close().await;
            return Err(StoreError::Missing(store.place()));
        }
        Ok(store)
    }

    async fn open(url: &SecretString, opts: &StoreOptions, create: Create) -> Result<Self, StoreError> {
        let url = url.expose_secret();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let co = PgConnectOptions::from_str(url).map_err(|_| StoreError::Url("unparseable postgres URL".into()))?;
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(co)
                .await?;
            let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await?;
            let channel = Some(Arc::from(changes::channel_of(&schema)));
            return Ok(Self { db: Db::Postgres(pool), channel, file: None });
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::Url("expected sqlite:// or postgres://".into()))?;
        let memory = path == ":memory:";
        if !memory {
            match create {
                Create::IfMissing => ensure_parent_dir(Path::new(path))?,
                Create::Never if !Path::new(path).is_file() => return Err(StoreError::Missing(path.to_owned())),
                Create::Never => {}
            }
        }
        let co = SqliteConnectOptions::from_str(&format!("sqlite:{path}"))
            .map_err(|_| StoreError::Url("unparseable sqlite URL".into()))?
            .create_if_missing(create == Create::IfMissing)
            // Deleted rows (ended sessions, destroyed keys) are overwritten with zeros, in the
            // file and in its WAL, instead of lingering in free pages.
            .pragma("secure_delete", "ON")
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
        let file = (!memory).then(|| PathBuf::from(path));
        Ok(Self { db: Db::Sqlite(pool), channel: None, file })
    }

    /// Where the store is, for messages: the SQLite file, or the PostgreSQL schema (never
    /// the URL, which may hold a password).
    fn place(&self) -> String {
        match (&self.file, &self.channel) {
            (Some(file), _) => file.display().to_string(),
            (None, Some(channel)) => {
                format!("PostgreSQL schema {}", channel.strip_prefix("guichet_changes.").unwrap_or(channel))
            }
            (None, None) => "memory".to_owned(),
        }
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

    /// Applies pending migrations, once even when several instances start together on a
    /// fresh store: the first takes a lock, the others wait for it and then find nothing
    /// left to do. Returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let before;
        match &self.db {
            Db::Sqlite(p) => {
                let _lock = match &self.file {
                    Some(file) => Some(lock_file(file).await?),
                    None => None,
                };
                before = self.applied_migrations().await.unwrap_or(0);
                SQLITE_MIGRATIONS.run(p).await?;
            }
            Db::Postgres(p) => {
                // A session-level advisory lock on a connection that is closed afterwards,
                // so the lock cannot outlive the migration in the pool. Keyed by schema:
                // deployments in other schemas of the same database do not wait.
                let mut conn = p.acquire().await?;
                conn.close_on_drop();
                sqlx::query("SELECT pg_advisory_lock(hashtext('guichet.migrate.' || current_schema()))")
                    .execute(&mut *conn)
                    .await?;
                before = self.applied_migrations().await.unwrap_or(0);
                POSTGRES_MIGRATIONS.run(&mut *conn).await?;
                sqlx::query("SELECT pg_advisory_unlock(hashtext('guichet.migrate.' || current_schema()))")
                    .execute(&mut *conn)
                    .await?;
            }
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

    /// After a long stream of writes (a retention run), moves SQLite's write-ahead log back
    /// into the database and truncates it: under steady reads an automatic checkpoint may never
    /// find a moment to reset the log, which then grows for the whole run (hundreds of MiB
    /// over a million records) and slows every read. PostgreSQL manages its own log: nothing.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if let Db::Sqlite(p) = &self.db {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await?;
        }
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

    pub fn rights_apps(&self) -> RightsAppsRepo<'_> {
        RightsAppsRepo::new(self)
    }

    pub fn exports(&self) -> ExportsRepo<'_> {
        ExportsRepo::new(self)
    }

    /// Deletes the rows `from_where` (`FROM … WHERE …`, with `$1` the one bound time) selects
    /// and returns how many, or, when `dry`, only counts them: the own-data purge and its plan
    /// share each query.
    pub(crate) async fn delete_or_count(
        &self,
        from_where: &'static str,
        at_us: i64,
        dry: bool,
    ) -> Result<u64, StoreError> {
        if dry {
            let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) {from_where}"));
            let n: i64 = with_pool!(self.db(), p => sqlx::query_scalar(sql).bind(at_us).fetch_one(p).await?);
            return Ok(u64::try_from(n).unwrap_or(0));
        }
        let sql = sqlx::AssertSqlSafe(format!("DELETE {from_where}"));
        let n = with_pool!(self.db(), p => sqlx::query(sql).bind(at_us).execute(p).await?.rows_affected());
        Ok(n)
    }

    pub fn notify(&self) -> NotifyRepo<'_> {
        NotifyRepo::new(self)
    }

    pub fn incidents(&self) -> IncidentsRepo<'_> {
        IncidentsRepo::new(self)
    }

    pub fn retention(&self) -> RetentionRepo<'_> {
        RetentionRepo::new(self)
    }

    pub fn rights_subjects(&self) -> RightsSubjectsRepo<'_> {
        RightsSubjectsRepo::new(self)
    }
}

/// An exclusive lock on `<file>.migrate-lock`, held while migrations run: SQLite has no
/// advisory lock, and its own transactions cannot span the migrator's. Released when the
/// returned file is dropped (or the process dies).
async fn lock_file(file: &Path) -> Result<std::fs::File, StoreError> {
    let mut name = file.as_os_str().to_owned();
    name.push(".migrate-lock");
    let path = PathBuf::from(name);
    let locked = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            f.lock()?;
            Ok::<_, std::io::Error>(f)
        }
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    locked.map_err(|source| StoreError::MigrationLock { path, source })
}

fn ensure_parent_dir(file: &Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir { path: dir.to_owned(), source })
        }
        _ => Ok(()),
    }
}
