//! Slow and abusive clients: one that never finishes its headers, or leaves a
//! keep-alive connection idle, is cut off after the header timeout; connections past
//! the cap wait to be accepted; other clients keep being served meanwhile.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::InProc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warmpool_runtime::{SimMode, SimRuntime};

/// Reads until the server closes the connection (or resets it); panics if it is
/// still open after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after {within:?}");
}

/// A fresh connection per request, so that no pooled connection hides the cap.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_and_others_are_served() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "0"),
            ("WARMPOOL_HEADER_TIMEOUT_SECONDS", "1"),
            ("WARMPOOL_MAX_CONNECTIONS", "4"),
        ],
        Some(sim),
    )
    .await;
    let addr = wp.base.strip_prefix("http://").unwrap().to_owned();
    let healthz = format!("{}/healthz", wp.base);

    // Three slowloris clients hold three of the four slots, dribbling headers...
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // ...while the fourth keeps serving everybody else.
    for _ in 0..5 {
        let r = fresh_client().get(&healthz).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Each slow client is cut off once the header timeout has passed.
    for s in &mut slow {
        closed_within(s, Duration::from_secs(10)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut off after {:?}, before the timeout",
        started.elapsed()
    );

    // A keep-alive connection left idle after a request is closed the same way.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    closed_within(&mut idle, Duration::from_secs(10)).await;

    // Four silent connections take every slot (they are accepted first: the
    // backlog is first in, first out): a new client waits to be accepted until
    // they are cut off, then it is served.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let waited = Instant::now();
    let r = fresh_client().get(&healthz).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        waited.elapsed() >= Duration::from_millis(500),
        "served after {:?}: the cap did not hold",
        waited.elapsed()
    );
    wp.shutdown().await;
}
