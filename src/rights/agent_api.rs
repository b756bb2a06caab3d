//! The agents' side of the rights API: an agent with one of `rights.assisted_roles` files a
//! request on a citizen's behalf (counter, phone, post, e-mail). The citizen is designated the
//! way the consent ledger's assisted channel designates them: by the one-time code they read
//! out (made on their consent page), which the gateway turns into their pseudonymous subject
//! id — the agent never types or sees an identifier. Identity proof is the *kind* of document
//! the agent checked, never a copy (R14). JSON bodies only, like the citizen API.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::api::{problem, rights_problem, signed_in, view};
use super::request::{Channel, DocumentKind, IdentityProof, Right};
use super::service::{By, NewRequest};
use crate::app::{App, AppState};
use crate::audit::{Actor, ActorKind, Ident};
use crate::auth::session::Kind;
use crate::consent::pages::agent_ident;
use crate::error::GatewayError;

pub const ASSISTED_API: &str = "/.guichet/api/v1/rights/assisted";

pub fn routes() -> Router<AppState> {
    Router::new().route(ASSISTED_API, post(create_assisted)).merge(super::dpo_api::routes())
}

/// The channels an agent records a request on (never `online`: the citizen does that).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AssistedChannel {
    Counter,
    Phone,
    Post,
    Email,
}

impl From<AssistedChannel> for Channel {
    fn from(c: AssistedChannel) -> Self {
        match c {
            AssistedChannel::Counter => Channel::Counter,
            AssistedChannel::Phone => Channel::Phone,
            AssistedChannel::Post => Channel::Post,
            AssistedChannel::Email => Channel::Email,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssistedBody {
    /// The one-time code the citizen read out.
    code: String,
    right: Right,
    #[serde(default)]
    activity: Option<String>,
    channel: AssistedChannel,
    /// The kind of identity document the agent checked.
    document: DocumentKind,
}

/// The signed-in agent holding one of `allowed` roles, as the journal's actor and role, or the
/// problem to answer: 401 without a session, 403 for a citizen or an agent without such a role.
pub(super) async fn agent_with_role(
    app: &App,
    headers: &HeaderMap,
    allowed: &[&str],
    what: &'static str,
) -> Result<By, Response> {
    let session = signed_in(app, headers, Kind::Agent).await?;
    let role = session.roles.iter().find(|r| allowed.contains(&r.as_str()));
    let role = match (session.kind, role) {
        (Kind::Agent, Some(role)) => role.clone(),
        _ => {
            crate::auth::gate::denied(app, &session, "api.rights.agent", "list:api.rights.agent", None).await;
            return Err(problem(&GatewayError::Forbidden(what), "rights agent API without the role"));
        }
    };
    let (Ok(id), Ok(role)) = (Ident::new(agent_ident(&session)), Ident::new(role)) else {
        return Err(problem(&GatewayError::Internal, "agent or role is not a journal identifier"));
    };
    Ok(By { actor: Actor { kind: ActorKind::Agent, id }, role })
}

async fn create_assisted(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<AssistedBody>, JsonRejection>,
) -> Response {
    let allowed: Vec<&str> = app.settings.rights.assisted_roles.iter().map(String::as_str).collect();
    let what = "the agent has no role allowing to file rights requests for citizens";
    let by = match agent_with_role(&app, &headers, &allowed, what).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    // The body is checked before the code is used up: a typo costs the citizen nothing.
    let Ok(Json(body)) = body else {
        return problem(&GatewayError::BadRequest("the body must be a JSON assisted rights request"), "bad body");
    };
    if let Some(a) = body.activity.as_deref()
        && app.policies.load().activity(a).is_none()
    {
        return rights_problem(&super::service::RightsError::UnknownActivity);
    }
    let subject = match app.consent.redeem_code(&body.code).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return problem(
                &GatewayError::Unprocessable(
                    "the one-time code is unknown, used or expired; ask the citizen for a new one",
                ),
                "assisted rights request with a bad code",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot redeem a one-time code");
            return problem(&GatewayError::StoreUnavailable, "one-time code store unavailable");
        }
    };
    let new = NewRequest {
        subject,
        activity: body.activity,
        right: body.right,
        channel: body.channel.into(),
        agent: Some(by.actor.id.to_string()),
        identity: IdentityProof::Document { kind: body.document },
    };
    let created = match app.rights.create(&app.policies.load(), new, &by).await {
        Ok(r) => start_assisted(&app, r).await,
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

/// Starts an assisted request like an online one, under the pseudonyms recorded when the
/// citizen asked for their code. Without them (a citizen without an online account, or a
/// code made before they were recorded) each application's part becomes a task done by hand
/// in the handlers' queue (`propagation::start_by_hand`): the applications do not know the
/// citizen under any pseudonym the gateway could send.
pub(crate) async fn start_assisted(
    app: &App,
    r: super::service::RightsRequest,
) -> Result<super::service::RightsRequest, super::service::RightsError> {
    match app.rights.subjects_of(&r.subject).await? {
        Some(subjects) => super::propagation::start(app, &r, &subjects).await,
        None => {
            tracing::info!(request = %r.id, "rights: no pseudonyms for an assisted request; tasks done by hand");
            super::propagation::start_by_hand(app, &r).await
        }
    }
}
