//! Pools as data: each pool's settings (opaque JSON the engine writes), its
//! template revisions, and its own events (created, rollout steps, deleted).

use rusqlite::{params, Connection, Row};
use warmpool_core::Timestamp;

use crate::StoreError;

pub(crate) const POOL_COLUMNS: &[&str] = &[
    "name",
    "spec",
    "revision",
    "stable_revision",
    "rollout_started_at",
    "rollout_error",
    "created_at",
    "updated_at",
];

pub(crate) const REVISION_COLUMNS: &[&str] =
    &["pool", "revision", "template", "hash", "created_at"];

pub(crate) const POOL_EVENT_COLUMNS: &[&str] = &["seq", "at", "pool", "revision", "kind", "detail"];

pub(crate) const SIZE_COLUMNS: &[&str] = &[
    "pool",
    "location",
    "size",
    "reason",
    "since",
    "active_until",
    "updated_at",
];

/// One row of `pool_sizes`: the size an autoscaled pool decided at one location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSizeRow {
    pub pool: String,
    pub location: String,
    /// Ready containers its policy keeps there (before the global cap).
    pub size: u32,
    pub reason: String,
    /// When that size was last called for (it is held until the scale-down
    /// delay has passed since).
    pub since: Timestamp,
    /// Until when the location counts as active (its last claim plus the
    /// scale-down delay), if it had claims.
    pub active_until: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// One row of `pools`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRecord {
    pub name: String,
    /// The pool's settings as the engine serialised them.
    pub spec: String,
    /// The revision new containers start from.
    pub revision: u32,
    /// The last revision whose rollout completed.
    pub stable_revision: u32,
    /// When the rollout to `revision` began (`None`: none in progress).
    pub rollout_started_at: Option<Timestamp>,
    /// Why the rollout to `revision` failed.
    pub rollout_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One row of `pool_revisions`: a template a pool's containers were started from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionRecord {
    pub pool: String,
    pub revision: u32,
    /// The template as the engine serialised it.
    pub template: String,
    /// A hash of `template`, to find a revision by its content.
    pub hash: String,
    pub created_at: Timestamp,
}

/// One row of `pool_events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolEventRow {
    pub seq: i64,
    pub at: Timestamp,
    pub pool: String,
    pub revision: Option<u32>,
    pub kind: String,
    pub detail: Option<String>,
}

/// One write of [`crate::Op::Pools`]; the writes of one op commit together.
#[derive(Clone, Debug)]
pub enum PoolWrite {
    /// Creates or replaces a pool's record.
    Put(PoolRecord),
    /// Deletes a pool's record (its revisions and events stay).
    Delete(String),
    /// Adds a revision (an existing one is left as it is).
    Revision(RevisionRecord),
    /// Appends a pool event (`seq` is assigned).
    Event {
        at: Timestamp,
        pool: String,
        revision: Option<u32>,
        kind: String,
        detail: Option<String>,
    },
    /// Sets a value of the `meta` table.
    Meta { key: String, value: String },
    /// Creates or replaces the size of a pool at a location.
    PutSize(PoolSizeRow),
    /// Forgets the size of a pool at a location (an auto location gone idle).
    DeleteSize { pool: String, location: String },
}

pub(crate) fn write(conn: &Connection, w: &PoolWrite) -> Result<(), StoreError> {
    match w {
        PoolWrite::Put(p) => {
            conn.prepare_cached(
                "INSERT INTO pools (name, spec, revision, stable_revision, rollout_started_at, rollout_error, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (name) DO UPDATE SET spec = ?2, revision = ?3, stable_revision = ?4,
                    rollout_started_at = ?5, rollout_error = ?6, updated_at = ?8",
            )?
            .execute(params![
                p.name,
                p.spec,
                p.revision,
                p.stable_revision,
                p.rollout_started_at.map(|t| t.0),
                p.rollout_error,
                p.created_at.0,
                p.updated_at.0
            ])?;
        }
        PoolWrite::Delete(name) => {
            conn.prepare_cached("DELETE FROM pools WHERE name = ?1")?
                .execute(params![name])?;
        }
        PoolWrite::Revision(r) => {
            conn.prepare_cached(
                "INSERT INTO pool_revisions (pool, revision, template, hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (pool, revision) DO NOTHING",
            )?
            .execute(params![
                r.pool,
                r.revision,
                r.template,
                r.hash,
                r.created_at.0
            ])?;
        }
        PoolWrite::Event {
            at,
            pool,
            revision,
            kind,
            detail,
        } => {
            conn.prepare_cached(
                "INSERT INTO pool_events (at, pool, revision, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![at.0, pool, revision, kind, detail])?;
        }
        PoolWrite::Meta { key, value } => {
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
            )?
            .execute(params![key, value])?;
        }
        PoolWrite::PutSize(r) => {
            conn.prepare_cached(
                "INSERT INTO pool_sizes (pool, location, size, reason, since, active_until, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (pool, location) DO UPDATE SET size = ?3, reason = ?4, since = ?5,
                    active_until = ?6, updated_at = ?7",
            )?
            .execute(params![
                r.pool,
                r.location,
                r.size,
                r.reason,
                r.since.0,
                r.active_until.map(|t| t.0),
                r.updated_at.0
            ])?;
        }
        PoolWrite::DeleteSize { pool, location } => {
            conn.prepare_cached("DELETE FROM pool_sizes WHERE pool = ?1 AND location = ?2")?
                .execute(params![pool, location])?;
        }
    }
    Ok(())
}

pub(crate) fn query_sizes(conn: &Connection) -> rusqlite::Result<Vec<PoolSizeRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM pool_sizes ORDER BY pool, location",
        SIZE_COLUMNS.join(", ")
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(PoolSizeRow {
            pool: r.get(0)?,
            location: r.get(1)?,
            size: r.get(2)?,
            reason: r.get(3)?,
            since: Timestamp(r.get(4)?),
            active_until: r.get::<_, Option<i64>>(5)?.map(Timestamp),
            updated_at: Timestamp(r.get(6)?),
        })
    })?;
    rows.collect()
}

fn pool_row(r: &Row<'_>) -> rusqlite::Result<PoolRecord> {
    Ok(PoolRecord {
        name: r.get(0)?,
        spec: r.get(1)?,
        revision: r.get(2)?,
        stable_revision: r.get(3)?,
        rollout_started_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
        rollout_error: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        updated_at: Timestamp(r.get(7)?),
    })
}

pub(crate) fn query_pools(conn: &Connection) -> rusqlite::Result<Vec<PoolRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM pools ORDER BY name",
        POOL_COLUMNS.join(", ")
    ))?;
    let rows = stmt.query_map([], pool_row)?;
    rows.collect()
}

pub(crate) fn query_revisions(conn: &Connection) -> rusqlite::Result<Vec<RevisionRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT pool, revision, template, hash, created_at FROM pool_revisions ORDER BY pool, revision",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(RevisionRecord {
            pool: r.get(0)?,
            revision: r.get(1)?,
            template: r.get(2)?,
            hash: r.get(3)?,
            created_at: Timestamp(r.get(4)?),
        })
    })?;
    rows.collect()
}

pub(crate) fn query_pool_events(
    conn: &Connection,
    pool: &str,
    limit: u32,
) -> rusqlite::Result<Vec<PoolEventRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, pool, revision, kind, detail FROM
           (SELECT * FROM pool_events WHERE pool = ?1 ORDER BY seq DESC LIMIT ?2)
         ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![pool, limit], |r| {
        Ok(PoolEventRow {
            seq: r.get(0)?,
            at: Timestamp(r.get(1)?),
            pool: r.get(2)?,
            revision: r.get(3)?,
            kind: r.get(4)?,
            detail: r.get(5)?,
        })
    })?;
    rows.collect()
}
