//! The store on both engines.

use guichet::store::{Engine, Store, StoreOptions};

use crate::helpers::{Backend, fresh_store_url, init};

async fn open(backend: Backend) -> (Store, tempfile::TempDir) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_store_url(backend, dir.path()).await;
    (Store::connect(&url, &StoreOptions::default()).await.unwrap(), dir)
}

async fn migrations_apply_once_and_are_idempotent(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let expected = if backend == Backend::Sqlite { Engine::Sqlite } else { Engine::Postgres };
    assert_eq!(store.engine(), expected);
    let first = store.migrate().await.unwrap();
    assert!(first >= 1);
    assert_eq!(store.migrate().await.unwrap(), 0);
    store.ping().await.unwrap();
}

async fn meta_values_round_trip(backend: Backend) {
    let (store, _dir) = open(backend).await;
    store.migrate().await.unwrap();
    let at = time::macros::datetime!(2026-11-28 12:00 UTC);
    assert_eq!(store.meta().get("installation").await.unwrap(), None);
    assert_eq!(store.meta().get_or_init("installation", "a", at).await.unwrap(), "a");
    assert_eq!(store.meta().get_or_init("installation", "b", at).await.unwrap(), "a");
    store.meta().set("installation", "c", at).await.unwrap();
    assert_eq!(store.meta().get("installation").await.unwrap().as_deref(), Some("c"));
}

async fn a_closed_store_reports_unavailable(backend: Backend) {
    let (store, _dir) = open(backend).await;
    store.close().await;
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, guichet::store::StoreError::Unavailable(_)), "{err:?}");
}

crate::on_both_stores!(
    migrations_apply_once_and_are_idempotent,
    meta_values_round_trip,
    a_closed_store_reports_unavailable
);

#[tokio::test]
async fn sqlite_store_is_created_in_wal_mode_with_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested/dir/guichet.db");
    let url = secrecy::SecretString::from(format!("sqlite://{}", file.display()));
    let store = Store::connect(&url, &StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    assert!(file.exists());
    let wal = dir.path().join("nested/dir/guichet.db-wal");
    assert!(wal.exists(), "SQLite must run in WAL mode");
}
