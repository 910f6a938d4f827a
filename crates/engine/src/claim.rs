//! The claim path, whole: hand out a ready container (durably), or start one on
//! demand; deliver the claim's text; count it in the metrics and the history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use warmpool_core::{ContainerId, ContainerState, Location, PoolKey, Timestamp};
use warmpool_store::{Change, StoreError};

use crate::lifecycle::LaunchError;
use crate::registry::{GiveBack, Lease};
use crate::{error_chain, now, Engine, Pool};

/// What a client asks for. The HTTP layer has validated it against the pool.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    pub pool: Arc<Pool>,
    pub location: Location,
    pub lifetime: Duration,
    pub idle_timeout: Option<Duration>,
    /// Set through the app's `/admin/update-text` before the claim is answered.
    pub text: Option<String>,
}

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
    /// The container was claimed, but could not be set up: it was released.
    #[error(transparent)]
    Setup(SetupError),
}

/// A claimed container that did not take its set-up; it was released.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the claimed container did not take its text ({0}); it was released")]
    Text(String),
}

/// Attempts on containers that vanish between being picked and being recorded.
const MAX_PICKS: usize = 16;

impl Engine {
    /// Claims a container as `req` says, with everything that goes with a claim:
    /// the metrics, the history, and the text.
    ///
    /// The claim is committed to the store before this returns, so after a crash
    /// the id still routes. Two claims never get the same container: a ready
    /// container is leased out of its queue under the registry lock, and the
    /// store's compare-and-set (`ready -> allocated`) refuses a second claim
    /// regardless.
    pub async fn claim(self: &Arc<Self>, req: ClaimRequest) -> Result<Claimed, ClaimError> {
        let began = Instant::now();
        let key = req.pool.key(req.location);
        self.count_claim(&key, req.pool.spec.scaling.is_some());
        let result = self.take(&req, &key).await;
        let took = began.elapsed();
        self.metrics.claim_seconds.observe(took.as_secs_f64());
        match &result {
            Ok(c) => {
                self.history.record_claim(took);
                self.metrics
                    .claim(&key, if c.warm { "hit" } else { "miss" });
            }
            Err(_) => self.metrics.claim(&key, "rejected"),
        }
        let claimed = result?;
        if let Some(text) = req.text {
            self.set_text(claimed.id, text)
                .await
                .map_err(ClaimError::Setup)?;
        }
        Ok(claimed)
    }

    /// A warm container if there is one, else one started on demand.
    async fn take(
        self: &Arc<Self>,
        req: &ClaimRequest,
        key: &PoolKey,
    ) -> Result<Claimed, ClaimError> {
        if self.is_shutting_down() {
            return Err(ClaimError::ShuttingDown);
        }
        let claimed = |id, expires_at, warm| Claimed {
            id,
            pool: req.pool.name.clone(),
            location: req.location,
            expires_at,
            warm,
        };
        for _ in 0..MAX_PICKS {
            let Some(lease) = self.registry.pop_ready(key, req.pool.launch_revision) else {
                break;
            };
            match self.allocate(lease, req).await {
                Ok((id, expires_at)) => {
                    self.registry.hit(key);
                    self.activate();
                    return Ok(claimed(id, expires_at, true));
                }
                // It died or was stopped while we picked it: take the next one.
                Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
                Err(e) => return Err(self.store_failed(key, e)),
            }
        }

        self.registry.miss(key);
        self.activate();
        let max = self.config.max_instances;
        let id = self
            .registry
            .try_launch_on_demand(key, req.pool.launch_revision, now(), max)
            .ok_or(ClaimError::AtCapacity { max })?;
        let (tx, rx) = oneshot::channel::<Result<(), LaunchError>>();
        let engine = self.clone();
        let task_key = key.clone();
        let revision = req.pool.launch_revision;
        self.spawn_work(async move {
            let result = engine.launch(id, task_key, revision, true).await;
            if let Err(Ok(())) = tx.send(result) {
                // The claim stopped waiting: the container serves the pool instead.
                engine.registry.join_pool(id);
                engine.activate();
            }
        });
        let timeout = self.config.claim_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => {
                // Dropped uncommitted (the claim could not be recorded), the
                // container joins the pool.
                let Some(lease) = self.registry.lease_with(id, GiveBack::JoinPool) else {
                    return Err(ClaimError::StartFailed(
                        "the container was taken meanwhile".into(),
                    ));
                };
                match self.allocate(lease, req).await {
                    Ok((id, expires_at)) => Ok(claimed(id, expires_at, false)),
                    Err(e) => Err(self.store_failed(key, e)),
                }
            }
            Ok(Ok(Err(LaunchError::ShuttingDown))) => Err(ClaimError::ShuttingDown),
            Ok(Ok(Err(e))) => Err(ClaimError::StartFailed(error_chain(&e))),
            Ok(Err(_)) => Err(ClaimError::StartFailed("the start task ended".into())),
            Err(_) => Err(ClaimError::Timeout(timeout)),
        }
    }

    /// A claim the store could not record: shown as the pool's last error (a full
    /// or failing disk is an operator's problem, to be seen in `GET /v1/pools`).
    fn store_failed(&self, key: &PoolKey, e: StoreError) -> ClaimError {
        let e = ClaimError::Store(e);
        let why = error_chain(&e);
        tracing::warn!(pool = %key, error = %why, "a claim could not be recorded");
        self.registry.record_error(key, why, now(), false);
        e
    }

    /// Records `ready -> allocated` (the commit hook publishes the route), then
    /// commits the lease; on an error the lease gives the container back.
    async fn allocate(
        &self,
        lease: Lease,
        req: &ClaimRequest,
    ) -> Result<(ContainerId, Timestamp), StoreError> {
        let id = lease.id();
        let at = now();
        let expires_at = at + req.lifetime;
        let mut c =
            Change::new(id, ContainerState::Ready, ContainerState::Allocated, at).reason("claimed");
        c.expires_at = Some(expires_at);
        c.idle_timeout = req.idle_timeout;
        self.store.change(c).await?;
        lease.commit();
        Ok((id, expires_at))
    }

    /// Sets a just-claimed container's text through its `/admin/update-text`. If
    /// that fails, the container is released (never leaked, never handed out).
    async fn set_text(&self, id: ContainerId, text: String) -> Result<(), SetupError> {
        let address = self.registry.get(&id).and_then(|e| e.address);
        let result = match address {
            Some(a) => self.probe.post_text(&a, "/admin/update-text", text).await,
            None => Err("the container has no address".into()),
        };
        let Err(failure) = result else {
            return Ok(());
        };
        if let Some(lease) = self.registry.lease(id) {
            self.stop_container(lease, ContainerState::Allocated, "text could not be set")
                .await;
        }
        Err(SetupError::Text(failure))
    }
}
