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
        case("GET", "/v1/containers/not-a-uuid", "", 404, None),
        case("GET", &format!("/v1/containers/{id}"), "", 404, None),
        case("DELETE", "/v1/containers/../../etc", "", 404, None),
        case("DELETE", &format!("/v1/containers/{id}"), "", 404, None),
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
        body: format!(r#"{{"location": "{}"}}"#, "x".repeat(100_000)).into_bytes(),
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
