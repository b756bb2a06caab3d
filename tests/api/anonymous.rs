//! No forced sign-in (issue 17 item 6), end to end through a real upstream: an anonymous
//! street-issue report on an activity with `anonymous = "sealed"` reaches the application as
//! tokens of its own record, revealed only to the roles the policy names and shreddable by
//! record; without the option the sender is still sent to sign in. Agents enter fields for
//! the citizen they assist (chosen with the citizen's counter code): sealed under that
//! citizen's key, journaled with the channel; without the role or a chosen citizen, refused.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use guichet::audit::{Channel, Operation};
use guichet::config::{KeysSettings, RoleRule, RouteAccess};
use guichet::rights::erasure::{RecordError, erase_record};
use serde_json::json;
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::auth::{SESSION, agent_info, agent_sign_in, cookie, sign_in_at};
use crate::consent::token;
use crate::helpers::{Backend, TestApp, route, spawn_app, test_keys};
use crate::oidc_mock::MockProvider;
use crate::on_both_stores;
use crate::rights_agent::code_of;

const VOIRIE: &str = include_str!("../../policies/voirie.toml");
const PLACEHOLDER: &str = "[donnée protégée]";
const FORM: &str = "application/x-www-form-urlencoded";
const ASSISTED_COOKIE: &str = "__Host-guichet-usager";
const CHOOSE: &str = "/.guichet/guichet-agent/usager";

/// An application keeping each request's `X-Guichet-Record` and body, answering any GET
/// with the last body posted (as HTML: where the gateway reveals tokens).
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<Posted>>>);

/// One report as the application received it: its `X-Guichet-Record` and its body.
type Posted = (Option<String>, String);

impl Reports {
    async fn start(&self) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(keep).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn posted(&self) -> Vec<Posted> {
        self.0.lock().unwrap().clone()
    }
}

async fn keep(State(r): State<Reports>, req: Request) -> Response {
    let cookies = req.headers().get("cookie").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    if cookies.contains(ASSISTED_COOKIE) || cookies.contains(SESSION) {
        // The gateway's own cookies never reach an application.
        return (http::StatusCode::IM_A_TEAPOT, "cookie leaked").into_response();
    }
    let record = req.headers().get("x-guichet-record").map(|v| v.to_str().unwrap().to_owned());
    let post = req.method() == http::Method::POST;
    let bytes = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap();
    let mut all = r.0.lock().unwrap();
    if post {
        all.push((record, String::from_utf8_lossy(&bytes).into_owned()));
    }
    let last = all.last().map(|(_, b)| b.clone()).unwrap_or_default();
    ([("content-type", "text/html; charset=utf-8")], format!("<p>{last}</p>")).into_response()
}

struct Setup {
    app: TestApp,
    citizens: MockProvider,
    reports: Reports,
    /// `agent-voirie`: sees the reports' contact fields.
    voirie: String,
    /// `accueil`: enters fields for a citizen at the counter; sees no value.
    accueil: String,
    /// Another `accueil` agent.
    accueil2: String,
    /// No role at all.
    other: String,
    /// The DPO.
    dpo: String,
    _keys: (TempDir, KeysSettings),
}

/// The voirie policy (as shipped, or as `policy` says) on a public route `/voirie` to the
/// reports application, with a keyring and three agents.
async fn setup(backend: Backend, policy: &str) -> Setup {
    let citizens = MockProvider::start().await;
    let agents = MockProvider::start().await;
    let reports = Reports::default();
    let up = reports.start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = test_keys(dir.path());
    let keyring = keys.clone();
    let app = spawn_app()
        .backend(backend)
        .with_citizen_provider(citizens.issuer())
        .with_agent_provider(agents.issuer())
        .with_policies(&[("voirie.toml", policy)])
        .with(move |s, _| {
            let mut voirie = route("voirie", "/voirie", &format!("http://{up}"));
            voirie.access = RouteAccess::Public;
            voirie.no_personal_data = false;
            s.routes.push(voirie);
            for (role, uids) in
                [("agent-voirie", vec!["hugo"]), ("accueil", vec!["claire", "claude"]), ("dpo", vec!["nadia"])]
            {
                s.auth.agent_roles.push(RoleRule {
                    role: role.into(),
                    siret: vec![],
                    email_domains: vec![],
                    uids: uids.into_iter().map(Into::into).collect(),
                });
            }
            // The test moves the clock past a choice's hour: sessions must last.
            s.auth.session_idle_timeout = std::time::Duration::from_secs(86_400);
            s.auth.session_absolute_timeout = std::time::Duration::from_secs(86_400);
            s.keys = Some(keyring);
        })
        .start()
        .await;
    let sign_in = |uid: &str| {
        let (app, agents) = (&app, &agents);
        let mut info = agent_info("21750001600019", &format!("{uid}@mairie.example.fr"));
        info["uid"] = json!(uid);
        async move { cookie(&agent_sign_in(app, agents, info, "").await, SESSION).unwrap() }
    };
    let voirie = sign_in("hugo").await;
    let accueil = sign_in("claire").await;
    let accueil2 = sign_in("claude").await;
    let other = sign_in("paul").await;
    let dpo = sign_in("nadia").await;
    Setup { app, citizens, reports, voirie, accueil, accueil2, other, dpo, _keys: (dir, keys) }
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn report() -> String {
    form(&[
        ("reporter_name", "Jeanne Dupont"),
        ("reporter_email", "jeanne@example.org"),
        ("location", "rue des Lilas"),
        ("description", "Lampadaire cassé"),
    ])
}

async fn send(s: &Setup, method: http::Method, path: &str, cookies: &str, body: Option<String>) -> reqwest::Response {
    let mut r = s.app.client.request(method, s.app.url(path));
    if !cookies.is_empty() {
        r = r.header("cookie", cookies);
    }
    if let Some(body) = body {
        r = r.header("content-type", FORM).body(body);
    }
    r.send().await.unwrap()
}

/// The report page as `cookies` sees it.
async fn page(s: &Setup, cookies: &str) -> String {
    let r = send(s, http::Method::GET, "/voirie/signalements/1", cookies, None).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

fn session(s: &str) -> String {
    format!("{SESSION}={s}")
}

async fn anonymous_reports_are_sealed_under_their_own_record(backend: Backend) {
    let s = setup(backend, VOIRIE).await;
    let r = send(&s, http::Method::POST, "/voirie/signalements/", "", Some(report())).await;
    assert_eq!(r.status(), 200, "no sign-in asked");
    let posted = s.reports.posted();
    let (record, body) = posted.last().unwrap();
    assert!(!body.contains("Dupont") && !body.contains("jeanne%40example"), "{body}");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert!(pairs[0].1.starts_with("gch2.") && pairs[1].1.starts_with("gch2."), "{body}");
    assert_eq!(pairs[2].1, "rue des Lilas", "pass fields stay in clear");
    // The application is told the record, which is what the tokens' key belongs to.
    let record = record.clone().expect("X-Guichet-Record sent");
    assert!(record.starts_with("anonyme:") && record.len() > 30, "{record}");
    let vault = s.app.state.crypto.clone().unwrap();
    assert_eq!(vault.owner_of(&pairs[0].1).await.unwrap(), Some((record.clone(), "voirie".to_owned())));

    // A second report gets another record: two anonymous senders are never joined.
    send(&s, http::Method::POST, "/voirie/signalements/", "", Some(report())).await;
    let second = s.reports.posted().last().unwrap().0.clone().unwrap();
    assert_ne!(second, record);
    // A client cannot choose the record.
    let r = s
        .app
        .client
        .post(s.app.url("/voirie/signalements/"))
        .header("content-type", FORM)
        .header("x-guichet-record", "anonyme:choisi")
        .body(form(&[("location", "place du Marché")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.reports.posted().last().unwrap().0, None, "nothing sealed, no record; the client's header is gone");
    send(&s, http::Method::POST, "/voirie/signalements/", "", Some(report())).await;

    // Revealed to the role the policy names, and to nobody else.
    assert!(page(&s, &session(&s.voirie)).await.contains("Jeanne Dupont"));
    for (who, cookies) in
        [("accueil", session(&s.accueil)), ("no role", session(&s.other)), ("anonymous", String::new())]
    {
        let shown = page(&s, &cookies).await;
        assert!(!shown.contains("Dupont") && shown.contains(PLACEHOLDER), "{who}: {shown}");
    }
    let citizen =
        cookie(&sign_in_at(&s.app, &s.citizens, "/.guichet/connexion?retour=/prive", "sub-jeanne").await, SESSION)
            .unwrap();
    let shown = page(&s, &session(&citizen)).await;
    assert!(!shown.contains("Dupont") && shown.contains(PLACEHOLDER), "a citizen: {shown}");

    // Shredding the record (by one of its tokens, as the DPO finds it) ends every value of it.
    let last = s.reports.posted().last().unwrap().clone();
    let token = url::form_urlencoded::parse(last.1.as_bytes()).next().unwrap().1.into_owned();
    let done = erase_record(&s.app.state, &token, None).await.unwrap();
    assert_eq!(done.record, last.0.clone().unwrap());
    assert_eq!(done.keys, 1);
    let shown = page(&s, &session(&s.voirie)).await;
    assert!(!shown.contains("Dupont") && shown.contains(PLACEHOLDER), "after the shred: {shown}");
    // The other records still open; again is a no-op; a citizen's key is out of this path's reach.
    assert!(
        vault
            .open(
                &guichet::crypto::FieldContext { activity: "voirie", field: "reporter_name", subject: &record },
                &pairs[0].1
            )
            .await
            .is_ok()
    );
    assert_eq!(erase_record(&s.app.state, &done.record, Some("voirie")).await.unwrap().keys, 0);
    assert!(matches!(erase_record(&s.app.state, "citoyen-1", Some("voirie")).await, Err(RecordError::NotARecord)));
    s.app.state.audit.flush().await.unwrap();
    let shred = s.app.state.audit.last_named("key_operation").await.unwrap().expect("the shred is journaled").1;
    assert_eq!(shred.subject.unwrap().as_str(), done.record);
}

async fn without_the_option_anonymous_senders_still_sign_in_first(backend: Backend) {
    let policy = VOIRIE.replace("anonymous = \"sealed\"\n", "");
    assert_ne!(policy, VOIRIE);
    let s = setup(backend, &policy).await;
    let r = send(&s, http::Method::POST, "/voirie/signalements/", "", Some(report())).await;
    assert_eq!(r.status(), 401);
    assert!(s.reports.posted().is_empty(), "nothing was forwarded");
}

/// Chooses the citizen whose code is `code` for the agent `agent`; the cookies to send next.
async fn choose(s: &Setup, agent: &str, code: &str, channel: &str) -> reqwest::Response {
    let html = page_of(s, &session(agent), CHOOSE).await;
    let body = form(&[("jeton", token(&html).as_str()), ("code", code), ("canal", channel)]);
    send(s, http::Method::POST, CHOOSE, &session(agent), Some(body)).await
}

async fn page_of(s: &Setup, cookies: &str, path: &str) -> String {
    let r = send(s, http::Method::GET, path, cookies, None).await;
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

async fn agents_enter_fields_for_the_citizen_they_assist(backend: Backend) {
    let s = setup(backend, VOIRIE).await;
    let jeanne =
        cookie(&sign_in_at(&s.app, &s.citizens, "/.guichet/connexion?retour=/prive", "sub-jeanne").await, SESSION)
            .unwrap();
    // The page is reached by clicking from the agents' landing page, whose card only agents
    // with an `assisted_entry` role see.
    let card = "href=\"/.guichet/guichet-agent/usager\"";
    assert!(page_of(&s, &session(&s.accueil), "/.guichet/agent/").await.contains(card));
    for (who, agent) in [("agent-voirie", &s.voirie), ("no role", &s.other)] {
        let landing = page_of(&s, &session(agent), "/.guichet/agent/").await;
        assert!(!landing.contains(card) && !landing.contains("Saisir pour un usager"), "{who}: {landing}");
    }

    // No citizen chosen yet: the entry is refused, nothing forwarded.
    let r = send(&s, http::Method::POST, "/voirie/signalements/", &session(&s.accueil), Some(report())).await;
    assert_eq!(r.status(), 403);
    assert!(s.reports.posted().is_empty());

    let code = code_of_voirie(&s, &jeanne).await;
    let r = choose(&s, &s.accueil, &code, "phone").await;
    assert_eq!(r.status(), 303);
    let chosen = cookie(&r, ASSISTED_COOKIE).expect("the choice, sealed in a cookie");
    assert!(!chosen.contains("jeanne"));
    let cookies = format!("{}; {ASSISTED_COOKIE}={chosen}", session(&s.accueil));
    let chosen_page = page_of(&s, &cookies, CHOOSE).await;
    assert!(chosen_page.contains("Par téléphone"));
    // The service's form is one click away, and opens for the agent (a public route).
    let forms = chosen_page.split("id=\"formulaires\"").nth(1).expect("the forms").split("</ul>").next().unwrap();
    let link = "<li><a href=\"/voirie/signalements/\">Signalement d&#39;un problème sur la voirie</a></li>";
    assert!(forms.contains(link), "{forms}");
    assert_eq!(forms.matches("<a ").count(), 1, "{forms}");
    assert!(!page_of(&s, &session(&s.accueil), CHOOSE).await.contains("id=\"formulaires\""), "no citizen, no form");
    page_of(&s, &cookies, "/voirie/signalements/").await;

    // Sent from that form: sealed under the citizen's key, with the channel journaled.
    let r = send(&s, http::Method::POST, "/voirie/signalements/", &cookies, Some(report())).await;
    assert_eq!(r.status(), 200);
    let (record, body) = s.reports.posted().last().unwrap().clone();
    assert_eq!(record, None, "a citizen's record, not an anonymous one");
    assert!(!body.contains("Dupont") && !cookies.contains("Dupont"), "{body}");
    let token = url::form_urlencoded::parse(body.as_bytes()).next().unwrap().1.into_owned();
    // Sealed under Jeanne's key, not the agent's.
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("cookie", session(&jeanne).parse().unwrap());
    let auth = &s.app.state.auth;
    let citizen = auth.identify(&headers).await.unwrap().unwrap();
    // The voirie sector's subject: the one Jeanne's own reports seal under (policies/voirie.toml).
    let field_subject = auth.field_subject_in(&citizen, guichet::policy::Sector::Voirie).to_owned();
    assert_ne!(field_subject, auth.field_subject(&citizen), "a sector of its own");
    let vault = s.app.state.crypto.clone().unwrap();
    assert_eq!(vault.owner_of(&token).await.unwrap(), Some((field_subject.clone(), "voirie".to_owned())));
    // Jeanne sees her values; the agent who typed them does not (no `visible_to` role).
    assert!(page(&s, &session(&jeanne)).await.contains("Jeanne Dupont"));
    let shown = page(&s, &cookies).await;
    assert!(!shown.contains("Dupont") && shown.contains(PLACEHOLDER), "{shown}");
    // Journaled: the agent, the citizen's pseudonym, the fields, the channel.
    let (_, entry) = s.app.state.audit.last_named("assisted_entry").await.unwrap().expect("journaled");
    assert_eq!(entry.subject.as_ref().unwrap().as_str(), field_subject);
    assert_eq!(entry.role.as_str(), "accueil");
    let Operation::AssistedEntry { fields, channel } = entry.operation else { panic!("{entry:?}") };
    assert_eq!(channel, Channel::Phone);
    let names: Vec<&str> = fields.iter().map(|f| f.as_str()).collect();
    assert_eq!(names, ["reporter_name", "reporter_email"]);
    // Jeanne sees the entry in "who saw my data": the service, the role, the channel, the
    // date, never the agent's name.
    let hub = page_of(&s, &session(&jeanne), "/.guichet/mes-donnees/").await;
    let at = hub.find("id=\"consultations\"").expect("the section");
    let seen = hub[at..].replace("&#39;", "'");
    assert!(seen.contains("L'agent a saisi vos données pour vous (par téléphone)."), "{seen}");
    assert!(seen.contains("Agent : accueil"), "{seen}");
    assert!(seen.contains("Signalement d'un problème sur la voirie"), "{seen}");
    assert!(!seen.contains("claire"), "never the agent's name: {seen}");

    // The choice is bound to the agent's session: another agent replaying it gets nothing.
    let stolen = format!("{}; {ASSISTED_COOKIE}={chosen}", session(&s.accueil2));
    let before = s.reports.posted().len();
    let r = send(&s, http::Method::POST, "/voirie/signalements/", &stolen, Some(report())).await;
    assert_eq!(r.status(), 403, "a choice sealed for another session does not open");
    // An agent without the role can neither choose a citizen nor enter fields; nothing forwarded.
    let other_code = code_of_voirie(&s, &jeanne).await;
    let body = form(&[("jeton", "x"), ("code", other_code.as_str()), ("canal", "counter")]);
    assert_eq!(send(&s, http::Method::POST, CHOOSE, &session(&s.other), Some(body)).await.status(), 403);
    assert_eq!(send(&s, http::Method::GET, CHOOSE, &session(&s.other), None).await.status(), 403);
    let r = send(&s, http::Method::POST, "/voirie/signalements/", &session(&s.other), Some(report())).await;
    assert_eq!(r.status(), 403);
    let theirs = format!("{}; {ASSISTED_COOKIE}={chosen}", session(&s.voirie));
    let r = send(&s, http::Method::POST, "/voirie/signalements/", &theirs, Some(report())).await;
    assert_eq!(r.status(), 403, "agent-voirie is not in `assisted_entry`");
    assert_eq!(s.reports.posted().len(), before, "nothing was forwarded");
    // The refused code was not used up: the `accueil` agent can still choose with it.
    assert_eq!(choose(&s, &s.accueil, &other_code, "counter").await.status(), 303);

    // A selection ends after its hour.
    s.app.clock.advance(time::Duration::minutes(61));
    let r = send(&s, http::Method::POST, "/voirie/signalements/", &cookies, Some(report())).await;
    assert_eq!(r.status(), 403);
    assert_eq!(s.reports.posted().len(), before, "nothing was forwarded");
}

/// The counter code of a signed-in citizen (their consent page makes it).
async fn code_of_voirie(s: &Setup, citizen: &str) -> String {
    code_of(&s.app, citizen).await
}

/// Retention reaches anonymous records: a report's record gets its categories' clocks when it
/// is sealed (under the record id, which is what the application knows), and a run past the
/// declared end shreds its values, so they show as the placeholder.
async fn retention_shreds_an_anonymous_record_at_its_declared_end(backend: Backend) {
    // The clocks start at the report (the shipped policy waits for the case to be closed).
    let policy = VOIRIE.replace("from = \"case_closed\"", "from = \"collection\"");
    assert_ne!(policy, VOIRIE);
    let s = setup(backend, &policy).await;
    let r = send(&s, http::Method::POST, "/voirie/signalements/", "", Some(report())).await;
    assert_eq!(r.status(), 200);
    let record = s.reports.posted().last().unwrap().0.clone().expect("a record");
    let rows = s.app.state.retention.records(&record, "voirie").await.unwrap();
    let categories: Vec<&str> = rows.iter().map(|r| r.category.as_str()).collect();
    assert_eq!(categories, ["contact", "signalement"], "{rows:?}");
    assert!(rows.iter().all(|r| r.phase == "active" && r.app_subject.as_deref() == Some(record.as_str())));
    assert!(page(&s, &session(&s.voirie)).await.contains("Jeanne Dupont"));

    let today = guichet::clock::paris_date(s.app.state.clock.now());
    let after = |months: i64| guichet::retention::run::Options {
        today: today + time::Duration::days(months * 31),
        dry_run: false,
    };
    let run = guichet::retention::run::run;
    assert_eq!(run(&s.app.state, after(5), &|_| {}).await.unwrap().acted, 0, "not before the end");
    assert!(page(&s, &session(&s.voirie)).await.contains("Jeanne Dupont"));
    assert_eq!(run(&s.app.state, after(7), &|_| {}).await.unwrap().acted, 1, "the contact's six months are over");
    let shown = page(&s, &session(&s.voirie)).await;
    assert!(!shown.contains("Dupont") && shown.contains(PLACEHOLDER), "after the run: {shown}");
    let rows = s.app.state.retention.records(&record, "voirie").await.unwrap();
    let phase = |c: &str| rows.iter().find(|r| r.category == c).unwrap().phase.clone();
    assert_eq!((phase("contact"), phase("signalement")), ("ended".to_owned(), "active".to_owned()));
}

/// The DPO shreds an anonymous record from the console (the rights queue's last form): a
/// reason from the list is required, the form is CSRF-checked, only the DPO may, a citizen's
/// key is out of reach; the shred is journaled as the DPO's action with the reason.
async fn the_dpo_erases_an_anonymous_record_from_the_console(backend: Backend) {
    const QUEUE: &str = "/.guichet/dpo/demandes";
    const ERASE: &str = "/.guichet/dpo/enregistrements-anonymes";
    let s = setup(backend, VOIRIE).await;
    send(&s, http::Method::POST, "/voirie/signalements/", "", Some(report())).await;
    let record = s.reports.posted().last().unwrap().0.clone().expect("a record");
    assert!(page(&s, &session(&s.voirie)).await.contains("Jeanne Dupont"));

    let queue = page_of(&s, &session(&s.dpo), QUEUE).await;
    assert!(
        queue.contains("Effacer un enregistrement anonyme")
            && queue.contains("action=\"/.guichet/dpo/enregistrements-anonymes\""),
        "{queue}"
    );
    let jeton = token(&queue);
    let erase = |cookies: String, pairs: Vec<(&'static str, String)>| {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        let s = &s;
        async move { send(s, http::Method::POST, ERASE, &cookies, Some(body)).await }
    };
    let with = |raison: &str, target: &str| {
        vec![
            ("jeton", jeton.clone()),
            ("enregistrement", target.to_owned()),
            ("activite", "voirie".to_owned()),
            ("raison", raison.to_owned()),
        ]
    };
    // Refused: no reason, no token, not the DPO, not an anonymous record. Nothing is shredded.
    assert_eq!(erase(session(&s.dpo), with("", &record)).await.status(), 422);
    let mut no_token = with("subject_request", &record);
    no_token.remove(0);
    assert_eq!(erase(session(&s.dpo), no_token).await.status(), 403);
    assert_eq!(erase(session(&s.accueil), with("subject_request", &record)).await.status(), 403);
    assert_eq!(erase(session(&s.dpo), with("subject_request", "citoyen-1")).await.status(), 422);
    assert!(page(&s, &session(&s.voirie)).await.contains("Jeanne Dupont"), "nothing shredded yet");

    let r = erase(session(&s.dpo), with("subject_request", &record)).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("est effacé"));
    let shown = page(&s, &session(&s.voirie)).await;
    assert!(!shown.contains("Dupont") && shown.contains(PLACEHOLDER), "{shown}");
    s.app.state.audit.flush().await.unwrap();
    let (_, entry) = s.app.state.audit.last_named("dpo_action").await.unwrap().expect("journaled");
    assert!(
        matches!(&entry.operation, Operation::DpoAction { action } if action.as_str() == "erase_record:subject_request"),
        "{entry:?}"
    );
    assert_eq!(entry.subject.unwrap().as_str(), record);
    assert_eq!(entry.role.as_str(), "dpo");
}

on_both_stores!(
    the_dpo_erases_an_anonymous_record_from_the_console,
    retention_shreds_an_anonymous_record_at_its_declared_end,
    anonymous_reports_are_sealed_under_their_own_record,
    without_the_option_anonymous_senders_still_sign_in_first,
    agents_enter_fields_for_the_citizen_they_assist,
);
