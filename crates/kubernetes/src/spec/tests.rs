//! Pure tests of the pod spec (names, labels, selectors, quantities, probe, env)
//! and of reading a pod's status (every phase and reason warmpool tells apart).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warmpool_core::{ContainerId, Location, PoolKey};
use warmpool_runtime::{
    ContainerSpec, PullPolicy, Resources, Template, Workload, SAMPLE_APP_IMAGE,
};

use super::*;

fn build(spec: &ContainerSpec, settings: &PodSettings) -> Pod {
    build_pod(spec, settings).unwrap()
}

fn spec(pool: &str, location: Location, resources: Resources) -> ContainerSpec {
    ContainerSpec {
        id: ContainerId::random(),
        key: PoolKey::new(pool, location),
        revision: 3,
        env: Vec::new(),
        template: Arc::new(Template {
            workload: Workload::Image {
                image: "registry.example/app:1".into(),
                pids_limit: Some(64),
            },
            health_path: "/healthz".into(),
            env: vec![("GREETING".into(), "hello there".into())],
            resources,
            start_timeout: Duration::from_secs(5),
            files_dir: String::new(),
            pull: Default::default(),
            hardening: Default::default(),
        }),
    }
}

fn settings(placement: Placement) -> PodSettings {
    PodSettings {
        instance_id: "0b8c5a4e-3f2d-4c1b-9a7e-6d5c4b3a2f1e".into(),
        container_port: 8080,
        placement,
    }
}

fn full() -> Resources {
    Resources {
        vcpu: Some(0.25),
        memory_mib: Some(256),
        disk_mb: Some(512),
    }
}

#[test]
fn pod_is_named_and_labelled_after_its_container() {
    let s = spec("default", Location::Weur, full());
    let pod = build(&s, &settings(Placement::default()));
    assert_eq!(
        pod.metadata.name.as_deref(),
        Some(format!("warmpool-{}", s.id).as_str())
    );
    assert!(pod_name(s.id).len() <= 63, "a valid DNS label");
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels[LABEL_MANAGED_BY], "warmpool");
    assert_eq!(
        labels[LABEL_INSTANCE],
        "0b8c5a4e-3f2d-4c1b-9a7e-6d5c4b3a2f1e"
    );
    assert_eq!(labels[LABEL_CONTAINER], s.id.to_string());
    assert_eq!(labels[LABEL_POOL], "default");
    assert_eq!(labels[LABEL_LOCATION], "weur");
    assert_eq!(labels[LABEL_REVISION], "3");
    for v in labels.values() {
        assert!(v.len() <= 63, "{v}");
    }
    assert_eq!(container_id_of(&pod), Some(s.id));
}

#[test]
fn label_values_are_made_valid() {
    assert_eq!(label_value("default"), "default");
    assert_eq!(label_value("_pool_"), "pool");
    assert_eq!(label_value("a b/c"), "a-b-c");
    let long = "x".repeat(100);
    assert_eq!(label_value(&long).len(), 63);
    let edge = format!("{}-y", "x".repeat(62));
    assert_eq!(
        label_value(&edge),
        "x".repeat(62),
        "no trailing dash after the cut"
    );
    assert_eq!(
        owned_selector("inst-1"),
        "app.kubernetes.io/managed-by=warmpool,warmpool.dev/instance=inst-1"
    );
}

#[test]
fn pod_runs_the_image_with_the_app_env_never_restarts_and_gets_no_token() {
    let s = spec("web", Location::Default, full());
    let pod = build(&s, &settings(Placement::default()));
    let ps = pod.spec.unwrap();
    assert_eq!(ps.restart_policy.as_deref(), Some("Never"));
    assert_eq!(ps.automount_service_account_token, Some(false));
    assert_eq!(ps.enable_service_links, Some(false));
    assert_eq!(ps.containers.len(), 1);
    let c = &ps.containers[0];
    assert_eq!(c.name, "app");
    assert_eq!(c.image.as_deref(), Some("registry.example/app:1"));
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
    let env: Vec<(String, String)> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone().unwrap()))
        .collect();
    assert_eq!(env, s.app_env("0b8c5a4e-3f2d-4c1b-9a7e-6d5c4b3a2f1e", 8080));
    for want in [
        ("PORT", "8080".to_owned()),
        ("WARMPOOL_CONTAINER_ID", s.id.to_string()),
        ("WARMPOOL_LOCATION", "default".into()),
        ("WARMPOOL_REGION", "local".into()),
        ("WARMPOOL_COUNTRY", "unknown".into()),
        ("WARMPOOL_FILES_DIR", "/warmpool/files".into()),
        ("GREETING", "hello there".into()),
    ] {
        assert!(
            env.iter().any(|(k, v)| k == want.0 && *v == want.1),
            "{want:?} missing"
        );
    }
}

#[test]
fn resources_are_kubernetes_quantities_with_requests_equal_to_limits() {
    let s = spec("default", Location::Default, full());
    let pod = build(&s, &settings(Placement::default()));
    let r = pod.spec.unwrap().containers[0].resources.clone().unwrap();
    let limits = r.limits.unwrap();
    assert_eq!(limits["cpu"].0, "250m");
    assert_eq!(limits["memory"].0, "256Mi");
    assert_eq!(limits["ephemeral-storage"].0, "512M");
    assert_eq!(r.requests.unwrap(), limits, "Guaranteed QoS");
    assert_eq!(cpu_quantity(1.5).0, "1500m");
    assert_eq!(cpu_quantity(0.0001).0, "1m", "never a zero request");
    assert_eq!(memory_quantity(64).0, "64Mi");

    let none = spec("default", Location::Default, Resources::default());
    let pod = build(&none, &settings(Placement::default()));
    assert!(pod.spec.unwrap().containers[0].resources.is_none());
    let cpu_only = Resources {
        vcpu: Some(2.0),
        ..Resources::default()
    };
    let pod = build(
        &spec("default", Location::Default, cpu_only),
        &settings(Placement::default()),
    );
    let limits = pod.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap();
    assert_eq!(limits.keys().collect::<Vec<_>>(), ["cpu"]);
}

#[test]
fn the_sample_app_runs_its_image_and_a_command_is_refused() {
    let with = |workload: Workload| {
        let mut s = spec("default", Location::Default, full());
        s.template = Arc::new(Template {
            workload,
            ..(*s.template).clone()
        });
        build_pod(&s, &settings(Placement::default()))
    };
    let pod = with(Workload::SampleApp).unwrap();
    assert_eq!(
        pod.spec.unwrap().containers[0].image.as_deref(),
        Some(SAMPLE_APP_IMAGE)
    );
    let e = with(Workload::Command(vec!["sh".into()])).unwrap_err();
    assert!(
        matches!(
            e,
            RuntimeError::Unsupported {
                runtime: "kubernetes",
                workload: "a command"
            }
        ),
        "{e:?}"
    );
}

/// The "restricted" Pod Security Standard's rules, as Kubernetes' admission
/// checks them on a pod (pod-level settings count for every container).
fn assert_restricted(pod: &Pod) {
    let ps = pod.spec.as_ref().unwrap();
    let psc = ps
        .security_context
        .as_ref()
        .expect("a pod security context");
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert_ne!(psc.run_as_user, Some(0), "never root");
    for v in ps.volumes.iter().flatten() {
        assert!(v.empty_dir.is_some(), "only emptyDir volumes: {v:?}");
        assert!(v.host_path.is_none());
    }
    assert!(ps.host_network.is_none() && ps.host_pid.is_none() && ps.host_ipc.is_none());
    for c in &ps.containers {
        let sc = c
            .security_context
            .as_ref()
            .expect("a container security context");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert!(caps.add.as_ref().is_none_or(|a| a.is_empty()));
        assert!(sc.privileged.is_none_or(|p| !p));
        assert!(
            sc.run_as_non_root == Some(true) || psc.run_as_non_root == Some(true),
            "runAsNonRoot"
        );
        assert_ne!(sc.run_as_user, Some(0));
        assert!(sc.seccomp_profile.is_none(), "the pod's profile holds");
        assert!(c.ports.iter().flatten().all(|p| p.host_port.is_none()));
    }
}

fn mounts(pod: &Pod) -> Vec<(String, String)> {
    let ps = pod.spec.as_ref().unwrap();
    ps.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect()
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    let image = build(
        &spec("web", Location::Weur, full()),
        &settings(Placement::default()),
    );
    assert_restricted(&image);
    let mut s = spec("default", Location::Default, full());
    s.template = Arc::new(Template {
        workload: Workload::SampleApp,
        ..(*s.template).clone()
    });
    let sample = build(&s, &settings(Placement::default()));
    assert_restricted(&sample);
}

#[test]
fn a_users_image_runs_as_its_own_non_root_user_with_a_writable_files_dir() {
    let pod = build(
        &spec("web", Location::Default, full()),
        &settings(Placement::default()),
    );
    let ps = pod.spec.as_ref().unwrap();
    let psc = ps.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.run_as_user, None,
        "the image's USER, which must not be root"
    );
    let sc = ps.containers[0].security_context.as_ref().unwrap();
    assert_eq!(
        sc.read_only_root_filesystem, None,
        "warmpool cannot know where a user's app writes"
    );
    assert_eq!(mounts(&pod), [("files".into(), "/warmpool/files".into())]);
}

#[test]
fn the_sample_app_runs_as_65532_on_a_read_only_root_with_its_data_and_tmp_writable() {
    let sample = |files_dir: &str| {
        let mut s = spec("default", Location::Default, full());
        s.template = Arc::new(Template {
            workload: Workload::SampleApp,
            files_dir: files_dir.into(),
            ..(*s.template).clone()
        });
        build(&s, &settings(Placement::default()))
    };
    let pod = sample("");
    let ps = pod.spec.as_ref().unwrap();
    let psc = ps.security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_user, psc.run_as_group),
        (Some(65532), Some(65532))
    );
    let sc = ps.containers[0].security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let want: Vec<(String, String)> = [
        ("files", "/warmpool/files"),
        ("data", "/data"),
        ("tmp", "/tmp"),
    ]
    .map(|(n, p)| (n.into(), p.into()))
    .into();
    assert_eq!(mounts(&pod), want);
    let volumes: Vec<&str> = ps
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["files", "data", "tmp"]);
    // A files dir that is one of the app's own is mounted once.
    assert_eq!(
        mounts(&sample("/tmp")),
        [
            ("files".into(), "/tmp".into()),
            ("data".into(), "/data".into())
        ]
    );
}

#[test]
fn readiness_probe_gets_the_health_path_on_the_app_port() {
    let s = spec("default", Location::Default, full());
    let pod = build(&s, &settings(Placement::default()));
    let probe = pod.spec.unwrap().containers[0]
        .readiness_probe
        .clone()
        .unwrap();
    let get = probe.http_get.unwrap();
    assert_eq!(get.path.as_deref(), Some("/healthz"));
    assert_eq!(get.port, IntOrString::Int(8080));
    assert_eq!(probe.period_seconds, Some(1));
}

#[test]
fn locations_select_nodes_by_region_unless_mapped_and_default_selects_none() {
    let p = Placement::default();
    assert_eq!(
        p.node_selector(Location::Weur),
        BTreeMap::from([(
            "topology.kubernetes.io/region".to_owned(),
            "weur".to_owned()
        )])
    );
    assert!(p.node_selector(Location::Default).is_empty());

    let p = Placement::parse(
        "example.com/location",
        "weur=topology.kubernetes.io/zone=eu-west-1a; wnam=pool=us,tier=warm;apac=",
    )
    .unwrap();
    assert_eq!(
        p.node_selector(Location::Weur),
        BTreeMap::from([(
            "topology.kubernetes.io/zone".to_owned(),
            "eu-west-1a".to_owned()
        )])
    );
    assert_eq!(
        p.node_selector(Location::Wnam),
        BTreeMap::from([
            ("pool".to_owned(), "us".to_owned()),
            ("tier".to_owned(), "warm".to_owned())
        ])
    );
    assert!(
        p.node_selector(Location::Apac).is_empty(),
        "mapped to any node"
    );
    assert_eq!(
        p.node_selector(Location::Me),
        BTreeMap::from([("example.com/location".to_owned(), "me".to_owned())])
    );
    let pod = build(
        &spec("default", Location::Wnam, full()),
        &settings(p.clone()),
    );
    assert_eq!(pod.spec.unwrap().node_selector.unwrap().len(), 2);
    let pod = build(&spec("default", Location::Default, full()), &settings(p));
    assert!(pod.spec.unwrap().node_selector.is_none());

    for bad in ["weur", "mars=a=b", "weur=novalue", "weur==x"] {
        assert!(
            Placement::parse(DEFAULT_LOCATION_LABEL, bad).is_err(),
            "{bad}"
        );
    }
    assert!(Placement::parse(" ", "").is_err());
}

/// A pod with `status` (JSON as the API server sends it).
fn with_status(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "warmpool-x"},
        "status": status,
    }))
    .unwrap()
}

fn waiting(reason: &str) -> Pod {
    with_status(json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": "details"}}
        }]
    }))
}

fn terminated(phase: &str, code: i32, reason: &str) -> Pod {
    with_status(json!({
        "phase": phase,
        "podIP": "10.0.0.7",
        "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"terminated": {"exitCode": code, "reason": reason}}
        }]
    }))
}

#[test]
fn pending_and_unschedulable_pods() {
    assert_eq!(
        pod_state(&with_status(json!({"phase": "Pending"}))),
        PodState::Pending { reason: None }
    );
    assert_eq!(
        pod_state(&Pod::default()),
        PodState::Pending { reason: None },
        "no status yet"
    );
    assert_eq!(
        pod_state(&waiting("ContainerCreating")),
        PodState::Pending {
            reason: Some("ContainerCreating".into())
        }
    );
    let unschedulable = with_status(json!({
        "phase": "Pending",
        "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        }]
    }));
    let s = pod_state(&unschedulable);
    assert_eq!(
        s,
        PodState::Unschedulable {
            message:
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
                    .into()
        }
    );
    assert!(s.is_running(), "it may still be scheduled");
    assert!(s.exit_detail().starts_with("pod unschedulable: 0/3 nodes"));
}

#[test]
fn running_pods_are_ready_only_with_the_ready_condition() {
    let running = |ready: &str| {
        with_status(json!({
            "phase": "Running",
            "podIP": "10.1.2.3",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": ready}
            ],
            "containerStatuses": [{
                "name": "app", "ready": ready == "True", "restartCount": 0, "image": "i",
                "imageID": "", "state": {"running": {"startedAt": "2026-11-29T16:00:00Z"}}
            }]
        }))
    };
    assert_eq!(
        pod_state(&running("False")),
        PodState::Running {
            ip: Some("10.1.2.3".into()),
            ready: false
        }
    );
    assert_eq!(
        pod_state(&running("True")),
        PodState::Running {
            ip: Some("10.1.2.3".into()),
            ready: true
        }
    );
}

#[test]
fn ended_pods_carry_their_exit_code_and_reason() {
    let s = pod_state(&terminated("Succeeded", 0, "Completed"));
    assert_eq!(
        s,
        PodState::Terminated {
            code: Some(0),
            reason: Some("Completed".into()),
            oom: false
        }
    );
    assert_eq!(s.exit_detail(), "exited with code 0");
    assert!(!s.is_running());
    let s = pod_state(&terminated("Failed", 3, "Error"));
    assert_eq!(s.exit_detail(), "exited with code 3");
    let s = pod_state(&terminated("Failed", 137, "OOMKilled"));
    assert_eq!(
        s,
        PodState::Terminated {
            code: Some(137),
            reason: Some("OOMKilled".into()),
            oom: true
        }
    );
    assert_eq!(s.exit_detail(), "out of memory (OOM killed)");
    let s = pod_state(&terminated("Failed", 143, "ContainerCannotRun"));
    assert_eq!(s.exit_detail(), "exited with code 143 (ContainerCannotRun)");
    // Evicted: the phase says it ended, no container status says how.
    let evicted = with_status(json!({"phase": "Failed", "reason": "Evicted"}));
    let s = pod_state(&evicted);
    assert_eq!(
        s,
        PodState::Terminated {
            code: None,
            reason: Some("Evicted".into()),
            oom: false
        }
    );
    assert_eq!(s.exit_detail(), "pod ended (Evicted)");
    // A terminated container wins over a Running phase not yet updated.
    assert!(!pod_state(&terminated("Running", 1, "Error")).is_running());
}

#[test]
fn pods_that_cannot_start_are_broken() {
    for reason in [
        "ImagePullBackOff",
        "ErrImagePull",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
    ] {
        let s = pod_state(&waiting(reason));
        assert_eq!(
            s,
            PodState::Broken {
                reason: reason.into(),
                message: "details".into()
            }
        );
        assert_eq!(s.exit_detail(), format!("{reason}: details"));
    }
}

#[test]
fn the_pools_pull_policy_is_the_containers_image_pull_policy_and_the_sample_image_is_never_always_pulled(
) {
    let with = |workload: Workload, pull: PullPolicy| {
        let mut s = spec("default", Location::Default, full());
        s.template = Arc::new(Template {
            workload,
            pull,
            ..(*s.template).clone()
        });
        let pod = build(&s, &settings(Placement::default()));
        pod.spec.unwrap().containers[0]
            .image_pull_policy
            .clone()
            .unwrap()
    };
    let image = || Workload::Image {
        image: "ghcr.io/me/app:1".into(),
        pids_limit: None,
    };
    assert_eq!(with(image(), PullPolicy::IfMissing), "IfNotPresent");
    assert_eq!(with(image(), PullPolicy::Always), "Always");
    assert_eq!(with(image(), PullPolicy::Never), "Never");
    assert_eq!(
        with(Workload::SampleApp, PullPolicy::Always),
        "IfNotPresent"
    );
    let sample = Workload::Image {
        image: SAMPLE_APP_IMAGE.into(),
        pids_limit: None,
    };
    assert_eq!(with(sample, PullPolicy::Always), "IfNotPresent");
}
