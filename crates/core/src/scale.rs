//! Autoscaling: how many ready containers a pool keeps at one location, decided
//! from what was observed there (claims, start times, containers in use) by its
//! [`ScalingPolicy`]. [`decide`] is the one function that says it; the engine
//! measures the [`Signals`] and keeps each location's [`Hold`].

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Timestamp;

/// Ready containers kept beyond those in use: a number, or a share of the
/// allocated ones (rounded up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buffer {
    Count(u32),
    Percent(u32),
}

impl Buffer {
    /// The buffer when `allocated` containers are in use.
    pub fn of(self, allocated: u32) -> u32 {
        match self {
            Buffer::Count(n) => n,
            Buffer::Percent(p) => (u64::from(allocated) * u64::from(p))
                .div_ceil(100)
                .min(u64::from(u32::MAX)) as u32,
        }
    }
}

/// A buffer that is neither a count (0 to 100000) nor `N%` (0 to 1000).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected a number of containers (0 to 100000) or a share of those in use such as 20% (0 to 1000%)")]
pub struct InvalidBuffer;

impl FromStr for Buffer {
    type Err = InvalidBuffer;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if p <= 1000 => Ok(Buffer::Percent(p)),
                _ => Err(InvalidBuffer),
            },
            None => match s.parse::<u32>() {
                Ok(n) if n <= 100_000 => Ok(Buffer::Count(n)),
                _ => Err(InvalidBuffer),
            },
        }
    }
}

impl fmt::Display for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Buffer::Count(n) => write!(f, "{n}"),
            Buffer::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Where a scaled pool keeps warm containers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LocationMode {
    /// Only at the locations its targets name.
    #[default]
    Configured,
    /// Also at every location that receives claims, for as long as it does (and
    /// its scale-down delay after).
    Auto,
}

impl LocationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationMode::Configured => "configured",
            LocationMode::Auto => "auto",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected \"configured\" or \"auto\"")]
pub struct InvalidLocationMode;

impl FromStr for LocationMode {
    type Err = InvalidLocationMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "configured" => Ok(LocationMode::Configured),
            "auto" => Ok(LocationMode::Auto),
            _ => Err(InvalidLocationMode),
        }
    }
}

/// How a pool sizes its warm buffer at each of its locations.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingPolicy {
    /// Ready containers kept at least (also while no claim comes).
    pub min: u32,
    /// Ready containers kept at most (`None`: only the global cap bounds it).
    pub max: Option<u32>,
    /// Ready containers kept beyond those in use.
    pub buffer: Buffer,
    /// How long a size is held after it was last called for before it shrinks
    /// (the stabilization window); also how long a location without claims
    /// keeps its pool.
    pub scale_down_delay: Duration,
    /// The demand term's factor: keep `claim rate × start time × safety` ready
    /// (0: no demand term, the buffer and `min` alone).
    pub safety: f64,
    pub locations: LocationMode,
}

impl Default for ScalingPolicy {
    fn default() -> Self {
        ScalingPolicy {
            min: 0,
            max: None,
            buffer: Buffer::Count(2),
            scale_down_delay: Duration::from_secs(300),
            safety: 2.0,
            locations: LocationMode::Configured,
        }
    }
}

/// A policy that cannot be followed; `field` is its key in a `[scaling]` table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidPolicy {
    pub field: &'static str,
    pub reason: String,
}

impl ScalingPolicy {
    /// Checks what the fields' own types do not: min at most max, a finite
    /// positive safety factor.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        if let Some(max) = self.max {
            if self.min > max {
                return Err(InvalidPolicy {
                    field: "min",
                    reason: format!("min ({}) is above max ({max})", self.min),
                });
            }
        }
        if !self.safety.is_finite() || self.safety < 0.0 || self.safety > 100.0 {
            return Err(InvalidPolicy {
                field: "safety",
                reason: "expected a factor from 0 (no demand term) to 100".into(),
            });
        }
        Ok(())
    }
}

/// What the engine observed at one location of a pool, when it decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Signals {
    /// Containers in use (allocated) there.
    pub allocated: u32,
    /// Claims per second there ([`ClaimRate::rate`]).
    pub claim_rate: f64,
    /// The time a claimed container takes to be replaced: the p90 of recent
    /// start times ([`StartTimes::p90`]), plus the wait for the reconcile pass
    /// that starts its replacement (which matters where starts are quick).
    pub start_time: Duration,
    /// The location keeps a pool: it is configured, or it had a claim within the
    /// scale-down delay. An inactive one shrinks to `min`.
    pub active: bool,
    /// Ready and starting containers the global cap leaves room for there (its
    /// own plus the free slots).
    pub room: u32,
}

/// Why a pool key has the size it has.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// No policy: the configured target.
    Static,
    /// The policy's minimum.
    Min,
    /// The buffer beyond the containers in use.
    Buffer { allocated: u32 },
    /// Claim rate × start time × safety, or (`spread`) the claims a start
    /// time holds at most but rarely (its Poisson spread), if more.
    Demand {
        rate: f64,
        start: Duration,
        safety: f64,
        spread: bool,
    },
    /// The policy's maximum.
    Max,
    /// The global cap (`max_instances`) leaves no more room.
    Capped,
    /// No claim within the scale-down delay: the policy's minimum.
    Idle,
    /// Kept from before a restart until its scale-down delay passes.
    Restored,
    /// A larger size called for within the scale-down delay is held.
    Held { by: Box<Reason>, left: Duration },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Static => f.write_str("static target"),
            Reason::Min => f.write_str("min"),
            Reason::Buffer { allocated } => write!(f, "buffer ({allocated} in use)"),
            Reason::Demand {
                rate,
                start,
                safety,
                spread,
            } => {
                let start = start.as_secs_f64();
                if *spread {
                    write!(
                        f,
                        "demand: {rate:.2} claims/s × {start:.3} s refill, with their spread"
                    )
                } else {
                    write!(
                        f,
                        "demand: {rate:.2} claims/s × {start:.2} s refill × {safety} safety"
                    )
                }
            }
            Reason::Max => f.write_str("capped by max"),
            Reason::Capped => f.write_str("capped by max_instances"),
            Reason::Idle => f.write_str("no claims within scale_down_delay: min"),
            Reason::Restored => f.write_str("kept across a restart"),
            Reason::Held { by, left } => {
                write!(
                    f,
                    "held by scale_down_delay for {}s more ({by})",
                    left.as_secs()
                )
            }
        }
    }
}

/// A size and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub size: u32,
    pub reason: Reason,
}

/// A static target under the global cap.
pub fn static_size(target: u32, room: u32) -> Decision {
    if target > room {
        Decision {
            size: room,
            reason: Reason::Capped,
        }
    } else {
        Decision {
            size: target,
            reason: Reason::Static,
        }
    }
}

/// The demand term: the claims expected while one container starts (`rate ×
/// start`), times `safety`; or, where that is small, the claims one start time
/// holds at most but rarely (mean plus 2.5 standard deviations of a Poisson
/// count), whichever is more; the second decides while `rate × start` is below
/// about 6. It is what keeps a pool of quick starts from running dry when
/// claims come in clumps: at 40 claims/s and 20 ms starts, `rate × start × 2`
/// is 1.6 containers, and two ready ones miss about one claim in twenty; four
/// miss about one in five hundred. `true`: the spread decided. (`start` is
/// the time a claimed container takes to be replaced: [`Signals::start_time`].)
pub fn demand(rate: f64, start: Duration, safety: f64) -> (u32, bool) {
    let mean = rate.max(0.0) * start.as_secs_f64();
    // A rate that is not a number counts as none; a safety of 0 turns it off.
    if !mean.is_finite() || mean <= 0.0 || safety <= 0.0 {
        return (0, false);
    }
    let scaled = mean * safety;
    let spread = mean + 2.5 * mean.sqrt();
    let n = scaled.max(spread).ceil().min(f64::from(u32::MAX)) as u32;
    (n, spread > scaled)
}

/// What the policy calls for now, before the scale-down delay and the cap.
pub fn recommend(policy: &ScalingPolicy, s: &Signals) -> Decision {
    let d = |size, reason| Decision { size, reason };
    if !s.active {
        return d(policy.min, Reason::Idle);
    }
    let buffer = policy.buffer.of(s.allocated);
    let (demand, spread) = demand(s.claim_rate, s.start_time, policy.safety);
    let mut out = if demand > buffer {
        d(
            demand,
            Reason::Demand {
                rate: s.claim_rate,
                start: s.start_time,
                safety: policy.safety,
                spread,
            },
        )
    } else {
        d(
            buffer,
            Reason::Buffer {
                allocated: s.allocated,
            },
        )
    };
    if out.size < policy.min {
        out = d(policy.min, Reason::Min);
    }
    if let Some(max) = policy.max.filter(|m| out.size > *m) {
        out = d(max, Reason::Max);
    }
    out
}

/// The recent recommendations of one pool key: the largest of those within the
/// scale-down delay is its size (the Kubernetes autoscaler's stabilization
/// window). Kept as a decreasing queue, so its length is the number of distinct
/// sizes called for within the window, not the number of decisions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hold {
    recent: VecDeque<(Timestamp, Decision)>,
}

impl Hold {
    /// A hold of `size`, last called for at `since` (after a restart).
    pub fn restored(size: u32, since: Timestamp) -> Self {
        Hold {
            recent: VecDeque::from([(
                since,
                Decision {
                    size,
                    reason: Reason::Restored,
                },
            )]),
        }
    }

    /// The size held, and when it was last called for.
    pub fn held(&self) -> Option<(u32, Timestamp)> {
        self.recent.front().map(|(t, d)| (d.size, *t))
    }
}

/// The size of one pool key now: the largest recommendation within the policy's
/// scale-down delay (so it grows at once and shrinks only once a smaller size
/// has been enough for a whole delay), then cut to the global cap's room.
///
/// Guarantees (property-tested below): never above the policy's `max` nor the
/// room; never below `min` unless the room is smaller; monotone in each signal
/// of demand (claim rate, start time, containers in use, activity); while the
/// location is active, a size is lowered only after the delay has passed since
/// it was last called for, so a steady load does not make it flap. An inactive
/// location (no claim within the delay) is at `min` at once: its delay has
/// passed already.
pub fn decide(policy: &ScalingPolicy, s: &Signals, hold: &mut Hold, now: Timestamp) -> Decision {
    let rec = recommend(policy, s);
    if !s.active {
        // It has had no claim for the whole delay already: nothing to hold.
        hold.recent.clear();
    }
    while hold.recent.back().is_some_and(|(_, d)| d.size <= rec.size) {
        hold.recent.pop_back();
    }
    hold.recent.push_back((now, rec.clone()));
    while hold.recent.len() > 1
        && hold
            .recent
            .front()
            .is_some_and(|(t, _)| *t + policy.scale_down_delay <= now)
    {
        hold.recent.pop_front();
    }
    let (since, top) = hold.recent.front().expect("the recommendation just pushed");
    let mut out = if top.size > rec.size {
        Decision {
            size: top.size,
            reason: Reason::Held {
                by: Box::new(top.reason.clone()),
                left: (*since + policy.scale_down_delay).since(now),
            },
        }
    } else {
        rec
    };
    if out.size > s.room {
        out = Decision {
            size: s.room,
            reason: Reason::Capped,
        };
    }
    out
}

/// Time constants of the claim rate's two averages: the steady one, and the
/// fast one that takes over in a burst (Knative's stable and panic windows).
/// The steady one is short, a few seconds, because the sizes it calls for are
/// held for the scale-down delay anyway: that hold, not a long average, keeps
/// a steady load from making the size flap, and a short average follows a
/// decline of the load without adding its own lag to the delay's.
const SLOW_TAU: f64 = 5.0;
const FAST_TAU: f64 = 0.5;
/// How far (in standard deviations of its Poisson noise at the slow rate) the
/// fast average must be above the slow one before it takes over: at low rates
/// twice the slow rate is within the fast average's noise (at 4 claims/s its
/// standard deviation is 2/s), and its chance maxima would be held as sizes.
const PANIC_SIGMAS: f64 = 3.0;

/// A location's claim rate: exponentially weighted averages of its arrivals, a
/// slow one (steady, little noise) and a fast one that takes over once it is
/// twice the slow one and beyond its own noise (a burst is met within a
/// second), and keeps it until the slow one has caught up (Knative's panic
/// mode: going back to the slow one while it still lags would shrink the pool
/// in the middle of the burst).
///
/// The averages count from the first claim, not from zero: until a few time
/// constants have passed they are divided by the weight they have seen
/// (`1 - e^(-age/tau)`, at least one second's), so a location's first seconds
/// of claims read as their rate, not as a fraction of it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClaimRate {
    slow: f64,
    fast: f64,
    at: Timestamp,
    /// The first claim counted.
    since: Option<Timestamp>,
    /// The fast average is the rate (until the slow one reaches it).
    panic: bool,
}

impl ClaimRate {
    /// Both averages decayed to `now`, as kept.
    fn decayed(&self, now: Timestamp) -> (f64, f64) {
        let dt = now.since(self.at).as_secs_f64();
        (
            self.slow * (-dt / SLOW_TAU).exp(),
            self.fast * (-dt / FAST_TAU).exp(),
        )
    }

    /// Counts a claim at `now` (claims come in order; an earlier `now` counts
    /// as the latest).
    pub fn record(&mut self, now: Timestamp) {
        let now = now.max(self.at);
        let (slow, fast) = self.decayed(now);
        *self = ClaimRate {
            slow: slow + 1.0 / SLOW_TAU,
            fast: fast + 1.0 / FAST_TAU,
            at: now,
            since: self.since.or(Some(now)),
            panic: self.panic,
        };
    }

    /// Claims per second at `now`: the slow average; the fast one from when it
    /// is more than twice the slow one (and more than [`PANIC_SIGMAS`] of its
    /// noise above it) until the slow one reaches it.
    pub fn rate(&mut self, now: Timestamp) -> f64 {
        let now = now.max(self.at);
        let (slow, fast) = self.decayed(now);
        // The slow one corrected for the time it has counted (the fast one's
        // correction is over within a second).
        let age = self
            .since
            .map_or(0.0, |s| now.since(s).as_secs_f64())
            .max(1.0);
        let slow = slow / (1.0 - (-age / SLOW_TAU).exp());
        let noise = PANIC_SIGMAS * (slow / (2.0 * FAST_TAU)).sqrt();
        if fast > 2.0 * slow && fast - slow > noise {
            self.panic = true;
        } else if fast <= slow {
            self.panic = false;
        }
        if self.panic {
            fast
        } else {
            slow
        }
    }
}

/// Recent start times of one location, for their p90.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StartTimes {
    recent: VecDeque<Duration>,
}

impl StartTimes {
    /// Start times kept.
    pub const KEPT: usize = 32;

    pub fn record(&mut self, took: Duration) {
        if self.recent.len() == Self::KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(took);
    }

    /// The 90th percentile of the recent start times (`None` before the first).
    pub fn p90(&self) -> Option<Duration> {
        let mut v: Vec<Duration> = self.recent.iter().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort();
        let i = (v.len() * 9).div_ceil(10).saturating_sub(1);
        Some(v[i])
    }
}

#[cfg(test)]
mod tests;
