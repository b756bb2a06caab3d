//! Installation facts as key/value pairs (e.g. when the store was first initialised).

use time::OffsetDateTime;

use super::{Store, StoreError};

pub struct Meta<'a> {
    store: &'a Store,
}

impl<'a> Meta<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let sql = "SELECT value FROM guichet_meta WHERE key = $1";
        let v = with_pool!(self.store.db(), p => sqlx::query_scalar(sql).bind(key).fetch_optional(p).await?);
        Ok(v)
    }

    /// Sets `key`, replacing any previous value.
    pub async fn set(&self, key: &str, value: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        let sql = "INSERT INTO guichet_meta (key, value, updated_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";
        with_pool!(self.store.db(), p => sqlx::query(sql).bind(key).bind(value).bind(at).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Sets `key` only when absent; returns the value now stored.
    pub async fn get_or_init(&self, key: &str, value: &str, at: OffsetDateTime) -> Result<String, StoreError> {
        // Read first: once the value exists (every start but the first), nothing is written, so
        // a command run beside busy instances on SQLite never waits for the write lock.
        if let Some(existing) = self.get(key).await? {
            return Ok(existing);
        }
        let sql = "INSERT INTO guichet_meta (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING";
        with_pool!(self.store.db(), p => sqlx::query(sql).bind(key).bind(value).bind(at).execute(p).await.map(drop)?);
        Ok(self.get(key).await?.unwrap_or_else(|| value.to_owned()))
    }
}
