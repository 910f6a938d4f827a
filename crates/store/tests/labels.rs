//! Labels and metadata on containers: written with a claim's state change, read
//! back, and filtered by a label selector in SQL (`ContainerFilter::labels`).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use warmpool_core::labels::Selector;
use warmpool_core::{ContainerId, ContainerState::*, Location, PoolKey, Timestamp};
use warmpool_store::{Change, ContainerFilter, NewContainer, Store, DB_FILE};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A container of `default`/`weur` made at `at`, claimed with `labels` (none:
/// left ready, its `labels` NULL).
async fn container(store: &Store, at: i64, with: Option<BTreeMap<String, String>>) -> ContainerId {
    let id = ContainerId::random();
    store
        .insert(NewContainer {
            id,
            key: PoolKey::new("default", Location::Weur),
            runtime: "sim".into(),
            on_demand: false,
            revision: 1,
            created_at: Timestamp(at),
        })
        .await
        .unwrap();
    store
        .change(Change::new(id, Starting, Ready, Timestamp(at)))
        .await
        .unwrap();
    if let Some(l) = with {
        store
            .change(Change::new(id, Ready, Allocated, Timestamp(at)).with_labels(l))
            .await
            .unwrap();
    }
    id
}

async fn select(store: &Store, selector: &str) -> Vec<ContainerId> {
    select_limit(store, selector, None).await
}

async fn select_limit(store: &Store, selector: &str, limit: Option<u32>) -> Vec<ContainerId> {
    store
        .containers(ContainerFilter {
            labels: Some(selector.parse().unwrap()),
            limit,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[tokio::test]
async fn labels_and_metadata_are_written_with_the_claim_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = container(&store, 1, None).await;
    let row = store.container(id).await.unwrap().unwrap();
    assert!(row.labels.is_empty());
    assert_eq!(row.metadata, None);

    let l = labels(&[("team", "a"), ("example.com/tier", "free"), ("gpu", "")]);
    let meta = r#"{"user": {"id": 7}, "tags": ["x", "y"]}"#;
    store
        .change(
            Change::new(id, Ready, Allocated, Timestamp(2))
                .with_labels(l.clone())
                .with_metadata(meta),
        )
        .await
        .unwrap();
    let row = store.container(id).await.unwrap().unwrap();
    assert_eq!(row.labels, l);
    assert_eq!(
        row.metadata.as_deref(),
        Some(meta),
        "metadata is kept as sent"
    );

    // A later change without labels or metadata leaves them as they are.
    store
        .change(Change::new(id, Allocated, Stopping, Timestamp(3)).reason("released"))
        .await
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let row = store.container(id).await.unwrap().unwrap();
    assert_eq!(row.state, Stopping);
    assert_eq!(row.labels, l);
    assert_eq!(row.metadata.as_deref(), Some(meta));

    // Stored as a JSON object of strings.
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let (kind, text): (String, String) = conn
        .query_row(
            "SELECT json_type(labels), labels FROM containers WHERE id = ?1",
            [id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(kind, "object");
    assert_eq!(
        serde_json::from_str::<BTreeMap<String, String>>(&text).unwrap(),
        l
    );
}

#[tokio::test]
async fn every_operator_filters_in_sql_and_null_labels_are_no_labels() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a_free = container(&store, 1, Some(labels(&[("team", "a"), ("tier", "free")]))).await;
    let a_paid = container(&store, 2, Some(labels(&[("team", "a"), ("tier", "paid")]))).await;
    let b = container(&store, 3, Some(labels(&[("team", "b"), ("gpu", "")]))).await;
    let dotted = container(
        &store,
        4,
        Some(labels(&[
            ("example.com/team", "a"),
            ("app.kubernetes.io/name", "x-y"),
        ])),
    )
    .await;
    let none = container(&store, 5, None).await;
    let all = vec![a_free, a_paid, b, dotted, none];

    for (selector, want) in [
        ("", all.clone()),
        ("team=a", vec![a_free, a_paid]),
        ("team==a", vec![a_free, a_paid]),
        ("team!=a", vec![b, dotted, none]),
        ("tier!=free", vec![a_paid, b, dotted, none]),
        ("team in (a,b)", vec![a_free, a_paid, b]),
        ("team in (b,c)", vec![b]),
        ("team notin (a)", vec![b, dotted, none]),
        ("tier notin (free,paid)", vec![b, dotted, none]),
        ("team", vec![a_free, a_paid, b]),
        ("!team", vec![dotted, none]),
        ("gpu", vec![b]),
        ("gpu=", vec![b]),
        ("gpu in ()", vec![b]),
        ("gpu!=", vec![a_free, a_paid, dotted, none]),
        ("!gpu", vec![a_free, a_paid, dotted, none]),
        ("example.com/team=a", vec![dotted]),
        ("app.kubernetes.io/name in (x-y)", vec![dotted]),
        // `team` as a JSON path would not be `example.com/team`.
        ("example.com/team,team", vec![]),
        ("team=a,tier!=free", vec![a_paid]),
        ("team=a,tier notin (paid),!gpu", vec![a_free]),
        ("nokey!=x,!nokey,nokey notin (x)", all.clone()),
        ("nokey", vec![]),
    ] {
        assert_eq!(select(&store, selector).await, want, "{selector:?}");
    }
}

#[tokio::test]
async fn the_limit_applies_after_the_label_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for at in 0..5 {
        container(&store, at, Some(labels(&[("team", "b")]))).await;
    }
    let a: Vec<_> = [
        container(&store, 10, Some(labels(&[("team", "a")]))).await,
        container(&store, 11, Some(labels(&[("team", "a")]))).await,
    ]
    .into();
    assert_eq!(select_limit(&store, "team=a", Some(2)).await, a);
    assert_eq!(
        select_limit(&store, "team=a", Some(1)).await,
        a[..1].to_vec()
    );
    // With the other filters too.
    let rows = store
        .containers(ContainerFilter {
            state: Some(Allocated),
            location: Some(Location::Weur),
            pool: Some("default".into()),
            live_only: true,
            labels: Some("team=a".parse().unwrap()),
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        a[..1].to_vec()
    );
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("team".to_string()),
        Just("tier".to_string()),
        Just("example.com/team".to_string()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), Just("a".into()), Just("b".into())]
}

fn set() -> impl Strategy<Value = String> {
    proptest::collection::btree_set(value(), 1..3)
        .prop_map(|s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>().join(","))
}

fn requirement() -> impl Strategy<Value = String> {
    prop_oneof![
        (key(), value()).prop_map(|(k, v)| format!("{k}={v}")),
        (key(), value()).prop_map(|(k, v)| format!("{k}!={v}")),
        (key(), set()).prop_map(|(k, s)| format!("{k} in ({s})")),
        (key(), set()).prop_map(|(k, s)| format!("{k} notin ({s})")),
        key(),
        key().prop_map(|k| format!("!{k}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The SQL translation agrees with `Selector::matches`, NULL labels included.
    #[test]
    fn sql_agrees_with_matches(
        maps in proptest::collection::vec(
            proptest::option::of(proptest::collection::btree_map(key(), value(), 0..3)), 1..6),
        reqs in proptest::collection::vec(requirement(), 0..3),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let mut ids = Vec::new();
            for (i, m) in maps.iter().enumerate() {
                // An empty map writes nothing: NULL, as no labels.
                ids.push(container(&store, i as i64, m.clone()).await);
            }
            let selector: Selector = reqs.join(",").parse().unwrap();
            let want: Vec<ContainerId> = ids
                .iter()
                .zip(&maps)
                .filter(|(_, m)| selector.matches(&(*m).clone().unwrap_or_default()))
                .map(|(id, _)| *id)
                .collect();
            let got = select(&store, &selector.to_string()).await;
            prop_assert_eq!(got, want, "{}", selector);
            Ok(())
        })?;
    }
}
