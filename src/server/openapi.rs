//! `GET /.guichet/api/v1/openapi.json`: the OpenAPI 3.1 document of the gateway's own JSON
//! API, committed as `docs/openapi.json` and checked against real responses by
//! `tests/api/openapi.rs`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::app::AppState;

pub const OPENAPI_PATH: &str = "/.guichet/api/v1/openapi.json";

/// The document, as committed.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub fn routes() -> Router<AppState> {
    Router::new().route(OPENAPI_PATH, get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
