//! Fixtures shared by the benchmarks that run the real protect phase (`crypto`, `scaling`).

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use guichet::clock::{Clock, SystemClock, SystemRandom};
use guichet::config::KeysSettings;
use guichet::crypto::{Keyring, Vault};
use guichet::policy::model::{Direction, Field, FieldLocation, Protection};
use guichet::store::{Store, StoreOptions};

/// A vault on a fresh SQLite store in `dir`, with a new in-memory keyring.
pub fn bench_vault(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Vault {
    rt.block_on(async {
        let url = secrecy::SecretString::from(format!("sqlite://{}", dir.join("bench.db").display()));
        let store = Store::connect(&url, &StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let mut keys = KeysSettings::at(dir.join("keyring.age"));
        keys.tombstones_file = Some(dir.join("tombstones"));
        let keyring = Keyring::generate(&SystemRandom::new(), SystemClock.now()).unwrap();
        Vault::new(keyring, store, &keys, Arc::new(SystemClock), Arc::new(SystemRandom::new()))
    })
}

/// A JSON body field declared `encrypt`, as a policy file compiles it.
pub fn encrypted(name: &str) -> Field {
    Field {
        name: name.to_owned(),
        category: "identite".into(),
        locations: vec![FieldLocation::Json],
        json_pointer: None,
        direction: Direction::Request,
        protection: Protection::Encrypt,
        label: None,
        visible_to: Vec::new(),
        searchable: false,
        compiled_pointer: Default::default(),
        compiled_name: Default::default(),
        compiled_class: Default::default(),
    }
}
