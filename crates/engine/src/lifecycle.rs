//! The container lifecycle operations: launch (record, start, wait until ready),
//! stop, destroy, remove, fail. Each writes the store first; the registry follows
//! through the store's commit hook. Every error is logged, counted and recorded on
//! its pool (`GET /v1/pools` shows the last one); a later reconcile pass retries.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use warmpool_core::{ContainerId, ContainerState, PoolKey, TRACE_TARGET};
use warmpool_runtime::{ContainerSpec, RuntimeError, Started};
use warmpool_store::{Change, NewContainer, Op, StoreError};

use crate::registry::Lease;
use crate::{error_chain, now, Engine};

/// Least time between two attempts to remove a failed container. Passes come as
/// often as claims and failures wake the reconciler (every 10 ms under load), and
/// while the runtime is down each would otherwise try again at once.
pub const REMOVE_RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot record the new container")]
    Store(#[source] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("warmpool is shutting down")]
    ShuttingDown,
}

impl Engine {
    /// Starts a pool container the reconciler planned (already registered as
    /// `starting`): now, if fewer than
    /// [`crate::launches::MAX_CONCURRENT_LAUNCHES`] are under way, else when a
    /// worker is free, in the order planned.
    pub(crate) fn queue_launch(self: &Arc<Self>, id: ContainerId, key: PoolKey, revision: u32) {
        let spawn = self
            .launches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, key, revision));
        if spawn {
            let e = self.clone();
            self.spawn_work(async move { e.launch_worker().await });
        }
    }

    /// Runs queued launches one after another until none waits. Once shutdown
    /// has begun, the ones still waiting are dropped (nothing of theirs was
    /// written or started yet).
    async fn launch_worker(&self) {
        loop {
            let next = {
                let mut q = self.launches.lock().unwrap_or_else(|e| e.into_inner());
                if self.is_shutting_down() {
                    for id in q.drain() {
                        self.registry.discard(id);
                    }
                }
                q.next()
            };
            let Some((id, key, revision)) = next else {
                return;
            };
            let _ = self.launch(id, key, revision, false, Vec::new()).await;
        }
    }

    /// Runs `work` as tracked work: shutdown waits for it. It belongs to the span
    /// it was spawned in (a claim's, a reconcile pass's), when traces are on.
    pub(crate) fn spawn_work<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if tracing::enabled!(target: TRACE_TARGET, tracing::Level::TRACE) {
            self.work.spawn(work.in_current_span());
        } else {
            self.work.spawn(work);
        }
    }

    /// Records an error of an action on its pool (`lastError`), counts it, and
    /// logs it.
    fn action_failed(&self, key: &PoolKey, id: ContainerId, what: &str, e: &str, start: bool) {
        self.metrics.reconcile_errors.inc();
        if start {
            self.metrics.start_failed(key);
        }
        tracing::warn!(container_id = %id, pool = %key, error = %e, "{what}");
        self.registry.record_error(key, e.to_owned(), now(), start);
    }

    /// Starts a container already registered in memory as `starting`, and waits for
    /// it to become ready. The store record is written before the runtime is asked.
    /// If shutdown begins meanwhile, the start gives up and stops what it started.
    pub(crate) async fn launch(
        &self,
        id: ContainerId,
        key: PoolKey,
        revision: u32,
        on_demand: bool,
        env: Vec<(String, String)>,
    ) -> Result<(), LaunchError> {
        let span = tracing::trace_span!(target: TRACE_TARGET, "launch",
            container_id = %id, pool = %key.pool, location = %key.location, revision, on_demand);
        async move {
            let created_at = now();
            if let Err(e) = self
                .store
                .insert(NewContainer {
                    id,
                    key: key.clone(),
                    runtime: self.runtime.name().to_owned(),
                    on_demand,
                    revision,
                    created_at,
                })
                .await
            {
                self.registry.discard(id);
                let e = LaunchError::Store(e);
                self.action_failed(
                    &key,
                    id,
                    "cannot record a new container",
                    &error_chain(&e),
                    true,
                );
                return Err(e);
            }
            if self.is_shutting_down() {
                self.close_start(id, "shutdown").await;
                return Err(LaunchError::ShuttingDown);
            }
            let spec = ContainerSpec {
                id,
                key: key.clone(),
                template: self.template(&key.pool, revision),
                revision,
                env,
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
                    if let Err(e) = self.store.change(c).await {
                        // Released or shut down while starting: nothing may keep running
                        // behind a record that is closing.
                        let _ = self.destroy(id, &started.handle).await;
                        return Err(LaunchError::Store(e));
                    }
                    self.ready(id, &started.address, &spec.template.health_path);
                    let took = ready_at.since(created_at);
                    self.metrics.start_seconds.observe(took.as_secs_f64());
                    self.count_start(&key, took);
                    self.start_succeeded(&key, revision);
                    Ok(())
                }
                Err(LaunchError::ShuttingDown) => {
                    self.close_start(id, "shutdown").await;
                    Err(LaunchError::ShuttingDown)
                }
                Err(e) => {
                    let reason = format!("start failed: {}", error_chain(&e));
                    self.action_failed(&key, id, "container failed to start", &reason, true);
                    let mut c =
                        Change::new(id, ContainerState::Starting, ContainerState::Failed, now())
                            .reason(reason.clone());
                    if let LaunchError::Runtime(RuntimeError::ExitedEarly { code, .. }) = &e {
                        c.exit_code = *code;
                    }
                    // Conflict: shutdown got there first; the record is already closing.
                    let _ = self.store.change(c).await;
                    self.start_failed(&key, revision, &reason).await;
                    self.activate();
                    Err(e)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Closes the record of a start that gave up before anything ran.
    async fn close_start(&self, id: ContainerId, reason: &str) {
        let c = Change::new(id, ContainerState::Starting, ContainerState::Stopped, now())
            .reason(reason);
        if let Err(e) = self.store.change(c).await {
            tracing::debug!(container_id = %id, error = %e, "start record already closing");
        }
    }

    async fn start_and_wait(&self, spec: &ContainerSpec) -> Result<Started, LaunchError> {
        // The runtime's start is not cut short (it returns once the container runs),
        // so that whatever it made has a handle and can be stopped.
        let started: Started = self.runtime.start(spec).await?;
        let recorded = self
            .store
            .apply(Op::SetRuntime {
                id: spec.id,
                handle: started.handle.clone(),
                address: Some(started.address.clone()),
            })
            .await
            .map_err(LaunchError::Store);
        let waited = match recorded {
            Ok(()) => {
                let timeout = spec.template.start_timeout;
                let span = tracing::trace_span!(target: TRACE_TARGET, "readiness", container_id = %spec.id);
                let ready = self
                    .runtime
                    .wait_ready(spec, &started, timeout)
                    .instrument(span);
                tokio::select! {
                    r = ready => r.map_err(LaunchError::from),
                    _ = self.cancelled().cancelled() => Err(LaunchError::ShuttingDown),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = waited {
            // Never leave behind a container that did not become ready.
            let _ = self
                .runtime
                .stop(spec.id, &started.handle, Duration::ZERO)
                .await;
            let _ = self.runtime.remove(spec.id, &started.handle).await;
            return Err(e);
        }
        Ok(started)
    }

    /// Stops a live container gracefully and closes its record. The lease is given
    /// back when this returns, whatever happened.
    pub(crate) async fn stop_container(&self, lease: Lease, from: ContainerState, reason: &str) {
        let id = lease.id();
        let key = lease.entry().key.clone();
        let c = Change::new(id, from, ContainerState::Stopping, now()).reason(reason);
        if let Err(e) = self.store.change(c).await {
            tracing::debug!(container_id = %id, error = %e, "stop skipped");
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
                let reason = format!("stop failed: {}", error_chain(&e));
                self.action_failed(&key, id, "container did not stop cleanly", &reason, false);
                let c = Change::new(id, ContainerState::Stopping, ContainerState::Failed, now())
                    .reason(reason);
                let _ = self.store.change(c).await;
                return;
            }
        }
        let c = Change::new(id, ContainerState::Stopping, ContainerState::Stopped, now())
            .reason(reason);
        if let Err(e) = self.store.change(c).await {
            tracing::warn!(container_id = %id, error = %e, "cannot record stopped container");
        }
        lease.commit();
        self.activate();
    }

    /// Releases a container a client is done with (or a start it no longer
    /// wants): stops it unless it is already ending or another operation holds it.
    pub async fn release(&self, id: ContainerId) {
        let Some(lease) = self.registry.lease(id) else {
            return;
        };
        let from = lease.entry().state;
        if matches!(
            from,
            ContainerState::Starting | ContainerState::Ready | ContainerState::Allocated
        ) {
            self.stop_container(lease, from, "released").await;
        }
    }

    /// Kills a container at once (no grace) and removes what is left of it: for
    /// what must not run (orphans, lost or failed containers, refused starts).
    /// Both steps are tried; the first error is returned.
    pub(crate) async fn destroy(&self, id: ContainerId, handle: &str) -> Result<(), RuntimeError> {
        let stopped = self.runtime.stop(id, handle, Duration::ZERO).await;
        let removed = self.runtime.remove(id, handle).await;
        stopped.and(removed)
    }

    /// Removes what is left of a failed container and closes its record. A removal
    /// that fails is retried by a later pass, but not before [`REMOVE_RETRY_DELAY`]
    /// (the lease is held that long).
    pub(crate) async fn remove_failed(&self, lease: Lease) {
        let id = lease.id();
        if let Some(h) = self.registry.get(&id).and_then(|e| e.handle) {
            if let Err(e) = self.destroy(id, &h).await {
                let why = format!("cannot remove a failed container: {}", error_chain(&e));
                self.action_failed(
                    &lease.entry().key,
                    id,
                    "removal failed; will retry",
                    &why,
                    false,
                );
                if !self.is_shutting_down() {
                    tokio::select! {
                        _ = tokio::time::sleep(REMOVE_RETRY_DELAY) => {}
                        _ = self.cancelled().cancelled() => {}
                    }
                }
                return;
            }
        }
        let c = Change::new(id, ContainerState::Failed, ContainerState::Stopped, now());
        if let Err(e) = self.store.change(c).await {
            tracing::warn!(container_id = %id, error = %e, "cannot record removed container; will retry");
            return;
        }
        lease.commit();
    }

    /// A ready or allocated container died: take it out of the pool (ready) or make
    /// its id answer 410 (allocated). Starting and stopping ones are handled by the
    /// task that is starting or stopping them.
    pub(crate) async fn mark_failed(&self, id: ContainerId, reason: &str, code: Option<i32>) {
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
            match self.store.change(c).await {
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

/// Stops every live container at shutdown, once no other work is in flight; with
/// `keep`, ready and allocated ones are left running (with their records) for the
/// next start to adopt. Failed ones are removed; one that cannot be leased or
/// stopped is logged.
pub(crate) async fn stop_all(engine: &Arc<Engine>, keep: bool) {
    let kept = |e: &crate::registry::Entry| {
        keep && matches!(e.state, ContainerState::Ready | ContainerState::Allocated)
    };
    // A stop that fails leaves a failed record; the next round removes it.
    for _ in 0..3 {
        let mut tasks = tokio::task::JoinSet::new();
        for (id, e) in engine.registry.live() {
            if kept(&e) {
                continue;
            }
            let Some(lease) = engine.registry.lease(id) else {
                continue;
            };
            let engine = engine.clone();
            tasks.spawn(async move {
                match e.state {
                    ContainerState::Failed => engine.remove_failed(lease).await,
                    // Every launch has ended before this runs, so a record still
                    // `starting` (or `stopping`) is one whose task gave up: make sure
                    // nothing runs, and close it.
                    ContainerState::Starting | ContainerState::Stopping => {
                        if let Some(h) = &e.handle {
                            let _ = engine.destroy(id, h).await;
                        }
                        let c = Change::new(id, e.state, ContainerState::Stopped, now())
                            .reason("shutdown");
                        if engine.store.change(c).await.is_ok() {
                            lease.commit();
                        }
                    }
                    s => engine.stop_container(lease, s, "shutdown").await,
                }
            });
        }
        if tasks.is_empty() {
            break;
        }
        while tasks.join_next().await.is_some() {}
    }
    let left = engine
        .registry
        .live()
        .iter()
        .filter(|(_, e)| !kept(e))
        .count();
    if left > 0 {
        tracing::warn!(left, "containers still live at shutdown");
    }
}
