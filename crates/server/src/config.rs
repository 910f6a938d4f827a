//! Server configuration: a pure function over a key-value source (env vars or the
//! `serve` flags), so tests never touch the process environment.

use std::collections::HashMap;
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
    /// How often ready containers are health-probed (zero: never).
    pub probe_interval: Duration,
    pub reconcile_interval: Duration,
    /// How often the runtime is re-listed and compared (orphans destroyed).
    pub sweep_interval: Duration,
    /// How long ids of ended containers keep answering 410 rather than 404.
    pub tombstone_retention: Duration,
    /// Where the simulated runtime says its containers listen.
    pub sim_address: String,
    pub docker_network: String,
    pub docker_publish: bool,
    /// Port the app listens on inside a container (Docker and Kubernetes runtimes).
    pub container_port: u16,
    /// Longest wait for one Docker Engine API call.
    pub docker_timeout: Duration,
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
    /// The resolved value of each global setting, by env var, for `--check-config`.
    resolved: Vec<(&'static str, String)>,
}

/// One pool: what its containers run, with what, how many are kept warm where, and
/// the defaults of its claims.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    /// Program and arguments of each container (process runtime). Empty: this
    /// binary's own `sample-app`.
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
    /// The resolved value of each setting, by env var, for `--check-config`.
    resolved: Vec<(&'static str, String)>,
}

impl Config {
    /// Any token is configured, so requests are checked.
    pub fn auth_enabled(&self) -> bool {
        !self.api_tokens.is_empty() || !self.admin_tokens.is_empty()
    }

    /// The pool claims without a `pool` go to.
    pub fn default_pool(&self) -> &PoolConfig {
        &self.pools[0]
    }
}

/// One setting: its env var, its `serve` flag, its default and what it means.
pub struct Setting {
    pub env: &'static str,
    pub flag: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    /// A pool's own setting: the top-level value configures the default pool, and
    /// each `[pools.NAME]` table of the config file may set it for its pool.
    pub per_pool: bool,
}

impl Setting {
    /// Its key in the config file: the flag with `_` for `-`.
    pub fn file_key(&self) -> String {
        self.flag.replace('-', "_")
    }
}

macro_rules! settings {
    ($($scope:ident $env:literal, $flag:literal, $default:literal, $help:literal;)*) => {
        /// Every setting, in the order the README's table lists them.
        pub const SETTINGS: &[Setting] = &[$(Setting {
            env: $env, flag: $flag, default: $default, help: $help,
            per_pool: settings!(@scope $scope),
        }),*];
    };
    (@scope pool) => { true };
    (@scope global) => { false };
}

settings! {
    global "WARMPOOL_LISTEN", "listen", "127.0.0.1:8787", "address the API and proxy listen on";
    global "WARMPOOL_DATA_DIR", "data-dir", "./.warmpool", "directory of the SQLite store (warmpool.db) and container work dirs";
    global "WARMPOOL_RUNTIME", "runtime", "process", "what runs containers: process (local child processes), docker (Docker Engine), kubernetes (pods in a cluster) or sim (simulated, for tests)";
    pool "WARMPOOL_COMMAND", "command", "", "command of each container, shell-style words (default: this binary's own sample-app)";
    pool "WARMPOOL_HEALTH_PATH", "health-path", "/healthz", "readiness probe path";
    global "WARMPOOL_POOL", "pool", "default", "name of the default pool (the one the top-level settings configure and claims get unless they name another)";
    pool "POOL_TARGET_INSTANCES", "target", "30", "ready containers to keep per location";
    pool "WARMPOOL_TARGETS", "targets", "", "per-location targets overriding target, location=count pairs (weur=5,wnam=2); their locations keep a warm pool too";
    pool "POOL_BATCH_SIZE", "batch-size", "10", "containers started at most per batch";
    pool "POOL_BATCH_SPACING_IN_SECONDS", "batch-spacing", "10", "minimum seconds between two batches of one pool";
    pool "WARMPOOL_LOCATIONS", "locations", "default", "comma list of locations that keep a warm pool";
    global "WARMPOOL_MAX_INSTANCES", "max-instances", "1000", "global cap on live containers";
    pool "WARMPOOL_MAX_LIFETIME_SECONDS", "max-lifetime", "3600", "longest lifetime a claim may ask for (and the default)";
    pool "WARMPOOL_IDLE_TIMEOUT_SECONDS", "idle-timeout", "0", "stop an allocated container after this long without traffic, unless its claim says otherwise (0: off)";
    pool "WARMPOOL_START_TIMEOUT_SECONDS", "start-timeout", "30", "seconds a container has to become ready";
    global "WARMPOOL_CLAIM_TIMEOUT_SECONDS", "claim-timeout", "30", "seconds a claim waits for an on-demand start before 503";
    global "WARMPOOL_STOP_GRACE_SECONDS", "stop-grace", "5", "seconds between SIGTERM and SIGKILL when stopping a container";
    global "WARMPOOL_DRAIN_SECONDS", "drain-timeout", "10", "seconds in-flight requests (streams, WebSockets) get to finish at shutdown";
    global "WARMPOOL_SHUTDOWN_POLICY", "shutdown-policy", "stop", "at shutdown, stop every container (stop) or leave ready and allocated ones running for the next start to adopt (keep); starting ones are stopped either way";
    global "WARMPOOL_MAX_CONNECTIONS", "max-connections", "16384", "client connections served at once (more wait to be accepted); warmpool raises its open-files limit to the hard limit and warns if that is lower";
    global "WARMPOOL_HEADER_TIMEOUT_SECONDS", "header-timeout", "30", "seconds a client has to send a request's headers, also while a keep-alive connection is idle";
    global "WARMPOOL_BODY_TIMEOUT_SECONDS", "body-timeout", "30", "seconds a client may pause while sending a request body (management or proxied) before it gets 408";
    global "WARMPOOL_SWEEP_SECONDS", "sweep-interval", "30", "how often the runtime is re-listed: what vanished is failed, unknown containers carrying our tag are destroyed";
    global "WARMPOOL_PROBE_INTERVAL_SECONDS", "probe-interval", "10", "how often ready containers are health-probed; after 3 failures in a row one is failed and replaced (0: never)";
    global "WARMPOOL_RECONCILE_INTERVAL_SECONDS", "reconcile-interval", "5", "safety-net period of the reconciler";
    global "WARMPOOL_TOMBSTONE_HOURS", "tombstone-hours", "24", "hours an ended container's id answers 410 instead of 404";
    global "WARMPOOL_SIM_ADDRESS", "sim-address", "127.0.0.1:9", "address the simulated runtime reports for its containers";
    global "WARMPOOL_LOG_FORMAT", "log-format", "text", "log lines as text or json";
    pool "WARMPOOL_APP_ENV", "app-env", "", "extra env of every container, shell-style KEY=value words (in the config file also a table)";
    global "WARMPOOL_API_TOKEN", "api-token", "", "bearer tokens (comma separated, 16+ characters) for the API and POST /container";
    global "WARMPOOL_ADMIN_TOKEN", "admin-token", "", "bearer tokens (comma separated, 16+ characters) for the admin surfaces (and the API)";
    global "WARMPOOL_PROXY_REQUIRE_TOKEN", "proxy-require-token", "false", "the proxy also requires an API token (otherwise the unguessable id is the capability)";
    global "WARMPOOL_INSECURE_NO_AUTH", "insecure-no-auth", "false", "allow listening on a non-loopback address without any token";
    pool "WARMPOOL_IMAGE", "image", "warmpool/sample-app:latest", "image of each container (docker and kubernetes runtimes)";
    global "WARMPOOL_DOCKER_NETWORK", "docker-network", "warmpool", "bridge network containers join (created if missing)";
    global "WARMPOOL_DOCKER_PUBLISH", "docker-publish", "false", "publish container ports on 127.0.0.1 instead of using bridge IPs (hosts that cannot reach them)";
    global "WARMPOOL_CONTAINER_PORT", "container-port", "8080", "port the app listens on inside a container (docker and kubernetes runtimes)";
    global "WARMPOOL_DOCKER_TIMEOUT_SECONDS", "docker-timeout", "10", "seconds one Docker Engine API call may take (a stop also gets its grace period); a hung daemon fails creations with this error instead of holding them";
    global "WARMPOOL_KUBE_NAMESPACE", "kube-namespace", "warmpool", "namespace warmpool creates its pods in (kubernetes runtime)";
    global "WARMPOOL_KUBE_LOCATION_LABEL", "kube-location-label", "topology.kubernetes.io/region", "node label a location's pods select, with the location's name as value; default selects no node (kubernetes runtime)";
    global "WARMPOOL_KUBE_LOCATION_SELECTORS", "kube-location-selectors", "", "node selectors of locations that do not follow kube-location-label, LOCATION=KEY=VALUE[,KEY=VALUE] entries separated by ; (weur=topology.kubernetes.io/zone=eu-west-1a;apac= for any node)";
    global "WARMPOOL_KUBECONFIG", "kubeconfig", "", "kubeconfig file (default: KUBECONFIG or ~/.kube/config if present, else the in-cluster service account)";
    pool "WARMPOOL_VCPU", "vcpu", "0.25", "CPUs per container (docker and kubernetes runtimes; 0 for no limit)";
    pool "WARMPOOL_MEMORY_MIB", "memory-mib", "256", "hard memory limit per container, no swap (docker and kubernetes runtimes; 0 for none)";
    pool "WARMPOOL_PIDS_LIMIT", "pids-limit", "256", "processes per container (docker runtime; 0 for no limit)";
    pool "WARMPOOL_DISK_MB", "disk-mb", "512", "writable layer size per container, where the storage driver supports it (docker runtime), or ephemeral-storage (kubernetes runtime); 0 for none";
}

fn setting(env: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.env == env)
        .unwrap_or_else(|| panic!("{env} is not in SETTINGS"))
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

/// A parsed config file: top-level values and `[pools.NAME]` tables, keyed by env
/// var, values as they would be written in one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFile {
    pub settings: HashMap<String, String>,
    pub pools: Vec<(String, HashMap<String, String>)>,
}

/// Reads settings from a lookup by env var, with defaults, remembering each
/// resolved value and naming the setting in errors.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// `Some(pool)`: errors name `pools.POOL.key`.
    pool: Option<&'a str>,
    resolved: std::cell::RefCell<Vec<(&'static str, String)>>,
}

impl Reader<'_> {
    fn get(&self, env: &'static str) -> String {
        let v = self.get_secret(env);
        self.resolved.borrow_mut().push((env, v.clone()));
        v
    }

    /// The value, not remembered (so never printed).
    fn get_secret(&self, env: &'static str) -> String {
        (self.lookup)(env)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| setting(env).default.to_owned())
    }

    /// Whether the source sets `env` (rather than leaving it to its default).
    fn is_set(&self, env: &'static str) -> bool {
        (self.lookup)(env).is_some_and(|v| !v.trim().is_empty())
    }

    fn err(&self, env: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            key: match self.pool {
                Some(p) => format!("pools.{p}.{}", setting(env).file_key()),
                None => env.to_owned(),
            },
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    fn num(&self, env: &'static str, min: u32, max: u32) -> Result<u32, ConfigError> {
        let v = self.get(env);
        let n: u32 = v
            .parse()
            .map_err(|_| self.err(env, &v, "expected a whole number"))?;
        if n < min || n > max {
            return Err(self.err(env, &v, format!("expected {min} to {max}")));
        }
        Ok(n)
    }

    fn secs(&self, env: &'static str, min: f64, max: f64) -> Result<Duration, ConfigError> {
        let v = self.get(env);
        let s: f64 = v
            .parse()
            .map_err(|_| self.err(env, &v, "expected a number of seconds"))?;
        if !s.is_finite() || s < min || s > max {
            return Err(self.err(env, &v, format!("expected {min} to {max} seconds")));
        }
        Ok(Duration::from_secs_f64(s))
    }

    fn flag(&self, env: &'static str) -> Result<bool, ConfigError> {
        let v = self.get(env);
        match v.as_str() {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(self.err(env, &v, "expected true or false")),
        }
    }

    fn words(&self, env: &'static str) -> Result<Vec<String>, ConfigError> {
        let v = self.get(env);
        shell_words::split(&v).map_err(|e| self.err(env, &v, e.to_string()))
    }

    fn location(&self, env: &'static str, v: &str, l: &str) -> Result<Location, ConfigError> {
        l.parse()
            .map_err(|e: warmpool_core::InvalidLocation| self.err(env, v, e.to_string()))
    }

    /// Tokens; only their number is remembered.
    fn tokens(&self, env: &'static str) -> Result<Vec<Token>, ConfigError> {
        let v = self.get_secret(env);
        let tokens: Vec<Token> = v
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                if t.len() < Token::MIN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
                    // The value is a secret: the error must not repeat it.
                    Err(self.err(
                        env,
                        "<redacted>",
                        format!(
                            "each token needs at least {} visible characters",
                            Token::MIN_LEN
                        ),
                    ))
                } else {
                    Ok(Token(t.to_owned()))
                }
            })
            .collect::<Result<_, _>>()?;
        self.resolved
            .borrow_mut()
            .push((env, tokens.len().to_string()));
        Ok(tokens)
    }

    /// A namespace: a DNS label.
    fn k8s_namespace(&self) -> Result<String, ConfigError> {
        let env = "WARMPOOL_KUBE_NAMESPACE";
        let v = self.get(env);
        let ok = v.len() <= 63
            && v.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && v.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(self.err(
                env,
                &v,
                "expected a namespace name (lowercase letters, digits and -)",
            ));
        }
        Ok(v)
    }

    fn k8s_placement(&self) -> Result<warmpool_kubernetes::Placement, ConfigError> {
        let label = self.get("WARMPOOL_KUBE_LOCATION_LABEL");
        let selectors = self.get("WARMPOOL_KUBE_LOCATION_SELECTORS");
        warmpool_kubernetes::Placement::parse(&label, &selectors).map_err(|e| {
            let env = if label.trim().is_empty() {
                "WARMPOOL_KUBE_LOCATION_LABEL"
            } else {
                "WARMPOOL_KUBE_LOCATION_SELECTORS"
            };
            let v = if env == "WARMPOOL_KUBE_LOCATION_LABEL" {
                &label
            } else {
                &selectors
            };
            self.err(env, v, e)
        })
    }

    fn into_resolved(self) -> Vec<(&'static str, String)> {
        self.resolved.into_inner()
    }
}

/// Pool names: what a label value, a metric label and a URL segment all take.
fn valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl PoolConfig {
    fn read(name: &str, r: &Reader) -> Result<PoolConfig, ConfigError> {
        let command = r.words("WARMPOOL_COMMAND")?;
        let health_path = r.get("WARMPOOL_HEALTH_PATH");
        if !health_path.starts_with('/') {
            return Err(r.err(
                "WARMPOOL_HEALTH_PATH",
                &health_path,
                "expected a path starting with /",
            ));
        }
        let target = r.num("POOL_TARGET_INSTANCES", 0, 100_000)?;
        let v = r.get("WARMPOOL_TARGETS");
        let mut per_location: Vec<(Location, u32)> = Vec::new();
        for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || r.err("WARMPOOL_TARGETS", &v, "expected location=count pairs");
            let (l, n) = pair.split_once('=').ok_or_else(bad)?;
            let l = r.location("WARMPOOL_TARGETS", &v, l.trim())?;
            let n: u32 = n
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= 100_000)
                .ok_or_else(bad)?;
            per_location.retain(|(t, _)| *t != l);
            per_location.push((l, n));
        }
        // `locations` keeps its default only when `targets` does not say where.
        let mut targets: Vec<(Location, u32)> = Vec::new();
        if per_location.is_empty() || r.is_set("WARMPOOL_LOCATIONS") {
            let v = r.get("WARMPOOL_LOCATIONS");
            for l in v.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                let l = r.location("WARMPOOL_LOCATIONS", &v, l)?;
                if !targets.iter().any(|(t, _)| *t == l) {
                    targets.push((l, target));
                }
            }
        }
        for (l, n) in per_location {
            match targets.iter_mut().find(|(t, _)| *t == l) {
                Some(t) => t.1 = n,
                None => targets.push((l, n)),
            }
        }
        let mut env = Vec::new();
        for word in r.words("WARMPOOL_APP_ENV")? {
            match word.split_once('=') {
                Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
                    env.push((k.to_owned(), v.to_owned()))
                }
                _ => return Err(r.err("WARMPOOL_APP_ENV", &word, "expected KEY=value words")),
            }
        }
        let v = r.get("WARMPOOL_VCPU");
        let vcpu: f64 = v
            .parse()
            .map_err(|_| r.err("WARMPOOL_VCPU", &v, "expected a number of CPUs"))?;
        if !vcpu.is_finite() || !(0.0..=1024.0).contains(&vcpu) {
            return Err(r.err("WARMPOOL_VCPU", &v, "expected 0 to 1024 CPUs"));
        }
        let nonzero = |n: u32| (n > 0).then_some(n);
        Ok(PoolConfig {
            name: name.to_owned(),
            command,
            image: r.get("WARMPOOL_IMAGE"),
            health_path,
            targets,
            batch_size: r.num("POOL_BATCH_SIZE", 1, 10_000)?,
            batch_spacing: r.secs("POOL_BATCH_SPACING_IN_SECONDS", 0.0, 86_400.0)?,
            max_lifetime: r.secs("WARMPOOL_MAX_LIFETIME_SECONDS", 1.0, 31_536_000.0)?,
            idle_timeout: Some(r.secs("WARMPOOL_IDLE_TIMEOUT_SECONDS", 0.0, 31_536_000.0)?)
                .filter(|d| !d.is_zero()),
            start_timeout: r.secs("WARMPOOL_START_TIMEOUT_SECONDS", 0.1, 3600.0)?,
            env,
            vcpu: (vcpu > 0.0).then_some(vcpu),
            memory_mib: nonzero(r.num("WARMPOOL_MEMORY_MIB", 0, 1_048_576)?).map(u64::from),
            pids_limit: nonzero(r.num("WARMPOOL_PIDS_LIMIT", 0, 4_194_304)?).map(i64::from),
            disk_mb: nonzero(r.num("WARMPOOL_DISK_MB", 0, 1_048_576_000)?).map(u64::from),
            resolved: Vec::new(),
        })
    }

    /// The target of `location` (0 where it keeps no warm pool).
    pub fn target(&self, location: Location) -> u32 {
        self.targets
            .iter()
            .find(|(l, _)| *l == location)
            .map_or(0, |(_, n)| *n)
    }
}

impl Config {
    /// Builds the configuration from `lookup(env var name)`; unset or empty values
    /// take their defaults. Only the default pool exists.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::from_sources(lookup, &ConfigFile::default())
    }

    /// Builds the configuration from `lookup` (flags and env vars), then the config
    /// file, then defaults. The file's `[pools.NAME]` tables add pools; a setting a
    /// pool's table leaves out takes its built-in default (not the top-level value,
    /// which configures the default pool).
    pub fn from_sources(
        lookup: impl Fn(&str) -> Option<String>,
        file: &ConfigFile,
    ) -> Result<Config, ConfigError> {
        let merged = |k: &str| lookup(k).or_else(|| file.settings.get(k).cloned());
        let r = Reader {
            lookup: &merged,
            pool: None,
            resolved: Default::default(),
        };
        let v = r.get("WARMPOOL_LISTEN");
        let listen = v.parse().map_err(|_| {
            r.err(
                "WARMPOOL_LISTEN",
                &v,
                "expected an address such as 127.0.0.1:8787",
            )
        })?;
        let data_dir = r.get("WARMPOOL_DATA_DIR");
        let v = r.get("WARMPOOL_RUNTIME");
        let runtime = match v.as_str() {
            "process" => RuntimeKind::Process,
            "sim" => RuntimeKind::Sim,
            "docker" => RuntimeKind::Docker,
            "kubernetes" => RuntimeKind::Kubernetes,
            _ => {
                return Err(r.err(
                    "WARMPOOL_RUNTIME",
                    &v,
                    "expected process, docker, kubernetes or sim",
                ))
            }
        };
        let v = r.get("WARMPOOL_SHUTDOWN_POLICY");
        let shutdown_policy = match v.as_str() {
            "stop" => ShutdownPolicy::Stop,
            "keep" => ShutdownPolicy::Keep,
            _ => return Err(r.err("WARMPOOL_SHUTDOWN_POLICY", &v, "expected stop or keep")),
        };
        let pool_name = r.get("WARMPOOL_POOL");
        if !valid_pool_name(&pool_name) {
            return Err(r.err(
                "WARMPOOL_POOL",
                &pool_name,
                "expected up to 63 letters, digits, - or _",
            ));
        }
        let sim_address = r.get("WARMPOOL_SIM_ADDRESS");
        if sim_address.parse::<http::uri::Authority>().is_err() {
            return Err(r.err("WARMPOOL_SIM_ADDRESS", &sim_address, "expected host:port"));
        }
        let v = r.get("WARMPOOL_LOG_FORMAT");
        let log_json = match v.as_str() {
            "text" => false,
            "json" => true,
            _ => return Err(r.err("WARMPOOL_LOG_FORMAT", &v, "expected text or json")),
        };
        let docker_network = r.get("WARMPOOL_DOCKER_NETWORK");
        if !docker_network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(r.err(
                "WARMPOOL_DOCKER_NETWORK",
                &docker_network,
                "expected letters, digits, -, _ or .",
            ));
        }
        let mut config = Config {
            listen,
            data_dir: PathBuf::from(data_dir),
            runtime,
            pools: Vec::new(),
            max_instances: r.num("WARMPOOL_MAX_INSTANCES", 1, 1_000_000)?,
            claim_timeout: r.secs("WARMPOOL_CLAIM_TIMEOUT_SECONDS", 0.0, 3600.0)?,
            stop_grace: r.secs("WARMPOOL_STOP_GRACE_SECONDS", 0.0, 3600.0)?,
            drain_timeout: r.secs("WARMPOOL_DRAIN_SECONDS", 0.0, 3600.0)?,
            shutdown_policy,
            max_connections: r.num("WARMPOOL_MAX_CONNECTIONS", 1, 1_000_000)? as usize,
            header_timeout: r.secs("WARMPOOL_HEADER_TIMEOUT_SECONDS", 0.1, 3600.0)?,
            body_timeout: r.secs("WARMPOOL_BODY_TIMEOUT_SECONDS", 0.1, 3600.0)?,
            probe_interval: r.secs("WARMPOOL_PROBE_INTERVAL_SECONDS", 0.0, 86_400.0)?,
            reconcile_interval: r.secs("WARMPOOL_RECONCILE_INTERVAL_SECONDS", 0.05, 3600.0)?,
            sweep_interval: r.secs("WARMPOOL_SWEEP_SECONDS", 0.1, 86_400.0)?,
            tombstone_retention: r.secs("WARMPOOL_TOMBSTONE_HOURS", 0.0, 8760.0)? * 3600,
            sim_address,
            docker_network,
            docker_publish: r.flag("WARMPOOL_DOCKER_PUBLISH")?,
            container_port: r.num("WARMPOOL_CONTAINER_PORT", 1, 65535)? as u16,
            docker_timeout: r.secs("WARMPOOL_DOCKER_TIMEOUT_SECONDS", 0.1, 3600.0)?,
            k8s_namespace: r.k8s_namespace()?,
            k8s_placement: r.k8s_placement()?,
            k8s_kubeconfig: Some(r.get("WARMPOOL_KUBECONFIG"))
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            api_tokens: r.tokens("WARMPOOL_API_TOKEN")?,
            admin_tokens: r.tokens("WARMPOOL_ADMIN_TOKEN")?,
            proxy_require_token: r.flag("WARMPOOL_PROXY_REQUIRE_TOKEN")?,
            insecure_no_auth: r.flag("WARMPOOL_INSECURE_NO_AUTH")?,
            log_json,
            resolved: Vec::new(),
        };
        // Everything read so far is global; the rest belongs to the default pool.
        config.resolved = std::mem::take(&mut *r.resolved.borrow_mut());
        let mut default_pool = PoolConfig::read(&pool_name, &r)?;
        default_pool.resolved = r.into_resolved();
        config.pools.push(default_pool);

        for (name, table) in &file.pools {
            let bad = |reason: String| ConfigError {
                key: format!("pools.{name}"),
                value: String::new(),
                reason,
            };
            if !valid_pool_name(name) {
                return Err(bad("a pool name is up to 63 letters, digits, - or _".into()));
            }
            if *name == pool_name {
                return Err(bad(format!(
                    "{name:?} is the default pool, which the top-level settings configure"
                )));
            }
            let lookup = |k: &str| table.get(k).cloned();
            let r = Reader {
                lookup: &lookup,
                pool: Some(name),
                resolved: Default::default(),
            };
            let mut pool = PoolConfig::read(name, &r)?;
            pool.resolved = r.into_resolved();
            config.pools.push(pool);
        }
        Ok(config)
    }

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

    /// Reads a configuration file (`warmpool.toml`). Its top-level keys are the
    /// `serve` flags with `_` for `-` (`runtime = "docker"`, `batch_size = 10`,
    /// `vcpu = 0.5`); `[pools.NAME]` tables take the per-pool ones. Lists are
    /// accepted where a setting is a list (`locations`, `command`, `api_token`),
    /// and tables for `targets` (`{ weur = 5 }`) and `app_env` (`{ KEY = "v" }`).
    pub fn parse_file(text: &str) -> Result<ConfigFile, ConfigError> {
        let bad = |reason: String| ConfigError {
            key: "WARMPOOL_CONFIG".into(),
            value: String::new(),
            reason,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
        let mut file = ConfigFile::default();
        for (key, value) in table {
            if key == "pools" {
                let toml::Value::Table(pools) = value else {
                    return Err(bad("pools: expected [pools.NAME] tables".into()));
                };
                for (name, pool) in pools {
                    let toml::Value::Table(pool) = pool else {
                        return Err(bad(format!("pools.{name}: expected a table")));
                    };
                    let mut settings = HashMap::new();
                    for (key, value) in pool {
                        let s = file_setting(&key)
                            .ok_or_else(|| bad(format!("pools.{name}: unknown setting {key:?}")))?;
                        if !s.per_pool {
                            return Err(bad(format!(
                                "pools.{name}: {key} is global; set it at the top level"
                            )));
                        }
                        let v = file_value(s, value)
                            .map_err(|e| bad(format!("pools.{name}.{key}: {e}")))?;
                        settings.insert(s.env.to_owned(), v);
                    }
                    file.pools.push((name, settings));
                }
                continue;
            }
            let s = file_setting(&key).ok_or_else(|| bad(format!("unknown setting {key:?}")))?;
            let v = file_value(s, value).map_err(|e| bad(format!("{key}: {e}")))?;
            file.settings.insert(s.env.to_owned(), v);
        }
        Ok(file)
    }

    /// The resolved configuration as a config file: every setting with its value,
    /// each pool in its table, tokens redacted (as comments, so that the output is
    /// itself a valid config file). What `serve --check-config` prints.
    pub fn to_toml(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# warmpool's resolved configuration (flags, then env vars, then the config file, then defaults)\n",
        );
        let write = |out: &mut String, resolved: &[(&'static str, String)]| {
            let mut rows: Vec<&(&'static str, String)> = resolved.iter().collect();
            rows.sort_by_key(|(env, _)| SETTINGS.iter().position(|s| s.env == *env));
            for (env, v) in rows {
                let s = setting(env);
                let key = s.file_key();
                if env.ends_with("_TOKEN") {
                    // `v` is the number of tokens (their values are not kept).
                    let _ = writeln!(out, "# {key} = <{v} token(s), redacted>");
                } else {
                    let _ = writeln!(out, "{key} = {}", toml_literal(v));
                }
            }
        };
        write(&mut out, &self.resolved);
        let _ = writeln!(out, "\n# the default pool, {:?}", self.pools[0].name);
        write(&mut out, &self.pools[0].resolved);
        for p in &self.pools[1..] {
            let _ = writeln!(out, "\n[pools.{}]", p.name);
            write(&mut out, &p.resolved);
        }
        out
    }

    /// The default configuration (what `warmpool serve` runs with no settings).
    pub fn defaults() -> Config {
        Config::from_lookup(|_| None).expect("defaults are valid")
    }
}

/// The setting a config file key names.
fn file_setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.file_key() == key)
}

/// A config file value as the string its env var would hold.
fn file_value(s: &Setting, value: toml::Value) -> Result<String, String> {
    use toml::Value;
    let scalar = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Integer(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    };
    if let Some(v) = scalar(&value) {
        return Ok(v);
    }
    let strings = |items: &[Value]| -> Result<Vec<String>, String> {
        items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| "expected a list of strings".to_owned()))
            .collect()
    };
    match (s.env, value) {
        ("WARMPOOL_LOCATIONS" | "WARMPOOL_API_TOKEN" | "WARMPOOL_ADMIN_TOKEN", Value::Array(a)) => {
            Ok(strings(&a)?.join(","))
        }
        ("WARMPOOL_COMMAND", Value::Array(a)) => Ok(shell_words::join(strings(&a)?)),
        ("WARMPOOL_TARGETS", Value::Table(t)) => t
            .iter()
            .map(|(l, n)| match n {
                Value::Integer(n) => Ok(format!("{l}={n}")),
                _ => Err(format!("{l}: expected a whole number")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        ("WARMPOOL_APP_ENV", Value::Table(t)) => t
            .iter()
            .map(|(k, v)| {
                scalar(v)
                    .map(|v| shell_words::quote(&format!("{k}={v}")).into_owned())
                    .ok_or_else(|| format!("{k}: expected a string"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(" ")),
        (_, other) => Err(format!(
            "expected a string, number or boolean, got {}",
            other.type_str()
        )),
    }
}

/// `v` as a TOML value that reads back as exactly `v`: numbers and booleans bare
/// where they print back the same, everything else a string.
fn toml_literal(v: &str) -> String {
    let canonical_int = v == "0"
        || (!v.is_empty()
            && !v.starts_with('0')
            && v.len() < 19
            && v.bytes().all(|b| b.is_ascii_digit()));
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let canonical_float = !frac.is_empty()
        && (whole == "0" || (!whole.starts_with('0') && !whole.is_empty()))
        && whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
        && v.parse::<f64>().is_ok_and(|f| f.to_string() == v);
    if canonical_int || canonical_float || v == "true" || v == "false" {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn check(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_original_design() {
        let c = Config::defaults();
        assert_eq!(c.listen, "127.0.0.1:8787".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./.warmpool"));
        assert_eq!(c.runtime, RuntimeKind::Process);
        assert_eq!(c.pools.len(), 1);
        let p = c.default_pool();
        assert_eq!(p.name, "default");
        assert!(p.command.is_empty());
        assert_eq!(p.targets, vec![(Location::Default, 30)]);
        assert_eq!(p.batch_size, 10);
        assert_eq!(p.batch_spacing, Duration::from_secs(10));
        assert_eq!(c.max_instances, 1000);
        assert_eq!(p.max_lifetime, Duration::from_secs(3600));
        assert_eq!(p.idle_timeout, None);
    }

    #[test]
    fn values_are_parsed() {
        let c = check(&[
            ("POOL_TARGET_INSTANCES", "5"),
            ("POOL_BATCH_SPACING_IN_SECONDS", "0.25"),
            ("WARMPOOL_LOCATIONS", "wnam, weur,wnam"),
            ("WARMPOOL_TARGETS", "weur=2, apac=1"),
            ("WARMPOOL_COMMAND", "python3 -m 'http.server' 8080"),
            ("WARMPOOL_RUNTIME", "sim"),
            ("WARMPOOL_APP_ENV", "GREETING='hello world' EMPTY="),
            ("WARMPOOL_VCPU", "0"),
            ("WARMPOOL_POOL", "web"),
        ])
        .unwrap();
        let p = c.default_pool();
        assert_eq!(p.name, "web");
        assert_eq!(
            p.env,
            vec![
                ("GREETING".into(), "hello world".into()),
                ("EMPTY".into(), "".into())
            ]
        );
        assert_eq!(p.vcpu, None);
        assert_eq!(p.memory_mib, Some(256));
        assert_eq!(p.batch_spacing, Duration::from_millis(250));
        assert_eq!(
            p.targets,
            vec![
                (Location::Wnam, 5),
                (Location::Weur, 2),
                (Location::Apac, 1)
            ]
        );
        assert_eq!(p.target(Location::Enam), 0);
        assert_eq!(c.warm_total(), 8);
        assert_eq!(p.command, vec!["python3", "-m", "http.server", "8080"]);
        assert_eq!(c.runtime, RuntimeKind::Sim);
    }

    #[test]
    fn targets_alone_say_where_the_warm_pools_are() {
        let c = check(&[("WARMPOOL_TARGETS", "weur=3")]).unwrap();
        assert_eq!(c.default_pool().targets, vec![(Location::Weur, 3)]);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (k, v) in [
            ("POOL_TARGET_INSTANCES", "-1"),
            ("POOL_TARGET_INSTANCES", "many"),
            ("POOL_BATCH_SIZE", "0"),
            ("POOL_BATCH_SPACING_IN_SECONDS", "NaN"),
            ("WARMPOOL_LOCATIONS", "wnam,mars"),
            ("WARMPOOL_TARGETS", "weur"),
            ("WARMPOOL_TARGETS", "mars=1"),
            ("WARMPOOL_TARGETS", "weur=-1"),
            ("WARMPOOL_LISTEN", "localhost"),
            ("WARMPOOL_RUNTIME", "vm"),
            ("WARMPOOL_COMMAND", "echo 'unclosed"),
            ("WARMPOOL_HEALTH_PATH", "healthz"),
            ("WARMPOOL_MAX_INSTANCES", "0"),
            ("WARMPOOL_POOL", "a b"),
            ("WARMPOOL_APP_ENV", "NOEQUALS"),
            ("WARMPOOL_DOCKER_PUBLISH", "maybe"),
            ("WARMPOOL_VCPU", "-1"),
            ("WARMPOOL_MEMORY_MIB", "lots"),
            ("WARMPOOL_CONTAINER_PORT", "70000"),
            ("WARMPOOL_API_TOKEN", "short"),
            ("WARMPOOL_ADMIN_TOKEN", "has a space in it, long enough"),
            ("WARMPOOL_PROXY_REQUIRE_TOKEN", "sometimes"),
            ("WARMPOOL_LOG_FORMAT", "xml"),
        ] {
            let e = check(&[(k, v)]).unwrap_err();
            assert_eq!(e.key, k, "{k}={v}");
            assert!(e.to_string().starts_with(&format!("invalid {k}=")), "{e}");
        }
    }

    fn from_file(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let file = Config::parse_file(text)?;
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(|k| env.get(k).cloned(), &file)
    }

    #[test]
    fn config_files_use_flag_names_and_refuse_unknown_keys() {
        let c = from_file(
            "runtime = \"docker\"\nbatch_size = 4\nvcpu = 0.5\ndocker_publish = true\nimage = \"x/y:1\"\nlocations = [\"weur\", \"wnam\"]",
            &[],
        )
        .unwrap();
        assert_eq!(c.runtime, RuntimeKind::Docker);
        let p = c.default_pool();
        assert_eq!(p.batch_size, 4);
        assert_eq!(p.vcpu, Some(0.5));
        assert!(c.docker_publish);
        assert_eq!(p.image, "x/y:1");
        assert_eq!(p.targets, vec![(Location::Weur, 30), (Location::Wnam, 30)]);
        for bad in [
            "colour = \"red\"",
            "target = [1]",
            "runtime = ",
            "pools = 3",
            "[pools.a]\nlisten = \"0.0.0.0:1\"",
            "[pools.a]\nshape = \"round\"",
            "[pools.a]\ntargets = { weur = \"x\" }",
        ] {
            let e = Config::parse_file(bad).unwrap_err();
            assert_eq!(e.key, "WARMPOOL_CONFIG", "{bad}");
        }
    }

    #[test]
    fn named_pools_have_their_own_settings_and_env_vars_configure_the_default_one() {
        let text = r#"
            target = 2
            memory_mib = 64

            [pools.python]
            command = ["python3", "-m", "http.server"]
            health_path = "/"
            targets = { weur = 3, wnam = 1 }
            max_lifetime = 600
            idle_timeout = 60
            app_env = { GREETING = "hello world", MODE = "fast" }
            vcpu = 1.5

            [pools.bare]
        "#;
        let c = from_file(text, &[("POOL_TARGET_INSTANCES", "4")]).unwrap();
        assert_eq!(
            c.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["default", "bare", "python"]
        );
        let d = c.default_pool();
        assert_eq!(
            d.targets,
            vec![(Location::Default, 4)],
            "env wins over file"
        );
        assert_eq!(d.memory_mib, Some(64));

        let py = c.pool("python").unwrap();
        assert_eq!(py.command, ["python3", "-m", "http.server"]);
        assert_eq!(py.health_path, "/");
        assert_eq!(py.targets, vec![(Location::Weur, 3), (Location::Wnam, 1)]);
        assert_eq!(py.max_lifetime, Duration::from_secs(600));
        assert_eq!(py.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(
            py.env,
            vec![
                ("GREETING".into(), "hello world".into()),
                ("MODE".into(), "fast".into())
            ]
        );
        assert_eq!(py.vcpu, Some(1.5));
        // Left out: the built-in defaults, not the default pool's values.
        assert_eq!(py.memory_mib, Some(256));
        let bare = c.pool("bare").unwrap();
        assert_eq!(bare.targets, vec![(Location::Default, 30)]);
        assert_eq!(bare.image, "warmpool/sample-app:latest");
    }

    #[test]
    fn pool_errors_name_the_pool() {
        for (text, key) in [
            ("[pools.py]\ntarget = \"many\"", "pools.py.target"),
            ("[pools.py]\nhealth_path = \"x\"", "pools.py.health_path"),
            ("[pools.py]\ntargets = \"mars=1\"", "pools.py.targets"),
            ("[pools.py]\nmemory_mib = -5", "pools.py.memory_mib"),
            ("[pools.default]\ntarget = 1", "pools.default"),
            ("[pools.\"a b\"]\ntarget = 1", "pools.a b"),
        ] {
            let e = from_file(text, &[]).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn the_printed_config_reads_back_as_the_same_config() {
        let text = r#"
            runtime = "sim"
            targets = { weur = 2 }
            locations = "default"
            app_env = { A = "it's \"quoted\"" }
            api_token = ["aaaaaaaaaaaaaaaa-1"]
            [pools.py]
            command = "python3 -m http.server"
            batch_spacing = 0.5
            [pools.other]
            idle_timeout = 30
        "#;
        let c = from_file(text, &[("WARMPOOL_DATA_DIR", "/tmp/x y")]).unwrap();
        let printed = c.to_toml();
        assert!(!printed.contains("aaaaaaaaaaaaaaaa"), "{printed}");
        assert!(
            printed.contains("# api_token = <1 token(s), redacted>"),
            "{printed}"
        );
        let again = from_file(&printed, &[]).unwrap();
        assert_eq!(again.api_tokens.len(), 0);
        let with_tokens = Config {
            api_tokens: c.api_tokens.clone(),
            ..again.clone()
        };
        assert_eq!(with_tokens.pools, c.pools);
        assert_eq!(
            again.to_toml(),
            printed.replace("<1 token(s)", "<0 token(s)")
        );
        assert_eq!(Config::defaults().to_toml().matches("\n[pools.").count(), 0);
    }

    /// A TOML value of any type, as it would be written in a config file.
    fn toml_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let scalar = prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            Just("nan".to_owned()),
            Just("-inf".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            "\\PC{0,24}".prop_map(|s| toml::Value::String(s).to_string()),
            "(weur|wnam|mars|default|[a-z]{1,4})(=[0-9]{1,6})?(,[a-z]{1,4}=-?[0-9]{1,3})?"
                .prop_map(|s| toml::Value::String(s).to_string()),
        ];
        prop_oneof![
            4 => scalar.clone(),
            1 => proptest::collection::vec(scalar.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            1 => proptest::collection::vec(("[a-z]{1,5}", scalar), 0..3).prop_map(|v| {
                let kv: Vec<String> = v.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    }

    proptest::proptest! {
        /// Any text as a config file: an answer, never a panic.
        #[test]
        fn arbitrary_config_text_never_panics(text in "\\PC{0,300}") {
            let _ = from_file(&text, &[]);
        }

        /// Config files of real keys (top level and in pools) with values of any
        /// type: accepted, or refused with an error naming where.
        #[test]
        fn every_key_with_any_value_is_accepted_or_named(
            top in proptest::collection::vec((0..SETTINGS.len(), toml_value()), 0..6),
            pool in proptest::collection::vec((0..SETTINGS.len(), toml_value()), 0..6),
        ) {
            let line = |(i, v): &(usize, String)| format!("{} = {v}\n", SETTINGS[*i].file_key());
            let mut text: String = top.iter().map(line).collect();
            text.push_str("[pools.p]\n");
            text.extend(pool.iter().map(line));
            if let Err(e) = from_file(&text, &[]) {
                let known = e.key == "WARMPOOL_CONFIG"
                    || e.key.starts_with("pools.p")
                    || SETTINGS.iter().any(|s| s.env == e.key);
                proptest::prop_assert!(known, "{e} for {text}");
            }
        }
    }

    /// Every example config in the repository is valid.
    #[test]
    fn example_configs_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let c = from_file(&text, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!c.pools.is_empty());
                if path.ends_with("warmpool.toml") {
                    // The reference example lists every setting
                    // (scripts/gen-example-config.py writes it).
                    for s in SETTINGS {
                        let key = s.file_key();
                        assert!(
                            text.lines().any(|l| l.starts_with(&format!("{key} = "))
                                || l.starts_with(&format!("# {key} = "))),
                            "{key} missing from {}",
                            path.display()
                        );
                    }
                    assert_eq!(c, Config::defaults(), "it holds the defaults");
                }
                n += 1;
            }
        }
        assert!(n >= 3, "expected the example configs in {}", dir.display());
    }

    #[test]
    fn tokens_are_listed_compared_exactly_and_never_printed() {
        let c = check(&[
            (
                "WARMPOOL_API_TOKEN",
                " aaaaaaaaaaaaaaaa-1 , bbbbbbbbbbbbbbbb-2,",
            ),
            ("WARMPOOL_ADMIN_TOKEN", "cccccccccccccccc-3"),
        ])
        .unwrap();
        assert_eq!(c.api_tokens.len(), 2);
        assert!(c.api_tokens[0].matches(b"aaaaaaaaaaaaaaaa-1"));
        assert!(!c.api_tokens[0].matches(b"aaaaaaaaaaaaaaaa-"));
        assert!(!c.api_tokens[0].matches(b"aaaaaaaaaaaaaaaa-12"));
        assert!(!c.api_tokens[0].matches(b""));
        let printed = format!("{c:?}");
        for secret in ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(c.auth_enabled());
        assert!(!Config::defaults().auth_enabled());
        let e = check(&[("WARMPOOL_API_TOKEN", "tooshort-secret")]).unwrap_err();
        assert!(!e.to_string().contains("tooshort-secret"), "{e}");
    }

    #[test]
    fn every_setting_has_a_valid_default() {
        for s in SETTINGS {
            assert!(s.env.starts_with("WARMPOOL_") || s.env.starts_with("POOL_"));
            assert!(!s.help.is_empty());
        }
        Config::defaults();
    }
}

#[cfg(test)]
mod readme {
    /// The README's configuration table lists every setting with its default.
    #[test]
    fn readme_documents_every_setting() {
        let readme = include_str!("../../../README.md");
        for s in super::SETTINGS {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", s.env)))
                .unwrap_or_else(|| panic!("{} missing from the README", s.env));
            assert!(row.contains(&format!("`--{}`", s.flag)), "{row}");
            let per_pool = row.split('|').nth(3).map(str::trim);
            assert_eq!(per_pool, Some(if s.per_pool { "yes" } else { "" }), "{row}");
            if !s.default.is_empty() {
                assert!(row.contains(&format!("`{}`", s.default)), "{row}");
            }
        }
    }
}
