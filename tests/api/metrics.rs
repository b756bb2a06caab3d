//! Prometheus metrics on the admin listener.

use crate::helpers::{closed_port, route, spawn_app};

fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn request_counters_latency_and_upstream_errors_move() {
    let dead = closed_port().await;
    let app =
        spawn_app().with(move |s, _| s.routes.push(route("dead", "/dead", &format!("http://{dead}")))).start().await;
    let before = app.metrics().await;
    for _ in 0..3 {
        app.get("/echo").await;
    }
    app.get("/dead/x").await;
    let after = app.metrics().await;
    let ok = r#"guichet_http_requests_total{route="app",method="GET",status="200"}"#;
    assert_eq!(sample(&after, ok) - sample(&before, ok), 3.0, "{after}");
    let bad = r#"guichet_http_requests_total{route="dead",method="GET",status="502"}"#;
    assert_eq!(sample(&after, bad), 1.0);
    assert_eq!(sample(&after, r#"guichet_upstream_errors_total{route="dead",kind="connect"}"#), 1.0);
    assert!(sample(&after, r#"guichet_http_request_duration_seconds_count{route="app"}"#) >= 3.0);
    assert!(after.contains("guichet_http_requests_in_flight"));
    assert!(after.contains(r#"guichet_store_connections{state="idle"}"#));
}

#[tokio::test]
async fn metrics_are_not_served_on_the_public_listener() {
    let app = spawn_app().start().await;
    app.get("/metrics").await;
    // The public listener proxies /metrics to the application like any other path.
    assert_eq!(app.upstream.last().path_and_query, "/metrics");
}
