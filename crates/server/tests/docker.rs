//! The core scenarios against a real Docker Engine running the sample image: fill
//! in batches, claim and proxy, refill, expiry, `docker kill`/`docker rm -f`,
//! `kill -9` of warmpool with adoption and orphan removal, the memory limit, and named
//! pools with their own image, resources, env and locations.
//! Each test skips with a reason when Docker is not there, unless
//! `WARMPOOL_REQUIRE_DOCKER=1`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    docker, docker_inspect, docker_owned, docker_ready, first_ready, poll, poll_gone, wait_ready,
    InProc, Proc,
};
use warmpool_client::{ClaimRequest, ContainerQuery};

const T: Duration = Duration::from_secs(60);

fn docker_settings<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut s = vec![
        ("WARMPOOL_RUNTIME", "docker"),
        ("WARMPOOL_DOCKER_NETWORK", "warmpool-test"),
        ("WARMPOOL_STOP_GRACE_SECONDS", "2"),
    ];
    s.extend_from_slice(extra);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pool_fills_in_batches_with_limits_labels_and_proxy() {
    if !docker_ready("docker_pool_fills_in_batches_with_limits_labels_and_proxy") {
        return;
    }
    let mut wp = InProc::start(&docker_settings(&[
        ("POOL_TARGET_INSTANCES", "3"),
        ("POOL_BATCH_SIZE", "2"),
        ("POOL_BATCH_SPACING_IN_SECONDS", "0.5"),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
        ("WARMPOOL_APP_ENV", "GREETING='hello there'"),
    ]))
    .await;
    wp.wait_ready("default", 3, T).await;
    let created = wp.created_times().await;
    assert_eq!(created.len(), 3);
    assert!(
        created[1] - created[0] < 300 && created[2] - created[1] >= 490,
        "{created:?}"
    );

    let ready = wp
        .client
        .containers(&ContainerQuery::default())
        .await
        .unwrap()
        .containers;
    let c = &ready[0];
    let inspect = docker_inspect(&format!("warmpool-{}", c.id)).expect("named warmpool-<id>");
    let labels = &inspect["Config"]["Labels"];
    assert_eq!(labels["dev.warmpool.container-id"], c.id.as_str());
    assert_eq!(labels["dev.warmpool.pool"], "default");
    assert_eq!(labels["dev.warmpool.location"], "default");
    assert!(labels["dev.warmpool.instance"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let env: Vec<&str> = inspect["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for want in [
        "PORT=8080".to_owned(),
        format!("WARMPOOL_CONTAINER_ID={}", c.id),
        "WARMPOOL_LOCATION=default".into(),
        "WARMPOOL_REGION=local".into(),
        "WARMPOOL_COUNTRY=unknown".into(),
        "GREETING=hello there".into(),
    ] {
        assert!(env.contains(&want.as_str()), "{want} missing from {env:?}");
    }
    let hc = &inspect["HostConfig"];
    assert_eq!(hc["NanoCpus"], 250_000_000);
    assert_eq!(hc["Memory"], 256 * 1024 * 1024);
    assert_eq!(hc["MemorySwap"], 256 * 1024 * 1024, "no swap");
    assert_eq!(hc["PidsLimit"], 256);
    assert_eq!(hc["NetworkMode"], "warmpool-test");
    assert!(
        inspect["NetworkSettings"]["Ports"]["8080/tcp"].is_null(),
        "no host port published"
    );
    let ip = inspect["NetworkSettings"]["Networks"]["warmpool-test"]["IPAddress"]
        .as_str()
        .unwrap();
    assert_eq!(c.address.as_deref(), Some(format!("{ip}:8080").as_str()));

    let claimed = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let r = wp.proxied(&claimed.id, "/hello").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-container-id"], claimed.id.as_str());
    assert_eq!(r.headers()["x-container-location"], "default");
    assert!(
        r.headers().contains_key("x-container-region")
            && r.headers().contains_key("x-container-country")
    );
    assert_eq!(r.text().await.unwrap(), "No Content");
    wp.wait_ready("default", 3, T).await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_expiry_kill_and_removal_are_handled() {
    if !docker_ready("docker_expiry_kill_and_removal_are_handled") {
        return;
    }
    let mut wp = InProc::start(&docker_settings(&[
        ("POOL_TARGET_INSTANCES", "2"),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
    ]))
    .await;
    wp.wait_ready("default", 2, T).await;

    // An expired container answers 410 and is removed from Docker.
    let short = wp
        .client
        .claim(&ClaimRequest {
            location: None,
            max_lifetime_in_seconds: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let detail = poll_gone(&format!("{}/container/{}/", wp.base, short.id), T).await;
    assert!(detail.contains("expired"), "{detail}");
    let name = format!("warmpool-{}", short.id);
    poll(T, "the expired container to be removed", || {
        let name = name.clone();
        async move { docker_inspect(&name).is_none().then_some(()) }
    })
    .await;

    // `docker kill` of an allocated container: 410 with its exit code.
    wp.wait_ready("default", 2, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    docker(&["kill", &format!("warmpool-{}", c.id)]);
    let detail = poll_gone(&format!("{}/container/{}/", wp.base, c.id), T).await;
    assert!(detail.contains("exited with code 137"), "{detail}");

    // `docker kill` and `docker rm -f` of ready ones: replaced, never handed out.
    wp.wait_ready("default", 2, T).await;
    let ready: Vec<String> = wp
        .client
        .containers(&ContainerQuery {
            state: Some("ready".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect();
    docker(&["kill", &format!("warmpool-{}", ready[0])]);
    docker(&["rm", "-f", &format!("warmpool-{}", ready[1])]);
    let client = wp.client.clone();
    let dead = ready.clone();
    poll(T, "both dead containers recorded", || {
        let (client, dead) = (client.clone(), dead.clone());
        async move {
            for id in &dead {
                if client.container(id).await.ok()?.state == "ready" {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    wp.wait_ready("default", 2, T).await;
    for _ in 0..2 {
        let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
        assert!(!ready.contains(&c.id), "a dead container was handed out");
    }
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_kill_9_and_restart_adopt_and_remove_orphans() {
    if !docker_ready("docker_kill_9_and_restart_adopt_and_remove_orphans") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = docker_settings(&[("POOL_TARGET_INSTANCES", "2")]);
    let mut first = Proc::spawn(dir.path(), &settings);
    wait_ready(&first.client, "default", 2, T).await;
    let claimed = first.client.claim(&ClaimRequest::default()).await.unwrap();
    wait_ready(&first.client, "default", 2, T).await;
    let before = first.client.container(&claimed.id).await.unwrap();
    let inspect = docker_inspect(&format!("warmpool-{}", claimed.id)).unwrap();
    let instance = inspect["Config"]["Labels"]["dev.warmpool.instance"]
        .as_str()
        .unwrap()
        .to_owned();
    let doomed = first_ready(&first.client).await;
    first.kill9();
    // While warmpool is down, one of its ready containers vanishes.
    docker(&["rm", "-f", &format!("warmpool-{}", doomed.id)]);

    // An orphan: labelled as ours, unknown to the store.
    let orphan = uuid::Uuid::new_v4().to_string();
    docker(&[
        "run",
        "-d",
        "--name",
        &format!("warmpool-{orphan}"),
        "--label",
        &format!("dev.warmpool.instance={instance}"),
        "--label",
        &format!("dev.warmpool.container-id={orphan}"),
        "--network",
        "warmpool-test",
        common::IMAGE,
    ]);

    let second = Proc::spawn(dir.path(), &settings);
    assert!(
        docker_inspect(&format!("warmpool-{orphan}")).is_none(),
        "the orphan survived start-up"
    );
    // The claimed container was adopted, not restarted: same handle, still routes.
    let after = second.client.container(&claimed.id).await.unwrap();
    assert_eq!(after.state, "allocated");
    assert_eq!(after.runtime_handle, before.runtime_handle);
    let r = reqwest::get(format!("{}/container/{}/", second.base, claimed.id))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let lost = second.client.container(&doomed.id).await.unwrap();
    assert_eq!(
        (lost.state.as_str(), lost.stop_reason.as_deref()),
        ("stopped", Some("lost"))
    );
    wait_ready(&second.client, "default", 2, T).await;
    let second_ref = &second;
    let inst = instance.clone();
    poll(T, "docker and the store to agree", || {
        let inst = inst.clone();
        async move {
            let labelled: BTreeSet<String> = docker_owned(&inst).into_iter().collect();
            let live = common::live_ids(&second_ref.client).await?;
            (labelled == live).then_some(())
        }
    })
    .await;
    drop(second);
    assert!(
        docker_owned(&instance).is_empty(),
        "containers left after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_memory_limit_is_enforced_and_reported_as_oom() {
    if !docker_ready("docker_memory_limit_is_enforced_and_reported_as_oom") {
        return;
    }
    let mut wp = InProc::start(&docker_settings(&[
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_MEMORY_MIB", "32"),
    ]))
    .await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let addr = wp.client.container(&c.id).await.unwrap().address.unwrap();
    // Straight to the container (the proxy refuses /admin): allocate past the limit.
    let _ = wp
        .http
        .post(format!("http://{addr}/admin/allocate-mib/64"))
        .timeout(Duration::from_secs(20))
        .send()
        .await;
    let detail = poll_gone(&format!("{}/container/{}/", wp.base, c.id), T).await;
    assert!(detail.contains("out of memory"), "{detail}");
    let v = wp.client.container(&c.id).await.unwrap();
    assert!(v.stop_reason.unwrap().contains("OOM"));
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_container_that_never_gets_ready_is_removed_and_counted() {
    if !docker_ready("docker_container_that_never_gets_ready_is_removed_and_counted") {
        return;
    }
    // The sample app answers 404 under /admin: this probe never succeeds.
    let mut wp = InProc::start(&docker_settings(&[
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_HEALTH_PATH", "/admin/never"),
        ("WARMPOOL_START_TIMEOUT_SECONDS", "1"),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
        ("POOL_BATCH_SPACING_IN_SECONDS", "3600"),
    ]))
    .await;
    let client = wp.client.clone();
    let failed = poll(T, "a failed start to be counted", || {
        let client = client.clone();
        async move {
            let p = client.pools().await.ok()?;
            (p.pools[0].failed_starts >= 1).then(|| p.pools[0].last_error.clone())
        }
    })
    .await;
    assert!(failed.unwrap().contains("did not become ready"));
    let first = wp
        .client
        .containers(&ContainerQuery::default())
        .await
        .unwrap()
        .containers
        .remove(0);
    let name = format!("warmpool-{}", first.id);
    poll(
        T,
        "the never-ready container to be removed from docker",
        || {
            let name = name.clone();
            async move { docker_inspect(&name).is_none().then_some(()) }
        },
    )
    .await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_publish_mode_proxies_through_a_loopback_port() {
    if !docker_ready("docker_publish_mode_proxies_through_a_loopback_port") {
        return;
    }
    let mut wp = InProc::start(&docker_settings(&[
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_DOCKER_PUBLISH", "true"),
    ]))
    .await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let addr = wp.client.container(&c.id).await.unwrap().address.unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let r = wp.proxied(&c.id, "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-container-id"], c.id.as_str());
    wp.shutdown().await;
}

/// A unix-socket relay to the Docker Engine that the test can cut, to break the
/// runtime's event stream the way a daemon restart or a network blip would.
struct Relay {
    path: std::path::PathBuf,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    fn start(dir: &std::path::Path) -> Relay {
        use std::sync::atomic::Ordering;
        let path = dir.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: refused while down
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
                conns2.lock().unwrap().push(task);
            }
        });
        Relay { path, up, conns }
    }

    /// Drops every relayed connection and refuses new ones until [`Relay::restore`].
    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_exits_missed_while_the_event_stream_was_down_are_found_on_reconnect() {
    use warmpool_core::{ContainerId, Location, PoolKey};
    use warmpool_docker::{DockerConfig, DockerRuntime};
    use warmpool_runtime::{ContainerSpec, Runtime, RuntimeEvent, Template, Workload};
    if !docker_ready("docker_exits_missed_while_the_event_stream_was_down_are_found_on_reconnect") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path());
    let instance = format!(
        "reconnect-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let rt = DockerRuntime::connect(DockerConfig {
        socket: Some(relay.path.display().to_string()),
        ..common::docker_config(&instance)
    })
    .await
    .unwrap();
    let spec = ContainerSpec {
        id: ContainerId::random(),
        key: PoolKey::new("default", Location::Default),
        revision: 0,
        env: Vec::new(),
        template: std::sync::Arc::new(Template {
            workload: Workload::Image {
                image: common::IMAGE.into(),
                pids_limit: None,
            },
            health_path: "/healthz".into(),
            ..Template::default()
        }),
    };
    let started = rt.start(&spec).await.unwrap();
    rt.wait_ready(&spec, &started, T).await.unwrap();
    let mut events = rt.subscribe();

    // The stream breaks; meanwhile the container dies; then the engine is back.
    relay.cut();
    docker(&["kill", &started.handle]);
    relay.restore();

    let got = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(RuntimeEvent::Exited { id, detail, .. }) = events.recv().await {
                if id == spec.id {
                    return detail;
                }
            }
        }
    })
    .await
    .expect("the missed exit was not found after reconnecting");
    assert!(got.contains("re-listing"), "{got}");
    rt.remove(spec.id, &started.handle).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_disk_limit_is_applied_or_warned_about_once() {
    use std::io::Read;
    use std::process::Stdio;
    if !docker_ready("docker_disk_limit_is_applied_or_warned_about_once") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn_with_stderr(
        dir.path(),
        &docker_settings(&[("POOL_TARGET_INSTANCES", "1"), ("WARMPOOL_DISK_MB", "512")]),
        Stdio::piped(),
    );
    wait_ready(&p.client, "default", 1, T).await;
    let c = p
        .client
        .containers(&ContainerQuery::default())
        .await
        .unwrap()
        .containers
        .remove(0);
    let storage_opt =
        docker_inspect(&format!("warmpool-{}", c.id)).unwrap()["HostConfig"]["StorageOpt"].clone();
    // Little is logged at warn level: the pipe cannot fill up before the exit.
    let mut pipe = p.child.stderr.take().unwrap();
    assert!(p.sigterm().success());
    let mut stderr = String::new();
    pipe.read_to_string(&mut stderr).unwrap();
    let warnings = stderr.matches("cannot limit container disk size").count();
    if storage_opt.is_null() {
        assert_eq!(
            warnings, 1,
            "the unapplied disk limit must be reported once:\n{stderr}"
        );
    } else {
        assert_eq!(storage_opt["size"], "512M");
        assert_eq!(warnings, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_named_pools_get_their_own_image_resources_env_and_location() {
    if !docker_ready("docker_named_pools_get_their_own_image_resources_env_and_location") {
        return;
    }
    // A second name for the sample image, so the pool's own image shows.
    let image = "warmpool/sample-app:pools-test";
    docker(&["tag", common::IMAGE, image]);
    let file = format!(
        r#"
        [pools.large]
        image = "{image}"
        targets = {{ weur = 1 }}
        batch_spacing = 0
        vcpu = 0.5
        memory_mib = 96
        pids_limit = 64
        disk_mb = 0
        app_env = {{ SIZE = "large" }}
        "#
    );
    let mut wp = InProc::start_with_file(
        &docker_settings(&[
            ("POOL_TARGET_INSTANCES", "1"),
            ("POOL_BATCH_SPACING_IN_SECONDS", "0"),
        ]),
        &file,
        None,
    )
    .await;
    let c = wp.client.clone();
    poll(T, "one ready container in each pool", || {
        let c = c.clone();
        async move {
            (common::pool_ready(&c, "default", "default").await == 1
                && common::pool_ready(&c, "large", "weur").await == 1)
                .then_some(())
        }
    })
    .await;
    let of_pool = |pool: &str| {
        let c = c.clone();
        let pool = pool.to_owned();
        async move {
            let list = c
                .containers(&ContainerQuery {
                    pool: Some(pool),
                    ..Default::default()
                })
                .await
                .unwrap()
                .containers;
            assert_eq!(list.len(), 1, "{list:?}");
            docker_inspect(&format!("warmpool-{}", list[0].id)).unwrap()
        }
    };
    let env_of = |inspect: &serde_json::Value| -> Vec<String> {
        inspect["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };

    let large = of_pool("large").await;
    assert_eq!(large["Config"]["Image"], image);
    assert_eq!(large["Config"]["Labels"]["dev.warmpool.pool"], "large");
    assert_eq!(large["Config"]["Labels"]["dev.warmpool.location"], "weur");
    let env = env_of(&large);
    assert!(
        env.contains(&"SIZE=large".to_owned())
            && env.contains(&"WARMPOOL_LOCATION=weur".to_owned()),
        "{env:?}"
    );
    let hc = &large["HostConfig"];
    assert_eq!(hc["NanoCpus"], 500_000_000);
    assert_eq!(hc["Memory"], 96 * 1024 * 1024);
    assert_eq!(hc["PidsLimit"], 64);

    let default = of_pool("default").await;
    assert_eq!(default["Config"]["Image"], common::IMAGE);
    assert!(!env_of(&default).iter().any(|e| e.starts_with("SIZE=")));
    assert_eq!(default["HostConfig"]["Memory"], 256 * 1024 * 1024);

    let claimed = c
        .claim(&ClaimRequest {
            pool: Some("large".into()),
            location: Some("weur".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(claimed.warm);
    let r = wp.proxied(&claimed.id, "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-container-location"], "weur");
    wp.shutdown().await;
    docker(&["rmi", image]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_shutdown_policy_keep_leaves_containers_for_the_next_start() {
    if !docker_ready("docker_shutdown_policy_keep_leaves_containers_for_the_next_start") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keep = docker_settings(&[
        ("POOL_TARGET_INSTANCES", "2"),
        ("WARMPOOL_SHUTDOWN_POLICY", "keep"),
    ]);
    let mut first = Proc::spawn(dir.path(), &keep);
    wait_ready(&first.client, "default", 2, T).await;
    let claimed = first.client.claim(&ClaimRequest::default()).await.unwrap();
    wait_ready(&first.client, "default", 2, T).await;
    let inspect = docker_inspect(&format!("warmpool-{}", claimed.id)).unwrap();
    let instance = inspect["Config"]["Labels"]["dev.warmpool.instance"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = running_owned(&instance);
    assert_eq!(before.len(), 3);
    assert!(first.sigterm().success());
    let after = running_owned(&instance);
    assert_eq!(after, before, "policy keep: the containers keep running");

    // The next start (policy stop) adopts them all; the claim routes at once.
    let second = Proc::spawn(
        dir.path(),
        &docker_settings(&[("POOL_TARGET_INSTANCES", "2")]),
    );
    let r = reqwest::get(format!("{}/container/{}/", second.base, claimed.id))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_ready(&second.client, "default", 2, T).await;
    let now = running_owned(&instance);
    assert_eq!(now, before, "adopted, none replaced");
    // And its shutdown (policy stop) leaves nothing.
    drop(second);
    assert!(
        docker_owned(&instance).is_empty(),
        "containers left after shutdown"
    );
}

/// Ids of the running containers labelled with `instance`.
fn running_owned(instance: &str) -> BTreeSet<String> {
    docker(&[
        "ps",
        "--filter",
        &format!("label=dev.warmpool.instance={instance}"),
        "--filter",
        "status=running",
        "--format",
        "{{.Label \"dev.warmpool.container-id\"}}",
    ])
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_owned)
    .collect()
}
