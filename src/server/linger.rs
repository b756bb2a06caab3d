//! Lingering close for HTTP/1: the rest of a request body that was answered without being read
//! is read and discarded for a while, as nginx's `lingering_close` does.
//!
//! A refusal given before the body is read (413 on `Content-Length`, a sign-in or consent
//! refusal before forwarding) drops the body, and hyper then closes the connection at once,
//! with the client's bytes still arriving. The kernel answers those bytes with a reset, and a
//! client still sending (a browser uploading a file too large) sees its next write fail
//! before it reads the answer: the citizen gets "connection reset" instead of the gateway's
//! page. Keeping the body alive in a task that discards it lets hyper go on reading, so the
//! client finishes sending and reads the answer.
//!
//! Bounded like nginx's defaults: at most [`LINGER_FOR`] in all, and no longer than
//! [`LINGER_SILENCE`] without a byte. HTTP/2 needs none of this: a stream answered early is
//! reset on its own, the connection stays open.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

/// The longest a dropped body is read for (nginx's `lingering_time`).
pub const LINGER_FOR: Duration = Duration::from_secs(30);
/// The longest wait for the next bytes of a dropped body (nginx's `lingering_timeout`).
pub const LINGER_SILENCE: Duration = Duration::from_secs(5);

/// An HTTP/1 request body that, dropped before its end, is drained in a task of its own.
#[derive(Debug)]
pub struct Lingering {
    inner: Option<Incoming>,
}

impl Lingering {
    pub fn new(body: Incoming) -> Self {
        Self { inner: Some(body) }
    }
}

impl Body for Lingering {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(body) = self.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            // Read to its end, or broken by the client: nothing left to linger for (a chunked
            // body never says it has ended once read).
            self.inner = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else { return };
        if body.is_end_stream() {
            return;
        }
        // Outside a runtime (never while serving) the body just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(discard(body));
        }
    }
}

/// Reads `body` to its end and throws it away, within the lingering bounds.
async fn discard(mut body: Incoming) {
    let _ = tokio::time::timeout(LINGER_FOR, async {
        while let Ok(Some(Ok(_))) = tokio::time::timeout(LINGER_SILENCE, body.frame()).await {}
    })
    .await;
}
