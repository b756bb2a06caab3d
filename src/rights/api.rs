//! The citizen's rights API under `/.guichet/api/v1/rights/`: file a request, list and read
//! one's own, cancel one. Signed-in citizens only (the session cookie); JSON bodies only, so a
//! cross-site form cannot post here. The privacy centre's pages use the same service.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::request::{Channel, IdentityProof, Right};
use super::service::{Answer, By, NewRequest, RightsError, RightsRequest};
use crate::app::{App, AppState};
use crate::audit::{Actor, ActorKind, Ident};
use crate::auth::session::{Kind, Session};
use crate::clock::paris_date;
use crate::error::GatewayError;

pub const RIGHTS_API: &str = "/.guichet/api/v1/rights";

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(super::agent_api::routes())
        .route(RIGHTS_API, get(list).post(create))
        .route("/.guichet/api/v1/rights/{id}", get(show))
        .route("/.guichet/api/v1/rights/{id}/cancel", post(cancel))
}

/// A request as the API shows it to its citizen.
#[derive(Debug, Serialize)]
pub struct RequestView {
    pub id: String,
    pub right: Right,
    pub right_label: &'static str,
    pub activity: Option<String>,
    pub channel: Channel,
    pub status: super::request::Status,
    pub status_label: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: time::OffsetDateTime,
    /// The date by which the town hall must answer (French local date, YYYY-MM-DD).
    pub due_on: String,
    pub overdue: bool,
    pub answer: Option<Answer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    right: Right,
    #[serde(default)]
    activity: Option<String>,
    /// Where notices about the request go, when not the identity provider's address (docs/notify.md).
    #[serde(default)]
    email: Option<String>,
}

pub(super) fn view(app: &App, r: &RightsRequest) -> RequestView {
    view_on(paris_date(app.clock.now()), r)
}

/// A request as it stands on `today` (French local date): due date and lateness move.
pub fn view_on(today: time::Date, r: &RightsRequest) -> RequestView {
    RequestView {
        id: r.id.clone(),
        right: r.right,
        right_label: r.right.french(),
        activity: r.activity.clone(),
        channel: r.channel,
        status: r.status,
        status_label: r.status.french(),
        received_at: r.received_at,
        due_on: r.due_on(today).to_string(),
        overdue: r.is_overdue(today),
        answer: r.answer.clone(),
    }
}

/// A signed-in citizen: their session, pseudonymous subject id, and journal actor.
pub(crate) struct Citizen {
    pub(crate) session: Arc<Session>,
    pub(crate) subject: String,
    pub(crate) by: By,
}

/// The caller's session, or the problem to answer: 401 (sign in as `kind`) without one.
pub(super) async fn signed_in(app: &App, headers: &HeaderMap, kind: Kind) -> Result<Arc<Session>, Response> {
    match app.auth.identify(headers).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(problem(
            &GatewayError::SignInRequired { agent: kind == Kind::Agent, acr: None, return_to: "/".into() },
            "rights API without a session",
        )),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the session");
            Err(problem(&GatewayError::StoreUnavailable, "session store unavailable"))
        }
    }
}

/// The signed-in citizen, or the response to send instead (an agent's session is not one).
pub(crate) async fn citizen(app: &App, headers: &HeaderMap) -> Result<Citizen, Response> {
    let session = signed_in(app, headers, Kind::Citizen).await?;
    if session.kind != Kind::Citizen {
        return Err(problem(
            &GatewayError::SignInRequired { agent: false, acr: None, return_to: "/".into() },
            "rights API without a citizen session",
        ));
    }
    let subject = app.auth.consent_subject(&session).to_owned();
    let (Ok(id), Ok(role)) = (Ident::new(subject.as_str()), Ident::new("citizen")) else {
        return Err(problem(&GatewayError::Internal, "subject is not a journal identifier"));
    };
    Ok(Citizen { session, subject, by: By { actor: Actor { kind: ActorKind::Citizen, id }, role } })
}

async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Citizen { session, subject, by } = match citizen(&app, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(Json(body)) = body else {
        return problem(&GatewayError::BadRequest("the body must be a JSON rights request"), "bad rights request");
    };
    let Ok(address) = crate::notify::address_of(&session, body.email.as_deref()) else {
        return problem(&GatewayError::BadRequest("the e-mail address is not valid"), "bad notification address");
    };
    let new = NewRequest {
        subject,
        activity: body.activity,
        right: body.right,
        channel: Channel::Online,
        agent: None,
        identity: IdentityProof::SignIn { acr: session.acr.clone() },
    };
    let policies = app.policies.load();
    let subjects = super::propagation::Subjects::of(&app, &session);
    if let Err(e) = app.rights.remember_subjects(&new.subject, &subjects).await {
        return rights_problem(&e);
    }
    // An erasure of everything forgets the contact address: recording it would undo that.
    let everything = new.right == super::request::Right::Erasure && new.activity.is_none();
    let address = if everything { None } else { address };
    let created = match app.rights.create(&policies, new, &by).await {
        Ok(r) => {
            // Before the applications are asked: an answer at once finds the address.
            if let Some(a) = &address {
                crate::notify::remember_address(&app, &r.subject, a).await;
            }
            super::propagation::start(&app, &r, &subjects).await
        }
        Err(e) => Err(e),
    };
    match created {
        Ok(r) => {
            crate::notify::rights_received(&app, &r, None).await;
            super::ops::tell_if_answered(&app, &r).await;
            (StatusCode::CREATED, Json(view(&app, &r))).into_response()
        }
        Err(e) => rights_problem(&e),
    }
}

async fn list(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let subject = match citizen(&app, &headers).await {
        Ok(c) => c.subject,
        Err(r) => return r,
    };
    match app.rights.of_subject(&subject).await {
        Ok(rs) => Json(serde_json::json!({ "requests": rs.iter().map(|r| view(&app, r)).collect::<Vec<_>>() }))
            .into_response(),
        Err(e) => rights_problem(&e),
    }
}

async fn show(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let subject = match citizen(&app, &headers).await {
        Ok(c) => c.subject,
        Err(r) => return r,
    };
    match app.rights.get(&id).await {
        // Someone else's request is answered like one that does not exist.
        Ok(r) if r.subject == subject => Json(view(&app, &r)).into_response(),
        Ok(_) | Err(RightsError::NotFound) => rights_problem(&RightsError::NotFound),
        Err(e) => rights_problem(&e),
    }
}

async fn cancel(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !is_json(&headers) {
        return problem(&GatewayError::BadRequest("this call takes application/json"), "cancel without JSON");
    }
    let Citizen { subject, by, .. } = match citizen(&app, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match app.rights.cancel(&id, &subject, &by).await {
        Ok(r) => Json(view(&app, &r)).into_response(),
        Err(e) => rights_problem(&e),
    }
}

/// A cross-site form can only send form or text bodies: JSON needs a preflight it cannot pass.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")))
}

pub(crate) fn problem(e: &GatewayError, why: &str) -> Response {
    e.respond(false, None, Some(why.to_owned()))
}

/// The rights service's errors as the API's problems.
pub(crate) fn rights_problem(e: &RightsError) -> Response {
    let mapped = match e {
        RightsError::NotFound => GatewayError::NotFound,
        RightsError::UnknownActivity => GatewayError::Unprocessable("no processing activity with this id"),
        RightsError::AgentMissing => GatewayError::Unprocessable("an assisted channel needs the agent"),
        RightsError::Transition(t) => GatewayError::Unprocessable(t.message()),
        RightsError::Deadline(d) => GatewayError::Unprocessable(d.message()),
        RightsError::EarlierRequestUnknown => {
            GatewayError::Unprocessable("an earlier request linked to a refusal is not one of this citizen's")
        }
        RightsError::Conflict => GatewayError::Conflict("the request changed meanwhile; read it again"),
        RightsError::Store(_) => GatewayError::StoreUnavailable,
        RightsError::Audit(_)
        | RightsError::BadIdent
        | RightsError::Corrupt
        | RightsError::Random
        | RightsError::Shred => GatewayError::Internal,
    };
    problem(&mapped, &e.to_string())
}
