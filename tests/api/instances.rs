//! Several instances on one store: they start together on a fresh store (migrations run
//! once), and on PostgreSQL a withdrawal, a logout or a lost notification connection on one
//! reaches the others through `LISTEN/NOTIFY` (polling stays the fallback).

use std::time::{Duration, Instant};

use guichet::metrics::ChangeLabels;
use guichet::store::{Store, StoreOptions};

use crate::auth::SESSION;
use crate::consent::{builder, citizen, consent_page, post, token};
use crate::helpers::{Backend, TestApp, fresh_store_url, init, raw_sql, spawn_app};
use crate::oidc_mock::MockProvider;

/// Migrations shipped for `backend`.
fn shipped(backend: Backend) -> usize {
    let dir = if backend == Backend::Sqlite { "sqlite" } else { "postgres" };
    std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap().count()
}

async fn instances_starting_together_migrate_once(backend: Backend) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_store_url(backend, dir.path()).await;
    // Four stores migrating at once: every one succeeds, and each migration is applied once.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Store::connect(&url, &StoreOptions::default()).await.unwrap());
    }
    let applied = futures_util::future::join_all(stores.iter().map(Store::migrate)).await;
    let applied: Vec<usize> = applied.into_iter().map(|r| r.expect("every instance migrates or waits")).collect();
    assert_eq!(applied.iter().sum::<usize>(), shipped(backend), "{applied:?}");
    // Two whole gateways starting at once on another fresh store both come up.
    let url = fresh_store_url(backend, &dir.path().join("second")).await;
    std::fs::create_dir_all(dir.path().join("second")).unwrap();
    let (a, b) = tokio::join!(
        spawn_app().backend(backend).with_store_url(url.clone()).start(),
        spawn_app().backend(backend).with_store_url(url).start()
    );
    assert_eq!(a.get("/.guichet/health/ready").await.status(), 200);
    assert_eq!(b.get("/.guichet/health/ready").await.status(), 200);
}

crate::on_both_stores!(instances_starting_together_migrate_once);

/// Two gateways on one PostgreSQL store, sharing the checkpoint key that signs the consent
/// ledger's rows (docs/audit.md); the key's directory must outlive them.
async fn two_instances(mock: &MockProvider) -> (TestApp, TestApp, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit-signing-key.p8");
    let shared = |k: std::path::PathBuf| move |s: &mut guichet::config::Settings, _| s.audit.signing_key_file = Some(k);
    let a = builder(mock, Backend::Postgres).with(shared(key.clone())).start().await;
    let b = builder(mock, Backend::Postgres).with_store_url(a.store_url.clone()).with(shared(key)).start().await;
    (a, b, keys)
}

/// How many changes of `kind` `app` heard by notification.
fn heard(app: &TestApp, kind: &'static str) -> u64 {
    app.state.metrics.changes_heard.get_or_create(&ChangeLabels { kind }).get()
}

async fn choose(app: &TestApp, session: &str, choice: &str) -> u16 {
    let t = token(&consent_page(app, session).await);
    let form = [
        ("jeton", t.as_str()),
        ("activite", "lettre-information"),
        ("finalite", "envoi"),
        ("choix", choice),
        ("retour", "/lettre-information/"),
    ];
    post(app, session, "/.guichet/consentement/", &form).await.status().as_u16()
}

async fn newsletter(app: &TestApp, session: &str) -> u16 {
    let r = app
        .client
        .get(app.url("/lettre-information/"))
        .header("accept", "application/json")
        .header("cookie", format!("{SESSION}={session}"))
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

/// Waits (generously: no timing is asserted, the counters prove the path) until `done`.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}: not after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
#[cfg_attr(not(guichet_pg_tests), ignore = "PostgreSQL store test: set TEST_DATABASE_URL to run it")]
async fn postgres_withdrawals_and_logouts_reach_other_instances_by_notification() {
    let mock = MockProvider::start().await;
    let (a, b, _keys) = two_instances(&mock).await;
    eventually("B listens", async || heard(&b, "resync") >= 1).await;
    let s = citizen(&a, &mock, "sub-angela").await;
    assert_eq!(choose(&a, &s, "donner").await, 303);
    eventually("B sees the consent", async || newsletter(&b, &s).await == 200).await;

    // A withdrawal on A: B hears it and refuses the very purpose.
    let consent_before = heard(&b, "consent");
    assert_eq!(choose(&a, &s, "retirer").await, 303);
    eventually("B hears the withdrawal", async || heard(&b, "consent") > consent_before).await;
    assert_eq!(newsletter(&b, &s).await, 403, "B enforces the withdrawal");

    // A session revoked on A: B hears it.
    let sessions_before = heard(&b, "session");
    assert_eq!(a.state.auth.sessions.revoke(&s).await.unwrap().map(|r| r.subject).as_deref(), Some("sub-angela"));
    eventually("B hears the logout", async || heard(&b, "session") > sessions_before).await;
    assert_eq!(newsletter(&b, &s).await, 401, "B no longer knows the session");
}

#[tokio::test]
#[cfg_attr(not(guichet_pg_tests), ignore = "PostgreSQL store test: set TEST_DATABASE_URL to run it")]
async fn postgres_a_lost_notification_connection_is_reestablished() {
    let mock = MockProvider::start().await;
    let (a, b, _keys) = two_instances(&mock).await;
    eventually("both listen", async || heard(&a, "resync") >= 1 && heard(&b, "resync") >= 1).await;
    let s = citizen(&a, &mock, "sub-angela").await;
    assert_eq!(choose(&a, &s, "donner").await, 303);
    eventually("B sees the consent", async || newsletter(&b, &s).await == 200).await;

    // Cut every listening connection of this store (its channel names its schema).
    let schema = secrecy::ExposeSecret::expose_secret(&a.store_url).rsplit("search_path%3D").next().unwrap().to_owned();
    let resyncs = heard(&b, "resync");
    raw_sql(
        &a.store_url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE 'LISTEN %guichet_changes.{schema}%' AND pid <> pg_backend_pid()"
        ),
    )
    .await;
    // B noticed, emptied its caches (changes may have been missed) and listens again.
    eventually("B listens again", async || heard(&b, "resync") > resyncs).await;
    let consent_before = heard(&b, "consent");
    assert_eq!(choose(&a, &s, "retirer").await, 303);
    eventually("B hears the withdrawal again", async || heard(&b, "consent") > consent_before).await;
    assert_eq!(newsletter(&b, &s).await, 403);
}
