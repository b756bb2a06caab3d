//! Access and portability exports end to end, on both engines: a citizen with data in several
//! activities and a canary citizen whose values must never appear; the archive validated
//! against its committed JSON Schema; the download link bound to the session, expiring, each
//! download journaled; nothing personal in the logs.

use std::io::Read as _;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use guichet::audit::{Actor, ActorKind, AuditEvent, Ident, Operation, Outcome};
use guichet::clock::Clock as _;
use guichet::crypto::token::FieldContext;
use guichet::rights::contract::{AppAnswer, AppStatus};
use guichet::rights::export::{AnswerSource, Answers};
use guichet::rights::request::{Channel, DocumentKind, IdentityProof, Right};
use guichet::rights::service::{By, NewRequest, RightsRequest};
use serde_json::{Value, json};

use crate::auth::{SESSION, agent_info, agent_sign_in, cookie, sign_in_with};
use crate::consent::choose;
use crate::helpers::{Backend, TestApp, route, spawn_app, test_keys};
use crate::oidc_mock::MockProvider;
use crate::on_both_stores;
use crate::rights::journaled_stages;

const API: &str = "/.guichet/api/v1/rights";
const SCHEMA: &str = include_str!("../../docs/schemas/export.schema.json");

/// Every value of the canary citizen: none may ever be in Angela's export.
const CANARIES: [&str; 4] = ["CANARI-Prenom", "CANARI-Nom", "canari@example.fr", "CANARI-Allergie"];

struct Setup {
    app: TestApp,
    mock: MockProvider,
    agents: MockProvider,
    logs: Logs,
    keyring: guichet::config::KeysSettings,
    _keys: tempfile::TempDir,
    _log_guard: tracing::subscriber::DefaultGuard,
}

async fn setup(backend: Backend) -> Setup {
    let logs = Logs::default();
    let log_guard = logs.capture();
    let mock = MockProvider::start().await;
    let agents = MockProvider::start().await;
    let keys = tempfile::tempdir().unwrap();
    let keyring = test_keys(keys.path());
    let settings = keyring.clone();
    let app = spawn_app()
        .backend(backend)
        .with_citizen_provider(mock.issuer())
        .with_agent_provider(agents.issuer())
        .with_policies(&[
            ("cantine.toml", include_str!("../../policies/cantine.toml")),
            ("lettre-information.toml", include_str!("../../policies/lettre-information.toml")),
            ("etat-civil.toml", include_str!("../../policies/etat-civil.toml")),
        ])
        .with(move |s, up| {
            s.keys = Some(settings);
            // The test agents' role works at the counter.
            s.consent.assisted_roles = vec!["etat-civil".into()];
            // Sessions longer than the link, so that the link's own expiry shows.
            s.auth.session_idle_timeout = std::time::Duration::from_secs(48 * 3600);
            s.auth.session_absolute_timeout = std::time::Duration::from_secs(72 * 3600);
            let mut lettre = route("lettre", "/lettre-information", &format!("http://{up}"));
            lettre.access = guichet::config::RouteAccess::Citizen;
            lettre.no_personal_data = false;
            s.routes.push(lettre);
            // The civil registry's API apart from the canteen's (`/api`): one route, one sector.
            let mut demandes = route("api-demandes", "/api/demandes", &format!("http://{up}"));
            demandes.access = guichet::config::RouteAccess::Citizen;
            demandes.api = true;
            s.routes.push(demandes);
        })
        .start()
        .await;
    Setup { app, mock, agents, logs, keyring, _keys: keys, _log_guard: log_guard }
}

async fn sign_in(s: &Setup, sub: &str, userinfo: Value) -> String {
    let r = sign_in_with(&s.app, &s.mock, "/.guichet/connexion?retour=/prive", sub, userinfo).await;
    cookie(&r, SESSION).expect("session cookie")
}

fn angela_info() -> Value {
    json!({ "given_name": "Angela", "family_name": "DUBOIS", "birthdate": "1962-08-24", "email": "angela@example.fr" })
}

fn canary_info() -> Value {
    json!({ "given_name": CANARIES[0], "family_name": CANARIES[1], "birthdate": "1970-01-01", "email": CANARIES[2] })
}

/// The session's two pseudonyms: (consent and rights subject, encrypted-fields subject).
async fn subjects(app: &TestApp, session: &str) -> (String, String) {
    let mut h = axum::http::HeaderMap::new();
    h.insert("cookie", format!("{SESSION}={session}").parse().unwrap());
    let s = app.state.auth.identify(&h).await.unwrap().unwrap();
    (app.state.auth.consent_subject(&s).to_owned(), app.state.auth.field_subject(&s).to_owned())
}

async fn seal(app: &TestApp, subject: &str, activity: &str, field: &str, value: &str) -> String {
    let vault = app.state.crypto.as_ref().unwrap();
    vault.seal(&FieldContext { activity, field, subject }, value).await.unwrap()
}

/// Applications that answer at once with fixed records.
#[derive(Debug)]
struct AnswerAtOnce(Answers);

impl AnswerSource for AnswerAtOnce {
    fn answers<'a>(&'a self, _: &'a RightsRequest) -> BoxFuture<'a, Result<Answers, String>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

fn completed(records: Value) -> AppAnswer {
    AppAnswer { request_id: "x".into(), status: AppStatus::Completed, reason: None, records: Some(records) }
}

/// Angela's cantine and newsletter records as the applications hold them (tokens), with one of
/// the canary's tokens and one of Angela's from another activity slipped into the cantine's.
async fn answers(app: &TestApp, angela: &str, canary: &str) -> Answers {
    let cantine = json!({
        "enfants": [{
            "child_given_names": seal(app, angela, "cantine", "child_given_names", "Léa").await,
            "child_family_name": seal(app, angela, "cantine", "child_family_name", "DUBOIS").await,
            "diet": seal(app, angela, "cantine", "diet", "sans arachide").await,
            "school": "École Jules-Ferry",
        }],
        "note": format!("Contact : {}", seal(app, angela, "cantine", "parent_email", "angela@example.fr").await),
        "intrus": seal(app, canary, "cantine", "diet", CANARIES[3]).await,
        "autre_activite": seal(app, angela, "lettre-information", "email", "angela@example.fr").await,
    });
    let lettre = json!({ "abonnement": { "email": seal(app, angela, "lettre-information", "email", "angela@example.fr").await } });
    vec![("cantine".into(), completed(cantine)), ("lettre-information".into(), completed(lettre))]
}

async fn give_newsletter_consent(app: &TestApp, session: &str) {
    assert_eq!(choose(app, session, "donner").await.status(), 303);
}

/// An agent of the school service saw Angela's child's diet (as the reveal phase journals it).
async fn agent_saw(app: &TestApp, field_subject: &str) {
    let mut event =
        AuditEvent::system(Operation::Reveal { fields: vec![Ident::new("diet").unwrap()] }, app.clock.now());
    event.actor = Actor { kind: ActorKind::Agent, id: Ident::new("agent-paul-martin").unwrap() };
    event.role = Ident::new("restauration-scolaire").unwrap();
    event.activity = Some(Ident::new("cantine").unwrap());
    event.purpose = Some(Ident::new("inscription").unwrap());
    event.subject = Some(Ident::new(field_subject).unwrap());
    event.outcome = Outcome::Success;
    app.state.audit.append_sync(event).await.unwrap();
}

async fn post_json(app: &TestApp, session: &str, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("cookie", format!("{SESSION}={session}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn download(app: &TestApp, session: Option<&str>, url: &str) -> reqwest::Response {
    let mut r = app.client.get(app.url(url));
    if let Some(s) = session {
        r = r.header("cookie", format!("{SESSION}={s}"));
    }
    crate::openapi::checked("get", "/.guichet/api/v1/rights/{id}/download", r.send().await.unwrap()).await
}

/// The archive's files by name.
fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            (f.name().to_owned(), text)
        })
        .collect()
}

/// Validates `doc` against the committed schema (Draft 2020-12, formats checked) with the
/// `jsonschema` crate, which also checks the schema itself.
fn validate(doc: &str) {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
    let validator = jsonschema::options().should_validate_formats(true).build(&schema).expect("a valid schema");
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "donnees.json does not follow its schema:\n{}", errors.join("\n"));
}

/// Signed-in Angela and the canary, each with a consent and a reveal to an agent journaled.
struct Citizens {
    angela: String,
    angela_fields: String,
    canary: String,
    canary_fields: String,
}

async fn two_citizens(s: &Setup) -> Citizens {
    let angela = sign_in(s, "sub-angela", angela_info()).await;
    let canary = sign_in(s, "sub-canari", canary_info()).await;
    let (_, angela_fields) = subjects(&s.app, &angela).await;
    let (_, canary_fields) = subjects(&s.app, &canary).await;
    for (session, fields) in [(&angela, &angela_fields), (&canary, &canary_fields)] {
        give_newsletter_consent(&s.app, session).await;
        agent_saw(&s.app, fields).await;
    }
    Citizens { angela, angela_fields, canary, canary_fields }
}

async fn the_export_holds_exactly_this_citizens_data_decrypted(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let Citizens { angela, angela_fields, canary, canary_fields } = two_citizens(&s).await;
    app.state.exports.set_source(Arc::new(AnswerAtOnce(answers(app, &angela_fields, &canary_fields).await)));
    // The canary files requests too.
    assert_eq!(post_json(app, &canary, API, &json!({ "right": "access" })).await.status(), 201);

    let created: Value = post_json(app, &angela, API, &json!({ "right": "access" })).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let r = post_json(app, &angela, &format!("{API}/{id}/export"), &json!({})).await;
    assert_eq!(r.status(), 201, "the export is ready at once");
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["pending_activities"], json!(["etat-civil"]), "only the service without an answer");
    let url = ready["download_url"].as_str().unwrap();
    let got = download(app, Some(&angela), url).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/zip");
    assert_eq!(got.headers()["cache-control"], "no-store");
    let files = unzip(&got.bytes().await.unwrap());
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        ["LISEZMOI.txt", "donnees.html", "donnees.json", "export.schema.json"]
    );
    for (name, text) in &files {
        for canary_value in CANARIES {
            assert!(!text.contains(canary_value), "{name} holds the canary value {canary_value}");
        }
        assert!(!text.contains("gch1.") && !text.contains("gch2."), "{name} holds an unopened token");
        assert!(!text.contains("agent-paul-martin"), "{name} names the agent");
        assert!(!text.contains(&canary_fields), "{name} holds the canary's pseudonym");
    }
    let doc: Value = serde_json::from_str(&files["donnees.json"]).unwrap();
    assert_eq!(doc["reference"], id.as_str());
    assert_eq!(doc["identity"]["claims"]["given_name"], "Angela");
    assert_eq!(doc["sign_ins"].as_array().unwrap().len(), 1);
    let consents = doc["consents"].as_array().unwrap();
    assert_eq!(consents.len(), 1);
    assert_eq!(
        (consents[0]["activity"].as_str(), consents[0]["event"].as_str()),
        (Some("lettre-information"), Some("given"))
    );
    assert_eq!(consents[0]["receipt"].as_str().unwrap().split('.').count(), 3, "a signed receipt");
    let reveals = doc["reveals"].as_array().unwrap();
    assert_eq!(reveals.len(), 1);
    assert_eq!(reveals[0]["role"], "restauration-scolaire");
    assert_eq!(reveals[0]["fields"], json!(["diet"]));
    assert_eq!(doc["rights_requests"].as_array().unwrap().len(), 1, "her request only");
    let activities = doc["activities"].as_array().unwrap();
    assert_eq!(activities.len(), 3);
    let cantine = activities.iter().find(|a| a["id"] == "cantine").unwrap();
    assert_eq!(cantine["application"]["status"], "answered");
    let child = &cantine["application"]["records"]["enfants"][0];
    assert_eq!(
        (child["child_given_names"].as_str(), child["diet"].as_str(), child["school"].as_str()),
        (Some("Léa"), Some("sans arachide"), Some("École Jules-Ferry"))
    );
    assert_eq!(cantine["application"]["records"]["note"], "Contact : angela@example.fr");
    assert_eq!(cantine["application"]["records"]["intrus"], "[valeur illisible]");
    assert_eq!(cantine["application"]["records"]["autre_activite"], "[valeur illisible]", "another activity's token");
    assert_eq!(cantine["application"]["unreadable_values"], 2);
    assert!(cantine["information"]["complaint"].as_str().unwrap().contains("CNIL"));
    assert!(!cantine["information"]["purposes"].as_array().unwrap().is_empty());
    let lettre = activities.iter().find(|a| a["id"] == "lettre-information").unwrap();
    assert_eq!(lettre["application"]["records"]["abonnement"]["email"], "angela@example.fr");
    let civil = activities.iter().find(|a| a["id"] == "etat-civil").unwrap();
    // Its policy names a rights endpoint, which this test's application does not answer.
    assert_eq!(civil["application"]["status"], "pending");
    assert!(files["donnees.html"].contains("sans arachide") && files["donnees.html"].contains("@page"));
    assert!(files["LISEZMOI.txt"].contains(&id));
    validate(&files["donnees.json"]);
    assert_eq!(
        journaled_stages(app, &id).await,
        ["received", "in_progress", "waiting_on_applications", "export_ready", "export_downloaded"]
    );
    // Nothing personal reached the logs on the way.
    let log = s.logs.text();
    for secret in ["Angela", "DUBOIS", "Léa", "arachide", "angela@example.fr", &angela_fields, url] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
    let request_lines = log.lines().filter(|l| l.contains(r#""message":"request""#) && l.contains("/rights/")).count();
    assert!(request_lines > 0, "the capture saw the gateway's request lines: {}", log.len());
}

async fn the_link_works_only_for_its_session_until_it_expires(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let angela = sign_in(&s, "sub-angela", angela_info()).await;
    let bruno = sign_in(&s, "sub-bruno", canary_info()).await;
    let created: Value =
        post_json(app, &angela, API, &json!({ "right": "portability", "activity": "lettre-information" }))
            .await
            .json()
            .await
            .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    // Another citizen cannot export someone else's request.
    assert_eq!(post_json(app, &bruno, &format!("{API}/{id}/export"), &json!({})).await.status(), 404);
    let ready: Value = post_json(app, &angela, &format!("{API}/{id}/export"), &json!({})).await.json().await.unwrap();
    let url = ready["download_url"].as_str().unwrap().to_owned();
    let doc = unzip(&download(app, Some(&angela), &url).await.bytes().await.unwrap())["donnees.json"].clone();
    validate(&doc);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["activities"].as_array().unwrap().len(), 1, "the request's one activity");

    // Another citizen, the same citizen in another session, no session, a wrong token: nothing.
    assert_eq!(download(app, Some(&bruno), &url).await.status(), 404);
    let angela_elsewhere = sign_in(&s, "sub-angela", angela_info()).await;
    assert_ne!(angela_elsewhere, angela);
    assert_eq!(download(app, Some(&angela_elsewhere), &url).await.status(), 404);
    assert_eq!(download(app, None, &url).await.status(), 401);
    let last = if url.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &url[..url.len() - 1]);
    assert_eq!(download(app, Some(&angela), &forged).await.status(), 404);
    assert_eq!(download(app, Some(&angela), &format!("{API}/{id}/download")).await.status(), 404);
    // A second download within the day works and is journaled too; after 24 h, nothing.
    app.clock.advance(time::Duration::hours(23));
    assert_eq!(download(app, Some(&angela), &url).await.status(), 200);
    app.clock.advance(time::Duration::hours(2));
    assert_eq!(download(app, Some(&angela), &url).await.status(), 404);
    assert_eq!(
        journaled_stages(app, &id).await,
        [
            "received",
            "in_progress",
            "waiting_on_applications",
            "export_ready",
            "export_downloaded",
            "export_downloaded"
        ]
    );
    // The archive at rest is sealed: none of the citizen's values in the store.
    let row = app.state.store.exports().latest_of(&id).await.unwrap().unwrap();
    assert!(!row.sealed.windows(6).any(|w| w == b"Angela"));
    assert!(!row.sealed.windows(4).any(|w| w == b"PK\x03\x04"), "not a clear zip");
}

async fn only_access_and_portability_requests_are_exported(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let angela = sign_in(&s, "sub-angela", angela_info()).await;
    let erase: Value = post_json(app, &angela, API, &json!({ "right": "erasure", "activity": "lettre-information" }))
        .await
        .json()
        .await
        .unwrap();
    let r = post_json(app, &angela, &format!("{API}/{}/export", erase["id"].as_str().unwrap()), &json!({})).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let refused: Value = post_json(app, &angela, API, &json!({ "right": "portability", "activity": "etat-civil" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refused["status"], "refused");
    let r = post_json(app, &angela, &format!("{API}/{}/export", refused["id"].as_str().unwrap()), &json!({})).await;
    assert_eq!(r.status(), 422);
}

/// A configuration for the command line on the test gateway's store, data directory, policies
/// and keys.
fn cli_config(s: &Setup, dir: &std::path::Path) -> std::path::PathBuf {
    use secrecy::ExposeSecret as _;
    let data_dir = s.app.policies_dir.parent().unwrap();
    let file = dir.join("guichet.toml");
    let toml = format!(
        "version = 1\ndata_dir = {data:?}\n[store]\nurl = {url:?}\n[policy]\ndir = {policies:?}\n\
         [keys]\nkeyring = {keyring:?}\nidentity_file = {identity:?}\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nno_personal_data = true\n\
         [[routes]]\nname = \"lettre\"\npath_prefix = \"/lettre-information\"\nupstream = \"http://127.0.0.1:9\"\n",
        data = data_dir.display().to_string(),
        url = s.app.store_url.expose_secret(),
        policies = s.app.policies_dir.display().to_string(),
        keyring = s.keyring.keyring.display().to_string(),
        identity = s.keyring.identity_file.as_ref().unwrap().display().to_string(),
    );
    std::fs::write(&file, toml).unwrap();
    file
}

fn guichet(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("GUICHET_CONFIG")
        .env("GUICHET_LOG__LEVEL", "debug")
        .output()
        .unwrap()
}

async fn the_command_line_writes_a_request_s_export_in_clear_or_for_an_age_recipient(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let Citizens { angela, angela_fields, canary_fields, .. } = two_citizens(&s).await;
    let created: Value = post_json(app, &angela, API, &json!({ "right": "access" })).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    // The online export records which pseudonym owns her encrypted values.
    assert_eq!(post_json(app, &angela, &format!("{API}/{id}/export"), &json!({})).await.status(), 201);
    app.state.audit.flush().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(&s, dir.path());
    let out = dir.path().join("dossier.zip");
    let run = guichet(&config, &["rights", "export", &id, "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&id), "{stdout}");
    #[cfg(unix)]
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out).unwrap().permissions()) & 0o777, 0o600);
    let files = unzip(&std::fs::read(&out).unwrap());
    validate(&files["donnees.json"]);
    let doc: Value = serde_json::from_str(&files["donnees.json"]).unwrap();
    assert_eq!(doc["reference"], id.as_str());
    assert_eq!(doc["identity"]["claims"], Value::Null, "claims stay sealed without her session");
    assert_eq!(doc["consents"].as_array().unwrap().len(), 1);
    assert_eq!(doc["reveals"].as_array().unwrap().len(), 1, "her reveal, not the canary's");
    for text in files.values() {
        assert!(!text.contains(&canary_fields) && !text.contains("agent-paul-martin"));
    }
    for secret in ["Angela", "angela@example.fr", &angela_fields] {
        assert!(!stderr.contains(secret), "the command's log holds {secret}");
    }

    // For e-mail or post: only the recipient's identity opens it.
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let sealed = dir.path().join("dossier.zip.age");
    let run =
        guichet(&config, &["rights", "export", &id, "--out", sealed.to_str().unwrap(), "--age-recipient", &recipient]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let bytes = std::fs::read(&sealed).unwrap();
    assert!(!bytes.windows(4).any(|w| w == b"PK\x03\x04"), "no clear zip inside");
    let opened = age::decrypt(&identity, &bytes).unwrap();
    // The same export (receipts are signed afresh: ES256 signatures differ each time).
    let again: Value = serde_json::from_str(&unzip(&opened)["donnees.json"]).unwrap();
    for part in ["reference", "sign_ins", "reveals", "rights_requests", "activities"] {
        assert_eq!(again[part], doc[part], "{part}");
    }
    let bad =
        guichet(&config, &["rights", "export", &id, "--out", sealed.to_str().unwrap(), "--age-recipient", "bogus"]);
    assert!(!bad.status.success());
    assert_eq!(
        journaled_stages(app, &id).await,
        ["received", "in_progress", "waiting_on_applications", "export_ready", "export_written", "export_written_age"]
    );
}

async fn an_agent_prints_a_counter_request_s_export(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let Citizens { angela, angela_fields, .. } = two_citizens(&s).await;
    let (angela_subject, _) = subjects(app, &angela).await;
    let r = agent_sign_in(app, &s.agents, agent_info("21750001600019", "lucie@mairie.example.fr"), "").await;
    let agent = cookie(&r, SESSION).expect("agent session");
    let print = |id: &str, session: &str| {
        let sent = app
            .client
            .get(app.url(&format!("{API}/{id}/impression")))
            .header("cookie", format!("{SESSION}={session}"))
            .send();
        async move {
            let r = sent.await?;
            Ok::<_, reqwest::Error>(crate::openapi::checked("get", "/.guichet/api/v1/rights/{id}/impression", r).await)
        }
    };
    // Filed online: the citizen downloads it herself (which records whose values are hers);
    // the counter does not print it.
    let online: Value = post_json(app, &angela, API, &json!({ "right": "access" })).await.json().await.unwrap();
    let online = online["id"].as_str().unwrap();
    assert_eq!(post_json(app, &angela, &format!("{API}/{online}/export"), &json!({})).await.status(), 201);
    assert_eq!(print(online, &agent).await.unwrap().status(), 403);
    // Filed at the counter, identity checked on a document: printed for her there.
    let counter = NewRequest {
        subject: angela_subject,
        activity: None,
        right: Right::Access,
        channel: Channel::Counter,
        agent: Some("agent-1".into()),
        identity: IdentityProof::Document { kind: DocumentKind::IdentityCard },
    };
    let by = By {
        actor: Actor { kind: ActorKind::Agent, id: Ident::new("agent-1").unwrap() },
        role: Ident::new("etat-civil").unwrap(),
    };
    let policies = app.state.policies.load();
    let request = app.state.rights.create(&policies, counter, &by).await.unwrap();
    assert_eq!(print(&request.id, &angela).await.unwrap().status(), 401, "not for a citizen session");
    let page = print(&request.id, &agent).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains(&request.id) && html.contains("@page") && html.contains("restauration-scolaire"), "{html}");
    assert!(!html.contains(&angela_fields) && !CANARIES.iter().any(|c| html.contains(c)));
    assert_eq!(journaled_stages(app, &request.id).await, ["received", "export_printed"]);
}

on_both_stores!(
    an_agent_prints_a_counter_request_s_export,
    the_command_line_writes_a_request_s_export_in_clear_or_for_an_age_recipient,
    the_export_holds_exactly_this_citizens_data_decrypted,
    the_link_works_only_for_its_session_until_it_expires,
    only_access_and_portability_requests_are_exported,
);

/// Every log line of the test's own thread and of the requests its gateway serves (their
/// lanes carry the subscriber of the thread that accepted them, `server::lanes`), as JSON at
/// debug level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber =
            tracing_subscriber::fmt().json().with_max_level(tracing::Level::DEBUG).with_writer(self.clone()).finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
