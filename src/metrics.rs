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
    /// Tells this registry's handles apart in the per-thread cache of [`Metrics::record_request`]
    /// (addresses can be reused once a registry is dropped; ids are not).
    id: u64,
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

/// The handles a thread's last few requests counted into: a request like one of them (the usual
/// case on a busy route) counts without hashing its labels or taking the families' read lock.
/// Sound because the request families never remove a series: a remembered handle stays the one
/// the registry exports.
struct Recent {
    metrics: u64,
    route: Arc<str>,
    method: &'static str,
    status: u16,
    requests: Counter,
    latency: Histogram,
}

impl Recent {
    fn count(&self, seconds: f64) {
        self.requests.inc();
        self.latency.observe(seconds);
    }
}

/// How many label sets each thread keeps handles for.
const RECENT: usize = 4;

thread_local! {
    static RECENT_HANDLES: std::cell::RefCell<(usize, [Option<Recent>; RECENT])> =
        const { std::cell::RefCell::new((0, [None, None, None, None])) };
}

static NEXT_METRICS_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Metrics {
    /// Counts one answered request and observes its latency.
    pub fn record_request(&self, route: &Arc<str>, method: &http::Method, status: u16, elapsed: std::time::Duration) {
        let method = method_label(method);
        let seconds = elapsed.as_secs_f64();
        let same = |r: &Recent| r.metrics == self.id && r.status == status && r.method == method && *r.route == **route;
        let counted = RECENT_HANDLES.with_borrow(|(_, recent)| {
            let hit = recent.iter().flatten().find(|r| same(r));
            if let Some(r) = hit {
                r.count(seconds);
            }
            hit.is_some()
        });
        if counted {
            return;
        }
        let recent = Recent {
            metrics: self.id,
            route: route.clone(),
            method,
            status,
            requests: self
                .requests
                .get_or_create(&RequestLabels { route: Label(route.clone()), method, status })
                .clone(),
            latency: self.latency.get_or_create(&RouteLabels { route: Label(route.clone()) }).clone(),
        };
        recent.count(seconds);
        RECENT_HANDLES.with_borrow_mut(|(next, slots)| {
            if let Some(slot) = slots.get_mut(*next % RECENT) {
                *slot = Some(recent);
            }
            *next = next.wrapping_add(1);
        });
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
            id: NEXT_METRICS_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn requests_line(m: &Metrics, route: &str, method: &str, status: u16) -> Option<String> {
        let text = m.encode(PoolState { size: 0, idle: 0 });
        let key = format!("guichet_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&key).map(str::to_owned))
    }

    fn latency_count(m: &Metrics, route: &str) -> Option<String> {
        let text = m.encode(PoolState { size: 0, idle: 0 });
        let key = format!("guichet_http_request_duration_seconds_count{{route=\"{route}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&key).map(str::to_owned))
    }

    #[test]
    fn repeated_requests_are_all_counted() {
        let m = Metrics::new();
        let route: Arc<str> = Arc::from("demarches");
        for _ in 0..3 {
            m.record_request(&route, &http::Method::GET, 200, Duration::from_micros(300));
        }
        // Another Arc with the same name (a reloaded route table) counts in the same series.
        m.record_request(&Arc::from("demarches"), &http::Method::GET, 200, Duration::from_micros(300));
        assert_eq!(requests_line(&m, "demarches", "GET", 200).as_deref(), Some("4"));
        assert_eq!(latency_count(&m, "demarches").as_deref(), Some("4"));
    }

    #[test]
    fn two_registries_on_one_thread_keep_their_own_counts() {
        let first = Metrics::new();
        let second = Metrics::new();
        let route: Arc<str> = Arc::from("formulaire");
        first.record_request(&route, &http::Method::POST, 201, Duration::ZERO);
        first.record_request(&route, &http::Method::POST, 201, Duration::ZERO);
        second.record_request(&route, &http::Method::POST, 201, Duration::ZERO);
        assert_eq!(requests_line(&first, "formulaire", "POST", 201).as_deref(), Some("2"));
        assert_eq!(requests_line(&second, "formulaire", "POST", 201).as_deref(), Some("1"));
    }

    #[test]
    fn more_label_sets_than_remembered_are_each_counted() {
        let m = Metrics::new();
        let route: Arc<str> = Arc::from("compte");
        let statuses = [200, 201, 204, 302, 400, 404, 500];
        for _ in 0..3 {
            for status in statuses {
                m.record_request(&route, &http::Method::GET, status, Duration::ZERO);
            }
        }
        m.record_request(&route, &http::Method::HEAD, 200, Duration::ZERO);
        for status in statuses {
            assert_eq!(requests_line(&m, "compte", "GET", status).as_deref(), Some("3"), "status {status}");
        }
        assert_eq!(requests_line(&m, "compte", "HEAD", 200).as_deref(), Some("1"));
        assert_eq!(latency_count(&m, "compte").as_deref(), Some("22"));
    }
}
