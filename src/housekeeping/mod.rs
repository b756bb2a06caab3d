//! The gateway's own data follows declared durations (issue 15, item 8; docs/retention.md,
//! "The gateway's own data"). Each kind of record the gateway keeps for itself is deleted
//! once its duration has passed, through its store repository; consent proofs and the
//! journal are never touched here (the journal has its own path, `audit::retention`).
//!
//! The durations have defaults chosen from the sources in docs/retention.md
//! ([`OwnDataDurations::default`]); the purge takes the time as an argument, so tests drive it
//! with the injected clock.

use std::sync::Weak;
use std::time::Duration;

use crate::audit::event::{AuditEvent, Ident, Operation, PurgeCount};

use futures_util::future::BoxFuture;
use time::OffsetDateTime;

use crate::app::App;
use crate::jobs::{Handler, JobError, JobsError, NewJob};
use crate::store::{JobRow, Store, StoreError};

/// The job kind of the daily purge of the gateway's own data.
pub const OWN_DATA_KIND: &str = "retention.own_data";

pub use crate::config::OwnDataDurations;

/// The kinds of the gateway's own records this module purges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One-time consent codes past their expiry, never read out.
    ConsentCodes,
    Exports,
    FinishedJobs,
    DeadJobs,
    /// Notices to citizens, once sent or undeliverable.
    NoticeMessages,
    /// Contact addresses of citizens with no activity left.
    NotifyContacts,
    /// Files of closed rights requests (request, applications' answers, exports).
    RightsRequests,
}

/// How many records of one kind a purge deleted (counts only: no ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    pub kind: Kind,
    pub count: u64,
}

/// Deletes every record of the gateway's own data whose duration has passed at `now`.
pub async fn purge_own_data(
    store: &Store,
    d: &OwnDataDurations,
    now: OffsetDateTime,
) -> Result<Vec<Purged>, StoreError> {
    own_data(store, d, now, false).await
}

/// What [`purge_own_data`] would delete at `now`, counted per kind; changes nothing.
pub async fn plan_own_data(
    store: &Store,
    d: &OwnDataDurations,
    now: OffsetDateTime,
) -> Result<Vec<Purged>, StoreError> {
    own_data(store, d, now, true).await
}

async fn own_data(
    store: &Store,
    d: &OwnDataDurations,
    now: OffsetDateTime,
    dry: bool,
) -> Result<Vec<Purged>, StoreError> {
    let now_us = micros(now);
    let before = |keep: Duration| now_us.saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX));
    let (notify, jobs) = (store.notify(), store.jobs());
    Ok(vec![
        Purged { kind: Kind::ConsentCodes, count: store.consent().purge_expired_codes(now_us, dry).await? },
        Purged {
            kind: Kind::Exports,
            count: store.exports().purge_made_before(before(d.exports_after_ready), dry).await?,
        },
        Purged { kind: Kind::FinishedJobs, count: jobs.purge_done(before(d.finished_jobs), dry).await? },
        Purged { kind: Kind::DeadJobs, count: jobs.purge_dead(before(d.dead_jobs), dry).await? },
        Purged { kind: Kind::NoticeMessages, count: notify.purge_settled_before(before(d.notice_message), dry).await? },
        Purged { kind: Kind::NotifyContacts, count: notify.purge_idle_contacts(before(d.notify_contact), dry).await? },
        Purged {
            kind: Kind::RightsRequests,
            count: store.rights().purge_closed_before(before(d.rights_requests), dry).await?,
        },
    ])
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

impl Kind {
    /// The name the journal and the command line give the kind.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ConsentCodes => "consent_codes",
            Self::Exports => "exports",
            Self::FinishedJobs => "finished_jobs",
            Self::DeadJobs => "dead_jobs",
            Self::NoticeMessages => "notice_messages",
            Self::NotifyContacts => "notify_contacts",
            Self::RightsRequests => "rights_requests",
        }
    }
}

/// Why a purge of the gateway's own data did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("the store is unavailable")]
    Store(#[from] StoreError),
    #[error("the purge could not be journaled")]
    Journal,
}

/// Purges the gateway's own data due at the app's time, with the configured durations, and
/// journals the counts per kind (no ids): the job's and `guichet retention own-data`'s path.
pub async fn purge_and_journal(app: &App) -> Result<Vec<Purged>, PurgeError> {
    let now = app.clock.now();
    let purged = purge_own_data(&app.store, &app.settings.retention.own_data, now).await?;
    let lines = purged
        .iter()
        .map(|p| Ok(PurgeCount { kind: Ident::new(p.kind.name()).map_err(|_| PurgeError::Journal)?, count: p.count }))
        .collect::<Result<Vec<_>, PurgeError>>()?;
    let event = AuditEvent::system(Operation::OwnDataPurge { lines }, now);
    app.audit.append_sync(event).await.map_err(|_| PurgeError::Journal)?;
    Ok(purged)
}

/// The daily purge as a job: the job runner gives each run to exactly one instance sharing the
/// store, and the dedup key (one per day) makes instances that schedule it together agree on
/// one run. The retention scheduler queues each day's run (`retention::schedule`).
pub struct OwnDataJob {
    pub app: Weak<App>,
}

impl Handler for OwnDataJob {
    fn kind(&self) -> &'static str {
        OWN_DATA_KIND
    }

    fn run<'a>(&'a self, _job: &'a JobRow) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let app = self.app.upgrade().ok_or(JobError::Retry("the gateway is stopping"))?;
            let purged = purge_and_journal(&app).await.map_err(|e| match e {
                PurgeError::Store(_) => JobError::Retry("the store is unavailable"),
                PurgeError::Journal => JobError::Retry("the purge could not be journaled"),
            })?;
            for p in &purged {
                tracing::info!(kind = p.kind.name(), count = p.count, "own data purged");
            }
            Ok(())
        })
    }
}

/// Schedules the purge of the day `at` falls in, at `at` (once per day, whoever asks).
pub async fn schedule(app: &App, at: OffsetDateTime) -> Result<(), JobsError> {
    let mut job = NewJob::new(OWN_DATA_KIND, serde_json::json!({}))?;
    job.dedup_key = Some(format!("{OWN_DATA_KIND}:{}", at.date()));
    job.run_at = Some(at);
    app.jobs.enqueue(job).await.map(drop)
}
