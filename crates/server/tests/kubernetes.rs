//! The core scenarios with the Kubernetes runtime, against the loopback fake API
//! server and fake kubelet of `warmpool_kubernetes::fake` (the real sample app runs
//! as a local process on its own 127.0.0.N "pod IP"): fill with labelled pods,
//! claim and proxy with the four headers, placement by location, expiry, exits
//! with codes and OOM, pods deleted behind warmpool's back (also while the watch
//! was down), claim-time files and env through the bind hook, an unschedulable
//! location, and `kill -9` of warmpool with adoption
//! and orphan deletion. What the fake does not prove is in docs/KUBERNETES.md.
//! The real-cluster test at the end runs only with `WARMPOOL_TEST_KUBECONFIG`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{first_ready, poll, poll_gone, wait_ready, InProc, Proc};
use serde_json::{json, Value};
use warmpool_client::{ClaimRequest, ContainerQuery};
use warmpool_kubernetes::fake::{FakeCluster, FakeOptions};

const T: Duration = Duration::from_secs(60);

/// A fake cluster with one node in each of `regions`, running the sample app.
async fn cluster(regions: &[&str]) -> FakeCluster {
    FakeCluster::start(FakeOptions::with_regions(
        vec![common::bin().into(), "sample-app".into()],
        regions,
    ))
    .await
}

fn k8s<'a>(kubeconfig: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut s = vec![
        ("WARMPOOL_RUNTIME", "kubernetes"),
        ("WARMPOOL_KUBECONFIG", kubeconfig),
        ("WARMPOOL_KUBE_NAMESPACE", "warmpool"),
        ("WARMPOOL_STOP_GRACE_SECONDS", "2"),
    ];
    s.extend_from_slice(extra);
    s
}

fn pod_of(fake: &FakeCluster, id: &str) -> Option<Value> {
    fake.pod(&format!("warmpool-{id}"))
}

async fn ready_ids(wp: &InProc) -> Vec<String> {
    common::listed_ids(
        &wp.client,
        ContainerQuery {
            state: Some("ready".into()),
            ..Default::default()
        },
    )
    .await
}

async fn pod_gone(fake: &FakeCluster, id: &str, what: &str) {
    poll(T, what, || async {
        pod_of(fake, id).is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_pool_fills_with_labelled_pods_and_proxies_to_pod_ips() {
    let fake = cluster(&["weur"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = fake.write_kubeconfig(dir.path(), "warmpool");
    let kc = kc.to_str().unwrap();
    let mut wp = InProc::start(&k8s(
        kc,
        &[
            ("POOL_TARGET_INSTANCES", "2"),
            ("WARMPOOL_APP_ENV", "GREETING='hello there'"),
        ],
    ))
    .await;
    wp.wait_ready("default", 2, T).await;

    let ready = wp
        .client
        .containers(&ContainerQuery::default())
        .await
        .unwrap()
        .containers;
    let c = &ready[0];
    assert_eq!(c.runtime, "kubernetes");
    assert_eq!(
        c.runtime_handle.as_deref(),
        Some(format!("warmpool-{}", c.id).as_str())
    );
    let pod = pod_of(&fake, &c.id).expect("a pod named warmpool-<id>");
    assert_eq!(pod["metadata"]["namespace"], "warmpool");
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "warmpool");
    assert_eq!(labels["warmpool.dev/container-id"], c.id.as_str());
    assert_eq!(labels["warmpool.dev/pool"], "default");
    assert_eq!(labels["warmpool.dev/location"], "default");
    let instance = labels["warmpool.dev/instance"].as_str().unwrap();
    assert!(!instance.is_empty() && instance.len() <= 63);
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    assert!(spec["nodeSelector"].is_null(), "default goes anywhere");
    let container = &spec["containers"][0];
    assert_eq!(container["image"], "warmpool/sample-app:latest");
    assert_eq!(
        container["resources"]["limits"],
        json!({"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "512M"})
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
    let env: Vec<String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}={}",
                e["name"].as_str().unwrap(),
                e["value"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "PORT=8080".to_owned(),
        format!("WARMPOOL_CONTAINER_ID={}", c.id),
        "WARMPOOL_LOCATION=default".into(),
        "WARMPOOL_REGION=local".into(),
        "WARMPOOL_COUNTRY=unknown".into(),
        "GREETING=hello there".into(),
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    let ip = pod["status"]["podIP"].as_str().unwrap();
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "{ip}");
    assert_eq!(c.address.as_deref(), Some(format!("{ip}:8080").as_str()));

    // Claim and proxy: the four headers come from the app in the pod.
    let claimed = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let r = wp.proxied(&claimed.id, "/hello").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-container-id"], claimed.id.as_str());
    assert_eq!(r.headers()["x-container-location"], "default");
    assert_eq!(r.headers()["x-container-region"], "local");
    assert_eq!(r.headers()["x-container-country"], "unknown");

    // A location: the pod selects its region's nodes.
    let eu = wp
        .client
        .claim(&ClaimRequest {
            location: Some("weur".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let pod = pod_of(&fake, &eu.id).unwrap();
    assert_eq!(
        pod["spec"]["nodeSelector"],
        json!({"topology.kubernetes.io/region": "weur"})
    );
    assert_eq!(pod["metadata"]["labels"]["warmpool.dev/location"], "weur");
    let r = wp.proxied(&eu.id, "/").await;
    assert_eq!(r.headers()["x-container-location"], "weur");
    assert_eq!(r.headers()["x-container-region"], "europe-west");
    assert_eq!(r.headers()["x-container-country"], "FR");

    wp.wait_ready("default", 2, T).await;
    wp.shutdown().await;
    assert!(fake.pods().is_empty(), "pods left after shutdown");
    assert_eq!(fake.running_apps(), 0);
}

/// Kubernetes grants warmpool no exec rights, so a claim's files reach a pod
/// through the app's bind hook alone: they land in the pod's filesystem (the
/// fake's pod dir) under `WARMPOOL_FILES_DIR`, and the claim's env is at `/env`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_claims_get_files_and_env_through_the_bind_hook() {
    let fake = cluster(&["weur"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = fake.write_kubeconfig(dir.path(), "warmpool");
    let mut wp = InProc::start(&k8s(
        kc.to_str().unwrap(),
        &[("POOL_TARGET_INSTANCES", "1")],
    ))
    .await;
    wp.wait_ready("default", 1, T).await;
    let r = wp
        .http
        .post(format!("{}/container", wp.base))
        .json(&json!({
            "env": {"GREETING": "hello pod"},
            "files": {"a.txt": "alpha", "conf/b.json": "{\"b\":1}"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["warm"], true, "{c}");
    let id = c["id"].as_str().unwrap();
    let files = fake
        .pod_dir(&format!("warmpool-{id}"))
        .join("warmpool/files");
    assert_eq!(
        std::fs::read_to_string(files.join("a.txt")).unwrap(),
        "alpha"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("conf/b.json")).unwrap(),
        "{\"b\":1}"
    );
    let env: Value = wp.proxied(id, "/env").await.json().await.unwrap();
    assert_eq!(env["GREETING"], "hello pod", "{env}");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_expiry_exits_oom_and_deleted_pods_are_handled() {
    let fake = cluster(&["weur"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = fake.write_kubeconfig(dir.path(), "warmpool");
    // No sweep: what is noticed is noticed through the watch.
    let mut wp = InProc::start(&k8s(
        kc.to_str().unwrap(),
        &[
            ("POOL_TARGET_INSTANCES", "2"),
            ("WARMPOOL_SWEEP_SECONDS", "3600"),
        ],
    ))
    .await;
    wp.wait_ready("default", 2, T).await;

    // An expired container answers 410 and its pod is deleted.
    let short = wp
        .client
        .claim(&ClaimRequest {
            max_lifetime_in_seconds: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let detail = poll_gone(&format!("{}/container/{}/", wp.base, short.id), T).await;
    assert!(detail.contains("expired"), "{detail}");
    pod_gone(&fake, &short.id, "the expired pod to be deleted").await;

    // The app exits with a code: 410 naming it, and the pod goes.
    wp.wait_ready("default", 2, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    assert!(fake.kill_app(&format!("warmpool-{}", c.id), 3, "Error"));
    let detail = poll_gone(&format!("{}/container/{}/", wp.base, c.id), T).await;
    assert!(detail.contains("exited with code 3"), "{detail}");
    assert_eq!(wp.client.container(&c.id).await.unwrap().exit_code, Some(3));
    pod_gone(&fake, &c.id, "the exited pod to be deleted").await;

    // OOMKilled is reported as out of memory.
    wp.wait_ready("default", 2, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    assert!(fake.kill_app(&format!("warmpool-{}", c.id), 137, "OOMKilled"));
    let detail = poll_gone(&format!("{}/container/{}/", wp.base, c.id), T).await;
    assert!(detail.contains("out of memory"), "{detail}");

    // A ready pod deleted behind warmpool's back is noticed at once and replaced;
    // it is never handed out.
    wp.wait_ready("default", 2, T).await;
    let ready = ready_ids(&wp).await;
    assert!(fake.delete_now(&format!("warmpool-{}", ready[0])));
    let client = wp.client.clone();
    let gone = ready[0].clone();
    poll(Duration::from_secs(5), "the deleted pod noticed", || {
        let (client, gone) = (client.clone(), gone.clone());
        async move { (client.container(&gone).await.ok()?.state != "ready").then_some(()) }
    })
    .await;
    wp.wait_ready("default", 2, T).await;
    for _ in 0..2 {
        let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
        assert_ne!(c.id, ready[0], "a deleted pod was handed out");
    }
    wp.shutdown().await;
    assert!(fake.pods().is_empty(), "pods left after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_pods_deleted_while_the_watch_was_down_are_found_by_the_relist() {
    let fake = cluster(&["weur"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = fake.write_kubeconfig(dir.path(), "warmpool");
    let mut wp = InProc::start(&k8s(
        kc.to_str().unwrap(),
        &[
            ("POOL_TARGET_INSTANCES", "2"),
            ("WARMPOOL_SWEEP_SECONDS", "3600"),
        ],
    ))
    .await;
    wp.wait_ready("default", 2, T).await;
    let ready = ready_ids(&wp).await;
    // The watch goes down; a pod is deleted; the watch's resourceVersion expires.
    fake.hold_watches(true);
    assert!(fake.delete_now(&format!("warmpool-{}", ready[0])));
    fake.expire_watches();
    fake.hold_watches(false);
    let client = wp.client.clone();
    let gone = ready[0].clone();
    let c = poll(T, "the re-list to notice the deleted pod", || {
        let (client, gone) = (client.clone(), gone.clone());
        async move {
            let c = client.container(&gone).await.ok()?;
            (c.state != "ready").then_some(c)
        }
    })
    .await;
    assert!(
        c.stop_reason
            .as_deref()
            .unwrap_or_default()
            .contains("re-list"),
        "{c:?}"
    );
    wp.wait_ready("default", 2, T).await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_unschedulable_location_is_reported_removed_and_blocks_nothing() {
    let fake = cluster(&["weur"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = fake.write_kubeconfig(dir.path(), "warmpool");
    // Pool "far" wants Africa, where the cluster has no node.
    let mut wp = InProc::start_with_file(
        &k8s(kc.to_str().unwrap(), &[("POOL_TARGET_INSTANCES", "2")]),
        "[pools.far]\ntargets = { afr = 1 }\nstart_timeout = 1\n",
        None,
    )
    .await;
    wp.wait_ready("default", 2, T).await;
    let client = wp.client.clone();
    let far = poll(T, "the unschedulable pool's error", || {
        let client = client.clone();
        async move {
            let pools = client.pools().await.ok()?;
            let far = pools.pools.into_iter().find(|p| p.pool == "far")?;
            far.last_error.is_some().then_some(far)
        }
    })
    .await;
    let error = far.last_error.clone().unwrap();
    assert!(
        error.contains("pod unschedulable: 0/1 nodes are available"),
        "{error}"
    );
    assert!(
        error.contains("topology.kubernetes.io/region=afr"),
        "{error}"
    );
    assert!(far.failed_starts >= 1 && far.ready == 0, "{far:?}");
    // Its pods are deleted after the start timeout (a new attempt may be pending).
    let failed: Vec<String> = poll(T, "a failed container of the pool", || {
        let client = client.clone();
        async move {
            let failed: Vec<String> = client
                .containers(&ContainerQuery {
                    pool: Some("far".into()),
                    ..Default::default()
                })
                .await
                .ok()?
                .containers
                .into_iter()
                .filter(|c| c.state == "failed" || c.state == "stopped")
                .map(|c| c.id)
                .collect();
            (!failed.is_empty()).then_some(failed)
        }
    })
    .await;
    for id in &failed {
        pod_gone(&fake, id, "the unschedulable pod to be deleted").await;
    }
    // Meanwhile the other pools and locations work.
    let eu = wp
        .client
        .claim(&ClaimRequest {
            location: Some("weur".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(wp.proxied(&eu.id, "/").await.status(), 200);
    wp.wait_ready("default", 2, T).await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_image_that_cannot_be_pulled_fails_the_start_at_once() {
    let fake = cluster(&["weur"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = fake.write_kubeconfig(dir.path(), "warmpool");
    let mut wp = InProc::start(&k8s(
        kc.to_str().unwrap(),
        &[
            ("POOL_TARGET_INSTANCES", "1"),
            ("WARMPOOL_IMAGE", "registry.example/does-not-exist:1"),
            // Long: the failure must come from the pod's status, not a timeout.
            ("WARMPOOL_START_TIMEOUT_SECONDS", "600"),
        ],
    ))
    .await;
    let client = wp.client.clone();
    let error = poll(T, "the pull failure on the pool", || {
        let client = client.clone();
        async move {
            client
                .pools()
                .await
                .ok()?
                .pools
                .into_iter()
                .next()?
                .last_error
        }
    })
    .await;
    assert!(
        error.contains("ImagePullBackOff") && error.contains("does-not-exist"),
        "{error}"
    );
    wp.shutdown().await;
    poll(T, "the pods deleted", || async {
        fake.pods().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_kill_9_and_restart_adopt_pods_and_delete_orphans() {
    let fake = cluster(&["weur"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = fake.write_kubeconfig(dir.path(), "warmpool");
    let data = dir.path().join("data");
    let settings = k8s(kc.to_str().unwrap(), &[("POOL_TARGET_INSTANCES", "2")]);
    let mut first = Proc::spawn(&data, &settings);
    wait_ready(&first.client, "default", 2, T).await;
    let claimed = first.client.claim(&ClaimRequest::default()).await.unwrap();
    wait_ready(&first.client, "default", 2, T).await;
    let before = first.client.container(&claimed.id).await.unwrap();
    let instance = pod_of(&fake, &claimed.id).unwrap()["metadata"]["labels"]
        ["warmpool.dev/instance"]
        .as_str()
        .unwrap()
        .to_owned();
    let doomed = first_ready(&first.client).await;
    first.kill9();
    // While warmpool is down, one of its ready pods is deleted...
    assert!(fake.delete_now(&format!("warmpool-{}", doomed.id)));
    // ...and an orphan appears: labelled as ours, unknown to the store.
    let orphan = uuid::Uuid::new_v4().to_string();
    fake.create_pod(
        "warmpool",
        json!({
            "metadata": {
                "name": format!("warmpool-{orphan}"),
                "labels": {
                    "app.kubernetes.io/managed-by": "warmpool",
                    "warmpool.dev/instance": instance,
                    "warmpool.dev/container-id": orphan,
                },
            },
            "spec": {"containers": [{
                "name": "app", "image": "warmpool/sample-app:latest",
                "env": [{"name": "PORT", "value": "8080"}],
            }]},
        }),
    )
    .unwrap();

    let second = Proc::spawn(&data, &settings);
    pod_gone(&fake, &orphan, "the orphan to be deleted").await;
    // The claimed pod was adopted, not restarted: same handle, still routes.
    let after = second.client.container(&claimed.id).await.unwrap();
    assert_eq!(after.state, "allocated");
    assert_eq!(after.runtime_handle, before.runtime_handle);
    let r = reqwest::get(format!("{}/container/{}/", second.base, claimed.id))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-container-id"], claimed.id.as_str());
    let lost = second.client.container(&doomed.id).await.unwrap();
    assert_eq!(
        (lost.state.as_str(), lost.stop_reason.as_deref()),
        ("stopped", Some("lost"))
    );
    wait_ready(&second.client, "default", 2, T).await;
    let second_ref = &second;
    let fake_ref = &fake;
    poll(T, "the cluster and the store to agree", || async move {
        let pods: BTreeSet<String> = fake_ref
            .pods()
            .iter()
            .filter_map(|p| p["metadata"]["labels"]["warmpool.dev/container-id"].as_str())
            .map(str::to_owned)
            .collect();
        let live = common::live_ids(&second_ref.client).await?;
        (pods == live).then_some(())
    })
    .await;
    drop(second);
    poll(T, "pods deleted after shutdown", || async {
        fake.pods().is_empty().then_some(())
    })
    .await;
}

/// Against a real cluster, only when `WARMPOOL_TEST_KUBECONFIG` names a kubeconfig
/// (see docs/KUBERNETES.md): fill, claim, proxy and shutdown with the image in
/// `WARMPOOL_TEST_IMAGE` (default `warmpool/sample-app:latest`, loaded into the
/// cluster). warmpool must reach pod IPs from where the test runs (kind with
/// `extraPortMappings` is not enough: run it on a node, or inside the cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_real_cluster_fills_claims_and_proxies() {
    let Ok(kc) = std::env::var("WARMPOOL_TEST_KUBECONFIG") else {
        eprintln!(
            "kubernetes_real_cluster_fills_claims_and_proxies: skipped (WARMPOOL_TEST_KUBECONFIG is not set)"
        );
        return;
    };
    let image = std::env::var("WARMPOOL_TEST_IMAGE")
        .unwrap_or_else(|_| "warmpool/sample-app:latest".into());
    let namespace = std::env::var("WARMPOOL_TEST_NAMESPACE").unwrap_or_else(|_| "warmpool".into());
    let mut wp = InProc::start(&k8s(
        &kc,
        &[
            ("WARMPOOL_KUBE_NAMESPACE", &namespace),
            ("WARMPOOL_IMAGE", &image),
            ("POOL_TARGET_INSTANCES", "2"),
            ("WARMPOOL_START_TIMEOUT_SECONDS", "120"),
            ("WARMPOOL_CLAIM_TIMEOUT_SECONDS", "120"),
        ],
    ))
    .await;
    wp.wait_ready("default", 2, Duration::from_secs(300)).await;
    let claimed = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let r = wp.proxied(&claimed.id, "/hello").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-container-id"], claimed.id.as_str());
    wp.shutdown().await;
}
