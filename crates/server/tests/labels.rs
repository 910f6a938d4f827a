//! Labels and metadata in the container views, and `GET /v1/containers?label=`
//! (issue 16): a Kubernetes label selector filters the list; one that does not
//! parse is a 422 problem naming `label` and the requirement at fault.
//!
//! Until claims carry labels, the labels are written the way a claim writes
//! them: a `ready -> allocated` change in the store, with labels and metadata.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::InProc;
use warmpool_client::ContainerQuery;
use warmpool_core::{ContainerState, Timestamp};
use warmpool_runtime::{SimMode, SimRuntime};
use warmpool_store::Change;

const WITHIN: Duration = Duration::from_secs(20);

fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Marks a ready container allocated with these labels and metadata, as a claim
/// records them.
async fn label(wp: &InProc, id: &str, l: BTreeMap<String, String>, metadata: Option<&str>) {
    let mut change = Change::new(
        id.parse().unwrap(),
        ContainerState::Ready,
        ContainerState::Allocated,
        now(),
    )
    .with_labels(l);
    change.expires_at = Some(Timestamp(now().0 + 3_600_000));
    if let Some(m) = metadata {
        change = change.with_metadata(m);
    }
    wp.app().store.change(change).await.unwrap();
}

async fn ids(wp: &InProc, selector: &str) -> Vec<String> {
    common::labelled_ids(&wp.client, selector).await
}

#[tokio::test]
async fn containers_are_listed_with_their_labels_and_filtered_by_selector() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(
        &[
            ("POOL_TARGET_INSTANCES", "3"),
            ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "3600"),
        ],
        Some(sim),
    )
    .await;
    wp.wait_ready("default", 3, WITHIN).await;
    let ready = common::listed_ids(
        &wp.client,
        ContainerQuery {
            state: Some("ready".into()),
            ..Default::default()
        },
    )
    .await;
    let (free, paid, other) = (&ready[0], &ready[1], &ready[2]);
    let meta = r#"{"user":{"id":7},"tags":["x","y"]}"#;
    label(
        &wp,
        free,
        labels(&[("team", "a"), ("tier", "free")]),
        Some(meta),
    )
    .await;
    label(
        &wp,
        paid,
        labels(&[("team", "a"), ("tier", "paid"), ("example.com/gpu", "")]),
        None,
    )
    .await;

    // The views carry them: labels as a map, metadata as the JSON sent.
    let v = wp.client.container(free).await.unwrap();
    assert_eq!(v.labels, labels(&[("team", "a"), ("tier", "free")]));
    assert_eq!(
        v.metadata,
        Some(serde_json::json!({"user": {"id": 7}, "tags": ["x", "y"]}))
    );
    let v = wp.client.container(other).await.unwrap();
    assert!(v.labels.is_empty());
    assert_eq!(v.metadata, None);
    // On the wire: `labels` always (an object), `metadata` null when none.
    let raw: serde_json::Value = wp
        .http
        .get(format!("{}/v1/containers/{other}", wp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["labels"], serde_json::json!({}));
    assert_eq!(raw["metadata"], serde_json::Value::Null);

    // The selector filters; the client URL-encodes it (spaces, `!`, parentheses).
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    let all = sorted(vec![free, paid, other]);
    for (selector, want) in [
        ("team=a", sorted(vec![free, paid])),
        ("team=a,tier!=free", vec![paid.clone()]),
        ("tier in (free, paid),!example.com/gpu", vec![free.clone()]),
        ("tier notin (free)", sorted(vec![paid, other])),
        ("example.com/gpu", vec![paid.clone()]),
        ("team!=a", vec![other.clone()]),
        ("", all.clone()),
    ] {
        let mut got = ids(&wp, selector).await;
        got.sort();
        assert_eq!(got, want, "{selector:?}");
    }
    // With the other filters, and the limit after the selector.
    let list = wp
        .client
        .containers(&ContainerQuery {
            state: Some("allocated".into()),
            label: Some("team=a".into()),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .containers;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].labels["team"], "a");

    // Unencoded `=` in a query value is valid too (`?label=team=a`).
    let r = wp
        .http
        .get(format!("{}/v1/containers?label=team=a,tier!=free", wp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: warmpool_client::ContainerList = r.json().await.unwrap();
    assert_eq!(
        list.containers.iter().map(|c| &c.id).collect::<Vec<_>>(),
        vec![paid]
    );
    wp.shutdown().await;
}

#[tokio::test]
async fn a_bad_selector_is_a_problem_naming_label_and_the_requirement() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(&[("POOL_TARGET_INSTANCES", "0")], Some(sim)).await;
    let long = "k".repeat(64);
    let long_query = format!("{long}%3Da");
    let long_requirement = format!("{long}=a");
    for (query, requirement, why) in [
        ("team%3Da,tier%20in%20(free", "tier in (free", "missing ')'"),
        ("-team%3Da", "-team=a", "must begin and end"),
        ("team%3Da%20b", "team=a b", "' ' is not allowed"),
        ("a%3Db,,c", "", "empty"),
        (
            "team%20within%20(a)",
            "team within (a)",
            "expected =, ==, !=, in or notin",
        ),
        ("!team%3Da", "!team=a", "'!' takes a key only"),
        (long_query.as_str(), long_requirement.as_str(), "at most 63"),
    ] {
        let r = wp
            .http
            .get(format!("{}/v1/containers?label={query}", wp.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{query}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["field"], "label", "{query}: {p}");
        let detail = p["detail"].as_str().unwrap();
        let named = if requirement.is_empty() {
            "requirement \"\"".to_string()
        } else {
            format!("{requirement:?}")
        };
        assert!(
            detail.contains(&named) && detail.contains(why),
            "{query}: {detail}"
        );
    }
    // The unknown-parameter message lists `label`.
    let e = wp
        .http
        .get(format!("{}/v1/containers?labels=a", wp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(e.status(), 422);
    let p: serde_json::Value = e.json().await.unwrap();
    assert_eq!(p["field"], "labels");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("state, location, pool, label or limit"),
        "{p}"
    );
    wp.shutdown().await;
}
