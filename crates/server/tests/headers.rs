//! Header limits (`WARMPOOL_MAX_HEADER_LINE_BYTES`, `_HEADER_BYTES`, `_HEADERS`),
//! sent on raw sockets to the management API and to the proxy in front of a real
//! sample app: what passes a limit gets 431 (414 for the request line) as a
//! problem document, what is far beyond it gets hyper's own 431, nothing reaches
//! the app, and the server keeps serving after every case.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::InProc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warmpool_client::ClaimRequest;
use warmpool_runtime::{SimMode, SimRuntime};

const T: Duration = Duration::from_secs(30);

/// An answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// Sends `GET target` with `headers` (plus `Host` and `Connection: close`) on a
/// new connection and reads the answer to the end.
async fn send(addr: &str, target: &str, headers: &[(String, String)]) -> Answer {
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(addr).await.unwrap();
    // A server that answers before reading everything may reset the rest.
    let _ = s.write_all(head.as_bytes()).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(T, async {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no end to the answer to {target}");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: body.to_owned(),
    }
}

fn many(n: usize, len: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("x-h{i}"), "v".repeat(len)))
        .collect()
}

/// A header line of `bytes` bytes in all (`name: value` and CRLF).
fn line_of(bytes: usize) -> Vec<(String, String)> {
    vec![("x-big".to_owned(), "v".repeat(bytes - "x-big".len() - 4))]
}

/// The problem document of a refusal, checked.
fn problem(a: &Answer, status: u16, says: &str) -> serde_json::Value {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.content_type, "application/problem+json", "{a:?}");
    let p: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(p["status"], status);
    assert!(p["detail"].as_str().unwrap().contains(says), "{p}");
    p
}

async fn healthy(addr: &str) {
    let a = send(addr, "/healthz", &[]).await;
    assert_eq!(a.status, 200, "warmpool stopped serving: {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_over_the_limits_are_refused_on_the_api_and_the_proxy_alike() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    let addr = wp.base.strip_prefix("http://").unwrap().to_owned();
    let proxied = format!("/container/{}/", c.id);
    // The app's requests, counted by its own /admin route through warmpool's.
    let requests = || async {
        let a = send(&addr, &proxied, &[]).await;
        assert_eq!(a.status, 200, "{a:?}");
    };
    requests().await;

    for target in ["/healthz", proxied.as_str()] {
        // Within every limit: a line of exactly 8 KiB, 60 lines in all.
        let a = send(&addr, target, &line_of(8192)).await;
        assert_eq!(a.status, 200, "{target}: {a:?}");
        let a = send(&addr, target, &many(58, 900)).await;
        assert_eq!(a.status, 200, "{target}: {a:?}");

        // One byte over the line limit.
        let p = problem(
            &send(&addr, target, &line_of(8193)).await,
            431,
            "header x-big is 8193 bytes",
        );
        assert_eq!(p["field"], "x-big");
        assert_eq!(p["title"], "Request Header Fields Too Large");
        healthy(&addr).await;
        // Lines each under the limit, over 64 KiB together.
        problem(
            &send(&addr, target, &many(9, 7900)).await,
            431,
            "the limit is 65536",
        );
        healthy(&addr).await;
        // 101 header lines (Host and Connection count).
        problem(
            &send(&addr, target, &many(99, 1)).await,
            431,
            "101 header lines",
        );
        healthy(&addr).await;
        // A request line over 8 KiB.
        let long = format!("{target}?q={}", "a".repeat(9000));
        problem(&send(&addr, &long, &[]).await, 414, "the request line is");
        healthy(&addr).await;
        // Far beyond: hyper refuses before warmpool sees a request.
        let a = send(&addr, target, &many(1000, 1)).await;
        assert_eq!(a.status, 431, "{a:?}");
        healthy(&addr).await;
        let a = send(&addr, target, &line_of(200_000)).await;
        assert_eq!(a.status, 431, "{a:?}");
        healthy(&addr).await;
    }
    // The container is still claimed and answering.
    requests().await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_are_settings() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "0"),
            ("WARMPOOL_MAX_HEADER_LINE_BYTES", "2048"),
            ("WARMPOOL_MAX_HEADER_BYTES", "4096"),
            ("WARMPOOL_MAX_HEADERS", "10"),
        ],
        Some(sim),
    )
    .await;
    let addr = wp.base.strip_prefix("http://").unwrap().to_owned();
    assert_eq!(send(&addr, "/healthz", &line_of(2048)).await.status, 200);
    problem(
        &send(&addr, "/healthz", &line_of(2049)).await,
        431,
        "the limit is 2048",
    );
    assert_eq!(send(&addr, "/healthz", &many(8, 400)).await.status, 200);
    problem(
        &send(&addr, "/healthz", &many(3, 1500)).await,
        431,
        "the limit is 4096",
    );
    problem(
        &send(&addr, "/healthz", &many(9, 1)).await,
        431,
        "11 header lines",
    );
    healthy(&addr).await;
    wp.shutdown().await;
}
