//! The pseudonyms of a citizen that rights propagation needs (`rights_subject`), recorded
//! while they are signed in so that a request an agent files for them reaches the
//! applications like one they filed online.

use super::{Store, StoreError};

pub struct RightsSubjectsRepo<'a> {
    store: &'a Store,
}

impl<'a> RightsSubjectsRepo<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Records (or refreshes) `subject`'s field subject, per-route pseudonyms (JSON) and
    /// per-sector pseudonyms (JSON).
    pub async fn put(
        &self,
        subject: &str,
        field_subject: &str,
        routes: &str,
        sectors: &str,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO rights_subject (subject, field_subject, routes, sectors, updated_at_us) \
                   VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (subject) DO UPDATE SET field_subject = excluded.field_subject, \
                   routes = excluded.routes, sectors = excluded.sectors, updated_at_us = excluded.updated_at_us";
        with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(subject).bind(field_subject).bind(routes).bind(sectors).bind(now_us)
            .execute(p).await.map(drop)?);
        Ok(())
    }

    /// `subject`'s field subject, per-route pseudonyms (JSON) and per-sector pseudonyms
    /// (JSON), if recorded.
    pub async fn get(&self, subject: &str) -> Result<Option<(String, String, String)>, StoreError> {
        let sql = "SELECT field_subject, routes, sectors FROM rights_subject WHERE subject = $1";
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(subject).fetch_optional(p).await?);
        Ok(row)
    }
}
