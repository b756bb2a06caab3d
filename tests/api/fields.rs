//! Personal fields end to end: the protect phase turns declared fields into tokens before
//! the upstream sees them, fails closed (nothing forwarded) when it cannot, and leaves routes
//! without declared fields streaming.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use guichet::config::RouteAccess;
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::auth::{SESSION, agent_info, agent_sign_in, cookie, sign_in_at};
use crate::helpers::{TestApp, TestAppBuilder, raw_sql, route, spawn_app, test_keys};
use crate::oidc_mock::MockProvider;

const CANTINE: &str = include_str!("../../policies/cantine.toml");

/// An application that keeps every request body it receives and answers with the last one
/// (as `text/html`), standing for a town-hall application storing what it is sent.
#[derive(Clone, Default)]
pub struct Recorder {
    bodies: Arc<Mutex<Vec<(String, String)>>>,
}

impl Recorder {
    pub async fn start(&self) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(keep).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    /// How many requests arrived.
    pub fn hits(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// The last body received, and its path.
    pub fn last(&self) -> (String, String) {
        self.bodies.lock().unwrap().last().cloned().expect("the application received nothing")
    }
}

async fn keep(State(r): State<Recorder>, req: Request) -> Response {
    let path = req.uri().path_and_query().map(ToString::to_string).unwrap_or_default();
    let bytes = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let stored = {
        let mut b = r.bodies.lock().unwrap();
        b.push((path.clone(), body));
        // What a GET shows: the last record posted.
        b.iter().rev().find(|(_, body)| !body.is_empty()).map(|(_, body)| body.clone()).unwrap_or_default()
    };
    if path.ends_with("/morceaux") {
        // The record streamed in 7-byte chunks: tokens arrive split across chunks.
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
            stored.into_bytes().chunks(7).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
        let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
        return ([("content-type", "text/plain")], body).into_response();
    }
    ([("content-type", "text/html; charset=utf-8")], stored).into_response()
}

/// The cantine policy with its agents' route at `/dossiers/*`.
fn agents_policy() -> String {
    CANTINE.replace("path = \"/api/inscriptions\"", "path = \"/dossiers/*\"")
}

pub struct Setup {
    pub app: TestApp,
    pub mock: MockProvider,
    pub agents: MockProvider,
    pub recorder: Recorder,
    _keys: Option<TempDir>,
}

/// A gateway with the cantine policy at `/cantine` (public route, so anonymous requests
/// reach the protect phase) and its agents' pages at `/dossiers`, the recorder behind both,
/// and a keyring unless `keys` is false. Agents at `ecole.example.fr` get `agent-scolaire`.
async fn setup_with(keys: bool, tweak: impl FnOnce(TestAppBuilder) -> TestAppBuilder) -> Setup {
    setup_for(keys, agents_policy(), tweak).await
}

/// Like `setup_with`, with the given cantine policy text.
async fn setup_for(keys: bool, policy: String, tweak: impl FnOnce(TestAppBuilder) -> TestAppBuilder) -> Setup {
    let mock = MockProvider::start().await;
    let agents = MockProvider::start().await;
    let recorder = Recorder::default();
    let up = recorder.start().await;
    let dir = keys.then(|| tempfile::tempdir().unwrap());
    let keyring = dir.as_ref().map(|d| test_keys(d.path()));
    let builder = spawn_app()
        .with_citizen_provider(mock.issuer())
        .with_agent_provider(agents.issuer())
        .with_policies(&[("cantine.toml", &policy)])
        .with(move |s, _| {
            let mut cantine = route("cantine", "/cantine", &format!("http://{up}"));
            cantine.access = RouteAccess::Public;
            cantine.no_personal_data = false;
            let mut dossiers = route("dossiers", "/dossiers", &format!("http://{up}"));
            dossiers.access = RouteAccess::Agent;
            dossiers.no_personal_data = false;
            s.routes.extend([cantine, dossiers]);
            s.auth.agent_roles.push(guichet::config::RoleRule {
                role: "agent-scolaire".into(),
                siret: vec![],
                email_domains: vec!["ecole.example.fr".into()],
                uids: vec![],
            });
            s.keys = keyring;
        });
    let app = tweak(builder).start().await;
    Setup { app, mock, agents, recorder, _keys: dir }
}

async fn setup() -> Setup {
    setup_with(true, |b| b).await
}

async fn citizen(s: &Setup, sub: &str) -> String {
    let r = sign_in_at(&s.app, &s.mock, "/.guichet/connexion?retour=/prive", sub).await;
    cookie(&r, SESSION).expect("session cookie")
}

async fn post(s: &Setup, session: Option<&str>, path: &str, content_type: &str, body: String) -> reqwest::Response {
    let mut req = s.app.client.post(s.app.url(path)).header("content-type", content_type).body(body);
    if let Some(session) = session {
        req = req.header("cookie", format!("{SESSION}={session}"));
    }
    req.send().await.unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn declared_form_fields_reach_the_upstream_as_tokens() {
    let s = setup().await;
    let angela = citizen(&s, "sub-angela").await;
    let body = form(&[("child_given_names", "Léa Marie"), ("school", "Jules Ferry"), ("diet", "sans porc")]);
    let r = post(&s, Some(&angela), "/cantine/inscription", FORM, body).await;
    assert_eq!(r.status(), 200);
    let (_, stored) = s.recorder.last();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(stored.as_bytes()).into_owned().collect();
    assert!(pairs[0].1.starts_with("gch1."), "{stored}");
    assert_eq!(pairs[1], ("school".to_owned(), "Jules Ferry".to_owned()), "pass fields stay in clear");
    assert!(pairs[2].1.starts_with("gch1."));
    assert!(!stored.contains("porc") && !stored.contains("L%C3%A9a"), "{stored}");
}

#[tokio::test]
async fn declared_json_fields_reach_the_upstream_as_tokens() {
    let s = setup().await;
    let angela = citizen(&s, "sub-angela").await;
    let body = serde_json::json!({"child_family_name": "Dupont", "school": "Jules Ferry", "other": 1}).to_string();
    let r = post(&s, Some(&angela), "/cantine/inscription", "application/json", body).await;
    assert_eq!(r.status(), 200);
    let (_, stored) = s.recorder.last();
    let doc: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert!(doc["child_family_name"].as_str().unwrap().starts_with("gch1."), "{stored}");
    assert_eq!(doc["school"], "Jules Ferry");
    assert_eq!(doc["other"], 1);
    assert!(!stored.contains("Dupont"));
}

#[tokio::test]
async fn requests_that_cannot_be_protected_are_refused_and_nothing_is_forwarded() {
    let s = setup_with(true, |b| b.with(|s, _| s.keys.as_mut().unwrap().transform_max_bytes = 1024)).await;
    let angela = citizen(&s, "sub-angela").await;
    let cases = [
        ("application/json", "{\"child_family_name\": ".to_owned(), 422, "malformed JSON"),
        ("application/json", "{\"child_family_name\": {\"a\": 1}}".to_owned(), 422, "object for a value"),
        ("multipart/form-data; boundary=x", "--x--".to_owned(), 422, "unreadable body type"),
        (FORM, form(&[("child_family_name", &"x".repeat(2000))]), 413, "over the transform limit"),
    ];
    for (ct, body, status, why) in cases {
        let r = post(&s, Some(&angela), "/cantine/inscription", ct, body).await;
        assert_eq!(r.status(), status, "{why}");
    }
    // Anonymous: encrypted fields need the citizen they belong to.
    let r = post(&s, None, "/cantine/inscription", FORM, form(&[("diet", "sans porc")])).await;
    assert_eq!(r.status(), 401);
    assert_eq!(s.recorder.hits(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn a_field_declared_for_forms_cannot_slip_through_in_a_json_body() {
    let forms_only = agents_policy().replace("in = [\"form\", \"json\"]", "in = [\"form\"]");
    assert!(!forms_only.contains("\"json\"]"), "the fixture must declare form fields only");
    let s = setup_for(true, forms_only, |b| b).await;
    let angela = citizen(&s, "sub-angela").await;
    let body = serde_json::json!({"diet": "sans porc"}).to_string();
    let r = post(&s, Some(&angela), "/cantine/inscription", "application/json", body).await;
    assert_eq!(r.status(), 422);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "urn:guichet:problem:field-not-protectable");
    assert_eq!(s.recorder.hits(), 0, "nothing was forwarded");
    // The declared form still works.
    let r = post(&s, Some(&angela), "/cantine/inscription", FORM, form(&[("diet", "sans porc")])).await;
    assert_eq!(r.status(), 200);
    assert!(!s.recorder.last().1.contains("porc"));
}

#[tokio::test]
async fn without_a_keyring_declared_fields_fail_closed() {
    let s = setup_with(false, |b| b).await;
    let angela = citizen(&s, "sub-angela").await;
    let r = post(&s, Some(&angela), "/cantine/inscription", FORM, form(&[("diet", "sans porc")])).await;
    assert_eq!(r.status(), 503);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "urn:guichet:problem:protection-unavailable");
    // A request carrying no body still passes: there is nothing to protect.
    assert_eq!(s.app.client.get(s.app.url("/cantine/")).send().await.unwrap().status(), 200);
    assert_eq!(s.recorder.hits(), 1, "only the request without fields was forwarded");
}

#[tokio::test]
async fn a_key_store_failure_refuses_the_request_and_forwards_nothing() {
    let s = setup().await;
    let angela = citizen(&s, "sub-angela").await;
    // The key table disappears (a broken store); sessions still work from their table.
    raw_sql(&s.app.store_url, "DROP TABLE guichet_data_keys").await;
    let r = post(&s, Some(&angela), "/cantine/inscription", FORM, form(&[("diet", "sans porc")])).await;
    assert_eq!(r.status(), 503);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "urn:guichet:problem:store-unavailable");
    assert_eq!(s.recorder.hits(), 0);
}

#[tokio::test]
async fn declared_query_parameters_are_protected_too() {
    let policy = agents_policy().replace(
        "[[fields]]\nname = \"diet\"",
        "[[fields]]\nname = \"q\"\ncategory = \"identite-enfant\"\nin = [\"query\"]\nprotection = \"pseudonymize\"\n\n[[fields]]\nname = \"diet\"",
    );
    assert!(policy.contains("name = \"q\""));
    let s = setup_with(true, move |b| b.with_policies(&[("cantine.toml", &policy)])).await;
    let r = s.app.client.get(s.app.url("/cantine/recherche?q=Dupont&page=2")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (path, _) = s.recorder.last();
    assert!(path.starts_with("/cantine/recherche?q=gchp1.") && path.ends_with("&page=2"), "{path}");
}

#[tokio::test]
async fn bodies_of_routes_without_declared_fields_stream_past_the_transform_limit() {
    let s = setup_with(true, |b| b.with(|s, _| s.keys.as_mut().unwrap().transform_max_bytes = 1024)).await;
    let r = s.app.client.post(s.app.url("/count")).body(vec![b'a'; 256 * 1024]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["bytes"], 256 * 1024);
}

async fn agent(s: &Setup, email: &str) -> String {
    let r = agent_sign_in(&s.app, &s.agents, agent_info("21750001600019", email), "").await;
    cookie(&r, SESSION).expect("agent session cookie")
}

async fn page(s: &Setup, session: &str, path: &str) -> String {
    let r = s.app.client.get(s.app.url(path)).header("cookie", format!("{SESSION}={session}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn tokens_are_revealed_to_exactly_the_allowed_viewers() {
    let s = setup().await;
    let angela = citizen(&s, "sub-angela").await;
    let body = form(&[("child_given_names", "Lea <3"), ("diet", "sans porc")]);
    assert_eq!(post(&s, Some(&angela), "/cantine/inscription", FORM, body).await.status(), 200);
    let (_, stored) = s.recorder.last();
    assert!(!stored.contains("Lea") && stored.contains("gch1."), "the application stores tokens: {stored}");

    // The citizen sees her own values (HTML-escaped).
    let own = page(&s, &angela, "/cantine/recu").await;
    assert!(own.contains("child_given_names=Lea &lt;3") && own.contains("diet=sans porc"), "{own}");
    // Tokens split across chunks of a streamed response are found too.
    let streamed = page(&s, &angela, "/cantine/morceaux").await;
    assert!(streamed.contains("child_given_names=Lea <3") && streamed.contains("diet=sans porc"), "{streamed}");
    // Another citizen sees placeholders.
    let bob = citizen(&s, "sub-bob").await;
    let other = page(&s, &bob, "/cantine/recu").await;
    assert!(other.contains("child_given_names=[donnée protégée]") && !other.contains("Lea"), "{other}");
    // The school agent sees the child's name, not the diet (kept for the central kitchen).
    let school = agent(&s, "paul@ecole.example.fr").await;
    let seen = page(&s, &school, "/dossiers/1").await;
    assert!(seen.contains("child_given_names=Lea &lt;3") && seen.contains("diet=[donnée protégée]"), "{seen}");
    // Another agent sees neither.
    let clerk = agent(&s, "lucie@mairie.example.fr").await;
    let hidden = page(&s, &clerk, "/dossiers/1").await;
    assert!(!hidden.contains("Lea") && !hidden.contains("porc"), "{hidden}");

    // The reveal to the school agent is journaled once, with no value in it.
    s.app.state.audit.flush().await.unwrap();
    let entries = s.app.state.store.audit().entries_after(0, 1000).await.unwrap();
    let reveals: Vec<_> = entries.iter().filter(|e| e.operation == "reveal").collect();
    assert_eq!(reveals.len(), 1, "{reveals:?}");
    assert!(reveals[0].body.contains("child_given_names") && reveals[0].body.contains("cantine"));
    assert!(reveals[0].subject.as_deref().is_some_and(|sub| sub.len() == 64), "a subject pseudonym");
    assert!(entries.iter().all(|e| !e.body.contains("Lea") && !e.body.contains("sub-angela")));
}

#[tokio::test]
async fn searchable_fields_carry_a_blind_index_that_an_agents_search_is_rewritten_to() {
    let policy = agents_policy().replace(
        "name = \"child_family_name\"\ncategory = \"identite-enfant\"\nin = [\"form\", \"json\"]\nprotection = \"encrypt\"",
        "name = \"child_family_name\"\ncategory = \"identite-enfant\"\nin = [\"form\", \"json\", \"query\"]\nprotection = \"encrypt\"\nsearchable = true",
    );
    assert!(policy.contains("searchable = true"));
    let s = setup_with(true, move |b| b.with_policies(&[("cantine.toml", &policy)])).await;
    let angela = citizen(&s, "sub-angela").await;
    let r = post(&s, Some(&angela), "/cantine/inscription", FORM, form(&[("child_family_name", "Dupont")])).await;
    assert_eq!(r.status(), 200);
    let (_, stored) = s.recorder.last();
    let pairs: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(stored.as_bytes()).into_owned().collect();
    assert!(pairs["child_family_name"].starts_with("gch1."));
    let index = pairs["child_family_name_index"].clone();
    assert!(index.starts_with("gchb1."), "{stored}");
    // JSON bodies get the same index beside the token.
    let body = serde_json::json!({"child_family_name": "Dupont"}).to_string();
    assert_eq!(post(&s, Some(&angela), "/cantine/inscription", "application/json", body).await.status(), 200);
    let doc: serde_json::Value = serde_json::from_str(&s.recorder.last().1).unwrap();
    assert_eq!(doc["child_family_name_index"], index.as_str());
    // An agent searching by the name: the upstream receives the index, not the name.
    let school = agent(&s, "paul@ecole.example.fr").await;
    let r = s
        .app
        .client
        .get(s.app.url("/dossiers/recherche?child_family_name=Dupont"))
        .header("cookie", format!("{SESSION}={school}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (path, _) = s.recorder.last();
    assert_eq!(path, format!("/dossiers/recherche?child_family_name={index}"));
}

#[tokio::test]
async fn batch_jobs_get_clear_values_for_a_declared_purpose_rate_limited_and_journaled() {
    const TOKEN: &str = "courrier-0123456789abcdef";
    let s = setup_with(true, |b| {
        b.with(|s, _| {
            s.keys.as_mut().unwrap().reveal_clients.push(guichet::config::RevealClient {
                name: "courrier".into(),
                token_sha256: guichet::consent::sha256_hex(TOKEN),
                activity: "cantine".into(),
                purposes: vec!["inscription".into()],
                fields: vec!["child_given_names".into()],
                per_minute: 3,
            });
        })
    })
    .await;
    let angela = citizen(&s, "sub-angela").await;
    let body = form(&[("child_given_names", "Lea"), ("diet", "sans porc")]);
    assert_eq!(post(&s, Some(&angela), "/cantine/inscription", FORM, body).await.status(), 200);
    let (_, stored) = s.recorder.last();
    let pairs: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(stored.as_bytes()).into_owned().collect();
    let call = |bearer: &'static str, purpose: &'static str, field: &'static str, token: String| {
        let body = serde_json::json!({"purpose": purpose, "items": [{"field": field, "token": token}]});
        s.app.client.post(s.app.url("/.guichet/api/v1/reveal")).bearer_auth(bearer).json(&body).send()
    };
    let name = pairs["child_given_names"].clone();
    assert_eq!(call("wrong", "inscription", "child_given_names", name.clone()).await.unwrap().status(), 401);
    let r = call(TOKEN, "inscription", "child_given_names", name.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["values"][0]["value"], "Lea");
    // A field the job may not reveal, or a purpose it may not declare: refused.
    assert_eq!(call(TOKEN, "inscription", "diet", pairs["diet"].clone()).await.unwrap().status(), 403);
    assert_eq!(call(TOKEN, "facturation", "child_given_names", name.clone()).await.unwrap().status(), 403);
    // Three calls a minute (refused ones count too): the fourth is refused.
    assert_eq!(call(TOKEN, "inscription", "child_given_names", name).await.unwrap().status(), 429);
    // The reveal is in the journal, under the job's name, without the value.
    let entries = s.app.state.store.audit().entries_after(0, 1000).await.unwrap();
    let reveal = entries.iter().find(|e| e.operation == "reveal").expect("a reveal entry");
    assert!(reveal.body.contains("batch:courrier") && reveal.body.contains("child_given_names"), "{}", reveal.body);
    assert!(entries.iter().all(|e| !e.body.contains("Lea")));
}
