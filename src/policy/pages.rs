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
    let rid = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let dpo = match crate::auth::gate::dpo(
        &app,
        req.headers(),
        REGISTER_PAGE,
        "register:activities",
        REGISTER_PATH,
        rid.as_deref(),
    )
    .await
    {
        Ok(dpo) => dpo,
        Err(e) => return e.respond(wants_html(req.headers()), rid.as_deref(), None),
    };
    let set = super::gateway::register_set(&app.policies.load(), &app.settings);
    let chrome = app.auth.chrome(Some(&dpo.session));
    match register::to_html_with(&set, &chrome) {
        Ok(body) => {
            app.audit.record_read(&dpo.reader, REGISTER_PAGE, None, rid.as_deref()).await;
            html(&app, &chrome, body)
        }
        Err(e) => internal(&req, e.to_string()),
    }
}

/// The register page as the journal names it.
const REGISTER_PAGE: &str = "dpo.registre";
