//! The API's wire types (JSON, camelCase), shared by server and client.

use serde::{Deserialize, Serialize};

/// Body of `POST /container` (all fields optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerQuery {
    pub state: Option<String>,
    pub location: Option<String>,
    pub pool: Option<String>,
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

/// Body of `PATCH /v1/pools/{pool}`: new targets for some of the pool's
/// locations (the others keep theirs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PoolPatch {
    /// Location (one the pool is configured with) to its new target, 0 to 100000.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = std::collections::BTreeMap<String, u32>)
    )]
    pub targets: std::collections::BTreeMap<String, u32>,
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
