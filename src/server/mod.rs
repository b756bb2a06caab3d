//! Bytes in: listeners, TLS termination, HTTP/1.1 and HTTP/2 connections, graceful shutdown.

pub mod drain;
pub mod idle;
pub mod lanes;
pub mod linger;
pub mod middleware;
pub mod openapi;
pub mod redirect;
pub mod router;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use idle::{Activity, TrackedBody};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

pub use middleware::RequestId;

/// Facts about the connection a request arrived on, put in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ConnMeta {
    pub peer: SocketAddr,
    pub tls: bool,
}

impl Default for ConnMeta {
    fn default() -> Self {
        Self { peer: SocketAddr::from(([0, 0, 0, 0], 0)), tls: false }
    }
}

/// Limits applied while reading requests off the wire.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Configured `server.max_header_bytes`; the wire parser gets headroom above it so the
    /// receive phase can answer 431 with a proper body.
    pub max_header_bytes: usize,
    /// How long a connection may wait for its next request head (`server.keepalive_timeout`):
    /// from its opening (after the TLS handshake) or the end of its last response.
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
}

/// What a listener serves: one request in, one response out (gateway errors are responses).
pub trait Front: Clone + Send + Sync + 'static {
    /// Takes `self` by value (a cheap clone per request): the future must not borrow it.
    fn call(
        self,
        req: axum::extract::Request,
        conn: ConnMeta,
    ) -> impl std::future::Future<Output = axum::response::Response> + Send + 'static;
}

/// Handlers read the connection's facts from the request's extensions.
impl Front for Router {
    async fn call(self, mut req: axum::extract::Request, conn: ConnMeta) -> axum::response::Response {
        req.extensions_mut().insert(conn);
        match self.oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}

/// Accepts connections until `shutdown` turns true, then lets in-flight requests finish for
/// at most `grace`.
pub async fn serve<F: Front>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    front: F,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let builder = Arc::new(http_builder(limits));
    let graceful = drain::Drain::new();
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let meta = ConnMeta { peer, tls: tls.is_some() };
                let front = front.clone();
                let builder = builder.clone();
                // The connection leaves this runtime's reactor: its lane's drives it.
                let tcp = match tcp.into_std() {
                    Ok(tcp) => tcp,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot hand the connection to a lane");
                        continue;
                    }
                };
                let conn = Conn { builder, front, meta, watcher: graceful.watcher(), limits };
                spawn_conn(conn.serve_accepted(tcp, tls.clone()));
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

/// Serves one connection on a lane (`lanes`), or as a task of this runtime without lanes.
fn spawn_conn(serve: impl std::future::Future<Output = ()> + Send + 'static) {
    match lanes::get() {
        Some(lanes) => lanes.spawn(serve),
        None => {
            tokio::spawn(serve);
        }
    }
}

/// One accepted connection and what serving it takes.
struct Conn<F> {
    builder: Arc<Builder<TokioExecutor>>,
    front: F,
    meta: ConnMeta,
    watcher: drain::Watcher,
    limits: ConnLimits,
}

impl<F: Front> Conn<F> {
    /// Serves the connection on the lane that polls the returned future: the TLS handshake
    /// first when the listener has TLS, then HTTP.
    ///
    /// The future lives as long as the connection, idle keep-alive ones included, so it is
    /// kept small (docs/performance.md, "What changed the numbers (session 19)"): the HTTP
    /// connection is boxed in [`Conn::serve`], and the TLS branch is boxed here so that a
    /// plain connection does not carry room for a handshake it never does.
    async fn serve_accepted(self, tcp: std::net::TcpStream, tls: Option<TlsAcceptor>) {
        // Registered here, with the reactor of the lane that polls this future.
        let tcp = match tokio::net::TcpStream::from_std(tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!(error = %e, "cannot serve the connection on its lane");
                return;
            }
        };
        match tls {
            // No wait for the first bytes here: the connection's watchdog counts the time the
            // auto builder waits for them (to tell HTTP/1 from HTTP/2).
            None => self.serve(tcp).await,
            Some(acceptor) => {
                Box::pin(async move {
                    let handshake = tokio::time::timeout(self.limits.tls_handshake_timeout, acceptor.accept(tcp));
                    let Ok(Ok(stream)) = handshake.await else {
                        tracing::debug!("TLS handshake failed or timed out");
                        return;
                    };
                    self.serve(stream).await;
                })
                .await
            }
        }
    }

    /// Serves HTTP on `stream` until the client leaves, the server shuts down, or the
    /// connection waits for a request longer than allowed.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let svc = service(self.front, self.meta, activity.clone());
        // Boxed: the layers around it (shutdown, watchdog) then hold a pointer, not a copy each
        // of its 1.5 KiB of state.
        let conn = Box::pin(self.builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned());
        match idle::close_when_idle(self.watcher.watch(conn), &activity, self.limits.header_read_timeout).await {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
            None => tracing::debug!("connection closed: no request head in time"),
        }
    }
}

fn http_builder(limits: ConnLimits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    let wire_limit = (limits.max_header_bytes + 16 * 1024).max(8192);
    // No timer and no head timeout of hyper's: it would arm a timer for every request head.
    // The connection's watchdog (`idle`) counts the same wait, once per connection.
    b.http1().header_read_timeout(None).max_buf_size(wire_limit).keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(wire_limit).unwrap_or(u32::MAX))
        .max_concurrent_streams(250);
    b
}

/// The front as a hyper service, with the connection's facts added to each request and each
/// request counted in flight, for the connection's watchdog, until its response has ended. An
/// HTTP/1 body answered before its end is read to its end afterwards (`linger`).
fn service<F: Front>(
    front: F,
    meta: ConnMeta,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = http::Response<TrackedBody>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let busy = activity.busy();
        let req = if req.version() == http::Version::HTTP_2 {
            req.map(axum::body::Body::new)
        } else {
            req.map(|body| axum::body::Body::new(linger::Lingering::new(body)))
        };
        // Boxed once here, the request's future is a pointer that hyper can move around.
        let resp = Box::pin(front.clone().call(req, meta));
        async move { Ok::<_, Infallible>(resp.await.map(|body| TrackedBody::new(body, busy))) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }

    /// An idle keep-alive connection keeps its task's future for as long as it stays open, and
    /// a town's browsers keep thousands open: the future must not carry copies of the HTTP
    /// connection's state (once 13 KiB for 1.5 KiB of state: docs/performance.md).
    #[tokio::test]
    async fn an_accepted_connection_waits_in_a_small_future() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (tcp, peer) = listener.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        let graceful = drain::Drain::new();
        let accepted = Conn {
            builder: Arc::new(http_builder(limits())),
            front: Router::new(),
            meta: ConnMeta { peer, tls: false },
            watcher: graceful.watcher(),
            limits: limits(),
        };
        let serving = accepted.serve_accepted(tcp, None);
        assert!(std::mem::size_of_val(&serving) <= 2048, "{} bytes", std::mem::size_of_val(&serving));
        drop(client);
    }
}
