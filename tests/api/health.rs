//! Liveness and readiness.

use crate::helpers::{Backend, spawn_app};

async fn readiness_follows_the_store(backend: Backend) {
    let app = spawn_app().backend(backend).start().await;
    let live = app.get("/.guichet/health/live").await;
    assert_eq!(live.status(), 200);
    let ready = app.get("/.guichet/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["store"], "ok");

    app.state.store.close().await;
    let ready = app.get("/.guichet/health/ready").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    // Liveness does not depend on the store: the process is still up.
    assert_eq!(app.get("/.guichet/health/live").await.status(), 200);
    assert_eq!(app.upstream.hits(), 0, "health checks must never be proxied");
}

crate::on_both_stores!(readiness_follows_the_store);
