//! The agent's assisted mode (`/.guichet/guichet-agent/`): an agent holding one of
//! `rights.assisted_roles` files a right with a citizen at the counter or on the phone, in the
//! same three screens as the citizen's procedure. 1. the right, the service, the channel and
//! how identity was checked (the kind of document seen, never a copy; or the one-time code
//! the citizen reads out from their consent page); 2. what will happen, read to the citizen,
//! then confirmed; 3. the reference on a printable A4 receipt, with the printable export for
//! access and portability at the counter.
//!
//! A citizen without an online account has no code: the agent checks a document at the
//! counter and the request gets a fresh pseudonymous subject (`sans-compte:…`), so the citizen
//! follows it with the printed reference. Requests are filed through `App::rights`, as the
//! agents' JSON API files them (`rights::agent_api`), never through the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::procedure::{Correctable, Explained, Offline, correctable, correction, covers_all, explained, offline};
use super::{RightLink, link, offered_rights, right_of_slug};
use crate::app::{App, AppState};
use crate::audit::{Actor, ActorKind, Ident};
use crate::auth::routes::own_page;
use crate::auth::session::{Kind, Session};
use crate::clock::{paris_date, random_hex};
use crate::consent::pages::agent_ident;
use crate::error::{GatewayError, sign_in_url};
use crate::pages::{ASSISTED_CONFIRM_PATH, ASSISTED_PATH, ASSISTED_REQUEST_PREFIX, Chrome, french_date, redirect};
use crate::rights::deadline::Deadline;
use crate::rights::propagation::Subjects;
use crate::rights::request::{Channel, DocumentKind, IdentityProof, Right};
use crate::rights::service::{By, NewRequest, RightsError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.guichet/guichet-agent", get(|| async { redirect(ASSISTED_PATH) }))
        .route(ASSISTED_PATH, get(form).post(review))
        .route(ASSISTED_CONFIRM_PATH, post(file))
        .route("/.guichet/guichet-agent/demandes/{id}", get(receipt))
}

/// The identity checks an agent may record: a document's kind, or the code alone.
const DOCUMENTS: [(&str, Option<DocumentKind>, &str); 6] = [
    ("carte-identite", Some(DocumentKind::IdentityCard), "Carte d'identité"),
    ("passeport", Some(DocumentKind::Passport), "Passeport"),
    ("titre-sejour", Some(DocumentKind::ResidencePermit), "Titre de séjour"),
    ("permis", Some(DocumentKind::DrivingLicence), "Permis de conduire"),
    ("autre", Some(DocumentKind::Other), "Autre pièce officielle avec photo"),
    ("code-seul", None, "Aucune pièce : le code de l'usager seulement"),
];

/// The channels of the assisted mode (post and e-mail requests are typed in by the DPO's
/// team through the API).
const CHANNELS: [(&str, Channel, &str); 2] =
    [("counter", Channel::Counter, "Au guichet"), ("phone", Channel::Phone, "Par téléphone")];

/// The purpose journaled with the values an agent sees on screen 2 of a rectification: the
/// citizen's hub says it in words ("who saw my data").
pub(super) const RECTIFICATION_PURPOSE: &str = "correction-au-guichet";

/// Recorded as the identity proof when the citizen's code alone identified them: the code is
/// made on their consent page, so only after they signed in.
const CODE_ONLY_ACR: &str = "one_time_code";

/// The form of screens 1 and 2 (screen 2 carries it in hidden fields), read as pairs since
/// the corrected values' names (`corriger_<field>`) come from the policy.
#[derive(Debug, Default)]
struct AssistedForm {
    jeton: Option<String>,
    droit: String,
    activite: String,
    canal: String,
    code: String,
    piece: String,
    /// Set by screen 2's "back" button: screen 1 again, filled in.
    modifier: Option<String>,
    /// A rectification: the corrected values typed on screen 2, by field name.
    corrections: BTreeMap<String, String>,
}

impl AssistedForm {
    fn of(pairs: Vec<(String, String)>) -> Self {
        let mut f = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "jeton" => f.jeton = Some(v),
                "droit" => f.droit = v,
                "activite" => f.activite = v,
                "canal" => f.canal = v,
                "code" => f.code = v,
                "piece" => f.piece = v,
                "modifier" => f.modifier = Some(v),
                _ => {
                    if let Some((name, value)) = correction(&k, &v) {
                        f.corrections.insert(name, value);
                    }
                }
            }
        }
        f
    }
}

/// The form once checked.
struct Checked {
    right: Right,
    activity: Option<String>,
    service: String,
    channel: Channel,
    channel_label: &'static str,
    document: Option<DocumentKind>,
    document_label: &'static str,
    code: Option<String>,
    /// A code whose citizen has no pseudonyms recorded (made before they were): the request
    /// is done by hand, like one without a code, and screen 2 takes no corrected values.
    by_hand: bool,
    /// The citizen behind the code, when their pseudonyms are recorded: their subject and
    /// pseudonyms (what the application last sent them is read under these).
    citizen: Option<(String, Subjects)>,
}

struct Pick {
    value: String,
    label: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "privacy_centre/assisted_form.html")]
struct FormPage<'a> {
    chrome: &'a Chrome,
    csrf: &'a str,
    message: Option<&'a str>,
    rights: &'a [Pick],
    services: &'a [Pick],
    channels: &'a [Pick],
    documents: &'a [Pick],
    code: &'a str,
    /// The corrected values typed on screen 2, kept when the agent comes back to screen 1.
    corrections: &'a BTreeMap<String, String>,
}

#[derive(Template)]
#[template(path = "privacy_centre/assisted_confirm.html")]
struct ConfirmPage<'a> {
    chrome: &'a Chrome,
    csrf: &'a str,
    right: RightLink,
    e: Explained,
    f: &'a AssistedForm,
    c: &'a Checked,
    due: String,
    /// A rectification for a citizen with an online account: the fields the agent may type
    /// the corrected values into (as on the citizen's own screen 2), with what was typed.
    inputs: &'a [Correctable],
    /// A rectification: what cannot be corrected from this screen.
    offline: Option<Offline>,
    /// A rectification for a citizen without an online account: nothing is typed here.
    no_account: bool,
    /// A rectification with a code made before pseudonyms were recorded: nothing is typed
    /// here either, the service corrects by hand.
    old_code: bool,
    /// What to fix before confirming again.
    message: Option<&'static str>,
    /// A rectification: the date of the application's answer the current values come from.
    current_on: Option<String>,
    /// Some current values are hidden: the agent's role may not see those fields.
    hidden: bool,
}

#[derive(Template)]
#[template(path = "privacy_centre/assisted_request.html")]
struct ReceiptPage<'a> {
    chrome: &'a Chrome,
    new: bool,
    id: &'a str,
    right: &'static str,
    service: &'a str,
    channel: &'static str,
    received: String,
    due: String,
    status: &'static str,
    answer: Option<String>,
    /// The printable export, for access and portability requests received at the counter.
    export: Option<String>,
}

#[derive(Deserialize)]
struct ReceiptQuery {
    nouvelle: Option<String>,
}

/// The signed-in agent holding an assisted role, with that role; or where to send them.
async fn assisting_agent(app: &App, headers: &HeaderMap) -> Result<(Arc<Session>, String), Response> {
    assisting_agent_at(app, headers, ASSISTED_PATH).await
}

/// [`assisting_agent`] for a page of the assisted mode at `here`, where the sign-in comes
/// back to. An agent without the role is refused (403), the refusal journaled.
pub(super) async fn assisting_agent_at(
    app: &App,
    headers: &HeaderMap,
    here: &str,
) -> Result<(Arc<Session>, String), Response> {
    match app.auth.identify(headers).await {
        Ok(Some(s)) if s.kind == Kind::Agent => {
            let role = s.roles.iter().find(|r| app.settings.rights.assisted_roles.contains(r)).cloned();
            match role {
                Some(role) => Ok((s, role)),
                None => {
                    crate::auth::gate::denied(app, &s, here, "page:assisted", None).await;
                    Err(GatewayError::Forbidden("the agent has no role allowing to file rights requests")
                        .respond(true, None, None))
                }
            }
        }
        Ok(_) => Err(redirect(&sign_in_url(true, None, Some(here)))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the session");
            Err(GatewayError::StoreUnavailable.respond(true, None, None))
        }
    }
}

/// The assisting agent posting `f`, refused without the session's CSRF token.
async fn posting_agent(app: &App, headers: &HeaderMap, f: &AssistedForm) -> Result<(Arc<Session>, String), Response> {
    let (session, role) = assisting_agent(app, headers).await?;
    if !f.jeton.as_deref().is_some_and(|t| app.auth.csrf_ok(&session, t)) {
        return Err(GatewayError::Forbidden("the form is out of date; reload the page").respond(true, None, None));
    }
    Ok((session, role))
}

fn options<T>(items: impl IntoIterator<Item = (String, String, T)>, chosen: &str) -> Vec<Pick> {
    items.into_iter().map(|(value, label, _)| Pick { checked: value == chosen, value, label }).collect()
}

/// Screen 1, possibly again with a message about what to fix.
fn form_page(app: &App, session: &Session, f: &AssistedForm, message: Option<&str>) -> Response {
    let rights =
        options(Right::ALL.into_iter().map(|r| (super::slug(r).to_owned(), r.french().to_owned(), ())), &f.droit);
    let all = std::iter::once(("toutes".to_owned(), "Tous les services".to_owned(), ()));
    let set = app.policies.load();
    let services = options(all.chain(set.activities.iter().map(|a| (a.id.clone(), a.name.clone(), ()))), &f.activite);
    let channels = options(CHANNELS.iter().map(|(v, _, l)| ((*v).to_owned(), (*l).to_owned(), ())), &f.canal);
    let documents = options(DOCUMENTS.iter().map(|(v, _, l)| ((*v).to_owned(), (*l).to_owned(), ())), &f.piece);
    let csrf = app.auth.csrf_token(session);
    let chrome = app.auth.chrome(Some(session));
    let page = FormPage {
        chrome: &chrome,
        csrf: &csrf,
        message,
        rights: &rights,
        services: &services,
        channels: &channels,
        documents: &documents,
        code: &f.code,
        corrections: &f.corrections,
    };
    let status = if message.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    own_page(&app.auth, status, &page, &chrome)
}

async fn form(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match assisting_agent(&app, &headers).await {
        Ok((session, _)) => form_page(&app, &session, &AssistedForm::default(), None),
        Err(r) => r,
    }
}

/// What is wrong with the form, in words for the agent.
fn check(app: &App, f: &AssistedForm) -> Result<Checked, &'static str> {
    let right = right_of_slug(&f.droit).ok_or("Choisissez la demande de l'usager.")?;
    let (activity, service) = match f.activite.as_str() {
        "toutes" if covers_all(right) => (None, "Tous les services".to_owned()),
        "toutes" => return Err("Pour cette demande, choisissez un seul service."),
        id => {
            let set = app.policies.load();
            let a = set.activity(id).ok_or("Choisissez le service.")?;
            if !offered_rights(a).contains(&right) {
                return Err("Ce service ne permet pas cette demande. La loi ne le prévoit pas.");
            }
            (Some(a.id.clone()), a.name.clone())
        }
    };
    let &(_, channel, channel_label) =
        CHANNELS.iter().find(|(v, _, _)| *v == f.canal).ok_or("Choisissez comment l'usager vous parle.")?;
    let &(_, document, document_label) =
        DOCUMENTS.iter().find(|(v, _, _)| *v == f.piece).ok_or("Dites comment vous avez vérifié l'identité.")?;
    let code = Some(crate::consent::normalise_code(&f.code)).filter(|c| !c.is_empty());
    if code.is_none() && document.is_none() {
        return Err("Sans pièce d'identité, demandez le code affiché sur la page de l'usager.");
    }
    if code.is_none() && channel == Channel::Phone {
        return Err("Par téléphone, demandez le code affiché sur la page de l'usager.");
    }
    Ok(Checked {
        right,
        activity,
        service,
        channel,
        channel_label,
        document,
        document_label,
        code,
        by_hand: false,
        citizen: None,
    })
}

/// The citizen behind `c`'s code, with their recorded pseudonyms (`None` for a code made
/// before they were recorded): the code is looked at, not used up. A wrong code gives `None`:
/// the confirmation says so when it tries to use it.
async fn code_citizen(app: &App, c: &Checked) -> Result<Option<(String, Option<Subjects>)>, Response> {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "cannot read a one-time code's citizen");
        GatewayError::StoreUnavailable.respond(true, None, None)
    };
    let Some(code) = c.code.as_deref() else { return Ok(None) };
    let Some(subject) = app.consent.code_subject(code).await.map_err(|e| unavailable(&e))? else {
        return Ok(None);
    };
    let subjects = app.rights.subjects_of(&subject).await.map_err(|e| unavailable(&e))?;
    Ok(Some((subject, subjects)))
}

/// [`check`], then who the code stands for: a code whose citizen has no pseudonyms recorded
/// is done by hand.
async fn checked(app: &App, f: &AssistedForm) -> Result<Result<Checked, &'static str>, Response> {
    match check(app, f) {
        Ok(mut c) => {
            match code_citizen(app, &c).await? {
                Some((subject, Some(subjects))) => c.citizen = Some((subject, subjects)),
                Some((_, None)) => c.by_hand = true,
                None => {}
            }
            Ok(Ok(c))
        }
        Err(message) => Ok(Err(message)),
    }
}

/// Screen 1's POST: screen 2 when the form is complete, screen 1 again otherwise. Nothing is
/// recorded and the code is not used yet.
async fn review(State(app): State<AppState>, headers: HeaderMap, Form(pairs): Form<Vec<(String, String)>>) -> Response {
    let f = AssistedForm::of(pairs);
    let (session, _) = match posting_agent(&app, &headers, &f).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if f.modifier.is_some() {
        return form_page(&app, &session, &f, None);
    }
    let c = match checked(&app, &f).await {
        Ok(Ok(c)) => c,
        Ok(Err(message)) => return form_page(&app, &session, &f, Some(message)),
        Err(r) => return r,
    };
    confirm_page(&app, &session, &f, &c, None).await
}

/// The fields screen 2 offers for `c`: a rectification's correctable fields, when the citizen
/// has an online account (their code) with pseudonyms recorded, so the values can be sealed
/// for them and sent under the pseudonym the application knows.
fn offered_fields(app: &App, f: &AssistedForm, c: &Checked) -> Vec<Correctable> {
    if c.right != Right::Rectification || c.code.is_none() || c.by_hand {
        return Vec::new();
    }
    correctable(app, c.activity.as_deref(), &f.corrections)
}

/// Screen 2, possibly again with what to fix and the values already typed.
async fn confirm_page(
    app: &App,
    session: &Session,
    f: &AssistedForm,
    c: &Checked,
    message: Option<&'static str>,
) -> Response {
    let today = paris_date(app.clock.now());
    let csrf = app.auth.csrf_token(session);
    let chrome = app.auth.chrome(Some(session));
    let rectification = c.right == Right::Rectification;
    let mut fields = offered_fields(app, f, c);
    let shown = match (&c.citizen, c.activity.as_deref(), fields.is_empty()) {
        (Some((subject, subjects)), Some(activity), false) => {
            with_current_values(app, session, subject, subjects, activity, &mut fields).await
        }
        _ => Shown::default(),
    };
    let page = ConfirmPage {
        chrome: &chrome,
        csrf: &csrf,
        right: link(c.right),
        e: explained(c.right),
        f,
        c,
        due: french_date(Deadline::new(today).due_on(today)),
        inputs: &fields,
        offline: if rectification && c.code.is_some() && !c.by_hand {
            offline(app, c.activity.as_deref())
        } else {
            None
        },
        no_account: rectification && c.code.is_none(),
        old_code: rectification && c.by_hand,
        message,
        current_on: shown.answered_on,
        hidden: shown.hidden,
    };
    let status = if message.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    own_page(&app.auth, status, &page, &chrome)
}

/// What screen 2 of a rectification shows of the application's last answer.
#[derive(Default)]
struct Shown {
    /// The answer's date in words; `None` when no answer is kept.
    answered_on: Option<String>,
    /// Some values were replaced by the placeholder.
    hidden: bool,
}

/// Fills each field's current value, as the citizen's own screen 2 does, from the
/// application's answer to the citizen's latest access request
/// (`rights::rectification::current_values`), under the pseudonyms recorded with their code.
/// A value is shown only when one of the agent's roles may see its field (`visible_to`, as
/// for a reveal in an application's page), else the placeholder; the values shown are
/// journaled as a reveal to this agent, so the citizen sees it in "who saw my data".
async fn with_current_values(
    app: &App,
    session: &Session,
    subject: &str,
    subjects: &Subjects,
    activity: &str,
    fields: &mut [Correctable],
) -> Shown {
    let set = app.policies.load();
    let Some(a) = set.activity(activity) else { return Shown::default() };
    let owners = subjects.fields_for(a.sector);
    let mut current = crate::rights::rectification::current_values(app, subject, &owners, a).await;
    let mut shown = Shown {
        answered_on: current.answered_at.map(|at| french_date(crate::clock::in_paris(at).date())),
        hidden: false,
    };
    let mut revealed = Vec::new();
    for f in fields.iter_mut() {
        let values = current.values.remove(&f.name).unwrap_or_default();
        if values.is_empty() {
            continue;
        }
        let visible_to = a.fields.iter().find(|x| x.name == f.name).map(|x| x.visible_to.as_slice()).unwrap_or(&[]);
        match session.roles.iter().find(|r| visible_to.contains(r)) {
            Some(role) => {
                revealed.push((f.name.clone(), role.clone()));
                f.current = values;
            }
            None => {
                shown.hidden = true;
                f.current = vec![crate::proxy::reveal::PLACEHOLDER.to_owned()];
            }
        }
    }
    if !revealed.is_empty() && !journal_reveal(app, session, subjects.field_in(a.sector), activity, &revealed).await {
        // A reveal that cannot be journaled does not happen (as in `proxy::reveal`).
        for f in fields.iter_mut().filter(|f| revealed.iter().any(|(name, _)| *name == f.name)) {
            f.current = vec![crate::proxy::reveal::PLACEHOLDER.to_owned()];
        }
        shown.hidden = true;
    }
    shown
}

/// Journals the values of `fields` (name, the role that may see it) shown to the agent on
/// screen 2 of a rectification, under the citizen's field pseudonym `owner`, with the purpose
/// [`RECTIFICATION_PURPOSE`]. False when it could not be journaled.
async fn journal_reveal(
    app: &App,
    session: &Session,
    owner: &str,
    activity: &str,
    fields: &[(String, String)],
) -> bool {
    use crate::audit::{AuditEvent, Operation, Outcome};
    let names: Result<Vec<Ident>, _> = fields.iter().map(|(name, _)| Ident::new(name.as_str())).collect();
    let role = fields.first().map(|(_, role)| role.as_str()).unwrap_or_default();
    let (Ok(names), Ok(agent), Ok(role), Ok(owner), Ok(activity)) =
        (names, Ident::new(agent_ident(session)), Ident::new(role), Ident::new(owner), Ident::new(activity))
    else {
        tracing::warn!("a reveal on the rectification screen was refused: an identifier is not journal-safe");
        return false;
    };
    let mut event = AuditEvent::system(Operation::Reveal { fields: names }, app.clock.now());
    event.actor = Actor { kind: ActorKind::Agent, id: agent };
    event.role = role;
    event.activity = Some(activity);
    event.purpose = Ident::new(RECTIFICATION_PURPOSE).ok();
    event.subject = Some(owner);
    event.outcome = Outcome::Success;
    match app.audit.append_sync(event).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "a reveal on the rectification screen was refused: it could not be journaled");
            false
        }
    }
}

/// Screen 2's POST: the code (if any) is used up, the request filed, then screen 3.
async fn file(State(app): State<AppState>, headers: HeaderMap, Form(pairs): Form<Vec<(String, String)>>) -> Response {
    let f = AssistedForm::of(pairs);
    let (session, role) = match posting_agent(&app, &headers, &f).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let c = match checked(&app, &f).await {
        Ok(Ok(c)) => c,
        Ok(Err(message)) => return form_page(&app, &session, &f, Some(message)),
        Err(r) => return r,
    };
    // A rectification whose screen offered fields needs at least one corrected value; only
    // the offered ones are kept. Checked before the code is used up.
    let fields = offered_fields(&app, &f, &c);
    let mut f = f;
    f.corrections.retain(|name, _| fields.iter().any(|c| c.name == *name));
    if !fields.is_empty() && f.corrections.is_empty() {
        return confirm_page(&app, &session, &f, &c, Some("Écrivez au moins une information à corriger.")).await;
    }
    let subject = match subject_of(&app, c.code.as_deref()).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let message = "Ce code ne marche pas : il est faux, déjà utilisé ou trop ancien. Demandez un nouveau code.";
            return form_page(&app, &session, &AssistedForm { code: String::new(), ..f }, Some(message));
        }
        Err(r) => return r,
    };
    let agent = agent_ident(&session);
    let (Ok(id), Ok(role)) = (Ident::new(agent.as_str()), Ident::new(role)) else {
        return GatewayError::Internal.respond(true, None, Some("agent or role is not a journal identifier".into()));
    };
    let identity = match c.document {
        Some(kind) => IdentityProof::Document { kind },
        None => IdentityProof::SignIn { acr: CODE_ONLY_ACR.to_owned() },
    };
    let new =
        NewRequest { subject, activity: c.activity, right: c.right, channel: c.channel, agent: Some(agent), identity };
    let by = By { actor: Actor { kind: ActorKind::Agent, id }, role };
    // Sent to the applications like an online request, under the pseudonyms recorded when the
    // citizen asked for their code (a citizen without an account: a handler's task).
    let created = match app.rights.create(&app.policies.load(), new, &by).await {
        Ok(r) => crate::rights::agent_api::start_assisted(&app, r).await,
        Err(e) => Err(e),
    };
    if let (Ok(r), false) = (&created, f.corrections.is_empty()) {
        // Sealed for the citizen and sent with the request, as on their own screen; the
        // values never reach the logs.
        if let Err(e) = crate::rights::rectification::correct(&app, r, &f.corrections).await {
            return e.respond(true, None, Some("the corrections of an assisted rectification were refused".into()));
        }
    }
    match created {
        Ok(r) => {
            crate::notify::rights_received(&app, &r, None).await;
            crate::rights::ops::tell_if_answered(&app, &r).await;
            redirect(&format!("{ASSISTED_REQUEST_PREFIX}{}?nouvelle=1", r.id))
        }
        Err(RightsError::UnknownActivity) => GatewayError::NotFound.respond(true, None, None),
        Err(e) => GatewayError::StoreUnavailable.respond(true, None, Some(e.to_string())),
    }
}

/// The citizen's pseudonymous subject: from their code, or a new one for a citizen without an
/// online account. `None` for a code that is unknown, used or expired.
async fn subject_of(app: &App, code: Option<&str>) -> Result<Option<String>, Response> {
    match code {
        Some(code) => app.consent.redeem_code(code).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot redeem a one-time code");
            GatewayError::StoreUnavailable.respond(true, None, None)
        }),
        None => random_hex::<16>(app.random.as_ref())
            .map(|hex| Some(format!("sans-compte:{hex}")))
            .map_err(|_| GatewayError::Internal.respond(true, None, Some("random generator failed".into()))),
    }
}

/// Screen 3 (and any later visit by an assisting agent): the receipt, printable on A4.
async fn receipt(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReceiptQuery>,
) -> Response {
    let (session, _) = match assisting_agent(&app, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let r = match app.rights.get(&id).await {
        // Requests made online are the citizen's own business: not shown here.
        Ok(r) if r.channel.is_assisted() => r,
        Ok(_) | Err(RightsError::NotFound) => return GatewayError::NotFound.respond(true, None, None),
        Err(e) => return GatewayError::StoreUnavailable.respond(true, None, Some(e.to_string())),
    };
    let service = super::service_name(&app, r.activity.as_deref());
    let exportable = matches!(r.right, Right::Access | Right::Portability) && r.channel == Channel::Counter;
    let today = paris_date(app.clock.now());
    let chrome = app.auth.chrome(Some(&session));
    let page = ReceiptPage {
        chrome: &chrome,
        new: q.nouvelle.is_some(),
        id: &r.id,
        right: r.right.french(),
        service: &service,
        channel: super::channel_words(r.channel),
        received: crate::pages::french_time(r.received_at),
        due: french_date(r.due_on(today)),
        status: r.status.french(),
        answer: r.answer.as_ref().map(super::answer_words),
        export: exportable.then(|| format!("{}/{}/impression", crate::rights::api::RIGHTS_API, r.id)),
    };
    own_page(&app.auth, StatusCode::OK, &page, &chrome)
}
