//! Streaming body guards: a size limit and an idle timeout applied frame by frame, so bodies
//! of any length pass through with constant memory.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a guarded body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("body idle for longer than {0:?}")]
    Idle(Duration),
    #[error("body stream failed: {0}")]
    Inner(BoxError),
}

/// Wraps a body with an optional byte limit and an idle timeout.
pub struct GuardedBody<B> {
    inner: B,
    limit: Option<u64>,
    seen: u64,
    idle: Duration,
    /// Armed only when the inner body makes us wait: most bodies are ready at once, and a
    /// timer per body would cost a timer-wheel registration on every response.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B, limit: Option<u64>, idle: Duration) -> Self {
        Self { inner, limit, seen: 0, idle, deadline: None }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if let Some(limit) = this.limit.filter(|l| this.seen > *l) {
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit })));
                    }
                }
                if let Some(d) = this.deadline.as_mut() {
                    d.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Inner(e.into())))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let idle = this.idle;
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                ready!(deadline.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyError::Idle(this.idle))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Finds a `BodyError` anywhere in an error's source chain.
pub fn find_body_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<BodyError>() {
            return Some(b);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn limit_is_enforced() {
        let ok = GuardedBody::new(Full::new(Bytes::from_static(b"abc")), Some(3), Duration::from_secs(1));
        assert_eq!(ok.collect().await.unwrap().to_bytes(), "abc");
        let big = GuardedBody::new(Full::new(Bytes::from_static(b"abcd")), Some(3), Duration::from_secs(1));
        assert!(matches!(big.collect().await, Err(BodyError::TooLarge { limit: 3 })));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_body_times_out() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream = http_body_util::StreamBody::new(tokio_stream_from(rx));
        let body = GuardedBody::new(stream, None, Duration::from_secs(5));
        assert!(matches!(body.collect().await, Err(BodyError::Idle(_))));
    }

    fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
