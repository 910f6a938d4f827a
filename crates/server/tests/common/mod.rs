//! Test harness: real warmpool servers (in-process or as the real binary) on
//! 127.0.0.1:0 with temp data dirs, and polling with deadlines.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use warmpool_client::Client;
use warmpool_runtime::Runtime;
use warmpool_server::config::Config;
use warmpool_server::server::{start, Running};

/// The warmpool binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_warmpool")
}

/// Settings for a small, quick test pool running the real sample app.
pub fn settings(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = [
        ("WARMPOOL_LISTEN", "127.0.0.1:0"),
        ("WARMPOOL_COMMAND", &format!("{} sample-app", bin())),
        ("POOL_TARGET_INSTANCES", "3"),
        ("POOL_BATCH_SIZE", "10"),
        ("POOL_BATCH_SPACING_IN_SECONDS", "0"),
        ("WARMPOOL_START_TIMEOUT_SECONDS", "20"),
        ("WARMPOOL_CLAIM_TIMEOUT_SECONDS", "20"),
        ("WARMPOOL_STOP_GRACE_SECONDS", "2"),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

/// A warmpool running inside the test process.
pub struct InProc {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub client: Client,
    pub base: String,
    pub http: reqwest::Client,
}

impl InProc {
    pub async fn start(extra: &[(&str, &str)]) -> InProc {
        Self::start_with(extra, None).await
    }

    pub async fn start_with(extra: &[(&str, &str)], runtime: Option<Arc<dyn Runtime>>) -> InProc {
        Self::start_with_file(extra, "", runtime).await
    }

    /// Starts with `extra` settings over a config file's text (`[pools.NAME]`...).
    pub async fn start_with_file(
        extra: &[(&str, &str)],
        file: &str,
        runtime: Option<Arc<dyn Runtime>>,
    ) -> InProc {
        let dir = tempfile::tempdir().unwrap();
        let mut m = settings(extra);
        m.insert("WARMPOOL_DATA_DIR".into(), dir.path().display().to_string());
        let file = Config::parse_file(file).unwrap();
        let config = Config::from_sources(|k| m.get(k).cloned(), &file).unwrap();
        let running = start(config, runtime).await.unwrap();
        let base = format!("http://{}", running.addr);
        InProc {
            client: Client::new(&base),
            base,
            http: reqwest::Client::new(),
            running: Some(running),
            dir,
        }
    }

    pub fn app(&self) -> &Arc<warmpool_server::engine::Engine> {
        &self.running.as_ref().unwrap().app
    }

    /// When each container's record was created (ms), in order.
    pub async fn created_times(&self) -> Vec<i64> {
        let mut t: Vec<i64> = self
            .app()
            .store
            .containers(Default::default())
            .await
            .unwrap()
            .iter()
            .map(|r| r.created_at.0)
            .collect();
        t.sort();
        t
    }

    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }

    /// `GET`s `path` of container `id` through the proxy.
    pub async fn proxied(&self, id: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/container/{id}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// `GET`s `path` of container `id` through the proxy; answers the body.
    pub async fn proxied_text(&self, id: &str, path: &str) -> String {
        self.proxied(id, path).await.text().await.unwrap()
    }

    /// Waits until the pool of `location` has `n` ready containers.
    pub async fn wait_ready(&self, location: &str, n: u32, within: Duration) {
        wait_ready(&self.client, location, n, within).await
    }
}

impl Drop for InProc {
    /// A test that panicked did not shut down: kill its containers (processes or
    /// Docker containers) so none outlive it.
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            // No more starts: the reconciler would replace what is killed below.
            r.app.begin_shutdown();
            let mut docker = Vec::new();
            for (_, e) in r.app.registry.live() {
                match e.handle.as_deref() {
                    Some(h) if h.starts_with("pid:") => {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid_of(h)),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    Some(h) => docker.push(h.to_owned()),
                    None => {}
                }
            }
            if r.app.runtime.name() == "docker" {
                // Also those whose start is in flight (no handle yet), and those
                // whose records are closed but which were never removed.
                let instance = r.app.store.instance_id();
                docker.extend(
                    Command::new("docker")
                        .args(["ps", "-aq", "--filter"])
                        .arg(format!("label=dev.warmpool.instance={instance}"))
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_owned),
                );
            }
            if !docker.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&docker)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            // Starts still in flight have no handle yet: find them by their tag.
            for (pid, _) in tagged_processes(r.app.store.instance_id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The image the Docker tests run.
pub const IMAGE: &str = "warmpool/sample-app:latest";

/// The Docker runtime's settings the tests use: the test network, the sample
/// app's port, bridge addresses, the default socket and timeouts, no config file.
pub fn docker_config(instance_id: &str) -> warmpool_docker::DockerConfig {
    warmpool_docker::DockerConfig {
        instance_id: instance_id.to_owned(),
        network: "warmpool-test".into(),
        container_port: 8080,
        publish: false,
        socket: None,
        api_timeout: warmpool_docker::DEFAULT_API_TIMEOUT,
        pull_timeout: warmpool_docker::DEFAULT_PULL_TIMEOUT,
        config_file: None,
    }
}

/// Whether the Docker tests can run: a daemon answers and the sample image is
/// built. Otherwise they skip with a printed reason, or fail when
/// `WARMPOOL_REQUIRE_DOCKER=1` (as in CI).
pub fn docker_ready(test: &str) -> bool {
    let ok = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let reason = if !ok(&["info"]) {
        Some("no Docker daemon is reachable".to_owned())
    } else if !ok(&["image", "inspect", IMAGE]) {
        Some(format!(
            "image {IMAGE} is missing (build it with scripts/build-sample-image.sh)"
        ))
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if std::env::var("WARMPOOL_REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("{test}: {r}, and WARMPOOL_REQUIRE_DOCKER=1")
        }
        Some(r) => {
            eprintln!("skipping {test}: {r}");
            false
        }
    }
}

/// `docker inspect` of one object, as JSON (`None` if it does not exist).
pub fn docker_inspect(what: &str) -> Option<serde_json::Value> {
    let out = Command::new("docker")
        .args(["inspect", what])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let mut v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.pop()
}

/// Runs a docker CLI command that must succeed; returns its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `path` in container `name`, copied out with `docker cp` (a `FROM scratch`
/// image has no `cat`).
pub fn read_out(name: &str, path: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    docker(&["cp", &format!("{name}:{path}"), &dest.display().to_string()]);
    std::fs::read_to_string(dest).unwrap()
}

/// Ids of the containers labelled with warmpool `instance` (running or not).
pub fn docker_owned(instance: &str) -> Vec<String> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=dev.warmpool.instance={instance}"),
        "--format",
        "{{.Label \"dev.warmpool.container-id\"}}",
    ]);
    let mut ids: Vec<String> = out
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect();
    ids.sort();
    ids
}

/// The ids of the containers `query` lists (in the order listed).
pub async fn listed_ids(client: &Client, query: warmpool_client::ContainerQuery) -> Vec<String> {
    client
        .containers(&query)
        .await
        .unwrap_or_else(|e| panic!("{query:?}: {e}"))
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// The ids of the containers with labels matching `selector`.
pub async fn labelled_ids(client: &Client, selector: &str) -> Vec<String> {
    listed_ids(
        client,
        warmpool_client::ContainerQuery {
            label: Some(selector.into()),
            ..Default::default()
        },
    )
    .await
}

/// The first of the ready containers warmpool lists.
pub async fn first_ready(client: &Client) -> warmpool_client::ContainerView {
    client
        .containers(&warmpool_client::ContainerQuery {
            state: Some("ready".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .containers
        .remove(0)
}

/// Ready containers of `pool` in `location`.
pub async fn pool_ready(client: &Client, pool: &str, location: &str) -> u32 {
    client.pools().await.map_or(0, |p| {
        p.pools
            .iter()
            .filter(|p| p.pool == pool && p.location == location)
            .map(|p| p.ready)
            .sum()
    })
}

pub async fn ready_count(client: &Client, location: &str) -> u32 {
    client
        .pools()
        .await
        .map(|p| {
            p.pools
                .iter()
                .filter(|p| p.location == location)
                .map(|p| p.ready)
                .sum()
        })
        .unwrap_or(0)
}

pub async fn wait_ready(client: &Client, location: &str, n: u32, within: Duration) {
    let c = client.clone();
    let loc = location.to_owned();
    poll(
        within,
        &format!("{n} ready containers in {location}"),
        move || {
            let c = c.clone();
            let loc = loc.clone();
            async move { (ready_count(&c, &loc).await >= n).then_some(()) }
        },
    )
    .await
}

/// Calls `f` until it returns `Some`, or panics with `what` after `within`.
pub async fn poll<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A warmpool running as the real binary, so that it can be `kill -9`ed.
pub struct Proc {
    pub child: Child,
    pub base: String,
    pub client: Client,
}

impl Proc {
    pub fn spawn(data_dir: &Path, extra: &[(&str, &str)]) -> Proc {
        Self::spawn_with_stderr(data_dir, extra, Stdio::inherit())
    }

    /// Like [`Proc::spawn`], with warmpool's log (warnings and errors unless
    /// `extra` sets `RUST_LOG`; no colours) sent to `stderr`.
    pub fn spawn_with_stderr(data_dir: &Path, extra: &[(&str, &str)], stderr: Stdio) -> Proc {
        Self::spawn_program(Path::new(bin()), data_dir, extra, stderr)
    }

    /// Like [`Proc::spawn_with_stderr`], running the warmpool binary at `program`.
    pub fn spawn_program(
        program: &Path,
        data_dir: &Path,
        extra: &[(&str, &str)],
        stderr: Stdio,
    ) -> Proc {
        let mut m = settings(extra);
        m.insert("WARMPOOL_DATA_DIR".into(), data_dir.display().to_string());
        let mut child = Command::new(program)
            .arg("serve")
            .env("RUST_LOG", m.get("RUST_LOG").map_or("warn", String::as_str))
            .envs(&m)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("warmpool listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Proc {
            client: Client::new(&base),
            base,
            child,
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Proc {
    /// Shuts warmpool down gracefully, so that its children go with it; kills it
    /// only if it does not exit in time.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Processes (pid, container id) tagged with warmpool `instance`, from /proc.
pub fn tagged_processes(instance: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        // Zombies keep no environment; a running process does.
        let vars: HashMap<String, String> = env
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = std::str::from_utf8(kv).ok()?;
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect();
        if vars.get("WARMPOOL_INSTANCE_ID").map(String::as_str) == Some(instance) {
            if let Some(id) = vars.get("WARMPOOL_CONTAINER_ID") {
                out.push((pid, id.clone()));
            }
        }
    }
    out.sort();
    out
}

/// The instance id of the warmpool whose data dir is `dir` (from a child's env).
pub fn instance_of_child(pid: i32) -> String {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    env.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("WARMPOOL_INSTANCE_ID=").map(str::to_owned))
        .unwrap()
}

/// Polls `url` until it answers 410, checks it is a problem document, and
/// returns its detail.
pub async fn poll_gone(url: &str, within: Duration) -> String {
    let http = reqwest::Client::new();
    let url = url.to_owned();
    poll(within, &format!("410 from {url}"), move || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.get(&url).send().await.ok()?;
            if r.status() != 410 {
                return None;
            }
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            let p: serde_json::Value = r.json().await.ok()?;
            Some(p["detail"].as_str()?.to_owned())
        }
    })
    .await
}

/// `kill -9` of the process behind a process-runtime handle.
pub fn kill9_handle(handle: Option<&str>) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid_of(handle.expect("a process handle"))),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// The process no longer runs (gone, or a zombie waiting to be reaped).
pub fn process_gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
}

/// Pid from a process handle `pid:<pid>:<start>`.
pub fn pid_of(handle: &str) -> i32 {
    handle.split(':').nth(1).unwrap().parse().unwrap()
}

/// Ids of the containers the store says are live (every state but stopped).
pub async fn live_ids(client: &Client) -> Option<std::collections::BTreeSet<String>> {
    Some(
        client
            .containers(&warmpool_client::ContainerQuery::default())
            .await
            .ok()?
            .containers
            .into_iter()
            .filter(|c| c.state != "stopped")
            .map(|c| c.id)
            .collect(),
    )
}

/// The books check of an in-process warmpool: polls until every live record is
/// settled (ready or allocated, nothing starting, stopping or failed) and what the
/// runtime lists as this instance's, running or not, is exactly those containers:
/// no more (an exited container never removed is a leak too) and no fewer.
/// Something in the middle of being removed gets until `within` to be gone.
pub async fn books_balance(app: &warmpool_server::engine::Engine, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let last = match books(app).await {
            Ok(()) => return,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("the books do not balance after {within:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One look at the books: `Err` says what does not balance.
async fn books(app: &warmpool_server::engine::Engine) -> Result<(), String> {
    use std::collections::BTreeSet;
    let rows = app
        .store
        .containers(warmpool_store::ContainerFilter {
            live_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot read the store: {e}"))?;
    let unsettled: Vec<String> = rows
        .iter()
        .filter(|r| {
            !matches!(
                r.state,
                warmpool_core::ContainerState::Ready | warmpool_core::ContainerState::Allocated
            )
        })
        .map(|r| format!("{} {}", r.id, r.state))
        .collect();
    let stored: BTreeSet<String> = rows.iter().map(|r| r.id.to_string()).collect();
    let owned = app
        .runtime
        .list_owned()
        .await
        .map_err(|e| format!("cannot list the runtime: {e}"))?;
    let listed: BTreeSet<String> = owned.iter().map(|c| c.id.to_string()).collect();
    let stopped: Vec<String> = owned
        .iter()
        .filter(|c| !c.running)
        .map(|c| c.id.to_string())
        .collect();
    if unsettled.is_empty() && stored == listed && stopped.is_empty() {
        return Ok(());
    }
    Err(format!(
        "not settled: {unsettled:?}; listed by the runtime only: {:?}; \
         live in the store only: {:?}; listed but not running: {stopped:?}",
        listed.difference(&stored).collect::<Vec<_>>(),
        stored.difference(&listed).collect::<Vec<_>>(),
    ))
}
