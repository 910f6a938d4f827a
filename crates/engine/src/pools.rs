//! Pools as data: each pool's settings and revisions live in the store and
//! change at runtime (create, replace, delete, roll back), and the rollout of a
//! new revision is watched to its end (complete, or failed after too many
//! failed starts in a row or past its progress deadline).
//!
//! A change to a pool's template makes a new revision, unless the template is
//! one of its earlier revisions, which is then current again (so a rollback
//! replaces nothing that already runs it). Every change is written to the store
//! with a pool event, then the pool set is replaced whole and the reconciler
//! woken; the planner does the rest (`core::plan`: new revision first, up to
//! the surge, stale ready containers stopped as new ones are ready).

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warmpool_core::{Location, PoolKey, ScalingPolicy, Surge, Timestamp};
use warmpool_runtime::Template;
use warmpool_store::{Op, PoolEventRow, PoolRecord, PoolWrite, RevisionRecord, StoreError};

use crate::config::{Bind, PoolSpec};
use crate::engine::{Pool, PoolSet, Revision};
use crate::{now, Engine};

/// `meta` key of the hash of a declared pool's settings as last applied.
fn declared_key(pool: &str) -> String {
    format!("declared_pool.{pool}")
}

/// What a change to a pool did (or, dry, would do).
#[derive(Clone, Debug)]
pub struct PutOutcome {
    /// The pool after the change.
    pub pool: Arc<Pool>,
    /// The pool before it (`None`: created).
    pub previous: Option<Arc<Pool>>,
    /// Anything changed (false: the same settings were applied again).
    pub changed: bool,
    /// Its template changed: containers of the old revision are replaced.
    pub new_revision: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no pool named {0:?}")]
    NotFound(String),
    #[error(
        "pool {pool:?} has no revision to roll back to (it is at revision {revision}, its first)"
    )]
    NoPreviousRevision { pool: String, revision: u32 },
    #[error("the pool could not be saved")]
    Store(#[source] StoreError),
    #[error("pool {pool:?} in the store cannot be read: {reason}")]
    Corrupt { pool: String, reason: String },
}

/// Where a pool's rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// New-revision containers are starting and old ready ones stopping.
    Progressing,
    /// Every ready container runs the current revision.
    Complete,
    /// It stopped (failed starts, or its progress deadline); the last
    /// complete revision keeps the pool full.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Progressing => "progressing",
            Phase::Complete => "complete",
            Phase::Failed => "failed",
        }
    }
}

/// A pool's rollout, with the counts behind its phase.
#[derive(Clone, Debug)]
pub struct RolloutStatus {
    pub revision: u32,
    pub stable_revision: u32,
    /// Ready containers of `revision`.
    pub updated_ready: u32,
    /// Ready containers of other revisions, still handed out until replaced.
    pub stale_ready: u32,
    /// Allocated containers of other revisions: never stopped by a rollout.
    pub outdated_allocated: u32,
    pub phase: Phase,
    pub error: Option<String>,
    pub started_at: Option<Timestamp>,
    /// When the rollout fails if it is not complete by then.
    pub deadline: Option<Timestamp>,
}

/// A pool's settings as stored (its template is stored by revision).
#[derive(Serialize, Deserialize)]
struct StoredSpec {
    targets: Vec<(String, u32)>,
    batch_size: u32,
    batch_spacing_ms: u64,
    max_lifetime_ms: u64,
    idle_timeout_ms: Option<u64>,
    max_surge: String,
    rollout_failure_limit: u32,
    progress_deadline_ms: u64,
    /// Absent in records from before autoscaling (and left out without a
    /// policy, so that a pool's declaration hash is what it was before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scaling: Option<StoredScaling>,
    /// Absent when `optional` (the default, and all records from before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bind: Option<String>,
    /// Absent when empty (as in all records from before pool labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

/// A scaling policy as stored.
#[derive(Serialize, Deserialize)]
struct StoredScaling {
    min: u32,
    max: Option<u32>,
    buffer: String,
    scale_down_delay_ms: u64,
    safety: f64,
    locations: String,
}

impl StoredScaling {
    fn of(p: &ScalingPolicy) -> Self {
        StoredScaling {
            min: p.min,
            max: p.max,
            buffer: p.buffer.to_string(),
            scale_down_delay_ms: ms(p.scale_down_delay),
            safety: p.safety,
            locations: p.locations.as_str().to_owned(),
        }
    }

    fn into_policy(self) -> Result<ScalingPolicy, String> {
        Ok(ScalingPolicy {
            min: self.min,
            max: self.max,
            buffer: self
                .buffer
                .parse()
                .map_err(|e: warmpool_core::scale::InvalidBuffer| e.to_string())?,
            scale_down_delay: Duration::from_millis(self.scale_down_delay_ms),
            safety: self.safety,
            locations: self
                .locations
                .parse()
                .map_err(|e: warmpool_core::scale::InvalidLocationMode| e.to_string())?,
        })
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl StoredSpec {
    fn of(spec: &PoolSpec) -> Self {
        StoredSpec {
            targets: spec
                .targets
                .iter()
                .map(|(l, n)| (l.to_string(), *n))
                .collect(),
            batch_size: spec.batch_size,
            batch_spacing_ms: ms(spec.batch_spacing),
            max_lifetime_ms: ms(spec.max_lifetime),
            idle_timeout_ms: spec.idle_timeout.map(ms),
            max_surge: spec.max_surge.to_string(),
            rollout_failure_limit: spec.rollout_failure_limit,
            progress_deadline_ms: ms(spec.progress_deadline),
            scaling: spec.scaling.as_ref().map(StoredScaling::of),
            bind: (spec.bind != Bind::default()).then(|| spec.bind.as_str().to_owned()),
            labels: spec.labels.clone(),
        }
    }

    fn into_spec(self, name: &str, template: Arc<Template>) -> Result<PoolSpec, String> {
        let targets = self
            .targets
            .into_iter()
            .map(|(l, n)| Ok((l.parse::<Location>().map_err(|e| e.to_string())?, n)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(PoolSpec {
            name: name.to_owned(),
            template,
            targets,
            batch_size: self.batch_size,
            batch_spacing: Duration::from_millis(self.batch_spacing_ms),
            max_lifetime: Duration::from_millis(self.max_lifetime_ms),
            idle_timeout: self.idle_timeout_ms.map(Duration::from_millis),
            max_surge: self.max_surge.parse::<Surge>().map_err(|e| e.to_string())?,
            rollout_failure_limit: self.rollout_failure_limit,
            progress_deadline: Duration::from_millis(self.progress_deadline_ms),
            scaling: self.scaling.map(StoredScaling::into_policy).transpose()?,
            bind: self
                .bind
                .as_deref()
                .map_or(Ok(Bind::default()), str::parse)?,
            labels: self.labels,
        })
    }
}

/// A content hash (FNV-1a, hex): revisions are found by it, and the declared
/// pools are compared by it with what was last applied.
fn hash(text: &str) -> String {
    let mut h = fnv::FnvHasher::default();
    h.write(text.as_bytes());
    format!("{:016x}", h.finish())
}

fn template_json(t: &Template) -> String {
    serde_json::to_string(t).expect("a template always serialises")
}

fn record(pool: &Pool) -> PoolRecord {
    PoolRecord {
        name: pool.name.to_string(),
        spec: serde_json::to_string(&StoredSpec::of(&pool.spec)).expect("serialises"),
        revision: pool.revision,
        stable_revision: pool.stable_revision,
        rollout_started_at: pool.rollout_started_at,
        rollout_error: pool.rollout_error.clone(),
        created_at: pool.created_at,
        updated_at: pool.updated_at,
    }
}

fn event(pool: &str, revision: Option<u32>, kind: &str, detail: String) -> PoolWrite {
    PoolWrite::Event {
        at: now(),
        pool: pool.to_owned(),
        revision,
        kind: kind.to_owned(),
        detail: Some(detail),
    }
}

/// What a declared pool is, as one hash.
fn declared_hash(spec: &PoolSpec) -> String {
    hash(&format!(
        "{}\n{}\n{}",
        spec.name,
        serde_json::to_string(&StoredSpec::of(spec)).expect("serialises"),
        template_json(&spec.template)
    ))
}

impl Engine {
    /// Loads the pools and their revisions from the store (at start-up).
    pub(crate) fn load_pools(&self) -> Result<(), PoolError> {
        let (records, revisions) = self.store.load_pools_blocking().map_err(PoolError::Store)?;
        let mut by_pool: std::collections::HashMap<String, BTreeMap<u32, Revision>> =
            Default::default();
        for r in revisions {
            let template: Template =
                serde_json::from_str(&r.template).map_err(|e| PoolError::Corrupt {
                    pool: r.pool.clone(),
                    reason: format!("revision {}: {e}", r.revision),
                })?;
            by_pool.entry(r.pool).or_default().insert(
                r.revision,
                Revision {
                    template: Arc::new(template),
                    json: r.template,
                },
            );
        }
        let mut list = Vec::new();
        for rec in records {
            let corrupt = |reason: String| PoolError::Corrupt {
                pool: rec.name.clone(),
                reason,
            };
            let template = by_pool
                .get(&rec.name)
                .and_then(|r| r.get(&rec.revision))
                .map(|r| r.template.clone())
                .ok_or_else(|| corrupt(format!("revision {} is missing", rec.revision)))?;
            let stored: StoredSpec =
                serde_json::from_str(&rec.spec).map_err(|e| corrupt(e.to_string()))?;
            let spec = stored.into_spec(&rec.name, template).map_err(corrupt)?;
            let launch_revision = if rec.rollout_error.is_some() {
                rec.stable_revision
            } else {
                rec.revision
            };
            list.push(Arc::new(Pool {
                name: rec.name.as_str().into(),
                spec,
                revision: rec.revision,
                stable_revision: rec.stable_revision,
                launch_revision,
                rollout_started_at: rec.rollout_started_at,
                rollout_error: rec.rollout_error,
                created_at: rec.created_at,
                updated_at: rec.updated_at,
            }));
        }
        *self.revisions.lock().unwrap_or_else(|e| e.into_inner()) = by_pool;
        self.set_pools(list);
        Ok(())
    }

    /// Replaces the pool set (and so the desired state) whole.
    fn set_pools(&self, list: Vec<Arc<Pool>>) {
        let set = PoolSet::new(list, self.default_pool_name(), self.config.max_instances);
        *self.pools.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }

    /// Puts `pool` in the set in place of the one of its name (`None`: removes it).
    fn swap_pool(&self, name: &str, pool: Option<Arc<Pool>>) {
        let mut list: Vec<Arc<Pool>> = self
            .pools()
            .into_iter()
            .filter(|p| &*p.name != name)
            .collect();
        list.extend(pool);
        self.set_pools(list);
    }

    /// Applies each declared pool (the configuration's) whose declaration
    /// changed since it was last applied, as [`Engine::put_pool`] would; the
    /// others keep what the API made of them since. `None` if none changed (so
    /// a restart with the same configuration changes nothing).
    pub async fn apply_declared(
        &self,
        specs: &[PoolSpec],
    ) -> Result<Option<Vec<PutOutcome>>, PoolError> {
        let mut out = Vec::new();
        for spec in specs {
            let key = declared_key(&spec.name);
            let hash = declared_hash(spec);
            let last = self
                .store
                .meta(key.clone())
                .await
                .map_err(PoolError::Store)?;
            if last.as_deref() == Some(hash.as_str()) {
                continue;
            }
            out.push(self.put_pool(spec.clone(), false).await?);
            self.store
                .apply(Op::Pools(vec![PoolWrite::Meta { key, value: hash }]))
                .await
                .map_err(PoolError::Store)?;
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// Creates or replaces a pool. A new template makes a new revision (or
    /// returns to an earlier one with the same template), which rolls out; the
    /// other settings apply at once. `dry_run`: says what would change, changes
    /// nothing.
    pub async fn put_pool(&self, spec: PoolSpec, dry_run: bool) -> Result<PutOutcome, PoolError> {
        let _writes = self.pool_writes.lock().await;
        let at = now();
        let name: Arc<str> = spec.name.as_str().into();
        let current = self.pool(&name);
        let json = template_json(&spec.template);
        // An earlier revision with this template (newest first), and the latest.
        let (known, latest) = {
            let all = self.revisions.lock().unwrap_or_else(|e| e.into_inner());
            let revisions = all.get(&*name);
            let known = revisions.and_then(|r| {
                r.iter()
                    .rev()
                    .find(|(_, rev)| rev.json == json)
                    .map(|(n, _)| *n)
            });
            let latest = revisions.and_then(|r| r.keys().next_back().copied());
            (known, latest.unwrap_or(0))
        };
        let revision = match (&current, known) {
            (Some(c), _) if c.spec.template == spec.template => c.revision,
            (_, Some(n)) => n,
            _ => latest + 1,
        };
        let new_template = revision > latest;
        let changed = current.as_ref().is_none_or(|c| c.spec != spec);
        // (stable, launch, rollout start, rollout error, created at)
        let (stable_revision, launch_revision, rollout_started_at, rollout_error, created_at) =
            match &current {
                // A new pool has nothing to roll out from.
                None => (revision, revision, None, None, at),
                Some(c) if revision == c.revision => (
                    c.stable_revision,
                    c.launch_revision,
                    c.rollout_started_at,
                    c.rollout_error.clone(),
                    c.created_at,
                ),
                // Back to the last complete revision: nothing to wait for.
                Some(c) if revision == c.stable_revision => {
                    (revision, revision, None, None, c.created_at)
                }
                Some(c) => (c.stable_revision, revision, Some(at), None, c.created_at),
            };
        let pool = Pool {
            name: name.clone(),
            spec,
            revision,
            stable_revision,
            launch_revision,
            rollout_started_at,
            rollout_error,
            created_at,
            updated_at: at,
        };
        let pool = Arc::new(pool);
        let outcome = PutOutcome {
            new_revision: current.as_ref().is_some_and(|c| c.revision != revision),
            pool: pool.clone(),
            previous: current.clone(),
            changed,
        };
        if dry_run || !changed {
            return Ok(outcome);
        }
        let mut writes = Vec::new();
        if new_template {
            writes.push(PoolWrite::Revision(RevisionRecord {
                pool: name.to_string(),
                revision,
                template: json.clone(),
                hash: hash(&json),
                created_at: at,
            }));
        }
        writes.push(PoolWrite::Put(record(&pool)));
        writes.push(match &current {
            None => event(
                &name,
                Some(revision),
                "created",
                format!("created at revision {revision}"),
            ),
            Some(c) if c.revision != revision => event(
                &name,
                Some(revision),
                "rollout-started",
                format!(
                    "revision {} replaces revision {}{}",
                    revision,
                    c.revision,
                    if new_template {
                        ""
                    } else {
                        " (an earlier template again)"
                    }
                ),
            ),
            Some(_) => event(&name, Some(revision), "updated", "settings changed".into()),
        });
        self.store
            .apply(Op::Pools(writes))
            .await
            .map_err(PoolError::Store)?;
        if new_template {
            self.revisions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(name.to_string())
                .or_default()
                .insert(
                    revision,
                    Revision {
                        template: pool.spec.template.clone(),
                        json,
                    },
                );
        }
        self.reset_start_failures(&name);
        self.swap_pool(&name, Some(pool));
        tracing::info!(pool = %name, revision, "pool saved");
        self.activate();
        Ok(outcome)
    }

    /// Deletes a pool: claims naming it are refused from now on, its ready
    /// containers stop, its allocated ones run to the end of their lifetime.
    pub async fn delete_pool(&self, name: &str) -> Result<Arc<Pool>, PoolError> {
        let _writes = self.pool_writes.lock().await;
        let pool = self
            .pool(name)
            .ok_or_else(|| PoolError::NotFound(name.to_owned()))?;
        self.store
            .apply(Op::Pools(vec![
                PoolWrite::Delete(name.to_owned()),
                event(
                    name,
                    Some(pool.revision),
                    "deleted",
                    "deleted: ready containers stop, allocated ones run to the end of their lifetime"
                        .into(),
                ),
            ]))
            .await
            .map_err(PoolError::Store)?;
        self.swap_pool(name, None);
        tracing::info!(pool = %name, "pool deleted");
        self.activate();
        Ok(pool)
    }

    /// Returns a pool to its previous revision: the last complete one while a
    /// rollout is under way or failed, else the revision before the current one.
    pub async fn rollback(&self, name: &str) -> Result<PutOutcome, PoolError> {
        let pool = self
            .pool(name)
            .ok_or_else(|| PoolError::NotFound(name.to_owned()))?;
        let template = {
            let all = self.revisions.lock().unwrap_or_else(|e| e.into_inner());
            all.get(name).and_then(|r| {
                let target = if pool.revision != pool.stable_revision {
                    r.get(&pool.stable_revision)
                } else {
                    r.range(..pool.revision).next_back().map(|(_, rev)| rev)
                };
                target.map(|rev| rev.template.clone())
            })
        };
        let Some(template) = template else {
            return Err(PoolError::NoPreviousRevision {
                pool: name.to_owned(),
                revision: pool.revision,
            });
        };
        let spec = PoolSpec {
            template,
            ..pool.spec.clone()
        };
        let out = self.put_pool(spec, false).await?;
        self.pool_event(
            name,
            Some(out.pool.revision),
            "rollback",
            format!(
                "rolled back from revision {} to revision {}",
                pool.revision, out.pool.revision
            ),
        )
        .await;
        Ok(out)
    }

    /// Appends a pool event; a failure is logged (the event is a record, not
    /// the change itself).
    async fn pool_event(&self, pool: &str, revision: Option<u32>, kind: &str, detail: String) {
        let written = self
            .store
            .apply(Op::Pools(vec![event(pool, revision, kind, detail)]))
            .await;
        if let Err(e) = written {
            tracing::warn!(pool, kind, error = %e, "cannot record a pool event");
        }
    }

    /// A pool's last `limit` events, oldest first.
    pub async fn pool_events(
        &self,
        pool: &str,
        limit: u32,
    ) -> Result<Vec<PoolEventRow>, StoreError> {
        self.store.pool_events(pool.to_owned(), limit).await
    }

    /// Where `pool`'s rollout stands, counted from the registry.
    pub fn rollout_status(&self, pool: &Pool) -> RolloutStatus {
        let c = self.registry.revision_counts(&pool.name, pool.revision);
        let phase = if pool.rollout_error.is_some() {
            Phase::Failed
        } else if pool.revision == pool.stable_revision {
            Phase::Complete
        } else {
            Phase::Progressing
        };
        RolloutStatus {
            revision: pool.revision,
            stable_revision: pool.stable_revision,
            updated_ready: c.updated_ready,
            stale_ready: c.stale_ready,
            outdated_allocated: c.outdated_allocated,
            phase,
            error: pool.rollout_error.clone(),
            started_at: pool.rollout_started_at,
            deadline: pool
                .rollout_started_at
                .filter(|_| phase == Phase::Progressing)
                .map(|t| t + pool.spec.progress_deadline),
        }
    }

    /// Rollouts that have just completed or run out of time (cheap: only pools
    /// with a rollout under way are counted). Called by every reconcile pass.
    pub(crate) fn rollouts_due(&self, at: Timestamp) -> Vec<(Arc<Pool>, Result<(), String>)> {
        let mut due = Vec::new();
        let desired = self.desired();
        for pool in self.pool_set().list.iter().filter(|p| p.rolling_out()) {
            let c = self.registry.revision_counts(&pool.name, pool.revision);
            // Complete: nothing stale left, and the new revision fills the target
            // (claims may be holding some of it as refills, still starting), with
            // at least one of it ready. The target is what the pool aims at now
            // (its autoscaled sizes, if it has a policy).
            let target: u32 = desired
                .pools
                .iter()
                .filter(|d| d.key.pool == pool.name)
                .map(|d| d.target)
                .sum();
            if c.stale_ready == 0
                && c.stale_starting == 0
                && c.updated_ready + c.updated_starting >= target
                && c.updated_ready >= target.min(1)
            {
                due.push((pool.clone(), Ok(())));
            } else if pool
                .rollout_started_at
                .is_some_and(|t| t + pool.spec.progress_deadline <= at)
            {
                due.push((
                    pool.clone(),
                    Err(format!(
                        "progress deadline exceeded: {} of {} ready on revision {} after {}s",
                        c.updated_ready,
                        target,
                        pool.revision,
                        pool.spec.progress_deadline.as_secs()
                    )),
                ));
            }
        }
        due
    }

    /// Ends the rollout of `seen` (if the pool has not changed since): complete,
    /// or failed with `error` (launches go back to the last complete revision).
    pub(crate) async fn end_rollout(&self, seen: &Arc<Pool>, outcome: Result<(), String>) {
        let _writes = self.pool_writes.lock().await;
        let Some(current) = self.pool(&seen.name) else {
            return;
        };
        if !Arc::ptr_eq(&current, seen) || !current.rolling_out() {
            return;
        }
        let at = now();
        let (pool, kind, detail) = match outcome {
            Ok(()) => (
                Pool {
                    stable_revision: current.revision,
                    launch_revision: current.revision,
                    rollout_started_at: None,
                    rollout_error: None,
                    updated_at: at,
                    ..Pool::clone(&current)
                },
                "rollout-complete",
                format!(
                    "every ready container runs revision {} (replaced revision {})",
                    current.revision, current.stable_revision
                ),
            ),
            Err(error) => (
                Pool {
                    launch_revision: current.stable_revision,
                    rollout_error: Some(error.clone()),
                    updated_at: at,
                    ..Pool::clone(&current)
                },
                "rollout-failed",
                format!(
                    "{error}; revision {} keeps serving",
                    current.stable_revision
                ),
            ),
        };
        let written = self
            .store
            .apply(Op::Pools(vec![
                PoolWrite::Put(record(&pool)),
                event(&pool.name, Some(pool.revision), kind, detail.clone()),
            ]))
            .await;
        if let Err(e) = written {
            tracing::warn!(pool = %pool.name, error = %e, "cannot record the end of a rollout; a later pass retries");
            return;
        }
        tracing::info!(pool = %pool.name, revision = pool.revision, "{kind}: {detail}");
        let name = pool.name.clone();
        self.swap_pool(&name, Some(Arc::new(pool)));
        self.activate();
    }

    /// A start of `key`'s pool from `revision` failed: enough in a row fail
    /// the pool's rollout to it.
    pub(crate) async fn start_failed(&self, key: &PoolKey, revision: u32, error: &str) {
        let Some(pool) = self.pool(&key.pool) else {
            return;
        };
        if !pool.rolling_out() || pool.revision != revision {
            return;
        }
        let failures = {
            let mut all = self
                .start_failures
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let n = all.entry(pool.name.clone()).or_insert((revision, 0));
            if n.0 != revision {
                *n = (revision, 0);
            }
            n.1 += 1;
            n.1
        };
        if failures >= pool.spec.rollout_failure_limit {
            self.end_rollout(
                &pool,
                Err(format!(
                    "{failures} starts of revision {revision} failed in a row, the last: {error}"
                )),
            )
            .await;
        }
    }

    /// A start of `key`'s pool from `revision` became ready: the count of
    /// failures in a row starts again, and a rollout moves on at once.
    pub(crate) fn start_succeeded(&self, key: &PoolKey, revision: u32) {
        let Some(pool) = self.pool(&key.pool) else {
            return;
        };
        if pool.revision == revision {
            self.reset_start_failures(&pool.name);
        }
        if pool.rolling_out() {
            self.activate();
        }
    }

    fn reset_start_failures(&self, pool: &str) {
        self.start_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pool);
    }
}
