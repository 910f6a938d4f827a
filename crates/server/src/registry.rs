//! The in-memory mirror of the live containers: ready queues per pool key, the
//! proxy's route table, and per-pool counters.
//!
//! Every state change is written to the store first and applied here after, with the
//! same compare-and-set (`from` must match), so memory never runs ahead of what a
//! restart would recover. The one exception is a claim, which first takes a ready
//! container out of its queue here (so that no two claims can pick it) and puts it
//! back if the store refuses.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use http::uri::Authority;
use warmpool_core::{
    plan, Action, ContainerId, ContainerState, Desired, Observed, ObservedContainer, PoolKey,
    StopReason, Timestamp,
};
use warmpool_store::Op;

/// Traffic of an allocated container, kept by the proxy without locks: when it was
/// last used, and how many requests or WebSockets are open on it right now.
#[derive(Debug)]
pub struct Activity {
    last: std::sync::atomic::AtomicI64,
    open: std::sync::atomic::AtomicU32,
}

impl Activity {
    pub fn new(now: Timestamp) -> Arc<Self> {
        Arc::new(Self {
            last: now.0.into(),
            open: 0.into(),
        })
    }

    /// Marks one request (or WebSocket) open until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> ActivityGuard {
        use std::sync::atomic::Ordering::Relaxed;
        self.open.fetch_add(1, Relaxed);
        self.last.store(crate::app::now().0, Relaxed);
        ActivityGuard(self.clone())
    }

    /// When the container becomes idle, or `None` while something is open.
    pub fn idle_at(&self, timeout: std::time::Duration) -> Option<Timestamp> {
        use std::sync::atomic::Ordering::Relaxed;
        (self.open.load(Relaxed) == 0).then(|| Timestamp(self.last.load(Relaxed)) + timeout)
    }
}

/// An open request or WebSocket (see [`Activity::begin`]).
pub struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.0.last.store(crate::app::now().0, Relaxed);
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// What the proxy knows of a container id.
#[derive(Clone, Debug)]
pub enum Route {
    /// Allocated: proxy to `upstream` until `expires_at`.
    Live {
        upstream: Authority,
        expires_at: Timestamp,
        activity: Arc<Activity>,
    },
    /// Ended: answer 410 with `reason`.
    Gone { reason: Arc<str>, at: Timestamp },
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: PoolKey,
    pub state: ContainerState,
    pub on_demand: bool,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub handle: Option<String>,
    pub address: Option<String>,
    /// A claim, stop or removal of this container is in flight.
    pub busy: bool,
    /// Stop after this long without traffic (allocated containers).
    pub idle_timeout: Option<std::time::Duration>,
    /// Traffic through the proxy (allocated containers).
    pub activity: Option<Arc<Activity>>,
}

#[derive(Clone, Debug, Default)]
pub struct PoolStats {
    pub hits: u64,
    pub misses: u64,
    pub failed_starts: u64,
    /// Containers that went to `failed` (from any state).
    pub failures: u64,
    pub last_error: Option<(Timestamp, String)>,
}

/// Work the reconciler hands to tasks, decided under one lock with the plan.
#[derive(Debug)]
pub enum Dispatch {
    Launch {
        id: ContainerId,
        key: PoolKey,
    },
    Stop {
        id: ContainerId,
        from: ContainerState,
        reason: StopReason,
    },
    Remove {
        id: ContainerId,
    },
}

#[derive(Default)]
struct Inner {
    containers: HashMap<ContainerId, Entry>,
    ready: HashMap<PoolKey, VecDeque<ContainerId>>,
    /// Per key, about how many ids in `ready` belong to containers that left
    /// `ready` other than by a claim (stopped, failed): `pop_ready` skips them,
    /// and a queue is compacted once they could be half of it, so that a state
    /// change never scans a whole queue (amortised O(1) instead of O(pool)).
    stale: HashMap<PoolKey, usize>,
    pools: BTreeMap<PoolKey, PoolStats>,
    last_batch: BTreeMap<PoolKey, Timestamp>,
}

impl Inner {
    fn live(&self) -> u32 {
        self.containers.len() as u32
    }
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    routes: RwLock<HashMap<ContainerId, Route>>,
    /// Woken whenever an event row is committed (long-polling readers).
    pub events_written: tokio::sync::Notify,
}

/// Counts of one pool key, for `GET /v1/pools`.
#[derive(Clone, Debug, Default)]
pub struct PoolCounts {
    pub ready: u32,
    pub starting: u32,
    pub allocated: u32,
    pub stopping: u32,
    pub failed: u32,
    pub stats: PoolStats,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The proxy's lookup: a read lock on the route table, nothing else.
    pub fn route(&self, id: &ContainerId) -> Option<Route> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub fn get(&self, id: &ContainerId) -> Option<Entry> {
        self.lock().containers.get(id).cloned()
    }

    /// Adds a container found in the store at start-up (adopted).
    pub fn adopt(&self, id: ContainerId, entry: Entry) {
        let mut inner = self.lock();
        if entry.state == ContainerState::Ready && !entry.on_demand {
            inner
                .ready
                .entry(entry.key.clone())
                .or_default()
                .push_back(id);
        }
        if let Some(route) = live_route(&entry) {
            self.routes.write().unwrap().insert(id, route);
        }
        inner.containers.insert(id, entry);
    }

    /// Remembers an ended container so its id answers 410.
    pub fn tombstone(&self, id: ContainerId, reason: &str, at: Timestamp) {
        self.routes.write().unwrap().insert(
            id,
            Route::Gone {
                reason: reason.into(),
                at,
            },
        );
    }

    /// Forgets tombstones older than `before`.
    pub fn prune_tombstones(&self, before: Timestamp) {
        self.routes
            .write()
            .unwrap()
            .retain(|_, r| !matches!(r, Route::Gone { at, .. } if *at < before));
    }

    /// Registers an on-demand start for a waiting claim, unless at the global cap.
    pub fn try_launch_on_demand(
        &self,
        key: &PoolKey,
        now: Timestamp,
        max_instances: u32,
    ) -> Option<ContainerId> {
        let mut inner = self.lock();
        if inner.live() >= max_instances {
            return None;
        }
        let id = ContainerId::random();
        inner
            .containers
            .insert(id, starting(key.clone(), true, now));
        Some(id)
    }

    /// Takes the oldest ready container of `key` for a claim, marking it busy.
    pub fn pop_ready(&self, key: &PoolKey) -> Option<ContainerId> {
        let mut inner = self.lock();
        let Inner {
            containers,
            ready,
            stale,
            ..
        } = &mut *inner;
        let queue = ready.get_mut(key)?;
        while let Some(id) = queue.pop_front() {
            if let Some(e) = containers.get_mut(&id) {
                if e.state == ContainerState::Ready && !e.busy {
                    e.busy = true;
                    return Some(id);
                }
            }
            if let Some(n) = stale.get_mut(key) {
                *n = n.saturating_sub(1);
            }
        }
        None
    }

    /// Puts back a container a claim took but could not record.
    pub fn return_ready(&self, id: ContainerId) {
        let mut inner = self.lock();
        let Some(e) = inner.containers.get_mut(&id) else {
            return;
        };
        e.busy = false;
        if e.state == ContainerState::Ready {
            let key = e.key.clone();
            inner.ready.entry(key).or_default().push_front(id);
        }
    }

    /// An on-demand container whose claim gave up waiting joins the pool.
    pub fn join_pool(&self, id: ContainerId) {
        let mut inner = self.lock();
        let Some(e) = inner.containers.get_mut(&id) else {
            return;
        };
        e.on_demand = false;
        if e.state == ContainerState::Ready && !e.busy {
            let key = e.key.clone();
            inner.ready.entry(key).or_default().push_back(id);
        }
    }

    /// Marks `id` busy for an operation, unless another is in flight.
    pub fn try_begin(&self, id: ContainerId) -> Option<Entry> {
        let mut inner = self.lock();
        let e = inner.containers.get_mut(&id)?;
        if e.busy {
            return None;
        }
        e.busy = true;
        Some(e.clone())
    }

    pub fn set_busy(&self, id: ContainerId, busy: bool) {
        if let Some(e) = self.lock().containers.get_mut(&id) {
            e.busy = busy;
        }
    }

    /// Forgets a container whose record could not be written.
    pub fn discard(&self, id: ContainerId) {
        self.lock().containers.remove(&id);
    }

    /// Mirrors an op the store has just committed (called on the store's writer
    /// thread, so in commit order).
    pub fn committed(&self, op: &Op) {
        if matches!(op, Op::Insert(_) | Op::Transition(_)) {
            self.events_written.notify_waiters();
        }
        match op {
            Op::Transition(c) => {
                self.apply(c, c.reason.as_deref());
            }
            Op::SetRuntime {
                id,
                handle,
                address,
            } => {
                if let Some(e) = self.lock().containers.get_mut(id) {
                    e.handle = Some(handle.clone());
                    e.address = address.clone();
                }
            }
            // Registered in memory before it was written (so that planning sees it).
            Op::Insert(_) => {}
        }
    }

    /// Applies a committed state change; changes nothing if the container is not
    /// in `from` here (recovery closes rows it never loaded).
    fn apply(&self, c: &warmpool_store::Change, reason: Option<&str>) {
        let (id, from, to, expires_at, idle_timeout, now) =
            (c.id, c.from, c.to, c.expires_at, c.idle_timeout, c.at);
        let mut inner = self.lock();
        let Some(e) = inner.containers.get_mut(&id) else {
            return;
        };
        if e.state != from {
            return;
        }
        e.state = to;
        if expires_at.is_some() {
            e.expires_at = expires_at;
        }
        if to == ContainerState::Allocated {
            e.idle_timeout = idle_timeout;
            e.activity = Some(Activity::new(now));
        }
        let key = e.key.clone();
        let joins_pool = to == ContainerState::Ready && !e.on_demand;
        let live_route = live_route(e);
        if from == ContainerState::Ready && to != ContainerState::Allocated {
            // Its id stays queued (`pop_ready` skips it) until enough are stale
            // to compact the queue in one pass.
            let Inner {
                containers,
                ready,
                stale,
                ..
            } = &mut *inner;
            let n = stale.entry(key.clone()).or_default();
            *n += 1;
            if let Some(q) = ready.get_mut(&key) {
                if *n * 2 >= q.len() {
                    q.retain(|x| {
                        containers
                            .get(x)
                            .is_some_and(|e| e.state == ContainerState::Ready)
                    });
                    *n = 0;
                }
            }
        }
        if to == ContainerState::Failed {
            inner.pools.entry(key.clone()).or_default().failures += 1;
        }
        if joins_pool {
            inner.ready.entry(key).or_default().push_back(id);
        }
        if to == ContainerState::Stopped {
            inner.containers.remove(&id);
        }
        drop(inner);

        if let Some(route) = live_route {
            self.routes.write().unwrap().insert(id, route);
        } else if from == ContainerState::Allocated
            || (to == ContainerState::Stopped && self.route(&id).is_some())
        {
            // Once handed out, an id keeps answering: 410 with why it ended.
            let reason = reason.unwrap_or(match to {
                ContainerState::Failed => "failed",
                _ => "stopped",
            });
            let mut routes = self.routes.write().unwrap();
            if let Some(Route::Live { .. }) | None = routes.get(&id) {
                routes.insert(
                    id,
                    Route::Gone {
                        reason: reason.into(),
                        at: now,
                    },
                );
            }
        }
    }

    pub fn hit(&self, key: &PoolKey) {
        self.lock().pools.entry(key.clone()).or_default().hits += 1;
    }

    pub fn miss(&self, key: &PoolKey) {
        self.lock().pools.entry(key.clone()).or_default().misses += 1;
    }

    pub fn record_error(&self, key: &PoolKey, error: String, now: Timestamp, failed_start: bool) {
        let mut inner = self.lock();
        let stats = inner.pools.entry(key.clone()).or_default();
        if failed_start {
            stats.failed_starts += 1;
        }
        stats.last_error = Some((now, error));
    }

    /// Plans against a snapshot of the current state, then registers the planned
    /// work, re-checking it against the state of that moment: the lock is held to
    /// copy and to dispatch, not while planning, so claims are not held up by a
    /// pass over a large pool.
    ///
    /// What may have changed in between is checked again: a stop or removal is
    /// dispatched only if its container is still in the planned state and not busy,
    /// and creations are trimmed to the global cap as it stands (on-demand starts may
    /// have taken room). Only the reconciler creates pool containers, so the
    /// per-pool targets cannot be overtaken meanwhile.
    pub fn plan_and_dispatch(
        &self,
        desired: &Desired,
        now: Timestamp,
    ) -> (Vec<Dispatch>, Option<Timestamp>) {
        let observed = {
            let inner = self.lock();
            Observed {
                containers: inner
                    .containers
                    .iter()
                    .map(|(id, e)| ObservedContainer {
                        id: *id,
                        key: e.key.clone(),
                        state: e.state,
                        on_demand: e.on_demand,
                        created_at: e.created_at,
                        expires_at: e.expires_at,
                        idle_at: e
                            .idle_timeout
                            .zip(e.activity.as_ref())
                            .and_then(|(t, a)| a.idle_at(t)),
                    })
                    .collect(),
                last_batch: inner.last_batch.clone(),
            }
        };
        let p = plan(desired, &observed, now);
        if p.actions.is_empty() {
            return (Vec::new(), p.wake_at);
        }
        // The planned state of what is to be stopped (usually nothing): a map of
        // those alone, not of every container, which would cost a pass O(n)
        // hashing for every claim's activation.
        let stopping: HashSet<ContainerId> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Stop { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        let planned_state: HashMap<ContainerId, ContainerState> = if stopping.is_empty() {
            HashMap::new()
        } else {
            observed
                .containers
                .iter()
                .filter(|c| stopping.contains(&c.id))
                .map(|c| (c.id, c.state))
                .collect()
        };

        let mut inner = self.lock();
        let mut room = desired.max_instances.saturating_sub(inner.live());
        let mut out = Vec::with_capacity(p.actions.len());
        for action in p.actions {
            match action {
                Action::Create { key, count } => {
                    let count = count.min(room);
                    if count == 0 {
                        continue;
                    }
                    room -= count;
                    inner.last_batch.insert(key.clone(), now);
                    for _ in 0..count {
                        let id = ContainerId::random();
                        inner
                            .containers
                            .insert(id, starting(key.clone(), false, now));
                        out.push(Dispatch::Launch {
                            id,
                            key: key.clone(),
                        });
                    }
                }
                Action::Stop { id, reason } => {
                    let planned = planned_state.get(&id).copied();
                    if let Some(e) = inner
                        .containers
                        .get_mut(&id)
                        .filter(|e| !e.busy && Some(e.state) == planned)
                    {
                        e.busy = true;
                        out.push(Dispatch::Stop {
                            id,
                            from: e.state,
                            reason,
                        });
                    }
                }
                Action::Remove { id } => {
                    if let Some(e) = inner
                        .containers
                        .get_mut(&id)
                        .filter(|e| !e.busy && e.state == ContainerState::Failed)
                    {
                        e.busy = true;
                        out.push(Dispatch::Remove { id });
                    }
                }
            }
        }
        (out, p.wake_at)
    }

    /// Counts per pool key, for every key that is desired or has containers.
    pub fn pool_counts(&self, keys: &[PoolKey]) -> (BTreeMap<PoolKey, PoolCounts>, u32) {
        let inner = self.lock();
        let mut out: BTreeMap<PoolKey, PoolCounts> = keys
            .iter()
            .map(|k| (k.clone(), PoolCounts::default()))
            .collect();
        for e in inner.containers.values() {
            let c = out.entry(e.key.clone()).or_default();
            match e.state {
                ContainerState::Ready => c.ready += 1,
                ContainerState::Starting => c.starting += 1,
                ContainerState::Allocated => c.allocated += 1,
                ContainerState::Stopping => c.stopping += 1,
                ContainerState::Failed => c.failed += 1,
                ContainerState::Stopped => {}
            }
        }
        for (k, s) in &inner.pools {
            out.entry(k.clone()).or_default().stats = s.clone();
        }
        (out, inner.live())
    }

    /// Every live container (for shutdown and resync).
    pub fn live(&self) -> Vec<(ContainerId, Entry)> {
        self.lock()
            .containers
            .iter()
            .map(|(id, e)| (*id, e.clone()))
            .collect()
    }
}

/// The proxy route of an allocated container with a known address.
fn live_route(e: &Entry) -> Option<Route> {
    match (e.state, e.address.as_deref()?.parse().ok()?, e.expires_at?) {
        (ContainerState::Allocated, upstream, expires_at) => Some(Route::Live {
            upstream,
            expires_at,
            activity: e.activity.clone()?,
        }),
        _ => None,
    }
}

fn starting(key: PoolKey, on_demand: bool, now: Timestamp) -> Entry {
    Entry {
        key,
        state: ContainerState::Starting,
        on_demand,
        created_at: now,
        expires_at: None,
        handle: None,
        address: None,
        busy: false,
        idle_timeout: None,
        activity: None,
    }
}
