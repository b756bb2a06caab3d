//! `[retention]`: when the retention engine runs (docs/retention.md, "Runs").

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// How often a run is queued (one instance runs it). `0s` turns the scheduler off
    /// (`guichet retention run` still works).
    #[serde(default = "default_run_every", with = "humantime_serde")]
    pub run_every: Duration,
    /// Records read and acted on per batch.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// How long a run's lease lasts without being renewed: a killed run's lease runs out
    /// after this, and the next run resumes its work.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// The agent role that sees elimination lists and gives or refuses the visa.
    #[serde(default = "default_archivist_role")]
    pub archivist_role: String,
    /// How long the gateway keeps its own records (`[retention.own_data]`; docs/retention.md,
    /// "The gateway's own data").
    #[serde(default)]
    pub own_data: OwnDataDurations,
}

/// How long each kind of the gateway's own records is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnDataDurations {
    /// Access and portability exports, counted from when they were ready.
    #[serde(with = "humantime_serde")]
    pub exports_after_ready: Duration,
    /// Jobs that finished, counted from their end.
    #[serde(with = "humantime_serde")]
    pub finished_jobs: Duration,
    /// Jobs that failed for good, kept for review, counted from their last attempt.
    #[serde(with = "humantime_serde")]
    pub dead_jobs: Duration,
    /// Notices to citizens once sent (or found undeliverable), counted from then.
    #[serde(with = "humantime_serde")]
    pub notice_message: Duration,
    /// A citizen's contact address once they have no activity left, counted from their
    /// last activity (address given or confirmed, request on an activity's routes, rights
    /// request); never while a notice to them is still to send.
    #[serde(with = "humantime_serde")]
    pub notify_contact: Duration,
    /// A rights request's file (the request, the applications' answers, its exports) once
    /// the request is closed, counted from its closing; a restriction request is kept while
    /// the restriction it set is in force.
    #[serde(with = "humantime_serde")]
    pub rights_requests: Duration,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Default for OwnDataDurations {
    fn default() -> Self {
        Self {
            exports_after_ready: 7 * DAY,
            finished_jobs: 30 * DAY,
            dead_jobs: 365 * DAY,
            notice_message: 365 * DAY,
            notify_contact: 3 * 365 * DAY,
            // The civil limitation period, 5 years (Code civil, art. 2224), with its leap day.
            rights_requests: 1826 * DAY,
        }
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            run_every: default_run_every(),
            batch: default_batch(),
            lease: default_lease(),
            own_data: OwnDataDurations::default(),
            archivist_role: default_archivist_role(),
        }
    }
}

fn default_archivist_role() -> String {
    "archiviste".to_owned()
}

fn default_run_every() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_batch() -> u32 {
    500
}

fn default_lease() -> Duration {
    Duration::from_secs(120)
}

/// The `[retention]` checks.
pub(super) fn validate(loaded: &super::Loaded, problems: &mut Vec<super::Problem>) {
    let r = &loaded.settings.retention;
    if r.batch == 0 || r.batch > 100_000 {
        problems.push(loaded.source.problem("retention.batch", "must be between 1 and 100000"));
    }
    if r.lease < Duration::from_secs(1) {
        problems.push(loaded.source.problem("retention.lease", "must be at least 1s"));
    }
}
