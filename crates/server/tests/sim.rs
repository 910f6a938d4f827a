//! Deterministic reconciler and claim tests against the simulated runtime, which
//! shares the real `Runtime` trait: the test steps each start and injects failures.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{poll, poll_gone, InProc};
use warmpool_client::ClaimRequest;
use warmpool_runtime::{SimMode, SimRuntime};

const T: Duration = Duration::from_secs(10);

async fn with_sim(mode: SimMode, extra: &[(&str, &str)]) -> (InProc, Arc<SimRuntime>) {
    let sim = Arc::new(SimRuntime::new(mode, "127.0.0.1:9"));
    let mut settings = vec![("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600")];
    settings.extend_from_slice(extra);
    let wp = InProc::start_with(&settings, Some(sim.clone())).await;
    (wp, sim)
}

async fn pool(wp: &InProc) -> warmpool_client::PoolView {
    wp.client
        .pools()
        .await
        .unwrap()
        .pools
        .into_iter()
        .find(|p| p.location == "default")
        .unwrap()
}

#[tokio::test]
async fn starting_containers_count_toward_the_target() {
    let (mut wp, sim) = with_sim(
        SimMode::Manual,
        &[("POOL_TARGET_INSTANCES", "4"), ("POOL_BATCH_SIZE", "2")],
    )
    .await;
    let s = sim.clone();
    poll(T, "two batches started", || {
        let s = s.clone();
        async move { (s.starting().len() == 4).then_some(()) }
    })
    .await;
    // However often it re-plans, nothing more is started while four are starting.
    for _ in 0..10 {
        wp.app().reconcile_now();
    }
    assert_eq!(sim.starts(), 4);
    let p = pool(&wp).await;
    assert_eq!((p.starting, p.ready), (4, 0));

    for id in sim.starting() {
        assert!(sim.make_ready(id));
    }
    wp.wait_ready("default", 4, T).await;
    for _ in 0..10 {
        wp.app().reconcile_now();
    }
    assert_eq!(sim.starts(), 4, "never more than the target");
    wp.shutdown().await;
}

#[tokio::test]
async fn failed_starts_are_recorded_counted_and_retried() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    sim.fail_next_starts(3);
    let mut wp = InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "2"),
            ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "0.05"),
        ],
        Some(sim.clone()),
    )
    .await;
    wp.wait_ready("default", 2, T).await;
    let p = pool(&wp).await;
    assert_eq!(p.failed_starts, 3);
    assert!(p.last_error.unwrap().contains("injected failure"));
    // Each failure was recorded as a container that failed, then closed.
    let failed = wp
        .app()
        .store
        .containers(Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.stop_reason
                .as_deref()
                .is_some_and(|r| r.starts_with("start failed"))
        })
        .count();
    assert_eq!(failed, 3);
    wp.shutdown().await;
}

#[tokio::test]
async fn dead_ready_containers_are_replaced_and_dead_allocated_ones_answer_410() {
    let (mut wp, sim) = with_sim(SimMode::Instant, &[("POOL_TARGET_INSTANCES", "2")]).await;
    wp.wait_ready("default", 2, T).await;
    let ready = sim.running();
    assert!(sim.kill(ready[0], 3));
    let (client, dead) = (wp.client.clone(), ready[0].to_string());
    poll(T, "the dead one recorded and replaced", || {
        let (client, dead) = (client.clone(), dead.clone());
        async move {
            let v = client.container(&dead).await.ok()?;
            let p = client.pools().await.ok()?;
            (v.state != "ready" && p.pools[0].ready == 2).then_some(())
        }
    })
    .await;

    let c = wp.client.claim(&ClaimRequest::default()).await.unwrap();
    assert_ne!(c.id, dead);
    assert!(sim.kill(c.id.parse().unwrap(), 3));
    let detail = poll_gone(&format!("{}/container/{}/x", wp.base, c.id), T).await;
    assert!(detail.contains("exited with code 3"), "{detail}");
    let v = wp.client.container(&c.id).await.unwrap();
    assert_eq!(v.exit_code, Some(3));
    wp.shutdown().await;
}

#[tokio::test]
async fn empty_pool_starts_on_demand_and_the_claim_waits() {
    let (mut wp, sim) = with_sim(SimMode::Manual, &[("POOL_TARGET_INSTANCES", "0")]).await;
    let client = wp.client.clone();
    let claim = tokio::spawn(async move {
        client
            .claim(&ClaimRequest {
                location: Some("weur".into()),
                max_lifetime_in_seconds: Some(60),
                ..Default::default()
            })
            .await
    });
    let s = sim.clone();
    let id = poll(T, "an on-demand start", || {
        let s = s.clone();
        async move { s.starting().first().copied() }
    })
    .await;
    assert!(sim.make_ready(id));
    let c = claim.await.unwrap().unwrap();
    assert_eq!(c.id, id.to_string());
    assert!(!c.warm);
    assert_eq!(c.location, "weur");
    let v = wp.client.container(&c.id).await.unwrap();
    assert!(v.on_demand);
    assert_eq!(v.state, "allocated");
    let p = wp.client.pools().await.unwrap();
    let weur = p.pools.iter().find(|p| p.location == "weur").unwrap();
    assert_eq!((weur.misses, weur.hits, weur.allocated), (1, 0, 1));
    wp.shutdown().await;
}

#[tokio::test]
async fn claim_at_the_global_cap_is_503_with_retry_after_at_once() {
    let (mut wp, _sim) = with_sim(
        SimMode::Instant,
        &[
            ("POOL_TARGET_INSTANCES", "2"),
            ("WARMPOOL_MAX_INSTANCES", "2"),
        ],
    )
    .await;
    wp.wait_ready("default", 2, T).await;
    for _ in 0..2 {
        assert!(
            wp.client
                .claim(&ClaimRequest::default())
                .await
                .unwrap()
                .warm
        );
    }
    let r = wp
        .http
        .post(format!("{}/container", wp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["type"], "https://warmpool.dev/problems/at-capacity");
    assert_eq!(p["status"], 503);
    wp.shutdown().await;
}

#[tokio::test]
async fn a_claim_that_times_out_leaves_its_container_to_the_pool() {
    let (mut wp, sim) = with_sim(
        SimMode::Manual,
        &[
            ("POOL_TARGET_INSTANCES", "0"),
            ("WARMPOOL_CLAIM_TIMEOUT_SECONDS", "0.2"),
        ],
    )
    .await;
    let r = wp
        .http
        .post(format!("{}/container", wp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        p["type"],
        "https://warmpool.dev/problems/no-container-ready"
    );
    // The start goes on; once ready it is surplus to a pool of target 0, so the
    // reconciler stops it rather than leaking it.
    let id = sim.starting()[0];
    assert!(sim.make_ready(id));
    let (client, id) = (wp.client.clone(), id.to_string());
    poll(
        T,
        "the unclaimed on-demand container to be stopped as surplus",
        || {
            let (client, id) = (client.clone(), id.clone());
            async move {
                let v = client.container(&id).await.ok()?;
                (v.state == "stopped").then_some(v.stop_reason)
            }
        },
    )
    .await;
    wp.shutdown().await;
}

#[tokio::test]
async fn a_claim_whose_text_cannot_be_set_fails_and_releases_the_container() {
    // Simulated containers "listen" on 127.0.0.1:9, where nothing answers.
    let (mut wp, _sim) = with_sim(SimMode::Instant, &[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let r = wp
        .http
        .post(format!("{}/container", wp.base))
        .json(&serde_json::json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["type"], "https://warmpool.dev/problems/setup-failed");
    assert_eq!(p["field"], "text", "the problem names the step: {p}");
    let released = wp
        .client
        .containers(&warmpool_client::ContainerQuery::default())
        .await
        .unwrap()
        .containers
        .into_iter()
        .find(|c| c.stop_reason.as_deref() == Some("set-up failed at step text"))
        .expect("the claimed container was released");
    assert_eq!(released.state, "stopped");
    wp.shutdown().await;
}

/// Claims activate the reconciler, but a burst of them is served by a few passes
/// (at most one per `MIN_PASS_GAP`), so a pass's cost, which grows with the number
/// of tracked containers, is not paid per claim; the pool is still refilled.
///
/// The test holds the reconciler's clock: it pauses tokio's time (the runtime is
/// single-threaded for that) and keeps a blocking task running, which stops tokio
/// from advancing the paused clock on its own while everything waits on SQLite.
/// So the burst of claims happens within one instant, whatever the machine's
/// speed, and the clock moves only when the test moves it. Without coalescing,
/// every claim of the burst gets its own pass.
#[tokio::test]
async fn a_burst_of_claims_is_served_by_a_few_reconciler_passes() {
    const CLAIMS: u64 = 100;
    let gap = warmpool_server::engine::MIN_PASS_GAP;
    let (mut wp, _sim) = with_sim(
        SimMode::Instant,
        &[
            ("POOL_TARGET_INSTANCES", "200"),
            ("POOL_BATCH_SIZE", "200"),
            ("POOL_BATCH_SPACING_IN_SECONDS", "0"),
        ],
    )
    .await;
    wp.wait_ready("default", 200, T).await;
    let app = wp.app().clone();
    let passes = || app.metrics.reconcile_passes.get();

    tokio::time::pause();
    let (release_clock, held) = std::sync::mpsc::channel::<()>();
    let holder = tokio::task::spawn_blocking(move || {
        let _ = held.recv();
    });
    // Tokio's timers have a resolution of 1 ms (deadlines are rounded up), so a
    // pass due a gap after the last one comes at most 1 ms later.
    let tick = Duration::from_millis(1);
    // Whatever pass was still due has run, and the last pass is at least a gap
    // old, so the burst's first claim is served by a pass at once.
    for _ in 0..3 {
        tokio::time::advance(gap + tick).await;
        settle().await;
    }
    let at = tokio::time::Instant::now();
    let before = passes();
    let req = ClaimRequest::default();
    for i in 0..CLAIMS {
        let c = wp.client.claim(&req).await.unwrap();
        assert!(c.warm, "claim {i} was not served from the pool");
    }
    settle().await;
    assert_eq!(tokio::time::Instant::now(), at, "the clock moved");
    assert_eq!(
        passes() - before,
        1,
        "passes for a burst of {CLAIMS} claims within one instant"
    );
    // Within the gap after that pass, nothing; at its end, one pass for the rest.
    tokio::time::advance(gap - tick).await;
    settle().await;
    assert_eq!(
        passes() - before,
        1,
        "a pass less than {gap:?} after the last one"
    );
    tokio::time::advance(2 * tick).await;
    settle_until(|| passes() - before == 2).await;
    assert_eq!(passes() - before, 2, "one pass at the end of the gap");

    // The clock runs again: the claims' activations did their job.
    drop(release_clock);
    holder.await.unwrap();
    tokio::time::resume();
    wp.wait_ready("default", 200, T).await;
    wp.shutdown().await;
}

/// Lets every task that can run at this instant of the paused clock run.
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// Like [`settle`], until `done` (a bounded number of turns: the clock is held,
/// so this waits for no timer).
async fn settle_until(done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_failed_removal_waits_before_it_is_retried() {
    let (mut wp, sim) = with_sim(SimMode::Instant, &[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let c = common::first_ready(&wp.client).await;
    let id: warmpool_core::ContainerId = c.id.parse().unwrap();
    // The engine is down: the dead container cannot be removed.
    sim.fail_removals(true);
    assert!(sim.kill(id, 137));
    let s = sim.clone();
    poll(T, "a first removal attempt", || {
        let s = s.clone();
        async move { (s.removals() >= 1).then_some(()) }
    })
    .await;
    // Passes as often as activations could bring them (spread 10 ms apart on
    // purpose): none retries the removal at once.
    for _ in 0..40 {
        wp.app().reconcile_now();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.removals(), 1, "retried without waiting");
    // Back: a later pass removes it and closes the record.
    sim.fail_removals(false);
    let (app, client) = (wp.app().clone(), wp.client.clone());
    poll(T, "the failed container removed", || {
        let (app, client, cid) = (app.clone(), client.clone(), c.id.clone());
        async move {
            app.reconcile_now();
            (client.container(&cid).await.ok()?.state == "stopped").then_some(())
        }
    })
    .await;
    assert_eq!(sim.removals(), 2);
    wp.shutdown().await;
}
