//! Access export latency for issue 13 (item 11): a citizen with records in all six example
//! activities, every application answering at once; the time from the export request to the
//! download being ready (`Exports::prepare`: the gateway's own data through its services, the
//! applications' records with every value opened, the zip, the sealing, the row), and the
//! download itself (`Exports::download`: the row, the opening, the journal entry). The gateway
//! is built exactly as `serve` builds it (`Application::build_with_policies`, SQLite, the
//! demo's routes and the embedded example policies, a real keyring).
//!
//! Two more scenarios of item 11 run after it: 1 000 rights requests created at once
//! (`RightsService::create`, each journaled: p50/p99 per creation and requests per second),
//! and propagation to a slow application (a real HTTP endpoint on loopback answering after
//! `SLOW_MS`, [`RUNNERS`] job runners working at once as instances would: jobs per second).
//!
//! Run: `cargo bench --bench export [-- ITERATIONS] [export] [creations] [propagation]`
//! (default 200 iterations, every scenario). Prints p50, p99 and max.
//! Record results in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use guichet::app::AppState;
use guichet::audit::{Actor, ActorKind, Ident};
use guichet::auth::session::{Kind, NewSession, Session};
use guichet::crypto::token::FieldContext;
use guichet::policy::model::Protection;
use guichet::rights::contract::{AppAnswer, AppStatus};
use guichet::rights::export::{AnswerSource, Answers, Owner};
use guichet::rights::request::{Channel, IdentityProof, Right};
use guichet::rights::service::{By, NewRequest, RightsRequest};
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

/// Concurrent creations in the `creations` scenario.
const CREATIONS: usize = 1000;
/// Propagation jobs in the `propagation` scenario, the slow application's delay, and how many
/// job runners take jobs at once (as that many gateway instances would).
const PROPAGATIONS: usize = 200;
const SLOW_MS: u64 = 200;
const RUNNERS: usize = 8;

/// An application's rights endpoint that answers every request after [`SLOW_MS`].
async fn slow_application() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = axum::routing::post(|| async {
        tokio::time::sleep(Duration::from_millis(SLOW_MS)).await;
        axum::Json(json!({ "request_id": "bench", "status": "completed", "records": {} }))
    });
    let router = axum::Router::new().route("/droits", endpoint);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

mod common;
use common::gateway;

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

fn new_request(subject: &str, right: Right) -> NewRequest {
    NewRequest {
        subject: subject.to_owned(),
        activity: None,
        right,
        channel: Channel::Online,
        agent: None,
        identity: IdentityProof::SignIn { acr: "eidas1".into() },
    }
}

/// [`CREATIONS`] requests of as many citizens, all created at once.
async fn creations(app: &AppState) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..CREATIONS)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move {
                let subject = format!("sub_bench_{n}");
                let by = By {
                    actor: Actor { kind: ActorKind::Citizen, id: Ident::new(subject.clone()).unwrap() },
                    role: Ident::new("citizen").unwrap(),
                };
                let t = Instant::now();
                app.rights.create(&app.policies.load(), new_request(&subject, Right::Access), &by).await.unwrap();
                t.elapsed()
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(CREATIONS);
    for t in tasks {
        samples.push(t.await.unwrap());
    }
    let total = start.elapsed();
    report("rights/create_concurrent", samples);
    println!(
        "rights/create_concurrent: {CREATIONS} in {:.2} s, {:.0} requests/s",
        total.as_secs_f64(),
        CREATIONS as f64 / total.as_secs_f64()
    );
}

/// [`PROPAGATIONS`] access requests delivered to the slow application by [`RUNNERS`] runners.
async fn propagation(app: &AppState, session: &Session) {
    let subjects = guichet::rights::propagation::Subjects::of(app, session);
    let subject = app.auth.consent_subject(session).to_owned();
    let by = By { actor: Actor::system(), role: Ident::new("bench").unwrap() };
    let set = app.policies.load();
    let one = set.activities.iter().find(|a| a.rights_endpoint.is_some()).expect("an activity with an endpoint");
    let mut ids = Vec::with_capacity(PROPAGATIONS);
    for _ in 0..PROPAGATIONS {
        let mut new = new_request(&subject, Right::Access);
        new.activity = Some(one.id.clone());
        let r = app.rights.create(&set, new, &by).await.unwrap();
        guichet::rights::propagation::start(app, &r, &subjects).await.unwrap();
        ids.push(r.id);
    }
    let start = Instant::now();
    let runners: Vec<_> = (0..RUNNERS)
        .map(|_| {
            let jobs = app.jobs.clone();
            tokio::spawn(async move {
                let mut done = 0;
                loop {
                    let n = jobs.run_due(1).await.unwrap().len();
                    if n == 0 {
                        return done;
                    }
                    done += n;
                }
            })
        })
        .collect();
    let mut ran = 0;
    for r in runners {
        ran += r.await.unwrap();
    }
    let total = start.elapsed();
    for id in &ids {
        let status = app.rights.get(id).await.unwrap().status;
        assert_eq!(status, guichet::rights::request::Status::Completed, "{id} was not delivered");
    }
    println!(
        "rights/propagation: {ran} jobs to an application answering in {SLOW_MS} ms, {RUNNERS} runners: {:.2} s, {:.1} jobs/s",
        total.as_secs_f64(),
        ran as f64 / total.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iterations: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(200);
    let named: Vec<&str> =
        args.iter().map(String::as_str).filter(|a| a.parse::<usize>().is_err() && !a.starts_with('-')).collect();
    let runs = |name: &str| named.is_empty() || named.contains(&name);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let slow = slow_application().await;
        let app = gateway(dir.path(), &format!("http://{slow}")).await;
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
            sectors: guichet::rights::export::session_sectors(&app, &session),
            claims: Some(session.claims.clone()),
        };
        if runs("creations") {
            creations(&app).await;
        }
        if runs("propagation") {
            propagation(&app, &session).await;
        }
        if !runs("export") {
            return;
        }
        let policies = app.policies.load();
        println!("activities: {}, records per activity: {RECORDS}", policies.activities.len());
        let (mut ready, mut downloaded) = (Vec::new(), Vec::new());
        for _ in 0..iterations {
            let request = app.rights.create(&policies, new_request(&subject, Right::Access), &by).await.unwrap();
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
