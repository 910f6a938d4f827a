//! The processes the bench starts and always ends: warmpool servers (this very
//! binary with `serve`), nginx as a plain reverse proxy, bare sample-app
//! processes, and Docker containers (named `warmpool-bench-*`, labelled
//! `warmpool-bench=1`, run with `--rm`).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::load::Conn;

/// The sample image warmpool's Docker runtime and the raw `docker run`s use.
pub const IMAGE: &str = "warmpool/sample-app:latest";
/// The bridge network of the Docker cases.
pub const NETWORK: &str = "warmpool-bench";
/// The label of every container the bench starts itself.
pub const LABEL: &str = "warmpool-bench=1";

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find this binary")
}

/// A free loopback port (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILLs.
fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Resident memory of process `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A warmpool server run as a child process with its own temp data dir.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub started: Instant,
    dir: tempfile::TempDir,
}

/// `PATCH /v1/pools/{pool}` with `settings`; returns the answer
/// (`PutPoolResponse`).
pub async fn patch_pool(
    conn: &mut Conn,
    pool: &str,
    settings: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let (status, answer) = conn
        .json(http::Method::PATCH, &format!("/v1/pools/{pool}"), &settings)
        .await?;
    if !status.is_success() {
        bail!("PATCH /v1/pools/{pool} {settings} answered {status}: {answer}");
    }
    Ok(answer)
}

impl Server {
    /// Starts `warmpool serve` on 127.0.0.1:0 with `settings` (env vars) on top of
    /// the bench's defaults, and waits for its listening line.
    pub fn spawn(settings: &[(&str, String)]) -> anyhow::Result<Server> {
        Self::spawn_from(&exe()?, settings)
    }

    /// [`Server::spawn`] with the `warmpool` binary at `exe` (the bench runs
    /// its own; tests name the one cargo built).
    pub fn spawn_from(exe: &Path, settings: &[(&str, String)]) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("warmpool-bench-")
            .tempdir()?;
        let log = std::fs::File::create(dir.path().join("warmpool.log"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("serve");
        // Settings of the caller's environment must not leak into a measurement.
        for (k, _) in std::env::vars() {
            if k.starts_with("WARMPOOL_") || k.starts_with("POOL_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("WARMPOOL_LISTEN", "127.0.0.1:0")
            .env("WARMPOOL_DATA_DIR", dir.path().join("data"))
            .env("WARMPOOL_STOP_GRACE_SECONDS", "2")
            .env("WARMPOOL_MAX_INSTANCES", "1000000")
            .env("RUST_LOG", "error")
            .env("NO_COLOR", "1");
        for (k, v) in settings {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot start warmpool serve")?;
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        out.read_line(&mut line)?;
        let Some(base) = line.trim().strip_prefix("warmpool listening on http://") else {
            terminate(&mut child, Duration::from_secs(5));
            let log = std::fs::read_to_string(dir.path().join("warmpool.log")).unwrap_or_default();
            bail!("warmpool serve did not start: {line:?}\n{log}");
        };
        let addr = base.parse()?;
        // Drain stdout so that the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        Ok(Server {
            child,
            addr,
            started,
            dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Work dir of a process-runtime container (where its `index.txt` lives).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.data_dir().join("containers").join(id)
    }

    /// The last lines of warmpool's log (errors only).
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("warmpool.log")) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// GET a JSON document of the API.
    pub async fn json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let mut c = Conn::connect(self.addr).await?;
        let a = c
            .request(http::Method::GET, path, bytes::Bytes::new(), true)
            .await?;
        if !a.status.is_success() {
            bail!("GET {path}: {}", a.status);
        }
        Ok(serde_json::from_slice(&a.body)?)
    }

    /// Waits until `n` containers are ready; returns the time since start-up.
    ///
    /// A start that fails during the fill (seen here once: a port another
    /// process took between the process runtime's check and the app's own
    /// listen) is replaced only at the pool's next batch, an hour away for the
    /// bench's static pools. So when a pool has a failed start, nothing starting
    /// and fewer ready than its target, its batch spacing is set to 0 until `n`
    /// are ready, then put back (a `PATCH`: no new revision), and a note says so.
    pub async fn wait_ready(&self, n: u64, within: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + within;
        // Pools whose spacing was lifted, with the spacing to put back.
        let mut lifted: Vec<(String, serde_json::Value)> = Vec::new();
        loop {
            let pools = self.json("/v1/pools").await?;
            let rows = pools["pools"].as_array().cloned().unwrap_or_default();
            let ready: u64 = rows.iter().filter_map(|p| p["ready"].as_u64()).sum();
            if ready >= n {
                for (pool, spacing) in &lifted {
                    self.patch_pool(pool, serde_json::json!({ "batch_spacing": spacing }))
                        .await?;
                }
                return Ok(self.started.elapsed());
            }
            for row in &rows {
                let count = |k: &str| row[k].as_u64().unwrap_or(0);
                let Some(pool) = row["pool"].as_str() else {
                    continue;
                };
                let stuck = count("failedStarts") > 0
                    && count("starting") == 0
                    && count("ready") < count("target");
                if stuck && !lifted.iter().any(|(p, _)| p == pool) {
                    let spacing = self.json(&format!("/v1/pools/{pool}")).await?["settings"]
                        ["batch_spacing"]
                        .clone();
                    eprintln!(
                        "note: pool {pool} lost a start during its fill ({}); its batch spacing ({spacing} s) is 0 until it is full",
                        row["lastError"].as_str().unwrap_or("no error recorded")
                    );
                    self.patch_pool(pool, serde_json::json!({ "batch_spacing": 0 }))
                        .await?;
                    lifted.push((pool.to_owned(), spacing));
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "only {ready} of {n} containers ready after {within:?}\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`patch_pool`] on a connection of its own.
    async fn patch_pool(&self, pool: &str, settings: serde_json::Value) -> anyhow::Result<()> {
        patch_pool(&mut Conn::connect(self.addr).await?, pool, settings).await?;
        Ok(())
    }

    /// Waits until warmpool is quiet: no container starting, no pass running, no
    /// pass started between two reads twice the least gap between passes apart
    /// (so a pass that a fill or claims asked for has run), and nothing left in
    /// the store's WAL to copy into the database file. What a bench waits for
    /// before it measures, instead of a fixed pause.
    pub async fn settled(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let gap = warmpool_core::plan::MIN_PASS_GAP * 2;
        let mut quiet_at: Option<u64> = None;
        loop {
            let status = self.json("/v1/status").await?;
            let reconcile = status["tasks"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["name"] == "reconcile"))
                .context("GET /v1/status has no reconcile task")?;
            let runs = reconcile["runs"].as_u64().unwrap_or(0);
            let running = !reconcile["runningSince"].is_null();
            let pools = self.json("/v1/pools").await?;
            let starting: u64 = pools["pools"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p["starting"].as_u64()).sum())
                .unwrap_or(0);
            // The store has copied its WAL into the database file: a big fill's
            // last frames, copied while claims are measured, cost them CPU and I/O.
            let [backlog] = self
                .metric_values(["warmpool_store_wal_backlog_frames"])
                .await?;
            let backlog = backlog.context("/metrics has no warmpool_store_wal_backlog_frames")?;
            let quiet = !running && starting == 0 && backlog == 0.0;
            if quiet && quiet_at == Some(runs) {
                return Ok(());
            }
            quiet_at = quiet.then_some(runs);
            if Instant::now() > deadline {
                bail!(
                    "warmpool was not quiet after {within:?} (reconciler running: {running}, starting: {starting}, WAL frames to copy: {backlog})\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(gap).await;
        }
    }

    /// The address a container answers on (from `GET /v1/containers/{id}`).
    pub async fn container_addr(&self, id: &str) -> anyhow::Result<SocketAddr> {
        let c = self.json(&format!("/v1/containers/{id}")).await?;
        let a = c["address"].as_str().context("container without address")?;
        Ok(a.parse()?)
    }

    /// Series of `/metrics` by name (labels included, if any), `None` when absent.
    async fn metric_values<const N: usize>(
        &self,
        names: [&str; N],
    ) -> anyhow::Result<[Option<f64>; N]> {
        let mut c = Conn::connect(self.addr).await?;
        let a = c
            .request(http::Method::GET, "/metrics", bytes::Bytes::new(), true)
            .await?;
        let text = String::from_utf8_lossy(&a.body);
        Ok(names.map(|name| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        }))
    }

    /// `warmpool_reconcile_duration_seconds` sum and count, from `/metrics`.
    pub async fn reconcile_metrics(&self) -> anyhow::Result<(f64, f64)> {
        let [sum, count] = self
            .metric_values([
                "warmpool_reconcile_duration_seconds_sum",
                "warmpool_reconcile_duration_seconds_count",
            ])
            .await?;
        Ok((sum.unwrap_or(0.0), count.unwrap_or(0.0)))
    }

    /// Shuts warmpool down (SIGTERM: it stops its containers first).
    pub fn stop(mut self) {
        terminate(&mut self.child, Duration::from_secs(60));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(60));
    }
}

/// A bare sample-app process (the raw baseline of the process runtime), run from
/// the same binary as a warmpool server's (the lean one beside this binary, if any).
pub struct RawApp {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RawApp {
    pub fn spawn() -> anyhow::Result<RawApp> {
        let dir = tempfile::Builder::new()
            .prefix("warmpool-bench-app-")
            .tempdir()?;
        let port = free_port()?;
        // The same binary a warmpool server here runs for the sample app.
        let app = warmpool_runtime::SampleAppCommand::beside(&exe()?);
        let child = Command::new(&app.program)
            .args(&app.args)
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(RawApp {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        })
    }
}

impl Drop for RawApp {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// nginx as a plain reverse proxy to `upstream`, in the foreground, with its own
/// temp prefix and config.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The nginx binary, if installed.
pub fn nginx_path() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Nginx {
    pub async fn start(bin: &Path, upstream: SocketAddr) -> anyhow::Result<Nginx> {
        let dir = tempfile::Builder::new()
            .prefix("warmpool-bench-nginx-")
            .tempdir()?;
        let port = free_port()?;
        let d = dir.path().display();
        let root = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        };
        let user = if root { "user root root;" } else { "" };
        // Two workers, like warmpool's two tokio workers on this 2-core machine;
        // keep-alive to the upstream like warmpool's proxy; no buffering to disk.
        let conf = format!(
            r#"{user}
worker_processes 2;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    # Like the load generator's and warmpool's connections: never closed by count.
    keepalive_requests 100000000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 0;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream app {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"#
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nginx")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut n = Nginx {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Conn::connect(addr).await.is_err() {
            if let Ok(Some(s)) = n.child.try_wait() {
                let log =
                    std::fs::read_to_string(n._dir.path().join("error.log")).unwrap_or_default();
                bail!("nginx exited ({s}): {log}");
            }
            if Instant::now() > deadline {
                bail!("nginx did not listen on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(n)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master ends its workers too (fast shutdown).
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// The wrk binary, if installed (an outside load generator for scenario 4).
pub fn wrk_path() -> Option<PathBuf> {
    ["/usr/bin/wrk", "/usr/local/bin/wrk"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// What one wrk run reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrkRun {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs wrk (1 thread, `conns` keep-alive connections, `secs` seconds) against
/// `url` and reads its figures.
pub async fn wrk(bin: &Path, url: &str, conns: usize, secs: f64) -> anyhow::Result<WrkRun> {
    let out = tokio::process::Command::new(bin)
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{}s", secs.ceil().max(1.0) as u64),
            "--latency",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk {url}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    parse_wrk(&text).with_context(|| format!("wrk {url}: unexpected output: {text}"))
}

/// Reads `Requests/sec` and the 50% and 99% latencies of `wrk --latency`'s output;
/// a run with socket errors or non-2xx answers is an error.
fn parse_wrk(text: &str) -> anyhow::Result<WrkRun> {
    let duration_ms = |v: &str| -> Option<f64> {
        let at = v.find(|c: char| c.is_ascii_alphabetic())?;
        let n: f64 = v[..at].parse().ok()?;
        Some(match &v[at..] {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => return None,
        })
    };
    let (mut rps, mut p50, mut p99) = (None, None, None);
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => rps = v.parse().ok(),
            (Some("50%"), Some(v)) => p50 = duration_ms(v),
            (Some("99%"), Some(v)) => p99 = duration_ms(v),
            (Some("Socket"), _) => bail!("{line}"),
            (Some("Non-2xx"), _) => bail!("{line}"),
            _ => {}
        }
    }
    match (rps, p50, p99) {
        (Some(rps), Some(p50_ms), Some(p99_ms)) => Ok(WrkRun {
            rps,
            p50_ms,
            p99_ms,
        }),
        _ => bail!("no Requests/sec or latency distribution"),
    }
}

/// Runs `docker args...`; returns its trimmed stdout.
pub async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run docker")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Why the Docker cases cannot run, if they cannot.
pub async fn docker_unavailable() -> Option<String> {
    if docker(&["info", "--format", "{{.ServerVersion}}"])
        .await
        .is_err()
    {
        return Some("no Docker Engine answers".into());
    }
    if docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE])
        .await
        .is_err()
    {
        return Some(format!(
            "image {IMAGE} is missing (build it with scripts/build-sample-image.sh)"
        ));
    }
    None
}

/// Creates the bench's bridge network if missing.
pub async fn docker_network() -> anyhow::Result<()> {
    if docker(&["network", "inspect", NETWORK]).await.is_err() {
        docker(&["network", "create", NETWORK]).await?;
    }
    Ok(())
}

/// The bench's own Engine API client (the default socket or `DOCKER_HOST`).
fn engine() -> anyhow::Result<&'static bollard::Docker> {
    static ENGINE: std::sync::OnceLock<bollard::Docker> = std::sync::OnceLock::new();
    if let Some(d) = ENGINE.get() {
        return Ok(d);
    }
    let d = bollard::Docker::connect_with_local_defaults()?;
    Ok(ENGINE.get_or_init(|| d))
}

/// A raw start of the sample image, what `docker run -d --rm` does, through the
/// Engine API as warmpool's Docker runtime makes it (create, start, inspect), so
/// that neither side pays for a CLI process: the same limits and hardening
/// warmpool sets by default, the bench's label and network. Returns the container id and its
/// address.
pub async fn docker_run(name: &str) -> anyhow::Result<(String, SocketAddr)> {
    use bollard::container::{Config, CreateContainerOptions, StartContainerOptions};
    use std::collections::HashMap;

    use bollard::models::{
        HostConfig, Mount, MountTypeEnum, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    };
    const TMPFS: &str = "rw,nosuid,nodev,uid=65532,gid=65532,mode=1777,size=256m";
    let docker = engine()?;
    let (label_key, label_value) = LABEL.split_once('=').unwrap_or((LABEL, ""));
    let memory = 256 * 1024 * 1024;
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name,
                platform: None,
            }),
            Config {
                image: Some(IMAGE),
                labels: Some(HashMap::from([(label_key, label_value)])),
                host_config: Some(HostConfig {
                    network_mode: Some(NETWORK.to_owned()),
                    nano_cpus: Some(250_000_000),
                    memory: Some(memory),
                    memory_swap: Some(memory),
                    pids_limit: Some(256),
                    auto_remove: Some(true),
                    // The hardening warmpool gives the sample image by default:
                    // a read-only root with tmpfs for /tmp and its data, the
                    // files dir on a tmpfs volume, no capabilities and no new
                    // privileges.
                    readonly_rootfs: Some(true),
                    tmpfs: Some(HashMap::from([
                        ("/tmp".to_owned(), TMPFS.to_owned()),
                        ("/data".to_owned(), TMPFS.to_owned()),
                    ])),
                    mounts: Some(vec![Mount {
                        target: Some("/warmpool/files".to_owned()),
                        typ: Some(MountTypeEnum::VOLUME),
                        volume_options: Some(MountVolumeOptions {
                            driver_config: Some(MountVolumeOptionsDriverConfig {
                                name: Some("local".to_owned()),
                                options: Some(HashMap::from([
                                    ("type".to_owned(), "tmpfs".to_owned()),
                                    ("device".to_owned(), "tmpfs".to_owned()),
                                    (
                                        "o".to_owned(),
                                        "uid=65532,gid=65532,mode=0755,size=256m".to_owned(),
                                    ),
                                ])),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    cap_drop: Some(vec!["ALL".to_owned()]),
                    security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating {name}"))?;
    docker
        .start_container(&created.id, None::<StartContainerOptions<String>>)
        .await
        .with_context(|| format!("starting {name}"))?;
    let inspected = docker
        .inspect_container(&created.id, None)
        .await
        .with_context(|| format!("inspecting {name}"))?;
    let ip = inspected
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(NETWORK).and_then(|e| e.ip_address.clone()))
        .filter(|ip| !ip.is_empty())
        .with_context(|| format!("{name} has no address on {NETWORK}"))?;
    Ok((created.id, format!("{ip}:8080").parse()?))
}

/// Removes the bench's bridge network, if nothing uses it any more.
pub async fn docker_network_remove() {
    if docker(&["network", "inspect", NETWORK]).await.is_ok() {
        let _ = docker(&["network", "rm", NETWORK]).await;
    }
}

/// Removes every container the bench started itself (by label).
pub async fn docker_cleanup() {
    let Ok(ids) = docker(&["ps", "-aq", "--filter", &format!("label={LABEL}")]).await else {
        return;
    };
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids);
        let _ = docker(&args).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read_and_its_errors_are_errors() {
        let out = "Running 3s test @ http://127.0.0.1:1/\n  1 threads and 16 connections\n  \
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   412.05us  \
            190.21us   6.44ms   90.12%\n  Latency Distribution\n     50%  380.00us\n     \
            75%  450.00us\n     90%  560.00us\n     99%    1.20ms\n  120000 requests in \
            3.00s, 10.00MB read\nRequests/sec:  40000.50\nTransfer/sec:      3.33MB\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(
            r,
            WrkRun {
                rps: 40000.5,
                p50_ms: 0.38,
                p99_ms: 1.2
            }
        );
        let errors = out.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec",
        );
        assert!(parse_wrk(&errors).is_err());
        let non_2xx = out.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 12\nRequests/sec",
        );
        assert!(parse_wrk(&non_2xx).is_err());
        assert!(parse_wrk("nothing").is_err());
    }
}
