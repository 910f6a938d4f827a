//! A lease: the one value that owns a container for one operation (a claim, a
//! stop, a removal, a failure). Only a lease marks a container as taken, and
//! dropping it gives the container back; no flag is set in one place and cleared
//! in another.

use std::sync::Arc;

use warmpool_core::ContainerId;

use super::{Entry, Registry};

/// What a lease dropped without [`Lease::commit`] gives back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GiveBack {
    /// The container is free again; if it is still ready and out of its queue,
    /// it goes to the back of it (stops, removals, failures that did not happen).
    Nothing,
    /// A claim that could not be recorded: back to the front of its ready queue,
    /// if it is still ready.
    Requeue,
    /// An on-demand start whose claim could not take it: it joins the pool.
    JoinPool,
}

/// Holds a container for one operation; see the module doc.
#[must_use = "dropping a lease gives its container back at once"]
pub struct Lease {
    registry: Arc<Registry>,
    id: ContainerId,
    entry: Entry,
    give_back: GiveBack,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id)
            .field("state", &self.entry.state)
            .field("give_back", &self.give_back)
            .finish()
    }
}

impl Lease {
    /// Made by the registry, under its lock, for a container it has marked taken.
    pub(crate) fn new(
        registry: Arc<Registry>,
        id: ContainerId,
        entry: Entry,
        give_back: GiveBack,
    ) -> Self {
        Self {
            registry,
            id,
            entry,
            give_back,
        }
    }

    pub fn id(&self) -> ContainerId {
        self.id
    }

    /// The container as it was when the lease was taken.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The operation went through (the store recorded it): the container is free
    /// again and nothing is given back.
    pub fn commit(mut self) {
        self.give_back = GiveBack::Nothing;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.registry.end_lease(self.id, self.give_back);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use warmpool_core::{ContainerState, Location, PoolKey, Timestamp};
    use warmpool_store::{Change, Op};

    use crate::registry::Registry;

    fn ready_one(r: &Arc<Registry>, key: &PoolKey) -> warmpool_core::ContainerId {
        let id = r.try_launch_on_demand(key, 0, Timestamp(0), 10).unwrap();
        r.join_pool(id);
        r.committed(&Op::Transition(Change::new(
            id,
            ContainerState::Starting,
            ContainerState::Ready,
            Timestamp(1),
        )));
        id
    }

    #[test]
    fn a_claim_lease_dropped_uncommitted_puts_the_container_back_first_in_line() {
        let r = Arc::new(Registry::default());
        let key = PoolKey::new("p", Location::Default);
        let a = ready_one(&r, &key);
        let b = ready_one(&r, &key);
        let lease = r.pop_ready(&key, 0).unwrap();
        assert_eq!(lease.id(), a);
        assert!(
            r.lease(a).is_none(),
            "a leased container cannot be taken twice"
        );
        drop(lease);
        let again = r.pop_ready(&key, 0).unwrap();
        assert_eq!(again.id(), a, "first in line again");
        assert_eq!(r.pop_ready(&key, 0).map(|l| l.id()), Some(b));
    }

    #[test]
    fn a_committed_claim_lease_gives_nothing_back() {
        let r = Arc::new(Registry::default());
        let key = PoolKey::new("p", Location::Default);
        let a = ready_one(&r, &key);
        let lease = r.pop_ready(&key, 0).unwrap();
        // What a claim does: record `ready -> allocated`, then commit.
        r.committed(&Op::Transition(Change::new(
            a,
            ContainerState::Ready,
            ContainerState::Allocated,
            Timestamp(2),
        )));
        lease.commit();
        assert!(
            r.pop_ready(&key, 0).is_none(),
            "committed: not queued again"
        );
        assert!(r.lease(a).is_some(), "but free for another operation");
    }

    #[test]
    fn an_operation_lease_frees_the_container_on_drop() {
        let r = Arc::new(Registry::default());
        let key = PoolKey::new("p", Location::Default);
        let a = ready_one(&r, &key);
        let l = r.lease(a).unwrap();
        assert!(
            r.pop_ready(&key, 0).is_none(),
            "a leased container is not handed out"
        );
        drop(l);
        let again = r.pop_ready(&key, 0).expect("back in its queue");
        assert_eq!(again.id(), a);
        drop(again);
        // Given back once, queued once: no second copy in the queue.
        let _held = r.pop_ready(&key, 0).unwrap();
        assert!(r.pop_ready(&key, 0).is_none());
    }

    #[test]
    fn an_on_demand_lease_dropped_uncommitted_joins_the_pool() {
        let r = Arc::new(Registry::default());
        let key = PoolKey::new("p", Location::Default);
        let id = r.try_launch_on_demand(&key, 0, Timestamp(0), 10).unwrap();
        r.committed(&Op::Transition(Change::new(
            id,
            ContainerState::Starting,
            ContainerState::Ready,
            Timestamp(1),
        )));
        assert!(r.pop_ready(&key, 0).is_none(), "on demand: not in the pool");
        let l = r.lease_with(id, super::GiveBack::JoinPool).expect("free");
        drop(l);
        assert_eq!(r.pop_ready(&key, 0).map(|l| l.id()), Some(id));
    }

    #[test]
    fn a_ready_container_a_lease_holds_is_neither_supply_nor_stopped_twice() {
        use crate::registry::Dispatch;
        use warmpool_core::{Desired, DesiredPool};
        let r = Arc::new(Registry::default());
        let key = PoolKey::new("p", Location::Default);
        for _ in 0..4 {
            ready_one(&r, &key);
        }
        let desired = Desired {
            pools: vec![DesiredPool {
                key: key.clone(),
                target: 2,
                batch_size: 10,
                spacing: std::time::Duration::ZERO,
                revision: 0,
                surge: 1,
            }],
            max_instances: 100,
        };
        let count = |work: &[Dispatch]| {
            let stops = work
                .iter()
                .filter(|d| matches!(d, Dispatch::Stop { .. }))
                .count();
            let launches = work
                .iter()
                .filter(|d| matches!(d, Dispatch::Launch { .. }))
                .count();
            (stops, launches)
        };
        let (first, _) = r.plan_and_dispatch(&desired, Timestamp(2));
        assert_eq!(count(&first), (2, 0), "two above the target: two stops");
        // Their stops are under way but not recorded yet: a second pass has
        // nothing to stop (it would take two more below the target).
        let (second, _) = r.plan_and_dispatch(&desired, Timestamp(3));
        assert_eq!(count(&second), (0, 0), "nothing stopped twice");
        // A claim in flight: its container no longer counts as ready supply.
        let claim = r.pop_ready(&key, 0).expect("a ready one");
        let (third, _) = r.plan_and_dispatch(&desired, Timestamp(4));
        assert_eq!(count(&third), (0, 1), "one started for the claimed one");
        drop(third);
        drop(claim);
        drop(first);
    }
}
