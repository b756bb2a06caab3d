//! `POST /.guichet/api/v1/rights/callbacks/{route}`: an application's later status for a
//! request it answered `202` to. Authenticated per application: the bearer secret read from
//! the route's `rights_callback_secret_file` (read at each call, so a rotated file applies
//! at once; callbacks are rare). An application may only answer for requests sent to it. A
//! final answer is stored once; the same callback again is acknowledged and changes nothing.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::contract::AppAnswer;
use super::propagation::{CALLBACK_ROUTE, record};
use crate::app::{App, AppState};
use crate::error::GatewayError;

pub fn routes() -> Router<AppState> {
    Router::new().route(CALLBACK_ROUTE, post(callback))
}

fn problem(e: &GatewayError, why: &str) -> Response {
    e.respond(false, None, Some(why.to_owned()))
}

async fn callback(
    State(app): State<AppState>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authenticated(&app, &route, &headers).await {
        return problem(&GatewayError::ClientUnauthorized, "rights callback without the application's secret");
    }
    let Ok(answer) = serde_json::from_slice::<AppAnswer>(&body) else {
        return problem(&GatewayError::BadRequest("the body must be a rights answer in JSON"), "bad rights callback");
    };
    let Some((request_id, activity)) = answer.request_id.split_once('.') else {
        return problem(&GatewayError::NotFound, "rights callback for an unknown request");
    };
    match app.rights.target(request_id, activity).await {
        Ok(Some(t)) if t.route.as_deref() == Some(route.as_str()) => {}
        Ok(_) => return problem(&GatewayError::NotFound, "rights callback for a request not sent to this application"),
        Err(e) => {
            tracing::warn!(error = %e, "rights callback: store unavailable");
            return problem(&GatewayError::StoreUnavailable, "store unavailable");
        }
    }
    match record(&app, request_id, activity, &answer).await {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({ "request_id": answer.request_id }))).into_response(),
        Err(_) => problem(&GatewayError::StoreUnavailable, "cannot store the rights answer"),
    }
}

/// True when the request carries the route's callback secret (constant-time comparison).
pub(crate) async fn authenticated(app: &App, route: &str, headers: &HeaderMap) -> bool {
    let Some(file) =
        app.settings.routes.iter().find(|r| r.name == route).and_then(|r| r.rights_callback_secret_file.as_ref())
    else {
        return false;
    };
    let Ok(secret) = tokio::fs::read_to_string(file).await else {
        tracing::warn!(route, "cannot read the rights callback secret file");
        return false;
    };
    let secret = secret.trim();
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if !secret.is_empty() => crate::auth::oidc::constant_time_eq(g.as_bytes(), secret.as_bytes()),
        _ => false,
    }
}
