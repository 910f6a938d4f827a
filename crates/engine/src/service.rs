//! The engine as a running service: start (open the store, recover what a
//! previous run left, start the named background tasks) and ordered shutdown.
//! The top of the crate: it wires the modules below it and none imports it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use warmpool_runtime::Runtime;
use warmpool_store::{CommitHook, Store, StoreError};

use crate::config::EngineConfig;
use crate::engine::{task, Engine};
use crate::recovery::{Recovered, RecoveryError};
use crate::registry::Registry;
use crate::tasks::{Outcome, Schedule};
use crate::{lifecycle, now, prober, reconciler};

/// How often tombstones of ended containers are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the store")]
    Store(#[source] StoreError),
    #[error("the store could not be opened on a blocking thread")]
    Join(#[source] tokio::task::JoinError),
    #[error("start-up recovery failed")]
    Recovery(#[source] RecoveryError),
    #[error("no pool is configured")]
    NoPool,
    #[error("cannot load or apply the pools")]
    Pools(#[source] crate::PoolError),
}

impl Engine {
    /// Opens (or creates) the store in `data_dir`, with a registry that mirrors
    /// every commit. The store's instance id is what the runtime tags its objects
    /// with, so the runtime is built after this.
    pub async fn open_store(data_dir: &Path) -> Result<(Store, Arc<Registry>), OpenError> {
        let registry = Arc::new(Registry::default());
        let mirror = registry.clone();
        let hook: CommitHook = Arc::new(move |op| mirror.committed(op));
        let dir = data_dir.to_owned();
        let store = tokio::task::spawn_blocking(move || Store::open_with_hook(&dir, Some(hook)))
            .await
            .map_err(OpenError::Join)?
            .map_err(OpenError::Store)?;
        Ok((store, registry))
    }

    /// Builds the engine over an open store, recovers what a previous run left
    /// (adopts what is ours and alive, closes what vanished, destroys orphans),
    /// and starts the background tasks.
    pub async fn start(
        config: EngineConfig,
        store: Store,
        registry: Arc<Registry>,
        runtime: Arc<dyn Runtime>,
    ) -> Result<(Arc<Self>, Recovered), OpenError> {
        if config.pools.is_empty() {
            return Err(OpenError::NoPool);
        }
        let engine = Engine::new(config, store, registry, runtime);
        // The pools are the store's; the declared ones are applied over them if
        // they changed since they were last applied.
        engine.load_pools().map_err(OpenError::Pools)?;
        engine.restore_sizes().map_err(OpenError::Store)?;
        let declared = engine.config.pools.clone();
        if let Some(applied) = engine
            .apply_declared(&declared)
            .await
            .map_err(OpenError::Pools)?
        {
            let changed = applied.iter().filter(|o| o.changed).count();
            tracing::info!(
                pools = applied.len(),
                changed,
                "applied the configured pools"
            );
        }
        for p in engine.pools() {
            if !declared.iter().any(|d| *d.name == *p.name) {
                tracing::info!(pool = %p.name, "pool kept from the store (not in the configuration; `warmpool pools rm` deletes it)");
            }
        }
        let recovered = crate::recovery::recover(&engine)
            .await
            .map_err(OpenError::Recovery)?;
        tracing::info!(
            adopted = recovered.adopted,
            lost = recovered.lost,
            orphans = recovered.orphans,
            "recovered state"
        );
        engine.start_tasks();
        Ok((engine, recovered))
    }

    fn start_tasks(self: &Arc<Self>) {
        let c = &self.config;
        let e = self.clone();
        self.tasks.spawn(
            Schedule {
                name: task::RECONCILE,
                period: c.reconcile_interval,
                min_gap: reconciler::MIN_PASS_GAP,
                run_at_start: true,
            },
            move || {
                let e = e.clone();
                Box::pin(async move { Ok(reconciler::pass(&e)) })
            },
        );
        let e = self.clone();
        self.tasks.spawn(
            Schedule {
                name: task::SWEEP,
                period: c.sweep_interval,
                min_gap: Duration::from_secs(1),
                run_at_start: false,
            },
            move || {
                let e = e.clone();
                Box::pin(async move { reconciler::sweep(&e).await })
            },
        );
        if !c.probe_interval.is_zero() && self.runtime.reachable() {
            let e = self.clone();
            let failures = Arc::new(prober::Failures::default());
            self.tasks.spawn(
                Schedule {
                    name: task::PROBER,
                    period: c.probe_interval,
                    min_gap: Duration::ZERO,
                    run_at_start: false,
                },
                move || {
                    let (e, f) = (e.clone(), failures.clone());
                    Box::pin(async move { Ok(prober::probe_ready(&e, &f).await) })
                },
            );
        }
        let e = self.clone();
        self.tasks.spawn(
            Schedule {
                name: task::HISTORY,
                period: crate::history::INTERVAL,
                min_gap: Duration::ZERO,
                run_at_start: true,
            },
            move || {
                let e = e.clone();
                Box::pin(async move {
                    e.history.sample(&e.registry, &e.desired_keys());
                    Ok(Outcome::said("sampled"))
                })
            },
        );
        let e = self.clone();
        self.tasks.spawn(
            Schedule {
                name: task::PRUNE,
                period: PRUNE_EVERY,
                min_gap: Duration::ZERO,
                run_at_start: false,
            },
            move || {
                let e = e.clone();
                Box::pin(async move {
                    let n = e
                        .registry
                        .prune_tombstones(now() - e.config.tombstone_retention);
                    Ok(Outcome::said(format!("{n} pruned")))
                })
            },
        );
        let e = self.clone();
        let cancel = self.cancelled().clone();
        self.work
            .spawn(async move { reconciler::follow_runtime(e, cancel).await });
    }

    /// Ends the engine: after [`Engine::begin_shutdown`] (called here if it was
    /// not), waits for the background tasks and the work in flight, then stops
    /// every live container, or with `keep` leaves the ready and allocated ones
    /// running, records intact, for the next start to adopt. Returns how many
    /// containers were kept.
    pub async fn shutdown(self: &Arc<Self>, keep: bool) -> usize {
        self.begin_shutdown();
        self.tasks.stopped().await;
        self.work.close();
        self.work.wait().await;
        lifecycle::stop_all(self, keep).await;
        if keep {
            self.registry.live().len()
        } else {
            0
        }
    }

    /// Runs one reconcile pass now, outside the `reconcile` task (for tests that
    /// step the simulated runtime, and for embedders that want a pass at once).
    pub fn reconcile_now(self: &Arc<Self>) -> Outcome {
        reconciler::pass(self)
    }
}
