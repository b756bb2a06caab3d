//! Sectors (issue 17, item 4), on both engines: inside the gateway a citizen's field owner,
//! consent subject and journal subject are derived per sector, so two activities of different
//! sectors share no id in the store while two of one sector do; the citizen's own pages and
//! rights requests still reach every sector; the DPO joins sectors only through a journaled
//! step; an activity given a sector keeps its earlier records readable.

use std::collections::BTreeSet;
use std::time::Duration;

use guichet::audit::{Actor, ActorKind, Ident};
use guichet::config::RouteAccess;
use guichet::crypto::FieldContext;
use guichet::policy::Sector;
use guichet::rights::request::{Channel, IdentityProof, Right, Status};
use guichet::rights::service::{By, NewRequest, RightsRequest};
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

/// Every activity in `general` (before sectors); Angela consents to the school's letter and
/// subscribes: the setup, her session, the token stored and its owner (her v1 field subject).
async fn subscribed_before_the_sector(backend: Backend) -> (Setup, String, String, String) {
    let s = setup(backend, ["general", "general", "general"]).await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    give_consent(&s.app, &angela, "lettre-ecole").await;
    let before = subscribe(&s, &angela, "lettre-ecole", "angela@avant.example").await;
    let v1 = owner(&s.app, &before).await;
    (s, angela, before, v1)
}

/// Gives `lettre-ecole` the `scolaire` sector (it was in `general`) and reloads the policies,
/// as the DPO would.
fn into_the_school_sector(app: &TestApp) {
    let file = app.policies_dir.join("lettre-ecole.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("sector = \"general\"", "sector = \"scolaire\"")).unwrap();
    app.state.reload_policies().unwrap();
}

/// Files `right` on `activity` online for the citizen whose gateway-wide subject is `subject`,
/// without starting it.
async fn file_online(app: &TestApp, subject: &str, activity: &str, right: Right) -> RightsRequest {
    let new = NewRequest {
        subject: subject.to_owned(),
        activity: Some(activity.into()),
        right,
        channel: Channel::Online,
        agent: None,
        identity: IdentityProof::SignIn { acr: "eidas2".into() },
    };
    let by = By {
        actor: Actor { kind: ActorKind::Citizen, id: Ident::new(subject).unwrap() },
        role: Ident::new("citizen").unwrap(),
    };
    app.state.rights.create(&app.state.policies.load_full(), new, &by).await.unwrap()
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
    let hub = page_of(&s.app, &angela, "/.guichet/mes-donnees/").await;
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
    let by = By {
        actor: Actor { kind: ActorKind::Agent, id: Ident::new("nadia").unwrap() },
        role: Ident::new("dpo").unwrap(),
    };
    let before = linked_steps(&s.app).await;
    let reason = guichet::rights::sectors::LinkReason::Inspection;
    let ids = guichet::rights::sectors::link(&s.app.state, &id, reason, &by).await.unwrap();
    let school = ids.iter().find(|i| i.sector == Sector::Scolaire).unwrap();
    assert_eq!(school.field, school_owner, "the join finds the school's field owner");
    let general = ids.iter().find(|i| i.sector == Sector::General).unwrap();
    assert_ne!(general.field, school.field);
    assert_eq!(linked_steps(&s.app).await, before + 1, "the join is journaled");
}

/// How many `sectors_linked` steps the journal holds (each names its reason).
async fn linked_steps(app: &TestApp) -> usize {
    app.state.audit.flush().await.unwrap();
    let entries = app.state.store.audit().entries_after(0, 100_000).await.unwrap();
    entries.iter().filter(|e| e.body.contains("\"sectors_linked:")).count()
}

async fn an_activity_given_a_sector_keeps_its_earlier_records_readable(backend: Backend) {
    let (s, angela, before, v1) = subscribed_before_the_sector(backend).await;

    // The DPO gives the activity a sector; the policies are reloaded.
    into_the_school_sector(&s.app);
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

/// A value sealed under the v1 id before the activity got a sector is corrected: the corrected
/// value goes to the application sealed under the sector's owner (as new values are), opens for
/// the citizen, and the earlier value still opens until the application replaces it.
async fn a_value_sealed_before_the_sector_is_corrected_under_the_sectors_owner(backend: Backend) {
    let (s, angela, before, v1) = subscribed_before_the_sector(backend).await;
    into_the_school_sector(&s.app);

    let r = post_json(&s.app, &angela, API, &json!({ "right": "rectification", "activity": "lettre-ecole" })).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let path = format!("{API}/{id}/corrections");
    let body = json!({ "fields": { "email": "angela@corrigee.example" } });
    let mut sent = false;
    for _ in 0..200 {
        if post_json(&s.app, &angela, &path, &body).await.status() == 200 {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent, "the request never waited for its corrections");
    crate::propagation::wait_for(&s.app, &id, Status::Completed).await;
    let claims = s.rights_app.received().into_iter().find(|c| c["type"] == "rectification").unwrap();
    let corrected = claims["corrections"]["email"].as_str().unwrap().to_owned();

    let sector_owner = owner(&s.app, &subscribe(&s, &angela, "lettre-ecole", "angela@apres.example").await).await;
    assert_ne!(sector_owner, v1);
    assert_eq!(owner(&s.app, &corrected).await, sector_owner, "sealed under the sector's owner");
    let vault = s.app.state.crypto.as_ref().unwrap();
    let ctx = FieldContext { activity: "lettre-ecole", field: "email", subject: &sector_owner };
    assert_eq!(vault.open(&ctx, &corrected).await.unwrap().as_str(), "angela@corrigee.example");
    assert!(opens(&s.app, &before).await, "the value sealed under the v1 id still opens");
}

async fn the_dpo_proves_a_sector_consent_from_the_citizens_code(backend: Backend) {
    let agents = MockProvider::start().await;
    let s = setup_with_agents(backend, ["general", "scolaire", "scolaire"], Some(&agents)).await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    give_consent(&s.app, &angela, "lettre-ecole").await;
    let code = crate::rights_agent::code_of(&s.app, &angela).await;

    let dpo = dpo_signs_in(&s.app, &agents).await;
    let jeton = token(&page_of(&s.app, &dpo, "/.guichet/dpo/consentements").await);
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

/// The page at `path` as the holder of `session` sees it (200).
async fn page_of(app: &TestApp, session: &str, path: &str) -> String {
    let r = app.client.get(app.url(path)).header("cookie", format!("{SESSION}={session}")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

/// The DPO's session cookie, signed in at `agents`.
async fn dpo_signs_in(app: &TestApp, agents: &MockProvider) -> String {
    let info = crate::auth::agent_info("21750001600019", "delegue@dpo.example.fr");
    let r = crate::auth::agent_sign_in(app, agents, info, "").await;
    crate::auth::cookie(&r, SESSION).unwrap()
}

async fn the_dpo_joins_a_requests_sectors_from_the_queue_with_a_reason(backend: Backend) {
    let agents = MockProvider::start().await;
    let s = setup_with_agents(backend, ["general", "scolaire", "scolaire"], Some(&agents)).await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    give_consent(&s.app, &angela, "lettre-ecole").await;
    let school_owner = owner(&s.app, &subscribe(&s, &angela, "lettre-ecole", "angela@ecole.example").await).await;
    let r = post_json(&s.app, &angela, API, &json!({ "right": "access" })).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // The queue's card offers the join, reached by clicking from the list of requests.
    let dpo = dpo_signs_in(&s.app, &agents).await;
    let page = page_of(&s.app, &dpo, "/.guichet/dpo/demandes?statut=toutes").await;
    assert!(page.contains("Relier les secteurs de la personne") && page.contains("value=\"inspection\""), "{page}");
    let jeton = token(&page);
    let action = format!("/.guichet/dpo/demandes/{id}");
    let before = linked_steps(&s.app).await;

    // Without a reason, without the form's token, or as someone else: nothing is joined.
    let r = post(&s.app, &dpo, &action, &[("jeton", jeton.as_str()), ("action", "relier"), ("raison", "")]).await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("Choisissez la raison") && !html.contains(&school_owner), "{html}");
    let r = post(&s.app, &dpo, &action, &[("action", "relier"), ("raison", "inspection")]).await;
    assert_eq!(r.status(), 403);
    let r =
        post(&s.app, &angela, &action, &[("jeton", jeton.as_str()), ("action", "relier"), ("raison", "inspection")])
            .await;
    assert_ne!(r.status(), 200);
    assert!(!r.text().await.unwrap().contains(&school_owner));
    assert_eq!(linked_steps(&s.app).await, before, "no join, nothing journaled");

    // With a reason: each sector's pseudonyms, and the step journaled with the DPO and the reason.
    let r =
        post(&s.app, &dpo, &action, &[("jeton", jeton.as_str()), ("action", "relier"), ("raison", "inspection")]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"secteurs-relies\"") && html.contains(&school_owner), "{html}");
    assert!(html.contains("Scolaire") && html.contains("Contrôle (CNIL, audit)"), "{html}");
    assert_eq!(linked_steps(&s.app).await, before + 1);
    let entries = s.app.state.store.audit().entries_after(0, 100_000).await.unwrap();
    let step = entries.iter().rev().find(|e| e.body.contains("sectors_linked:inspection")).expect("the step");
    let body: Value = serde_json::from_str(&step.body).unwrap();
    assert_eq!(body["actor"]["kind"], "agent", "{body}");
    assert_eq!(body["role"], "dpo", "{body}");
    assert_eq!(body["request_id"], id.as_str(), "{body}");
}

/// The signed-in citizen's gateway-wide subject (what requests and notices name).
async fn consent_subject(app: &TestApp, session: &str) -> String {
    let mut h = axum::http::HeaderMap::new();
    h.insert("cookie", format!("{SESSION}={session}").parse().unwrap());
    let s = app.state.auth.identify(&h).await.unwrap().unwrap();
    app.state.auth.consent_subject(&s).to_owned()
}

/// Every retention record, as its text columns, once the background writer stored `n`.
async fn retention_rows(app: &TestApp, n: usize) -> Vec<Vec<(String, String)>> {
    for _ in 0..200 {
        let rows = crate::helpers::text_rows(&app.store_url, "SELECT * FROM retention_record").await;
        if rows.len() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never recorded {n} retention records");
}

async fn retention_records_name_only_their_sectors_pseudonym(backend: Backend) {
    let (s, angela, _) = subscribed_everywhere(backend).await;
    let rows = retention_rows(&s.app, 3).await;
    let value = |row: &[(String, String)], column: &str| row.iter().find(|(c, _)| c == column).map(|(_, v)| v.clone());
    // Every id a record of `activity` holds: each text column but the activity's own names.
    let ids_of = |activity: &str| -> BTreeSet<String> {
        let named = ["activity", "category", "route", "phase", "end_action", "notice_deletion_on"];
        rows.iter()
            .filter(|r| value(r, "activity").as_deref() == Some(activity))
            .flat_map(|r| r.iter().filter(|(c, _)| !named.contains(&c.as_str())).map(|(_, v)| v.clone()))
            .collect()
    };
    let (general, school, canteen) = (ids_of("lettre-information"), ids_of("lettre-ecole"), ids_of("lettre-cantine"));
    assert!(!general.is_empty() && !school.is_empty(), "{rows:?}");
    assert!(general.is_disjoint(&school), "a record of each sector, no id in common: {general:?} {school:?}");
    let subject =
        |a: &str| rows.iter().find(|r| value(r, "activity").as_deref() == Some(a)).and_then(|r| value(r, "subject"));
    assert_eq!(subject("lettre-ecole"), subject("lettre-cantine"), "one sector, one owner");
    assert_ne!(subject("lettre-ecole"), subject("lettre-information"));
    assert!(canteen.contains(&subject("lettre-ecole").unwrap()));
    // The gateway-wide id that joins sectors is in no column of any record.
    let everywhere = consent_subject(&s.app, &angela).await;
    assert!(rows.iter().flatten().all(|(c, v)| *v != everywhere && c != "consent_subject"), "{rows:?}");
}

async fn a_pending_restriction_in_a_sector_holds_that_activitys_records_only(backend: Backend) {
    let (s, angela, _) = subscribed_everywhere(backend).await;
    retention_rows(&s.app, 3).await;
    // Every citizen unsubscribed a month ago: each address is due for destruction.
    let now = s.app.state.clock.now();
    let month_ago = guichet::audit::event::to_micros(now - time::Duration::days(30));
    crate::helpers::raw_sql(&s.app.store_url, &format!("UPDATE retention_record SET event_at_us = {month_ago}")).await;
    // Angela records her pseudonyms (a counter code), then asks that the school's letter keep
    // her data while her request is decided (Art. 18(1)(d)).
    crate::rights_agent::code_of(&s.app, &angela).await;
    let subject = consent_subject(&s.app, &angela).await;
    file_online(&s.app, &subject, "lettre-ecole", Right::Restriction).await;

    let today = guichet::clock::paris_date(now);
    let options = guichet::retention::run::Options { today, dry_run: true };
    let plan = guichet::retention::run::run(&s.app.state, options, &|_| {}).await.unwrap();
    let line = |a: &str, action: &str| {
        plan.lines.get(&(a.to_owned(), "contact".to_owned(), "active".to_owned(), action.to_owned())).copied()
    };
    assert_eq!(line("lettre-ecole", "held"), Some(1), "found by the school's pseudonym: {plan:?}");
    assert_eq!(line("lettre-cantine", "destroy"), Some(1), "{plan:?}");
    assert_eq!(line("lettre-information", "destroy"), Some(1), "{plan:?}");
}

/// Pseudonyms recorded before sectors existed (the row the earlier version wrote: the v1
/// field subject only) are completed at the citizen's next sign-in, and only then (sector
/// records are made in a session): a request served with the recorded ids, as at the counter
/// or from the command line, then reaches the values sealed under the v1 id and under the
/// sector's, and retention finds the citizen from the sector's id.
async fn pseudonyms_recorded_before_sectors_are_completed_at_the_next_sign_in(backend: Backend) {
    let (s, angela, before, v1) = subscribed_before_the_sector(backend).await;
    crate::rights_agent::code_of(&s.app, &angela).await;
    let subject = consent_subject(&s.app, &angela).await;
    crate::helpers::raw_sql(&s.app.store_url, "UPDATE rights_subject SET sectors = '{}'").await;
    let others = format!("DELETE FROM rights_subject_field WHERE field_subject <> '{v1}'");
    crate::helpers::raw_sql(&s.app.store_url, &others).await;

    // The activity gets a sector; the session opened before seals new values under its id.
    into_the_school_sector(&s.app);
    let after = subscribe(&s, &angela, "lettre-ecole", "angela@apres.example").await;
    let school = owner(&s.app, &after).await;
    assert_ne!(school, v1);
    let rights = &s.app.state.rights;
    let recorded = rights.subjects_of(&subject).await.unwrap().unwrap();
    assert_eq!(recorded.fields_for(Sector::Scolaire), [v1.as_str()], "the old row knows no sector");
    assert_eq!(rights.subject_of_field(&school).await.unwrap(), None);

    // The next sign-in brings the row up to date.
    citizen(&s.app, &s.mock, "sub-angela").await;
    let recorded = rights.subjects_of(&subject).await.unwrap().unwrap();
    assert_eq!(recorded.fields_for(Sector::Scolaire), [school.as_str(), v1.as_str()]);
    assert_eq!(rights.subject_of_field(&school).await.unwrap().as_deref(), Some(subject.as_str()));

    // An erasure served with the recorded ids shreds both values.
    let request = file_online(&s.app, &subject, "lettre-ecole", Right::Erasure).await;
    guichet::rights::propagation::start(&s.app.state, &request, &recorded).await.unwrap();
    assert!(!opens(&s.app, &before).await, "the value sealed under the v1 id is shredded");
    assert!(!opens(&s.app, &after).await, "the value sealed under the sector's id is shredded");
}

on_both_stores!(
    pseudonyms_recorded_before_sectors_are_completed_at_the_next_sign_in,
    a_value_sealed_before_the_sector_is_corrected_under_the_sectors_owner,
    the_dpo_joins_a_requests_sectors_from_the_queue_with_a_reason,
    retention_records_name_only_their_sectors_pseudonym,
    a_pending_restriction_in_a_sector_holds_that_activitys_records_only,
    the_dpo_proves_a_sector_consent_from_the_citizens_code,
    two_sectors_share_no_id_and_one_sector_shares_its_ids,
    a_request_on_all_activities_reaches_every_sector_and_the_dpo_join_is_journaled,
    an_activity_given_a_sector_keeps_its_earlier_records_readable,
);
