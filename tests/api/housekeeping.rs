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

crate::on_both_stores!(
    each_kind_is_purged_only_after_its_duration,
    notices_and_idle_contacts_go_after_their_duration,
    closed_rights_requests_go_five_years_after_closing
);

fn request(id: &str, right: &str, status: &str, closed: time::OffsetDateTime) -> guichet::store::RightsRow {
    guichet::store::RightsRow {
        id: id.into(),
        subject: format!("subject-{id}"),
        activity: Some("cantine".into()),
        right_kind: right.into(),
        channel: "online".into(),
        agent: None,
        identity: "{}".into(),
        status: status.into(),
        received_at_us: us(closed - Duration::days(20)),
        received_on: "2026-11-08".into(),
        paused_days: 0,
        paused_since: None,
        extensions: "[]".into(),
        answer: None,
        updated_at_us: us(closed),
    }
}

fn answer(request_id: &str, field_subject: &str) -> guichet::store::PropagationRow {
    guichet::store::PropagationRow {
        request_id: request_id.into(),
        activity: "cantine".into(),
        route: Some("cantine".into()),
        app_subject: Some("app-subject".into()),
        field_subject: Some(field_subject.into()),
        state: "answered".into(),
        status: Some("completed".into()),
        reason: None,
        records: None,
        corrections: None,
        created_at_us: us(T0),
        answered_at_us: Some(us(T0)),
    }
}

/// A closed rights request's file (the request, the application's answer, its export) goes
/// five years after closing, not a day before; an open request never; a restriction request
/// not while the restriction it set is in force, and after it is lifted.
async fn closed_rights_requests_go_five_years_after_closing(backend: Backend) {
    let s = Setup::new(backend).await;
    let store = s.store().await;
    let d = OwnDataDurations::default();
    for r in [
        request("DR-CLOSED", "access", "completed", T0),
        request("DR-REFUSED", "erasure", "refused", T0),
        request("DR-OPEN", "access", "in_progress", T0),
        request("DR-RESTRICT", "restriction", "completed", T0),
    ] {
        store.rights().insert(&r).await.unwrap();
    }
    store.rights_apps().insert(&answer("DR-CLOSED", "field-closed")).await.unwrap();
    store.rights_apps().insert(&answer("DR-RESTRICT", "field-restricted")).await.unwrap();
    store.rights_apps().mark("field-restricted", "cantine", "restricted", us(T0)).await.unwrap();
    let export = ExportRow {
        id: "export-closed".into(),
        request_id: "DR-CLOSED".into(),
        subject: "subject-DR-CLOSED".into(),
        field_subject: None,
        session_hash: "session-hash".into(),
        token_hash: "token-closed".into(),
        sealed: vec![1],
        created_at_us: us(T0),
        expires_at_us: us(T0 + Duration::days(3000)),
        downloads: 0,
    };
    store.exports().insert(&export).await.unwrap();
    let ids = || async {
        let mut ids = Vec::new();
        for id in ["DR-CLOSED", "DR-REFUSED", "DR-OPEN", "DR-RESTRICT"] {
            if store.rights().get(id).await.unwrap().is_some() {
                ids.push(id);
            }
        }
        ids
    };

    // Exports go after 7 days anyway; the files stay for five years.
    let purged = purge_own_data(&store, &d, T0 + Duration::days(1825)).await.unwrap();
    assert_eq!(count(&purged, Kind::RightsRequests), 0, "{purged:?}");
    assert_eq!(ids().await, ["DR-CLOSED", "DR-REFUSED", "DR-OPEN", "DR-RESTRICT"]);
    store
        .exports()
        .insert(&ExportRow { id: "export-late".into(), token_hash: "token-late".into(), ..export })
        .await
        .unwrap();
    let later = T0 + Duration::days(1827);
    let planned = guichet::housekeeping::plan_own_data(&store, &d, later).await.unwrap();
    assert_eq!(count(&planned, Kind::RightsRequests), 2, "{planned:?}");
    assert_eq!(ids().await.len(), 4, "a plan deletes nothing");
    let purged = purge_own_data(&store, &d, later).await.unwrap();
    assert_eq!(count(&purged, Kind::RightsRequests), 2, "{purged:?}");
    assert_eq!(ids().await, ["DR-OPEN", "DR-RESTRICT"], "open, or a restriction in force");
    assert!(store.rights_apps().of_request("DR-CLOSED").await.unwrap().is_empty(), "the answer went with it");
    assert!(store.exports().by_token_hash("token-late").await.unwrap().is_none(), "the export went with it");
    assert_eq!(store.rights_apps().of_request("DR-RESTRICT").await.unwrap().len(), 1);

    // Lifted: the restriction request's file goes at the next purge.
    assert!(store.rights_apps().unmark("field-restricted", "cantine", "restricted").await.unwrap());
    let purged = purge_own_data(&store, &d, later).await.unwrap();
    assert_eq!(count(&purged, Kind::RightsRequests), 1, "{purged:?}");
    assert_eq!(ids().await, ["DR-OPEN"]);
}

fn notice(id: &str, subject: &str, status: &str, at: time::OffsetDateTime) -> guichet::store::NoticeRow {
    guichet::store::NoticeRow {
        id: id.into(),
        subject: subject.into(),
        kind: "request_received".into(),
        notice: "{}".into(),
        status: status.into(),
        created_at_us: us(at),
        sent_at_us: (status != "queued").then(|| us(at)),
    }
}

fn record(subject: &str, phase: &str, at: time::OffsetDateTime) -> guichet::store::RetentionRow {
    guichet::store::RetentionRow {
        subject: format!("field-{subject}"),
        activity: "lettre-information".into(),
        category: "contact".into(),
        route: None,
        app_subject: None,
        collected_at_us: us(at),
        last_activity_at_us: Some(us(at)),
        event_at_us: None,
        withdrawn_at_us: None,
        phase: phase.into(),
        phase_since_us: us(at),
        end_action: None,
        notice_deletion_on: None,
    }
}

/// Notices go a year after they were sent (a queued one never); a contact address goes
/// three years after the citizen's last activity, and never while a record of theirs is
/// still under way, a rights request is open or a notice is still to send.
async fn notices_and_idle_contacts_go_after_their_duration(backend: Backend) {
    let s = Setup::new(backend).await;
    let store = s.store().await;
    let d = OwnDataDurations::default();
    let notify = store.notify();
    notify.insert(&notice("sent", "idle", "sent", T0)).await.unwrap();
    notify.insert(&notice("undeliverable", "idle", "undeliverable", T0)).await.unwrap();
    notify.insert(&notice("queued", "waiting", "queued", T0)).await.unwrap();
    for subject in ["idle", "waiting", "live", "asking", "recent"] {
        notify.set_contact(subject, "adresse@example.fr", "given", us(T0)).await.unwrap();
    }
    // `live` still has a record under way; `recent` was active a year ago; `idle` and `recent`
    // have records that ended.
    // Their records name only their sector's pseudonym; the citizens recorded their own.
    for subject in ["live", "idle", "recent"] {
        let field = format!("field-{subject}");
        store.rights_subjects().put(subject, &field, "{}", "{}", &[field.as_str()], us(T0)).await.unwrap();
    }
    store.retention().seen(&record("live", "active", T0)).await.unwrap();
    store.retention().seen(&record("idle", "ended", T0)).await.unwrap();
    store.retention().seen(&record("recent", "ended", T0 + Duration::days(365 * 2))).await.unwrap();
    crate::helpers::raw_sql(
        &s.url,
        &format!(
            "INSERT INTO rights_request (id, subject, activity, right_kind, channel, agent, identity, status, \
             received_at_us, received_on, paused_days, paused_since, extensions, answer, updated_at_us) VALUES \
             ('DR-TEST-0001', 'asking', NULL, 'access', 'online', NULL, '{{}}', 'received', {t}, '2026-11-28', 0, \
             NULL, '[]', NULL, {t})",
            t = us(T0)
        ),
    )
    .await;

    let purged = purge_own_data(&store, &d, T0 + Duration::days(364)).await.unwrap();
    assert_eq!((count(&purged, Kind::NoticeMessages), count(&purged, Kind::NotifyContacts)), (0, 0), "{purged:?}");
    let purged = purge_own_data(&store, &d, T0 + Duration::days(366)).await.unwrap();
    assert_eq!(count(&purged, Kind::NoticeMessages), 2, "sent and undeliverable, a year after");
    assert!(notify.get("sent").await.unwrap().is_none());
    assert!(notify.get("queued").await.unwrap().is_some(), "a notice still to send was deleted");
    assert_eq!(count(&purged, Kind::NotifyContacts), 0, "addresses are kept three years");

    let purged = purge_own_data(&store, &d, T0 + Duration::days(3 * 365 + 1)).await.unwrap();
    assert_eq!(count(&purged, Kind::NotifyContacts), 1, "{purged:?}");
    assert!(notify.contact("idle").await.unwrap().is_none(), "no activity left: the address goes");
    for kept in ["waiting", "live", "asking", "recent"] {
        assert!(notify.contact(kept).await.unwrap().is_some(), "{kept}'s address was deleted");
    }
    // `recent`'s last activity was two years after T0: three years after that, it goes too.
    let purged = purge_own_data(&store, &d, T0 + Duration::days(5 * 365 + 2)).await.unwrap();
    assert_eq!(count(&purged, Kind::NotifyContacts), 1, "{purged:?}");
    assert!(notify.contact("recent").await.unwrap().is_none());
    assert!(notify.contact("live").await.unwrap().is_some(), "a citizen with a record under way keeps it");
}

/// The daily purge as a job: a serving gateway queues each day's purge by itself (with the
/// retention scheduler); the runner runs it once, deletes what is due with the durations of
/// `[retention.own_data]` and journals the counts per kind.
#[tokio::test]
async fn the_daily_purge_runs_once_with_the_configured_durations_and_journals_the_counts() {
    let app = crate::helpers::spawn_app()
        .with(|s, _| s.retention.own_data.dead_jobs = std::time::Duration::from_secs(3600))
        .start()
        .await;
    wait_done(&app, T0).await;
    let store = &app.state.store;
    store.jobs().insert(&job("dead-two-hours", "dead", T0 - Duration::hours(2))).await.unwrap();
    store.jobs().insert(&job("dead-recent", "dead", T0 + Duration::days(1) - Duration::minutes(30))).await.unwrap();
    // The next day: its purge, asked for twice, runs once.
    app.clock.advance(Duration::days(1));
    let tomorrow = T0 + Duration::days(1);
    guichet::housekeeping::schedule(&app.state, tomorrow).await.unwrap();
    guichet::housekeeping::schedule(&app.state, tomorrow).await.unwrap();
    assert_eq!(wait_done(&app, tomorrow).await.attempts, 1, "scheduled twice, run once");
    let jobs = store.jobs();
    assert!(jobs.get("dead-two-hours").await.unwrap().is_none(), "older than the configured hour: deleted");
    assert!(jobs.get("dead-recent").await.unwrap().is_some(), "younger than the configured hour: kept");
    let journaled = "SELECT COUNT(*) FROM audit_entry WHERE operation = 'own_data_purge' \
                     AND body LIKE '%\"count\":1,\"kind\":\"dead_jobs\"%'";
    assert_eq!(crate::retention::count(&app.store_url, journaled).await, 1, "the purge's counts are journaled");
}

/// Waits for the purge of `day`'s date to be done.
async fn wait_done(app: &crate::helpers::TestApp, day: time::OffsetDateTime) -> JobRow {
    let key = format!("{}:{}", guichet::housekeeping::OWN_DATA_KIND, day.date());
    for _ in 0..200 {
        let found = app.state.store.jobs().by_dedup_key(&key).await.unwrap();
        if let Some(job) = found.filter(|j| j.status == "done") {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the purge of {key} did not run");
}

/// `guichet retention own-data` purges now, as the daily job does, and prints the counts.
#[tokio::test]
async fn the_own_data_command_purges_now_and_prints_the_counts() {
    let app = crate::helpers::spawn_app().start().await;
    wait_done(&app, T0).await; // the serving gateway's own purge of the day is over
    // The command runs on the system clock with the default durations (a year for dead jobs).
    let long_ago = guichet::clock::Clock::now(&guichet::clock::SystemClock) - Duration::days(400);
    app.state.store.jobs().insert(&job("dead-long-ago", "dead", long_ago)).await.unwrap();
    let out = crate::helpers::admin_command(&app, &["retention", "own-data"]).await;
    let line = out.lines().find(|l| l.starts_with("dead_jobs")).unwrap_or_default();
    assert_eq!(line.split_whitespace().last(), Some("1"), "{out}");
    assert!(app.state.store.jobs().get("dead-long-ago").await.unwrap().is_none());
}

/// `guichet retention own-data --plan` counts what the purge would delete, per kind, and
/// deletes and journals nothing; without `--plan` the same records go, and the counts of the
/// new kinds (notices, contact addresses) are journaled.
#[tokio::test]
async fn the_own_data_plan_counts_per_kind_and_deletes_nothing() {
    let app = crate::helpers::spawn_app().start().await;
    wait_done(&app, T0).await; // the serving gateway's own purge of the day is over
    let long_ago = guichet::clock::Clock::now(&guichet::clock::SystemClock) - Duration::days(4 * 365);
    let store = &app.state.store;
    store.jobs().insert(&job("dead-long-ago", "dead", long_ago)).await.unwrap();
    store.notify().insert(&notice("sent-long-ago", "idle", "sent", long_ago)).await.unwrap();
    store.notify().set_contact("idle", "adresse@example.fr", "given", us(long_ago)).await.unwrap();
    let six_years_ago = long_ago - Duration::days(2 * 365);
    store.rights().insert(&request("DR-LONG-AGO", "access", "completed", six_years_ago)).await.unwrap();
    let purges = "SELECT COUNT(*) FROM audit_entry WHERE operation = 'own_data_purge'";
    app.state.audit.flush().await.unwrap();
    let before = crate::retention::count(&app.store_url, purges).await;

    let out = crate::helpers::admin_command(&app, &["retention", "own-data", "--plan"]).await;
    let counted = |out: &str, kind: &str| {
        let line = out.lines().find(|l| l.starts_with(kind)).unwrap_or_default().to_owned();
        line.split_whitespace().last().unwrap_or_default().to_owned()
    };
    assert!(out.contains("would delete"), "{out}");
    for kind in ["dead_jobs", "notice_messages", "notify_contacts", "rights_requests"] {
        assert_eq!(counted(&out, kind), "1", "{kind}: {out}");
    }
    assert!(store.jobs().get("dead-long-ago").await.unwrap().is_some(), "a plan deleted a job");
    assert!(store.notify().get("sent-long-ago").await.unwrap().is_some(), "a plan deleted a notice");
    assert!(store.notify().contact("idle").await.unwrap().is_some(), "a plan deleted an address");
    assert!(store.rights().get("DR-LONG-AGO").await.unwrap().is_some(), "a plan deleted a request's file");
    assert_eq!(crate::retention::count(&app.store_url, purges).await, before, "a plan is not journaled");

    let out = crate::helpers::admin_command(&app, &["retention", "own-data"]).await;
    assert_eq!(counted(&out, "notify_contacts"), "1", "{out}");
    assert!(store.notify().contact("idle").await.unwrap().is_none());
    assert!(store.notify().get("sent-long-ago").await.unwrap().is_none());
    assert!(store.rights().get("DR-LONG-AGO").await.unwrap().is_none());
    let journaled = "SELECT COUNT(*) FROM audit_entry WHERE operation = 'own_data_purge' \
                     AND body LIKE '%\"count\":1,\"kind\":\"notice_messages\"%' \
                     AND body LIKE '%\"count\":1,\"kind\":\"rights_requests\"%' \
                     AND body LIKE '%\"count\":1,\"kind\":\"notify_contacts\"%'";
    assert_eq!(crate::retention::count(&app.store_url, journaled).await, 1, "the counts are journaled");
}

/// `[retention.own_data]` refuses a key it does not know, naming it and its line.
#[test]
fn own_data_durations_refuse_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guichet.toml");
    std::fs::write(&path, "version = 1\n\n[retention.own_data]\nexports = \"3 days\"\n").unwrap();
    let err = guichet::config::Loaded::load(Some(&path), std::iter::empty()).map(drop).unwrap_err().to_string();
    assert!(err.contains("exports") && err.contains(":4"), "{err}");
}
