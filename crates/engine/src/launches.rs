//! The queue of the reconciler's launches: ids waiting for one of at most
//! [`MAX_CONCURRENT_LAUNCHES`] workers (`lifecycle.rs` runs them).

use std::collections::VecDeque;

use warmpool_core::{ContainerId, PoolKey};

/// At most this many of the reconciler's launches run at once; the others wait
/// in [`LaunchQueue`] as ids, not as tasks. A pass may plan tens of thousands of
/// launches (a large target, no spacing): as tasks, each would hold its whole
/// launch future (about 2 KiB) until the store and the runtime get to it, a
/// transient peak the allocator keeps as resident memory afterwards. Starts
/// beyond a few hundred at once gain nothing anyway (the store's writer and the
/// runtime serialise them). On-demand starts (a claim's) never wait here.
pub(crate) const MAX_CONCURRENT_LAUNCHES: usize = 256;

/// A launch the reconciler planned: the container (registered as `starting`),
/// its pool key and revision.
pub(crate) type Queued = (ContainerId, PoolKey, u32);

/// The launches no worker has taken yet, and how many workers run.
#[derive(Default)]
pub(crate) struct LaunchQueue {
    waiting: VecDeque<Queued>,
    workers: usize,
}

impl LaunchQueue {
    /// Queues a launch (after those queued before it); `true` when a worker is
    /// to be started for it (fewer than the maximum run), counted as running.
    pub(crate) fn push(&mut self, launch: Queued) -> bool {
        self.waiting.push_back(launch);
        let start = self.workers < MAX_CONCURRENT_LAUNCHES;
        if start {
            self.workers += 1;
        }
        start
    }

    /// The next launch for a worker; `None` when none waits, and the worker
    /// that asked is counted out (it must end).
    pub(crate) fn next(&mut self) -> Option<Queued> {
        let next = self.waiting.pop_front();
        if next.is_none() {
            self.workers = self.workers.saturating_sub(1);
        }
        next
    }

    /// Takes every waiting launch out (shutdown: none of them has begun).
    pub(crate) fn drain(&mut self) -> Vec<ContainerId> {
        self.waiting.drain(..).map(|(id, ..)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::Location;

    fn launch() -> Queued {
        (
            ContainerId::random(),
            PoolKey::new("p", Location::Default),
            1,
        )
    }

    #[test]
    fn no_more_workers_than_the_maximum_and_every_launch_in_order() {
        let mut q = LaunchQueue::default();
        let planned: Vec<Queued> = (0..1_000).map(|_| launch()).collect();
        let started = planned.iter().filter(|l| q.push((*l).clone())).count();
        assert_eq!(started, MAX_CONCURRENT_LAUNCHES, "workers started");
        // The workers take them in the order planned, then end one by one.
        let mut taken = Vec::new();
        while let Some((id, ..)) = q.next() {
            taken.push(id);
        }
        let ids: Vec<ContainerId> = planned.iter().map(|(id, ..)| *id).collect();
        assert_eq!(taken, ids);
        assert_eq!(q.workers, MAX_CONCURRENT_LAUNCHES - 1, "one worker ended");
        for _ in 1..MAX_CONCURRENT_LAUNCHES {
            assert!(q.next().is_none());
        }
        assert_eq!(q.workers, 0, "every worker ended");
        assert!(q.push(launch()), "an idle queue starts a worker again");
    }

    #[test]
    fn shutdown_drains_the_waiting_launches() {
        let mut q = LaunchQueue::default();
        let planned: Vec<Queued> = (0..300).map(|_| launch()).collect();
        for l in &planned {
            q.push(l.clone());
        }
        assert_eq!(q.next().map(|(id, ..)| id), Some(planned[0].0));
        assert_eq!(q.drain().len(), 299);
        assert!(q.next().is_none());
    }
}
