//! The small HTTP client that talks to sign-in providers (discovery, JWKS, token, userinfo).
//! Redirects are never followed (a provider answering with a redirect is an error, not a hop
//! to wherever it points: SSRF), bodies are capped and every call has a deadline.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::tls;

/// Largest provider answer read (JWKS and tokens are a few KiB).
const MAX_BODY: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid provider URL")]
    Url,
    #[error("provider unreachable: {0}")]
    Unreachable(String),
    #[error("provider did not answer within {0:?}")]
    Timeout(Duration),
    #[error("provider answer too large or interrupted")]
    Body,
    #[error("cannot prepare TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

/// A provider's answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl HttpClient {
    pub fn new() -> Result<Self, HttpError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(None)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).build(connector);
        Ok(Self { client })
    }

    pub async fn get(&self, url: &str, bearer: Option<&str>) -> Result<Reply, HttpError> {
        let mut b =
            Request::builder().method(Method::GET).uri(url).header(header::ACCEPT, "application/json, application/jwt");
        if let Some(token) = bearer {
            b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(b.body(Body::empty()).map_err(|_| HttpError::Url)?).await
    }

    /// POSTs `form` URL-encoded, with HTTP Basic client authentication when `basic` is given.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<Reply, HttpError> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some((id, secret)) = basic {
            b = b.header(header::AUTHORIZATION, basic_auth(id, secret));
        }
        self.send(b.body(Body::from(body)).map_err(|_| HttpError::Url)?).await
    }

    async fn send(&self, req: Request<Body>) -> Result<Reply, HttpError> {
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| HttpError::Unreachable(e.to_string()))?;
            let status = resp.status();
            let content_type = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            let body = Limited::new(resp.into_body(), MAX_BODY).collect().await.map_err(|_| HttpError::Body)?;
            Ok(Reply { status, content_type, body: body.to_bytes() })
        };
        tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| HttpError::Timeout(TIMEOUT))?
    }
}

/// RFC 6749 §2.3.1: id and secret are form-encoded before Base64.
fn basic_auth(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(id), enc(secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_auth_encodes_reserved_characters() {
        assert_eq!(super::basic_auth("a b", "c:d"), "Basic YStiOmMlM0Fk");
    }
}
