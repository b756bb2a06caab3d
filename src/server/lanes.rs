//! Connections served on lanes: one single-threaded runtime per core, each on its own thread,
//! the way nginx runs one event loop per worker process.
//!
//! On the default work-stealing runtime a request's task moves between worker threads: the
//! client's socket and the upstream's wake whichever worker polled the reactor, and the
//! workers wake each other to share the work. On a proxy's hot path those hand-offs cost more
//! than the HTTP work (docs/performance.md, session 13: 15 % of the CPU per request with two
//! workers against one). A lane keeps a connection, its requests, their upstream connections
//! and their timers on one thread: every wake-up is local.
//!
//! Lanes live for the whole process, never stopped: a socket opened while serving a request
//! (a store connection the pool keeps) is driven by its lane's reactor, and may serve the
//! journal's last flush or a test's reading of the store after the listener closed. One set
//! is shared by every listener of the process; connections go to the lane with the fewest
//! open ones. `TOKIO_WORKER_THREADS` sets how many there are, as it sets the main runtime's
//! workers; the default is one per available core.

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::FutureExt as _;
use tokio::runtime::Handle;
use tracing::instrument::WithSubscriber as _;

thread_local! {
    /// The lane this thread runs, `None` on every other thread.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The process's lanes, started on first use.
pub struct Lanes {
    lanes: Vec<Lane>,
}

struct Lane {
    handle: Handle,
    /// Connections now served here.
    open: AtomicUsize,
}

static LANES: OnceLock<Option<Lanes>> = OnceLock::new();

/// The process's lanes; `None` when no lane thread could be started (connections are then
/// served on the caller's runtime, as tasks).
pub fn get() -> Option<&'static Lanes> {
    LANES.get_or_init(start).as_ref()
}

/// How many lanes the process runs (connection pools keep one idle list per lane).
pub fn count() -> usize {
    get().map_or(0, |l| l.lanes.len())
}

/// The lane of the calling thread, `None` outside lanes.
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

fn wanted() -> usize {
    // Read like tokio reads it for the main runtime's workers.
    let from_env = std::env::var("TOKIO_WORKER_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok());
    from_env.filter(|n| *n > 0).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

fn start() -> Option<Lanes> {
    start_n(wanted())
}

fn start_n(n: usize) -> Option<Lanes> {
    let mut lanes = Vec::new();
    for index in 0..n {
        match start_lane(index) {
            Ok(handle) => lanes.push(Lane { handle, open: AtomicUsize::new(0) }),
            Err(e) => {
                tracing::warn!(error = %e, lane = index, "cannot start a serving lane");
                break;
            }
        }
    }
    (!lanes.is_empty()).then_some(Lanes { lanes })
}

/// Starts lane `index`'s thread and runtime; returns its handle once it runs.
fn start_lane(index: usize) -> std::io::Result<Handle> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new().name(format!("guichet-lane-{index}")).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        CURRENT.with(|c| c.set(Some(index)));
        let _ = tx.send(Ok(runtime.handle().clone()));
        // Runs the lane's tasks until the process exits.
        runtime.block_on(std::future::pending::<()>());
    })?;
    rx.recv().map_err(std::io::Error::other)?
}

impl Lanes {
    /// Runs `serve` (one connection's whole life) on the lane with the fewest open
    /// connections.
    pub fn spawn<F>(&'static self, serve: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some((index, lane)) = self.lanes.iter().enumerate().min_by_key(|(_, l)| l.open.load(Ordering::Relaxed))
        else {
            tokio::spawn(serve);
            return;
        };
        lane.open.fetch_add(1, Ordering::Relaxed);
        let open = Open { lanes: self, index };
        // A combinator, not an `async` block awaiting `serve`: such a block would keep the
        // connection's future twice in the task (once captured, once being polled), about
        // 8 KiB more per connection.
        if crate::telemetry::installed() {
            lane.handle.spawn(serve.map(move |()| drop(open)));
        } else {
            // Embedded without the process's own logging (tests): the connection logs to
            // the subscriber of the code that started the server. Not in `serve`: setting a
            // scoped subscriber at every poll would cost every request.
            lane.handle.spawn(serve.with_current_subscriber().map(move |()| drop(open)));
        }
    }

    /// Connections now open on each lane (for tests and diagnostics).
    pub fn open(&self) -> Vec<usize> {
        self.lanes.iter().map(|l| l.open.load(Ordering::Relaxed)).collect()
    }
}

/// Counts a connection as open on its lane until dropped (served to the end or cancelled).
struct Open {
    lanes: &'static Lanes,
    index: usize,
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(lane) = self.lanes.lanes.get(self.index) {
            lane.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(n: usize) -> &'static Lanes {
        Box::leak(Box::new(start_n(n).expect("lanes start")))
    }

    /// Runs `f` on a lane of `lanes` and returns what it returned.
    fn on_lane<T: Send + 'static>(lanes: &'static Lanes, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        lanes.spawn(async move {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the lane ran the task")
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the test's own thread waits, no runtime's
    fn connections_go_to_the_lane_with_the_fewest_and_leave_it_when_done() {
        let lanes = lanes(2);
        assert_eq!(current(), None, "the test's thread is no lane");
        // A long-lived connection holds lane 0 …
        let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
        let (where_tx, where_rx) = std::sync::mpsc::channel();
        lanes.spawn(async move {
            let _ = where_tx.send(current());
            let _ = hold_rx.await;
        });
        let first = where_rx.recv_timeout(std::time::Duration::from_secs(10)).ok().flatten();
        assert_eq!(first, Some(0));
        // … so the next goes to lane 1, and runs on that lane's own thread.
        assert_eq!(on_lane(lanes, current), Some(1));
        // The count drops once the task has ended, just after it answered.
        let settled = |want: Vec<usize>| {
            for _ in 0..1000 {
                if lanes.open() == want {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            false
        };
        assert!(settled(vec![1, 0]), "a finished connection no longer counts: {:?}", lanes.open());
        drop(hold_tx);
        assert!(settled(vec![0, 0]), "{:?}", lanes.open());
    }

    #[test]
    fn a_lane_runs_tasks_and_timers_of_its_own_runtime() {
        let lanes = lanes(1);
        let (tx, rx) = std::sync::mpsc::channel();
        lanes.spawn(async move {
            // A task spawned from a lane stays on it; its timer is the lane's.
            let inner = tokio::spawn(async {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                current()
            });
            let _ = tx.send(inner.await.ok().flatten());
        });
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)).ok().flatten(), Some(0));
    }
}
