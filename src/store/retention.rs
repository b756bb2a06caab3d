//! Retention as stored: one row per (citizen, activity, category) with what starts its clock
//! and its phase (`retention_record`), the events applications reported (`retention_event`),
//! the DPO's holds, the run lease shared by instances and what each run did, by hashed id.
//! Used only through `retention::RetentionService`.

use sqlx::FromRow;

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RetentionRow {
    pub subject: String,
    pub activity: String,
    pub category: String,
    pub route: Option<String>,
    pub app_subject: Option<String>,
    pub collected_at_us: i64,
    pub last_activity_at_us: Option<i64>,
    pub event_at_us: Option<i64>,
    pub withdrawn_at_us: Option<i64>,
    pub phase: String,
    pub phase_since_us: i64,
    pub end_action: Option<String>,
    pub notice_deletion_on: Option<String>,
}

const COLUMNS: &str = "subject, activity, category, route, app_subject, collected_at_us, \
                       last_activity_at_us, event_at_us, withdrawn_at_us, phase, phase_since_us, end_action, \
                       notice_deletion_on";

/// An event an application reported, as stored once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionEventRow {
    pub route: String,
    pub event_id: String,
    pub activity: String,
    pub event: String,
    pub occurred_at_us: i64,
    pub received_at_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct HoldRow {
    pub subject: String,
    pub activity: String,
    pub reason: String,
    pub since_us: i64,
}

/// What one run did to one record, by hashed id (the run's evidence).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RunItemRow {
    pub record_hash: String,
    pub step: String,
    pub run_id: String,
    pub activity: String,
    pub category: String,
    pub action: String,
    pub at_us: i64,
}

/// An elimination list (bordereau d'élimination) waiting for, or given, the archivist's visa.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct EliminationListRow {
    pub reference: String,
    pub run_id: String,
    pub producing_service: String,
    pub created_at_us: i64,
    pub visa_by: Option<String>,
    pub visa_at_us: Option<i64>,
    pub visa_reference: Option<String>,
}

const LIST_COLUMNS: &str = "reference, run_id, producing_service, created_at_us, visa_by, visa_at_us, visa_reference";

/// One record on an elimination list.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct EliminationLineRow {
    pub reference: String,
    pub subject: String,
    pub activity: String,
    pub category: String,
    pub record_hash: String,
    pub first_at_us: i64,
    pub last_at_us: i64,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at_us: Option<i64>,
    pub destroyed_at_us: Option<i64>,
}

const LINE_COLUMNS: &str = "reference, subject, activity, category, record_hash, first_at_us, last_at_us, decision, \
                            reason, decided_by, decided_at_us, destroyed_at_us";

/// The key of a record: (subject, activity, category).
pub type RecordKey = (String, String, String);

pub struct RetentionRepo<'a> {
    store: &'a Store,
}

impl<'a> RetentionRepo<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Records that the citizen used the activity at `at_us` (first use: the collection date).
    pub async fn seen(&self, r: &RetentionRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO retention_record ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (subject, activity, category) DO UPDATE SET \
             last_activity_at_us = excluded.last_activity_at_us, \
             route = COALESCE(retention_record.route, excluded.route), \
             app_subject = COALESCE(retention_record.app_subject, excluded.app_subject) \
             WHERE retention_record.phase = 'active'"
        );
        with_pool!(self.store.db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&r.subject).bind(&r.activity).bind(&r.category).bind(&r.route)
            .bind(&r.app_subject).bind(r.collected_at_us).bind(r.last_activity_at_us).bind(r.event_at_us)
            .bind(r.withdrawn_at_us).bind(&r.phase).bind(r.phase_since_us).bind(&r.end_action)
            .bind(&r.notice_deletion_on)
            .execute(p).await.map(drop)?);
        Ok(())
    }

    /// Stores an application's event unless its id was seen; returns whether it is new.
    pub async fn insert_event(&self, e: &RetentionEventRow) -> Result<bool, StoreError> {
        let sql = "INSERT INTO retention_event (route, event_id, activity, event, occurred_at_us, received_at_us) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (route, event_id) DO NOTHING";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&e.route).bind(&e.event_id).bind(&e.activity).bind(&e.event).bind(e.occurred_at_us)
            .bind(e.received_at_us).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Sets the event date of the categories of (`route`, `app_subject`, `activity`) that
    /// count from an event; returns how many records it started.
    pub async fn set_event(
        &self,
        route: &str,
        app_subject: &str,
        activity: &str,
        categories: &[String],
        at_us: i64,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for category in categories {
            let sql = "UPDATE retention_record SET event_at_us = $1 WHERE route = $2 AND app_subject = $3 \
                       AND activity = $4 AND category = $5 AND event_at_us IS NULL";
            n += with_pool!(self.store.db(), p => sqlx::query(sql)
                .bind(at_us).bind(route).bind(app_subject).bind(activity).bind(category)
                .execute(p).await?.rows_affected());
        }
        Ok(n)
    }

    /// Whether the gateway knows this application pseudonym for the activity.
    pub async fn knows(&self, route: &str, app_subject: &str, activity: &str) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM retention_record WHERE route = $1 AND app_subject = $2 AND activity = $3";
        let n: i64 = with_pool!(self.store.db(), p => sqlx::query_scalar(sql)
            .bind(route).bind(app_subject).bind(activity).fetch_one(p).await?);
        Ok(n > 0)
    }

    /// The consent on the activity was withdrawn at `at_us` (the first withdrawal counts).
    pub async fn withdrawn(&self, subject: &str, activity: &str, at_us: i64) -> Result<(), StoreError> {
        let sql = "UPDATE retention_record SET withdrawn_at_us = COALESCE(withdrawn_at_us, $1) \
                   WHERE subject = $2 AND activity = $3";
        with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(at_us).bind(subject).bind(activity).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Up to `limit` records still under way (not ended nor kept) after `after`, in key order.
    /// The row-value comparison is a range on the primary key in both engines (SQLite planned
    /// the equivalent `OR` of three terms as a scan from the first record: each page read the
    /// table again up to itself).
    pub async fn page(&self, after: Option<&RecordKey>, limit: i64) -> Result<Vec<RetentionRow>, StoreError> {
        let (s, a, c) = after.cloned().unwrap_or_default();
        let sql = format!(
            "SELECT {COLUMNS} FROM retention_record WHERE phase IN ('active', 'intermediate', 'review') \
             AND (subject, activity, category) > ($1, $2, $3) \
             ORDER BY subject, activity, category LIMIT $4"
        );
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(s).bind(a).bind(c).bind(limit).fetch_all(p).await?);
        Ok(rows)
    }

    pub async fn of(&self, subject: &str, activity: &str) -> Result<Vec<RetentionRow>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM retention_record WHERE subject = $1 AND activity = $2 ORDER BY category");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(subject).bind(activity).fetch_all(p).await?);
        Ok(rows)
    }

    /// Moves a record from `from` to `to` (and records its end action); false when another
    /// run moved it first.
    pub async fn advance(
        &self,
        key: &RecordKey,
        from: &str,
        to: &str,
        end_action: Option<&str>,
        at_us: i64,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE retention_record SET phase = $1, phase_since_us = $2, \
                   end_action = COALESCE($3, end_action) \
                   WHERE subject = $4 AND activity = $5 AND category = $6 AND phase = $7";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(to).bind(at_us).bind(end_action).bind(&key.0).bind(&key.1).bind(&key.2).bind(from)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Records the deletion date announced to the citizen; false when one was already.
    pub async fn noticed(&self, key: &RecordKey, deletion_on: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE retention_record SET notice_deletion_on = $1 \
                   WHERE subject = $2 AND activity = $3 AND category = $4 AND notice_deletion_on IS NULL";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(deletion_on).bind(&key.0).bind(&key.1).bind(&key.2).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Drops the link from the record to the citizen the application knows: its pseudonym.
    pub async fn unlink(&self, key: &RecordKey) -> Result<(), StoreError> {
        let sql = "UPDATE retention_record SET app_subject = NULL \
                   WHERE subject = $1 AND activity = $2 AND category = $3";
        with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&key.0).bind(&key.1).bind(&key.2).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Adds or replaces a hold.
    pub async fn hold(&self, h: &HoldRow) -> Result<(), StoreError> {
        let sql = "INSERT INTO retention_hold (subject, activity, reason, since_us) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (subject, activity) DO UPDATE SET reason = excluded.reason";
        with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&h.subject).bind(&h.activity).bind(&h.reason).bind(h.since_us).execute(p).await.map(drop)?);
        Ok(())
    }

    pub async fn release(&self, subject: &str, activity: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM retention_hold WHERE subject = $1 AND activity = $2";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(subject).bind(activity).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    pub async fn holds(&self) -> Result<Vec<HoldRow>, StoreError> {
        let sql = "SELECT subject, activity, reason, since_us FROM retention_hold ORDER BY since_us, subject";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql).fetch_all(p).await?);
        Ok(rows)
    }

    pub async fn held(&self, subject: &str, activity: &str) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM retention_hold WHERE subject = $1 AND activity = $2";
        let n: i64 = with_pool!(self.store.db(), p => sqlx::query_scalar(sql)
            .bind(subject).bind(activity).fetch_one(p).await?);
        Ok(n > 0)
    }

    /// The holds on `subjects` (a run's page), whatever the activity: (subject, activity).
    pub async fn held_among(&self, subjects: &[&str]) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT subject, activity FROM retention_hold WHERE subject IN ({in})";
        super::fetch_in(self.store.db(), sql, &[], subjects).await
    }

    /// Every record of `subjects`, whatever the activity and phase (a run's batch of ends).
    pub async fn of_subjects(&self, subjects: &[&str]) -> Result<Vec<RetentionRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM retention_record WHERE subject IN ({{in}})");
        super::fetch_in(self.store.db(), &sql, &[], subjects).await
    }

    /// Takes (or renews) the lease `name` for `holder` until `until_us`, unless another holder
    /// has it beyond `now_us`; returns whether `holder` has it now.
    pub async fn lease(&self, name: &str, holder: &str, until_us: i64, now_us: i64) -> Result<bool, StoreError> {
        let sql = "INSERT INTO retention_lease (name, holder, until_us) VALUES ($1, $2, $3) \
                   ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_us = excluded.until_us \
                   WHERE retention_lease.until_us < $4 OR retention_lease.holder = excluded.holder";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(name).bind(holder).bind(until_us).bind(now_us).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    pub async fn end_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM retention_lease WHERE name = $1 AND holder = $2";
        with_pool!(self.store.db(), p => sqlx::query(sql).bind(name).bind(holder).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Records a step of a run; false when that step of that record was already taken.
    pub async fn item(&self, i: &RunItemRow) -> Result<bool, StoreError> {
        let sql = "INSERT INTO retention_run_item (record_hash, step, run_id, activity, category, action, at_us) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (record_hash, step) DO NOTHING";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&i.record_hash).bind(&i.step).bind(&i.run_id).bind(&i.activity).bind(&i.category)
            .bind(&i.action).bind(i.at_us).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Writes a batch of steps in one transaction; for each, true when written now (false:
    /// a killed run wrote it already).
    pub async fn items(&self, items: &[RunItemRow]) -> Result<Vec<bool>, StoreError> {
        let sql = "INSERT INTO retention_run_item (record_hash, step, run_id, activity, category, action, at_us) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (record_hash, step) DO NOTHING";
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let written = with_pool!(self.store.db(), p => {
            let mut tx = p.begin().await?;
            let mut written = Vec::with_capacity(items.len());
            for i in items {
                let n = sqlx::query(sql)
                    .bind(&i.record_hash).bind(&i.step).bind(&i.run_id).bind(&i.activity).bind(&i.category)
                    .bind(&i.action).bind(i.at_us).execute(&mut *tx).await?.rows_affected();
                written.push(n > 0);
            }
            tx.commit().await?;
            written
        });
        Ok(written)
    }

    /// Takes back, in one transaction, steps written before their actions when the actions
    /// failed (not journaled yet).
    pub async fn drop_items(&self, steps: &[(String, String)]) -> Result<(), StoreError> {
        if steps.is_empty() {
            return Ok(());
        }
        let sql = "DELETE FROM retention_run_item WHERE record_hash = $1 AND step = $2 AND journaled = 0";
        with_pool!(self.store.db(), p => {
            let mut tx = p.begin().await?;
            for (hash, step) in steps {
                sqlx::query(sql).bind(hash).bind(step).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Ends a batch of records in one transaction: each unlinked from the citizen (as
    /// [`RetentionRepo::unlink`]) and moved from the phase read to `to` with `end_action`
    /// (as [`RetentionRepo::advance`]); for each, true when this call moved it.
    pub async fn end_many(
        &self,
        records: &[(RecordKey, String)],
        to: &str,
        end_action: &str,
        at_us: i64,
    ) -> Result<Vec<bool>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let unlink = "UPDATE retention_record SET app_subject = NULL \
                      WHERE subject = $1 AND activity = $2 AND category = $3";
        let advance = "UPDATE retention_record SET phase = $1, phase_since_us = $2, end_action = $3 \
                       WHERE subject = $4 AND activity = $5 AND category = $6 AND phase = $7";
        let moved = with_pool!(self.store.db(), p => {
            let mut tx = p.begin().await?;
            let mut moved = Vec::with_capacity(records.len());
            for (key, from) in records {
                sqlx::query(unlink).bind(&key.0).bind(&key.1).bind(&key.2).execute(&mut *tx).await?;
                let n = sqlx::query(advance).bind(to).bind(at_us).bind(end_action).bind(&key.0).bind(&key.1).bind(&key.2)
                    .bind(from).execute(&mut *tx).await?.rows_affected();
                moved.push(n > 0);
            }
            tx.commit().await?;
            moved
        });
        Ok(moved)
    }

    /// Takes back a step written before its action, when the action failed (not journaled yet).
    pub async fn drop_item(&self, record_hash: &str, step: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM retention_run_item WHERE record_hash = $1 AND step = $2 AND journaled = 0";
        with_pool!(self.store.db(), p => sqlx::query(sql).bind(record_hash).bind(step).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Up to `limit` steps not yet journaled after `after`, in the evidence's order (activity,
    /// category, action, record hash, step): a run's evidence is read page by page.
    pub async fn unjournaled_page(
        &self,
        after: Option<&RunItemRow>,
        limit: i64,
    ) -> Result<Vec<RunItemRow>, StoreError> {
        let base = "SELECT record_hash, step, run_id, activity, category, action, at_us FROM retention_run_item \
                    WHERE journaled = 0";
        let order = "ORDER BY activity, category, action, record_hash, step LIMIT";
        let rows = match after {
            None => {
                let sql = sqlx::AssertSqlSafe(format!("{base} {order} $1"));
                with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(limit).fetch_all(p).await?)
            }
            Some(a) => {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{base} AND (activity, category, action, record_hash, step) > ($1, $2, $3, $4, $5) {order} $6"
                ));
                with_pool!(self.store.db(), p => sqlx::query_as(sql)
                    .bind(&a.activity).bind(&a.category).bind(&a.action).bind(&a.record_hash).bind(&a.step)
                    .bind(limit).fetch_all(p).await?)
            }
        };
        Ok(rows)
    }

    /// Marks journaled, in one statement, every step not yet journaled up to `last` in the
    /// order of [`Self::unjournaled_page`] (the steps a run's journal entry counted).
    pub async fn journaled_up_to(&self, last: &RunItemRow) -> Result<u64, StoreError> {
        let sql = "UPDATE retention_run_item SET journaled = 1 WHERE journaled = 0 \
                   AND (activity, category, action, record_hash, step) <= ($1, $2, $3, $4, $5)";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&last.activity).bind(&last.category).bind(&last.action).bind(&last.record_hash).bind(&last.step)
            .execute(p).await?.rows_affected());
        Ok(n)
    }

    /// Every step taken, for the evidence of one run.
    pub async fn items_of_run(&self, run_id: &str) -> Result<Vec<RunItemRow>, StoreError> {
        let sql = "SELECT record_hash, step, run_id, activity, category, action, at_us FROM retention_run_item \
                   WHERE run_id = $1 ORDER BY activity, category, action, record_hash";
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sql).bind(run_id).fetch_all(p).await?);
        Ok(rows)
    }

    /// The list of (run, producing service): the existing one, or a new one under
    /// `l.reference`; `None` when that reference is taken by another list.
    pub async fn list_for(&self, l: &EliminationListRow) -> Result<Option<String>, StoreError> {
        let sql = "SELECT reference FROM elimination_list WHERE run_id = $1 AND producing_service = $2";
        let existing: Option<String> = with_pool!(self.store.db(), p => sqlx::query_scalar(sql)
            .bind(&l.run_id).bind(&l.producing_service).fetch_optional(p).await?);
        if existing.is_some() {
            return Ok(existing);
        }
        let sql = "INSERT INTO elimination_list (reference, run_id, producing_service, created_at_us) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&l.reference).bind(&l.run_id).bind(&l.producing_service).bind(l.created_at_us)
            .execute(p).await?.rows_affected());
        Ok((n > 0).then(|| l.reference.clone()))
    }

    /// Puts a record on a list; false when it is on one already.
    pub async fn add_line(&self, l: &EliminationLineRow) -> Result<bool, StoreError> {
        let sql = "INSERT INTO elimination_line (reference, subject, activity, category, record_hash, first_at_us, \
                   last_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&l.reference).bind(&l.subject).bind(&l.activity).bind(&l.category).bind(&l.record_hash)
            .bind(l.first_at_us).bind(l.last_at_us).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Every list, newest first.
    pub async fn lists(&self) -> Result<Vec<EliminationListRow>, StoreError> {
        let sql = format!("SELECT {LIST_COLUMNS} FROM elimination_list ORDER BY created_at_us DESC, reference");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?);
        Ok(rows)
    }

    pub async fn list(&self, reference: &str) -> Result<Option<EliminationListRow>, StoreError> {
        let sql = format!("SELECT {LIST_COLUMNS} FROM elimination_list WHERE reference = $1");
        let row = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(reference).fetch_optional(p).await?);
        Ok(row)
    }

    pub async fn lines(&self, reference: &str) -> Result<Vec<EliminationLineRow>, StoreError> {
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM elimination_line WHERE reference = $1 ORDER BY activity, category, record_hash"
        );
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(reference).fetch_all(p).await?);
        Ok(rows)
    }

    /// Records the archivist's visa once; false when the list had one.
    pub async fn visa(
        &self,
        reference: &str,
        by: &str,
        visa_reference: Option<&str>,
        at_us: i64,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE elimination_list SET visa_by = $1, visa_at_us = $2, visa_reference = $3 \
                   WHERE reference = $4 AND visa_at_us IS NULL";
        let n = with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(by).bind(at_us).bind(visa_reference).bind(reference).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Decides the undecided lines of a list (all, or the one of `record_hash`); returns the
    /// lines this call decided.
    pub async fn decide(
        &self,
        reference: &str,
        record_hash: Option<&str>,
        decision: &str,
        reason: Option<&str>,
        by: &str,
        at_us: i64,
    ) -> Result<Vec<EliminationLineRow>, StoreError> {
        let undecided: Vec<EliminationLineRow> = self
            .lines(reference)
            .await?
            .into_iter()
            .filter(|l| l.decision.is_none() && record_hash.is_none_or(|h| h == l.record_hash))
            .collect();
        let mut decided = Vec::new();
        for l in undecided {
            let sql = "UPDATE elimination_line SET decision = $1, reason = $2, decided_by = $3, decided_at_us = $4 \
                       WHERE subject = $5 AND activity = $6 AND category = $7 AND decision IS NULL";
            let n = with_pool!(self.store.db(), p => sqlx::query(sql)
                .bind(decision).bind(reason).bind(by).bind(at_us).bind(&l.subject).bind(&l.activity)
                .bind(&l.category).execute(p).await?.rows_affected());
            if n > 0 {
                decided.push(l);
            }
        }
        Ok(decided)
    }

    /// Approved lines of lists with a visa, not destroyed yet.
    pub async fn approved_to_destroy(&self) -> Result<Vec<EliminationLineRow>, StoreError> {
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM elimination_line WHERE decision = 'approved' AND destroyed_at_us IS NULL \
             AND reference IN (SELECT reference FROM elimination_list WHERE visa_at_us IS NOT NULL) \
             ORDER BY reference, activity, category, record_hash"
        );
        let rows = with_pool!(self.store.db(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?);
        Ok(rows)
    }

    pub async fn line_destroyed(&self, l: &EliminationLineRow, at_us: i64) -> Result<(), StoreError> {
        let sql = "UPDATE elimination_line SET destroyed_at_us = $1 \
                   WHERE subject = $2 AND activity = $3 AND category = $4 AND destroyed_at_us IS NULL";
        with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(at_us).bind(&l.subject).bind(&l.activity).bind(&l.category).execute(p).await.map(drop)?);
        Ok(())
    }
}
