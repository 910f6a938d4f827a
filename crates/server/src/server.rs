//! Putting it together: open the engine (store, runtime, recovery, background
//! tasks), serve HTTP, and shut down in order. Wiring only: what happens lives in
//! the engine and in the HTTP modules.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warmpool_docker::{DockerConfig, DockerRuntime};
use warmpool_engine::{error_chain, Engine, Recovered};
use warmpool_kubernetes::{KubernetesConfig, KubernetesRuntime};
use warmpool_runtime::{
    ProcessConfig, ProcessRuntime, Runtime, SampleAppCommand, SimMode, SimRuntime,
};

use crate::config::{Config, RuntimeKind};
use crate::routes::router;
pub use crate::specs::engine_config;
use crate::state::{Reload, Shared};

/// The runtime the configuration asks for.
pub async fn build_runtime(config: &Config, instance_id: &str) -> anyhow::Result<Arc<dyn Runtime>> {
    Ok(match config.runtime {
        RuntimeKind::Process => {
            let rt = ProcessRuntime::new(ProcessConfig {
                instance_id: instance_id.to_owned(),
                work_root: config.data_dir.join("containers"),
                inherit_stderr: true,
            });
            // A pool without a command runs the sample app: the lean binary beside
            // this one if it is there, else this binary's own `sample-app`.
            let exe =
                std::env::current_exe().context("cannot find this binary to run its sample-app")?;
            let app = SampleAppCommand::beside(&exe);
            tracing::info!(program = %app.program.display(), args = ?app.args, "pools with no command run the sample app with this program");
            Arc::new(rt.with_sample_app(app))
        }
        RuntimeKind::Sim => Arc::new(SimRuntime::new(
            if config.sim_start.is_zero() {
                SimMode::Instant
            } else {
                SimMode::Delayed(config.sim_start)
            },
            config.sim_address.clone(),
        )),
        RuntimeKind::Docker => DockerRuntime::connect(DockerConfig {
            instance_id: instance_id.to_owned(),
            network: config.docker_network.clone(),
            container_port: config.container_port,
            publish: config.docker_publish,
            socket: None,
            api_timeout: config.docker_timeout,
            pull_timeout: config.docker_pull_timeout,
            config_file: config.docker_config.clone(),
        })
        .await
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))
        .context("cannot use the Docker Engine")?,
        RuntimeKind::Kubernetes => KubernetesRuntime::connect(KubernetesConfig {
            instance_id: instance_id.to_owned(),
            namespace: config.k8s_namespace.clone(),
            container_port: config.container_port,
            placement: config.k8s_placement.clone(),
            kubeconfig: config.k8s_kubeconfig.clone(),
        })
        .await
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))
        .context("cannot use the Kubernetes cluster")?,
    })
}

/// Without tokens warmpool serves only on loopback, unless told it may not.
fn check_exposure(config: &Config) -> anyhow::Result<()> {
    if !config.auth_enabled() {
        if !config.listen.ip().is_loopback() && !config.insecure_no_auth {
            anyhow::bail!(
                "refusing to listen on {} without tokens: set WARMPOOL_API_TOKEN and \
                 WARMPOOL_ADMIN_TOKEN, listen on a loopback address, or pass --insecure-no-auth",
                config.listen
            );
        }
        tracing::warn!(listen = %config.listen, "no tokens configured: the API is open to whoever can reach this address");
    } else if config.admin_tokens.is_empty() {
        tracing::warn!("no admin token configured: the admin surfaces are closed");
    }
    Ok(())
}

/// What one client may hold of the HTTP server.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Connections served at once; past it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, also while a keep-alive
    /// connection is idle between requests: slow or idle clients cannot pin a
    /// connection slot.
    pub header_timeout: Duration,
    /// Longest pause while a request body is being sent ([`crate::body`]).
    pub body_timeout: Duration,
    /// What a request's head may hold ([`crate::header_limits`]).
    pub headers: crate::header_limits::HeaderLimits,
}

/// Serves `app` on `listener` (HTTP/1.1, with upgrades) until `shutdown` turns
/// true, then asks every connection to finish its request in flight and waits for
/// them (the caller bounds how long). Unlike `axum::serve`, it caps connections and
/// times out slow headers and idle keep-alive connections, so that slow or idle
/// clients cannot take every connection.
///
/// With `proxy` (when the proxy routes need no token), proxied requests
/// ([`crate::proxy::is_proxied`]) go straight to [`crate::proxy::serve`], which
/// serves them as the router would, without its route match and layers.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    proxy: Option<Arc<Shared>>,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.headers.hyper_max_buf())
        .max_headers(limits.headers.hyper_max_headers());
    let max = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(tokio::sync::Semaphore::new(max as usize));
    let stopping = shutdown.clone();
    // Completes once; the loop ends right then, so it is never polled again.
    let mut stop = std::pin::pin!(shutdown.cancelled_owned());
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            _ = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up: not fatal.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let proxy = proxy.clone();
        let body_timeout = limits.body_timeout;
        let headers = limits.headers;
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                use axum::response::IntoResponse;
                use futures_util::future::{ready, Either};
                // Too much before the body: answered here, for the API and the
                // proxy alike, and never passed on.
                if let Some(refused) = headers.check(&req) {
                    return Either::Left(ready(Ok::<_, std::convert::Infallible>(
                        refused.into_response(),
                    )));
                }
                let mut req = req.map(|b| crate::body::TimedBody::new(b, body_timeout));
                if let Some(shared) = proxy
                    .as_ref()
                    .filter(|_| crate::proxy::is_proxied(req.uri().path()))
                {
                    let (shared, req) = (shared.clone(), req.map(axum::body::Body::new));
                    return Either::Right(Either::Left(async move {
                        Ok(crate::proxy::serve(shared, peer, req).await)
                    }));
                }
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                Either::Right(Either::Right(app.clone().oneshot(req)))
            });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let stop = async move {
                stopping.cancelled().await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    // Every connection holds a slot until it is done.
    let _all = slots.acquire_many(max).await;
    Ok(())
}

/// A running warmpool.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<Engine>,
    pub recovered: Recovered,
    config: Arc<Config>,
    shared: Arc<Shared>,
    http: JoinHandle<std::io::Result<()>>,
}

/// Fails start-up with a clear message when the data dir cannot be created or
/// written (a read-only mount, wrong owner), rather than with SQLite's "unable to
/// open database file".
fn check_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    let probe = dir.join(".warmpool-write-check");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("the data dir {} is not writable", dir.display()))
}

/// Raises the soft limit on open files to the hard one (every connection is a
/// file), and warns when even that is below what the connection cap needs.
fn raise_fd_limit(config: &Config) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        tracing::warn!(soft, hard, "cannot raise the open-file limit");
    }
    let now = getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(s, _)| s);
    // Connections, plus the store, the runtime's children and some slack.
    let needed = config.max_connections as u64 + 256;
    if now < needed {
        tracing::warn!(
            open_files = now,
            max_connections = config.max_connections,
            "the open-file limit is below WARMPOOL_MAX_CONNECTIONS; connections past it are refused until others close (raise `ulimit -n`)"
        );
    }
}

/// Starts warmpool. With `runtime`, uses it instead of the configured one (tests
/// pass a simulated runtime they keep a handle on).
pub async fn start(config: Config, runtime: Option<Arc<dyn Runtime>>) -> anyhow::Result<Running> {
    start_reloadable(config, runtime, None).await
}

/// [`start`], with a way to read the configuration again (SIGHUP and `POST
/// /v1/reload` apply the pools it declares).
pub async fn start_reloadable(
    config: Config,
    runtime: Option<Arc<dyn Runtime>>,
    reload: Option<Reload>,
) -> anyhow::Result<Running> {
    check_exposure(&config)?;
    raise_fd_limit(&config);
    if config.warm_total() > u64::from(config.max_instances) {
        tracing::warn!(
            warm = config.warm_total(),
            max_instances = config.max_instances,
            "the pools' targets add up to more than WARMPOOL_MAX_INSTANCES; some pools will stay short"
        );
    }
    let data_dir = config.data_dir.clone();
    check_data_dir(&data_dir)?;
    let (store, registry) = Engine::open_store(&data_dir)
        .await
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let runtime = match runtime {
        Some(r) => r,
        None => build_runtime(&config, store.instance_id()).await?,
    };
    tracing::info!(instance_id = store.instance_id(), runtime = runtime.name(), data_dir = %config.data_dir.display(), "starting warmpool");
    let listen = config.listen;
    let (app, recovered) = Engine::start(engine_config(&config), store, registry, runtime)
        .await
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))
        .context("cannot start the engine")?;

    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            app.shutdown(true).await;
            return Err(e).with_context(|| format!("cannot listen on {listen}"));
        }
    };
    let addr = listener.local_addr()?;
    let config = Arc::new(config);
    let shared = Arc::new(Shared::new(app.clone(), config.clone(), reload));
    let limits = HttpLimits {
        max_connections: config.max_connections,
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        headers: config.header_limits,
    };
    // With a token required on the proxy, proxied requests go through the
    // router's auth layer like every other.
    let proxy_needs_token = config.auth_enabled() && config.proxy_require_token;
    let direct_proxy = (!proxy_needs_token).then(|| shared.clone());
    let http = tokio::spawn(serve_http(
        listener,
        router(shared.clone()),
        direct_proxy,
        limits,
        app.shutdown_token(),
    ));
    tracing::info!(%addr, "warmpool listening");
    Ok(Running {
        addr,
        app,
        recovered,
        config,
        shared,
        http,
    })
}

impl Running {
    /// Stops accepting, drains in-flight requests (bounded), then stops or keeps
    /// the containers as the shutdown policy says, and records it.
    ///
    /// New connections are refused at once and new claims answer 503; requests in
    /// flight (streaming responses included) and open WebSockets get up to
    /// `WARMPOOL_DRAIN_SECONDS` to finish. Then, by `WARMPOOL_SHUTDOWN_POLICY`,
    /// every container is stopped, or the ready and allocated ones are left running
    /// for the next start to adopt.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let app = self.app;
        // One token: claims are refused, the background tasks end, starts in
        // flight give up, and the HTTP server stops accepting.
        app.begin_shutdown();
        let deadline = tokio::time::Instant::now() + self.config.drain_timeout;
        let mut http = self.http;
        match tokio::time::timeout_at(deadline, &mut http).await {
            Ok(r) => r?.context("http server failed")?,
            Err(_) => {
                tracing::warn!("in-flight requests did not finish within the drain timeout");
                http.abort();
            }
        }
        let upgrades = self.shared.upgrades().clone();
        if tokio::time::timeout_at(deadline, upgrades.all_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                open = upgrades.open(),
                "WebSockets still open at the end of the drain timeout are cut"
            );
        }
        let keep = self.config.shutdown_policy == crate::config::ShutdownPolicy::Keep;
        let kept = app.shutdown(keep).await;
        tracing::info!(kept, policy = ?self.config.shutdown_policy, "warmpool stopped");
        Ok(())
    }
}

/// Runs until SIGTERM or SIGINT, then shuts down; on SIGHUP reads the
/// configuration again with `reload` and applies its pools.
pub async fn run(config: Config, reload: Option<Reload>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a signal that arrives while starting must still shut down
    // in order rather than kill the process and strand its containers.
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let running = start_reloadable(config, None, reload).await?;
    // One line on stdout, for people and for scripts that started us on port 0.
    println!("warmpool listening on http://{}", running.addr);
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM received, shutting down");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT received, shutting down");
                break;
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP received, reading the configuration again");
                match crate::api::pools::reload_config(&running.shared).await {
                    Ok(r) => tracing::info!(applied = r.applied, pools = r.pools.len(), "{}", r.reason),
                    Err(e) => tracing::warn!(error = %e.detail, "reload refused; nothing changed"),
                }
            }
        }
    }
    running.shutdown().await
}
