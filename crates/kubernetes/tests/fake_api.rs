//! The fake API server itself, through a real `kube::Client`: create, get, list
//! with label and field selectors, delete (404 when gone), monotonic
//! resourceVersions and uids, a watch from a resourceVersion that ends at its
//! `timeoutSeconds`, and the 410 on demand. Its kubelet runs `sleep` here (no app:
//! the pods never get Ready), and kills it on delete and on drop.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use warmpool_kubernetes::fake::{FakeCluster, FakeOptions};

fn pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app, "tier": "x"}},
        "spec": {"containers": [{"name": "app", "image": "img"}]},
    }))
    .unwrap()
}

async fn cluster() -> FakeCluster {
    FakeCluster::start(FakeOptions::with_regions(
        vec!["sleep".into(), "30".into()],
        &["weur"],
    ))
    .await
}

fn rv(p: &Pod) -> u64 {
    p.metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn pods_are_created_read_listed_by_selectors_and_deleted() {
    let fake = cluster().await;
    let pods: Api<Pod> = Api::namespaced(fake.client(), "ns");
    let a = pods
        .create(&PostParams::default(), &pod("a", "one"))
        .await
        .unwrap();
    let b = pods
        .create(&PostParams::default(), &pod("b", "two"))
        .await
        .unwrap();
    assert!(rv(&b) > rv(&a), "resourceVersions grow");
    assert_ne!(a.metadata.uid, b.metadata.uid);
    let e = pods
        .create(&PostParams::default(), &pod("a", "one"))
        .await
        .unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 409));

    let names = |l: kube::core::ObjectList<Pod>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    };
    let all = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(all), ["a", "b"]);
    let one = pods
        .list(&ListParams::default().labels("app=two,tier=x"))
        .await
        .unwrap();
    assert_eq!(names(one), ["b"]);
    let by_name = pods
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    assert_eq!(names(by_name), ["a"]);
    let other_ns: Api<Pod> = Api::namespaced(fake.client(), "elsewhere");
    assert!(other_ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());

    // Scheduled and running: a 127.0.0.0/8 pod IP.
    let running = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let p = pods.get("a").await.unwrap();
            if let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.clone()) {
                return ip;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(running.starts_with("127."), "{running}");
    assert_eq!(fake.running_apps(), 2);

    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while pods.get_opt("a").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("deleted");
    let e = pods
        .delete("a", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(matches!(e, kube::Error::Api(s) if s.code == 404));
    drop(fake);
}

#[tokio::test]
async fn watches_resume_from_a_resource_version_end_on_time_and_expire_on_demand() {
    let fake = cluster().await;
    let pods: Api<Pod> = Api::namespaced(fake.client(), "ns");
    let a = pods
        .create(&PostParams::default(), &pod("a", "one"))
        .await
        .unwrap();
    let from = rv(&a).to_string();
    pods.create(&PostParams::default(), &pod("b", "two"))
        .await
        .unwrap();

    // From a's version: b's creation (and later changes) only, b's selector only.
    let wp = WatchParams::default().labels("app=two").timeout(1);
    let events: Vec<WatchEvent<Pod>> = tokio::time::timeout(
        Duration::from_secs(10),
        pods.watch(&wp, &from).await.unwrap().try_collect(),
    )
    .await
    .expect("the watch ends at its timeoutSeconds")
    .unwrap();
    assert!(!events.is_empty());
    let mut last = 0;
    for e in &events {
        match e {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                assert_eq!(p.metadata.name.as_deref(), Some("b"));
                assert!(rv(p) > last);
                last = rv(p);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fake.expire_watches();
    let mut stream = pods
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected a 410, got {other:?}"),
    }
    // Only the next watch expires.
    let wp = WatchParams::default().timeout(1);
    let mut stream = pods.watch(&wp, &from).await.unwrap().boxed();
    assert!(matches!(
        stream.next().await,
        Some(Ok(WatchEvent::Added(_) | WatchEvent::Modified(_)))
    ));
}
