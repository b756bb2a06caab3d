//! "Lettres à envoyer" (`/.guichet/agent/courriers/`): the notices no e-mail could carry (the
//! citizen gave no address, or it was erased, or no mail channel is configured), for an agent
//! of the assisted mode (`rights.assisted_roles`) to print and post. Each line says what the
//! letter is about (its kind, the request's reference or the service, the date): nothing more
//! of the citizen, whom the gateway knows only by a pseudonym. "Imprimer la lettre" opens the
//! printable A4 letter (`NotifyService::letter`); "Lettre envoyée" records that it was posted
//! (`NotifyService::letter_posted`), journaled as `letter_posted`, and the line leaves the list.
//!
//! The postal address (decision, docs/notify.md): the gateway keeps none, so the letter's
//! address block is left blank for the agent to write by hand, from the service's own file
//! found with the reference (or the envelope of the citizen's request).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::assisted::assisting_agent_at;
use crate::app::{App, AppState};
use crate::audit::{Actor, ActorKind, AuditEvent, Ident, Operation, Outcome};
use crate::auth::routes::own_page;
use crate::auth::session::Session;
use crate::error::GatewayError;
use crate::notify::{Notice, WaitingLetter};
use crate::pages::{Chrome, LETTERS_PATH, french_date, french_time, redirect};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.guichet/agent/courriers", get(|| async { redirect(LETTERS_PATH) }))
        .route(LETTERS_PATH, get(list))
        .route("/.guichet/agent/courriers/{id}", get(print))
        .route("/.guichet/agent/courriers/{id}/envoyee", post(posted))
}

/// One line of the list, in words.
struct Line {
    id: String,
    /// What the letter says, as its title ("Votre demande a bien été reçue").
    title: &'static str,
    /// The request's reference, when the notice is about one.
    reference: Option<String>,
    /// The service, when the notice is about one (a deletion at the end of a retention period).
    service: Option<String>,
    /// When the notice was recorded, French local time.
    since: String,
}

#[derive(Template)]
#[template(path = "privacy_centre/letters.html")]
struct LettersPage<'a> {
    chrome: &'a Chrome,
    csrf: &'a str,
    lines: &'a [Line],
    /// Set after "Lettre envoyée": says it was recorded.
    done: bool,
}

#[derive(Deserialize)]
struct ListQuery {
    envoyee: Option<String>,
}

#[derive(Deserialize)]
struct PostedForm {
    jeton: Option<String>,
}

fn line(app: &App, l: &WaitingLetter) -> Line {
    let (reference, service) = match &l.notice {
        Notice::RequestReceived { reference, .. }
        | Notice::DeadlineExtended { reference, .. }
        | Notice::AnswerReady { reference }
        | Notice::ExportReady { reference } => (Some(reference.clone()), None),
        Notice::Retention { activity, deletion_on } => (
            None,
            Some(format!("{}, effacement le {}", super::service_name(app, Some(activity)), french_date(*deletion_on))),
        ),
        Notice::ConsentReceipt { .. } | Notice::DpoAlert { .. } => (None, None),
    };
    Line {
        id: l.id.clone(),
        title: crate::notify::render::subject(&l.notice),
        reference,
        service,
        since: french_time(l.created_at),
    }
}

fn unavailable(e: &crate::notify::NotifyError) -> Response {
    GatewayError::StoreUnavailable.respond(true, None, Some(e.to_string()))
}

async fn list(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let (session, _) = match assisting_agent_at(&app, &headers, LETTERS_PATH).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let letters = match app.notify.waiting_letters().await {
        Ok(l) => l,
        Err(e) => return unavailable(&e),
    };
    let lines: Vec<Line> = letters.iter().map(|l| line(&app, l)).collect();
    let csrf = app.auth.csrf_token(&session);
    let chrome = app.auth.chrome(Some(&session));
    let page = LettersPage { chrome: &chrome, csrf: &csrf, lines: &lines, done: q.envoyee.is_some() };
    own_page(&app.auth, StatusCode::OK, &page, &chrome)
}

/// The printable A4 letter of a waiting notice, its address block blank (see the module).
async fn print(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = assisting_agent_at(&app, &headers, LETTERS_PATH).await {
        return r;
    }
    let letter = match app.notify.waiting_letter(&id).await {
        Ok(Some(l)) => l,
        Ok(None) => return GatewayError::NotFound.respond(true, None, None),
        Err(e) => return unavailable(&e),
    };
    let html = app.notify.letter(&letter.notice, &[]);
    let mut resp = (StatusCode::OK, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// "Lettre envoyée": records and journals that the letter was posted, then the list again.
async fn posted(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<PostedForm>,
) -> Response {
    let (session, role) = match assisting_agent_at(&app, &headers, LETTERS_PATH).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !f.jeton.as_deref().is_some_and(|t| app.auth.csrf_ok(&session, t)) {
        return GatewayError::Forbidden("the form is out of date; reload the page").respond(true, None, None);
    }
    let letter = match app.notify.waiting_letter(&id).await {
        Ok(Some(l)) => l,
        // Posted already (by another agent, or a second click): nothing left to record.
        Ok(None) => return redirect(LETTERS_PATH),
        Err(e) => return unavailable(&e),
    };
    // Journaled first: a letter recorded as posted always has its agent in the journal.
    if let Err(cause) = journal(&app, &session, &role, &letter).await {
        return GatewayError::Internal.respond(true, None, Some(cause));
    }
    match app.notify.letter_posted(&letter).await {
        Ok(_) => redirect(&format!("{LETTERS_PATH}?envoyee=1")),
        Err(e) => unavailable(&e),
    }
}

/// The `letter_posted` journal entry: the agent, their assisted role, the citizen's
/// pseudonym, the notice by its message id and, for a request, its reference.
async fn journal(app: &App, session: &Arc<Session>, role: &str, l: &WaitingLetter) -> Result<(), String> {
    let id = |s: &str| Ident::new(s).map_err(|_| "an identifier of the letter is not journal-safe".to_owned());
    let mut event = AuditEvent::system(Operation::LetterPosted { kind: id(l.notice.kind())? }, app.clock.now());
    event.actor = Actor { kind: ActorKind::Agent, id: id(&crate::consent::pages::agent_ident(session))? };
    event.role = id(role)?;
    event.subject = Some(id(&l.subject)?);
    event.outcome = Outcome::Success;
    event.record_ref = Some(id(&format!("notice:{}", l.id))?);
    event.request_id = match &l.notice {
        Notice::RequestReceived { reference, .. }
        | Notice::DeadlineExtended { reference, .. }
        | Notice::AnswerReady { reference }
        | Notice::ExportReady { reference } => Some(id(reference)?),
        _ => None,
    };
    app.audit.append_sync(event).await.map(drop).map_err(|e| e.to_string())
}
