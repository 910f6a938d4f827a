//! The claim path, whole: hand out a ready container (durably), or start one on
//! demand; deliver the claim's set-up (files, the bind hook, text) before its id
//! is returned; count it in the metrics and the history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use warmpool_core::{ContainerId, ContainerState, Location, PoolKey, Timestamp};
use warmpool_runtime::RuntimeError;
use warmpool_store::{Change, StoreError};

use crate::config::Bind;
use crate::lifecycle::LaunchError;
use crate::registry::{GiveBack, Lease};
use crate::{error_chain, now, Engine, Pool};

/// What a client asks for. The HTTP layer has validated it against the pools.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// The pool to claim from: the first to give a warm container, and the one
    /// an on-demand start goes to.
    pub pool: Arc<Pool>,
    /// Further pools a warm container may come from, tried in order after
    /// `pool` (a claim by selector: every pool that matches it).
    pub fallbacks: Vec<Arc<Pool>>,
    pub location: Location,
    /// `None`: the maximum lifetime of the pool it comes from.
    pub lifetime: Option<Duration>,
    /// `None`: the idle timeout of the pool it comes from.
    pub idle_timeout: Option<Duration>,
    /// What the container is given before the claim is answered.
    pub setup: Setup,
}

/// A claim's set-up, delivered before its id is returned: files (written by the
/// runtime where it can), the app's `/admin/bind` hook (env, secret env, files,
/// labels, metadata) and text (`/admin/update-text`). Labels and metadata are
/// also stored with the container; secret env never is, and `Debug` shows only
/// names.
#[derive(Clone, Default)]
pub struct Setup {
    pub env: BTreeMap<String, String>,
    /// Never written to the store, the log, events or metrics.
    pub secret_env: BTreeMap<String, String>,
    /// Relative paths (checked by the caller) and contents.
    pub files: Vec<(String, Vec<u8>)>,
    pub labels: BTreeMap<String, String>,
    /// Raw JSON text, checked by the caller.
    pub metadata: Option<String>,
    /// Set through the app's `/admin/update-text`.
    pub text: Option<String>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("secret_env", &self.secret_env.keys().collect::<Vec<_>>())
            .field(
                "files",
                &self
                    .files
                    .iter()
                    .map(|(p, c)| (p, c.len()))
                    .collect::<Vec<_>>(),
            )
            .field("labels", &self.labels)
            .field("metadata_bytes", &self.metadata.as_ref().map(String::len))
            .field("text_bytes", &self.text.as_ref().map(String::len))
            .finish()
    }
}

impl Setup {
    /// Env (plain or secret) the app must be given.
    pub fn has_env(&self) -> bool {
        !self.env.is_empty() || !self.secret_env.is_empty()
    }

    /// Anything for the bind hook.
    fn for_hook(&self) -> bool {
        self.has_env()
            || !self.files.is_empty()
            || !self.labels.is_empty()
            || self.metadata.is_some()
    }

    /// The env a container started for this claim gets (`bind = "none"`).
    fn start_env(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .chain(&self.secret_env)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The bind hook's body: `{env, files, labels, metadata}`, the secret env
    /// in `env` (the app cannot tell them apart, and need not).
    fn hook_body(&self) -> Vec<u8> {
        use std::fmt::Write;
        let mut env = serde_json::Map::new();
        for (k, v) in self.env.iter().chain(&self.secret_env) {
            env.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        let files: serde_json::Map<String, serde_json::Value> = self
            .files
            .iter()
            .map(|(p, c)| {
                (
                    p.clone(),
                    serde_json::Value::String(String::from_utf8_lossy(c).into_owned()),
                )
            })
            .collect();
        let mut out = String::from("{\"env\":");
        out.push_str(&serde_json::Value::Object(env).to_string());
        let _ = write!(
            out,
            ",\"files\":{},\"labels\":{},\"metadata\":{}}}",
            serde_json::Value::Object(files),
            serde_json::to_string(&self.labels).expect("a map of strings serialises"),
            self.metadata.as_deref().unwrap_or("null"),
        );
        out.into_bytes()
    }
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

/// A claimed container that did not take its set-up; it was released (stopped),
/// never handed out.
#[derive(Debug, thiserror::Error)]
#[error("the claimed container could not be set up at step {step} ({detail}); it was released")]
pub struct SetupError {
    /// `files`, `bind` or `text`.
    pub step: &'static str,
    pub detail: String,
}

/// Attempts on containers that vanish between being picked and being recorded.
const MAX_PICKS: usize = 16;

impl Engine {
    /// Claims a container as `req` says, with everything that goes with a claim:
    /// the metrics, the history, and the set-up.
    ///
    /// The claim is committed to the store before this returns, so after a crash
    /// the id still routes. Two claims never get the same container: a ready
    /// container is leased out of its queue under the registry lock, and the
    /// store's compare-and-set (`ready -> allocated`) refuses a second claim
    /// regardless. A container that does not take its set-up is released, and
    /// the claim fails with [`ClaimError::Setup`].
    pub async fn claim(self: &Arc<Self>, req: ClaimRequest) -> Result<Claimed, ClaimError> {
        let began = Instant::now();
        let result = self.take(&req).await;
        let took = began.elapsed();
        self.metrics.claim_seconds.observe(took.as_secs_f64());
        let key = |pool: &str| PoolKey::new(pool, req.location);
        match &result {
            Ok((c, _)) => {
                self.history.record_claim(took);
                self.metrics
                    .claim(&key(&c.pool), if c.warm { "hit" } else { "miss" });
            }
            Err(_) => self.metrics.claim(&key(&req.pool.name), "rejected"),
        }
        let (claimed, pool) = result?;
        self.set_up(&claimed, &pool, &req.setup)
            .await
            .map_err(ClaimError::Setup)?;
        Ok(claimed)
    }

    /// A warm container if there is one (from `pool`, then each fallback),
    /// else one started on demand in `pool`; with the pool it came from.
    async fn take(
        self: &Arc<Self>,
        req: &ClaimRequest,
    ) -> Result<(Claimed, Arc<Pool>), ClaimError> {
        if self.is_shutting_down() {
            return Err(ClaimError::ShuttingDown);
        }
        let claimed = |pool: &Pool, id, expires_at, warm| Claimed {
            id,
            pool: pool.name.clone(),
            location: req.location,
            expires_at,
            warm,
        };
        let env = req.setup.has_env();
        for pool in std::iter::once(&req.pool).chain(&req.fallbacks) {
            // Env without a hook: only a container started with it will do.
            if env && pool.spec.bind == Bind::None {
                continue;
            }
            let key = pool.key(req.location);
            for _ in 0..MAX_PICKS {
                let Some(lease) = self.registry.pop_ready(&key, pool.launch_revision) else {
                    break;
                };
                match self.allocate(lease, pool, req).await {
                    Ok((id, expires_at)) => {
                        self.count_claim(&key, pool.spec.scaling.is_some());
                        self.registry.hit(&key);
                        self.activate();
                        return Ok((claimed(pool, id, expires_at, true), pool.clone()));
                    }
                    // It died or was stopped while we picked it: take the next one.
                    Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
                    Err(e) => return Err(self.store_failed(&key, e)),
                }
            }
        }

        let pool = &req.pool;
        let key = pool.key(req.location);
        self.count_claim(&key, pool.spec.scaling.is_some());
        self.registry.miss(&key);
        self.activate();
        let max = self.config.max_instances;
        let id = self
            .registry
            .try_launch_on_demand(&key, pool.launch_revision, now(), max)
            .ok_or(ClaimError::AtCapacity { max })?;
        // A container started with a claim's env is that claim's alone: if the
        // claim cannot take it, it is stopped, never pooled.
        let own_env = if env && pool.spec.bind == Bind::None {
            req.setup.start_env()
        } else {
            Vec::new()
        };
        let private = !own_env.is_empty();
        let (tx, rx) = oneshot::channel::<Result<(), LaunchError>>();
        let engine = self.clone();
        let task_key = key.clone();
        let revision = pool.launch_revision;
        self.spawn_work(async move {
            let result = engine.launch(id, task_key, revision, true, own_env).await;
            if let Err(Ok(())) = tx.send(result) {
                // The claim stopped waiting.
                engine.abandon_on_demand(id, private).await;
            }
        });
        let timeout = self.config.claim_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => {
                let give_back = if private {
                    GiveBack::Nothing
                } else {
                    // Dropped uncommitted (the claim could not be recorded),
                    // the container joins the pool.
                    GiveBack::JoinPool
                };
                let Some(lease) = self.registry.lease_with(id, give_back) else {
                    return Err(ClaimError::StartFailed(
                        "the container was taken meanwhile".into(),
                    ));
                };
                match self.allocate(lease, pool, req).await {
                    Ok((id, expires_at)) => {
                        Ok((claimed(pool, id, expires_at, false), pool.clone()))
                    }
                    Err(e) => {
                        if private {
                            self.abandon_on_demand(id, true).await;
                        }
                        Err(self.store_failed(&key, e))
                    }
                }
            }
            Ok(Ok(Err(LaunchError::ShuttingDown))) => Err(ClaimError::ShuttingDown),
            Ok(Ok(Err(e))) => Err(ClaimError::StartFailed(error_chain(&e))),
            Ok(Err(_)) => Err(ClaimError::StartFailed("the start task ended".into())),
            Err(_) => Err(ClaimError::Timeout(timeout)),
        }
    }

    /// An on-demand container whose claim did not take it: it serves the pool,
    /// unless it was started with that claim's env (then it is stopped).
    async fn abandon_on_demand(&self, id: ContainerId, private: bool) {
        if !private {
            self.registry.join_pool(id);
            self.activate();
            return;
        }
        if let Some(lease) = self.registry.lease(id) {
            let from = lease.entry().state;
            self.stop_container(lease, from, "started for a claim that did not take it")
                .await;
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

    /// Records `ready -> allocated` with the claim's labels and metadata (the
    /// commit hook publishes the route), then commits the lease; on an error
    /// the lease gives the container back.
    async fn allocate(
        &self,
        lease: Lease,
        pool: &Pool,
        req: &ClaimRequest,
    ) -> Result<(ContainerId, Timestamp), StoreError> {
        let id = lease.id();
        let at = now();
        let expires_at = at + req.lifetime.unwrap_or(pool.spec.max_lifetime);
        let mut c =
            Change::new(id, ContainerState::Ready, ContainerState::Allocated, at).reason("claimed");
        c.expires_at = Some(expires_at);
        c.idle_timeout = req.idle_timeout.or(pool.spec.idle_timeout);
        c.labels = req.setup.labels.clone();
        c.metadata = req.setup.metadata.clone();
        self.store.change(c).await?;
        lease.commit();
        Ok((id, expires_at))
    }

    /// Delivers a just-claimed container's set-up: its files (by the runtime),
    /// the bind hook, its text. If a step fails, the container is released
    /// (never leaked, never handed out).
    async fn set_up(
        &self,
        claimed: &Claimed,
        pool: &Pool,
        setup: &Setup,
    ) -> Result<(), SetupError> {
        let result = self.deliver(claimed, pool, setup).await;
        let Err(e) = result else {
            return Ok(());
        };
        tracing::info!(container_id = %claimed.id, step = e.step, error = %e.detail, "a claimed container could not be set up");
        if let Some(lease) = self.registry.lease(claimed.id) {
            let reason = format!("set-up failed at step {}", e.step);
            self.stop_container(lease, ContainerState::Allocated, &reason)
                .await;
        }
        Err(e)
    }

    async fn deliver(
        &self,
        claimed: &Claimed,
        pool: &Pool,
        setup: &Setup,
    ) -> Result<(), SetupError> {
        let fail = |step, detail: String| SetupError { step, detail };
        let entry = self.registry.get(&claimed.id);
        let address = entry.as_ref().and_then(|e| e.address.clone());
        // The runtime's write of the files and the hook run at once (the hook is
        // given the files too); both are done before the claim answers. Files
        // the runtime wrote need no hook; the rest only the hook delivers.
        let write_files = async {
            if setup.files.is_empty() {
                return Ok(());
            }
            let handle = entry
                .as_ref()
                .and_then(|e| e.handle.clone())
                .unwrap_or_default();
            let template = self.template(
                &pool.name,
                entry.as_ref().map_or(pool.launch_revision, |e| e.revision),
            );
            self.runtime
                .write_files(claimed.id, &handle, &template, &setup.files)
                .await
        };
        let call_hook = async {
            if pool.spec.bind == Bind::None || !setup.for_hook() {
                return None;
            }
            Some(match &address {
                Some(address) => {
                    self.post_to_app(
                        address,
                        "/admin/bind",
                        "application/json",
                        setup.hook_body(),
                    )
                    .await
                }
                None => Err("the container has no address".to_owned()),
            })
        };
        let (files, hook) = tokio::join!(write_files, call_hook);
        let mut hook_must_deliver = setup.has_env() && pool.spec.bind != Bind::None;
        match files {
            Ok(()) => {}
            Err(RuntimeError::CannotWriteFiles { .. }) if pool.spec.bind != Bind::None => {
                hook_must_deliver = true;
            }
            Err(e) => return Err(fail("files", error_chain(&e))),
        }
        if let Some(answer) = hook {
            let required = pool.spec.bind == Bind::Required || hook_must_deliver;
            match answer {
                Ok(status) if (200..300).contains(&status) => {}
                Ok(404 | 405 | 501) if !required => {}
                Ok(status @ (404 | 405 | 501)) => {
                    let why = if pool.spec.bind == Bind::Required {
                        "the pool's bind is required"
                    } else {
                        "only the hook can deliver this claim's env or files"
                    };
                    return Err(fail(
                        "bind",
                        format!(
                            "the app has no /admin/bind hook (it answered {status}), and {why}"
                        ),
                    ));
                }
                Ok(status) => return Err(fail("bind", format!("/admin/bind answered {status}"))),
                Err(e) => return Err(fail("bind", e)),
            }
        }
        if let Some(text) = &setup.text {
            let result = match &address {
                Some(a) => match self
                    .post_to_app(
                        a,
                        "/admin/update-text",
                        "text/plain; charset=utf-8",
                        text.clone().into_bytes(),
                    )
                    .await
                {
                    Ok(status) if (200..300).contains(&status) => Ok(()),
                    Ok(status) => Err(format!("the container answered {status}")),
                    Err(e) => Err(e),
                },
                None => Err("the container has no address".into()),
            };
            result.map_err(|e| fail("text", e))?;
        }
        Ok(())
    }
}
