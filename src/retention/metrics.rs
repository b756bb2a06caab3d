//! The retention engine's Prometheus metrics, registered with the others.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: &'static str,
}

#[derive(Debug, Default)]
pub struct RetentionMetrics {
    /// Unix time of the last finished run.
    pub last_run: Gauge,
    pub records: Family<ActionLabels, Counter>,
    /// Records past their end of life and not acted on (held, or failed).
    pub overdue: Gauge,
}

impl RetentionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "retention_last_run_timestamp_seconds",
            "When the last retention run ended",
            m.last_run.clone(),
        );
        registry.register("retention_records", "Records acted on by retention runs, by action", m.records.clone());
        registry.register(
            "retention_overdue_records",
            "Records past their end of life that the last run could not act on (holds, failures)",
            m.overdue.clone(),
        );
        m
    }
}
