//! Layers every request goes through, proxied or served by the gateway: request id, the
//! request span, the one log line per request, metrics, and security headers on our pages.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use http::header::HeaderName;
use tracing::Instrument;

use crate::app::AppState;
use crate::clock::random_hex;
use crate::error::{ErrorCause, GatewayError};
use crate::metrics::{RequestLabels, RouteLabels};
use crate::proxy::RouteLabel;
use crate::server::ConnMeta;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: echoed to the client as `X-Request-Id`, sent upstream, in every log line.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// Assigns the request id, opens the request span, and records the outcome.
pub async fn observe(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = req.extensions().get::<ConnMeta>().map(|m| m.peer.ip());
    let trusted = peer.is_some_and(|ip| app.settings.server.trusted_proxies.iter().any(|n| n.contains(&ip)));
    let id = match incoming_id(&req).filter(|_| trusted) {
        Some(id) => id,
        None => match random_hex::<16>(app.random.as_ref()) {
            Ok(id) => id,
            Err(e) => return GatewayError::Internal.respond(false, None, Some(e.to_string())),
        },
    };
    let id: Arc<str> = Arc::from(id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = tracing::field::Empty);

    app.metrics.in_flight.inc();
    let mut resp = next.run(req).instrument(span.clone()).await;
    app.metrics.in_flight.dec();

    let route = resp
        .extensions()
        .get::<RouteLabel>()
        .map(|r| r.0.to_string())
        .or(matched)
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    app.metrics
        .requests
        .get_or_create(&RequestLabels { route: route.clone(), method: method.to_string(), status })
        .inc();
    app.metrics.latency.get_or_create(&RouteLabels { route: route.clone() }).observe(elapsed.as_secs_f64());
    span.record("route", route.as_str());
    let _enter = span.enter();
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    match resp.extensions().get::<ErrorCause>() {
        Some(cause) => tracing::warn!(status, latency_us, cause = %cause.0, "request failed"),
        None => tracing::info!(status, latency_us, "request"),
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(&X_REQUEST_ID, v);
    }
    resp
}

/// An id set by a trusted front proxy, when it is short and made of safe characters.
fn incoming_id(req: &Request) -> Option<String> {
    let v = req.headers().get(&X_REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| v.to_owned())
}

/// Security headers for pages the gateway serves itself (never added to proxied responses,
/// which keep what the application chose).
pub async fn own_pages_security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    resp
}
