//! The runtime conformance suite: what every `Runtime` must do, run by the tests of
//! each runtime (process, sim, Docker, Kubernetes) against the real thing. Behind
//! the cargo feature `conformance`: tests only, not the production library.

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
    let listed = rt.list_owned().await.unwrap();
    assert!(
        listed.iter().all(|o| o.id != a.id),
        "{name}: a removed container is still listed: {listed:?}"
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use tokio::sync::broadcast;
    use warmpool_core::{Location, PoolKey};

    use super::*;
    use crate::{OwnedContainer, RuntimeError, SimMode, SimRuntime, Template};

    /// The simulated runtime, except that `remove` leaves the stopped container
    /// listed.
    struct KeepsRemoved(SimRuntime);

    #[async_trait]
    impl Runtime for KeepsRemoved {
        fn name(&self) -> &'static str {
            "keeps-removed"
        }
        fn reachable(&self) -> bool {
            false
        }
        async fn start(&self, spec: &ContainerSpec) -> Result<Started, RuntimeError> {
            self.0.start(spec).await
        }
        async fn wait_ready(
            &self,
            spec: &ContainerSpec,
            started: &Started,
            timeout: Duration,
        ) -> Result<(), RuntimeError> {
            self.0.wait_ready(spec, started, timeout).await
        }
        async fn stop(
            &self,
            id: ContainerId,
            h: &str,
            grace: Duration,
        ) -> Result<(), RuntimeError> {
            self.0.stop(id, h, grace).await
        }
        async fn remove(&self, _id: ContainerId, _h: &str) -> Result<(), RuntimeError> {
            Ok(())
        }
        async fn inspect(&self, id: ContainerId, h: &str) -> Result<Inspection, RuntimeError> {
            self.0.inspect(id, h).await
        }
        async fn list_owned(&self) -> Result<Vec<OwnedContainer>, RuntimeError> {
            self.0.list_owned().await
        }
        async fn adopt(&self, owned: &OwnedContainer) -> Result<(), RuntimeError> {
            self.0.adopt(owned).await
        }
        fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
            self.0.subscribe()
        }
    }

    #[tokio::test]
    #[should_panic(expected = "a removed container is still listed")]
    async fn a_container_still_listed_after_remove_fails_the_suite() {
        let rt = Arc::new(KeepsRemoved(SimRuntime::new(
            SimMode::Instant,
            "127.0.0.1:9",
        )));
        let template = Arc::new(Template::default());
        let spec = move || ContainerSpec {
            id: ContainerId::random(),
            key: PoolKey::new("conformance", Location::Default),
            template: template.clone(),
            revision: 0,
            env: Vec::new(),
        };
        let sim = rt.clone();
        check(rt.as_ref(), spec, false, move |id, _| {
            let sim = sim.clone();
            async move {
                assert!(sim.0.kill(id, 137));
            }
        })
        .await;
    }
}
