//! Crash safety with the real binary: `kill -9` of warmpool and a restart on the
//! same data dir adopt what is alive, destroy orphans, and keep every id answering.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    first_ready, instance_of_child, kill9_handle, pid_of, poll, poll_gone, tagged_processes,
    wait_ready, Proc,
};
use warmpool_client::ClaimRequest;

const T: Duration = Duration::from_secs(30);

async fn live_ids(p: &Proc) -> BTreeSet<String> {
    common::live_ids(&p.client).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_adopts_keeps_ids_and_leaves_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("POOL_TARGET_INSTANCES", "3")];
    let mut first = Proc::spawn(dir.path(), &settings);
    wait_ready(&first.client, "default", 3, T).await;

    let long = first.client.claim(&ClaimRequest::default()).await.unwrap();
    let short = first
        .client
        .claim(&ClaimRequest {
            location: None,
            max_lifetime_in_seconds: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let handle = first
        .client
        .container(&long.id)
        .await
        .unwrap()
        .runtime_handle
        .unwrap();
    let instance = instance_of_child(pid_of(&handle));
    wait_ready(&first.client, "default", 3, T).await;
    let doomed = first_ready(&first.client).await;

    first.kill9();
    // While warmpool is down, one of its ready containers dies too.
    kill9_handle(doomed.runtime_handle.as_deref());

    // An orphan: a process carrying our tag that the store has never heard of.
    let orphan_id = uuid::Uuid::new_v4().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut orphan = Command::new(common::bin())
        .arg("sample-app")
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("WARMPOOL_INSTANCE_ID", &instance)
        .env("WARMPOOL_CONTAINER_ID", &orphan_id)
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    use std::os::unix::process::CommandExt as _;
    assert!(tagged_processes(&instance)
        .iter()
        .any(|(_, id)| *id == orphan_id));

    let second = Proc::spawn(dir.path(), &settings);
    // The orphan is destroyed during start-up recovery, before warmpool listens.
    assert!(
        orphan.try_wait().unwrap().is_some(),
        "the orphan still runs after start-up"
    );

    // Every id handed out before the crash still answers: 200, or 410 once expired.
    let r = reqwest::get(format!("{}/container/{}/", second.base, long.id))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-container-id"], long.id.as_str());
    let detail = poll_gone(&format!("{}/container/{}/", second.base, short.id), T).await;
    assert!(detail.contains("expired"), "{detail}");

    // The pool is back at target, and the books balance: what runs with our tag is
    // exactly what the store says is live.
    wait_ready(&second.client, "default", 3, T).await;
    let second_ref = &second;
    let inst = instance.clone();
    poll(T, "runtime and store to agree", || {
        let inst = inst.clone();
        async move {
            let running: BTreeSet<String> = tagged_processes(&inst)
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            let live = live_ids(second_ref).await;
            (running == live).then_some(())
        }
    })
    .await;
    // The one that died while warmpool was down is closed as lost, not adopted.
    let lost = second.client.container(&doomed.id).await.unwrap();
    assert_eq!(lost.state, "stopped");
    assert_eq!(lost.stop_reason.as_deref(), Some("lost"));
    assert_eq!(
        second.client.pools().await.unwrap().live,
        live_ids(&second).await.len() as u32
    );
    // No cold start was needed for what survived: the allocated one was adopted.
    let view = second.client.container(&long.id).await.unwrap();
    assert_eq!(view.state, "allocated");
    assert_eq!(view.runtime_handle.as_deref(), Some(handle.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_stops_children_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn(dir.path(), &[("POOL_TARGET_INSTANCES", "2")]);
    wait_ready(&p.client, "default", 2, T).await;
    let c = p.client.claim(&ClaimRequest::default()).await.unwrap();
    let handle = p
        .client
        .container(&c.id)
        .await
        .unwrap()
        .runtime_handle
        .unwrap();
    let instance = instance_of_child(pid_of(&handle));
    let status = p.sigterm();
    assert!(status.success(), "{status}");
    assert!(
        tagged_processes(&instance).is_empty(),
        "children outlived warmpool"
    );

    // The records say so, and a restart finds nothing to adopt.
    let again = Proc::spawn(dir.path(), &[("POOL_TARGET_INSTANCES", "0")]);
    let v = again.client.container(&c.id).await.unwrap();
    assert_eq!(v.state, "stopped");
    assert_eq!(v.stop_reason.as_deref(), Some("shutdown"));
    let r = reqwest::get(format!("{}/container/{}/", again.base, c.id))
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_newer_database_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warmpool.db"), vec![7u8; 4096]).unwrap();
    let out = Command::new(common::bin())
        .arg("serve")
        .env("WARMPOOL_DATA_DIR", dir.path())
        .env("WARMPOOL_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the store"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("warmpool.db")).unwrap(),
        vec![7u8; 4096],
        "the file was touched"
    );
}
