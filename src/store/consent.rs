//! The consent ledger's tables. Rows of `consent_event` are written only by
//! [`AuditRepo::append`](super::AuditRepo::append), in the transaction that chains their journal
//! entry; this repository reads them and keeps the one-time codes of the assisted channel.

use sqlx::FromRow;

use super::{Store, StoreError};

/// One consent given or withdrawn, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ConsentRow {
    /// The journal entry's sequence number.
    pub seq: i64,
    pub subject: String,
    pub activity: String,
    pub purpose: String,
    /// 1 given, 0 withdrawn (an integer: both engines store it the same way).
    pub given: i64,
    pub at_us: i64,
    /// The journal entry's canonical body and chain hash.
    pub body: String,
    pub hash: String,
}

const COLUMNS: &str = "seq, subject, activity, purpose, given, at_us, body, hash";

pub struct ConsentRepo<'a> {
    store: &'a Store,
}

impl<'a> ConsentRepo<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Every event of `subject`, oldest first: the history the current state derives from.
    pub async fn events_of(&self, subject: &str) -> Result<Vec<ConsentRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM consent_event WHERE subject = $1 ORDER BY seq");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(subject).fetch_all(p).await?);
        Ok(rows)
    }

    /// One event by its journal sequence number.
    pub async fn event(&self, seq: i64) -> Result<Option<ConsentRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM consent_event WHERE seq = $1");
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(seq).fetch_optional(p).await?);
        Ok(row)
    }

    /// How many events the ledger holds (tests and the DPO's counts).
    pub async fn count(&self) -> Result<i64, StoreError> {
        let n = with_pool!(self.store.db(), p => sqlx::query_scalar("SELECT COUNT(*) FROM consent_event").fetch_one(p).await?);
        Ok(n)
    }

    /// Remembers a one-time code (by its hash) standing for `subject` until `expires_at_us`.
    pub async fn insert_code(&self, code_hash: &str, subject: &str, expires_at_us: i64) -> Result<(), StoreError> {
        with_pool!(self.store.db(), p => sqlx::query(
            "INSERT INTO consent_code (code_hash, subject, expires_at_us) VALUES ($1, $2, $3)")
            .bind(code_hash).bind(subject).bind(expires_at_us).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Takes a code once: returns its subject when it exists and has not expired at `now_us`.
    pub async fn take_code(&self, code_hash: &str, now_us: i64) -> Result<Option<String>, StoreError> {
        let row: Option<(String, i64)> = with_pool!(self.store.db(), p => sqlx::query_as(
            "DELETE FROM consent_code WHERE code_hash = $1 RETURNING subject, expires_at_us")
            .bind(code_hash).fetch_optional(p).await?);
        Ok(row.and_then(|(subject, exp)| (exp >= now_us).then_some(subject)))
    }
}
