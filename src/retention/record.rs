//! The citizen's last request on an activity's routes, recorded off the hot path: the proxy
//! hands a [`Seen`] to the [`Recorder`] (no await, no store), which forwards at most one per
//! (citizen, activity) and day to a background writer through a bounded channel. When the
//! channel is full the fact is dropped: tomorrow's request records it again, and a day lost
//! only ever makes retention start later for a citizen who is still active.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::{Date, OffsetDateTime};
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
    recent: Mutex<Recent>,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug, Default)]
struct Recent {
    /// The day each (field subject, activity), by hash, was last forwarded: no allocation
    /// on the request path.
    days: HashMap<u64, Date>,
    /// The last UTC hour asked about and its date in French local time: Paris's offset is
    /// a whole number of hours, so the date only changes on the hour.
    hour: Option<(i64, Date)>,
}

impl Recent {
    fn today(&mut self, now: OffsetDateTime) -> Date {
        let hour = now.unix_timestamp().div_euclid(3600);
        match self.hour {
            Some((h, date)) if h == hour => date,
            _ => {
                let date = crate::clock::paris_date(now);
                self.hour = Some((hour, date));
                date
            }
        }
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self { tx, rx: Mutex::new(Some(rx)), recent: Mutex::new(Recent::default()), hasher: Default::default() }
    }

    /// Whether (subject, activity) still needs recording on `now`'s day in French local
    /// time; remembers that it will be.
    pub fn first_today(&self, field_subject: &str, activity: &str, now: OffsetDateTime) -> bool {
        use std::hash::BuildHasher as _;
        let key = self.hasher.hash_one((field_subject, activity));
        let Ok(mut recent) = self.recent.lock() else { return false };
        let today = recent.today(now);
        if recent.days.get(&key) == Some(&today) {
            return false;
        }
        if recent.days.len() >= QUEUE * 10 {
            // A new day, or a very busy one: start again rather than grow without bound.
            recent.days.clear();
        }
        recent.days.insert(key, today);
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

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_day_is_a_day_in_french_local_time() {
        let r = Recorder::new();
        // Winter (UTC+1): 22:59 UTC is still the 10th in Paris, 23:00 UTC the 11th.
        assert!(r.first_today("s", "a", datetime!(2026-01-10 22:00:00 UTC)));
        assert!(!r.first_today("s", "a", datetime!(2026-01-10 22:59:59 UTC)), "same Paris day, same hour");
        assert!(r.first_today("s", "a", datetime!(2026-01-10 23:00:00 UTC)), "midnight in Paris");
        assert!(!r.first_today("s", "a", datetime!(2026-01-11 22:59:59 UTC)));
        // Summer (UTC+2): the day turns at 22:00 UTC.
        assert!(r.first_today("s", "a", datetime!(2026-07-10 21:59:59 UTC)));
        assert!(r.first_today("s", "a", datetime!(2026-07-10 22:00:00 UTC)), "midnight in Paris, summer time");
        assert!(!r.first_today("s", "a", datetime!(2026-07-11 12:00:00 UTC)));
        // Other subjects and activities are counted apart.
        assert!(r.first_today("t", "a", datetime!(2026-07-11 12:00:00 UTC)));
        assert!(r.first_today("s", "b", datetime!(2026-07-11 12:00:00 UTC)));
    }

    #[test]
    fn the_date_changes_with_the_summer_time_switch() {
        let r = Recorder::new();
        // 2026-03-29: Paris moves from UTC+1 to UTC+2 at 01:00 UTC; the day starts at 23:00
        // UTC on the 28th and the next at 22:00 UTC on the 29th.
        assert!(r.first_today("s", "a", datetime!(2026-03-28 23:30:00 UTC)));
        assert!(!r.first_today("s", "a", datetime!(2026-03-29 21:59:59 UTC)));
        assert!(r.first_today("s", "a", datetime!(2026-03-29 22:00:00 UTC)));
        // 2026-10-25: back to UTC+1 at 01:00 UTC; that day ends at 23:00 UTC.
        assert!(r.first_today("s", "a", datetime!(2026-10-24 22:00:00 UTC)));
        assert!(!r.first_today("s", "a", datetime!(2026-10-25 22:59:59 UTC)));
        assert!(r.first_today("s", "a", datetime!(2026-10-25 23:00:00 UTC)));
    }
}
