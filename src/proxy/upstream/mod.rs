//! Connections to upstreams: one pool of keep-alive HTTP/1.1 connections per route (each route
//! has its own timeouts and CA), HTTP/1.1 toward the application so that upgrades work
//! everywhere.
//!
//! A pooled connection is driven by the request that holds it, in that request's own task:
//! the request head and body are written and the response read by the same future, and the
//! response body reads its bytes straight off the socket (the pingora idea). A general-purpose
//! client runs each connection in a task of its own and hands requests, responses and body
//! chunks over through channels; on a proxy's hot path those hand-offs cost more than the
//! HTTP work itself. The wire format is in `codec` (parsing with `httparse`, as hyper does).
//! When the response body ends, the connection goes back to the pool; a connection whose
//! response was not read to the end, or whose framing was doubtful, is closed, never reused.
//!
//! Protocol upgrades (WebSocket) are rare and go through hyper's client on a connection of
//! their own.

pub(crate) mod codec;

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::io::poll_read_buf;

pub use codec::CodecError;
use codec::{Decoded, Decoder, RequestFraming};

use crate::routing::{Route, RouteTable};
use crate::tls::{self, TlsError};

/// Idle pooled connections are closed after this long (upstreams usually keep connections
/// open 5 s (Node) to 75 s (nginx); a connection the upstream closed meanwhile is noticed
/// when it is taken from the pool, and the request goes on a new one).
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Idle connections kept per route; more concurrent requests open more connections, which
/// are closed when they come back to a full pool.
const POOL_MAX_IDLE: usize = 256;

/// Room made in a connection's read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// Request-body data up to this size is copied next to its chunk head and written with it.
const COALESCE: usize = 16 * 1024;

/// Ready request-body bytes gathered behind the head before a write.
const GATHER: usize = 64 * 1024;

/// TCP keep-alive probes on upstream connections start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request could not be exchanged with the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection: refused, unreachable, TLS failure, connect timeout.
    #[error("cannot connect to the upstream")]
    Connect(#[source] BoxError),
    /// The connection failed while the request or the response head was exchanged, or the
    /// upstream's answer was not HTTP/1.1 as the gateway reads it.
    #[error("upstream exchange failed")]
    Exchange(#[source] BoxError),
    /// No response head within the route's `timeouts.response_headers` of the request's end.
    #[error("the upstream sent no response head in time")]
    HeadTimeout,
}

/// The pools of every route, by route name.
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    pools: std::collections::HashMap<Arc<str>, Arc<Pool>>,
}

impl Upstreams {
    pub fn build(routes: &RouteTable) -> Result<Self, TlsError> {
        let mut pools = std::collections::HashMap::new();
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
    connector: Connector,
    /// One idle list per serving lane (`server::lanes`), and one last for every other
    /// thread: a connection's socket is driven by the reactor of the lane that opened it, so
    /// it serves that lane's requests only (a wake-up from another thread would cost what
    /// lanes save).
    idle: Box<[Idle]>,
    /// The route's `timeouts.response_headers`: how long the upstream has to answer once the
    /// request has been written.
    head_timeout: Duration,
}

// Boxed on purpose: a connection is handed between the pool, a request and its response
// body, and each hand-over should move a pointer.
#[allow(clippy::vec_box)]
type Idle = Mutex<Vec<Box<Conn>>>;

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle", &self.idle_count()).finish_non_exhaustive()
    }
}

/// An open connection and the bytes read from it that no response has consumed yet.
struct Conn {
    io: Io,
    buf: BytesMut,
    idle_since: Instant,
    /// The response-head deadline of the request on the connection, made once and moved on
    /// for each request: pushing a registered timer later is one atomic operation, where a
    /// timer per request was a registration and a removal in the runtime's timer wheel (about
    /// 950 instructions per request). When the timer comes due with no request waiting (the
    /// connection idle in the pool), it wakes the task of the last request for nothing (whose
    /// waker it held until then), and the next request registers it again.
    head_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Conn {
    /// Starts the response-head deadline: `limit` from now.
    fn arm_head_deadline(&mut self, limit: Duration) {
        let now = tokio::time::Instant::now();
        // A limit too large to add is no limit (as `tokio::time::sleep` treats it).
        let at = now.checked_add(limit).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        match &mut self.head_deadline {
            Some(timer) => timer.as_mut().reset(at),
            None => self.head_deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

impl Pool {
    fn for_route(route: &Route) -> Result<Self, TlsError> {
        let lists = crate::server::lanes::count() + 1;
        let idle = (0..lists).map(|_| Mutex::new(Vec::new())).collect();
        Ok(Self { connector: Connector::for_route(route)?, idle, head_timeout: route.timeouts.response_headers })
    }

    /// Idle connections now (for tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        self.idle.iter().map(|l| l.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }

    /// The idle list of the calling thread's lane (the last one outside lanes).
    fn idle_here(&self) -> Option<&Idle> {
        let last = self.idle.len().checked_sub(1)?;
        self.idle.get(crate::server::lanes::current().unwrap_or(last).min(last))
    }

    /// Sends the request and waits for the response head, at most the route's response-head
    /// timeout once the request has been written (a slow upload is governed by the body's
    /// idle timeout alone). The connection travels with the response body and comes back to
    /// the pool when that body has been read to the end.
    /// A request goes again on a new connection when a pooled one turns out closed before
    /// any of it was written, or, for an idempotent request without a body (RFC 9110
    /// §9.2.2), when the pooled connection closed before any byte of an answer.
    /// `added`: the gateway's own header lines, written first (`proxy::headers::Added`).
    pub async fn send(
        self: &Arc<Self>,
        req: Request<Body>,
        added: &[u8],
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let mut out = Outgoing::new(req, added);
        while let Some(conn) = self.checkout() {
            match self.exchange(conn, out, true).await {
                Ok(resp) => return Ok(resp),
                Err(Exchange::Retry(again)) => out = *again,
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        // Boxed: the rare path must not grow every request's future.
        let conn = Box::pin(self.connect()).await?;
        match self.exchange(conn, out, false).await {
            Ok(resp) => Ok(resp),
            Err(Exchange::Failed(e)) => Err(e),
            Err(Exchange::Retry(_)) => Err(UpstreamError::Exchange(CodecError::Incomplete.into())),
        }
    }

    /// Sends a protocol-upgrade request on a connection of its own, driven by a task until
    /// the upgrade completes (the tunnel then owns the socket).
    pub async fn send_upgrade(&self, req: Request<Body>) -> Result<Response<PooledBody>, UpstreamError> {
        let mut req = req;
        to_origin_form(&mut req);
        let io = Box::pin(self.connector.connect()).await?;
        let (mut sender, driver) =
            http1::Builder::new().handshake(TokioIo::new(io)).await.map_err(|e| UpstreamError::Exchange(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = driver.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        let resp = sender.send_request(req).await.map_err(|e| UpstreamError::Exchange(e.into()))?;
        // The upgrade handle travels in the response's extensions; a 101 has no body.
        Ok(resp.map(|_| PooledBody::empty()))
    }

    async fn connect(&self) -> Result<Box<Conn>, UpstreamError> {
        let io = self.connector.connect().await?;
        Ok(Box::new(Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            idle_since: Instant::now(),
            head_deadline: None,
        }))
    }

    /// Writes the request and reads the response head on `conn`, both in this task: the
    /// upstream may answer before it has read the whole body (the rest is then not sent and
    /// the connection not reused).
    async fn exchange(
        self: &Arc<Self>,
        mut conn: Box<Conn>,
        mut out: Outgoing,
        reused: bool,
    ) -> Result<Response<PooledBody>, Exchange> {
        let limit = self.head_timeout;
        let mut sent = false;
        let head = poll_fn(|cx| {
            if !sent {
                match out.poll_send(&mut conn.io, cx) {
                    Poll::Ready(Ok(())) => {
                        sent = true;
                        conn.arm_head_deadline(limit);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Failure::Send(e))),
                    Poll::Pending => {}
                }
            }
            let Conn { io, buf, head_deadline, .. } = &mut *conn;
            match poll_head(io, buf, &out.method, cx) {
                Poll::Pending if sent => match head_deadline.as_mut().map(|t| t.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => Poll::Ready(Err(Failure::HeadTimeout)),
                    _ => Poll::Pending,
                },
                other => other,
            }
        })
        .await;
        let head = match head {
            Ok(head) => head,
            Err(failure) => return Err(out.after(failure, reused, conn.buf.is_empty())),
        };
        let reusable = head.reusable && sent;
        let body = PooledBody { conn: Some(conn), decoder: head.body, reusable, pool: Some(self.clone()) };
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        Ok(resp)
    }

    /// The most recently used idle connection that is still open and fresh.
    fn checkout(&self) -> Option<Box<Conn>> {
        let now = Instant::now();
        loop {
            let mut conn = self.idle_here()?.lock().unwrap_or_else(PoisonError::into_inner).pop()?;
            if now.duration_since(conn.idle_since) > POOL_IDLE {
                continue;
            }
            if still_open(&mut conn.io) {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, mut conn: Box<Conn>) {
        conn.idle_since = Instant::now();
        let Some(idle) = self.idle_here() else { return };
        let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < POOL_MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// Reads until a whole response head is in `buf`.
fn poll_head(
    io: &mut Io,
    buf: &mut BytesMut,
    method: &Method,
    cx: &mut Context<'_>,
) -> Poll<Result<codec::Head, Failure>> {
    loop {
        if !buf.is_empty()
            && let Some(head) = codec::parse_head(buf, method, false).map_err(Failure::Protocol)?
        {
            return Poll::Ready(Ok(head));
        }
        make_room(buf);
        match ready!(poll_read_buf(Pin::new(&mut *io), cx, buf)) {
            Ok(0) => return Poll::Ready(Err(Failure::Closed)),
            Ok(_) => {}
            Err(e) => return Poll::Ready(Err(Failure::Read(e))),
        }
    }
}

fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

/// A close or reset from the upstream while the connection was idle is noticed here, without
/// waiting; so are bytes nobody asked for, which make the connection unusable.
fn still_open(io: &mut Io) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut byte = [0u8; 1];
    let mut probe = ReadBuf::new(&mut byte);
    Pin::new(io).poll_read(&mut cx, &mut probe).is_pending()
}

/// Puts the request target in origin form (`/path?query`), as HTTP/1.1 wants it toward an
/// origin server (RFC 9112 §3.2.1).
fn to_origin_form(req: &mut Request<Body>) {
    let origin = req.uri().path_and_query().map_or_else(|| http::Uri::from_static("/"), |pq| pq.clone().into());
    *req.uri_mut() = origin;
}

enum Exchange {
    /// The request can go on another connection.
    Retry(Box<Outgoing>),
    Failed(UpstreamError),
}

/// What ended an exchange before a response head.
enum Failure {
    Send(SendError),
    Closed,
    Read(io::Error),
    Protocol(CodecError),
    /// No response head in time (`Pool::head_timeout`).
    HeadTimeout,
}

enum SendError {
    Io(io::Error),
    /// The request body failed (too large, idle, interrupted): the pipeline reports it.
    Body(axum::Error),
    Framing(&'static str),
}

/// A request on its way to the upstream: its head as bytes, its body, and what was written.
struct Outgoing {
    method: Method,
    head: Bytes,
    body: Option<Body>,
    framing: RequestFraming,
    /// Bytes to write, in order (head, chunk heads, data).
    pending: VecDeque<Bytes>,
    body_sent: u64,
    wrote: bool,
    flush: bool,
}

impl Outgoing {
    fn new(req: Request<Body>, added: &[u8]) -> Self {
        let (mut parts, body) = req.into_parts();
        // The framing is the body's, written by `encode_head`; the client's was hop-by-hop.
        let had_length = parts.headers.remove(CONTENT_LENGTH).is_some();
        parts.headers.remove(TRANSFER_ENCODING);
        let exact = if body.is_end_stream() { Some(0) } else { body.size_hint().exact() };
        let framing = RequestFraming::of(&parts.method, exact, had_length);
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut head = Vec::with_capacity(256 + added.len() + parts.headers.len() * 48);
        codec::encode_head(&parts.method, target, added, &parts.headers, framing, &mut head);
        let head = Bytes::from(head);
        let body = framing.has_body().then_some(body);
        Self {
            method: parts.method,
            pending: VecDeque::from([head.clone()]),
            head,
            body,
            framing,
            body_sent: 0,
            wrote: false,
            flush: false,
        }
    }

    /// Writes what is pending and pulls the body, until all is written or something waits.
    /// What the body has ready is gathered before each write, so the head and a buffered
    /// body leave in one system call and one segment (one wake-up of the upstream).
    fn poll_send(&mut self, io: &mut Io, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        loop {
            self.gather(cx)?;
            if !self.pending.is_empty() {
                let mut slices = [IoSlice::new(&[]); 8];
                for (slot, piece) in slices.iter_mut().zip(&self.pending) {
                    *slot = IoSlice::new(piece);
                }
                let count = self.pending.len().min(slices.len());
                let n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, slices.get(..count).unwrap_or_default()))
                    .map_err(SendError::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(SendError::Io(io::ErrorKind::WriteZero.into())));
                }
                self.wrote = true;
                self.flush = true;
                self.advance(n);
                continue;
            }
            if self.flush {
                ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(SendError::Io)?;
                self.flush = false;
            }
            // Nothing pending: either all is sent, or the body waits (its waker is set).
            return if self.body.is_none() { Poll::Ready(Ok(())) } else { Poll::Pending };
        }
    }

    /// Moves the body's ready frames into `pending`, up to [`GATHER`] bytes.
    fn gather(&mut self, cx: &mut Context<'_>) -> Result<(), SendError> {
        while let Some(body) = self.body.as_mut() {
            if self.pending.iter().map(Bytes::len).sum::<usize>() >= GATHER {
                break;
            }
            match Pin::new(body).poll_frame(cx) {
                // Request trailers are dropped, as most proxies do.
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.push_data(data)?;
                    }
                }
                Poll::Ready(Some(Err(e))) => return Err(SendError::Body(e)),
                Poll::Ready(None) => {
                    self.body = None;
                    self.finish_body()?;
                }
                Poll::Pending => break,
            }
        }
        Ok(())
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.pending.front_mut() else { return };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.pending.pop_front();
        }
    }

    fn push_data(&mut self, data: Bytes) -> Result<(), SendError> {
        // An empty chunk would end a chunked body.
        if data.is_empty() {
            return Ok(());
        }
        self.body_sent += data.len() as u64;
        match self.framing {
            RequestFraming::Length(n) if self.body_sent > n => {
                return Err(SendError::Framing("the request body is longer than announced"));
            }
            RequestFraming::Chunked if data.len() <= COALESCE => {
                let head = codec::chunk_head(data.len());
                let mut chunk = BytesMut::with_capacity(head.len() + data.len() + 2);
                chunk.extend_from_slice(&head);
                chunk.extend_from_slice(&data);
                chunk.extend_from_slice(b"\r\n");
                self.pending.push_back(chunk.freeze());
                return Ok(());
            }
            RequestFraming::Chunked => {
                self.pending.push_back(codec::chunk_head(data.len()));
                self.pending.push_back(data);
                self.pending.push_back(Bytes::from_static(b"\r\n"));
                return Ok(());
            }
            RequestFraming::Length(_) | RequestFraming::Empty => {}
        }
        self.pending.push_back(data);
        Ok(())
    }

    fn finish_body(&mut self) -> Result<(), SendError> {
        match self.framing {
            RequestFraming::Chunked => self.pending.push_back(Bytes::from_static(b"0\r\n\r\n")),
            RequestFraming::Length(n) if self.body_sent != n => {
                return Err(SendError::Framing("the request body is shorter than announced"));
            }
            RequestFraming::Length(_) | RequestFraming::Empty => {}
        }
        Ok(())
    }

    /// Whether the same head may go again on another connection once written: only an
    /// idempotent request without a body.
    fn replayable(&self) -> bool {
        !self.framing.has_body() && self.method.is_idempotent()
    }

    /// Turns a failed exchange into a retry when that is safe, an error otherwise.
    fn after(mut self, failure: Failure, reused: bool, nothing_read: bool) -> Exchange {
        let retryable = match &failure {
            Failure::Send(SendError::Io(_)) => true,
            Failure::Closed | Failure::Read(_) => nothing_read,
            Failure::Send(_) | Failure::Protocol(_) | Failure::HeadTimeout => false,
        };
        // Nothing left: what was gathered is still pending, and goes as it is.
        if reused && retryable && !self.wrote {
            self.flush = false;
            return Exchange::Retry(Box::new(self));
        }
        // Written, but without a body and idempotent: the same head again.
        if reused && retryable && self.replayable() {
            self.wrote = false;
            self.flush = false;
            self.pending = VecDeque::from([self.head.clone()]);
            return Exchange::Retry(Box::new(self));
        }
        Exchange::Failed(match failure {
            Failure::HeadTimeout => UpstreamError::HeadTimeout,
            Failure::Send(SendError::Io(e)) | Failure::Read(e) => UpstreamError::Exchange(e.into()),
            Failure::Send(SendError::Body(e)) => UpstreamError::Exchange(e.into()),
            Failure::Send(SendError::Framing(why)) => UpstreamError::Exchange(why.into()),
            Failure::Closed => UpstreamError::Exchange(CodecError::Incomplete.into()),
            Failure::Protocol(e) => UpstreamError::Exchange(e.into()),
        })
    }
}

/// An upstream response body read straight off its connection, which goes back to the pool
/// once the body has been read to the end.
pub struct PooledBody {
    conn: Option<Box<Conn>>,
    decoder: Decoder,
    reusable: bool,
    pool: Option<Arc<Pool>>,
}

impl PooledBody {
    fn empty() -> Self {
        Self { conn: None, decoder: Decoder::Done, reusable: false, pool: None }
    }

    /// Back to the pool, when nothing doubtful happened on the connection and nothing was
    /// left unread (bytes past the response's end would be read as the next response).
    fn release(&mut self) {
        let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.take()) else { return };
        if self.reusable && conn.buf.is_empty() {
            pool.checkin(conn);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = CodecError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, CodecError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            match this.decoder.decode(&mut conn.buf) {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Decoded::End) => {
                    this.release();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            make_room(&mut conn.buf);
            match ready!(poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)) {
                Ok(0) if this.decoder == Decoder::UntilClose => {
                    this.decoder = Decoder::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(CodecError::Incomplete)));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(CodecError::Io(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder == Decoder::Done
    }

    fn size_hint(&self) -> SizeHint {
        self.decoder.exact_len().map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty or fully read body may never be polled to its end: its connection is
        // reusable. Any other body dropped early leaves unread bytes on the wire.
        if self.decoder == Decoder::Done {
            self.release();
        }
    }
}

/// Opens connections to one upstream: name resolution, TCP, and TLS for https upstreams.
struct Connector {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl Connector {
    fn for_route(route: &Route) -> Result<Self, TlsError> {
        let up = &route.upstream;
        let https = up.is_https();
        // `[::1]` in a URL, `::1` for the resolver and the certificate check.
        let host = up.authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = up.authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut config = tls::client_config(up.ca_file.as_deref())?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.clone()).map_err(|_| {
                TlsError::Config(rustls::Error::General(format!("`{host}` is not a valid TLS server name")))
            })?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self { host, port, tls, timeout: route.timeouts.connect })
    }

    /// A new connection; the connect timeout covers the TCP and the TLS handshakes.
    async fn connect(&self) -> Result<Io, UpstreamError> {
        match tokio::time::timeout(self.timeout, self.open()).await {
            Ok(r) => r.map_err(|e| UpstreamError::Connect(e.into())),
            Err(_) => Err(UpstreamError::Connect(io::Error::from(io::ErrorKind::TimedOut).into())),
        }
    }

    async fn open(&self) -> io::Result<Io> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the upstream's name resolves to no address");
        for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
            match TcpStream::connect(addr).await {
                Ok(tcp) => return self.secure(configure(tcp)?).await,
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn secure(&self, tcp: TcpStream) -> io::Result<Io> {
        match &self.tls {
            None => Ok(Io::Plain(tcp)),
            Some((connector, name)) => Ok(Io::Tls(Box::new(connector.connect(name.clone(), tcp).await?))),
        }
    }
}

fn configure(tcp: TcpStream) -> io::Result<TcpStream> {
    tcp.set_nodelay(true)?;
    socket2::SockRef::from(&tcp).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE))?;
    Ok(tcp)
}

/// A connection to an upstream, in clear or in TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
