//! Embedded forward-only migrations, tracked with `PRAGMA user_version`.

use rusqlite::Connection;

use crate::StoreError;

/// Each entry moves the schema from version `i` to `i + 1`. Never edit a released
/// entry: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: containers, their events, and instance metadata.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE containers (
        id             TEXT PRIMARY KEY NOT NULL,
        pool           TEXT NOT NULL,
        location       TEXT NOT NULL,
        state          TEXT NOT NULL CHECK (state IN ('starting', 'ready', 'allocated', 'stopping', 'stopped', 'failed')),
        runtime        TEXT NOT NULL,
        runtime_handle TEXT,
        address        TEXT,
        on_demand      INTEGER NOT NULL DEFAULT 0,
        created_at     INTEGER NOT NULL,
        ready_at       INTEGER,
        allocated_at   INTEGER,
        expires_at     INTEGER,
        stopped_at     INTEGER,
        stop_reason    TEXT,
        exit_code      INTEGER
    ) STRICT;
    CREATE INDEX containers_live ON containers (state) WHERE state <> 'stopped';
    CREATE INDEX containers_stopped_at ON containers (stopped_at) WHERE stopped_at IS NOT NULL;
    CREATE TABLE events (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        at           INTEGER NOT NULL,
        container_id TEXT NOT NULL REFERENCES containers (id),
        from_state   TEXT,
        to_state     TEXT NOT NULL,
        reason       TEXT
    ) STRICT;
    CREATE INDEX events_container ON events (container_id, seq);",
    // 2: the idle timeout a claim asked for.
    "ALTER TABLE containers ADD COLUMN idle_timeout_ms INTEGER;",
    // 3: pools as data: their settings, their template revisions, the revision
    // each container was started from, and the pools' own events (rollouts).
    // Containers from before are of revision 1, each pool's first: an upgrade
    // adopts them as current rather than rolling every pool out.
    "ALTER TABLE containers ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE pools (
        name               TEXT PRIMARY KEY NOT NULL,
        spec               TEXT NOT NULL,
        revision           INTEGER NOT NULL,
        stable_revision    INTEGER NOT NULL,
        rollout_started_at INTEGER,
        rollout_error      TEXT,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE pool_revisions (
        pool       TEXT NOT NULL,
        revision   INTEGER NOT NULL,
        template   TEXT NOT NULL,
        hash       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (pool, revision)
    ) STRICT;
    CREATE TABLE pool_events (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        at       INTEGER NOT NULL,
        pool     TEXT NOT NULL,
        revision INTEGER,
        kind     TEXT NOT NULL,
        detail   TEXT
    ) STRICT;
    CREATE INDEX pool_events_pool ON pool_events (pool, seq);",
    // 4: the sizes autoscaled pools decided at each of their locations, so that
    // a restart keeps them (and the pools of auto locations) until their
    // scale-down delay passes.
    "CREATE TABLE pool_sizes (
        pool         TEXT NOT NULL,
        location     TEXT NOT NULL,
        size         INTEGER NOT NULL,
        reason       TEXT NOT NULL,
        since        INTEGER NOT NULL,
        active_until INTEGER,
        updated_at   INTEGER NOT NULL,
        PRIMARY KEY (pool, location)
    ) STRICT;",
    // 5: a claim's labels (a JSON object of strings, filtered with SQLite's JSON
    // functions) and metadata (the client's JSON, as sent). NULL: none given.
    "ALTER TABLE containers ADD COLUMN labels TEXT;
    ALTER TABLE containers ADD COLUMN metadata TEXT;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| StoreError::Corrupt(format!("cannot read schema version: {e}")))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < 0 {
        return Err(StoreError::Corrupt(format!(
            "negative schema version {found}"
        )));
    }
    if found == 0 {
        // A database at version 0 must be empty: refuse to adopt someone else's file.
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            [],
            |r| r.get(0),
        )?;
        if tables > 0 {
            return Err(StoreError::Corrupt(
                "the file holds tables but no warmpool schema version".into(),
            ));
        }
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied store migration");
    }
    Ok(())
}

/// Columns of each table, as `(table, [column ...])`, sorted by table name.
pub fn schema_of(conn: &Connection) -> Result<Vec<(String, Vec<String>)>, rusqlite::Error> {
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    tables.sort();
    tables
        .into_iter()
        .map(|t| {
            let cols = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{t}') ORDER BY cid"
                ))?
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok((t, cols))
        })
        .collect()
}

/// The schema the queries of this crate are written against.
pub fn expected_schema() -> Vec<(String, Vec<String>)> {
    let t = |name: &str, cols: &[&str]| {
        (
            name.to_owned(),
            cols.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        )
    };
    vec![
        t("containers", crate::rows::CONTAINER_COLUMNS),
        t("events", crate::rows::EVENT_COLUMNS),
        t("meta", &["key", "value"]),
        t("pool_events", crate::pools::POOL_EVENT_COLUMNS),
        t("pool_revisions", crate::pools::REVISION_COLUMNS),
        t("pool_sizes", crate::pools::SIZE_COLUMNS),
        t("pools", crate::pools::POOL_COLUMNS),
    ]
}
