//! The proxy opens its connection to a ready container before the container is
//! claimed: the first proxied request after a claim goes over that connection,
//! with no connect of its own, and so does a set-up claim's bind hook. Seen from
//! the kernel's table of TCP connections (`/proc/net/tcp`), with real sample-app
//! processes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{poll, InProc};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

/// Local ports of the established IPv4 connections to 127.0.0.1:`port`.
fn connections_to(port: u16) -> BTreeSet<u16> {
    sockets_to(port, true)
}

/// Local ports of the IPv4 sockets to 127.0.0.1:`port`, established only or in
/// any state (a closed connection stays as TIME_WAIT on the side that closed).
fn sockets_to(port: u16, established_only: bool) -> BTreeSet<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let target = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st (01: established)
            (f.len() > 3 && f[2] == target && (f[3] == "01" || !established_only))
                .then(|| u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok())
                .flatten()
        })
        .collect()
}

/// Two ready containers, each with warmpool's connection open: (id, port).
async fn ready_and_connected(wp: &InProc) -> Vec<(String, u16)> {
    wp.wait_ready("default", 2, T).await;
    let containers: Value = wp
        .http
        .get(format!("{}/v1/containers?state=ready", wp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ready: Vec<(String, u16)> = containers["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let address = c["address"].as_str().unwrap();
            let port = address.rsplit(':').next().unwrap().parse().unwrap();
            (c["id"].as_str().unwrap().to_owned(), port)
        })
        .collect();
    assert_eq!(ready.len(), 2, "{containers}");
    // Before any claim, each ready container has a connection from warmpool.
    for (id, port) in &ready {
        poll(T, &format!("a connection to {id}"), || async {
            (!connections_to(*port).is_empty()).then_some(())
        })
        .await;
    }
    ready
}

/// Claims with `body`; the claim must be warm. Answers the id.
async fn claim_warm(wp: &InProc, body: Value) -> String {
    let claim: Value = wp
        .http
        .post(format!("{}/container", wp.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(claim["warm"], true, "{claim}");
    claim["id"].as_str().unwrap().to_owned()
}

async fn start() -> InProc {
    InProc::start(&[
        ("POOL_TARGET_INSTANCES", "2"),
        // No periodic probes: their own short connections would come and go
        // while the test looks, and the connection under test is the one
        // opened when the container became ready.
        ("WARMPOOL_PROBE_INTERVAL_SECONDS", "0"),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_proxied_request_after_a_claim_reuses_a_connection_opened_before_it() {
    let mut wp = start().await;
    let ready = ready_and_connected(&wp).await;
    let id = claim_warm(&wp, json!({})).await;
    let id = id.as_str();
    let port = ready.iter().find(|(r, _)| r == id).unwrap().1;
    let before = connections_to(port);
    let r = wp.proxied(id, "/").await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    let after = connections_to(port);
    // No connection was opened for the request: it went over one of those
    // already open (an idle probe connection may have closed meanwhile).
    assert!(
        after.is_subset(&before),
        "the first proxied request opened a connection: before {before:?}, after {after:?}"
    );
    assert!(!after.is_empty(), "no connection left open to {port}");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_up_claims_bind_hook_goes_over_the_connection_opened_before_it() {
    let mut wp = start().await;
    let ready = ready_and_connected(&wp).await;
    // Every socket to either container, in any state, before the claim.
    let before: Vec<BTreeSet<u16>> = ready.iter().map(|(_, p)| sockets_to(*p, false)).collect();
    let id = claim_warm(
        &wp,
        json!({"env": {"BOUND": "yes"}, "files": {"a.txt": "x"}, "text": "hello"}),
    )
    .await;
    let id = id.as_str();
    let (i, port) = ready
        .iter()
        .enumerate()
        .find(|(_, (r, _))| r == id)
        .map(|(i, (_, p))| (i, *p))
        .unwrap();
    // The hook delivered (the app shows the env and serves the text)...
    let env: Value = wp.proxied(id, "/env").await.json().await.unwrap();
    assert_eq!(env["BOUND"], "yes", "{env}");
    assert_eq!(wp.proxied_text(id, "/").await, "hello");
    // ...and neither the bind, the text nor those requests opened a socket of
    // their own: no new local port, not even one left closing in TIME_WAIT.
    let after = sockets_to(port, false);
    assert!(
        after.is_subset(&before[i]),
        "a connection was opened for the claim's calls: before {:?}, after {after:?}",
        before[i]
    );
    assert!(
        !connections_to(port).is_empty(),
        "no connection left open to {port}"
    );
    wp.shutdown().await;
}
