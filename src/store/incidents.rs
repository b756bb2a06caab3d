//! The breach register as stored: one row per incident, its facts as JSON beside the columns
//! the list is ordered by.

use sqlx::FromRow;

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct IncidentRow {
    pub id: String,
    pub facts: String,
    pub aware_at_us: i64,
    pub recorded_at_us: i64,
    pub updated_at_us: i64,
}

const COLUMNS: &str = "id, facts, aware_at_us, recorded_at_us, updated_at_us";

pub struct IncidentsRepo<'a> {
    store: &'a Store,
}

impl<'a> IncidentsRepo<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Inserts a new incident; false when the id is taken.
    pub async fn insert(&self, row: &IncidentRow) -> Result<bool, StoreError> {
        let sql = format!("INSERT INTO incident ({COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING");
        let n = with_pool!(self.store.db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&row.id).bind(&row.facts).bind(row.aware_at_us).bind(row.recorded_at_us).bind(row.updated_at_us)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Replaces the facts of an existing incident; false when there is none with this id.
    pub async fn update(
        &self,
        id: &str,
        facts: &str,
        aware_at_us: i64,
        updated_at_us: i64,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE incident SET facts = $1, aware_at_us = $2, updated_at_us = $3 WHERE id = $4";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(facts).bind(aware_at_us).bind(updated_at_us).bind(id)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    pub async fn get(&self, id: &str) -> Result<Option<IncidentRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM incident WHERE id = $1");
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await?);
        Ok(row)
    }

    /// Every incident, the most recently discovered first.
    pub async fn all(&self) -> Result<Vec<IncidentRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM incident ORDER BY aware_at_us DESC, id");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?);
        Ok(rows)
    }
}
