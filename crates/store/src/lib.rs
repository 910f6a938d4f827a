//! warmpool's SQLite store: the only crate that knows SQL.
//!
//! One thread owns the write connection and takes [`Op`]s over a channel; it groups
//! whatever is queued into one transaction (group commit), so many concurrent claims
//! cost one commit. Reads use a separate read-only connection. The database runs in
//! WAL mode with `synchronous=NORMAL`, which survives a `kill -9` of the process.

mod console;
mod error;
mod migrations;
mod pools;
mod rows;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use warmpool_core::{ContainerId, ContainerState, Timestamp};

pub use console::{Cell, ColumnInfo, ConsoleError, ConsoleLimits, QueryResult, TableInfo};
pub use error::StoreError;
pub use migrations::{expected_schema, schema_of, SCHEMA_VERSION};
pub use pools::{PoolEventRow, PoolRecord, PoolSizeRow, PoolWrite, RevisionRecord};
pub use rows::{ContainerFilter, ContainerRow, EventRow};
pub use writer::{Change, CommitHook, Extend, NewContainer, Op};

/// Name of the database file inside the data dir.
pub const DB_FILE: &str = "warmpool.db";

/// A handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: writer::WriterHandle,
    reader: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
    instance_id: Arc<str>,
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) `data_dir/warmpool.db`, applies the embedded
    /// migrations, and starts the writer thread.
    ///
    /// A database written by a newer warmpool, or a file that is not a warmpool
    /// database, is an error: the store is never silently reset.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with_hook(data_dir, None)
    }

    /// Like [`Store::open`], and calls `hook` on the writer thread with every op
    /// right after it is committed and before its caller is answered. Whatever
    /// mirrors the store in memory through the hook sees the changes in commit
    /// order, and is up to date by the time any writer learns its own result.
    pub fn open_with_hook(data_dir: &Path, hook: Option<CommitHook>) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "could not switch {} to WAL mode (got {mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        migrations::migrate(&mut conn)?;
        let instance_id = instance_id(&conn)?;
        // Checkpoints (the only fsyncs in WAL mode with synchronous=NORMAL) run on a
        // thread of their own, so that no commit of the writer waits for one.
        writer::tune(&conn, writer::WAL_SIZE_LIMIT).map_err(open_err)?;
        let checkpointer = Connection::open(&path).map_err(open_err)?;
        configure(&checkpointer).map_err(open_err)?;

        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        configure(&reader).map_err(open_err)?;

        let writer = writer::spawn(conn, hook)?;
        writer::spawn_checkpointer(checkpointer, &writer, writer::CATCH_UP_FRAMES)?;
        Ok(Store {
            writer,
            reader: Arc::new(Mutex::new(reader)),
            path: Arc::new(path),
            instance_id: instance_id.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes that failed for the store's own reason (I/O, disk full, SQLite)
    /// since it was opened; refused changes ([`StoreError::is_refusal`]) do not count.
    pub fn write_errors(&self) -> u64 {
        self.writer
            .errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// WAL frames (4 KiB pages) not yet copied into the database file, as the
    /// last checkpoint left them (checkpoints run every 500 ms). A backlog that
    /// stays high means the store's disk cannot keep up with its writes.
    pub fn wal_backlog_frames(&self) -> i64 {
        self.writer
            .backlog
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This warmpool's instance id: made once per data dir and kept, so that a
    /// restarted warmpool recognises the runtime objects it labelled.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Applies one change durably (committed before this returns).
    pub async fn apply(&self, op: Op) -> Result<(), StoreError> {
        self.writer.submit(op).await
    }

    pub async fn insert(&self, c: NewContainer) -> Result<(), StoreError> {
        self.apply(Op::Insert(c)).await
    }

    pub async fn change(&self, c: Change) -> Result<(), StoreError> {
        self.apply(Op::Transition(c)).await
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Every container that is not `stopped`, for start-up recovery.
    pub fn load_live_blocking(&self) -> Result<Vec<ContainerRow>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        rows::query_containers(
            &conn,
            &ContainerFilter {
                live_only: true,
                ..Default::default()
            },
        )
        .map_err(StoreError::from)
    }

    /// Containers that ended since `since` (to answer 410 for their ids).
    pub fn load_ended_since_blocking(
        &self,
        since: Timestamp,
    ) -> Result<Vec<ContainerRow>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        rows::query_ended_since(&conn, since).map_err(StoreError::from)
    }

    pub async fn containers(
        &self,
        filter: ContainerFilter,
    ) -> Result<Vec<ContainerRow>, StoreError> {
        self.read(move |c| rows::query_containers(c, &filter)).await
    }

    pub async fn container(&self, id: ContainerId) -> Result<Option<ContainerRow>, StoreError> {
        self.read(move |c| rows::query_container(c, id)).await
    }

    /// Events with a sequence number above `after`, oldest first.
    pub async fn events(
        &self,
        after: i64,
        limit: u32,
        container: Option<ContainerId>,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.read(move |c| rows::query_events(c, after, limit, container))
            .await
    }

    /// Every pool record and every revision of every pool (at start-up).
    pub fn load_pools_blocking(
        &self,
    ) -> Result<(Vec<PoolRecord>, Vec<RevisionRecord>), StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        Ok((pools::query_pools(&conn)?, pools::query_revisions(&conn)?))
    }

    /// The sizes autoscaled pools decided at each location (at start-up).
    pub fn load_sizes_blocking(&self) -> Result<Vec<PoolSizeRow>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        Ok(pools::query_sizes(&conn)?)
    }

    /// A value of the `meta` table.
    pub async fn meta(&self, key: String) -> Result<Option<String>, StoreError> {
        self.read(move |c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
        })
        .await
    }

    /// The last `limit` events of a pool, oldest first.
    pub async fn pool_events(
        &self,
        pool: String,
        limit: u32,
    ) -> Result<Vec<PoolEventRow>, StoreError> {
        self.read(move |c| pools::query_pool_events(c, &pool, limit))
            .await
    }

    /// Number of containers in each state (for diagnostics and tests).
    pub async fn count_by_state(&self) -> Result<Vec<(ContainerState, u64)>, StoreError> {
        self.read(rows::count_by_state).await
    }
}

fn instance_id(conn: &Connection) -> Result<String, StoreError> {
    let existing: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'instance_id'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('instance_id', ?1)",
        params![id],
    )?;
    Ok(id)
}
