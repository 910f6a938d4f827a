//! The process runtime against real child processes (plain `sh`, so these tests
//! depend on nothing but the OS).

use std::sync::Arc;
use std::time::Duration;

use warmpool_core::{ContainerId, Location, PoolKey};
use warmpool_runtime::{
    ContainerSpec, Inspection, ProcessConfig, ProcessRuntime, Runtime, RuntimeError, RuntimeEvent,
    Template, Workload,
};

/// A runtime, and a maker of specs of containers that run `script`.
fn runtime(dir: &std::path::Path, script: &str) -> (ProcessRuntime, impl Fn() -> ContainerSpec) {
    let rt = ProcessRuntime::new(ProcessConfig {
        instance_id: format!("test-{}", ContainerId::random()),
        work_root: dir.to_owned(),
        inherit_stderr: false,
    });
    let template = Arc::new(Template {
        workload: Workload::Command(vec!["sh".into(), "-c".into(), script.into()]),
        health_path: "/healthz".into(),
        env: vec![("EXTRA".into(), "1".into())],
        ..Template::default()
    });
    let spec = move || ContainerSpec {
        id: ContainerId::random(),
        key: PoolKey::new("default", Location::Weur),
        template: template.clone(),
        revision: 0,
        env: Vec::new(),
    };
    (rt, spec)
}

/// Polls (with a deadline) until the child has written `path`.
async fn wait_for_file(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, spec) = runtime(
        dir.path(),
        "trap '' TERM; touch trapped; while :; do sleep 1; done",
    );
    let s = spec();
    let started = rt.start(&s).await.unwrap();
    wait_for_file(&dir.path().join(s.id.to_string()).join("trapped")).await;
    assert!(started.address.starts_with("127.0.0.1:"));
    assert_eq!(
        rt.inspect(s.id, &started.handle).await.unwrap(),
        Inspection::Running
    );

    // Listed by its tag, with its own work dir.
    let owned = rt.list_owned().await.unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].id, s.id);
    assert_eq!(owned[0].handle, started.handle);
    assert!(dir.path().join(s.id.to_string()).is_dir());

    let mut events = rt.subscribe();
    let t = std::time::Instant::now();
    rt.stop(s.id, &started.handle, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "SIGTERM alone cannot have stopped it"
    );
    assert_eq!(
        rt.inspect(s.id, &started.handle).await.unwrap(),
        Inspection::Gone
    );
    match events.recv().await.unwrap() {
        RuntimeEvent::Exited { id, code, detail } => {
            assert_eq!(id, s.id);
            assert_eq!(code, Some(137));
            assert_eq!(detail, "killed by signal 9");
        }
    }
    assert!(rt.list_owned().await.unwrap().is_empty());
    // Stopping and removing again is success; removal takes the work dir.
    rt.stop(s.id, &started.handle, Duration::ZERO)
        .await
        .unwrap();
    rt.remove(s.id, &started.handle).await.unwrap();
    rt.remove(s.id, &started.handle).await.unwrap();
    assert!(!dir.path().join(s.id.to_string()).exists());
}

#[tokio::test]
async fn graceful_stop_uses_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, spec) = runtime(
        dir.path(),
        "trap 'exit 0' TERM; while :; do sleep 0.05; done",
    );
    let s = spec();
    let started = rt.start(&s).await.unwrap();
    let mut events = rt.subscribe();
    rt.stop(s.id, &started.handle, Duration::from_secs(20))
        .await
        .unwrap();
    let RuntimeEvent::Exited { code, .. } = events.recv().await.unwrap();
    assert!(matches!(code, Some(0) | Some(143)), "{code:?}");
}

#[tokio::test]
async fn a_child_that_exits_is_reported_at_once_and_fails_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, spec) = runtime(dir.path(), "exit 3");
    let s = spec();
    let mut events = rt.subscribe();
    let started = rt.start(&s).await.unwrap();
    let err = rt
        .wait_ready(&s, &started, Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ExitedEarly { .. }), "{err}");
    let RuntimeEvent::Exited { id, code, detail } = events.recv().await.unwrap();
    assert_eq!(
        (id, code, detail.as_str()),
        (s.id, Some(3), "exited with code 3")
    );
}

#[tokio::test]
async fn readiness_times_out_when_nothing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, spec) = runtime(dir.path(), "while :; do sleep 1; done");
    let s = spec();
    let started = rt.start(&s).await.unwrap();
    let err = rt
        .wait_ready(&s, &started, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::StartTimeout(_)), "{err}");
    rt.stop(s.id, &started.handle, Duration::ZERO)
        .await
        .unwrap();
}

#[tokio::test]
async fn children_get_a_clean_environment_with_their_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, spec) = runtime(
        dir.path(),
        "env > env.txt; touch done; while :; do sleep 1; done",
    );
    let mut s = spec();
    // A claim's env, set after the template's (`EXTRA=1`).
    s.env = vec![
        ("EXTRA".into(), "claim".into()),
        ("CLAIM_ONLY".into(), "a b".into()),
    ];
    let started = rt.start(&s).await.unwrap();
    let dir_of = dir.path().join(s.id.to_string());
    wait_for_file(&dir_of.join("done")).await;
    let env = std::fs::read_to_string(dir_of.join("env.txt")).unwrap();
    assert!(!env.lines().any(|l| l == "EXTRA=1"), "{env}");
    for want in [
        "EXTRA=claim".to_owned(),
        "CLAIM_ONLY=a b".into(),
        format!("WARMPOOL_FILES_DIR={}", dir_of.display()),
        format!("WARMPOOL_CONTAINER_ID={}", s.id),
        "WARMPOOL_LOCATION=weur".into(),
        "WARMPOOL_REGION=europe-west".into(),
        "WARMPOOL_COUNTRY=FR".into(),
        "HOST=127.0.0.1".into(),
        format!("PORT={}", started.address.rsplit(':').next().unwrap()),
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} missing from:\n{env}"
        );
    }
    assert!(
        !env.contains("CARGO"),
        "warmpool's own environment leaked:\n{env}"
    );
    rt.stop(s.id, &started.handle, Duration::ZERO)
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_handles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _) = runtime(dir.path(), "true");
    for h in ["", "pid:1:0", "docker:abc", "pid:x:1"] {
        assert!(matches!(
            rt.stop(ContainerId::random(), h, Duration::ZERO).await,
            Err(RuntimeError::BadHandle(_))
        ));
    }
}

#[tokio::test]
async fn an_image_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, spec) = runtime(dir.path(), "true");
    let s = ContainerSpec {
        revision: 0,
        template: Arc::new(Template {
            workload: Workload::Image {
                image: "warmpool/sample-app:latest".into(),
                pids_limit: None,
            },
            ..(*spec().template).clone()
        }),
        ..spec()
    };
    let err = rt.start(&s).await.unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::Unsupported {
                runtime: "process",
                workload: "an image"
            }
        ),
        "{err:?}"
    );
    assert!(
        !dir.path().join(s.id.to_string()).exists(),
        "a work dir was made"
    );
    assert!(rt.list_owned().await.unwrap().is_empty());
}
