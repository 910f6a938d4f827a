//! Health probes of ready containers: a container that stops answering its health
//! path while it waits in the pool (hung, deadlocked, out of file descriptors) is
//! failed and replaced, as a dead one would be, instead of being handed out.
//! Allocated containers belong to their client and are not probed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use warmpool_core::{ContainerId, ContainerState};
use warmpool_store::Change;

use crate::tasks::Outcome;
use crate::{now, Engine};

/// Failed probes in a row after which a ready container is failed.
pub const FAILURES: u32 = 3;

/// Failed probes in a row, per ready container, kept between runs.
#[derive(Default)]
pub(crate) struct Failures(Mutex<HashMap<ContainerId, u32>>);

/// One round: probes every ready container once, at the same time.
pub(crate) async fn probe_ready(engine: &Arc<Engine>, failures: &Failures) -> Outcome {
    let probe = &engine.probe;
    let ready: Vec<(ContainerId, String, Arc<str>)> = engine
        .registry
        .live()
        .into_iter()
        .filter(|(_, e)| e.state == ContainerState::Ready && !e.leased)
        .filter_map(|(id, e)| {
            let path = engine.template(&e.key.pool, e.revision).health_path.clone();
            Some((id, e.address?, path.into()))
        })
        .collect();
    let answers = join_all(
        ready
            .iter()
            .map(|(id, address, path)| async move { (*id, probe.check(address, path).await) }),
    )
    .await;
    let mut to_fail = Vec::new();
    {
        let mut failures = failures.0.lock().unwrap_or_else(|e| e.into_inner());
        // Forget containers that are no longer ready.
        failures.retain(|id, _| ready.iter().any(|(r, _, _)| r == id));
        for (id, ok) in &answers {
            if *ok {
                failures.remove(id);
                continue;
            }
            let n = failures.entry(*id).or_default();
            *n += 1;
            if *n >= FAILURES {
                failures.remove(id);
                to_fail.push(*id);
            }
        }
    }
    // Those that answered still wait in the pool: keep the proxy's
    // connection to each open.
    for ((id, ok), (_, address, path)) in answers.iter().zip(&ready) {
        if *ok {
            engine.ready(*id, address, path);
        }
    }
    let failed = to_fail.len();
    for id in to_fail {
        fail_unresponsive(engine, id).await;
    }
    let unanswered = answers.iter().filter(|(_, ok)| !ok).count();
    Outcome::said(format!(
        "{} probed, {unanswered} unanswered, {failed} failed",
        answers.len()
    ))
}

/// Fails a ready container that stopped answering; the reconciler removes and
/// replaces it. Leased first, so no claim gets it meanwhile; if a claim got there
/// first, it is left to its client.
async fn fail_unresponsive(engine: &Arc<Engine>, id: ContainerId) {
    let Some(lease) = engine.registry.lease(id) else {
        return;
    };
    if lease.entry().state == ContainerState::Ready {
        let reason = format!("stopped answering its health probe ({FAILURES} failures in a row)");
        tracing::warn!(container_id = %id, pool = %lease.entry().key, "{reason}");
        let c =
            Change::new(id, ContainerState::Ready, ContainerState::Failed, now()).reason(reason);
        if engine.store.change(c).await.is_ok() {
            lease.commit();
        }
        engine.activate();
    }
}
