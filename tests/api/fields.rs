//! Personal fields end to end: the protect phase turns declared fields into tokens before
//! the upstream sees them, fails closed (nothing forwarded) when it cannot, and leaves routes
//! without declared fields streaming.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use guichet::config::{KeysSettings, RouteAccess};
use guichet::crypto::vault::{SHRED_VISIBLE_WITHIN, Shredded};
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::auth::{SESSION, agent_info, agent_sign_in, cookie, sign_in_at};
use crate::helpers::{Backend, TestApp, TestAppBuilder, raw_sql, route, spawn_app, test_keys};
use crate::oidc_mock::MockProvider;

const CANTINE: &str = include_str!("../../policies/cantine.toml");

/// An application that keeps every request body it receives and answers with the last one
/// (as `text/html`), standing for a town-hall application storing what it is sent.
#[derive(Clone, Default)]
pub struct Recorder {
    bodies: Arc<Mutex<Vec<(String, String)>>>,
    template: Arc<Mutex<Option<Template>>>,
}

/// What `GET …/gabarit` answers: `text` with each `{field}` replaced by what the last form
/// posted held for that field (its token), as `content_type`, in `chunk`-byte chunks.
#[derive(Clone)]
pub struct Template {
    pub content_type: &'static str,
    pub text: String,
    pub chunk: usize,
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

    /// Sets what `GET …/gabarit` answers.
    pub fn answer_with(&self, t: Template) {
        *self.template.lock().unwrap() = Some(t);
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
    if path.ends_with("/gabarit") {
        let t = r.template.lock().unwrap().clone().expect("no template set");
        let form =
            r.bodies.lock().unwrap().iter().rev().find(|(_, b)| b.contains("gch2.")).cloned().unwrap_or_default();
        let mut text = t.text.clone();
        for (name, token) in url::form_urlencoded::parse(form.1.as_bytes()) {
            text = text.replace(&format!("{{{name}}}"), &token);
        }
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
            text.into_bytes().chunks(t.chunk).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
        let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
        return ([("content-type", t.content_type)], body).into_response();
    }
    if path.ends_with("/entetes") {
        // The child's first names token of the last form, in two response headers.
        let form =
            r.bodies.lock().unwrap().iter().rev().find(|(_, b)| b.contains("gch2.")).cloned().unwrap_or_default();
        let token = url::form_urlencoded::parse(form.1.as_bytes())
            .find(|(n, _)| n == "child_given_names")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let fiche = format!("/cantine/fiche?prenoms={token}&v=1");
        return ([("x-prenoms", token.as_str()), ("x-fiche", fiche.as_str())], "").into_response();
    }
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
    crate::helpers::lenient(CANTINE).replace("path = \"/api/inscriptions\"", "path = \"/dossiers/*\"")
}

pub struct Setup {
    pub app: TestApp,
    pub mock: MockProvider,
    pub agents: MockProvider,
    pub recorder: Recorder,
    /// The recorder's address.
    pub up: std::net::SocketAddr,
    pub keys: Option<KeysSettings>,
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
    setup_on(Backend::Sqlite, keys, policy, tweak).await
}

/// Like `setup_for`, on the given store engine.
async fn setup_on(
    backend: Backend,
    keys: bool,
    policy: String,
    tweak: impl FnOnce(TestAppBuilder) -> TestAppBuilder,
) -> Setup {
    let mock = MockProvider::start().await;
    let agents = MockProvider::start().await;
    let recorder = Recorder::default();
    let up = recorder.start().await;
    let dir = keys.then(|| tempfile::tempdir().unwrap());
    let keyring = dir.as_ref().map(|d| test_keys(d.path()));
    let builder = instance(&mock, &agents, up, &policy, keyring.clone()).backend(backend);
    let app = tweak(builder).start().await;
    Setup { app, mock, agents, recorder, up, keys: keyring, _keys: dir }
}

/// One gateway of a `Setup`: providers, policy, routes to the recorder at `up`, keyring.
fn instance(
    mock: &MockProvider,
    agents: &MockProvider,
    up: std::net::SocketAddr,
    policy: &str,
    keyring: Option<KeysSettings>,
) -> TestAppBuilder {
    spawn_app()
        .with_citizen_provider(mock.issuer())
        .with_agent_provider(agents.issuer())
        .with_policies(&[("cantine.toml", policy)])
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
        })
}

async fn setup() -> Setup {
    setup_with(true, |b| b).await
}

async fn citizen(s: &Setup, sub: &str) -> String {
    let r = sign_in_at(&s.app, &s.mock, "/.guichet/connexion?retour=/prive", sub).await;
    cookie(&r, SESSION).expect("session cookie")
}

async fn post(
    s: &Setup,
    session: Option<&str>,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
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
    assert!(pairs[0].1.starts_with("gch2."), "{stored}");
    assert_eq!(pairs[1], ("school".to_owned(), "Jules Ferry".to_owned()), "pass fields stay in clear");
    assert!(pairs[2].1.starts_with("gch2."));
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
    assert!(doc["child_family_name"].as_str().unwrap().starts_with("gch2."), "{stored}");
    assert_eq!(doc["school"], "Jules Ferry");
    assert_eq!(doc["other"], 1);
    assert!(!stored.contains("Dupont"));
}

#[tokio::test]
async fn json_values_are_replaced_in_place_whatever_the_spelling_or_repetition_of_their_member() {
    let s = setup().await;
    let angela = citizen(&s, "sub-angela").await;
    // An escaped member name and a member sent twice: every occurrence is protected, and
    // every other byte (order, spacing, the undeclared members) reaches the upstream as sent.
    let body = "{ \"school\" : \"Jules Ferry\",\n  \"child\\u005ffamily_name\": \"Dupont\", \"child_family_name\":\"Durand\", \"z\": [1, 2.50] }";
    let r = post(&s, Some(&angela), "/cantine/inscription", "application/json", body.to_owned()).await;
    assert_eq!(r.status(), 200);
    let (_, stored) = s.recorder.last();
    assert!(!stored.contains("Dupont") && !stored.contains("Durand"), "{stored}");
    assert!(stored.starts_with("{ \"school\" : \"Jules Ferry\",\n  \"child\\u005ffamily_name\": \"gch2."), "{stored}");
    assert!(stored.contains("\", \"child_family_name\":\"gch2."), "{stored}");
    assert!(stored.ends_with("\", \"z\": [1, 2.50] }"), "{stored}");
    assert_eq!(stored.matches("gch2.").count(), 2, "{stored}");

    // Not UTF-8: refused, as any malformed body.
    let hits = s.recorder.hits();
    let bad = b"{\"child_family_name\": \"Dupont\xff\"}".to_vec();
    let r = post(&s, Some(&angela), "/cantine/inscription", "application/json", bad).await;
    assert_eq!(r.status(), 422);
    assert_eq!(s.recorder.hits(), hits, "nothing was forwarded");
}

#[tokio::test]
async fn requests_that_cannot_be_protected_are_refused_and_nothing_is_forwarded() {
    let s = setup_with(true, |b| b.with(|s, _| s.keys.as_mut().unwrap().transform_max_bytes = 1024)).await;
    let angela = citizen(&s, "sub-angela").await;
    let cases = [
        ("application/json", "{\"child_family_name\": ".to_owned(), 422, "malformed JSON"),
        ("application/json", "{\"child_family_name\": {\"a\": 1}}".to_owned(), 422, "object for a value"),
        ("application/json", "{\"Child_Family_Name\": \"Dupont\"}".to_owned(), 422, "a JSON member in capitals"),
        ("multipart/form-data; boundary=x", "--x--".to_owned(), 422, "unreadable body type"),
        (FORM, form(&[("child_family_name", &"x".repeat(2000))]), 413, "over the transform limit"),
        (FORM, "school=x;diet=sans+porc".to_owned(), 422, "a `;` a framework may split on"),
        (FORM, form(&[("DIET", "sans porc")]), 422, "a declared name in capitals"),
        (FORM, form(&[("diet[]", "sans porc")]), 422, "a declared name as a PHP array"),
        (FORM, form(&[("child_family.name", "Dupont")]), 422, "a declared name PHP would mangle back"),
    ];
    for (ct, body, status, why) in cases {
        let r = post(&s, Some(&angela), "/cantine/inscription", ct, body).await;
        assert_eq!(r.status(), status, "{why}");
    }
    // A form field in the query (Rack merges it into the form's parameters, PHP's $_REQUEST
    // reads it): refused, in any spelling; a passed field or a blank value is fine there.
    for query in ["diet=sans+porc", "DIET=sans+porc", "diet%5B%5D=x"] {
        let path = format!("/cantine/inscription?{query}");
        let r = post(&s, Some(&angela), &path, FORM, form(&[("school", "x")])).await;
        assert_eq!(r.status(), 422, "{query}");
    }
    // Anonymous: encrypted fields need the citizen they belong to.
    let r = post(&s, None, "/cantine/inscription", FORM, form(&[("diet", "sans porc")])).await;
    assert_eq!(r.status(), 401);
    assert_eq!(s.recorder.hits(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn empty_values_of_declared_fields_are_forwarded_empty_even_for_anonymous_senders() {
    let s = setup().await;
    let body = form(&[("child_family_name", ""), ("diet", " "), ("school", "Jules Ferry")]);
    let r = post(&s, None, "/cantine/inscription", FORM, body.clone()).await;
    assert_eq!(r.status(), 200, "nothing to seal, so no sign-in needed");
    assert_eq!(s.recorder.last().1, body, "forwarded as sent: empty, not sealed");
    let json = r#"{"child_family_name": "", "diet": ""}"#;
    assert_eq!(post(&s, None, "/cantine/inscription", "application/json", json).await.status(), 200);
    assert_eq!(s.recorder.last().1, json);
    // A value beside the empty one is still sealed, and so needs the citizen.
    let r = post(&s, None, "/cantine/inscription", FORM, form(&[("child_family_name", ""), ("diet", "x")])).await;
    assert_eq!(r.status(), 401);
    assert_eq!(s.recorder.hits(), 2, "the last one was not forwarded");
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
    assert!(!stored.contains("Lea") && stored.contains("gch2."), "the application stores tokens: {stored}");

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

    // Tokens in response headers: revealed or masked the same way, percent-encoded.
    let headers_for = |session: String| {
        let s = &s;
        async move {
            let r = s.app.client.get(s.app.url("/cantine/entetes")).header("cookie", format!("{SESSION}={session}"));
            let r = r.send().await.unwrap();
            (r.headers()["x-prenoms"].to_str().unwrap().to_owned(), r.headers()["x-fiche"].to_str().unwrap().to_owned())
        }
    };
    assert_eq!(
        headers_for(angela.clone()).await,
        ("Lea%20%3C3".into(), "/cantine/fiche?prenoms=Lea%20%3C3&v=1".into())
    );
    let masked = "%5Bdonn%C3%A9e%20prot%C3%A9g%C3%A9e%5D";
    assert_eq!(headers_for(bob.clone()).await, (masked.into(), format!("/cantine/fiche?prenoms={masked}&v=1")));

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
    let policy = agents_policy();
    let (head, tail) = policy.split_at(policy.find("name = \"child_family_name\"").unwrap());
    let tail = tail.replacen("in = [\"form\", \"json\"]", "in = [\"form\", \"json\", \"query\"]\nsearchable = true", 1);
    let policy = format!("{head}{tail}");
    assert!(policy.contains("searchable = true"));
    let s = setup_with(true, move |b| b.with_policies(&[("cantine.toml", &policy)])).await;
    let angela = citizen(&s, "sub-angela").await;
    let r = post(&s, Some(&angela), "/cantine/inscription", FORM, form(&[("child_family_name", "Dupont")])).await;
    assert_eq!(r.status(), 200);
    let (_, stored) = s.recorder.last();
    let pairs: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(stored.as_bytes()).into_owned().collect();
    assert!(pairs["child_family_name"].starts_with("gch2."));
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

/// Reads RFC 4180 CSV as a spreadsheet would: rows of fields, quoted fields unescaped.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = vec![vec![String::new()]];
    let (mut quoted, mut fresh) = (false, true);
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        let row = rows.last_mut().unwrap();
        match (quoted, c) {
            (true, '"') if it.peek() == Some(&'"') => {
                it.next();
                row.last_mut().unwrap().push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if fresh => quoted = true,
            (false, ',') => row.push(String::new()),
            (false, '\n') => rows.push(vec![String::new()]),
            (_, c) => row.last_mut().unwrap().push(c),
        }
        fresh = !quoted && matches!(c, ',' | '\n');
    }
    rows
}

/// GET `path` as `session` (anonymous when `None`), the body's bytes.
async fn bytes_of(s: &Setup, session: Option<&str>, path: &str) -> Vec<u8> {
    let mut req = s.app.client.get(s.app.url(path));
    if let Some(session) = session {
        req = req.header("cookie", format!("{SESSION}={session}"));
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

const NAME: &str = "Dupont, \"Jo\"\nfils";
const FORMULA: &str = "=HYPERLINK(\"http://x\")";
const MARKUP: &str = "x\" onmouseover=alert(1) <b>@y";
const PLACEHOLDER: &str = "[donnée protégée]";

/// Serves `text` as `content_type` whole, in 7-byte and in 1-byte chunks, to each viewer;
/// every way of chunking gives the same bytes. Returns, per viewer, the body.
async fn render(
    s: &Setup,
    viewers: &[Option<&str>],
    path: &str,
    content_type: &'static str,
    text: &str,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for viewer in viewers {
        let mut seen = Vec::new();
        for chunk in [100_000, 7, 1] {
            s.recorder.answer_with(Template { content_type, text: text.to_owned(), chunk });
            seen.push(bytes_of(s, *viewer, path).await);
        }
        assert!(
            seen.iter().all(|b| *b == seen[0]),
            "chunking changed the output: {:?}",
            String::from_utf8_lossy(&seen[1])
        );
        out.push(seen.remove(0));
    }
    out
}

#[tokio::test]
async fn revealed_values_and_placeholders_are_escaped_for_each_response_syntax() {
    let s = setup().await;
    let angela = citizen(&s, "sub-angela").await;
    let body = form(&[
        ("child_family_name", NAME),
        ("child_given_names", FORMULA),
        ("parent_email", MARKUP),
        ("diet", "sans porc"),
    ]);
    assert_eq!(post(&s, Some(&angela), "/cantine/inscription", FORM, body).await.status(), 200);
    let school = agent(&s, "paul@ecole.example.fr").await;
    let viewers = [Some(angela.as_str()), Some(school.as_str()), None];

    // CSV: fields that need quotes are quoted whole, quotes doubled, formulas neutralised;
    // every row keeps its four fields, whoever looks.
    let csv = "nom,prenom,courriel,regime\n{child_family_name},{child_given_names},\"M. {parent_email}\",{diet}\n";
    let seen = render(&s, &viewers, "/cantine/gabarit", "text/csv", csv).await;
    let rows: Vec<Vec<Vec<String>>> = seen.iter().map(|b| csv_rows(&String::from_utf8(b.clone()).unwrap())).collect();
    let formula_as_text = format!("'{FORMULA}");
    let markup_in_cell = format!("M. {MARKUP}");
    assert_eq!(rows[0][1], [NAME, formula_as_text.as_str(), markup_in_cell.as_str(), "sans porc"], "the citizen");
    assert_eq!(rows[1][1], [NAME, formula_as_text.as_str(), markup_in_cell.as_str(), PLACEHOLDER], "the school");
    let masked_cell = format!("M. {PLACEHOLDER}");
    assert_eq!(rows[2][1], [PLACEHOLDER, PLACEHOLDER, masked_cell.as_str(), PLACEHOLDER], "anonymous");
    for r in &rows {
        assert_eq!(r.len(), 3, "header, one row, end: {r:?}");
        assert!(r.iter().flatten().all(|cell| !cell.starts_with(['=', '+', '-', '@'])), "no formula: {r:?}");
    }

    // HTML: text and attributes, quoted or not; nothing the value holds becomes markup.
    let html = "<p>{child_family_name}</p><input value={parent_email}><a title='{child_given_names}' href=\"{parent_email}\">{diet}</a>";
    let seen = render(&s, &viewers, "/cantine/gabarit", "text/html; charset=utf-8", html).await;
    let markup_attr = "x&quot;&#32;onmouseover&#61;alert(1)&#32;&lt;b&gt;@y";
    assert_eq!(
        String::from_utf8(seen[0].clone()).unwrap(),
        format!(
            "<p>Dupont, &quot;Jo&quot;\nfils</p><input value={markup_attr}><a title='&#61;HYPERLINK(&quot;http:&#47;&#47;x&quot;)' href=\"{markup_attr}\">sans porc</a>"
        )
    );
    let anonymous = String::from_utf8(seen[2].clone()).unwrap();
    assert_eq!(
        anonymous,
        "<p>[donnée protégée]</p><input value=[donnée&#32;protégée]><a title='[donnée&#32;protégée]' href=\"[donnée&#32;protégée]\">[donnée protégée]</a>"
    );
    // Without a declared charset the page may be in any: non-ASCII as references.
    let seen = render(&s, &[None], "/cantine/gabarit", "text/html", "<p>{diet}</p>").await;
    assert_eq!(seen[0], b"<p>[donn&#233;e prot&#233;g&#233;e]</p>");

    // JSON: string escapes; the document still parses and holds the exact values.
    let json = "{\"nom\":\"{child_family_name}\",\"prenom\":\"{child_given_names}\",\"courriel\":\"{parent_email}\"}";
    let seen = render(&s, &viewers, "/cantine/gabarit", "application/json", json).await;
    let doc: serde_json::Value = serde_json::from_slice(&seen[0]).unwrap();
    assert_eq!(doc, serde_json::json!({"nom": NAME, "prenom": FORMULA, "courriel": MARKUP}));
    let doc: serde_json::Value = serde_json::from_slice(&seen[2]).unwrap();
    assert_eq!(doc, serde_json::json!({"nom": PLACEHOLDER, "prenom": PLACEHOLDER, "courriel": PLACEHOLDER}));

    // Plain text: as it is (controls aside).
    let seen =
        render(&s, &viewers, "/cantine/gabarit", "text/plain; charset=utf-8", "Nom : {child_family_name}.").await;
    assert_eq!(String::from_utf8(seen[0].clone()).unwrap(), format!("Nom : {NAME}."));

    // A CSV in windows-1252: the placeholder in that charset, not UTF-8 bytes.
    let seen = render(&s, &[None], "/cantine/gabarit", "text/csv; charset=windows-1252", "{diet};x\n").await;
    assert_eq!(seen[0], b"[donn\xe9e prot\xe9g\xe9e];x\n");
}

/// Two gateways on one store with one keyring: a key destroyed on the first is no longer
/// used by the second, for reveals or seals, within `SHRED_VISIBLE_WITHIN`.
async fn a_shred_reaches_every_instance_sharing_the_store(backend: Backend) {
    let a = setup_on(backend, true, agents_policy(), |b| b).await;
    let b = instance(&a.mock, &a.agents, a.up, &agents_policy(), a.keys.clone())
        .with_store_url(a.app.store_url.clone())
        .start()
        .await;
    let on_b = Setup {
        app: b,
        mock: a.mock.clone(),
        agents: a.agents.clone(),
        recorder: a.recorder.clone(),
        up: a.up,
        keys: a.keys.clone(),
        _keys: None,
    };
    let angela = citizen(&a, "sub-angela").await;
    let sent = |setup: &'static str| form(&[("child_family_name", "Dupont"), ("school", setup)]);
    assert_eq!(post(&a, Some(&angela), "/cantine/inscription", FORM, sent("A")).await.status(), 200);
    let token = url::form_urlencoded::parse(a.recorder.last().1.as_bytes())
        .find(|(k, _)| k == "child_family_name")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let key_id = token.split('.').nth(1).unwrap().to_owned();
    a.recorder.answer_with(Template { content_type: "text/plain", text: format!("Nom : {token}"), chunk: 100_000 });

    // What B does for Angela: reveal the old token, seal a new value (under which key?).
    let b_state = || async {
        let shown = String::from_utf8(bytes_of(&on_b, Some(&angela), "/cantine/gabarit").await).unwrap();
        assert_eq!(post(&on_b, Some(&angela), "/cantine/inscription", FORM, sent("B")).await.status(), 200);
        let (_, stored) = on_b.recorder.last();
        let sealed = url::form_urlencoded::parse(stored.as_bytes())
            .find(|(k, _)| k == "child_family_name")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        (shown, sealed.split('.').nth(1).unwrap().to_owned())
    };
    // B has the key in its cache: it reveals, and seals under it.
    assert_eq!(b_state().await, ("Nom : Dupont".to_owned(), key_id.clone()));

    let vault = a.app.state.crypto.clone().unwrap();
    let (subject, activity) = vault.owner_of(&token).await.unwrap().unwrap();
    assert!(matches!(vault.shred(&subject, &activity).await.unwrap(), Shredded::Destroyed { .. }));
    let shredded = std::time::Instant::now();
    // A itself stops at once.
    let shown = String::from_utf8(bytes_of(&a, Some(&angela), "/cantine/gabarit").await).unwrap();
    assert_eq!(shown, format!("Nom : {PLACEHOLDER}"));
    // B within the promised delay: placeholder for the old token, a new key for new values.
    loop {
        let (shown, sealed_under) = b_state().await;
        if shown == format!("Nom : {PLACEHOLDER}") && sealed_under != key_id {
            break;
        }
        assert!(
            shredded.elapsed() < SHRED_VISIBLE_WITHIN,
            "B still used the destroyed key {:?} after the shred: {shown:?}, sealed under the old key: {}",
            shredded.elapsed(),
            sealed_under == key_id
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // And it stays so.
    let (shown, sealed_under) = b_state().await;
    assert_eq!(shown, format!("Nom : {PLACEHOLDER}"));
    assert_ne!(sealed_under, key_id);
}

crate::on_both_stores!(a_shred_reaches_every_instance_sharing_the_store);

/// Keys that match retention (issue 15): the protect phase seals each value under its
/// category's retention class; shredding one class shows the placeholder for its fields only.
async fn a_shredded_retention_class_shows_the_placeholder_for_its_fields_only(backend: Backend) {
    let s = setup_on(backend, true, agents_policy(), |b| b).await;
    let angela = citizen(&s, "sub-angela").await;
    let body = form(&[("child_family_name", "Dupont"), ("parent_email", "angela@example.fr"), ("diet", "sans porc")]);
    assert_eq!(post(&s, Some(&angela), "/cantine/inscription", FORM, body).await.status(), 200);
    let (_, stored) = s.recorder.last();
    let token = |name: &str| {
        url::form_urlencoded::parse(stored.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap()
    };
    let (name, email, diet) = (token("child_family_name"), token("parent_email"), token("diet"));
    let kid = |t: &str| t.split('.').nth(1).unwrap().to_owned();
    // The child's identity (archive review) has its own key; the parent's e-mail and the diet
    // (both destroyed a year after the case closes) share one class, so one key.
    assert_ne!(kid(&name), kid(&email));
    assert_eq!(kid(&email), kid(&diet));
    let vault = s.app.state.crypto.clone().unwrap();
    let cantine = s.app.state.policies.load().activity("cantine").cloned().unwrap();
    let parent_class = guichet::policy::retention_class(&cantine, "contact-parent");
    assert_eq!(vault.class_of(&email).await.unwrap(), Some(parent_class.clone()));
    assert_eq!(
        vault.class_of(&name).await.unwrap(),
        Some(guichet::policy::retention_class(&cantine, "identite-enfant"))
    );

    let text = "{child_family_name}|{parent_email}|{diet}".to_owned();
    s.recorder.answer_with(Template { content_type: "text/plain", text, chunk: 100_000 });
    let shown = || async { String::from_utf8(bytes_of(&s, Some(&angela), "/cantine/gabarit").await).unwrap() };
    assert_eq!(shown().await, "Dupont|angela@example.fr|sans porc");

    let (subject, activity) = vault.owner_of(&email).await.unwrap().unwrap();
    let destroyed = vault.shred_class(&subject, &activity, &parent_class).await.unwrap();
    assert_eq!(destroyed, Shredded::Destroyed { key_ids: vec![kid(&email)] });
    assert_eq!(shown().await, format!("Dupont|{PLACEHOLDER}|{PLACEHOLDER}"));
}

crate::on_both_stores!(a_shredded_retention_class_shows_the_placeholder_for_its_fields_only);

const REVEAL_TOKEN: &str = "cantine-lettres-0123456789abcdef";

/// Values of the batch reveal API for `tokens` of `child_given_names`.
async fn batch_reveal(s: &Setup, tokens: &[&str]) -> Vec<serde_json::Value> {
    let items: Vec<_> =
        tokens.iter().map(|t| serde_json::json!({ "field": "child_given_names", "token": t })).collect();
    let r = s
        .app
        .client
        .post(s.app.url("/.guichet/api/v1/reveal"))
        .bearer_auth(REVEAL_TOKEN)
        .json(&serde_json::json!({ "purpose": "inscription", "items": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["values"].as_array().unwrap().iter().map(|v| v["value"].clone()).collect()
}

/// Art. 18: while a citizen's restriction of the cantine lasts, an agent whose role the
/// policy does not list in `restriction_visible_to` sees the placeholder on the agents'
/// pages, and the batch reveal API (a back-office job has no role) returns `null`; an agent
/// with the listed role still sees the value; once lifted, everyone sees it again. Another
/// citizen's values are never affected.
async fn a_restricted_citizens_values_are_hidden_from_agents_until_lifted(backend: Backend) {
    let policy = agents_policy()
        .replace("rights_endpoint = \"/droits\"\n", "restriction_visible_to = [\"responsable-cantine\"]\n");
    assert!(policy.contains("restriction_visible_to"));
    let s = setup_on(backend, true, policy, |b| {
        b.with(|s, _| {
            s.auth.agent_roles.push(guichet::config::RoleRule {
                role: "responsable-cantine".into(),
                siret: vec![],
                email_domains: vec!["ecole.example.fr".into()],
                uids: vec!["directrice-7".into()],
            });
            s.keys.as_mut().unwrap().reveal_clients.push(guichet::config::RevealClient {
                name: "lettres-cantine".into(),
                token_sha256: guichet::consent::sha256_hex(REVEAL_TOKEN),
                activity: "cantine".into(),
                purposes: vec!["inscription".into()],
                fields: vec!["child_given_names".into()],
                per_minute: 100,
            });
        })
    })
    .await;
    let token_of = |stored: &str| {
        url::form_urlencoded::parse(stored.as_bytes())
            .find(|(k, _)| k == "child_given_names")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let bob = citizen(&s, "sub-bob").await;
    assert_eq!(
        post(&s, Some(&bob), "/cantine/inscription", FORM, form(&[("child_given_names", "Noe")])).await.status(),
        200
    );
    let noe = token_of(&s.recorder.last().1);
    let angela = citizen(&s, "sub-angela").await;
    assert_eq!(
        post(&s, Some(&angela), "/cantine/inscription", FORM, form(&[("child_given_names", "Lea")])).await.status(),
        200
    );
    let lea = token_of(&s.recorder.last().1);
    // The recorder shows angela's registration, the last one posted, on the agents' pages.
    let school = agent(&s, "paul@ecole.example.fr").await;
    let info = serde_json::json!({ "given_name": "Marie", "usual_name": "DURAND", "email": "marie@ecole.example.fr",
        "uid": "directrice-7", "siret": "21750001600019", "idp_id": "fia1" });
    let r = agent_sign_in(&s.app, &s.agents, info, "").await;
    let head = cookie(&r, SESSION).expect("agent session cookie");
    assert!(page(&s, &school, "/dossiers/1").await.contains("child_given_names=Lea"));
    assert_eq!(batch_reveal(&s, &[&lea, &noe]).await, [serde_json::json!("Lea"), serde_json::json!("Noe")]);

    let r = s
        .app
        .client
        .post(s.app.url("/.guichet/api/v1/rights"))
        .header("cookie", format!("{SESSION}={angela}"))
        .json(&serde_json::json!({ "right": "restriction", "activity": "cantine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let hidden = page(&s, &school, "/dossiers/1").await;
    assert!(hidden.contains("child_given_names=[donnée protégée]") && !hidden.contains("Lea"), "{hidden}");
    let allowed = page(&s, &head, "/dossiers/1").await;
    assert!(allowed.contains("child_given_names=Lea"), "the listed role still sees it: {allowed}");
    assert_eq!(batch_reveal(&s, &[&lea, &noe]).await, [serde_json::Value::Null, serde_json::json!("Noe")]);

    let by = guichet::rights::propagation::system();
    assert_eq!(guichet::rights::restriction::lift(&s.app.state, &id, &by).await.unwrap(), 1);
    assert!(page(&s, &school, "/dossiers/1").await.contains("child_given_names=Lea"));
    assert_eq!(batch_reveal(&s, &[&lea, &noe]).await, [serde_json::json!("Lea"), serde_json::json!("Noe")]);
}

crate::on_both_stores!(a_restricted_citizens_values_are_hidden_from_agents_until_lifted);
