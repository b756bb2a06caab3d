//! Notices to citizens as stored: one contact address per citizen who gave one, and one row
//! per notice (references and dates only; the address is read from the contact when sending).

use sqlx::FromRow;

use super::{Store, StoreError};

/// One notice as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct NoticeRow {
    pub id: String,
    pub subject: String,
    pub kind: String,
    pub notice: String,
    pub status: String,
    pub created_at_us: i64,
    pub sent_at_us: Option<i64>,
}

const COLUMNS: &str = "id, subject, kind, notice, status, created_at_us, sent_at_us";

pub struct NotifyRepo<'a> {
    store: &'a Store,
}

impl<'a> NotifyRepo<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Records the address a citizen's notices go to. An address the citizen typed is only
    /// replaced by another typed one, never by the identity provider's.
    pub async fn set_contact(&self, subject: &str, address: &str, source: &str, now_us: i64) -> Result<(), StoreError> {
        let sql = "INSERT INTO notify_contact (subject, address, source, updated_at_us) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (subject) DO UPDATE SET address = excluded.address, source = excluded.source, \
                   updated_at_us = excluded.updated_at_us \
                   WHERE notify_contact.source <> 'given' OR excluded.source = 'given'";
        with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(subject).bind(address).bind(source).bind(now_us)
            .execute(p).await.map(drop)?);
        Ok(())
    }

    pub async fn contact(&self, subject: &str) -> Result<Option<String>, StoreError> {
        let sql = "SELECT address FROM notify_contact WHERE subject = $1";
        let found = with_pool!(self.store.db(), p => sqlx::query_scalar(sql).bind(subject).fetch_optional(p).await?);
        Ok(found)
    }

    /// Deletes a citizen's address (erasure, or the citizen asked for letters only).
    pub async fn forget_contact(&self, subject: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM notify_contact WHERE subject = $1";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql).bind(subject).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Deletes notices settled (sent or undeliverable) before `before_us`; a queued one stays.
    /// With `dry`, only counts them.
    pub async fn purge_settled_before(&self, before_us: i64, dry: bool) -> Result<u64, StoreError> {
        let from = "FROM notice_message WHERE status <> 'queued' AND COALESCE(sent_at_us, created_at_us) < $1";
        self.store.delete_or_count(from, before_us, dry).await
    }

    /// Deletes the addresses of citizens with no activity left since `before_us`: the address
    /// unchanged since, no record of theirs still under way (active or in intermediate archive)
    /// nor used since, no rights request open or changed since, no notice still to send. With
    /// `dry`, only counts them.
    pub async fn purge_idle_contacts(&self, before_us: i64, dry: bool) -> Result<u64, StoreError> {
        let from = "FROM notify_contact WHERE updated_at_us < $1 \
            AND NOT EXISTS (SELECT 1 FROM retention_record r JOIN rights_subject_field f \
                ON f.field_subject = r.subject WHERE f.subject = notify_contact.subject \
                AND (r.phase IN ('active', 'intermediate') \
                     OR COALESCE(r.last_activity_at_us, r.collected_at_us) >= $1)) \
            AND NOT EXISTS (SELECT 1 FROM rights_request q WHERE q.subject = notify_contact.subject \
                AND (q.status NOT IN ('completed', 'partly_completed', 'refused', 'cancelled') \
                     OR q.updated_at_us >= $1)) \
            AND NOT EXISTS (SELECT 1 FROM notice_message m WHERE m.subject = notify_contact.subject \
                AND m.status = 'queued')";
        self.store.delete_or_count(from, before_us, dry).await
    }

    /// Inserts a queued notice; one with the same id already there is kept. Returns whether
    /// a row was inserted.
    pub async fn insert(&self, n: &NoticeRow) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO notice_message ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING"
        );
        let inserted = with_pool!(self.store.db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&n.id).bind(&n.subject).bind(&n.kind).bind(&n.notice).bind(&n.status)
            .bind(n.created_at_us).bind(n.sent_at_us)
            .execute(p).await?.rows_affected());
        Ok(inserted > 0)
    }

    pub async fn get(&self, id: &str) -> Result<Option<NoticeRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM notice_message WHERE id = $1");
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await?);
        Ok(row)
    }

    /// A citizen's notices, newest first.
    pub async fn of_subject(&self, subject: &str) -> Result<Vec<NoticeRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM notice_message WHERE subject = $1 ORDER BY created_at_us DESC, id");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(subject).fetch_all(p).await?);
        Ok(rows)
    }

    /// Notices waiting for a letter, oldest first: queued without a sending job (the citizen
    /// had no address, or no mail channel is configured), or left undeliverable (the address
    /// was erased before sending). Only `kinds`, the kinds sent by letter.
    pub async fn waiting_letters(&self, kinds: &[&str]) -> Result<Vec<NoticeRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM notice_message WHERE status = 'undeliverable' OR (status = 'queued' \
             AND NOT EXISTS (SELECT 1 FROM job j WHERE j.dedup_key = 'notify.send/' || notice_message.id \
             AND j.status <> 'dead')) \
             ORDER BY created_at_us, id"
        );
        let rows: Vec<NoticeRow> =
            with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?);
        Ok(rows.into_iter().filter(|r| kinds.contains(&r.kind.as_str())).collect())
    }

    /// Marks a notice waiting for a letter as `status` (the letter was posted). Returns whether
    /// it was waiting: a notice sent meanwhile, or posted by another agent, is left as it is.
    pub async fn settle_letter(&self, id: &str, status: &str, at_us: i64) -> Result<bool, StoreError> {
        let sql = "UPDATE notice_message SET status = $1, sent_at_us = $2 \
                   WHERE id = $3 AND status IN ('queued', 'undeliverable')";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql).bind(status).bind(at_us).bind(id)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Moves a queued notice to `status` (`sent` or `undeliverable`).
    pub async fn settle(&self, id: &str, status: &str, at_us: i64) -> Result<(), StoreError> {
        let sql = "UPDATE notice_message SET status = $1, sent_at_us = $2 WHERE id = $3 AND status = 'queued'";
        with_pool!(self.store.db(), p => sqlx::query(sql).bind(status).bind(at_us).bind(id).execute(p).await.map(drop)?);
        Ok(())
    }
}
