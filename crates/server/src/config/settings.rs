//! The table of settings: each one's env var, `serve` flag, default, help and
//! scope (global, or per pool). The README's table, the CLI's flags, the config
//! file's keys and `--check-config` all come from it.

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
    pool "WARMPOOL_COMMAND", "command", "", "command of each container, shell-style words (default: the sample app, from warmpool-sample-app beside this binary if it is there, else this binary's own sample-app)";
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
    global "WARMPOOL_MAX_HEADER_LINE_BYTES", "max-header-line", "8192", "longest request line or header line a client may send (management or proxied); longer gets 414 or 431";
    global "WARMPOOL_MAX_HEADER_BYTES", "max-header-bytes", "65536", "most bytes of header lines in one request; more gets 431";
    global "WARMPOOL_MAX_HEADERS", "max-headers", "100", "most header lines in one request; more gets 431";
    global "WARMPOOL_BODY_TIMEOUT_SECONDS", "body-timeout", "30", "seconds a client may pause while sending a request body (management or proxied) before it gets 408";
    global "WARMPOOL_SWEEP_SECONDS", "sweep-interval", "30", "how often the runtime is re-listed: what vanished is failed, unknown containers carrying our tag are destroyed";
    global "WARMPOOL_PROBE_INTERVAL_SECONDS", "probe-interval", "10", "how often ready containers are health-probed; after 3 failures in a row one is failed and replaced (0: never)";
    global "WARMPOOL_RECONCILE_INTERVAL_SECONDS", "reconcile-interval", "5", "safety-net period of the reconciler";
    global "WARMPOOL_TOMBSTONE_HOURS", "tombstone-hours", "24", "hours an ended container's id answers 410 instead of 404";
    global "WARMPOOL_SIM_START_SECONDS", "sim-start", "0", "seconds each simulated container takes to become ready (sim runtime; 0: at once)";
    global "WARMPOOL_SIM_ADDRESS", "sim-address", "127.0.0.1:9", "address the simulated runtime reports for its containers";
    global "WARMPOOL_LOG_FORMAT", "log-format", "text", "log lines as text or json";
    global "WARMPOOL_OTLP_ENDPOINT", "otlp-endpoint", "", "OpenTelemetry collector to export traces to over OTLP/HTTP (protobuf), as http://HOST:PORT (the path /v1/traces is added unless given); spans for claims, launches, readiness, proxied requests, reconcile passes and store commits, and a traceparent header on proxied requests (empty: no traces)";
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
    global "WARMPOOL_DOCKER_PULL_TIMEOUT_SECONDS", "docker-pull-timeout", "600", "seconds one image pull may take (docker runtime)";
    global "WARMPOOL_DOCKER_CONFIG", "docker-config", "", "Docker config file registry credentials are read from at each pull, as docker login leaves them (auths, credHelpers, credsStore; default: DOCKER_CONFIG/config.json or ~/.docker/config.json)";
    global "WARMPOOL_KUBECONFIG", "kubeconfig", "", "kubeconfig file (default: KUBECONFIG or ~/.kube/config if present, else the in-cluster service account)";
    pool "WARMPOOL_VCPU", "vcpu", "0.25", "CPUs per container (docker and kubernetes runtimes; 0 for no limit)";
    pool "WARMPOOL_MEMORY_MIB", "memory-mib", "256", "hard memory limit per container, no swap (docker and kubernetes runtimes; 0 for none)";
    pool "WARMPOOL_PIDS_LIMIT", "pids-limit", "256", "processes per container (docker runtime; 0 for no limit)";
    pool "WARMPOOL_DISK_MB", "disk-mb", "512", "writable layer size per container, where the storage driver supports it (docker runtime), or ephemeral-storage (kubernetes runtime); 0 for none";
    pool "WARMPOOL_MAX_SURGE", "max-surge", "25%", "during a rollout, new-revision containers started beyond the target before old ones stop: a share of the target (25%) or a count (at least 1)";
    pool "WARMPOOL_ROLLOUT_FAILURE_LIMIT", "rollout-failure-limit", "3", "failed starts of a new revision in a row that stop its rollout (phase failed); the old revision keeps serving";
    pool "WARMPOOL_PROGRESS_DEADLINE_SECONDS", "progress-deadline", "600", "a rollout not complete after this many seconds fails (phase failed); the old revision keeps serving";
    pool "WARMPOOL_SCALING", "scaling", "off", "on: the warm buffer follows demand at each location (the config file's [scaling] table, or any scaling-* setting, turns it on); off: targets are static";
    pool "WARMPOOL_SCALING_MIN", "scaling-min", "0", "autoscaling: ready containers kept at least, per location";
    pool "WARMPOOL_SCALING_MAX", "scaling-max", "0", "autoscaling: ready containers kept at most, per location (0: only max-instances bounds it)";
    pool "WARMPOOL_SCALING_BUFFER", "scaling-buffer", "2", "autoscaling: ready containers kept beyond those in use, a count (2) or a share of the allocated ones (20%)";
    pool "WARMPOOL_SCALING_SCALE_DOWN_DELAY_SECONDS", "scaling-scale-down-delay", "300", "autoscaling: seconds a size is held after it was last called for before it shrinks; also how long a location without claims keeps its pool";
    pool "WARMPOOL_SCALING_SAFETY", "scaling-safety", "2", "autoscaling: keep at least claim rate x start time (p90) x safety ready (0: no demand term, the buffer and min alone)";
    pool "WARMPOOL_SCALING_LOCATIONS", "scaling-locations", "configured", "autoscaling: configured (the locations of targets) or auto (also every location that receives claims, until scale-down-delay passes without one)";
    pool "WARMPOOL_BIND", "bind", "optional", "how a claim's env, files, labels and metadata reach a warm container: optional (the app's POST /admin/bind hook is called; an app without one is fine unless the claim has env), required (an app without the hook fails the claim) or none (never called; a claim with env gets a container started for it, with the env)";
    pool "WARMPOOL_FILES_DIR", "files-dir", "/warmpool/files", "absolute directory in the container a claim's files are written to (docker and kubernetes runtimes; the process runtime writes into each container's work dir)";
    pool "WARMPOOL_PULL", "pull", "if-missing", "when the image is pulled from its registry, as Kubernetes' imagePullPolicy: if-missing (when the engine does not have it), always (before starts, at most once a minute; starts that overlap share one pull) or never (docker and kubernetes runtimes; the sample image is never pulled)";
    pool "WARMPOOL_NO_NEW_PRIVILEGES", "no-new-privileges", "true", "no setuid binary or file capability can raise the app's privileges (docker runtime; kubernetes pods always have it)";
    pool "WARMPOOL_DROP_CAPABILITIES", "drop-capabilities", "true", "drop every Linux capability of the container (docker runtime; kubernetes pods always do)";
    pool "WARMPOOL_READ_ONLY_ROOT", "read-only-root", "auto", "a read-only root file system, with a tmpfs at each tmpfs directory and the files dir on a tmpfs volume of its own: true, false, or auto (the sample image only, whose writable directories are known) (docker runtime)";
    pool "WARMPOOL_CONTAINER_USER", "user", "", "user the app runs as, uid[:gid] or a name the image knows (default: the image's own; the sample image's is 65532) (docker runtime)";
    pool "WARMPOOL_TMPFS", "tmpfs", "/tmp", "writable tmpfs directories on a read-only root, separated by commas (in the config file also a list) (docker runtime)";
    pool "WARMPOOL_POOL_LABELS", "labels", "", "labels of the pool, key=value pairs separated by commas (in the config file also a table); claims with a selector pick pools by them";
}

/// The setting whose env var is `env` (a name the code spells out).
pub(super) fn setting(env: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.env == env)
        .unwrap_or_else(|| panic!("{env} is not in SETTINGS"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use warmpool_core::Location;

    use super::SETTINGS;
    use crate::config::{Config, RuntimeKind};

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
        assert_eq!(p.max_surge, warmpool_core::Surge::Percent(25));
        assert_eq!(p.rollout_failure_limit, 3);
        assert_eq!(p.progress_deadline, Duration::from_secs(600));
    }

    #[test]
    fn every_setting_has_a_valid_default() {
        for s in SETTINGS {
            assert!(s.env.starts_with("WARMPOOL_") || s.env.starts_with("POOL_"));
            assert!(!s.help.is_empty());
        }
        Config::defaults();
    }

    /// The README's configuration table lists every setting with its default.
    #[test]
    fn readme_documents_every_setting() {
        let readme = include_str!("../../../../README.md");
        for s in SETTINGS {
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
