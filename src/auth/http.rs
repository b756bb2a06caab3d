//! The small HTTP client that talks to sign-in providers (discovery, JWKS, token, userinfo),
//! over the hyper client the gateway already ships; it is also the `openidconnect` crate's
//! HTTP client (`AsyncHttpClient`), so the crate needs no reqwest. Redirects are never
//! followed (a provider answering with a redirect is an error, not a hop to wherever it
//! points: SSRF), bodies are capped and every call has a deadline.

use std::future::Future;
use std::pin::Pin;

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
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
    pub headers: HeaderMap,
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

    /// POSTs `body` as `content_type`, giving up after `timeout` (rights requests to
    /// applications: their answer decides whether the job is retried).
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply, HttpError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, "application/json")
            .body(Body::from(body))
            .map_err(|_| HttpError::Url)?;
        self.send_within(req, timeout).await
    }

    async fn send(&self, req: Request<Body>) -> Result<Reply, HttpError> {
        self.send_within(req, TIMEOUT).await
    }

    async fn send_within(&self, req: Request<Body>, timeout: Duration) -> Result<Reply, HttpError> {
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| HttpError::Unreachable(e.to_string()))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            let body = Limited::new(resp.into_body(), MAX_BODY).collect().await.map_err(|_| HttpError::Body)?;
            Ok(Reply { status, headers, content_type, body: body.to_bytes() })
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| HttpError::Timeout(timeout))?
    }
}

/// The `openidconnect` crate's requests (discovery, JWKS, token endpoint) go through
/// `HttpClient::send`: same redirect policy, body cap and deadline as ours.
impl<'c> openidconnect::AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let reply = self.send(request.map(Body::from)).await?;
            let mut response = Response::new(reply.body.to_vec());
            *response.status_mut() = reply.status;
            *response.headers_mut() = reply.headers;
            Ok(response)
        })
    }
}
