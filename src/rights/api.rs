//! The citizen's rights API under `/.guichet/api/v1/rights/`: file a request, list and read
//! one's own, cancel one. Signed-in citizens only (the session cookie); JSON bodies only, so a
//! cross-site form cannot post here. The privacy centre's pages use the same service.

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

fn view(app: &App, r: &RightsRequest) -> RequestView {
    let today = paris_date(app.clock.now());
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
struct Citizen {
    session: std::sync::Arc<Session>,
    subject: String,
    by: By,
}

/// The signed-in citizen, or the response to send instead.
async fn citizen(app: &App, headers: &HeaderMap) -> Result<Citizen, Response> {
    let session = match app.auth.identify(headers).await {
        Ok(Some(s)) if s.kind == Kind::Citizen => s,
        Ok(_) => {
            return Err(problem(
                &GatewayError::SignInRequired { agent: false, acr: None, return_to: "/".into() },
                "rights API without a citizen session",
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the session");
            return Err(problem(&GatewayError::StoreUnavailable, "session store unavailable"));
        }
    };
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
    match app.rights.create(&policies, new, &by).await {
        Ok(r) => {
            crate::notify::rights_received(&app, &r, address).await;
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
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")))
}

fn problem(e: &GatewayError, why: &str) -> Response {
    e.respond(false, None, Some(why.to_owned()))
}

/// The rights service's errors as the API's problems.
fn rights_problem(e: &RightsError) -> Response {
    let mapped = match e {
        RightsError::NotFound => GatewayError::NotFound,
        RightsError::UnknownActivity => GatewayError::Unprocessable("no processing activity with this id"),
        RightsError::AgentMissing => GatewayError::Unprocessable("an assisted channel needs the agent"),
        RightsError::Transition(t) => GatewayError::Unprocessable(t.message()),
        RightsError::Deadline(d) => GatewayError::Unprocessable(d.message()),
        RightsError::Conflict => GatewayError::Conflict("the request changed meanwhile; read it again"),
        RightsError::Store(_) => GatewayError::StoreUnavailable,
        RightsError::Audit(_) | RightsError::BadIdent | RightsError::Corrupt | RightsError::Random => {
            GatewayError::Internal
        }
    };
    problem(&mapped, &e.to_string())
}
