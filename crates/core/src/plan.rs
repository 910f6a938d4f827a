//! The reconcile planner: a pure function from (desired, observed, now) to actions.
//!
//! The reconciler driver observes the world, calls [`plan`], and executes what it
//! returns. The planner takes no other input, so every activation re-plans from
//! scratch and a lost or repeated activation is harmless.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{ContainerId, ContainerState, PoolKey, Timestamp};

/// Least time between a reconcile pass and the next one woken by an activation
/// (the engine's reconciler keeps it): a burst of claims (or exits) is served by
/// one pass, so that a pass's cost, which grows with the number of tracked
/// containers, is not paid once per claim. Refills and replacements start at
/// most this much later, which the autoscaler counts in a refill's time.
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

/// What the planner needs to know of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: ContainerId,
    pub key: PoolKey,
    pub state: ContainerState,
    /// Started on demand for a waiting claim: it belongs to that claim, not to the
    /// pool, so it neither counts toward the pool's target nor is ever surplus.
    pub on_demand: bool,
    /// The revision of its pool it was started from.
    pub revision: u32,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// An allocated container with an idle timeout and nothing in flight: when it
    /// becomes idle (last activity + timeout). `None` while busy or without one.
    pub idle_at: Option<Timestamp>,
}

/// What the driver observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub containers: Vec<ObservedContainer>,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a batch of `count` containers for `key`, from `revision`.
    Launch {
        key: PoolKey,
        count: u32,
        revision: u32,
    },
    /// Stop a live container gracefully.
    Stop { id: ContainerId, reason: StopReason },
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

#[derive(Default)]
struct Supply {
    /// Ready containers of the pool's revision, oldest first once sorted.
    ready: Vec<(Timestamp, ContainerId)>,
    /// Starting containers of the pool's revision that will join it.
    starting: u32,
    /// Ready containers of other revisions (stale), oldest first once sorted.
    stale_ready: Vec<(Timestamp, ContainerId)>,
    /// Starting containers of other revisions: they join as stale ones.
    stale_starting: u32,
}

/// Plans the actions that bring `observed` toward `desired` at time `now`.
///
/// Guarantees (property-tested below):
/// - a pool is never given more creations than bring its ready + starting count to
///   its target, and `starting` containers count toward the target;
/// - the global cap is never exceeded by creations;
/// - at most one batch per pool per spacing interval;
/// - only expired allocated containers, surplus ready ones and failed ones are
///   acted upon: a starting or an unexpired allocated container is never touched;
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

    let mut live: u32 = 0;
    let revision: BTreeMap<&PoolKey, u32> =
        desired.pools.iter().map(|p| (&p.key, p.revision)).collect();
    let current = |c: &ObservedContainer| revision.get(&c.key) == Some(&c.revision);
    let mut supply: BTreeMap<&PoolKey, Supply> = BTreeMap::new();
    for c in &observed.containers {
        if c.state.is_live() {
            live = live.saturating_add(1);
        }
        match c.state {
            ContainerState::Allocated => {
                let end = |t: Option<Timestamp>, reason| t.map(|t| (t, reason));
                // The earlier of its lifetime's end and its idle deadline.
                let due = [
                    end(c.expires_at, StopReason::Expired),
                    end(c.idle_at, StopReason::Idle),
                ]
                .into_iter()
                .flatten()
                .min_by_key(|(t, _)| *t);
                match due {
                    Some((t, reason)) if t <= now => {
                        out.actions.push(Action::Stop { id: c.id, reason })
                    }
                    Some((t, _)) => wake(t, &mut out),
                    None => {}
                }
            }
            ContainerState::Failed => out.actions.push(Action::Remove { id: c.id }),
            ContainerState::Ready if !c.on_demand => {
                let s = supply.entry(&c.key).or_default();
                if current(c) {
                    s.ready.push((c.created_at, c.id))
                } else {
                    s.stale_ready.push((c.created_at, c.id))
                }
            }
            ContainerState::Starting if !c.on_demand => {
                let s = supply.entry(&c.key).or_default();
                if current(c) {
                    s.starting += 1
                } else {
                    s.stale_starting += 1
                }
            }
            _ => {}
        }
    }

    // Ready containers of pools that are no longer desired are surplus.
    for (key, s) in &supply {
        if !desired.pools.iter().any(|p| &p.key == *key) {
            for (_, id) in s.ready.iter().chain(&s.stale_ready) {
                out.actions.push(Action::Stop {
                    id: *id,
                    reason: StopReason::Surplus,
                });
            }
        }
    }

    let mut room = desired.max_instances.saturating_sub(live);
    for pool in &desired.pools {
        let mut s = supply.remove(&pool.key).unwrap_or_default();
        let stop = |ready: &mut Vec<(Timestamp, ContainerId)>, n: u32, reason, out: &mut Plan| {
            ready.sort();
            for (_, id) in ready.drain(..n as usize) {
                out.actions.push(Action::Stop { id, reason });
            }
        };
        // A rollout: stale ready containers stop, oldest first, only as far as
        // the ready ones left (of any revision) stay at the target.
        let ready = (s.ready.len() + s.stale_ready.len()) as u32;
        let outdated = ready
            .saturating_sub(pool.target)
            .min(s.stale_ready.len() as u32);
        stop(&mut s.stale_ready, outdated, StopReason::Outdated, &mut out);
        let have = s.ready.len() as u32 + s.starting;
        let stale = s.stale_ready.len() as u32 + s.stale_starting;
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
            let surplus =
                (have - pool.target).min((s.ready.len() as u32).saturating_sub(pool.target));
            stop(&mut s.ready, surplus, StopReason::Surplus, &mut out);
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
    use crate::Location;
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

    fn container(l: Location, state: ContainerState, at: i64) -> ObservedContainer {
        ObservedContainer {
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

    fn creates(p: &Plan) -> u32 {
        p.actions
            .iter()
            .map(|a| match a {
                Action::Launch { count, .. } => *count,
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn empty_pool_gets_one_batch() {
        let d = Desired {
            pools: vec![pool(Location::Default, 30, 10, 10_000)],
            max_instances: 1000,
        };
        let p = plan(&d, &Observed::default(), Timestamp(0));
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
        let mut o = Observed::default();
        o.last_batch
            .insert(key(Location::Default), Timestamp(1_000));
        let p = plan(&d, &o, Timestamp(10_999));
        assert_eq!(creates(&p), 0);
        assert_eq!(p.wake_at, Some(Timestamp(11_000)));
        assert_eq!(creates(&plan(&d, &o, Timestamp(11_000))), 10);
    }

    #[test]
    fn starting_containers_count_toward_the_target_but_on_demand_ones_do_not() {
        let d = Desired {
            pools: vec![pool(Location::Default, 5, 10, 0)],
            max_instances: 1000,
        };
        let mut o = Observed::default();
        for _ in 0..3 {
            o.containers
                .push(container(Location::Default, ContainerState::Starting, 0));
        }
        let mut od = container(Location::Default, ContainerState::Starting, 0);
        od.on_demand = true;
        o.containers.push(od);
        assert_eq!(creates(&plan(&d, &o, Timestamp(0))), 2);
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
        let mut o = Observed::default();
        for _ in 0..2 {
            o.containers
                .push(container(Location::Default, ContainerState::Allocated, 0));
        }
        assert_eq!(creates(&plan(&d, &o, Timestamp(0))), 12);
    }

    #[test]
    fn lowered_target_stops_the_oldest_ready_surplus_only() {
        let d = Desired {
            pools: vec![pool(Location::Default, 2, 10, 0)],
            max_instances: 1000,
        };
        let mut o = Observed::default();
        let mut ready = vec![];
        for at in [30, 10, 20, 40] {
            let c = container(Location::Default, ContainerState::Ready, at);
            ready.push((at, c.id));
            o.containers.push(c);
        }
        o.containers
            .push(container(Location::Default, ContainerState::Starting, 5));
        let p = plan(&d, &o, Timestamp(100));
        ready.sort();
        // Target 2 of 4 ready and 1 starting: the two oldest ready stop, not a
        // third for the one still starting (that one goes once it is ready).
        let expected: Vec<_> = ready[..2]
            .iter()
            .map(|(_, id)| Action::Stop {
                id: *id,
                reason: StopReason::Surplus,
            })
            .collect();
        assert_eq!(p.actions, expected);
    }

    #[test]
    fn undesired_pools_are_drained_of_ready_containers() {
        let d = Desired {
            pools: vec![],
            max_instances: 1000,
        };
        let c = container(Location::Apac, ContainerState::Ready, 0);
        let o = Observed {
            containers: vec![c.clone()],
            ..Default::default()
        };
        assert_eq!(
            plan(&d, &o, Timestamp(0)).actions,
            vec![Action::Stop {
                id: c.id,
                reason: StopReason::Surplus
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
        let o = Observed {
            containers: vec![expired.clone(), later, failed.clone()],
            ..Default::default()
        };
        let p = plan(&d, &o, Timestamp(100));
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
        let o = Observed {
            containers: vec![c.clone()],
            ..Default::default()
        };
        let early = plan(&d, &o, Timestamp(2_999));
        assert!(early.actions.is_empty());
        assert_eq!(
            early.wake_at,
            Some(Timestamp(3_000)),
            "wake when it becomes idle"
        );
        assert_eq!(
            plan(&d, &o, Timestamp(3_000)).actions,
            vec![Action::Stop {
                id: c.id,
                reason: StopReason::Idle
            }]
        );
        // Busy (no idle deadline): only the lifetime counts.
        let mut busy = c.clone();
        busy.idle_at = None;
        let o = Observed {
            containers: vec![busy],
            ..Default::default()
        };
        assert_eq!(
            plan(&d, &o, Timestamp(3_000)).wake_at,
            Some(Timestamp(10_000))
        );
    }

    #[test]
    fn a_rollout_starts_new_containers_first_and_stops_old_ones_as_new_ones_are_ready() {
        let mut d = Desired {
            pools: vec![pool(Location::Default, 4, 10, 0)],
            max_instances: 1000,
        };
        let mut o = Observed::default();
        for at in 0..4 {
            o.containers
                .push(container(Location::Default, ContainerState::Ready, at));
        }
        d.pools[0].revision = 1;
        d.pools[0].surge = 1;
        let p = plan(&d, &o, Timestamp(10));
        assert_eq!(
            p.actions,
            vec![Action::Launch {
                key: key(Location::Default),
                count: 1,
                revision: 1
            }],
            "one above the target, nothing stopped"
        );
        apply(&mut o, &p, Timestamp(10));
        // Still starting: nothing more (the surge is used up), nothing stopped.
        assert!(plan(&d, &o, Timestamp(11)).actions.is_empty());
        advance(&mut o);
        // Ready: the oldest old one stops, and the next new one starts.
        let p = plan(&d, &o, Timestamp(12));
        let oldest = o.containers[0].id;
        assert_eq!(
            p.actions,
            vec![
                Action::Stop {
                    id: oldest,
                    reason: StopReason::Outdated
                },
                Action::Launch {
                    key: key(Location::Default),
                    count: 1,
                    revision: 1
                }
            ]
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
        let mut o = Observed::default();
        let stale = container(Location::Default, ContainerState::Ready, 0);
        o.containers.push(stale.clone());
        for at in 1..4 {
            let mut c = container(Location::Default, ContainerState::Ready, at);
            c.revision = 1;
            o.containers.push(c);
        }
        let mut refill = container(Location::Default, ContainerState::Starting, 5);
        refill.revision = 1;
        o.containers.push(refill);
        // Not yet above the target: the stale one stays, one more new starts
        // (6 in all: target + surge).
        let p = plan(&d, &o, Timestamp(10));
        assert_eq!(
            p.actions,
            vec![Action::Launch {
                key: key(Location::Default),
                count: 1,
                revision: 1
            }]
        );
        apply(&mut o, &p, Timestamp(10));
        // Once the extra one is ready (the refill still starting), the ready
        // count is above the target: the stale one goes.
        let extra = o.containers.last_mut().unwrap();
        extra.state = ContainerState::Ready;
        let p = plan(&d, &o, Timestamp(11));
        assert!(p.actions.contains(&Action::Stop {
            id: stale.id,
            reason: StopReason::Outdated
        }));
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
            let mut o = Observed::default();
            for at in 0..before {
                o.containers.push(container(
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
                let p = plan(&d, &o, now);
                apply(&mut o, &p, now);
                assert!(ready(&o, &key(Location::Default)) >= floor, "step {step}");
                assert!(supply(&o, &key(Location::Default)) <= target + surge);
                advance(&mut o);
            }
            assert_eq!(current_supply(&o, &d.pools[0]), target);
            assert!(o.containers.iter().all(|c| c.revision == 1));
        }
    }

    fn arb_state() -> impl Strategy<Value = ContainerState> {
        prop::sample::select(ContainerState::ALL.to_vec())
    }

    fn arb_location() -> impl Strategy<Value = Location> {
        prop::sample::select(vec![Location::Default, Location::Weur, Location::Apac])
    }

    fn arb_observed() -> impl Strategy<Value = Observed> {
        let c = (
            arb_location(),
            arb_state(),
            any::<bool>(),
            0i64..1000,
            prop::option::of(0i64..2000),
            prop::option::of(0i64..2000),
            0u32..3,
        )
            .prop_map(
                |(l, state, on_demand, at, exp, idle, revision)| ObservedContainer {
                    id: ContainerId::random(),
                    key: key(l),
                    state,
                    on_demand,
                    revision,
                    created_at: Timestamp(at),
                    expires_at: exp.map(Timestamp),
                    idle_at: idle.map(Timestamp),
                },
            );
        (
            prop::collection::vec(c, 0..60),
            prop::collection::btree_map(
                arb_location().prop_map(key),
                (0i64..1000).prop_map(Timestamp),
                0..3,
            ),
        )
            .prop_map(|(containers, last_batch)| Observed {
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

    fn supply(o: &Observed, k: &PoolKey) -> u32 {
        o.containers
            .iter()
            .filter(|c| &c.key == k)
            .filter(|c| {
                matches!(c.state, ContainerState::Ready | ContainerState::Starting) && !c.on_demand
            })
            .count() as u32
    }

    /// Ready and starting pool containers of the pool's revision.
    fn current_supply(o: &Observed, dp: &DesiredPool) -> u32 {
        o.containers
            .iter()
            .filter(|c| c.key == dp.key && c.revision == dp.revision && !c.on_demand)
            .filter(|c| matches!(c.state, ContainerState::Ready | ContainerState::Starting))
            .count() as u32
    }

    /// Ready pool containers of any revision.
    fn ready(o: &Observed, k: &PoolKey) -> u32 {
        o.containers
            .iter()
            .filter(|c| &c.key == k && c.state == ContainerState::Ready && !c.on_demand)
            .count() as u32
    }

    fn live(o: &Observed) -> u32 {
        o.containers.iter().filter(|c| c.state.is_live()).count() as u32
    }

    /// A perfect runtime between two activations: every start finishes.
    fn advance(o: &mut Observed) {
        for c in &mut o.containers {
            if c.state == ContainerState::Starting {
                c.state = ContainerState::Ready;
            }
        }
    }

    /// Applies a plan the way a perfect runtime would: creations start (and become
    /// ready at the next [`advance`]); stops and removals complete at once.
    fn apply(o: &mut Observed, p: &Plan, now: Timestamp) {
        for a in &p.actions {
            match a {
                Action::Launch {
                    key,
                    count,
                    revision,
                } => {
                    o.last_batch.insert(key.clone(), now);
                    for _ in 0..*count {
                        o.containers.push(ObservedContainer {
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
                Action::Stop { id, .. } | Action::Remove { id } => {
                    o.containers.retain(|c| c.id != *id)
                }
            }
        }
    }

    proptest! {
        #[test]
        fn plan_respects_targets_cap_and_spacing(d in arb_desired(), o in arb_observed(), now in 0i64..2000) {
            let now = Timestamp(now);
            let p = plan(&d, &o, now);
            let total: u32 = creates(&p);
            if total > 0 {
                prop_assert!(live(&o) + total <= d.max_instances);
            }
            for a in &p.actions {
                match a {
                    Action::Launch { key, count, revision } => {
                        let dp = d.pools.iter().find(|p| &p.key == key).unwrap();
                        prop_assert!(*count >= 1 && *count <= dp.batch_size);
                        prop_assert_eq!(*revision, dp.revision);
                        // Stops of the same plan come first.
                        let stopped = p.actions.iter().filter(|a| matches!(a, Action::Stop { id, reason: StopReason::Outdated | StopReason::Surplus } if o.containers.iter().any(|c| c.id == *id && &c.key == key))).count() as u32;
                        let stale = supply(&o, key) - current_supply(&o, dp);
                        if stale == 0 {
                            prop_assert!(current_supply(&o, dp) + count <= dp.target);
                        } else {
                            // During a rollout: at most target + surge in all,
                            // and new ones for the target and each stale one.
                            prop_assert!(supply(&o, key) - stopped + count <= dp.target + dp.surge);
                            prop_assert!(current_supply(&o, dp) + count <= dp.target + dp.surge);
                        }
                        if let Some(last) = o.last_batch.get(key) {
                            prop_assert!(*last + dp.spacing <= now);
                        }
                    }
                    Action::Stop { id, reason } => {
                        let c = o.containers.iter().find(|c| c.id == *id).unwrap();
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
                    Action::Remove { id } => {
                        let c = o.containers.iter().find(|c| c.id == *id).unwrap();
                        prop_assert_eq!(c.state, ContainerState::Failed);
                    }
                }
            }
            // No pool is driven below its target by surplus stops, nor its
            // ready count below the target by a rollout's stops.
            for dp in &d.pools {
                let stopped = |r: StopReason| p.actions.iter().filter(|a| matches!(a, Action::Stop { id, reason } if *reason == r && o.containers.iter().any(|c| c.id == *id && c.key == dp.key))).count() as u32;
                let surplus = stopped(StopReason::Surplus);
                if surplus > 0 {
                    prop_assert!(current_supply(&o, dp) - surplus >= dp.target);
                    // Nor is a ready one stopped for one still starting.
                    prop_assert!(ready(&o, &dp.key) - stopped(StopReason::Outdated) - surplus >= dp.target);
                }
                let outdated = stopped(StopReason::Outdated);
                if outdated > 0 {
                    prop_assert!(ready(&o, &dp.key) - outdated - surplus >= dp.target);
                }
            }
        }

        #[test]
        fn applying_plans_converges(d in arb_desired(), o in arb_observed()) {
            let mut o = o;
            // Lifetimes end within the horizon; after that nothing is left to do.
            let mut now = Timestamp(2000);
            let mut quiet = false;
            for _ in 0..200 {
                advance(&mut o);
                let p = plan(&d, &o, now);
                if p.actions.is_empty() {
                    quiet = true;
                    break;
                }
                apply(&mut o, &p, now);
                now = now + Duration::from_millis(500);
            }
            prop_assert!(quiet, "no fixed point after 200 steps");
            // At the fixed point every pool is at target, or the cap is reached.
            for dp in &d.pools {
                let s = current_supply(&o, dp);
                prop_assert!(s == dp.target || (s < dp.target && live(&o) >= d.max_instances), "pool {} at {s} of {}", dp.key, dp.target);
                if s == dp.target {
                    prop_assert_eq!(supply(&o, &dp.key), s, "stale containers left in {}", dp.key);
                }
            }
            prop_assert!(plan(&d, &o, now).actions.is_empty());
        }
    }
}
