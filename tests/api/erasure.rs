//! Erasure, restriction and withdrawal on both engines, through the real API and proxy:
//! an erasure destroys the (citizen, activity) data key so the application's earlier tokens
//! no longer open (another citizen's still do) and the application is told; a restriction
//! stops writes before the application sees anything; a withdrawal erases where the policy
//! says so; the batch reveal API stops revealing a withdrawn consent purpose.

use std::time::Duration;

use guichet::crypto::FieldContext;
use guichet::rights::request::Status;
use serde_json::{Value, json};

use crate::auth::SESSION;
use crate::consent::{choose, citizen};
use crate::fields::Recorder;
use crate::helpers::{Backend, TestApp};
use crate::oidc_mock::MockProvider;
use crate::on_both_stores;
use crate::propagation::{API, Mode, Setup, file, gateway, get_json, wait_for};

const REVEAL_TOKEN: &str = "courrier-lettre-0123456789abcdef";

/// The propagation setup with a recording application behind `/lettre-information`, so the
/// tests read the tokens it stored.
async fn setup(backend: Backend, policy_extra: &str) -> (Setup, Recorder) {
    setup_with_agents(backend, policy_extra, None, false).await
}

/// Like `setup`, with agents signing in at `agents` (they get the `etat-civil` role, allowed
/// to record consents at the counter).
/// With `outbox`, notices are written to a directory, so the gateway keeps addresses.
async fn setup_with_agents(
    backend: Backend,
    policy_extra: &str,
    agents: Option<&MockProvider>,
    outbox: bool,
) -> (Setup, Recorder) {
    let recorder = Recorder::default();
    let up = recorder.start().await;
    let mock = crate::oidc_mock::MockProvider::start().await;
    let (rights_app, addr) = crate::propagation::RightsApp::start(Mode::AnswerNow).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = crate::helpers::test_keys(dir.path());
    let secret = dir.path().join("rappel.secret");
    std::fs::write(&secret, "x").unwrap();
    let mut builder = gateway(&mock, backend, addr, policy_extra, &keys, secret);
    if outbox {
        let outbox = dir.path().join("outbox");
        builder = builder.with(move |s, _| s.notify.outbox_dir = Some(outbox));
    }
    if let Some(agents) = agents {
        builder = builder
            .with_agent_provider(agents.issuer())
            .with(|s, _| s.consent.assisted_roles = vec!["etat-civil".into()]);
    }
    let app = builder
        .with(move |s, _| {
            let lettre = s.routes.iter_mut().find(|r| r.name == "lettre").unwrap();
            lettre.upstream = format!("http://{up}");
            s.keys.as_mut().unwrap().reveal_clients.push(guichet::config::RevealClient {
                name: "courrier".into(),
                token_sha256: guichet::consent::sha256_hex(REVEAL_TOKEN),
                activity: "lettre-information".into(),
                purposes: vec!["envoi".into()],
                fields: vec!["email".into()],
                per_minute: 100,
            });
        })
        .start()
        .await;
    rights_app.trust(&app);
    (Setup { app, mock, rights_app, keys, rights_addr: addr, _dir: dir }, recorder)
}

/// Subscribes with `email` through the gateway; returns the status and the token the
/// application stored.
async fn subscribe(app: &TestApp, recorder: &Recorder, session: &str, email: &str) -> (u16, Option<String>) {
    let before = recorder.hits();
    let status = send_form(app, session, email, "application/json").await.status().as_u16();
    if recorder.hits() == before {
        return (status, None);
    }
    let (_, body) = recorder.last();
    let token = url::form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "email").map(|(_, v)| v.into_owned());
    (status, token)
}

/// POSTs the subscription form with `email`, accepting `accept`.
async fn send_form(app: &TestApp, session: &str, email: &str, accept: &str) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("email", email).finish();
    app.client
        .post(app.url("/lettre-information/abonnement"))
        .header("cookie", format!("{SESSION}={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", accept)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn opens(app: &TestApp, token: &str) -> bool {
    let vault = app.state.crypto.as_ref().unwrap();
    let Ok(Some((subject, activity))) = vault.owner_of(token).await else { return false };
    let ctx = FieldContext { activity: &activity, field: "email", subject: &subject };
    vault.open(&ctx, token).await.is_ok()
}

async fn signed_in_subscriber(s: &Setup, recorder: &Recorder, sub: &str, email: &str) -> (String, String) {
    let session = citizen(&s.app, &s.mock, sub).await;
    assert_eq!(choose(&s.app, &session, "donner").await.status(), 303);
    let (status, token) = subscribe(&s.app, recorder, &session, email).await;
    assert_eq!(status, 200);
    let token = token.expect("the application stored a token");
    assert!(token.starts_with("gch2."), "{token}");
    (session, token)
}

async fn an_erasure_makes_the_citizens_tokens_unreadable_and_tells_the_application(backend: Backend) {
    let (s, recorder) = setup(backend, "").await;
    let (angela, angela_token) = signed_in_subscriber(&s, &recorder, "sub-angela", "angela@example.fr").await;
    let (_bruno, bruno_token) = signed_in_subscriber(&s, &recorder, "sub-bruno", "bruno@example.fr").await;
    assert!(opens(&s.app, &angela_token).await && opens(&s.app, &bruno_token).await);

    let id = file(&s.app, &angela, "erasure").await;
    wait_for(&s.app, &id, Status::Completed).await;

    assert!(!opens(&s.app, &angela_token).await, "angela's earlier token no longer opens");
    assert!(opens(&s.app, &bruno_token).await, "bruno's still does");
    let told = s.rights_app.received();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["type"], "erasure");
    let answer = s.app.state.rights.get(&id).await.unwrap().answer.unwrap();
    let text = serde_json::to_string(&answer).unwrap();
    assert!(text.contains("Ce que nous gardons") && text.contains("preuve de vos accords"), "{text}");
    // The consent proof is kept.
    let consent_subject = s.app.state.rights.get(&id).await.unwrap().subject;
    assert!(!s.app.state.consent.history(&consent_subject).await.unwrap().is_empty());
}

/// The newsletter in a sector other than `general`: its pseudonyms inside the gateway are the
/// sector's (docs/cryptography.md, "Sector pseudonyms").
const SCHOOL: &str = "sector = \"scolaire\"";

async fn a_restriction_stops_writes_before_the_application_until_lifted(backend: Backend) {
    restriction_stops_writes_until_lifted(backend, "").await;
}

async fn in_a_sector_a_restriction_stops_writes_before_the_application(backend: Backend) {
    restriction_stops_writes_until_lifted(backend, SCHOOL).await;
}

async fn restriction_stops_writes_until_lifted(backend: Backend, policy_extra: &str) {
    let (s, recorder) = setup(backend, policy_extra).await;
    let (angela, _) = signed_in_subscriber(&s, &recorder, "sub-angela", "angela@example.fr").await;
    let (bruno, _) = signed_in_subscriber(&s, &recorder, "sub-bruno", "bruno@example.fr").await;
    let id = file(&s.app, &angela, "restriction").await;
    wait_for(&s.app, &id, Status::Completed).await;
    assert_eq!(s.rights_app.received()[0]["type"], "restriction");

    let hits = recorder.hits();
    let r = send_form(&s.app, &angela, "autre@example.fr", "application/json").await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(r.text().await.unwrap().contains("processing-restricted"));
    assert_eq!(recorder.hits(), hits, "the application saw nothing");
    // The page in French for browsers.
    let page = send_form(&s.app, &angela, "autre@example.fr", "text/html").await;
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("limiter l"));
    assert_eq!(recorder.hits(), hits, "the application saw nothing");
    // Another citizen is not affected.
    assert_eq!(subscribe(&s.app, &recorder, &bruno, "bruno2@example.fr").await.0, 200);

    let by = guichet::rights::propagation::system();
    assert_eq!(guichet::rights::restriction::lift(&s.app.state, &id, &by).await.unwrap(), 1);
    assert_eq!(subscribe(&s.app, &recorder, &angela, "angela2@example.fr").await.0, 200);
    crate::propagation::wait_received(&s.rights_app, 2).await;
    assert_eq!(s.rights_app.received()[1]["type"], "restriction_lifted");
    // The application's answer to the notice is kept, as proof it was told.
    let mut kept = None;
    for _ in 0..200 {
        kept = s.app.state.rights.lifted_answer(&id, "lettre-information").await.unwrap();
        if kept.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(kept.map(|(status, _)| status).as_deref(), Some("completed"));
}

async fn a_withdrawal_erases_where_the_policy_says_so(backend: Backend) {
    let (s, recorder) = setup(backend, "erase_on_withdrawal = true").await;
    let (angela, token) = signed_in_subscriber(&s, &recorder, "sub-angela", "angela@example.fr").await;
    assert_eq!(choose(&s.app, &angela, "retirer").await.status(), 303);
    let erased = completed_request(&s.app, &angela).await;
    assert_eq!(erased["right"], "erasure");
    assert_eq!(erased["activity"], "lettre-information");
    assert!(!opens(&s.app, &token).await);
    assert_eq!(s.rights_app.received()[0]["type"], "erasure");
}

/// The citizen's newest request once it is completed (at most 10 s): the erasure a
/// withdrawal filed on their behalf.
async fn completed_request(app: &TestApp, session: &str) -> Value {
    for _ in 0..200 {
        let list = get_json(app, session, API).await;
        if let Some(r) = list["requests"].as_array().unwrap().first()
            && r["status"] == "completed"
        {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no erasure request was filed and completed");
}

async fn reveal(app: &TestApp, tokens: &[&str]) -> Vec<Value> {
    let items: Vec<Value> = tokens.iter().map(|t| json!({ "field": "email", "token": t })).collect();
    let r = app
        .client
        .post(app.url("/.guichet/api/v1/reveal"))
        .bearer_auth(REVEAL_TOKEN)
        .json(&json!({ "purpose": "envoi", "items": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["values"].as_array().unwrap().iter().map(|v| v["value"].clone()).collect()
}

async fn the_reveal_api_stops_once_consent_is_withdrawn(backend: Backend) {
    reveal_stops_on_withdrawal(backend, "").await;
}

async fn in_a_sector_the_reveal_api_stops_once_consent_is_withdrawn(backend: Backend) {
    reveal_stops_on_withdrawal(backend, SCHOOL).await;
}

async fn reveal_stops_on_withdrawal(backend: Backend, policy_extra: &str) {
    let (s, recorder) = setup(backend, policy_extra).await;
    let (angela, a) = signed_in_subscriber(&s, &recorder, "sub-angela", "angela@example.fr").await;
    let (_bruno, b) = signed_in_subscriber(&s, &recorder, "sub-bruno", "bruno@example.fr").await;
    assert_eq!(reveal(&s.app, &[&a, &b]).await, [json!("angela@example.fr"), json!("bruno@example.fr")]);
    assert_eq!(choose(&s.app, &angela, "retirer").await.status(), 303);
    assert_eq!(reveal(&s.app, &[&a, &b]).await, [Value::Null, json!("bruno@example.fr")]);
    // Given again: revealed again.
    assert_eq!(choose(&s.app, &angela, "donner").await.status(), 303);
    assert_eq!(reveal(&s.app, &[&a]).await, [json!("angela@example.fr")]);
}

/// The citizen asks for a one-time code on their consent page and reads it out; an agent
/// signed in at `agents` records `choice` for the newsletter at the counter with it.
async fn at_the_counter(s: &Setup, agents: &MockProvider, citizen: &str, choice: &str) {
    use crate::consent::{consent_page, post, token};
    let t = token(&consent_page(&s.app, citizen).await);
    let r = post(&s.app, citizen, "/.guichet/consentement/code", &[("jeton", t.as_str())]).await;
    let html = r.text().await.unwrap();
    let marker = "class=\"code-guichet\" id=\"code-agent\" tabindex=\"-1\" autofocus>";
    let at = html.find(marker).expect("the page shows a code") + marker.len();
    let code = html[at..].split('<').next().unwrap().to_owned();
    let r = crate::auth::agent_sign_in(
        &s.app,
        agents,
        crate::auth::agent_info("21750001600019", "lucie@mairie.example.fr"),
        "",
    )
    .await;
    let agent = crate::auth::cookie(&r, SESSION).unwrap();
    let form =
        s.app.client.get(s.app.url("/.guichet/consentement/agent")).header("cookie", format!("{SESSION}={agent}"));
    let t = token(&form.send().await.unwrap().text().await.unwrap());
    let fields = [
        ("jeton", t.as_str()),
        ("code", code.as_str()),
        ("activite_finalite", "lettre-information/envoi"),
        ("choix", choice),
        ("canal", "counter"),
        ("verification", "code_et_piece"),
    ];
    let r = post(&s.app, &agent, "/.guichet/consentement/agent", &fields).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("est enregistré"));
}

/// A withdrawal recorded by an agent at the counter stops the batch reveal API for that
/// citizen at once, as an online one does; giving consent again at the counter restores it.
async fn a_withdrawal_at_the_counter_stops_the_reveal_api(backend: Backend) {
    counter_withdrawal_stops_the_reveal_api(backend, "").await;
}

async fn in_a_sector_a_withdrawal_at_the_counter_stops_the_reveal_api(backend: Backend) {
    counter_withdrawal_stops_the_reveal_api(backend, SCHOOL).await;
}

async fn counter_withdrawal_stops_the_reveal_api(backend: Backend, policy_extra: &str) {
    let agents = MockProvider::start().await;
    let (s, recorder) = setup_with_agents(backend, policy_extra, Some(&agents), false).await;
    let (angela, a) = signed_in_subscriber(&s, &recorder, "sub-angela", "angela@example.fr").await;
    let (_bruno, b) = signed_in_subscriber(&s, &recorder, "sub-bruno", "bruno@example.fr").await;
    assert_eq!(reveal(&s.app, &[&a, &b]).await, [json!("angela@example.fr"), json!("bruno@example.fr")]);
    at_the_counter(&s, &agents, &angela, "retirer").await;
    assert_eq!(reveal(&s.app, &[&a, &b]).await, [Value::Null, json!("bruno@example.fr")]);
    // Hidden, not erased: the policy does not ask for it, so the token still opens.
    assert!(opens(&s.app, &a).await);
    at_the_counter(&s, &agents, &angela, "donner").await;
    assert_eq!(reveal(&s.app, &[&a]).await, [json!("angela@example.fr")]);
}

/// In a sector other than `general`, a consent an agent records at the counter is the sector's:
/// recorded under the citizen's consent subject of that sector (never the gateway-wide one),
/// and the proxy lets the citizen's requests through on it.
async fn in_a_sector_a_consent_given_at_the_counter_opens_the_service(backend: Backend) {
    let agents = MockProvider::start().await;
    let (s, recorder) = setup_with_agents(backend, SCHOOL, Some(&agents), false).await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let hits = recorder.hits();
    let (status, _) = subscribe(&s.app, &recorder, &angela, "angela@example.fr").await;
    assert_ne!(status, 200, "no consent yet");
    assert_eq!(recorder.hits(), hits, "the application saw nothing");

    at_the_counter(&s, &agents, &angela, "donner").await;
    let (status, token) = subscribe(&s.app, &recorder, &angela, "angela@example.fr").await;
    assert_eq!(status, 200, "the consent given at the counter counts");
    assert!(opens(&s.app, &token.unwrap()).await);

    let mut headers = axum::http::HeaderMap::new();
    headers.insert("cookie", format!("{SESSION}={angela}").parse().unwrap());
    let session = s.app.state.auth.identify(&headers).await.unwrap().unwrap();
    let school = s.app.state.auth.consent_subject_in(&session, guichet::policy::Sector::Scolaire).to_owned();
    let everywhere = s.app.state.auth.consent_subject(&session).to_owned();
    assert_ne!(school, everywhere);
    let events = s.app.state.store.consent().events_between(0, i64::MAX).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].subject, school, "recorded under the sector's consent subject");
}

/// Where the policy says so, a withdrawal at the counter files an erasure on the citizen's
/// behalf (channel counter, the agent named) that destroys the key and tells the application.
async fn a_withdrawal_at_the_counter_erases_where_the_policy_says_so(backend: Backend) {
    let agents = MockProvider::start().await;
    let (s, recorder) = setup_with_agents(backend, "erase_on_withdrawal = true", Some(&agents), false).await;
    let (angela, token) = signed_in_subscriber(&s, &recorder, "sub-angela", "angela@example.fr").await;
    let (_bruno, bruno_token) = signed_in_subscriber(&s, &recorder, "sub-bruno", "bruno@example.fr").await;
    at_the_counter(&s, &agents, &angela, "retirer").await;
    let erased = completed_request(&s.app, &angela).await;
    assert_eq!((erased["right"].as_str(), erased["activity"].as_str()), (Some("erasure"), Some("lettre-information")));
    assert_eq!(erased["channel"], "counter");
    let request = s.app.state.rights.get(erased["id"].as_str().unwrap()).await.unwrap();
    assert!(request.agent.as_deref().is_some_and(|a| a.starts_with("agent:")), "{:?}", request.agent);
    assert!(!opens(&s.app, &token).await, "angela's token no longer opens");
    assert!(opens(&s.app, &bruno_token).await, "bruno's still does");
    let told = s.rights_app.received();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["type"], "erasure");
}

/// The retention records of (citizen, activity) once the gateway wrote `n` (at most 10 s).
async fn retention_rows(app: &TestApp, subject: &str, n: usize) -> Vec<guichet::store::RetentionRow> {
    for _ in 0..200 {
        let rows = app.state.retention.records(subject, "lettre-information").await.unwrap();
        if rows.len() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never recorded {n} retention records");
}

/// A granted erasure ends every retention record of the pair through retention's own
/// "forget" (so no later run acts on it and the register counts it destroyed); another
/// citizen's records go on.
async fn a_granted_erasure_ends_the_retention_records(backend: Backend) {
    let (s, recorder) = setup(backend, "").await;
    let (angela, a) = signed_in_subscriber(&s, &recorder, "sub-angela", "angela@example.fr").await;
    let (_bruno, b) = signed_in_subscriber(&s, &recorder, "sub-bruno", "bruno@example.fr").await;
    let vault = s.app.state.crypto.as_ref().unwrap();
    let (angela_subject, _) = vault.owner_of(&a).await.unwrap().unwrap();
    let (bruno_subject, _) = vault.owner_of(&b).await.unwrap().unwrap();
    let categories = s.app.state.policies.load().activity("lettre-information").unwrap().categories.len();
    assert!(categories > 0);
    let before = retention_rows(&s.app, &angela_subject, categories).await;
    assert!(before.iter().all(|r| r.phase != "ended"), "{before:?}");
    retention_rows(&s.app, &bruno_subject, categories).await;

    let id = file(&s.app, &angela, "erasure").await;
    wait_for(&s.app, &id, Status::Completed).await;

    let after = s.app.state.retention.records(&angela_subject, "lettre-information").await.unwrap();
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|r| r.phase == "ended"), "every record of angela ended: {after:?}");
    let bruno = s.app.state.retention.records(&bruno_subject, "lettre-information").await.unwrap();
    assert!(bruno.iter().all(|r| r.phase != "ended"), "bruno's go on: {bruno:?}");
    assert!(!opens(&s.app, &a).await && opens(&s.app, &b).await);
}

/// The contact address is the gateway's own data for every activity: an erasure of one
/// activity keeps it, an erasure of everything deletes it (and does not record it again for
/// its own receipt).
async fn an_erasure_of_everything_forgets_the_contact_address(backend: Backend) {
    let (s, recorder) = setup_with_agents(backend, "", None, true).await;
    let (angela, _) = signed_in_subscriber(&s, &recorder, "sub-angela", "angela@example.fr").await;
    let body = json!({ "right": "access", "activity": "lettre-information", "email": "angela.contact@example.fr" });
    let r = crate::propagation::post_json(&s.app, &angela, API, &body).await;
    assert_eq!(r.status(), 201);
    let access = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let subject = s.app.state.rights.get(&access).await.unwrap().subject;
    let contact = || async { s.app.state.store.notify().contact(&subject).await.unwrap() };
    assert!(contact().await.is_some(), "the address given is kept for notices");
    let one = file(&s.app, &angela, "erasure").await;
    wait_for(&s.app, &one, Status::Completed).await;
    assert!(contact().await.is_some(), "an erasure of one activity keeps it");
    let r = crate::propagation::post_json(&s.app, &angela, API, &json!({ "right": "erasure" })).await;
    assert_eq!(r.status(), 201);
    let all = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    wait_for(&s.app, &all, Status::Completed).await;
    assert!(contact().await.is_none(), "an erasure of everything deletes it");
}

on_both_stores!(
    an_erasure_of_everything_forgets_the_contact_address,
    a_granted_erasure_ends_the_retention_records,
    a_withdrawal_at_the_counter_stops_the_reveal_api,
    a_withdrawal_at_the_counter_erases_where_the_policy_says_so,
    an_erasure_makes_the_citizens_tokens_unreadable_and_tells_the_application,
    a_restriction_stops_writes_before_the_application_until_lifted,
    a_withdrawal_erases_where_the_policy_says_so,
    the_reveal_api_stops_once_consent_is_withdrawn,
    in_a_sector_a_restriction_stops_writes_before_the_application,
    in_a_sector_the_reveal_api_stops_once_consent_is_withdrawn,
    in_a_sector_a_withdrawal_at_the_counter_stops_the_reveal_api,
    in_a_sector_a_consent_given_at_the_counter_opens_the_service,
);
