//! Health probes of ready containers: a container that stops answering its health
//! path while it waits in the pool (hung, deadlocked, out of file descriptors) is
//! failed and replaced, as a dead one would be, instead of being handed out.
//! Allocated containers belong to their client and are not probed.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::watch;
use warmpool_core::{ContainerId, ContainerState};
use warmpool_runtime::HttpProbe;
use warmpool_store::Change;

use crate::app::{now, App};

/// Failed probes in a row after which a ready container is failed.
pub const FAILURES: u32 = 3;

/// Runs until `shutdown` turns true; does nothing when probing is off
/// (`WARMPOOL_PROBE_INTERVAL_SECONDS=0`) or the runtime's addresses are not real.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let every = app.config.probe_interval;
    if every.is_zero() || !app.runtime.reachable() {
        return;
    }
    let probe = HttpProbe::new();
    let mut failures: HashMap<ContainerId, u32> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let ready: Vec<(ContainerId, String, Arc<str>)> = app
            .registry
            .live()
            .into_iter()
            .filter(|(_, e)| e.state == ContainerState::Ready && !e.busy)
            .filter_map(|(id, e)| {
                let path = app.pool_of(&e.key).template.health_path.clone();
                Some((id, e.address?, path.into()))
            })
            .collect();
        let answers = join_all(ready.iter().map(|(id, address, path)| {
            let probe = &probe;
            async move { (*id, probe.check(address, path).await) }
        }))
        .await;
        // Forget containers that are no longer ready.
        failures.retain(|id, _| ready.iter().any(|(r, _, _)| r == id));
        for (id, ok) in answers {
            if ok {
                failures.remove(&id);
                continue;
            }
            let n = failures.entry(id).or_default();
            *n += 1;
            if *n >= FAILURES {
                failures.remove(&id);
                fail_unresponsive(&app, id).await;
            }
        }
    }
}

/// Fails a ready container that stopped answering; the reconciler removes and
/// replaces it. Taken out of the ready queue first (busy), so no claim gets it
/// meanwhile; if a claim got there first, it is left to its client.
async fn fail_unresponsive(app: &App, id: ContainerId) {
    let Some(e) = app.registry.try_begin(id) else {
        return;
    };
    if e.state == ContainerState::Ready {
        let reason = format!("stopped answering its health probe ({FAILURES} failures in a row)");
        tracing::warn!(container_id = %id, pool = %e.key, "{reason}");
        let c =
            Change::new(id, ContainerState::Ready, ContainerState::Failed, now()).reason(reason);
        let _ = app.change(c).await;
        app.activate();
    }
    app.registry.set_busy(id, false);
}
