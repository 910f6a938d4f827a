//! The in-memory mirror of the live containers: ready queues per pool key, the
//! proxy's route table, per-pool counters, and the aggregates a reconcile pass
//! plans from (per key counts by state and revision, deadline indexes of the
//! allocated containers, the failed set), kept up to date on every change so that
//! a pass costs O(pool keys + what is due), not O(containers).
//!
//! Every state change is written to the store first and applied here after, with the
//! same compare-and-set (`from` must match), by the store's commit hook. Two things
//! enter memory before the store: a `starting` entry, registered when a launch is
//! planned (so that the planner and the global cap count it) and discarded if its
//! record cannot be written; and a [`Lease`], which takes a container for one
//! operation (a claim takes it out of its ready queue) and gives it back on drop
//! unless committed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use http::uri::Authority;
use warmpool_core::{
    plan, Action, ContainerId, ContainerState, Deadline, Desired, Observed, Pick, PoolKey,
    StopReason, Supply, Timestamp,
};
use warmpool_store::Op;

mod lease;

pub(crate) use lease::GiveBack;
pub use lease::Lease;

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
        self.last.store(crate::now().0, Relaxed);
        ActivityGuard(self.clone())
    }

    /// Counts as one request that has just ended (a keepalive): the idle timer
    /// starts again from now, exactly as after a proxied request.
    pub fn touch(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.last.store(crate::now().0, Relaxed);
    }

    /// When the container becomes idle, or `None` while something is open.
    pub fn idle_at(&self, timeout: std::time::Duration) -> Option<Timestamp> {
        use std::sync::atomic::Ordering::Relaxed;
        (self.open.load(Relaxed) == 0).then(|| self.last() + timeout)
    }

    /// Its last traffic: `last() + timeout` is never after its idle deadline
    /// (which is that, or later while something is open).
    fn last(&self) -> Timestamp {
        Timestamp(self.last.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// An open request or WebSocket (see [`Activity::begin`]).
pub struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.0.last.store(crate::now().0, Relaxed);
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
    /// The revision of its pool it was started from.
    pub revision: u32,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub handle: Option<String>,
    pub address: Option<String>,
    /// A [`Lease`] holds it: a claim, stop or removal is in flight.
    pub(crate) leased: bool,
    /// Its id is in its key's ready queue (possibly stale, see `Inner::stale`).
    pub(crate) queued: bool,
    /// Stop after this long without traffic (allocated containers).
    pub idle_timeout: Option<std::time::Duration>,
    /// Traffic through the proxy (allocated containers).
    pub activity: Option<Arc<Activity>>,
    /// Its key in `Inner::idle`: when to look at its traffic next.
    pub(crate) idle_check: Option<Timestamp>,
}

impl Entry {
    /// When it becomes idle (its idle timeout after its last traffic), or
    /// `None` without a timeout or while a request or WebSocket is open.
    fn idle_at(&self) -> Option<Timestamp> {
        self.idle_timeout
            .zip(self.activity.as_ref())
            .and_then(|(t, a)| a.idle_at(t))
    }
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

/// Work a reconcile pass hands to tasks, re-checked against the registry as it
/// stands when it is dispatched.
#[derive(Debug)]
pub(crate) enum Dispatch {
    Launch {
        id: ContainerId,
        key: PoolKey,
        revision: u32,
    },
    Stop {
        lease: Lease,
        from: ContainerState,
        reason: StopReason,
    },
    Remove {
        lease: Lease,
    },
}

/// What the per-key tallies count a container as: its state, revision, whether
/// it was started on demand, and whether a lease holds it (a ready container a
/// lease holds is being claimed or stopped: not supply a pass can count on, nor
/// one it may stop again before the store has recorded the change).
type Class = (ContainerState, u32, bool, bool);

/// The [`Class`] of an entry.
fn class(e: &Entry) -> Class {
    (e.state, e.revision, e.on_demand, e.leased)
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
    /// Per key, its live containers by [`Class`] (no zero counts, no empty keys).
    tally: HashMap<PoolKey, BTreeMap<Class, u32>>,
    /// Allocated containers that have an expiry, by it.
    expiry: BTreeSet<(Timestamp, ContainerId)>,
    /// Allocated containers that have an idle timeout, by when to look at their
    /// traffic next: never after their idle deadline, which a pass reads then
    /// from their `Activity` (the proxy moves it without this lock), moving the
    /// check to it while it is still ahead.
    idle: BTreeSet<(Timestamp, ContainerId)>,
    failed: BTreeSet<ContainerId>,
}

impl Inner {
    fn live(&self) -> u32 {
        self.containers.len() as u32
    }

    /// Takes `id` out of the aggregates, before a change to it ([`Inner::remember`]
    /// puts it back after). Every change to a container's state, revision,
    /// on-demand mark, expiry or idle timeout goes between the two.
    fn forget(&mut self, id: &ContainerId) {
        let Inner {
            containers,
            tally,
            expiry,
            idle,
            failed,
            ..
        } = self;
        let Some(e) = containers.get(id) else {
            return;
        };
        if let Some(classes) = tally.get_mut(&e.key) {
            let class = class(e);
            if let Some(n) = classes.get_mut(&class) {
                *n -= 1;
                if *n == 0 {
                    classes.remove(&class);
                }
            }
            if classes.is_empty() {
                tally.remove(&e.key);
            }
        }
        if let Some(t) = e.expires_at {
            expiry.remove(&(t, *id));
        }
        if let Some(t) = e.idle_check {
            idle.remove(&(t, *id));
        }
        failed.remove(id);
    }

    /// Puts `id` (back) into the aggregates, as it is now.
    fn remember(&mut self, id: &ContainerId) {
        let Inner {
            containers,
            tally,
            expiry,
            idle,
            failed,
            ..
        } = self;
        let Some(e) = containers.get_mut(id) else {
            return;
        };
        let class = class(e);
        match tally.get_mut(&e.key) {
            Some(classes) => *classes.entry(class).or_default() += 1,
            None => {
                tally.insert(e.key.clone(), BTreeMap::from([(class, 1)]));
            }
        }
        e.idle_check = None;
        match e.state {
            ContainerState::Allocated => {
                if let Some(t) = e.expires_at {
                    expiry.insert((t, *id));
                }
                if let (Some(timeout), Some(a)) = (e.idle_timeout, &e.activity) {
                    let check = a.last() + timeout;
                    e.idle_check = Some(check);
                    idle.insert((check, *id));
                }
            }
            ContainerState::Failed => {
                failed.insert(*id);
            }
            _ => {}
        }
    }

    /// Adds a new container and counts it.
    fn insert(&mut self, id: ContainerId, entry: Entry) {
        self.containers.insert(id, entry);
        self.remember(&id);
    }

    /// What a pass plans from, at `now`: the tallies, the due deadlines and
    /// the next one, the failed containers. Containers a lease holds are left
    /// out of the deadlines and the failed (their operation is under way).
    fn observe(&mut self, now: Timestamp) -> Observed {
        let mut deadlines = Vec::new();
        // Idle checks that are due: read the real idle deadline; move the
        // check to it while it is ahead (or by a timeout while busy).
        let checks: Vec<(Timestamp, ContainerId)> = self
            .idle
            .iter()
            .take_while(|(t, _)| *t <= now)
            .copied()
            .collect();
        for (check, id) in checks {
            let Some(e) = self.containers.get_mut(&id) else {
                self.idle.remove(&(check, id));
                continue;
            };
            match e.idle_at() {
                Some(at) if at <= now => {
                    if !e.leased {
                        deadlines.push(Deadline {
                            id,
                            at,
                            reason: StopReason::Idle,
                        });
                    }
                }
                later => {
                    let timeout = e.idle_timeout.unwrap_or_default();
                    let next = later
                        .unwrap_or(now + timeout)
                        .max(now + std::time::Duration::from_millis(1));
                    self.idle.remove(&(check, id));
                    self.idle.insert((next, id));
                    e.idle_check = Some(next);
                }
            }
        }
        if let Some((at, id)) = self.idle.iter().find(|(t, _)| *t > now) {
            // Not before then: the next pass looks at its traffic.
            deadlines.push(Deadline {
                id: *id,
                at: *at,
                reason: StopReason::Idle,
            });
        }
        for (at, id) in &self.expiry {
            let leased = self.containers.get(id).is_none_or(|e| e.leased);
            if *at <= now && leased {
                continue;
            }
            deadlines.push(Deadline {
                id: *id,
                at: *at,
                reason: StopReason::Expired,
            });
            if *at > now {
                break;
            }
        }
        let failed = self
            .failed
            .iter()
            .filter(|id| self.containers.get(id).is_some_and(|e| !e.leased))
            .copied()
            .collect();
        let mut supply: BTreeMap<PoolKey, BTreeMap<u32, Supply>> = BTreeMap::new();
        for (key, classes) in &self.tally {
            for (&(state, revision, on_demand, leased), &n) in classes {
                let s = match state {
                    ContainerState::Ready if leased => continue,
                    ContainerState::Ready | ContainerState::Starting if !on_demand => supply
                        .entry(key.clone())
                        .or_default()
                        .entry(revision)
                        .or_default(),
                    _ => continue,
                };
                if state == ContainerState::Ready {
                    s.ready += n;
                } else {
                    s.starting += n;
                }
            }
        }
        Observed {
            supply,
            live: self.live(),
            deadlines,
            failed,
            last_batch: self.last_batch.clone(),
        }
    }

    /// Up to `count` ready pool containers of `key` that `pick` matches and no
    /// lease holds, from the front of its ready queue (ready the longest).
    fn pick_ready(&self, key: &PoolKey, count: u32, pick: Pick) -> Vec<ContainerId> {
        let Some(queue) = self.ready.get(key) else {
            return Vec::new();
        };
        queue
            .iter()
            .filter(|id| {
                self.containers.get(id).is_some_and(|e| {
                    e.state == ContainerState::Ready
                        && !e.leased
                        && !e.on_demand
                        && pick.matches(e.revision)
                })
            })
            .take(count as usize)
            .copied()
            .collect()
    }

    /// Recounts every aggregate from the containers and compares (debug builds
    /// check this at every pass, so every test that runs one checks it).
    #[cfg(debug_assertions)]
    fn check(&self) {
        let mut tally: HashMap<PoolKey, BTreeMap<Class, u32>> = HashMap::new();
        let (mut expiry, mut idle, mut failed) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for (id, e) in &self.containers {
            *tally
                .entry(e.key.clone())
                .or_default()
                .entry(class(e))
                .or_default() += 1;
            match e.state {
                ContainerState::Allocated => {
                    if let Some(t) = e.expires_at {
                        expiry.insert((t, *id));
                    }
                    if e.idle_timeout.is_some() && e.activity.is_some() {
                        idle.insert(*id);
                    }
                }
                ContainerState::Failed => {
                    failed.insert(*id);
                }
                _ => {}
            }
        }
        assert_eq!(tally, self.tally, "per-key tallies");
        assert_eq!(expiry, self.expiry, "expiry index");
        let indexed: BTreeSet<ContainerId> = self.idle.iter().map(|(_, id)| *id).collect();
        assert_eq!(idle, indexed, "idle index");
        assert_eq!(failed, self.failed, "failed set");
    }

    /// Takes the next ready container that no lease holds out of `key`'s queue
    /// (one of revision `prefer` if there is one), for [`Registry::pop_ready`].
    fn take_ready(&mut self, key: &PoolKey, prefer: u32) -> Option<ContainerId> {
        let Inner {
            containers,
            ready,
            stale,
            ..
        } = self;
        let queue = ready.get_mut(key)?;
        // Usually the first one (outside a rollout, every one is `prefer`).
        let preferred = queue.iter().position(|id| {
            containers.get(id).is_some_and(|e| {
                e.state == ContainerState::Ready && !e.leased && e.revision == prefer
            })
        });
        if let Some(at) = preferred.filter(|at| *at > 0) {
            if let Some(id) = queue.remove(at) {
                if let Some(e) = containers.get_mut(&id) {
                    e.queued = false;
                    return Some(id);
                }
            }
        }
        while let Some(id) = queue.pop_front() {
            let e = containers.get_mut(&id);
            let ready = e.as_ref().is_some_and(|e| e.state == ContainerState::Ready);
            if let Some(e) = e {
                e.queued = false;
                if ready && !e.leased {
                    return Some(id);
                }
            }
            // A leased ready container leaves the queue here; its lease puts it
            // back if it is still ready when it ends.
            if !ready {
                if let Some(n) = stale.get_mut(key) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        None
    }

    /// Marks `id` as held by a lease or not, keeping the tallies, and answers
    /// its entry as it is now.
    fn set_leased(&mut self, id: ContainerId, leased: bool) -> Option<Entry> {
        self.forget(&id);
        let e = self.containers.get_mut(&id)?;
        e.leased = leased;
        let entry = e.clone();
        self.remember(&id);
        Some(entry)
    }

    /// Puts a ready container's id in its key's queue, at the front or the back.
    fn enqueue(&mut self, id: ContainerId, front: bool) {
        let Some(e) = self.containers.get_mut(&id) else {
            return;
        };
        e.queued = true;
        let q = self.ready.entry(e.key.clone()).or_default();
        if front {
            q.push_front(id);
        } else {
            q.push_back(id);
        }
    }
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    routes: RwLock<HashMap<ContainerId, Route>>,
    /// Woken whenever an event row is committed (long-polling readers).
    pub events_written: tokio::sync::Notify,
}

/// Counts of one pool's containers by revision, against its current one.
#[derive(Clone, Copy, Debug, Default)]
pub struct RevisionCounts {
    /// Ready containers of the current revision.
    pub updated_ready: u32,
    /// Ready containers of other revisions (replaced by a rollout).
    pub stale_ready: u32,
    /// Starting containers of other revisions.
    pub stale_starting: u32,
    /// Starting pool containers of the current revision.
    pub updated_starting: u32,
    /// Allocated containers of other revisions (never stopped by a rollout).
    pub outdated_allocated: u32,
}

/// Per pool key, what a pass needs of the registry.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyCounts {
    /// Allocated containers.
    pub allocated: u32,
    /// Ready and starting pool containers (not on demand): what counts toward
    /// the size.
    pub supply: u32,
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
    pub(crate) fn adopt(&self, id: ContainerId, entry: Entry) {
        let mut inner = self.lock();
        let queue = entry.state == ContainerState::Ready && !entry.on_demand;
        if let Some(route) = live_route(&entry) {
            self.routes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, route);
        }
        inner.insert(id, entry);
        if queue {
            inner.enqueue(id, false);
        }
    }

    /// Remembers an ended container so its id answers 410.
    pub(crate) fn tombstone(&self, id: ContainerId, reason: &str, at: Timestamp) {
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Route::Gone {
                    reason: reason.into(),
                    at,
                },
            );
    }

    /// Forgets tombstones older than `before`.
    pub(crate) fn prune_tombstones(&self, before: Timestamp) -> usize {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let n = routes.len();
        routes.retain(|_, r| !matches!(r, Route::Gone { at, .. } if *at < before));
        n - routes.len()
    }

    /// Registers an on-demand start for a waiting claim, unless at the global cap.
    pub(crate) fn try_launch_on_demand(
        &self,
        key: &PoolKey,
        revision: u32,
        now: Timestamp,
        max_instances: u32,
    ) -> Option<ContainerId> {
        let mut inner = self.lock();
        if inner.live() >= max_instances {
            return None;
        }
        let id = ContainerId::random();
        inner.insert(id, starting(key.clone(), revision, true, now));
        Some(id)
    }

    /// Takes the oldest ready container of `key` for a claim, of revision
    /// `prefer` if there is one (a rollout hands out new containers first).
    /// Dropped uncommitted, the lease puts it back at the front of its queue
    /// (if it is still ready).
    pub(crate) fn pop_ready(self: &Arc<Self>, key: &PoolKey, prefer: u32) -> Option<Lease> {
        let mut inner = self.lock();
        let id = inner.take_ready(key, prefer)?;
        let entry = inner.set_leased(id, true)?;
        Some(Lease::new(self.clone(), id, entry, GiveBack::Requeue))
    }

    /// Ends a lease (a dropped [`Lease`], or [`Registry::join_pool`] for an
    /// on-demand container nobody holds a lease on): the container is free
    /// again, and goes back to its ready queue as `give_back` says.
    pub(crate) fn end_lease(&self, id: ContainerId, give_back: GiveBack) {
        let mut inner = self.lock();
        inner.forget(&id);
        let Some(e) = inner.containers.get_mut(&id) else {
            return;
        };
        e.leased = false;
        if give_back == GiveBack::JoinPool {
            e.on_demand = false;
        }
        inner.remember(&id);
        let Some(e) = inner.containers.get(&id) else {
            return;
        };
        // Still ready but out of its queue (a claim or `pop_ready` took it out):
        // back in line, first if a claim gave it back.
        if e.state == ContainerState::Ready && !e.on_demand && !e.queued {
            inner.enqueue(id, give_back == GiveBack::Requeue);
        }
    }

    /// Takes `id` for an operation (a stop, a removal, a failure), unless another
    /// holds it.
    pub(crate) fn lease(self: &Arc<Self>, id: ContainerId) -> Option<Lease> {
        self.lease_with(id, GiveBack::Nothing)
    }

    /// Takes `id`, as [`Registry::lease`], with what an uncommitted drop gives back.
    pub(crate) fn lease_with(
        self: &Arc<Self>,
        id: ContainerId,
        give_back: GiveBack,
    ) -> Option<Lease> {
        let mut inner = self.lock();
        if inner.containers.get(&id)?.leased {
            return None;
        }
        let entry = inner.set_leased(id, true)?;
        Some(Lease::new(self.clone(), id, entry, give_back))
    }

    /// An on-demand container whose claim is gone (it gave up waiting) joins the
    /// pool instead of leaking.
    pub(crate) fn join_pool(&self, id: ContainerId) {
        let leased = self.lock().containers.get(&id).is_some_and(|e| e.leased);
        if !leased {
            self.end_lease(id, GiveBack::JoinPool);
        }
    }

    /// Forgets a container whose record could not be written, or whose queued
    /// launch never began (shutdown).
    pub(crate) fn discard(&self, id: ContainerId) {
        let mut inner = self.lock();
        inner.forget(&id);
        inner.containers.remove(&id);
    }

    /// Mirrors an op the store has just committed (called on the store's writer
    /// thread, so in commit order).
    pub(crate) fn committed(&self, op: &Op) {
        if matches!(op, Op::Insert(_) | Op::Transition(_) | Op::Extend(_)) {
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
            Op::Extend(x) => self.extended(x),
            // Registered in memory before it was written (so that planning sees it).
            Op::Insert(_) => {}
            // Pools are the engine's (`pools.rs`), which swaps its own set.
            Op::Pools(_) => {}
        }
    }

    /// Applies a committed extension: the planner and the proxy see the new
    /// expiry.
    fn extended(&self, x: &warmpool_store::Extend) {
        let route = {
            let mut inner = self.lock();
            if inner
                .containers
                .get(&x.id)
                .is_none_or(|e| e.state != ContainerState::Allocated)
            {
                return;
            }
            inner.forget(&x.id);
            let Some(e) = inner.containers.get_mut(&x.id) else {
                return;
            };
            e.expires_at = Some(x.to);
            let route = live_route(e);
            inner.remember(&x.id);
            route
        };
        if let Some(route) = route {
            self.routes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(x.id, route);
        }
    }

    /// Applies a committed state change; changes nothing if the container is not
    /// in `from` here (recovery closes rows it never loaded).
    fn apply(&self, c: &warmpool_store::Change, reason: Option<&str>) {
        let (id, from, to, expires_at, idle_timeout, now) =
            (c.id, c.from, c.to, c.expires_at, c.idle_timeout, c.at);
        let mut inner = self.lock();
        if inner.containers.get(&id).is_none_or(|e| e.state != from) {
            return;
        }
        inner.forget(&id);
        let Some(e) = inner.containers.get_mut(&id) else {
            return;
        };
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
            if containers.get(&id).is_some_and(|e| e.queued) {
                *n += 1;
            }
            if let Some(q) = ready.get_mut(&key) {
                if *n * 2 >= q.len() {
                    q.retain(|x| match containers.get_mut(x) {
                        Some(e) if e.state == ContainerState::Ready => true,
                        Some(e) => {
                            e.queued = false;
                            false
                        }
                        None => false,
                    });
                    *n = 0;
                }
            }
        }
        if to == ContainerState::Failed {
            inner.pools.entry(key.clone()).or_default().failures += 1;
        }
        if joins_pool && inner.containers.get(&id).is_some_and(|e| !e.queued) {
            inner.enqueue(id, false);
        }
        if to == ContainerState::Stopped {
            inner.containers.remove(&id);
        } else {
            inner.remember(&id);
        }
        drop(inner);

        if let Some(route) = live_route {
            self.routes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, route);
        } else if from == ContainerState::Allocated
            || (to == ContainerState::Stopped && self.route(&id).is_some())
        {
            // Once handed out, an id keeps answering: 410 with why it ended.
            let reason = reason.unwrap_or(match to {
                ContainerState::Failed => "failed",
                _ => "stopped",
            });
            let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
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

    pub(crate) fn hit(&self, key: &PoolKey) {
        self.lock().pools.entry(key.clone()).or_default().hits += 1;
    }

    pub(crate) fn miss(&self, key: &PoolKey) {
        self.lock().pools.entry(key.clone()).or_default().misses += 1;
    }

    pub(crate) fn record_error(
        &self,
        key: &PoolKey,
        error: String,
        now: Timestamp,
        failed_start: bool,
    ) {
        let mut inner = self.lock();
        let stats = inner.pools.entry(key.clone()).or_default();
        if failed_start {
            stats.failed_starts += 1;
        }
        stats.last_error = Some((now, error));
    }

    /// Plans against the registry's aggregates and registers the planned work,
    /// under one lock: the plan's input is O(pool keys + what is due), so the
    /// lock is held about as long as a claim holds it, whatever the number of
    /// containers, and nothing can change between planning and dispatching.
    ///
    /// A stop or removal carries a lease of its own (containers a lease holds
    /// are not planned for); a surplus or rollout stop takes the ready
    /// containers of its key that have waited longest.
    pub(crate) fn plan_and_dispatch(
        self: &Arc<Self>,
        desired: &Desired,
        now: Timestamp,
    ) -> (Vec<Dispatch>, Option<Timestamp>) {
        let mut guard = self.lock();
        let inner: &mut Inner = &mut guard;
        #[cfg(debug_assertions)]
        inner.check();
        let observed = inner.observe(now);
        let p = plan(desired, &observed, now);
        let mut out = Vec::with_capacity(p.actions.len());
        let lease = |inner: &mut Inner, id: ContainerId| {
            if inner.containers.get(&id)?.leased {
                return None;
            }
            let e = inner.set_leased(id, true)?;
            Some((e.state, Lease::new(self.clone(), id, e, GiveBack::Nothing)))
        };
        for action in p.actions {
            match action {
                Action::Launch {
                    key,
                    count,
                    revision,
                } => {
                    inner.last_batch.insert(key.clone(), now);
                    for _ in 0..count {
                        let id = ContainerId::random();
                        inner.insert(id, starting(key.clone(), revision, false, now));
                        out.push(Dispatch::Launch {
                            id,
                            key: key.clone(),
                            revision,
                        });
                    }
                }
                Action::Stop { id, reason } => {
                    if let Some((from, lease)) = lease(inner, id) {
                        out.push(Dispatch::Stop {
                            lease,
                            from,
                            reason,
                        });
                    }
                }
                Action::StopReady {
                    key,
                    count,
                    pick,
                    reason,
                } => {
                    for id in inner.pick_ready(&key, count, pick) {
                        if let Some((from, lease)) = lease(inner, id) {
                            out.push(Dispatch::Stop {
                                lease,
                                from,
                                reason,
                            });
                        }
                    }
                }
                Action::Remove { id } => {
                    if let Some((_, lease)) = lease(inner, id) {
                        out.push(Dispatch::Remove { lease });
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
        for (key, classes) in &inner.tally {
            let c = out.entry(key.clone()).or_default();
            for (&(state, ..), &n) in classes {
                match state {
                    ContainerState::Ready => c.ready += n,
                    ContainerState::Starting => c.starting += n,
                    ContainerState::Allocated => c.allocated += n,
                    ContainerState::Stopping => c.stopping += n,
                    ContainerState::Failed => c.failed += n,
                    ContainerState::Stopped => {}
                }
            }
        }
        for (k, s) in &inner.pools {
            out.entry(k.clone()).or_default().stats = s.clone();
        }
        (out, inner.live())
    }

    /// Per pool key, its allocated containers and its ready and starting pool
    /// containers; and the live containers in all (for the autoscaler).
    pub(crate) fn key_counts(&self) -> (HashMap<PoolKey, KeyCounts>, u32) {
        let inner = self.lock();
        let mut out: HashMap<PoolKey, KeyCounts> = HashMap::new();
        for (key, classes) in &inner.tally {
            let c = out.entry(key.clone()).or_default();
            for (&(state, _, on_demand, _), &n) in classes {
                match state {
                    ContainerState::Allocated => c.allocated += n,
                    ContainerState::Ready | ContainerState::Starting if !on_demand => c.supply += n,
                    _ => {}
                }
            }
        }
        (out, inner.live())
    }

    /// Counts of `pool`'s containers by revision, against `current`.
    pub fn revision_counts(&self, pool: &str, current: u32) -> RevisionCounts {
        let mut c = RevisionCounts::default();
        let inner = self.lock();
        for classes in inner
            .tally
            .iter()
            .filter(|(k, _)| &*k.pool == pool)
            .map(|(_, c)| c)
        {
            for (&(state, revision, on_demand, _), &n) in classes {
                if on_demand && state != ContainerState::Allocated {
                    continue;
                }
                match (state, revision == current) {
                    (ContainerState::Ready, true) => c.updated_ready += n,
                    (ContainerState::Ready, false) => c.stale_ready += n,
                    (ContainerState::Starting, false) => c.stale_starting += n,
                    (ContainerState::Starting, true) => c.updated_starting += n,
                    (ContainerState::Allocated, false) => c.outdated_allocated += n,
                    _ => {}
                }
            }
        }
        c
    }

    /// Every live container's state (for the sweep): a copy of two words
    /// each, not of whole entries, since claims wait while it is made.
    pub(crate) fn live_states(&self) -> Vec<(ContainerId, ContainerState)> {
        self.lock()
            .containers
            .iter()
            .map(|(id, e)| (*id, e.state))
            .collect()
    }

    /// Every live container (for shutdown).
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

fn starting(key: PoolKey, revision: u32, on_demand: bool, now: Timestamp) -> Entry {
    Entry {
        key,
        state: ContainerState::Starting,
        on_demand,
        revision,
        created_at: now,
        expires_at: None,
        handle: None,
        address: None,
        leased: false,
        queued: false,
        idle_timeout: None,
        activity: None,
        idle_check: None,
    }
}
