//! Prometheus metrics, served on the admin listener only (never on the public one).

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::PoolState;

/// A label value shared without copying (route names are `Arc<str>` already).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Label(pub Arc<str>);

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Label,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Label,
}

/// The method as a metric label; anything unusual is `OTHER`, so a client cannot grow the
/// metric's cardinality with invented methods.
pub fn method_label(m: &http::Method) -> &'static str {
    use http::Method as M;
    match *m {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub route: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `applied` or `refused`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    /// `consent`, `session`, `all_sessions`, `shred`, or `resync` (notifications may have
    /// been missed: every cache emptied).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub in_flight: Gauge,
    pub store_connections: Family<PoolLabels, Gauge>,
    pub policy_reloads: Family<ReloadLabels, Counter>,
    /// Consent ledger rows refused because they do not match their journal entry or
    /// signature: every increment is an alert (the store was written behind the gateway).
    pub consent_ledger_rejected: Counter,
    pub changes_heard: Family<ChangeLabels, Counter>,
    /// The DPO's alert conditions (`alerts`, docs/alerts.md), set by the `alerts.check` job.
    pub alerts: AlertGauges,
    pub retention: crate::retention::metrics::RetentionMetrics,
}

/// One gauge per alert condition; the shipped rules (`docs/alerts/guichet.rules.yml`) fire on
/// them.
#[derive(Debug, Clone, Default)]
pub struct AlertGauges {
    /// Rights requests past their Art. 12(3) deadline and not answered.
    pub rights_overdue: Gauge,
    /// 1 when the last journal verification found a break (or could not run), else 0.
    pub journal_verification_failed: Gauge,
    /// Breaches neither notified nor decided with under 24 hours left (or past).
    pub breach_deadline_near: Gauge,
    /// 1 when the last retention run failed; set by the retention runs.
    pub retention_last_run_failed: Gauge,
    /// Unix time of the last completed check (an alert fires when it stops moving).
    pub last_check: Gauge,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~26 s: proxy hops are sub-millisecond, slow upstreams are seconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Counts one answered request and observes its latency.
    pub fn record_request(&self, route: &Arc<str>, method: &http::Method, status: u16, elapsed: std::time::Duration) {
        let labels = RequestLabels { route: Label(route.clone()), method: method_label(method), status };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&RouteLabels { route: Label(route.clone()) }).observe(elapsed.as_secs_f64());
    }

    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("guichet");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        let in_flight = Gauge::default();
        let store_connections = Family::<PoolLabels, Gauge>::default();
        registry.register("http_requests", "Requests answered, by route, method and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request's head, by route",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed exchanges with upstreams, by route and kind",
            upstream_errors.clone(),
        );
        registry.register("http_requests_in_flight", "Requests being answered now", in_flight.clone());
        registry.register("store_connections", "Store pool connections, by state", store_connections.clone());
        let policy_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy set reloads (SIGHUP or file change), by outcome: applied or refused",
            policy_reloads.clone(),
        );
        let consent_ledger_rejected = Counter::default();
        registry.register(
            "consent_ledger_rejected_rows",
            "Consent ledger rows refused on load: altered or forged behind the gateway (alert on any increase)",
            consent_ledger_rejected.clone(),
        );
        let changes_heard = Family::<ChangeLabels, Counter>::default();
        registry.register(
            "store_changes_heard",
            "Changes announced by other instances and heard by notification (PostgreSQL), by kind",
            changes_heard.clone(),
        );
        let alerts = AlertGauges::default();
        registry.register(
            "rights_overdue_requests",
            "Rights requests past their legal deadline and not answered",
            alerts.rights_overdue.clone(),
        );
        registry.register(
            "audit_verification_failed",
            "1 when the last journal verification found a break or could not run",
            alerts.journal_verification_failed.clone(),
        );
        registry.register(
            "breach_deadline_near",
            "Breaches not notified to the CNIL (nor decided) with under 24 hours of the 72 left",
            alerts.breach_deadline_near.clone(),
        );
        registry.register(
            "retention_last_run_failed",
            "1 when the last retention run failed",
            alerts.retention_last_run_failed.clone(),
        );
        registry.register(
            "alerts_last_check_timestamp_seconds",
            "Unix time of the last alert check",
            alerts.last_check.clone(),
        );
        let retention = crate::retention::metrics::RetentionMetrics::register(&mut registry);
        Self {
            registry,
            requests,
            latency,
            upstream_errors,
            in_flight,
            store_connections,
            policy_reloads,
            consent_ledger_rejected,
            changes_heard,
            alerts,
            retention,
        }
    }

    /// The text exposition format, with the store pool sampled now.
    pub fn encode(&self, pool: PoolState) -> String {
        let idle = i64::from(pool.idle);
        let busy = i64::from(pool.size).saturating_sub(idle);
        self.store_connections.get_or_create(&PoolLabels { state: "idle" }).set(idle);
        self.store_connections.get_or_create(&PoolLabels { state: "busy" }).set(busy);
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
