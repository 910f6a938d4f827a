//! Rollouts of a new pool revision against real runtimes: no gap in warm claims
//! while one runs, a failing revision stops with the old one still serving (and
//! rollback works), a `kill -9` in the middle resumes, a thousand concurrent
//! claims during one get distinct containers, and Docker rolls from one image
//! tag to another.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{poll, wait_ready, InProc, Proc};
use warmpool_client::{ClaimRequest, Client, ContainerQuery, PoolDetail, PoolSettings};

const T: Duration = Duration::from_secs(60);

/// A change of the app's env: a new template, so a new revision.
fn env_change(value: &str) -> PoolSettings {
    PoolSettings {
        app_env: Some([("VERSION".to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

async fn detail(client: &Client, pool: &str) -> PoolDetail {
    client.pool(pool).await.unwrap()
}

/// Waits for the pool's rollout to reach `phase`.
async fn wait_phase(client: &Client, pool: &str, phase: &str, within: Duration) -> PoolDetail {
    poll(
        within,
        &format!("the rollout of {pool} to be {phase}"),
        || async {
            let d = client.pool(pool).await.ok()?;
            (d.rollout.phase == phase).then_some(d)
        },
    )
    .await
}

/// Ready containers of `pool` and their revisions.
async fn ready_revisions(client: &Client, pool: &str) -> Vec<u32> {
    client
        .containers(&ContainerQuery {
            state: Some("ready".into()),
            pool: Some(pool.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.revision)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_under_continuous_claims_keeps_every_claim_warm_and_the_ready_count_up() {
    const TARGET: u32 = 6;
    let target = TARGET.to_string();
    // Each container takes 0.3 s to start answering: the rollout lasts long
    // enough for the sampler to see it many times.
    let command = format!("sh -c 'sleep 0.3; exec {} sample-app'", common::bin());
    let wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", &target),
        ("WARMPOOL_MAX_SURGE", "2"),
        ("WARMPOOL_COMMAND", &command),
    ])
    .await;
    let client = wp.client.clone();
    wait_ready(&client, "default", TARGET, T).await;

    // Two claims of the old revision, held through the rollout.
    let mut old = Vec::new();
    for _ in 0..2 {
        let c = client.claim(&ClaimRequest::default()).await.unwrap();
        old.push(c.id);
    }
    wait_ready(&client, "default", TARGET, T).await;
    let before = detail(&client, "default").await;
    assert_eq!(before.revision, 1);
    assert_eq!(before.rollout.phase, "complete");
    let ready_before = before.locations[0].ready;
    let bound = TARGET.min(ready_before);

    // The claimer: claims, checks the claim was warm and its container answers,
    // releases it, and claims again once the pool is back at the bound. A claim
    // takes one ready container until its refill is ready: `started` counts the
    // claims made, `recovered` those whose refill the claimer saw.
    let started = Arc::new(AtomicU64::new(0));
    let recovered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let claimer = {
        let (client, http, base) = (client.clone(), wp.http.clone(), wp.base.clone());
        let (started, recovered, stop) = (started.clone(), recovered.clone(), stop.clone());
        tokio::spawn(async move {
            let mut claims: Vec<(String, bool, u32)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                started.fetch_add(1, Ordering::SeqCst);
                let c = client.claim(&ClaimRequest::default()).await.unwrap();
                let r = http
                    .get(format!("{base}/container/{}/", c.id))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "claimed {} does not answer", c.id);
                let revision = client.container(&c.id).await.unwrap().revision;
                claims.push((c.id.clone(), c.warm, revision));
                client.release(&c.id).await.unwrap();
                poll(T, "the pool to be back at the bound", || async {
                    let p = client.pools().await.ok()?;
                    (p.pools[0].ready >= bound).then_some(())
                })
                .await;
                recovered.fetch_add(1, Ordering::SeqCst);
            }
            claims
        })
    };
    // The sampler: every 50 ms, the ready count, which may be short only by
    // the claims whose refill was outstanding while it looked.
    let sampler = {
        let client = client.clone();
        let (started, recovered, stop) = (started.clone(), recovered.clone(), stop.clone());
        tokio::spawn(async move {
            let mut samples: Vec<(u32, u64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let before = recovered.load(Ordering::SeqCst);
                let ready = client.pools().await.unwrap().pools[0].ready;
                let outstanding = started.load(Ordering::SeqCst) - before;
                samples.push((ready, outstanding));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        })
    };

    let put = client
        .patch_pool_settings("default", &env_change("2"))
        .await
        .unwrap();
    assert!(put.new_revision);
    assert_eq!(put.pool.revision, 2);
    assert_eq!(put.pool.rollout.phase, "progressing");
    let done = wait_phase(&client, "default", "complete", T).await;
    let claims_in_rollout = started.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    let claims = claimer.await.unwrap();
    let samples = sampler.await.unwrap();

    assert!(samples.len() >= 5, "too few samples: {}", samples.len());
    for (ready, outstanding) in &samples {
        assert!(
            u64::from(*ready) + outstanding >= u64::from(bound),
            "ready {ready} with {outstanding} claim(s) outstanding, below the bound {bound}: {samples:?}"
        );
    }
    assert!(
        claims_in_rollout >= 3,
        "too few claims during the rollout: {claims_in_rollout}"
    );
    for (id, warm, _) in &claims {
        assert!(warm, "claim {id} was not warm");
    }
    assert!(
        claims.iter().any(|(_, _, r)| *r == 2),
        "no claim got the new revision: {claims:?}"
    );
    // Only the new revision is ready; the old allocated ones are still answering.
    assert_eq!(done.rollout.stale_ready, 0);
    assert_eq!(done.rollout.outdated_allocated, 2);
    let revisions = ready_revisions(&client, "default").await;
    assert_eq!(revisions.len() as u32, TARGET, "{revisions:?}");
    assert!(revisions.iter().all(|r| *r == 2), "{revisions:?}");
    for id in &old {
        assert_eq!(client.container(id).await.unwrap().revision, 1);
        assert_eq!(wp.proxied(id, "/").await.status(), 200);
    }
    // Every step is in the pool's events.
    let kinds: Vec<&str> = done.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"rollout-started"), "{kinds:?}");
    assert!(kinds.contains(&"rollout-complete"), "{kinds:?}");
    let outdated = client.events(0, 1000).await.unwrap().events;
    assert!(
        outdated
            .iter()
            .filter(|e| e.reason.as_deref() == Some("outdated"))
            .count()
            >= (TARGET as usize),
        "each old ready container stopped as outdated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_completes_under_claims_that_never_pause() {
    // Claims that never wait for the pool to refill hold its ready count below
    // the target all along: each new container that becomes ready must still
    // replace an old one, or the last old ones would never go.
    const TARGET: u32 = 6;
    let wp = InProc::start(&[("POOL_TARGET_INSTANCES", &TARGET.to_string())]).await;
    let client = wp.client.clone();
    wait_ready(&client, "default", TARGET, T).await;
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let claimers: Vec<_> = (0..2)
        .map(|_| {
            let (client, stop, made) = (client.clone(), stop.clone(), made.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let c = client.claim(&ClaimRequest::default()).await.unwrap();
                    client.release(&c.id).await.unwrap();
                    made.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The claimers are under way before the rollout begins.
    poll(T, "the first claims", || async {
        (made.load(Ordering::Relaxed) >= 2).then_some(())
    })
    .await;
    let before = made.load(Ordering::Relaxed);
    client
        .patch_pool_settings("default", &env_change("2"))
        .await
        .unwrap();
    let done = wait_phase(&client, "default", "complete", T).await;
    let during = made.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for c in claimers {
        c.await.unwrap();
    }
    // Claims went on while it rolled out (how many depends on how fast the
    // machine starts the new containers; a count here once failed a fast run).
    assert!(during >= 1, "no claim was made during the rollout");
    assert_eq!(done.rollout.stale_ready, 0);
    wait_ready(&client, "default", TARGET, T).await;
    let revisions = ready_revisions(&client, "default").await;
    assert!(revisions.iter().all(|r| *r == 2), "{revisions:?}");
    common::books_balance(wp.app(), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_revision_fails_its_rollout_while_the_old_one_serves_and_rollback_returns() {
    let wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "3"),
        ("WARMPOOL_ROLLOUT_FAILURE_LIMIT", "3"),
    ])
    .await;
    let client = wp.client.clone();
    wait_ready(&client, "default", 3, T).await;

    // A command that exits at once never becomes ready.
    let put = client
        .patch_pool_settings(
            "default",
            &PoolSettings {
                command: Some(vec!["sh".into(), "-c".into(), "exit 3".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(put.pool.revision, 2);
    let failed = wait_phase(&client, "default", "failed", T).await;
    let error = failed.rollout.error.clone().unwrap();
    assert!(error.contains("3 starts of revision 2 failed"), "{error}");
    assert!(failed.events.iter().any(|e| e.kind == "rollout-failed"));

    // The old revision keeps serving: claims are warm and of revision 1, and
    // the pool refills with revision 1.
    for _ in 0..4 {
        let c = client.claim(&ClaimRequest::default()).await.unwrap();
        assert!(c.warm);
        assert_eq!(client.container(&c.id).await.unwrap().revision, 1);
        assert_eq!(wp.proxied(&c.id, "/").await.status(), 200);
        client.release(&c.id).await.unwrap();
        wait_ready(&client, "default", 3, T).await;
    }
    assert!(ready_revisions(&client, "default")
        .await
        .iter()
        .all(|r| *r == 1));

    // Rollback: back to revision 1, complete at once.
    let back = client.rollback("default").await.unwrap();
    assert_eq!(back.revision, 1);
    assert_eq!(back.rollout.phase, "complete");
    assert_eq!(back.rollout.error, None);
    assert_eq!(back.settings.command.as_ref().unwrap()[1], "sample-app");
    assert!(back.events.iter().any(|e| e.kind == "rollback"));
    // Nothing earlier to go back to now.
    let r = wp
        .http
        .post(format!("{}/v1/pools/default/rollback", wp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    common::books_balance(wp.app(), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_past_its_progress_deadline_fails_and_the_pool_stays_full() {
    let wp = InProc::start(&[("POOL_TARGET_INSTANCES", "2")]).await;
    let client = wp.client.clone();
    wait_ready(&client, "default", 2, T).await;
    // Its containers run but never answer their health path: no start fails
    // within the deadline, the deadline ends the rollout.
    let put = client
        .patch_pool_settings(
            "default",
            &PoolSettings {
                health_path: Some("/admin/never".into()),
                progress_deadline: Some(1.0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(put.pool.rollout.phase, "progressing");
    assert!(put.pool.rollout.deadline.is_some());
    let failed = wait_phase(&client, "default", "failed", T).await;
    let error = failed.rollout.error.unwrap();
    assert!(error.contains("progress deadline exceeded"), "{error}");
    // The old revision still fills the pool and serves claims.
    wait_ready(&client, "default", 2, T).await;
    let c = client.claim(&ClaimRequest::default()).await.unwrap();
    assert!(c.warm);
    assert_eq!(client.container(&c.id).await.unwrap().revision, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_rollout_resumes_it_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // One new container at a time, a second apart: the rollout takes a while.
    let settings = [
        ("POOL_TARGET_INSTANCES", "4"),
        ("POOL_BATCH_SIZE", "1"),
        ("POOL_BATCH_SPACING_IN_SECONDS", "1"),
        ("WARMPOOL_MAX_SURGE", "1"),
    ];
    let mut first = Proc::spawn(dir.path(), &settings);
    wait_ready(&first.client, "default", 4, T).await;
    first
        .client
        .patch_pool_settings("default", &env_change("2"))
        .await
        .unwrap();
    // Midway: some new ready, some old still ready.
    poll(T, "the rollout to be midway", || async {
        let d = first.client.pool("default").await.ok()?;
        (d.rollout.updated_ready >= 1 && d.rollout.stale_ready >= 1).then_some(())
    })
    .await;
    first.kill9();

    let second = Proc::spawn(dir.path(), &settings);
    let d = detail(&second.client, "default").await;
    assert_eq!(d.revision, 2, "the new revision survived the crash");
    let done = wait_phase(&second.client, "default", "complete", T).await;
    assert_eq!(done.rollout.updated_ready, 4);
    assert_eq!(done.rollout.stale_ready, 0);
    wait_ready(&second.client, "default", 4, T).await;
    assert!(ready_revisions(&second.client, "default")
        .await
        .iter()
        .all(|r| *r == 2));
    // The books balance: what runs with our tag is what the store says is live.
    let any = second
        .client
        .containers(&ContainerQuery::default())
        .await
        .unwrap()
        .containers
        .into_iter()
        .find(|c| c.state == "ready")
        .unwrap();
    let instance = common::instance_of_child(common::pid_of(&any.runtime_handle.unwrap()));
    let client = &second.client;
    poll(T, "runtime and store to agree", || {
        let instance = instance.clone();
        async move {
            let running: BTreeSet<String> = common::tagged_processes(&instance)
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            (running == common::live_ids(client).await?).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_claims_during_a_rollout_get_distinct_containers() {
    let wp = InProc::start(&[
        ("WARMPOOL_RUNTIME", "sim"),
        ("POOL_TARGET_INSTANCES", "100"),
        ("POOL_BATCH_SIZE", "100"),
        ("WARMPOOL_MAX_INSTANCES", "2000"),
    ])
    .await;
    let client = wp.client.clone();
    wait_ready(&client, "default", 100, T).await;
    client
        .patch_pool_settings("default", &env_change("2"))
        .await
        .unwrap();
    let claims = (0..1000).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.claim(&ClaimRequest::default()).await })
    });
    let mut ids = HashSet::new();
    let mut revisions = BTreeSet::new();
    for c in futures_util::future::join_all(claims).await {
        let c = c.unwrap().expect("every claim succeeds");
        assert!(ids.insert(c.id.clone()), "{} handed out twice", c.id);
    }
    assert_eq!(ids.len(), 1000);
    for id in ids.iter().take(50) {
        revisions.insert(client.container(id).await.unwrap().revision);
    }
    assert!(!revisions.is_empty());
    wait_phase(&client, "default", "complete", T).await;
    common::books_balance(wp.app(), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_rolls_out_from_one_image_tag_to_another() {
    if !common::docker_ready("docker_rolls_out_from_one_image_tag_to_another") {
        return;
    }
    let (a, b) = (
        "warmpool/sample-app:rollout-a",
        "warmpool/sample-app:rollout-b",
    );
    common::docker(&["tag", common::IMAGE, a]);
    common::docker(&["tag", common::IMAGE, b]);
    let wp = InProc::start(&[
        ("WARMPOOL_RUNTIME", "docker"),
        ("WARMPOOL_DOCKER_NETWORK", "warmpool-test"),
        ("WARMPOOL_IMAGE", a),
        ("POOL_TARGET_INSTANCES", "2"),
        ("WARMPOOL_STOP_GRACE_SECONDS", "2"),
    ])
    .await;
    let client = wp.client.clone();
    wait_ready(&client, "default", 2, T).await;
    let instance = wp.app().store.instance_id().to_owned();
    let put = client
        .patch_pool_settings(
            "default",
            &PoolSettings {
                image: Some(b.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(put.new_revision);
    assert_eq!(
        put.changes
            .iter()
            .map(|c| c.key.as_str())
            .collect::<Vec<_>>(),
        ["image"]
    );
    wait_phase(&client, "default", "complete", T).await;
    wait_ready(&client, "default", 2, T).await;
    // What Docker runs for this instance: only revision 2, from image b.
    poll(T, "docker to list only the new revision", || async {
        let listed = common::docker(&[
            "ps",
            "--filter",
            &format!("label=dev.warmpool.instance={instance}"),
            "--format",
            "{{.Image}} {{.Label \"dev.warmpool.revision\"}}",
        ]);
        let rows: Vec<&str> = listed.lines().collect();
        (rows.len() == 2 && rows.iter().all(|r| *r == format!("{b} 2"))).then_some(())
    })
    .await;
    common::books_balance(wp.app(), T).await;
}
