//! Connections to upstreams: one pool of keep-alive HTTP/1.1 connections per route (each route
//! has its own timeouts and CA), HTTP/1.1 toward the application so that upgrades work
//! everywhere.
//!
//! A pooled connection is driven by the request that holds it, in that request's own task,
//! while the request is sent and while the response body streams back (the pingora idea).
//! A general-purpose client runs each connection in a task of its own and passes requests,
//! responses and body chunks between tasks through channels; on a proxy's hot path those
//! hand-offs and wake-ups cost more than the HTTP work itself. When the response body ends,
//! the connection goes back to the pool; a connection whose response was not read to the
//! end is closed, never reused.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::routing::{Route, RouteTable};
use crate::tls::{self, TlsError};

/// Idle pooled connections are closed after this long (upstreams usually keep connections
/// open 5 s (Node) to 75 s (nginx); a connection the upstream closed meanwhile is noticed
/// when it is taken from the pool, and the request goes on a new one).
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Idle connections kept per route; more concurrent requests open more connections, which
/// are closed when they come back to a full pool.
const POOL_MAX_IDLE: usize = 256;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;
type Driver = http1::Connection<Io, Body>;

/// Why a request could not be exchanged with the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection: refused, unreachable, TLS failure, connect timeout.
    #[error("cannot connect to the upstream")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed while the request or the response head was exchanged.
    #[error("upstream exchange failed")]
    Exchange(#[from] hyper::Error),
}

/// The pools of every route, by route name.
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    pools: HashMap<Arc<str>, Arc<Pool>>,
}

impl Upstreams {
    pub fn build(routes: &RouteTable) -> Result<Self, TlsError> {
        let mut pools = HashMap::new();
        for r in routes.iter() {
            pools.insert(r.name.clone(), Arc::new(Pool::for_route(r)?));
        }
        Ok(Self { pools })
    }

    pub fn get(&self, route: &str) -> Option<&Arc<Pool>> {
        self.pools.get(route)
    }
}

/// One route's connector and idle connections.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    // Boxed on purpose: a connection is handed between the pool, a request and its
    // response body many times, and each hand-over should move a pointer, not 2 KiB.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Conn>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle", &self.idle_count()).finish_non_exhaustive()
    }
}

/// A connection and the future that drives its I/O (about 2 KiB: always boxed, so that
/// handing it between the pool, a request and its response body moves a pointer).
struct Conn {
    sender: http1::SendRequest<Body>,
    driver: Driver,
    idle_since: Instant,
}

impl Pool {
    fn for_route(route: &Route) -> Result<Self, TlsError> {
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
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self { connector, idle: Mutex::new(Vec::new()) })
    }

    /// Idle connections now (for tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Sends the request and waits for the response head. The connection travels with the
    /// response body and comes back to the pool when that body has been read to the end.
    /// A request that a pooled connection could not even start to send (the upstream had
    /// closed it) is sent again on a new connection; nothing is ever sent twice.
    pub async fn send(self: &Arc<Self>, req: Request<Body>) -> Result<Response<PooledBody>, UpstreamError> {
        let mut req = req;
        let target = to_origin_form(&mut req);
        while let Some(conn) = self.checkout() {
            match self.exchange(conn, req).await {
                Ok(resp) => return Ok(resp),
                Err(Exchange::Retry(unsent)) => req = *unsent,
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        // Boxed: the rare path must not grow every request's future.
        let conn = Box::pin(self.connect(&target)).await?;
        match self.exchange(conn, req).await {
            Ok(resp) => Ok(resp),
            Err(Exchange::Failed(e)) => Err(e),
            Err(Exchange::Retry(_)) => Err(UpstreamError::Connect("the new connection closed at once".into())),
        }
    }

    /// Sends a protocol-upgrade request on a connection of its own, driven by a task until
    /// the upgrade completes (the tunnel then owns the socket).
    pub async fn send_upgrade(&self, req: Request<Body>) -> Result<Response<PooledBody>, UpstreamError> {
        let mut req = req;
        let target = to_origin_form(&mut req);
        let conn = *Box::pin(self.connect(&target)).await?;
        let Conn { mut sender, driver, .. } = conn;
        tokio::spawn(async move {
            if let Err(e) = driver.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        let resp = sender.send_request(req).await?;
        Ok(resp.map(|inner| PooledBody { inner, conn: None, pool: None }))
    }

    async fn exchange(
        self: &Arc<Self>,
        mut conn: Box<Conn>,
        req: Request<Body>,
    ) -> Result<Response<PooledBody>, Exchange> {
        let Conn { sender, driver, .. } = &mut *conn;
        let ready = drive(driver, std::future::poll_fn(|cx| sender.poll_ready(cx))).await;
        match ready {
            Ok((Ok(()), false)) => {}
            // Closed while idle: the request has not been touched.
            Ok(_) | Err(_) => return Err(Exchange::Retry(Box::new(req))),
        }
        let head = drive(driver, sender.try_send_request(req)).await;
        let (resp, driver_done) = match head {
            Ok((Ok(resp), driver_done)) => (resp, driver_done),
            Ok((Err(mut e), _)) => {
                return Err(match e.take_message() {
                    Some(unsent) => Exchange::Retry(Box::new(unsent)),
                    None => Exchange::Failed(e.into_error().into()),
                });
            }
            // The driver ended first; the response may still be complete (a response with
            // `Connection: close` ends the connection as soon as it has been read).
            Err(DriverEnded(Err(e))) => return Err(Exchange::Failed(e.into())),
            Err(DriverEnded(Ok(()))) => return Err(Exchange::Failed(closed_early())),
        };
        let conn = (!driver_done).then_some(conn);
        Ok(resp.map(|inner| PooledBody { inner, conn, pool: Some(self.clone()) }))
    }

    async fn connect(&self, uri: &http::Uri) -> Result<Box<Conn>, UpstreamError> {
        let io = self.connector.clone().oneshot(uri.clone()).await.map_err(UpstreamError::Connect)?;
        let (sender, driver) = http1::Builder::new().handshake(io).await?;
        Ok(Box::new(Conn { sender, driver, idle_since: Instant::now() }))
    }

    /// The most recently used idle connection that is still open and fresh.
    fn checkout(&self) -> Option<Box<Conn>> {
        let now = Instant::now();
        loop {
            let mut conn = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop()?;
            if now.duration_since(conn.idle_since) > POOL_IDLE {
                continue;
            }
            // A close or reset from the upstream while idle is noticed here, without waiting.
            if !conn.sender.is_closed() && poll_once(&mut conn.driver).is_pending() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, mut conn: Box<Conn>) {
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < POOL_MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// Puts the request target in origin form (`/path?query`), as HTTP/1.1 wants it toward an
/// origin server (RFC 9112 §3.2.1), and returns the absolute URI to connect to.
fn to_origin_form(req: &mut Request<Body>) -> http::Uri {
    let origin = req.uri().path_and_query().map_or_else(|| http::Uri::from_static("/"), |pq| pq.clone().into());
    std::mem::replace(req.uri_mut(), origin)
}

enum Exchange {
    /// Nothing was sent: the request can go on another connection.
    Retry(Box<Request<Body>>),
    Failed(UpstreamError),
}

fn closed_early() -> UpstreamError {
    UpstreamError::Connect("the upstream closed the connection before answering".into())
}

/// The driver finished (connection closed, or failed) before the other future completed.
struct DriverEnded(hyper::Result<()>);

/// Polls `fut` and the connection's driver together, in the calling task. Says whether the
/// driver has ended (it must not be polled again, nor the connection reused).
async fn drive<F: Future>(driver: &mut Driver, fut: F) -> Result<(F::Output, bool), DriverEnded> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok((out, false)));
        }
        match Pin::new(&mut *driver).poll(cx) {
            Poll::Pending => Poll::Pending,
            // The driver may have completed the other future on its way out.
            Poll::Ready(ended) => match fut.as_mut().poll(cx) {
                Poll::Ready(out) => Poll::Ready(Ok((out, true))),
                Poll::Pending => Poll::Ready(Err(DriverEnded(ended))),
            },
        }
    })
    .await
}

fn poll_once(driver: &mut Driver) -> Poll<hyper::Result<()>> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    Pin::new(driver).poll(&mut cx)
}

/// An upstream response body that drives its connection while it is read, and gives the
/// connection back to the pool once it has been read to the end.
pub struct PooledBody {
    inner: Incoming,
    conn: Option<Box<Conn>>,
    pool: Option<Arc<Pool>>,
}

impl PooledBody {
    /// Back to the pool, if the connection is idle and ready for another request. It may not
    /// be: an upstream can answer before it has read the whole request body, and such a
    /// connection, still busy sending, is closed rather than parked.
    fn release(&mut self) {
        let (Some(mut conn), Some(pool)) = (self.conn.take(), self.pool.take()) else { return };
        if poll_once(&mut conn.driver).is_pending() && conn.sender.is_ready() {
            pool.checkin(conn);
        }
    }

    /// Polls the driver once; a finished driver means the connection cannot be reused.
    fn drive_connection(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.as_mut()
            && Pin::new(&mut conn.driver).poll(cx).is_ready()
        {
            self.conn = None;
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let mut polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            // The body waits for bytes that only the driver reads off the socket.
            this.drive_connection(cx);
            polled = Pin::new(&mut this.inner).poll_frame(cx);
        }
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, 304) may never be polled: its connection is reusable.
        // Any other body dropped before its end leaves unread bytes on the wire.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
