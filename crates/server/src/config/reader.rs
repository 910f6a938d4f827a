//! The parser: [`Config::from_sources`] reads every setting from a lookup by env
//! var (flags and env vars, then the config file), with defaults, checking each
//! value and naming the setting in errors. Pure: it never reads the process
//! environment, so tests pass their own key-value pairs.

use std::path::PathBuf;
use std::time::Duration;

use warmpool_core::scale::{InvalidBuffer, InvalidLocationMode};
use warmpool_core::{Location, ScalingPolicy};

use super::file::pool_from_table;
use super::settings::setting;
use super::{Config, ConfigError, ConfigFile, PoolConfig, RuntimeKind, ShutdownPolicy, Token};

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
                Some(p) => format!("pools.{p}.{}", table_key(env)),
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

    /// The OTLP/HTTP traces URL: `http://HOST[:PORT][/PATH]`, with `/v1/traces`
    /// added unless the path already ends with it (as `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// is read); empty for none.
    fn otlp_endpoint(&self) -> Result<Option<http::Uri>, ConfigError> {
        let env = "WARMPOOL_OTLP_ENDPOINT";
        let v = self.get(env);
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let bad = |reason: &str| Err(self.err(env, v, reason));
        let uri: http::Uri = match v.parse() {
            Ok(u) => u,
            Err(_) => return bad("expected a URL such as http://127.0.0.1:4318"),
        };
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return bad("https is not supported: point it at a collector or agent over http (usually local)")
            }
            _ => return bad("expected a URL such as http://127.0.0.1:4318"),
        }
        if uri.host().is_none_or(str::is_empty) {
            return bad("expected a URL with a host, such as http://127.0.0.1:4318");
        }
        if uri.query().is_some() {
            return bad("expected a URL without a query");
        }
        let path = uri.path().trim_end_matches('/');
        let path = if path.ends_with("/v1/traces") {
            path.to_owned()
        } else {
            format!("{path}/v1/traces")
        };
        let full = format!("http://{}{path}", uri.authority().expect("a host"));
        match full.parse() {
            Ok(u) => Ok(Some(u)),
            Err(_) => bad("expected a URL such as http://127.0.0.1:4318"),
        }
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

/// A pool setting's key as its `[pools.NAME]` table writes it: `scaling.min`
/// for a key of its `[scaling]` table, else its file key.
fn table_key(env: &'static str) -> String {
    let key = setting(env).file_key();
    match key.strip_prefix("scaling_") {
        Some(k) => format!("scaling.{k}"),
        None => key,
    }
}

/// The scaling settings other than `WARMPOOL_SCALING` itself (each one's file
/// key is `scaling_` and its key in a `[scaling]` table).
pub(super) const SCALING_SETTINGS: &[&str] = &[
    "WARMPOOL_SCALING_MIN",
    "WARMPOOL_SCALING_MAX",
    "WARMPOOL_SCALING_BUFFER",
    "WARMPOOL_SCALING_SCALE_DOWN_DELAY_SECONDS",
    "WARMPOOL_SCALING_SAFETY",
    "WARMPOOL_SCALING_LOCATIONS",
];

/// Pool names: what a label value, a metric label and a URL segment all take.
pub(super) fn valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The pool `name` from `lookup(env var name)` (the values of its `[pools.NAME]`
/// table), errors naming `pools.NAME.key`.
pub(super) fn read_pool(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<PoolConfig, ConfigError> {
    let r = Reader {
        lookup,
        pool: Some(name),
        resolved: Default::default(),
    };
    let mut pool = PoolConfig::read(name, &r)?;
    pool.resolved = r.into_resolved();
    Ok(pool)
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
        let v = r.get("WARMPOOL_MAX_SURGE");
        let max_surge = v
            .parse::<warmpool_core::Surge>()
            .map_err(|e| r.err("WARMPOOL_MAX_SURGE", &v, e.to_string()))?;
        let nonzero = |n: u32| (n > 0).then_some(n);
        let scaling = read_scaling(r)?;
        let v = r.get("WARMPOOL_BIND");
        let bind = v
            .parse::<warmpool_engine::Bind>()
            .map_err(|e| r.err("WARMPOOL_BIND", &v, e))?;
        let files_dir = r.get("WARMPOOL_FILES_DIR");
        if !files_dir.starts_with('/')
            || files_dir.len() > 1024
            || files_dir.split('/').any(|s| s == "." || s == "..")
            || files_dir.contains('\0')
        {
            return Err(r.err(
                "WARMPOOL_FILES_DIR",
                &files_dir,
                "expected an absolute path without . or .. segments",
            ));
        }
        let v = r.get("WARMPOOL_PULL");
        let pull = v
            .parse::<warmpool_runtime::PullPolicy>()
            .map_err(|e| r.err("WARMPOOL_PULL", &v, e))?;
        let hardening = read_hardening(r)?;
        let v = r.get("WARMPOOL_POOL_LABELS");
        let mut labels = std::collections::BTreeMap::new();
        for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, val)) = pair.split_once('=') else {
                return Err(r.err("WARMPOOL_POOL_LABELS", &v, "expected key=value pairs"));
            };
            labels.insert(k.trim().to_owned(), val.trim().to_owned());
        }
        warmpool_core::labels::validate_labels(&labels)
            .map_err(|e| r.err("WARMPOOL_POOL_LABELS", &v, e.to_string()))?;
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
            max_surge,
            rollout_failure_limit: r.num("WARMPOOL_ROLLOUT_FAILURE_LIMIT", 1, 1000)?,
            progress_deadline: r.secs("WARMPOOL_PROGRESS_DEADLINE_SECONDS", 1.0, 86_400.0)?,
            scaling,
            bind,
            files_dir,
            pull,
            hardening,
            labels,
            resolved: Vec::new(),
        })
    }
}

/// How a pool's Docker containers are locked down.
fn read_hardening(r: &Reader) -> Result<warmpool_runtime::Hardening, ConfigError> {
    let v = r.get("WARMPOOL_READ_ONLY_ROOT");
    let read_only_root = v
        .parse()
        .map_err(|e| r.err("WARMPOOL_READ_ONLY_ROOT", &v, e))?;
    let user = r.get("WARMPOOL_CONTAINER_USER");
    let name = |s: &str| {
        !s.is_empty()
            && s.len() <= 32
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let valid = match user.split_once(':') {
        _ if user.is_empty() => true,
        Some((u, g)) => name(u) && name(g),
        None => name(&user),
    };
    if !valid {
        return Err(r.err(
            "WARMPOOL_CONTAINER_USER",
            &user,
            "expected a user or uid, optionally :group or :gid (letters, digits, _ - .)",
        ));
    }
    let v = r.get("WARMPOOL_TMPFS");
    let tmpfs: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect();
    if tmpfs.len() > 16 {
        return Err(r.err("WARMPOOL_TMPFS", &v, "expected at most 16 directories"));
    }
    for d in &tmpfs {
        if !d.starts_with('/')
            || d == "/"
            || d.len() > 1024
            || d.split('/').any(|s| s == "." || s == "..")
            || d.contains([':', '\0'])
            || d.contains(char::is_whitespace)
        {
            return Err(r.err(
                "WARMPOOL_TMPFS",
                d,
                "expected absolute directories (not /) without . or .. segments, colons or spaces",
            ));
        }
    }
    Ok(warmpool_runtime::Hardening {
        no_new_privileges: r.flag("WARMPOOL_NO_NEW_PRIVILEGES")?,
        drop_capabilities: r.flag("WARMPOOL_DROP_CAPABILITIES")?,
        read_only_root,
        user,
        tmpfs,
    })
}

/// A pool's scaling policy: on when `scaling` is `on` or any `scaling_*` setting
/// is given (an explicit `off` beside one is refused, as contradictory).
fn read_scaling(r: &Reader) -> Result<Option<ScalingPolicy>, ConfigError> {
    let env = "WARMPOOL_SCALING";
    let mode = r.get_secret(env);
    let given = SCALING_SETTINGS.iter().find(|env| r.is_set(env));
    let on = match mode.as_str() {
        "on" | "true" => true,
        "off" | "false" if r.is_set(env) => {
            if let Some(other) = given {
                return Err(r.err(
                    other,
                    &r.get_secret(other),
                    "scaling is off; set scaling = \"on\" or leave this out",
                ));
            }
            false
        }
        "off" | "false" => given.is_some(),
        _ => return Err(r.err(env, &mode, "expected on or off")),
    };
    // Printed as it resolved, so that `--check-config`'s output reads back.
    r.resolved
        .borrow_mut()
        .push((env, if on { "on" } else { "off" }.to_owned()));
    if !on {
        return Ok(None);
    }
    let max = r.num("WARMPOOL_SCALING_MAX", 0, 100_000)?;
    let buffer = r.get("WARMPOOL_SCALING_BUFFER");
    let locations = r.get("WARMPOOL_SCALING_LOCATIONS");
    let safety = r.get("WARMPOOL_SCALING_SAFETY");
    let policy = ScalingPolicy {
        min: r.num("WARMPOOL_SCALING_MIN", 0, 100_000)?,
        max: (max > 0).then_some(max),
        buffer: buffer
            .parse()
            .map_err(|e: InvalidBuffer| r.err("WARMPOOL_SCALING_BUFFER", &buffer, e.to_string()))?,
        scale_down_delay: r.secs("WARMPOOL_SCALING_SCALE_DOWN_DELAY_SECONDS", 0.0, 86_400.0)?,
        safety: safety
            .parse()
            .map_err(|_| r.err("WARMPOOL_SCALING_SAFETY", &safety, "expected a number"))?,
        locations: locations.parse().map_err(|e: InvalidLocationMode| {
            r.err("WARMPOOL_SCALING_LOCATIONS", &locations, e.to_string())
        })?,
    };
    policy.validate().map_err(|e| {
        let (env, v) = match e.field {
            "min" => ("WARMPOOL_SCALING_MIN", policy.min.to_string()),
            _ => ("WARMPOOL_SCALING_SAFETY", safety.clone()),
        };
        r.err(env, &v, e.reason)
    })?;
    Ok(Some(policy))
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
        let otlp_endpoint = r.otlp_endpoint()?;
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
            header_limits: crate::header_limits::HeaderLimits {
                max_line: r.num("WARMPOOL_MAX_HEADER_LINE_BYTES", 1024, 1 << 20)? as usize,
                max_total: r.num("WARMPOOL_MAX_HEADER_BYTES", 1024, 1 << 24)? as usize,
                max_count: r.num("WARMPOOL_MAX_HEADERS", 8, 10_000)? as usize,
            },
            probe_interval: r.secs("WARMPOOL_PROBE_INTERVAL_SECONDS", 0.0, 86_400.0)?,
            reconcile_interval: r.secs("WARMPOOL_RECONCILE_INTERVAL_SECONDS", 0.05, 3600.0)?,
            sweep_interval: r.secs("WARMPOOL_SWEEP_SECONDS", 0.1, 86_400.0)?,
            tombstone_retention: r.secs("WARMPOOL_TOMBSTONE_HOURS", 0.0, 8760.0)? * 3600,
            sim_address,
            sim_start: r.secs("WARMPOOL_SIM_START_SECONDS", 0.0, 3600.0)?,
            docker_network,
            docker_publish: r.flag("WARMPOOL_DOCKER_PUBLISH")?,
            container_port: r.num("WARMPOOL_CONTAINER_PORT", 1, 65535)? as u16,
            docker_timeout: r.secs("WARMPOOL_DOCKER_TIMEOUT_SECONDS", 0.1, 3600.0)?,
            docker_pull_timeout: r.secs("WARMPOOL_DOCKER_PULL_TIMEOUT_SECONDS", 1.0, 86_400.0)?,
            docker_config: Some(r.get("WARMPOOL_DOCKER_CONFIG"))
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
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
            otlp_endpoint,
            resolved: Vec::new(),
        };
        // Everything read so far is global; the rest belongs to the default pool.
        config.resolved = std::mem::take(&mut *r.resolved.borrow_mut());
        let mut default_pool = PoolConfig::read(&pool_name, &r)?;
        default_pool.resolved = r.into_resolved();
        config.pools.push(default_pool);

        for (name, table) in &file.pools {
            if *name == pool_name {
                return Err(ConfigError {
                    key: format!("pools.{name}"),
                    value: String::new(),
                    reason: format!(
                        "{name:?} is the default pool, which the top-level settings configure"
                    ),
                });
            }
            config.pools.push(pool_from_table(name, table)?);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn check(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
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
            ("WARMPOOL_MAX_SURGE", "3"),
            ("WARMPOOL_ROLLOUT_FAILURE_LIMIT", "5"),
            ("WARMPOOL_PROGRESS_DEADLINE_SECONDS", "90"),
        ])
        .unwrap();
        let p = c.default_pool();
        assert_eq!(p.name, "web");
        assert_eq!(p.max_surge, warmpool_core::Surge::Count(3));
        assert_eq!(p.rollout_failure_limit, 5);
        assert_eq!(p.progress_deadline, Duration::from_secs(90));
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
            ("WARMPOOL_MAX_SURGE", "0%"),
            ("WARMPOOL_MAX_SURGE", "lots"),
            ("WARMPOOL_ROLLOUT_FAILURE_LIMIT", "0"),
            ("WARMPOOL_ROLLOUT_FAILURE_LIMIT", "1001"),
            ("WARMPOOL_PROGRESS_DEADLINE_SECONDS", "0"),
            ("WARMPOOL_PROGRESS_DEADLINE_SECONDS", "86401"),
            ("WARMPOOL_OTLP_ENDPOINT", "https://collector:4318"),
            ("WARMPOOL_OTLP_ENDPOINT", "127.0.0.1:4318"),
            ("WARMPOOL_OTLP_ENDPOINT", "http://:4318"),
            ("WARMPOOL_OTLP_ENDPOINT", "http://collector:4318/?a=b"),
            ("WARMPOOL_OTLP_ENDPOINT", "not a url"),
        ] {
            let e = check(&[(k, v)]).unwrap_err();
            assert_eq!(e.key, k, "{k}={v}");
            assert!(e.to_string().starts_with(&format!("invalid {k}=")), "{e}");
        }
    }

    #[test]
    fn the_otlp_endpoint_gets_the_traces_path_as_the_otel_variable_does() {
        assert_eq!(check(&[]).unwrap().otlp_endpoint, None);
        for (given, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            ("http://collector/otlp", "http://collector/otlp/v1/traces"),
            ("http://[::1]:4318/v1/traces", "http://[::1]:4318/v1/traces"),
        ] {
            let c = check(&[("WARMPOOL_OTLP_ENDPOINT", given)]).unwrap();
            assert_eq!(c.otlp_endpoint.unwrap().to_string(), url, "{given}");
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
}
