//! Request-level tests with kube's `tower_test` mock: the exact requests the
//! runtime sends (method, path, query, body) and how each answer of the API server
//! maps to the runtime's results (404 on delete, 409, 403, 429, 500, and a 410 on
//! the watch forcing a relist).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};
use tower_test::mock::{self, Handle};
use warmpool_core::{ContainerId, Location, PoolKey};
use warmpool_runtime::{
    ContainerSpec, Inspection, OwnedContainer, Resources, Runtime, RuntimeError, RuntimeEvent,
    Template, Workload,
};

use super::*;

type Mock = Handle<Request<Body>, Response<Body>>;

fn config() -> KubernetesConfig {
    KubernetesConfig {
        instance_id: "inst-1".into(),
        namespace: "pools".into(),
        container_port: 8080,
        placement: Placement::default(),
        kubeconfig: None,
    }
}

fn runtime(watch: bool) -> (Arc<KubernetesRuntime>, Mock) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let rt = if watch {
        KubernetesRuntime::new(client, config())
    } else {
        KubernetesRuntime::without_watch(client, config())
    };
    (rt, handle)
}

fn spec(location: Location) -> ContainerSpec {
    ContainerSpec {
        id: ContainerId::random(),
        key: PoolKey::new("web", location),
        revision: 0,
        env: Vec::new(),
        template: Arc::new(Template {
            workload: Workload::Image {
                image: "app:1".into(),
                pids_limit: None,
            },
            health_path: "/healthz".into(),
            resources: Resources {
                vcpu: Some(0.5),
                memory_mib: Some(128),
                disk_mb: None,
            },
            start_timeout: Duration::from_secs(5),
            ..Template::default()
        }),
    }
}

fn reply(status: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "code": code, "reason": reason, "message": message
    })
}

fn pod(id: ContainerId, phase: &str, ip: Option<&str>, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("warmpool-{id}"), "namespace": "pools", "resourceVersion": "7",
            "labels": {
                "app.kubernetes.io/managed-by": "warmpool",
                "warmpool.dev/instance": "inst-1",
                "warmpool.dev/container-id": id.to_string(),
            }
        },
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{
                "name": "app", "ready": ready, "restartCount": 0, "image": "app:1",
                "imageID": "", "state": {"running": {}}
            }]
        }
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "10"}, "items": items})
}

async fn next(
    handle: &mut Mock,
) -> (
    Request<Body>,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("no request within 10 s")
        .expect("service dropped")
}

async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn start_posts_the_pod_then_reads_its_ip() {
    let (rt, mut handle) = runtime(false);
    let s = spec(Location::Weur);
    let id = s.id;
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().path(), "/api/v1/namespaces/pools/pods");
        let body = body_json(req).await;
        assert_eq!(body["metadata"]["name"], format!("warmpool-{id}"));
        assert_eq!(body["metadata"]["labels"]["warmpool.dev/location"], "weur");
        assert_eq!(body["metadata"]["labels"]["warmpool.dev/pool"], "web");
        assert_eq!(
            body["spec"]["nodeSelector"],
            json!({"topology.kubernetes.io/region": "weur"})
        );
        assert_eq!(body["spec"]["restartPolicy"], "Never");
        let c = &body["spec"]["containers"][0];
        assert_eq!(
            c["resources"]["limits"],
            json!({"cpu": "500m", "memory": "128Mi"})
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
        send.send_response(reply(201, pod(id, "Pending", None, false)));

        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(
            req.uri().path(),
            format!("/api/v1/namespaces/pools/pods/warmpool-{id}")
        );
        send.send_response(reply(200, pod(id, "Running", Some("10.4.0.9"), false)));
    });
    let started = rt.start(&s).await.unwrap();
    assert_eq!(started.handle, format!("warmpool-{id}"));
    assert_eq!(started.address, "10.4.0.9:8080");
    server.await.unwrap();
}

#[tokio::test]
async fn a_create_conflict_is_an_error_naming_the_status() {
    let (rt, mut handle) = runtime(false);
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle).await;
        send.send_response(reply(
            409,
            status(409, "AlreadyExists", "pods \"warmpool-x\" already exists"),
        ));
    });
    let e = rt.start(&spec(Location::Default)).await.unwrap_err();
    assert!(
        matches!(&e, RuntimeError::Api { status: Some(409), retryable: false, message } if message.contains("already exists")),
        "{e:?}"
    );
    assert!(e.to_string().contains("409"), "{e}");
    server.await.unwrap();
}

#[tokio::test]
async fn remove_deletes_without_grace_and_404_is_success() {
    let (rt, mut handle) = runtime(false);
    let id = ContainerId::random();
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(
            req.uri().path(),
            format!("/api/v1/namespaces/pools/pods/warmpool-{id}")
        );
        assert_eq!(body_json(req).await["gracePeriodSeconds"], 0);
        send.send_response(reply(404, status(404, "NotFound", "not found")));
    });
    rt.remove(id, &format!("warmpool-{id}")).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn stop_deletes_with_the_grace_period_and_waits_until_gone() {
    let (rt, mut handle) = runtime(false);
    let id = ContainerId::random();
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(body_json(req).await["gracePeriodSeconds"], 3);
        send.send_response(reply(200, pod(id, "Running", Some("10.0.0.1"), true)));
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), Method::GET);
        send.send_response(reply(404, status(404, "NotFound", "not found")));
    });
    rt.stop(id, &format!("warmpool-{id}"), Duration::from_millis(2500))
        .await
        .unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn inspect_reads_the_pod_and_404_is_gone() {
    let (rt, mut handle) = runtime(false);
    let id = ContainerId::random();
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle).await;
        send.send_response(reply(200, pod(id, "Running", Some("10.0.0.1"), true)));
        let (_, send) = next(&mut handle).await;
        send.send_response(reply(404, status(404, "NotFound", "not found")));
    });
    let name = format!("warmpool-{id}");
    assert_eq!(rt.inspect(id, &name).await.unwrap(), Inspection::Running);
    assert_eq!(rt.inspect(id, &name).await.unwrap(), Inspection::Gone);
    server.await.unwrap();
}

#[tokio::test]
async fn list_owned_selects_by_labels() {
    let (rt, mut handle) = runtime(false);
    let (a, b) = (ContainerId::random(), ContainerId::random());
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/api/v1/namespaces/pools/pods");
        let query = req.uri().query().unwrap_or_default().to_owned();
        assert!(
            query.contains(
                "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dwarmpool%2Cwarmpool.dev%2Finstance%3Dinst-1"
            ),
            "{query}"
        );
        send.send_response(reply(
            200,
            list(vec![
                pod(a, "Running", Some("10.0.0.1"), true),
                pod(b, "Pending", None, false),
            ]),
        ));
    });
    let owned = rt.list_owned().await.unwrap();
    assert_eq!(
        owned,
        vec![
            OwnedContainer {
                id: a,
                handle: format!("warmpool-{a}"),
                address: Some("10.0.0.1:8080".into()),
                running: true
            },
            OwnedContainer {
                id: b,
                handle: format!("warmpool-{b}"),
                address: None,
                running: true
            },
        ]
    );
    server.await.unwrap();
}

#[tokio::test]
async fn api_errors_map_by_status_code() {
    for (code, reason, retry) in [
        (403, "Forbidden", false),
        (429, "TooManyRequests", true),
        (500, "InternalError", true),
        (503, "ServiceUnavailable", true),
        (422, "Invalid", false),
    ] {
        let (rt, mut handle) = runtime(false);
        let server = tokio::spawn(async move {
            let (_, send) = next(&mut handle).await;
            send.send_response(reply(code, status(code, reason, "nope")));
        });
        let e = rt.list_owned().await.unwrap_err();
        match &e {
            RuntimeError::Api {
                status: Some(s),
                message,
                retryable,
            } if *s == code && *retryable == retry => {
                assert!(message.contains(&code.to_string()), "{message}")
            }
            _ => panic!("{code}: {e:?}"),
        }
        if code == 403 {
            assert!(e.to_string().contains("Role"), "{e}");
        }
        server.await.unwrap();
    }
}

#[tokio::test]
async fn a_410_on_the_watch_forces_a_relist_that_notices_deleted_pods() {
    let (rt, handle) = runtime(true);
    let (a, b) = (ContainerId::random(), ContainerId::random());
    let mut events = rt.subscribe();
    for id in [a, b] {
        rt.adopt(&OwnedContainer {
            id,
            handle: format!("warmpool-{id}"),
            address: None,
            running: true,
        })
        .await
        .unwrap();
    }
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        // The initial list: both pods.
        let (req, send) = next(&mut handle).await;
        assert!(!req.uri().query().unwrap_or_default().contains("watch=true"));
        send.send_response(reply(
            200,
            list(vec![
                pod(a, "Running", Some("10.0.0.1"), true),
                pod(b, "Running", Some("10.0.0.2"), true),
            ]),
        ));
        // The watch from the list's resourceVersion: expired.
        let (req, send) = next(&mut handle).await;
        let query = req.uri().query().unwrap_or_default().to_owned();
        assert!(query.contains("watch=true"), "{query}");
        assert!(query.contains("resourceVersion=10"), "{query}");
        let expired =
            json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")});
        send.send_response(reply(200, expired));
        // The relist: b was deleted meanwhile.
        let (req, send) = next(&mut handle).await;
        assert!(!req.uri().query().unwrap_or_default().contains("watch=true"));
        send.send_response(reply(
            200,
            list(vec![pod(a, "Running", Some("10.0.0.1"), true)]),
        ));
        // Keep the next watch open until the test ends.
        let (_req, _send) = next(&mut handle).await;
        std::future::pending::<()>().await;
    });
    let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("no event after the relist")
        .unwrap();
    match ev {
        RuntimeEvent::Exited { id, code, detail } => {
            assert_eq!((id, code), (b, None));
            assert!(detail.contains("re-listing"), "{detail}");
        }
    }
    assert!(events.try_recv().is_err(), "a is still there");
    server.abort();
}

#[tokio::test]
async fn the_watch_reports_exits_with_code_and_oom() {
    let (rt, handle) = runtime(true);
    let (a, b) = (ContainerId::random(), ContainerId::random());
    let mut events = rt.subscribe();
    for id in [a, b] {
        rt.adopt(&OwnedContainer {
            id,
            handle: format!("warmpool-{id}"),
            address: None,
            running: true,
        })
        .await
        .unwrap();
    }
    let ended = |id: ContainerId, code: i32, reason: &str| {
        let mut p = pod(id, "Failed", Some("10.0.0.1"), false);
        p["status"]["containerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": code, "reason": reason}});
        p
    };
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (_, send) = next(&mut handle).await;
        send.send_response(reply(
            200,
            list(vec![
                pod(a, "Running", Some("10.0.0.1"), true),
                pod(b, "Running", Some("10.0.0.2"), true),
            ]),
        ));
        let (_, send) = next(&mut handle).await;
        let mut lines = Vec::new();
        for ev in [
            json!({"type": "MODIFIED", "object": ended(a, 3, "Error")}),
            json!({"type": "MODIFIED", "object": ended(b, 137, "OOMKilled")}),
        ] {
            lines.extend(serde_json::to_vec(&ev).unwrap());
            lines.push(b'\n');
        }
        send.send_response(Response::new(Body::from(lines)));
        let (_req, _send) = next(&mut handle).await;
        std::future::pending::<()>().await;
    });
    let mut got = Vec::new();
    while got.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("exit not reported")
            .unwrap();
        let RuntimeEvent::Exited { id, code, detail } = ev;
        got.push((id, code, detail));
    }
    assert!(
        got.contains(&(a, Some(3), "exited with code 3".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&(b, Some(137), "out of memory (OOM killed)".into())),
        "{got:?}"
    );
    server.abort();
}

#[tokio::test]
async fn a_failed_watch_relists_and_compares() {
    let (rt, handle) = runtime(true);
    let (a, b) = (ContainerId::random(), ContainerId::random());
    let mut events = rt.subscribe();
    for id in [a, b] {
        rt.adopt(&OwnedContainer {
            id,
            handle: format!("warmpool-{id}"),
            address: None,
            running: true,
        })
        .await
        .unwrap();
    }
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (_, send) = next(&mut handle).await;
        send.send_response(reply(
            200,
            list(vec![
                pod(a, "Running", Some("10.0.0.1"), true),
                pod(b, "Running", Some("10.0.0.2"), true),
            ]),
        ));
        // The watch cannot be opened (the connection to the API server broke).
        let (req, send) = next(&mut handle).await;
        assert!(req.uri().query().unwrap_or_default().contains("watch=true"));
        send.send_response(reply(503, status(503, "ServiceUnavailable", "down")));
        // The runtime relists at once: b is gone.
        let (req, send) = next(&mut handle).await;
        assert!(!req.uri().query().unwrap_or_default().contains("watch=true"));
        send.send_response(reply(
            200,
            list(vec![pod(a, "Running", Some("10.0.0.1"), true)]),
        ));
        let (_req, _send) = next(&mut handle).await;
        std::future::pending::<()>().await;
    });
    let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("no event after the relist")
        .unwrap();
    let RuntimeEvent::Exited { id, detail, .. } = ev;
    assert_eq!(id, b);
    assert!(detail.contains("re-listing"), "{detail}");
    server.abort();
}
