//! Propagation of rights requests to a real application over HTTP (Art. 19): the request is a
//! JWS that verifies against the gateway's published keys, names the citizen by the pseudonym
//! the application already receives, and is delivered by the durable job runner — at once
//! when the application answers, again after a 5xx or a timeout, never twice across two
//! instances; later statuses arrive through authenticated, idempotent callbacks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use guichet::auth::jose::{self, JwkSet};
use guichet::config::{KeysSettings, RouteAccess};
use guichet::rights::request::Status;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::auth::SESSION;
use crate::consent::{choose, citizen};
use crate::helpers::{Backend, TestApp, TestAppBuilder, route, spawn_app, test_keys};
use crate::oidc_mock::MockProvider;
use crate::on_both_stores;

pub const NEWSLETTER: &str = include_str!("../../policies/lettre-information.toml");
pub const API: &str = "/.guichet/api/v1/rights";
const CALLBACK_SECRET: &str = "rappel-secret-de-test-0123456789";

/// How the test application answers rights requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with a final answer (access: the records it keeps for that pseudonym).
    AnswerNow,
    /// 503 for the first `n` requests, then as `AnswerNow`.
    FailFirst(usize),
    /// Never answers in time.
    Hang,
    /// 202 pending: the answer comes later by callback.
    Accept,
    /// 400: the application rejects the request.
    Reject,
}

#[derive(Default)]
struct Inner {
    mode: Option<Mode>,
    jwks_url: Option<String>,
    /// Verified claims of each request, in arrival order.
    received: Vec<Value>,
    /// Each request as it arrived (the compact JWS).
    raw: Vec<String>,
    /// Records per pseudonym (what `access` returns, what `erasure` deletes).
    records: std::collections::HashMap<String, Value>,
}

/// A town-hall application's rights endpoint, verifying each JWS against the gateway's JWKS.
#[derive(Clone, Default)]
pub struct RightsApp {
    inner: Arc<Mutex<Inner>>,
}

impl RightsApp {
    pub async fn start(mode: Mode) -> (Self, std::net::SocketAddr) {
        let me = Self::default();
        me.inner.lock().unwrap().mode = Some(mode);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/droits", axum::routing::post(rights)).with_state(me.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (me, addr)
    }

    pub fn trust(&self, gateway: &TestApp) {
        self.inner.lock().unwrap().jwks_url = Some(gateway.url("/.guichet/jwks.json"));
    }

    /// Verifies requests against the JWKS at `url` (a gateway process).
    pub fn trust_url(&self, url: String) {
        self.inner.lock().unwrap().jwks_url = Some(url);
    }

    /// Each request as it arrived (the compact JWS).
    pub fn raw(&self) -> Vec<String> {
        self.inner.lock().unwrap().raw.clone()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inner.lock().unwrap().mode = Some(mode);
    }

    pub fn keep(&self, pseudonym: &str, record: Value) {
        self.inner.lock().unwrap().records.insert(pseudonym.to_owned(), record);
    }

    pub fn received(&self) -> Vec<Value> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The gateway's published keys. A restarted gateway may deliver before the test has
    /// pointed the application at its new address: the address is read again for a while.
    async fn gateway_keys(&self) -> Option<bytes::Bytes> {
        for _ in 0..40 {
            let url = self.inner.lock().unwrap().jwks_url.clone().expect("the test must call trust()");
            if let Ok(r) = reqwest::get(url).await {
                return r.bytes().await.ok();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

async fn rights(State(me): State<RightsApp>, headers: axum::http::HeaderMap, body: String) -> Response {
    assert_eq!(headers["content-type"], "application/jose");
    let Some(jwks) = me.gateway_keys().await else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
    let Ok(verified) = jose::verify(&body, &JwkSet::parse(&jwks).unwrap(), &[jose::Alg::Es256]) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    assert_eq!(verified.header.typ.as_deref(), Some("guichet-rights+jwt"));
    let claims = Value::Object(verified.claims);
    let (mode, attempt) = {
        let mut i = me.inner.lock().unwrap();
        i.received.push(claims.clone());
        i.raw.push(body.clone());
        (i.mode.unwrap(), i.received.len())
    };
    let pseudonym = claims["subject_identity"]["value"].as_str().unwrap().to_owned();
    let answer_now = || {
        let mut i = me.inner.lock().unwrap();
        let records = match claims["type"].as_str().unwrap() {
            "access" | "portability" => i.records.get(&pseudonym).cloned(),
            "erasure" => i.records.remove(&pseudonym).map(|_| json!({})),
            _ => None,
        };
        let body = json!({ "request_id": claims["request_id"], "status": "completed", "records": records });
        (StatusCode::OK, axum::Json(body)).into_response()
    };
    match mode {
        Mode::AnswerNow => answer_now(),
        Mode::FailFirst(n) if attempt <= n => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::FailFirst(_) => answer_now(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            answer_now()
        }
        Mode::Accept => {
            (StatusCode::ACCEPTED, axum::Json(json!({ "request_id": claims["request_id"], "status": "pending" })))
                .into_response()
        }
        Mode::Reject => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// A gateway with the newsletter activity, whose rights endpoint is `rights_app`, a keyring,
/// the callback secret on the `lettre` route and a 2 s answer timeout. `policy_extra` is
/// added to the policy's top-level keys.
pub struct Setup {
    pub app: TestApp,
    pub mock: MockProvider,
    pub rights_app: RightsApp,
    pub keys: KeysSettings,
    pub rights_addr: std::net::SocketAddr,
    pub _dir: TempDir,
}

pub async fn setup(backend: Backend, mode: Mode, policy_extra: &str) -> Setup {
    let mock = MockProvider::start().await;
    let (rights_app, addr) = RightsApp::start(mode).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = test_keys(dir.path());
    let secret_file = dir.path().join("rappel.secret");
    std::fs::write(&secret_file, format!("{CALLBACK_SECRET}\n")).unwrap();
    let builder = gateway(&mock, backend, addr, policy_extra, &keys, secret_file);
    let app = builder.start().await;
    rights_app.trust(&app);
    Setup { app, mock, rights_app, keys, rights_addr: addr, _dir: dir }
}

pub fn gateway(
    mock: &MockProvider,
    backend: Backend,
    rights_addr: std::net::SocketAddr,
    policy_extra: &str,
    keys: &KeysSettings,
    secret_file: std::path::PathBuf,
) -> TestAppBuilder {
    // An extra `sector = …` replaces the newsletter's own (`general`).
    let base = if policy_extra.contains("sector = ") {
        NEWSLETTER.replacen("sector = \"general\"\n", "", 1)
    } else {
        NEWSLETTER.to_owned()
    };
    let policy = base.replacen(
        "rights_endpoint = \"/droits\"",
        &format!("rights_endpoint = \"http://{rights_addr}/droits\"\n{policy_extra}"),
        1,
    );
    let keys = keys.clone();
    // Instances sharing a store share their signing key, as in production.
    let signing_key = secret_file.with_file_name("assertion.pem");
    if !signing_key.exists() {
        std::fs::write(&signing_key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    }
    spawn_app().backend(backend).with_citizen_provider(mock.issuer()).with_policies(&[("lettre.toml", &policy)]).with(
        move |s, up| {
            let mut lettre = route("lettre", "/lettre-information", &format!("http://{up}"));
            lettre.access = RouteAccess::Citizen;
            lettre.no_personal_data = false;
            lettre.rights_callback_secret_file = Some(secret_file);
            lettre.timeouts.response_headers = Duration::from_secs(2);
            s.routes.push(lettre);
            s.keys = Some(keys);
            s.auth.assertion_key_file = Some(signing_key);
        },
    )
}

pub async fn post_json(app: &TestApp, session: &str, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("cookie", format!("{SESSION}={session}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// GETs `path` as the signed-in citizen and reads the JSON answer.
pub async fn get_json(app: &TestApp, session: &str, path: &str) -> Value {
    let r = app.client.get(app.url(path)).header("cookie", format!("{SESSION}={session}")).send().await.unwrap();
    r.json().await.unwrap()
}

/// Files a request through the citizen API; returns its reference.
pub async fn file(app: &TestApp, session: &str, right: &str) -> String {
    let r = post_json(app, session, API, &json!({ "right": right, "activity": "lettre-information" })).await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// Waits (at most 10 s) until the request reaches `status`.
pub async fn wait_for(app: &TestApp, id: &str, status: Status) {
    for _ in 0..200 {
        if app.state.rights.get(id).await.unwrap().status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("request {id} never reached {status:?}: {:?}", app.state.rights.get(id).await.unwrap().status);
}

/// Waits until the application received `n` requests.
pub async fn wait_received(rights_app: &RightsApp, n: usize) {
    for _ in 0..200 {
        if rights_app.received().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the application received {} requests, not {n}", rights_app.received().len());
}

/// The pseudonym the newsletter application receives for this citizen (consent given, then
/// one page read through the gateway).
pub async fn pseudonym_seen_by_app(app: &TestApp, session: &str) -> String {
    assert_eq!(choose(app, session, "donner").await.status(), 303);
    let r = app
        .client
        .get(app.url("/lettre-information/"))
        .header("cookie", format!("{SESSION}={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.upstream.last().headers["x-guichet-subject"].to_str().unwrap().to_owned()
}

async fn an_application_that_answers_at_once_completes_the_request(backend: Backend) {
    let s = setup(backend, Mode::AnswerNow, "rights_route = \"lettre\"").await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let pseudonym = pseudonym_seen_by_app(&s.app, &angela).await;
    s.rights_app.keep(&pseudonym, json!({ "email": "gch1.canary-angela" }));

    let id = file(&s.app, &angela, "access").await;
    wait_for(&s.app, &id, Status::Completed).await;

    let received = s.rights_app.received();
    assert_eq!(received.len(), 1, "delivered exactly once");
    let claims = &received[0];
    assert_eq!(claims["request_id"], format!("{id}.lettre-information"));
    assert_eq!(claims["type"], "access");
    assert_eq!(claims["regulation"], "gdpr");
    assert_eq!(claims["aud"], "lettre");
    assert_eq!(claims["subject_identity"]["type"], "pseudonym");
    assert_eq!(claims["subject_identity"]["value"], pseudonym.as_str(), "the pseudonym the application knows");
    assert!(claims["status_callback_url"].as_str().unwrap().ends_with("/.guichet/api/v1/rights/callbacks/lettre"));

    let answers = s.app.state.rights.app_answers(&id).await.unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].activity, "lettre-information");
    assert_eq!(answers[0].answer.records, Some(json!({ "email": "gch1.canary-angela" })));
    let shown = get_json(&s.app, &angela, &format!("{API}/{id}")).await;
    assert_eq!(shown["status"], "completed");
    assert!(shown["answer"]["summary"].as_str().unwrap().contains("fait"), "{shown}");
}

async fn a_failing_application_is_tried_again_after_the_back_off(backend: Backend) {
    let s = setup(backend, Mode::FailFirst(1), "").await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let id = file(&s.app, &angela, "access").await;
    wait_received(&s.rights_app, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.app.state.rights.get(&id).await.unwrap().status, Status::WaitingOnApplications);
    // Not before the back-off: the runner keeps polling, nothing is sent again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(s.rights_app.received().len(), 1);
    s.app.clock.advance(time::Duration::seconds(31));
    wait_for(&s.app, &id, Status::Completed).await;
    assert_eq!(s.rights_app.received().len(), 2);
}

async fn a_silent_application_times_out_and_is_tried_again(backend: Backend) {
    let s = setup(backend, Mode::Hang, "").await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let id = file(&s.app, &angela, "access").await;
    wait_received(&s.rights_app, 1).await;
    // The 2 s timeout gives up long before the application's 30 s.
    let mut retrying = false;
    for _ in 0..200 {
        let counts = s.app.state.jobs.counts().await.unwrap();
        if counts.queued == 1 && counts.running == 0 {
            retrying = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(retrying, "the job went back to the queue: {:?}", s.app.state.jobs.counts().await.unwrap());
    assert_eq!(s.app.state.rights.get(&id).await.unwrap().status, Status::WaitingOnApplications);
    s.rights_app.set_mode(Mode::AnswerNow);
    s.app.clock.advance(time::Duration::seconds(31));
    wait_for(&s.app, &id, Status::Completed).await;
}

async fn callbacks(s: &Setup, secret: &str, body: &Value) -> reqwest::Response {
    let r = s
        .app
        .client
        .post(s.app.url("/.guichet/api/v1/rights/callbacks/lettre"))
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    crate::openapi::checked("post", "/.guichet/api/v1/rights/callbacks/{route}", r).await
}

async fn later_answers_come_by_authenticated_idempotent_callbacks(backend: Backend) {
    let s = setup(backend, Mode::Accept, "").await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let id = file(&s.app, &angela, "access").await;
    wait_received(&s.rights_app, 1).await;
    let rid = format!("{id}.lettre-information");
    let done = json!({ "request_id": rid, "status": "completed", "records": { "n": 1 } });

    // A wrong secret, or none: 401 and nothing recorded.
    assert_eq!(callbacks(&s, "not-the-secret", &done).await.status(), 401);
    let no_auth = s
        .app
        .client
        .post(s.app.url("/.guichet/api/v1/rights/callbacks/lettre"))
        .header("content-type", "application/json")
        .body(done.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.status(), 401);
    assert_eq!(no_auth.headers()["content-type"], "application/problem+json");
    // Another route's name: no secret configured there, refused too.
    let other = s
        .app
        .client
        .post(s.app.url("/.guichet/api/v1/rights/callbacks/app"))
        .header("authorization", format!("Bearer {CALLBACK_SECRET}"))
        .body(done.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.app.state.rights.get(&id).await.unwrap().status, Status::WaitingOnApplications);
    let pending = s.app.state.rights.app_answers(&id).await.unwrap();
    assert!(pending.iter().all(|a| !a.answer.status.is_final()), "{pending:?}");

    assert_eq!(callbacks(&s, CALLBACK_SECRET, &done).await.status(), 200);
    wait_for(&s.app, &id, Status::Completed).await;
    // The same answer again, or a contradicting one: acknowledged, nothing changes.
    assert_eq!(callbacks(&s, CALLBACK_SECRET, &done).await.status(), 200);
    let refused = json!({ "request_id": rid, "status": "refused", "reason": "changé d'avis" });
    assert_eq!(callbacks(&s, CALLBACK_SECRET, &refused).await.status(), 200);
    let answers = s.app.state.rights.app_answers(&id).await.unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].answer.records, Some(json!({ "n": 1 })));
    assert_eq!(s.app.state.rights.get(&id).await.unwrap().status, Status::Completed);
    // A request never sent to this application: 404, nothing recorded.
    let foreign = json!({ "request_id": "DR-0000-0000.lettre-information", "status": "completed" });
    assert_eq!(callbacks(&s, CALLBACK_SECRET, &foreign).await.status(), 404);
}

async fn an_application_rejecting_the_request_leaves_a_task_for_an_agent(backend: Backend) {
    let s = setup(backend, Mode::Reject, "").await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let id = file(&s.app, &angela, "access").await;
    wait_received(&s.rights_app, 1).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        tasks = s.app.state.rights.manual_tasks().await.unwrap();
        if !tasks.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0].request_id.as_str(), tasks[0].activity.as_str()), (id.as_str(), "lettre-information"));
    assert!(tasks[0].reason.as_deref().unwrap().contains("à traiter à la main"));
    assert_eq!(s.app.state.rights.get(&id).await.unwrap().status, Status::WaitingOnApplications);
}

async fn an_activity_without_endpoint_waits_for_an_agent(backend: Backend) {
    let mock = MockProvider::start().await;
    let policy = NEWSLETTER.replacen("rights_endpoint = \"/droits\"", "", 1);
    let app = spawn_app()
        .backend(backend)
        .with_citizen_provider(mock.issuer())
        .with_policies(&[("lettre.toml", &policy)])
        .with(|s, up| {
            let mut lettre = route("lettre", "/lettre-information", &format!("http://{up}"));
            lettre.access = RouteAccess::Citizen;
            lettre.no_personal_data = false;
            s.routes.push(lettre);
        })
        .start()
        .await;
    let angela = citizen(&app, &mock, "sub-angela").await;
    let id = file(&app, &angela, "access").await;
    let tasks = app.state.rights.manual_tasks().await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].request_id, id);
    assert_eq!(app.state.rights.get(&id).await.unwrap().status, Status::WaitingOnApplications);
}

on_both_stores!(
    an_application_that_answers_at_once_completes_the_request,
    a_failing_application_is_tried_again_after_the_back_off,
    a_silent_application_times_out_and_is_tried_again,
    later_answers_come_by_authenticated_idempotent_callbacks,
    an_application_rejecting_the_request_leaves_a_task_for_an_agent,
    an_activity_without_endpoint_waits_for_an_agent,
);

/// Two gateways on one PostgreSQL store, both running their job loops: each request reaches
/// the application exactly once.
#[tokio::test]
#[cfg_attr(not(guichet_pg_tests), ignore = "PostgreSQL store test: set TEST_DATABASE_URL to run it")]
async fn postgres_two_instances_on_one_store_deliver_each_request_once() {
    let s = setup(Backend::Postgres, Mode::AnswerNow, "").await;
    let (mock, keys) = (&s.mock, &s.keys);
    let rights_addr = s.rights_addr;
    let b = gateway(mock, Backend::Postgres, rights_addr, "", keys, s._dir.path().join("rappel.secret"))
        .with_store_url(s.app.store_url.clone())
        .start()
        .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let (gw, name) = if i % 2 == 0 { (&s.app, "a") } else { (&b, "b") };
        let session = citizen(gw, mock, &format!("sub-{name}-{i}")).await;
        ids.push(file(gw, &session, "access").await);
    }
    for id in &ids {
        wait_for(&s.app, id, Status::Completed).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen: Vec<String> =
        s.rights_app.received().iter().map(|c| c["request_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen.len(), 6, "{seen:?}");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6, "no request delivered twice");
}

/// Rectification: the corrected value is sealed as the proxy would seal it and sent in
/// `corrections`; identity claims are not sent, the answer says where to correct them.
async fn a_rectification_sends_sealed_corrections(backend: Backend) {
    let s = setup(backend, Mode::AnswerNow, "").await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let id = file(&s.app, &angela, "rectification").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.rights_app.received().is_empty(), "nothing is sent before the corrections");
    let path = format!("{API}/{id}/corrections");
    let corrections = |r| crate::openapi::checked("post", "/.guichet/api/v1/rights/{id}/corrections", r);
    let unknown = post_json(&s.app, &angela, &path, &json!({ "fields": { "shoe_size": "38" } })).await;
    assert_eq!(corrections(unknown).await.status(), 422);
    let body = json!({ "fields": { "email": "angela.nouvelle@example.fr", "family_name": "DUPONT" } });
    let r = corrections(post_json(&s.app, &angela, &path, &body).await).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["sent"], json!(["email"]));
    assert_eq!(answer["identity_fields"], json!(["family_name"]));
    assert!(answer["identity_note"].as_str().unwrap().contains("état civil"));
    wait_for(&s.app, &id, Status::Completed).await;
    let claims = &s.rights_app.received()[0];
    assert_eq!(claims["type"], "rectification");
    let token = claims["corrections"]["email"].as_str().unwrap();
    assert!(token.starts_with("gch2."), "{token}");
    assert!(!claims.to_string().contains("angela.nouvelle"), "no clear value in the request");
    assert!(claims["corrections"].get("family_name").is_none());
    // The token opens for this citizen's key, as the proxy's would.
    let vault = s.app.state.crypto.as_ref().unwrap();
    let (subject, activity) = vault.owner_of(token).await.unwrap().unwrap();
    let ctx = guichet::crypto::FieldContext { activity: &activity, field: "email", subject: &subject };
    assert_eq!(vault.open(&ctx, token).await.unwrap().as_str(), "angela.nouvelle@example.fr");
    // Given twice: the request no longer waits for corrections.
    assert_eq!(post_json(&s.app, &angela, &path, &body).await.status(), 422);
}

on_both_stores!(a_rectification_sends_sealed_corrections);

/// A `guichet serve` process (system clock, JSON logs at `level`) with the newsletter activity
/// whose rights endpoint is `rights_addr`, a keyring, a stable signing key, the store at
/// `store` and a job lease of 2 s, so a job its killed predecessor held is taken over soon.
async fn gateway_process(
    dir: &std::path::Path,
    mock: &MockProvider,
    rights_addr: std::net::SocketAddr,
    store: &secrecy::SecretString,
    level: &str,
) -> crate::helpers::GatewayProcess {
    use secrecy::ExposeSecret;
    let upstream = crate::helpers::TestUpstream::start().await;
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let policy = NEWSLETTER.replacen(
        "rights_endpoint = \"/droits\"",
        &format!("rights_endpoint = \"http://{rights_addr}/droits\"\nrights_route = \"lettre\""),
        1,
    );
    std::fs::write(policies.join("lettre.toml"), policy).unwrap();
    let signing_key = dir.join("assertion.pem");
    if !signing_key.exists() {
        std::fs::write(&signing_key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        test_keys(dir);
    }
    let extra = format!(
        r#"[[routes]]
name = "lettre"
path_prefix = "/lettre-information"
upstream = "http://{up}"
no_personal_data = false
access = "citizen"

[store]
url = "{store}"

[jobs]
lease = "2s"

[keys]
keyring = {keyring:?}
identity_file = {identity:?}

[auth]
assertion_key_file = {signing_key:?}

[auth.citizen]
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = "{client_secret}"
scopes = ["openid", "identite_pivot"]
"#,
        up = upstream.addr,
        store = store.expose_secret(),
        keyring = dir.join("keyring.age").display().to_string(),
        identity = dir.join("keyring-identity.txt").display().to_string(),
        signing_key = signing_key.display().to_string(),
        issuer = mock.issuer(),
        client_id = crate::oidc_mock::CLIENT_ID,
        client_secret = crate::oidc_mock::CLIENT_SECRET,
    );
    let gw = crate::helpers::GatewayProcess::start_with(dir, upstream.addr, level, &extra).await;
    // The upstream must outlive this function: the process keeps forwarding to it.
    std::mem::forget(upstream);
    gw
}

/// Signs `sub` in at the process and files `right` on the newsletter; returns the session
/// cookie and the request's reference.
async fn file_at_process(
    client: &reqwest::Client,
    base: &str,
    mock: &MockProvider,
    sub: &str,
    right: &str,
) -> (String, String) {
    let signed = crate::logging::sign_in_process(client, base, mock, sub, crate::logging::zephirine()).await;
    let r = client
        .post(format!("{base}{API}"))
        .header("cookie", format!("{SESSION}={}", signed.session))
        .header("content-type", "application/json")
        .body(json!({ "right": right, "activity": "lettre-information" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    (signed.session, id)
}

/// Art. 19 reliability: a gateway process is killed (SIGKILL) while it delivers requests to an
/// application that has not answered yet; restarted on the same store, it delivers every
/// request, and each one is answered and completed exactly once. Only the request that was on
/// the wire at the kill may arrive twice (the contract says to deduplicate on `request_id`);
/// every other request arrives exactly once, and none is lost.
async fn a_gateway_killed_during_propagation_loses_no_request(backend: Backend) {
    crate::helpers::init();
    let mock = MockProvider::start().await;
    mock.set_faults(crate::logging::real_time_tokens());
    let (rights_app, rights_addr) = RightsApp::start(Mode::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::fresh_store_url(backend, dir.path()).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let mut gw = gateway_process(dir.path(), &mock, rights_addr, &store, "info").await;
    let base = format!("http://{}", gw.addr);
    rights_app.trust_url(format!("{base}/.guichet/jwks.json"));
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(file_at_process(&client, &base, &mock, &format!("sub-kill-{i}"), "access").await.1);
    }
    // The first delivery is on the wire (the application holds it): kill now.
    wait_received(&rights_app, 1).await;
    gw.stop();
    let in_flight: Vec<String> =
        rights_app.received().iter().map(|c| c["request_id"].as_str().unwrap().to_owned()).collect();
    let conn = guichet::store::Store::connect(&store, &guichet::store::StoreOptions::default()).await.unwrap();
    for id in &ids {
        let row = conn.rights().get(id).await.unwrap().unwrap();
        assert_ne!(row.status, "completed", "{id} cannot be answered before the restart");
    }

    rights_app.set_mode(Mode::AnswerNow);
    let gw = gateway_process(dir.path(), &mock, rights_addr, &store, "info").await;
    rights_app.trust_url(format!("http://{}/.guichet/jwks.json", gw.addr));
    for id in &ids {
        let mut done = false;
        for _ in 0..400 {
            if conn.rights().get(id).await.unwrap().unwrap().status == "completed" {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(done, "{id} was not completed after the restart");
    }
    // Give a duplicate delivery the time to show up, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen: Vec<String> =
        rights_app.received().iter().map(|c| c["request_id"].as_str().unwrap().to_owned()).collect();
    for id in &ids {
        let app_id = format!("{id}.lettre-information");
        let n = seen.iter().filter(|s| **s == app_id).count();
        let most = if in_flight.contains(&app_id) { 2 } else { 1 };
        assert!((1..=most).contains(&n), "{app_id} delivered {n} times: {seen:?}");
        let answered = conn.rights_apps().get(id, "lettre-information").await.unwrap().unwrap();
        assert_eq!(answered.state, "answered", "{answered:?}");
    }
    assert_eq!(seen.len(), ids.len() + in_flight.len(), "{seen:?}");
}

/// A gateway process propagating requests (one the application fails with 503, one it
/// answers, erasure included) at debug level logs none of the citizen's identity, sign-in secrets, pseudonyms or signed requests.
async fn a_propagating_gateway_logs_no_personal_data(backend: Backend) {
    crate::helpers::init();
    let mock = MockProvider::start().await;
    mock.set_faults(crate::logging::real_time_tokens());
    let (rights_app, rights_addr) = RightsApp::start(Mode::FailFirst(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::fresh_store_url(backend, dir.path()).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut gw = gateway_process(dir.path(), &mock, rights_addr, &store, "debug").await;
    let base = format!("http://{}", gw.addr);
    rights_app.trust_url(format!("{base}/.guichet/jwks.json"));
    let (session, _access) = file_at_process(&client, &base, &mock, "sub-zephirine-7731", "access").await;
    // The first delivery fails (503) and waits for its back-off.
    wait_received(&rights_app, 1).await;
    let (session_b, _erasure) = file_at_process(&client, &base, &mock, "sub-zephirine-7732", "erasure").await;
    wait_received(&rights_app, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.stop();

    let log = gw.log();
    // Logged at all: the targets recorded, the application's answer stored.
    assert!(log.contains("INSERT INTO rights_propagation"), "propagation was not logged at all:\n{log}");
    assert!(log.contains("UPDATE rights_propagation SET state"), "no answer was logged:\n{log}");
    let claims = rights_app.received();
    let mut secrets: Vec<String> = crate::logging::IDENTITY_SECRETS
        .into_iter()
        .chain(["sub-zephirine-7731", "sub-zephirine-7732", &session, &session_b])
        .map(str::to_owned)
        .collect();
    secrets.extend(claims.iter().map(|c| c["subject_identity"]["value"].as_str().unwrap().to_owned()));
    // A signed request, whole or its signature.
    for jws in rights_app.raw() {
        secrets.push(jws.rsplit('.').next().unwrap().to_owned());
        secrets.push(jws);
    }
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "`{secret}` reached the log:\n{log}");
    }
}

on_both_stores!(a_gateway_killed_during_propagation_loses_no_request, a_propagating_gateway_logs_no_personal_data);
