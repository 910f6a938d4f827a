//! The reconcile planner: a pure function from (desired, observed, now) to actions.
//!
//! The reconciler driver observes the world, calls [`plan`], and executes what it
//! returns. The planner takes no other input, so every activation re-plans from
//! scratch and a lost or repeated activation is harmless.
//!
//! It plans from aggregates, not from a list of every container: per pool key the
//! ready and starting counts by revision, the deadlines that are due (and the next
//! one), and the failed containers. The engine's registry keeps those up to date on
//! every change, so that a pass costs O(pool keys + what is due), whatever the
//! number of containers. Which ready containers a surplus or rollout stop takes is
//! the registry's choice ([`Action::StopReady`]: those ready the longest).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{ContainerId, PoolKey, Timestamp};

/// Least time between a reconcile pass and the next one woken by an activation
/// (the engine's reconciler keeps it): a burst of claims (or exits) is served by
/// one pass, so that the passes a burst triggers are not one per claim. Refills
/// and replacements start at most this much later, which the autoscaler counts in
/// a refill's time.
pub const MIN_PASS_GAP: Duration = Duration::from_millis(10);

/// What one pool should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPool {
    pub key: PoolKey,
    /// Ready containers to keep (starting ones count toward it).
    pub target: u32,
    /// Containers created at most per batch.
    pub batch_size: u32,
    /// Minimum time between the starts of two batches of this pool.
    pub spacing: Duration,
    /// The revision new containers are started from; ready or starting
    /// containers of any other revision are stale and replaced (a rollout).
    pub revision: u32,
    /// During a rollout, containers started at most beyond the target before
    /// stale ones stop (at least 1; see [`crate::Surge`]).
    pub surge: u32,
}

/// The whole desired state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub pools: Vec<DesiredPool>,
    /// Global cap on live containers (every state but `stopped`).
    pub max_instances: u32,
}

/// Pool containers (not started on demand) of one key and one revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Supply {
    pub ready: u32,
    pub starting: u32,
}

/// Why an allocated container is due to stop, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub id: ContainerId,
    pub at: Timestamp,
    /// [`StopReason::Expired`] (its lifetime) or [`StopReason::Idle`] (its idle
    /// timeout after its last traffic).
    pub reason: StopReason,
}

/// What the driver observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Per pool key, its pool containers that are ready or starting, by the
    /// revision they were started from. Containers started on demand for a
    /// waiting claim belong to that claim, not to the pool: they are not here;
    /// nor are ready ones already taken (being claimed, or being stopped by an
    /// earlier pass whose stop the store has not recorded yet).
    pub supply: BTreeMap<PoolKey, BTreeMap<u32, Supply>>,
    /// Live containers in all (every state but `stopped`), for the global cap.
    pub live: u32,
    /// Deadlines of allocated containers: every one at or before `now`, and at
    /// least the earliest after it (for the wake time). A container may have two
    /// (its expiry and its idle deadline); the earlier counts.
    pub deadlines: Vec<Deadline>,
    /// Failed containers, whose remains are to be removed.
    pub failed: Vec<ContainerId>,
    /// When the last batch of each pool was started.
    pub last_batch: BTreeMap<PoolKey, Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// An allocated container reached the end of its lifetime.
    Expired,
    /// A ready container above its pool's target (target lowered or pool removed).
    Surplus,
    /// An allocated container that had no traffic for its idle timeout.
    Idle,
    /// A ready container of an older revision, replaced by a ready one of the
    /// pool's current revision (a rollout).
    Outdated,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Expired => "expired",
            StopReason::Surplus => "surplus",
            StopReason::Idle => "idle",
            StopReason::Outdated => "outdated",
        }
    }
}

/// Which ready containers of a key a [`Action::StopReady`] may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Of this revision (surplus of the current one).
    Revision(u32),
    /// Of any other revision than this one (stale, in a rollout).
    NotRevision(u32),
    /// Of any revision (a key no longer desired).
    Any,
}

impl Pick {
    pub fn matches(self, revision: u32) -> bool {
        match self {
            Pick::Revision(r) => revision == r,
            Pick::NotRevision(r) => revision != r,
            Pick::Any => true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a batch of `count` containers for `key`, from `revision`.
    Launch {
        key: PoolKey,
        count: u32,
        revision: u32,
    },
    /// Stop an allocated container whose deadline has passed.
    Stop { id: ContainerId, reason: StopReason },
    /// Stop `count` ready pool containers of `key` that `pick` matches, those
    /// ready the longest first ([`StopReason::Surplus`] or
    /// [`StopReason::Outdated`]).
    StopReady {
        key: PoolKey,
        count: u32,
        pick: Pick,
        reason: StopReason,
    },
    /// Remove what is left of a failed container and close its record.
    Remove { id: ContainerId },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The earliest time at which planning again may give a different answer
    /// without anything else happening (a lifetime ending, a spacing elapsing).
    pub wake_at: Option<Timestamp>,
}

/// One key's supply counted against its pool's revision.
#[derive(Default)]
struct Counted {
    /// Of the pool's revision.
    ready: u32,
    starting: u32,
    /// Of other revisions (stale).
    stale_ready: u32,
    stale_starting: u32,
}

fn count(by_revision: Option<&BTreeMap<u32, Supply>>, revision: u32) -> Counted {
    let mut c = Counted::default();
    for (r, s) in by_revision.into_iter().flatten() {
        if *r == revision {
            c.ready += s.ready;
            c.starting += s.starting;
        } else {
            c.stale_ready += s.ready;
            c.stale_starting += s.starting;
        }
    }
    c
}

/// Asks for `count` ready containers of `key` that `pick` matches to stop (none
/// when `count` is 0).
fn stop_ready(out: &mut Plan, key: &PoolKey, count: u32, pick: Pick, reason: StopReason) {
    if count > 0 {
        out.actions.push(Action::StopReady {
            key: key.clone(),
            count,
            pick,
            reason,
        });
    }
}

/// Plans the actions that bring `observed` toward `desired` at time `now`.
///
/// Guarantees (property-tested below):
/// - a pool is never given more creations than bring its ready + starting count to
///   its target, and `starting` containers count toward the target;
/// - the global cap is never exceeded by creations;
/// - at most one batch per pool per spacing interval;
/// - only allocated containers whose deadline passed, surplus ready ones and
///   failed ones are acted upon: a starting or an unexpired allocated container
///   is never touched;
/// - a rollout (ready or starting containers of another revision than the
///   pool's) starts new ones first, filling up to target + surge containers in
///   all, and stops a stale ready container only while the pool's ready count
///   stays at or above its target: the ready count never falls below
///   min(target, ready before) through the rollout's own stops. (Filling to the
///   surge, not to the target, is what lets a rollout end under steady claims,
///   which keep some of the target starting as refills all along.)
pub fn plan(desired: &Desired, observed: &Observed, now: Timestamp) -> Plan {
    let mut out = Plan::default();
    let wake = |t: Timestamp, out: &mut Plan| {
        out.wake_at = Some(out.wake_at.map_or(t, |w| w.min(t)));
    };

    // Each allocated container's earliest deadline: due ones stop, the
    // earliest of the others wakes the next pass.
    let mut earliest: BTreeMap<ContainerId, (Timestamp, StopReason)> = BTreeMap::new();
    for d in &observed.deadlines {
        let e = earliest.entry(d.id).or_insert((d.at, d.reason));
        if d.at < e.0 {
            *e = (d.at, d.reason);
        }
    }
    for (id, (at, reason)) in earliest {
        if at <= now {
            out.actions.push(Action::Stop { id, reason });
        } else {
            wake(at, &mut out);
        }
    }
    for id in &observed.failed {
        out.actions.push(Action::Remove { id: *id });
    }

    // Ready containers of keys that are no longer desired are surplus.
    for (key, by_revision) in &observed.supply {
        if !desired.pools.iter().any(|p| &p.key == key) {
            let ready: u32 = by_revision.values().map(|s| s.ready).sum();
            stop_ready(&mut out, key, ready, Pick::Any, StopReason::Surplus);
        }
    }

    let mut room = desired.max_instances.saturating_sub(observed.live);
    for pool in &desired.pools {
        let mut s = count(observed.supply.get(&pool.key), pool.revision);
        // A rollout: stale ready containers stop, oldest first, only as far as
        // the ready ones left (of any revision) stay at the target.
        let outdated = (s.ready + s.stale_ready)
            .saturating_sub(pool.target)
            .min(s.stale_ready);
        let stale_pick = Pick::NotRevision(pool.revision);
        stop_ready(
            &mut out,
            &pool.key,
            outdated,
            stale_pick,
            StopReason::Outdated,
        );
        s.stale_ready -= outdated;
        let have = s.ready + s.starting;
        let stale = s.stale_ready + s.stale_starting;
        // During a rollout the new revision fills up to the surge (the cap
        // below bounds the whole): under steady claims some of the target is
        // always starting as refills, and only the headroom above the target
        // lets the ready count pass it so that the last stale ones can go. The
        // extra ones left at the end are surplus like any other.
        let want = if stale > 0 {
            pool.target + pool.surge
        } else {
            pool.target
        };
        if stale == 0 && have > pool.target {
            // Only ready ones beyond the target stop: a ready container is not
            // stopped for one still starting (that would leave the pool short
            // until it is ready); once it is, the next pass stops the surplus.
            let surplus = (have - pool.target).min(s.ready.saturating_sub(pool.target));
            let pick = Pick::Revision(pool.revision);
            stop_ready(&mut out, &pool.key, surplus, pick, StopReason::Surplus);
        } else if have < want {
            // During a rollout the pool holds at most target + surge containers.
            let cap = if stale > 0 {
                (pool.target + pool.surge).saturating_sub(have + stale)
            } else {
                u32::MAX
            };
            if cap == 0 {
                // Ready stale ones stop as new ones become ready, which wakes
                // the reconciler.
                continue;
            }
            let next_batch = observed
                .last_batch
                .get(&pool.key)
                .map(|t| *t + pool.spacing)
                .filter(|t| *t > now);
            if let Some(t) = next_batch {
                wake(t, &mut out);
                continue;
            }
            let count = pool.batch_size.min(want - have).min(room).min(cap);
            if count > 0 {
                room -= count;
                out.actions.push(Action::Launch {
                    key: pool.key.clone(),
                    count,
                    revision: pool.revision,
                });
                if have + count < want {
                    // The next batch is due one spacing from now.
                    wake(now + pool.spacing, &mut out);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContainerState, Location};
    use proptest::prelude::*;

    fn key(l: Location) -> PoolKey {
        PoolKey::new("default", l)
    }

    fn pool(l: Location, target: u32, batch: u32, spacing_ms: u64) -> DesiredPool {
        DesiredPool {
            key: key(l),
            target,
            batch_size: batch,
            spacing: Duration::from_millis(spacing_ms),
            revision: 0,
            surge: 1,
        }
    }

    /// One container of the tests' world, as the registry knows it.
    #[derive(Clone, Debug)]
    struct C {
        id: ContainerId,
        key: PoolKey,
        state: ContainerState,
        on_demand: bool,
        revision: u32,
        /// When it became ready (the order a stop of ready ones takes).
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
        idle_at: Option<Timestamp>,
    }

    /// What the registry keeps, here as a plain list: [`observe`] aggregates it
    /// as the registry does.
    #[derive(Clone, Debug, Default)]
    struct World {
        containers: Vec<C>,
        last_batch: BTreeMap<PoolKey, Timestamp>,
    }

    fn container(l: Location, state: ContainerState, at: i64) -> C {
        C {
            id: ContainerId::random(),
            key: key(l),
            state,
            on_demand: false,
            revision: 0,
            created_at: Timestamp(at),
            expires_at: None,
            idle_at: None,
        }
    }

    fn observe(w: &World) -> Observed {
        let mut o = Observed {
            last_batch: w.last_batch.clone(),
            ..Default::default()
        };
        for c in &w.containers {
            if c.state.is_live() {
                o.live += 1;
            }
            match c.state {
                ContainerState::Ready | ContainerState::Starting if !c.on_demand => {
                    let s = o
                        .supply
                        .entry(c.key.clone())
                        .or_default()
                        .entry(c.revision)
                        .or_default();
                    if c.state == ContainerState::Ready {
                        s.ready += 1
                    } else {
                        s.starting += 1
                    }
                }
                ContainerState::Allocated => {
                    let at = |t: Option<Timestamp>, reason| {
                        t.map(|at| Deadline {
                            id: c.id,
                            at,
                            reason,
                        })
                    };
                    o.deadlines.extend(at(c.expires_at, StopReason::Expired));
                    o.deadlines.extend(at(c.idle_at, StopReason::Idle));
                }
                ContainerState::Failed => o.failed.push(c.id),
                _ => {}
            }
        }
        o
    }

    fn run(d: &Desired, w: &World, now: Timestamp) -> Plan {
        plan(d, &observe(w), now)
    }

    fn creates(p: &Plan) -> u32 {
        p.actions
            .iter()
            .map(|a| match a {
                Action::Launch { count, .. } => *count,
                _ => 0,
            })
            .sum()
    }

    /// The ready pool containers of `key` a `StopReady` may take, those ready
    /// the longest first.
    fn pickable(w: &World, key: &PoolKey, pick: Pick) -> Vec<ContainerId> {
        let mut v: Vec<_> = w
            .containers
            .iter()
            .filter(|c| &c.key == key && c.state == ContainerState::Ready && !c.on_demand)
            .filter(|c| pick.matches(c.revision))
            .map(|c| (c.created_at, c.id))
            .collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// The ids a plan stops, with `StopReady` resolved as the registry does.
    fn stopped(w: &World, p: &Plan) -> Vec<(ContainerId, StopReason)> {
        let mut out = Vec::new();
        for a in &p.actions {
            match a {
                Action::Stop { id, reason } => out.push((*id, *reason)),
                Action::StopReady {
                    key,
                    count,
                    pick,
                    reason,
                } => {
                    let ids = pickable(w, key, *pick);
                    assert!(*count as usize <= ids.len(), "{a:?} of {ids:?}");
                    out.extend(ids[..*count as usize].iter().map(|id| (*id, *reason)));
                }
                _ => {}
            }
        }
        out
    }

    #[test]
    fn empty_pool_gets_one_batch() {
        let d = Desired {
            pools: vec![pool(Location::Default, 30, 10, 10_000)],
            max_instances: 1000,
        };
        let p = run(&d, &World::default(), Timestamp(0));
        assert_eq!(
            p.actions,
            vec![Action::Launch {
                key: key(Location::Default),
                count: 10,
                revision: 0,
            }]
        );
        // The next batch is due one spacing later: plan again then.
        assert_eq!(p.wake_at, Some(Timestamp(10_000)));
    }

    #[test]
    fn spacing_holds_back_the_next_batch_and_sets_a_wake_time() {
        let d = Desired {
            pools: vec![pool(Location::Default, 30, 10, 10_000)],
            max_instances: 1000,
        };
        let mut w = World::default();
        w.last_batch
            .insert(key(Location::Default), Timestamp(1_000));
        let p = run(&d, &w, Timestamp(10_999));
        assert_eq!(creates(&p), 0);
        assert_eq!(p.wake_at, Some(Timestamp(11_000)));
        assert_eq!(creates(&run(&d, &w, Timestamp(11_000))), 10);
    }

    #[test]
    fn starting_containers_count_toward_the_target_but_on_demand_ones_do_not() {
        let d = Desired {
            pools: vec![pool(Location::Default, 5, 10, 0)],
            max_instances: 1000,
        };
        let mut w = World::default();
        for _ in 0..3 {
            w.containers
                .push(container(Location::Default, ContainerState::Starting, 0));
        }
        let mut od = container(Location::Default, ContainerState::Starting, 0);
        od.on_demand = true;
        w.containers.push(od);
        assert_eq!(creates(&run(&d, &w, Timestamp(0))), 2);
    }

    #[test]
    fn global_cap_limits_creations_across_pools() {
        let d = Desired {
            pools: vec![
                pool(Location::Default, 10, 10, 0),
                pool(Location::Weur, 10, 10, 0),
            ],
            max_instances: 14,
        };
        let mut w = World::default();
        for _ in 0..2 {
            w.containers
                .push(container(Location::Default, ContainerState::Allocated, 0));
        }
        assert_eq!(creates(&run(&d, &w, Timestamp(0))), 12);
    }

    #[test]
    fn lowered_target_stops_ready_surplus_only() {
        let d = Desired {
            pools: vec![pool(Location::Default, 2, 10, 0)],
            max_instances: 1000,
        };
        let mut w = World::default();
        for at in [30, 10, 20, 40] {
            w.containers
                .push(container(Location::Default, ContainerState::Ready, at));
        }
        w.containers
            .push(container(Location::Default, ContainerState::Starting, 5));
        // Target 2 of 4 ready and 1 starting: two ready ones stop, not a third
        // for the one still starting (that one goes once it is ready).
        assert_eq!(
            run(&d, &w, Timestamp(100)).actions,
            vec![Action::StopReady {
                key: key(Location::Default),
                count: 2,
                pick: Pick::Revision(0),
                reason: StopReason::Surplus,
            }]
        );
    }

    #[test]
    fn undesired_pools_are_drained_of_ready_containers() {
        let d = Desired {
            pools: vec![],
            max_instances: 1000,
        };
        let mut w = World::default();
        w.containers
            .push(container(Location::Apac, ContainerState::Ready, 0));
        let mut old = container(Location::Apac, ContainerState::Ready, 0);
        old.revision = 3;
        w.containers.push(old);
        w.containers
            .push(container(Location::Apac, ContainerState::Starting, 0));
        assert_eq!(
            run(&d, &w, Timestamp(0)).actions,
            vec![Action::StopReady {
                key: key(Location::Apac),
                count: 2,
                pick: Pick::Any,
                reason: StopReason::Surplus,
            }]
        );
    }

    #[test]
    fn expired_allocated_are_stopped_failed_removed_and_next_expiry_wakes() {
        let d = Desired {
            pools: vec![],
            max_instances: 1000,
        };
        let mut expired = container(Location::Default, ContainerState::Allocated, 0);
        expired.expires_at = Some(Timestamp(100));
        let mut later = container(Location::Default, ContainerState::Allocated, 0);
        later.expires_at = Some(Timestamp(500));
        let failed = container(Location::Default, ContainerState::Failed, 0);
        let w = World {
            containers: vec![expired.clone(), later, failed.clone()],
            ..Default::default()
        };
        let p = run(&d, &w, Timestamp(100));
        assert_eq!(
            p.actions,
            vec![
                Action::Stop {
                    id: expired.id,
                    reason: StopReason::Expired
                },
                Action::Remove { id: failed.id }
            ]
        );
        assert_eq!(p.wake_at, Some(Timestamp(500)));
    }

    #[test]
    fn idle_allocated_containers_stop_at_their_idle_deadline() {
        let d = Desired {
            pools: vec![],
            max_instances: 1000,
        };
        let mut c = container(Location::Default, ContainerState::Allocated, 0);
        c.expires_at = Some(Timestamp(10_000));
        c.idle_at = Some(Timestamp(3_000));
        let w = World {
            containers: vec![c.clone()],
            ..Default::default()
        };
        let early = run(&d, &w, Timestamp(2_999));
        assert!(early.actions.is_empty());
        assert_eq!(
            early.wake_at,
            Some(Timestamp(3_000)),
            "wake when it becomes idle"
        );
        // Due for both reasons: one stop, for the earlier.
        assert_eq!(
            run(&d, &w, Timestamp(20_000)).actions,
            vec![Action::Stop {
                id: c.id,
                reason: StopReason::Idle
            }]
        );
        // Busy (no idle deadline): only the lifetime counts.
        let mut busy = c.clone();
        busy.idle_at = None;
        let w = World {
            containers: vec![busy],
            ..Default::default()
        };
        assert_eq!(
            run(&d, &w, Timestamp(3_000)).wake_at,
            Some(Timestamp(10_000))
        );
    }

    #[test]
    fn a_rollout_starts_new_containers_first_and_stops_old_ones_as_new_ones_are_ready() {
        let mut d = Desired {
            pools: vec![pool(Location::Default, 4, 10, 0)],
            max_instances: 1000,
        };
        let mut w = World::default();
        for at in 0..4 {
            w.containers
                .push(container(Location::Default, ContainerState::Ready, at));
        }
        d.pools[0].revision = 1;
        d.pools[0].surge = 1;
        let p = run(&d, &w, Timestamp(10));
        assert_eq!(
            p.actions,
            vec![Action::Launch {
                key: key(Location::Default),
                count: 1,
                revision: 1
            }],
            "one above the target, nothing stopped"
        );
        apply(&mut w, &p, Timestamp(10));
        // Still starting: nothing more (the surge is used up), nothing stopped.
        assert!(run(&d, &w, Timestamp(11)).actions.is_empty());
        advance(&mut w);
        // Ready: one old one stops (the oldest), and the next new one starts.
        let p = run(&d, &w, Timestamp(12));
        assert_eq!(
            p.actions,
            vec![
                Action::StopReady {
                    key: key(Location::Default),
                    count: 1,
                    pick: Pick::NotRevision(1),
                    reason: StopReason::Outdated
                },
                Action::Launch {
                    key: key(Location::Default),
                    count: 1,
                    revision: 1
                }
            ]
        );
        assert_eq!(
            stopped(&w, &p),
            vec![(w.containers[0].id, StopReason::Outdated)]
        );
    }

    #[test]
    fn under_claims_a_rollout_fills_to_the_surge_so_the_last_stale_one_goes() {
        // Claims hold the ready count below the target: 3 new ready (one was
        // just claimed), its refill starting, 1 stale ready.
        let mut d = Desired {
            pools: vec![pool(Location::Default, 4, 10, 0)],
            max_instances: 1000,
        };
        d.pools[0].revision = 1;
        d.pools[0].surge = 2;
        let mut w = World::default();
        let stale = container(Location::Default, ContainerState::Ready, 0);
        w.containers.push(stale.clone());
        for at in 1..4 {
            let mut c = container(Location::Default, ContainerState::Ready, at);
            c.revision = 1;
            w.containers.push(c);
        }
        let mut refill = container(Location::Default, ContainerState::Starting, 5);
        refill.revision = 1;
        w.containers.push(refill);
        // Not yet above the target: the stale one stays, one more new starts
        // (6 in all: target + surge).
        let p = run(&d, &w, Timestamp(10));
        assert_eq!(
            p.actions,
            vec![Action::Launch {
                key: key(Location::Default),
                count: 1,
                revision: 1
            }]
        );
        apply(&mut w, &p, Timestamp(10));
        // Once the extra one is ready (the refill still starting), the ready
        // count is above the target: the stale one goes.
        let extra = w.containers.last_mut().unwrap();
        extra.state = ContainerState::Ready;
        let p = run(&d, &w, Timestamp(11));
        assert!(stopped(&w, &p).contains(&(stale.id, StopReason::Outdated)));
    }

    #[test]
    fn a_rollout_never_takes_the_ready_count_below_the_target_and_ends_with_only_new_ones() {
        for (target, surge, batch, before) in
            [(4, 1, 10, 4), (10, 3, 2, 10), (5, 2, 1, 3), (3, 5, 10, 3)]
        {
            let mut d = Desired {
                pools: vec![pool(Location::Default, target, batch, 0)],
                max_instances: 1000,
            };
            let mut w = World::default();
            for at in 0..before {
                w.containers.push(container(
                    Location::Default,
                    ContainerState::Ready,
                    i64::from(at),
                ));
            }
            d.pools[0].revision = 1;
            d.pools[0].surge = surge;
            let floor = target.min(before);
            for step in 0..100 {
                let now = Timestamp(step);
                let p = run(&d, &w, now);
                apply(&mut w, &p, now);
                assert!(ready(&w, &key(Location::Default)) >= floor, "step {step}");
                assert!(supply(&w, &key(Location::Default)) <= target + surge);
                advance(&mut w);
            }
            assert_eq!(current_supply(&w, &d.pools[0]), target);
            assert!(w.containers.iter().all(|c| c.revision == 1));
        }
    }

    fn arb_state() -> impl Strategy<Value = ContainerState> {
        prop::sample::select(ContainerState::ALL.to_vec())
    }

    fn arb_location() -> impl Strategy<Value = Location> {
        prop::sample::select(vec![Location::Default, Location::Weur, Location::Apac])
    }

    fn arb_world() -> impl Strategy<Value = World> {
        let c = (
            arb_location(),
            arb_state(),
            any::<bool>(),
            0i64..1000,
            prop::option::of(0i64..2000),
            prop::option::of(0i64..2000),
            0u32..3,
        )
            .prop_map(|(l, state, on_demand, at, exp, idle, revision)| C {
                id: ContainerId::random(),
                key: key(l),
                state,
                on_demand,
                revision,
                created_at: Timestamp(at),
                expires_at: exp.map(Timestamp),
                idle_at: idle.map(Timestamp),
            });
        (
            prop::collection::vec(c, 0..60),
            prop::collection::btree_map(
                arb_location().prop_map(key),
                (0i64..1000).prop_map(Timestamp),
                0..3,
            ),
        )
            .prop_map(|(containers, last_batch)| World {
                containers,
                last_batch,
            })
    }

    fn arb_desired() -> impl Strategy<Value = Desired> {
        (
            prop::collection::btree_map(
                arb_location(),
                (0u32..40, 1u32..12, 0u64..500, 0u32..3, 1u32..6),
                0..3,
            ),
            0u32..80,
        )
            .prop_map(|(pools, max_instances)| Desired {
                pools: pools
                    .into_iter()
                    .map(|(l, (t, b, s, revision, surge))| DesiredPool {
                        revision,
                        surge,
                        ..pool(l, t, b, s)
                    })
                    .collect(),
                max_instances,
            })
    }

    fn supply(w: &World, k: &PoolKey) -> u32 {
        w.containers
            .iter()
            .filter(|c| &c.key == k)
            .filter(|c| {
                matches!(c.state, ContainerState::Ready | ContainerState::Starting) && !c.on_demand
            })
            .count() as u32
    }

    /// Ready and starting pool containers of the pool's revision.
    fn current_supply(w: &World, dp: &DesiredPool) -> u32 {
        w.containers
            .iter()
            .filter(|c| c.key == dp.key && c.revision == dp.revision && !c.on_demand)
            .filter(|c| matches!(c.state, ContainerState::Ready | ContainerState::Starting))
            .count() as u32
    }

    /// Ready pool containers of any revision.
    fn ready(w: &World, k: &PoolKey) -> u32 {
        w.containers
            .iter()
            .filter(|c| &c.key == k && c.state == ContainerState::Ready && !c.on_demand)
            .count() as u32
    }

    fn live(w: &World) -> u32 {
        w.containers.iter().filter(|c| c.state.is_live()).count() as u32
    }

    /// A perfect runtime between two activations: every start finishes.
    fn advance(w: &mut World) {
        for c in &mut w.containers {
            if c.state == ContainerState::Starting {
                c.state = ContainerState::Ready;
            }
        }
    }

    /// Applies a plan the way a perfect runtime would: creations start (and become
    /// ready at the next [`advance`]); stops and removals complete at once.
    fn apply(w: &mut World, p: &Plan, now: Timestamp) {
        let gone: Vec<ContainerId> = stopped(w, p)
            .into_iter()
            .map(|(id, _)| id)
            .chain(p.actions.iter().filter_map(|a| match a {
                Action::Remove { id } => Some(*id),
                _ => None,
            }))
            .collect();
        w.containers.retain(|c| !gone.contains(&c.id));
        for a in &p.actions {
            if let Action::Launch {
                key,
                count,
                revision,
            } = a
            {
                w.last_batch.insert(key.clone(), now);
                for _ in 0..*count {
                    w.containers.push(C {
                        id: ContainerId::random(),
                        key: key.clone(),
                        state: ContainerState::Starting,
                        on_demand: false,
                        revision: *revision,
                        created_at: now,
                        expires_at: None,
                        idle_at: None,
                    });
                }
            }
        }
    }

    proptest! {
        #[test]
        fn plan_respects_targets_cap_and_spacing(d in arb_desired(), w in arb_world(), now in 0i64..2000) {
            let now = Timestamp(now);
            let p = run(&d, &w, now);
            let total: u32 = creates(&p);
            if total > 0 {
                prop_assert!(live(&w) + total <= d.max_instances);
            }
            // Every StopReady is within what it may take (asserted by `stopped`).
            let stops = stopped(&w, &p);
            let mut ids: Vec<_> = stops.iter().map(|(id, _)| *id).collect();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), stops.len(), "a container stopped twice");
            for a in &p.actions {
                match a {
                    Action::Launch { key, count, revision } => {
                        let dp = d.pools.iter().find(|p| &p.key == key).unwrap();
                        prop_assert!(*count >= 1 && *count <= dp.batch_size);
                        prop_assert_eq!(*revision, dp.revision);
                        // Stops of the same plan come first.
                        let stopped = stops.iter().filter(|(id, r)| matches!(r, StopReason::Outdated | StopReason::Surplus) && w.containers.iter().any(|c| c.id == *id && &c.key == key)).count() as u32;
                        let stale = supply(&w, key) - current_supply(&w, dp);
                        if stale == 0 {
                            prop_assert!(current_supply(&w, dp) + count <= dp.target);
                        } else {
                            // During a rollout: at most target + surge in all,
                            // and new ones for the target and each stale one.
                            prop_assert!(supply(&w, key) - stopped + count <= dp.target + dp.surge);
                            prop_assert!(current_supply(&w, dp) + count <= dp.target + dp.surge);
                        }
                        if let Some(last) = w.last_batch.get(key) {
                            prop_assert!(*last + dp.spacing <= now);
                        }
                    }
                    Action::StopReady { key, pick, reason, .. } => {
                        match (d.pools.iter().find(|p| &p.key == key), reason) {
                            (None, StopReason::Surplus) => prop_assert_eq!(*pick, Pick::Any),
                            (Some(dp), StopReason::Surplus) => prop_assert_eq!(*pick, Pick::Revision(dp.revision)),
                            (Some(dp), StopReason::Outdated) => prop_assert_eq!(*pick, Pick::NotRevision(dp.revision)),
                            _ => prop_assert!(false, "{:?}", a),
                        }
                    }
                    Action::Remove { id } => {
                        let c = w.containers.iter().find(|c| c.id == *id).unwrap();
                        prop_assert_eq!(c.state, ContainerState::Failed);
                    }
                    Action::Stop { .. } => {}
                }
            }
            for (id, reason) in &stops {
                let c = w.containers.iter().find(|c| c.id == *id).unwrap();
                match reason {
                    StopReason::Expired => prop_assert!(c.state == ContainerState::Allocated && c.expires_at.unwrap() <= now),
                    StopReason::Idle => prop_assert!(c.state == ContainerState::Allocated && c.idle_at.unwrap() <= now),
                    StopReason::Surplus => prop_assert!(c.state == ContainerState::Ready && !c.on_demand),
                    StopReason::Outdated => {
                        let dp = d.pools.iter().find(|p| p.key == c.key).unwrap();
                        prop_assert!(c.state == ContainerState::Ready && !c.on_demand && c.revision != dp.revision);
                    }
                }
            }
            // Every allocated container past a deadline stops, once.
            for c in w.containers.iter().filter(|c| c.state == ContainerState::Allocated) {
                let due = c.expires_at.into_iter().chain(c.idle_at).any(|t| t <= now);
                prop_assert_eq!(due, stops.iter().any(|(id, _)| *id == c.id));
            }
            // No pool is driven below its target by surplus stops, nor its
            // ready count below the target by a rollout's stops.
            for dp in &d.pools {
                let stopped = |r: StopReason| stops.iter().filter(|(id, reason)| *reason == r && w.containers.iter().any(|c| c.id == *id && c.key == dp.key)).count() as u32;
                let surplus = stopped(StopReason::Surplus);
                if surplus > 0 {
                    prop_assert!(current_supply(&w, dp) - surplus >= dp.target);
                    // Nor is a ready one stopped for one still starting.
                    prop_assert!(ready(&w, &dp.key) - stopped(StopReason::Outdated) - surplus >= dp.target);
                }
                let outdated = stopped(StopReason::Outdated);
                if outdated > 0 {
                    prop_assert!(ready(&w, &dp.key) - outdated - surplus >= dp.target);
                }
            }
        }

        #[test]
        fn applying_plans_converges(d in arb_desired(), w in arb_world()) {
            let mut w = w;
            // Lifetimes end within the horizon; after that nothing is left to do.
            let mut now = Timestamp(2000);
            let mut quiet = false;
            for _ in 0..200 {
                advance(&mut w);
                let p = run(&d, &w, now);
                if p.actions.is_empty() {
                    quiet = true;
                    break;
                }
                apply(&mut w, &p, now);
                now = now + Duration::from_millis(500);
            }
            prop_assert!(quiet, "no fixed point after 200 steps");
            // At the fixed point every pool is at target, or the cap is reached.
            for dp in &d.pools {
                let s = current_supply(&w, dp);
                prop_assert!(s == dp.target || (s < dp.target && live(&w) >= d.max_instances), "pool {} at {s} of {}", dp.key, dp.target);
                if s == dp.target {
                    prop_assert_eq!(supply(&w, &dp.key), s, "stale containers left in {}", dp.key);
                }
            }
            prop_assert!(run(&d, &w, now).actions.is_empty());
        }
    }
}
