//! The citizen's last request on an activity's routes, recorded off the hot path: the proxy
//! hands a [`Seen`] to the [`Recorder`] (no await, no store), which forwards at most one per
//! (citizen, activity) and day to a background writer through a bounded channel. When the
//! channel is full the fact is dropped: tomorrow's request records it again, and a day lost
//! only ever makes retention start later for a citizen who is still active.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::Date;
use tokio::sync::mpsc;

use crate::app::App;

/// How many facts wait for the writer at most.
const QUEUE: usize = 10_000;
/// The writer gathers facts for at most this long before writing them.
const GATHER: Duration = Duration::from_millis(200);

/// One citizen's request on one activity's routes, by pseudonyms only: the field subject of
/// the activity's sector (nothing gateway-wide, which would join the citizen's sectors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub field_subject: String,
    /// The route that served it, and the pseudonym its application knows: none on a public
    /// route, whose application receives no pseudonym (so several sectors may share it).
    pub route: String,
    pub app_subject: Option<String>,
    pub activity: String,
    pub at_us: i64,
}

#[derive(Debug)]
pub struct Recorder {
    tx: mpsc::Sender<Seen>,
    rx: Mutex<Option<mpsc::Receiver<Seen>>>,
    /// The day each (field subject, activity), by hash, was last forwarded: no allocation
    /// on the request path.
    recent: Mutex<HashMap<u64, Date>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self { tx, rx: Mutex::new(Some(rx)), recent: Mutex::new(HashMap::new()), hasher: Default::default() }
    }

    /// Whether (subject, activity) still needs recording `today`; remembers that it will be.
    pub fn first_today(&self, field_subject: &str, activity: &str, today: Date) -> bool {
        use std::hash::BuildHasher as _;
        let key = self.hasher.hash_one((field_subject, activity));
        let Ok(mut recent) = self.recent.lock() else { return false };
        if recent.get(&key) == Some(&today) {
            return false;
        }
        if recent.len() >= QUEUE * 10 {
            // A new day, or a very busy one: start again rather than grow without bound.
            recent.clear();
        }
        recent.insert(key, today);
        true
    }

    /// Queues the fact for the writer; never waits.
    pub fn record(&self, seen: Seen) {
        if self.tx.try_send(seen).is_err() {
            tracing::debug!("retention: last-activity queue full, one fact dropped");
        }
    }

    /// Writes queued facts until the gateway stops (started once, by `run_until_stopped`).
    pub async fn write_until_stopped(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(mut rx) = app.retention_recorder.rx.lock().ok().and_then(|mut r| r.take()) else { return };
        loop {
            let first = tokio::select! {
                got = rx.recv() => match got { Some(s) => s, None => return },
                _ = stop.changed() => return,
            };
            let mut batch = vec![first];
            let deadline = tokio::time::sleep(GATHER);
            tokio::pin!(deadline);
            while batch.len() < 256 {
                tokio::select! {
                    got = rx.recv() => match got { Some(s) => batch.push(s), None => break },
                    () = &mut deadline => break,
                }
            }
            write(&app, &batch).await;
        }
    }
}

/// Writes facts now (the writer, and tests that need them stored at once).
pub async fn write(app: &App, batch: &[Seen]) {
    let set = app.policies.load();
    for seen in batch {
        let Some(activity) = set.activity(&seen.activity) else { continue };
        let categories: Vec<String> = activity.categories.iter().map(|c| c.id.clone()).collect();
        if let Err(e) = app.retention.seen(seen, &categories).await {
            tracing::warn!(error = %e, "retention: cannot record a citizen's last activity");
        }
    }
}
