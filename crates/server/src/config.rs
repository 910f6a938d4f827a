//! Server configuration: a pure function over a key-value source (env vars or the
//! `serve` flags), so tests never touch the process environment.

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

/// Which runtime runs containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Process,
    /// The simulated runtime (containers are entries in memory); for tests and
    /// benchmarks of warmpool's own overhead.
    Sim,
    /// Docker Engine containers from `image`.
    Docker,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub runtime: RuntimeKind,
    /// Program and arguments of each container (process runtime). Empty: this
    /// binary's own `sample-app`.
    pub command: Vec<String>,
    pub health_path: String,
    pub pool_name: String,
    pub target: u32,
    pub batch_size: u32,
    pub batch_spacing: Duration,
    pub locations: Vec<Location>,
    pub max_instances: u32,
    pub max_lifetime: Duration,
    /// Default idle timeout of claims (`None`: off).
    pub idle_timeout: Option<Duration>,
    pub start_timeout: Duration,
    pub claim_timeout: Duration,
    pub stop_grace: Duration,
    pub drain_timeout: Duration,
    pub reconcile_interval: Duration,
    /// How often the runtime is re-listed and compared (orphans destroyed).
    pub sweep_interval: Duration,
    /// How long ids of ended containers keep answering 410 rather than 404.
    pub tombstone_retention: Duration,
    /// Where the simulated runtime says its containers listen.
    pub sim_address: String,
    /// Extra `KEY=value` env of every container.
    pub app_env: Vec<(String, String)>,
    /// Image of each container (Docker runtime).
    pub image: String,
    pub docker_network: String,
    pub docker_publish: bool,
    /// Port the app listens on inside a container (Docker runtime).
    pub container_port: u16,
    pub vcpu: Option<f64>,
    pub memory_mib: Option<u64>,
    pub pids_limit: Option<i64>,
    pub disk_mb: Option<u64>,
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
}

impl Config {
    /// Any token is configured, so requests are checked.
    pub fn auth_enabled(&self) -> bool {
        !self.api_tokens.is_empty() || !self.admin_tokens.is_empty()
    }
}

/// One setting: its env var, its `serve` flag, its default and what it means.
pub struct Setting {
    pub env: &'static str,
    pub flag: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

macro_rules! settings {
    ($($env:literal, $flag:literal, $default:literal, $help:literal;)*) => {
        /// Every setting, in the order the README's table lists them.
        pub const SETTINGS: &[Setting] = &[$(Setting { env: $env, flag: $flag, default: $default, help: $help }),*];
    };
}

settings! {
    "WARMPOOL_LISTEN", "listen", "127.0.0.1:8787", "address the API and proxy listen on";
    "WARMPOOL_DATA_DIR", "data-dir", "./.warmpool", "directory of the SQLite store (warmpool.db) and container work dirs";
    "WARMPOOL_RUNTIME", "runtime", "process", "what runs containers: process (local child processes), docker (Docker Engine) or sim (simulated, for tests)";
    "WARMPOOL_COMMAND", "command", "", "command of each container, shell-style words (default: this binary's own sample-app)";
    "WARMPOOL_HEALTH_PATH", "health-path", "/healthz", "readiness probe path";
    "WARMPOOL_POOL", "pool", "default", "name of the pool";
    "POOL_TARGET_INSTANCES", "target", "30", "ready containers to keep per location";
    "POOL_BATCH_SIZE", "batch-size", "10", "containers started at most per batch";
    "POOL_BATCH_SPACING_IN_SECONDS", "batch-spacing", "10", "minimum seconds between two batches of one pool";
    "WARMPOOL_LOCATIONS", "locations", "default", "comma list of locations that keep a warm pool";
    "WARMPOOL_MAX_INSTANCES", "max-instances", "1000", "global cap on live containers";
    "WARMPOOL_MAX_LIFETIME_SECONDS", "max-lifetime", "3600", "longest lifetime a claim may ask for (and the default)";
    "WARMPOOL_IDLE_TIMEOUT_SECONDS", "idle-timeout", "0", "stop an allocated container after this long without traffic, unless its claim says otherwise (0: off)";
    "WARMPOOL_START_TIMEOUT_SECONDS", "start-timeout", "30", "seconds a container has to become ready";
    "WARMPOOL_CLAIM_TIMEOUT_SECONDS", "claim-timeout", "30", "seconds a claim waits for an on-demand start before 503";
    "WARMPOOL_STOP_GRACE_SECONDS", "stop-grace", "5", "seconds between SIGTERM and SIGKILL when stopping a container";
    "WARMPOOL_DRAIN_SECONDS", "drain-timeout", "10", "seconds to drain in-flight requests at shutdown";
    "WARMPOOL_SWEEP_SECONDS", "sweep-interval", "30", "how often the runtime is re-listed: what vanished is failed, unknown containers carrying our tag are destroyed";
    "WARMPOOL_RECONCILE_INTERVAL_SECONDS", "reconcile-interval", "5", "safety-net period of the reconciler";
    "WARMPOOL_TOMBSTONE_HOURS", "tombstone-hours", "24", "hours an ended container's id answers 410 instead of 404";
    "WARMPOOL_SIM_ADDRESS", "sim-address", "127.0.0.1:9", "address the simulated runtime reports for its containers";
    "WARMPOOL_LOG_FORMAT", "log-format", "text", "log lines as text or json";
    "WARMPOOL_APP_ENV", "app-env", "", "extra env of every container, shell-style KEY=value words";
    "WARMPOOL_API_TOKEN", "api-token", "", "bearer tokens (comma separated, 16+ characters) for the API and POST /container";
    "WARMPOOL_ADMIN_TOKEN", "admin-token", "", "bearer tokens (comma separated, 16+ characters) for the admin surfaces (and the API)";
    "WARMPOOL_PROXY_REQUIRE_TOKEN", "proxy-require-token", "false", "the proxy also requires an API token (otherwise the unguessable id is the capability)";
    "WARMPOOL_INSECURE_NO_AUTH", "insecure-no-auth", "false", "allow listening on a non-loopback address without any token";
    "WARMPOOL_IMAGE", "image", "warmpool/sample-app:latest", "image of each container (docker runtime)";
    "WARMPOOL_DOCKER_NETWORK", "docker-network", "warmpool", "bridge network containers join (created if missing)";
    "WARMPOOL_DOCKER_PUBLISH", "docker-publish", "false", "publish container ports on 127.0.0.1 instead of using bridge IPs (hosts that cannot reach them)";
    "WARMPOOL_CONTAINER_PORT", "container-port", "8080", "port the app listens on inside a container (docker runtime)";
    "WARMPOOL_VCPU", "vcpu", "0.25", "CPUs per container (docker runtime; 0 for no limit)";
    "WARMPOOL_MEMORY_MIB", "memory-mib", "256", "hard memory limit per container, no swap (docker runtime; 0 for none)";
    "WARMPOOL_PIDS_LIMIT", "pids-limit", "256", "processes per container (docker runtime; 0 for no limit)";
    "WARMPOOL_DISK_MB", "disk-mb", "512", "writable layer size per container, where the storage driver supports it (docker runtime; 0 for none)";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {key}={value:?}: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Builds the configuration from `lookup(env var name)`; unset or empty values
    /// take their defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |key: &'static str| -> (&'static str, String) {
            let default = SETTINGS
                .iter()
                .find(|s| s.env == key)
                .map(|s| s.default)
                .unwrap_or_default();
            let v = lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned());
            (key, v)
        };
        let err = |key: &'static str, value: &str, reason: &str| ConfigError {
            key,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let num = |key: &'static str, min: u32, max: u32| -> Result<u32, ConfigError> {
            let (k, v) = get(key);
            let n: u32 = v
                .parse()
                .map_err(|_| err(k, &v, "expected a whole number"))?;
            if n < min || n > max {
                return Err(err(k, &v, &format!("expected {min} to {max}")));
            }
            Ok(n)
        };
        let secs = |key: &'static str, min: f64, max: f64| -> Result<Duration, ConfigError> {
            let (k, v) = get(key);
            let s: f64 = v
                .parse()
                .map_err(|_| err(k, &v, "expected a number of seconds"))?;
            if !s.is_finite() || s < min || s > max {
                return Err(err(k, &v, &format!("expected {min} to {max} seconds")));
            }
            Ok(Duration::from_secs_f64(s))
        };

        let (k, v) = get("WARMPOOL_LISTEN");
        let listen = v
            .parse()
            .map_err(|_| err(k, &v, "expected an address such as 127.0.0.1:8787"))?;
        let (_, data_dir) = get("WARMPOOL_DATA_DIR");
        let (k, v) = get("WARMPOOL_RUNTIME");
        let runtime = match v.as_str() {
            "process" => RuntimeKind::Process,
            "sim" => RuntimeKind::Sim,
            "docker" => RuntimeKind::Docker,
            _ => return Err(err(k, &v, "expected process, docker or sim")),
        };
        let (k, v) = get("WARMPOOL_COMMAND");
        let command = shell_words::split(&v).map_err(|e| err(k, &v, &e.to_string()))?;
        let (k, health_path) = get("WARMPOOL_HEALTH_PATH");
        if !health_path.starts_with('/') {
            return Err(err(k, &health_path, "expected a path starting with /"));
        }
        let (k, pool_name) = get("WARMPOOL_POOL");
        if pool_name.len() > 63
            || !pool_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                k,
                &pool_name,
                "expected up to 63 letters, digits, - or _",
            ));
        }
        let (k, v) = get("WARMPOOL_LOCATIONS");
        let mut locations = Vec::new();
        for l in v.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            let l: Location = l
                .parse()
                .map_err(|e: warmpool_core::InvalidLocation| err(k, &v, &e.to_string()))?;
            if !locations.contains(&l) {
                locations.push(l);
            }
        }
        let (k, sim_address) = get("WARMPOOL_SIM_ADDRESS");
        if sim_address.parse::<http::uri::Authority>().is_err() {
            return Err(err(k, &sim_address, "expected host:port"));
        }

        let (k, v) = get("WARMPOOL_APP_ENV");
        let mut app_env = Vec::new();
        for word in shell_words::split(&v).map_err(|e| err(k, &v, &e.to_string()))? {
            match word.split_once('=') {
                Some((name, value)) if !name.is_empty() && !name.contains(char::is_whitespace) => {
                    app_env.push((name.to_owned(), value.to_owned()))
                }
                _ => {
                    return Err(err(
                        k,
                        &v,
                        &format!("expected KEY=value words, got {word:?}"),
                    ))
                }
            }
        }
        let flag = |key: &'static str| -> Result<bool, ConfigError> {
            let (k, v) = get(key);
            match v.as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err(err(k, &v, "expected true or false")),
            }
        };
        let tokens = |key: &'static str| -> Result<Vec<Token>, ConfigError> {
            let (k, v) = get(key);
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| {
                    if t.len() < Token::MIN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
                        // The value is a secret: the error must not repeat it.
                        Err(err(
                            k,
                            "<redacted>",
                            &format!(
                                "each token needs at least {} visible characters",
                                Token::MIN_LEN
                            ),
                        ))
                    } else {
                        Ok(Token(t.to_owned()))
                    }
                })
                .collect()
        };
        let docker_publish = flag("WARMPOOL_DOCKER_PUBLISH")?;
        let (k, v) = get("WARMPOOL_LOG_FORMAT");
        let log_json = match v.as_str() {
            "text" => false,
            "json" => true,
            _ => return Err(err(k, &v, "expected text or json")),
        };
        let (k, v) = get("WARMPOOL_VCPU");
        let vcpu: f64 = v
            .parse()
            .map_err(|_| err(k, &v, "expected a number of CPUs"))?;
        if !vcpu.is_finite() || !(0.0..=1024.0).contains(&vcpu) {
            return Err(err(k, &v, "expected 0 to 1024 CPUs"));
        }
        let (_, image) = get("WARMPOOL_IMAGE");
        let (k, docker_network) = get("WARMPOOL_DOCKER_NETWORK");
        if !docker_network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(
                k,
                &docker_network,
                "expected letters, digits, -, _ or .",
            ));
        }
        let nonzero = |n: u32| (n > 0).then_some(n);

        Ok(Config {
            listen,
            data_dir: PathBuf::from(data_dir),
            runtime,
            command,
            health_path,
            pool_name,
            target: num("POOL_TARGET_INSTANCES", 0, 100_000)?,
            batch_size: num("POOL_BATCH_SIZE", 1, 10_000)?,
            batch_spacing: secs("POOL_BATCH_SPACING_IN_SECONDS", 0.0, 86_400.0)?,
            locations,
            max_instances: num("WARMPOOL_MAX_INSTANCES", 1, 1_000_000)?,
            max_lifetime: secs("WARMPOOL_MAX_LIFETIME_SECONDS", 1.0, 31_536_000.0)?,
            idle_timeout: Some(secs("WARMPOOL_IDLE_TIMEOUT_SECONDS", 0.0, 31_536_000.0)?)
                .filter(|d| !d.is_zero()),
            start_timeout: secs("WARMPOOL_START_TIMEOUT_SECONDS", 0.1, 3600.0)?,
            claim_timeout: secs("WARMPOOL_CLAIM_TIMEOUT_SECONDS", 0.0, 3600.0)?,
            stop_grace: secs("WARMPOOL_STOP_GRACE_SECONDS", 0.0, 3600.0)?,
            drain_timeout: secs("WARMPOOL_DRAIN_SECONDS", 0.0, 3600.0)?,
            reconcile_interval: secs("WARMPOOL_RECONCILE_INTERVAL_SECONDS", 0.05, 3600.0)?,
            sweep_interval: secs("WARMPOOL_SWEEP_SECONDS", 0.1, 86_400.0)?,
            tombstone_retention: secs("WARMPOOL_TOMBSTONE_HOURS", 0.0, 8760.0)? * 3600,
            sim_address,
            app_env,
            image,
            docker_network,
            docker_publish,
            container_port: num("WARMPOOL_CONTAINER_PORT", 1, 65535)? as u16,
            vcpu: (vcpu > 0.0).then_some(vcpu),
            memory_mib: nonzero(num("WARMPOOL_MEMORY_MIB", 0, 1_048_576)?).map(u64::from),
            pids_limit: nonzero(num("WARMPOOL_PIDS_LIMIT", 0, 4_194_304)?).map(i64::from),
            disk_mb: nonzero(num("WARMPOOL_DISK_MB", 0, 1_048_576_000)?).map(u64::from),
            api_tokens: tokens("WARMPOOL_API_TOKEN")?,
            admin_tokens: tokens("WARMPOOL_ADMIN_TOKEN")?,
            proxy_require_token: flag("WARMPOOL_PROXY_REQUIRE_TOKEN")?,
            insecure_no_auth: flag("WARMPOOL_INSECURE_NO_AUTH")?,
            log_json,
        })
    }

    /// Reads a configuration file (`warmpool.toml`). Its keys are the `serve` flags
    /// with `_` for `-` (`runtime = "docker"`, `batch_size = 10`, `vcpu = 0.5`);
    /// the answer is keyed by env var, to be looked up after the flags and env.
    pub fn parse_file(
        text: &str,
    ) -> Result<std::collections::HashMap<String, String>, ConfigError> {
        let bad = |reason: String| ConfigError {
            key: "WARMPOOL_CONFIG",
            value: String::new(),
            reason,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
        let mut out = std::collections::HashMap::new();
        for (key, value) in table {
            let setting = SETTINGS
                .iter()
                .find(|s| s.flag.replace('-', "_") == key)
                .ok_or_else(|| bad(format!("unknown setting {key:?}")))?;
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(bad(format!(
                        "{key}: expected a string, number or boolean, got {}",
                        other.type_str()
                    )))
                }
            };
            out.insert(setting.env.to_owned(), value);
        }
        Ok(out)
    }

    /// The default configuration (what `warmpool serve` runs with no settings).
    pub fn defaults() -> Config {
        Config::from_lookup(|_| None).expect("defaults are valid")
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
        assert!(c.command.is_empty());
        assert_eq!((c.target, c.batch_size), (30, 10));
        assert_eq!(c.batch_spacing, Duration::from_secs(10));
        assert_eq!(c.locations, vec![Location::Default]);
        assert_eq!(c.max_instances, 1000);
        assert_eq!(c.max_lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn values_are_parsed() {
        let c = check(&[
            ("POOL_TARGET_INSTANCES", "5"),
            ("POOL_BATCH_SPACING_IN_SECONDS", "0.25"),
            ("WARMPOOL_LOCATIONS", "wnam, weur,wnam"),
            ("WARMPOOL_COMMAND", "python3 -m 'http.server' 8080"),
            ("WARMPOOL_RUNTIME", "sim"),
            ("WARMPOOL_APP_ENV", "GREETING='hello world' EMPTY="),
            ("WARMPOOL_VCPU", "0"),
        ])
        .unwrap();
        assert_eq!(
            c.app_env,
            vec![
                ("GREETING".into(), "hello world".into()),
                ("EMPTY".into(), "".into())
            ]
        );
        assert_eq!(c.vcpu, None);
        assert_eq!(c.memory_mib, Some(256));
        assert_eq!(c.target, 5);
        assert_eq!(c.batch_spacing, Duration::from_millis(250));
        assert_eq!(c.locations, vec![Location::Wnam, Location::Weur]);
        assert_eq!(c.command, vec!["python3", "-m", "http.server", "8080"]);
        assert_eq!(c.runtime, RuntimeKind::Sim);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (k, v) in [
            ("POOL_TARGET_INSTANCES", "-1"),
            ("POOL_TARGET_INSTANCES", "many"),
            ("POOL_BATCH_SIZE", "0"),
            ("POOL_BATCH_SPACING_IN_SECONDS", "NaN"),
            ("WARMPOOL_LOCATIONS", "wnam,mars"),
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

    #[test]
    fn config_files_use_flag_names_and_refuse_unknown_keys() {
        let file = Config::parse_file(
            "runtime = \"docker\"\nbatch_size = 4\nvcpu = 0.5\ndocker_publish = true\nimage = \"x/y:1\"",
        )
        .unwrap();
        let c = Config::from_lookup(|k| file.get(k).cloned()).unwrap();
        assert_eq!(c.runtime, RuntimeKind::Docker);
        assert_eq!(c.batch_size, 4);
        assert_eq!(c.vcpu, Some(0.5));
        assert!(c.docker_publish);
        assert_eq!(c.image, "x/y:1");
        for bad in ["colour = \"red\"", "target = [1]", "runtime = "] {
            let e = Config::parse_file(bad).unwrap_err();
            assert_eq!(e.key, "WARMPOOL_CONFIG", "{bad}");
        }
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
            if !s.default.is_empty() {
                assert!(row.contains(&format!("`{}`", s.default)), "{row}");
            }
        }
    }
}
