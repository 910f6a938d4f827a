//! The API's wire types (JSON, camelCase), shared by server and client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Body of `POST /container` (all fields optional). Its `Debug` shows the
/// names of `secret_env`, never the values.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimRequest {
    /// The pool to claim from (default: the default pool).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,63}$"))]
    pub pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(default|wnam|enam|sam|weur|eeur|apac|oc|afr|me)$")
    )]
    pub location: Option<String>,
    /// At most the pool's maximum lifetime (its default).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_lifetime_in_seconds: Option<u64>,
    /// Text the container serves, set through its `/admin/update-text` before the
    /// claim is answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1048576))]
    pub text: Option<String>,
    /// Stop the container after this long without proxied traffic (at most the
    /// pool's maximum lifetime).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub idle_timeout_in_seconds: Option<u64>,
    /// Environment for the app, name to value: delivered through its
    /// `/admin/bind` hook, or, on a pool with `bind = "none"`, set in the
    /// environment of a container started for this claim (then `warm` is
    /// false). At most 64 entries and 32 KiB; names are `[A-Za-z_][A-Za-z0-9_]*`,
    /// not `PORT` nor `WARMPOOL_*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Like `env`, but never persisted: warmpool keeps only its names, nowhere
    /// its values (store, logs, events, metrics, studio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<BTreeMap<String, String>>,
    /// Files to put in the container before the claim is answered, relative
    /// path to UTF-8 content, at most 1 MiB in all: written by the runtime into
    /// the container's files dir (process runtime: its work dir; Docker: the
    /// pool's `files_dir`), and given to the bind hook. Paths are relative,
    /// without `.` or `..` segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<BTreeMap<String, String>>,
    /// Labels of the claimed container (Kubernetes label syntax); stored,
    /// shown, and filtered by (`GET /v1/containers?label=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Free JSON kept with the container (at most 16 KiB serialised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Claim from any pool whose labels match this selector (Kubernetes
    /// label-selector syntax, `runtime=python3.12,gpu!=true`) instead of naming
    /// `pool`. No matching pool: 404 `no-matching-pool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub selector: Option<String>,
    /// Selectors tried in order, each within `selector`, for a warm container,
    /// before `selector` alone (as Agones' `preferred`); an on-demand start goes
    /// to the first pool of the first that matches any. At most 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 16))]
    pub preferred: Option<Vec<String>>,
}

impl std::fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("pool", &self.pool)
            .field("location", &self.location)
            .field("max_lifetime_in_seconds", &self.max_lifetime_in_seconds)
            .field("text", &self.text)
            .field("idle_timeout_in_seconds", &self.idle_timeout_in_seconds)
            .field("env", &self.env)
            .field(
                "secret_env",
                &self
                    .secret_env
                    .as_ref()
                    .map(|m| m.keys().collect::<Vec<_>>()),
            )
            .field(
                "files",
                &self.files.as_ref().map(|m| m.keys().collect::<Vec<_>>()),
            )
            .field("labels", &self.labels)
            .field("metadata", &self.metadata)
            .field("selector", &self.selector)
            .field("preferred", &self.preferred)
            .finish()
    }
}

/// Answer of `POST /container`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClaimResponse {
    pub id: String,
    pub pool: String,
    pub location: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Whether the container came from the warm pool (false: started on demand).
    pub warm: bool,
}

/// Body of `POST /v1/containers/{id}/extend`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// Seconds added to the container's expiry; the new expiry must not pass its
    /// claim plus its pool's maximum lifetime. At most 315,360,000 (ten years),
    /// whatever the pool.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 315_360_000))]
    pub seconds: u64,
}

impl ExtendRequest {
    /// The largest `seconds` any extension may ask for: ten years.
    pub const MAX_SECONDS: u64 = 315_360_000;
}

/// Body of `POST /v1/containers/{id}/keepalive`: empty (or no body at all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeepaliveRequest {}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerQuery {
    pub state: Option<String>,
    pub location: Option<String>,
    pub pool: Option<String>,
    /// A label selector (`team=a,tier!=free`, Kubernetes syntax).
    pub label: Option<String>,
    pub limit: Option<u32>,
}

/// One container, as the API shows it. Times are RFC 3339.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    pub id: String,
    pub pool: String,
    pub location: String,
    pub state: String,
    pub runtime: String,
    /// The runtime's own name for it (`pid:<pid>:<start time>` for processes).
    pub runtime_handle: Option<String>,
    pub address: Option<String>,
    pub on_demand: bool,
    pub created_at: String,
    pub ready_at: Option<String>,
    pub allocated_at: Option<String>,
    pub expires_at: Option<String>,
    pub stopped_at: Option<String>,
    pub stop_reason: Option<String>,
    pub exit_code: Option<i32>,
    /// The revision of its pool's template it was started from (0 from a
    /// server without revisions).
    #[serde(default)]
    pub revision: u32,
    /// Its claim's labels (empty: none).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its claim's metadata, as the client sent it.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContainerList {
    pub containers: Vec<ContainerView>,
}

/// One pool key and its numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    pub pool: String,
    pub location: String,
    pub target: u32,
    pub ready: u32,
    pub starting: u32,
    pub allocated: u32,
    pub stopping: u32,
    pub failed: u32,
    /// Claims answered from the warm pool.
    pub hits: u64,
    /// Claims that found no ready container.
    pub misses: u64,
    /// Starts that failed (runtime error, exit or timeout before ready).
    pub failed_starts: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// The pool's current revision (0 from a server without revisions).
    #[serde(default)]
    pub revision: u32,
    /// Ready (and starting) containers it aims at now: its target under the
    /// global cap, or what its scaling policy decided.
    #[serde(default)]
    pub desired: u32,
    /// Why `desired` is what it is: `static target`, `capped by
    /// max_instances`, `buffer (N in use)`, `demand: ...`, `min`, `capped by
    /// max`, `held by scale_down_delay ...`.
    #[serde(default)]
    pub reason: String,
    /// The last pull of the pool's image by the runtime (Docker), while it runs
    /// and after; absent when the image was not pulled since the server
    /// started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullView>,
}

/// An image pull, as a pool's status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PullView {
    pub image: String,
    /// `pulling`, `pulled` or `failed`.
    pub phase: String,
    /// Progress while pulling (`2 of 5 layers done, 12.3 of 40.1 MB`), the time
    /// it took once pulled, the registry's message once failed.
    pub detail: String,
    pub started_at: String,
    pub ended_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PoolList {
    pub pools: Vec<PoolView>,
    /// Live containers (every state but stopped) across pools.
    pub live: u32,
    pub max_instances: u32,
}

/// A state change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub seq: i64,
    pub at: String,
    pub container_id: String,
    pub from: Option<String>,
    pub to: String,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    pub events: Vec<EventView>,
    /// Pass as `after` to get the next page.
    pub next: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
}

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The offending input field, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

/// A pool's settings, keyed as in a config file's `[pools.NAME]` table (so
/// snake_case, unlike the rest of the API): `PUT /v1/pools/{pool}` takes any
/// subset (what it leaves out takes its default) and the server checks it exactly
/// as it checks such a table; `GET` answers every resolved setting (its targets
/// as `targets`, never `target` or `locations`). Durations are in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    /// Program and arguments of each container (process runtime); empty: the
    /// server's own sample app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Image of each container (Docker and Kubernetes runtimes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Readiness probe path, starting with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    /// Input only: ready containers to keep in each of `locations`, 0 to
    /// 100000 (`targets` overrides it where they name the same location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    /// Ready containers to keep, by location (0 to 100000); its locations keep
    /// a warm pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<std::collections::BTreeMap<String, u32>>,
    /// Input only: locations that keep a warm pool of `target` containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<String>>,
    /// Containers started at most per batch, 1 to 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Least seconds between two batches of the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_spacing: Option<f64>,
    /// Longest lifetime a claim may ask for, and the default, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<f64>,
    /// Seconds without traffic after which an allocated container stops, unless
    /// its claim says otherwise (0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<f64>,
    /// Seconds a container has to become ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<f64>,
    /// Extra environment of every container, name to value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_env: Option<std::collections::BTreeMap<String, String>>,
    /// CPUs per container (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu: Option<f64>,
    /// Hard memory limit per container, in MiB (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Processes per container (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// Writable layer or ephemeral storage per container, in MB (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<u64>,
    /// New-revision containers a rollout starts beyond the target before old
    /// ones stop: a share of the target (`25%`) or a count (`3`); at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<String>,
    /// Failed starts of a new revision in a row that stop its rollout (phase
    /// `failed`), 1 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_failure_limit: Option<u32>,
    /// Seconds a rollout may take before it fails, 1 to 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<f64>,
    /// How its warm buffer follows demand (absent: its targets are static). With
    /// a policy, `targets` names the locations it keeps; the policy sizes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingSettings>,
    /// How a claim's set-up reaches a warm container: `optional` (the default:
    /// the app's `/admin/bind` hook is called, and an app without one is fine
    /// unless the claim has env), `required` (an app without the hook fails the
    /// claim) or `none` (never called: a claim with env gets a container
    /// started for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// Absolute directory in the container a claim's files are written to
    /// (Docker and Kubernetes; the process runtime writes into each container's
    /// work dir). Default `/warmpool/files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_dir: Option<String>,
    /// When the image is pulled from its registry (Docker and Kubernetes):
    /// `if-missing` (the default), `always` (before starts, at most once a
    /// minute) or `never`. The sample image is never pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<String>,
    /// Docker: no setuid binary or file capability can raise the app's
    /// privileges (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
    /// Docker: every Linux capability dropped (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_capabilities: Option<bool>,
    /// Docker: a read-only root file system, with a tmpfs at each of `tmpfs`
    /// and the files dir on a tmpfs volume: `true`, `false` or `auto` (the
    /// default: the sample image only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root: Option<String>,
    /// Docker: the user the app runs as, `uid[:gid]` or a name the image knows
    /// (empty: the image's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Docker: writable tmpfs directories on a read-only root (default
    /// `["/tmp"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<Vec<String>>,
    /// The pool's labels (Kubernetes label syntax): claims with a `selector`
    /// pick pools by them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// A pool's scaling policy, as its `[pools.NAME.scaling]` table: on input a
/// subset (the rest take their defaults), on output every value. Each pool key
/// (pool and location) keeps `max(min, buffer, claim rate × start time p90 ×
/// safety)` ready, at most `max`, the largest size called for within
/// `scale_down_delay`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScalingSettings {
    /// Ready containers kept at least, per location (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// Ready containers kept at most, per location (0, the default: only
    /// `max_instances` bounds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Ready containers kept beyond those in use: a count (`2`, the default) or
    /// a share of the allocated ones (`20%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<String>,
    /// Seconds a size is held after it was last called for before it shrinks;
    /// also how long a location without claims keeps its pool (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay: Option<f64>,
    /// The demand term's factor (default 2; 0: no demand term, the buffer and
    /// `min` alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<f64>,
    /// `configured` (the default: only the locations of `targets`) or `auto`
    /// (also every location that receives claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<String>,
}

/// The settings whose change makes a new revision of a pool (its template: what
/// its containers run and with what). A change of any other (targets, batches,
/// lifetimes, rollout limits) applies to the running revision.
pub const TEMPLATE_KEYS: &[&str] = &[
    "command",
    "image",
    "health_path",
    "app_env",
    "vcpu",
    "memory_mib",
    "pids_limit",
    "disk_mb",
    "start_timeout",
    "files_dir",
];

/// One setting that differs between a pool's settings and new ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SettingChange {
    /// Its key in [`PoolSettings`].
    pub key: String,
    /// The value before (none: it was not set).
    pub old: Option<serde_json::Value>,
    /// The value after (none: it is no longer set).
    pub new: Option<serde_json::Value>,
}

impl SettingChange {
    /// Whether this change makes a new revision ([`TEMPLATE_KEYS`]).
    pub fn is_template(&self) -> bool {
        TEMPLATE_KEYS.contains(&self.key.as_str())
    }
}

/// Where a pool's rollout of its current revision stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The revision being rolled out (the pool's current one).
    pub revision: u32,
    /// The last revision whose rollout completed.
    pub stable_revision: u32,
    /// Ready containers of the current revision.
    pub updated_ready: u32,
    /// Ready containers of older revisions (stopped as new ones become ready).
    pub stale_ready: u32,
    /// Allocated containers of older revisions (never stopped by a rollout).
    pub outdated_allocated: u32,
    /// `progressing`, `complete` or `failed`.
    pub phase: String,
    /// Why the rollout failed.
    pub error: Option<String>,
    /// RFC 3339: when the rollout began.
    pub started_at: Option<String>,
    /// RFC 3339: when the rollout fails unless complete.
    pub deadline: Option<String>,
}

/// Something that happened to a pool (created, changed, a rollout step,
/// deleted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PoolEvent {
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    pub pool: String,
    /// The revision it concerns, if one.
    pub revision: Option<u32>,
    pub kind: String,
    pub detail: Option<String>,
}

/// `GET /v1/pools/{pool}`: a pool's settings, revision, rollout, numbers per
/// location and recent events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PoolDetail {
    pub name: String,
    /// Every resolved setting.
    pub settings: PoolSettings,
    /// The current revision of its template.
    pub revision: u32,
    pub rollout: RolloutStatus,
    /// Its pool keys, one per location.
    pub locations: Vec<PoolView>,
    /// Its recent events, oldest first.
    pub events: Vec<PoolEvent>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Answer of `PUT` and `PATCH /v1/pools/{pool}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PutPoolResponse {
    /// The pool after the change (with `dryRun`: as it would be).
    pub pool: PoolDetail,
    /// The pool did not exist before.
    pub created: bool,
    /// Nothing was changed (`?dryRun=true`): this is what would be.
    pub dry_run: bool,
    /// The settings that differ, in key order (empty: unchanged).
    pub changes: Vec<SettingChange>,
    /// A template setting changed, so a new revision rolls out.
    pub new_revision: bool,
}

/// Answer of `POST /v1/reload`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReloadResponse {
    /// The config file's pools were applied (false: see `reason`).
    pub applied: bool,
    /// Why not, or what was done (`unchanged since last applied`).
    pub reason: String,
    /// Each pool of the file, as applied.
    pub pools: Vec<PutPoolResponse>,
}

/// Body of `POST /v1/sql`: one read-only statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One statement that only reads (SELECT, WITH ... SELECT, VALUES, EXPLAIN,
    /// or a schema pragma such as `PRAGMA table_info(containers)`).
    pub sql: String,
}

/// Rows answered by `POST /v1/sql` or `GET /v1/tables/{name}/rows`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SqlResult {
    pub columns: Vec<String>,
    /// Each row's values in column order: null, number, string; a blob is the
    /// string `x'<hex>'`.
    #[cfg_attr(feature = "openapi", schema(schema_with = sql_rows))]
    pub rows: Vec<Vec<serde_json::Value>>,
    /// More rows were there than the row limit let through.
    pub truncated: bool,
    pub elapsed_ms: f64,
}

/// The schema of [`SqlResult::rows`]: arrays of nulls, numbers and strings.
#[cfg(feature = "openapi")]
fn sql_rows() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let cell = ObjectBuilder::new().schema_type(SchemaType::Array(vec![
        Type::Null,
        Type::Number,
        Type::String,
    ]));
    ArrayBuilder::new()
        .items(ArrayBuilder::new().items(cell))
        .build()
}

/// A column of a store table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ColumnView {
    pub name: String,
    /// The declared type.
    #[serde(rename = "type")]
    pub decl_type: String,
    pub not_null: bool,
    pub primary_key: bool,
}

/// A table of the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TableView {
    pub name: String,
    pub columns: Vec<ColumnView>,
    pub rows: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableList {
    pub tables: Vec<TableView>,
}

/// One pool key in a history sample.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PoolSample {
    pub pool: String,
    pub location: String,
    pub ready: u32,
    pub allocated: u32,
    /// Containers of this key that failed since warmpool started (a running
    /// count: the difference between two samples is what failed in between).
    pub failures: u64,
}

/// The state at one moment, and the claims of the interval it ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HistorySample {
    /// RFC 3339.
    pub at: String,
    pub pools: Vec<PoolSample>,
    /// Claims answered in the interval.
    pub claims: u64,
    /// Median claim latency in the interval (none without claims).
    pub claim_p50_ms: Option<f64>,
    /// 99th percentile claim latency in the interval.
    pub claim_p99_ms: Option<f64>,
}

/// `GET /v1/stats/history`: samples of the last hour, kept in memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub interval_seconds: u64,
    /// Oldest first; the last one is now, covering the interval in progress.
    pub samples: Vec<HistorySample>,
}

/// `GET /v1/status`: warmpool's background tasks and how their last runs went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `reconcile`, `sweep`, `prober` (when probing is on), `history`,
    /// `prune_tombstones`, in that order.
    pub tasks: Vec<TaskView>,
}

/// One background task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub name: String,
    /// Longest time between two runs; activations (claims, exits) run it sooner.
    pub period_seconds: f64,
    /// Runs finished since start.
    pub runs: u64,
    /// Runs that ended in an error.
    pub errors: u64,
    /// Set while a run is in progress: when it began.
    pub running_since: Option<String>,
    pub last: Option<TaskRunView>,
}

/// The last finished run of a background task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TaskRunView {
    pub started_at: String,
    pub duration_ms: f64,
    /// `ok` or `error`.
    pub outcome: String,
    /// What the run did (`ok`), or why it failed (`error`).
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pool_settings_are_snake_case_and_leave_out_what_is_not_set() {
        let s = PoolSettings {
            health_path: Some("/".into()),
            max_surge: Some("25%".into()),
            rollout_failure_limit: Some(3),
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            json!({"health_path": "/", "max_surge": "25%", "rollout_failure_limit": 3})
        );
        assert_eq!(serde_json::from_value::<PoolSettings>(v).unwrap(), s);
        assert_eq!(
            serde_json::to_value(PoolSettings::default()).unwrap(),
            json!({})
        );
        let e = serde_json::from_value::<PoolSettings>(json!({"healthPath": "/"})).unwrap_err();
        assert!(e.to_string().contains("unknown field `healthPath`"), "{e}");
    }

    #[test]
    fn template_changes_are_told_by_key() {
        let change = |key: &str| SettingChange {
            key: key.into(),
            old: None,
            new: Some(json!(1)),
        };
        assert!(change("image").is_template());
        assert!(change("app_env").is_template());
        assert!(!change("targets").is_template());
        assert!(!change("max_surge").is_template());
        assert_eq!(
            serde_json::to_value(change("image")).unwrap(),
            json!({"key": "image", "old": null, "new": 1})
        );
    }

    /// Views from a server without revisions still read, as revision 0.
    #[test]
    fn views_without_a_revision_read_as_revision_0() {
        let pool: PoolView = serde_json::from_value(json!({
            "pool": "default", "location": "default", "target": 1, "ready": 1,
            "starting": 0, "allocated": 0, "stopping": 0, "failed": 0, "hits": 0,
            "misses": 0, "failedStarts": 0, "lastError": null, "lastErrorAt": null,
        }))
        .unwrap();
        assert_eq!(pool.revision, 0);
        let container: ContainerView = serde_json::from_value(json!({
            "id": "x", "pool": "default", "location": "default", "state": "ready",
            "runtime": "sim", "runtimeHandle": null, "address": null, "onDemand": false,
            "createdAt": "2024-01-01T00:00:00Z", "readyAt": null, "allocatedAt": null,
            "expiresAt": null, "stoppedAt": null, "stopReason": null, "exitCode": null,
        }))
        .unwrap();
        assert_eq!(container.revision, 0);
        assert!(container.labels.is_empty());
        assert_eq!(container.metadata, None);
    }
}
