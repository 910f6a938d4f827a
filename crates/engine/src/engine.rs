//! The engine: its pools and desired state, the store, the runtime and the
//! registry, and the handles of its background tasks and work in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warmpool_core::{Desired, DesiredPool, Location, PoolKey};
use warmpool_runtime::{HttpProbe, Runtime};
use warmpool_store::Store;

use crate::config::{EngineConfig, PoolSpec};
use crate::history::{History, Sample};
use crate::metrics::Metrics;
use crate::now;
use crate::registry::Registry;
use crate::tasks::{Driver, TaskStatus};

/// A pool, as claims and launches use it.
#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub spec: PoolSpec,
}

impl Pool {
    pub fn key(&self, location: Location) -> PoolKey {
        PoolKey::new(self.name.clone(), location)
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
    /// What the reconciler aims at; targets can change at runtime
    /// ([`Engine::set_targets`]), the set of pools and locations cannot.
    desired: std::sync::RwLock<Arc<Desired>>,
    pub metrics: Metrics,
    /// The last hour of pool depth and claim latency, in memory.
    pub history: History,
    /// The pools; the first is the default one.
    pools: Vec<Arc<Pool>>,
    reconciled: AtomicBool,
    /// Cancelled when shutdown begins: ends the background tasks, makes launches
    /// in flight give up, and refuses claims.
    cancel: CancellationToken,
    /// Launches, stops, removals and failures in flight, so that shutdown waits
    /// for them rather than polling.
    pub(crate) work: TaskTracker,
    pub(crate) tasks: Driver,
    /// warmpool's own HTTP calls to apps: health probes and a claim's text.
    pub(crate) probe: HttpProbe,
}

impl Engine {
    /// The engine over an open store, before recovery and its background tasks
    /// (see [`Engine::start`]).
    pub(crate) fn new(
        config: EngineConfig,
        store: Store,
        registry: Arc<Registry>,
        runtime: Arc<dyn Runtime>,
    ) -> Arc<Self> {
        let pools: Vec<Arc<Pool>> = config
            .pools
            .iter()
            .map(|p| {
                Arc::new(Pool {
                    name: p.name.as_str().into(),
                    spec: p.clone(),
                })
            })
            .collect();
        let desired = Desired {
            pools: pools
                .iter()
                .flat_map(|p| {
                    p.spec.targets.iter().map(|(l, n)| DesiredPool {
                        key: p.key(*l),
                        target: *n,
                        batch_size: p.spec.batch_size,
                        spacing: p.spec.batch_spacing,
                    })
                })
                .collect(),
            max_instances: config.max_instances,
        };
        let cancel = CancellationToken::new();
        Arc::new(Self {
            config,
            store,
            runtime,
            registry,
            desired: std::sync::RwLock::new(Arc::new(desired)),
            metrics: Default::default(),
            history: Default::default(),
            pools,
            reconciled: AtomicBool::new(false),
            tasks: Driver::new(cancel.clone(), now),
            cancel,
            work: TaskTracker::new(),
            probe: HttpProbe::new(),
        })
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

    /// The desired state now (cheap: a shared snapshot).
    pub fn desired(&self) -> Arc<Desired> {
        self.desired
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the targets of some locations of a pool at runtime, and wakes the
    /// reconciler. Every location must be one the pool is configured with; on an
    /// error nothing changes. Runtime targets live in memory: a restart returns to
    /// the configured ones.
    pub fn set_targets(&self, pool: &str, targets: &[(Location, u32)]) -> Result<(), Location> {
        {
            let mut guard = self.desired.write().unwrap_or_else(|e| e.into_inner());
            let mut next = Desired::clone(&guard);
            for (location, target) in targets {
                let p = next
                    .pools
                    .iter_mut()
                    .find(|p| &*p.key.pool == pool && p.key.location == *location)
                    .ok_or(*location)?;
                p.target = *target;
            }
            *guard = Arc::new(next);
        }
        self.activate();
        Ok(())
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

    /// The pools, the default one first.
    pub fn pools(&self) -> &[Arc<Pool>] {
        &self.pools
    }

    /// The pool claims go to unless they name one.
    pub fn default_pool(&self) -> &Arc<Pool> {
        &self.pools[0]
    }

    /// The pool called `name`, if configured.
    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| &*p.name == name)
    }

    /// The pool of a container: its own, or the default pool's settings for one
    /// no longer configured (recovered from an earlier configuration).
    pub fn pool_of(&self, key: &PoolKey) -> &Arc<Pool> {
        self.pool(&key.pool).unwrap_or(self.default_pool())
    }

    /// Begins shutdown: claims are refused from now on, the background tasks end,
    /// and launches in flight give up (stopping what they started).
    pub fn begin_shutdown(&self) {
        self.cancel.cancel();
    }
}
