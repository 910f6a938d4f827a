//! The Docker Engine runtime: containers from each pool's image on a user-defined
//! bridge network, with resource limits and warmpool's labels, watched through the
//! engine's event stream. The only crate that depends on bollard.
//!
//! A claim's files go into a running container without exec, so it works on a
//! `FROM scratch` image: on a read-only root, straight into the files dir's volume
//! through its path on this host when warmpool shares the engine's file system
//! (`host_files`); otherwise as one archive upload (a tar built in memory,
//! extracted at `/` or in that volume). [`DockerRuntime::read_file`] reads one
//! back. Images are pulled as each pool's policy says (`pull`), and containers
//! hardened as its template says (`spec`).

mod files;
mod host_files;
mod pull;
mod spec;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::{
    CreateContainerOptions, DownloadFromContainerOptions, InspectContainerOptions,
    ListContainersOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
    UploadToContainerOptions,
};
use bollard::errors::Error as DockerError;
use bollard::models::EventMessage;
use bollard::network::CreateNetworkOptions;
use bollard::system::EventsOptions;
use bollard::Docker;
use futures_util::TryStreamExt;
use tokio::sync::broadcast;
use warmpool_core::ContainerId;
use warmpool_runtime::watch::{follow, ExitLedger, Stopped, WatchTask, Watched, RELIST_EVERY};
use warmpool_runtime::{
    ContainerSpec, HttpProbe, Inspection, OwnedContainer, PullPolicy, PullStatus, Runtime,
    RuntimeError, RuntimeEvent, Started, Template, SAMPLE_APP_IMAGE,
};

pub use spec::{LABEL_CONTAINER, LABEL_INSTANCE, LABEL_LOCATION, LABEL_POOL};

#[derive(Clone, Debug)]
pub struct DockerConfig {
    pub instance_id: String,
    /// User-defined bridge network the containers join (created if missing).
    pub network: String,
    /// Port the app listens on inside the container (`PORT`).
    pub container_port: u16,
    /// Publish the app's port on 127.0.0.1 (random host port) instead of proxying
    /// to the bridge IP, for hosts that cannot reach bridge IPs.
    pub publish: bool,
    /// The engine's unix socket; `None`: `DOCKER_HOST` or the default socket.
    pub socket: Option<String>,
    /// How long one engine API call may take (a stop also gets its grace period):
    /// a daemon that hangs fails the call with a clear error, instead of holding a
    /// creation or removal for bollard's two minutes.
    pub api_timeout: Duration,
    /// How long one image pull may take.
    pub pull_timeout: Duration,
    /// The Docker config file registry credentials are read from (at each
    /// pull); `None`: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub config_file: Option<std::path::PathBuf>,
}

/// The default of [`DockerConfig::api_timeout`] (`WARMPOOL_DOCKER_TIMEOUT_SECONDS`).
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(10);

/// The default of [`DockerConfig::pull_timeout`]
/// (`WARMPOOL_DOCKER_PULL_TIMEOUT_SECONDS`).
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(600);

pub struct DockerRuntime {
    docker: Docker,
    cfg: DockerConfig,
    probe: HttpProbe,
    /// Containers started or adopted, and which of them ended.
    ledger: ExitLedger,
    /// Containers the engine reported killed for memory (`oom`), until their
    /// `die` is told apart.
    oom: Mutex<HashSet<ContainerId>>,
    disk_supported: bool,
    /// The "no disk limit" warning was logged (once per runtime).
    disk_warned: AtomicBool,
    watch: WatchTask,
    pulls: Arc<pull::Pulls>,
    /// Where each container's files-dir volume is on this host (read-only
    /// roots only).
    volumes: Mutex<HashMap<ContainerId, PathBuf>>,
    /// Whether those paths are the engine's own (warmpool shares its file
    /// system): unknown until the first claim's files, then checked once.
    host_access: std::sync::atomic::AtomicU8,
}

/// [`DockerRuntime::host_access`]: not checked yet, yes, no.
const HOST_UNKNOWN: u8 = 0;
const HOST_YES: u8 = 1;
const HOST_NO: u8 = 2;

/// Where the volume at `files_dir` of an inspected container is on the
/// engine's host.
fn files_source(c: &bollard::models::ContainerInspectResponse, files_dir: &str) -> Option<PathBuf> {
    c.mounts
        .as_ref()?
        .iter()
        .find(|m| {
            m.destination.as_deref() == Some(files_dir)
                && m.typ == Some(bollard::models::MountPointTypeEnum::VOLUME)
        })
        .and_then(|m| m.source.clone())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// What the engine's error means, by HTTP status (never by message); no answer
/// at all is the engine being unreachable.
fn map_error(e: DockerError) -> RuntimeError {
    match e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => RuntimeError::answered("docker", status_code, &message),
        other => RuntimeError::unreachable("docker", chain(&other)),
    }
}

/// Runs one engine call for at most `limit`; past it, the call fails with a
/// [`RuntimeError::Timeout`] saying so (shown as the pool's last error).
async fn within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, DockerError>>,
) -> Result<T, RuntimeError> {
    bounded(limit, async { call.await.map_err(map_error) }).await
}

/// Runs `work` (engine calls) for at most `limit`.
async fn bounded<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, RuntimeError>>,
) -> Result<T, RuntimeError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(RuntimeError::Timeout {
            what: "the Docker Engine did not answer".into(),
            after: limit,
        })
    })
}

/// bollard's own per-request timeout (whole seconds), a little above `limit` so
/// that [`within`] answers first; it also bounds how long the event stream waits
/// for the engine's response headers.
fn client_timeout(limit: Duration) -> Duration {
    Duration::from_secs(limit.as_secs_f64().ceil() as u64 + 1)
}

/// An error and its sources, `a: b: c`: a connection failure's cause (refused,
/// closed before answering) is in its sources, not in its own message.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = cause.source();
    }
    s
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket),
    /// negotiates the API version, makes sure the network exists, and starts
    /// watching events.
    pub async fn connect(cfg: DockerConfig) -> Result<Arc<Self>, RuntimeError> {
        let limit = cfg.api_timeout;
        let docker = match &cfg.socket {
            Some(path) => Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_local_defaults(),
        };
        let docker = docker
            .map_err(map_error)?
            .with_timeout(client_timeout(limit));
        let docker = within(limit, docker.negotiate_version()).await?;
        within(limit, docker.ping()).await?;
        let info = within(limit, docker.info()).await?;
        let driver = info.driver.unwrap_or_default();
        // Only overlay2 on xfs with pquota, btrfs, zfs and devicemapper take a size.
        let disk_supported = matches!(driver.as_str(), "btrfs" | "zfs" | "devicemapper")
            || (driver == "overlay2"
                && info
                    .driver_status
                    .unwrap_or_default()
                    .iter()
                    .any(|kv| kv.iter().any(|v| v == "xfs")));
        if !disk_supported {
            tracing::debug!(storage_driver = %driver, "the storage driver cannot limit container disk size");
        }
        bounded(limit, ensure_network(&docker, &cfg.network)).await?;
        let rt = Arc::new(Self {
            probe: HttpProbe::new(),
            docker,
            cfg,
            ledger: ExitLedger::new(),
            oom: Mutex::default(),
            disk_supported,
            disk_warned: AtomicBool::new(false),
            watch: WatchTask::default(),
            pulls: Arc::default(),
            volumes: Mutex::default(),
            host_access: std::sync::atomic::AtomicU8::new(HOST_UNKNOWN),
        });
        rt.watch.start(watch_events(Arc::downgrade(&rt)));
        Ok(rt)
    }

    /// Whether claim files go straight into containers' files-dir volumes on
    /// this host (`Some(true)`), through the engine's upload (`Some(false)`),
    /// or not known yet (`None`: no claim with files on a read-only root).
    pub fn writes_files_on_host(&self) -> Option<bool> {
        match self.host_access.load(Ordering::Relaxed) {
            HOST_YES => Some(true),
            HOST_NO => Some(false),
            _ => None,
        }
    }

    /// Whether the storage driver takes a disk size (`WARMPOOL_DISK_MB` applies).
    pub fn disk_supported(&self) -> bool {
        self.disk_supported
    }

    /// Where the proxy reaches a container just started, and where its files
    /// dir's volume is on this host (when it has one: a read-only root).
    async fn inspect_started(
        &self,
        handle: &str,
        files_dir: &str,
    ) -> Result<(String, Option<PathBuf>), RuntimeError> {
        let c = self
            .call(
                self.docker
                    .inspect_container(handle, None::<InspectContainerOptions>),
            )
            .await?;
        let source = files_source(&c, files_dir);
        Ok((self.address_of(c, handle)?, source))
    }

    fn address_of(
        &self,
        c: bollard::models::ContainerInspectResponse,
        handle: &str,
    ) -> Result<String, RuntimeError> {
        let ns = c.network_settings.unwrap_or_default();
        let ip = ns
            .networks
            .as_ref()
            .and_then(|n| n.get(&self.cfg.network))
            .and_then(|n| n.ip_address.clone());
        let port_key = spec::port_key(self.cfg.container_port);
        let published = ns
            .ports
            .as_ref()
            .and_then(|p| p.get(&port_key).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port?.parse().ok()));
        spec::address(&self.cfg, ip, published)
            .ok_or_else(|| RuntimeError::NoAddress(handle.to_owned()))
    }

    /// The contents of the regular file at `path` (absolute, inside the
    /// container `handle`), downloaded as an archive (no exec: a `FROM scratch`
    /// image has no `cat`); [`RuntimeError::NotFound`] when there is none. For
    /// tests and diagnostics; bounded by the API timeout.
    pub async fn read_file(&self, handle: &str, path: &str) -> Result<Vec<u8>, RuntimeError> {
        let archive = bounded(self.cfg.api_timeout, async {
            self.docker
                .download_from_container(handle, Some(DownloadFromContainerOptions { path }))
                .map_err(map_error)
                .try_fold(Vec::new(), |mut all, chunk| async move {
                    all.extend_from_slice(&chunk);
                    Ok(all)
                })
                .await
        })
        .await?;
        files::single_file(&archive, path)
    }

    /// Pulls `image` as its pool's `policy` says, before a create (`always`)
    /// or after one that found no image (`if-missing`).
    async fn pull(&self, image: &str, policy: PullPolicy) -> Result<(), RuntimeError> {
        self.pulls
            .pull(
                &self.docker,
                image,
                policy,
                self.cfg.config_file.clone(),
                self.cfg.pull_timeout,
            )
            .await
    }

    /// The files dir's volume of container `id` on this host, when warmpool
    /// can write there itself: the engine's path (kept from its start, or
    /// asked now for an adopted container), on a file system warmpool shares
    /// with the engine. That is checked once, on the first claim's files: a
    /// marker written through the path must read back through the engine.
    async fn host_files_dir(
        &self,
        id: ContainerId,
        handle: &str,
        files_dir: &str,
    ) -> Option<PathBuf> {
        if self.host_access.load(Ordering::Relaxed) == HOST_NO {
            return None;
        }
        let known = self.volumes.lock().unwrap().get(&id).cloned();
        let source = match known {
            Some(s) => s,
            None => {
                let c = self
                    .call(
                        self.docker
                            .inspect_container(handle, None::<InspectContainerOptions>),
                    )
                    .await
                    .ok()?;
                let s = files_source(&c, files_dir)?;
                self.volumes.lock().unwrap().insert(id, s.clone());
                s
            }
        };
        if self.host_access.load(Ordering::Relaxed) == HOST_UNKNOWN {
            let shared = self.check_host_access(handle, &source, files_dir).await;
            if !shared {
                tracing::info!(
                    "the engine's volumes are not on warmpool's file system: claim files are uploaded through the engine"
                );
            }
            self.host_access
                .store(if shared { HOST_YES } else { HOST_NO }, Ordering::Relaxed);
            if !shared {
                return None;
            }
        }
        Some(source)
    }

    /// Whether `source` on this host is the container's `files_dir`: a marker
    /// written there reads back through the engine.
    async fn check_host_access(
        &self,
        handle: &str,
        source: &std::path::Path,
        files_dir: &str,
    ) -> bool {
        let name = format!(".warmpool-host-check-{}", ContainerId::random());
        let mark = ContainerId::random().to_string();
        let marker = vec![(name.clone(), mark.clone().into_bytes())];
        let at = source.to_owned();
        let wrote =
            tokio::task::spawn_blocking(move || host_files::write_beneath(&at, &marker, None))
                .await
                .is_ok_and(|r| r.is_ok());
        if !wrote {
            return false;
        }
        let read = self
            .read_file(
                handle,
                &format!("{}/{name}", files_dir.trim_end_matches('/')),
            )
            .await;
        let _ = std::fs::remove_file(source.join(&name));
        read.is_ok_and(|r| r == mark.as_bytes())
    }

    /// One engine call, bounded by the configured API timeout.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, DockerError>>,
    ) -> Result<T, RuntimeError> {
        within(self.cfg.api_timeout, call).await
    }
}

async fn ensure_network(docker: &Docker, name: &str) -> Result<(), RuntimeError> {
    match docker
        .inspect_network::<String>(name, None)
        .await
        .map_err(map_error)
    {
        Ok(_) => Ok(()),
        Err(RuntimeError::NotFound { .. }) => {
            let created = docker
                .create_network(CreateNetworkOptions {
                    name,
                    driver: "bridge",
                    check_duplicate: true,
                    labels: HashMap::from([("dev.warmpool.network", "true")]),
                    ..Default::default()
                })
                .await
                .map_err(map_error);
            match created {
                Ok(_) => Ok(()),
                // Created meanwhile by another warmpool.
                Err(e) if e.status() == Some(409) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Follows the engine's events for this instance's containers while the runtime
/// lives: `die` (with `oom`), and containers destroyed behind our back. Relists
/// before each (re)connection, so nothing that happened meanwhile is lost, and
/// every [`RELIST_EVERY`]; reconnects a second after the stream breaks.
async fn watch_events(rt: Weak<DockerRuntime>) {
    loop {
        let Some(this) = rt.upgrade() else { return };
        this.relist().await;
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "event".to_owned(),
                vec!["die".to_owned(), "oom".to_owned(), "destroy".to_owned()],
            ),
            (
                "label".to_owned(),
                vec![spec::owned_label(&this.cfg.instance_id)],
            ),
        ]);
        let events = this.docker.events(Some(EventsOptions::<String> {
            filters,
            ..Default::default()
        }));
        drop(this);
        match follow(&rt, events, RELIST_EVERY).await {
            Stopped::RuntimeDropped => return,
            Stopped::StreamEnded => tracing::warn!("docker event stream ended; reconnecting"),
            // Logged by on_event.
            Stopped::Broken => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[async_trait]
impl Watched for DockerRuntime {
    type Event = Result<EventMessage, DockerError>;

    /// Reports every known container that no longer runs and was not reported yet.
    async fn relist(&self) {
        let relist = self.ledger.begin_relist();
        match self.list_listed().await {
            Ok(listed) => {
                // A container being started is listed as created, not running:
                // it has not ended (its start would be failed as an exit).
                let alive: HashSet<_> = listed
                    .iter()
                    .filter(|(_, ended)| !ended)
                    .map(|(o, _)| o.id)
                    .collect();
                self.ledger.relisted(
                    relist,
                    &alive,
                    "exited (found stopped when re-listing containers)",
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot relist docker containers"),
        }
    }

    async fn on_event(self: Arc<Self>, event: Self::Event) -> ControlFlow<()> {
        match event {
            Ok(msg) => {
                self.apply(msg);
                ControlFlow::Continue(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "docker event stream failed; reconnecting");
                ControlFlow::Break(())
            }
        }
    }
}

impl DockerRuntime {
    /// This instance's containers, each with whether it has ended (exited or
    /// dead; a container created but not started yet has not).
    async fn list_listed(&self) -> Result<Vec<(OwnedContainer, bool)>, RuntimeError> {
        let list = self
            .call(
                self.docker
                    .list_containers(Some(ListContainersOptions::<String> {
                        all: true,
                        filters: HashMap::from([(
                            "label".to_owned(),
                            vec![spec::owned_label(&self.cfg.instance_id)],
                        )]),
                        ..Default::default()
                    })),
            )
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let ended = spec::has_ended(c.state.as_deref());
                spec::owned(&self.cfg, c).map(|o| (o, ended))
            })
            .collect())
    }

    /// Whether a container that died with `code` was killed for memory: an `oom`
    /// event, or its state, says so. Only a SIGKILL exit (137) can be one, and for
    /// those the engine may report the OOM a little after the exit, so it is asked
    /// a few times.
    async fn oom_killed(&self, id: ContainerId, handle: &str, code: Option<i32>) -> bool {
        let attempts = if code == Some(137) { 8 } else { 1 };
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if self.oom.lock().unwrap().remove(&id) {
                return true;
            }
            let state_says = self
                .call(
                    self.docker
                        .inspect_container(handle, None::<InspectContainerOptions>),
                )
                .await
                .ok()
                .and_then(|c| c.state?.oom_killed)
                .unwrap_or(false);
            if state_says {
                return true;
            }
        }
        false
    }

    /// Applies one engine event about a container of this instance.
    fn apply(self: &Arc<Self>, msg: EventMessage) {
        let action = msg.action.unwrap_or_default();
        let actor = msg.actor.unwrap_or_default();
        let handle = actor.id.unwrap_or_default();
        let attrs = actor.attributes.unwrap_or_default();
        let Some(id) = attrs
            .get(LABEL_CONTAINER)
            .and_then(|v| v.parse::<ContainerId>().ok())
        else {
            return;
        };
        match action.as_str() {
            "oom" => {
                self.oom.lock().unwrap().insert(id);
            }
            "die" => {
                let code = attrs.get("exitCode").and_then(|c| c.parse::<i32>().ok());
                // Told apart in a task of its own: the stream must go on meanwhile,
                // since the `oom` event can come after `die`.
                let rt = self.clone();
                tokio::spawn(async move {
                    let detail = if rt.oom_killed(id, &handle, code).await {
                        "out of memory (OOM killed)".to_owned()
                    } else {
                        match code {
                            Some(c) => format!("exited with code {c}"),
                            None => "exited".to_owned(),
                        }
                    };
                    rt.ledger.report(id, code, detail);
                });
            }
            "destroy" => {
                self.ledger.report(id, None, "removed from docker");
            }
            _ => {}
        }
    }
}

/// What a start that found no image says: the image and the pull policy (and
/// how to build the sample image, which is never pulled).
fn missing_image(image: &str, policy: PullPolicy) -> String {
    if image == SAMPLE_APP_IMAGE {
        format!("image {image} is not on the Docker Engine; it is built locally, never pulled (build it with scripts/build-sample-image.sh)")
    } else {
        format!(
            "image {image} is not on the Docker Engine, and its pool's pull policy is \"{policy}\""
        )
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn pull_status(&self, image: &str) -> Option<PullStatus> {
        self.pulls.status(image)
    }

    async fn start(&self, spec: &ContainerSpec) -> Result<Started, RuntimeError> {
        let config = spec::create_config(spec, &self.cfg, self.disk_supported)?;
        if spec.template.resources.disk_mb.is_some()
            && !self.disk_supported
            && !self.disk_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!("the storage driver cannot limit container disk size; the disk limit is not applied");
        }
        let image = config.image.clone().unwrap_or_default();
        // The sample image is built here, never pulled: a registry's image of
        // that name is somebody else's.
        let policy = if image == SAMPLE_APP_IMAGE {
            PullPolicy::Never
        } else {
            spec.template.pull
        };
        if policy == PullPolicy::Always && !self.pulls.fresh(&image) {
            self.pull(&image, policy).await?;
        }
        let create = || {
            self.call(self.docker.create_container(
                Some(CreateContainerOptions {
                    name: spec::container_name(spec.id),
                    platform: None,
                }),
                config.clone(),
            ))
        };
        let created = match create().await {
            Err(RuntimeError::NotFound { .. }) if policy == PullPolicy::IfMissing => {
                self.pull(&image, policy).await?;
                create().await
            }
            r => r,
        }
        .map_err(|e| match e {
            RuntimeError::NotFound { .. } => RuntimeError::NotFound {
                message: missing_image(&image, policy),
            },
            e => e,
        })?;
        // Known (so that its end is reported) before it can run.
        self.ledger.know(spec.id);
        if let Err(e) = self
            .call(
                self.docker
                    .start_container(&created.id, None::<StartContainerOptions<String>>),
            )
            .await
        {
            let _ = self.remove(spec.id, &created.id).await;
            return Err(e);
        }
        let address = match self
            .inspect_started(&created.id, spec.template.files_dir())
            .await
        {
            Ok((a, source)) => {
                if let Some(source) = source {
                    self.volumes.lock().unwrap().insert(spec.id, source);
                }
                a
            }
            Err(e) => {
                let _ = self.remove(spec.id, &created.id).await;
                return Err(e);
            }
        };
        Ok(Started {
            handle: created.id,
            address,
        })
    }

    async fn wait_ready(
        &self,
        spec: &ContainerSpec,
        started: &Started,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        self.probe
            .wait_ready(
                &started.address,
                &spec.template.health_path,
                timeout,
                || self.ledger.has_ended(spec.id),
            )
            .await
    }

    async fn stop(
        &self,
        _id: ContainerId,
        handle: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let t = grace.as_secs_f64().ceil() as i64;
        // The engine itself takes up to the grace period to answer.
        let limit = self.cfg.api_timeout + Duration::from_secs(t as u64);
        let docker = self.docker.clone().with_timeout(client_timeout(limit));
        match within(
            limit,
            docker.stop_container(handle, Some(StopContainerOptions { t })),
        )
        .await
        {
            Ok(()) => Ok(()),
            // 304: already stopped; 404: already gone.
            Err(e) if matches!(e.status(), Some(304 | 404)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn remove(&self, id: ContainerId, handle: &str) -> Result<(), RuntimeError> {
        self.ledger.forget(id);
        self.volumes.lock().unwrap().remove(&id);
        self.oom.lock().unwrap().remove(&id);
        match self
            .call(self.docker.remove_container(
                handle,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            ))
            .await
        {
            Ok(()) => Ok(()),
            // 404: already gone; 409: removal already in progress.
            Err(e) if matches!(e.status(), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// On a read-only root whose files dir is a volume warmpool can reach on
    /// this host, the files are written there directly ([`host_files`]).
    /// Otherwise one archive upload, extracted at `/` (or in the files dir's
    /// volume): each file (mode 0644) at `<files dir>/<path>`; the engine creates
    /// missing parents. Bounded by the API timeout. Each file is replaced by the
    /// engine's extraction (not by a rename: there is no exec), which ends
    /// before this returns.
    async fn write_files(
        &self,
        id: ContainerId,
        handle: &str,
        template: &Template,
        files: &[(String, Vec<u8>)],
    ) -> Result<(), RuntimeError> {
        let image = template.workload.image().map_or("", |(image, _)| image);
        let layout = files::Layout {
            inside: template.hardening.read_only(image),
            owner: template.hardening.owner(image),
        };
        if layout.inside {
            if let Some(source) = self.host_files_dir(id, handle, template.files_dir()).await {
                let owned = files.to_vec();
                let wrote = tokio::task::spawn_blocking(move || {
                    host_files::write_beneath(&source, &owned, layout.owner)
                })
                .await
                .map_err(|e| RuntimeError::Io {
                    what: "cannot write files".into(),
                    source: std::io::Error::other(e),
                })
                .and_then(|r| r);
                match wrote {
                    // A refused path (a symlink planted by the app) is refused
                    // whichever way the files would go.
                    Ok(()) | Err(RuntimeError::FileRefused { .. }) => return wrote,
                    // Any other trouble on this side: the engine's upload.
                    Err(e) => {
                        tracing::debug!(container_id = %id, error = %e, "writing the files on this host failed; uploading them");
                    }
                }
            }
        }
        let archive = files::archive(template.files_dir(), files, layout)?;
        self.call(self.docker.upload_to_container(
            handle,
            Some(UploadToContainerOptions {
                path: if layout.inside {
                    template.files_dir()
                } else {
                    "/"
                },
                // A file never replaces a directory, nor a directory a file.
                no_overwrite_dir_non_dir: "true",
            }),
            archive.into(),
        ))
        .await
    }

    async fn inspect(&self, _id: ContainerId, handle: &str) -> Result<Inspection, RuntimeError> {
        match self
            .call(
                self.docker
                    .inspect_container(handle, None::<InspectContainerOptions>),
            )
            .await
        {
            Ok(c) => {
                let st = c.state.unwrap_or_default();
                Ok(if st.running == Some(true) {
                    Inspection::Running
                } else {
                    Inspection::Exited {
                        code: st.exit_code.map(|c| c as i32),
                    }
                })
            }
            Err(RuntimeError::NotFound { .. }) => Ok(Inspection::Gone),
            Err(e) => Err(e),
        }
    }

    async fn list_owned(&self) -> Result<Vec<OwnedContainer>, RuntimeError> {
        Ok(self
            .list_listed()
            .await?
            .into_iter()
            .map(|(o, _)| o)
            .collect())
    }

    async fn adopt(&self, owned: &OwnedContainer) -> Result<(), RuntimeError> {
        self.ledger.know(owned.id);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.ledger.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_the_engine_never_answers_fails_with_a_clear_error_in_time() {
        let limit = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let e = within(limit, std::future::pending::<Result<(), DockerError>>())
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            matches!(&e, RuntimeError::Timeout { after, .. } if *after == limit),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the Docker Engine did not answer within 0.2s"
        );
        assert_eq!(
            RuntimeError::Timeout {
                what: "the Docker Engine did not answer".into(),
                after: DEFAULT_API_TIMEOUT
            }
            .to_string(),
            "the Docker Engine did not answer within 10s"
        );
        assert_eq!(client_timeout(limit), Duration::from_secs(2));
    }

    #[test]
    fn engine_errors_map_by_status_never_by_message() {
        let answered = |status_code: u16, message: &str| {
            map_error(DockerError::DockerResponseServerError {
                status_code,
                message: message.into(),
            })
        };
        let e = answered(404, "no such container");
        assert!(matches!(e, RuntimeError::NotFound { .. }), "{e:?}");
        // The message does not decide: a 500 saying "not found" is the engine failing.
        let e = answered(500, "not found");
        assert!(
            matches!(
                e,
                RuntimeError::Api {
                    status: Some(500),
                    retryable: true,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "runtime unavailable: docker answered 500: not found"
        );
        let e = answered(409, "conflict");
        assert_eq!((e.status(), e.is_retryable()), (Some(409), false));
        let e = map_error(DockerError::IOError {
            err: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
        });
        assert!(
            matches!(
                e,
                RuntimeError::Api {
                    status: None,
                    retryable: true,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("runtime unavailable: docker: "),
            "{e}"
        );
    }

    #[test]
    fn a_missing_image_names_itself_and_its_policy_and_only_the_sample_says_how_to_build() {
        let e = missing_image("ghcr.io/me/app:1", PullPolicy::Never);
        assert_eq!(
            e,
            "image ghcr.io/me/app:1 is not on the Docker Engine, and its pool's pull policy is \"never\""
        );
        assert!(!e.contains("build-sample-image"));
        let e = missing_image(SAMPLE_APP_IMAGE, PullPolicy::Never);
        assert!(e.contains(SAMPLE_APP_IMAGE), "{e}");
        assert!(e.contains("scripts/build-sample-image.sh"), "{e}");
        assert!(e.contains("never pulled"), "{e}");
    }
}
