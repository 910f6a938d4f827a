//! The reconcile pass, the sweep, and the runtime-event follower. A pass takes no
//! input of its own: it re-observes the registry, re-plans with `core::plan`, and
//! starts each planned action as independent tracked work whose failure is
//! logged, counted, recorded on its pool, and retried by a later pass.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use warmpool_core::{ContainerState, TRACE_TARGET};
use warmpool_runtime::RuntimeEvent;

use crate::registry::Dispatch;
use crate::tasks::Outcome;
use crate::{error_chain, now, Engine};

pub use warmpool_core::plan::MIN_PASS_GAP;

/// One pass: plan against the current state and start the planned work. Its
/// outcome asks for the next pass when the plan says something will change.
pub(crate) fn pass(engine: &Arc<Engine>) -> Outcome {
    let span = tracing::trace_span!(target: TRACE_TARGET, "reconcile",
        launches = tracing::field::Empty, stops = tracing::field::Empty, removals = tracing::field::Empty);
    // The work it starts is spawned in it, so each launch is a child of its pass.
    let _in_pass = span.enter();
    let started = std::time::Instant::now();
    let at = now();
    let (desired, resized) = engine.scale(at);
    if resized {
        let e = engine.clone();
        engine.spawn_work(async move { e.persist_sizes().await });
    }
    let (work, wake) = engine.registry.plan_and_dispatch(&desired, at);
    let (mut launches, mut stops, mut removals) = (0, 0, 0);
    for d in work {
        let e = engine.clone();
        match d {
            Dispatch::Launch { id, key, revision } => {
                launches += 1;
                e.queue_launch(id, key, revision);
            }
            Dispatch::Stop {
                lease,
                from,
                reason,
            } => {
                stops += 1;
                engine.spawn_work(
                    async move { e.stop_container(lease, from, reason.as_str()).await },
                );
            }
            Dispatch::Remove { lease } => {
                removals += 1;
                engine.spawn_work(async move { e.remove_failed(lease).await });
            }
        }
    }
    // Rollouts that completed or ran out of time are recorded as such.
    for (pool, outcome) in engine.rollouts_due(now()) {
        let e = engine.clone();
        engine.spawn_work(async move { e.end_rollout(&pool, outcome).await });
    }
    span.record("launches", launches);
    span.record("stops", stops);
    span.record("removals", removals);
    engine.mark_reconciled();
    engine.metrics.reconcile_passes.inc();
    engine
        .metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    Outcome {
        summary: format!("{launches} launches, {stops} stops, {removals} removals"),
        next: wake.map(|w| Duration::from_millis(w.0.saturating_sub(now().0).max(0) as u64)),
    }
}

/// Turns runtime events into state changes until `cancel`: an exit of a ready or
/// allocated container marks it failed at once (and so activates the
/// reconciler). Missed events wake the sweep.
pub(crate) async fn follow_runtime(engine: Arc<Engine>, cancel: CancellationToken) {
    let mut events = engine.runtime.subscribe();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(RuntimeEvent::Exited { id, code, detail }) => {
                    let e = engine.clone();
                    engine.spawn_work(async move {
                        e.mark_failed(id, &format!("container exited ({detail})"), code).await;
                    });
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "runtime events lagged; sweeping");
                    engine.activate_sweep();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = cancel.cancelled() => return,
        }
    }
}

/// The sweep: compares what the runtime runs with what the engine knows. A ready
/// or allocated container that no longer runs is failed, and a runtime object
/// carrying our tag that we do not know (an orphan: a start cut short, a failed
/// removal) is destroyed.
pub(crate) async fn sweep(engine: &Arc<Engine>) -> Result<Outcome, String> {
    let owned = engine
        .runtime
        .list_owned()
        .await
        .map_err(|e| format!("cannot list runtime containers: {}", error_chain(&e)))?;
    let running: HashSet<_> = owned.iter().filter(|o| o.running).map(|o| o.id).collect();
    // Listed before this snapshot: anything started since has an entry already,
    // since entries are made before the runtime is asked.
    let live = engine.registry.live_states();
    let known: HashSet<_> = live.iter().map(|(id, _)| *id).collect();
    let (mut orphans, mut gone, mut errors) = (0, 0, Vec::new());
    for o in owned.iter().filter(|o| !known.contains(&o.id)) {
        orphans += 1;
        tracing::info!(container_id = %o.id, handle = %o.handle, "destroying orphan container");
        if let Err(e) = engine.destroy(o.id, &o.handle).await {
            engine.metrics.reconcile_errors.inc();
            let e = format!("cannot destroy orphan {}: {}", o.id, error_chain(&e));
            tracing::warn!(container_id = %o.id, error = %e, "cannot destroy orphan");
            errors.push(e);
        }
    }
    for (id, state) in live {
        if matches!(state, ContainerState::Ready | ContainerState::Allocated)
            && !running.contains(&id)
        {
            gone += 1;
            engine
                .mark_failed(id, "container exited (found gone)", None)
                .await;
        }
    }
    if let Some(first) = errors.first() {
        return Err(format!("{first} ({} errors)", errors.len()));
    }
    Ok(Outcome::said(format!(
        "{} listed, {orphans} orphans destroyed, {gone} found gone",
        owned.len()
    )))
}
