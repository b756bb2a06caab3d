//! The citizen's hub "Mes données" and its rights procedures, through the real stack: sign-in
//! and the way back, the services with only the rights that apply, each right in three
//! screens filing an online request, "who saw my data" from the journal's reveals (this
//! citizen's only, never an agent's id), the base layout's header on every page, and the
//! plain-French (FALC) rules over the citizen-facing templates.

use guichet::audit::{Actor, ActorKind, AuditEvent, Ident, Operation, Outcome};
use guichet::clock::Clock;
use guichet::config::RouteAccess;
use guichet::policy::falc;
use guichet::rights::request::{Channel, Right, Status};

use crate::auth::{SESSION, cookie, sign_in_at};
use crate::consent::{builder, citizen, post, token};
use crate::helpers::{Backend, TestApp, route, spawn_app};
use crate::oidc_mock::MockProvider;
use crate::on_both_stores;

const HUB: &str = "/.guichet/mes-donnees/";
/// The largest a page may weigh with its CSS, for slow phone connections.
const PAGE_BUDGET: usize = 50 * 1024;

async fn get(app: &TestApp, session: Option<&str>, path: &str) -> reqwest::Response {
    let mut req = app.client.get(app.url(path)).header("accept", "text/html");
    if let Some(s) = session {
        req = req.header("cookie", format!("{SESSION}={s}"));
    }
    req.send().await.unwrap()
}

async fn page(app: &TestApp, session: &str, path: &str) -> String {
    let r = get(app, Some(session), path).await;
    assert_eq!(r.status(), 200, "{path}");
    let body = r.text().await.unwrap();
    assert!(body.len() < PAGE_BUDGET, "{path} weighs {} bytes", body.len());
    body
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// The signed-in citizen's pseudonyms: (consent subject, field subject).
async fn subjects(app: &TestApp, session: &str) -> (String, String) {
    let mut h = axum::http::HeaderMap::new();
    h.insert("cookie", format!("{SESSION}={session}").parse().unwrap());
    let s = app.state.auth.identify(&h).await.unwrap().unwrap();
    (app.state.auth.consent_subject(&s).to_owned(), app.state.auth.field_subject(&s).to_owned())
}

/// A reveal to an agent, journaled as `proxy::reveal` does it.
async fn reveal_to_agent(app: &TestApp, field_subject: &str, agent: &str, role: &str) {
    let mut event =
        AuditEvent::system(Operation::Reveal { fields: vec![Ident::new("email").unwrap()] }, app.clock.now());
    event.actor = Actor { kind: ActorKind::Agent, id: Ident::new(agent).unwrap() };
    event.role = Ident::new(role).unwrap();
    event.activity = Some(Ident::new("lettre-information").unwrap());
    event.purpose = Some(Ident::new("envoi").unwrap());
    event.subject = Some(Ident::new(field_subject).unwrap());
    event.outcome = Outcome::Success;
    app.state.audit.append_sync(event).await.unwrap();
}

#[tokio::test]
async fn the_hub_sends_to_sign_in_and_the_sign_in_comes_back_to_it() {
    let mock = MockProvider::start().await;
    let app = builder(&mock, Backend::Sqlite).start().await;
    let r = get(&app, None, HUB).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/.guichet/connexion?retour=%2F.guichet%2Fmes-donnees%2F");
    let back = sign_in_at(&app, &mock, &location(&r), "sub-angela").await;
    assert_eq!(location(&back), HUB, "the sign-in comes back to the hub");
    // A procedure's screen, with its query, too.
    let back = sign_in_at(
        &app,
        &mock,
        "/.guichet/connexion?retour=%2F.guichet%2Fmes-donnees%2Fdroits%2Feffacement%3Factivite%3Dlettre-information",
        "sub-angela",
    )
    .await;
    assert_eq!(location(&back), "/.guichet/mes-donnees/droits/effacement?activite=lettre-information");
}

/// Without a return address, a sign-in lands on the person's own space: an agent on "Espace
/// agent", a citizen on the home page when an application serves `/`, else on "Mes données".
#[tokio::test]
async fn a_sign_in_without_a_return_address_lands_on_the_persons_space() {
    let mock = MockProvider::start().await;
    let agents = MockProvider::start().await;
    // An application serves `/`: the citizen lands there, the agent on their space.
    let app = builder(&mock, Backend::Sqlite).with_agent_provider(agents.issuer()).start().await;
    let back = sign_in_at(&app, &mock, "/.guichet/connexion", "sub-angela").await;
    assert_eq!(location(&back), "/");
    let info = crate::auth::agent_info("21750001600019", "lucie@mairie.example.fr");
    let back = crate::auth::agent_sign_in_at(&app, &agents, "/.guichet/agent/connexion", info.clone(), "").await;
    assert_eq!(back.status(), 303);
    assert_eq!(location(&back), "/.guichet/agent/");
    // A return address still wins.
    let back = crate::auth::agent_sign_in_at(&app, &agents, "/.guichet/agent/connexion?retour=/agents", info, "").await;
    assert_eq!(location(&back), "/agents");
    // Nothing serves `/`: the citizen lands on "Mes données", not on a "no such page" error.
    let app = builder(&mock, Backend::Sqlite).without_default_route().start().await;
    assert_eq!(get(&app, None, "/").await.status(), 404, "no route serves `/`");
    let back = sign_in_at(&app, &mock, "/.guichet/connexion", "sub-angela").await;
    assert_eq!(location(&back), HUB);
}

#[tokio::test]
async fn signing_in_from_the_consent_page_comes_back_to_it() {
    let mock = MockProvider::start().await;
    let app = builder(&mock, Backend::Sqlite).start().await;
    let html = get(&app, None, "/.guichet/consentement/?retour=/lettre-information/").await.text().await.unwrap();
    let href = html.split("class=\"bouton\" href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    assert!(href.starts_with("/.guichet/connexion?retour="), "{href}");
    let back = sign_in_at(&app, &mock, &href, "sub-angela").await;
    assert_eq!(location(&back), "/.guichet/consentement/?retour=/lettre-information/");
}

async fn a_right_takes_three_screens_and_files_an_online_request(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = builder(&mock, backend).start().await;
    let s = citizen(&app, &mock, "sub-angela").await;
    let (subject, _) = subjects(&app, &s).await;

    let one = page(&app, &s, "/.guichet/mes-donnees/droits/effacement?activite=lettre-information").await;
    assert!(one.contains("Étape 1 sur 3") && one.contains("Comment ça marche"), "{one}");
    assert!(one.contains("value=\"lettre-information\" required checked"), "the service from the hub is chosen");
    let two = page(&app, &s, "/.guichet/mes-donnees/droits/effacement/confirmer?activite=lettre-information").await;
    assert!(two.contains("Étape 2 sur 3"));
    assert!(two.contains("Ce qui va se passer") && two.contains("La mairie peut refuser"));
    assert!(two.contains("Réponse au plus tard le"));
    assert!(!two.contains("UTC"), "French local dates only");

    // Without the form's token, nothing is filed.
    let forged = post(&app, &s, "/.guichet/mes-donnees/droits/effacement", &[("activite", "lettre-information")]).await;
    assert_eq!(forged.status(), 403);
    assert!(app.state.rights.of_subject(&subject).await.unwrap().is_empty());
    // Signing in records no pseudonyms: only the citizen's own act (a request…) does.
    assert_eq!(app.state.rights.subjects_of(&subject).await.unwrap(), None);

    let t = token(&two);
    let filed =
        post(&app, &s, "/.guichet/mes-donnees/droits/effacement", &[("jeton", &t), ("activite", "lettre-information")])
            .await;
    assert_eq!(filed.status(), 303);
    let three_path = location(&filed);
    assert!(three_path.starts_with("/.guichet/mes-donnees/demandes/DR-"), "{three_path}");
    let three = page(&app, &s, &three_path).await;
    assert!(three.contains("Étape 3 sur 3"));

    let requests = app.state.rights.of_subject(&subject).await.unwrap();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    // Filed online, then sent to the applications at once (the page starts it, as the API does).
    assert_eq!((r.right, r.channel), (Right::Erasure, Channel::Online));
    assert!(matches!(r.status, Status::WaitingOnApplications | Status::Completed), "{:?}", r.status);
    assert_eq!(r.activity.as_deref(), Some("lettre-information"));
    assert!(three.contains(&format!("<p class=\"reference\">{}</p>", r.id)), "the reference is on the receipt");
    // Its pseudonyms are recorded with it, as the JSON API does: the DPO's join, the command
    // line and retention reach the citizen's sectors through them.
    let recorded = app.state.rights.subjects_of(&subject).await.unwrap().expect("the pseudonyms are recorded");
    assert_eq!(recorded.sectors.len(), guichet::policy::Sector::ALL.len() - 1, "{recorded:?}");

    // The hub lists it with its status and due date, and offers only the rights that apply:
    // objection does not apply to a consent (withdrawing does).
    let hub = page(&app, &s, HUB).await;
    assert!(
        hub.contains(&r.id)
            && [Status::WaitingOnApplications, Status::Completed].iter().any(|x| hub.contains(x.french()))
    );
    assert!(hub.contains("droits/effacement?activite=lettre-information"));
    assert!(hub.contains("droits/acces?activite=lettre-information"));
    assert!(!hub.contains("droits/opposition?activite=lettre-information"), "objection is not offered");

    // Another citizen cannot read the receipt.
    let other = citizen(&app, &mock, "sub-bob").await;
    assert_eq!(get(&app, Some(&other), &three_path).await.status(), 404);
}

on_both_stores!(a_right_takes_three_screens_and_files_an_online_request);

async fn who_saw_my_data_shows_this_citizens_reveals_and_no_agent_id(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = builder(&mock, backend).start().await;
    let angela = citizen(&app, &mock, "sub-angela").await;
    let bob = citizen(&app, &mock, "sub-bob").await;
    let (_, angela_fields) = subjects(&app, &angela).await;
    let (_, bob_fields) = subjects(&app, &bob).await;

    let before = page(&app, &angela, HUB).await;
    assert!(before.contains("Aucun agent n'a vu vos données."));

    reveal_to_agent(&app, &angela_fields, "agent:martine-7", "service-communication").await;
    reveal_to_agent(&app, &bob_fields, "agent:paul-9", "etat-civil").await;

    let hub = page(&app, &angela, HUB).await;
    let seen = hub.split("id=\"consultations\"").nth(1).unwrap();
    assert_eq!(seen.matches("<tr><td>").count(), 1, "one reveal, Angela's: {seen}");
    assert!(seen.contains("Agent : service-communication"));
    assert!(seen.contains("information municipale"), "{seen}");
    assert!(seen.contains("Adresse e-mail"), "the kind of data, by its category name");
    assert!(!hub.contains("martine") && !hub.contains("paul-9"), "never an agent's id");
    assert!(!seen.contains("etat-civil"), "nothing of another citizen");
    assert!(!seen.contains("UTC"));
}

on_both_stores!(who_saw_my_data_shows_this_citizens_reveals_and_no_agent_id);

#[tokio::test]
async fn every_own_page_has_the_header_and_errors_give_a_spoken_reference() {
    let mock = MockProvider::start().await;
    let app = builder(&mock, Backend::Sqlite).start().await;
    let s = citizen(&app, &mock, "sub-angela").await;
    for path in [
        HUB,
        "/.guichet/consentement/",
        "/.guichet/informations",
        "/.guichet/informations/lettre-information",
        "/.guichet/accessibilite",
        "/.guichet/deconnexion",
        "/.guichet/mes-donnees/droits/acces",
    ] {
        let html = page(&app, &s, path).await;
        assert!(html.contains("<a href=\"/.guichet/mes-donnees/\">Mes données</a>"), "{path}");
        assert!(html.contains("Se déconnecter</button>"), "{path}: a sign-out button when signed in");
        assert!(html.contains("Votre mairie"), "{path}: the commune's name");
        assert!(html.contains("href=\"#contenu\""), "{path}: a skip link");
        assert!(!html.contains("<script"), "{path}: no JavaScript");
    }
    // Signed out: a link to the confirmation page.
    let html = get(&app, None, "/.guichet/informations").await.text().await.unwrap();
    assert!(html.contains("<a href=\"/.guichet/deconnexion\">Se déconnecter</a>"));

    let r = get(&app, None, "/.guichet/nulle-part").await;
    assert_eq!(r.status(), 404);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let html = r.text().await.unwrap();
    assert!(html.contains("Mes données"), "error pages have the header too");
    let reference = html.split("class=\"reference\">").nth(1).unwrap().split('<').next().unwrap();
    assert_eq!(reference, guichet::pages::spoken_reference(&id));
    assert_eq!(reference.len(), 9, "{reference}");
    assert!(!html.contains(&id), "not the long id");
}

#[tokio::test]
async fn the_accessibility_statement_follows_the_model() {
    let mock = MockProvider::start().await;
    let app = builder(&mock, Backend::Sqlite)
        .with(|s, _| {
            s.commune.name = "Mairie de Démoville".into();
            s.commune.accessibility.status = Some("partielle".into());
            s.commune.accessibility.rate = Some(72);
            s.commune.accessibility.contact = Some("accessibilite@demoville.fr".into());
        })
        .start()
        .await;
    let html = get(&app, None, "/.guichet/accessibilite").await.text().await.unwrap();
    for part in [
        "Déclaration d'accessibilité",
        "État de conformité",
        "partiellement conforme",
        "Résultats des tests",
        "72 % des critères",
        "Contenus non accessibles",
        "Établissement de cette déclaration",
        "Retour d'information et contact",
        "accessibilite@demoville.fr",
        "Voies de recours",
        "Défenseur des droits",
        "Mairie de Démoville",
    ] {
        assert!(html.contains(part), "{part}");
    }
    // Every page's footer states the status and links the statement.
    let home = get(&app, None, "/.guichet/informations").await.text().await.unwrap();
    assert!(home.contains("href=\"/.guichet/accessibilite\">Accessibilité : partiellement conforme"));
}

/// The text a person reads in a template: tags, template code and entities removed.
fn visible_text(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['<', '{']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let close = if tail.starts_with('<') {
            ">"
        } else if tail.starts_with("{{") {
            "}}"
        } else if tail.starts_with("{%") {
            "%}"
        } else if tail.starts_with("{#") {
            "#}"
        } else {
            out.push('{');
            rest = &tail[1..];
            continue;
        };
        // A tag ends a sentence-free run: keep words apart.
        out.push(if tail.starts_with("{{") { 'X' } else { '\n' });
        rest = tail.find(close).map_or("", |j| &tail[j + close.len()..]);
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
}

#[test]
fn citizen_templates_use_short_sentences_and_no_jargon() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    // Citizen-facing templates (agents' and the DPO's pages, demo and exports are not).
    let citizen_pages = [
        "base.html",
        "error.html",
        "auth/logout.html",
        "auth/logged_out.html",
        "consent/page.html",
        "consent/sign_in.html",
        "consent/receipt.html",
        "policy/notice_index.html",
        "policy/notice.html",
        "privacy_centre/hub.html",
        "privacy_centre/how.html",
        "privacy_centre/choose.html",
        "privacy_centre/confirm.html",
        "privacy_centre/request.html",
        "privacy_centre/accessibility.html",
        // Printed and handed to the citizen at the counter.
        "privacy_centre/assisted_request.html",
    ];
    let mut problems = Vec::new();
    for name in citizen_pages {
        let text = visible_text(&std::fs::read_to_string(dir.join(name)).unwrap());
        problems.extend(falc::problems(&text).into_iter().map(|p| format!("{name}: {p}")));
    }
    // The easy-to-read notices of the example policies, as the notice page shows them.
    let mut falc_notices = 0;
    for file in guichet::policy::load::embedded_examples() {
        let activity: guichet::policy::model::ActivityFile = toml::from_str(&file.text).unwrap();
        let text = activity.notice.falc.unwrap_or_else(|| panic!("{} has no FALC notice", file.name));
        falc_notices += 1;
        problems.extend(falc::problems(&text).into_iter().map(|p| format!("{} (FALC notice): {p}", file.name)));
    }
    assert!(falc_notices >= 6, "every example policy has its FALC notice");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_falc_check_sees_what_it_must() {
    let t = visible_text("<p>Un {{ x }} deux.</p>{% if a %}<b>trois</b>{% endif %}");
    assert_eq!(t.split_whitespace().collect::<Vec<_>>(), ["Un", "X", "deux.", "trois"]);
}

#[tokio::test]
async fn the_header_sign_out_button_signs_out() {
    let mock = MockProvider::start().await;
    let app = builder(&mock, Backend::Sqlite).start().await;
    let s = citizen(&app, &mock, "sub-angela").await;
    let hub = page(&app, &s, HUB).await;
    let csrf = hub.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = app
        .client
        .post(app.url("/.guichet/deconnexion"))
        .header("cookie", format!("{SESSION}={s}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(cookie(&r, SESSION).as_deref(), Some(""), "the session cookie is cleared");
    assert_eq!(get(&app, Some(&s), HUB).await.status(), 303, "signed out: the hub asks to sign in again");
}

/// "Corriger": screen 2 lists the service's fields by the labels the policy gives; the value
/// typed goes to the application sealed as the proxy seals that field, never in clear in the
/// request nor in the store; a screen with nothing typed files nothing.
async fn a_rectification_sends_the_corrected_fields_sealed(backend: Backend) {
    use crate::propagation::{Mode, setup, wait_for};
    const CLEAR: &str = "angela.corrigee.qx9@example.fr";
    let s = setup(backend, Mode::AnswerNow, "rights_route = \"lettre\"").await;
    let angela = citizen(&s.app, &s.mock, "sub-angela").await;
    // Screen 1: one service at a time (the fields are the service's).
    let one = page(&s.app, &angela, "/.guichet/mes-donnees/droits/rectification").await;
    assert!(!one.contains("activite-toutes"), "no \"every service\" choice for a rectification");
    assert!(one.contains("value=\"lettre-information\""));
    // Screen 2: the field by its label, an input for the new value.
    let confirm = "/.guichet/mes-donnees/droits/rectification/confirmer?activite=lettre-information";
    let two = page(&s.app, &angela, confirm).await;
    assert!(two.contains("<label for=\"corriger-email\">Adresse e-mail</label>"), "{two}");
    assert!(two.contains("name=\"corriger_email\""));
    assert!(two.contains("Étape 2 sur 3"));
    let t = token(&two);
    let path = "/.guichet/mes-donnees/droits/rectification";
    // Nothing typed: screen 2 again, nothing filed.
    let empty = [("jeton", t.as_str()), ("activite", "lettre-information"), ("corriger_email", " ")];
    let r = post(&s.app, &angela, path, &empty).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("Écrivez au moins une information à corriger"));
    assert!(s.app.state.rights.open().await.unwrap().is_empty(), "nothing was filed");
    // The new address, and a name the screen did not offer (ignored).
    let form = [
        ("jeton", t.as_str()),
        ("activite", "lettre-information"),
        ("corriger_email", CLEAR),
        ("corriger_shoe_size", "38"),
    ];
    let r = post(&s.app, &angela, path, &form).await;
    assert_eq!(r.status(), 303);
    let receipt = location(&r);
    let id = receipt.split('?').next().unwrap().rsplit('/').next().unwrap().to_owned();
    assert!(page(&s.app, &angela, &receipt).await.contains("Étape 3 sur 3"), "three screens");
    wait_for(&s.app, &id, Status::Completed).await;
    let received = s.rights_app.received();
    assert_eq!(received.len(), 1);
    let claims = &received[0];
    assert_eq!(claims["type"], "rectification");
    let sent = claims["corrections"].as_object().unwrap();
    assert_eq!(sent.keys().collect::<Vec<_>>(), ["email"], "only the offered field");
    let sealed = sent["email"].as_str().unwrap();
    assert!(sealed.starts_with("gch2."), "{sealed}");
    assert!(!claims.to_string().contains(CLEAR), "no clear value in the request");
    // It opens to the typed value for this citizen's key, as the proxy's tokens do.
    let vault = s.app.state.crypto.as_ref().unwrap();
    let (subject, activity) = vault.owner_of(sealed).await.unwrap().unwrap();
    let (_, field_subject) = subjects(&s.app, &angela).await;
    assert_eq!(subject, field_subject);
    let ctx = guichet::crypto::FieldContext { activity: &activity, field: "email", subject: &subject };
    assert_eq!(vault.open(&ctx, sealed).await.unwrap().as_str(), CLEAR);
    // Nowhere in clear in the store.
    let bytes = crate::at_rest::store_bytes(&s.app).await;
    assert!(!bytes.windows(CLEAR.len()).any(|w| w == CLEAR.as_bytes()), "the value is in the store in clear");
}

on_both_stores!(a_rectification_sends_the_corrected_fields_sealed);

/// The newsletter's policy with a `pass` field ("Commune") and an encrypted field without a
/// label, `rights_endpoint` kept or dropped.
fn newsletter_with_offline_fields(endpoint: bool) -> String {
    let extra = "[[fields]]\nname = \"town\"\nlabel = \"Commune\"\ncategory = \"contact\"\nin = [\"form\"]\n\
                 protection = \"pass\"\n\n[[fields]]\nname = \"internal_ref\"\ncategory = \"contact\"\n\
                 in = [\"form\"]\nprotection = \"encrypt\"\n\n[[recipients]]";
    let policy = include_str!("../../policies/lettre-information.toml").replacen("[[recipients]]", extra, 1);
    if endpoint { policy } else { policy.replacen("rights_endpoint = \"/droits\"", "", 1) }
}

/// "Corriger", screen 2: the fields that cannot be corrected online are named (the `pass`
/// field by its label, the unlabelled one as "other information"), with where to go instead;
/// a service without a rights endpoint says that nothing is typed here.
#[tokio::test]
async fn the_rectification_screen_says_what_cannot_be_corrected_online() {
    let mock = MockProvider::start().await;
    let start = |policy: String| {
        spawn_app().with_citizen_provider(mock.issuer()).with_policies(&[("lettre.toml", &policy)]).with(|s, up| {
            let mut lettre = route("lettre", "/lettre-information", &format!("http://{up}"));
            lettre.access = RouteAccess::Citizen;
            lettre.no_personal_data = false;
            s.routes.push(lettre);
        })
    };
    let confirm = "/.guichet/mes-donnees/droits/rectification/confirmer?activite=lettre-information";
    let address = "Mairie de Démoville, 1 place de la Mairie, 99999 Démoville";

    let app = start(newsletter_with_offline_fields(true)).start().await;
    let angela = citizen(&app, &mock, "sub-angela").await;
    let two = page(&app, &angela, confirm).await;
    assert!(two.contains("name=\"corriger_email\""), "the sealed, labelled field is offered");
    assert!(!two.contains("corriger_town") && !two.contains("corriger_internal_ref"), "{two}");
    let offline = two.split("id=\"pas-en-ligne\"").nth(1).expect("a section on what is not corrected online");
    assert!(offline.contains("<li>Commune</li>"), "{offline}");
    assert!(offline.contains("d'autres informations"), "{offline}");
    assert!(!offline.contains("internal_ref"), "a field's technical name is never shown");
    assert!(offline.contains("venez à l'accueil de la mairie") && offline.contains(address), "{offline}");

    // Without a rights endpoint nothing is typed here; the page says who follows up.
    let app = start(newsletter_with_offline_fields(false)).start().await;
    let angela = citizen(&app, &mock, "sub-angela").await;
    let two = page(&app, &angela, confirm).await;
    assert!(!two.contains("corriger_"), "{two}");
    assert!(two.contains("la correction ne s'écrit pas sur cette page") && two.contains(address), "{two}");
    // Other rights do not show it.
    let erase =
        page(&app, &angela, "/.guichet/mes-donnees/droits/effacement/confirmer?activite=lettre-information").await;
    assert!(!erase.contains("pas-en-ligne"));
}

/// The `href`s of the header's account menu.
fn header_links(html: &str) -> Vec<String> {
    let nav = html.split("aria-label=\"Menu du compte\"").nth(1).unwrap().split("</nav>").next().unwrap();
    nav.split("<a href=\"").skip(1).map(|a| a.split('"').next().unwrap().to_owned()).collect()
}

/// The header links each person to the areas their roles open (computed through
/// `auth::gate::PageRoles`), each link opens for them, and "Espace agent" lists what the agent
/// may do, the assisted mode first.
async fn the_header_links_each_person_to_their_areas(backend: Backend) {
    let p = crate::rights_agent::parties(backend).await;
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let space = "/.guichet/agent/";
    let expected: [(&str, &str, &[&str]); 4] = [
        ("citizen", angela.as_str(), &[HUB, "/.guichet/deconnexion"]),
        ("counter agent", p.counter.as_str(), &[space, "/.guichet/deconnexion"]),
        ("DPO", p.dpo.as_str(), &["/.guichet/dpo/", "/.guichet/deconnexion"]),
        ("agent without a gateway role", p.outsider.as_str(), &["/.guichet/deconnexion"]),
    ];
    for (who, session, links) in expected {
        let html = page(&p.app, session, "/.guichet/informations").await;
        let mut found = header_links(&html);
        // Signed in, sign-out is a button: the link is the signed-out fallback.
        found.push("/.guichet/deconnexion".into());
        assert_eq!(found, links, "{who}");
        for link in links.iter().filter(|l| !l.ends_with("deconnexion")) {
            assert_eq!(get(&p.app, Some(session), link).await.status(), 200, "{who} opens {link}");
        }
    }
    // The agent's space: the assisted mode for the counter, the console for the DPO.
    let counter = page(&p.app, &p.counter, space).await;
    assert!(counter.contains("href=\"/.guichet/guichet-agent/\""), "{counter}");
    assert!(!counter.contains("href=\"/.guichet/dpo/\""));
    assert_eq!(get(&p.app, Some(&p.counter), "/.guichet/guichet-agent/").await.status(), 200);
    let dpo = page(&p.app, &p.dpo, space).await;
    assert!(dpo.contains("href=\"/.guichet/dpo/\"") && !dpo.contains("href=\"/.guichet/guichet-agent/\""));
    let outsider = page(&p.app, &p.outsider, space).await;
    assert!(outsider.contains("aucune page de la passerelle"));
    assert!(!outsider.contains("guichet-agent") && !outsider.contains("href=\"/.guichet/dpo/\""));
    // A citizen is refused the agents' page; nobody signed in is sent to the agents' sign-in.
    assert_eq!(get(&p.app, Some(&angela), space).await.status(), 403);
    let r = get(&p.app, None, space).await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/.guichet/agent/connexion"));
}

on_both_stores!(the_header_links_each_person_to_their_areas);
