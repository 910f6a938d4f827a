//! An outside judge of what warmpool gives Kubernetes: `kubernetes-validate
//! --strict` (PyPI) checks the manifests of `deploy/kubernetes/` and the Pods the
//! runtime builds (the sample app's and a user image's) against the API's own
//! schemas, unknown fields refused. Skips with a printed reason when the tool is
//! not installed, unless `WARMPOOL_REQUIRE_KUBE_VALIDATE=1` (as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use warmpool_core::{ContainerId, Location, PoolKey};
use warmpool_kubernetes::spec::build_pod;
use warmpool_kubernetes::{Placement, PodSettings};
use warmpool_runtime::{ContainerSpec, Resources, Template, Workload};

const TOOL: &str = "kubernetes-validate";

/// Runs the tool on `files`: its exit status and what it printed; `None` (after
/// saying why) when it is not installed and not required.
fn validate(files: &[PathBuf]) -> Option<(bool, String)> {
    let out = match Command::new(TOOL).arg("--strict").args(files).output() {
        Ok(out) => out,
        Err(e) => {
            let why = format!("{TOOL} cannot be run ({e}); pip install kubernetes-validate");
            if std::env::var("WARMPOOL_REQUIRE_KUBE_VALIDATE").as_deref() == Ok("1") {
                panic!("{why}, and WARMPOOL_REQUIRE_KUBE_VALIDATE=1");
            }
            eprintln!("skipped: {why}");
            return None;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

fn pod_file(dir: &Path, name: &str, workload: Workload) -> PathBuf {
    let spec = ContainerSpec {
        id: ContainerId::random(),
        key: PoolKey::new("web", Location::Weur),
        revision: 2,
        env: vec![("CLAIM_ENV".into(), "x".into())],
        template: Arc::new(Template {
            workload,
            health_path: "/healthz".into(),
            env: vec![("GREETING".into(), "hello".into())],
            resources: Resources {
                vcpu: Some(0.25),
                memory_mib: Some(256),
                disk_mb: Some(512),
            },
            start_timeout: Duration::from_secs(30),
            files_dir: String::new(),
            pull: Default::default(),
            hardening: Default::default(),
        }),
    };
    let settings = PodSettings {
        instance_id: "0b8c5a4e-3f2d-4c1b-9a7e-6d5c4b3a2f1e".into(),
        container_port: 8080,
        placement: Placement::default(),
    };
    let pod = serde_json::to_value(build_pod(&spec, &settings).unwrap()).unwrap();
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["kind"], "Pod");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&pod).unwrap()).unwrap();
    path
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "warmpool-kube-validate-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_manifests_and_the_runtimes_pods_pass_kubernetes_validate_strict() {
    let dir = scratch_dir("good");
    let mut files = vec![
        pod_file(&dir, "sample-app-pod", Workload::SampleApp),
        pod_file(
            &dir,
            "image-pod",
            Workload::Image {
                image: "registry.example/app:1".into(),
                pids_limit: Some(64),
            },
        ),
    ];
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&deploy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        // kustomize's own file is no Kubernetes object (the tool has no schema).
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 6, "{manifests:?}");
    files.extend(manifests);
    let Some((ok, text)) = validate(&files) else {
        return;
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "{TOOL} --strict refused:\n{text}");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(text.contains(&name), "{name} not checked:\n{text}");
    }
    assert!(!text.contains("ERROR"), "{text}");
}

#[test]
fn the_judge_refuses_a_pod_with_a_field_kubernetes_does_not_have() {
    let dir = scratch_dir("bad");
    let path = pod_file(&dir, "pod", Workload::SampleApp);
    let mut pod: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    pod["spec"]["containers"][0]["securityContext"]["runAsRoot"] = true.into();
    std::fs::write(&path, serde_json::to_vec(&pod).unwrap()).unwrap();
    let Some((ok, text)) = validate(&[path]) else {
        return;
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "a pod with an unknown field passed:\n{text}");
    assert!(text.contains("runAsRoot"), "{text}");
}
