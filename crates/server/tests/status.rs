//! `GET /v1/status`: the named background tasks, each with its period, its runs
//! and errors, and its last run's start, duration and outcome.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{poll, InProc};
use warmpool_client::{ClaimRequest, Status, TaskView};
use warmpool_runtime::{SimMode, SimRuntime};

fn task<'a>(s: &'a Status, name: &str) -> &'a TaskView {
    s.tasks
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no task {name} in {s:?}"))
}

/// Polls the status until `f` holds.
async fn status_until(wp: &InProc, what: &str, f: impl Fn(&Status) -> bool) -> Status {
    poll(Duration::from_secs(10), what, || async {
        let s = wp.client.status().await.unwrap();
        f(&s).then_some(s)
    })
    .await
}

#[tokio::test]
async fn every_task_reports_its_runs_and_the_last_outcome() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "2"),
            ("WARMPOOL_SWEEP_SECONDS", "0.2"),
            ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
        ],
        Some(sim),
    )
    .await;
    wp.wait_ready("default", 2, Duration::from_secs(10)).await;
    let s = status_until(&wp, "a reconcile pass and a sweep", |s| {
        task(s, "reconcile").runs >= 1 && task(s, "sweep").runs >= 1 && task(s, "history").runs >= 1
    })
    .await;
    // The simulated runtime's addresses are made up: no prober.
    let names: Vec<&str> = s.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["reconcile", "sweep", "history", "prune_tombstones"]);

    let reconcile = task(&s, "reconcile");
    assert_eq!(reconcile.period_seconds, 3600.0);
    assert_eq!(reconcile.errors, 0);
    let last = reconcile.last.as_ref().expect("a finished pass");
    assert_eq!(last.outcome, "ok");
    assert!(last.detail.contains("launches"), "{last:?}");
    assert!(last.started_at.ends_with('Z'), "{last:?}");
    assert!(last.duration_ms >= 0.0);

    let sweep = task(&s, "sweep");
    assert_eq!(sweep.period_seconds, 0.2);
    let last = sweep.last.as_ref().expect("a finished sweep");
    assert_eq!(
        (last.outcome.as_str(), sweep.errors),
        ("ok", 0),
        "{sweep:?}"
    );
    assert!(last.detail.contains("2 listed"), "{last:?}");

    let prune = task(&s, "prune_tombstones");
    assert_eq!(
        (prune.period_seconds, prune.runs),
        (60.0, 0),
        "first run after a period"
    );

    // A claim activates the reconciler at once, long before its hour-long period.
    let before = task(&s, "reconcile").runs;
    wp.client.claim(&ClaimRequest::default()).await.unwrap();
    status_until(&wp, "a pass woken by the claim", |s| {
        task(s, "reconcile").runs > before
    })
    .await;
    wp.shutdown().await;
}

#[tokio::test]
async fn the_prober_is_a_task_where_addresses_are_real() {
    let mut wp = InProc::start(&[
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_PROBE_INTERVAL_SECONDS", "0.2"),
    ])
    .await;
    wp.wait_ready("default", 1, Duration::from_secs(20)).await;
    let s = status_until(&wp, "a probe round of the ready container", |s| {
        s.tasks.iter().any(|t| {
            t.name == "prober"
                && t.last
                    .as_ref()
                    .is_some_and(|l| l.detail.starts_with("1 probed, 0 unanswered"))
        })
    })
    .await;
    let prober = task(&s, "prober");
    assert_eq!((prober.period_seconds, prober.errors), (0.2, 0));
    wp.shutdown().await;
}

#[tokio::test]
async fn status_needs_a_token_when_tokens_are_set() {
    let mut wp = InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "0"),
            ("WARMPOOL_API_TOKEN", "api-secret-1234567890"),
        ],
        Some(Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"))),
    )
    .await;
    let resp = reqwest::get(format!("{}/v1/status", wp.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    wp.shutdown().await;
}
