//! Runs: every record still under way is read in key order, batch by batch; the planner says
//! what is due; holds are skipped; each action goes through the services (crypto-erasure,
//! the rights contract, notices) and then moves the record's phase with a conditional update,
//! so a record is acted on once even when a run is killed half-way and started again (the
//! services' own steps are idempotent: a shred of a destroyed key, a job already queued, a
//! notice already recorded change nothing). One run at a time across instances: a lease in
//! the store, renewed at each batch. The evidence is one journal entry per run.

use std::collections::{BTreeMap, HashMap, HashSet};

use time::Date;

use super::planner::{self, Action, Clocks, Phase, Record, Rule};
use super::{RetentionError, date_of};
use crate::app::App;
use crate::audit::event::RetentionCount;
use crate::audit::{AuditEvent, Ident, Operation};
use crate::rights::contract::RequestType;
use crate::store::{RecordKey, RetentionRow, RunItemRow};

const LEASE: &str = "run";

/// What `forget` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    /// A data key was destroyed: the category's retention class key, or every key of the
    /// activity when no category of it is left.
    pub shredded: bool,
    /// This call ended the record (false: it was already).
    pub ended_now: bool,
}

/// The one "forget this (citizen, activity, category)" operation, shared by retention and
/// erasure (R29). Data keys are per (citizen, activity, retention class): the category's class
/// key is shredded once no other live category shares it; when the activity's last category
/// ends, every key of the activity goes (the legacy per-activity key of older `gch1.` tokens
/// too). The gateway's links from the category to the citizen are dropped. Idempotent.
pub async fn forget(
    app: &App,
    field_subject: &str,
    activity: &str,
    category: &str,
    reason: &str,
) -> Result<Forgotten, RetentionError> {
    let key: RecordKey = (field_subject.to_owned(), activity.to_owned(), category.to_owned());
    let mut done = forget_many(app, std::slice::from_ref(&key), reason).await?;
    done.pop().ok_or(RetentionError::Shred)
}

/// [`forget`] for a batch of records (a run's page), with the same outcome as forgetting them
/// one after the other: the categories ended in the batch count as ended for each other. The
/// class keys of the whole batch are shredded together (one tombstone append, one store
/// transaction) and the records ended in one transaction. One result per key, in order.
pub async fn forget_many(app: &App, keys: &[RecordKey], reason: &str) -> Result<Vec<Forgotten>, RetentionError> {
    let set = app.policies.load();
    let ending: HashSet<&RecordKey> = keys.iter().collect();
    let mut whole: Vec<(&str, &str)> = Vec::new();
    let mut classes: Vec<(&str, &str, String)> = Vec::new();
    let mut shredded = Vec::with_capacity(keys.len());
    let mut live_rows: Vec<(RecordKey, String)> = Vec::new();
    let mut ended_rows: Vec<&RecordKey> = Vec::new();
    let pairs: Vec<(&str, &str)> = keys.iter().map(|k| (k.0.as_str(), k.1.as_str())).collect();
    let records = app.retention.records_of_many(&pairs).await?;
    for key in keys {
        let (subject, activity, category) = (key.0.as_str(), key.1.as_str(), key.2.as_str());
        let rows: &[RetentionRow] = records.get(&(key.0.clone(), key.1.clone())).map_or(&[], Vec::as_slice);
        let policy = set.activity(activity);
        let class_of = |c: &str| policy.map(|a| crate::policy::retention_class(a, c));
        let is_live = |c: &str| {
            let other = (key.0.clone(), key.1.clone(), c.to_owned());
            rows.iter().any(|r| r.category == c && r.phase != Phase::Ended.as_str()) && !ending.contains(&other)
        };
        let live: Vec<&str> = policy
            .map(|a| a.categories.iter().map(|c| c.id.as_str()).filter(|c| *c != category && is_live(c)).collect())
            .unwrap_or_default();
        let class = class_of(category);
        let class_shared = live.iter().any(|c| class_of(c) == class);
        shredded.push(if live.is_empty() {
            if !whole.contains(&(subject, activity)) {
                whole.push((subject, activity));
            }
            true
        } else if let (Some(class), false, Some(_)) = (class, class_shared, &app.crypto) {
            if !classes.iter().any(|(s, a, c)| (*s, *a, c) == (subject, activity, &class)) {
                classes.push((subject, activity, class));
            }
            true
        } else {
            false
        });
        match rows.iter().find(|r| r.category == category && r.phase != Phase::Ended.as_str()) {
            Some(row) => live_rows.push((key.clone(), row.phase.clone())),
            None => ended_rows.push(key),
        }
    }
    for (subject, activity) in &whole {
        crate::rights::erasure::erase_at_gateway(app, subject, activity).await.map_err(|_| RetentionError::Shred)?;
    }
    if let (Some(vault), false) = (&app.crypto, classes.is_empty()) {
        let owners: Vec<(&str, &str, &str)> = classes.iter().map(|(s, a, c)| (*s, *a, c.as_str())).collect();
        let done = vault.shred_classes(&owners).await.map_err(|_| RetentionError::Shred)?;
        for ((subject, activity, _), shredded) in owners.iter().zip(done) {
            if let crate::crypto::vault::Shredded::Destroyed { key_ids } = shredded {
                for key_id in &key_ids {
                    crate::rights::erasure::journal_shred(app, subject, activity, key_id).await;
                }
            }
        }
    }
    let store = app.retention.store();
    for key in ended_rows {
        store.unlink(key).await?;
    }
    let now = crate::audit::event::to_micros(app.clock.now());
    let moved = store.end_many(&live_rows, Phase::Ended.as_str(), "destroy", now).await?;
    let mut ended_now: HashMap<&RecordKey, bool> = HashMap::new();
    for ((key, _), moved) in live_rows.iter().zip(moved) {
        ended_now.insert(key, moved);
    }
    tracing::debug!(reason, records = keys.len(), "retention: categories were forgotten");
    Ok(keys
        .iter()
        .zip(shredded)
        .map(|(key, shredded)| Forgotten { shredded, ended_now: ended_now.get(key).copied().unwrap_or(false) })
        .collect())
}

/// How a run is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub today: Date,
    /// Plan only: nothing changes, nothing is journaled.
    pub dry_run: bool,
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub run_id: String,
    /// (activity, category, phase before, action) → records; action `none` for records with
    /// nothing due, `held` for those a hold kept.
    pub lines: BTreeMap<(String, String, String, String), u64>,
    pub records: u64,
    pub acted: u64,
    pub skipped_holds: u64,
    /// Past their end of life and not acted on.
    pub overdue: u64,
    /// Records on elimination lists with the archivist's visa, destroyed by this run.
    pub eliminated: u64,
}

impl Report {
    fn count(&mut self, row: &RetentionRow, action: &str) {
        let key = (row.activity.clone(), row.category.clone(), row.phase.clone(), action.to_owned());
        *self.lines.entry(key).or_default() += 1;
    }
}

/// Runs (or plans) retention over every record; `progress` gets the records read so far.
pub async fn run(app: &App, opts: Options, progress: &(dyn Fn(u64) + Sync)) -> Result<Report, RetentionError> {
    let run_id = run_id(app)?;
    let settings = &app.settings.retention;
    let lease_us = i64::try_from(settings.lease.as_micros()).unwrap_or(i64::MAX);
    let holder = format!("{}:{run_id}", app.jobs.instance());
    let take_lease = || async {
        let now = crate::audit::event::to_micros(app.clock.now());
        app.retention.store().lease(LEASE, &holder, now.saturating_add(lease_us), now).await
    };
    if !opts.dry_run && !take_lease().await? {
        return Err(RetentionError::Busy);
    }
    let mut report = Report { run_id: run_id.clone(), ..Report::default() };
    let mut result = walk(app, opts, &run_id, &mut report, progress, &take_lease).await;
    if !opts.dry_run && result.is_ok() {
        // Lines the archivist approved since the last run (never a line without a visa).
        match super::elimination::destroy_approved(app, &run_id).await {
            Ok(n) => report.eliminated = n,
            Err(e) => result = Err(e),
        }
    }
    if !opts.dry_run {
        let evidence = match &result {
            Ok(()) => journal(app, &run_id, &report).await,
            Err(_) => Ok(()),
        };
        if let Err(e) = app.retention.store().end_lease(LEASE, &holder).await {
            tracing::warn!(error = %e, "retention: cannot end the run's lease; it will run out");
        }
        result?;
        evidence?;
        observe(app, &report);
    }
    Ok(report)
}

/// A run's id: `RUN-<micros>-<8 random hex>`. The time orders runs for a reader; the random
/// part (the injected `Random`) keeps two runs apart when they start in the same microsecond
/// (a frozen test clock, two instances planning at once).
pub fn run_id(app: &App) -> Result<String, RetentionError> {
    let suffix = crate::clock::random_hex::<4>(app.random.as_ref()).map_err(|_| RetentionError::Random)?;
    Ok(format!("RUN-{}-{suffix}", crate::audit::event::to_micros(app.clock.now())))
}

async fn walk<F, Fut>(
    app: &App,
    opts: Options,
    run_id: &str,
    report: &mut Report,
    progress: &(dyn Fn(u64) + Sync),
    renew: &F,
) -> Result<(), RetentionError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool, crate::store::StoreError>>,
{
    let batch = i64::from(app.settings.retention.batch);
    let mut after: Option<RecordKey> = None;
    for pages in 1u64.. {
        if !opts.dry_run && pages % CHECKPOINT_EVERY_PAGES == 0 {
            // Only an optimisation: a checkpoint that cannot run now (the log busy) is no
            // reason to stop forgetting.
            if let Err(e) = app.retention.checkpoint().await {
                tracing::warn!(error = %e, "retention: the store's log could not be checkpointed; the run goes on");
            }
        }
        let rows = app.retention.page(after.as_ref(), batch).await?;
        let Some(last) = rows.last() else { return Ok(()) };
        after = Some((last.subject.clone(), last.activity.clone(), last.category.clone()));
        let planned = plan_page(app, &rows, opts.today, report);
        // The holds of the page's records with something due, in one read per kind of hold.
        let due: Vec<&RetentionRow> = planned.iter().map(|p| p.row).collect();
        let holds = Holds::of(app, &due).await?;
        // Destroy and anonymise, the actions a large run is made of, are taken for the whole
        // page at once at its end (`act_batch`); the others one by one.
        let mut ends: Vec<Due<'_>> = Vec::new();
        for Due { row, action, past_end } in planned {
            let ends_it = !matches!(action, Action::Notice { .. } | Action::ToIntermediate);
            if let Some(why) = holds.on(row) {
                tracing::debug!(why, "retention: a record under a hold is skipped");
                report.count(row, "held");
                report.skipped_holds += 1;
                report.overdue += u64::from(past_end);
                continue;
            }
            report.count(row, action.as_str());
            if opts.dry_run {
                report.overdue += u64::from(past_end && !ends_it);
                continue;
            }
            if matches!(action, Action::Destroy | Action::Anonymise) {
                ends.push(Due { row, action, past_end });
                continue;
            }
            match act(app, run_id, row, action).await {
                Ok(true) => {
                    report.acted += 1;
                    report.overdue += u64::from(past_end && !ends_it);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, action = action.as_str(), "retention: an action failed; the next run tries again");
                    report.overdue += u64::from(past_end);
                }
            }
        }
        act_batch(app, run_id, &ends, report).await?;
        progress(report.records);
        if !opts.dry_run && !renew().await? {
            // Another instance took the lease over (ours ran out): stop here, it goes on.
            return Err(RetentionError::Busy);
        }
    }
    Ok(())
}

/// How many pages a run acts on between two checkpoints of the store's write-ahead log.
const CHECKPOINT_EVERY_PAGES: u64 = 16;

/// Plans a page: the records with an action due, in order; the others are counted in
/// `report` (no rule, nothing due, overdue) and go no further.
fn plan_page<'a>(app: &App, rows: &'a [RetentionRow], today: Date, report: &mut Report) -> Vec<Due<'a>> {
    let set = app.policies.load_full();
    let mut due = Vec::new();
    for row in rows {
        report.records += 1;
        let rule = set
            .activity(&row.activity)
            .and_then(|a| a.categories.iter().find(|c| c.id == row.category))
            .and_then(|c| c.retention.as_ref())
            .and_then(Rule::of);
        let (Some(rule), Some(phase)) = (rule, Phase::parse(&row.phase)) else {
            report.count(row, "no_rule");
            continue;
        };
        let record = Record { phase, clocks: clocks(row), noticed_for: noticed_for(row) };
        // Past its end of life: overdue unless this run ends it, whatever holds it back
        // (a hold, a failed action, or the notice the policy promises still running).
        let past_end = planner::past_end(&rule, &record, today);
        match planner::plan(&rule, &record, today) {
            Some(action) => due.push(Due { row, action, past_end }),
            None => {
                report.count(row, "none");
                report.overdue += u64::from(past_end);
            }
        }
    }
    due
}

pub(crate) fn clocks(row: &RetentionRow) -> Clocks {
    Clocks {
        collected_on: date_of(row.collected_at_us),
        last_activity_on: row.last_activity_at_us.and_then(date_of),
        event_on: row.event_at_us.and_then(date_of),
        withdrawn_on: row.withdrawn_at_us.and_then(date_of),
    }
}

pub(crate) fn noticed_for(row: &RetentionRow) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    row.notice_deletion_on.as_deref().and_then(|d| Date::parse(d, format).ok())
}

/// What keeps a page's records from being acted on now, read for the whole page at once:
/// DPO holds, restrictions in force, and restriction or objection requests still being decided
/// (Art. 18(1)(d)), each as the (subject, activity) pairs it holds.
struct Holds {
    dpo: HashSet<(String, String)>,
    restricted: HashSet<(String, String)>,
    pending: HashSet<(String, String)>,
}

impl Holds {
    async fn of(app: &App, rows: &[&RetentionRow]) -> Result<Self, RetentionError> {
        let pairs: Vec<(&str, &str)> = rows.iter().map(|r| (r.subject.as_str(), r.activity.as_str())).collect();
        Ok(Self {
            dpo: app.retention.held_among(&pairs).await?,
            restricted: crate::rights::restriction::restricted_among(app, &pairs).await?,
            // Found through the rights subjects the citizen recorded, by the sector's
            // pseudonym: the record carries no gateway-wide id that would join the citizen's
            // sectors.
            pending: app.rights.pending_restrictions_among(&pairs).await?,
        })
    }

    /// Why `row` must not be acted on now, if it must not.
    fn on(&self, row: &RetentionRow) -> Option<&'static str> {
        let pair = (row.subject.clone(), row.activity.clone());
        [(&self.dpo, "dpo_hold"), (&self.restricted, "restriction"), (&self.pending, "rights_request")]
            .into_iter()
            .find_map(|(held, why)| held.contains(&pair).then_some(why))
    }
}

/// A record with an action due; for destroy and anonymise, taken with its page's batch.
struct Due<'a> {
    row: &'a RetentionRow,
    action: Action,
    past_end: bool,
}

/// The step a run writes for an action on a record (its evidence).
fn step(run_id: &str, row: &RetentionRow, action: Action, now: i64) -> RunItemRow {
    let key: RecordKey = (row.subject.clone(), row.activity.clone(), row.category.clone());
    RunItemRow {
        record_hash: record_hash(&key),
        step: action.as_str().to_owned(),
        run_id: run_id.to_owned(),
        activity: row.activity.clone(),
        category: row.category.clone(),
        action: action.as_str().to_owned(),
        at_us: now,
    }
}

/// Ends a page's records: the steps of the whole batch written first in one transaction (as
/// `act` does for one record, so a run killed in between leaves them in the evidence and the
/// next run completes the actions, writing no step twice), then the applications told in one
/// transaction, the class keys shredded together (one tombstone append, one store
/// transaction) and the records ended in one transaction. When the batch fails, its new steps
/// are taken back and its records stay for the next run (counted overdue when past their end).
async fn act_batch(app: &App, run_id: &str, due: &[Due<'_>], report: &mut Report) -> Result<(), RetentionError> {
    if due.is_empty() {
        return Ok(());
    }
    let store = app.retention.store();
    let now = crate::audit::event::to_micros(app.clock.now());
    let steps: Vec<RunItemRow> = due.iter().map(|d| step(run_id, d.row, d.action, now)).collect();
    let written = store.items(&steps).await?;
    match end_batch(app, due, now).await {
        Ok(moved) => {
            report.acted += moved.iter().filter(|m| **m).count() as u64;
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, records = due.len(), "retention: a batch of actions failed; the next run tries again");
            report.overdue += due.iter().filter(|d| d.past_end).count() as u64;
            let taken_back: Vec<(String, String)> = steps
                .into_iter()
                .zip(written)
                .filter(|(_, written)| *written)
                .map(|(s, _)| (s.record_hash, s.step))
                .collect();
            Ok(store.drop_items(&taken_back).await?)
        }
    }
}

/// The actions of [`act_batch`]; for each record, true when this call moved it.
async fn end_batch(app: &App, due: &[Due<'_>], now: i64) -> Result<Vec<bool>, RetentionError> {
    let of = |action: Action| due.iter().filter(move |d| d.action == action).map(|d| d.row).collect::<Vec<_>>();
    let key = |row: &RetentionRow| (row.subject.clone(), row.activity.clone(), row.category.clone());
    let (destroys, anonymises) = (of(Action::Destroy), of(Action::Anonymise));
    let mut moved: HashMap<RecordKey, bool> = HashMap::new();
    if !destroys.is_empty() {
        super::tell::enqueue_many(app, &destroys, RequestType::Erasure).await?;
        let keys: Vec<RecordKey> = destroys.iter().map(|r| key(r)).collect();
        let forgotten = forget_many(app, &keys, "retention").await?;
        moved.extend(keys.into_iter().zip(forgotten.into_iter().map(|f| f.ended_now)));
    }
    if !anonymises.is_empty() {
        super::tell::enqueue_many(app, &anonymises, RequestType::Anonymisation).await?;
        let records: Vec<(RecordKey, String)> = anonymises.iter().map(|r| (key(r), r.phase.clone())).collect();
        let ended = app.retention.store().end_many(&records, Phase::Ended.as_str(), "anonymise", now).await?;
        moved.extend(records.into_iter().map(|(k, _)| k).zip(ended));
    }
    Ok(due.iter().map(|d| moved.get(&key(d.row)).copied().unwrap_or(false)).collect())
}

/// Takes one action; true when this call moved the record (false: another run did first).
async fn act(app: &App, run_id: &str, row: &RetentionRow, action: Action) -> Result<bool, RetentionError> {
    let key: RecordKey = (row.subject.clone(), row.activity.clone(), row.category.clone());
    let store = app.retention.store();
    let now = crate::audit::event::to_micros(app.clock.now());
    let item = step(run_id, row, action, now);
    // Written before the action, so a run killed between the two leaves the step in the
    // evidence and the next run completes the action (the step is not written twice); written
    // even when another run moved the record first, so a killed run's work is in the evidence
    // of the run that finishes it. Taken back when the action fails.
    let written = store.item(&item).await?;
    match take(app, &key, row, run_id, action, now).await {
        Ok(moved) => Ok(moved),
        Err(e) => {
            if written {
                store.drop_item(&item.record_hash, &item.step).await?;
            }
            Err(e)
        }
    }
}

/// The action itself; true when this call moved the record.
async fn take(
    app: &App,
    key: &RecordKey,
    row: &RetentionRow,
    run_id: &str,
    action: Action,
    now: i64,
) -> Result<bool, RetentionError> {
    let store = app.retention.store();
    let moved = match action {
        Action::ToIntermediate => {
            super::tell::enqueue(app, row, RequestType::Archived).await?;
            store.advance(key, &row.phase, Phase::Intermediate.as_str(), None, now).await?
        }
        Action::Notice { deletion_on } => {
            // The citizen to tell, by the sector's pseudonym; nobody to tell when they never
            // recorded their pseudonyms (no request, code nor address: no way to reach them).
            if let Some(subject) = app.rights.subject_of_field(&row.subject).await? {
                crate::notify::retention_notice(app, &subject, &row.activity, deletion_on).await;
            }
            store.noticed(key, &deletion_on.to_string()).await?
        }
        Action::Destroy | Action::Anonymise => {
            let due = [Due { row, action, past_end: false }];
            end_batch(app, &due, now).await?.first().copied().unwrap_or(false)
        }
        Action::ArchiveReview => super::elimination::propose(app, run_id, row).await?,
    };
    Ok(moved)
}

/// The id of a record in the evidence: SHA-256 of its pseudonymous key. The DPO can check
/// whether a given citizen's record was acted on without the journal naming anyone.
pub fn record_hash(key: &RecordKey) -> String {
    crate::consent::sha256_hex(&format!("{}\n{}\n{}", key.0, key.1, key.2))
}

/// The run's journal entry: every step not yet journaled (this run's, and a killed run's),
/// counted per activity, category and action, with the holds skipped. The steps are read page
/// by page and hashed as they come, so the evidence of a run over a million records takes the
/// memory of one page.
async fn journal(app: &App, run_id: &str, report: &Report) -> Result<(), RetentionError> {
    let store = app.retention.store();
    let page = i64::from(app.settings.retention.batch);
    let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    // The lists the journaled steps put records on: this run's, and a killed run's it finishes.
    let mut runs: std::collections::BTreeSet<String> = std::collections::BTreeSet::from([run_id.to_owned()]);
    // SHA-256 over "hash:step" lines joined by "\n", in the evidence's order.
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut last: Option<RunItemRow> = None;
    let mut first = true;
    loop {
        let items = store.unjournaled_page(last.as_ref(), page).await?;
        let Some(end) = items.last().cloned() else { break };
        for i in &items {
            *counts.entry((i.activity.clone(), i.category.clone(), i.action.clone())).or_default() += 1;
            if i.action == Action::ArchiveReview.as_str() {
                runs.insert(i.run_id.clone());
            }
            if !first {
                digest.update(b"\n");
            }
            first = false;
            digest.update(format!("{}:{}", i.record_hash, i.step).as_bytes());
        }
        last = Some(end);
    }
    for ((activity, category, _, action), n) in &report.lines {
        if action == "held" {
            *counts.entry((activity.clone(), category.clone(), action.clone())).or_default() += n;
        }
    }
    let ident = |s: &str| Ident::new(s.to_owned()).map_err(|_| RetentionError::Journal);
    let mut lines = Vec::new();
    for ((activity, category, action), count) in counts {
        lines.push(RetentionCount {
            activity: ident(&activity)?,
            category: ident(&category)?,
            action: ident(&action)?,
            count,
        });
    }
    let mut elimination_lists = Vec::new();
    for list in store.lists().await? {
        if runs.contains(&list.run_id) {
            elimination_lists.push(ident(&list.reference)?);
        }
    }
    elimination_lists.sort();
    let operation = Operation::RetentionRun {
        run: ident(run_id)?,
        lines,
        records_sha256: ident(&crate::clock::hex(digest.finish().as_ref()))?,
        skipped_holds: report.skipped_holds,
        overdue: report.overdue,
        elimination_lists,
    };
    app.audit.append_sync(AuditEvent::system(operation, app.clock.now())).await.map_err(|_| RetentionError::Journal)?;
    if let Some(last) = &last {
        store.journaled_up_to(last).await?;
    }
    Ok(())
}

fn observe(app: &App, report: &Report) {
    let m = &app.metrics.retention;
    m.last_run.set(app.clock.now().unix_timestamp());
    for ((_, _, _, action), n) in &report.lines {
        let action: &'static str = match action.as_str() {
            "intermediate" => "intermediate",
            "notice" => "notice",
            "destroy" => "destroy",
            "anonymise" => "anonymise",
            "archive_review" => "archive_review",
            "held" => "held",
            _ => continue,
        };
        m.records.get_or_create(&super::metrics::ActionLabels { action }).inc_by(*n);
    }
    m.overdue.set(i64::try_from(report.overdue).unwrap_or(i64::MAX));
}

/// Today's date in Europe/Paris, the date durations count in.
pub fn today(app: &App) -> Date {
    crate::clock::paris_date(app.clock.now())
}
