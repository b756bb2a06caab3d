//! What became of a rights request at each application (`rights_propagation`), and the marks
//! rights leave on a (citizen, activity) (`rights_mark`: restricted, consent withdrawn).

use sqlx::FromRow;

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PropagationRow {
    pub request_id: String,
    pub activity: String,
    pub route: Option<String>,
    pub app_subject: Option<String>,
    pub field_subject: Option<String>,
    /// `sending`, `manual` (an agent must act) or `answered` (final answer stored).
    pub state: String,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub records: Option<String>,
    pub corrections: Option<String>,
    pub created_at_us: i64,
    pub answered_at_us: Option<i64>,
}

const COLUMNS: &str = "request_id, activity, route, app_subject, field_subject, state, status, reason, records, \
                       corrections, created_at_us, answered_at_us";

pub struct RightsAppsRepo<'a> {
    store: &'a Store,
}

impl<'a> RightsAppsRepo<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Inserts the row unless one exists for (request, activity); returns whether it did.
    pub async fn insert(&self, r: &PropagationRow) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO rights_propagation ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (request_id, activity) DO NOTHING"
        );
        let n = with_pool!(self.store.db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&r.request_id).bind(&r.activity).bind(&r.route).bind(&r.app_subject).bind(&r.field_subject)
            .bind(&r.state).bind(&r.status).bind(&r.reason).bind(&r.records).bind(&r.corrections).bind(r.created_at_us)
            .bind(r.answered_at_us)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    pub async fn get(&self, request_id: &str, activity: &str) -> Result<Option<PropagationRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM rights_propagation WHERE request_id = $1 AND activity = $2");
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(request_id).bind(activity).fetch_optional(p).await?);
        Ok(row)
    }

    pub async fn of_request(&self, request_id: &str) -> Result<Vec<PropagationRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM rights_propagation WHERE request_id = $1 ORDER BY activity");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(request_id).fetch_all(p).await?);
        Ok(rows)
    }

    /// Records what the application answered to a `restriction_lifted` notice; the last
    /// answer wins (a notice sent again after a new restriction is answered again).
    pub async fn lifted(&self, request_id: &str, activity: &str, status: &str, at_us: i64) -> Result<(), StoreError> {
        let sql = "UPDATE rights_propagation SET lifted_status = $1, lifted_at_us = $2 \
                   WHERE request_id = $3 AND activity = $4";
        with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(status).bind(at_us).bind(request_id).bind(activity).execute(p).await?.rows_affected());
        Ok(())
    }

    /// The application's answer to the `restriction_lifted` notice, and when it came.
    pub async fn lifted_answer(&self, request_id: &str, activity: &str) -> Result<Option<(String, i64)>, StoreError> {
        let sql = "SELECT lifted_status, lifted_at_us FROM rights_propagation \
                   WHERE request_id = $1 AND activity = $2";
        let row: Option<(Option<String>, Option<i64>)> = with_pool!(self.store.db(), p => sqlx::query_as(sql)
            .bind(request_id).bind(activity).fetch_optional(p).await?);
        Ok(row.and_then(|(s, at)| Some((s?, at?))))
    }

    /// Rows an agent must handle by hand, oldest first.
    pub async fn manual(&self) -> Result<Vec<PropagationRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM rights_propagation WHERE state = 'manual' ORDER BY created_at_us");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?);
        Ok(rows)
    }

    /// Stores an application's answer (`state`, `status`, `reason`, `records`,
    /// `answered_at_us` of `r`). A final answer is written once: later ones (an application
    /// answering twice) change nothing; returns whether this one was written.
    pub async fn answer(&self, r: &PropagationRow) -> Result<bool, StoreError> {
        let sql = "UPDATE rights_propagation SET state = $1, status = $2, reason = $3, records = $4, \
                   answered_at_us = $5 WHERE request_id = $6 AND activity = $7 AND state <> 'answered'";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&r.state).bind(&r.status).bind(&r.reason).bind(&r.records).bind(r.answered_at_us)
            .bind(&r.request_id).bind(&r.activity)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Sets the sealed corrections of a rectification and puts the row back to `sending`.
    pub async fn set_corrections(
        &self,
        request_id: &str,
        activity: &str,
        corrections: &str,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE rights_propagation SET corrections = $1, state = 'sending' \
                   WHERE request_id = $2 AND activity = $3 AND state <> 'answered'";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(corrections).bind(request_id).bind(activity).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    pub async fn mark(&self, subject: &str, activity: &str, kind: &str, since_us: i64) -> Result<(), StoreError> {
        let sql = "INSERT INTO rights_mark (subject, activity, kind, since_us) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (subject, activity, kind) DO NOTHING";
        with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(subject).bind(activity).bind(kind).bind(since_us).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Removes a mark; returns whether there was one.
    pub async fn unmark(&self, subject: &str, activity: &str, kind: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM rights_mark WHERE subject = $1 AND activity = $2 AND kind = $3";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(subject).bind(activity).bind(kind).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    pub async fn clear_marks(&self, subject: &str, activity: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM rights_mark WHERE subject = $1 AND activity = $2";
        with_pool!(self.store.db(), p => sqlx::query(sql).bind(subject).bind(activity).execute(p).await.map(drop)?);
        Ok(())
    }

    /// The marks of `kind` on `subjects`, whatever the activity: (subject, activity).
    pub async fn marked_among(&self, subjects: &[&str], kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT subject, activity FROM rights_mark WHERE kind = $1 AND subject IN ({in})";
        super::fetch_in(self.store.db(), sql, &[kind], subjects).await
    }

    pub async fn is_marked(&self, subject: &str, activity: &str, kind: &str) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM rights_mark WHERE subject = $1 AND activity = $2 AND kind = $3";
        let n: i64 = with_pool!(self.store.db(), p => sqlx::query_scalar(sql)
            .bind(subject).bind(activity).bind(kind).fetch_one(p).await?);
        Ok(n > 0)
    }
}
