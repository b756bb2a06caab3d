//! Access export latency for issue 13 (item 11): a citizen with records in all six example
//! activities, every application answering at once; the time from the export request to the
//! download being ready (`Exports::prepare`: the gateway's own data through its services, the
//! applications' records with every value opened, the zip, the sealing, the row), and the
//! download itself (`Exports::download`: the row, the opening, the journal entry). The gateway
//! is built exactly as `serve` builds it (`Application::build_with_policies`, SQLite, the
//! demo's routes and the embedded example policies, a real keyring).
//!
//! Run: `cargo bench --bench export [-- ITERATIONS]` (default 200). Prints p50, p99 and max.
//! Record results in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use guichet::app::{AppState, Application, Deps};
use guichet::audit::{Actor, ActorKind, Ident};
use guichet::auth::session::{Kind, NewSession, Session};
use guichet::clock::{Clock as _, SystemClock, SystemRandom};
use guichet::config::{KeysSettings, Loaded, ProviderSettings};
use guichet::crypto::token::FieldContext;
use guichet::policy::PolicySource;
use guichet::policy::model::Protection;
use guichet::rights::contract::{AppAnswer, AppStatus};
use guichet::rights::export::{AnswerSource, Answers, Owner};
use guichet::rights::request::{Channel, IdentityProof, Right};
use guichet::rights::service::{By, NewRequest, RightsRequest};
use secrecy::SecretString;
use serde_json::{Value, json};

/// Records per activity, each with every encrypted field of the activity.
const RECORDS: usize = 10;

#[derive(Debug)]
struct AnswerAtOnce(Answers);

impl AnswerSource for AnswerAtOnce {
    fn answers<'a>(&'a self, _: &'a RightsRequest) -> BoxFuture<'a, Result<Answers, String>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

async fn gateway(dir: &std::path::Path) -> AppState {
    let mut loaded = Loaded::defaults();
    let s = &mut loaded.settings;
    s.data_dir = dir.to_owned();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.admin.enabled = false;
    s.server.public_url = Some("http://127.0.0.1".into());
    // Never contacted: the session is created directly, as the sign-in callback would.
    s.auth.citizen = Some(ProviderSettings::new(
        "http://127.0.0.1:9/unused",
        "bench",
        SecretString::from("bench-client-secret-0123456789"),
    ));
    // The demo's routes but its agents' back-office (no agent provider here).
    s.routes.extend(guichet::demo::demo_routes("http://127.0.0.1:9").into_iter().filter(|r| r.name != "back-office"));
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

/// Every activity's application answering with [`RECORDS`] records of sealed values.
async fn answers(app: &AppState, field_subject: &str) -> Answers {
    let vault = app.crypto.as_ref().unwrap();
    let set = app.policies.load();
    let mut out = Vec::new();
    for a in &set.activities {
        let mut records = Vec::new();
        for n in 0..RECORDS {
            let mut record = serde_json::Map::new();
            record.insert("numero".into(), json!(n));
            for f in a.fields.iter().filter(|f| f.protection == Protection::Encrypt) {
                let ctx = FieldContext { activity: &a.id, field: &f.name, subject: field_subject };
                record.insert(
                    f.name.clone(),
                    json!(vault.seal(&ctx, &format!("valeur {n} de {}", f.name)).await.unwrap()),
                );
            }
            records.push(Value::Object(record));
        }
        let answer = AppAnswer {
            request_id: "bench".into(),
            status: AppStatus::Completed,
            reason: None,
            records: Some(json!({ "dossiers": records })),
        };
        out.push((a.id.clone(), answer));
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}

fn main() {
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let app = gateway(dir.path()).await;
        let new = NewSession {
            kind: Kind::Citizen,
            issuer: "http://127.0.0.1:9/unused".into(),
            subject: "sub-bench".into(),
            provider_sid: None,
            acr: "eidas1".into(),
            claims: BTreeMap::from([("given_name".into(), "Angela".into())]),
            roles: vec![],
            id_token: "unused".into(),
        };
        let (_, session): (String, Arc<Session>) = app.auth.sessions.create(new).await.unwrap();
        let subject = app.auth.consent_subject(&session).to_owned();
        let field_subject = app.auth.field_subject(&session).to_owned();
        app.exports.set_source(Arc::new(AnswerAtOnce(answers(&app, &field_subject).await)));
        let by = By {
            actor: Actor { kind: ActorKind::Citizen, id: Ident::new(subject.clone()).unwrap() },
            role: Ident::new("citizen").unwrap(),
        };
        let owner = Owner {
            subject: subject.clone(),
            field_subject: Some(field_subject),
            claims: Some(session.claims.clone()),
        };
        let policies = app.policies.load();
        println!("activities: {}, records per activity: {RECORDS}", policies.activities.len());
        let (mut ready, mut downloaded) = (Vec::new(), Vec::new());
        for _ in 0..iterations {
            let new = NewRequest {
                subject: subject.clone(),
                activity: None,
                right: Right::Access,
                channel: Channel::Online,
                agent: None,
                identity: IdentityProof::SignIn { acr: "eidas1".into() },
            };
            let request = app.rights.create(&policies, new, &by).await.unwrap();
            let start = Instant::now();
            let r = app.exports.prepare(&app, &request, &owner, &session, &by).await.unwrap();
            ready.push(start.elapsed());
            let start = Instant::now();
            let archive = app.exports.download(&app, &request.id, &r.token, &session.id_hash, &by).await.unwrap();
            downloaded.push(start.elapsed());
            assert!(archive.len() > 1000);
        }
        report("export/request_to_ready", ready);
        report("export/download", downloaded);
    });
}
