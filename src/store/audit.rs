//! The audit journal's tables. The store knows rows, not hashes: `audit::sink` computes the
//! chain inside [`AuditRepo::append`], between locking the head and writing the rows.
//!
//! Serialising writers: every append and every pruning first locks the one row of
//! `audit_head`. On PostgreSQL that is `SELECT … FOR UPDATE`, so two instances extending the
//! chain at once take turns and the second sees the first one's end. On SQLite the first
//! statement of the transaction is a write to that row, which takes the database's single
//! write lock at once (the effect of `BEGIN IMMEDIATE`), so no other writer can slip in
//! between reading the head and writing after it.

use sqlx::FromRow;

use super::{Engine, Store, StoreError};

/// Rows written per INSERT statement (well under both engines' bound-parameter limits).
const INSERT_CHUNK: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct HeadRow {
    pub seq: i64,
    pub hash: String,
    pub checkpoint_number: i64,
    pub checkpoint_seq: i64,
    pub checkpoint_at_us: i64,
    pub anchor_seq: i64,
    pub anchor_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct EntryRow {
    pub seq: i64,
    pub at_us: i64,
    pub operation: String,
    pub subject: Option<String>,
    pub body: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct CheckpointRow {
    pub number: i64,
    pub seq: i64,
    pub hash: String,
    pub at_us: i64,
    pub key_id: String,
    pub signature: String,
}

/// What one append adds: entries, checkpoints, and the new head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub entries: Vec<EntryRow>,
    /// Consent ledger rows for the consent entries among `entries`, written in the same
    /// transaction (docs/consent.md).
    pub consents: Vec<super::ConsentRow>,
    pub checkpoints: Vec<CheckpointRow>,
    pub head: HeadRow,
}

/// What one pruning removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Entries up to and including this one are gone; the chain now starts after it.
    pub anchor_seq: i64,
    pub anchor_checkpoint: i64,
    pub entries: u64,
}

const HEAD_COLUMNS: &str = "seq, hash, checkpoint_number, checkpoint_seq, checkpoint_at_us, anchor_seq, anchor_hash";

/// The statements that let the retention path delete from the append-only tables inside its
/// own transaction, and only there (the triggers of migration 0006 check them).
struct RetentionGate {
    open: &'static str,
    close: &'static str,
}

impl RetentionGate {
    fn of(engine: Engine) -> Self {
        match engine {
            // Transaction-local: gone at commit or rollback, invisible to other sessions.
            Engine::Postgres => Self {
                open: "SELECT set_config('guichet.retention', 'on', true)",
                close: "SELECT set_config('guichet.retention', 'off', true)",
            },
            // The row exists only inside this transaction: other connections never see it.
            Engine::Sqlite => {
                Self { open: "INSERT INTO retention_gate (id) VALUES (1)", close: "DELETE FROM retention_gate" }
            }
        }
    }
}

pub struct AuditRepo<'a> {
    store: &'a Store,
}

impl<'a> AuditRepo<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// The statement that reads the head and locks it until the transaction ends.
    fn lock_head_sql(&self) -> String {
        match self.store.engine() {
            Engine::Postgres => format!("SELECT {HEAD_COLUMNS} FROM audit_head WHERE id = 1 FOR UPDATE"),
            // A write first: it takes SQLite's write lock before anything is read.
            Engine::Sqlite => format!("UPDATE audit_head SET id = id WHERE id = 1 RETURNING {HEAD_COLUMNS}"),
        }
    }

    pub async fn head(&self) -> Result<HeadRow, StoreError> {
        let sql = format!("SELECT {HEAD_COLUMNS} FROM audit_head WHERE id = 1");
        let head = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(p).await?);
        Ok(head)
    }

    /// Locks the head, lets `extend` compute what follows it, writes that and moves the head,
    /// all in one transaction. Returns what was written once it is committed.
    pub async fn append<F>(&self, extend: F) -> Result<Extension, StoreError>
    where
        F: FnOnce(&HeadRow) -> Extension,
    {
        let lock = self.lock_head_sql();
        let ext = with_pool!(self.store.db(), p => {
            let mut tx = p.begin().await?;
            let head: HeadRow = sqlx::query_as(sqlx::AssertSqlSafe(lock)).fetch_one(&mut *tx).await?;
            let ext = extend(&head);
            for chunk in ext.entries.chunks(INSERT_CHUNK) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO audit_entry (seq, at_us, operation, subject, body, hash) ");
                q.push_values(chunk, |mut b, e| {
                    b.push_bind(e.seq).push_bind(e.at_us).push_bind(&e.operation).push_bind(&e.subject)
                        .push_bind(&e.body).push_bind(&e.hash);
                });
                q.build().execute(&mut *tx).await?;
            }
            for c in &ext.consents {
                sqlx::query("INSERT INTO consent_event (seq, subject, activity, purpose, given, at_us, body, hash, \
                             key_id, signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                    .bind(c.seq).bind(&c.subject).bind(&c.activity).bind(&c.purpose).bind(c.given).bind(c.at_us)
                    .bind(&c.body).bind(&c.hash).bind(&c.key_id).bind(&c.signature)
                    .execute(&mut *tx).await?;
            }
            for c in &ext.checkpoints {
                sqlx::query("INSERT INTO audit_checkpoint (number, seq, hash, at_us, key_id, signature) \
                             VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(c.number).bind(c.seq).bind(&c.hash).bind(c.at_us).bind(&c.key_id).bind(&c.signature)
                    .execute(&mut *tx).await?;
            }
            let h = &ext.head;
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, checkpoint_number = $3, checkpoint_seq = $4, \
                         checkpoint_at_us = $5 WHERE id = 1")
                .bind(h.seq).bind(&h.hash).bind(h.checkpoint_number).bind(h.checkpoint_seq).bind(h.checkpoint_at_us)
                .execute(&mut *tx).await?;
            tx.commit().await?;
            ext
        });
        Ok(ext)
    }

    /// Up to `limit` entries after `seq`, in order.
    pub async fn entries_after(&self, seq: i64, limit: i64) -> Result<Vec<EntryRow>, StoreError> {
        let sql = "SELECT seq, at_us, operation, subject, body, hash FROM audit_entry \
                   WHERE seq > $1 ORDER BY seq LIMIT $2";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(seq).bind(limit).fetch_all(p).await?);
        Ok(rows)
    }

    /// The entries about one pseudonymous subject still in the journal, in order.
    pub async fn entries_of_subject(&self, subject: &str) -> Result<Vec<EntryRow>, StoreError> {
        let sql = "SELECT seq, at_us, operation, subject, body, hash FROM audit_entry WHERE subject = $1 ORDER BY seq";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(subject).fetch_all(p).await?);
        Ok(rows)
    }

    /// The entries about one subject with one operation name, in order (index
    /// `audit_entry_subject`).
    pub async fn entries_of_subject_named(&self, subject: &str, operation: &str) -> Result<Vec<EntryRow>, StoreError> {
        let sql = "SELECT seq, at_us, operation, subject, body, hash FROM audit_entry \
                   WHERE subject = $1 AND operation = $2 ORDER BY seq";
        let rows =
            with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(subject).bind(operation).fetch_all(p).await?);
        Ok(rows)
    }

    /// Up to `limit` entries written in [`from_us`, `to_us`), newest first, of one operation
    /// name when given (the DPO's journal browser and figures).
    pub async fn entries_between(
        &self,
        from_us: i64,
        to_us: i64,
        operation: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EntryRow>, StoreError> {
        let sql = "SELECT seq, at_us, operation, subject, body, hash FROM audit_entry \
                   WHERE at_us >= $1 AND at_us < $2 AND ($3 IS NULL OR operation = $3) \
                   ORDER BY seq DESC LIMIT $4";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql)
            .bind(from_us).bind(to_us).bind(operation).bind(limit).fetch_all(p).await?);
        Ok(rows)
    }

    /// The newest entry with this operation name, if any.
    pub async fn last_named(&self, operation: &str) -> Result<Option<EntryRow>, StoreError> {
        let sql = "SELECT seq, at_us, operation, subject, body, hash FROM audit_entry \
                   WHERE operation = $1 ORDER BY seq DESC LIMIT 1";
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(operation).fetch_optional(p).await?);
        Ok(row)
    }

    /// Every checkpoint, in order.
    pub async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        let sql = "SELECT number, seq, hash, at_us, key_id, signature FROM audit_checkpoint ORDER BY number";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql).fetch_all(p).await?);
        Ok(rows)
    }

    /// Removes the entries older than `cutoff_us`, but only up to the last checkpoint that
    /// they entirely precede, so the rest stays anchored on a signed checkpoint. `None` when
    /// there is nothing to remove yet.
    pub async fn prune_before(&self, cutoff_us: i64) -> Result<Option<Pruned>, StoreError> {
        let lock = self.lock_head_sql();
        let gate = RetentionGate::of(self.store.engine());
        let pruned = with_pool!(self.store.db(), p => {
            let mut tx = p.begin().await?;
            let head: HeadRow = sqlx::query_as(sqlx::AssertSqlSafe(lock)).fetch_one(&mut *tx).await?;
            // The first entry to keep: the oldest one inside the window (or one past the end).
            let keep_from: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM audit_entry WHERE at_us >= $1")
                .bind(cutoff_us).fetch_one(&mut *tx).await?;
            let keep_from = keep_from.unwrap_or(head.seq + 1);
            let anchor: Option<(i64, i64, String)> = sqlx::query_as(
                "SELECT number, seq, hash FROM audit_checkpoint WHERE seq < $1 AND seq > $2 \
                 ORDER BY seq DESC, number DESC LIMIT 1")
                .bind(keep_from).bind(head.anchor_seq).fetch_optional(&mut *tx).await?;
            match anchor {
                None => None,
                Some((number, seq, hash)) => {
                    // The tables refuse deletions outside this path (migration 0006).
                    sqlx::query(gate.open).execute(&mut *tx).await?;
                    let gone = sqlx::query("DELETE FROM audit_entry WHERE seq <= $1").bind(seq).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM audit_checkpoint WHERE number < $1").bind(number).execute(&mut *tx).await?;
                    sqlx::query("UPDATE audit_head SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1")
                        .bind(seq).bind(&hash).execute(&mut *tx).await?;
                    sqlx::query(gate.close).execute(&mut *tx).await?;
                    tx.commit().await?;
                    Some(Pruned { anchor_seq: seq, anchor_checkpoint: number, entries: gone.rows_affected() })
                }
            }
        });
        Ok(pruned)
    }
}
