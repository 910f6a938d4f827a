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
    /// `Store::wal_backlog_frames` (set when scraped).
    pub store_wal_backlog: Gauge,
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
        let store_wal_backlog = Gauge::default();
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
            "warmpool_store_wal_backlog_frames",
            "WAL frames (4 KiB pages) the store's last checkpoint left to copy into the database file",
            store_wal_backlog.clone(),
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
            store_wal_backlog,
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

    /// The classic Prometheus text exposition (`text/plain; version=0.0.4`),
    /// for scrapers that do not ask for OpenMetrics.
    pub fn render_classic(&self) -> String {
        openmetrics_to_classic(&self.render())
    }
}

/// Rewrites an OpenMetrics exposition as the classic Prometheus text format:
/// a counter family is named after its samples (`NAME_total`), `unknown` is
/// `untyped`, an `info` family is a gauge named `NAME_info`, exemplars and the
/// `# UNIT` and `# EOF` lines are dropped. Samples are otherwise the same.
pub fn openmetrics_to_classic(text: &str) -> String {
    // Families whose samples carry a suffix their HELP and TYPE lines lack.
    let mut suffixed: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                match kind {
                    "counter" if !name.ends_with("_total") => {
                        suffixed.insert(name, "_total");
                    }
                    "info" if !name.ends_with("_info") => {
                        suffixed.insert(name, "_info");
                    }
                    _ => {}
                }
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|rest| ("# HELP ", rest))
            .or_else(|| line.strip_prefix("# TYPE ").map(|rest| ("# TYPE ", rest)));
        if let Some((head, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = suffixed.get(name).copied().unwrap_or("");
            let tail = match (head, tail) {
                ("# TYPE ", "unknown") => "untyped",
                ("# TYPE ", "info") => "gauge",
                _ => tail,
            };
            out.push_str(head);
            out.push_str(name);
            out.push_str(suffix);
            if !tail.is_empty() {
                out.push(' ');
                out.push_str(tail);
            }
            out.push('\n');
            continue;
        }
        // A sample: drop an exemplar (` # {...} value`), which only OpenMetrics has.
        let sample = match line.find(" # {") {
            Some(at) if !line.starts_with('#') => &line[..at],
            _ => line,
        };
        out.push_str(sample);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_after_their_samples_and_drops_what_only_openmetrics_has() {
        let m = Metrics::default();
        m.claim(
            &warmpool_core::PoolKey::new("default", warmpool_core::Location::Default),
            "hit",
        );
        m.proxied(200);
        m.claim_seconds.observe(0.001);
        let open = m.render();
        assert!(open.contains("# TYPE warmpool_claims counter"), "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");

        let classic = m.render_classic();
        assert!(!classic.contains("# EOF"), "{classic}");
        assert!(!classic.contains("# UNIT"), "{classic}");
        assert!(
            classic.contains("# TYPE warmpool_claims_total counter\n"),
            "{classic}"
        );
        assert!(classic.contains("# HELP warmpool_claims_total Claims by result"));
        assert!(classic.contains("# TYPE warmpool_proxy_requests_total counter\n"));
        assert!(classic.contains("# TYPE warmpool_claim_duration_seconds histogram\n"));
        assert!(classic.contains("# TYPE warmpool_containers gauge\n"));
        // Every family's TYPE line names a metric that has samples of that name
        // (or its histogram's), as the classic parser requires.
        for line in classic.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_ne!(kind, "unknown", "{line}");
                assert_ne!(kind, "info", "{line}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{line}");
                }
            }
        }
        // The samples are unchanged.
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(samples(&open), samples(&classic));
        assert!(
            classic.contains(
                "warmpool_claims_total{pool=\"default\",location=\"default\",result=\"hit\"} 1\n"
            ),
            "{classic}"
        );
    }

    #[test]
    fn classic_text_handles_unknown_info_and_exemplars() {
        let open = "# HELP a_thing A thing.\n# TYPE a_thing unknown\na_thing 3\n\
                    # HELP build Build.\n# TYPE build info\nbuild_info{version=\"1\"} 1\n\
                    # HELP hits Hits.\n# TYPE hits counter\n# UNIT hits hits\n\
                    hits_total 5 # {trace_id=\"x\"} 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_classic(open),
            "# HELP a_thing A thing.\n# TYPE a_thing untyped\na_thing 3\n\
             # HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{version=\"1\"} 1\n\
             # HELP hits_total Hits.\n# TYPE hits_total counter\nhits_total 5\n"
        );
    }
}
