//! The retention engine (docs/retention.md): declared durations enforced on schedule. A side
//! path beside the request path, like `rights`: it records what starts each clock (`record`,
//! `api`), plans (`planner`, pure), acts through the existing services (`run`: the vault's
//! crypto-erasure, the rights contract to tell applications, notices), and leaves evidence in
//! the journal. Reveals of archived or forgotten values are limited in `proxy::reveal`.

pub mod api;
pub mod cli;
pub mod elimination;
pub mod metrics;
pub mod pages;
pub mod planner;
pub mod record;
pub mod reveal;
pub mod run;
pub mod tell;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use time::Date;

use crate::clock::Clock;
use crate::store::{HoldRow, RecordKey, RetentionEventRow, RetentionRow, Store, StoreError};

pub use planner::{Action, Phase};
pub use run::{Forgotten, forget};

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the gateway does not know this subject for this activity")]
    UnknownSubject,
    #[error("no such activity or event in the policies")]
    UnknownEvent,
    #[error("another run holds the lease")]
    Busy,
    #[error("cannot destroy a data key")]
    Shred,
    #[error("cannot write the journal")]
    Journal,
    #[error("the random number generator failed")]
    Random,
    #[error(transparent)]
    Rights(#[from] crate::rights::service::RightsError),
    #[error(transparent)]
    Jobs(#[from] crate::jobs::JobsError),
}

/// Retention's records, events and holds; everything else goes through the other services.
#[derive(Debug)]
pub struct RetentionService {
    store: Store,
    clock: Arc<dyn Clock>,
}

/// An event an application reported, as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedEvent {
    pub route: String,
    pub event_id: String,
    pub activity: String,
    pub event: String,
    pub subject: String,
    pub occurred_at_us: i64,
}

impl RetentionService {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    fn now_us(&self) -> i64 {
        crate::audit::event::to_micros(self.clock.now())
    }

    /// Records a citizen's use of the activity for every category it declares.
    pub async fn seen(&self, seen: &record::Seen, categories: &[String]) -> Result<(), RetentionError> {
        for category in categories {
            let row = RetentionRow {
                subject: seen.field_subject.clone(),
                activity: seen.activity.clone(),
                category: category.clone(),
                route: Some(seen.route.clone()),
                app_subject: seen.app_subject.clone(),
                collected_at_us: seen.at_us,
                last_activity_at_us: Some(seen.at_us),
                event_at_us: None,
                withdrawn_at_us: None,
                phase: Phase::Active.as_str().to_owned(),
                phase_since_us: seen.at_us,
                end_action: None,
                notice_deletion_on: None,
            };
            self.store.retention().seen(&row).await?;
        }
        Ok(())
    }

    /// Stores an application's event once and starts the clocks of the categories counting
    /// from it. Returns whether the event was new (a repeat changes nothing).
    pub async fn report(&self, e: &ReportedEvent, categories: &[String]) -> Result<bool, RetentionError> {
        let store = self.store.retention();
        if !store.knows(&e.route, &e.subject, &e.activity).await? {
            return Err(RetentionError::UnknownSubject);
        }
        let row = RetentionEventRow {
            route: e.route.clone(),
            event_id: e.event_id.clone(),
            activity: e.activity.clone(),
            event: e.event.clone(),
            occurred_at_us: e.occurred_at_us,
            received_at_us: self.now_us(),
        };
        if !store.insert_event(&row).await? {
            return Ok(false);
        }
        store.set_event(&e.route, &e.subject, &e.activity, categories, e.occurred_at_us).await?;
        Ok(true)
    }

    /// The citizen withdrew consent to the activity: its clocks start now at the latest.
    pub async fn withdrawn(&self, field_subject: &str, activity: &str) -> Result<(), RetentionError> {
        Ok(self.store.retention().withdrawn(field_subject, activity, self.now_us()).await?)
    }

    /// The records of (subject, activity), one per category.
    pub async fn records(&self, field_subject: &str, activity: &str) -> Result<Vec<RetentionRow>, RetentionError> {
        Ok(self.store.retention().of(field_subject, activity).await?)
    }

    /// The phase of each category of (subject, activity) the gateway knows.
    pub async fn phases(&self, field_subject: &str, activity: &str) -> Result<Vec<(String, Phase)>, RetentionError> {
        let rows = self.records(field_subject, activity).await?;
        Ok(rows.into_iter().filter_map(|r| Phase::parse(&r.phase).map(|p| (r.category, p))).collect())
    }

    /// Lets the store fold the writes of the pages acted on so far (`Store::checkpoint`).
    pub async fn checkpoint(&self) -> Result<(), RetentionError> {
        Ok(self.store.checkpoint().await?)
    }

    pub async fn page(&self, after: Option<&RecordKey>, limit: i64) -> Result<Vec<RetentionRow>, RetentionError> {
        Ok(self.store.retention().page(after, limit).await?)
    }

    pub async fn hold(&self, subject: &str, activity: &str, reason: &str) -> Result<(), RetentionError> {
        let row = HoldRow {
            subject: subject.to_owned(),
            activity: activity.to_owned(),
            reason: reason.to_owned(),
            since_us: self.now_us(),
        };
        Ok(self.store.retention().hold(&row).await?)
    }

    pub async fn release(&self, subject: &str, activity: &str) -> Result<bool, RetentionError> {
        Ok(self.store.retention().release(subject, activity).await?)
    }

    pub async fn holds(&self) -> Result<Vec<HoldRow>, RetentionError> {
        Ok(self.store.retention().holds().await?)
    }

    pub async fn held(&self, subject: &str, activity: &str) -> Result<bool, RetentionError> {
        Ok(self.store.retention().held(subject, activity).await?)
    }

    /// The (subject, activity) pairs among `keys` under a DPO hold, in one read (a run's page).
    pub async fn held_among(&self, keys: &[(&str, &str)]) -> Result<HashSet<(String, String)>, RetentionError> {
        let subjects: Vec<&str> = keys.iter().map(|(s, _)| *s).collect();
        let wanted: HashSet<&(&str, &str)> = keys.iter().collect();
        let held = self.store.retention().held_among(&subjects).await?;
        Ok(held.into_iter().filter(|(s, a)| wanted.contains(&(s.as_str(), a.as_str()))).collect())
    }

    /// [`RetentionService::records`] for each (subject, activity) among `keys`, in one read;
    /// a pair without records is absent.
    pub async fn records_of_many(
        &self,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), Vec<RetentionRow>>, RetentionError> {
        let subjects: Vec<&str> = keys.iter().map(|(s, _)| *s).collect();
        let wanted: HashSet<&(&str, &str)> = keys.iter().collect();
        let mut out: HashMap<(String, String), Vec<RetentionRow>> = HashMap::new();
        for row in self.store.retention().of_subjects(&subjects).await? {
            if wanted.contains(&(row.subject.as_str(), row.activity.as_str())) {
                out.entry((row.subject.clone(), row.activity.clone())).or_default().push(row);
            }
        }
        Ok(out)
    }

    pub(crate) fn store(&self) -> crate::store::RetentionRepo<'_> {
        self.store.retention()
    }
}

/// A stored microsecond time as a date in Europe/Paris: the day durations count in (as
/// `run::today`), and the day the bordereau and the pages show.
pub fn date_of(us: i64) -> Option<Date> {
    crate::audit::event::from_micros(us).map(crate::clock::paris_date)
}

/// Journals a hold set or lifted by the DPO (the reason stays in the store: it is free text).
pub async fn journal_hold(
    app: &crate::app::App,
    subject: &str,
    activity: &str,
    action: &str,
) -> Result<(), RetentionError> {
    use crate::audit::{AuditEvent, Ident, Operation};
    let ident = |s: &str| Ident::new(s.to_owned()).map_err(|_| RetentionError::Journal);
    let mut event = AuditEvent::system(Operation::DpoAction { action: ident(action)? }, app.clock.now());
    event.role = ident("operator")?;
    event.activity = Some(ident(activity)?);
    event.subject = Some(ident(subject)?);
    app.audit.append_sync(event).await.map_err(|_| RetentionError::Journal)?;
    Ok(())
}

/// The `retention.run` job, queued by [`schedule`] once per `run_every` across instances.
pub const RUN_KIND: &str = "retention.run";

pub struct RunJob {
    pub app: std::sync::Weak<crate::app::App>,
}

impl crate::jobs::Handler for RunJob {
    fn kind(&self) -> &'static str {
        RUN_KIND
    }

    fn run<'a>(
        &'a self,
        _job: &'a crate::store::JobRow,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::jobs::JobError>> {
        use crate::jobs::JobError;
        Box::pin(async move {
            let app = self.app.upgrade().ok_or(JobError::Retry("the gateway is stopping"))?;
            let opts = run::Options { today: run::today(&app), dry_run: false };
            match run::run(&app, opts, &|_| {}).await {
                Ok(_) => {
                    app.metrics.alerts.retention_last_run_failed.set(0);
                    Ok(())
                }
                Err(RetentionError::Busy) => Ok(()),
                Err(e) => {
                    // The DPO is alerted (alerts::check, docs/alerts.md) until a run succeeds.
                    app.metrics.alerts.retention_last_run_failed.set(1);
                    tracing::warn!(error = %e, "retention run failed; it will be tried again");
                    Err(JobError::Retry("the retention run failed"))
                }
            }
        })
    }
}

/// Queues a `retention.run` job every `run_every` until shutdown. The job's key is the
/// period's number, so instances sharing the store queue one job per period between them,
/// and the job runner gives it to exactly one.
pub async fn schedule(app: std::sync::Arc<crate::app::App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = app.settings.retention.run_every;
    if every.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(every.min(std::time::Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = app.clock.now().unix_timestamp();
                let period = now / i64::try_from(every.as_secs().max(1)).unwrap_or(i64::MAX);
                let job = crate::jobs::NewJob::new(RUN_KIND, serde_json::json!({ "period": period }))
                    .map(|j| j.dedup(format!("{RUN_KIND}:{period}")).max_attempts(3));
                match job {
                    Ok(job) => {
                        if let Err(e) = app.jobs.enqueue(job).await {
                            tracing::warn!(error = %e, "cannot queue the retention run");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot queue the retention run"),
                }
                // The gateway's own data: one purge a day, whichever instance ticks first.
                if let Err(e) = crate::housekeeping::schedule(&app, app.clock.now()).await {
                    tracing::warn!(error = %e, "cannot queue the purge of the gateway's own data");
                }
            }
            _ = stop.changed() => return,
        }
    }
}
