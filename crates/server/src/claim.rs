//! The claim path: hand out a ready container, durably, or start one on demand.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use warmpool_core::{ContainerId, ContainerState, Location, Timestamp};
use warmpool_store::{Change, StoreError};

use crate::app::{error_chain, now, App, LaunchError, Pool};

/// A successful claim.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: ContainerId,
    pub pool: Arc<str>,
    pub location: Location,
    pub expires_at: Timestamp,
    /// Came from the warm pool (false: started on demand).
    pub warm: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("all {max} container slots are in use")]
    AtCapacity { max: u32 },
    #[error("no container became ready within {0:?}")]
    Timeout(Duration),
    #[error("the on-demand container failed to start: {0}")]
    StartFailed(String),
    #[error("the claim could not be recorded")]
    Store(#[source] StoreError),
    #[error("warmpool is shutting down")]
    ShuttingDown,
}

/// Attempts on containers that vanish between being picked and being recorded.
const MAX_PICKS: usize = 16;

/// Claims a container of `pool` in `location` for `lifetime`.
///
/// The claim is committed to the store before this returns, so after a crash the id
/// still routes. Two claims never get the same container: a ready container is
/// taken out of its queue under the registry lock, and the store's
/// compare-and-set (`ready -> allocated`) refuses a second claim regardless.
pub async fn claim(
    app: &Arc<App>,
    pool: &Pool,
    location: Location,
    lifetime: Duration,
    idle_timeout: Option<Duration>,
) -> Result<Claimed, ClaimError> {
    if app.is_shutting_down() {
        return Err(ClaimError::ShuttingDown);
    }
    let key = pool.key(location);
    for _ in 0..MAX_PICKS {
        let Some(id) = app.registry.pop_ready(&key) else {
            break;
        };
        match allocate(app, id, lifetime, idle_timeout).await {
            Ok(expires_at) => {
                app.registry.hit(&key);
                app.activate();
                return Ok(Claimed {
                    id,
                    pool: pool.name.clone(),
                    location,
                    expires_at,
                    warm: true,
                });
            }
            // It died or was stopped while we picked it: take the next one.
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {
                app.registry.set_busy(id, false);
            }
            Err(e) => {
                app.registry.return_ready(id);
                return Err(store_failed(app, &key, e));
            }
        }
    }

    app.registry.miss(&key);
    app.activate();
    let id = app
        .registry
        .try_launch_on_demand(&key, now(), app.config.max_instances)
        .ok_or(ClaimError::AtCapacity {
            max: app.config.max_instances,
        })?;
    let (tx, rx) = oneshot::channel::<Result<(), LaunchError>>();
    let task_app = app.clone();
    let task_key = key.clone();
    tokio::spawn(async move {
        let result = task_app.launch(id, task_key, true).await;
        if let Err(Ok(())) = tx.send(result) {
            // The claim stopped waiting: the container serves the pool instead.
            task_app.registry.join_pool(id);
            task_app.activate();
        }
    });
    let timeout = app.config.claim_timeout;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(Ok(()))) => {
            app.registry.set_busy(id, true);
            match allocate(app, id, lifetime, idle_timeout).await {
                Ok(expires_at) => Ok(Claimed {
                    id,
                    pool: pool.name.clone(),
                    location,
                    expires_at,
                    warm: false,
                }),
                Err(e) => {
                    app.registry.set_busy(id, false);
                    app.registry.join_pool(id);
                    Err(store_failed(app, &key, e))
                }
            }
        }
        Ok(Ok(Err(e))) => Err(ClaimError::StartFailed(error_chain(&e))),
        Ok(Err(_)) => Err(ClaimError::StartFailed("the start task ended".into())),
        Err(_) => Err(ClaimError::Timeout(timeout)),
    }
}

/// A claim the store could not record: shown as the pool's last error (a full or
/// failing disk is an operator's problem, to be seen in `GET /v1/pools`).
fn store_failed(app: &App, key: &warmpool_core::PoolKey, e: StoreError) -> ClaimError {
    let e = ClaimError::Store(e);
    let why = error_chain(&e);
    tracing::warn!(pool = %key, error = %why, "a claim could not be recorded");
    app.registry.record_error(key, why, now(), false);
    e
}

/// Records `ready -> allocated` and publishes the route.
async fn allocate(
    app: &App,
    id: ContainerId,
    lifetime: Duration,
    idle_timeout: Option<Duration>,
) -> Result<Timestamp, StoreError> {
    let at = now();
    let expires_at = at + lifetime;
    let mut c =
        Change::new(id, ContainerState::Ready, ContainerState::Allocated, at).reason("claimed");
    c.expires_at = Some(expires_at);
    c.idle_timeout = idle_timeout;
    app.change(c).await?;
    app.registry.set_busy(id, false);
    Ok(expires_at)
}
