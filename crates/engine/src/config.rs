//! What the engine is told to do: its pools and the settings that bound them. The
//! server's config reader builds it; the engine never reads env vars or files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use warmpool_core::{Location, ScalingPolicy, Surge};
use warmpool_runtime::Template;

/// One pool: what its containers run, how many are kept ready where, the
/// defaults of its claims, and how a new template rolls out. A change to its
/// template makes a new revision; the other fields are not part of it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    pub name: String,
    /// What its containers run, shared by all of them.
    pub template: Arc<Template>,
    /// Ready containers to keep, per location that keeps a warm pool.
    pub targets: Vec<(Location, u32)>,
    pub batch_size: u32,
    pub batch_spacing: Duration,
    /// Longest lifetime a claim may ask for, and the default.
    pub max_lifetime: Duration,
    /// Default idle timeout of claims (`None`: off).
    pub idle_timeout: Option<Duration>,
    /// During a rollout, containers started beyond the target before old ones stop.
    pub max_surge: Surge,
    /// Failed starts of a new revision in a row that stop its rollout.
    pub rollout_failure_limit: u32,
    /// A rollout not complete after this long fails.
    pub progress_deadline: Duration,
    /// How its warm buffer follows demand (`None`: its targets are static).
    /// With a policy, `targets` only names the locations it keeps; their sizes
    /// are the policy's (`crate::scaling`).
    pub scaling: Option<ScalingPolicy>,
    /// Whether claims go through the app's `/admin/bind` hook.
    pub bind: Bind,
    /// The pool's labels: claims with a `selector` pick pools by them.
    pub labels: BTreeMap<String, String>,
}

/// How a claim's set-up reaches a warm container: through the app's
/// `/admin/bind` hook (`required`, `optional`), or not at all (`none`: a claim
/// with env gets a container started for it, with the env in its environment).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bind {
    /// The hook must answer 2xx to every claim that carries a set-up.
    Required,
    /// The hook is called; an app without one (404, 405, 501) is fine unless
    /// the claim carries env or files the runtime could not write, which only
    /// the hook can deliver.
    #[default]
    Optional,
    /// The hook is never called.
    None,
}

impl Bind {
    pub fn as_str(self) -> &'static str {
        match self {
            Bind::Required => "required",
            Bind::Optional => "optional",
            Bind::None => "none",
        }
    }
}

impl std::str::FromStr for Bind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "required" => Ok(Bind::Required),
            "optional" => Ok(Bind::Optional),
            "none" => Ok(Bind::None),
            other => Err(format!(
                "expected required, optional or none, got {other:?}"
            )),
        }
    }
}

/// The engine's settings. Durations of zero mean "off" where the field says so.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The pools the configuration declares; the first is the default pool
    /// (claims that name none). The store keeps the pools (the API changes
    /// them); these are applied to it at the first start and whenever they
    /// differ from what was last applied ([`crate::Engine::apply_declared`]).
    pub pools: Vec<PoolSpec>,
    /// Live containers at most, across every pool and location.
    pub max_instances: u32,
    /// How long a claim waits for an on-demand start.
    pub claim_timeout: Duration,
    /// Time a container gets to stop after SIGTERM (or its runtime's equivalent).
    pub stop_grace: Duration,
    /// How often ready containers are health-probed (zero: never).
    pub probe_interval: Duration,
    /// Longest time between two reconcile passes when nothing wakes one.
    pub reconcile_interval: Duration,
    /// How often the runtime is listed and compared with what the engine knows.
    pub sweep_interval: Duration,
    /// How long ids of ended containers keep answering 410 rather than 404.
    pub tombstone_retention: Duration,
}
