//! Server configuration: every setting (env var, `serve` flag, default, global or
//! per pool) in one table, read by a pure function over a key-value source (env
//! vars or the `serve` flags, then a `warmpool.toml`), so tests never touch the
//! process environment.
//!
//! - `settings.rs`: the table of settings ([`SETTINGS`]).
//! - `reader.rs`: [`Config::from_sources`], the parser over a lookup by env var.
//! - `file.rs`: the config file, read into a [`ConfigFile`] and printed back
//!   ([`Config::to_toml`]); [`pool_from_table`], one `[pools.NAME]` table.
//! - `document.rs`: a pool's settings as a JSON document, read like such a table
//!   ([`pool_from_json`]), shown ([`PoolConfig::settings`]) and compared
//!   ([`settings_diff`]).

mod document;
mod file;
mod reader;
mod settings;

pub use document::{pool_from_json, scaling_settings, settings_diff, settings_from_table};
pub use file::{pool_from_table, ConfigFile};
pub use settings::{Setting, SETTINGS};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use warmpool_core::Location;

/// A bearer token. Compared in constant time; never printed (its `Debug` is
/// redacted, so `--check-config` and logs cannot show it).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Shortest token accepted, so that a guessable one cannot be configured.
    pub const MIN_LEN: usize = 16;

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == presented.len() && bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What happens to containers when warmpool shuts down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownPolicy {
    /// Stop every container (the default: nothing is left running).
    Stop,
    /// Leave ready and allocated containers running, their records intact, for the
    /// next start to adopt (upgrades and restarts without losing the pool).
    Keep,
}

/// Which runtime runs containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Process,
    /// The simulated runtime (containers are entries in memory); for tests and
    /// benchmarks of warmpool's own overhead.
    Sim,
    /// Docker Engine containers from `image`.
    Docker,
    /// Kubernetes pods from `image`, one per container.
    Kubernetes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub runtime: RuntimeKind,
    /// The pools; the first is the default pool (`WARMPOOL_POOL`, configured by the
    /// top-level settings), the others come from the config file's `[pools.NAME]`.
    pub pools: Vec<PoolConfig>,
    pub max_instances: u32,
    pub claim_timeout: Duration,
    pub stop_grace: Duration,
    pub drain_timeout: Duration,
    pub shutdown_policy: ShutdownPolicy,
    /// Client connections served at once.
    pub max_connections: usize,
    /// Time to send a request's headers (and to stay idle on a keep-alive
    /// connection).
    pub header_timeout: Duration,
    /// Longest pause while a request body is being sent.
    pub body_timeout: Duration,
    /// How much a client may send before a request's body.
    pub header_limits: crate::header_limits::HeaderLimits,
    /// How often ready containers are health-probed (zero: never).
    pub probe_interval: Duration,
    pub reconcile_interval: Duration,
    /// How often the runtime is re-listed and compared (orphans destroyed).
    pub sweep_interval: Duration,
    /// How long ids of ended containers keep answering 410 rather than 404.
    pub tombstone_retention: Duration,
    /// Where the simulated runtime says its containers listen.
    pub sim_address: String,
    /// How long a simulated container takes to become ready (zero: at once).
    pub sim_start: Duration,
    pub docker_network: String,
    pub docker_publish: bool,
    /// Port the app listens on inside a container (Docker and Kubernetes runtimes).
    pub container_port: u16,
    /// Longest wait for one Docker Engine API call.
    pub docker_timeout: Duration,
    /// How long one image pull may take.
    pub docker_pull_timeout: Duration,
    /// The Docker config file registry credentials come from (`None`: the
    /// docker CLI's own).
    pub docker_config: Option<PathBuf>,
    /// Namespace of the pods (Kubernetes runtime).
    pub k8s_namespace: String,
    /// Where each location's pods run (Kubernetes runtime).
    pub k8s_placement: warmpool_kubernetes::Placement,
    /// A kubeconfig file (Kubernetes runtime; `None`: in-cluster or `KUBECONFIG`).
    pub k8s_kubeconfig: Option<PathBuf>,
    /// Tokens of the management API and `POST /container`.
    pub api_tokens: Vec<Token>,
    /// Tokens of the admin surfaces (they also open everything the API tokens do).
    pub admin_tokens: Vec<Token>,
    /// The proxy also requires an API token (otherwise the id is the capability).
    pub proxy_require_token: bool,
    /// Allows listening on a non-loopback address without tokens.
    pub insecure_no_auth: bool,
    /// JSON log lines instead of text.
    pub log_json: bool,
    /// Where traces are exported over OTLP/HTTP (the full `/v1/traces` URL), if
    /// anywhere.
    pub otlp_endpoint: Option<http::Uri>,
    /// The resolved value of each global setting, by env var, for `--check-config`.
    resolved: Vec<(&'static str, String)>,
}

/// One pool: what its containers run, with what, how many are kept warm where, and
/// the defaults of its claims.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    /// Program and arguments of each container (process runtime). Empty: the
    /// sample app (`warmpool_runtime::SampleAppCommand::beside` this binary).
    pub command: Vec<String>,
    /// Image of each container (Docker runtime).
    pub image: String,
    pub health_path: String,
    /// Ready containers to keep, per location that keeps a warm pool.
    pub targets: Vec<(Location, u32)>,
    pub batch_size: u32,
    pub batch_spacing: Duration,
    /// Longest lifetime a claim may ask for, and the default.
    pub max_lifetime: Duration,
    /// Default idle timeout of claims (`None`: off).
    pub idle_timeout: Option<Duration>,
    pub start_timeout: Duration,
    /// Extra `KEY=value` env of every container.
    pub env: Vec<(String, String)>,
    pub vcpu: Option<f64>,
    pub memory_mib: Option<u64>,
    pub pids_limit: Option<i64>,
    pub disk_mb: Option<u64>,
    /// New-revision containers a rollout starts beyond the target before old
    /// ones stop.
    pub max_surge: warmpool_core::Surge,
    /// Failed starts of a new revision in a row that stop its rollout.
    pub rollout_failure_limit: u32,
    /// How long a rollout may take before it fails.
    pub progress_deadline: Duration,
    /// How its warm buffer follows demand (`None`: static targets).
    pub scaling: Option<warmpool_core::ScalingPolicy>,
    /// How a claim's set-up reaches a warm container.
    pub bind: warmpool_engine::Bind,
    /// Where a claim's files go in an image runtime's container.
    pub files_dir: String,
    /// When an image runtime pulls the image.
    pub pull: warmpool_runtime::PullPolicy,
    /// How a Docker container is locked down.
    pub hardening: warmpool_runtime::Hardening,
    /// The pool's labels, for claims by selector.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The resolved value of each setting, by env var, for `--check-config`.
    resolved: Vec<(&'static str, String)>,
}

impl Config {
    /// What is valid but will not do what it seems to say: static targets
    /// the global cap cuts short. Logged at start-up, printed by
    /// `--check-config`.
    pub fn warnings(&self) -> Vec<String> {
        let static_pools: Vec<(&str, u32)> = self
            .pools
            .iter()
            .filter(|p| p.scaling.is_none())
            .map(|p| (p.name.as_str(), p.targets.iter().map(|(_, n)| *n).sum()))
            .collect();
        let total: u32 = static_pools.iter().map(|(_, n)| *n).sum();
        if total <= self.max_instances {
            return Vec::new();
        }
        let each = static_pools
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        vec![format!(
            "the static targets add up to {total} ready containers ({each}), above max_instances ({}): \
             the pools stop short of them (GET /v1/pools says \"capped by max_instances\"); \
             raise max_instances or lower the targets",
            self.max_instances
        )]
    }

    /// Any token is configured, so requests are checked.
    pub fn auth_enabled(&self) -> bool {
        !self.api_tokens.is_empty() || !self.admin_tokens.is_empty()
    }

    /// The pool claims without a `pool` go to.
    pub fn default_pool(&self) -> &PoolConfig {
        &self.pools[0]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {key}={value:?}: {reason}")]
pub struct ConfigError {
    /// The env var of the setting, or `pools.NAME.key` for a pool of the config
    /// file, or `WARMPOOL_CONFIG` for the file itself.
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl PoolConfig {
    /// The target of `location` (0 where it keeps no warm pool).
    pub fn target(&self, location: Location) -> u32 {
        self.targets
            .iter()
            .find(|(l, _)| *l == location)
            .map_or(0, |(_, n)| *n)
    }
}

impl Config {
    /// Ready containers all pools keep, over every location.
    pub fn warm_total(&self) -> u64 {
        self.pools
            .iter()
            .flat_map(|p| &p.targets)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// The pool called `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The default configuration (what `warmpool serve` runs with no settings).
    pub fn defaults() -> Config {
        Config::from_lookup(|_| None).expect("defaults are valid")
    }
}
