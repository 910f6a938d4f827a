//! The reconciler driver: re-plans on a timer and on every activation (claims,
//! exits), and runs each planned action as an independent task whose failure is
//! logged, counted and retried by a later pass. It takes no input of its own.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use warmpool_core::ContainerState;
use warmpool_runtime::RuntimeEvent;

use crate::app::{error_chain, now, App};
use crate::registry::Dispatch;

/// Least time between a pass and the next one woken by an activation: a burst of
/// claims (or exits) is served by one pass, so that a pass's cost, which grows with
/// the number of tracked containers, is not paid once per claim. Refills and
/// replacements start at most this much later.
pub const MIN_PASS_GAP: Duration = Duration::from_millis(10);

/// How often tombstones of ended containers are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// One pass: plan against the current state and start the planned work.
pub fn reconcile_once(app: &Arc<App>) -> Option<warmpool_core::Timestamp> {
    let (work, wake) = app.registry.plan_and_dispatch(&app.desired(), now());
    for d in work {
        let app = app.clone();
        match d {
            Dispatch::Launch { id, key } => {
                tokio::spawn(async move {
                    let _ = app.launch(id, key, false).await;
                });
            }
            Dispatch::Stop { id, from, reason } => {
                tokio::spawn(async move { app.stop_container(id, from, reason.as_str()).await });
            }
            Dispatch::Remove { id } => {
                tokio::spawn(async move { app.remove_failed(id).await });
            }
        }
    }
    app.mark_reconciled();
    wake
}

/// Runs until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut last_prune = Instant::now();
    let mut last_sweep = Instant::now();
    loop {
        if *shutdown.borrow() || app.is_shutting_down() {
            return;
        }
        // Tokio's clock (the system's, unless a test pauses it to step the gap below).
        let started = Instant::now();
        let wake = reconcile_once(&app);
        app.metrics.reconcile_passes.inc();
        app.metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
        if last_sweep.elapsed() >= app.config.sweep_interval {
            last_sweep = Instant::now();
            let app = app.clone();
            tokio::spawn(async move { resync(&app).await });
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            app.registry
                .prune_tombstones(now() - app.config.tombstone_retention);
        }
        let mut sleep = app.config.reconcile_interval;
        if let Some(w) = wake {
            sleep = sleep.min(Duration::from_millis(
                w.0.saturating_sub(now().0).max(0) as u64
            ));
        }
        tokio::select! {
            _ = app.activated() => {
                let since = started.elapsed();
                if since < MIN_PASS_GAP {
                    tokio::select! {
                        _ = tokio::time::sleep(MIN_PASS_GAP - since) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Turns runtime events into state changes: an exit of a ready or allocated
/// container marks it failed at once (and so activates the reconciler).
pub async fn watch_runtime(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut events = app.runtime.subscribe();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(RuntimeEvent::Exited { id, code, detail }) => {
                    let app = app.clone();
                    tokio::spawn(async move {
                        app.mark_failed(id, &format!("container exited ({detail})"), code).await;
                    });
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "runtime events lagged; re-listing");
                    resync(&app).await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Compares what the runtime runs with what we know: a ready or allocated
/// container that no longer runs is failed, and a runtime object carrying our tag
/// that we do not know (an orphan: a start cut short, a failed removal) is
/// destroyed.
pub async fn resync(app: &Arc<App>) {
    let owned = match app.runtime.list_owned().await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "cannot list runtime containers");
            return;
        }
    };
    let running: std::collections::HashSet<_> =
        owned.iter().filter(|o| o.running).map(|o| o.id).collect();
    // Listed before this snapshot: anything started since has an entry already,
    // since entries are made before the runtime is asked.
    let live = app.registry.live();
    let known: std::collections::HashSet<_> = live.iter().map(|(id, _)| *id).collect();
    for o in owned.iter().filter(|o| !known.contains(&o.id)) {
        tracing::info!(container_id = %o.id, handle = %o.handle, "destroying orphan container");
        if let Err(e) = app.destroy(o.id, &o.handle).await {
            app.metrics.reconcile_errors.inc();
            tracing::warn!(container_id = %o.id, error = %error_chain(&e), "cannot destroy orphan");
        }
    }
    for (id, e) in live {
        if matches!(e.state, ContainerState::Ready | ContainerState::Allocated)
            && !running.contains(&id)
        {
            app.mark_failed(id, "container exited (found gone)", None)
                .await;
        }
    }
}
