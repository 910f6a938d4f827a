//! Docker containers are locked down by default: no new privileges, every
//! capability dropped, the image's own non-root user (the sample image's is
//! 65532), and for the sample image a read-only root with tmpfs for `/tmp` and
//! its data and the files dir on a tmpfs volume owned by its user. Claims still
//! get their files, env and text there. A pool relaxes each option, and bad
//! values are refused naming the field. The Docker tests skip with a reason
//! when Docker is not there, unless `WARMPOOL_REQUIRE_DOCKER=1`.

mod common;

use std::time::Duration;

use common::{docker_inspect, docker_ready, poll, read_out, InProc};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

async fn claim(wp: &InProc, body: Value) -> Value {
    let r = wp
        .http
        .post(format!("{}/container", wp.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["warm"], true, "{v}");
    v
}

/// Claims a warm container of `pool` with files in nested directories, env
/// and text, and checks the app got each of them.
async fn claim_with_setup(wp: &InProc, pool: &str) -> String {
    let c = claim(
        wp,
        json!({
            "pool": pool,
            "env": {"GREETING": "hello"},
            "files": {"a.txt": "alpha", "conf/deep/b.json": "{\"b\":1}"},
            "text": "written by the app",
        }),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let name = format!("warmpool-{id}");
    assert_eq!(read_out(&name, "/warmpool/files/a.txt"), "alpha");
    assert_eq!(
        read_out(&name, "/warmpool/files/conf/deep/b.json"),
        "{\"b\":1}"
    );
    let env: Value = wp.proxied(&id, "/env").await.json().await.unwrap();
    assert_eq!(env["GREETING"], "hello", "{env}");
    // The app wrote its text file (in its data directory) and serves it.
    assert_eq!(wp.proxied_text(&id, "/").await, "written by the app");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_containers_are_hardened_by_default_and_a_pool_relaxes_each_option() {
    if !docker_ready("docker_containers_are_hardened_by_default_and_a_pool_relaxes_each_option") {
        return;
    }
    let mut wp = InProc::start(&[
        ("WARMPOOL_RUNTIME", "docker"),
        ("WARMPOOL_DOCKER_NETWORK", "warmpool-test"),
        ("WARMPOOL_STOP_GRACE_SECONDS", "2"),
        ("POOL_TARGET_INSTANCES", "1"),
    ])
    .await;
    wp.wait_ready("default", 1, T).await;

    let id = claim_with_setup(&wp, "default").await;
    let c = docker_inspect(&format!("warmpool-{id}")).unwrap();
    let host = &c["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true, "{host}");
    assert_eq!(host["CapDrop"], json!(["ALL"]), "{host}");
    assert_eq!(
        host["SecurityOpt"],
        json!(["no-new-privileges:true"]),
        "{host}"
    );
    assert_eq!(c["Config"]["User"], "65532:65532");
    let tmpfs = host["Tmpfs"].as_object().unwrap();
    let mut dirs: Vec<&str> = tmpfs.keys().map(String::as_str).collect();
    dirs.sort();
    assert_eq!(dirs, ["/data", "/tmp"]);
    let files = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/warmpool/files")
        .unwrap_or_else(|| panic!("no files dir mount: {}", c["Mounts"]));
    assert_eq!(files["Type"], "volume");
    let volume = files["Name"].as_str().unwrap().to_owned();
    // The root file system is read-only: an upload outside the mounts fails.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x"), "x").unwrap();
    let refused = std::process::Command::new("docker")
        .args(["cp", &dir.path().join("x").display().to_string()])
        .arg(format!("warmpool-{id}:/x"))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "the root file system is writable"
    );

    // A pool that relaxes every option.
    let r = wp
        .http
        .put(format!("{}/v1/pools/relaxed", wp.base))
        .json(&json!({
            "targets": {"default": 1},
            "no_new_privileges": false,
            "drop_capabilities": false,
            "read_only_root": "false",
            "user": "0:0",
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    poll(T, "the relaxed pool to fill", || async {
        (common::pool_ready(&wp.client, "relaxed", "default").await == 1).then_some(())
    })
    .await;
    let relaxed = claim_with_setup(&wp, "relaxed").await;
    let c = docker_inspect(&format!("warmpool-{relaxed}")).unwrap();
    let host = &c["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], false, "{host}");
    assert!(host["CapDrop"].is_null(), "{host}");
    assert!(host["SecurityOpt"].is_null(), "{host}");
    assert!(host["Tmpfs"].is_null(), "{host}");
    assert_eq!(c["Config"]["User"], "0:0");
    let detail: Value = wp
        .http
        .get(format!("{}/v1/pools/relaxed", wp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let s = &detail["settings"];
    assert_eq!(
        (
            &s["no_new_privileges"],
            &s["drop_capabilities"],
            &s["read_only_root"],
            &s["user"],
            &s["tmpfs"]
        ),
        (
            &json!(false),
            &json!(false),
            &json!("false"),
            &json!("0:0"),
            &json!(["/tmp"])
        )
    );

    wp.shutdown().await;
    // The files dir's volume went with its container.
    poll(T, "the files dir's volume to be removed", || async {
        let out = std::process::Command::new("docker")
            .args(["volume", "inspect", &volume])
            .output()
            .unwrap();
        (!out.status.success()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hardening_settings_are_refused_naming_the_field_and_change_nothing() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "0")]).await;
    for (body, field) in [
        (json!({"user": "a b"}), "user"),
        (json!({"user": "root:"}), "user"),
        (json!({"tmpfs": ["relative"]}), "tmpfs"),
        (json!({"tmpfs": ["/a/../b"]}), "tmpfs"),
        (json!({"tmpfs": ["/"]}), "tmpfs"),
        (json!({"read_only_root": "maybe"}), "read_only_root"),
        (json!({"no_new_privileges": "perhaps"}), "no_new_privileges"),
    ] {
        let r = wp
            .http
            .put(format!("{}/v1/pools/bad", wp.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
        let p: Value = r.json().await.unwrap();
        assert!(status.is_client_error(), "{body}: {status} {p}");
        let named = p["field"].as_str().unwrap_or_default().to_owned()
            + " "
            + p["detail"].as_str().unwrap_or_default();
        assert!(named.contains(field), "{body}: {p}");
    }
    let r = wp
        .http
        .get(format!("{}/v1/pools/bad", wp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a refused pool was created");
    wp.shutdown().await;
}

/// On a read-only root, warmpool (root, on the engine's host) writes a claim's
/// files straight into the files dir's volume, after checking once that the
/// path is the engine's; a symlink the app planted there is never followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_straight_into_the_files_volume_and_never_through_a_planted_symlink() {
    use warmpool_core::{ContainerId, Location, PoolKey};
    use warmpool_docker::DockerRuntime;
    use warmpool_runtime::{ContainerSpec, Runtime, RuntimeError, Template, Workload};
    let test = "files_go_straight_into_the_files_volume_and_never_through_a_planted_symlink";
    if !docker_ready(test) {
        return;
    }
    let instance = format!(
        "host-files-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let rt = DockerRuntime::connect(common::docker_config(&instance))
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
    assert_eq!(rt.writes_files_on_host(), None);
    let files = vec![
        ("a.txt".to_owned(), b"alpha".to_vec()),
        ("conf/deep/b.json".to_owned(), b"{}".to_vec()),
    ];
    rt.write_files(spec.id, &started.handle, &spec.template, &files)
        .await
        .unwrap();
    let name = format!("warmpool-{}", spec.id);
    assert_eq!(read_out(&name, "/warmpool/files/a.txt"), "alpha");
    assert_eq!(read_out(&name, "/warmpool/files/conf/deep/b.json"), "{}");
    let on_host = rt.writes_files_on_host();
    eprintln!("{test}: files written on this host: {on_host:?}");
    // CI runs as root beside its engine: the fast path must be taken there.
    let root = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    if root.unwrap_or(false) {
        assert_eq!(on_host, Some(true));
        // The app plants a symlink to a directory outside its files dir.
        let c = docker_inspect(&name).unwrap();
        let source = c["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == "/warmpool/files")
            .unwrap()["Source"]
            .as_str()
            .unwrap()
            .to_owned();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), format!("{source}/etc")).unwrap();
        let e = rt
            .write_files(
                spec.id,
                &started.handle,
                &spec.template,
                &[("etc/passwd".to_owned(), b"owned".to_vec())],
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RuntimeError::FileRefused { .. }), "{e:?}");
        assert!(!outside.path().join("passwd").exists());
    }
    rt.stop(spec.id, &started.handle, Duration::from_secs(1))
        .await
        .unwrap();
    rt.remove(spec.id, &started.handle).await.unwrap();
}
