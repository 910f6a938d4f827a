//! The runtime conformance suite: what every `Runtime` must do, run by the tests of
//! each runtime (process, sim, docker) against the real thing.

use std::future::Future;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use warmpool_core::ContainerId;

use crate::{ContainerSpec, HttpProbe, Inspection, Runtime, RuntimeEvent, Started};

/// Runs the suite. `spec()` makes a fresh container spec; `reachable` says whether
/// the started app really answers on its address (not so for the simulated
/// runtime); `kill` kills a running container from outside warmpool (`kill -9`,
/// `docker kill`, ...).
pub async fn check<S, K, F>(rt: &dyn Runtime, spec: S, reachable: bool, kill: K)
where
    S: Fn() -> ContainerSpec,
    K: Fn(ContainerId, Started) -> F,
    F: Future<Output = ()>,
{
    let name = rt.name();
    let ready_within = Duration::from_secs(30);

    // Create, ready, reachable, listed.
    let a = spec();
    let started = rt.start(&a).await.expect("start");
    rt.wait_ready(&a, &started, ready_within)
        .await
        .unwrap_or_else(|e| panic!("{name}: not ready: {e}"));
    if reachable {
        assert!(
            HttpProbe::new()
                .check(&started.address, &a.template.health_path)
                .await,
            "{name}: {} does not answer",
            started.address
        );
    }
    assert_eq!(
        rt.inspect(a.id, &started.handle).await.unwrap(),
        Inspection::Running,
        "{name}"
    );
    let owned = rt.list_owned().await.unwrap();
    let mine = owned
        .iter()
        .find(|o| o.id == a.id)
        .unwrap_or_else(|| panic!("{name}: list_owned misses a running container"));
    assert!(mine.running, "{name}");
    assert_eq!(mine.handle, started.handle, "{name}");

    // Stop, remove; both idempotent; gone from the list.
    rt.stop(a.id, &started.handle, Duration::from_secs(5))
        .await
        .expect("stop");
    assert_ne!(
        rt.inspect(a.id, &started.handle).await.unwrap(),
        Inspection::Running,
        "{name}: still running after stop"
    );
    rt.remove(a.id, &started.handle).await.expect("remove");
    rt.remove(a.id, &started.handle)
        .await
        .expect("second remove");
    rt.stop(a.id, &started.handle, Duration::ZERO)
        .await
        .expect("stop after remove");
    assert!(
        rt.list_owned()
            .await
            .unwrap()
            .iter()
            .all(|o| o.id != a.id || !o.running),
        "{name}: a removed container is listed as running"
    );

    // An exit from outside is noticed, as an event naming the container.
    let b = spec();
    let mut events = rt.subscribe();
    let started = rt.start(&b).await.expect("start");
    rt.wait_ready(&b, &started, ready_within)
        .await
        .unwrap_or_else(|e| panic!("{name}: not ready: {e}"));
    kill(b.id, started.clone()).await;
    let noticed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(RuntimeEvent::Exited { id, .. }) if id == b.id => return,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("{name}: event channel closed"),
            }
        }
    })
    .await;
    assert!(
        noticed.is_ok(),
        "{name}: the kill was not noticed within 10 s"
    );
    rt.stop(b.id, &started.handle, Duration::ZERO)
        .await
        .unwrap();
    rt.remove(b.id, &started.handle).await.unwrap();
}
