//! One timer per connection for the time it waits for a request (`server.keepalive_timeout`):
//! an idle keep-alive connection, a connection that sends nothing, a request head sent too
//! slowly (slowloris), over HTTP/1 and HTTP/2 alike.
//!
//! hyper's HTTP/1 `header_read_timeout` counts the same time, but it allocates and arms a
//! timer for every request head and drops it once the head is read: about 2 000 instructions
//! and a clock read per request (docs/performance.md). Here a request costs a counter when
//! hyper calls the service, and a counter and a clock read when its response ends; the
//! connection's one timer wakes at the deadline, looks at what its requests left, and either
//! closes the connection or sleeps until the new deadline.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The longest wait the watchdog counts: a longer timeout would never end in the life of a
/// process, and bounding it keeps every deadline within what an `Instant` can hold.
const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a connection's requests tell its watchdog; shared with the requests' futures and
/// bodies (HTTP/2 serves them on tasks of their own).
#[derive(Debug)]
pub struct Activity {
    /// Requests whose response has not ended yet.
    in_flight: AtomicUsize,
    /// When the connection last became idle, in microseconds after `opened` (0 until its
    /// first response ends).
    idle_since_us: AtomicU64,
    opened: Instant,
}

impl Activity {
    /// A connection that starts waiting for its first request now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { in_flight: AtomicUsize::new(0), idle_since_us: AtomicU64::new(0), opened: Instant::now() })
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    /// When the connection is to be closed if nothing happens, `None` when that time has come.
    fn deadline(&self, now: Instant, timeout: Duration) -> Option<Instant> {
        let timeout = timeout.min(LONGEST);
        // Acquire: a zero here sees the end time its last request stored before leaving.
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // A request in flight is never cut for idleness: look again one timeout later.
            return Some(now + timeout);
        }
        let idle_for = now.saturating_duration_since(self.since());
        (idle_for < timeout).then(|| now + (timeout - idle_for))
    }

    /// When the connection last became idle.
    fn since(&self) -> Instant {
        let us = self.idle_since_us.load(Ordering::Relaxed);
        self.opened.checked_add(Duration::from_micros(us)).unwrap_or(self.opened)
    }
}

/// A request in flight on its connection, until dropped: with its response body, once hyper
/// has sent the body's end (or dropped it), or with its future, when the connection went
/// away before the response was ready.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let us = u64::try_from(a.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
        // The latest end wins: HTTP/2 streams may end on other threads without lanes.
        a.idle_since_us.fetch_max(us, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// A response body that keeps its request counted in flight until it ends or is dropped.
/// Not boxed: hyper takes the service's body type as it is.
#[derive(Debug)]
pub struct TrackedBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl TrackedBody {
    pub fn new(body: axum::body::Body, busy: Busy) -> Self {
        Self { body, _busy: busy }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Drives `conn` to its end, or drops it (which closes the connection, as hyper's header
/// timeout did) once it has waited longer than `timeout` for a request: `None` then.
pub async fn close_when_idle<F: Future>(conn: F, activity: &Activity, timeout: Duration) -> Option<F::Output> {
    let mut conn = pin!(conn);
    let timer = pin!(tokio::time::sleep(timeout.min(LONGEST)));
    let mut watchdog = Watchdog { activity, timeout, timer, armed_for: None };
    std::future::poll_fn(move |cx| {
        // The connection first: a head that arrived with the deadline is served, not cut.
        if let Poll::Ready(out) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if watchdog.keep_open(cx) { Poll::Pending } else { Poll::Ready(None) }
    })
    .await
}

/// The connection's one timer.
struct Watchdog<'a> {
    activity: &'a Activity,
    timeout: Duration,
    timer: Pin<&'a mut Sleep>,
    /// The waker the armed timer wakes; `None` before it is first armed.
    armed_for: Option<Waker>,
}

impl Watchdog<'_> {
    /// Checked at every wake-up of the connection; `false` once it is to be closed.
    fn keep_open(&mut self, cx: &mut Context<'_>) -> bool {
        // The usual case costs a load and a comparison: the timer is only polled (which takes
        // atomic operations) to arm it again, or when the task's waker changed.
        let armed = self.armed_for.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if armed && !self.timer.is_elapsed() {
            return true;
        }
        self.arm(cx)
    }

    /// Sets the timer to the connection's next deadline and registers the task's waker;
    /// `false` when the deadline has passed.
    fn arm(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.activity.deadline(Instant::now(), self.timeout) else {
            return false;
        };
        self.timer.as_mut().reset(deadline);
        // Unconstrained: with the task's budget spent, a timer's poll returns `Pending`
        // without registering the waker, and a silent connection would never be woken.
        let registered = pin!(tokio::task::coop::unconstrained(self.timer.as_mut())).poll(cx).is_pending();
        if registered {
            self.armed_for = Some(cx.waker().clone());
        } else {
            // Already due (the clock moved on since `deadline`): check again at once.
            self.armed_for = None;
            cx.waker().wake_by_ref();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt as _;

    const TIMEOUT: Duration = Duration::from_secs(1);

    /// How long after now `close_when_idle` closed a connection that never ends by itself.
    async fn closed_after(activity: &Activity) -> Duration {
        let start = Instant::now();
        let out = close_when_idle(std::future::pending::<()>(), activity, TIMEOUT).await;
        assert!(out.is_none(), "a pending connection ends only when closed");
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_gets_a_request_is_closed_after_the_timeout() {
        let activity = Activity::new();
        let waited = closed_after(&activity).await;
        assert!(waited >= TIMEOUT && waited < TIMEOUT * 2, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_cut_and_the_wait_counts_from_its_end() {
        let activity = Activity::new();
        let busy = activity.busy();
        let ends = tokio::spawn(async move {
            // Ten timeouts long, as a slow upstream or a long download would be.
            tokio::time::sleep(TIMEOUT * 10).await;
            drop(busy);
        });
        let waited = closed_after(&activity).await;
        assert!(ends.is_finished(), "closed while the request was in flight, after {waited:?}");
        assert!(waited >= TIMEOUT * 11 && waited < TIMEOUT * 12, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn several_requests_in_flight_keep_the_connection_until_the_last_ends() {
        let activity = Activity::new();
        let (first, second) = (activity.busy(), activity.busy());
        tokio::spawn(async move {
            tokio::time::sleep(TIMEOUT * 2).await;
            drop(first);
            tokio::time::sleep(TIMEOUT * 3).await;
            drop(second);
        });
        let waited = closed_after(&activity).await;
        assert!(waited >= TIMEOUT * 6 && waited < TIMEOUT * 7, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_ends_by_itself_gives_its_result() {
        let activity = Activity::new();
        let conn = async {
            tokio::time::sleep(TIMEOUT / 2).await;
            7
        };
        assert_eq!(close_when_idle(conn, &activity, TIMEOUT).await, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_body_is_in_flight_until_read_to_its_end() {
        let activity = Activity::new();
        let body = TrackedBody::new(axum::body::Body::from("answer"), activity.busy());
        assert_eq!(activity.in_flight.load(Ordering::Relaxed), 1);
        assert_eq!(body.size_hint().exact(), Some(6), "the length reaches hyper's framing");
        tokio::time::sleep(TIMEOUT * 3).await;
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(&read[..], b"answer");
        assert_eq!(activity.in_flight.load(Ordering::Relaxed), 0);
        // Idle from the body's end, not from the connection's opening.
        assert_eq!(activity.deadline(Instant::now(), TIMEOUT), Some(Instant::now() + TIMEOUT));
    }
}
