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
    /// The checkpoint key that signed the row, and its Ed25519 signature (hex) over the
    /// entry's sequence number, hash and body. `None` for rows written before signing existed.
    pub key_id: Option<String>,
    pub signature: Option<String>,
}

/// A ledger row with the journal entry it copies, when the journal still holds it (retention
/// prunes the journal, never the ledger): what enforcement checks a row against.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct LedgerRow {
    #[sqlx(flatten)]
    pub row: ConsentRow,
    pub entry_body: Option<String>,
    pub entry_hash: Option<String>,
}

const COLUMNS: &str = "seq, subject, activity, purpose, given, at_us, body, hash, key_id, signature";

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

    /// Every event of `subject`, oldest first, each with its journal entry (if not pruned).
    pub async fn checked_events_of(&self, subject: &str) -> Result<Vec<LedgerRow>, StoreError> {
        let sql = "SELECT c.seq, c.subject, c.activity, c.purpose, c.given, c.at_us, c.body, c.hash, c.key_id, \
                   c.signature, e.body AS entry_body, e.hash AS entry_hash \
                   FROM consent_event c LEFT JOIN audit_entry e ON e.seq = c.seq WHERE c.subject = $1 ORDER BY c.seq";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(subject).fetch_all(p).await?);
        Ok(rows)
    }

    /// Up to `limit` ledger rows after `seq`, in order, each with its journal entry (if not
    /// pruned): what `audit verify` walks.
    pub async fn checked_events_after(&self, seq: i64, limit: i64) -> Result<Vec<LedgerRow>, StoreError> {
        let sql = "SELECT c.seq, c.subject, c.activity, c.purpose, c.given, c.at_us, c.body, c.hash, c.key_id, \
                   c.signature, e.body AS entry_body, e.hash AS entry_hash \
                   FROM consent_event c LEFT JOIN audit_entry e ON e.seq = c.seq WHERE c.seq > $1 ORDER BY c.seq LIMIT $2";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(seq).bind(limit).fetch_all(p).await?);
        Ok(rows)
    }

    /// A journal entry about `subject`'s consent that has no ledger row (a deleted row), if any.
    pub async fn entry_without_row(&self, subject: &str) -> Result<Option<i64>, StoreError> {
        let sql = "SELECT e.seq FROM audit_entry e WHERE e.subject = $1 \
                   AND e.operation IN ('consent_given', 'consent_withdrawn') \
                   AND NOT EXISTS (SELECT 1 FROM consent_event c WHERE c.seq = e.seq) LIMIT 1";
        let seq = with_pool!(self.store.db(), p => sqlx::query_scalar(sql).bind(subject).fetch_optional(p).await?);
        Ok(seq)
    }

    /// One event by its journal sequence number.
    pub async fn event(&self, seq: i64) -> Result<Option<ConsentRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM consent_event WHERE seq = $1");
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(seq).fetch_optional(p).await?);
        Ok(row)
    }

    /// Every event recorded in [`from_us`, `to_us`), in order (the DPO's ledger and figures).
    pub async fn events_between(&self, from_us: i64, to_us: i64) -> Result<Vec<ConsentRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM consent_event WHERE at_us >= $1 AND at_us < $2 ORDER BY seq");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(from_us).bind(to_us).fetch_all(p).await?);
        Ok(rows)
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

    /// The subject of a code that exists and has not expired at `now_us`, without using it up.
    pub async fn code_subject(&self, code_hash: &str, now_us: i64) -> Result<Option<String>, StoreError> {
        let subject = with_pool!(self.store.db(), p => sqlx::query_scalar(
            "SELECT subject FROM consent_code WHERE code_hash = $1 AND expires_at_us >= $2")
            .bind(code_hash).bind(now_us).fetch_optional(p).await?);
        Ok(subject)
    }

    /// Takes a code once: returns its subject when it exists and has not expired at `now_us`.
    pub async fn take_code(&self, code_hash: &str, now_us: i64) -> Result<Option<String>, StoreError> {
        let row: Option<(String, i64)> = with_pool!(self.store.db(), p => sqlx::query_as(
            "DELETE FROM consent_code WHERE code_hash = $1 RETURNING subject, expires_at_us")
            .bind(code_hash).fetch_optional(p).await?);
        Ok(row.and_then(|(subject, exp)| (exp >= now_us).then_some(subject)))
    }

    /// Deletes the one-time codes expired at `now_us` (never used); returns how many.
    pub async fn purge_expired_codes(&self, now_us: i64, dry: bool) -> Result<u64, StoreError> {
        self.store.delete_or_count("FROM consent_code WHERE expires_at_us < $1", now_us, dry).await
    }
}
