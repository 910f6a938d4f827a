//! Bad input on every endpoint gets the right 4xx and a problem document, never a
//! 500, and leaves the store as it was.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::InProc;
use warmpool_runtime::{SimMode, SimRuntime};

struct Case {
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    field: Option<&'static str>,
}

fn case(
    method: &'static str,
    path: &str,
    body: &str,
    status: u16,
    field: Option<&'static str>,
) -> Case {
    Case {
        method,
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        field,
    }
}

#[tokio::test]
async fn bad_input_gets_problem_documents_and_changes_nothing() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "1"),
            ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
        ],
        Some(sim),
    )
    .await;
    wp.wait_ready("default", 1, Duration::from_secs(10)).await;
    let store = wp.app().store.clone();
    let before = (
        store.count_by_state().await.unwrap(),
        store.events(0, 1000, None).await.unwrap(),
    );

    let id = uuid::Uuid::new_v4();
    let mut cases = vec![
        case("POST", "/container", "{", 400, None),
        case("POST", "/container", "not json", 400, None),
        case("POST", "/container", "[]", 422, Some("")),
        case("POST", "/container", "42", 422, Some("")),
        // Unknown fields are refused even when null.
        case("POST", "/container", r#"{"": null}"#, 422, Some("")),
        case(
            "POST",
            "/container",
            r#"{"colour": null}"#,
            422,
            Some("colour"),
        ),
        case(
            "POST",
            "/container",
            r#"{"location": 5}"#,
            422,
            Some("location"),
        ),
        case(
            "POST",
            "/container",
            r#"{"location": "mars"}"#,
            422,
            Some("location"),
        ),
        case(
            "POST",
            "/container",
            r#"{"location": "WNAM"}"#,
            422,
            Some("location"),
        ),
        case(
            "POST",
            "/container",
            r#"{"maxLifetimeInSeconds": 0}"#,
            422,
            Some("maxLifetimeInSeconds"),
        ),
        case(
            "POST",
            "/container",
            r#"{"maxLifetimeInSeconds": -1}"#,
            422,
            Some("maxLifetimeInSeconds"),
        ),
        case(
            "POST",
            "/container",
            r#"{"maxLifetimeInSeconds": 1.5}"#,
            422,
            Some("maxLifetimeInSeconds"),
        ),
        case(
            "POST",
            "/container",
            r#"{"maxLifetimeInSeconds": "60"}"#,
            422,
            Some("maxLifetimeInSeconds"),
        ),
        case(
            "POST",
            "/container",
            r#"{"maxLifetimeInSeconds": 3601}"#,
            422,
            Some("maxLifetimeInSeconds"),
        ),
        case(
            "POST",
            "/container",
            r#"{"maxLifetimeInSeconds": 1e400}"#,
            400,
            None,
        ),
        case(
            "POST",
            "/container",
            r#"{"lifetime": 60}"#,
            422,
            Some("lifetime"),
        ),
        case(
            "POST",
            "/container",
            r#"{"location": "weur", "extra": true}"#,
            422,
            Some("extra"),
        ),
        case("POST", "/container", r#"{"text": 42}"#, 422, Some("text")),
        case(
            "POST",
            "/container",
            r#"{"idleTimeoutInSeconds": 0}"#,
            422,
            Some("idleTimeoutInSeconds"),
        ),
        case(
            "POST",
            "/container",
            r#"{"idleTimeoutInSeconds": "1"}"#,
            422,
            Some("idleTimeoutInSeconds"),
        ),
        case("GET", "/v1/containers?state=bogus", "", 422, Some("state")),
        case(
            "GET",
            "/v1/containers?location=mars",
            "",
            422,
            Some("location"),
        ),
        case("GET", "/v1/containers?limit=0", "", 422, Some("limit")),
        case("GET", "/v1/containers?limit=abc", "", 422, Some("limit")),
        case("GET", "/v1/containers?colour=red", "", 422, Some("colour")),
        // A label selector that does not parse (issue 16).
        case(
            "GET",
            "/v1/containers?label=tier%20in%20(a",
            "",
            422,
            Some("label"),
        ),
        case("GET", "/v1/containers?label=-x%3Da", "", 422, Some("label")),
        case(
            "GET",
            "/v1/containers?label=a%3Db,,c",
            "",
            422,
            Some("label"),
        ),
        case("GET", "/v1/containers/not-a-uuid", "", 404, None),
        // Paths that cannot even be percent-decoded are problems too.
        case("GET", "/v1/containers/%ff", "", 404, None),
        case("DELETE", "/v1/containers/%C3%28", "", 404, None),
        case("GET", "/v1/containers?state=%ff%fe", "", 422, Some("state")),
        case("GET", &format!("/v1/containers/{id}"), "", 404, None),
        case("DELETE", "/v1/containers/../../etc", "", 404, None),
        case("DELETE", &format!("/v1/containers/{id}"), "", 404, None),
        case(
            "POST",
            &format!("/v1/containers/{id}/extend"),
            r#"{"seconds": 5}"#,
            404,
            None,
        ),
        case(
            "POST",
            &format!("/v1/containers/{id}/extend"),
            r#"{"seconds": 0}"#,
            422,
            Some("seconds"),
        ),
        case(
            "POST",
            &format!("/v1/containers/{id}/extend"),
            "{}",
            422,
            Some("seconds"),
        ),
        case(
            "POST",
            &format!("/v1/containers/{id}/keepalive"),
            "",
            404,
            None,
        ),
        case(
            "POST",
            &format!("/v1/containers/{id}/keepalive"),
            r#"{"x": 1}"#,
            422,
            Some("x"),
        ),
        case("GET", "/v1/events?after=-1", "", 422, Some("after")),
        case("GET", "/v1/events?limit=100000", "", 422, Some("limit")),
        case(
            "GET",
            "/v1/events?container=nope",
            "",
            422,
            Some("container"),
        ),
        case("GET", "/nope", "", 404, None),
        case("PUT", "/v1/pools", "", 405, None),
        case("GET", "/container", "", 405, None),
        case("GET", "/container/not-a-uuid/x", "", 404, None),
        case("GET", &format!("/container/{id}/x"), "", 404, None),
    ];
    cases.push(Case {
        method: "POST",
        path: "/container".into(),
        content_type: Some("text/plain"),
        body: b"{}".to_vec(),
        status: 415,
        field: None,
    });
    cases.push(Case {
        method: "POST",
        path: "/container".into(),
        content_type: Some("application/json"),
        body: format!(r#"{{"location": "{}"}}"#, "x".repeat(5 * 1024 * 1024)).into_bytes(),
        status: 413,
        field: None,
    });

    for c in cases {
        let mut req = wp
            .http
            .request(c.method.parse().unwrap(), format!("{}{}", wp.base, c.path))
            .body(c.body.clone());
        if let Some(ct) = c.content_type.filter(|_| !c.body.is_empty()) {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        let what = format!(
            "{} {} {:?}",
            c.method,
            c.path,
            String::from_utf8_lossy(&c.body[..c.body.len().min(60)])
        );
        assert_eq!(r.status().as_u16(), c.status, "{what}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["status"], c.status, "{what}");
        for k in ["type", "title", "detail"] {
            assert!(
                p[k].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: {k} missing in {p}"
            );
        }
        assert_eq!(p["field"].as_str(), c.field, "{what}: {p}");
    }

    let after = (
        store.count_by_state().await.unwrap(),
        store.events(0, 1000, None).await.unwrap(),
    );
    assert_eq!(before, after, "bad input changed the store");
    wp.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(&[("POOL_TARGET_INSTANCES", "0")], Some(sim)).await;
    let r = wp
        .http
        .get(format!("{}/healthz", wp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (client, _) = (wp.client.clone(), ());
    common::poll(Duration::from_secs(10), "readyz", || {
        let client = client.clone();
        async move { client.readyz().await.ok() }
    })
    .await;
    wp.shutdown().await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(&[("POOL_TARGET_INSTANCES", "0")], Some(sim)).await;
    for path in ["/v1/pools", "/nope", "/healthz"] {
        let r = wp
            .http
            .get(format!("{}{path}", wp.base))
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32, "{path}: {id}");
        let again = wp
            .http
            .get(format!("{}{path}", wp.base))
            .send()
            .await
            .unwrap();
        assert_ne!(
            again.headers()["x-request-id"].to_str().unwrap(),
            id,
            "ids are unique"
        );
    }
    let mine = wp
        .http
        .get(format!("{}/v1/pools", wp.base))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(mine.headers()["x-request-id"], "trace-me-42");
    let silly = wp
        .http
        .get(format!("{}/v1/pools", wp.base))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    assert_eq!(
        silly.headers()["x-request-id"].len(),
        32,
        "an unreasonable id is replaced"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_can_be_long_polled() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(&[("POOL_TARGET_INSTANCES", "1")], Some(sim)).await;
    wp.wait_ready("default", 1, Duration::from_secs(10)).await;
    let latest = wp.client.events(0, 1000).await.unwrap().next;

    // Nothing happens: the answer is held for the wait, then empty.
    let t = std::time::Instant::now();
    let empty: serde_json::Value = wp
        .http
        .get(format!("{}/v1/events?after={latest}&wait=1", wp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(empty["events"].as_array().unwrap().len(), 0);
    assert_eq!(empty["next"], latest);

    // Something happens while a reader waits: it is answered at once.
    let url = format!("{}/v1/events?after={latest}&wait=30", wp.base);
    let http = wp.http.clone();
    let reader = tokio::spawn(async move {
        let t = std::time::Instant::now();
        let v: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
        (v, t.elapsed())
    });
    let c = wp.client.claim(&Default::default()).await.unwrap();
    let (v, took) = reader.await.unwrap();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["containerId"] == c.id.as_str()),
        "{v}"
    );
    let r = wp
        .http
        .get(format!("{}/v1/events?wait=61", wp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut p = common::Proc::spawn_with_stderr(
        dir.path(),
        &[
            ("WARMPOOL_LOG_FORMAT", "json"),
            ("POOL_TARGET_INSTANCES", "0"),
        ],
        std::process::Stdio::piped(),
    );
    let stderr = p.child.stderr.take().unwrap();
    assert!(p.sigterm().success());
    let lines: Vec<String> = BufReader::new(stderr).lines().map(Result::unwrap).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("no tokens configured")));
}
