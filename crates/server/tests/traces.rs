//! Traces (issue 18, point 6): with `WARMPOOL_OTLP_ENDPOINT` set, the real binary
//! exports its spans over OTLP/HTTP (protobuf) to a receiver inside this test:
//! claim, launch, readiness, proxy, reconcile and store.commit, linked as parent
//! and child. A claim's and a proxied request's `traceparent` put their spans in
//! the caller's trace, and the proxy passes its own span on to the container (the
//! sample app echoes what it got). Without an endpoint, nothing is added and a
//! client's `traceparent` reaches the container as it was sent. A collector that
//! refuses the spans is said in the log, once a minute at most.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{poll, InProc, Proc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// One span as the receiver got it: ids in lowercase hex, as `traceparent` has them.
#[derive(Clone, Debug)]
struct Got {
    name: String,
    trace: String,
    id: String,
    parent: String,
    attributes: HashMap<String, String>,
    service: String,
}

type Spans = Arc<Mutex<Vec<Got>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// `POST /v1/traces`: decodes an export request and keeps its spans.
async fn receive(State(spans): State<Spans>, body: Bytes) -> StatusCode {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut kept = spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(&a.value))
            .unwrap_or_default();
        for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
            kept.push(Got {
                name: s.name,
                trace: hex(&s.trace_id),
                id: hex(&s.span_id),
                parent: hex(&s.parent_span_id),
                attributes: s
                    .attributes
                    .iter()
                    .map(|a| (a.key.clone(), text(&a.value)))
                    .collect(),
                service: service.clone(),
            });
        }
    }
    StatusCode::OK
}

/// A receiver on 127.0.0.1: its base URL and what it got.
async fn receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

/// Waits for a span that `pick` accepts.
async fn span_where(spans: &Spans, what: &str, pick: impl Fn(&Got) -> bool) -> Got {
    poll(T, what, || {
        let found = spans.lock().unwrap().iter().find(|s| pick(s)).cloned();
        std::future::ready(found)
    })
    .await
}

/// A fresh `traceparent`: (header, trace id, parent span id).
fn traceparent(n: u8) -> (String, String, String) {
    let trace = format!("4bf92f3577b34da6a3ce929d0e0e47{n:02x}");
    let parent = format!("00f067aa0ba902{n:02x}");
    (format!("00-{trace}-{parent}-01"), trace, parent)
}

/// `POST /container` with `traceparent`: the answer.
async fn claim_in(http: &reqwest::Client, base: &str, traceparent: &str) -> Value {
    let resp = http
        .post(format!("{base}/container"))
        .header("traceparent", traceparent)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

/// The sample app's echo of a proxied `PUT`, sent with `traceparent` if given.
async fn echo(http: &reqwest::Client, base: &str, id: &str, traceparent: Option<&str>) -> Value {
    let mut req = http.put(format!("{base}/container/{id}/hello"));
    if let Some(t) = traceparent {
        req = req.header("traceparent", t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_in_the_callers_trace_and_the_container_gets_the_proxys() {
    let (url, spans) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let wp = Proc::spawn(
        dir.path(),
        &[
            ("WARMPOOL_OTLP_ENDPOINT", url.as_str()),
            // Batches go out every 100 ms instead of every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("POOL_TARGET_INSTANCES", "1"),
            // The first batch fills the pool; a claimed container is not
            // replaced for ten minutes, so the second claim is cold.
            ("POOL_BATCH_SPACING_IN_SECONDS", "600"),
        ],
    );
    let http = reqwest::Client::new();
    common::wait_ready(&wp.client, "default", 1, T).await;

    // The pool's fill: a launch in a reconcile pass, its readiness in the launch.
    let readiness = span_where(&spans, "a readiness span", |s| s.name == "readiness").await;
    let launch = span_where(&spans, "the launch of the readiness span", |s| {
        s.name == "launch" && s.id == readiness.parent
    })
    .await;
    assert_eq!(launch.trace, readiness.trace);
    assert_eq!(launch.attributes["on_demand"], "false", "{launch:?}");
    let pass = span_where(&spans, "the reconcile pass of the launch", |s| {
        s.name == "reconcile" && s.id == launch.parent
    })
    .await;
    assert_eq!(pass.trace, launch.trace);
    assert_eq!(pass.service, "warmpool");

    // A warm claim in the caller's trace, its store commit inside it.
    let (header, trace, parent) = traceparent(1);
    let claimed = claim_in(&http, &wp.base, &header).await;
    assert_eq!(claimed["warm"], true, "{claimed}");
    let id = claimed["id"].as_str().unwrap().to_owned();
    let claim = span_where(&spans, "the warm claim's span", |s| {
        s.name == "claim" && s.trace == trace
    })
    .await;
    assert_eq!(
        claim.parent, parent,
        "the claim is a child of the caller's span"
    );
    assert_eq!(claim.attributes["container_id"], id);
    assert_eq!(claim.attributes["warm"], "true");
    span_where(&spans, "a store commit in the claim", |s| {
        s.name == "store.commit" && s.parent == claim.id && s.trace == trace
    })
    .await;

    // The next claim finds the pool empty: its launch and readiness are in it.
    let (header, trace, _) = traceparent(2);
    let cold = claim_in(&http, &wp.base, &header).await;
    assert_eq!(cold["warm"], false, "{cold}");
    let claim = span_where(&spans, "the cold claim's span", |s| {
        s.name == "claim" && s.trace == trace
    })
    .await;
    let launch = span_where(&spans, "the on-demand launch in the claim", |s| {
        s.name == "launch" && s.parent == claim.id
    })
    .await;
    assert_eq!(launch.attributes["on_demand"], "true", "{launch:?}");
    span_where(&spans, "the readiness in the on-demand launch", |s| {
        s.name == "readiness" && s.parent == launch.id && s.trace == trace
    })
    .await;

    // A proxied request: the proxy's span is in the client's trace, and the
    // container is handed the proxy's span as its parent.
    let (header, trace, parent) = traceparent(3);
    let echo = echo(&http, &wp.base, &id, Some(&header)).await;
    let passed = echo["traceparent"]
        .as_str()
        .expect("the app got a traceparent");
    let proxy = span_where(&spans, "the proxy's span", |s| {
        s.name == "proxy" && s.trace == trace
    })
    .await;
    assert_eq!(
        proxy.parent, parent,
        "the proxy is a child of the client's span"
    );
    assert_eq!(proxy.attributes["container_id"], id);
    assert_eq!(proxy.attributes["status"], "200");
    assert_eq!(passed, format!("00-{trace}-{}-01", proxy.id));

    // Shutting down flushes the exporter and exits cleanly.
    let mut wp = wp;
    assert!(wp.sigterm().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_refuses_the_spans_is_logged_once_and_warmpool_serves_on() {
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A collector that answers every export 503, counting them.
    let refused = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/v1/traces",
        post({
            let refused = refused.clone();
            move || async move {
                refused.fetch_add(1, Ordering::Relaxed);
                StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut wp = Proc::spawn_with_stderr(
        dir.path(),
        &[
            ("WARMPOOL_OTLP_ENDPOINT", url.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("POOL_TARGET_INSTANCES", "1"),
        ],
        std::process::Stdio::piped(),
    );
    common::wait_ready(&wp.client, "default", 1, T).await;
    // Claims go on, and each brings spans to export, refused each time.
    let http = reqwest::Client::new();
    poll(T, "three refused exports", || {
        let (http, base, refused) = (http.clone(), wp.base.clone(), refused.clone());
        async move {
            let claimed = claim_in(&http, &base, &traceparent(5).0).await;
            assert!(claimed["id"].is_string(), "{claimed}");
            (refused.load(Ordering::Relaxed) >= 3).then_some(())
        }
    })
    .await;
    let mut pipe = wp.child.stderr.take().unwrap();
    assert!(wp.sigterm().success());
    let mut log = String::new();
    pipe.read_to_string(&mut log).unwrap();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot export traces"))
        .collect();
    assert_eq!(warnings.len(), 1, "one line a minute at most:\n{log}");
    assert!(warnings[0].contains("503"), "{}", warnings[0]);
    assert!(warnings[0].contains(&url), "{}", warnings[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_a_clients_traceparent_reaches_the_container_unchanged() {
    let wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let id = wp.client.claim(&Default::default()).await.unwrap().id;
    let (header, _, _) = traceparent(4);
    let passed = echo(&wp.http, &wp.base, &id, Some(&header)).await;
    assert_eq!(passed["traceparent"], header.as_str());
    // And none is made up when the client sent none.
    let passed = echo(&wp.http, &wp.base, &id, None).await;
    assert!(passed.get("traceparent").is_none(), "{passed}");
}
