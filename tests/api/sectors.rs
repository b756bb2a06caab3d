//! Sectors (issue 17, item 4), on both engines: inside the gateway a citizen's field owner,
//! consent subject and journal subject are derived per sector, so two activities of different
//! sectors share no id in the store while two of one sector do; the citizen's own pages and
//! rights requests still reach every sector; the DPO joins sectors only through a journaled
//! step; an activity given a sector keeps its earlier records readable.

use std::collections::BTreeSet;
use std::time::Duration;

use guichet::config::RouteAccess;
use guichet::crypto::FieldContext;
use guichet::policy::Sector;
use guichet::rights::request::Status;
use serde_json::{Value, json};

use crate::auth::SESSION;
use crate::consent::{citizen, consent_page, post, token};
use crate::fields::Recorder;
use crate::helpers::{Backend, TestApp, route, spawn_app, test_keys};
use crate::oidc_mock::MockProvider;
use crate::on_both_stores;
use crate::propagation::{API, Mode, NEWSLETTER, RightsApp, post_json, wait_for};

/// The three activities: the newsletter (`general`), and two copies of it in `scolaire`.
const ACTIVITIES: [(&str, &str, &str); 3] = [
    ("lettre-information", "general", "Lettre d'information municipale"),
    ("lettre-ecole", "scolaire", "Lettre de l'école"),
    ("lettre-cantine", "scolaire", "Lettre de la cantine"),
];

/// The newsletter policy as activity `id` in `sector`, named `name`, its rights requests sent
/// to `rights`.
fn policy(id: &str, sector: &str, name: &str, rights: std::net::SocketAddr) -> String {
    NEWSLETTER
        .replace("id = \"lettre-information\"", &format!("id = \"{id}\""))
        .replace("name = \"Lettre d'information municipale\"", &format!("name = \"{name}\""))
        .replace("sector = \"general\"", &format!("sector = \"{sector}\""))
        .replace("path = \"/lettre-information/*\"", &format!("path = \"/{id}/*\""))
        .replace("rights_endpoint = \"/droits\"", &format!("rights_endpoint = \"http://{rights}/droits\""))
}

struct Setup {
    app: TestApp,
    mock: MockProvider,
    recorder: Recorder,
    rights_app: RightsApp,
    _dir: tempfile::TempDir,
}

/// A gateway with the three activities, each on its own route to one recording application.
async fn setup(backend: Backend, sectors: [&'static str; 3]) -> Setup {
    setup_with_agents(backend, sectors, None).await
}

/// Like `setup`, with agents signing in at `agents`; those at `dpo.example.fr` are DPOs.
async fn setup_with_agents(backend: Backend, sectors: [&'static str; 3], agents: Option<&MockProvider>) -> Setup {
    let recorder = Recorder::default();
    let up = recorder.start().await;
    let mock = MockProvider::start().await;
    let (rights_app, rights) = RightsApp::start(Mode::AnswerNow).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = test_keys(dir.path());
    let secret = dir.path().join("rappel.secret");
    std::fs::write(&secret, "rappel-secret-de-test-0123456789\n").unwrap();
    let files: Vec<(String, String)> = ACTIVITIES
        .iter()
        .zip(sectors)
        .map(|((id, _, name), sector)| (format!("{id}.toml"), policy(id, sector, name, rights)))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let mut builder = spawn_app().backend(backend).with_citizen_provider(mock.issuer()).with_policies(&files);
    if let Some(agents) = agents {
        builder = builder.with_agent_provider(agents.issuer()).with(|s, _| {
            s.auth.agent_roles.push(guichet::config::RoleRule {
                role: "dpo".into(),
                siret: vec![],
                email_domains: vec!["dpo.example.fr".into()],
                uids: vec![],
            });
        });
    }
    let app = builder
        .with(move |s, _| {
            for (id, _, _) in ACTIVITIES {
                let mut r = route(id, &format!("/{id}"), &format!("http://{up}"));
                r.access = RouteAccess::Citizen;
                r.no_personal_data = false;
                r.rights_callback_secret_file = Some(secret.clone());
                r.timeouts.response_headers = Duration::from_secs(2);
                s.routes.push(r);
            }
            s.keys = Some(keys);
        })
        .start()
        .await;
    rights_app.trust(&app);
    Setup { app, mock, recorder, rights_app, _dir: dir }
}

/// Gives consent to `activity`'s newsletter on the citizen's consent page.
async fn give_consent(app: &TestApp, session: &str, activity: &str) {
    let t = token(&consent_page(app, session).await);
    let form = [("jeton", t.as_str()), ("activite", activity), ("finalite", "envoi"), ("choix", "donner")];
    assert_eq!(post(app, session, "/.guichet/consentement/", &form).await.status(), 303);
}

/// Subscribes to `activity` with `email` through the gateway; the token the application stored.
async fn subscribe(s: &Setup, session: &str, activity: &str, email: &str) -> String {
    let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("email", email).finish();
    let r = s
        .app
        .client
        .post(s.app.url(&format!("/{activity}/abonnement")))
        .header("cookie", format!("{SESSION}={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{activity}");
    let (_, body) = s.recorder.last();
    let tok = url::form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "email").unwrap().1.into_owned();
    assert!(tok.starts_with("gch2."), "{tok}");
    tok
}

async fn owner(app: &TestApp, tok: &str) -> String {
    app.state.crypto.as_ref().unwrap().owner_of(tok).await.unwrap().expect("the key exists").0
}

async fn opens(app: &TestApp, tok: &str) -> bool {
    let vault = app.state.crypto.as_ref().unwrap();
    let Ok(Some((subject, activity))) = vault.owner_of(tok).await else { return false };
    vault.open(&FieldContext { activity: &activity, field: "email", subject: &subject }, tok).await.is_ok()
}

/// Every id the store holds about `activity`: data-key owners, consent subjects, and the
/// subjects and actors of the journal's entries naming it. Read from the tables, as someone
/// holding a copy of the store would.
async fn ids_of(app: &TestApp, activity: &str) -> BTreeSet<String> {
    let store = &app.state.store;
    app.state.audit.flush().await.unwrap();
    let mut ids = BTreeSet::new();
    for k in store.keys().not_wrapped_by(i64::MAX, 10_000).await.unwrap() {
        if k.activity == activity {
            ids.insert(k.subject);
        }
    }
    for c in store.consent().events_between(0, i64::MAX).await.unwrap() {
        if c.activity == activity {
            ids.insert(c.subject);
        }
    }
    for e in store.audit().entries_after(0, 100_000).await.unwrap() {
        let body: Value = serde_json::from_str(&e.body).unwrap();
        if body["activity"] == activity {
            ids.extend(e.subject);
            if body["actor"]["kind"] == "citizen" {
                ids.insert(body["actor"]["id"].as_str().unwrap().to_owned());
            }
        }
    }
    ids
}

/// The three activities in `general`, `scolaire`, `scolaire`; Angela consents to each and
/// subscribes; the tokens the application stored, in `ACTIVITIES` order.
async fn subscribed_everywhere(backend: Backend) -> (Setup, String, Vec<String>) {
    let s = setup(backend, ["general", "scolaire", "scolaire"]).await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let mut tokens = Vec::new();
    for (id, _, _) in ACTIVITIES {
        give_consent(&s.app, &angela, id).await;
        tokens.push(subscribe(&s, &angela, id, &format!("angela@{id}.example")).await);
    }
    (s, angela, tokens)
}

async fn two_sectors_share_no_id_and_one_sector_shares_its_ids(backend: Backend) {
    let (s, angela, tokens) = subscribed_everywhere(backend).await;
    let [general, school, canteen] = [&tokens[0], &tokens[1], &tokens[2]];

    // Field ownership: per sector.
    let (o_general, o_school, o_canteen) =
        (owner(&s.app, general).await, owner(&s.app, school).await, owner(&s.app, canteen).await);
    assert_ne!(o_general, o_school, "two sectors, two field owners");
    assert_eq!(o_school, o_canteen, "one sector, one field owner");

    // Consent: per sector too.
    let events = s.app.state.store.consent().events_between(0, i64::MAX).await.unwrap();
    let subject_of = |a: &str| events.iter().find(|e| e.activity == a).unwrap().subject.clone();
    assert_ne!(subject_of("lettre-information"), subject_of("lettre-ecole"));
    assert_eq!(subject_of("lettre-ecole"), subject_of("lettre-cantine"));
    assert_ne!(subject_of("lettre-ecole"), o_school, "the consent and field subjects differ too");

    // A dump of the store: nothing about the general newsletter shares an id with the school's.
    let (ids_general, ids_school, ids_unused) = (
        ids_of(&s.app, "lettre-information").await,
        ids_of(&s.app, "lettre-ecole").await,
        ids_of(&s.app, "lettre-inconnue").await,
    );
    assert!(ids_unused.is_empty(), "an activity nobody used holds no id");
    assert!(ids_general.len() >= 2 && ids_school.len() >= 2, "{ids_general:?} {ids_school:?}");
    let common: Vec<_> = ids_general.intersection(&ids_school).collect();
    assert!(common.is_empty(), "two sectors share {common:?}");
    assert_eq!(ids_school, ids_of(&s.app, "lettre-cantine").await, "one sector: the same ids");

    // Another citizen in the same sector has other ids.
    let bruno = citizen(&s.app, &s.mock, "sub-bruno").await;
    give_consent(&s.app, &bruno, "lettre-ecole").await;
    let bruno_school = subscribe(&s, &bruno, "lettre-ecole", "bruno@ecole.example").await;
    assert_ne!(owner(&s.app, &bruno_school).await, o_school);

    // The citizen's own pages see every sector: both consents given, every service listed.
    let page = consent_page(&s.app, &angela).await;
    assert_eq!(page.matches("Accord donné").count(), 3, "{page}");
    let hub = s
        .app
        .client
        .get(s.app.url("/.guichet/mes-donnees/"))
        .header("cookie", format!("{SESSION}={angela}"))
        .send()
        .await
        .unwrap();
    assert_eq!(hub.status(), 200);
    let hub = hub.text().await.unwrap();
    for (id, _, _) in ACTIVITIES {
        assert!(hub.contains(&format!("id=\"service-{id}\"")), "Mes données lists {id} among my services:\n{hub}");
    }
}

async fn a_request_on_all_activities_reaches_every_sector_and_the_dpo_join_is_journaled(backend: Backend) {
    let (s, angela, tokens) = subscribed_everywhere(backend).await;
    let school_owner = owner(&s.app, &tokens[1]).await;
    for t in &tokens {
        assert!(opens(&s.app, t).await);
    }

    // An erasure on all activities shreds the keys of both sectors and tells every application.
    let r = post_json(&s.app, &angela, API, &json!({ "right": "erasure" })).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    wait_for(&s.app, &id, Status::Completed).await;
    for t in &tokens {
        assert!(!opens(&s.app, t).await, "an erasure of everything reaches every sector");
    }
    let told: BTreeSet<String> =
        s.rights_app.received().iter().map(|c| c["activity"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(told.len(), 3, "{told:?}");

    // The DPO's join: the sector ids of the request's citizen, journaled as a step.
    let by = guichet::rights::service::By {
        actor: guichet::audit::Actor {
            kind: guichet::audit::ActorKind::Agent,
            id: guichet::audit::Ident::new("nadia").unwrap(),
        },
        role: guichet::audit::Ident::new("dpo").unwrap(),
    };
    let before = linked_steps(&s.app).await;
    let ids = guichet::rights::sectors::link(&s.app.state, &id, &by).await.unwrap();
    let school = ids.iter().find(|i| i.sector == Sector::Scolaire).unwrap();
    assert_eq!(school.field, school_owner, "the join finds the school's field owner");
    let general = ids.iter().find(|i| i.sector == Sector::General).unwrap();
    assert_ne!(general.field, school.field);
    assert_eq!(linked_steps(&s.app).await, before + 1, "the join is journaled");
}

/// How many `sectors_linked` steps the journal holds.
async fn linked_steps(app: &TestApp) -> usize {
    app.state.audit.flush().await.unwrap();
    let entries = app.state.store.audit().entries_after(0, 100_000).await.unwrap();
    entries.iter().filter(|e| e.body.contains("\"sectors_linked\"")).count()
}

async fn an_activity_given_a_sector_keeps_its_earlier_records_readable(backend: Backend) {
    // Before: every activity in `general`.
    let s = setup(backend, ["general", "general", "general"]).await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    give_consent(&s.app, &angela, "lettre-ecole").await;
    let before = subscribe(&s, &angela, "lettre-ecole", "angela@avant.example").await;
    let v1 = owner(&s.app, &before).await;

    // The DPO gives the activity a sector; the policies are reloaded.
    let dir = &s.app.policies_dir;
    let text = std::fs::read_to_string(dir.join("lettre-ecole.toml")).unwrap();
    std::fs::write(dir.join("lettre-ecole.toml"), text.replace("sector = \"general\"", "sector = \"scolaire\""))
        .unwrap();
    s.app.state.reload_policies().unwrap();
    let set = s.app.state.policies.load();
    assert_eq!(set.activity("lettre-ecole").unwrap().sector, Sector::Scolaire);

    // The consent given before still counts; new values go under the sector's owner.
    let after = subscribe(&s, &angela, "lettre-ecole", "angela@apres.example").await;
    assert_ne!(owner(&s.app, &after).await, v1, "new records: the sector's owner");
    // The earlier value still opens, and the consent page still shows the consent.
    assert!(opens(&s.app, &before).await);
    let page = consent_page(&s.app, &angela).await;
    assert!(page.contains("Accord donné"), "{page}");

    // An erasure of the activity shreds both owners' keys.
    let r = post_json(&s.app, &angela, API, &json!({ "right": "erasure", "activity": "lettre-ecole" })).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    wait_for(&s.app, &id, Status::Completed).await;
    assert!(!opens(&s.app, &before).await, "the v1 key is shredded");
    assert!(!opens(&s.app, &after).await, "the sector key is shredded");
}

async fn the_dpo_proves_a_sector_consent_from_the_citizens_code(backend: Backend) {
    let agents = MockProvider::start().await;
    let s = setup_with_agents(backend, ["general", "scolaire", "scolaire"], Some(&agents)).await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    give_consent(&s.app, &angela, "lettre-ecole").await;
    let code = crate::rights_agent::code_of(&s.app, &angela).await;

    let r = crate::auth::agent_sign_in(
        &s.app,
        &agents,
        crate::auth::agent_info("21750001600019", "delegue@dpo.example.fr"),
        "",
    )
    .await;
    let dpo = crate::auth::cookie(&r, SESSION).unwrap();
    let page = s
        .app
        .client
        .get(s.app.url("/.guichet/dpo/consentements"))
        .header("cookie", format!("{SESSION}={dpo}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let jeton = token(&page.text().await.unwrap());
    let today = guichet::clock::paris_date(s.app.state.clock.now()).to_string();
    let form = [
        ("jeton", jeton.as_str()),
        ("pseudonyme", ""),
        ("code", code.as_str()),
        ("finalite", "lettre-ecole/envoi"),
        ("date", today.as_str()),
    ];
    let r = post(&s.app, &dpo, "/.guichet/dpo/consentements/preuve", &form).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("avait donné son accord pour lettre-ecole / envoi"),
        "the school sector's consent is found: {html}"
    );
}

on_both_stores!(
    the_dpo_proves_a_sector_consent_from_the_citizens_code,
    two_sectors_share_no_id_and_one_sector_shares_its_ids,
    a_request_on_all_activities_reaches_every_sector_and_the_dpo_join_is_journaled,
    an_activity_given_a_sector_keeps_its_earlier_records_readable,
);
