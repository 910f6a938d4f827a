//! Killed containers under traffic (issue 7, scenario 2), with real processes:
//! while clients claim, proxy and release, random ready and allocated containers
//! are killed (`kill -9`). Killed allocated ones answer 410 saying they exited;
//! no container is handed out once its death is recorded; no id goes out twice;
//! killed ready ones are replaced within 2 seconds; the books balance at the end.
//! (Docker's `docker kill` / `docker rm -f` are in `tests/docker.rs`.)

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{poll, InProc};
use rand::{Rng, SeedableRng};
use warmpool_client::{ClaimRequest, ContainerQuery};

const TARGET: u32 = 6;

/// Ids of the ready or allocated containers, with their handles.
async fn live(wp: &InProc, state: &str) -> Vec<(String, String)> {
    wp.client
        .containers(&ContainerQuery {
            state: Some(state.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .containers
        .into_iter()
        .filter_map(|c| Some((c.id, c.runtime_handle?)))
        .collect()
}

/// `kill -9` of a container's process; false if it had already ended.
fn kill9(handle: &str) -> bool {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(common::pid_of(handle)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .is_ok()
}

async fn ready_count(wp: &InProc) -> u32 {
    common::ready_count(&wp.client, "default").await
}

/// How a test kills a container from outside warmpool; false if it was already
/// gone. `n` counts the kills, so a killer can vary its means.
type Killer = fn(handle: &str, n: usize) -> bool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_processes_under_traffic_are_replaced_answer_410_and_are_never_handed_out() {
    let wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", &TARGET.to_string()),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
    ])
    .await;
    kills_under_traffic(wp, |handle, _| kill9(handle), "signal 9").await;
}

/// `docker kill` and `docker rm -f`, in turn.
fn docker_kill(handle: &str, n: usize) -> bool {
    let args: &[&str] = if n.is_multiple_of(2) {
        &["kill", handle]
    } else {
        &["rm", "-f", handle]
    };
    std::process::Command::new("docker")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_docker_containers_under_traffic_are_replaced_answer_410_and_are_never_handed_out() {
    if !common::docker_ready("killed_docker_containers_under_traffic") {
        return;
    }
    let wp = InProc::start(&[
        ("WARMPOOL_RUNTIME", "docker"),
        ("WARMPOOL_DOCKER_NETWORK", "warmpool-test"),
        ("WARMPOOL_STOP_GRACE_SECONDS", "2"),
        ("POOL_TARGET_INSTANCES", &TARGET.to_string()),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
    ])
    .await;
    // `docker kill` exits with 137; `docker rm -f` removes it outright.
    kills_under_traffic(wp, docker_kill, "").await;
}

/// The scenario: traffic, random kills (each waited for until recorded), the
/// checks, then five quiet kills of ready containers timed to their replacement.
async fn kills_under_traffic(mut wp: InProc, kill: Killer, exit_says: &str) {
    let kills: usize = std::env::var("WARMPOOL_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = rand::rng().random();
    let name = wp.app().runtime.name();
    println!("{name}: seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    wp.wait_ready("default", TARGET, Duration::from_secs(60))
        .await;

    // Traffic: three clients claim, proxy a few requests, release, again.
    let claimed: Arc<Mutex<Vec<(String, Instant)>>> = Default::default();
    // Responses cut off midway (the container was killed while answering).
    let cut: Arc<Mutex<Vec<String>>> = Default::default();
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (client, http, base) = (wp.client.clone(), wp.http.clone(), wp.base.clone());
        let (claimed, served, stop) = (claimed.clone(), served.clone(), stop.clone());
        let cut = cut.clone();
        clients.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(c) = client.claim(&ClaimRequest::default()).await else {
                    continue;
                };
                claimed.lock().unwrap().push((c.id.clone(), Instant::now()));
                for _ in 0..3 {
                    let t0 = Instant::now();
                    let r = http.get(format!("{base}/container/{}/", c.id)).send().await;
                    let Ok(r) = r else {
                        cut.lock().unwrap().push(c.id.clone());
                        continue;
                    };
                    // 410 when the killer got it first.
                    // 410 when the killer got it first.
                    assert!(
                        matches!(r.status().as_u16(), 200 | 410),
                        "{} after {:?}",
                        r.status(),
                        t0.elapsed()
                    );
                    served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Holds the container a while (spreading the load), so that
                    // the killer finds allocated ones too.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                let _ = client.release(&c.id).await;
            }
        }));
    }

    // The killer: a random ready or allocated container every ~50-150 ms.
    let mut killed: HashMap<String, (&'static str, Instant)> = HashMap::new();
    let mut noticed: HashMap<String, Instant> = HashMap::new();
    let mut detection: Vec<Duration> = Vec::new();
    while killed.len() < kills {
        // Random spacing between kills (not waiting for any state).
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..150))).await;
        let state = if rng.random_bool(0.5) {
            "ready"
        } else {
            "allocated"
        };
        let candidates = live(&wp, state).await;
        if candidates.is_empty() {
            continue;
        }
        let (id, handle) = &candidates[rng.random_range(0..candidates.len())];
        if killed.contains_key(id) {
            continue;
        }
        if !kill(handle, killed.len()) {
            continue; // It ended on its own meanwhile (released).
        }
        let state: &'static str = if state == "ready" {
            "ready"
        } else {
            "allocated"
        };
        killed.insert(id.clone(), (state, Instant::now()));
        // When the death was recorded: from then on the id must never be handed out.
        poll(
            Duration::from_secs(10),
            "the death to be recorded",
            || async {
                let v = wp.client.container(id).await.ok()?;
                matches!(v.state.as_str(), "failed" | "stopped").then_some(())
            },
        )
        .await;
        noticed.insert(id.clone(), Instant::now());
        detection.push(killed[id].1.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let claimed = claimed.lock().unwrap().clone();
    let mut seen = HashSet::new();
    let mut late = 0;
    for (id, at) in &claimed {
        assert!(seen.insert(id.clone()), "{id} was handed out twice");
        if let Some(n) = noticed.get(id) {
            assert!(at <= n, "{id} was handed out after its death was recorded");
        }
        if let Some((_, k)) = killed.get(id) {
            if at > k {
                late += 1;
            }
        }
    }
    // Killed allocated ones answer 410 saying they exited. A ready one that was
    // never claimed was never routable: 404 (410 if a claim took it just before
    // the kill).
    for (id, (state, _)) in &killed {
        let r = wp.proxied(id, "/").await;
        if *state == "ready" && r.status() == 404 {
            assert!(!seen.contains(id), "{id} was claimed, yet answers 404");
            continue;
        }
        assert_eq!(r.status(), 410, "{id} ({state} when killed)");
        let detail = r.text().await.unwrap();
        assert!(
            detail.contains(exit_says) || detail.contains("released"),
            "{detail}"
        );
    }
    detection.sort();
    println!(
        "{name}: kill to recorded: median {:?}, max {:?}",
        detection[detection.len() / 2],
        detection[detection.len() - 1]
    );
    let cut = cut.lock().unwrap().clone();
    for id in &cut {
        assert!(
            killed.contains_key(id),
            "a response of {id}, never killed, was cut"
        );
    }
    let by_state = |s: &str| killed.values().filter(|(k, _)| *k == s).count();
    println!(
        "{name}: {} kills ({} ready, {} allocated) during {} claims and {} proxied requests; \
         {late} claims answered between a kill and its detection, {} responses cut by a kill",
        killed.len(),
        by_state("ready"),
        by_state("allocated"),
        claimed.len(),
        served.load(std::sync::atomic::Ordering::Relaxed),
        cut.len()
    );

    // Quiet now: each killed ready container is replaced within 2 s.
    wp.wait_ready("default", TARGET, Duration::from_secs(10))
        .await;
    let mut times = Vec::new();
    for i in 0..5 {
        let (_, handle) = live(&wp, "ready").await.remove(0);
        let t0 = Instant::now();
        assert!(kill(&handle, i), "{handle} could not be killed");
        poll(
            Duration::from_secs(2),
            "a killed ready container to be replaced",
            || async {
                let n = ready_count(&wp).await;
                let replaced =
                    n == TARGET && live(&wp, "ready").await.iter().all(|(_, h)| *h != handle);
                replaced.then_some(())
            },
        )
        .await;
        times.push(t0.elapsed());
    }
    times.sort();
    println!(
        "{name}: replacement of a killed ready container: median {:?}, max {:?}",
        times[2], times[4]
    );

    // Books: what runs is what the store holds as live, no more.
    common::books_balance(wp.app(), Duration::from_secs(10)).await;
    wp.shutdown().await;
}
