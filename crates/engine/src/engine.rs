//! The engine: its pools and desired state, the store, the runtime and the
//! registry, and the handles of its background tasks and work in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::collections::{BTreeMap, HashMap};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use warmpool_core::{ContainerId, Desired, DesiredPool, Location, PoolKey, Timestamp};
use warmpool_runtime::{HttpProbe, Runtime, Template};
use warmpool_store::Store;

use crate::config::{EngineConfig, PoolSpec};
use crate::history::{History, Sample};
use crate::metrics::Metrics;
use crate::now;
use crate::registry::Registry;
use crate::tasks::{Driver, TaskStatus};

/// A pool, as claims and launches use it: a snapshot, replaced whole whenever
/// the pool changes (its settings, its revision, its rollout's outcome).
#[derive(Clone, Debug)]
pub struct Pool {
    pub name: Arc<str>,
    /// Its settings; `spec.template` is the template of `revision`.
    pub spec: PoolSpec,
    /// The revision of its template new containers are meant to start from.
    pub revision: u32,
    /// The last revision whose rollout completed.
    pub stable_revision: u32,
    /// What launches start now: `revision`, or `stable_revision` while the
    /// rollout to `revision` has failed (the old revision keeps the pool full).
    pub launch_revision: u32,
    /// When the rollout to `revision` began (`None`: none in progress).
    pub rollout_started_at: Option<Timestamp>,
    /// Why the rollout to `revision` failed.
    pub rollout_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Pool {
    pub fn key(&self, location: Location) -> PoolKey {
        PoolKey::new(self.name.clone(), location)
    }

    /// A rollout to `revision` is under way (neither complete nor failed).
    pub fn rolling_out(&self) -> bool {
        self.revision != self.stable_revision && self.rollout_error.is_none()
    }
}

/// One revision of a pool: the template its containers were started from.
#[derive(Clone, Debug)]
pub(crate) struct Revision {
    pub(crate) template: Arc<Template>,
    /// The template as stored (revisions are compared by this text).
    pub(crate) json: String,
}

/// The pools and the desired state made from them, replaced together.
#[derive(Debug, Default)]
pub(crate) struct PoolSet {
    /// The default pool first (if it exists), then by name.
    pub(crate) list: Vec<Arc<Pool>>,
    pub(crate) desired: Arc<Desired>,
}

impl PoolSet {
    pub(crate) fn new(mut list: Vec<Arc<Pool>>, default: &str, max_instances: u32) -> Self {
        list.sort_by(|a, b| (&*a.name != default, &a.name).cmp(&(&*b.name != default, &b.name)));
        let desired = Desired {
            pools: list
                .iter()
                .flat_map(|p| {
                    // A scaled pool's sizes are decided by each pass
                    // (`scaling.rs`); until the first, its minimum.
                    let fixed = p.spec.scaling.as_ref().map(|s| s.min);
                    p.spec.targets.iter().map(move |(l, n)| DesiredPool {
                        key: p.key(*l),
                        target: fixed.unwrap_or(*n),
                        batch_size: p.spec.batch_size,
                        spacing: p.spec.batch_spacing,
                        revision: p.launch_revision,
                        surge: p.spec.max_surge.of(*n),
                    })
                })
                .collect(),
            max_instances,
        };
        PoolSet {
            list,
            desired: Arc::new(desired),
        }
    }
}

/// Names of the background tasks ([`Engine::task_status`]).
pub(crate) mod task {
    pub const RECONCILE: &str = "reconcile";
    pub const SWEEP: &str = "sweep";
    pub const PROBER: &str = "prober";
    pub const HISTORY: &str = "history";
    pub const PRUNE: &str = "prune_tombstones";
}

pub struct Engine {
    pub config: EngineConfig,
    pub store: Store,
    pub runtime: Arc<dyn Runtime>,
    /// The in-memory mirror of the store, kept current by the store's commit hook.
    pub registry: Arc<Registry>,
    /// The pools and what the reconciler aims at, replaced whole when a pool
    /// changes (`pools.rs`).
    pub(crate) pools: std::sync::RwLock<Arc<PoolSet>>,
    /// Each pool's revisions: the template each was started from.
    pub(crate) revisions: std::sync::Mutex<HashMap<String, BTreeMap<u32, Revision>>>,
    /// Serialises changes to pools (API calls, reloads, rollout outcomes).
    pub(crate) pool_writes: tokio::sync::Mutex<()>,
    /// Failed starts in a row of each pool's new revision: (revision, count).
    pub(crate) start_failures: std::sync::Mutex<HashMap<Arc<str>, (u32, u32)>>,
    pub metrics: Metrics,
    /// The last hour of pool depth and claim latency, in memory.
    pub history: History,
    reconciled: AtomicBool,
    /// Cancelled when shutdown begins: ends the background tasks, makes launches
    /// in flight give up, and refuses claims.
    cancel: CancellationToken,
    /// Launches, stops, removals and failures in flight, so that shutdown waits
    /// for them rather than polling.
    pub(crate) work: TaskTracker,
    /// The reconciler's launches waiting for one of the bounded launch workers
    /// (`launches.rs`; `lifecycle.rs` runs them).
    pub(crate) launches: std::sync::Mutex<crate::launches::LaunchQueue>,
    pub(crate) tasks: Driver,
    /// warmpool's own HTTP calls to apps: health probes and a claim's text.
    pub(crate) probe: HttpProbe,
    /// Autoscaling: each key's signals and sizes (`scaling.rs`).
    pub(crate) scaler: crate::scaler::Scaler,
    /// Told of each ready container that waits for a claim (set by the server).
    ready_hook: std::sync::OnceLock<ReadyHook>,
    /// Sends a claim's calls to its app (set by the server), else `probe` does.
    app_post: std::sync::OnceLock<AppPost>,
}

/// Sends `POST http://{address}{path}` with `body` of `content_type` to an app
/// (warmpool's own calls at claim time: `/admin/bind`, `/admin/update-text`) and
/// answers the HTTP status of any answer, or `Err` when the app gave none, with
/// the answer's body read (so the connection can be kept), all within 10 s. The
/// server sends them through its proxy's pooled client, over the connection it
/// opened to the container at readiness; without one, [`HttpProbe::post`]'s
/// client opens a connection per call.
pub type AppPost = Box<
    dyn Fn(
            &str,
            &'static str,
            &'static str,
            Vec<u8>,
        ) -> futures_util::future::BoxFuture<'static, Result<u16, String>>
        + Send
        + Sync,
>;

/// Told the id, address and health path of a container that became ready, and
/// again after each of its periodic health probes that passed while it waits in
/// the pool. The server opens (and keeps open) its proxy's connection to it
/// there, so that the first proxied request after a claim needs no connect. It
/// must return at once (spawn any work).
pub type ReadyHook = Box<dyn Fn(ContainerId, &str, &str) + Send + Sync>;

impl Engine {
    /// The engine over an open store, before recovery and its background tasks
    /// (see [`Engine::start`]).
    pub(crate) fn new(
        config: EngineConfig,
        store: Store,
        registry: Arc<Registry>,
        runtime: Arc<dyn Runtime>,
    ) -> Arc<Self> {
        let cancel = CancellationToken::new();
        Arc::new(Self {
            config,
            store,
            runtime,
            registry,
            pools: Default::default(),
            revisions: Default::default(),
            pool_writes: Default::default(),
            start_failures: Default::default(),
            metrics: Default::default(),
            history: Default::default(),
            reconciled: AtomicBool::new(false),
            tasks: Driver::new(cancel.clone(), now),
            cancel,
            work: TaskTracker::new(),
            launches: Default::default(),
            probe: HttpProbe::new(),
            scaler: Default::default(),
            ready_hook: Default::default(),
            app_post: Default::default(),
        })
    }

    /// Sets the [`AppPost`] (once; a second call is ignored).
    pub fn set_app_post(&self, post: AppPost) {
        let _ = self.app_post.set(post);
    }

    /// A claim's call to its app: through the [`AppPost`] if one is set, else
    /// through the engine's own probe client.
    pub(crate) async fn post_to_app(
        &self,
        address: &str,
        path: &'static str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<u16, String> {
        match self.app_post.get() {
            Some(post) => post(address, path, content_type, body).await,
            None => self.probe.post(address, path, content_type, body).await,
        }
    }

    /// Sets the [`ReadyHook`] (once; a second call is ignored).
    pub fn set_ready_hook(&self, hook: ReadyHook) {
        let _ = self.ready_hook.set(hook);
    }

    /// Tells the [`ReadyHook`], if any, that `id` at `address` is ready.
    pub(crate) fn ready(&self, id: ContainerId, address: &str, health_path: &str) {
        if let Some(hook) = self.ready_hook.get() {
            hook(id, address, health_path);
        }
    }

    /// The desired pool keys, in order.
    pub fn desired_keys(&self) -> Vec<PoolKey> {
        self.desired().pools.iter().map(|p| p.key.clone()).collect()
    }

    /// The last hour of samples, and one for now (`GET /v1/stats/history`).
    pub fn history_snapshot(&self) -> Vec<Sample> {
        self.history.snapshot(&self.registry, &self.desired_keys())
    }

    /// The background tasks' status, in a fixed order.
    pub fn task_status(&self) -> Vec<TaskStatus> {
        self.tasks.status()
    }

    pub(crate) fn pool_set(&self) -> Arc<PoolSet> {
        self.pools.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wakes the reconciler now (after a claim, an exit, a config change).
    pub fn activate(&self) {
        self.tasks.activate(task::RECONCILE);
    }

    /// Wakes the sweep now (runtime events were missed).
    pub(crate) fn activate_sweep(&self) {
        self.tasks.activate(task::SWEEP);
    }

    pub(crate) fn mark_reconciled(&self) {
        self.reconciled.store(true, Ordering::Release);
    }

    /// A first reconcile pass has run (readiness).
    pub fn has_reconciled(&self) -> bool {
        self.reconciled.load(Ordering::Acquire)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The token cancelled when shutdown begins.
    pub(crate) fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The one shutdown token, for what runs beside the engine (the HTTP server)
    /// and must stop when it does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The pools, the default one first, then by name.
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pool_set().list.clone()
    }

    /// The name of the default pool: claims that name none go to it.
    pub fn default_pool_name(&self) -> &str {
        &self.config.pools[0].name
    }

    /// The pool claims go to unless they name one (`None` if it was deleted).
    pub fn default_pool(&self) -> Option<Arc<Pool>> {
        self.pool(self.default_pool_name())
    }

    /// The pool called `name`, if it exists.
    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.pool_set()
            .list
            .iter()
            .find(|p| &*p.name == name)
            .cloned()
    }

    /// The template a container of `pool` started from `revision` runs: that
    /// revision's, else the pool's current one, else the default template (a
    /// container of a pool deleted before this start).
    pub fn template(&self, pool: &str, revision: u32) -> Arc<Template> {
        let known = self
            .revisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(pool)
            .and_then(|r| r.get(&revision))
            .map(|r| r.template.clone());
        known
            .or_else(|| self.pool(pool).map(|p| p.spec.template.clone()))
            .unwrap_or_default()
    }

    /// Begins shutdown: claims are refused from now on, the background tasks end,
    /// and launches in flight give up (stopping what they started).
    pub fn begin_shutdown(&self) {
        self.cancel.cancel();
    }
}
