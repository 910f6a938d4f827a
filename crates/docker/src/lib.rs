//! The Docker Engine runtime: containers from a configured image on a user-defined
//! bridge network, with resource limits and warmpool's labels, watched through the
//! engine's event stream. The only crate that depends on bollard.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerSummary, HostConfig, PortBinding};
use bollard::network::CreateNetworkOptions;
use bollard::system::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use warmpool_core::ContainerId;
use warmpool_runtime::{
    ContainerSpec, HttpProbe, Inspection, OwnedContainer, Runtime, RuntimeError, RuntimeEvent,
    Started,
};

/// Label naming the warmpool instance that owns a container.
pub const LABEL_INSTANCE: &str = "dev.warmpool.instance";
/// Label holding the warmpool container id.
pub const LABEL_CONTAINER: &str = "dev.warmpool.container-id";
pub const LABEL_POOL: &str = "dev.warmpool.pool";
pub const LABEL_LOCATION: &str = "dev.warmpool.location";

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
}

/// The default of [`DockerConfig::api_timeout`] (`WARMPOOL_DOCKER_TIMEOUT_SECONDS`).
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(10);

pub struct DockerRuntime {
    docker: Docker,
    cfg: DockerConfig,
    probe: HttpProbe,
    events: broadcast::Sender<RuntimeEvent>,
    state: Arc<Mutex<Watch>>,
    disk_supported: bool,
    /// The "no disk limit" warning was logged (once per runtime).
    disk_warned: AtomicBool,
}

/// What the event watcher knows: containers we started or adopted (to notice
/// those removed behind our back), and those seen dying.
#[derive(Default)]
struct Watch {
    known: HashSet<ContainerId>,
    exited: HashSet<ContainerId>,
    oom: HashSet<ContainerId>,
}

/// The HTTP status of an error answered by the engine.
fn status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Runs one engine call for at most `limit`; past it, the call fails with an
/// error saying so (shown as the pool's last error).
async fn within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, DockerError>>,
) -> Result<T, DockerError> {
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r,
        Err(_) => Err(DockerError::IOError {
            err: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the Docker Engine did not answer within {}",
                    humanize(limit)
                ),
            ),
        }),
    }
}

/// `10s`, `2.5s`.
fn humanize(d: Duration) -> String {
    format!("{}s", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// bollard's own per-request timeout (whole seconds), a little above `limit` so
/// that [`within`] answers first; it also bounds how long the event stream waits
/// for the engine's response headers.
fn client_timeout(limit: Duration) -> Duration {
    Duration::from_secs(limit.as_secs_f64().ceil() as u64 + 1)
}

fn unavailable(e: DockerError) -> RuntimeError {
    match e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => RuntimeError::Other(format!("docker answered {status_code}: {message}")),
        other => RuntimeError::Unavailable(format!("docker: {}", chain(&other))),
    }
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
            .map_err(unavailable)?
            .with_timeout(client_timeout(limit));
        let docker = within(limit, docker.negotiate_version())
            .await
            .map_err(unavailable)?;
        within(limit, docker.ping()).await.map_err(unavailable)?;
        let info = within(limit, docker.info()).await.map_err(unavailable)?;
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
        within(limit, async {
            Ok(ensure_network(&docker, &cfg.network).await)
        })
        .await
        .map_err(unavailable)??;
        let (events, _) = broadcast::channel(4096);
        let rt = Arc::new(Self {
            probe: HttpProbe::new(),
            docker,
            cfg,
            events,
            state: Arc::default(),
            disk_supported,
            disk_warned: AtomicBool::new(false),
        });
        tokio::spawn(watch_events(Arc::downgrade(&rt)));
        Ok(rt)
    }

    /// Whether the storage driver takes a disk size (`WARMPOOL_DISK_MB` applies).
    pub fn disk_supported(&self) -> bool {
        self.disk_supported
    }

    fn address(&self, summary_ip: Option<String>, published: Option<u16>) -> Option<String> {
        if self.cfg.publish {
            published.map(|p| format!("127.0.0.1:{p}"))
        } else {
            summary_ip
                .filter(|ip| !ip.is_empty())
                .map(|ip| format!("{ip}:{}", self.cfg.container_port))
        }
    }

    async fn inspect_address(&self, handle: &str) -> Result<String, RuntimeError> {
        let c = self
            .call(
                self.docker
                    .inspect_container(handle, None::<InspectContainerOptions>),
            )
            .await
            .map_err(unavailable)?;
        let ns = c.network_settings.unwrap_or_default();
        let ip = ns
            .networks
            .as_ref()
            .and_then(|n| n.get(&self.cfg.network))
            .and_then(|n| n.ip_address.clone());
        let port_key = format!("{}/tcp", self.cfg.container_port);
        let published = ns
            .ports
            .as_ref()
            .and_then(|p| p.get(&port_key).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port?.parse().ok()));
        self.address(ip, published)
            .ok_or_else(|| RuntimeError::Other(format!("container {handle} has no address")))
    }

    /// One engine call, bounded by the configured API timeout.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, DockerError>>,
    ) -> Result<T, DockerError> {
        within(self.cfg.api_timeout, call).await
    }

    fn summary_id(&self, c: &ContainerSummary) -> Option<ContainerId> {
        c.labels.as_ref()?.get(LABEL_CONTAINER)?.parse().ok()
    }
}

async fn ensure_network(docker: &Docker, name: &str) -> Result<(), RuntimeError> {
    match docker.inspect_network::<String>(name, None).await {
        Ok(_) => Ok(()),
        Err(e) if status(&e) == Some(404) => {
            let created = docker
                .create_network(CreateNetworkOptions {
                    name,
                    driver: "bridge",
                    check_duplicate: true,
                    labels: HashMap::from([("dev.warmpool.network", "true")]),
                    ..Default::default()
                })
                .await;
            match created {
                Ok(_) => Ok(()),
                // Created meanwhile by another warmpool.
                Err(e) if status(&e) == Some(409) => Ok(()),
                Err(e) => Err(unavailable(e)),
            }
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// How often the event watcher also re-lists, as a safety net for events missed
/// while its stream was (re)connecting.
const RESYNC_EVERY: Duration = Duration::from_secs(15);

/// Follows the engine's events for this instance's containers, forever: reports
/// `die` (with `oom`), and containers destroyed behind our back; reconnects when
/// the stream breaks and then re-lists, so nothing that happened meanwhile is lost.
async fn watch_events(rt: std::sync::Weak<DockerRuntime>) {
    loop {
        let Some(this) = rt.upgrade() else { return };
        resync(&this).await;
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["die", "oom", "destroy"]),
        ]);
        let label = format!("{LABEL_INSTANCE}={}", this.cfg.instance_id);
        let mut filters: HashMap<&str, Vec<&str>> = filters;
        filters.insert("label", vec![label.as_str()]);
        let mut stream = this.docker.events(Some(EventsOptions::<&str> {
            filters,
            ..Default::default()
        }));
        drop(this);
        let mut tick = tokio::time::interval(RESYNC_EVERY);
        tick.tick().await;
        loop {
            let ev = tokio::select! {
                ev = stream.next() => ev,
                _ = tick.tick() => {
                    let Some(this) = rt.upgrade() else { return };
                    resync(&this).await;
                    continue;
                }
            };
            let Some(this) = rt.upgrade() else { return };
            match ev {
                Some(Ok(msg)) => this.on_event(msg).await,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "docker event stream failed; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!("docker event stream ended; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// After (re)connecting, and now and then: report every known container that no
/// longer runs and has not been reported yet.
async fn resync(rt: &DockerRuntime) {
    let Ok(owned) = rt.list_owned().await else {
        return;
    };
    let running: HashSet<_> = owned.iter().filter(|o| o.running).map(|o| o.id).collect();
    let gone: Vec<_> = {
        let st = rt.state.lock().unwrap();
        st.known
            .iter()
            .filter(|id| !running.contains(id) && !st.exited.contains(id))
            .copied()
            .collect()
    };
    for id in gone {
        rt.report_exit(
            id,
            None,
            "exited (found stopped when re-listing containers)".into(),
        );
    }
}

impl DockerRuntime {
    fn report_exit(&self, id: ContainerId, code: Option<i32>, detail: String) {
        self.state.lock().unwrap().exited.insert(id);
        let _ = self.events.send(RuntimeEvent::Exited { id, code, detail });
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
            if self.state.lock().unwrap().oom.remove(&id) {
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

    async fn on_event(self: &Arc<Self>, msg: bollard::models::EventMessage) {
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
                self.state.lock().unwrap().oom.insert(id);
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
                    rt.report_exit(id, code, detail);
                });
            }
            "destroy" => {
                let was_known = self.state.lock().unwrap().known.remove(&id);
                if was_known {
                    self.report_exit(id, None, "removed from docker".into());
                }
            }
            _ => {}
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn start(&self, spec: &ContainerSpec) -> Result<Started, RuntimeError> {
        let name = format!("warmpool-{}", spec.id);
        let env: Vec<String> = spec
            .app_env(&self.cfg.instance_id, self.cfg.container_port)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let labels = HashMap::from([
            (LABEL_INSTANCE.to_owned(), self.cfg.instance_id.clone()),
            (LABEL_CONTAINER.to_owned(), spec.id.to_string()),
            (LABEL_POOL.to_owned(), spec.key.pool.to_string()),
            (LABEL_LOCATION.to_owned(), spec.key.location.to_string()),
        ]);
        let port_key = format!("{}/tcp", self.cfg.container_port);
        let res = spec.template.resources;
        if res.disk_mb.is_some()
            && !self.disk_supported
            && !self.disk_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!("the storage driver cannot limit container disk size; the disk limit is not applied");
        }
        // CPU (0.25 is a quarter of one) as NanoCpus; memory is a hard limit with
        // no swap; disk is the writable layer's size, where the driver takes one.
        let memory = res.memory_mib.map(|m| (m * 1024 * 1024) as i64);
        let host_config = HostConfig {
            network_mode: Some(self.cfg.network.clone()),
            nano_cpus: res.vcpu.map(|v| (v * 1e9) as i64),
            memory,
            memory_swap: memory,
            pids_limit: res.pids_limit,
            storage_opt: res
                .disk_mb
                .filter(|_| self.disk_supported)
                .map(|mb| HashMap::from([("size".to_owned(), format!("{mb}M"))])),
            port_bindings: self.cfg.publish.then(|| {
                HashMap::from([(
                    port_key.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )])
            }),
            ..Default::default()
        };
        let config = Config {
            image: Some(spec.template.image.clone()),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: Some(HashMap::from([(port_key, HashMap::new())])),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .call(self.docker.create_container(
                Some(CreateContainerOptions {
                    name: name.clone(),
                    platform: None,
                }),
                config,
            ))
            .await
            .map_err(|e| match status(&e) {
                Some(404) => RuntimeError::Other(format!(
                    "image {} not found (build it with scripts/build-sample-image.sh)",
                    spec.template.image
                )),
                _ => unavailable(e),
            })?;
        if let Err(e) = self
            .call(
                self.docker
                    .start_container(&created.id, None::<StartContainerOptions<String>>),
            )
            .await
        {
            let _ = self.remove(spec.id, &created.id).await;
            return Err(unavailable(e));
        }
        // Known (so that a re-list can tell it vanished) once it runs.
        self.state.lock().unwrap().known.insert(spec.id);
        let address = match self.inspect_address(&created.id).await {
            Ok(a) => a,
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
                || self.state.lock().unwrap().exited.contains(&spec.id),
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
            Err(e) if matches!(status(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn remove(&self, id: ContainerId, handle: &str) -> Result<(), RuntimeError> {
        {
            let mut st = self.state.lock().unwrap();
            st.known.remove(&id);
            st.exited.remove(&id);
            st.oom.remove(&id);
        }
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
            Err(e) if matches!(status(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
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
            Err(e) if status(&e) == Some(404) => Ok(Inspection::Gone),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn list_owned(&self) -> Result<Vec<OwnedContainer>, RuntimeError> {
        let label = format!("{LABEL_INSTANCE}={}", self.cfg.instance_id);
        let list = self
            .call(
                self.docker
                    .list_containers(Some(ListContainersOptions::<String> {
                        all: true,
                        filters: HashMap::from([("label".to_owned(), vec![label])]),
                        ..Default::default()
                    })),
            )
            .await
            .map_err(unavailable)?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let id = self.summary_id(&c)?;
                let ip = c
                    .network_settings
                    .as_ref()
                    .and_then(|n| n.networks.as_ref())
                    .and_then(|n| n.get(&self.cfg.network))
                    .and_then(|n| n.ip_address.clone());
                let published = c.ports.as_ref().and_then(|ports| {
                    ports
                        .iter()
                        .find(|p| {
                            p.private_port == self.cfg.container_port && p.public_port.is_some()
                        })
                        .and_then(|p| p.public_port)
                });
                Some(OwnedContainer {
                    id,
                    address: self.address(ip, published),
                    running: c.state.as_deref() == Some("running"),
                    handle: c.id?,
                })
            })
            .collect())
    }

    async fn adopt(&self, owned: &OwnedContainer) -> Result<(), RuntimeError> {
        self.state.lock().unwrap().known.insert(owned.id);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
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
        assert_eq!(
            unavailable(e).to_string(),
            "runtime unavailable: docker: the Docker Engine did not answer within 0.2s"
        );
        assert_eq!(humanize(DEFAULT_API_TIMEOUT), "10s");
        assert_eq!(client_timeout(limit), Duration::from_secs(2));
    }
}
