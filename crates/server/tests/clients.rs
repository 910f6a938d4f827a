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

/// Sends `head` and `part` of a body announced longer, then stays silent; answers
/// the response (status line and body) and how long it took after the last byte.
async fn stalled_body(addr: &str, head: &str, part: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(part).await.unwrap();
    let sent = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer))
        .await
        .expect("no answer to a stalled body within 20 s")
        .ok();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        sent.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_that_stall_get_408_and_others_are_served() {
    let mut wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_BODY_TIMEOUT_SECONDS", "1"),
    ])
    .await;
    wp.wait_ready("default", 1, Duration::from_secs(30)).await;
    let id = wp.client.claim(&Default::default()).await.unwrap().id;
    let addr = wp.base.strip_prefix("http://").unwrap().to_owned();

    let management = "POST /container HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let proxied =
        format!("POST /container/{id}/healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    let stalls = [
        tokio::spawn({
            let addr = addr.clone();
            async move { stalled_body(&addr, management, b"{\"loca").await }
        }),
        tokio::spawn({
            let addr = addr.clone();
            async move { stalled_body(&addr, &proxied, b"half a bo").await }
        }),
    ];
    // Meanwhile, everybody else is served.
    for _ in 0..20 {
        let r = wp.proxied(&id, "/healthz").await;
        assert_eq!(r.status(), 200);
    }
    for stall in stalls {
        let (answer, after) = stall.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(answer.contains("body-timeout"), "{answer}");
        assert!(
            after >= Duration::from_millis(900),
            "cut off before the limit: {after:?}"
        );
    }

    // The limit is on silence, not on the whole body: a body sent in pieces with
    // pauses shorter than the limit, taking longer than it in all, gets through.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let body = b"0123456789";
    s.write_all(
        format!(
            "POST /container/{id}/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len() * 4
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    for _ in 0..4 {
        // Pauses on purpose: 4 x 400 ms is longer than the 1 s limit in all.
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(body).await.unwrap();
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    wp.shutdown().await;
}

/// Raises this process's open-file limit as far as it goes; answers it.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).unwrap().0
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Latencies of `n` claims-and-proxied-requests by a client on its own connection.
async fn served(wp: &common::Proc, http: &reqwest::Client, n: usize) -> Vec<Duration> {
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let r = http
            .get(format!("{}/healthz", wp.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        t.push(t0.elapsed());
    }
    t.sort();
    t
}

/// 10,000 idle keep-alive connections (`WARMPOOL_IDLE_CONNECTIONS` to change):
/// each made a request and then stays open and silent. warmpool holds them all
/// (under the default connection cap) and keeps answering another client; the
/// figures (latency before and during, memory per connection) are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_keep_alive_connections_and_others_are_served() {
    let want: usize = std::env::var("WARMPOOL_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let limit = raise_nofile() as usize;
    // The test holds one end of each connection, warmpool (another process) the other.
    assert!(
        limit > want + 200,
        "this process may open only {limit} files; {want} connections need more (ulimit -Hn)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut wp = common::Proc::spawn(dir.path(), &[("POOL_TARGET_INSTANCES", "0")]);
    let pid = wp.child.id();
    let addr = wp.base.strip_prefix("http://").unwrap().to_owned();
    let other = reqwest::Client::new();
    let before = served(&wp, &other, 300).await;
    let rss_before = rss_kib(pid);

    let t0 = Instant::now();
    let mut idle = Vec::with_capacity(want);
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    while idle.len() < want {
        // Opened in waves of 500, each wave making one request per connection.
        let wave = (want - idle.len()).min(500);
        let conns = futures_util::future::join_all((0..wave).map(|_| {
            let addr = addr.clone();
            async move {
                let mut s = TcpStream::connect(&addr).await.unwrap();
                s.write_all(request).await.unwrap();
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap();
                assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
                s
            }
        }))
        .await;
        idle.extend(conns);
    }
    let opened = t0.elapsed();
    let rss_during = rss_kib(pid);
    let during = served(&wp, &other, 300).await;

    // They are still open and usable: a sample of them makes a second request.
    for s in idle.iter_mut().step_by(want / 50) {
        s.write_all(request).await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    println!(
        "{want} idle keep-alive connections opened (and used once) in {opened:?}; \
         warmpool RSS {} MiB -> {} MiB ({:.1} KiB per connection); \
         another client's GET /healthz: p50 {:?} p99 {:?} before, p50 {:?} p99 {:?} during",
        rss_before / 1024,
        rss_during / 1024,
        (rss_during.saturating_sub(rss_before)) as f64 / want as f64,
        percentile(&before, 0.5),
        percentile(&before, 0.99),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
    );
    drop(idle);
    assert!(wp.sigterm().success());
}
