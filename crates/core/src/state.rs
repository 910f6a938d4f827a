//! Container states and the pure transition function between them.

use std::fmt;
use std::str::FromStr;

/// The life of a container: `starting -> ready -> allocated -> stopping -> stopped`,
/// or `failed` from any live state.
///
/// `ready` is the original design's POOL state and `allocated` its RELEASED state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContainerState {
    /// Asked of the runtime, not yet answering its readiness probe.
    Starting,
    /// Alive and waiting in the pool to be claimed.
    Ready,
    /// Handed out to a client; routes through the proxy until it expires.
    Allocated,
    /// Being stopped (lifetime over, released, surplus or shutting down).
    Stopping,
    /// Gone for good. Terminal.
    Stopped,
    /// Died or broke; its runtime object may still need removing.
    Failed,
}

impl ContainerState {
    pub const ALL: [ContainerState; 6] = [
        ContainerState::Starting,
        ContainerState::Ready,
        ContainerState::Allocated,
        ContainerState::Stopping,
        ContainerState::Stopped,
        ContainerState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Starting => "starting",
            ContainerState::Ready => "ready",
            ContainerState::Allocated => "allocated",
            ContainerState::Stopping => "stopping",
            ContainerState::Stopped => "stopped",
            ContainerState::Failed => "failed",
        }
    }

    /// A container in this state may still hold runtime resources.
    pub fn is_live(self) -> bool {
        !matches!(self, ContainerState::Stopped)
    }

    /// The proxy routes to containers in this state.
    pub fn routes(self) -> bool {
        matches!(self, ContainerState::Allocated)
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown container state {0:?}: expected one of starting, ready, allocated, stopping, stopped, failed")]
pub struct InvalidState(pub String);

impl FromStr for ContainerState {
    type Err = InvalidState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContainerState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| InvalidState(s.chars().take(64).collect()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid container state transition from {from} to {to}")]
pub struct InvalidTransition {
    pub from: ContainerState,
    pub to: ContainerState,
}

/// Whether a container may move from `from` to `to`.
///
/// - `starting -> ready`: the readiness probe answered.
/// - `ready -> allocated`: claimed.
/// - `starting | ready | allocated -> stopping`: start timed out, surplus, released,
///   expired or shutting down.
/// - `stopping -> stopped`: the runtime confirmed the stop.
/// - any live state `-> failed`: it died or broke.
/// - `starting | ready | allocated | failed -> stopped`: found gone (`lost` after a
///   restart) or, for `failed`, cleaned up.
/// - `stopped` is terminal, and no state moves to itself.
pub fn transition(from: ContainerState, to: ContainerState) -> Result<(), InvalidTransition> {
    use ContainerState::*;
    let ok = matches!(
        (from, to),
        (Starting, Ready)
            | (Ready, Allocated)
            | (Starting | Ready | Allocated, Stopping)
            | (Stopping, Stopped)
            | (Starting | Ready | Allocated | Stopping, Failed)
            | (Starting | Ready | Allocated | Failed, Stopped)
    );
    if ok {
        Ok(())
    } else {
        Err(InvalidTransition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::ContainerState::*;
    use super::*;

    /// Every (from, to) pair, written out: the table is the specification.
    #[test]
    fn transition_table_is_exhaustive() {
        let table: [(ContainerState, [bool; 6]); 6] = [
            //            starting ready  alloc  stopping stopped failed
            (Starting, [false, true, false, true, true, true]),
            (Ready, [false, false, true, true, true, true]),
            (Allocated, [false, false, false, true, true, true]),
            (Stopping, [false, false, false, false, true, true]),
            (Stopped, [false, false, false, false, false, false]),
            (Failed, [false, false, false, false, true, false]),
        ];
        let mut checked = 0;
        for (from, row) in table {
            for (to, expected) in ContainerState::ALL.into_iter().zip(row) {
                let got = transition(from, to);
                assert_eq!(got.is_ok(), expected, "{from} -> {to}");
                if let Err(e) = got {
                    assert_eq!(e, InvalidTransition { from, to });
                    assert_eq!(
                        e.to_string(),
                        format!("invalid container state transition from {from} to {to}")
                    );
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 36);
    }

    #[test]
    fn stopped_is_terminal_and_reached_from_every_live_state() {
        for s in ContainerState::ALL {
            assert!(transition(Stopped, s).is_err());
            if s != Stopped {
                // Every live state can end, directly or through stopping.
                assert!(transition(s, Stopped).is_ok() || transition(s, Stopping).is_ok());
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in ContainerState::ALL {
            assert_eq!(s.as_str().parse::<ContainerState>().unwrap(), s);
        }
        assert!("RELEASED".parse::<ContainerState>().is_err());
    }
}
