//! Wrapped data keys and their tombstones. Only `crypto::vault` calls this repository.

use time::OffsetDateTime;

use super::{Store, StoreError};

/// One wrapped data key as stored.
#[derive(Clone, sqlx::FromRow)]
pub struct DataKeyRow {
    pub key_id: String,
    pub subject: String,
    pub activity: String,
    /// The retention class the key seals (`gch2.` tokens); empty for the activity's legacy
    /// key, made before classes existed, which only opens `gch1.` tokens.
    pub class: String,
    pub kek_version: i64,
    pub wrapped: Vec<u8>,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for DataKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyRow")
            .field("key_id", &self.key_id)
            .field("activity", &self.activity)
            .field("class", &self.class)
            .field("kek_version", &self.kek_version)
            .finish_non_exhaustive()
    }
}

/// A destroyed data key: opaque id and activity only.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Tombstone {
    pub key_id: String,
    pub activity: String,
    pub shredded_at: OffsetDateTime,
}

/// The `guichet_meta` key holding the shred generation.
const SHRED_GENERATION: &str = "keys.shred_generation";

const COLUMNS: &str = "key_id, subject, activity, class, kek_version, wrapped, created_at";

pub struct Keys<'a> {
    store: &'a Store,
}

impl<'a> Keys<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// The key of one retention class of (subject, activity); `class` empty: the legacy key.
    pub async fn find_by_owner(
        &self,
        subject: &str,
        activity: &str,
        class: &str,
    ) -> Result<Option<DataKeyRow>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM guichet_data_keys WHERE subject = $1 AND activity = $2 AND class = $3");
        let q = sqlx::AssertSqlSafe(sql);
        let row = with_pool!(self.store.db(), p => sqlx::query_as(q)
            .bind(subject).bind(activity).bind(class).fetch_optional(p).await?);
        Ok(row)
    }

    /// Every key of `subjects`, whatever the activity and class (a batch of shreds finds its
    /// keys in one read).
    pub async fn find_of_subjects(&self, subjects: &[&str]) -> Result<Vec<DataKeyRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM guichet_data_keys WHERE subject IN ({{in}})");
        super::fetch_in(self.store.db(), &sql, &[], subjects).await
    }

    /// Every key of (subject, activity): the legacy key and one per retention class in use.
    pub async fn find_all_of(&self, subject: &str, activity: &str) -> Result<Vec<DataKeyRow>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM guichet_data_keys WHERE subject = $1 AND activity = $2 ORDER BY class");
        let q = sqlx::AssertSqlSafe(sql);
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(q).bind(subject).bind(activity).fetch_all(p).await?);
        Ok(rows)
    }

    pub async fn find_by_id(&self, key_id: &str) -> Result<Option<DataKeyRow>, StoreError> {
        let q = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM guichet_data_keys WHERE key_id = $1"));
        let row = with_pool!(self.store.db(), p => sqlx::query_as(q).bind(key_id).fetch_optional(p).await?);
        Ok(row)
    }

    /// Inserts the row unless (subject, activity, class) already has a key (another instance
    /// won the race); returns whether this row was inserted.
    pub async fn insert_if_absent(&self, r: &DataKeyRow) -> Result<bool, StoreError> {
        let sql = "INSERT INTO guichet_data_keys (key_id, subject, activity, class, kek_version, wrapped, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (subject, activity, class) DO NOTHING";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&r.key_id).bind(&r.subject).bind(&r.activity).bind(&r.class).bind(r.kek_version).bind(&r.wrapped)
            .bind(r.created_at).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Records the tombstone and deletes the key in one transaction; returns whether a key
    /// was deleted. When one was, the same transaction sets the shred generation to
    /// `generation` (a fresh random marker), which every instance polls to drop its cached keys.
    pub async fn shred(&self, t: &Tombstone, generation: &str) -> Result<bool, StoreError> {
        Ok(self.shred_many(std::slice::from_ref(t), generation).await? > 0)
    }

    /// Destroys many keys in one transaction (a retention run's batch): each tombstone
    /// inserted and its key deleted as `shred` does, and one new shred generation
    /// when any key was deleted. Returns how many keys were deleted.
    pub async fn shred_many(&self, ts: &[Tombstone], generation: &str) -> Result<u64, StoreError> {
        let Some(first) = ts.first() else { return Ok(0) };
        let ins = "INSERT INTO guichet_key_tombstones (key_id, activity, shredded_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (key_id) DO NOTHING";
        let del = "DELETE FROM guichet_data_keys WHERE key_id = $1";
        let bump = "INSERT INTO guichet_meta (key, value, updated_at) VALUES ($1, $2, $3) \
                    ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";
        let n = with_pool!(self.store.db(), p => {
            let mut tx = p.begin().await?;
            let mut n = 0;
            for t in ts {
                sqlx::query(ins).bind(&t.key_id).bind(&t.activity).bind(t.shredded_at).execute(&mut *tx).await?;
                n += sqlx::query(del).bind(&t.key_id).execute(&mut *tx).await?.rows_affected();
            }
            if n > 0 {
                sqlx::query(bump).bind(SHRED_GENERATION).bind(generation).bind(first.shredded_at)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n
        });
        Ok(n)
    }

    /// The current shred generation: changes (to a random value) with every destroyed key, and
    /// with any restore of an older store. `None` before the first shred.
    pub async fn shred_generation(&self) -> Result<Option<String>, StoreError> {
        self.store.meta().get(SHRED_GENERATION).await
    }

    pub async fn tombstones(&self) -> Result<Vec<Tombstone>, StoreError> {
        let sql = "SELECT key_id, activity, shredded_at FROM guichet_key_tombstones ORDER BY shredded_at, key_id";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql).fetch_all(p).await?);
        Ok(rows)
    }

    /// Tombstones whose key row exists anyway (a partial restore of the key table).
    pub async fn tombstoned_keys(&self) -> Result<Vec<Tombstone>, StoreError> {
        let sql = "SELECT t.key_id, t.activity, t.shredded_at FROM guichet_key_tombstones t \
                   JOIN guichet_data_keys k ON k.key_id = t.key_id ORDER BY t.key_id";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql).fetch_all(p).await?);
        Ok(rows)
    }

    /// How many tombstones the store holds.
    pub async fn tombstone_count(&self) -> Result<i64, StoreError> {
        let n = with_pool!(self.store.db(), p =>
            sqlx::query_scalar("SELECT COUNT(*) FROM guichet_key_tombstones").fetch_one(p).await?);
        Ok(n)
    }

    /// How many data keys each KEK version wraps, by version.
    pub async fn count_by_kek_version(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let sql = "SELECT kek_version, COUNT(*) FROM guichet_data_keys GROUP BY kek_version ORDER BY kek_version";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql).fetch_all(p).await?);
        Ok(rows)
    }

    /// Up to `limit` keys not wrapped by `version`, in a stable order.
    pub async fn not_wrapped_by(&self, version: i64, limit: i64) -> Result<Vec<DataKeyRow>, StoreError> {
        let q = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM guichet_data_keys WHERE kek_version <> $1 ORDER BY key_id LIMIT $2"
        ));
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(q).bind(version).bind(limit).fetch_all(p).await?);
        Ok(rows)
    }

    /// Stores re-wrapped keys in one transaction. Each update applies only if the row is
    /// still at the version it was read at (another instance may have re-wrapped it).
    pub async fn rewrap(&self, batch: &[(String, i64, i64, Vec<u8>)]) -> Result<u64, StoreError> {
        let sql = "UPDATE guichet_data_keys SET kek_version = $1, wrapped = $2 WHERE key_id = $3 AND kek_version = $4";
        let n = with_pool!(self.store.db(), p => {
            let mut tx = p.begin().await?;
            let mut n = 0;
            for (key_id, from, to, wrapped) in batch {
                n += sqlx::query(sql).bind(to).bind(wrapped).bind(key_id).bind(from)
                    .execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            n
        });
        Ok(n)
    }
}
