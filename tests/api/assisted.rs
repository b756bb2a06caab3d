//! The agent's assisted mode pages (`/.guichet/guichet-agent/`) and "Télécharger mes données"
//! at the end of the citizen's procedure, through real sign-ins: an agent files a right with
//! a citizen in three screens (the code they read out, or a document's kind for a citizen
//! without an account), the request exists with its channel and is on the citizen's hub; an
//! access request's export is offered as soon as the application answered, and only then.

use guichet::rights::request::{Channel, DocumentKind, IdentityProof, Right, Status};

use crate::auth::SESSION;
use crate::consent::{citizen, post, token};
use crate::helpers::{Backend, TestApp};
use crate::on_both_stores;
use crate::propagation::{Mode, setup, wait_for};
use crate::rights_agent::{code_of, parties};

const FORM: &str = "/.guichet/guichet-agent/";
const CONFIRM: &str = "/.guichet/guichet-agent/confirmer";

pub(crate) async fn get(app: &TestApp, session: Option<&str>, path: &str) -> reqwest::Response {
    let mut r = app.client.get(app.url(path)).header("accept", "text/html");
    if let Some(s) = session {
        r = r.header("cookie", format!("{SESSION}={s}"));
    }
    r.send().await.unwrap()
}

pub(crate) async fn text(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status, "{:?}", r.headers().get("location"));
    r.text().await.unwrap()
}

/// Screen 1's form for `right` on the newsletter, with this code and document.
fn fields<'a>(
    t: &'a str,
    right: &'a str,
    channel: &'a str,
    document: &'a str,
    code: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("jeton", t),
        ("droit", right),
        ("activite", "lettre-information"),
        ("canal", channel),
        ("piece", document),
        ("code", code),
    ]
}

async fn assisted_mode_files_a_counter_request_in_three_screens(backend: Backend) {
    let p = parties(backend).await;
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let code = code_of(&p.app, &angela).await;

    // Screen 1.
    let one = text(get(&p.app, Some(&p.counter), FORM).await, 200).await;
    assert!(one.contains("Étape 1 sur 3") && one.contains("Comment ça marche"), "{one}");
    assert!(!one.contains("<script"), "works without JavaScript");
    let t = token(&one);
    // Screen 2: nothing recorded yet, and the code is not used up.
    let form = fields(&t, "effacement", "counter", "carte-identite", &code);
    let two = text(post(&p.app, &p.counter, FORM, &form).await, 200).await;
    assert!(two.contains("Étape 2 sur 3") && two.contains("Réponse au plus tard le"), "{two}");
    assert!(two.contains("identité, et le code de l"), "{two}");
    assert!(p.app.state.rights.open().await.unwrap().is_empty(), "nothing filed before the confirmation");
    // Screen 3, after the confirmation.
    let r = post(&p.app, &p.counter, CONFIRM, &fields(&token(&two), "effacement", "counter", "carte-identite", &code))
        .await;
    assert_eq!(r.status(), 303);
    let receipt_path = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(receipt_path.starts_with("/.guichet/guichet-agent/demandes/DR-"), "{receipt_path}");
    let three = text(get(&p.app, Some(&p.counter), &receipt_path).await, 200).await;
    assert!(three.contains("Étape 3 sur 3") && three.contains("Au guichet, avec un agent"), "{three}");

    // The request exists, at the counter, for Angela, identity checked on a document.
    let open = p.app.state.rights.open().await.unwrap();
    assert_eq!(open.len(), 1);
    let r = &open[0];
    assert!(receipt_path.contains(&r.id));
    assert_eq!((r.right, r.channel), (Right::Erasure, Channel::Counter));
    assert_eq!(r.identity, IdentityProof::Document { kind: DocumentKind::IdentityCard });
    assert_eq!(r.agent.as_deref(), Some("agent:agent-sub"));
    // Angela sees it on her hub, made at the counter.
    let hub = text(get(&p.app, Some(&angela), "/.guichet/mes-donnees/").await, 200).await;
    let row = hub.split("<tr").find(|row| row.contains(&r.id)).expect("the request on the citizen's hub");
    assert!(row.contains("Au guichet"), "{row}");
    // The code worked once: the same confirmation again files nothing more.
    let again = post(&p.app, &p.counter, CONFIRM, &fields(&t, "acces", "counter", "carte-identite", &code)).await;
    let again = text(again, 422).await;
    assert!(again.contains("Ce code ne marche pas"), "{again}");
    assert_eq!(p.app.state.rights.open().await.unwrap().len(), 1);
}

async fn a_citizen_without_an_account_files_at_the_counter(backend: Backend) {
    let p = parties(backend).await;
    let t = token(&text(get(&p.app, Some(&p.counter), FORM).await, 200).await);
    // Without a code, identity needs a document, and the phone needs the code.
    for (channel, document, says) in
        [("counter", "code-seul", "Sans pièce"), ("phone", "passeport", "Par téléphone, demandez le code")]
    {
        let r = post(&p.app, &p.counter, CONFIRM, &fields(&t, "acces", channel, document, "")).await;
        let page = text(r, 422).await;
        assert!(page.contains(says), "{page}");
    }
    assert!(p.app.state.rights.open().await.unwrap().is_empty(), "nothing filed without an identity check");
    // A passport seen at the counter is enough: the request gets a subject of its own.
    let r = post(&p.app, &p.counter, CONFIRM, &fields(&t, "acces", "counter", "passeport", "")).await;
    assert_eq!(r.status(), 303);
    let open = p.app.state.rights.open().await.unwrap();
    assert_eq!(open.len(), 1);
    assert!(open[0].subject.starts_with("sans-compte:"), "{}", open[0].subject);
    assert_eq!(open[0].identity, IdentityProof::Document { kind: DocumentKind::Passport });
    // An access request at the counter: its data print from the receipt.
    let receipt = text(get(&p.app, Some(&p.counter), r.headers()["location"].to_str().unwrap()).await, 200).await;
    assert!(receipt.contains(&format!("/.guichet/api/v1/rights/{}/impression", open[0].id)), "{receipt}");

    // Like any request it goes to each application: the applications know no pseudonym of
    // a citizen without an account, so each part is a task done by hand in the handlers'
    // queue, and the request waits for it instead of staying "received".
    let id = open[0].id.clone();
    assert_eq!(open[0].status, Status::WaitingOnApplications);
    let targets = p.app.state.rights.targets(&id).await.unwrap();
    assert_eq!(targets.iter().map(|t| t.activity.as_str()).collect::<Vec<_>>(), ["lettre-information"]);
    for t in &targets {
        assert_eq!(t.state, "manual");
        assert_eq!(t.reason.as_deref(), Some(guichet::rights::propagation::NO_PSEUDONYMS));
        assert!(t.app_subject.is_none() && t.field_subject.is_none(), "no pseudonym made up: {t:?}");
    }
    let tasks = p.app.state.rights.manual_tasks().await.unwrap();
    assert!(tasks.iter().any(|t| t.request_id == id), "in the handlers' tasks");
    // The handler closes it: the request completes, like any other.
    let by = guichet::rights::propagation::system();
    let done = guichet::rights::ops::TaskOutcome::Completed;
    let answer = "Vos données vous ont été remises au guichet.";
    guichet::rights::ops::close_task(&p.app.state, &id, "lettre-information", done, answer, &by).await.unwrap();
    assert_eq!(p.app.state.rights.get(&id).await.unwrap().status, Status::Completed);
    // A rectification for them takes no values on screen 2: the service corrects by hand.
    let two = post(&p.app, &p.counter, FORM, &fields(&t, "rectification", "counter", "passeport", "")).await;
    let two = text(two, 200).await;
    assert!(!two.contains("corriger_"), "{two}");
    assert!(two.contains("pas de compte en ligne"), "{two}");
}

/// A desk whose application answers at once, the counter code Angela (signed in) reads out,
/// and the counter agent's screen 2 of a rectification for her (checked on her identity card).
async fn rectification_screen_two(backend: Backend) -> (crate::rights_ops::Desk, String, String) {
    let d = crate::rights_ops::desk(backend, Mode::AnswerNow, |b| b).await;
    let p = &d.p;
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let code = code_of(&p.app, &angela).await;
    let t = token(&text(get(&p.app, Some(&p.counter), FORM).await, 200).await);
    let form = fields(&t, "rectification", "counter", "carte-identite", &code);
    let two = text(post(&p.app, &p.counter, FORM, &form).await, 200).await;
    (d, code, two)
}

/// An agent files a rectification at the counter with the corrected value the citizen gives:
/// typed on screen 2 by the field's label, sealed for the citizen as on their own screen,
/// sent to the application with the request, which records the counter and the agent.
async fn an_agent_types_the_corrected_values_of_a_rectification(backend: Backend) {
    const CLEAR: &str = "angela.au.guichet.k7@example.fr";
    let (d, code, two) = rectification_screen_two(backend).await;
    let p = &d.p;
    // Screen 2: the field by its label, an input for the value.
    assert!(two.contains("<label for=\"corriger-email\">Adresse e-mail</label>"), "{two}");
    assert!(two.contains("name=\"corriger_email\""), "{two}");
    let t = token(&two);
    // Nothing typed: screen 2 again, nothing filed, and the code is not used up.
    let mut empty = fields(&t, "rectification", "counter", "carte-identite", &code);
    empty.push(("corriger_email", "  "));
    let again = text(post(&p.app, &p.counter, CONFIRM, &empty).await, 422).await;
    assert!(again.contains("Écrivez au moins une information à corriger") && again.contains("Étape 2 sur 3"));
    assert!(p.app.state.rights.open().await.unwrap().is_empty(), "nothing was filed");
    // Typed, with a name the screen did not offer (ignored).
    let mut typed = fields(&t, "rectification", "counter", "carte-identite", &code);
    typed.extend([("corriger_email", CLEAR), ("corriger_shoe_size", "38")]);
    let r = post(&p.app, &p.counter, CONFIRM, &typed).await;
    assert_eq!(r.status(), 303);
    let receipt = r.headers()["location"].to_str().unwrap().to_owned();
    let id = receipt.split('?').next().unwrap().rsplit('/').next().unwrap().to_owned();
    assert!(text(get(&p.app, Some(&p.counter), &receipt).await, 200).await.contains("Étape 3 sur 3"));
    wait_for(&p.app, &id, Status::Completed).await;
    let request = p.app.state.rights.get(&id).await.unwrap();
    assert_eq!((request.right, request.channel), (Right::Rectification, Channel::Counter));
    assert_eq!(request.agent.as_deref(), Some("agent:agent-sub"));
    // The application got the value sealed, under the citizen's key, and nothing else.
    let received = d.rights_app.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["type"], "rectification");
    let sent = received[0]["corrections"].as_object().unwrap();
    assert_eq!(sent.keys().collect::<Vec<_>>(), ["email"], "only the offered field");
    let sealed = sent["email"].as_str().unwrap();
    assert!(sealed.starts_with("gch2.") && !received[0].to_string().contains(CLEAR), "{sealed}");
    let vault = p.app.state.crypto.as_ref().unwrap();
    let (subject, activity) = vault.owner_of(sealed).await.unwrap().unwrap();
    let target = p.app.state.rights.target(&id, "lettre-information").await.unwrap().unwrap();
    assert_eq!(Some(subject.as_str()), target.field_subject.as_deref(), "sealed for Angela");
    let ctx = guichet::crypto::FieldContext { activity: &activity, field: "email", subject: &subject };
    assert_eq!(vault.open(&ctx, sealed).await.unwrap().as_str(), CLEAR);
    let bytes = crate::at_rest::store_bytes(&p.app).await;
    assert!(!bytes.windows(CLEAR.len()).any(|w| w == CLEAR.as_bytes()), "the value is in the store in clear");
}

async fn on_the_phone_the_code_alone_identifies_the_citizen(backend: Backend) {
    let p = parties(backend).await;
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let code = code_of(&p.app, &angela).await;
    let t = token(&text(get(&p.app, Some(&p.counter), FORM).await, 200).await);
    // A wrong code files nothing and asks for a new one.
    let wrong = post(&p.app, &p.counter, CONFIRM, &fields(&t, "limitation", "phone", "code-seul", "ZZZZ-ZZZZ")).await;
    assert!(text(wrong, 422).await.contains("Demandez un nouveau code"));
    assert!(p.app.state.rights.open().await.unwrap().is_empty());
    let r = post(&p.app, &p.counter, CONFIRM, &fields(&t, "limitation", "phone", "code-seul", &code)).await;
    assert_eq!(r.status(), 303);
    let open = p.app.state.rights.open().await.unwrap();
    assert_eq!((open[0].channel, open[0].right), (Channel::Phone, Right::Restriction));
    assert_eq!(open[0].identity, IdentityProof::SignIn { acr: "one_time_code".into() });
    let receipt = text(get(&p.app, Some(&p.counter), r.headers()["location"].to_str().unwrap()).await, 200).await;
    assert!(receipt.contains("Par téléphone, avec un agent"), "{receipt}");
    assert!(!receipt.contains("/impression"), "only counter requests print their data");
}

async fn only_agents_with_an_assisted_role_use_the_pages(backend: Backend) {
    let p = parties(backend).await;
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let code = code_of(&p.app, &angela).await;
    // Not signed in, or signed in as a citizen: the agents' sign-in, coming back here.
    for who in [None, Some(angela.as_str())] {
        let r = get(&p.app, who, FORM).await;
        assert_eq!(r.status(), 303);
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/.guichet/agent/connexion"));
    }
    // Agents without the role (another administration, the DPO) are refused.
    for who in [&p.outsider, &p.dpo] {
        assert_eq!(get(&p.app, Some(who), FORM).await.status(), 403);
        let r = post(&p.app, who, CONFIRM, &fields("x", "acces", "counter", "passeport", &code)).await;
        assert_eq!(r.status(), 403);
    }
    // A form without this session's CSRF token files nothing.
    let r = post(&p.app, &p.counter, CONFIRM, &fields("not-the-token", "acces", "counter", "passeport", &code)).await;
    assert_eq!(r.status(), 403);
    assert!(p.app.state.rights.open().await.unwrap().is_empty(), "nothing was filed");
    // A request made online is not shown in the assisted mode.
    let online = crate::rights_agent::filed(&p, &angela, "access").await;
    let r = get(&p.app, Some(&p.counter), &format!("/.guichet/guichet-agent/demandes/{online}")).await;
    assert_eq!(r.status(), 404);
    // The refused attempts did not use the code up.
    let t = token(&text(get(&p.app, Some(&p.counter), FORM).await, 200).await);
    assert_eq!(
        post(&p.app, &p.counter, CONFIRM, &fields(&t, "acces", "counter", "passeport", &code)).await.status(),
        303
    );
}

/// Files `right` on the newsletter through the citizen's procedure; the receipt's path.
pub(crate) async fn through_the_procedure(app: &TestApp, session: &str, right: &str) -> String {
    let confirm = format!("/.guichet/mes-donnees/droits/{right}/confirmer?activite=lettre-information");
    let t = token(&text(get(app, Some(session), &confirm).await, 200).await);
    let form = [("jeton", t.as_str()), ("activite", "lettre-information")];
    let r = post(app, session, &format!("/.guichet/mes-donnees/droits/{right}"), &form).await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    location.split('?').next().unwrap().to_owned()
}

async fn the_last_screen_offers_the_download_once_the_application_answered(backend: Backend) {
    let s = setup(backend, Mode::AnswerNow, "rights_route = \"lettre\"").await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let receipt = through_the_procedure(&s.app, &angela, "acces").await;
    let id = receipt.rsplit('/').next().unwrap().to_owned();
    // The procedure asked the application at once (it answers at once).
    wait_for(&s.app, &id, Status::Completed).await;
    let page = text(get(&s.app, Some(&angela), &format!("{receipt}?nouvelle=1")).await, 200).await;
    assert!(page.contains("Vos données sont prêtes"), "{page}");
    let link = format!("{receipt}/telecharger");
    assert!(page.contains(&format!("href=\"{link}\"")), "{page}");
    let r = get(&s.app, Some(&angela), &link).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.bytes().await.unwrap().starts_with(b"PK"), "a zip archive");
    // Another citizen gets nothing, as for a request that does not exist.
    let other = citizen(&s.app, &s.mock, "sub-other").await;
    assert_eq!(get(&s.app, Some(&other), &link).await.status(), 404);
}

async fn the_last_screen_gives_the_date_while_the_application_has_not_answered(backend: Backend) {
    let s = setup(backend, Mode::Accept, "rights_route = \"lettre\"").await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let receipt = through_the_procedure(&s.app, &angela, "acces").await;
    let id = receipt.rsplit('/').next().unwrap().to_owned();
    crate::propagation::wait_received(&s.rights_app, 1).await;
    wait_for(&s.app, &id, Status::WaitingOnApplications).await;
    let page = text(get(&s.app, Some(&angela), &format!("{receipt}?nouvelle=1")).await, 200).await;
    let due = guichet::pages::french_date(
        s.app
            .state
            .rights
            .get(&id)
            .await
            .unwrap()
            .due_on(guichet::clock::paris_date(guichet::clock::Clock::now(s.app.state.clock.as_ref()))),
    );
    assert!(page.contains(&format!("Vos données seront prêtes le {due} au plus tard")), "{page}");
    assert!(page.contains("Nous vous envoyons un message"), "{page}");
    assert!(!page.contains("/telecharger"), "no download before the answer");
    assert_eq!(get(&s.app, Some(&angela), &format!("{receipt}/telecharger")).await.status(), 404);
}

/// The session behind a citizen's cookie.
pub(crate) async fn session_of(app: &TestApp, cookie: &str) -> std::sync::Arc<guichet::auth::session::Session> {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("cookie", format!("{SESSION}={cookie}").parse().unwrap());
    app.state.auth.identify(&headers).await.unwrap().unwrap()
}

/// `value` sealed for the newsletter's `email` field of the citizen behind `cookie`, as the
/// proxy seals it when she subscribes.
async fn sealed_email(app: &TestApp, cookie: &str, value: &str) -> String {
    let session = session_of(app, cookie).await;
    let sector = app.state.policies.load().activity("lettre-information").unwrap().sector;
    let subject = app.state.auth.field_subject_in(&session, sector).to_owned();
    let ctx = guichet::crypto::FieldContext { activity: "lettre-information", field: "email", subject: &subject };
    app.state.crypto.as_ref().unwrap().seal(&ctx, value).await.unwrap()
}

/// The correction screen shows what the application holds, from its answer to the citizen's
/// latest access request: her value beside its field, never another citizen's; without such
/// an answer, it links the access procedure instead.
async fn the_correction_screen_shows_what_the_application_last_sent(backend: Backend) {
    const SCREEN: &str = "/.guichet/mes-donnees/droits/rectification/confirmer?activite=lettre-information";
    let s = setup(backend, Mode::AnswerNow, "rights_route = \"lettre\"").await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    let pseudonym = crate::propagation::pseudonym_seen_by_app(&s.app, &angela).await;
    let bruno = citizen(&s.app, &s.mock, "sub-bruno").await;

    // No access answer yet: the screen says where to see what is recorded.
    let before = text(get(&s.app, Some(&angela), SCREEN).await, 200).await;
    assert!(
        before.contains("href=\"/.guichet/mes-donnees/droits/acces/confirmer?activite=lettre-information\""),
        "{before}"
    );
    assert!(!before.contains("Noté par le service"), "{before}");

    // The application keeps her address, and (wrongly) a value of Bruno's under her pseudonym.
    let hers = sealed_email(&s.app, &angela, "angela.ancienne.q3@example.fr").await;
    let his = sealed_email(&s.app, &bruno, "bruno.canari.q3@example.fr").await;
    s.rights_app.keep(&pseudonym, serde_json::json!({ "abonnement": { "email": hers, "autre": his } }));
    let receipt = through_the_procedure(&s.app, &angela, "acces").await;
    let id = receipt.rsplit('/').next().unwrap().to_owned();
    wait_for(&s.app, &id, Status::Completed).await;

    let after = text(get(&s.app, Some(&angela), SCREEN).await, 200).await;
    assert!(after.contains("Noté par le service : <strong>angela.ancienne.q3@example.fr</strong>"), "{after}");
    assert!(after.contains("d'après sa réponse du"), "{after}");
    assert!(!after.contains("bruno.canari.q3"), "another citizen's value is shown: {after}");
    assert!(!after.contains("gch2."), "{after}");
    // Bruno, who asked for nothing, sees none of it.
    let his_screen = text(get(&s.app, Some(&bruno), SCREEN).await, 200).await;
    assert!(!his_screen.contains("angela.ancienne.q3") && !his_screen.contains("Noté par le service"));
}

/// The agent's rectification screen 2 shows what the application last sent, as the citizen's
/// own screen does, but only to an agent whose role may see the field (`visible_to`): the
/// counter agent without it sees the placeholder. A value shown is journaled as a reveal, and
/// the citizen's "who saw my data" lists it.
async fn the_agents_correction_screen_shows_the_current_value_to_roles_that_may_see_it(backend: Backend) {
    const VALUE: &str = "angela.ancienne.q6@example.fr";
    let d = crate::rights_ops::desk(backend, Mode::AnswerNow, |b| {
        b.with(|s, _| {
            s.auth.agent_roles.push(guichet::config::RoleRule {
                role: "service-communication".into(),
                siret: vec![],
                email_domains: vec![],
                uids: vec!["comm-1".into()],
            })
        })
    })
    .await;
    let p = &d.p;
    let mut info = crate::auth::agent_info("21750001600019", "emma@mairie.example.fr");
    info["uid"] = serde_json::json!("comm-1");
    let r = crate::auth::agent_sign_in(&p.app, &p.agents, info, "").await;
    let communication = crate::auth::cookie(&r, SESSION).unwrap();
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let pseudonym = crate::propagation::pseudonym_seen_by_app(&p.app, &angela).await;
    let bruno = citizen(&p.app, &p.citizens, "sub-bruno").await;
    let code = code_of(&p.app, &angela).await;
    let screen_two = |agent: String| {
        let (app, code) = (&p.app, code.clone());
        async move {
            let t = token(&text(get(app, Some(&agent), FORM).await, 200).await);
            let form = fields(&t, "rectification", "counter", "carte-identite", &code);
            text(post(app, &agent, FORM, &form).await, 200).await
        }
    };

    // No access answer yet: nothing to show, and the screen says so.
    let before = screen_two(communication.clone()).await;
    assert!(before.contains("Le service n&#39;a pas encore dit") || before.contains("Le service n'a pas encore dit"));
    assert!(!before.contains("Noté par le service"), "{before}");

    let hers = sealed_email(&p.app, &angela, VALUE).await;
    let his = sealed_email(&p.app, &bruno, "bruno.canari.q6@example.fr").await;
    d.rights_app.keep(&pseudonym, serde_json::json!({ "abonnement": { "email": hers, "autre": his } }));
    let receipt = through_the_procedure(&p.app, &angela, "acces").await;
    wait_for(&p.app, receipt.rsplit('/').next().unwrap(), Status::Completed).await;

    // The counter agent (`etat-civil`, not in the field's `visible_to`): the placeholder.
    let counter = screen_two(p.counter.clone()).await;
    assert!(counter.contains("Noté par le service : <strong>[donnée protégée]</strong>"), "{counter}");
    assert!(counter.contains("Votre rôle ne permet pas de voir"), "{counter}");
    assert!(!counter.contains(VALUE) && !counter.contains("gch2."), "{counter}");
    // The communication service's agent sees her value, never Bruno's.
    let shown = screen_two(communication.clone()).await;
    assert!(shown.contains(&format!("Noté par le service : <strong>{VALUE}</strong>")), "{shown}");
    assert!(shown.contains("d&#39;après sa réponse du") || shown.contains("d'après sa réponse du"), "{shown}");
    assert!(!shown.contains("bruno.canari.q6") && !shown.contains("[donnée protégée]"), "{shown}");

    // Journaled as a reveal to that agent only, under her field pseudonym, and on her hub.
    let journal = crate::incidents::journal(&p.app).await;
    let reveals: Vec<_> = journal.iter().filter(|e| e["operation"]["type"] == "reveal").collect();
    assert_eq!(reveals.len(), 1, "{reveals:?}");
    let e = reveals[0];
    assert_eq!(e["operation"]["fields"], serde_json::json!(["email"]));
    assert_eq!(
        (e["role"].as_str(), e["purpose"].as_str()),
        (Some("service-communication"), Some("correction-au-guichet"))
    );
    assert_eq!(e["activity"], "lettre-information");
    let session = session_of(&p.app, &angela).await;
    assert_eq!(e["subject"], p.app.state.auth.field_subject(&session));
    let hub = text(get(&p.app, Some(&angela), "/.guichet/mes-donnees/").await, 200).await;
    assert!(hub.contains("Corriger vos données avec vous"), "{hub}");
    assert!(
        !text(get(&p.app, Some(&bruno), "/.guichet/mes-donnees/").await, 200)
            .await
            .contains("Corriger vos données avec vous")
    );
}

/// A code made before the gateway recorded pseudonyms with codes: screen 2 of a rectification
/// takes no values and says the service corrects by hand; the request is filed and waits for
/// the handler's task, instead of ending on an error page.
async fn a_rectification_with_a_code_made_before_pseudonyms_is_done_by_hand(backend: Backend) {
    let d = crate::rights_ops::desk(backend, Mode::AnswerNow, |b| b).await;
    let p = &d.p;
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let session = session_of(&p.app, &angela).await;
    let subject = p.app.state.auth.consent_subject(&session).to_owned();
    assert!(p.app.state.rights.subjects_of(&subject).await.unwrap().is_none(), "no pseudonyms recorded");
    p.app.state.consent.new_code(&subject, "OLD7CODE", time::Duration::hours(1)).await.unwrap();
    let t = token(&text(get(&p.app, Some(&p.counter), FORM).await, 200).await);
    let form = fields(&t, "rectification", "counter", "carte-identite", "OLD7CODE");
    let two = text(post(&p.app, &p.counter, FORM, &form).await, 200).await;
    assert!(two.contains("Étape 2 sur 3"), "{two}");
    assert!(!two.contains("corriger_"), "no value inputs: {two}");
    assert!(two.contains("Le service la traite à la main"), "{two}");
    // Looking at the code did not use it up: the confirmation files the request.
    let t = token(&two);
    let mut typed = fields(&t, "rectification", "counter", "carte-identite", "OLD7CODE");
    typed.push(("corriger_email", "jamais.envoyee.q4@example.fr"));
    let r = post(&p.app, &p.counter, CONFIRM, &typed).await;
    assert_eq!(r.status(), 303, "not an error page");
    let receipt = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(text(get(&p.app, Some(&p.counter), &receipt).await, 200).await.contains("Étape 3 sur 3"));
    let id = receipt.split('?').next().unwrap().rsplit('/').next().unwrap().to_owned();
    let request = p.app.state.rights.get(&id).await.unwrap();
    assert_eq!(
        (request.right, request.channel, request.subject.as_str()),
        (Right::Rectification, Channel::Counter, subject.as_str())
    );
    assert_eq!(request.status, Status::WaitingOnApplications);
    let target = p.app.state.rights.target(&id, "lettre-information").await.unwrap().unwrap();
    assert_eq!(target.state, "manual");
    assert_eq!(target.reason.as_deref(), Some(guichet::rights::propagation::NO_PSEUDONYMS));
    assert!(target.corrections.is_none(), "nothing typed was kept");
    assert!(d.rights_app.received().is_empty(), "nothing sent under a made-up pseudonym");
    let bytes = crate::at_rest::store_bytes(&p.app).await;
    let clear = b"jamais.envoyee.q4";
    assert!(!bytes.windows(clear.len()).any(|w| w == clear), "the typed value is in the store");
}

/// Screen 2's "back" keeps what the agent typed: screen 1 carries the values, and screen 2
/// shows them again in their inputs.
async fn going_back_from_screen_two_keeps_the_typed_values(backend: Backend) {
    let (d, code, two) = rectification_screen_two(backend).await;
    let p = &d.p;
    // The back button is in the same form as the inputs (no JavaScript needed).
    let form = two.split("<form").find(|f| f.contains("action=\"/.guichet/guichet-agent/confirmer\"")).unwrap();
    assert!(form.contains("name=\"corriger_email\"") && form.contains("formaction=\"/.guichet/guichet-agent/\""));
    let t = token(&two);
    let mut back = fields(&t, "rectification", "counter", "carte-identite", &code);
    back.extend([("corriger_email", "retour.q5@example.fr"), ("modifier", "1")]);
    let one = text(post(&p.app, &p.counter, FORM, &back).await, 200).await;
    assert!(one.contains("Étape 1 sur 3"), "{one}");
    assert!(one.contains("name=\"corriger_email\" value=\"retour.q5@example.fr\""), "{one}");
    assert!(p.app.state.rights.open().await.unwrap().is_empty(), "nothing filed");
    // Forward again: the value is in its input.
    let t = token(&one);
    let mut again = fields(&t, "rectification", "counter", "carte-identite", &code);
    again.push(("corriger_email", "retour.q5@example.fr"));
    let two = text(post(&p.app, &p.counter, FORM, &again).await, 200).await;
    assert!(two.contains("name=\"corriger_email\" value=\"retour.q5@example.fr\""), "{two}");
}

on_both_stores!(
    the_correction_screen_shows_what_the_application_last_sent,
    the_agents_correction_screen_shows_the_current_value_to_roles_that_may_see_it,
    a_rectification_with_a_code_made_before_pseudonyms_is_done_by_hand,
    going_back_from_screen_two_keeps_the_typed_values,
    assisted_mode_files_a_counter_request_in_three_screens,
    a_citizen_without_an_account_files_at_the_counter,
    an_agent_types_the_corrected_values_of_a_rectification,
    on_the_phone_the_code_alone_identifies_the_citizen,
    only_agents_with_an_assisted_role_use_the_pages,
    the_last_screen_offers_the_download_once_the_application_answered,
    the_last_screen_gives_the_date_while_the_application_has_not_answered,
);
