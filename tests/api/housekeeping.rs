//! The gateway's own data follows declared durations (issue 15, item 8), on both engines:
//! each kind is deleted only once its duration has passed, with the time given as the
//! injected clock would.

use guichet::housekeeping::{Kind, OwnDataDurations, Purged, purge_own_data};
use guichet::store::{ExportRow, JobRow};
use time::Duration;

use crate::helpers::Backend;
use crate::keys::Setup;

const T0: time::OffsetDateTime = time::macros::datetime!(2026-11-28 12:00 UTC);

fn us(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap()
}

fn job(id: &str, status: &str, at: time::OffsetDateTime) -> JobRow {
    JobRow {
        id: id.into(),
        kind: "test.kind".into(),
        dedup_key: None,
        payload: "{}".into(),
        status: status.into(),
        attempts: 1,
        max_attempts: 1,
        run_at_us: us(at),
        locked_by: None,
        locked_until_us: None,
        last_error: None,
        created_at_us: us(at),
        updated_at_us: us(at),
    }
}

fn count(purged: &[Purged], kind: Kind) -> u64 {
    purged.iter().find(|p| p.kind == kind).map_or(0, |p| p.count)
}

async fn each_kind_is_purged_only_after_its_duration(backend: Backend) {
    let s = Setup::new(backend).await;
    let store = s.store().await;
    let d = OwnDataDurations::default();
    store.consent().insert_code("code-hash", "subject", us(T0 + Duration::minutes(15))).await.unwrap();
    store
        .exports()
        .insert(&ExportRow {
            id: "export-1".into(),
            request_id: "request-1".into(),
            subject: "subject".into(),
            field_subject: None,
            session_hash: "session-hash".into(),
            token_hash: "token-hash".into(),
            sealed: vec![1, 2, 3],
            created_at_us: us(T0),
            // A link valid longer than the export may be kept: the duration wins.
            expires_at_us: us(T0 + Duration::days(30)),
            downloads: 0,
        })
        .await
        .unwrap();
    store.jobs().insert(&job("done-1", "done", T0)).await.unwrap();
    store.jobs().insert(&job("dead-1", "dead", T0)).await.unwrap();
    store.jobs().insert(&job("queued-1", "queued", T0)).await.unwrap();

    // Before any duration: nothing goes.
    let purged = purge_own_data(&store, &d, T0 + Duration::minutes(10)).await.unwrap();
    assert!(purged.iter().all(|p| p.count == 0), "{purged:?}");
    // The code has expired; nothing else yet.
    let purged = purge_own_data(&store, &d, T0 + Duration::minutes(16)).await.unwrap();
    assert_eq!(count(&purged, Kind::ConsentCodes), 1);
    assert_eq!(purged.iter().map(|p| p.count).sum::<u64>(), 1, "{purged:?}");
    assert!(store.consent().take_code("code-hash", us(T0)).await.unwrap().is_none());
    // Six days after it was ready the export stays; past seven days it goes.
    let purged = purge_own_data(&store, &d, T0 + Duration::days(6)).await.unwrap();
    assert_eq!(count(&purged, Kind::Exports), 0);
    assert!(store.exports().by_token_hash("token-hash").await.unwrap().is_some());
    let purged = purge_own_data(&store, &d, T0 + Duration::days(7) + Duration::seconds(1)).await.unwrap();
    assert_eq!(count(&purged, Kind::Exports), 1);
    assert!(store.exports().by_token_hash("token-hash").await.unwrap().is_none());
    // Finished jobs after 30 days, dead ones after a year; queued jobs never.
    let purged = purge_own_data(&store, &d, T0 + Duration::days(31)).await.unwrap();
    assert_eq!((count(&purged, Kind::FinishedJobs), count(&purged, Kind::DeadJobs)), (1, 0));
    assert!(store.jobs().get("done-1").await.unwrap().is_none());
    assert!(store.jobs().get("dead-1").await.unwrap().is_some());
    let purged = purge_own_data(&store, &d, T0 + Duration::days(366)).await.unwrap();
    assert_eq!(count(&purged, Kind::DeadJobs), 1);
    assert!(store.jobs().get("dead-1").await.unwrap().is_none());
    assert!(store.jobs().get("queued-1").await.unwrap().is_some(), "a job still to run was deleted");
    // Shorter configured durations apply.
    let short = OwnDataDurations { dead_jobs: std::time::Duration::from_secs(60), ..OwnDataDurations::default() };
    store.jobs().insert(&job("dead-2", "dead", T0)).await.unwrap();
    let purged = purge_own_data(&store, &short, T0 + Duration::minutes(2)).await.unwrap();
    assert_eq!(count(&purged, Kind::DeadJobs), 1);
}

crate::on_both_stores!(each_kind_is_purged_only_after_its_duration);

/// The daily purge as a job: the runner of a serving gateway runs it once, it deletes what is
/// due and schedules the next day's run.
#[tokio::test]
async fn the_daily_purge_job_deletes_what_is_due_and_schedules_the_next() {
    let app = crate::helpers::spawn_app().start().await;
    let store = &app.state.store;
    store.jobs().insert(&job("dead-old", "dead", T0 - Duration::days(400))).await.unwrap();
    store.jobs().insert(&job("dead-recent", "dead", T0 - Duration::days(10))).await.unwrap();
    guichet::housekeeping::schedule(&app.state, T0).await.unwrap();
    guichet::housekeeping::schedule(&app.state, T0).await.unwrap();
    let key = |at: time::OffsetDateTime| format!("{}:{}", guichet::housekeeping::OWN_DATA_KIND, at.date());
    let mut waited = 0;
    loop {
        let today = store.jobs().by_dedup_key(&key(T0)).await.unwrap();
        if today.as_ref().is_some_and(|j| j.status == "done") {
            break;
        }
        assert!(waited < 200, "the purge did not run: {:?}", today.map(|j| j.status));
        waited += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(store.jobs().get("dead-old").await.unwrap().is_none(), "a dead job older than a year was kept");
    assert!(store.jobs().get("dead-recent").await.unwrap().is_some(), "a recent dead job was deleted");
    let tomorrow = store.jobs().by_dedup_key(&key(T0 + Duration::days(1))).await.unwrap().expect("next run");
    assert_eq!(tomorrow.status, "queued");
}
