//! Autoscaling against real servers: policies refused with the field named,
//! location pools that appear on the first claim and decay after the
//! scale-down delay (simulated runtime on tokio's paused clock, and real
//! processes), a burst met warm, a restart that keeps location pools, a
//! thousand concurrent claims under the global cap, and static targets the cap
//! cuts short said so.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{poll, InProc, Proc};
use warmpool_client::{ClaimRequest, Client, ClientError, PoolView};
use warmpool_runtime::{SimMode, SimRuntime};

const T: Duration = Duration::from_secs(20);

fn at(location: &str) -> ClaimRequest {
    ClaimRequest {
        location: Some(location.into()),
        ..Default::default()
    }
}

/// The view of `pool` at `location`, if it is listed.
async fn view(client: &Client, pool: &str, location: &str) -> Option<PoolView> {
    client
        .pools()
        .await
        .unwrap()
        .pools
        .into_iter()
        .find(|p| p.pool == pool && p.location == location)
}

#[tokio::test]
async fn policies_are_refused_naming_the_field() {
    use warmpool_server::config::{pool_from_table, Config};
    // (a [pools.web] table, the field its error names)
    for (text, field) in [
        ("[scaling]\nmin = 5\nmax = 3", "pools.web.scaling.min"),
        ("[scaling]\nbuffer = \"lots\"", "pools.web.scaling.buffer"),
        ("[scaling]\nbuffer = \"2000%\"", "pools.web.scaling.buffer"),
        (
            "[scaling]\nlocations = \"everywhere\"",
            "pools.web.scaling.locations",
        ),
        ("[scaling]\nsafety = -1", "pools.web.scaling.safety"),
        ("[scaling]\nsafety = \"high\"", "pools.web.scaling.safety"),
        (
            "[scaling]\nscale_down_delay = -1",
            "pools.web.scaling.scale_down_delay",
        ),
        ("[scaling]\nmax = -1", "pools.web.scaling.max"),
        ("[scaling]\ncolour = 1", "pools.web.scaling.colour"),
        ("scaling = \"sometimes\"", "pools.web.scaling"),
        (
            "scaling = \"off\"\nscaling_min = 1",
            "pools.web.scaling.min",
        ),
    ] {
        let table: toml::Table = text.parse().unwrap();
        let e = pool_from_table("web", &table).unwrap_err();
        assert_eq!(e.key, field, "{text}: {e}");
    }
    // The default pool's, at the top of the file and in env vars.
    let file = Config::parse_file("[scaling]\nmin = 4\nmax = 2").unwrap();
    let e = Config::from_sources(|_| None, &file).unwrap_err();
    assert_eq!(e.key, "WARMPOOL_SCALING_MIN", "{e}");
    let e =
        Config::from_lookup(|k| (k == "WARMPOOL_SCALING_BUFFER").then(|| "x".into())).unwrap_err();
    assert_eq!(e.key, "WARMPOOL_SCALING_BUFFER", "{e}");
    // A good one reads back, and a pool without one has none.
    let table: toml::Table = "[scaling]\nmax = 9\nbuffer = \"20%\"\nlocations = \"auto\""
        .parse()
        .unwrap();
    let p = pool_from_table("web", &table).unwrap().scaling.unwrap();
    assert_eq!(
        (p.max, p.buffer.to_string(), p.locations.as_str()),
        (Some(9), "20%".into(), "auto")
    );
    assert_eq!(p.scale_down_delay, Duration::from_secs(300));
    assert!(pool_from_table("web", &toml::Table::new())
        .unwrap()
        .scaling
        .is_none());

    // The API refuses the same, naming the field, and changes nothing.
    let wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    for (body, field) in [
        (
            serde_json::json!({"scaling": {"min": 5, "max": 3}}),
            "scaling.min",
        ),
        (
            serde_json::json!({"scaling": {"buffer": "-2"}}),
            "scaling.buffer",
        ),
        (
            serde_json::json!({"scaling": {"locations": 3}}),
            "scaling.locations",
        ),
        (
            serde_json::json!({"scaling": {"shape": 3}}),
            "scaling.shape",
        ),
        (serde_json::json!({"scaling": 7}), "scaling"),
    ] {
        for method in [reqwest::Method::PUT, reqwest::Method::PATCH] {
            let r = wp
                .http
                .request(method.clone(), format!("{}/v1/pools/default", wp.base))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 422, "{method} {body}");
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            let p: serde_json::Value = r.json().await.unwrap();
            assert_eq!(p["field"], field, "{method} {body}: {p}");
        }
    }
    let d = wp.client.pool("default").await.unwrap();
    assert_eq!(d.settings.scaling, None, "a refused policy was kept");
    // PATCH sets a policy, a merge patch changes one field, null removes it;
    // each answers the pool's policy as saved.
    let patch = |v: serde_json::Value| {
        let (http, base) = (wp.http.clone(), wp.base.clone());
        async move {
            let r = http
                .patch(format!("{base}/v1/pools/default"))
                .json(&v)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{v}");
            let r: warmpool_client::PutPoolResponse = r.json().await.unwrap();
            r.pool.settings.scaling
        }
    };
    let s = patch(serde_json::json!({"scaling": {"max": 4}}))
        .await
        .unwrap();
    assert_eq!((s.max, s.buffer.as_deref()), (Some(4), Some("2")));
    let s = patch(serde_json::json!({"scaling": {"buffer": "1"}}))
        .await
        .unwrap();
    assert_eq!((s.max, s.buffer.as_deref()), (Some(4), Some("1")));
    assert_eq!(patch(serde_json::json!({"scaling": null})).await, None);
    let d = wp.client.pool("default").await.unwrap();
    assert_eq!(d.settings.scaling, None);
}

/// Lets every task that can run at this instant of the paused clock run.
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// Moves the paused clock by `step` at a time (each step lets a pass run)
/// until `f` answers, at most `steps` times.
async fn advance_until<T, F, Fut>(step: Duration, steps: u32, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..steps {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::advance(step).await;
        settle().await;
    }
    panic!("{what}: not within {steps} steps of {step:?}");
}

#[tokio::test]
async fn auto_location_pools_appear_on_the_first_claim_and_decay_on_a_paused_clock() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with_file(
        &[
            ("WARMPOOL_RUNTIME", "sim"),
            ("POOL_TARGET_INSTANCES", "1"),
            ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "5"),
        ],
        "[scaling]\nlocations = \"auto\"\nbuffer = 3\nscale_down_delay = 60\nmin = 1\nsafety = 0",
        Some(sim.clone()),
    )
    .await;
    let c = wp.client.clone();
    wp.wait_ready("default", 1, T).await;

    // The clock stands still except when the test moves it (a blocking task
    // keeps tokio from moving it while it waits for the network).
    tokio::time::pause();
    let (release_clock, held) = std::sync::mpsc::channel::<()>();
    let holder = tokio::task::spawn_blocking(move || {
        let _ = held.recv();
    });
    let step = Duration::from_millis(50);

    // No pool in weur yet: the first claim is cold, and makes one.
    assert!(view(&c, "default", "weur").await.is_none());
    let first = c.claim(&at("weur")).await.unwrap();
    assert!(!first.warm, "weur had no pool");
    let v = advance_until(step, 100, "a weur pool of 3", || {
        let c = c.clone();
        async move { view(&c, "default", "weur").await.filter(|v| v.ready == 3) }
    })
    .await;
    assert_eq!(v.desired, 3, "{v:?}");
    assert!(v.reason.starts_with("buffer"), "{v:?}");
    // The next claims there are warm.
    for _ in 0..3 {
        assert!(c.claim(&at("weur")).await.unwrap().warm);
    }
    // The location pool holds through the delay...
    tokio::time::advance(Duration::from_secs(50)).await;
    settle().await;
    let v = view(&c, "default", "weur").await.unwrap();
    assert!(v.desired >= 3, "shrank before its delay: {v:?}");
    // ...and after it, with no claims, it shrinks to min (the containers in
    // use stay: they run to the end of their lifetime).
    let v = advance_until(Duration::from_secs(1), 60, "weur back to min", || {
        let c = c.clone();
        async move {
            view(&c, "default", "weur")
                .await
                .filter(|v| v.desired == 1 && v.ready + v.starting == 1)
        }
    })
    .await;
    assert_eq!(v.allocated, 4, "{v:?}");
    assert!(v.reason.contains("min"), "{v:?}");
    // Its changes are the pool's events, each with its reason.
    let scaled = advance_until(step, 100, "the scaled events written", || {
        let c = c.clone();
        async move {
            let scaled: Vec<String> = c
                .pool("default")
                .await
                .unwrap()
                .events
                .into_iter()
                .filter(|e| e.kind == "scaled")
                .filter_map(|e| e.detail)
                .filter(|d| d.starts_with("weur"))
                .collect();
            scaled
                .last()
                .is_some_and(|d| d.contains("-> 1 ("))
                .then_some(scaled)
        }
    })
    .await;
    assert!(scaled[0].starts_with("weur: 0 -> 3 (buffer"), "{scaled:?}");

    drop(release_clock);
    holder.await.unwrap();
    tokio::time::resume();
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_location_pools_of_real_processes_appear_and_decay() {
    let mut wp = InProc::start_with_file(
        &[("POOL_TARGET_INSTANCES", "1")],
        "[scaling]\nlocations = \"auto\"\nbuffer = 1\nscale_down_delay = 2\nsafety = 0",
        None,
    )
    .await;
    let c = wp.client.clone();
    wp.wait_ready("default", 1, T).await;
    let first = c.claim(&at("apac")).await.unwrap();
    assert!(!first.warm);
    poll(T, "an apac pool", || {
        let c = c.clone();
        async move { view(&c, "default", "apac").await.filter(|v| v.ready == 1) }
    })
    .await;
    let second = c.claim(&at("apac")).await.unwrap();
    assert!(second.warm, "the apac pool served it");
    let body = wp.proxied_text(&second.id, "/").await;
    assert!(!body.is_empty());
    // Two seconds without claims: the pool goes (min 0); the claimed ones stay.
    let v = poll(T, "apac shrinks to 0", || {
        let c = c.clone();
        async move {
            view(&c, "default", "apac")
                .await
                .filter(|v| v.desired == 0 && v.ready + v.starting == 0)
        }
    })
    .await;
    assert_eq!(v.allocated, 2);
    c.release(&first.id).await.unwrap();
    c.release(&second.id).await.unwrap();
    // With nothing left there, the location is forgotten.
    poll(T, "apac forgotten", || {
        let c = c.clone();
        async move { view(&c, "default", "apac").await.is_none().then_some(()) }
    })
    .await;
    // And so is its row of `pool_sizes`: no stale rows.
    let app = wp.app().clone();
    poll(T, "apac's size row deleted", || {
        let app = app.clone();
        async move {
            let rows = app.store.load_sizes_blocking().unwrap();
            assert!(rows.iter().any(|r| r.location == "default"), "{rows:?}");
            (!rows.iter().any(|r| r.location == "apac")).then_some(())
        }
    })
    .await;
    common::books_balance(wp.app(), T).await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_1_to_50_claims_a_second_is_met_warm_after_its_first_second() {
    let wp = InProc::start(&[
        ("WARMPOOL_RUNTIME", "sim"),
        ("WARMPOOL_SIM_START_SECONDS", "0.3"),
        ("WARMPOOL_SCALING", "on"),
        ("WARMPOOL_SCALING_BUFFER", "2"),
        ("POOL_BATCH_SIZE", "100"),
        ("WARMPOOL_MAX_INSTANCES", "2000"),
    ])
    .await;
    let c = wp.client.clone();
    wp.wait_ready("default", 2, T).await;
    // Five seconds at 1 claim/s, then three at 50/s (open loop: each claim is
    // sent at its time, whatever the others do).
    let mut at_times: Vec<Duration> = (0..5).map(Duration::from_secs).collect();
    at_times.extend((0..150).map(|i| Duration::from_secs(5) + Duration::from_millis(20 * i)));
    let start = tokio::time::Instant::now();
    let claims = at_times.into_iter().map(|t| {
        let c = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(start + t).await;
            (t, c.claim(&ClaimRequest::default()).await.unwrap().warm)
        })
    });
    let results: Vec<(Duration, bool)> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let burst_start = Duration::from_secs(5);
    let first_second = results
        .iter()
        .filter(|(t, _)| *t >= burst_start && *t < burst_start + Duration::from_secs(1));
    let after: Vec<bool> = results
        .iter()
        .filter(|(t, _)| *t >= burst_start + Duration::from_secs(1))
        .map(|(_, w)| *w)
        .collect();
    let warm_after = after.iter().filter(|w| **w).count();
    let cold_first = first_second.filter(|(_, w)| !w).count();
    println!(
        "burst: {cold_first} cold claims in its first second; after it {warm_after} of {} warm",
        after.len()
    );
    assert_eq!(after.len(), 100);
    assert!(
        warm_after >= 90,
        "only {warm_after} of {} claims warm after the burst's first second",
        after.len()
    );
    let v = view(&c, "default", "default").await.unwrap();
    assert!(
        v.reason.contains("demand") || v.reason.contains("held"),
        "{v:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_location_pools() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_SCALING_LOCATIONS", "auto"),
        ("WARMPOOL_SCALING_BUFFER", "2"),
        ("WARMPOOL_SCALING_SCALE_DOWN_DELAY_SECONDS", "300"),
        // The buffer alone (how fast this machine starts processes would
        // otherwise decide the size).
        ("WARMPOOL_SCALING_SAFETY", "0"),
    ];
    let mut wp = Proc::spawn(dir.path(), &settings);
    let first = wp.client.claim(&at("oc")).await.unwrap();
    assert!(!first.warm);
    poll(T, "an oc pool", || {
        let c = wp.client.clone();
        async move { view(&c, "default", "oc").await.filter(|v| v.ready == 2) }
    })
    .await;
    wp.kill9();
    let wp = Proc::spawn(dir.path(), &settings);
    let v = view(&wp.client, "default", "oc")
        .await
        .expect("oc is still listed");
    assert_eq!(v.desired, 2, "{v:?}");
    poll(T, "the oc pool ready again after the restart", || {
        let c = wp.client.clone();
        async move { view(&c, "default", "oc").await.filter(|v| v.ready == 2) }
    })
    .await;
    assert!(wp.client.claim(&at("oc")).await.unwrap().warm);
    drop(wp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_claims_against_an_autoscaled_pool_get_distinct_containers_under_the_cap(
) {
    const CAP: u32 = 300;
    let wp = InProc::start(&[
        ("WARMPOOL_RUNTIME", "sim"),
        ("WARMPOOL_SIM_START_SECONDS", "0.05"),
        ("WARMPOOL_SCALING_LOCATIONS", "auto"),
        ("WARMPOOL_SCALING_BUFFER", "50%"),
        ("WARMPOOL_SCALING_MIN", "10"),
        ("POOL_BATCH_SIZE", "100"),
        ("WARMPOOL_MAX_INSTANCES", "300"),
        ("WARMPOOL_CLAIM_TIMEOUT_SECONDS", "5"),
    ])
    .await;
    let c = wp.client.clone();
    wp.wait_ready("default", 10, T).await;
    // The registry's live count, sampled all along.
    let app = wp.app().clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(app.registry.live().len() as u32);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            most
        })
    };
    let locations = ["default", "weur", "apac"];
    let claims = (0..1000).map(|i| {
        let c = c.clone();
        let l = locations[i % 3];
        tokio::spawn(async move { c.claim(&at(l)).await })
    });
    let (mut ids, mut at_capacity) = (HashSet::new(), 0);
    for r in futures_util::future::join_all(claims).await {
        match r.unwrap() {
            Ok(claim) => assert!(
                ids.insert(claim.id.clone()),
                "{} handed out twice",
                claim.id
            ),
            Err(ClientError::Api { problem }) if problem.status == 503 => at_capacity += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = sampler.await.unwrap();
    println!(
        "{} claimed, {at_capacity} at capacity, at most {most} live",
        ids.len()
    );
    assert!(most <= CAP, "{most} live containers above the cap of {CAP}");
    assert_eq!(ids.len() + at_capacity, 1000);
    assert!(ids.len() >= 100, "only {} claims succeeded", ids.len());
    let list = c.pools().await.unwrap();
    assert!(list.live <= CAP);
    for v in list.pools {
        assert!(v.desired <= CAP, "{v:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_targets_the_cap_cuts_short_say_so() {
    let wp = InProc::start(&[
        ("WARMPOOL_RUNTIME", "sim"),
        ("POOL_TARGET_INSTANCES", "50"),
        ("POOL_BATCH_SIZE", "100"),
        ("WARMPOOL_MAX_INSTANCES", "20"),
    ])
    .await;
    wp.wait_ready("default", 20, T).await;
    let v = view(&wp.client, "default", "default").await.unwrap();
    assert_eq!((v.target, v.desired), (50, 20), "{v:?}");
    assert_eq!(v.reason, "capped by max_instances");
    // The metric says the same.
    let text = wp
        .http
        .get(format!("{}/metrics", wp.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("warmpool_pool_desired{pool=\"default\",location=\"default\"} 20"),
        "{text}"
    );
    // And --check-config warns before anything starts.
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--check-config"])
        .env("POOL_TARGET_INSTANCES", "5000")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: the static targets add up to 5000")
            && err.contains("capped by max_instances"),
        "{err}"
    );
    let quiet = std::process::Command::new(common::bin())
        .args(["serve", "--check-config"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("warning"));
}

/// A pool with a policy shows its scaled size in /v1/pools and follows claims
/// of real processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_pool_keeps_its_buffer_beyond_what_is_in_use() {
    // In a test, the sample app is this binary's (the harness sets it for the
    // default pool only).
    let file = format!(
        "[pools.web]\ncommand = [{:?}, \"sample-app\"]\ntarget = 1\n[pools.web.scaling]\nbuffer = \"100%\"\nmin = 1\nmax = 4\nsafety = 0",
        common::bin()
    );
    let wp = InProc::start_with_file(&[], &file, None).await;
    let c = wp.client.clone();
    let began = Instant::now();
    poll(T, "web at its min", || {
        let c = c.clone();
        async move { view(&c, "web", "default").await.filter(|v| v.ready == 1) }
    })
    .await;
    let web = ClaimRequest {
        pool: Some("web".into()),
        ..Default::default()
    };
    let mut held = Vec::new();
    for n in 1..=3 {
        held.push(c.claim(&web).await.unwrap());
        // 100% of those in use, at most 4.
        let want = n.min(4);
        poll(T, "web's buffer follows what is in use", || {
            let c = c.clone();
            async move {
                view(&c, "web", "default")
                    .await
                    .filter(|v| v.desired == want && v.ready == want)
            }
        })
        .await;
    }
    println!("followed in {:?}", began.elapsed());
    let v = view(&c, "web", "default").await.unwrap();
    assert!(v.reason.starts_with("buffer (3 in use)"), "{v:?}");
}
