//! The single writer: one thread owns the write connection and commits groups of
//! queued changes in one transaction each.

use std::collections::BTreeMap;
use std::sync::mpsc;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;
use warmpool_core::{transition, ContainerId, ContainerState, PoolKey, Timestamp, TRACE_TARGET};

use crate::StoreError;

/// A new container record, written before the runtime is asked to create it.
#[derive(Clone, Debug)]
pub struct NewContainer {
    pub id: ContainerId,
    pub key: PoolKey,
    pub runtime: String,
    pub on_demand: bool,
    /// The revision of its pool it is started from.
    pub revision: u32,
    pub created_at: Timestamp,
}

/// A state change of one container, applied only if it is still in `from`.
#[derive(Clone, Debug)]
pub struct Change {
    pub id: ContainerId,
    pub from: ContainerState,
    pub to: ContainerState,
    pub at: Timestamp,
    /// Why (kept as `stop_reason` for stopping, stopped and failed; the first
    /// reason given wins).
    pub reason: Option<String>,
    /// Set on claim.
    pub expires_at: Option<Timestamp>,
    /// Set on claim: stop after this long without traffic.
    pub idle_timeout: Option<std::time::Duration>,
    pub exit_code: Option<i32>,
    /// Set on claim (`ready -> allocated`): the claim's labels, valid as
    /// `warmpool_core::labels::validate_labels` checks. Empty: the column is left
    /// as it is.
    pub labels: BTreeMap<String, String>,
    /// Set on claim: the claim's metadata, JSON text (the caller checked it is
    /// JSON). `None`: the column is left as it is.
    pub metadata: Option<String>,
}

impl Change {
    pub fn new(id: ContainerId, from: ContainerState, to: ContainerState, at: Timestamp) -> Self {
        Self {
            id,
            from,
            to,
            at,
            reason: None,
            expires_at: None,
            idle_timeout: None,
            exit_code: None,
            labels: BTreeMap::new(),
            metadata: None,
        }
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Writes these labels with the change (see [`Change::labels`]).
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// Writes this metadata (JSON text) with the change.
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }
}

/// A claimed container's new expiry, applied only if it is still `allocated` and
/// its expiry is still `from` (so two extensions never both add to the same one).
/// It writes an event (`allocated` to `allocated`, with `reason`).
#[derive(Clone, Debug)]
pub struct Extend {
    pub id: ContainerId,
    /// Its expiry as the caller read it.
    pub from: Timestamp,
    pub to: Timestamp,
    pub at: Timestamp,
    pub reason: String,
}

/// One write.
#[derive(Clone, Debug)]
pub enum Op {
    Insert(NewContainer),
    /// Records what the runtime answered for a starting container.
    SetRuntime {
        id: ContainerId,
        handle: String,
        address: Option<String>,
    },
    Transition(Change),
    /// Moves an allocated container's expiry.
    Extend(Extend),
    /// Pool records, revisions, pool events and metadata, written together.
    Pools(Vec<crate::pools::PoolWrite>),
}

/// Called with each op once it is committed (see [`crate::Store::open_with_hook`]).
pub type CommitHook = std::sync::Arc<dyn Fn(&Op) + Send + Sync>;

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<(), StoreError>>,
    /// The span the write was asked for in, when traces are on (else disabled):
    /// its commit's span joins that trace.
    caller: tracing::Span,
}

#[derive(Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Job>,
    /// Writes that failed for the store's own reason (see [`StoreError::is_refusal`]).
    pub(crate) errors: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Dropped with the last handle: tells the checkpointer to finish.
    alive: std::sync::Arc<()>,
    /// Set by the checkpointer when the WAL keeps growing: the writer then
    /// checkpoints once itself, between two commits (see [`spawn_checkpointer`]).
    catch_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// WAL frames not yet copied into the database file, as the last
    /// checkpoint (the checkpointer's or the writer's) left them.
    pub(crate) backlog: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl WriterHandle {
    pub(crate) async fn submit(&self, op: Op) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        let caller = if tracing::enabled!(target: TRACE_TARGET, tracing::Level::TRACE) {
            tracing::Span::current()
        } else {
            tracing::Span::none()
        };
        self.tx
            .send(Job { op, reply, caller })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Most changes grouped into one commit.
const MAX_GROUP: usize = 512;

pub(crate) fn spawn(
    conn: Connection,
    hook: Option<CommitHook>,
) -> Result<WriterHandle, StoreError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let catch_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let backlog = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let (counted, asked, left) = (errors.clone(), catch_up.clone(), backlog.clone());
    std::thread::Builder::new()
        .name("warmpool-store-writer".into())
        .spawn(move || run(conn, rx, hook, &counted, &asked, &left))
        .map_err(|e| StoreError::Corrupt(format!("cannot start the store writer thread: {e}")))?;
    Ok(WriterHandle {
        tx,
        errors,
        alive: std::sync::Arc::new(()),
        catch_up,
        backlog,
    })
}

/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// WAL frames (pages of 4 KiB) past which the writer is asked to catch up: 64 MiB.
pub(crate) const CATCH_UP_FRAMES: i64 = 16_384;

/// The size the WAL file is cut back to when it starts over (`journal_size_limit`).
pub(crate) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Settings of the write connection: no automatic checkpoints (the checkpointer
/// thread runs them, so that no commit waits for one), and a WAL file cut back
/// to `wal_size_limit` bytes whenever it starts over.
pub(crate) fn tune(conn: &Connection, wal_size_limit: i64) -> Result<(), rusqlite::Error> {
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", wal_size_limit)?;
    Ok(())
}

/// Checkpoints the WAL (passively: it never blocks the writer) until the writer is
/// gone, and once more at the end.
///
/// The WAL starts over from its beginning only at a write after a checkpoint
/// that copied all of it. Under continuous writes (a pool of 100,000 filling)
/// a passive checkpoint on this thread never gets there: new frames arrive
/// while it copies, so the WAL would grow without bound (1.5 GB for that
/// fill). Once it holds more than `catch_up_frames` frames, the writer is asked
/// to checkpoint once itself between two commits (see [`checkpoint`]).
pub(crate) fn spawn_checkpointer(
    conn: Connection,
    writer: &WriterHandle,
    catch_up_frames: i64,
) -> Result<(), StoreError> {
    let alive = std::sync::Arc::downgrade(&writer.alive);
    let (catch_up, backlog) = (writer.catch_up.clone(), writer.backlog.clone());
    std::thread::Builder::new()
        .name("warmpool-store-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            let last = alive.upgrade().is_none();
            if let Some(frames) = checkpoint(&conn, &catch_up, catch_up_frames) {
                backlog.store(frames, std::sync::atomic::Ordering::Relaxed);
            }
            if last {
                return;
            }
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

/// One checkpoint of the checkpointer thread (passive). When the WAL still
/// holds more than `catch_up_frames` frames after it, sets `catch_up`: the
/// writer then checkpoints once itself between two commits, which copies what
/// this thread has not copied yet with no write in between, so that its next
/// commit starts the WAL over. Returns the frames it left uncopied (`None`
/// when it failed).
fn checkpoint(
    conn: &Connection,
    catch_up: &std::sync::atomic::AtomicBool,
    catch_up_frames: i64,
) -> Option<i64> {
    match passive_checkpoint(conn) {
        Ok((frames, copied)) => {
            if frames > catch_up_frames {
                catch_up.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Some(frames - copied)
        }
        Err(e) => {
            tracing::warn!(error = %e, "wal checkpoint failed");
            None
        }
    }
}

/// A passive checkpoint: the frames in the WAL and how many of them are now
/// in the database file (both 0 when the WAL has started over; -1 each when
/// the database is not in WAL mode, read here as nothing left).
fn passive_checkpoint(conn: &Connection) -> Result<(i64, i64), rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?.max(0), r.get::<_, i64>(2)?.max(0)))
    })
}

fn run(
    mut conn: Connection,
    rx: mpsc::Receiver<Job>,
    hook: Option<CommitHook>,
    errors: &std::sync::atomic::AtomicU64,
    catch_up: &std::sync::atomic::AtomicBool,
    backlog: &std::sync::atomic::AtomicI64,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // Traced as a child of the first write's caller, following the others.
        let span = tracing::trace_span!(target: TRACE_TARGET, parent: &jobs[0].caller, "store.commit", writes = jobs.len());
        for j in &jobs[1..] {
            span.follows_from(&j.caller);
        }
        let entered = span.entered();
        let results = match commit_group(&mut conn, &jobs) {
            Ok(results) => results,
            // The group's commit failed (disk full, read-only, I/O): nothing of it
            // was written. Apply each alone, so that each caller gets its own error.
            Err(error) => {
                tracing::warn!(error = %error, jobs = jobs.len(), "store group commit failed; retrying one by one");
                jobs.iter()
                    .map(|j| {
                        commit_group(&mut conn, std::slice::from_ref(j))
                            .and_then(|mut r| r.remove(0))
                    })
                    .collect()
            }
        };
        drop(entered);
        for (job, result) in jobs.into_iter().zip(results) {
            if let (Some(hook), Ok(())) = (&hook, &result) {
                hook(&job.op);
            }
            if matches!(&result, Err(e) if !e.is_refusal()) {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = job.reply.send(result);
        }
        if catch_up.swap(false, std::sync::atomic::Ordering::Relaxed) {
            match passive_checkpoint(&conn) {
                Ok((frames, copied)) => {
                    backlog.store(frames - copied, std::sync::atomic::Ordering::Relaxed)
                }
                Err(e) => tracing::warn!(error = %e, "wal checkpoint on the writer failed"),
            }
        }
    }
}

/// Applies every job in one transaction, each inside its own savepoint so that one
/// refused change does not undo the others. `Err` means nothing was committed.
fn commit_group(
    conn: &mut Connection,
    jobs: &[Job],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut sp = tx.savepoint()?;
        let r = apply(&sp, &job.op);
        if r.is_ok() {
            sp.commit()?;
        } else {
            sp.rollback()?;
        }
        results.push(r);
    }
    tx.commit()?;
    Ok(results)
}

fn apply(conn: &Connection, op: &Op) -> Result<(), StoreError> {
    match op {
        Op::Insert(c) => {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO containers (id, pool, location, state, runtime, on_demand, created_at, revision)
                     VALUES (?1, ?2, ?3, 'starting', ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![
                    c.id.to_string(),
                    &*c.key.pool,
                    c.key.location.as_str(),
                    c.runtime,
                    c.on_demand,
                    c.created_at.0,
                    c.revision,
                ])?;
            if inserted == 0 {
                return Err(StoreError::Exists { id: c.id });
            }
            let reason = if c.on_demand { "on-demand" } else { "pool" };
            event(
                conn,
                c.created_at,
                c.id,
                None,
                ContainerState::Starting,
                Some(reason),
            )
        }
        Op::SetRuntime {
            id,
            handle,
            address,
        } => {
            let n = conn
                .prepare_cached(
                    "UPDATE containers SET runtime_handle = ?2, address = ?3 WHERE id = ?1",
                )?
                .execute(params![id.to_string(), handle, address])?;
            if n == 0 {
                return Err(StoreError::NotFound(*id));
            }
            Ok(())
        }
        Op::Transition(c) => {
            transition(c.from, c.to)?;
            let labels = (!c.labels.is_empty())
                .then(|| serde_json::to_string(&c.labels).expect("a map of strings is JSON"));
            let n = conn
                .prepare_cached(
                    "UPDATE containers SET state = ?3,
                        ready_at = CASE WHEN ?3 = 'ready' THEN ?4 ELSE ready_at END,
                        allocated_at = CASE WHEN ?3 = 'allocated' THEN ?4 ELSE allocated_at END,
                        stopped_at = CASE WHEN ?3 = 'stopped' THEN ?4 ELSE stopped_at END,
                        expires_at = COALESCE(?5, expires_at),
                        stop_reason = CASE WHEN ?3 IN ('stopping', 'stopped', 'failed')
                                      THEN COALESCE(stop_reason, ?6) ELSE stop_reason END,
                        exit_code = COALESCE(?7, exit_code),
                        idle_timeout_ms = COALESCE(?8, idle_timeout_ms),
                        labels = COALESCE(?9, labels),
                        metadata = COALESCE(?10, metadata)
                     WHERE id = ?1 AND state = ?2",
                )?
                .execute(params![
                    c.id.to_string(),
                    c.from.as_str(),
                    c.to.as_str(),
                    c.at.0,
                    c.expires_at.map(|t| t.0),
                    c.reason,
                    c.exit_code,
                    c.idle_timeout.map(|d| d.as_millis() as i64),
                    labels,
                    c.metadata,
                ])?;
            if n == 0 {
                let found: Option<String> = conn
                    .prepare_cached("SELECT state FROM containers WHERE id = ?1")?
                    .query_row(params![c.id.to_string()], |r| r.get(0))
                    .optional()?;
                return Err(match found {
                    None => StoreError::NotFound(c.id),
                    Some(s) => StoreError::Conflict {
                        id: c.id,
                        expected: c.from,
                        found: s.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
                    },
                });
            }
            event(conn, c.at, c.id, Some(c.from), c.to, c.reason.as_deref())
        }
        Op::Extend(x) => {
            let n = conn
                .prepare_cached(
                    "UPDATE containers SET expires_at = ?3
                     WHERE id = ?1 AND state = 'allocated' AND expires_at = ?2",
                )?
                .execute(params![x.id.to_string(), x.from.0, x.to.0])?;
            if n == 0 {
                let found: Option<String> = conn
                    .prepare_cached("SELECT state FROM containers WHERE id = ?1")?
                    .query_row(params![x.id.to_string()], |r| r.get(0))
                    .optional()?;
                let found: ContainerState = match found {
                    None => return Err(StoreError::NotFound(x.id)),
                    Some(s) => s.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
                };
                return Err(if found == ContainerState::Allocated {
                    StoreError::ExpiryMoved { id: x.id }
                } else {
                    StoreError::Conflict {
                        id: x.id,
                        expected: ContainerState::Allocated,
                        found,
                    }
                });
            }
            event(
                conn,
                x.at,
                x.id,
                Some(ContainerState::Allocated),
                ContainerState::Allocated,
                Some(&x.reason),
            )
        }
        Op::Pools(writes) => writes.iter().try_for_each(|w| crate::pools::write(conn, w)),
    }
}

fn event(
    conn: &Connection,
    at: Timestamp,
    id: ContainerId,
    from: Option<ContainerState>,
    to: ContainerState,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (at, container_id, from_state, to_state, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![at.0, id.to_string(), from.map(|s| s.as_str()), to.as_str(), reason])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;
    use warmpool_core::Location;

    /// A write connection as [`crate::Store`] opens it, on a fresh database.
    fn writer_conn(path: &std::path::Path, wal_size_limit: i64) -> Connection {
        let mut conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        crate::migrations::migrate(&mut conn).unwrap();
        tune(&conn, wal_size_limit).unwrap();
        conn
    }

    fn insert(i: i64) -> Op {
        Op::Insert(NewContainer {
            id: ContainerId::random(),
            key: PoolKey::new("p", Location::Default),
            runtime: "sim".into(),
            on_demand: false,
            revision: 1,
            created_at: Timestamp(i),
        })
    }

    fn wal_size(path: &std::path::Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    #[test]
    fn the_writer_catches_up_when_asked_and_the_wal_starts_over_within_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let limit = 32 * 1024;
        let w = spawn(writer_conn(&path, limit), None).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // No checkpointer: the WAL only grows.
        for i in 0..300 {
            rt.block_on(w.submit(insert(i))).unwrap();
        }
        let grown = wal_size(&path);
        assert!(grown > 4 * limit as u64, "the WAL grew: {grown} bytes");
        rt.block_on(w.submit(insert(300))).unwrap();
        assert!(wal_size(&path) >= grown, "nothing checkpoints unasked");
        // Asked: the writer checkpoints after its next commit, and the commit
        // after that starts the WAL over, cut back to its limit.
        w.catch_up.store(true, Relaxed);
        rt.block_on(w.submit(insert(301))).unwrap();
        rt.block_on(w.submit(insert(302))).unwrap();
        // Cut back to the limit, then the last commit's few frames written
        // from its start (a WAL that grew on would be past `grown`).
        let after = wal_size(&path);
        assert!(
            after <= 2 * limit as u64 && after < grown / 4,
            "the WAL started over: {after} bytes, from {grown}"
        );
        assert!(!w.catch_up.load(Relaxed), "the request was taken");
    }

    #[test]
    fn the_checkpointer_asks_the_writer_to_catch_up_past_its_frame_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let w = spawn(writer_conn(&path, WAL_SIZE_LIMIT), None).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for i in 0..50 {
            rt.block_on(w.submit(insert(i))).unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        // Nothing else reads or writes: the passive checkpoint copies it all.
        assert_eq!(checkpoint(&conn, &w.catch_up, 1_000_000), Some(0));
        assert!(!w.catch_up.load(Relaxed), "not asked below the limit");
        checkpoint(&conn, &w.catch_up, 10);
        assert!(w.catch_up.load(Relaxed), "asked past the limit");
    }

    #[test]
    fn a_checkpoint_says_how_many_frames_it_left_behind_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let w = spawn(writer_conn(&path, WAL_SIZE_LIMIT), None).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(w.submit(insert(0))).unwrap();
        // A reader holds a snapshot from before the next writes: a passive
        // checkpoint may not copy past it.
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM containers", [], |r| r.get(0))
            .unwrap();
        for i in 1..20 {
            rt.block_on(w.submit(insert(i))).unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        let left = checkpoint(&conn, &w.catch_up, 1_000_000).unwrap();
        assert!(left > 0, "frames after the reader's snapshot stay: {left}");
        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(checkpoint(&conn, &w.catch_up, 1_000_000), Some(0));
    }
}
