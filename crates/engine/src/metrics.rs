//! Prometheus metrics (`GET /metrics`): counters and histograms updated where
//! things happen, and gauges of container counts computed when scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClaimLabels {
    pub pool: String,
    pub location: String,
    /// `hit` (warm pool), `miss` (started on demand) or `rejected`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub pool: String,
    pub location: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    /// `1xx` to `5xx`.
    pub class: String,
}

pub struct Metrics {
    registry: Registry,
    pub claims: Family<ClaimLabels, Counter>,
    pub claim_seconds: Histogram,
    pub start_seconds: Histogram,
    /// Proxied requests by status class, indexed by the first digit - 1, so the
    /// proxy never looks a label set up.
    proxy_by_class: [Counter; 5],
    pub proxy_seconds: Histogram,
    pub reconcile_passes: Counter,
    pub reconcile_errors: Counter,
    pub reconcile_seconds: Histogram,
    /// Starts that failed (an error, an exit or a timeout before readiness), by
    /// pool and location.
    pub start_failures: Family<KeyLabels, Counter>,
    /// The store's own write errors (brought up to `Store::write_errors` when
    /// scraped).
    pub store_write_errors: Counter,
    pub containers: Family<StateLabels, Gauge>,
    /// Ready containers each pool key aims at (set when scraped).
    pub desired: Family<KeyLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub pool: String,
    pub location: String,
}

impl KeyLabels {
    pub fn of(key: &warmpool_core::PoolKey) -> Self {
        KeyLabels {
            pool: key.pool.to_string(),
            location: key.location.to_string(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        // 100 µs .. ~3.3 s for requests; 10 ms .. ~5 min for container starts.
        let fast = || Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let slow = || Histogram::new(exponential_buckets(0.01, 2.0, 16));
        let claims = Family::<ClaimLabels, Counter>::default();
        let claim_seconds = fast();
        let start_seconds = slow();
        let proxy = Family::<ClassLabels, Counter>::default();
        let proxy_by_class = ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|c| {
            proxy
                .get_or_create(&ClassLabels { class: c.into() })
                .clone()
        });
        let proxy_seconds = fast();
        let reconcile_passes = Counter::default();
        let reconcile_errors = Counter::default();
        let reconcile_seconds = fast();
        let containers = Family::<StateLabels, Gauge>::default();
        let start_failures = Family::<KeyLabels, Counter>::default();
        let store_write_errors = Counter::default();
        let desired = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "warmpool_pool_desired",
            "Ready containers each pool and location aims at: its target under the global cap, or its autoscaling policy's size",
            desired.clone(),
        );
        registry.register(
            "warmpool_claims",
            "Claims by result: hit (warm pool), miss (started on demand), rejected",
            claims.clone(),
        );
        registry.register(
            "warmpool_claim_duration_seconds",
            "Time to answer a claim",
            claim_seconds.clone(),
        );
        registry.register(
            "warmpool_container_start_duration_seconds",
            "Time from a container's record to its readiness",
            start_seconds.clone(),
        );
        registry.register(
            "warmpool_proxy_requests",
            "Proxied requests by status class",
            proxy,
        );
        registry.register(
            "warmpool_proxy_request_duration_seconds",
            "Time to a proxied response's headers",
            proxy_seconds.clone(),
        );
        registry.register(
            "warmpool_reconcile_passes",
            "Reconciler passes",
            reconcile_passes.clone(),
        );
        registry.register(
            "warmpool_reconcile_errors",
            "Reconciler actions that failed (starts, stops, removals)",
            reconcile_errors.clone(),
        );
        registry.register(
            "warmpool_reconcile_duration_seconds",
            "Time to plan and dispatch one reconciler pass",
            reconcile_seconds.clone(),
        );
        registry.register(
            "warmpool_container_start_failures",
            "Container starts that failed (an error, an exit or a timeout before readiness)",
            start_failures.clone(),
        );
        registry.register(
            "warmpool_store_write_errors",
            "Store writes that failed for the store's own reason (I/O, disk full, SQLite)",
            store_write_errors.clone(),
        );
        registry.register(
            "warmpool_containers",
            "Live containers by pool, location and state",
            containers.clone(),
        );
        Self {
            registry,
            claims,
            claim_seconds,
            start_seconds,
            proxy_by_class,
            proxy_seconds,
            reconcile_passes,
            reconcile_errors,
            reconcile_seconds,
            start_failures,
            store_write_errors,
            containers,
            desired,
        }
    }
}

impl Metrics {
    /// Counts a proxied answer with `status`.
    pub fn proxied(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.proxy_by_class[class].inc();
    }

    pub fn claim(&self, key: &warmpool_core::PoolKey, result: &str) {
        self.claims
            .get_or_create(&ClaimLabels {
                pool: key.pool.to_string(),
                location: key.location.to_string(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts a failed start of a container of `key`.
    pub fn start_failed(&self, key: &warmpool_core::PoolKey) {
        self.start_failures.get_or_create(&KeyLabels::of(key)).inc();
    }

    /// The text exposition (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
