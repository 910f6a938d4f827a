//! Start-up recovery: adopt what is ours and alive, close the records of what
//! vanished (`lost`), and destroy runtime objects tagged as ours that the store does
//! not know (orphans).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use warmpool_core::{ContainerId, ContainerState};
use warmpool_runtime::{ContainerSpec, OwnedContainer, RuntimeError, Started};
use warmpool_store::{Change, StoreError};

use crate::registry::{Activity, Entry};
use crate::{error_chain, now, Engine};

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("cannot read containers from the store")]
    Read(#[source] StoreError),
    #[error("cannot list the runtime's containers")]
    List(#[source] RuntimeError),
    #[error("cannot close the record of container {id}")]
    Close {
        id: ContainerId,
        #[source]
        source: StoreError,
    },
    #[error("the store could not be read on a blocking thread")]
    Join(#[source] tokio::task::JoinError),
}

/// What recovery did, for the log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub adopted: usize,
    pub lost: usize,
    pub orphans: usize,
}

pub(crate) async fn recover(engine: &Arc<Engine>) -> Result<Recovered, RecoveryError> {
    let store = engine.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.load_live_blocking())
        .await
        .map_err(RecoveryError::Join)?
        .map_err(RecoveryError::Read)?;
    let owned = engine
        .runtime
        .list_owned()
        .await
        .map_err(RecoveryError::List)?;
    let mut owned: HashMap<_, OwnedContainer> = owned.into_iter().map(|o| (o.id, o)).collect();
    let mut out = Recovered::default();
    let t = now();

    let mut checks = Vec::new();
    for row in rows {
        let found = owned.remove(&row.id);
        let alive = found.as_ref().is_some_and(|o| o.running);
        // A ready container started on demand was started for a claim that
        // had not taken it: it may hold that claim's env (`bind = "none"`), so
        // it is never pooled by a restart.
        let unclaimed_on_demand = row.on_demand && row.state == ContainerState::Ready;
        let keep = alive
            && matches!(row.state, ContainerState::Ready | ContainerState::Allocated)
            && row.address.is_some()
            && !unclaimed_on_demand;
        if keep {
            let o = found.expect("alive implies found");
            let entry = Entry {
                key: warmpool_core::PoolKey::new(row.pool.as_str(), row.location),
                state: row.state,
                on_demand: false,
                revision: row.revision,
                created_at: row.created_at,
                expires_at: row.expires_at,
                handle: Some(o.handle.clone()),
                address: row.address.clone(),
                leased: false,
                queued: false,
                idle_timeout: row.idle_timeout,
                // A restart grants a fresh idle window.
                activity: (row.state == ContainerState::Allocated).then(|| Activity::new(t)),
                idle_check: None,
            };
            checks.push((row.id, o, entry));
            continue;
        }
        // Not adoptable: a start or stop that a crash interrupted, a failed one, or
        // one whose container vanished. Make sure nothing runs, then close the row.
        if let Some(o) = found {
            let _ = engine.destroy(row.id, &o.handle).await;
        }
        let reason = match row.state {
            ContainerState::Starting => "lost (start interrupted)",
            ContainerState::Stopping => "stopped",
            ContainerState::Failed => "failed",
            ContainerState::Ready if unclaimed_on_demand => "lost (started on demand, not claimed)",
            _ => "lost",
        };
        let c = Change::new(row.id, row.state, ContainerState::Stopped, t).reason(reason);
        engine
            .store
            .change(c)
            .await
            .map_err(|source| RecoveryError::Close { id: row.id, source })?;
        out.lost += 1;
    }

    // Adopted containers must still answer before they are trusted again.
    let probes = checks.into_iter().map(|(id, o, entry)| {
        let engine = engine.clone();
        async move {
            engine.runtime.adopt(&o).await.ok();
            let started = Started {
                handle: o.handle.clone(),
                address: entry.address.clone().unwrap_or_default(),
            };
            let spec = ContainerSpec {
                id,
                key: entry.key.clone(),
                template: engine.template(&entry.key.pool, entry.revision),
                revision: entry.revision,
                env: Vec::new(),
            };
            let ok = engine
                .runtime
                .wait_ready(&spec, &started, Duration::from_secs(2))
                .await
                .is_ok();
            (id, o, entry, ok)
        }
    });
    for (id, o, entry, ok) in futures_util::future::join_all(probes).await {
        if ok {
            engine.registry.adopt(id, entry);
            out.adopted += 1;
        } else {
            let _ = engine.destroy(id, &o.handle).await;
            let c = Change::new(id, entry.state, ContainerState::Stopped, t)
                .reason("lost (not answering)");
            engine
                .store
                .change(c)
                .await
                .map_err(|source| RecoveryError::Close { id, source })?;
            out.lost += 1;
        }
    }

    for (id, o) in owned {
        tracing::info!(container_id = %id, handle = %o.handle, "destroying orphan container");
        if let Err(e) = engine.destroy(id, &o.handle).await {
            tracing::warn!(container_id = %id, error = %error_chain(&e), "cannot destroy orphan");
        }
        out.orphans += 1;
    }

    // Ids handed out earlier (including those just closed) keep answering 410
    // rather than 404.
    let store = engine.store.clone();
    let since = t - engine.config.tombstone_retention;
    let ended = tokio::task::spawn_blocking(move || store.load_ended_since_blocking(since))
        .await
        .map_err(RecoveryError::Join)?
        .map_err(RecoveryError::Read)?;
    for row in ended.into_iter().filter(|r| r.allocated_at.is_some()) {
        let reason = row.stop_reason.as_deref().unwrap_or("stopped");
        engine
            .registry
            .tombstone(row.id, reason, row.stopped_at.unwrap_or(t));
    }
    Ok(out)
}
