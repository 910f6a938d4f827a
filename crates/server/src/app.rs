//! The application state and the container lifecycle operations shared by the
//! claim path, the reconciler, recovery and shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use warmpool_core::{ContainerId, ContainerState, Desired, DesiredPool, PoolKey, Timestamp};
use warmpool_runtime::{
    ContainerSpec, Resources, Runtime, RuntimeError, Started, Template, Workload,
};
use warmpool_store::{Change, NewContainer, Op, Store, StoreError};

use crate::config::{Config, PoolConfig, RuntimeKind};
use crate::registry::Registry;

/// Least time between two attempts to remove a failed container. Passes come as
/// often as claims and failures wake the reconciler (every 10 ms under load), and
/// while the runtime is down each would otherwise try again at once.
pub const REMOVE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The wall clock, as the core's [`Timestamp`].
pub fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(d.as_millis() as i64)
}

/// A configured pool, as claims and launches use it.
#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub config: PoolConfig,
    /// What its containers run, shared by all of them.
    pub template: Arc<Template>,
}

impl Pool {
    /// The pool of `config`, its workload as `runtime` runs it: an image on the
    /// image runtimes; otherwise its command, or without one the sample app.
    pub fn new(config: &PoolConfig, runtime: RuntimeKind) -> Self {
        let workload = match runtime {
            RuntimeKind::Docker | RuntimeKind::Kubernetes => Workload::Image {
                image: config.image.clone(),
                pids_limit: config.pids_limit,
            },
            RuntimeKind::Process | RuntimeKind::Sim if config.command.is_empty() => {
                Workload::SampleApp
            }
            RuntimeKind::Process | RuntimeKind::Sim => Workload::Command(config.command.clone()),
        };
        Self {
            name: config.name.as_str().into(),
            template: Arc::new(Template {
                workload,
                health_path: config.health_path.clone(),
                env: config.env.clone(),
                resources: Resources {
                    vcpu: config.vcpu,
                    memory_mib: config.memory_mib,
                    disk_mb: config.disk_mb,
                },
                start_timeout: config.start_timeout,
            }),
            config: config.clone(),
        }
    }

    pub fn key(&self, location: warmpool_core::Location) -> PoolKey {
        PoolKey::new(self.name.clone(), location)
    }
}

pub struct App {
    pub config: Config,
    pub store: Store,
    pub runtime: Arc<dyn Runtime>,
    /// The in-memory mirror of the store, kept current by the store's commit hook.
    pub registry: Arc<Registry>,
    /// What the reconciler aims at; targets can change at runtime
    /// ([`App::set_targets`]), the set of pools and locations cannot.
    desired: std::sync::RwLock<Arc<Desired>>,
    pub metrics: crate::metrics::Metrics,
    /// The last hour of pool depth and claim latency, in memory.
    pub history: crate::history::History,
    /// The configured pools; the first is the default one.
    pools: Vec<Arc<Pool>>,
    activation: Notify,
    reconciled: AtomicBool,
    shutting_down: AtomicBool,
    /// Connections upgraded through the proxy (WebSockets) still open, and a
    /// wake-up for when the last one closes (shutdown waits for them).
    upgrades: std::sync::atomic::AtomicUsize,
    upgrades_closed: Notify,
}

/// Counts one open upgraded connection while it lives.
pub struct UpgradeGuard(Arc<App>);

impl Drop for UpgradeGuard {
    fn drop(&mut self) {
        if self.0.upgrades.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.upgrades_closed.notify_waiters();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot record the new container")]
    Store(#[source] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("warmpool is shutting down")]
    ShuttingDown,
}

/// Renders an error with its chain of sources: `a: b: c`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

impl App {
    pub fn new(
        config: Config,
        store: Store,
        registry: Arc<Registry>,
        runtime: Arc<dyn Runtime>,
    ) -> Self {
        let pools: Vec<Arc<Pool>> = config
            .pools
            .iter()
            .map(|p| Arc::new(Pool::new(p, config.runtime)))
            .collect();
        let desired = Desired {
            pools: pools
                .iter()
                .flat_map(|p| {
                    p.config.targets.iter().map(|(l, n)| DesiredPool {
                        key: p.key(*l),
                        target: *n,
                        batch_size: p.config.batch_size,
                        spacing: p.config.batch_spacing,
                    })
                })
                .collect(),
            max_instances: config.max_instances,
        };
        Self {
            config,
            store,
            runtime,
            registry,
            desired: std::sync::RwLock::new(Arc::new(desired)),
            metrics: Default::default(),
            history: Default::default(),
            pools,
            activation: Notify::new(),
            reconciled: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            upgrades: Default::default(),
            upgrades_closed: Notify::new(),
        }
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
    pub fn set_targets(
        &self,
        pool: &str,
        targets: &[(warmpool_core::Location, u32)],
    ) -> Result<(), warmpool_core::Location> {
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
        self.activation.notify_one();
    }

    pub async fn activated(&self) {
        self.activation.notified().await
    }

    pub fn mark_reconciled(&self) {
        self.reconciled.store(true, Ordering::Release);
    }

    pub fn has_reconciled(&self) -> bool {
        self.reconciled.load(Ordering::Acquire)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.activate();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Counts an upgraded connection (a WebSocket) as open until the guard drops.
    pub fn upgrade_opened(self: &Arc<Self>) -> UpgradeGuard {
        self.upgrades.fetch_add(1, Ordering::AcqRel);
        UpgradeGuard(self.clone())
    }

    pub fn open_upgrades(&self) -> usize {
        self.upgrades.load(Ordering::Acquire)
    }

    /// Returns once no upgraded connection is open.
    pub async fn upgrades_closed(&self) {
        loop {
            let closed = self.upgrades_closed.notified();
            let mut closed = std::pin::pin!(closed);
            closed.as_mut().enable();
            if self.open_upgrades() == 0 {
                return;
            }
            closed.await;
        }
    }

    /// The configured pools, the default one first.
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

    /// Writes a state change to the store; the commit hook applies it in memory
    /// before this returns.
    pub async fn change(&self, c: Change) -> Result<(), StoreError> {
        self.store.change(c).await
    }

    /// Starts a container already registered in memory as `starting`, and waits for
    /// it to become ready. The store record is written before the runtime is asked.
    pub async fn launch(
        &self,
        id: ContainerId,
        key: PoolKey,
        on_demand: bool,
    ) -> Result<(), LaunchError> {
        let created_at = now();
        if let Err(e) = self
            .store
            .insert(NewContainer {
                id,
                key: key.clone(),
                runtime: self.runtime.name().to_owned(),
                on_demand,
                created_at,
            })
            .await
        {
            self.registry.discard(id);
            let e = LaunchError::Store(e);
            self.metrics.reconcile_errors.inc();
            self.registry
                .record_error(&key, error_chain(&e), now(), true);
            return Err(e);
        }
        if self.is_shutting_down() {
            let _ = self
                .change(
                    Change::new(id, ContainerState::Starting, ContainerState::Stopped, now())
                        .reason("shutdown"),
                )
                .await;
            return Err(LaunchError::ShuttingDown);
        }
        let spec = ContainerSpec {
            id,
            key: key.clone(),
            template: self.pool_of(&key).template.clone(),
        };
        match self.start_and_wait(&spec).await {
            Ok(started) => {
                let ready_at = now();
                let c = Change::new(
                    id,
                    ContainerState::Starting,
                    ContainerState::Ready,
                    ready_at,
                );
                if let Err(e) = self.change(c).await {
                    // Released or shut down while starting: nothing may keep running
                    // behind a record that is closing.
                    let _ = self.destroy(id, &started.handle).await;
                    return Err(LaunchError::Store(e));
                }
                self.metrics
                    .start_seconds
                    .observe(ready_at.since(created_at).as_secs_f64());
                Ok(())
            }
            Err(e) => {
                let reason = format!("start failed: {}", error_chain(&e));
                tracing::warn!(container_id = %id, pool = %key, error = %reason, "container failed to start");
                self.metrics.reconcile_errors.inc();
                self.registry
                    .record_error(&key, reason.clone(), now(), true);
                let mut c =
                    Change::new(id, ContainerState::Starting, ContainerState::Failed, now())
                        .reason(reason);
                if let LaunchError::Runtime(RuntimeError::ExitedEarly { code, .. }) = &e {
                    c.exit_code = *code;
                }
                // Conflict: shutdown got there first; the record is already closing.
                let _ = self.change(c).await;
                self.activate();
                Err(e)
            }
        }
    }

    async fn start_and_wait(&self, spec: &ContainerSpec) -> Result<Started, LaunchError> {
        let started: Started = self.runtime.start(spec).await?;
        self.store
            .apply(Op::SetRuntime {
                id: spec.id,
                handle: started.handle.clone(),
                address: Some(started.address.clone()),
            })
            .await
            .map_err(LaunchError::Store)?;
        if let Err(e) = self
            .runtime
            .wait_ready(spec, &started, self.pool_of(&spec.key).config.start_timeout)
            .await
        {
            // Never leave behind a process that did not become ready.
            let _ = self
                .runtime
                .stop(spec.id, &started.handle, Duration::ZERO)
                .await;
            return Err(e.into());
        }
        Ok(started)
    }

    /// Stops a live container gracefully and closes its record.
    pub async fn stop_container(&self, id: ContainerId, from: ContainerState, reason: &str) {
        let c = Change::new(id, from, ContainerState::Stopping, now()).reason(reason);
        if let Err(e) = self.change(c).await {
            tracing::debug!(container_id = %id, error = %e, "stop skipped");
            self.registry.set_busy(id, false);
            return;
        }
        let handle = self.registry.get(&id).and_then(|e| e.handle);
        if let Some(h) = &handle {
            let stopped = self
                .runtime
                .stop(id, h, self.config.stop_grace)
                .await
                .and(self.runtime.remove(id, h).await);
            if let Err(e) = stopped {
                self.metrics.reconcile_errors.inc();
                let reason = format!("stop failed: {}", error_chain(&e));
                tracing::warn!(container_id = %id, error = %reason, "container did not stop cleanly");
                let c = Change::new(id, ContainerState::Stopping, ContainerState::Failed, now())
                    .reason(reason);
                let _ = self.change(c).await;
                self.registry.set_busy(id, false);
                return;
            }
        }
        let c = Change::new(id, ContainerState::Stopping, ContainerState::Stopped, now())
            .reason(reason);
        if let Err(e) = self.change(c).await {
            tracing::warn!(container_id = %id, error = %e, "cannot record stopped container");
            self.registry.set_busy(id, false);
        }
        self.activate();
    }

    /// Kills a container at once (no grace) and removes what is left of it: for
    /// what must not run (orphans, lost or failed containers, refused starts).
    /// Both steps are tried; the first error is returned.
    pub async fn destroy(&self, id: ContainerId, handle: &str) -> Result<(), RuntimeError> {
        let stopped = self.runtime.stop(id, handle, Duration::ZERO).await;
        let removed = self.runtime.remove(id, handle).await;
        stopped.and(removed)
    }

    /// Removes what is left of a failed container and closes its record. A removal
    /// that fails is retried by a later pass, but not before [`REMOVE_RETRY_DELAY`].
    pub async fn remove_failed(&self, id: ContainerId) {
        if let Some(h) = self.registry.get(&id).and_then(|e| e.handle) {
            if let Err(e) = self.destroy(id, &h).await {
                self.metrics.reconcile_errors.inc();
                tracing::warn!(container_id = %id, error = %error_chain(&e), "cannot remove failed container; will retry");
                if !self.is_shutting_down() {
                    tokio::time::sleep(REMOVE_RETRY_DELAY).await;
                }
                self.registry.set_busy(id, false);
                return;
            }
        }
        let c = Change::new(id, ContainerState::Failed, ContainerState::Stopped, now());
        if let Err(e) = self.change(c).await {
            tracing::warn!(container_id = %id, error = %e, "cannot record removed container; will retry");
            self.registry.set_busy(id, false);
        }
    }

    /// A ready or allocated container died: take it out of the pool (ready) or make
    /// its id answer 410 (allocated). Starting and stopping ones are handled by the
    /// task that is starting or stopping them.
    pub async fn mark_failed(&self, id: ContainerId, reason: &str, code: Option<i32>) {
        let Some(mut state) = self.registry.get(&id).map(|e| e.state) else {
            return;
        };
        // A concurrent change (a claim) can win the race; then fail it from there.
        for _ in 0..4 {
            if !matches!(state, ContainerState::Ready | ContainerState::Allocated) {
                return;
            }
            let mut c = Change::new(id, state, ContainerState::Failed, now()).reason(reason);
            c.exit_code = code;
            match self.change(c).await {
                Ok(()) => {
                    tracing::info!(container_id = %id, from = %state, reason, "container failed");
                    self.activate();
                    return;
                }
                Err(StoreError::Conflict { found, .. }) => state = found,
                Err(e) => {
                    tracing::warn!(container_id = %id, error = %e, "cannot record failed container");
                    return;
                }
            }
        }
    }
}
