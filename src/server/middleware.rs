//! Layers every request goes through, proxied or served by the gateway: request id, the
//! request span, the one log line per request, metrics, and security headers on our pages.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use http::header::HeaderName;
use tracing::Instrument;

use crate::app::AppState;
use crate::error::ErrorCause;
use crate::server::ConnMeta;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: echoed to the client as `X-Request-Id`, sent upstream, in every log line.
/// The header value is built once and shared by the upstream request and the response.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>, pub HeaderValue);

impl RequestId {
    fn new(id: Arc<str>) -> Self {
        let header = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(IdBytes(id.clone())))
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        Self(id, header)
    }
}

/// Lets the header value share the id's allocation.
struct IdBytes(Arc<str>);

impl AsRef<[u8]> for IdBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Assigns the request id, opens the request span, and records the outcome (as an axum
/// layer, for the gateway's own pages).
pub async fn observe(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let conn = req.extensions().get::<ConnMeta>().copied().unwrap_or_default();
    let matched = req.extensions().get::<MatchedPath>().map(|m| Arc::<str>::from(m.as_str()));
    let hsts =
        app.settings.server.tls.as_ref().filter(|_| conn.tls).map(|t| super::redirect::hsts_value(t.hsts_max_age));
    let mut resp = observed(&app, req, conn, |mut req, id| async move {
        // The gateway's own pages read the id from the request (journal entries, error pages).
        req.extensions_mut().insert(id);
        (next.run(req).await, matched)
    })
    .await;
    // Every answer of the gateway's own pages over TLS tells browsers to stay on HTTPS.
    if let Some(v) = hsts {
        resp.headers_mut().insert(http::header::STRICT_TRANSPORT_SECURITY, v);
    }
    resp
}

/// What `observe` does, around any inner handler: the proxy calls it directly, without a
/// router or a boxed middleware in between. `inner` gets the request id and answers with the
/// response and the route's name, when there is one.
pub async fn observed<F, Fut>(app: &AppState, req: Request, conn: ConnMeta, inner: F) -> Response
where
    F: FnOnce(Request, RequestId) -> Fut,
    Fut: Future<Output = (Response, Option<Arc<str>>)>,
{
    let started = Instant::now();
    // The same rule as for `Forwarded`: an id is taken only from a trusted proxy.
    let trusted = crate::proxy::headers::is_trusted(conn.peer, &app.settings.server.trusted_proxies);
    let id: Arc<str> = match trusted.then(|| incoming_id(&req)).flatten() {
        Some(id) => Arc::from(id),
        None => app.request_ids.next(),
    };
    let rid = RequestId::new(id.clone());
    let id_header = rid.1.clone();
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = tracing::field::Empty);

    app.metrics.in_flight.inc();
    let (mut resp, route) = inner(req, rid).instrument(span.clone()).await;
    app.metrics.in_flight.dec();

    let route = route.unwrap_or_else(unmatched);
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    app.metrics.record_request(&route, &method, status, elapsed);
    span.record("route", &*route);
    let _enter = span.enter();
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    match resp.extensions().get::<ErrorCause>() {
        Some(cause) => tracing::warn!(status, latency_us, cause = %cause.0, "request failed"),
        None => tracing::info!(status, latency_us, "request"),
    }
    resp.headers_mut().insert(&X_REQUEST_ID, id_header);
    resp
}

fn unmatched() -> Arc<str> {
    static UNMATCHED: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    UNMATCHED.get_or_init(|| Arc::from("unmatched")).clone()
}

/// Request ids: a random per-process prefix and a counter. Unique across instances without a
/// system call per request; they are references for support, not secrets.
#[derive(Debug)]
pub struct RequestIds {
    /// 8 random bytes in hex.
    prefix: [u8; 16],
    counter: std::sync::atomic::AtomicU64,
}

impl RequestIds {
    pub fn new(random: &dyn crate::clock::Random) -> Result<Self, crate::clock::RandomError> {
        let mut bytes = [0u8; 8];
        random.fill(&mut bytes)?;
        let mut prefix = [0u8; 16];
        crate::clock::hex_into(&mut prefix, &bytes);
        Ok(Self { prefix, counter: std::sync::atomic::AtomicU64::new(0) })
    }

    pub fn next(&self) -> Arc<str> {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Laid out on the stack and copied once into the shared string: this runs on every
        // request.
        let mut id = [0u8; 32];
        let (prefix, count) = id.split_at_mut(16);
        prefix.copy_from_slice(&self.prefix);
        crate::clock::hex_into(count, &n.to_be_bytes());
        Arc::from(std::str::from_utf8(&id).unwrap_or("-"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Sevens;

    impl crate::clock::Random for Sevens {
        fn fill(&self, dest: &mut [u8]) -> Result<(), crate::clock::RandomError> {
            dest.fill(0x77);
            Ok(())
        }
    }

    #[test]
    fn request_ids_are_the_prefix_and_a_zero_padded_hex_counter() {
        let ids = RequestIds::new(&Sevens).unwrap();
        assert_eq!(&*ids.next(), "77777777777777770000000000000000");
        assert_eq!(&*ids.next(), "77777777777777770000000000000001");
        let id = RequestId::new(ids.next());
        assert_eq!(id.1, "77777777777777770000000000000002");
    }
}
