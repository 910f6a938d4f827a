//! warmpool's pure domain: ids, container states, pool keys and the reconcile planner.
//!
//! Nothing in this crate does IO or reads the clock: time is passed in as a
//! [`Timestamp`], so every decision can be driven by tests by the thousand.

mod id;
pub mod labels;
mod location;
pub mod plan;
pub mod scale;
mod state;
mod surge;
mod time;

pub use id::{ContainerId, InvalidContainerId};
pub use labels::{LabelError, Requirement, Selector, SelectorError};
pub use location::{InvalidLocation, Location, PoolKey};
pub use plan::{
    plan, Action, Deadline, Desired, DesiredPool, Observed, Pick, Plan, StopReason, Supply,
};
pub use scale::{Buffer, LocationMode, ScalingPolicy};
pub use state::{transition, ContainerState, InvalidState, InvalidTransition};
pub use surge::{InvalidSurge, Surge};
pub use time::Timestamp;

/// The `tracing` target of the spans warmpool exports as OpenTelemetry traces
/// (claim, launch, readiness, proxy, reconcile, store.commit). They are made at
/// `TRACE` level, so that without an exporter (`WARMPOOL_OTLP_ENDPOINT` unset) no
/// subscriber enables them and each costs one comparison with the maximum level.
pub const TRACE_TARGET: &str = "warmpool::trace";
