//! Graceful shutdown of the connections: when the server stops, each connection is asked to
//! finish the request it serves and close; the server waits for all of them (at most its
//! grace period).
//!
//! hyper-util's `GracefulShutdown` does the same, but polls its signal (a watch channel's
//! `changed` future, which takes the channel's lock) on every wake-up of every connection:
//! twice per proxied request. Here the signal's future is polled only to register the
//! connection's waker (again if the waker changed); the other wake-ups read the channel's
//! version, one atomic load.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Waker;

use tokio::sync::watch;

/// A connection that can be asked to finish gracefully.
pub trait Graceful: Future {
    /// Finish the request in progress, then close (HTTP/1), or send GOAWAY (HTTP/2).
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, B, S, E> Graceful for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper_util::server::conn::auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// A boxed connection (what the server watches, so that its state is not moved around).
impl<C: Graceful + ?Sized> Graceful for Pin<Box<C>> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        Pin::get_mut(self).as_mut().graceful_shutdown();
    }
}

/// The server's side: tells every watched connection to finish, then waits for them.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<()>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        Self { tx: watch::channel(()).0 }
    }

    /// What one new connection watches.
    pub fn watcher(&self) -> Watcher {
        Watcher { rx: self.tx.subscribe() }
    }

    /// Asks every watched connection to finish and returns once all have ended.
    pub async fn shutdown(self) {
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

/// One connection's view of the server's shutdown.
#[derive(Debug)]
pub struct Watcher {
    rx: watch::Receiver<()>,
}

impl Watcher {
    /// Drives `conn` to its end, asking it to finish gracefully once the server shuts down.
    pub async fn watch<C: Graceful>(self, conn: C) -> C::Output {
        let probe = self.rx.clone();
        let mut rx = self.rx;
        // Completes when the server shuts down or is gone.
        let mut signal = pin!(async move {
            let _ = rx.changed().await;
        });
        let mut conn = pin!(conn);
        let mut registered: Option<Waker> = None;
        let mut stopping = false;
        std::future::poll_fn(move |cx| {
            if !stopping {
                let seen = registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
                stopping = if seen {
                    // Woken since the signal's future registered this waker: a version read
                    // tells whether the server is shutting down (an error: it is gone).
                    probe.has_changed().unwrap_or(true)
                } else {
                    let ready = signal.as_mut().poll(cx).is_ready();
                    registered = (!ready).then(|| cx.waker().clone());
                    ready
                };
                if stopping {
                    conn.as_mut().graceful_shutdown();
                }
            }
            conn.as_mut().poll(cx)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;
    use std::time::Duration;

    /// A connection that ends a while after it is asked to, counting the requests to finish.
    struct Conn {
        asked: Arc<AtomicUsize>,
        end: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl Future for Conn {
        type Output = &'static str;

        fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
            match self.end.as_mut() {
                Some(end) => end.as_mut().poll(cx).map(|()| "finished"),
                None => Poll::Pending,
            }
        }
    }

    impl Graceful for Conn {
        fn graceful_shutdown(mut self: Pin<&mut Self>) {
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.end = Some(Box::pin(tokio::time::sleep(Duration::from_secs(1))));
        }
    }

    fn conn() -> (Conn, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        (Conn { asked: asked.clone(), end: None }, asked)
    }

    #[tokio::test(start_paused = true)]
    async fn connections_are_asked_once_to_finish_and_the_server_waits_for_them() {
        let drain = Drain::new();
        let (a, asked_a) = conn();
        let (b, asked_b) = conn();
        let a = tokio::spawn(drain.watcher().watch(a));
        let b = tokio::spawn(drain.watcher().watch(b));
        // Served for a while: the connections are woken and polled without being stopped.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!((asked_a.load(Ordering::SeqCst), asked_b.load(Ordering::SeqCst)), (0, 0));
        assert!(!a.is_finished() && !b.is_finished());

        let start = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(60), drain.shutdown()).await.expect("the connections ended");
        assert!(start.elapsed() >= Duration::from_secs(1), "the server waited for its connections to end");
        assert_eq!(a.await.unwrap(), "finished");
        assert_eq!(b.await.unwrap(), "finished");
        assert_eq!((asked_a.load(Ordering::SeqCst), asked_b.load(Ordering::SeqCst)), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_woken_often_still_sees_the_shutdown() {
        let drain = Drain::new();
        let (c, asked) = conn();
        let task = tokio::spawn(drain.watcher().watch(WokenOften { inner: c, polls: 0 }));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // Bounded: a connection that missed the signal would keep the server waiting.
        tokio::time::timeout(Duration::from_secs(60), drain.shutdown()).await.expect("the connection ended");
        assert_eq!(task.await.unwrap(), "finished");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    /// Wakes its task on each of its first polls, as a busy connection is woken by its
    /// sockets (not forever: the paused clock only moves when the runtime is idle).
    struct WokenOften {
        inner: Conn,
        polls: usize,
    }

    impl Future for WokenOften {
        type Output = &'static str;

        fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
            self.polls += 1;
            let out = Pin::new(&mut self.inner).poll(cx);
            if out.is_pending() && self.polls < 50 {
                cx.waker().wake_by_ref();
            }
            out
        }
    }

    impl Graceful for WokenOften {
        fn graceful_shutdown(mut self: Pin<&mut Self>) {
            Pin::new(&mut self.inner).graceful_shutdown();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_accepted_after_the_signal_is_stopped_at_once() {
        let drain = Drain::new();
        let watcher = drain.watcher();
        let (c, asked) = conn();
        let _ = drain.tx.send(());
        let out = tokio::time::timeout(Duration::from_secs(60), watcher.watch(c)).await;
        assert_eq!(out.expect("the connection ended"), "finished");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }
}
