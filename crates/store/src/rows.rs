//! Row types and the read queries over them.

use std::collections::BTreeMap;
use std::str::FromStr;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use warmpool_core::labels::{Requirement, Selector};
use warmpool_core::{ContainerId, ContainerState, Location, Timestamp};

pub(crate) const CONTAINER_COLUMNS: &[&str] = &[
    "id",
    "pool",
    "location",
    "state",
    "runtime",
    "runtime_handle",
    "address",
    "on_demand",
    "created_at",
    "ready_at",
    "allocated_at",
    "expires_at",
    "stopped_at",
    "stop_reason",
    "exit_code",
    "idle_timeout_ms",
    "revision",
    "labels",
    "metadata",
];

pub(crate) const EVENT_COLUMNS: &[&str] = &[
    "seq",
    "at",
    "container_id",
    "from_state",
    "to_state",
    "reason",
];

const SELECT_CONTAINERS: &str = "SELECT id, pool, location, state, runtime, runtime_handle, address, on_demand, created_at, ready_at, allocated_at, expires_at, stopped_at, stop_reason, exit_code, idle_timeout_ms, revision, labels, metadata FROM containers";

/// One row of `containers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRow {
    pub id: ContainerId,
    pub pool: String,
    pub location: Location,
    pub state: ContainerState,
    pub runtime: String,
    pub runtime_handle: Option<String>,
    pub address: Option<String>,
    pub on_demand: bool,
    pub created_at: Timestamp,
    pub ready_at: Option<Timestamp>,
    pub allocated_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub stopped_at: Option<Timestamp>,
    pub stop_reason: Option<String>,
    pub exit_code: Option<i32>,
    /// Stop after this long without traffic (set on claim).
    pub idle_timeout: Option<std::time::Duration>,
    /// The revision of its pool it was started from.
    pub revision: u32,
    /// Its claim's labels (empty: none).
    pub labels: BTreeMap<String, String>,
    /// Its claim's metadata: JSON text, as the client sent it.
    pub metadata: Option<String>,
}

/// One row of `events`: a state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub seq: i64,
    pub at: Timestamp,
    pub container_id: ContainerId,
    pub from: Option<ContainerState>,
    pub to: ContainerState,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ContainerFilter {
    pub state: Option<ContainerState>,
    pub location: Option<Location>,
    pub pool: Option<String>,
    /// Only containers that are not `stopped`.
    pub live_only: bool,
    /// Only containers whose labels match (a NULL `labels` is no labels).
    pub labels: Option<Selector>,
    /// Applied after every filter.
    pub limit: Option<u32>,
}

fn parse<T: FromStr>(idx: usize, s: String) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    s.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

fn container_row(r: &Row<'_>) -> rusqlite::Result<ContainerRow> {
    Ok(ContainerRow {
        id: parse(0, r.get(0)?)?,
        pool: r.get(1)?,
        location: parse(2, r.get(2)?)?,
        state: parse(3, r.get(3)?)?,
        runtime: r.get(4)?,
        runtime_handle: r.get(5)?,
        address: r.get(6)?,
        on_demand: r.get(7)?,
        created_at: Timestamp(r.get(8)?),
        ready_at: ts(r.get(9)?),
        allocated_at: ts(r.get(10)?),
        expires_at: ts(r.get(11)?),
        stopped_at: ts(r.get(12)?),
        stop_reason: r.get(13)?,
        exit_code: r.get(14)?,
        idle_timeout: r
            .get::<_, Option<i64>>(15)?
            .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)),
        revision: r.get(16)?,
        labels: match r.get::<_, Option<String>>(17)? {
            None => BTreeMap::new(),
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    17,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
        },
        metadata: r.get(18)?,
    })
}

/// A selector as SQL over the `labels` column (a JSON object, or NULL for
/// none), with its parameters appended to `params`. Keys are bound as JSON
/// paths (`$."key"`: a valid key holds no `"`), values as values.
fn selector_sql(s: &Selector, params: &mut Vec<Value>) -> String {
    let mut bind = |v: String| {
        params.push(Value::Text(v));
        format!("?{}", params.len())
    };
    let mut clauses = Vec::new();
    for r in s.requirements() {
        let path = bind(format!("$.\"{}\"", r.key()));
        let value = format!("json_extract(labels, {path})");
        let present = format!("json_type(labels, {path}) IS NOT NULL");
        clauses.push(match r {
            Requirement::Equals { value: v, .. } => format!("{value} = {}", bind(v.clone())),
            Requirement::NotEquals { value: v, .. } => {
                format!("{value} IS NOT {}", bind(v.clone()))
            }
            Requirement::In { values, .. } | Requirement::NotIn { values, .. } => {
                let set: Vec<String> = values.iter().map(|v| bind(v.clone())).collect();
                let set = set.join(", ");
                if matches!(r, Requirement::In { .. }) {
                    format!("{present} AND {value} IN ({set})")
                } else {
                    format!("NOT ({present} AND {value} IN ({set}))")
                }
            }
            Requirement::Exists { .. } => present,
            Requirement::DoesNotExist { .. } => format!("NOT ({present})"),
        });
    }
    clauses
        .iter()
        .map(|c| format!(" AND ({c})"))
        .collect::<String>()
}

pub(crate) fn query_containers(
    conn: &Connection,
    f: &ContainerFilter,
) -> rusqlite::Result<Vec<ContainerRow>> {
    let mut values = vec![
        f.state.map(|s| s.as_str().to_owned()).into(),
        f.location.map(|l| l.as_str().to_owned()).into(),
        f.pool.clone().into(),
        Value::Integer(f.live_only.into()),
        Value::Integer(f.limit.map(i64::from).unwrap_or(-1)),
    ];
    let labels = match &f.labels {
        Some(s) => selector_sql(s, &mut values),
        None => String::new(),
    };
    let sql = format!(
        "{SELECT_CONTAINERS} WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR location = ?2)
           AND (?3 IS NULL OR pool = ?3) AND (?4 = 0 OR state <> 'stopped'){labels}
         ORDER BY created_at, id LIMIT ?5"
    );
    // Keys and values are bound, so the SQL depends only on the selector's shape
    // (its operators and set sizes): caching it is worth it.
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), container_row)?;
    rows.collect()
}

pub(crate) fn query_container(
    conn: &Connection,
    id: ContainerId,
) -> rusqlite::Result<Option<ContainerRow>> {
    conn.prepare_cached(&format!("{SELECT_CONTAINERS} WHERE id = ?1"))?
        .query_row(params![id.to_string()], container_row)
        .optional()
}

pub(crate) fn query_ended_since(
    conn: &Connection,
    since: Timestamp,
) -> rusqlite::Result<Vec<ContainerRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT_CONTAINERS} WHERE state = 'stopped' AND stopped_at >= ?1 ORDER BY stopped_at"
    ))?;
    let rows = stmt.query_map(params![since.0], container_row)?;
    rows.collect()
}

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    let from: Option<String> = r.get(3)?;
    Ok(EventRow {
        seq: r.get(0)?,
        at: Timestamp(r.get(1)?),
        container_id: parse(2, r.get(2)?)?,
        from: from.map(|s| parse(3, s)).transpose()?,
        to: parse(4, r.get(4)?)?,
        reason: r.get(5)?,
    })
}

pub(crate) fn query_events(
    conn: &Connection,
    after: i64,
    limit: u32,
    container: Option<ContainerId>,
) -> rusqlite::Result<Vec<EventRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, container_id, from_state, to_state, reason FROM events
         WHERE seq > ?1 AND (?2 IS NULL OR container_id = ?2) ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![after, container.map(|c| c.to_string()), limit],
        event_row,
    )?;
    rows.collect()
}

pub(crate) fn count_by_state(conn: &Connection) -> rusqlite::Result<Vec<(ContainerState, u64)>> {
    let mut stmt = conn
        .prepare_cached("SELECT state, count(*) FROM containers GROUP BY state ORDER BY state")?;
    let rows = stmt.query_map([], |r| {
        Ok((parse(0, r.get(0)?)?, r.get::<_, i64>(1)? as u64))
    })?;
    rows.collect()
}
