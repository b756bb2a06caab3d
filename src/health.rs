//! Liveness and readiness, for load balancers and orchestrators.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::app::AppState;

/// The process is up and answering.
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

/// The gateway can serve: its store answers within a second.
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = tokio::time::timeout(Duration::from_secs(1), app.store.ping()).await;
    match store {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({ "status": "ready", "checks": { "store": "ok" } }))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "checks": { "store": "failed" } })))
        }
        Err(_) => {
            tracing::warn!("readiness: store check timed out");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "checks": { "store": "timeout" } })),
            )
        }
    }
}
