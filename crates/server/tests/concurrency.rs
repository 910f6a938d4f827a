//! Reliability under concurrency (issue 7, scenario 5): 1,000 concurrent claims
//! against a pool of 100, with the simulated runtime and with real processes,
//! then the same while the pool's target is changed up and down at runtime
//! (`PATCH /v1/pools/{pool}`). Each ends with the books check: what the runtime
//! runs is exactly what the store holds as live, and no id went out twice.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{poll, InProc};
use futures_util::future::join_all;
use warmpool_client::{ClaimRequest, ClaimResponse};
use warmpool_runtime::{Runtime, SimMode, SimRuntime};

const CLAIMS: usize = 1_000;
const POOL: u32 = 100;

/// What a burst of claims got.
#[derive(Default, Debug)]
struct Tally {
    warm: Vec<String>,
    on_demand: Vec<String>,
    /// 503s (at capacity, or no container in time), each a problem document.
    unavailable: usize,
}

impl Tally {
    fn ids(&self) -> impl Iterator<Item = &String> {
        self.warm.iter().chain(&self.on_demand)
    }

    fn assert_no_duplicates(&self) {
        let mut seen = HashSet::new();
        for id in self.ids() {
            assert!(seen.insert(id), "{id} was handed out twice");
        }
    }
}

/// Sends `n` claims at once; every answer must be a success or a 503 problem.
async fn burst(wp: &InProc, n: usize) -> Tally {
    let answers = join_all((0..n).map(|_| {
        let http = wp.http.clone();
        let url = format!("{}/container", wp.base);
        async move {
            let resp = http.post(url).json(&ClaimRequest::default()).send().await;
            let resp = resp.expect("claim request");
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = resp.bytes().await.unwrap();
            (status, ctype, body)
        }
    }))
    .await;
    let mut t = Tally::default();
    for (status, ctype, body) in answers {
        match status {
            200 => {
                let c: ClaimResponse = serde_json::from_slice(&body).unwrap();
                if c.warm {
                    t.warm.push(c.id)
                } else {
                    t.on_demand.push(c.id)
                }
            }
            503 => {
                assert_eq!(ctype.as_deref(), Some("application/problem+json"));
                t.unavailable += 1;
            }
            s => panic!("claim answered {s}: {}", String::from_utf8_lossy(&body)),
        }
    }
    t
}

/// Every id a client got is still allocated to it (none was stopped by a target
/// change, or handed to the pool).
async fn all_still_allocated(wp: &InProc, t: &Tally) {
    for id in t.ids() {
        let c = wp.client.container(id).await.unwrap();
        assert_eq!(c.state, "allocated", "{id}: {c:?}");
    }
}

async fn patch_target(wp: &InProc, target: u32) -> reqwest::StatusCode {
    wp.http
        .patch(format!("{}/v1/pools/default", wp.base))
        .json(&serde_json::json!({ "targets": { "default": target } }))
        .send()
        .await
        .unwrap()
        .status()
}

fn settings(max: &str) -> Vec<(&'static str, String)> {
    vec![
        ("POOL_TARGET_INSTANCES", POOL.to_string()),
        ("POOL_BATCH_SIZE", POOL.to_string()),
        // One batch fills the pool; no refill batch can start during the burst, so
        // every warm hit is one of the 100 that were ready before it.
        ("POOL_BATCH_SPACING_IN_SECONDS", "600".into()),
        ("WARMPOOL_MAX_INSTANCES", max.into()),
        ("WARMPOOL_CLAIM_TIMEOUT_SECONDS", "30".into()),
        ("WARMPOOL_START_TIMEOUT_SECONDS", "30".into()),
    ]
}

async fn start(settings: &[(&'static str, String)], rt: Option<Arc<dyn Runtime>>) -> InProc {
    let s: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    InProc::start_with(&s, rt).await
}

/// 1,000 claims against 100 ready: exactly 100 warm hits, the rest started on
/// demand up to the global cap, then 503; no duplicate; books balance.
async fn thousand_claims_against_a_pool_of_100(wp: &InProc, max: u32) {
    wp.wait_ready("default", POOL, Duration::from_secs(60))
        .await;
    let t0 = Instant::now();
    let t = burst(wp, CLAIMS).await;
    let took = t0.elapsed();
    println!(
        "{} runtime: {CLAIMS} concurrent claims in {took:?}: {} warm, {} on demand, {} answered 503",
        wp.app().runtime.name(),
        t.warm.len(),
        t.on_demand.len(),
        t.unavailable
    );
    t.assert_no_duplicates();
    assert_eq!(t.warm.len(), POOL as usize, "warm hits");
    assert_eq!(
        t.on_demand.len(),
        (max - POOL) as usize,
        "on-demand starts fill the global cap"
    );
    assert_eq!(t.unavailable, CLAIMS - max as usize, "the rest are 503");
    all_still_allocated(wp, &t).await;
    common::books_balance(wp.app(), Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_claims_against_a_pool_of_100_sim() {
    let sim: Arc<dyn Runtime> = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let wp = start(&settings("400"), Some(sim.clone())).await;
    thousand_claims_against_a_pool_of_100(&wp, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_claims_against_a_pool_of_100_processes() {
    let mut wp = start(&settings("130"), None).await;
    thousand_claims_against_a_pool_of_100(&wp, 130).await;
    // Every process is reachable through the proxy, and each answers as itself.
    let rows = wp.client.containers(&Default::default()).await.unwrap();
    let allocated: Vec<_> = rows
        .containers
        .iter()
        .filter(|c| c.state == "allocated")
        .take(10)
        .collect();
    for c in allocated {
        let resp = wp.proxied(&c.id, "/").await;
        assert_eq!(resp.status(), 200, "{}", c.id);
    }
    wp.shutdown().await;
}

/// The same burst while another task moves the target up and down: no claimed
/// container is ever stopped or handed out twice, and afterwards the pool settles
/// at the last target with balanced books.
async fn claims_while_the_target_moves(wp: &InProc) {
    wp.wait_ready("default", POOL, Duration::from_secs(60))
        .await;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let done = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicU32::new(0));
    let mover = {
        let (http, base) = (wp.http.clone(), wp.base.clone());
        let (done, changes) = (done.clone(), changes.clone());
        tokio::spawn(async move {
            for target in [20u32, 150, 0, 120, 5, 100].iter().cycle() {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let status = http
                    .patch(format!("{base}/v1/pools/default"))
                    .json(&serde_json::json!({ "targets": { "default": target } }))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 200);
                changes.fetch_add(1, Ordering::Relaxed);
                // Spreads the changes over the burst (not waiting for any state).
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // The burst goes in waves, and the next wave waits for a change of the target
    // made since the previous one began: however fast the runtime, the claims and
    // at least one change per wave interleave.
    const WAVES: usize = 4;
    let mut t = Tally::default();
    for _ in 0..WAVES {
        let before = changes.load(Ordering::Relaxed);
        let w = burst(wp, CLAIMS / WAVES).await;
        t.warm.extend(w.warm);
        t.on_demand.extend(w.on_demand);
        t.unavailable += w.unavailable;
        poll(
            Duration::from_secs(30),
            "a target change since the wave began",
            || std::future::ready((changes.load(Ordering::Relaxed) > before).then_some(())),
        )
        .await;
    }
    done.store(true, Ordering::Relaxed);
    mover.await.unwrap();
    let changes = changes.load(Ordering::Relaxed);
    println!(
        "{} runtime, target moving ({changes} changes): {} warm, {} on demand, {} answered 503",
        wp.app().runtime.name(),
        t.warm.len(),
        t.on_demand.len(),
        t.unavailable
    );
    t.assert_no_duplicates();
    assert!(
        changes >= WAVES as u32,
        "the target changed only {changes} times"
    );
    all_still_allocated(wp, &t).await;

    // The claims may have filled the global cap; once they are released, the pool
    // settles at the last target, whatever the moves left behind.
    join_all(t.ids().map(|id| wp.client.release(id))).await;
    assert_eq!(patch_target(wp, 7).await, 200);
    poll(
        Duration::from_secs(60),
        "the pool to settle at 7",
        || async {
            let p = wp.client.pools().await.unwrap().pools;
            let p = p.iter().find(|p| p.location == "default").unwrap();
            let settled = p.target == 7 && p.ready == 7 && p.starting == 0;
            (settled && p.stopping == 0 && p.allocated == 0).then_some(())
        },
    )
    .await;
    common::books_balance(wp.app(), Duration::from_secs(30)).await;
}

fn moving_settings() -> Vec<(&'static str, String)> {
    let mut s = settings("300");
    // Spacing 0, so that raising the target starts containers during the burst.
    s[2] = ("POOL_BATCH_SPACING_IN_SECONDS", "0".into());
    s.push(("POOL_BATCH_SIZE", "20".into()));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_while_the_target_moves_up_and_down_sim() {
    let sim: Arc<dyn Runtime> = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let wp = start(&moving_settings(), Some(sim.clone())).await;
    claims_while_the_target_moves(&wp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_while_the_target_moves_up_and_down_processes() {
    let mut s = moving_settings();
    s[3] = ("WARMPOOL_MAX_INSTANCES", "200".into());
    let mut wp = start(&s, None).await;
    claims_while_the_target_moves(&wp).await;
    wp.shutdown().await;
}

#[tokio::test]
async fn patching_a_pool_validates_every_field() {
    let wp = InProc::start(&[("WARMPOOL_TARGETS", "default=2,weur=1")]).await;
    let patch = |path: &'static str, body: serde_json::Value| {
        let (http, base) = (wp.http.clone(), wp.base.clone());
        async move {
            let r = http
                .patch(format!("{base}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let ctype = r.headers()["content-type"].to_str().unwrap().to_owned();
            (status, ctype, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let cases = [
        (
            "/v1/pools/nope",
            serde_json::json!({"targets": {"default": 1}}),
            404,
            None,
        ),
        (
            "/v1/pools/default",
            serde_json::json!({"targets": {"wnam": 1}}),
            422,
            Some("targets.wnam"),
        ),
        (
            "/v1/pools/default",
            serde_json::json!({"targets": {"mars": 1}}),
            422,
            Some("targets.mars"),
        ),
        (
            "/v1/pools/default",
            serde_json::json!({"targets": {"default": -1}}),
            422,
            Some("targets.default"),
        ),
        (
            "/v1/pools/default",
            serde_json::json!({"targets": {"default": 100001}}),
            422,
            Some("targets.default"),
        ),
        (
            "/v1/pools/default",
            serde_json::json!({"targets": {"default": "3"}}),
            422,
            Some("targets.default"),
        ),
        (
            "/v1/pools/default",
            serde_json::json!({"targets": {}}),
            422,
            Some("targets"),
        ),
        (
            "/v1/pools/default",
            serde_json::json!({"targets": [1]}),
            422,
            Some("targets"),
        ),
        (
            "/v1/pools/default",
            serde_json::json!({"target": 3}),
            422,
            Some("target"),
        ),
        ("/v1/pools/default", serde_json::json!({}), 422, Some("")),
        (
            "/v1/pools/default",
            serde_json::json!({"batch_size": 0}),
            422,
            Some("batch_size"),
        ),
        (
            "/v1/pools/default",
            serde_json::json!({"colour": "red"}),
            422,
            Some("colour"),
        ),
    ];
    for (path, body, status, field) in cases {
        let (got, ctype, problem) = patch(path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {problem}");
        assert_eq!(ctype, "application/problem+json");
        if let Some(f) = field {
            assert_eq!(problem["field"], f, "{body}: {problem}");
        }
    }
    // A refused patch changed nothing; a mixed one with a bad location neither.
    let (got, _, _) = patch(
        "/v1/pools/default",
        serde_json::json!({"targets": {"weur": 4, "wnam": 1}}),
    )
    .await;
    assert_eq!(got, 422);
    let targets = |pools: warmpool_client::PoolList| {
        pools
            .pools
            .into_iter()
            .map(|p| (p.location, p.target))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        targets(wp.client.pools().await.unwrap()),
        [("default".to_string(), 2), ("weur".to_string(), 1)]
    );
    // A good one changes only the locations it names, and answers the pool.
    let (got, _, answer) = patch(
        "/v1/pools/default",
        serde_json::json!({"targets": {"weur": 3}}),
    )
    .await;
    assert_eq!(got, 200, "{answer}");
    let answer: warmpool_client::PutPoolResponse = serde_json::from_value(answer).unwrap();
    let expected = [("default".to_string(), 2), ("weur".to_string(), 3)];
    assert_eq!(
        answer
            .pool
            .locations
            .iter()
            .map(|p| (p.location.clone(), p.target))
            .collect::<Vec<_>>(),
        expected
    );
    // Targets are not the template: no new revision.
    assert!(!answer.new_revision);
    assert_eq!(answer.pool.revision, 1);
    assert_eq!(targets(wp.client.pools().await.unwrap()), expected);
    wp.wait_ready("weur", 3, Duration::from_secs(30)).await;
}
