//! A right in three screens, without JavaScript: 1. choose the service (`GET …/droits/{right}`),
//! 2. read what will happen, what may be refused and by which date, then confirm
//! (`GET …/droits/{right}/confirmer`, a form posting with the session's CSRF token), 3. the
//! reference and a printable receipt (`GET …/demandes/{id}`, after the POST's redirect).

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{RightLink, citizen, link, offered_rights, right_of_slug};
use crate::app::{App, AppState};
use crate::audit::{Actor, ActorKind, Ident};
use crate::auth::routes::own_page;
use crate::clock::paris_date;
use crate::error::GatewayError;
use crate::pages::{Chrome, PROCEDURE_PREFIX, REQUEST_PREFIX, french_date, redirect};
use crate::rights::deadline::Deadline;
use crate::rights::request::{Channel, IdentityProof, Right, Status};
use crate::rights::rules::{Applicability, applicability};
use crate::rights::service::{By, NewRequest, RightsError, RightsRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.guichet/mes-donnees/droits/{right}", get(choose).post(file))
        .route("/.guichet/mes-donnees/droits/{right}/confirmer", get(confirm))
        .route("/.guichet/mes-donnees/demandes/{id}", get(receipt))
        .route("/.guichet/mes-donnees/demandes/{id}/telecharger", get(download))
}

/// What each right does, in a few plain sentences.
pub(super) struct Explained {
    pub(super) what: &'static str,
    pub(super) happens: &'static str,
    pub(super) refused: &'static str,
}

pub(super) fn explained(right: Right) -> Explained {
    match right {
        Right::Access => Explained {
            what: "Vous demandez une copie de vos données.",
            happens: "La mairie rassemble vos données. Vous recevez une copie, avec les buts et les durées.",
            refused: "Seulement si vous faites souvent la même demande sans raison.",
        },
        Right::Portability => Explained {
            what: "Vous demandez vos données dans un fichier, pour les donner à un autre service.",
            happens: "La mairie prépare un fichier avec les données que vous avez données.",
            refused: "Seulement si vous faites souvent la même demande sans raison.",
        },
        Right::Rectification => Explained {
            what: "Vous demandez de corriger une donnée fausse ou de compléter une donnée.",
            happens: "Vous écrivez la bonne information. La mairie l'envoie au service. Il peut demander un justificatif.",
            refused: "Si la nouvelle information ne peut pas être vérifiée.",
        },
        Right::Erasure => Explained {
            what: "Vous demandez d'effacer vos données.",
            happens: "La mairie efface vos données dans ce service et prévient ceux qui les ont reçues.",
            refused: "Si la loi oblige la mairie à garder ces données. Dans ce cas, nous vous disons pourquoi.",
        },
        Right::Restriction => Explained {
            what: "Vous demandez de geler vos données : la mairie les garde, mais ne les utilise plus.",
            happens: "Vos données sont gelées le temps de vérifier. Nous vous prévenons avant de les dégeler.",
            refused: "Si aucune raison prévue par la loi ne s'applique.",
        },
        Right::Objection => Explained {
            what: "Vous demandez que la mairie arrête d'utiliser vos données.",
            happens: "Un agent étudie votre demande. Si vous avez raison, la mairie arrête.",
            refused: "Si la mairie a une raison sérieuse et prévue par la loi de continuer.",
        },
    }
}

/// A service the person may pick on the first screen.
struct Choice {
    id: String,
    name: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "privacy_centre/choose.html")]
struct ChoosePage<'a> {
    chrome: &'a Chrome,
    right: RightLink,
    e: Explained,
    choices: &'a [Choice],
    /// Access and portability may cover every service at once.
    all_services: bool,
}

#[derive(Template)]
#[template(path = "privacy_centre/confirm.html")]
struct ConfirmPage<'a> {
    chrome: &'a Chrome,
    right: RightLink,
    e: Explained,
    service: &'a str,
    activity: &'a str,
    /// Set when an agent decides (objection): the person is told before confirming.
    agent_decides: bool,
    due: String,
    csrf: &'a str,
    /// Rectification: the fields the citizen may correct here, with what they typed.
    fields: &'a [Correctable],
    /// What to fix before confirming again.
    message: Option<&'static str>,
    /// Rectification: what cannot be corrected on this page, and where to go instead.
    offline: Option<Offline>,
    /// Rectification: the date of the application's answer the current values come from.
    current_on: Option<String>,
}

/// The fields a rectification screen cannot take (`pass` fields, fields without a label, or
/// every field when the service has no rights endpoint), and where to write instead.
pub(super) struct Offline {
    /// Their labels, when the policy gives one.
    pub(super) labels: Vec<String>,
    /// Some have no label: "other information".
    pub(super) unnamed: bool,
    /// The controller's postal address, from the policy.
    pub(super) address: String,
}

/// What `activity` does not let a citizen correct online; `None` when everything can be.
pub(super) fn offline(app: &App, activity: Option<&str>) -> Option<Offline> {
    let set = app.policies.load();
    let a = set.activity(activity?)?;
    let (labels, unnamed) = crate::rights::rectification::not_correctable(a);
    let nothing_online = crate::rights::rectification::correctable(a).is_empty();
    (nothing_online || !labels.is_empty() || unnamed).then(|| Offline {
        labels: labels.into_iter().map(str::to_owned).collect(),
        unnamed,
        address: a.controller.address.clone(),
    })
}

/// A field the rectification screen offers: its name, its label, the value typed (if any),
/// and what the application last said it holds (the citizen's screen only).
pub(super) struct Correctable {
    pub(super) name: String,
    pub(super) label: String,
    pub(super) value: String,
    pub(super) current: Vec<String>,
}

/// Form names of the corrected values: `corriger_<field>`.
const CORRECT_PREFIX: &str = "corriger_";

/// A corrected value posted as `corriger_<field>`: the field's name and the value, trimmed;
/// `None` for another name or an empty value.
pub(super) fn correction(key: &str, value: &str) -> Option<(String, String)> {
    let value = value.trim();
    let name = key.strip_prefix(CORRECT_PREFIX)?;
    (!value.is_empty()).then(|| (name.to_owned(), value.to_owned()))
}

#[derive(Template)]
#[template(path = "privacy_centre/request.html")]
struct RequestPage<'a> {
    chrome: &'a Chrome,
    new: bool,
    id: &'a str,
    right: &'static str,
    service: &'a str,
    received: String,
    due: String,
    status: &'static str,
    answer: Option<String>,
    /// For access and portability: the download, once every application has answered.
    export: Option<ExportState>,
}

/// "Télécharger mes données" on the last screen: ready now, or ready by a date.
enum ExportState {
    Ready { download: String },
    ReadyBy { date: String },
}

/// Where an access or portability request's export stands: ready once every application
/// answered (at once when they answer at once), else by the request's due date.
fn export_state(r: &RightsRequest, today: time::Date) -> Option<ExportState> {
    if crate::rights::export::Exports::check(r).is_err() {
        return None;
    }
    Some(if matches!(r.status, Status::Completed | Status::PartlyCompleted) {
        ExportState::Ready { download: format!("{REQUEST_PREFIX}{}/telecharger", r.id) }
    } else {
        ExportState::ReadyBy { date: french_date(r.due_on(today)) }
    })
}

#[derive(Deserialize)]
struct ActivityQuery {
    activite: Option<String>,
}

/// The confirming form: the CSRF token, the service and, for a rectification, the corrected
/// values (`corriger_<field>`), read as pairs since their names come from the policy.
#[derive(Default)]
struct FileForm {
    jeton: Option<String>,
    activite: Option<String>,
    corrections: std::collections::BTreeMap<String, String>,
}

impl FileForm {
    fn of(pairs: Vec<(String, String)>) -> Self {
        let mut f = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "jeton" => f.jeton = Some(v),
                "activite" => f.activite = Some(v),
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

#[derive(Deserialize)]
struct ReceiptQuery {
    nouvelle: Option<String>,
}

fn not_found() -> Response {
    GatewayError::NotFound.respond(true, None, None)
}

/// The services for which `right` is offered.
fn services_for(app: &App, right: Right) -> Vec<(String, String)> {
    app.policies
        .load()
        .activities
        .iter()
        .filter(|a| offered_rights(a).contains(&right))
        .map(|a| (a.id.clone(), a.name.clone()))
        .collect()
}

pub(super) fn covers_all(right: Right) -> bool {
    // A rectification names its fields, so it concerns one service.
    matches!(right, Right::Access | Right::Portability)
}

/// The fields `activity` lets a citizen correct online, with the values `typed`.
pub(super) fn correctable(
    app: &App,
    activity: Option<&str>,
    typed: &std::collections::BTreeMap<String, String>,
) -> Vec<Correctable> {
    let set = app.policies.load();
    let Some(a) = activity.and_then(|id| set.activity(id)) else { return Vec::new() };
    crate::rights::rectification::correctable(a)
        .into_iter()
        .map(|(name, label)| Correctable {
            name: name.to_owned(),
            label: label.to_owned(),
            value: typed.get(name).cloned().unwrap_or_default(),
            current: Vec::new(),
        })
        .collect()
}

/// Screen 1: which service.
async fn choose(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    Query(q): Query<ActivityQuery>,
) -> Response {
    let session = match citizen(&app, &headers, &uri).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(right) = right_of_slug(&slug) else { return not_found() };
    let services = services_for(&app, right);
    let only_one = services.len() == 1 && !covers_all(right);
    let choices: Vec<Choice> = services
        .into_iter()
        .map(|(id, name)| Choice { checked: q.activite.as_deref() == Some(id.as_str()) || only_one, id, name })
        .collect();
    let chrome = app.auth.chrome(Some(&session));
    let page = ChoosePage {
        chrome: &chrome,
        right: link(right),
        e: explained(right),
        choices: &choices,
        all_services: covers_all(right),
    };
    own_page(&app.auth, StatusCode::OK, &page, &chrome)
}

/// Screen 2: what will happen, what may be refused, by which date; the confirming form.
async fn confirm(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    Query(q): Query<ActivityQuery>,
) -> Response {
    let session = match citizen(&app, &headers, &uri).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(right) = right_of_slug(&slug) else { return not_found() };
    confirm_page(&app, &session, right, q.activite, &Default::default(), None).await
}

/// Screen 2, possibly again with what to fix and the values already typed.
async fn confirm_page(
    app: &App,
    session: &crate::auth::session::Session,
    right: Right,
    activity: Option<String>,
    typed: &std::collections::BTreeMap<String, String>,
    message: Option<&'static str>,
) -> Response {
    let slug = super::slug(right);
    let activity = activity.filter(|a| !a.is_empty() && a != "toutes");
    let (service, agent_decides) = match activity.as_deref() {
        None if covers_all(right) => ("Tous les services".to_owned(), false),
        // Without a service, the first screen again.
        None => return redirect(&format!("{PROCEDURE_PREFIX}{slug}")),
        Some(id) => {
            let set = app.policies.load();
            let Some(a) = set.activity(id).filter(|a| super::offered_rights(a).contains(&right)) else {
                return GatewayError::NotFound.respond(true, None, None);
            };
            let decides = super::bases(a).iter().any(|b| applicability(right, *b) == Applicability::AgentDecides);
            (a.name.clone(), decides)
        }
    };
    let today = paris_date(app.clock.now());
    let due = french_date(Deadline::new(today).due_on(today));
    let csrf = app.auth.csrf_token(session);
    let chrome = app.auth.chrome(Some(session));
    let rectification = right == Right::Rectification;
    let mut fields = if rectification { correctable(app, activity.as_deref(), typed) } else { Vec::new() };
    let offline = if rectification { offline(app, activity.as_deref()) } else { None };
    let current_on = match (fields.is_empty(), activity.as_deref()) {
        (false, Some(id)) => with_current_values(app, session, id, &mut fields).await,
        _ => None,
    };
    let page = ConfirmPage {
        chrome: &chrome,
        right: link(right),
        e: explained(right),
        service: &service,
        activity: activity.as_deref().unwrap_or(""),
        agent_decides,
        due,
        csrf: &csrf,
        fields: &fields,
        message,
        offline,
        current_on,
    };
    let status = if message.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    own_page(&app.auth, status, &page, &chrome)
}

/// Fills each field's current value from the application's answer to the citizen's latest
/// access request covering `activity` (`rights::rectification::current_values`); returns that
/// answer's date in words, `None` when no answer is kept (the screen then links the access
/// procedure, where the citizen sees what is recorded).
async fn with_current_values(
    app: &App,
    session: &crate::auth::session::Session,
    activity: &str,
    fields: &mut [Correctable],
) -> Option<String> {
    let set = app.policies.load();
    let a = set.activity(activity)?;
    let owners = [app.auth.field_subject_in(session, a.sector), app.auth.field_subject(session)];
    let subject = app.auth.consent_subject(session);
    let mut current = crate::rights::rectification::current_values(app, subject, &owners, a).await;
    for f in fields.iter_mut() {
        f.current = current.values.remove(&f.name).unwrap_or_default();
    }
    current.answered_at.map(|at| french_date(crate::clock::in_paris(at).date()))
}

/// The confirmation's POST: files the request (online, identified by the sign-in), then
/// shows screen 3.
async fn file(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let f = FileForm::of(pairs);
    let session = match app.auth.identify(&headers).await {
        Ok(Some(s)) if s.kind == crate::auth::session::Kind::Citizen => s,
        Ok(_) => return GatewayError::Forbidden("sign in first").respond(true, None, None),
        Err(_) => return GatewayError::StoreUnavailable.respond(true, None, None),
    };
    if !f.jeton.as_deref().is_some_and(|t| app.auth.csrf_ok(&session, t)) {
        tracing::warn!("rights form refused: missing or wrong CSRF token");
        return GatewayError::Forbidden("the form is out of date; reload the page").respond(true, None, None);
    }
    let Some(right) = right_of_slug(&slug) else { return not_found() };
    // A rectification whose screen offered fields needs at least one corrected value.
    let fields = if right == Right::Rectification {
        correctable(&app, f.activite.as_deref(), &f.corrections)
    } else {
        Vec::new()
    };
    let offered = !fields.is_empty();
    // Only the fields the screen offered: any other name posted is ignored.
    let mut f = f;
    f.corrections.retain(|name, _| fields.iter().any(|c| c.name == *name));
    if offered && f.corrections.is_empty() {
        let message = Some("Écrivez au moins une information à corriger.");
        return confirm_page(&app, &session, right, f.activite, &f.corrections, message).await;
    }
    let subject = app.auth.consent_subject(&session).to_owned();
    let (Ok(id), Ok(role)) = (Ident::new(subject.as_str()), Ident::new("citizen")) else {
        return GatewayError::Internal.respond(true, None, Some("subject is not a journal identifier".into()));
    };
    let new = NewRequest {
        subject,
        activity: f.activite.filter(|a| !a.is_empty()),
        right,
        channel: Channel::Online,
        agent: None,
        identity: IdentityProof::SignIn { acr: session.acr.clone() },
    };
    let by = By { actor: Actor { kind: ActorKind::Citizen, id }, role };
    let policies = app.policies.load();
    // As the citizen's JSON API does: the applications are asked at once (an export can then
    // be ready while the citizen waits), and the citizen gets the "received" notice.
    let subjects = crate::rights::propagation::Subjects::of(&app, &session);
    // Recorded with the request, as the JSON API does: the DPO's console, the command line,
    // the counter and retention reach the request's sectors through them afterwards.
    if let Err(e) = app.rights.remember_subjects(&new.subject, &subjects).await {
        return GatewayError::StoreUnavailable.respond(true, None, Some(e.to_string()));
    }
    // An erasure of everything forgets the contact address: recording it would undo that.
    let everything = new.right == Right::Erasure && new.activity.is_none();
    let address = crate::notify::address_of(&session, None).ok().flatten().filter(|_| !everything);
    let created = match app.rights.create(&policies, new, &by).await {
        Ok(r) => {
            // Before the applications are asked: an answer at once finds the address.
            if let Some(a) = &address {
                crate::notify::remember_address(&app, &r.subject, a).await;
            }
            crate::rights::propagation::start(&app, &r, &subjects).await
        }
        Err(e) => Err(e),
    };
    if let (Ok(r), true) = (&created, offered) {
        // Sealed and sent with the request; the values never reach the logs.
        if let Err(e) = crate::rights::rectification::correct(&app, r, &f.corrections).await {
            return e.respond(true, None, Some("the corrections of a new rectification were refused".into()));
        }
    }
    match created {
        Ok(r) => {
            crate::notify::rights_received(&app, &r, None).await;
            redirect(&format!("{REQUEST_PREFIX}{}?nouvelle=1", r.id))
        }
        Err(RightsError::UnknownActivity) => GatewayError::NotFound.respond(true, None, None),
        Err(e) => GatewayError::StoreUnavailable.respond(true, None, Some(e.to_string())),
    }
}

/// Screen 3 (and any later visit): the reference, the dates, the answer; prints as a receipt.
async fn receipt(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<ReceiptQuery>,
) -> Response {
    let session = match citizen(&app, &headers, &uri).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let subject = app.auth.consent_subject(&session);
    let r = match app.rights.get(&id).await {
        // Someone else's request is answered like one that does not exist.
        Ok(r) if r.subject == subject => r,
        Ok(_) | Err(RightsError::NotFound) => return GatewayError::NotFound.respond(true, None, None),
        Err(e) => return GatewayError::StoreUnavailable.respond(true, None, Some(e.to_string())),
    };
    let service = super::service_name(&app, r.activity.as_deref());
    let today = paris_date(app.clock.now());
    let export = export_state(&r, today);
    if let Some(ExportState::Ready { .. }) = export {
        // The citizen sees the download here: no message needs to tell them.
        crate::notify::export_seen(&app, &r).await;
    }
    let chrome = app.auth.chrome(Some(&session));
    let page = RequestPage {
        chrome: &chrome,
        new: q.nouvelle.is_some(),
        id: &r.id,
        right: r.right.french(),
        service: &service,
        received: crate::pages::french_time(r.received_at),
        due: french_date(r.due_on(today)),
        status: r.status.french(),
        answer: r.answer.as_ref().map(super::answer_words),
        export,
    };
    own_page(&app.auth, StatusCode::OK, &page, &chrome)
}

/// "Télécharger mes données": the archive of a ready request, built for this session and
/// handed out at once (both steps journaled by the export service).
async fn download(State(app): State<AppState>, headers: HeaderMap, uri: Uri, Path(id): Path<String>) -> Response {
    let session = match citizen(&app, &headers, &uri).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let subject = app.auth.consent_subject(&session).to_owned();
    let r = match app.rights.get(&id).await {
        Ok(r) if r.subject == subject => r,
        Ok(_) | Err(RightsError::NotFound) => return not_found(),
        Err(e) => return GatewayError::StoreUnavailable.respond(true, None, Some(e.to_string())),
    };
    if !matches!(export_state(&r, paris_date(app.clock.now())), Some(ExportState::Ready { .. })) {
        return not_found();
    }
    let (Ok(actor), Ok(role)) = (Ident::new(subject.as_str()), Ident::new("citizen")) else {
        return GatewayError::Internal.respond(true, None, Some("subject is not a journal identifier".into()));
    };
    let by = By { actor: Actor { kind: ActorKind::Citizen, id: actor }, role };
    let owner = crate::rights::export::Owner {
        subject,
        field_subject: Some(app.auth.field_subject(&session).to_owned()),
        sectors: crate::rights::export::session_sectors(&app, &session),
        claims: Some(session.claims.clone()),
    };
    let archive = match app.exports.prepare(&app, &r, &owner, &session, &by).await {
        Ok(ready) => app.exports.download(&app, &r.id, &ready.token, &session.id_hash, &by).await,
        Err(e) => Err(e),
    };
    match archive {
        Ok(zip) => zip_response(&r.id, zip),
        Err(e) => GatewayError::StoreUnavailable.respond(true, None, Some(e.to_string())),
    }
}

fn zip_response(id: &str, archive: Vec<u8>) -> Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse as _;
    let mut resp = (StatusCode::OK, archive).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"mes-donnees-{id}.zip\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}
