//! The gateway's own policy pages: citizen notices under `/.guichet/informations` and the
//! DPO's register at `/.guichet/dpo/registre`, for agents holding `auth.dpo_role` only.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::notice::{self, Notice};
use super::register;
use crate::app::{App, AppState};
use crate::auth::session::Kind;
use crate::error::{GatewayError, wants_html};
use crate::pages::Chrome;
use crate::server::RequestId;

pub use crate::pages::REGISTER_PATH;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.guichet/informations", get(index))
        .route("/.guichet/informations/{activity}", get(activity_notice))
        .route(REGISTER_PATH, get(registre))
}

fn html(app: &App, chrome: &Chrome, body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if chrome.csrf.is_some() {
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return crate::auth::routes::allow_sign_out_form(&app.auth, resp);
    }
    resp
}

/// The header of whoever reads the page (a session read failure shows the public header).
async fn chrome(app: &App, headers: &HeaderMap) -> Chrome {
    let session = app.auth.identify(headers).await.ok().flatten();
    app.auth.chrome(session.as_deref())
}

fn internal(req: &Request, cause: String) -> Response {
    let id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    GatewayError::Internal.respond(wants_html(req.headers()), id.as_deref(), Some(cause))
}

async fn index(State(app): State<AppState>, req: Request) -> Response {
    let set = app.policies.load();
    let notices: Vec<Notice> = set.activities.iter().map(|a| Notice::of(a)).collect();
    let chrome = chrome(&app, req.headers()).await;
    match notice::index_html(&notices, &chrome) {
        Ok(body) => html(&app, &chrome, body),
        Err(e) => internal(&req, e.to_string()),
    }
}

/// HTML by default; JSON with `Accept: application/json` or a `.json` suffix.
async fn activity_notice(State(app): State<AppState>, Path(activity): Path<String>, req: Request) -> Response {
    let (id, json_suffix) = match activity.strip_suffix(".json") {
        Some(id) => (id, true),
        None => (activity.as_str(), false),
    };
    let set = app.policies.load();
    let Some(a) = set.activity(id) else {
        let rid = req.extensions().get::<RequestId>().map(|r| r.0.clone());
        return GatewayError::NotFound.respond(wants_html(req.headers()) && !json_suffix, rid.as_deref(), None);
    };
    let n = Notice::of(a);
    let accept_json =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    if json_suffix || (accept_json && !wants_html(req.headers())) {
        return axum::Json(n).into_response();
    }
    let chrome = chrome(&app, req.headers()).await;
    match notice::to_html(&n, &chrome) {
        Ok(body) => html(&app, &chrome, body),
        Err(e) => internal(&req, e.to_string()),
    }
}

async fn registre(State(app): State<AppState>, req: Request) -> Response {
    if let Err(e) = dpo_only(&app, req.headers()).await {
        let rid = req.extensions().get::<RequestId>().map(|r| r.0.clone());
        return e.respond(wants_html(req.headers()), rid.as_deref(), None);
    }
    let set = super::gateway::register_set(&app.policies.load(), &app.settings);
    let chrome = chrome(&app, req.headers()).await;
    match register::to_html_with(&set, &chrome) {
        Ok(body) => html(&app, &chrome, body),
        Err(e) => internal(&req, e.to_string()),
    }
}

/// The register describes every processing activity of the town hall: only its DPO (an
/// agent holding `auth.dpo_role`) reads it here. A browser without a session is sent to the
/// agents' sign-in and back; other clients get 401; anyone else signed in, 403.
async fn dpo_only(app: &App, headers: &HeaderMap) -> Result<(), GatewayError> {
    let session = app.auth.identify(headers).await.map_err(|_| GatewayError::StoreUnavailable)?;
    match session {
        None => Err(GatewayError::SignInRequired { agent: true, acr: None, return_to: REGISTER_PATH.to_owned() }),
        Some(s) if s.kind == Kind::Agent && s.roles.contains(&app.auth.settings.dpo_role) => Ok(()),
        Some(_) => Err(GatewayError::Forbidden("the register is for the data protection officer")),
    }
}
