//! A claimed container's time: `extend` moves its expiry (in the store first,
//! with an event; the registry and the proxy follow through the commit hook),
//! bounded by its pool's maximum lifetime counted from the claim; `keepalive`
//! resets its idle timer, in memory, as a proxied request does.

use std::time::Duration;

use warmpool_core::{ContainerId, ContainerState, Timestamp};
use warmpool_store::{ContainerRow, Extend, Op, StoreError};

use crate::{now, Engine};

/// Why an extension or a keepalive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClaimedError {
    #[error("no container {0}")]
    NotFound(ContainerId),
    /// It ended (stopped, failed, or its lifetime ran out): its id answers 410.
    #[error("container {id} is no longer available: {reason}")]
    Gone { id: ContainerId, reason: String },
    /// Starting or ready: nobody claimed it.
    #[error("container {id} is {state}, not claimed")]
    NotClaimed {
        id: ContainerId,
        state: ContainerState,
    },
    /// The new expiry would pass `bound`: the claim plus its pool's maximum
    /// lifetime (`max_lifetime`). `room` whole seconds would still fit.
    #[error("container {id} can be extended by at most {room}s")]
    BeyondMaxLifetime {
        id: ContainerId,
        room: u64,
        bound: Timestamp,
        max_lifetime: Duration,
    },
    #[error("the new expiry could not be recorded")]
    Store(#[source] StoreError),
}

/// Extensions that lost to a concurrent one (each retried with the new expiry).
const MAX_TRIES: usize = 8;

impl Engine {
    /// Moves a claimed container's expiry `by` later, up to the moment its claim
    /// plus its pool's maximum lifetime (asking for more is refused, never cut
    /// short); answers the new expiry. Committed, with its event, before this
    /// returns, so a restart keeps it.
    ///
    /// Two extensions never add to the same expiry: the store sets the new one
    /// only if the expiry is still the one read (else this reads it again).
    pub async fn extend(&self, id: ContainerId, by: Duration) -> Result<Timestamp, ClaimedError> {
        let mut last = None;
        for _ in 0..MAX_TRIES {
            let row = self
                .store
                .container(id)
                .await
                .map_err(ClaimedError::Store)?;
            let pool = row.as_ref().map(|r| r.pool.clone()).unwrap_or_default();
            let (allocated_at, expires_at) = self.claimed(id, row)?;
            // A pool deleted since the claim gives it no more time.
            let max_lifetime = self
                .pool(&pool)
                .map_or(Duration::ZERO, |p| p.spec.max_lifetime);
            let bound = allocated_at + max_lifetime;
            let to = expires_at + by;
            if to > bound {
                return Err(ClaimedError::BeyondMaxLifetime {
                    id,
                    room: bound.since(expires_at).as_secs(),
                    bound,
                    max_lifetime,
                });
            }
            let op = Op::Extend(Extend {
                id,
                from: expires_at,
                to,
                at: now(),
                reason: format!("extended by {}s", by.as_secs()),
            });
            match self.store.apply(op).await {
                Ok(()) => {
                    tracing::debug!(container_id = %id, expires_at = to.0, "extended");
                    return Ok(to);
                }
                // Another extension (or the end of it) got there first: read again.
                Err(e @ (StoreError::ExpiryMoved { .. } | StoreError::Conflict { .. })) => {
                    last = Some(e)
                }
                Err(StoreError::NotFound(_)) => return Err(ClaimedError::NotFound(id)),
                Err(e) => return Err(ClaimedError::Store(e)),
            }
        }
        Err(ClaimedError::Store(
            last.unwrap_or(StoreError::ExpiryMoved { id }),
        ))
    }

    /// Resets a claimed container's idle timer: counts as a proxied request that
    /// has just ended. Nothing is written (the idle timer lives in memory; a
    /// restart grants a fresh idle window anyway).
    pub async fn keepalive(&self, id: ContainerId) -> Result<(), ClaimedError> {
        if let Some(e) = self.registry.get(&id) {
            let live = e.state == ContainerState::Allocated
                && !e.leased
                && e.expires_at.is_some_and(|t| t > now());
            if let (true, Some(activity)) = (live, &e.activity) {
                activity.touch();
                return Ok(());
            }
        }
        // Not claimed, or ending: the store says which.
        let row = self
            .store
            .container(id)
            .await
            .map_err(ClaimedError::Store)?;
        self.claimed(id, row)?;
        Err(ending(id))
    }

    /// The claim time and expiry of a container that is claimed and live, or why
    /// it is not.
    fn claimed(
        &self,
        id: ContainerId,
        row: Option<ContainerRow>,
    ) -> Result<(Timestamp, Timestamp), ClaimedError> {
        let row = row.ok_or(ClaimedError::NotFound(id))?;
        match row.state {
            ContainerState::Starting | ContainerState::Ready => {
                return Err(ClaimedError::NotClaimed {
                    id,
                    state: row.state,
                })
            }
            ContainerState::Stopping | ContainerState::Stopped | ContainerState::Failed => {
                return Err(ClaimedError::Gone {
                    id,
                    reason: row.stop_reason.unwrap_or_else(|| row.state.to_string()),
                })
            }
            ContainerState::Allocated => {}
        }
        let (Some(allocated_at), Some(expires_at)) = (row.allocated_at, row.expires_at) else {
            return Err(ending(id));
        };
        // The proxy answers 410 from its expiry on, before the stop is recorded.
        if expires_at <= now() {
            return Err(ClaimedError::Gone {
                id,
                reason: "expired".into(),
            });
        }
        // A lease on a claimed container is a stop in flight (expiry, idleness,
        // a release, a failed set-up).
        if self.registry.get(&id).is_some_and(|e| e.leased) {
            return Err(ending(id));
        }
        Ok((allocated_at, expires_at))
    }
}

fn ending(id: ContainerId) -> ClaimedError {
    ClaimedError::Gone {
        id,
        reason: "it is being stopped".into(),
    }
}
