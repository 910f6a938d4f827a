//! warmpool's engine: everything that decides and acts on containers, without HTTP.
//!
//! An [`Engine`] owns the store, the runtime and the in-memory registry of live
//! containers; it claims containers ([`Engine::claim`]), extends and keeps them
//! alive ([`Engine::extend`], [`Engine::keepalive`]), runs their lifecycle
//! (launch, stop, fail, remove) and the named background tasks that keep every
//! pool at its target ([`tasks`]). `warmpool`'s HTTP layer is one user of it; a
//! Rust program could run a warm pool with it alone.

mod claim;
mod config;
mod engine;
mod extend;
pub mod history;
mod launches;
mod lifecycle;
pub mod metrics;
mod pools;
mod prober;
mod reconciler;
mod recovery;
pub mod registry;
mod scaler;
pub mod scaling;
mod service;
pub mod tasks;

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use warmpool_core::Timestamp;

pub use claim::{ClaimError, ClaimRequest, Claimed, Setup, SetupError};
pub use config::{Bind, EngineConfig, PoolSpec};
pub use engine::{AppPost, Engine, Pool, ReadyHook};
pub use extend::ClaimedError;
pub use pools::{Phase, PoolError, PutOutcome, RolloutStatus};
pub use prober::FAILURES as PROBE_FAILURES;
pub use reconciler::MIN_PASS_GAP;
pub use recovery::{Recovered, RecoveryError};
pub use registry::Lease;
pub use service::OpenError;

/// The wall clock, as the core's [`Timestamp`]: the wall clock when it was
/// first read, advanced by tokio's clock since. Between two reads it is
/// monotonic, and a test that pauses tokio's clock (`tokio::time::pause`,
/// `advance`) moves the engine's time with it (lifetimes, scale-down delays).
pub fn now() -> Timestamp {
    static BASE: OnceLock<(i64, std::time::Instant)> = OnceLock::new();
    let (wall, mono) = *BASE.get_or_init(|| {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (d.as_millis() as i64, std::time::Instant::now())
    });
    let t = tokio::time::Instant::now().into_std();
    // A paused clock may be behind the base (it started before it was read).
    let ms = match t.checked_duration_since(mono) {
        Some(d) => d.as_millis() as i64,
        None => -(mono.duration_since(t).as_millis() as i64),
    };
    Timestamp(wall + ms)
}

/// Renders an error with its chain of sources: `a: b: c`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
