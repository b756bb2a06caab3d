//! Access and portability exports as stored: metadata and the archive sealed under a key only
//! the download token gives (`rights::export::seal`). Expired rows are deleted.

use sqlx::FromRow;

use super::{Store, StoreError};

#[derive(Clone, PartialEq, Eq, FromRow)]
pub struct ExportRow {
    pub id: String,
    pub request_id: String,
    pub subject: String,
    pub field_subject: Option<String>,
    pub session_hash: String,
    pub token_hash: String,
    pub sealed: Vec<u8>,
    pub created_at_us: i64,
    pub expires_at_us: i64,
    pub downloads: i64,
}

// Subjects and hashes link a person's requests: keep them out of logs.
impl std::fmt::Debug for ExportRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportRow")
            .field("id", &self.id)
            .field("request_id", &self.request_id)
            .field("expires_at_us", &self.expires_at_us)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, request_id, subject, field_subject, session_hash, token_hash, sealed, created_at_us, \
                       expires_at_us, downloads";

pub struct ExportsRepo<'a> {
    store: &'a Store,
}

impl<'a> ExportsRepo<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn insert(&self, r: &ExportRow) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO rights_export ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
        with_pool!(self.store.db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&r.id).bind(&r.request_id).bind(&r.subject).bind(&r.field_subject).bind(&r.session_hash)
            .bind(&r.token_hash).bind(&r.sealed).bind(r.created_at_us).bind(r.expires_at_us).bind(r.downloads)
            .execute(p).await.map(drop)?);
        Ok(())
    }

    /// The export a download token designates.
    pub async fn by_token_hash(&self, token_hash: &str) -> Result<Option<ExportRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM rights_export WHERE token_hash = $1");
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(token_hash).fetch_optional(p).await?);
        Ok(row)
    }

    /// The field subject recorded with the newest export of this citizen that has one.
    pub async fn field_subject_of(&self, subject: &str) -> Result<Option<String>, StoreError> {
        let sql = "SELECT field_subject FROM rights_export WHERE subject = $1 AND field_subject IS NOT NULL \
                   ORDER BY created_at_us DESC, id LIMIT 1";
        let row: Option<(Option<String>,)> =
            with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(subject).fetch_optional(p).await?);
        Ok(row.and_then(|(f,)| f))
    }

    /// The newest export of a request, if any.
    pub async fn latest_of(&self, request_id: &str) -> Result<Option<ExportRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM rights_export WHERE request_id = $1 ORDER BY created_at_us DESC, id LIMIT 1"
        );
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(request_id).fetch_optional(p).await?);
        Ok(row)
    }

    pub async fn count_download(&self, id: &str) -> Result<(), StoreError> {
        let sql = "UPDATE rights_export SET downloads = downloads + 1 WHERE id = $1";
        with_pool!(self.store.db(), p => sqlx::query(sql).bind(id).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Deletes the exports expired at `now_us`; returns how many.
    pub async fn purge_expired(&self, now_us: i64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM rights_export WHERE expires_at_us <= $1";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql).bind(now_us).execute(p).await?.rows_affected());
        Ok(n)
    }

    /// Deletes the exports made (ready) before `before_us`, whatever their link's expiry;
    /// returns how many.
    pub async fn purge_made_before(&self, before_us: i64, dry: bool) -> Result<u64, StoreError> {
        self.store.delete_or_count("FROM rights_export WHERE created_at_us < $1", before_us, dry).await
    }
}
