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
    /// per-sector pseudonyms (JSON), with `fields` (every field subject among them, one per
    /// sector) as the per-sector lookup `rights_subject_field`, in one transaction.
    pub async fn put(
        &self,
        subject: &str,
        field_subject: &str,
        routes: &str,
        sectors: &str,
        fields: &[&str],
        now_us: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO rights_subject (subject, field_subject, routes, sectors, updated_at_us) \
                   VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (subject) DO UPDATE SET field_subject = excluded.field_subject, \
                   routes = excluded.routes, sectors = excluded.sectors, updated_at_us = excluded.updated_at_us";
        let clear = "DELETE FROM rights_subject_field WHERE subject = $1";
        let field = "INSERT INTO rights_subject_field (field_subject, subject) VALUES ($1, $2) \
                     ON CONFLICT (field_subject) DO UPDATE SET subject = excluded.subject";
        with_pool!(self.store.db(), p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql).bind(subject).bind(field_subject).bind(routes).bind(sectors).bind(now_us)
                .execute(&mut *tx).await?;
            sqlx::query(clear).bind(subject).execute(&mut *tx).await?;
            for f in fields {
                sqlx::query(field).bind(*f).bind(subject).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The gateway-wide subject whose recorded pseudonyms include the field subject `field`
    /// (of any sector), if one recorded it.
    pub async fn subject_of_field(&self, field: &str) -> Result<Option<String>, StoreError> {
        let sql = "SELECT subject FROM rights_subject_field WHERE field_subject = $1";
        let row: Option<(String,)> =
            with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(field).fetch_optional(p).await?);
        Ok(row.map(|(s,)| s))
    }

    /// [`RightsSubjectsRepo::subject_of_field`] for many field subjects at once: (field
    /// subject, gateway-wide subject) for those recorded.
    pub async fn subjects_of_fields(&self, fields: &[&str]) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT field_subject, subject FROM rights_subject_field WHERE field_subject IN ({in})";
        super::fetch_in(self.store.db(), sql, &[], fields).await
    }

    /// `subject`'s field subject, per-route pseudonyms (JSON) and per-sector pseudonyms
    /// (JSON), if recorded.
    pub async fn get(&self, subject: &str) -> Result<Option<(String, String, String)>, StoreError> {
        let sql = "SELECT field_subject, routes, sectors FROM rights_subject WHERE subject = $1";
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(subject).fetch_optional(p).await?);
        Ok(row)
    }
}
