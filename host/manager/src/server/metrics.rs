//! The manager's Prometheus metrics (`GET /metrics`, text format, no token): request latency by
//! route (claim latency is route `/v1/claim-next`), events stored and dropped, and, computed at
//! scrape time from the store, runs by status, queue depth and the oldest queued run's age.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::RunStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// Every metric of one manager, in the registry that owns them.
pub struct ManagerMetrics {
    registry: Registry,
    requests: Family<RouteLabels, Histogram>,
    events_stored: Counter,
    events_dropped: Counter,
    runs: Family<StatusLabels, Gauge>,
    queue_depth: Gauge,
    oldest_queued_age: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for ManagerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManagerMetrics")
    }
}

impl Default for ManagerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("aac_manager");
        let requests = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 1 ms to ~33 s: long-polls end within the wait they asked for.
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, by method, matched route and status",
            requests.clone(),
        );
        let events_stored = Counter::default();
        registry.register(
            "events_stored",
            "Events stored (duplicates of retried batches not counted)",
            events_stored.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Events runners reported dropped before shipping",
            events_dropped.clone(),
        );
        let runs = Family::<StatusLabels, Gauge>::default();
        registry.register("runs", "Runs stored, by status", runs.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Runs queued for a claim",
            queue_depth.clone(),
        );
        let oldest_queued_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_queued_age_seconds",
            "Age of the oldest queued run (0 when none is queued)",
            oldest_queued_age.clone(),
        );
        Self {
            registry,
            requests,
            events_stored,
            events_dropped,
            runs,
            queue_depth,
            oldest_queued_age,
        }
    }
}

impl ManagerMetrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .observe(seconds);
    }

    pub fn events_appended(&self, stored: u64, dropped: u64) {
        self.events_stored.inc_by(stored);
        self.events_dropped.inc_by(dropped);
    }

    /// The text exposition, with the store's counts as of `now_ms`.
    pub fn render(&self, stats: &RunStats, now_ms: u64) -> String {
        for status in [
            "queued",
            "running",
            "completed",
            "failed",
            "blocked",
            "cancelled",
        ] {
            let n = stats.by_status.get(status).copied().unwrap_or(0);
            self.runs
                .get_or_create(&StatusLabels {
                    status: status.into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let queued = stats.by_status.get("queued").copied().unwrap_or(0);
        self.queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        let age_ms = stats
            .oldest_queued_ms
            .map_or(0, |t| now_ms.saturating_sub(t));
        self.oldest_queued_age.set(age_ms as f64 / 1000.0);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
