//! The Kubernetes runtime: one Pod per container in a configured namespace, placed
//! by location through node selectors, followed through a pod watch (readiness,
//! exits, pods deleted behind warmpool's back). The only crate that depends on kube
//! and k8s-openapi.
//!
//! It writes no claim's files into a pod (`Runtime::write_files` answers
//! `CannotWriteFiles`: warmpool is granted no exec rights); they reach the app
//! through its `/admin/bind` hook, and the app finds its template's files dir in
//! `WARMPOOL_FILES_DIR`.

#[cfg(feature = "fake")]
pub mod fake;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use warmpool_core::ContainerId;
use warmpool_runtime::watch::{follow, ExitLedger, Relist, WatchTask, Watched, RELIST_EVERY};
use warmpool_runtime::{
    ContainerSpec, Inspection, OwnedContainer, Runtime, RuntimeError, RuntimeEvent, Started,
};

use spec::{build_pod, container_id_of, owned_selector, pod_name, pod_state};
pub use spec::{Placement, PodSettings, PodState};

/// How the runtime reaches the cluster and what its pods look like.
#[derive(Clone, Debug)]
pub struct KubernetesConfig {
    pub instance_id: String,
    /// Namespace of the pods (warmpool's Role grants pods there).
    pub namespace: String,
    /// Port the app listens on in its pod (`PORT`).
    pub container_port: u16,
    pub placement: Placement,
    /// A kubeconfig file; `None`: `KUBECONFIG` or `~/.kube/config`, else the
    /// in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
}

/// Used when a template sets no start timeout.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a wait relies on the watch alone before it also asks for the pod.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// What a graceful delete may take beyond its grace period before it is forced.
const DELETE_SLACK: Duration = Duration::from_secs(10);

pub struct KubernetesRuntime {
    pods: Api<Pod>,
    settings: PodSettings,
    /// Containers started or adopted, and which of them ended.
    ledger: ExitLedger,
    /// The last state seen of each pod of ours, by container id.
    seen: Mutex<HashMap<ContainerId, PodState>>,
    /// The relist the watcher is doing (between its `Init` and `InitDone`), and the
    /// pods it listed so far.
    initial: Mutex<Option<(Relist, HashSet<ContainerId>)>>,
    /// Bumped on every change the watch applies, so waits wake up.
    changed: watch::Sender<u64>,
    watch: WatchTask,
}

/// Maps a kube error to the runtime's kinds by status code (never by message):
/// 404 is not found; 429 and 5xx (and no answer at all) can pass by waiting; 403
/// and the rest need a change, named with the API server's own message.
fn map_error(e: kube::Error) -> RuntimeError {
    match e {
        kube::Error::Api(s) => {
            let what = if s.message.is_empty() {
                &s.reason
            } else {
                &s.message
            };
            match s.code {
                403 => RuntimeError::Api {
                    status: Some(403),
                    message: format!(
                        "kubernetes API forbids it (403; check warmpool's Role): {what}"
                    ),
                    retryable: false,
                },
                code => RuntimeError::answered("kubernetes API", code, what),
            }
        }
        other => RuntimeError::unreachable("kubernetes API", other),
    }
}

impl KubernetesRuntime {
    /// Connects with the configured kubeconfig, else `KUBECONFIG`/`~/.kube/config`,
    /// else the in-cluster service account; checks the namespace can be listed and
    /// starts watching.
    pub async fn connect(cfg: KubernetesConfig) -> Result<Arc<Self>, RuntimeError> {
        let config = match &cfg.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    RuntimeError::Config(format!("kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| {
                        RuntimeError::Config(format!("kubeconfig {}: {e}", path.display()))
                    })?
            }
            None => kube::Config::infer().await.map_err(|e| {
                RuntimeError::Config(format!("no kubernetes configuration found: {e}"))
            })?,
        };
        let client = kube::Client::try_from(config)
            .map_err(|e| RuntimeError::Config(format!("kubernetes client: {e}")))?;
        let rt = Self::new(client, cfg);
        rt.pods
            .list(
                &ListParams::default()
                    .labels(&owned_selector(&rt.settings.instance_id))
                    .limit(1),
            )
            .await
            .map_err(map_error)?;
        Ok(rt)
    }

    /// The runtime over an existing client (tests give one talking to a fake or a
    /// mock); starts the pod watch.
    pub fn new(client: kube::Client, cfg: KubernetesConfig) -> Arc<Self> {
        let rt = Self::without_watch(client, cfg);
        rt.watch.start(watch_pods(
            Arc::downgrade(&rt),
            rt.pods.clone(),
            owned_selector(&rt.settings.instance_id),
        ));
        rt
    }

    /// The runtime without its watch: requests only (the request-level tests).
    pub fn without_watch(client: kube::Client, cfg: KubernetesConfig) -> Arc<Self> {
        Arc::new(Self {
            pods: Api::namespaced(client, &cfg.namespace),
            settings: PodSettings {
                instance_id: cfg.instance_id,
                container_port: cfg.container_port,
                placement: cfg.placement,
            },
            ledger: ExitLedger::new(),
            seen: Mutex::default(),
            initial: Mutex::default(),
            changed: watch::channel(0).0,
            watch: WatchTask::default(),
        })
    }

    /// Applies what the watch (or a GET) saw of a pod.
    fn on_pod(&self, pod: &Pod, deleted: bool) {
        let Some(id) = container_id_of(pod) else {
            return;
        };
        let state = pod_state(pod);
        {
            // Held while reporting: an end is reported in the order it was seen.
            let mut seen = self.seen.lock().unwrap();
            if deleted {
                let last = seen.remove(&id);
                let (code, detail) = match last.filter(|s| !s.is_running()) {
                    Some(s @ PodState::Terminated { code, .. }) => (code, s.exit_detail()),
                    _ => (None, "pod deleted".to_owned()),
                };
                self.ledger.report(id, code, detail);
            } else {
                if let PodState::Terminated { code, .. } = &state {
                    self.ledger.report(id, *code, state.exit_detail());
                } else if pod.metadata.deletion_timestamp.is_some() {
                    self.ledger.report(id, None, "pod is being deleted");
                }
                seen.insert(id, state);
            }
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// After a list begun with `relist` that held the pods `listed`: every pod
    /// known before it that the list misses is gone.
    fn on_relisted(&self, relist: Relist, listed: &HashSet<ContainerId>) {
        let gone = self.ledger.relisted(
            relist,
            listed,
            "pod gone (found missing when re-listing pods)",
        );
        {
            let mut seen = self.seen.lock().unwrap();
            for id in &gone {
                seen.remove(id);
            }
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Lists this instance's pods and compares with what is known (after the
    /// watch failed: a dropped connection resumes from its resourceVersion, which
    /// loses nothing the server still has, but warmpool does not rely on that).
    async fn relist_pods(&self) -> Result<(), RuntimeError> {
        let relist = self.ledger.begin_relist();
        let list = self
            .pods
            .list(&ListParams::default().labels(&owned_selector(&self.settings.instance_id)))
            .await
            .map_err(map_error)?;
        let mut listed = HashSet::new();
        for pod in &list.items {
            if let Some(id) = container_id_of(pod) {
                listed.insert(id);
                self.on_pod(pod, false);
            }
        }
        self.on_relisted(relist, &listed);
        Ok(())
    }

    /// The pod's state as last seen; `None` when not seen (yet) or deleted.
    fn seen(&self, id: ContainerId) -> Option<PodState> {
        self.seen.lock().unwrap().get(&id).cloned()
    }

    /// Asks the API server for the pod and records what it says; `Ok(None)`: gone.
    async fn refresh(&self, id: ContainerId, name: &str) -> Result<Option<PodState>, RuntimeError> {
        match self.pods.get_opt(name).await.map_err(map_error)? {
            Some(pod) => {
                self.on_pod(&pod, false);
                Ok(Some(pod_state(&pod)))
            }
            None => {
                self.seen.lock().unwrap().remove(&id);
                Ok(None)
            }
        }
    }

    /// Waits until `done` says something of the pod's state (`None`: the pod is
    /// gone), or until `deadline`. Woken by the watch; asks the API server itself
    /// when the watch has been quiet for a while.
    async fn wait_for<T>(
        &self,
        id: ContainerId,
        name: &str,
        deadline: Instant,
        mut done: impl FnMut(Option<&PodState>) -> Option<T>,
    ) -> Result<Option<T>, RuntimeError> {
        let mut changes = self.changed.subscribe();
        let mut state = self.refresh(id, name).await?;
        loop {
            if let Some(t) = done(state.as_ref()) {
                return Ok(Some(t));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = (deadline - now).min(POLL_EVERY);
            match tokio::time::timeout(wait, changes.changed()).await {
                Ok(Ok(())) => {
                    state = self.seen(id);
                    if state.is_none() {
                        state = self.refresh(id, name).await?;
                    }
                }
                _ => state = self.refresh(id, name).await?,
            }
        }
    }

    /// Deletes pod `name` with `grace`; returns whether it is still there (being
    /// deleted) rather than gone.
    async fn delete(&self, name: &str, grace: Duration) -> Result<bool, RuntimeError> {
        let dp = DeleteParams {
            grace_period_seconds: Some(grace.as_secs_f64().ceil() as u32),
            ..DeleteParams::default()
        };
        match self.pods.delete(name, &dp).await.map_err(map_error) {
            // The pod, being deleted; or the status of a deletion done.
            Ok(answer) => Ok(answer.is_left()),
            // Already gone.
            Err(RuntimeError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a pod that failed to start, without waiting.
    async fn discard(&self, id: ContainerId, name: &str) {
        self.ledger.forget(id);
        if let Err(e) = self.delete(name, Duration::ZERO).await {
            tracing::warn!(pod = name, error = %e, "cannot delete a pod that failed to start");
        }
    }

    fn address(&self, ip: &str) -> String {
        if ip.contains(':') {
            format!("[{ip}]:{}", self.settings.container_port)
        } else {
            format!("{ip}:{}", self.settings.container_port)
        }
    }
}

/// The error of a start that can no longer succeed: the pod is gone (deleted
/// `when`), its container terminated, or it is broken (image, config); `None`
/// while it may still get there.
fn ended(s: Option<&PodState>, when: &str) -> Option<RuntimeError> {
    match s {
        None => Some(RuntimeError::ExitedEarly {
            code: None,
            detail: format!("pod deleted {when}"),
        }),
        Some(s @ PodState::Terminated { code, .. }) => Some(RuntimeError::ExitedEarly {
            code: *code,
            detail: s.exit_detail(),
        }),
        Some(s @ PodState::Broken { .. }) => Some(RuntimeError::CannotStart(format!(
            "pod cannot start: {}",
            s.exit_detail()
        ))),
        Some(_) => None,
    }
}

/// Follows this instance's pods for as long as the runtime lives. The watcher
/// relists by itself on a 410 Gone (`Init` .. `InitDone`); a failed watch
/// (dropped connection, refused) and every [`RELIST_EVERY`] relist here. Each
/// relist is compared with what is known, so a pod deleted meanwhile is noticed.
async fn watch_pods(rt: Weak<KubernetesRuntime>, pods: Api<Pod>, selector: String) {
    let events =
        watcher::watcher(pods, watcher::Config::default().labels(&selector)).default_backoff();
    follow(&rt, events, RELIST_EVERY).await;
}

#[async_trait]
impl Watched for KubernetesRuntime {
    type Event = Result<Event<Pod>, watcher::Error>;

    async fn relist(&self) {
        if let Err(e) = self.relist_pods().await {
            tracing::warn!(error = %e, "cannot relist kubernetes pods");
        }
    }

    async fn on_event(self: Arc<Self>, event: Self::Event) -> ControlFlow<()> {
        match event {
            Ok(Event::Init) => {
                *self.initial.lock().unwrap() = Some((self.ledger.begin_relist(), HashSet::new()));
            }
            Ok(Event::InitApply(pod)) => {
                if let (Some(id), Some((_, listed))) =
                    (container_id_of(&pod), self.initial.lock().unwrap().as_mut())
                {
                    listed.insert(id);
                }
                self.on_pod(&pod, false);
            }
            Ok(Event::InitDone) => {
                let initial = self.initial.lock().unwrap().take();
                if let Some((relist, listed)) = initial {
                    self.on_relisted(relist, &listed);
                }
            }
            Ok(Event::Apply(pod)) => self.on_pod(&pod, false),
            Ok(Event::Delete(pod)) => self.on_pod(&pod, true),
            // Expired: the watcher relists by itself (Init .. InitDone).
            Err(watcher::Error::WatchError(s)) if s.code == 410 => {
                tracing::debug!("kubernetes pod watch expired (410); relisting");
            }
            Err(e) => {
                tracing::warn!(error = %e, "kubernetes pod watch failed; relisting");
                self.relist().await;
            }
        }
        // kube's watcher reconnects by itself: its stream is never broken.
        ControlFlow::Continue(())
    }
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    /// Creates the pod and waits until it runs and has an IP (for at most the
    /// template's start timeout). A pod no node takes is deleted at the deadline
    /// and the error says why the scheduler refused it.
    async fn start(&self, spec: &ContainerSpec) -> Result<Started, RuntimeError> {
        let pod = build_pod(spec, &self.settings)?;
        let name = pod_name(spec.id);
        self.pods
            .create(&PostParams::default(), &pod)
            .await
            .map_err(map_error)?;
        self.ledger.know(spec.id);
        let timeout = match spec.template.start_timeout {
            t if t.is_zero() => DEFAULT_START_TIMEOUT,
            t => t,
        };
        let deadline = Instant::now() + timeout;
        let mut last = None;
        let outcome = self
            .wait_for(spec.id, &name, deadline, |s| {
                last = s.cloned();
                match s {
                    Some(PodState::Running { ip: Some(ip), .. }) => Some(Ok(self.address(ip))),
                    s => ended(s, "before it ran").map(Err),
                }
            })
            .await;
        let result = match outcome {
            Ok(Some(r)) => r,
            Ok(None) => Err(match last {
                Some(PodState::Unschedulable { message }) => {
                    let selector = self.settings.placement.node_selector(spec.key.location);
                    let selector: Vec<String> =
                        selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    RuntimeError::Unschedulable(format!(
                        "{message} (node selector {})",
                        if selector.is_empty() {
                            "none".to_owned()
                        } else {
                            selector.join(",")
                        }
                    ))
                }
                _ => RuntimeError::StartTimeout(timeout),
            }),
            Err(e) => Err(e),
        };
        match result {
            Ok(address) => Ok(Started {
                handle: name,
                address,
            }),
            Err(e) => {
                self.discard(spec.id, &name).await;
                Err(e)
            }
        }
    }

    /// Waits for the pod's Ready condition (the kubelet probes the health path).
    async fn wait_ready(
        &self,
        spec: &ContainerSpec,
        started: &Started,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + timeout;
        let outcome = self
            .wait_for(spec.id, &started.handle, deadline, |s| match s {
                Some(PodState::Running { ready: true, .. }) => Some(Ok(())),
                s => ended(s, "before it became ready").map(Err),
            })
            .await?;
        outcome.unwrap_or(Err(RuntimeError::StartTimeout(timeout)))
    }

    /// Deletes the pod with `grace` as its grace period (the kubelet sends SIGTERM,
    /// then SIGKILL) and waits until it no longer runs.
    async fn stop(
        &self,
        id: ContainerId,
        handle: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        self.delete(handle, grace).await?;
        let deadline = Instant::now() + grace + DELETE_SLACK;
        let ended = |s: Option<&PodState>| match s {
            None | Some(PodState::Terminated { .. }) => Some(()),
            Some(PodState::Pending { .. } | PodState::Unschedulable { .. }) => Some(()),
            _ => None,
        };
        if self.wait_for(id, handle, deadline, ended).await?.is_some() {
            return Ok(());
        }
        // It outlived its grace period: force it.
        self.delete(handle, Duration::ZERO).await?;
        let deadline = Instant::now() + DELETE_SLACK;
        match self.wait_for(id, handle, deadline, ended).await? {
            Some(()) => Ok(()),
            None => Err(RuntimeError::Timeout {
                what: format!("pod {handle} was deleted but did not end"),
                after: grace + DELETE_SLACK * 2,
            }),
        }
    }

    /// Deletes whatever is left of the pod at once, and waits until the API server
    /// no longer has it; a pod already gone is success.
    async fn remove(&self, id: ContainerId, handle: &str) -> Result<(), RuntimeError> {
        self.ledger.forget(id);
        if !self.delete(handle, Duration::ZERO).await? {
            return Ok(());
        }
        let deadline = Instant::now() + DELETE_SLACK;
        match self
            .wait_for(id, handle, deadline, |s| s.is_none().then_some(()))
            .await?
        {
            Some(()) => Ok(()),
            None => Err(RuntimeError::Timeout {
                what: format!("pod {handle} was deleted but is still there"),
                after: DELETE_SLACK,
            }),
        }
    }

    async fn inspect(&self, id: ContainerId, handle: &str) -> Result<Inspection, RuntimeError> {
        Ok(match self.refresh(id, handle).await? {
            None => Inspection::Gone,
            Some(PodState::Terminated { code, .. }) => Inspection::Exited { code },
            Some(_) => Inspection::Running,
        })
    }

    /// The pods with this instance's labels (never found by name).
    async fn list_owned(&self) -> Result<Vec<OwnedContainer>, RuntimeError> {
        let list = self
            .pods
            .list(&ListParams::default().labels(&owned_selector(&self.settings.instance_id)))
            .await
            .map_err(map_error)?;
        Ok(list
            .items
            .iter()
            .filter_map(|pod| {
                let id = container_id_of(pod)?;
                let state = pod_state(pod);
                let address = match &state {
                    PodState::Running { ip: Some(ip), .. } => Some(self.address(ip)),
                    _ => None,
                };
                Some(OwnedContainer {
                    id,
                    handle: pod.metadata.name.clone()?,
                    address,
                    running: state.is_running() && pod.metadata.deletion_timestamp.is_none(),
                })
            })
            .collect())
    }

    async fn adopt(&self, owned: &OwnedContainer) -> Result<(), RuntimeError> {
        self.ledger.know(owned.id);
        // Ended between the listing and now: report it like any other end.
        if let Some(s @ PodState::Terminated { code, .. }) = self.seen(owned.id) {
            self.ledger.report(owned.id, code, s.exit_detail());
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.ledger.subscribe()
    }
}

#[cfg(test)]
mod requests;
