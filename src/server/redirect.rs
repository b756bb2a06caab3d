//! The optional plain-HTTP listener (`server.tls.redirect_listen`): it serves nothing, every
//! request gets a permanent redirect to the same path over HTTPS (CNIL R42). The target host
//! is `server.public_url`'s when set, so a forged `Host` cannot send citizens elsewhere.

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// The redirect listener's router.
pub fn router(public_url: Option<String>) -> Router {
    Router::new().fallback(redirect).with_state(public_url.map(|u| u.trim_end_matches('/').to_owned()))
}

async fn redirect(State(public_url): State<Option<String>>, req: Request) -> Response {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let origin = match public_url {
        Some(u) if u.starts_with("https://") => u,
        _ => match https_origin(req.headers()) {
            Some(o) => o,
            None => return (StatusCode::BAD_REQUEST, "HTTPS only").into_response(),
        },
    };
    match HeaderValue::from_str(&format!("{origin}{pq}")) {
        Ok(location) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "HTTPS only").into_response(),
    }
}

/// `https://<host>` from the request's `Host` (its port dropped: HTTPS listens on its own).
fn https_origin(headers: &http::HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let authority: http::uri::Authority = host.parse().ok()?;
    Some(format!("https://{}", authority.host()))
}

/// `Strict-Transport-Security` for `max_age` (no `includeSubDomains`: other services of the
/// commune's domain may not speak HTTPS yet).
pub fn hsts_value(max_age: std::time::Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("max-age={}", max_age.as_secs()))
        .unwrap_or(HeaderValue::from_static("max-age=63072000"))
}
