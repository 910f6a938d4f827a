//! Autoscaling, as the engine runs it: the signals of each pool key (claim rate,
//! start times, containers in use) measured where they happen, and each pass's
//! sizes for the pools with a `ScalingPolicy` (`core::scale::decide`), with the
//! locations a policy of `locations = "auto"` keeps because claims came there.
//! Every change of a size is an event of its pool and a row of `pool_sizes`, so
//! that a restart keeps the sizes (the learned rates start over).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use warmpool_core::scale::{decide, static_size, Decision, LocationMode, Signals};
use warmpool_core::{Desired, DesiredPool, Location, PoolKey, Timestamp};
use warmpool_store::{Op, PoolSizeRow, PoolWrite};

use crate::reconciler::MIN_PASS_GAP;
use crate::scaler::{Inner, DEFAULT_START};
use crate::{error_chain, now, Engine};

impl Engine {
    /// The desired state now: the pools' static targets, and for each pool with
    /// a policy the sizes of the last pass.
    pub fn desired(&self) -> Arc<Desired> {
        let set = self.pool_set();
        if let Some((made_from, desired)) = &self.scaler.lock().last {
            if Arc::ptr_eq(made_from, &set.desired) {
                return desired.clone();
            }
        }
        set.desired.clone()
    }

    /// Counts a claim of `key` for its pool's autoscaling.
    pub(crate) fn count_claim(&self, key: &PoolKey, scaled: bool) {
        if scaled {
            self.scaler.claimed(key, now());
        }
    }

    /// Records a start time of `key`.
    pub(crate) fn count_start(&self, key: &PoolKey, took: Duration) {
        self.scaler.started(key, took);
    }

    /// Restores the sizes kept in the store (at start-up, after the pools).
    pub(crate) fn restore_sizes(&self) -> Result<(), warmpool_store::StoreError> {
        let rows = self.store.load_sizes_blocking()?;
        self.scaler.restore(rows);
        Ok(())
    }

    /// Each pass: the desired state, with the size of every location of every
    /// pool with a policy decided anew. Changes are queued for the store
    /// ([`Engine::persist_sizes`]; `true` if there are any).
    pub(crate) fn scale(&self, at: Timestamp) -> (Arc<Desired>, bool) {
        let set = self.pool_set();
        if !set.list.iter().any(|p| p.spec.scaling.is_some())
            && !self
                .scaler
                .lock()
                .keys
                .values()
                .any(|k| k.decision.is_some())
        {
            return (set.desired.clone(), false);
        }
        // Counted before the scaler's lock is taken: claims take it too.
        let (counts, live) = self.registry.key_counts();
        let max_instances = self.config.max_instances;
        let mut inner = self.scaler.lock();
        let Inner { keys, events, .. } = &mut *inner;
        let mut pools = Vec::new();
        let mut changed = false;
        for p in &set.list {
            let Some(policy) = &p.spec.scaling else {
                pools.extend(
                    set.desired
                        .pools
                        .iter()
                        .filter(|d| d.key.pool == p.name)
                        .cloned(),
                );
                continue;
            };
            // Its locations: the configured ones, and (auto) those known here.
            let mut locations: Vec<(Location, bool)> =
                p.spec.targets.iter().map(|(l, _)| (*l, true)).collect();
            for k in keys.keys().filter(|k| k.pool == p.name) {
                if !locations.iter().any(|(l, _)| *l == k.location) {
                    locations.push((k.location, false));
                }
            }
            let pool_start = keys
                .iter()
                .filter(|(k, _)| k.pool == p.name)
                .filter_map(|(_, s)| s.starts.p90())
                .max();
            for (location, configured) in locations {
                let key = p.key(location);
                let c = counts.get(&key).copied().unwrap_or_default();
                let k = keys.entry(key.clone()).or_default();
                if !configured && policy.locations != LocationMode::Auto {
                    // Claims of a location the pool does not keep: counted
                    // only; a size it had (under an auto policy) is forgotten.
                    if k.decision.is_some() {
                        k.gone = true;
                        k.dirty = true;
                        changed = true;
                    }
                    continue;
                }
                let active_until = k
                    .last_claim
                    .map(|t| t + policy.scale_down_delay)
                    .max(k.restored_active_until);
                k.active_until = active_until;
                let signals = Signals {
                    allocated: c.allocated,
                    claim_rate: k.claims.rate(at),
                    // The time a claimed container takes to be replaced: its
                    // start, and the wait for the pass that starts it.
                    start_time: k.starts.p90().or(pool_start).unwrap_or(DEFAULT_START)
                        + MIN_PASS_GAP,
                    active: configured || active_until.is_some_and(|t| t > at),
                    room: max_instances.saturating_sub(live) + c.supply,
                };
                let d = decide(policy, &signals, &mut k.hold, at);
                let wanted = k.hold.held().map_or(d.size, |(n, _)| n);
                if k.decision.is_none() {
                    // Its first size is stored even if it is 0.
                    changed = true;
                    k.dirty = true;
                }
                if k.wanted != wanted {
                    changed = true;
                    k.dirty = true;
                    let why = if d.size < wanted {
                        format!("capped by max_instances at {}", d.size)
                    } else {
                        d.reason.to_string()
                    };
                    events.push(PoolWrite::Event {
                        at,
                        pool: p.name.to_string(),
                        revision: None,
                        kind: "scaled".into(),
                        detail: Some(format!("{location}: {} -> {wanted} ({why})", k.wanted)),
                    });
                    k.wanted = wanted;
                }
                // An auto location with nothing kept and no claims is forgotten.
                k.gone = !configured && d.size == 0 && !signals.active;
                k.dirty |= k.gone;
                changed |= k.gone;
                pools.push(DesiredPool {
                    key,
                    target: d.size,
                    batch_size: p.spec.batch_size,
                    spacing: p.spec.batch_spacing,
                    revision: p.launch_revision,
                    surge: p.spec.max_surge.of(d.size),
                });
                k.decision = Some(d);
            }
        }
        // Keys of pools that no longer exist, or no longer scale, are dropped,
        // with the sizes the store kept of them.
        keys.retain(|key, k| {
            let keep = set
                .list
                .iter()
                .any(|p| p.name == key.pool && p.spec.scaling.is_some());
            if !keep && k.decision.is_some() {
                changed = true;
                events.push(PoolWrite::DeleteSize {
                    pool: key.pool.to_string(),
                    location: key.location.to_string(),
                });
            }
            keep
        });
        let desired = Arc::new(Desired {
            pools,
            max_instances,
        });
        inner.last = Some((set.desired.clone(), desired.clone()));
        (desired, changed)
    }

    /// Writes the sizes that changed and their events. Safe to call from several
    /// tasks: each writes what is queued when it takes its turn.
    pub(crate) async fn persist_sizes(&self) {
        let _turn = self.scaler.writing.lock().await;
        let writes = {
            let mut inner = self.scaler.lock();
            let at = now();
            let mut writes = std::mem::take(&mut inner.events);
            let mut gone = Vec::new();
            for (key, k) in inner.keys.iter_mut().filter(|(_, k)| k.dirty) {
                k.dirty = false;
                if k.gone {
                    gone.push(key.clone());
                    writes.push(PoolWrite::DeleteSize {
                        pool: key.pool.to_string(),
                        location: key.location.to_string(),
                    });
                    continue;
                }
                let (Some(d), Some((_, since))) = (&k.decision, k.hold.held()) else {
                    continue;
                };
                writes.push(PoolWrite::PutSize(PoolSizeRow {
                    pool: key.pool.to_string(),
                    location: key.location.to_string(),
                    size: k.wanted,
                    reason: d.reason.to_string(),
                    since,
                    active_until: k.active_until,
                    updated_at: at,
                }));
            }
            for key in gone {
                inner.keys.remove(&key);
            }
            writes
        };
        if writes.is_empty() {
            return;
        }
        if let Err(e) = self.store.apply(Op::Pools(writes)).await {
            let e = error_chain(&e);
            tracing::warn!(error = %e, "cannot record pool sizes");
        }
    }

    /// The size of every desired pool key and why: the last pass's decision
    /// for a pool with a policy, its static target under the global cap
    /// otherwise. `counts` and `live` are the registry's.
    pub fn sizes(
        &self,
        counts: &BTreeMap<PoolKey, crate::registry::PoolCounts>,
        live: u32,
    ) -> BTreeMap<PoolKey, Decision> {
        let desired = self.desired();
        let scaled_pools: Vec<Arc<str>> = self
            .pools()
            .iter()
            .filter(|p| p.spec.scaling.is_some())
            .map(|p| p.name.clone())
            .collect();
        let room = |key: &PoolKey| {
            let own = counts.get(key).map_or(0, |c| c.ready + c.starting);
            self.config.max_instances.saturating_sub(live) + own
        };
        let scaled = self.scaler.lock();
        desired
            .pools
            .iter()
            .map(|d| {
                let decision = scaled
                    .keys
                    .get(&d.key)
                    .and_then(|k| k.decision.clone())
                    .filter(|_| scaled_pools.contains(&d.key.pool))
                    .unwrap_or_else(|| static_size(d.target, room(&d.key)));
                (d.key.clone(), decision)
            })
            .collect()
    }
}
