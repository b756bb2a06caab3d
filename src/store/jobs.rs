//! The durable job queue's table. A claim is one statement that moves a due job to `running`
//! under a lease: PostgreSQL skips rows another instance has locked (`FOR UPDATE SKIP
//! LOCKED`); SQLite serialises writers on the file, so the same statement cannot hand one job
//! to two instances either.

use sqlx::FromRow;

use super::{Engine, Store, StoreError};

/// One job as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct JobRow {
    pub id: String,
    pub kind: String,
    pub dedup_key: Option<String>,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at_us: i64,
    pub locked_by: Option<String>,
    pub locked_until_us: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

const COLUMNS: &str = "id, kind, dedup_key, payload, status, attempts, max_attempts, run_at_us, locked_by, \
                       locked_until_us, last_error, created_at_us, updated_at_us";

/// How many jobs are in each status (for metrics and the DPO's console).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub dead: i64,
}

pub struct JobsRepo<'a> {
    store: &'a Store,
}

impl<'a> JobsRepo<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Inserts a queued job; with a `dedup_key` already present, nothing changes. Returns
    /// whether a job was inserted.
    pub async fn insert(&self, j: &JobRow) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO job ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (dedup_key) DO NOTHING"
        );
        let n = with_pool!(self.store.db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&j.id).bind(&j.kind).bind(&j.dedup_key).bind(&j.payload).bind(&j.status)
            .bind(j.attempts).bind(j.max_attempts).bind(j.run_at_us).bind(&j.locked_by)
            .bind(j.locked_until_us).bind(&j.last_error).bind(j.created_at_us).bind(j.updated_at_us)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Inserts many jobs in one transaction, each as [`JobsRepo::insert`]; for each, true
    /// when inserted (false: its deduplication key was taken).
    pub async fn insert_many(&self, jobs: &[JobRow]) -> Result<Vec<bool>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "INSERT INTO job ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (dedup_key) DO NOTHING"
        );
        let inserted = with_pool!(self.store.db(), p => {
            let mut tx = p.begin().await?;
            let mut inserted = Vec::with_capacity(jobs.len());
            for j in jobs {
                let n = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(&j.id).bind(&j.kind).bind(&j.dedup_key).bind(&j.payload).bind(&j.status)
                    .bind(j.attempts).bind(j.max_attempts).bind(j.run_at_us).bind(&j.locked_by)
                    .bind(j.locked_until_us).bind(&j.last_error).bind(j.created_at_us).bind(j.updated_at_us)
                    .execute(&mut *tx).await?.rows_affected();
                inserted.push(n > 0);
            }
            tx.commit().await?;
            inserted
        });
        Ok(inserted)
    }

    /// Claims the job due first among `kinds`: queued and due, or running under a lease that
    /// ran out. The claim counts one attempt.
    pub async fn claim(
        &self,
        kinds: &[&str],
        instance: &str,
        now_us: i64,
        lease_until_us: i64,
    ) -> Result<Option<JobRow>, StoreError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let kind_list = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect::<Vec<_>>().join(", ");
        let lock = match self.store.engine() {
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            Engine::Sqlite => "",
        };
        let sql = format!(
            "UPDATE job SET status = 'running', locked_by = $1, locked_until_us = $2, attempts = attempts + 1, \
             updated_at_us = $3 WHERE id = (SELECT id FROM job WHERE kind IN ({kind_list}) AND \
             ((status = 'queued' AND run_at_us <= $4) OR (status = 'running' AND locked_until_us < $4)) \
             ORDER BY run_at_us, id LIMIT 1{lock}) RETURNING {COLUMNS}"
        );
        let row = with_pool!(self.store.db(), p => {
            let mut q = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
                .bind(instance).bind(lease_until_us).bind(now_us).bind(now_us);
            for k in kinds {
                q = q.bind(*k);
            }
            q.fetch_optional(p).await?
        });
        Ok(row)
    }

    /// Ends a job this instance holds: `done`, `dead`, or `queued` again for a later attempt.
    /// Returns false when the lease was lost meanwhile (another instance took the job over).
    pub async fn finish(
        &self,
        id: &str,
        instance: &str,
        status: &str,
        run_at_us: Option<i64>,
        error: Option<&str>,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE job SET status = $1, run_at_us = COALESCE($2, run_at_us), last_error = $3, \
                   locked_by = NULL, locked_until_us = NULL, updated_at_us = $4 \
                   WHERE id = $5 AND locked_by = $6 AND status = 'running'";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(status).bind(run_at_us).bind(error).bind(now_us).bind(id).bind(instance)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    pub async fn get(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM job WHERE id = $1");
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await?);
        Ok(row)
    }

    pub async fn by_dedup_key(&self, key: &str) -> Result<Option<JobRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM job WHERE dedup_key = $1");
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key).fetch_optional(p).await?);
        Ok(row)
    }

    pub async fn counts(&self) -> Result<JobCounts, StoreError> {
        let sql = "SELECT status, COUNT(*) FROM job GROUP BY status";
        let rows: Vec<(String, i64)> = with_pool!(self.store.db(), p => sqlx::query_as(sql).fetch_all(p).await?);
        let mut c = JobCounts::default();
        for (status, n) in rows {
            match status.as_str() {
                "queued" => c.queued = n,
                "running" => c.running = n,
                "done" => c.done = n,
                "dead" => c.dead = n,
                _ => {}
            }
        }
        Ok(c)
    }

    /// Deletes finished jobs last touched before `before_us` (dead ones are kept for review).
    pub async fn purge_done(&self, before_us: i64, dry: bool) -> Result<u64, StoreError> {
        self.store.delete_or_count("FROM job WHERE status = 'done' AND updated_at_us < $1", before_us, dry).await
    }

    /// Deletes dead jobs (attempts exhausted) last touched before `before_us`, once they
    /// have been kept long enough for review; returns how many.
    pub async fn purge_dead(&self, before_us: i64, dry: bool) -> Result<u64, StoreError> {
        self.store.delete_or_count("FROM job WHERE status = 'dead' AND updated_at_us < $1", before_us, dry).await
    }
}
