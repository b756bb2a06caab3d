//! The consent ledger end to end: enforcement (browser redirect, API problem), the consent
//! page and its CSRF protection, receipts verified against the published JWKS, withdrawal on
//! the next request (and within 2 s on another instance), and the agents' assisted channel.

use std::time::{Duration, Instant};

use guichet::auth::jose::{self, JwkSet, PINNED_ALGS};
use guichet::config::RouteAccess;
use serde_json::Value;

use crate::auth::{SESSION, agent_info, agent_sign_in, cookie, sign_in_at};
use crate::helpers::{Backend, TestApp, TestAppBuilder, intruder_sql, route, spawn_app, try_sql};
use crate::oidc_mock::MockProvider;

const NEWSLETTER: &str = include_str!("../../policies/lettre-information.toml");

pub(crate) fn builder(mock: &MockProvider, backend: Backend) -> TestAppBuilder {
    spawn_app()
        .backend(backend)
        .with_citizen_provider(mock.issuer())
        .with_policies(&[("lettre-information.toml", NEWSLETTER)])
        .with(|s, up| {
            let mut lettre = route("lettre", "/lettre-information", &format!("http://{up}"));
            lettre.access = RouteAccess::Citizen;
            lettre.no_personal_data = false;
            s.routes.push(lettre);
        })
}

pub(crate) async fn citizen(app: &TestApp, mock: &MockProvider, sub: &str) -> String {
    let r = sign_in_at(app, mock, "/.guichet/connexion?retour=/prive", sub).await;
    cookie(&r, SESSION).expect("session cookie")
}

async fn get(app: &TestApp, session: &str, path: &str, accept: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("accept", accept)
        .header("cookie", format!("{SESSION}={session}"))
        .send()
        .await
        .unwrap()
}

pub(crate) async fn post(app: &TestApp, session: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    app.client
        .post(app.url(path))
        .header("cookie", format!("{SESSION}={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The CSRF token in a page's forms.
pub(crate) fn token(html: &str) -> String {
    let at = html.find("name=\"jeton\" value=\"").expect("a CSRF token in the page") + 20;
    html[at..].split('"').next().unwrap().to_owned()
}

pub(crate) async fn consent_page(app: &TestApp, session: &str) -> String {
    let r = get(app, session, "/.guichet/consentement/", "text/html").await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

pub(crate) async fn choose(app: &TestApp, session: &str, choice: &str) -> reqwest::Response {
    let t = token(&consent_page(app, session).await);
    let form = [
        ("jeton", t.as_str()),
        ("activite", "lettre-information"),
        ("finalite", "envoi"),
        ("choix", choice),
        ("retour", "/lettre-information/"),
    ];
    post(app, session, "/.guichet/consentement/", &form).await
}

async fn ledger(app: &TestApp) -> i64 {
    app.state.store.consent().count().await.unwrap()
}

async fn consent_is_enforced_given_proven_and_withdrawn(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = builder(&mock, backend).start().await;
    let s = citizen(&app, &mock, "sub-angela").await;

    // Not given: browsers go to the consent page and come back; APIs get a problem + link.
    let r = get(&app, &s, "/lettre-information/", "text/html").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/.guichet/consentement/?retour=%2Flettre-information%2F");
    let r = get(&app, &s, "/lettre-information/", "application/json").await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "urn:guichet:problem:consent-required");
    assert_eq!(problem["consent_url"], "/.guichet/consentement/?retour=%2Flettre-information%2F");
    assert_eq!(app.upstream.hits(), 0);

    // Refusing costs nothing: services that do not rest on it still work.
    assert_eq!(get(&app, &s, "/prive", "text/html").await.status(), 200);

    // The page: the notice, nothing pre-selected, what happens if I say no.
    let html = consent_page(&app, &s).await;
    assert!(html.contains("J&#39;accepte que la mairie") || html.contains("J'accepte que la mairie"));
    assert!(html.contains("Si vous dites non"));
    assert!(!html.contains("checked"));

    // A forged POST (no token, a wrong token) is refused and records nothing.
    let forged = [("activite", "lettre-information"), ("finalite", "envoi"), ("choix", "donner")];
    assert_eq!(post(&app, &s, "/.guichet/consentement/", &forged).await.status(), 403);
    let mut wrong = forged.to_vec();
    wrong.push(("jeton", "0000"));
    assert_eq!(post(&app, &s, "/.guichet/consentement/", &wrong).await.status(), 403);
    assert_eq!(ledger(&app).await, 0);

    // Given: back to the service, which now passes.
    let r = choose(&app, &s, "donner").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/lettre-information/");
    assert_eq!(get(&app, &s, "/lettre-information/", "text/html").await.status(), 200);
    assert_eq!(ledger(&app).await, 1);

    // The receipt verifies against the published keys and says what was agreed to.
    let rows = app.state.store.consent().events_of(&first_subject(&app).await).await.unwrap();
    let seq = rows[0].seq;
    let r = get(&app, &s, &format!("/.guichet/consentement/recu/{seq}"), "*/*").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let jws = r.text().await.unwrap();
    let jwks = app.client.get(app.url("/.guichet/jwks.json")).send().await.unwrap().bytes().await.unwrap();
    let verified = jose::verify(&jws, &JwkSet::parse(&jwks).unwrap(), PINNED_ALGS).expect("receipt signature");
    let c = Value::Object(verified.claims);
    assert_eq!(c["version"], "KI-CR-v1.1.0");
    assert_eq!(c["event"], "given");
    assert_eq!(c["collectionMethod"], "online");
    assert_eq!(c["notice"]["version"], "2025-01");
    assert_eq!(c["notice"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(c["journal"]["seq"], seq);
    // Someone else cannot download it.
    let other = citizen(&app, &mock, "sub-other").await;
    assert_eq!(get(&app, &other, &format!("/.guichet/consentement/recu/{seq}"), "*/*").await.status(), 404);

    // Withdrawn: the very next request is refused.
    assert_eq!(choose(&app, &s, "retirer").await.status(), 303);
    assert_eq!(get(&app, &s, "/lettre-information/", "application/json").await.status(), 403);
    assert_eq!(ledger(&app).await, 2);

    // Both events are journal entries of the verified chain, with pseudonyms only.
    app.state.audit.flush().await.unwrap();
    let report = guichet::audit::verify::verify(&app.state.store, app.state.audit.verifier()).await.unwrap();
    assert!(report.broken.is_none(), "{report:?}");
    let entries = app.state.store.audit().entries_after(0, 1000).await.unwrap();
    let ops: Vec<&str> = entries.iter().map(|e| e.operation.as_str()).collect();
    assert!(ops.contains(&"consent_given") && ops.contains(&"consent_withdrawn") && ops.contains(&"sign_in"));
    assert!(entries.iter().all(|e| !e.body.contains("DUBOIS") && !e.body.contains("angela")));
}

/// The pseudonym of the one citizen in the ledger (tests only have one consenting citizen).
async fn first_subject(app: &TestApp) -> String {
    let e = app.state.store.audit().entries_after(0, 1000).await.unwrap();
    let given = e.iter().find(|e| e.operation == "consent_given").unwrap();
    given.subject.clone().unwrap()
}

async fn a_withdrawal_reaches_another_instance_within_two_seconds(backend: Backend) {
    let mock = MockProvider::start().await;
    // Instances share the checkpoint key, which signs the ledger rows (docs/audit.md).
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit-signing-key.p8");
    let shared = |k: std::path::PathBuf| move |s: &mut guichet::config::Settings, _| s.audit.signing_key_file = Some(k);
    let a = builder(&mock, backend).with(shared(key.clone())).start().await;
    let store_url = a_store_url(&a);
    let b = builder(&mock, backend).with_store_url(store_url).with(shared(key)).start().await;
    let s = citizen(&a, &mock, "sub-angela").await;
    assert_eq!(choose(&a, &s, "donner").await.status(), 303);
    assert_eq!(get(&b, &s, "/lettre-information/", "application/json").await.status(), 200);
    assert_eq!(choose(&a, &s, "retirer").await.status(), 303);
    let started = Instant::now();
    loop {
        if get(&b, &s, "/lettre-information/", "application/json").await.status() == 403 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "instance B still serves after 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn a_store_url(app: &TestApp) -> secrecy::SecretString {
    app.store_url.clone()
}

async fn an_agent_records_a_consent_with_a_code_read_out_by_the_citizen(backend: Backend) {
    let mock = MockProvider::start().await;
    let agents = MockProvider::start().await;
    let app = builder(&mock, backend)
        .with_agent_provider(agents.issuer())
        .with(|s, _| s.consent.assisted_roles = vec!["etat-civil".into()])
        .start()
        .await;
    let s = citizen(&app, &mock, "sub-angela").await;
    // The citizen asks for a code and reads it out.
    let t = token(&consent_page(&app, &s).await);
    let r = post(&app, &s, "/.guichet/consentement/code", &[("jeton", t.as_str())]).await;
    let html = r.text().await.unwrap();
    let at = html.find("class=\"code-guichet\" id=\"code-agent\" tabindex=\"-1\" autofocus>").unwrap() + 61;
    let code = html[at..].split('<').next().unwrap().to_owned();
    // The agent records it.
    let r = agent_sign_in(&app, &agents, agent_info("21750001600019", "lucie@mairie.example.fr"), "").await;
    let agent = cookie(&r, SESSION).unwrap();
    let form = get(&app, &agent, "/.guichet/consentement/agent", "text/html").await;
    assert_eq!(form.status(), 200);
    let t = token(&form.text().await.unwrap());
    let fields = |code: &str, t: &str| {
        vec![
            ("jeton".to_owned(), t.to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("activite_finalite".to_owned(), "lettre-information/envoi".to_owned()),
            ("choix".to_owned(), "donner".to_owned()),
            ("canal".to_owned(), "counter".to_owned()),
            ("verification".to_owned(), "code_et_piece".to_owned()),
        ]
    };
    let send = |f: Vec<(String, String)>| {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&f).finish();
        app.client
            .post(app.url("/.guichet/consentement/agent"))
            .header("cookie", format!("{SESSION}={agent}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // Without the token: refused, nothing recorded.
    assert_eq!(send(fields(&code, "x")).await.unwrap().status(), 403);
    assert_eq!(ledger(&app).await, 0);
    assert_eq!(send(fields(&code.to_lowercase(), &t)).await.unwrap().status(), 200);
    // A code works once.
    assert_eq!(send(fields(&code, &t)).await.unwrap().status(), 422);
    assert_eq!(get(&app, &s, "/lettre-information/", "application/json").await.status(), 200);
    let subject = first_subject(&app).await;
    let row = &app.state.store.consent().events_of(&subject).await.unwrap()[0];
    let body: Value = serde_json::from_str(&row.body).unwrap();
    assert_eq!(body["actor"]["kind"], "agent");
    assert_eq!(body["role"], "etat-civil");
    assert_eq!(body["operation"]["channel"], "counter");
    assert_eq!(body["operation"]["identified_by"], "one_time_code_and_document");
    // A citizen cannot use the agents' form: sent to the agents' sign-in.
    assert_eq!(get(&app, &s, "/.guichet/consentement/agent", "text/html").await.status(), 303);
}

/// An intruder with SQL access (but not the checkpoint key) turns a withdrawal back into a
/// consent in the ledger: `audit verify` names the row, and enforcement refuses the citizen's
/// ledger (503, nothing forwarded, the alert counter moves) instead of letting them through.
async fn an_edited_consent_row_is_detected_and_refused(backend: Backend) {
    use guichet::audit::Break;
    use guichet::audit::ledger::LedgerBreak;
    use guichet::audit::verify::verify;

    let mock = MockProvider::start().await;
    let app = builder(&mock, backend).start().await;
    let s = citizen(&app, &mock, "sub-angela").await;
    assert_eq!(choose(&app, &s, "donner").await.status(), 303);
    assert_eq!(choose(&app, &s, "retirer").await.status(), 303);
    assert_eq!(get(&app, &s, "/lettre-information/", "application/json").await.status(), 403);
    let report = verify(&app.state.store, app.state.audit.verifier()).await.unwrap();
    assert!(report.is_intact() && report.ledger_rows == 2, "{}", report.summary());
    let seq = app.state.store.consent().events_of(&first_subject(&app).await).await.unwrap()[1].seq;

    // Plain SQL cannot touch the ledger.
    for sql in ["UPDATE consent_event SET given = 1", "DELETE FROM consent_event"] {
        let refused = try_sql(&app.store_url, sql).await.unwrap_or_else(|| panic!("the database accepted {sql}"));
        assert!(refused.contains("append-only"), "{refused}");
    }

    // Through the bypass: the withdrawal row now says "given".
    intruder_sql(&app.store_url, &format!("UPDATE consent_event SET given = 1 WHERE seq = {seq}")).await;
    let report = verify(&app.state.store, app.state.audit.verifier()).await.unwrap();
    assert_eq!(report.broken, Some(Break::Ledger(LedgerBreak::Column { seq, column: "given" })));
    // Past the cache's revalidation, the edited row is loaded and refused: fail closed.
    tokio::time::sleep(guichet::consent::REVALIDATE_AFTER + Duration::from_millis(100)).await;
    let hits = app.upstream.hits();
    let r = get(&app, &s, "/lettre-information/", "application/json").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(app.upstream.hits(), hits, "nothing forwarded");
    assert_eq!(app.state.metrics.consent_ledger_rejected.get(), 1);

    // Body and column rewritten together: the row's signature no longer holds.
    intruder_sql(
        &app.store_url,
        &format!(
            "UPDATE consent_event SET body = replace(body, 'consent_withdrawn', 'consent_given') WHERE seq = {seq}"
        ),
    )
    .await;
    let report = verify(&app.state.store, app.state.audit.verifier()).await.unwrap();
    assert_eq!(report.broken, Some(Break::Ledger(LedgerBreak::BadSignature { seq })));
    // Signature removed, as if the row predated signing: its journal entry still disagrees.
    intruder_sql(
        &app.store_url,
        &format!("UPDATE consent_event SET key_id = NULL, signature = NULL WHERE seq = {seq}"),
    )
    .await;
    let report = verify(&app.state.store, app.state.audit.verifier()).await.unwrap();
    assert_eq!(report.broken, Some(Break::Ledger(LedgerBreak::EntryMismatch { seq })));
    // The row deleted: the journal still has the withdrawal.
    intruder_sql(&app.store_url, &format!("DELETE FROM consent_event WHERE seq = {seq}")).await;
    let report = verify(&app.state.store, app.state.audit.verifier()).await.unwrap();
    assert_eq!(report.broken, Some(Break::Ledger(LedgerBreak::MissingRow { seq })));
    tokio::time::sleep(guichet::consent::REVALIDATE_AFTER + Duration::from_millis(100)).await;
    assert_eq!(get(&app, &s, "/lettre-information/", "application/json").await.status(), 503);
    assert_eq!(app.upstream.hits(), hits, "nothing forwarded");
}

crate::on_both_stores!(
    an_edited_consent_row_is_detected_and_refused,
    consent_is_enforced_given_proven_and_withdrawn,
    a_withdrawal_reaches_another_instance_within_two_seconds,
    an_agent_records_a_consent_with_a_code_read_out_by_the_citizen,
);
