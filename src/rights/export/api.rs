//! Delivery to the signed-in citizen: `POST …/rights/{id}/export` builds the archive at once
//! (the applications that answer at once are in it) and answers with a download link bound to
//! the session; `GET …/rights/{id}/download?token=…` hands it out, journaled, until it expires.
//! Another session or another citizen gets 404, as for a link that never existed.
//! `GET …/rights/{id}/impression` is the printable page for an agent at the counter: agents
//! holding an assisted-channel role print requests received at the counter, the DPO any.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ExportError, Owner, Ready, render};
use crate::app::{App, AppState};
use crate::audit::{Actor, ActorKind, Ident};
use crate::auth::session::{Kind, Session};
use crate::error::GatewayError;
use crate::rights::api::{RIGHTS_API, citizen, is_json, problem, rights_problem};
use crate::rights::request::Channel;
use crate::rights::service::RightsError;
use crate::rights::service::{By, RightsRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.guichet/api/v1/rights/{id}/export", post(create))
        .route("/.guichet/api/v1/rights/{id}/download", get(download))
        .route("/.guichet/api/v1/rights/{id}/impression", get(print))
}

/// What the citizen gets back: where to download, until when, and which services are still
/// to answer.
#[derive(Debug, Serialize)]
pub struct ReadyView {
    pub request_id: String,
    pub status: &'static str,
    pub download_url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
    pub pending_activities: Vec<String>,
}

impl From<Ready> for ReadyView {
    fn from(r: Ready) -> Self {
        Self {
            download_url: format!("{RIGHTS_API}/{}/download?token={}", r.request_id, r.token),
            request_id: r.request_id,
            status: "ready",
            expires_at: r.expires_at,
            pending_activities: r.pending,
        }
    }
}

async fn create(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !is_json(&headers) {
        return problem(&GatewayError::BadRequest("this call takes application/json"), "export without JSON");
    }
    let c = match citizen(&app, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let request = match app.rights.get(&id).await {
        Ok(r) if r.subject == c.subject => r,
        Ok(_) | Err(RightsError::NotFound) => return rights_problem(&RightsError::NotFound),
        Err(e) => return rights_problem(&e),
    };
    let owner = Owner {
        subject: c.subject.clone(),
        field_subject: Some(app.auth.field_subject(&c.session).to_owned()),
        sectors: super::session_sectors(&app, &c.session),
        claims: Some(c.session.claims.clone()),
    };
    match app.exports.prepare(&app, &request, &owner, &c.session, &c.by).await {
        Ok(ready) => (StatusCode::CREATED, no_store(Json(ReadyView::from(ready)).into_response())).into_response(),
        Err(e) => export_problem(&e),
    }
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: String,
}

async fn download(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let c = match citizen(&app, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(Query(q)) = query else { return export_problem(&ExportError::NotFound) };
    match app.exports.download(&app, &id, &q.token, &c.session.id_hash, &c.by).await {
        Ok(archive) => zip_response(&id, archive),
        Err(e) => export_problem(&e),
    }
}

/// The printable page of a request's export, for an agent at the counter (journaled).
async fn print(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let session = match app.auth.identify(&headers).await {
        Ok(Some(s)) if s.kind == Kind::Agent => s,
        Ok(_) => {
            let e = GatewayError::SignInRequired { agent: true, acr: None, return_to: "/".into() };
            return problem(&e, "counter print without an agent session");
        }
        Err(_) => return problem(&GatewayError::StoreUnavailable, "session store unavailable"),
    };
    let request = match app.rights.get(&id).await {
        Ok(r) => r,
        Err(e) => return rights_problem(&e),
    };
    let Some(by) = may_print(&app, &session, &request) else {
        return problem(&GatewayError::Forbidden("this role does not print exports"), "counter print refused");
    };
    match printable(&app, &request, &by).await {
        Ok(html) => {
            let mut resp = no_store((StatusCode::OK, html).into_response());
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            resp
        }
        Err(e) => export_problem(&e),
    }
}

/// The agent as the journal names them, if their role may print this request: an
/// assisted-channel role for a request received at the counter, the DPO for any.
fn may_print(app: &App, session: &Session, request: &RightsRequest) -> Option<By> {
    let dpo = &app.auth.settings.dpo_role;
    let counter = app.settings.consent.assisted_roles.iter().find(|r| session.roles.contains(r));
    let role = match (session.roles.contains(dpo), counter) {
        (true, _) => dpo,
        (false, Some(role)) if request.channel == Channel::Counter => role,
        _ => return None,
    };
    let id = Ident::new(crate::consent::pages::agent_ident(session)).ok()?;
    Some(By { actor: Actor { kind: ActorKind::Agent, id }, role: Ident::new(role.clone()).ok()? })
}

async fn printable(app: &App, request: &RightsRequest, by: &By) -> Result<String, ExportError> {
    let owner = Owner {
        subject: request.subject.clone(),
        field_subject: app.exports.field_subject_of(request).await?,
        sectors: super::recorded_sectors(app, request).await?,
        claims: None,
    };
    let export = app.exports.build(app, request, &owner).await?;
    let html = render::html(&export)?;
    super::journal(app, request, "export_printed", by).await?;
    Ok(html)
}

fn zip_response(id: &str, archive: Vec<u8>) -> Response {
    let mut resp = no_store((StatusCode::OK, archive).into_response());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"mes-donnees-{id}.zip\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The export's errors as the API's problems.
pub(crate) fn export_problem(e: &ExportError) -> Response {
    let mapped = match e {
        ExportError::NotFound => GatewayError::NotFound,
        ExportError::NotExportable => GatewayError::Unprocessable("only access and portability requests are exported"),
        ExportError::Closed => GatewayError::Unprocessable("a refused or cancelled request is not exported"),
        ExportError::BadRecipient => GatewayError::Unprocessable("not an age recipient"),
        ExportError::Answers(_) => GatewayError::BadGateway,
        ExportError::Rights(r) => return rights_problem(r),
        ExportError::Store(_) => GatewayError::StoreUnavailable,
        ExportError::Render
        | ExportError::Corrupt
        | ExportError::Random
        | ExportError::Consent(_)
        | ExportError::Audit(_) => GatewayError::Internal,
    };
    problem(&mapped, &e.to_string())
}
