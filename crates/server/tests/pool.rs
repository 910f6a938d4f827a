//! End-to-end tests of the pool with the process runtime: real sample-app children
//! behind the real proxy.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{kill9_handle, pid_of, poll, poll_gone, process_gone, InProc};
use warmpool_client::{ClaimRequest, ContainerQuery};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_fills_in_spaced_batches() {
    let mut wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "6"),
        ("POOL_BATCH_SIZE", "2"),
        ("POOL_BATCH_SPACING_IN_SECONDS", "0.6"),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "30"),
    ])
    .await;
    wp.wait_ready("default", 6, T).await;
    let created = wp.created_times().await;
    assert_eq!(created.len(), 6, "never more than the target");
    // Three batches of two: within a batch the records are written together; the
    // batches start at least one spacing apart (the timer alone, 30 s, cannot have
    // driven them).
    let batches: Vec<&[i64]> = created.chunks(2).collect();
    for b in &batches {
        assert!(
            b[1] - b[0] < 300,
            "batch spread over {} ms: {created:?}",
            b[1] - b[0]
        );
    }
    for w in batches.windows(2) {
        let gap = w[1][0] - w[0][0];
        assert!(
            (590..5000).contains(&gap),
            "batches {gap} ms apart: {created:?}"
        );
    }
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_proxies_to_the_sample_app_and_refills_at_once() {
    // The timer is an hour: only the claim's activation can trigger the refill.
    let mut wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "2"),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
    ])
    .await;
    wp.wait_ready("default", 2, T).await;

    let claimed = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    assert!(claimed.warm);
    assert_eq!(claimed.location, "default");
    let id = claimed.id.clone();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);

    let resp = wp
        .http
        .get(format!("{}/container/{id}", wp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(h["x-container-id"], id.as_str());
    assert_eq!(h["x-container-location"], "default");
    assert!(h.contains_key("x-container-country"));
    assert!(h.contains_key("x-container-region"));
    // Proxied answers carry a request id too, the client's own when it sent one
    // (the HTTP server hands them to the proxy without the router).
    assert_eq!(h["x-request-id"].len(), 32, "{h:?}");
    assert_eq!(resp.text().await.unwrap(), "No Content");
    let mine = wp
        .http
        .get(format!("{}/container/{id}/", wp.base))
        .header("x-request-id", "proxied-42")
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
    assert_eq!(mine.headers()["x-request-id"], "proxied-42");

    // Every method and sub-path reaches the app, with the prefix stripped.
    let echo: serde_json::Value = wp
        .http
        .put(format!("{}/container/{id}/a/b?x=1", wp.base))
        .body("hello")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/a/b");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["bodyLength"], 5);

    // Refill without waiting for the (hour-long) timer.
    wp.wait_ready("default", 2, T).await;
    let view = wp.client.container(&id).await.unwrap();
    assert_eq!(view.state, "allocated");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_never_share_a_container() {
    let mut wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "50"),
        ("POOL_BATCH_SIZE", "50"),
        ("WARMPOOL_MAX_INSTANCES", "60"),
        // Short enough that a start that failed while filling is replaced.
        ("POOL_BATCH_SPACING_IN_SECONDS", "0.5"),
    ])
    .await;
    wp.wait_ready("default", 50, Duration::from_secs(90)).await;

    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let c = wp.client.clone();
            tokio::spawn(async move { c.claim(&ClaimRequest::default()).await })
        })
        .collect();
    let mut ids = Vec::new();
    let (mut warm, mut cold, mut unavailable) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => {
                if c.warm {
                    warm += 1
                } else {
                    cold += 1
                }
                ids.push(c.id);
            }
            Err(e) => {
                assert_eq!(e.status(), Some(503), "{e}");
                unavailable += 1;
            }
        }
    }
    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "a container was handed out twice"
    );
    // All 50 warm ones are handed out (a refill that is ready in time may add to
    // them); nothing beyond the global cap of 60 is ever started.
    assert!(warm >= 50, "only {warm} warm claims");
    assert!(
        warm + cold <= 60,
        "claims beyond the global cap: {warm} warm + {cold} on demand"
    );
    assert_eq!(warm + cold + unavailable, 200);
    for id in &ids {
        assert_eq!(wp.client.container(id).await.unwrap().state, "allocated");
    }
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_container_answers_410_and_its_process_is_gone() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp
        .client
        .claim(&ClaimRequest {
            location: None,
            max_lifetime_in_seconds: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let view = wp.client.container(&c.id).await.unwrap();
    let pid = pid_of(view.runtime_handle.as_deref().unwrap());
    let detail = poll_gone(&format!("{}/container/{}/", wp.base, c.id), T).await;
    assert!(detail.contains("expired"), "{detail}");
    let client = wp.client.clone();
    let id = c.id.clone();
    poll(T, "expired container stopped", || {
        let (client, id) = (client.clone(), id.clone());
        async move { (client.container(&id).await.ok()?.state == "stopped").then_some(()) }
    })
    .await;
    let row = wp.client.container(&c.id).await.unwrap();
    assert_eq!(row.stop_reason.as_deref(), Some("expired"));
    assert!(process_gone(pid), "process {pid} still runs");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_children_are_replaced_and_never_handed_out() {
    let mut wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "3"),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
    ])
    .await;
    wp.wait_ready("default", 3, T).await;
    let ready = wp
        .client
        .containers(&ContainerQuery {
            state: Some("ready".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .containers;
    let victim = ready[0].clone();
    kill9_handle(victim.runtime_handle.as_deref());

    // Noticed at once (not at the hour-long tick), recorded, and replaced.
    let client = wp.client.clone();
    let vid = victim.id.clone();
    let gone = poll(T, "killed container recorded", || {
        let (client, vid) = (client.clone(), vid.clone());
        async move {
            let v = client.container(&vid).await.ok()?;
            matches!(v.state.as_str(), "failed" | "stopped").then_some(v)
        }
    })
    .await;
    assert!(gone.stop_reason.unwrap().contains("killed by signal 9"));
    assert_eq!(gone.exit_code, Some(137));
    wp.wait_ready("default", 3, T).await;

    // Claim everything that is ready: the dead one never comes back.
    for _ in 0..3 {
        let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
        assert_ne!(c.id, victim.id);
    }
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocated_container_that_dies_answers_410_with_its_exit() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let view = wp.client.container(&c.id).await.unwrap();
    kill9_handle(view.runtime_handle.as_deref());
    let detail = poll_gone(&format!("{}/container/{}/", wp.base, c.id), T).await;
    assert!(
        detail.contains("exited") && detail.contains("signal 9"),
        "{detail}"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_paths_are_refused_in_every_spelling() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    for path in [
        "/admin/update-text",
        "/admin/",
        "/admin",
        "/%61dmin/update-text",
        "/%2561dmin/update-text",
        "/x/../admin/update-text",
        "/x/%2e%2e/admin/update-text",
        "//admin/update-text",
        "/./admin/update-text",
        "/ADMIN/update-text",
        "/admin%2Fupdate-text",
        "/%5cadmin/update-text",
    ] {
        // A raw request line, so that no client library normalises the path first.
        let raw = format!(
            "POST /container/{}{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\npwned",
            c.id
        );
        let resp = raw_request(&wp.base, &raw).await;
        assert!(resp.starts_with("HTTP/1.1 403"), "{path}: {resp}");
        assert!(resp.contains("application/problem+json"), "{path}: {resp}");
    }
    let text = wp.proxied_text(&c.id, "/").await;
    assert_eq!(text, "No Content", "the text was changed through the proxy");
    wp.shutdown().await;
}

/// Generated spellings of `/admin/update-text` (encodings, dot segments, odd
/// separators, case) sent to a real sample app through the proxy: none may set the
/// text. (`proxy::guard`'s tests check the same property against many more paths, with
/// models of how servers read paths; this one checks it against the real app.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_admin_spellings_never_reach_the_app() {
    use proptest::strategy::{Strategy, ValueTree};
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let piece = proptest::sample::select(vec![
        "admin",
        "ADMIN",
        "%61dmin",
        "adm%69n",
        "%2561dmin",
        "..",
        ".",
        "%2e%2e",
        ".%2e",
        "x",
        "",
        "update-text",
    ]);
    let sep = proptest::sample::select(vec!["/", "//", "\\", "%2f", "%5c", "%252f"]);
    let paths = proptest::collection::vec((sep, piece), 0..5).prop_map(|parts| {
        // After the id, always a slash: anything else is another (unknown) id.
        let mut p = String::from("/");
        p.extend(parts.into_iter().map(|(s, g)| format!("{s}{g}")));
        p.push_str("/admin/update-text");
        p
    });
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut refused, mut echoed) = (0, 0);
    for _ in 0..300 {
        let path = paths.new_tree(&mut runner).unwrap().current();
        let raw = format!(
            "POST /container/{}{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\npwned",
            c.id
        );
        let resp = raw_request(&wp.base, &raw).await;
        // Refused, or a path the app does not read as /admin (it echoes those).
        if resp.starts_with("HTTP/1.1 403") {
            refused += 1;
        } else if resp.starts_with("HTTP/1.1 200") {
            echoed += 1;
        }
    }
    // Both kinds are exercised (the mix is fixed: the runner is deterministic).
    assert!(
        refused >= 100 && echoed >= 25,
        "{refused} refused, {echoed} echoed"
    );
    let text = wp.proxied_text(&c.id, "/").await;
    assert_eq!(text, "No Content", "the text was changed through the proxy");
    wp.shutdown().await;
}

async fn raw_request(base: &str, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_pass_through_the_proxy() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let url = format!(
        "{}/container/{}/ws",
        wp.base.replace("http://", "ws://"),
        c.id
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(resp.headers()["x-container-id"], c.id.as_str());
    ws.send(Message::text("ping through warmpool"))
        .await
        .unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(
        echoed.into_text().unwrap().as_str(),
        "ping through warmpool"
    );
    ws.close(None).await.unwrap();
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let body = vec![b'x'; 8 * 1024 * 1024];
    let echo: serde_json::Value = wp
        .http
        .post(format!("{}/container/{}/upload", wp.base, c.id))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["bodyLength"], 8 * 1024 * 1024);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_stops_the_container_and_is_idempotent() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let v = wp.client.release(&c.id).await.unwrap();
    assert_eq!(v.state, "stopped");
    assert_eq!(v.stop_reason.as_deref(), Some("released"));
    let again = wp.client.release(&c.id).await.unwrap();
    assert_eq!(again.state, "stopped");
    let r = wp.proxied(&c.id, "/").await;
    assert_eq!(r.status(), 410);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_every_child_and_records_it() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "3")]).await;
    wp.wait_ready("default", 3, T).await;
    wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let pids: Vec<i32> = wp
        .client
        .containers(&ContainerQuery::default())
        .await
        .unwrap()
        .containers
        .iter()
        .filter_map(|c| c.runtime_handle.as_deref().map(pid_of))
        .collect();
    let store = wp.app().store.clone();
    wp.shutdown().await;
    for pid in pids {
        assert!(process_gone(pid), "child {pid} survived shutdown");
    }
    for (state, _) in store.count_by_state().await.unwrap() {
        assert_eq!(state, warmpool_core::ContainerState::Stopped);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_an_in_flight_proxied_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();

    // Headers now, body later: once warmpool answers 100 Continue, the proxy is
    // streaming this request to the container.
    let mut s = tokio::net::TcpStream::connect(wp.base.strip_prefix("http://").unwrap())
        .await
        .unwrap();
    let head = format!(
        "POST /container/{}/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        c.id
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    let running = wp.running.take().unwrap();
    let app = running.app.clone();
    let shutdown = tokio::spawn(running.shutdown());
    poll(T, "shutdown to begin", || {
        let app = app.clone();
        async move { app.is_shutting_down().then_some(()) }
    })
    .await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the request"
    );
    s.write_all(b"hello").await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains(r#""bodyLength":5"#), "{out}");
    shutdown.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_can_set_the_text_and_admins_can_change_it_later() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp
        .client
        .claim(&ClaimRequest {
            text: Some("hello from the claim".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let get = |path: &str| {
        wp.http
            .get(format!("{}/container/{}{path}", wp.base, c.id))
            .send()
    };
    assert_eq!(
        get("/").await.unwrap().text().await.unwrap(),
        "hello from the claim"
    );

    // The admin pass-through reaches /admin; the public proxy still refuses it.
    let r = wp
        .http
        .post(format!(
            "{}/v1/containers/{}/admin/update-text",
            wp.base, c.id
        ))
        .body("set by an operator")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        get("/any").await.unwrap().text().await.unwrap(),
        "set by an operator"
    );
    let refused = wp
        .http
        .post(format!("{}/container/{}/admin/update-text", wp.base, c.id))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let unknown = wp
        .http
        .post(format!(
            "{}/v1/containers/{}/admin/update-text",
            wp.base,
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_claims_proxying_starts_and_containers() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let ok = wp.proxied(&c.id, "/").await;
    assert_eq!(ok.status(), 200);
    let unknown = wp
        .http
        .get(format!("{}/container/{}/", wp.base, uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    wp.wait_ready("default", 1, T).await;

    // Prometheus's own Accept header gets OpenMetrics.
    let r = wp
        .http
        .get(format!("{}/metrics", wp.base))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE warmpool_claims counter\n"), "{text}");
    // A scraper that asks for nothing (or for the classic format) gets it.
    for accept in [None, Some("text/plain; version=0.0.4")] {
        let mut req = wp.http.get(format!("{}/metrics", wp.base));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let classic = r.text().await.unwrap();
        assert!(!classic.contains("# EOF"), "{classic}");
        assert!(
            classic.contains("# TYPE warmpool_claims_total counter\n"),
            "{classic}"
        );
        assert!(classic.contains("# TYPE warmpool_containers gauge\n"));
        assert!(classic
            .lines()
            .any(|l| l.starts_with("warmpool_claims_total{") && l.contains(r#"result="hit""#)));
    }
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
    };
    let key = r#"location="default",pool="default""#;
    let claims = |result: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("warmpool_claims_total{")
                    && l.contains(&format!(r#"result="{result}""#))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(claims("hit"), 1.0, "{text}");
    assert_eq!(claims("miss"), 0.0);
    assert_eq!(value(r#"warmpool_proxy_requests_total{class="2xx"}"#), 1.0);
    assert_eq!(value(r#"warmpool_proxy_requests_total{class="4xx"}"#), 1.0);
    assert_eq!(value("warmpool_claim_duration_seconds_count"), 1.0);
    assert_eq!(value("warmpool_proxy_request_duration_seconds_count"), 2.0);
    assert!(value("warmpool_container_start_duration_seconds_count") >= 2.0);
    assert!(value("warmpool_reconcile_passes_total") >= 1.0);
    assert_eq!(value("warmpool_reconcile_errors_total"), 0.0);
    assert_eq!(
        value(r#"warmpool_container_start_failures_total{pool="default",location="default"}"#),
        0.0,
        "every pool key's start failures are shown from 0"
    );
    assert_eq!(value("warmpool_store_write_errors_total"), 0.0);
    assert!(
        value("warmpool_store_wal_backlog_frames") >= 0.0,
        "the store's WAL backlog is shown"
    );
    let gauge = |state: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("warmpool_containers{")
                    && l.contains(&format!(r#"state="{state}""#))
                    && l.contains("location=\"default\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {state} gauge ({key}) in:\n{text}"))
    };
    assert_eq!(gauge("allocated"), 1.0);
    assert_eq!(gauge("ready"), 1.0);
    assert!(text.trim_end().ends_with("# EOF"));
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_containers_are_stopped_unless_a_websocket_is_open() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "2")]).await;
    wp.wait_ready("default", 2, T).await;
    let idle_claim = || ClaimRequest {
        idle_timeout_in_seconds: Some(1),
        ..Default::default()
    };

    // Waits through the API (a proxied request would be traffic), then checks the
    // id answers 410 saying why.
    let stopped_idle = |id: String| {
        let (client, base) = (wp.client.clone(), wp.base.clone());
        async move {
            let c = client.clone();
            let i = id.clone();
            poll(T, "the idle container to be stopped", move || {
                let (c, i) = (c.clone(), i.clone());
                async move { (c.container(&i).await.ok()?.state == "stopped").then_some(()) }
            })
            .await;
            assert_eq!(
                client.container(&id).await.unwrap().stop_reason.as_deref(),
                Some("idle")
            );
            let r = reqwest::get(format!("{base}/container/{id}/"))
                .await
                .unwrap();
            assert_eq!(r.status(), 410);
            let p: serde_json::Value = r.json().await.unwrap();
            assert!(p["detail"].as_str().unwrap().contains("idle"), "{p}");
        }
    };

    // No traffic: stopped after its idle timeout.
    let quiet = wp.client.claim(&idle_claim()).await.unwrap();
    stopped_idle(quiet.id).await;

    // An open WebSocket keeps it busy well past the timeout; closing it lets it go.
    wp.wait_ready("default", 1, T).await;
    let busy = wp.client.claim(&idle_claim()).await.unwrap();
    let url = format!(
        "{}/container/{}/ws",
        wp.base.replace("http://", "ws://"),
        busy.id
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Time has to pass to show that nothing happens: three idle timeouts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        wp.client.container(&busy.id).await.unwrap().state,
        "allocated"
    );
    ws.close(None).await.unwrap();
    drop(ws);
    stopped_idle(busy.id).await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_appearing_while_running_are_destroyed_and_the_pool_is_left_alone() {
    use std::os::unix::process::CommandExt as _;
    let mut wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "2"),
        ("WARMPOOL_SWEEP_SECONDS", "0.2"),
    ])
    .await;
    wp.wait_ready("default", 2, T).await;
    let before: Vec<String> = wp
        .client
        .containers(&ContainerQuery::default())
        .await
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect();
    // A process carrying this warmpool's tag that it never started.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut orphan = std::process::Command::new(common::bin())
        .arg("sample-app")
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("WARMPOOL_INSTANCE_ID", wp.app().store.instance_id())
        .env("WARMPOOL_CONTAINER_ID", uuid::Uuid::new_v4().to_string())
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + T;
    while orphan.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan was not destroyed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The pool's own containers were not touched.
    for id in before {
        assert_eq!(wp.client.container(&id).await.unwrap().state, "ready");
    }
    wp.shutdown().await;
}

/// SIGSTOP/SIGCONT of a container's process: it stays alive but stops answering.
fn freeze(handle: &str, frozen: bool) {
    let signal = if frozen {
        nix::sys::signal::Signal::SIGSTOP
    } else {
        nix::sys::signal::Signal::SIGCONT
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid_of(handle)), signal).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_ready_containers_are_failed_and_replaced_and_hung_allocated_ones_are_left() {
    let mut wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "2"),
        ("WARMPOOL_PROBE_INTERVAL_SECONDS", "0.2"),
    ])
    .await;
    wp.wait_ready("default", 2, T).await;
    let claimed = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    wp.wait_ready("default", 2, T).await;
    let claimed = wp.client.container(&claimed.id).await.unwrap();
    let hung = common::first_ready(&wp.client).await;
    // Both stay alive (no exit to notice) but answer nothing.
    freeze(claimed.runtime_handle.as_deref().unwrap(), true);
    freeze(hung.runtime_handle.as_deref().unwrap(), true);

    let client = wp.client.clone();
    let id = hung.id.clone();
    let failed = poll(T, "the hung ready container to be failed", || {
        let (client, id) = (client.clone(), id.clone());
        async move {
            let v = client.container(&id).await.ok()?;
            matches!(v.state.as_str(), "failed" | "stopped").then_some(v)
        }
    })
    .await;
    assert!(
        failed
            .stop_reason
            .as_deref()
            .unwrap_or("")
            .contains("health probe"),
        "{failed:?}"
    );
    // Replaced, and the hung process is gone (destroyed, not left frozen).
    wp.wait_ready("default", 2, T).await;
    let pid = pid_of(hung.runtime_handle.as_deref().unwrap());
    poll(T, "the hung process to be destroyed", || async move {
        process_gone(pid).then_some(())
    })
    .await;
    for _ in 0..2 {
        let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
        assert_ne!(c.id, hung.id, "a hung container was handed out");
    }
    // The allocated one, frozen as long, is its client's business: untouched.
    assert_eq!(
        wp.client.container(&claimed.id).await.unwrap().state,
        "allocated"
    );
    freeze(claimed.runtime_handle.as_deref().unwrap(), false);
    assert_eq!(wp.proxied(&claimed.id, "/").await.status(), 200);
    wp.shutdown().await;
}

/// A command that exits at once fails every start: each is counted in
/// `warmpool_container_start_failures_total` of its pool and location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_starts_are_counted_by_pool_and_location() {
    let mut wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_COMMAND", "false"),
        ("POOL_BATCH_SPACING_IN_SECONDS", "0"),
    ])
    .await;
    let series = r#"warmpool_container_start_failures_total{pool="default",location="default"} "#;
    let failures = common::poll(T, "a counted start failure", || async {
        let text = wp
            .http
            .get(format!("{}/metrics", wp.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.parse().ok())?;
        (n >= 2.0).then_some(n)
    })
    .await;
    let errors = wp.client.pools().await.unwrap().pools[0].last_error.clone();
    assert!(errors.is_some(), "the pool says why its starts fail");
    assert!(failures >= 2.0);
    wp.shutdown().await;
}
