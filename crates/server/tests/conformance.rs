//! The runtime conformance suite (`warmpool_runtime::conformance`) run against every
//! runtime: the process runtime running the real sample app, the simulated runtime,
//! Docker running the sample image, and Kubernetes against the loopback fake API
//! server whose fake kubelet runs the real sample app.

mod common;

use std::sync::Arc;

use warmpool_core::{ContainerId, Location, PoolKey};
use warmpool_docker::DockerRuntime;
use warmpool_kubernetes::fake::{FakeCluster, FakeOptions};
use warmpool_kubernetes::{KubernetesConfig, KubernetesRuntime, Placement};
use warmpool_runtime::{
    conformance, ContainerSpec, ProcessConfig, ProcessRuntime, Resources, SampleAppCommand,
    SimMode, SimRuntime, Template, Workload,
};

/// A maker of fresh specs of containers that run `template`.
fn specs(template: Template) -> impl Fn() -> ContainerSpec {
    let template = Arc::new(template);
    move || ContainerSpec {
        id: ContainerId::random(),
        key: PoolKey::new("conformance", Location::Default),
        template: template.clone(),
        revision: 0,
        env: Vec::new(),
    }
}

/// The sample app, as the process runtime runs it.
fn sample_app() -> Template {
    Template {
        workload: Workload::SampleApp,
        health_path: "/healthz".into(),
        ..Template::default()
    }
}

fn instance() -> String {
    format!("conformance-{}", &ContainerId::random().to_string()[..8])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runtime_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(ProcessConfig {
        instance_id: instance(),
        work_root: dir.path().to_owned(),
        inherit_stderr: false,
    })
    .with_sample_app(SampleAppCommand::subcommand(std::path::Path::new(
        common::bin(),
    )));
    conformance::check(&rt, specs(sample_app()), true, |_, started| async move {
        common::kill9_handle(Some(&started.handle));
    })
    .await;
}

#[tokio::test]
async fn sim_runtime_conforms() {
    let rt = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let sim = rt.clone();
    conformance::check(
        rt.as_ref(),
        specs(Template::default()),
        false,
        move |id, _| {
            let sim = sim.clone();
            async move {
                assert!(sim.kill(id, 137));
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_runtime_conforms() {
    if !common::docker_ready("docker_runtime_conforms") {
        return;
    }
    let rt = DockerRuntime::connect(common::docker_config(&instance()))
        .await
        .unwrap();
    let image = Template {
        workload: Workload::Image {
            image: common::IMAGE.into(),
            pids_limit: Some(64),
        },
        health_path: "/healthz".into(),
        resources: Resources {
            vcpu: Some(0.5),
            memory_mib: Some(64),
            disk_mb: None,
        },
        ..Template::default()
    };
    conformance::check(rt.as_ref(), specs(image), true, |_, started| async move {
        common::docker(&["kill", &started.handle]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_runtime_conforms() {
    let fake = FakeCluster::start(FakeOptions::with_regions(
        vec![common::bin().into(), "sample-app".into()],
        &["weur"],
    ))
    .await;
    let rt = KubernetesRuntime::new(
        fake.client(),
        KubernetesConfig {
            instance_id: instance(),
            namespace: "warmpool".into(),
            container_port: 8080,
            placement: Placement::default(),
            kubeconfig: None,
        },
    );
    let image = Template {
        workload: Workload::Image {
            image: common::IMAGE.into(),
            pids_limit: None,
        },
        health_path: "/healthz".into(),
        resources: Resources {
            vcpu: Some(0.5),
            memory_mib: Some(64),
            disk_mb: None,
        },
        start_timeout: std::time::Duration::from_secs(30),
        ..Template::default()
    };
    let fake_ref = &fake;
    conformance::check(rt.as_ref(), specs(image), true, |_, started| async move {
        assert!(fake_ref.kill_app(&started.handle, 137, "Error"));
    })
    .await;
    drop(rt);
    assert!(fake.pods().is_empty(), "pods left: {:?}", fake.pods());
    assert_eq!(fake.running_apps(), 0);
}
