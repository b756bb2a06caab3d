//! The one durable job runner: rights propagation, notices, retention runs and alerts all go
//! through it instead of each keeping a queue of its own.
//!
//! - A job is a kind (a short name a [`Handler`] answers to), a JSON payload with pseudonymous
//!   ids only, and an optional deduplication key: enqueueing the same key twice makes one job,
//!   so callers may enqueue again after a crash without doubling the work.
//! - A job is claimed by exactly one instance among those sharing the store, under a lease.
//!   An instance killed mid-job leaves its lease to run out; the job is then claimed again, so
//!   nothing is lost (handlers must be idempotent: the same job may run twice after a kill).
//! - A failure is retried with exponential back-off; after `max_attempts` the job is "dead"
//!   (kept with its last error for an operator), never silently dropped.
//!
//! Time comes from the injected clock, so tests drive back-off and leases.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use time::OffsetDateTime;

use crate::clock::{Clock, Random, random_hex};
use crate::store::{JobCounts, JobRow, Store, StoreError};

/// First retry delay; each further attempt doubles it, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
pub const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// How long a claimed job is held before another instance may take it over.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

/// What a handler reports when a job did not succeed. Messages are fixed texts: they are
/// stored and shown to operators, so they never carry values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt later (an application timed out, the network failed).
    #[error("{0}")]
    Retry(&'static str),
    /// Another attempt cannot help (the payload is invalid, the target refused for good).
    #[error("{0}")]
    Permanent(&'static str),
}

/// Runs the jobs of one kind.
pub trait Handler: Send + Sync {
    fn kind(&self) -> &'static str;
    fn run<'a>(&'a self, job: &'a JobRow) -> BoxFuture<'a, Result<(), JobError>>;
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: &'static str,
    pub dedup_key: Option<String>,
    pub payload: serde_json::Value,
    /// Not before this time (now when `None`).
    pub run_at: Option<OffsetDateTime>,
    pub max_attempts: u32,
}

impl NewJob {
    pub fn new(kind: &'static str, payload: impl Serialize) -> Result<Self, JobsError> {
        let payload = serde_json::to_value(payload).map_err(|_| JobsError::Payload)?;
        Ok(Self { kind, dedup_key: None, payload, run_at: None, max_attempts: 10 })
    }

    pub fn dedup(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    pub fn not_before(mut self, at: OffsetDateTime) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a job payload could not be encoded")]
    Payload,
    #[error("the random number generator failed")]
    Random,
}

/// What one pass of the runner did with the job it claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done {
        id: String,
    },
    Retrying {
        id: String,
        at: OffsetDateTime,
    },
    Dead {
        id: String,
    },
    /// The lease ran out while the handler worked and another instance holds the job now.
    LeaseLost {
        id: String,
    },
}

/// The job service: enqueue from anywhere, run with the handlers registered at start.
pub struct Jobs {
    store: Store,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    instance: String,
    lease: Duration,
    /// Filled at start-up, after the services the handlers call exist.
    handlers: std::sync::RwLock<HashMap<&'static str, Arc<dyn Handler>>>,
    /// Wakes the runner loop when a job is enqueued, so work starts at once, not at the next tick.
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("instance", &self.instance).field("kinds", &self.kinds()).finish()
    }
}

impl Jobs {
    pub fn new(store: Store, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Result<Self, JobsError> {
        let instance = random_hex::<8>(random.as_ref()).map_err(|_| JobsError::Random)?;
        Ok(Self {
            store,
            clock,
            random,
            instance,
            lease: DEFAULT_LEASE,
            handlers: std::sync::RwLock::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Registers the handler of one kind (at start, before the runner loop).
    pub fn register(&self, handler: Arc<dyn Handler>) {
        let mut handlers = self.handlers.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        handlers.insert(handler.kind(), handler);
    }

    fn handler(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(kind).cloned()
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn kinds(&self) -> Vec<&'static str> {
        let handlers = self.handlers.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut k: Vec<_> = handlers.keys().copied().collect();
        k.sort_unstable();
        k
    }

    /// Queues a job; returns its id, or the existing job's id when its dedup key is known.
    pub async fn enqueue(&self, job: NewJob) -> Result<String, JobsError> {
        let row = self.row(&job)?;
        let id = row.id.clone();
        let repo = self.store.jobs();
        if repo.insert(&row).await? {
            self.wake.notify_one();
            return Ok(id);
        }
        let key = job.dedup_key.unwrap_or_default();
        Ok(repo.by_dedup_key(&key).await?.map_or(id, |existing| existing.id))
    }

    /// Enqueues many jobs in one store transaction (a retention run's batch), each
    /// deduplicated by its key as [`Jobs::enqueue`]; returns how many were new.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<usize, JobsError> {
        let rows = jobs.iter().map(|j| self.row(j)).collect::<Result<Vec<_>, _>>()?;
        let inserted = self.store.jobs().insert_many(&rows).await?.into_iter().filter(|new| *new).count();
        if inserted > 0 {
            self.wake.notify_one();
        }
        Ok(inserted)
    }

    fn row(&self, job: &NewJob) -> Result<JobRow, JobsError> {
        let now = micros(self.clock.now());
        let id = random_hex::<16>(self.random.as_ref()).map_err(|_| JobsError::Random)?;
        Ok(JobRow {
            id,
            kind: job.kind.to_owned(),
            dedup_key: job.dedup_key.clone(),
            payload: job.payload.to_string(),
            status: "queued".into(),
            attempts: 0,
            max_attempts: i64::from(job.max_attempts),
            run_at_us: job.run_at.map_or(now, micros),
            locked_by: None,
            locked_until_us: None,
            last_error: None,
            created_at_us: now,
            updated_at_us: now,
        })
    }

    /// Claims and runs one due job; `None` when nothing is due.
    pub async fn run_one(&self) -> Result<Option<Outcome>, JobsError> {
        let now = self.clock.now();
        let lease_until = now + self.lease;
        let kinds = self.kinds();
        let Some(job) = self.store.jobs().claim(&kinds, &self.instance, micros(now), micros(lease_until)).await? else {
            return Ok(None);
        };
        let result = match self.handler(job.kind.as_str()) {
            Some(h) => h.run(&job).await,
            None => Err(JobError::Permanent("no handler for this kind of job")),
        };
        self.settle(&job, result).await.map(Some)
    }

    /// Runs due jobs until none is left or `max` ran; returns what happened to each.
    pub async fn run_due(&self, max: usize) -> Result<Vec<Outcome>, JobsError> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.run_one().await? {
                Some(o) => out.push(o),
                None => break,
            }
        }
        Ok(out)
    }

    pub async fn counts(&self) -> Result<JobCounts, JobsError> {
        Ok(self.store.jobs().counts().await?)
    }

    pub async fn get(&self, id: &str) -> Result<Option<JobRow>, JobsError> {
        Ok(self.store.jobs().get(id).await?)
    }

    async fn settle(&self, job: &JobRow, result: Result<(), JobError>) -> Result<Outcome, JobsError> {
        let now = self.clock.now();
        let repo = self.store.jobs();
        let id = job.id.clone();
        let (status, run_at, error, outcome) = match result {
            Ok(()) => ("done", None, None, Outcome::Done { id: id.clone() }),
            Err(JobError::Retry(why)) if job.attempts < job.max_attempts => {
                let at = now + backoff(job.attempts);
                ("queued", Some(micros(at)), Some(why), Outcome::Retrying { id: id.clone(), at })
            }
            Err(JobError::Retry(why) | JobError::Permanent(why)) => {
                ("dead", None, Some(why), Outcome::Dead { id: id.clone() })
            }
        };
        if !repo.finish(&job.id, &self.instance, status, run_at, error, micros(now)).await? {
            return Ok(Outcome::LeaseLost { id });
        }
        if status == "dead" {
            tracing::error!(job = %job.id, kind = %job.kind, attempts = job.attempts, "job failed for good");
        }
        Ok(outcome)
    }
}

/// The wait before attempt `attempts + 1`: 30 s, 1 min, 2 min, … up to six hours.
pub fn backoff(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    FIRST_BACKOFF.saturating_mul(1u32 << doublings).min(MAX_BACKOFF)
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// How often the runner looks for due jobs when nothing wakes it (retries coming due, jobs
/// enqueued by another instance).
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Runs due jobs every `every`, and at once when this instance enqueues one, until `stop`
/// turns true; each pass drains what is due.
pub async fn run_loop(jobs: Arc<Jobs>, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = jobs.run_due(100).await {
            tracing::warn!(error = %e, "job runner pass failed; trying again at the next tick");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = jobs.wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_stops_at_six_hours() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(120));
        assert_eq!(backoff(10), Duration::from_secs(30 * 512));
        assert_eq!(backoff(11), MAX_BACKOFF);
        assert_eq!(backoff(1000), MAX_BACKOFF);
        assert_eq!(backoff(0), Duration::from_secs(30));
    }
}
