//! Graceful shutdown (issue 7, scenario 6), with the real binary and real
//! processes: SIGTERM during a long streaming response and an open WebSocket lets
//! both finish within the drain period while new connections are refused; then,
//! per `WARMPOOL_SHUTDOWN_POLICY`, every container is stopped (`stop`), or the
//! ready and allocated ones are left running for the next start to adopt (`keep`).

mod common;

use std::time::{Duration, Instant};

use common::{instance_of_child, pid_of, tagged_processes, wait_ready, Proc};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use warmpool_client::ClaimRequest;

const T: Duration = Duration::from_secs(30);

fn sigterm(p: &Proc) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// Waits for warmpool to exit; answers its status.
async fn exited(p: &mut Proc, within: Duration) -> std::process::ExitStatus {
    common::poll(within, "warmpool to exit", || {
        let status = p.child.try_wait().unwrap();
        async move { status }
    })
    .await
}

async fn instance_of(p: &Proc, id: &str) -> String {
    let handle = p
        .client
        .container(id)
        .await
        .unwrap()
        .runtime_handle
        .unwrap();
    instance_of_child(pid_of(&handle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_stream_and_a_websocket_finish_refuses_new_connections_and_stops_everything()
{
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn(
        dir.path(),
        &[
            ("POOL_TARGET_INSTANCES", "3"),
            ("WARMPOOL_DRAIN_SECONDS", "20"),
        ],
    );
    wait_ready(&p.client, "default", 3, T).await;
    let streamed = p.client.claim(&ClaimRequest::default()).await.unwrap().id;
    let socket = p.client.claim(&ClaimRequest::default()).await.unwrap().id;
    let instance = instance_of(&p, &streamed).await;
    let addr = p.base.strip_prefix("http://").unwrap().to_owned();

    // A streaming response of 12 chunks 250 ms apart (3 s), read from its start.
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            format!("GET /container/{streamed}/stream/12/250 HTTP/1.1\r\nHost: x\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("chunk 0") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    // An open WebSocket.
    let url = format!("ws://{addr}/container/{socket}/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_text().unwrap(),
        "before"
    );

    let term = Instant::now();
    sigterm(&p);
    // New connections are refused once the signal is handled.
    common::poll(
        Duration::from_secs(5),
        "new connections to be refused",
        || {
            let addr = addr.clone();
            async move { TcpStream::connect(&addr).await.is_err().then_some(()) }
        },
    )
    .await;
    let refused_after = term.elapsed();

    // The WebSocket still works during the drain...
    ws.send(Message::text("during the drain")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_text().unwrap(),
        "during the drain"
    );
    // ...and the stream runs to its end.
    stream.read_to_end(&mut got).await.unwrap();
    let text = String::from_utf8_lossy(&got);
    for i in 0..12 {
        assert!(
            text.contains(&format!("chunk {i}\n")),
            "chunk {i} lost: {text}"
        );
    }
    let stream_done = term.elapsed();
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "exited before the WebSocket closed"
    );
    // Once the client closes its WebSocket, shutdown goes on without waiting out
    // the 20 s drain period.
    ws.close(None).await.unwrap();
    drop(ws);
    let status = exited(&mut p, Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
    println!(
        "SIGTERM: new connections refused after {refused_after:?}, stream finished after \
         {stream_done:?}, exit after {:?}",
        term.elapsed()
    );
    assert!(
        tagged_processes(&instance).is_empty(),
        "policy stop: children outlived warmpool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_keep_policy_the_next_start_adopts_the_pool_and_the_claims() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("POOL_TARGET_INSTANCES", "2"),
        ("WARMPOOL_SHUTDOWN_POLICY", "keep"),
    ];
    let mut p = Proc::spawn(dir.path(), &settings);
    wait_ready(&p.client, "default", 2, T).await;
    let c = p
        .client
        .claim(&ClaimRequest {
            text: Some("kept across a restart".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    wait_ready(&p.client, "default", 2, T).await;
    let instance = instance_of(&p, &c.id).await;
    let before: Vec<_> = tagged_processes(&instance);
    assert_eq!(before.len(), 3, "{before:?}");
    sigterm(&p);
    let status = exited(&mut p, T).await;
    assert!(status.success(), "{status}");
    let after = tagged_processes(&instance);
    assert_eq!(after, before, "policy keep: the containers keep running");

    // The next start adopts all three: the claim routes to the same process.
    let t0 = Instant::now();
    let mut again = Proc::spawn(dir.path(), &settings);
    let text = reqwest::get(format!("{}/container/{}/", again.base, c.id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "kept across a restart");
    wait_ready(&again.client, "default", 2, T).await;
    println!(
        "policy keep: {} containers left running and adopted; claim served {:?} after the restart",
        after.len(),
        t0.elapsed()
    );
    assert_eq!(tagged_processes(&instance), before, "nothing was replaced");

    // Back to the policy stop (one more keep restart), after which nothing is left.
    sigterm(&again);
    assert!(exited(&mut again, T).await.success());
    let mut last = Proc::spawn(dir.path(), &[("POOL_TARGET_INSTANCES", "2")]);
    wait_ready(&last.client, "default", 2, T).await;
    assert!(last.sigterm().success());
    assert!(tagged_processes(&instance).is_empty());
}
