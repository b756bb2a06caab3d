//! Field encryption keys on both store engines: data keys, shredding that survives a backup
//! restore, resumable rotation, and `serve` refusing to start without a usable keyring.

use std::ops::ControlFlow;
use std::sync::Arc;

use guichet::app::{Application, Deps};
use guichet::clock::{FixedClock, SystemRandom};
use guichet::config::{KeysSettings, Loaded};
use guichet::crypto::vault::{Reconciled, Shredded};
use guichet::crypto::{CryptoError, FieldContext, Keyring, Vault, admin};
use guichet::store::{Store, StoreOptions};
use secrecy::{ExposeSecret, SecretString};

use crate::helpers::{Backend, fresh_store_url, init, test_keys};

const NOW: time::OffsetDateTime = time::macros::datetime!(2026-11-28 12:00 UTC);

fn deps() -> Deps {
    Deps { clock: Arc::new(FixedClock::at(NOW)), random: Arc::new(SystemRandom::new()) }
}

fn ctx<'a>(subject: &'a str, field: &'a str) -> FieldContext<'a> {
    FieldContext { activity: "inscription-scolaire", field, subject }
}

/// A store, a keyring and the vaults over them (also used by `retention_keys`).
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) url: SecretString,
    pub(crate) keys: KeysSettings,
}

impl Setup {
    pub(crate) async fn new(backend: Backend) -> Self {
        init();
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_store_url(backend, dir.path()).await;
        let keys = test_keys(dir.path());
        Self { dir, url, keys }
    }

    pub(crate) async fn store(&self) -> Store {
        let store = Store::connect(&self.url, &StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    pub(crate) async fn vault(&self) -> Vault {
        self.vault_on(self.store().await)
    }

    fn vault_on(&self, store: Store) -> Vault {
        let d = deps();
        Vault::new(Keyring::open(&self.keys).unwrap(), store, &self.keys, d.clock, d.random)
    }
}

async fn fields_seal_open_and_shred(backend: Backend) {
    let s = Setup::new(backend).await;
    let v = s.vault().await;
    let nom = v.seal(&ctx("sub-1", "nom"), "Dupont").await.unwrap();
    let prenom = v.seal(&ctx("sub-1", "prenom"), "Jeanne").await.unwrap();
    let other = v.seal(&ctx("sub-2", "nom"), "Martin").await.unwrap();
    assert!(!nom.contains("Dupont"));
    // One data key per (subject, activity): same key id for sub-1, another for sub-2.
    assert_eq!(nom.split('.').nth(1), prenom.split('.').nth(1));
    assert_ne!(nom.split('.').nth(1), other.split('.').nth(1));
    assert_eq!(v.open(&ctx("sub-1", "nom"), &nom).await.unwrap().as_str(), "Dupont");
    assert!(v.open(&ctx("sub-1", "prenom"), &nom).await.is_err(), "copied to another field");
    assert!(v.open(&ctx("sub-2", "nom"), &nom).await.is_err(), "copied to another citizen");
    let owner = v.owner_of(&nom).await.unwrap().unwrap();
    assert_eq!(owner, ("sub-1".to_owned(), "inscription-scolaire".to_owned()));
    // A token tried against the fields it may belong to, found and keyed once: it opens in
    // its own field and subject only, whatever was tried before.
    let openable = v.openable(&nom).await.unwrap().unwrap();
    assert_eq!((openable.subject(), openable.activity()), ("sub-1", "inscription-scolaire"));
    assert!(openable.open(&ctx("sub-1", "prenom")).is_err(), "another field");
    assert!(openable.open(&ctx("sub-2", "nom")).is_err(), "another citizen");
    assert_eq!(openable.open(&ctx("sub-1", "nom")).unwrap().as_str(), "Dupont");
    assert!(v.openable("gch2.not-a-token").await.is_err());
    let mut altered = nom.clone().into_bytes();
    if let Some(last) = altered.last_mut() {
        *last = if *last == b'A' { b'B' } else { b'A' };
    }
    let altered = String::from_utf8(altered).unwrap();
    let tried = v.openable(&altered).await;
    assert!(tried.is_err() || tried.unwrap().is_some_and(|o| o.open(&ctx("sub-1", "nom")).is_err()), "altered");

    // A second instance (fresh cache) reads the same keys from the store.
    let v2 = s.vault().await;
    assert_eq!(v2.open(&ctx("sub-1", "prenom"), &prenom).await.unwrap().as_str(), "Jeanne");

    assert!(matches!(v.shred("sub-1", "inscription-scolaire").await.unwrap(), Shredded::Destroyed { .. }));
    assert!(matches!(v.open(&ctx("sub-1", "nom"), &nom).await, Err(CryptoError::KeyGone)));
    assert!(v.openable(&nom).await.unwrap().is_none(), "a shredded key opens nothing");
    assert_eq!(v.open(&ctx("sub-2", "nom"), &other).await.unwrap().as_str(), "Martin");
    assert_eq!(v.shred("sub-1", "inscription-scolaire").await.unwrap(), Shredded::NoKey);
    // Coming back later gives a new key; the old tokens stay dead.
    let again = v.seal(&ctx("sub-1", "nom"), "Dupont").await.unwrap();
    assert_ne!(again.split('.').nth(1), nom.split('.').nth(1));
    assert!(matches!(v.open(&ctx("sub-1", "nom"), &nom).await, Err(CryptoError::KeyGone)));
    // Tombstones name no citizen.
    let file = std::fs::read_to_string(s.keys.tombstones_path()).unwrap();
    assert_eq!(file.lines().count(), 1);
    assert!(!file.contains("sub-1"));
}

async fn a_request_sealing_key_seals_only_for_its_owner_with_fresh_nonces(backend: Backend) {
    let s = Setup::new(backend).await;
    let v = s.vault().await;
    let key = v.sealing_key("sub-1", "inscription-scolaire", guichet::crypto::DEFAULT_CLASS).await.unwrap();
    // Many values from one key: every nonce differs (the buffered randomness is never
    // served twice, across block refills too), and each token opens through the vault.
    let tokens: Vec<String> = (0..50).map(|_| key.seal(&ctx("sub-1", "nom"), "Dupont").unwrap()).collect();
    let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), tokens.len(), "a nonce was reused");
    for t in &tokens {
        assert_eq!(v.open(&ctx("sub-1", "nom"), t).await.unwrap().as_str(), "Dupont");
    }
    // Same data key as the vault's own sealing.
    let direct = v.seal(&ctx("sub-1", "prenom"), "Jeanne").await.unwrap();
    assert_eq!(direct.split('.').nth(1), tokens[0].split('.').nth(1));
    // Never for another citizen or activity.
    assert!(matches!(key.seal(&ctx("sub-2", "nom"), "Martin"), Err(CryptoError::WrongOwner)));
    let other_activity = FieldContext { activity: "newsletter", field: "nom", subject: "sub-1" };
    assert!(matches!(key.seal(&other_activity, "Dupont"), Err(CryptoError::WrongOwner)));
}

crate::on_both_stores!(a_request_sealing_key_seals_only_for_its_owner_with_fresh_nonces);

/// The protect phase asks the cache first, without waiting: it answers only with a key the
/// cache holds, under the same shred rules as the store lookup, and never with a key that
/// another instance destroyed once this one read the shred generation.
async fn the_cached_sealing_key_answers_only_from_the_cache_and_never_with_a_shredded_key(backend: Backend) {
    let s = Setup::new(backend).await;
    let (a, b) = (s.vault().await, s.vault().await);
    let class = guichet::crypto::DEFAULT_CLASS;
    let cached = |v: &guichet::crypto::Vault| v.cached_sealing_key("sub-1", "inscription-scolaire", class).unwrap();
    assert!(cached(&b).is_none(), "nothing looked up yet: the store must be read");
    let looked_up = b.sealing_key("sub-1", "inscription-scolaire", class).await.unwrap();
    let first = looked_up.seal(&ctx("sub-1", "nom"), "Dupont").unwrap();
    let from_cache = cached(&b).expect("the key is cached now");
    let second = from_cache.seal(&ctx("sub-1", "nom"), "Dupont").unwrap();
    assert_eq!(first.split('.').nth(1), second.split('.').nth(1), "the same data key");
    assert_eq!(b.open(&ctx("sub-1", "nom"), &second).await.unwrap().as_str(), "Dupont");
    assert!(matches!(from_cache.seal(&ctx("sub-2", "nom"), "Martin"), Err(CryptoError::WrongOwner)));
    assert!(b.cached_sealing_key("", "inscription-scolaire", class).is_err(), "names are checked as before");

    a.shred("sub-1", "inscription-scolaire").await.unwrap();
    assert!(b.check_shreds().await.unwrap());
    assert!(cached(&b).is_none(), "the destroyed key left the cache");
    let renewed = b.sealing_key("sub-1", "inscription-scolaire", class).await.unwrap();
    let third = renewed.seal(&ctx("sub-1", "nom"), "Dupont").unwrap();
    assert_ne!(third.split('.').nth(1), first.split('.').nth(1), "a new key after the shred");
    let again = cached(&b).expect("the new key is cached");
    assert_eq!(again.seal(&ctx("sub-1", "nom"), "Dupont").unwrap().split('.').nth(1), third.split('.').nth(1));
}

crate::on_both_stores!(the_cached_sealing_key_answers_only_from_the_cache_and_never_with_a_shredded_key);

/// A copy of the store's key tables, and putting it back (what restoring a backup does).
enum Backup {
    Sqlite(std::path::PathBuf),
    Postgres,
}

async fn back_up(s: &Setup, backend: Backend) -> Backup {
    match backend {
        Backend::Sqlite => {
            let file = s.dir.path().join("backup.db");
            let pool = sqlx::SqlitePool::connect(s.url.expose_secret()).await.unwrap();
            let sql = format!("VACUUM INTO '{}'", file.display());
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            pool.close().await;
            Backup::Sqlite(file)
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(s.url.expose_secret()).await.unwrap();
            for sql in [
                "CREATE TABLE backup_keys AS SELECT * FROM guichet_data_keys",
                "CREATE TABLE backup_tombstones AS SELECT * FROM guichet_key_tombstones",
            ] {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
            Backup::Postgres
        }
    }
}

async fn restore(s: &Setup, b: &Backup) {
    match b {
        Backup::Sqlite(file) => {
            let db = s.dir.path().join("guichet.db");
            for ext in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
            }
            std::fs::copy(file, &db).unwrap();
        }
        Backup::Postgres => {
            let pool = sqlx::PgPool::connect(s.url.expose_secret()).await.unwrap();
            for sql in [
                "DELETE FROM guichet_data_keys",
                "INSERT INTO guichet_data_keys SELECT * FROM backup_keys",
                "DELETE FROM guichet_key_tombstones",
                "INSERT INTO guichet_key_tombstones SELECT * FROM backup_tombstones",
            ] {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
}

async fn start(s: &Setup) -> anyhow::Result<Application> {
    let mut loaded = Loaded::defaults();
    loaded.settings.data_dir = s.dir.path().to_owned();
    loaded.settings.server.listen = "127.0.0.1:0".parse().unwrap();
    loaded.settings.admin.enabled = false;
    loaded.settings.keys = Some(s.keys.clone());
    let mut config = loaded.validate().unwrap();
    config.store_url = s.url.clone();
    Application::build(config, deps()).await
}

async fn shredding_survives_a_backup_restore(backend: Backend) {
    let s = Setup::new(backend).await;
    let store = s.store().await;
    let v = s.vault_on(store.clone());
    let tokens: Vec<String> = {
        let mut t = Vec::new();
        for (field, value) in [("nom", "Dupont"), ("prenom", "Jeanne"), ("adresse", "3 rue des Lilas")] {
            t.push(v.seal(&ctx("sub-1", field), value).await.unwrap());
        }
        t
    };
    let kept = v.seal(&ctx("sub-2", "nom"), "Martin").await.unwrap();
    let backup = back_up(&s, backend).await;
    v.shred("sub-1", "inscription-scolaire").await.unwrap();
    store.close().await;
    drop(v);

    restore(&s, &backup).await;
    // The restored store holds the destroyed key again: without reconciliation it would open.
    let unreconciled = s.vault().await;
    assert_eq!(unreconciled.open(&ctx("sub-1", "nom"), &tokens[0]).await.unwrap().as_str(), "Dupont");
    drop(unreconciled);

    // `serve` reconciles at start: the key is destroyed again, from the tombstone file.
    let app = start(&s).await.expect("the gateway must start");
    let vault = app.state().crypto.clone().expect("keys are configured");
    for (t, field) in tokens.iter().zip(["nom", "prenom", "adresse"]) {
        assert!(matches!(vault.open(&ctx("sub-1", field), t).await, Err(CryptoError::KeyGone)), "{field}");
    }
    assert_eq!(vault.open(&ctx("sub-2", "nom"), &kept).await.unwrap().as_str(), "Martin");
    // The store learnt the tombstone again; a second run has nothing left to do.
    assert_eq!(app.state().store.keys().tombstones().await.unwrap().len(), 1);
    assert_eq!(vault.reconcile().await.unwrap(), Reconciled::default());
}

async fn tombstones_in_the_store_are_copied_to_a_lost_file(backend: Backend) {
    let s = Setup::new(backend).await;
    let v = s.vault().await;
    v.seal(&ctx("sub-1", "nom"), "Dupont").await.unwrap();
    v.shred("sub-1", "inscription-scolaire").await.unwrap();
    std::fs::remove_file(s.keys.tombstones_path()).unwrap();
    let r = v.reconcile().await.unwrap();
    assert_eq!(r, Reconciled { redestroyed: 0, tombstones_restored: 1 });
    assert_eq!(std::fs::read_to_string(s.keys.tombstones_path()).unwrap().lines().count(), 1);
}

async fn rotation_rewraps_in_batches_and_resumes(backend: Backend) {
    let s = Setup::new(backend).await;
    let v = s.vault().await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        let subject = format!("sub-{i}");
        tokens.push((subject.clone(), v.seal(&ctx(&subject, "nom"), "Dupont").await.unwrap()));
    }
    let mut keyring = Keyring::open(&s.keys).unwrap();
    assert_eq!(keyring.add_version(&SystemRandom::new(), NOW).unwrap(), 2);
    keyring.save(&s.keys).unwrap();

    // Interrupted after the first batch of 2.
    let v2 = s.vault().await;
    let done = v2.rewrap_all(2, |_, _| ControlFlow::Break(())).await.unwrap();
    assert_eq!(done, 2);
    assert_eq!(v2.usage().await.unwrap(), vec![(1, 3), (2, 2)]);
    let retire = admin::retire(&s.keys, &s.store().await, 1, &mut Vec::new()).await.unwrap_err();
    assert!(retire.to_string().contains("still wraps 3"), "{retire}");

    // Resumed (`keys rotate --resume`): only the rest is re-wrapped.
    let d = deps();
    let mut out = Vec::new();
    let n = admin::rotate(&s.keys, s.store().await, d.clock, d.random, true, 2, &mut out).await.unwrap();
    assert_eq!(n, 3);
    assert!(String::from_utf8_lossy(&out).contains("3/3"));
    let v3 = s.vault().await;
    assert_eq!(v3.usage().await.unwrap(), vec![(2, 5)]);
    for (subject, t) in &tokens {
        assert_eq!(v3.open(&ctx(subject, "nom"), t).await.unwrap().as_str(), "Dupont");
    }
    admin::retire(&s.keys, &s.store().await, 1, &mut Vec::new()).await.unwrap();
    let mut status = Vec::new();
    admin::status(&s.vault().await, &mut status).await.unwrap();
    let status = String::from_utf8(status).unwrap();
    assert!(status.contains("current KEK version: 2") && status.contains("retired: 1"), "{status}");
}

/// The mechanism behind cross-instance shredding, without waiting: another vault on the same
/// store drops the destroyed key as soon as it reads the shred generation.
async fn another_vault_drops_a_shredded_key_when_it_reads_the_generation(backend: Backend) {
    let s = Setup::new(backend).await;
    let (a, b) = (s.vault().await, s.vault().await);
    let nom = a.seal(&ctx("sub-1", "nom"), "Dupont").await.unwrap();
    let kept = a.seal(&ctx("sub-2", "nom"), "Martin").await.unwrap();
    // B caches both keys.
    assert_eq!(b.open(&ctx("sub-1", "nom"), &nom).await.unwrap().as_str(), "Dupont");
    assert_eq!(b.open(&ctx("sub-2", "nom"), &kept).await.unwrap().as_str(), "Martin");
    assert!(!b.check_shreds().await.unwrap(), "no shred yet");

    a.shred("sub-1", "inscription-scolaire").await.unwrap();
    assert!(b.check_shreds().await.unwrap(), "B sees that a key was destroyed");
    assert!(matches!(b.open(&ctx("sub-1", "nom"), &nom).await, Err(CryptoError::KeyGone)));
    let again = b.seal(&ctx("sub-1", "nom"), "Dupont").await.unwrap();
    assert_ne!(again.split('.').nth(1), nom.split('.').nth(1), "B no longer seals under the destroyed key");
    assert_eq!(b.open(&ctx("sub-2", "nom"), &kept).await.unwrap().as_str(), "Martin");
    assert!(!b.check_shreds().await.unwrap(), "nothing new since");
}

/// Puts the key tables back to `b` under a running instance: SQLite from an older copy of the
/// file (attached), PostgreSQL from copies of the tables (the shred rows deleted).
async fn restore_in_place(s: &Setup, b: &Backup) {
    match b {
        Backup::Sqlite(file) => {
            use sqlx::Connection as _;
            let mut c = sqlx::SqliteConnection::connect(s.url.expose_secret()).await.unwrap();
            let attach = format!("ATTACH DATABASE '{}' AS bak", file.display());
            sqlx::query(sqlx::AssertSqlSafe(attach)).execute(&mut c).await.unwrap();
            for sql in [
                "DELETE FROM guichet_data_keys",
                "INSERT INTO guichet_data_keys SELECT * FROM bak.guichet_data_keys",
                "DELETE FROM guichet_key_tombstones",
                "INSERT INTO guichet_key_tombstones SELECT * FROM bak.guichet_key_tombstones",
                "DELETE FROM guichet_meta",
                "INSERT INTO guichet_meta SELECT * FROM bak.guichet_meta",
                "DETACH DATABASE bak",
            ] {
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
            c.close().await.unwrap();
        }
        Backup::Postgres => restore(s, b).await,
    }
}

/// A running gateway whose store is put back to a copy taken before an erasure: it finds out
/// by itself and destroys the key again (the shred generation went back, or its tombstones
/// count dropped), and meanwhile never uses a key it knows destroyed.
async fn a_running_instance_reapplies_erasures_when_the_store_goes_back(backend: Backend) {
    let s = Setup::new(backend).await;
    let app = start(&s).await.expect("the gateway must start");
    let vault = app.state().crypto.clone().expect("keys are configured");
    let store = app.state().store.clone();
    let token = vault.seal(&ctx("sub-1", "nom"), "Dupont").await.unwrap();
    let kept = vault.seal(&ctx("sub-2", "nom"), "Martin").await.unwrap();
    let key_id = store
        .keys()
        .find_by_owner("sub-1", "inscription-scolaire", guichet::crypto::DEFAULT_CLASS)
        .await
        .unwrap()
        .unwrap()
        .key_id;
    let backup = back_up(&s, backend).await;
    vault.shred("sub-1", "inscription-scolaire").await.unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(vault.clone().watch_shreds(rx));

    // Restored under the running instance: the destroyed key is back in the store…
    restore_in_place(&s, &backup).await;
    assert!(store.keys().find_by_id(&key_id).await.unwrap().is_some());
    // …for at most a few seconds: the instance destroys it again by itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while store.keys().find_by_id(&key_id).await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the restored key was not destroyed again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(store.keys().tombstones().await.unwrap().len(), 1);
    watcher.abort();

    // Restored again, with no one watching: the token still does not open, at once.
    restore_in_place(&s, &backup).await;
    assert!(store.keys().find_by_id(&key_id).await.unwrap().is_some());
    assert!(matches!(vault.open(&ctx("sub-1", "nom"), &token).await, Err(CryptoError::KeyGone)));
    assert!(store.keys().find_by_id(&key_id).await.unwrap().is_none(), "destroyed again when it was met");
    // New values for that citizen go under a new key; others are untouched.
    let again = vault.seal(&ctx("sub-1", "nom"), "Dupont").await.unwrap();
    assert_ne!(again.split('.').nth(1), token.split('.').nth(1));
    assert_eq!(vault.open(&ctx("sub-2", "nom"), &kept).await.unwrap().as_str(), "Martin");
}

async fn refused(s: &Setup, expected: &str) {
    let err = format!("{:#}", start(s).await.err().expect("must refuse to start"));
    assert!(err.contains(expected) && err.contains("guichet keys reconcile"), "{err}");
}

/// `serve` refuses to start when the tombstone file no longer vouches for every erasure the
/// store records, saying how to recover; `guichet keys reconcile` does.
async fn serve_refuses_to_start_when_the_tombstone_file_is_lost_behind_or_damaged(backend: Backend) {
    let s = Setup::new(backend).await;
    let v = s.vault().await;
    v.seal(&ctx("sub-1", "nom"), "Dupont").await.unwrap();
    v.shred("sub-1", "inscription-scolaire").await.unwrap();
    let file = s.keys.tombstones_path();
    let good = std::fs::read_to_string(&file).unwrap();
    assert!(good.contains("\tc="), "every line is checksummed: {good:?}");

    std::fs::remove_file(&file).unwrap();
    refused(&s, "is missing while the store records 1 erasure").await;
    std::fs::write(&file, "").unwrap();
    refused(&s, "lacks 1 erasure(s)").await;
    // A torn last line (a crash mid-append), and an edited one: errors, never skipped.
    std::fs::write(&file, format!("{good}{}", &good[..good.len() / 2])).unwrap();
    refused(&s, "line 2: damaged").await;
    std::fs::write(&file, good.replacen("inscription-scolaire", "inscription-scolairX", 1)).unwrap();
    refused(&s, "line 1: damaged").await;
    let mut out = Vec::new();
    assert!(admin::reconcile(&v, &mut out).await.is_err(), "reconcile refuses a damaged file too");

    // The way out named in the message: the file restored, or written again from the store.
    std::fs::remove_file(&file).unwrap();
    admin::reconcile(&v, &mut out).await.unwrap();
    let said = String::from_utf8(out).unwrap();
    assert!(said.contains("tombstones: 1 erasure(s)") && said.contains("consistent"), "{said}");
    start(&s).await.expect("starts once the file is whole again");
    let mut status = Vec::new();
    admin::status(&v, &mut status).await.unwrap();
    assert!(String::from_utf8(status).unwrap().contains("consistent"));
}

crate::on_both_stores!(
    a_running_instance_reapplies_erasures_when_the_store_goes_back,
    serve_refuses_to_start_when_the_tombstone_file_is_lost_behind_or_damaged,
    another_vault_drops_a_shredded_key_when_it_reads_the_generation,
    fields_seal_open_and_shred,
    shredding_survives_a_backup_restore,
    tombstones_in_the_store_are_copied_to_a_lost_file,
    rotation_rewraps_in_batches_and_resumes
);

#[tokio::test]
async fn serve_refuses_to_start_without_a_usable_keyring() {
    let s = Setup::new(Backend::Sqlite).await;
    let mut missing = s.keys.clone();
    missing.keyring = s.dir.path().join("nowhere.age");
    let other_dir = tempfile::tempdir().unwrap();
    let wrong_identity = KeysSettings { keyring: s.keys.keyring.clone(), ..test_keys(other_dir.path()) };
    for (keys, expected) in [(missing, "guichet keys init"), (wrong_identity, "cannot be opened")] {
        let s2 = Setup { dir: tempfile::tempdir().unwrap(), url: s.url.clone(), keys };
        let err = format!("{:#}", start(&s2).await.err().expect("must refuse to start"));
        assert!(err.contains(expected), "{err}");
        assert!(err.contains("keyring"), "{err}");
    }
    let app = start(&s).await.unwrap();
    assert!(app.state().crypto.is_some());
}

#[tokio::test]
async fn no_key_subject_or_value_in_debug_output() {
    let s = Setup::new(Backend::Sqlite).await;
    let app = start(&s).await.unwrap();
    let state = app.state();
    let vault = state.crypto.clone().unwrap();
    vault.seal(&ctx("sub-secret-42", "nom"), "Dupont-Secret").await.unwrap();
    let shown = format!("{state:?} {vault:?}");
    assert!(!shown.contains("sub-secret-42") && !shown.contains("Dupont-Secret"), "{shown}");
    let identity = std::fs::read_to_string(s.keys.identity_file.as_ref().unwrap()).unwrap();
    let secret = identity.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap();
    assert!(!shown.contains(secret));
}

#[test]
fn keys_cli_init_status_and_refusal_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guichet.toml");
    let toml = format!(
        "data_dir = {:?}\n[keys]\nkeyring = {:?}\nidentity_file = {:?}\n",
        dir.path().join("data"),
        dir.path().join("keyring.age"),
        dir.path().join("identity.txt")
    );
    std::fs::write(&config, toml).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("GUICHET_CONFIG")
            .output()
            .unwrap()
    };
    let out = run(&["keys", "init"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OUT of the store's backups"), "{text}");
    let tombstones = dir.path().join("keyring.age.tombstones");
    assert!(tombstones.exists(), "keys init creates the tombstone file");
    assert!(text.contains(&format!("Created the tombstone file {}", tombstones.display())), "{text}");
    assert!(text.contains("never with the store's backups"), "{text}");
    assert!(!text.contains("AGE-SECRET-KEY"), "the identity is never printed");
    let again = run(&["keys", "init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let status = run(&["keys", "status"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(String::from_utf8_lossy(&status.stdout).contains("current KEK version: 1"));
    assert!(String::from_utf8_lossy(&status.stdout).contains("tombstones: 0 erasure(s)"), "status reports the file");
    let check = run(&["check"]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("tombstones: 0 erasure(s)"), "check reports the file");
    std::fs::write(&tombstones, "torn line\tc=0").unwrap();
    let check = run(&["check"]);
    assert!(!check.status.success(), "a damaged tombstone file fails `guichet check`");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(said.contains("tombstones: PROBLEM") && said.contains("line 1: damaged"), "{said}");
    std::fs::write(&tombstones, "").unwrap();
    let rotate = run(&["keys", "rotate"]);
    assert!(rotate.status.success(), "{}", String::from_utf8_lossy(&rotate.stderr));
    let retire = run(&["keys", "retire", "1"]);
    assert!(retire.status.success(), "{}", String::from_utf8_lossy(&retire.stderr));
    let reconcile = run(&["keys", "reconcile"]);
    assert!(reconcile.status.success(), "{}", String::from_utf8_lossy(&reconcile.stderr));
}
