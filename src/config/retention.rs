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
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            run_every: default_run_every(),
            batch: default_batch(),
            lease: default_lease(),
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
