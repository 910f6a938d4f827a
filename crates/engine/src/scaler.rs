//! The autoscaler's state: each pool key's signals (claim rate, start times),
//! its hold of recent sizes and its last decision, fed by claims and starts.
//! What a pass does with it is `scaling.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use warmpool_core::scale::{ClaimRate, Decision, Hold, Reason, StartTimes};
use warmpool_core::{Desired, Location, PoolKey, Timestamp};
use warmpool_store::{PoolSizeRow, PoolWrite};

/// The start time assumed before any start of a pool was measured.
pub const DEFAULT_START: Duration = Duration::from_secs(1);

/// One pool key's signals and its last decision.
#[derive(Default)]
pub(crate) struct KeyScale {
    pub(crate) claims: ClaimRate,
    pub(crate) last_claim: Option<Timestamp>,
    pub(crate) starts: StartTimes,
    pub(crate) hold: Hold,
    /// The last decision (`None`: none yet).
    pub(crate) decision: Option<Decision>,
    /// The size the policy called for before the global cap (what is stored,
    /// and what an event is recorded for: the cap's room moves with every
    /// claim near the cap, the policy's size does not).
    pub(crate) wanted: u32,
    /// Active until (restored from the store: the last claim plus the delay).
    pub(crate) restored_active_until: Option<Timestamp>,
    /// Active until, as the last pass saw it.
    pub(crate) active_until: Option<Timestamp>,
    /// The store's row differs from `decision` (written by [`Engine::persist_sizes`]).
    pub(crate) dirty: bool,
    /// The row is to be deleted (an auto location gone idle).
    pub(crate) gone: bool,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) keys: HashMap<PoolKey, KeyScale>,
    /// Pool events of size changes (and sizes of dropped keys to delete), not
    /// yet written.
    pub(crate) events: Vec<PoolWrite>,
    /// The desired state of the last pass, and the pool set's own (static)
    /// desired state it was made from (a changed set makes it stale).
    pub(crate) last: Option<(Arc<Desired>, Arc<Desired>)>,
}

/// The autoscaler's state (one per engine).
#[derive(Default)]
pub(crate) struct Scaler {
    pub(crate) inner: Mutex<Inner>,
    /// Held while the changed sizes are taken and written, so that writes commit
    /// in the order their contents were taken.
    pub(crate) writing: tokio::sync::Mutex<()>,
}

impl Scaler {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a claim for `key` (a pool with a policy).
    pub(crate) fn claimed(&self, key: &PoolKey, at: Timestamp) {
        let mut inner = self.lock();
        let k = inner.keys.entry(key.clone()).or_default();
        k.claims.record(at);
        k.last_claim = Some(at);
    }

    /// Records how long a container of `key` took to become ready.
    pub(crate) fn started(&self, key: &PoolKey, took: Duration) {
        self.lock()
            .keys
            .entry(key.clone())
            .or_default()
            .starts
            .record(took);
    }

    /// Restores the sizes the store kept (at start-up).
    pub(crate) fn restore(&self, rows: Vec<PoolSizeRow>) {
        let mut inner = self.lock();
        for r in rows {
            let Ok(location) = r.location.parse::<Location>() else {
                continue;
            };
            let k = inner
                .keys
                .entry(PoolKey::new(r.pool.as_str(), location))
                .or_default();
            k.hold = Hold::restored(r.size, r.since);
            k.wanted = r.size;
            k.restored_active_until = r.active_until;
            k.decision = Some(Decision {
                size: r.size,
                reason: Reason::Restored,
            });
        }
    }
}
