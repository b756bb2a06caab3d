//! The gateway's own policy pages: citizen notices under `/.guichet/informations` and the
//! DPO's register at `/.guichet/dpo/registre` (DPO-role protected once sign-in lands).

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::notice::{self, Notice};
use super::register;
use crate::app::AppState;
use crate::error::{GatewayError, wants_html};
use crate::server::RequestId;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.guichet/informations", get(index))
        .route("/.guichet/informations/{activity}", get(activity_notice))
        .route("/.guichet/dpo/registre", get(registre))
}

fn html(body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp
}

fn internal(req: &Request, cause: String) -> Response {
    let id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    GatewayError::Internal.respond(wants_html(req.headers()), id.as_deref(), Some(cause))
}

async fn index(State(app): State<AppState>, req: Request) -> Response {
    let set = app.policies.load();
    let notices: Vec<Notice> = set.activities.iter().map(|a| Notice::of(a)).collect();
    match notice::index_html(&notices) {
        Ok(body) => html(body),
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
    match notice::to_html(&n) {
        Ok(body) => html(body),
        Err(e) => internal(&req, e.to_string()),
    }
}

async fn registre(State(app): State<AppState>, req: Request) -> Response {
    let set = app.policies.load();
    match register::to_html(&set) {
        Ok(body) => html(body),
        Err(e) => internal(&req, e.to_string()),
    }
}
