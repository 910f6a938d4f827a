//! Killed containers under traffic (issue 7, scenario 2), with real processes
//! (`kill -9`) and with Docker (`docker kill` and `docker rm -f` in turn): while
//! clients claim, proxy and release, ready and allocated containers are killed,
//! half of each. Every claim and release succeeds; every kill is recorded with a
//! reason naming it (and so a killed allocated container answers 410 saying how it
//! ended); no container is handed out once its death is recorded; no id goes out
//! twice; killed ready ones are replaced within 2 seconds; the books balance.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
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

async fn ready_count(wp: &InProc) -> u32 {
    common::ready_count(&wp.client, "default").await
}

/// What warmpool records for a container killed one way: its record's reason
/// (which a handed-out id's 410 repeats as its detail) and exit code.
#[derive(Debug)]
struct Exit {
    reason: &'static str,
    code: Option<i32>,
}

/// How a test kills containers from outside warmpool.
struct Killer {
    /// Kills the container behind `handle` the `n`th way (a killer may vary its
    /// means); false if it had already ended.
    kill: fn(handle: &str, n: usize) -> bool,
    /// The `n`th way's name.
    how: fn(n: usize) -> &'static str,
    /// What warmpool may record for a container killed the `n`th way.
    exits: fn(n: usize) -> &'static [Exit],
}

/// `kill -9` of a container's process; false if it had already ended.
fn kill9(handle: &str, _n: usize) -> bool {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(common::pid_of(handle)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .is_ok()
}

/// The process runtime reaps its child and reports the signal.
const KILLED_PROCESS: &[Exit] = &[Exit {
    reason: "container exited (killed by signal 9)",
    code: Some(137),
}];

const PROCESSES: Killer = Killer {
    kill: kill9,
    how: |_| "kill -9",
    exits: |_| KILLED_PROCESS,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_processes_under_traffic_are_replaced_answer_410_and_are_never_handed_out() {
    let wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", &TARGET.to_string()),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
        // Deaths are found by the runtime's exit reports, not by the sweep.
        ("WARMPOOL_SWEEP_SECONDS", "3600"),
    ])
    .await;
    kills_under_traffic(wp, PROCESSES).await;
}

/// `docker kill` and `docker rm -f`, in turn.
fn docker_kill(handle: &str, n: usize) -> bool {
    std::process::Command::new("docker")
        .args(docker_args(n))
        .arg(handle)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn docker_args(n: usize) -> &'static [&'static str] {
    if n.is_multiple_of(2) {
        &["kill"]
    } else {
        &["rm", "-f"]
    }
}

/// `docker kill` sends SIGKILL: the engine's `die` event says exit code 137
/// (reported once the runtime has made sure, for about 0.7 s, that it was not an
/// out-of-memory kill). If the runtime's own re-list (every 15 s) happens to fall
/// in that moment, it reports the stopped container first, without a code.
const DOCKER_KILLED: &[Exit] = &[
    Exit {
        reason: "container exited (exited with code 137)",
        code: Some(137),
    },
    Exit {
        reason: "container exited (exited (found stopped when re-listing containers))",
        code: None,
    },
];

/// `docker rm -f` kills and removes: the `destroy` event comes at once, well
/// before the `die` event's report (see [`DOCKER_KILLED`]).
const DOCKER_REMOVED: &[Exit] = &[Exit {
    reason: "container exited (removed from docker)",
    code: None,
}];

const DOCKER: Killer = Killer {
    kill: docker_kill,
    how: |n| {
        if n.is_multiple_of(2) {
            "docker kill"
        } else {
            "docker rm -f"
        }
    },
    exits: |n| {
        if n.is_multiple_of(2) {
            DOCKER_KILLED
        } else {
            DOCKER_REMOVED
        }
    },
};

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
        ("WARMPOOL_SWEEP_SECONDS", "3600"),
    ])
    .await;
    kills_under_traffic(wp, DOCKER).await;
}

/// What the clients did and saw.
#[derive(Default)]
struct Traffic {
    /// Claims answered: id and when.
    claimed: Vec<(String, Instant)>,
    /// Claims that failed, with the error.
    claim_failures: Vec<String>,
    /// Proxied requests answered 200.
    served: u64,
    /// Ids whose proxied requests answered 410 (the killer got them first).
    gone: Vec<String>,
    /// Ids whose responses were cut off midway (killed while answering).
    cut: Vec<String>,
    /// Proxied requests answered otherwise: id, status, whether the killer had
    /// chosen it, and the answer's body.
    bad_answers: Vec<(String, u16, bool, String)>,
    /// Ids whose client sent their release.
    releasing: HashSet<String>,
    /// Ids the killer chose (it kills them right after).
    doomed: HashSet<String>,
    released: u64,
    release_failures: Vec<String>,
}

/// The scenario: traffic, kills (each waited for until recorded), the checks,
/// then five quiet kills of ready containers timed to their replacement.
async fn kills_under_traffic(mut wp: InProc, killer: Killer) {
    let kills: usize = std::env::var("WARMPOOL_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    assert!(
        kills >= 4,
        "WARMPOOL_CHAOS_KILLS={kills}: at least 4 (each state meets each means)"
    );
    let seed: u64 = rand::rng().random();
    let name = wp.app().runtime.name();
    println!("{name}: seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    wp.wait_ready("default", TARGET, Duration::from_secs(60))
        .await;

    // Traffic: three clients claim, proxy three requests, release, again.
    let traffic: Arc<Mutex<Traffic>> = Default::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (client, http, base) = (wp.client.clone(), wp.http.clone(), wp.base.clone());
        let (traffic, stop) = (traffic.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let c = match client.claim(&ClaimRequest::default()).await {
                    Ok(c) => c,
                    Err(e) => {
                        traffic.lock().unwrap().claim_failures.push(e.to_string());
                        continue;
                    }
                };
                traffic
                    .lock()
                    .unwrap()
                    .claimed
                    .push((c.id.clone(), Instant::now()));
                for _ in 0..3 {
                    let r = http.get(format!("{base}/container/{}/", c.id)).send().await;
                    let answer = match r {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body = if matches!(status, 200 | 410) {
                                String::new()
                            } else {
                                r.text().await.unwrap_or_default()
                            };
                            Ok((status, body))
                        }
                        Err(e) => Err(e),
                    };
                    {
                        let mut t = traffic.lock().unwrap();
                        match answer {
                            Ok((200, _)) => t.served += 1,
                            Ok((410, _)) => t.gone.push(c.id.clone()),
                            Ok((s, body)) => {
                                let doomed = t.doomed.contains(&c.id);
                                t.bad_answers.push((c.id.clone(), s, doomed, body))
                            }
                            Err(_) => t.cut.push(c.id.clone()),
                        }
                    }
                    // Holds the container a while (spreading the load), so that
                    // the killer finds allocated ones too.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                // A container the killer chose is not released (as a client
                // told its container died would not): the release would stop it
                // first, and its record would say released, not how it died. The
                // killer chooses only among containers not being released; both
                // decide under this lock, so exactly one of them has it.
                {
                    let mut t = traffic.lock().unwrap();
                    if t.doomed.contains(&c.id) {
                        continue;
                    }
                    t.releasing.insert(c.id.clone());
                }
                let released = client.release(&c.id).await;
                let mut t = traffic.lock().unwrap();
                match released {
                    Ok(_) => t.released += 1,
                    Err(e) => t.release_failures.push(format!("{}: {e}", c.id)),
                }
            }
        }));
    }

    // The killer: every ~50-150 ms a random ready container, then a random
    // allocated one, and so on; the means alternate every two kills, so that each
    // state meets each means.
    struct Kill {
        state: &'static str,
        n: usize,
        at: Instant,
        noticed: Instant,
    }
    let mut killed: HashMap<String, Kill> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    while killed.len() < kills {
        // Random spacing between kills (not waiting for any state).
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..150))).await;
        let state = if killed.len().is_multiple_of(2) {
            "ready"
        } else {
            "allocated"
        };
        let n = killed.len() / 2;
        // Not one its client is releasing (see the clients).
        let (id, handle) = {
            let found = live(&wp, state).await;
            let mut t = traffic.lock().unwrap();
            let candidates: Vec<(String, String)> = found
                .into_iter()
                .filter(|(id, _)| !t.doomed.contains(id) && !t.releasing.contains(id))
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let chosen = candidates[rng.random_range(0..candidates.len())].clone();
            t.doomed.insert(chosen.0.clone());
            chosen
        };
        if !(killer.kill)(&handle, n) {
            continue; // It ended on its own meanwhile.
        }
        let at = Instant::now();
        let id = &id;
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
        killed.insert(
            id.clone(),
            Kill {
                state,
                n,
                at,
                noticed: Instant::now(),
            },
        );
        order.push(id.clone());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let t = std::mem::take(&mut *traffic.lock().unwrap());

    // The clients: every claim and release succeeded (the pool is twice the
    // clients, killed ones are replaced, and a claim finding none ready starts one
    // on demand); every failed request was to a killed container.
    assert!(
        t.claim_failures.is_empty(),
        "{} of {} claims failed, first: {:?}",
        t.claim_failures.len(),
        t.claimed.len() + t.claim_failures.len(),
        &t.claim_failures[..t.claim_failures.len().min(5)]
    );
    assert!(
        t.release_failures.is_empty(),
        "releases failed: {:?}",
        t.release_failures
    );
    assert!(
        t.claimed.len() >= kills / 2 && t.served > 0 && t.released > 0,
        "too little traffic: {} claims, {} requests served, {} released",
        t.claimed.len(),
        t.served,
        t.released
    );
    assert!(
        t.bad_answers.is_empty(),
        "neither 200 nor 410: {:?}",
        t.bad_answers
    );
    for id in t.gone.iter().chain(&t.cut) {
        assert!(
            killed.contains_key(id),
            "a request to {id}, never killed, was cut or answered 410"
        );
    }

    let mut seen = HashSet::new();
    let mut late = 0;
    for (id, at) in &t.claimed {
        assert!(seen.insert(id.clone()), "{id} was handed out twice");
        if let Some(k) = killed.get(id) {
            assert!(
                *at <= k.noticed,
                "{id} was handed out after its death was recorded"
            );
            if *at > k.at {
                late += 1;
            }
        }
    }

    // Every kill is recorded with a reason naming it. A killed container that
    // was handed out answers 410 with that reason; a ready one never claimed was
    // never routable (404).
    let mut named: BTreeMap<(&str, &str, &str), u32> = BTreeMap::new();
    for id in &order {
        let k = &killed[id];
        let v = wp.client.container(id).await.unwrap();
        let reason = v.stop_reason.clone().unwrap_or_default();
        let how = (killer.how)(k.n);
        let exits = (killer.exits)(k.n);
        let exit = exits
            .iter()
            .find(|e| e.reason == reason)
            .unwrap_or_else(|| {
                panic!(
                    "{id} ({} when killed by {how}): reason {reason:?}, expected one of {exits:?}",
                    k.state
                )
            });
        assert_eq!(v.exit_code, exit.code, "{id}: exit code ({reason})");
        *named.entry((k.state, how, exit.reason)).or_default() += 1;
        let r = wp.proxied(id, "/").await;
        if r.status() == 404 {
            assert!(
                k.state == "ready" && !seen.contains(id),
                "{id} ({} when killed) answers 404, yet was handed out",
                k.state
            );
            continue;
        }
        assert_eq!(r.status(), 410, "{id} ({} when killed)", k.state);
        let p: serde_json::Value = r.json().await.unwrap();
        let detail = p["detail"].as_str().unwrap_or_default();
        assert_eq!(
            detail,
            format!("container {id} is no longer available: {reason}"),
            "{id} ({} when killed by {how})",
            k.state
        );
    }
    for (n, how) in [(0, (killer.how)(0)), (1, (killer.how)(1))] {
        for state in ["ready", "allocated"] {
            assert!(
                killed.values().any(|k| k.state == state && k.n % 2 == n),
                "no {state} container was killed by {how}"
            );
        }
    }
    let mut detection: Vec<Duration> = killed.values().map(|k| k.noticed - k.at).collect();
    detection.sort();
    println!(
        "{name}: kill to recorded: median {:?}, max {:?}",
        detection[detection.len() / 2],
        detection[detection.len() - 1]
    );
    let by_state = |s: &str| killed.values().filter(|k| k.state == s).count();
    println!(
        "{name}: {} kills ({} ready, {} allocated) during {} claims (all answered), \
         {} proxied requests answered 200 and {} 410, {} released; reasons recorded: {named:?}; \
         {late} claims answered between a kill and its detection, {} responses cut by a kill",
        killed.len(),
        by_state("ready"),
        by_state("allocated"),
        t.claimed.len(),
        t.served,
        t.gone.len(),
        t.released,
        t.cut.len()
    );

    // Quiet now: each killed ready container is replaced within 2 s.
    wp.wait_ready("default", TARGET, Duration::from_secs(10))
        .await;
    let mut times = Vec::new();
    for i in 0..5 {
        let (_, handle) = live(&wp, "ready").await.remove(0);
        let t0 = Instant::now();
        assert!((killer.kill)(&handle, i), "{handle} could not be killed");
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

    // Books: what the runtime holds is what the store holds as live, no more.
    common::books_balance(wp.app(), Duration::from_secs(10)).await;
    wp.shutdown().await;
}
