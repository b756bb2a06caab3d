//! The durable job runner on both engines: deduplication, exactly-once claims across
//! instances, back-off on the injected clock, dead jobs, and a job taken over after its
//! instance died mid-run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use guichet::clock::{FixedClock, SystemRandom};
use guichet::jobs::{Handler, JobError, Jobs, NewJob, Outcome};
use guichet::store::{JobRow, Store, StoreOptions};
use secrecy::SecretString;
use time::macros::datetime;

use crate::helpers::{Backend, fresh_store_url, init};
use crate::on_both_stores;

/// Records every run of every job, and fails the first `fail_first` runs of each.
struct Recorder {
    runs: Mutex<HashMap<String, u32>>,
    fail_first: u32,
    permanent: bool,
}

impl Recorder {
    fn new(fail_first: u32, permanent: bool) -> Arc<Self> {
        Arc::new(Self { runs: Mutex::new(HashMap::new()), fail_first, permanent })
    }

    fn runs_of(&self, id: &str) -> u32 {
        self.runs.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

impl Handler for Recorder {
    fn kind(&self) -> &'static str {
        "test.record"
    }

    fn run<'a>(&'a self, job: &'a JobRow) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let n = {
                let mut runs = self.runs.lock().unwrap();
                let n = runs.entry(job.id.clone()).or_default();
                *n += 1;
                *n
            };
            // Yield so that two instances really interleave.
            tokio::task::yield_now().await;
            match (n <= self.fail_first, self.permanent) {
                (false, _) => Ok(()),
                (true, false) => Err(JobError::Retry("the application did not answer")),
                (true, true) => Err(JobError::Permanent("the application refused the request")),
            }
        })
    }
}

/// Starts its job, then never finishes (an instance killed mid-job).
struct Hangs(Arc<tokio::sync::Notify>);

impl Handler for Hangs {
    fn kind(&self) -> &'static str {
        "test.record"
    }

    fn run<'a>(&'a self, _job: &'a JobRow) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            self.0.notify_one();
            std::future::pending::<()>().await;
            Ok(())
        })
    }
}

struct Fixture {
    url: SecretString,
    clock: FixedClock,
    _dir: tempfile::TempDir,
}

async fn fixture(backend: Backend) -> Fixture {
    init();
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_store_url(backend, dir.path()).await;
    let store = Store::connect(&url, &StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    Fixture { url, clock: FixedClock::at(datetime!(2026-12-03 10:00 UTC)), _dir: dir }
}

/// One gateway instance's job service: its own pool on the shared store.
async fn instance(f: &Fixture, handler: Arc<dyn Handler>) -> Jobs {
    let store = Store::connect(&f.url, &StoreOptions::default()).await.unwrap();
    let jobs = Jobs::new(store, Arc::new(f.clock.clone()), Arc::new(SystemRandom::new())).unwrap();
    jobs.register(handler);
    jobs
}

fn job(n: usize) -> NewJob {
    NewJob::new("test.record", serde_json::json!({ "request": format!("r{n}") })).unwrap()
}

async fn enqueueing_the_same_key_twice_makes_one_job(backend: Backend) {
    let f = fixture(backend).await;
    let rec = Recorder::new(0, false);
    let jobs = instance(&f, rec.clone()).await;
    let a = jobs.enqueue(job(1).dedup("propagate:r1:cantine")).await.unwrap();
    let b = jobs.enqueue(job(1).dedup("propagate:r1:cantine")).await.unwrap();
    assert_eq!(a, b);
    let c = jobs.enqueue(job(2).dedup("propagate:r2:cantine")).await.unwrap();
    assert_ne!(a, c);
    assert_eq!(jobs.counts().await.unwrap().queued, 2);
    let outcomes = jobs.run_due(10).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(rec.runs_of(&a), 1);
    // Done jobs keep their key: enqueueing again after a crash does not run it again.
    assert_eq!(jobs.enqueue(job(1).dedup("propagate:r1:cantine")).await.unwrap(), a);
    assert!(jobs.run_due(10).await.unwrap().is_empty());
    assert_eq!(rec.runs_of(&a), 1);
}

async fn two_instances_run_each_job_exactly_once(backend: Backend) {
    let f = fixture(backend).await;
    let rec = Recorder::new(0, false);
    let one = Arc::new(instance(&f, rec.clone()).await);
    let two = Arc::new(instance(&f, rec.clone()).await);
    let mut ids = Vec::new();
    for n in 0..120 {
        ids.push(one.enqueue(job(n)).await.unwrap());
    }
    let (a, b) = tokio::join!(
        tokio::spawn({
            let one = one.clone();
            async move { one.run_due(1000).await.unwrap() }
        }),
        tokio::spawn({
            let two = two.clone();
            async move { two.run_due(1000).await.unwrap() }
        }),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 120, "every job ran once in all");
    for id in &ids {
        assert_eq!(rec.runs_of(id), 1, "job {id} ran {} times", rec.runs_of(id));
    }
    let counts = one.counts().await.unwrap();
    assert_eq!((counts.done, counts.queued, counts.running), (120, 0, 0));
}

async fn a_failed_job_waits_its_back_off_then_runs_again(backend: Backend) {
    let f = fixture(backend).await;
    let rec = Recorder::new(2, false);
    let jobs = instance(&f, rec.clone()).await;
    let id = jobs.enqueue(job(1)).await.unwrap();
    let first = jobs.run_one().await.unwrap().unwrap();
    assert!(
        matches!(first, Outcome::Retrying { ref at, .. } if *at == datetime!(2026-12-03 10:00:30 UTC)),
        "{first:?}"
    );
    assert_eq!(jobs.run_one().await.unwrap(), None, "not due before its back-off");
    f.clock.advance(time::Duration::seconds(30));
    assert!(matches!(jobs.run_one().await.unwrap(), Some(Outcome::Retrying { .. })));
    f.clock.advance(time::Duration::seconds(59));
    assert_eq!(jobs.run_one().await.unwrap(), None, "the second wait is a minute");
    f.clock.advance(time::Duration::seconds(1));
    assert_eq!(jobs.run_one().await.unwrap(), Some(Outcome::Done { id: id.clone() }));
    let row = jobs.get(&id).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("done", 3));
    assert_eq!(rec.runs_of(&id), 3);
}

async fn a_job_that_keeps_failing_is_kept_dead_with_its_reason(backend: Backend) {
    let f = fixture(backend).await;
    let jobs = instance(&f, Recorder::new(u32::MAX, true)).await;
    let id = jobs.enqueue(job(1)).await.unwrap();
    assert_eq!(jobs.run_one().await.unwrap(), Some(Outcome::Dead { id: id.clone() }));
    let row = jobs.get(&id).await.unwrap().unwrap();
    assert_eq!(row.status, "dead");
    assert_eq!(row.last_error.as_deref(), Some("the application refused the request"));

    let retrying = instance(&f, Recorder::new(u32::MAX, false)).await;
    let id = retrying.enqueue(job(2).max_attempts(2)).await.unwrap();
    assert!(matches!(retrying.run_one().await.unwrap(), Some(Outcome::Retrying { .. })));
    f.clock.advance(time::Duration::minutes(1));
    assert_eq!(retrying.run_one().await.unwrap(), Some(Outcome::Dead { id: id.clone() }));
    f.clock.advance(time::Duration::days(1));
    assert_eq!(retrying.run_one().await.unwrap(), None, "a dead job is never claimed again");
}

async fn a_job_whose_instance_died_is_taken_over_after_its_lease(backend: Backend) {
    let f = fixture(backend).await;
    let started = Arc::new(tokio::sync::Notify::new());
    let dying = Arc::new(instance(&f, Arc::new(Hangs(started.clone()))).await);
    let rec = Recorder::new(0, false);
    let survivor = instance(&f, rec.clone()).await;
    let id = dying.enqueue(job(1)).await.unwrap();
    let task = tokio::spawn({
        let dying = dying.clone();
        async move { dying.run_one().await }
    });
    started.notified().await;
    task.abort();
    assert_eq!(survivor.run_one().await.unwrap(), None, "held under the dead instance's lease");
    f.clock.advance(time::Duration::seconds(301));
    assert_eq!(survivor.run_one().await.unwrap(), Some(Outcome::Done { id: id.clone() }));
    let row = survivor.get(&id).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts, rec.runs_of(&id)), ("done", 2, 1));
}

/// A running gateway works its queue by itself: a job enqueued on it runs without anyone
/// calling the runner (woken at once, not at the next poll).
async fn a_running_gateway_runs_enqueued_jobs_by_itself(backend: Backend) {
    let app = crate::helpers::spawn_app().backend(backend).start().await;
    let rec = Recorder::new(0, false);
    app.state.jobs.register(rec.clone());
    let id = app.state.jobs.enqueue(job(1)).await.unwrap();
    // Generous: no timing is asserted, only that the runner got to it on its own.
    for _ in 0..500 {
        if app.state.jobs.get(&id).await.unwrap().is_some_and(|j| j.status == "done") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.state.jobs.get(&id).await.unwrap().unwrap().status, "done");
    assert_eq!(rec.runs_of(&id), 1, "the job ran once without a call to the runner");
}

on_both_stores!(
    a_running_gateway_runs_enqueued_jobs_by_itself,
    enqueueing_the_same_key_twice_makes_one_job,
    two_instances_run_each_job_exactly_once,
    a_failed_job_waits_its_back_off_then_runs_again,
    a_job_that_keeps_failing_is_kept_dead_with_its_reason,
    a_job_whose_instance_died_is_taken_over_after_its_lease,
);
