//! The DPO's console and the supervision view: role gating of every page and export, the
//! figures against seeded data under the injected clock (overdue, due this week, medians,
//! 90th percentiles, suppression under 5), the "prove it" query with its journal proof, the
//! charts with their tables, the queue's actions through HTML forms, "verify now".

use guichet::audit::{Actor, ActorKind, Channel, Ident, IdentityCheck};
use guichet::clock::{Clock, paris_date};
use guichet::config::RoleRule;
use guichet::consent::Recorder;
use guichet::dpo::stats;
use guichet::rights::request::{DocumentKind, IdentityProof, Right, Status};
use guichet::rights::service::{By, NewRequest, RightsRequest};
use guichet::store::RetentionRow;
use serde_json::Value;
use time::macros::datetime;

use crate::auth::{SESSION, agent_info, agent_sign_in, cookie, sign_in_at, signed_in_request};
use crate::helpers::{Backend, TestApp, spawn_app};
use crate::oidc_mock::MockProvider;
use crate::on_both_stores;

const PAGES: [&str; 10] = [
    "/.guichet/dpo/",
    "/.guichet/dpo/demandes",
    "/.guichet/dpo/demandes?statut=toutes&format=csv",
    "/.guichet/dpo/consentements",
    "/.guichet/dpo/consentements?format=ods",
    "/.guichet/dpo/journal",
    "/.guichet/dpo/journal?format=csv",
    "/.guichet/dpo/conservation",
    "/.guichet/dpo/conservation?format=csv",
    "/.guichet/dpo/conservation?format=ods",
];

struct Console {
    app: TestApp,
    dpo: String,
    clerk: String,
    citizen: String,
    elected: String,
    /// The seeded overdue request and the one due this week.
    seeded: Option<(RightsRequest, RightsRequest)>,
    _agents: MockProvider,
    _citizens: MockProvider,
}

/// A gateway with the cantine and newsletter activities; agents at `dpo.example.fr` are DPOs,
/// at `elus.example.fr` hold `supervision`, at `mairie.example.fr` are ordinary clerks.
async fn console(
    backend: Backend,
    seeded: bool,
    tweak: impl FnOnce(&mut guichet::config::Settings) + 'static,
) -> Console {
    let agents = MockProvider::start().await;
    let citizens = MockProvider::start().await;
    let app = spawn_app()
        .backend(backend)
        .with_policies(&[
            ("cantine.toml", include_str!("../../policies/cantine.toml")),
            ("lettre-information.toml", include_str!("../../policies/lettre-information.toml")),
        ])
        .with_citizen_provider(citizens.issuer())
        .with_agent_provider(agents.issuer())
        .with(|s, _| {
            for (role, domain) in [("dpo", "dpo.example.fr"), ("supervision", "elus.example.fr")] {
                s.auth.agent_roles.push(RoleRule {
                    role: role.into(),
                    siret: vec![],
                    email_domains: vec![domain.into()],
                    uids: vec![],
                });
            }
            // Back-dated entries are each covered by a signed checkpoint at once ("verify now").
            s.audit.checkpoint_every_entries = 1;
            tweak(s);
        })
        .start()
        .await;
    // Seeded before anyone signs in, the clock back where it started.
    let seeded = if seeded { Some(seed(&app).await) } else { None };
    let sign = |email: &'static str| {
        let (app, agents) = (&app, &agents);
        async move {
            let r = agent_sign_in(app, agents, agent_info("21750001600019", email), "").await;
            cookie(&r, SESSION).unwrap()
        }
    };
    let dpo = sign("delegue@dpo.example.fr").await;
    let clerk = sign("lucie@mairie.example.fr").await;
    let elected = sign("maire@elus.example.fr").await;
    let r = sign_in_at(&app, &citizens, "/.guichet/connexion?retour=/prive/dossier", "sub-angela").await;
    let citizen = cookie(&r, SESSION).unwrap();
    Console { app, dpo, clerk, citizen, elected, seeded, _agents: agents, _citizens: citizens }
}

fn dpo_by() -> By {
    By { actor: Actor { kind: ActorKind::Agent, id: Ident::new("dpo_1").unwrap() }, role: Ident::new("dpo").unwrap() }
}

fn request(subject: &str, right: Right, channel: Channel) -> NewRequest {
    let assisted = channel != Channel::Online;
    NewRequest {
        subject: subject.into(),
        activity: Some("cantine".into()),
        right,
        channel,
        agent: assisted.then(|| "agent_42".to_owned()),
        identity: if assisted {
            IdentityProof::Document { kind: DocumentKind::IdentityCard }
        } else {
            IdentityProof::SignIn { acr: "eidas1".into() }
        },
    }
}

fn set_clock(app: &TestApp, at: time::OffsetDateTime) {
    app.clock.advance(at - app.clock.now());
}

async fn file(app: &TestApp, subject: &str, right: Right, channel: Channel) -> RightsRequest {
    let policies = app.state.policies.load();
    app.state.rights.create(&policies, request(subject, right, channel), &dpo_by()).await.unwrap()
}

/// Seeds, back from the start: one access request left open since 1 September (overdue on
/// 28 November), five access requests of 1 October answered after 2, 4, 6, 8 and 30 days, two
/// counter requests in October (overdue too), one objection of 1 November (due 1 December: this
/// week), consents to the newsletter in October (six given, one withdrawn). Leaves the clock
/// on 28 November, where it started.
async fn seed(app: &TestApp) -> (RightsRequest, RightsRequest) {
    set_clock(app, datetime!(2026-09-01 10:00 UTC));
    let overdue = file(app, "sub_old", Right::Access, Channel::Online).await;
    set_clock(app, datetime!(2026-10-01 10:00 UTC));
    let mut answered = Vec::new();
    for i in 0..5 {
        let r = file(app, &format!("sub_{i}"), Right::Access, Channel::Online).await;
        app.state.rights.advance(&r.id, Status::InProgress, None, &dpo_by()).await.unwrap();
        answered.push(r);
    }
    for i in 0..2 {
        file(app, &format!("sub_c{i}"), Right::Rectification, Channel::Counter).await;
    }
    for (r, day) in answered.iter().zip([2, 4, 6, 8, 30]) {
        set_clock(app, datetime!(2026-10-01 10:00 UTC) + time::Duration::days(day));
        app.state.rights.advance(&r.id, Status::Completed, Some("Fait".into()), &dpo_by()).await.unwrap();
    }
    let set = app.state.policies.load();
    let purpose = guichet::consent::find_purpose(&set.activities, "lettre-information", "envoi").unwrap();
    let recorder = |subject: &str| Recorder {
        actor: Actor { kind: ActorKind::Citizen, id: Ident::new(subject).unwrap() },
        role: Ident::new("citizen").unwrap(),
        channel: Channel::Online,
        identified_by: IdentityCheck::SignIn,
        request_id: None,
    };
    for i in 0..6 {
        set_clock(app, datetime!(2026-10-10 09:00 UTC) + time::Duration::hours(i));
        let subject = format!("sub_news{i}");
        app.state.consent.record(&app.state.audit, &subject, &purpose, true, recorder(&subject)).await.unwrap();
    }
    set_clock(app, datetime!(2026-10-20 09:00 UTC));
    app.state.consent.record(&app.state.audit, "sub_news0", &purpose, false, recorder("sub_news0")).await.unwrap();
    set_clock(app, datetime!(2026-11-01 10:00 UTC));
    let soon = file(app, "sub_soon", Right::Objection, Channel::Online).await;
    set_clock(app, datetime!(2026-11-28 12:00 UTC));
    app.state.audit.flush().await.unwrap();
    (overdue, soon)
}

async fn get_as(c: &Console, session: &str, path: &str) -> reqwest::Response {
    signed_in_request(&c.app, session, path).await
}

async fn post_form(c: &Console, session: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    c.app
        .client
        .post(c.app.url(path))
        .header("accept", "text/html")
        .header("cookie", format!("{SESSION}={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish())
        .send()
        .await
        .unwrap()
}

/// The CSRF token of a console page's forms.
async fn token(c: &Console, path: &str) -> String {
    let html = get_as(c, &c.dpo, path).await.text().await.unwrap();
    let at = html.find("name=\"jeton\" value=\"").expect("a form with its token") + 20;
    html[at..].split('"').next().unwrap().to_owned()
}

async fn journaled_dpo_actions(app: &TestApp) -> Vec<Value> {
    app.state.audit.flush().await.unwrap();
    let entries = app.state.store.audit().entries_after(0, 100_000).await.unwrap();
    entries
        .iter()
        .filter(|e| e.operation == "dpo_action")
        .map(|e| serde_json::from_str::<Value>(&e.body).unwrap())
        .collect()
}

async fn every_page_and_export_is_for_the_dpo_only(backend: Backend) {
    let c = console(backend, false, |_| {}).await;
    for page in PAGES {
        // No session: a browser goes to the agents' sign-in and comes back; an API gets 401.
        let r = c.app.client.get(c.app.url(page)).header("accept", "text/html").send().await.unwrap();
        assert_eq!(r.status(), 303, "{page}");
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/.guichet/agent/connexion?retour="), "{page}");
        for (who, session) in [("citizen", &c.citizen), ("clerk", &c.clerk), ("elected official", &c.elected)] {
            let r = get_as(&c, session, page).await;
            assert_eq!(r.status(), 403, "{who} on {page}");
            let body = r.text().await.unwrap();
            assert!(!body.contains("<svg") && !body.contains("DR-"), "{who} sees nothing of {page}");
        }
        assert_eq!(get_as(&c, &c.dpo, page).await.status(), 200, "the DPO on {page}");
    }
    // The forms refuse the others too, before doing anything.
    for path in ["/.guichet/dpo/journal/verifier", "/.guichet/dpo/consentements/preuve", "/.guichet/dpo/demandes/DR-X"]
    {
        assert_eq!(post_form(&c, &c.clerk, path, &[("jeton", "x")]).await.status(), 403, "{path}");
    }
    assert!(journaled_dpo_actions(&c.app).await.is_empty(), "a refused form acted on nothing");
    // Supervision: the elected official and the DPO, not a clerk or a citizen.
    for page in ["/.guichet/pilotage/", "/.guichet/pilotage/rapport?mois=2026-10"] {
        assert_eq!(get_as(&c, &c.elected, page).await.status(), 200, "{page}");
        assert_eq!(get_as(&c, &c.dpo, page).await.status(), 200, "{page}");
        assert_eq!(get_as(&c, &c.clerk, page).await.status(), 403, "{page}");
        assert_eq!(get_as(&c, &c.citizen, page).await.status(), 403, "{page}");
    }
    // Every read and every refusal is in the journal (R45), with no personal data.
    let j = crate::incidents::journal(&c.app).await;
    let overview = crate::incidents::entries(&j, "read", "page", "dpo");
    assert!(overview.iter().any(|e| e["outcome"] == "success"), "the DPO's reads are journaled: {j:?}");
    assert!(overview.iter().filter(|e| e["outcome"] == "denied").count() >= 3, "refusals are journaled: {j:?}");
    // Each page and export refused to the citizen and the clerk left a denied entry naming
    // the record (here the list) asked for.
    for page in ["dpo", "dpo.demandes", "dpo.consentements", "dpo.journal", "dpo.conservation"] {
        let denied: Vec<&Value> = crate::incidents::entries(&j, "read", "page", page)
            .into_iter()
            .filter(|e| e["outcome"] == "denied")
            .collect();
        let want = format!("list:{page}");
        let per_page = PAGES.iter().filter(|p| page_of(p) == page).count();
        assert!(denied.len() >= 3 * per_page, "{page}: {denied:?}");
        assert!(denied.iter().all(|e| e["record_ref"] == want.as_str()), "{page}: {denied:?}");
        for kind in ["citizen", "agent"] {
            assert!(denied.iter().any(|e| e["actor"]["kind"] == kind), "{kind} on {page}: {denied:?}");
        }
    }
    let supervision = crate::incidents::entries(&j, "read", "page", "pilotage");
    assert!(supervision.iter().any(|e| e["outcome"] == "success"), "supervision reads are journaled");
    let api = "/.guichet/api/v1/stats/services";
    let r = c.app.client.get(c.app.url(api)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = c.app.client.get(c.app.url(api)).header("cookie", format!("{SESSION}={}", c.clerk)).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

/// The journal's page name of a console address (`/.guichet/dpo/journal?…` → `dpo.journal`).
fn page_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    path.trim_start_matches("/.guichet/").trim_matches('/').replace('/', ".")
}

async fn the_dpo_pages_ask_for_a_strong_enough_sign_in(backend: Backend) {
    // The agents' provider declares eidas1 and eidas2: the console asks for the strongest.
    let c =
        console(backend, false, |s| s.auth.agent.as_mut().unwrap().acr_values = vec!["eidas1".into(), "eidas2".into()])
            .await;
    let r = get_as(&c, &c.dpo, "/.guichet/dpo/").await;
    assert_eq!(r.status(), 303, "a DPO signed in at eidas1 signs in again");
    assert_eq!(r.headers()["location"], "/.guichet/agent/connexion?retour=%2F.guichet%2Fdpo%2F&niveau=eidas2");
    // Supervision keeps the ordinary level.
    assert_eq!(get_as(&c, &c.elected, "/.guichet/pilotage/").await.status(), 200);
    // `[dpo] min_acr` says otherwise.
    let c = console(backend, false, |s| {
        s.auth.agent.as_mut().unwrap().acr_values = vec!["eidas1".into(), "eidas2".into()];
        s.dpo.min_acr = Some("eidas1".into());
    })
    .await;
    assert_eq!(get_as(&c, &c.dpo, "/.guichet/dpo/").await.status(), 200);
}

async fn the_figures_match_the_seeded_activity(backend: Backend) {
    let c = console(backend, true, |_| {}).await;
    let (overdue, soon) = c.seeded.clone().unwrap();
    let today = paris_date(c.app.clock.now());
    let open = c.app.state.rights.open().await.unwrap();
    let counts = stats::queue_counts(&open, today);
    let access = &counts.iter().find(|(r, _)| *r == Right::Access).unwrap().1;
    assert_eq!((access.received, access.overdue, access.due_this_week), (1, 1, 0));
    let objection = &counts.iter().find(|(r, _)| *r == Right::Objection).unwrap().1;
    assert_eq!((objection.received, objection.overdue, objection.due_this_week), (1, 0, 1));
    assert!(open.iter().any(|r| r.id == overdue.id && r.is_overdue(today)));
    assert!(stats::due_this_week(&soon, today));
    let history = c.app.state.rights.received_since(datetime!(2026-06-01 00:00 UTC)).await.unwrap();
    let times = stats::answer_times(&history);
    let access = &times.iter().find(|(r, _)| *r == Right::Access).unwrap().1;
    assert_eq!(access.answered, 5);
    assert_eq!(access.median_days, Some(6.0), "2, 4, 6, 8, 30 days");
    assert_eq!(access.p90_days, Some(30.0), "nearest rank: the 5th of 5");

    // The overview shows them, highlighted, each linking to its list.
    let html = get_as(&c, &c.dpo, "/.guichet/dpo/").await.text().await.unwrap();
    assert!(html.contains("<strong>3 demande(s) en retard.</strong>"), "one access, two rectifications: {html}");
    assert!(html.contains("<strong>1 demande(s) à rendre cette semaine.</strong>"));
    assert!(html.contains("<th scope=\"row\">Accès (art. 15)</th><td>5</td><td>6,0</td><td>30,0</td>"), "{html}");
    assert!(html.contains("href=\"/.guichet/dpo/demandes?retard=1\""));
    assert!(html.contains("href=\"/.guichet/dpo/incidents\""), "the breach register's slot");
    // Three charts, each an SVG image beside its data table.
    assert_eq!(html.matches("<svg role=\"img\"").count(), 3, "{html}");
    for title in
        ["Demandes de droits reçues par mois", "Accords donnés et retirés par mois", "Données révélées aux agents"]
    {
        assert!(html.contains(&format!("<caption>Données : {title}")), "{title}");
    }
    assert!(
        html.contains(
            "<th scope=\"row\">lettre-information / envoi</th><td>oct. 2026</td><td>6</td><td>1</td><td>86 %</td>"
        ),
        "{html}"
    );

    // The overdue filter lists the one overdue request, and the CSV export says so.
    let html = get_as(&c, &c.dpo, "/.guichet/dpo/demandes?retard=1").await.text().await.unwrap();
    assert!(html.contains(&overdue.id) && !html.contains(&soon.id), "{html}");
    let r = get_as(&c, &c.dpo, "/.guichet/dpo/demandes?statut=ouvertes&retard=1&format=csv").await;
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 4, "a header and the three overdue requests: {csv}");
    assert!(
        csv.contains(&format!("{};Accès (art. 15);cantine;En ligne;Reçue;1er septembre 2026;", overdue.id)),
        "{csv}"
    );
    assert!(csv.trim_end().ends_with(";oui"));
    let ods = get_as(&c, &c.dpo, "/.guichet/dpo/demandes?statut=toutes&format=ods").await.bytes().await.unwrap();
    assert!(ods.starts_with(b"PK"), "an ODS file");

    // Supervision: per service and month, counts under 5 suppressed.
    let r = c
        .app
        .client
        .get(c.app.url("/.guichet/api/v1/stats/services"))
        .header("cookie", format!("{SESSION}={}", c.elected))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let json: Value = r.json().await.unwrap();
    assert_eq!(json["threshold"], 5);
    let cell = |activity: &str, month: &str| {
        json["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["activity"] == activity && s["month"] == month)
            .cloned()
            .unwrap()
    };
    let october = cell("cantine", "2026-10");
    assert_eq!(october["requests_online"], 5, "five online requests are shown");
    assert_eq!(october["requests_counter"], "< 5", "two counter requests are not");
    assert_eq!(october["median_answer_days"], 6.0);
    let september = cell("cantine", "2026-09");
    assert_eq!(september["requests_online"], "< 5");
    assert_eq!(september["overdue"], "< 5");
    assert_eq!(september["median_answer_days"], Value::Null);
    let news = cell("lettre-information", "2026-10");
    assert_eq!(news["consents_given"], 6);
    assert_eq!(news["consents_withdrawn"], "< 5");
    assert_eq!(news["consent_rate"], 85.7);
    let text = json.to_string();
    for subject in ["sub_old", "sub_news0", "sub_soon", &overdue.id] {
        assert!(!text.contains(subject), "no one singled out: {subject}");
    }
    // The page and the printable report show the same, without anyone's pseudonym.
    let html = get_as(&c, &c.elected, "/.guichet/pilotage/").await.text().await.unwrap();
    assert!(html.contains("<th scope=\"row\">oct. 2026</th><td>5</td><td>&#60; 5</td>"), "{html}");
    assert_eq!(html.matches("<svg role=\"img\"").count(), 2);
    assert!(!html.contains("sub_"));
    let html = get_as(&c, &c.elected, "/.guichet/pilotage/rapport?mois=2026-10").await.text().await.unwrap();
    assert!(html.contains("Rapport mensuel des services — oct. 2026"));
    assert!(html.contains("<td>6,0</td><td>&#60; 5</td>"), "{html}");
}

async fn the_dpo_proves_a_consent_with_its_journal_proof(backend: Backend) {
    let c = console(backend, true, |_| {}).await;
    let jeton = token(&c, "/.guichet/dpo/consentements").await;
    let ask = |date: &'static str, jeton: String| {
        let c = &c;
        async move {
            let form = [
                ("jeton", jeton.as_str()),
                ("pseudonyme", "sub_news0"),
                ("code", ""),
                ("finalite", "lettre-information/envoi"),
                ("date", date),
            ];
            let r = post_form(c, &c.dpo, "/.guichet/dpo/consentements/preuve", &form).await;
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let html = ask("2026-10-15", jeton.clone()).await;
    assert!(html.contains("Oui : à la fin du 15 octobre 2026, la personne sub_news0 avait donné son accord"), "{html}");
    let row = c.app.state.consent.history("sub_news0").await.unwrap()[0].clone();
    assert!(html.contains(&format!("<th scope=\"row\">{}</th>", row.seq)), "the event's place in the chain");
    assert!(html.contains(&row.hash), "its chain hash");
    assert!(html.contains("conforme au journal, signé"), "checked against the journal and its signature");
    assert!(html.contains("J&#39;accepte que la mairie de Démoville m&#39;envoie sa lettre"), "the notice text shown");
    let html = ask("2026-10-25", jeton.clone()).await;
    assert!(html.contains("Non : à la fin du 25 octobre 2026"), "withdrawn on 20 October: {html}");
    assert!(html.contains("retiré"));
    let html = ask("2026-10-05", jeton.clone()).await;
    assert!(html.contains("Non : à la fin du 5 octobre 2026") && html.contains("Aucun événement"), "{html}");
    // Every lookup is journaled with the pseudonym looked up.
    let actions = journaled_dpo_actions(&c.app).await;
    let proofs: Vec<&Value> = actions.iter().filter(|a| a["operation"]["action"] == "consent_proof").collect();
    assert_eq!(proofs.len(), 3);
    assert_eq!(proofs[0]["subject"], "sub_news0");
    assert_eq!(proofs[0]["actor"]["kind"], "agent");
    // Without the form's token nothing is looked up.
    let form = [
        ("jeton", "faux"),
        ("pseudonyme", "sub_news0"),
        ("finalite", "lettre-information/envoi"),
        ("date", "2026-10-15"),
    ];
    assert_eq!(post_form(&c, &c.dpo, "/.guichet/dpo/consentements/preuve", &form).await.status(), 403);
    assert_eq!(journaled_dpo_actions(&c.app).await.len(), 3);
}

async fn the_dpo_acts_on_the_queue_through_forms(backend: Backend) {
    let c = console(backend, true, |_| {}).await;
    let (overdue, soon) = c.seeded.clone().unwrap();
    let jeton = token(&c, "/.guichet/dpo/demandes").await;
    let path = format!("/.guichet/dpo/demandes/{}", soon.id);
    // Take it, then extend it with a reason.
    let r = post_form(&c, &c.dpo, &path, &[("jeton", &jeton), ("action", "prendre")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(c.app.state.rights.get(&soon.id).await.unwrap().status, Status::InProgress);
    let r =
        post_form(&c, &c.dpo, &path, &[("jeton", &jeton), ("action", "prolonger"), ("mois", "2"), ("motif", "")]).await;
    assert_eq!(r.status(), 422, "an extension needs its reason");
    let form = [("jeton", jeton.as_str()), ("action", "prolonger"), ("mois", "2"), ("motif", "Demande complexe")];
    assert_eq!(post_form(&c, &c.dpo, &path, &form).await.status(), 200);
    let extended = c.app.state.rights.get(&soon.id).await.unwrap();
    assert_eq!(extended.deadline.extensions().len(), 1);
    assert_eq!(extended.deadline.extensions()[0].reason, "Demande complexe");
    // Complete it with the answer given.
    let form = [("jeton", jeton.as_str()), ("action", "terminer"), ("motif", "Données effacées")];
    assert_eq!(post_form(&c, &c.dpo, &path, &form).await.status(), 200);
    assert_eq!(c.app.state.rights.get(&soon.id).await.unwrap().status, Status::Completed);
    // Refuse the other with a reason; without the token, nothing moves.
    let path = format!("/.guichet/dpo/demandes/{}", overdue.id);
    let form = [("jeton", "faux"), ("action", "refuser"), ("motif", "Identité non établie")];
    assert_eq!(post_form(&c, &c.dpo, &path, &form).await.status(), 403);
    assert_eq!(c.app.state.rights.get(&overdue.id).await.unwrap().status, Status::Received);
    let form = [("jeton", jeton.as_str()), ("action", "refuser"), ("motif", "Identité non établie")];
    assert_eq!(post_form(&c, &c.dpo, &path, &form).await.status(), 200);
    assert_eq!(c.app.state.rights.get(&overdue.id).await.unwrap().status, Status::Refused);
    // Each step is journaled with the DPO as its author.
    let stages = crate::rights::journaled_stages(&c.app, &soon.id).await;
    assert_eq!(stages, ["received", "in_progress", "extended", "completed"]);
}

async fn verify_now_walks_the_journal_and_says_so(backend: Backend) {
    let c = console(backend, true, |_| {}).await;
    let jeton = token(&c, "/.guichet/dpo/journal").await;
    let r = post_form(&c, &c.dpo, "/.guichet/dpo/journal/verifier", &[("jeton", &jeton)]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Le journal est intact.") && html.contains("audit journal intact"), "{html}");
    let actions = journaled_dpo_actions(&c.app).await;
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0]["operation"]["action"], "journal_verify");
    assert_eq!(actions[0]["outcome"], "success");
    let html = get_as(&c, &c.dpo, "/.guichet/dpo/").await.text().await.unwrap();
    assert!(html.contains(": journal intact."), "the overview shows the last verification: {html}");
    // The browser filters by operation and shows pseudonyms only.
    let html = get_as(&c, &c.dpo, "/.guichet/dpo/journal?du=2026-10-01&au=2026-10-31&operation=consent_withdrawn")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("<caption>1 entrée(s)"), "{html}");
    assert!(html.contains("sub_news0"));
    let csv = get_as(&c, &c.dpo, "/.guichet/dpo/journal?du=2026-10-01&au=2026-10-31&resultat=success&format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("N°;Date;Opération;Auteur;Rôle;Activité;Pseudonyme;Résultat"));
    assert!(csv.contains("consent_given") && csv.contains("rights_request (access, completed)"), "{csv}");
}

fn retention_row(subject: &str, category: &str, closed: time::OffsetDateTime) -> RetentionRow {
    let closed = guichet::audit::event::to_micros(closed);
    RetentionRow {
        subject: subject.into(),
        activity: "cantine".into(),
        category: category.into(),
        route: None,
        app_subject: None,
        collected_at_us: closed,
        last_activity_at_us: Some(closed),
        event_at_us: Some(closed),
        withdrawn_at_us: None,
        phase: "active".into(),
        phase_since_us: closed,
        end_action: None,
        notice_deletion_on: None,
    }
}

/// The conservation register: per category of the cantine (1 year after the case is closed),
/// the records destroyed, anonymised, kept and overdue, the last run that acted on each, and
/// each run's evidence with its overdue count; the overview's retention slot.
async fn the_conservation_register_counts_each_category_and_run(backend: Backend) {
    // No scheduled run: the one queued at start-up would act on the overdue records seeded
    // below when a loaded machine delays it past the seeding.
    let c = console(backend, false, |s| s.retention.run_every = std::time::Duration::ZERO).await;
    let now = c.app.clock.now();
    let store = c.app.state.store.retention();
    let long_ago = now - time::Duration::days(800);
    // contact-parent: two destroyed, one anonymised, one overdue, one recent (kept).
    for (subject, end) in [("s1", Some("destroy")), ("s2", Some("destroy")), ("s3", Some("anonymise"))] {
        let mut row = retention_row(subject, "contact-parent", long_ago);
        row.phase = "ended".into();
        row.end_action = end.map(str::to_owned);
        store.seen(&row).await.unwrap();
    }
    store.seen(&retention_row("s4", "contact-parent", long_ago)).await.unwrap();
    store.seen(&retention_row("s5", "contact-parent", now - time::Duration::days(30))).await.unwrap();
    // sante-enfant: one overdue.
    store.seen(&retention_row("s6", "sante-enfant", long_ago)).await.unwrap();
    // A run's evidence, as `retention::run` journals it, with its overdue records.
    let line = |category: &str, action: &str, count| guichet::audit::event::RetentionCount {
        activity: Ident::new("cantine").unwrap(),
        category: Ident::new(category).unwrap(),
        action: Ident::new(action).unwrap(),
        count,
    };
    let run_at = now - time::Duration::days(3);
    let op = guichet::audit::Operation::RetentionRun {
        run: Ident::new("RUN-1").unwrap(),
        lines: vec![line("contact-parent", "destroy", 2), line("contact-parent", "anonymise", 1)],
        records_sha256: Ident::new("abc").unwrap(),
        skipped_holds: 0,
        overdue: 2,
        elimination_lists: vec![],
    };
    c.app.state.audit.append_sync(guichet::audit::AuditEvent::system(op, run_at)).await.unwrap();

    let csv = get_as(&c, &c.dpo, "/.guichet/dpo/conservation?format=csv").await.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("Activité;Catégorie;Durée déclarée;Dernière action;Détruits;Anonymisés;Conservés;En retard")
    );
    let of = |category: &str| {
        csv.lines().find(|l| l.starts_with(&format!("cantine;{category};"))).unwrap_or_default().to_owned()
    };
    let day = guichet::pages::french_date(paris_date(run_at));
    let contact = of("contact-parent");
    assert!(contact.contains("1 an"), "the declared duration: {contact}");
    assert!(contact.ends_with(&format!(";{day};2;1;2;1")), "{contact}");
    assert!(of("sante-enfant").ends_with(";;0;0;1;1"), "{csv}");
    assert!(of("identite-enfant").ends_with(";;0;0;0;0"), "declared, no record yet: {csv}");
    let ods = get_as(&c, &c.dpo, "/.guichet/dpo/conservation?format=ods").await.bytes().await.unwrap();
    assert!(crate::incidents::ods_content(&ods).contains("contact-parent"));

    let page = get_as(&c, &c.dpo, "/.guichet/dpo/conservation").await.text().await.unwrap();
    assert!(page.contains("2 dossier(s) ont dépassé leur durée sans être traités"), "{page}");
    assert!(page.contains("RUN-1") && page.contains("détruits : 2") && page.contains("anonymisés : 1"), "{page}");
    let overview = get_as(&c, &c.dpo, "/.guichet/dpo/").await.text().await.unwrap();
    assert!(overview.contains("Dossiers en retard de purge : 2."), "{overview}");
    assert!(
        overview.contains("Listes d&#39;élimination en attente de visa : 0.")
            || overview.contains("Listes d'élimination en attente de visa : 0."),
        "{overview}"
    );
    assert!(overview.contains("Dernière purge selon les durées de conservation"), "{overview}");

    // The run's journal entry carries `overdue`, and leaves it out when there are none.
    let j = crate::incidents::journal(&c.app).await;
    let runs = crate::incidents::entries(&j, "retention_run", "run", "RUN-1");
    assert_eq!(runs[0]["operation"]["overdue"], 2, "{runs:?}");
    let none = guichet::audit::Operation::RetentionRun {
        run: Ident::new("RUN-2").unwrap(),
        lines: vec![],
        records_sha256: Ident::new("abc").unwrap(),
        skipped_holds: 0,
        overdue: 0,
        elimination_lists: vec![],
    };
    let text = serde_json::to_string(&none).unwrap();
    assert!(!text.contains("overdue") && !text.contains("elimination_lists"), "{text}");
}

/// A rights request past its deadline: the DPO gets the alert e-mail through the notification
/// channel, from the real SMTP server on loopback; a count and a link, no request reference.
async fn an_overdue_request_alerts_the_dpo_by_email(backend: Backend) {
    let relay = crate::helpers::free_port();
    let smtp = crate::notify::SmtpServer::start(relay, None).await;
    let app = spawn_app()
        .backend(backend)
        .with_policies(&[("cantine.toml", include_str!("../../policies/cantine.toml"))])
        .with(crate::notify::dpo_alerts_to(relay))
        .start()
        .await;
    set_clock(&app, datetime!(2026-09-01 10:00 UTC));
    let late = file(&app, "sub_late", Right::Access, Channel::Online).await;
    set_clock(&app, datetime!(2026-11-28 12:00 UTC));
    app.state.audit.flush().await.unwrap();
    let f = guichet::alerts::run_check(&app.state).await;
    assert_eq!(f.rights_overdue, 1);
    for _ in 0..50 {
        app.state.jobs.run_due(10).await.unwrap();
    }
    let got = smtp.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["rcpt_tos"], serde_json::json!(["dpo@mairie.example.fr"]));
    let text = got[0].to_string();
    assert!(text.contains("Une demande de droits a d") && text.contains("/.guichet/dpo/"), "{text}");
    assert!(!text.contains(&late.id) && !text.contains("sub_late"), "no reference in the e-mail: {text}");
}

crate::notify::with_smtp_on_both_stores!(an_overdue_request_alerts_the_dpo_by_email);

/// The demo's seeded activity gives the conservation page one run a month, acting on the
/// declared categories, on first start.
async fn the_demo_seeds_monthly_retention_runs(backend: Backend) {
    let app = spawn_app()
        .backend(backend)
        .with_policies(&[("cantine.toml", include_str!("../../policies/cantine.toml"))])
        .start()
        .await;
    assert!(guichet::demo::activity::seed_if_empty(&app.state).await.unwrap());
    let reg = guichet::dpo::conservation::register(&app.state).await.unwrap();
    // Beside the test gateway's own first run (nothing to do), one a month for five months.
    let seeded = reg.runs.iter().filter(|r| r.actions != "Aucune action").count();
    assert_eq!(seeded, 5, "{:?}", reg.runs);
    assert!(reg.lines.iter().any(|l| l.last_run.is_some() && l.counts.destroyed > 0), "{:?}", reg.lines);
}

/// The demo's seeded store has records whose clocks run: nothing is due today (the demo's own
/// runs leave them), and the plan on the day the banner proposes shows the end actions.
async fn the_demo_store_gives_a_plan_on_a_simulated_day(backend: Backend) {
    use guichet::retention::run::{Options, run, today};
    let app = spawn_app()
        .backend(backend)
        .with_policies(&[("cantine.toml", include_str!("../../policies/cantine.toml"))])
        .start()
        .await;
    assert!(guichet::demo::activity::seed_if_empty(&app.state).await.unwrap());
    let plan = |day| run(&app.state, Options { today: day, dry_run: true }, &|_| {});
    let now = plan(today(&app.state)).await.unwrap();
    let due_now: u64 = now
        .lines
        .iter()
        .filter(|((a, ..), _)| a == "cantine")
        .filter(|((.., action), _)| action != "none")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(due_now, 0, "nothing due today: {:?}", now.lines);
    let later = plan(guichet::demo::activity::plan_day(today(&app.state))).await.unwrap();
    let count = |category: &str, action: &str| {
        later
            .lines
            .iter()
            .filter(|((a, c, _, x), _)| a == "cantine" && c == category && x == action)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    assert_eq!(count("contact-parent", "destroy"), 4, "{:?}", later.lines);
    assert_eq!(count("identite-enfant", "archive_review"), 4, "{:?}", later.lines);
    // A plan changes nothing.
    let again = plan(guichet::demo::activity::plan_day(today(&app.state))).await.unwrap();
    assert_eq!(again.lines, later.lines);
}

on_both_stores!(
    the_demo_store_gives_a_plan_on_a_simulated_day,
    the_demo_seeds_monthly_retention_runs,
    the_conservation_register_counts_each_category_and_run,
    every_page_and_export_is_for_the_dpo_only,
    the_dpo_pages_ask_for_a_strong_enough_sign_in,
    the_figures_match_the_seeded_activity,
    the_dpo_proves_a_consent_with_its_journal_proof,
    the_dpo_acts_on_the_queue_through_forms,
    verify_now_walks_the_journal_and_says_so,
);
