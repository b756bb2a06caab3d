//! The gateway as `serve` builds it, for the benches (`mod common;`): SQLite in `dir`, the
//! demo's routes (without its agents' back-office) towards `upstream`, a citizen provider
//! never contacted, a real keyring, and the embedded example policies. Also the vault and
//! field fixtures of the benches that run the real protect phase (`crypto`, `scaling`).

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use guichet::app::{AppState, Application, Deps};
use guichet::clock::{Clock as _, SystemClock, SystemRandom};
use guichet::config::{KeysSettings, Loaded, ProviderSettings};
use guichet::crypto::{Keyring, Vault};
use guichet::policy::PolicySource;
use guichet::policy::model::{Direction, Field, FieldLocation, Protection};
use guichet::store::{Store, StoreOptions};
use secrecy::SecretString;

/// Settings of a gateway in `dir` with a citizen provider that is never contacted (sessions
/// are created directly, as the sign-in callback would), no admin listener, and no route.
pub fn settings(dir: &std::path::Path) -> Loaded {
    let mut loaded = Loaded::defaults();
    let s = &mut loaded.settings;
    s.data_dir = dir.to_owned();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.admin.enabled = false;
    s.server.public_url = Some("http://127.0.0.1".into());
    s.auth.citizen = Some(ProviderSettings::new(
        "http://127.0.0.1:9/unused",
        "bench",
        SecretString::from("bench-client-secret-0123456789"),
    ));
    loaded
}

pub async fn gateway(dir: &std::path::Path, upstream: &str) -> AppState {
    let mut loaded = settings(dir);
    let s = &mut loaded.settings;
    // The demo's routes but its agents' back-office (no agent provider here).
    s.routes.extend(guichet::demo::demo_routes(upstream).into_iter().filter(|r| r.name != "back-office"));
    let mut keys = KeysSettings::at(dir.join("keyring.age"));
    keys.identity_file = Some(dir.join("keyring-identity.txt"));
    guichet::crypto::admin::init(&keys, &SystemRandom::new(), SystemClock.now(), &mut std::io::sink()).unwrap();
    s.keys = Some(keys);
    let mut config = loaded.validate().unwrap();
    config.store_url = SecretString::from(format!("sqlite://{}", dir.join("guichet.db").display()));
    let deps = Deps { clock: Arc::new(SystemClock), random: Arc::new(SystemRandom::new()) };
    let source = PolicySource::DirOrEmbedded(dir.join("no-policies-here"));
    Application::build_with_policies(config, deps, source).await.unwrap().state()
}

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

/// The declared JSON paths of `fields`, compiled as the policy does once per activity.
pub fn json_paths(fields: &[&Field]) -> guichet::proxy::json_fields::Paths {
    let segments: Vec<&[String]> = fields.iter().map(|f| f.json_segments().unwrap()).collect();
    guichet::proxy::json_fields::Paths::new(&segments)
}

/// One citizen's protect phase for `activity`, as the proxy builds it per request (its data
/// key is looked up once).
pub fn protector<'a>(
    vault: &'a Vault,
    activity: &'a str,
    paths: &'a guichet::proxy::json_fields::Paths,
    max_bytes: u64,
) -> guichet::proxy::fields::Protector<'a> {
    guichet::proxy::fields::Protector {
        vault: Some(vault),
        activity,
        json_paths: Some(paths),
        owner: guichet::proxy::fields::Owner::Citizen("sub-0123456789abcdef".into()),
        max_bytes,
        idle: std::time::Duration::from_secs(60),
        return_to: "/".into(),
        sealing_keys: Default::default(),
    }
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
