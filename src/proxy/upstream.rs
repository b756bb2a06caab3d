//! Connections to upstreams: one pooled keep-alive client per route (each route has its own
//! timeouts and CA), HTTP/1.1 toward the application so that upgrades work everywhere.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::routing::{Route, RouteTable};
use crate::tls::{self, TlsError};

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Idle pooled connections are closed after this long (below common upstream keep-alive
/// timeouts of 60–75 s would be ideal, but Node and nginx default to 5 s / 75 s; hyper retries
/// a request whose pooled connection was closed before it was sent).
const POOL_IDLE: Duration = Duration::from_secs(30);

/// The clients of every route, by route name.
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    clients: HashMap<Arc<str>, UpstreamClient>,
}

impl Upstreams {
    pub fn build(routes: &RouteTable) -> Result<Self, TlsError> {
        let mut clients = HashMap::new();
        for r in routes.iter() {
            clients.insert(r.name.clone(), client_for(r)?);
        }
        Ok(Self { clients })
    }

    pub fn get(&self, route: &str) -> Option<&UpstreamClient> {
        self.clients.get(route)
    }
}

fn client_for(route: &Route) -> Result<UpstreamClient, TlsError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(route.timeouts.connect));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    // The builder sets ALPN to http/1.1 itself (enable_http1 only).
    let tls_config = if route.upstream.is_https() {
        tls::client_config(route.upstream.ca_file.as_deref())?
    } else {
        tls::client_config_without_roots()?
    };
    let connector =
        HttpsConnectorBuilder::new().with_tls_config(tls_config).https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}
