//! Rights requests as stored. A status change is written only if the row still has the status
//! the caller read (`expected`), so two agents acting at once cannot both move a request.

use sqlx::FromRow;

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RightsRow {
    pub id: String,
    pub subject: String,
    pub activity: Option<String>,
    pub right_kind: String,
    pub channel: String,
    pub agent: Option<String>,
    pub identity: String,
    pub status: String,
    pub received_at_us: i64,
    pub received_on: String,
    pub paused_days: i64,
    pub paused_since: Option<String>,
    pub extensions: String,
    pub answer: Option<String>,
    pub updated_at_us: i64,
}

const COLUMNS: &str = "id, subject, activity, right_kind, channel, agent, identity, status, received_at_us, \
                       received_on, paused_days, paused_since, extensions, answer, updated_at_us";

pub struct RightsRepo<'a> {
    store: &'a Store,
}

impl<'a> RightsRepo<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn insert(&self, r: &RightsRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO rights_request ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        );
        with_pool!(self.store.db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&r.id).bind(&r.subject).bind(&r.activity).bind(&r.right_kind).bind(&r.channel)
            .bind(&r.agent).bind(&r.identity).bind(&r.status).bind(r.received_at_us).bind(&r.received_on)
            .bind(r.paused_days).bind(&r.paused_since).bind(&r.extensions).bind(&r.answer).bind(r.updated_at_us)
            .execute(p).await.map(drop)?);
        Ok(())
    }

    /// Deletes (or, `dry`, counts) the files of rights requests closed before `before_us`:
    /// the request, what each application answered, and its exports, in one transaction.
    /// Closed: a final status (completed, partly completed, refused, cancelled), counted
    /// from its last change. A restriction request is kept while a restriction it set is in
    /// force (its mark is still there): lifting it needs the file. Returns the requests.
    pub async fn purge_closed_before(&self, before_us: i64, dry: bool) -> Result<u64, StoreError> {
        const CLOSED: &str = "FROM rights_request r WHERE r.status IN ('completed', 'partly_completed', 'refused', \
            'cancelled') AND r.updated_at_us < $1 AND NOT EXISTS (SELECT 1 FROM rights_propagation p \
            JOIN rights_mark m ON m.subject = p.field_subject AND m.activity = p.activity AND m.kind = 'restricted' \
            WHERE p.request_id = r.id AND r.right_kind = 'restriction')";
        if dry {
            return self.store.delete_or_count(CLOSED, before_us, true).await;
        }
        let ids = sqlx::AssertSqlSafe(format!("SELECT r.id {CLOSED}"));
        let n = with_pool!(self.store.db(), p => {
            let mut tx = p.begin().await?;
            let ids: Vec<String> = sqlx::query_scalar(ids).bind(before_us).fetch_all(&mut *tx).await?;
            for id in &ids {
                for sql in [
                    "DELETE FROM rights_propagation WHERE request_id = $1",
                    "DELETE FROM rights_export WHERE request_id = $1",
                    "DELETE FROM rights_request WHERE id = $1",
                ] {
                    sqlx::query(sql).bind(id).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            ids.len()
        });
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    pub async fn get(&self, id: &str) -> Result<Option<RightsRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM rights_request WHERE id = $1");
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await?);
        Ok(row)
    }

    /// Every request of one citizen, newest first.
    pub async fn of_subject(&self, subject: &str) -> Result<Vec<RightsRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM rights_request WHERE subject = $1 ORDER BY received_at_us DESC, id");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(subject).fetch_all(p).await?);
        Ok(rows)
    }

    /// Requests not yet answered, oldest first (the DPO's queue).
    pub async fn open(&self) -> Result<Vec<RightsRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM rights_request WHERE status IN ('received', 'in_progress', 'waiting_on_applications') \
             ORDER BY received_at_us, id"
        );
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?);
        Ok(rows)
    }

    /// Every request received at or after `from_us`, whatever its status, oldest first (the
    /// DPO's figures and supervision aggregates).
    pub async fn received_since(&self, from_us: i64) -> Result<Vec<RightsRow>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM rights_request WHERE received_at_us >= $1 ORDER BY received_at_us, id");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(from_us).fetch_all(p).await?);
        Ok(rows)
    }

    /// Writes the new state of a request if its status is still `expected`; returns whether
    /// it was written.
    pub async fn update(&self, r: &RightsRow, expected: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE rights_request SET status = $1, paused_days = $2, paused_since = $3, extensions = $4, \
                   answer = $5, updated_at_us = $6 WHERE id = $7 AND status = $8";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&r.status).bind(r.paused_days).bind(&r.paused_since).bind(&r.extensions).bind(&r.answer)
            .bind(r.updated_at_us).bind(&r.id).bind(expected)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }
}
