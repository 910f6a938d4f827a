//! The last hour in memory, for the studio's charts (`GET /v1/stats/history`):
//! every interval a sample of each pool key's ready and allocated counts, and the
//! claim latencies (p50, p99) of the claims answered in that interval.
//!
//! Nothing here touches the store. The claim path only pushes its latency into a
//! bounded buffer under a short lock; the `history` background task takes a sample
//! each interval.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use warmpool_core::{PoolKey, Timestamp};

use crate::now;
use crate::registry::Registry;

/// How often a sample is taken.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Samples kept: one hour.
pub const CAPACITY: usize = 360;

/// Claim latencies kept per interval; past it the oldest are overwritten.
const MAX_LATENCIES: usize = 10_000;

#[derive(Default)]
struct Window {
    /// Milliseconds, in no particular order.
    latencies: Vec<f64>,
    claims: u64,
}

/// One pool key in a sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSample {
    pub key: PoolKey,
    pub ready: u32,
    pub allocated: u32,
    /// Containers of the key that went to `failed` since start.
    pub failures: u64,
}

/// The state at one moment, with the claims answered in the interval before it.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Timestamp,
    pub pools: Vec<PoolSample>,
    pub claims: u64,
    /// Claim latency of the interval, milliseconds.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// The ring of samples and the interval in progress.
#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    window: Mutex<Window>,
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl History {
    /// Records the latency of an answered claim (the claim path's only cost).
    pub(crate) fn record_claim(&self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.latencies.len() < MAX_LATENCIES {
            w.latencies.push(ms);
        } else {
            let i = (w.claims % MAX_LATENCIES as u64) as usize;
            w.latencies[i] = ms;
        }
        w.claims += 1;
    }

    /// The state now, with the claims of the interval so far; with `close`, the
    /// interval ends here.
    fn take(&self, registry: &Registry, keys: &[PoolKey], close: bool) -> Sample {
        let (counts, _) = registry.pool_counts(keys);
        let pools = counts
            .into_iter()
            .map(|(key, c)| PoolSample {
                key,
                ready: c.ready,
                allocated: c.allocated,
                failures: c.stats.failures,
            })
            .collect();
        let (mut latencies, claims) = {
            let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
            if close {
                let w = std::mem::take(&mut *w);
                (w.latencies, w.claims)
            } else {
                (w.latencies.clone(), w.claims)
            }
        };
        latencies.sort_by(f64::total_cmp);
        Sample {
            at: now(),
            pools,
            claims,
            p50: quantile(&latencies, 0.5),
            p99: quantile(&latencies, 0.99),
        }
    }

    /// Ends the interval: keeps its sample, dropping the oldest past an hour.
    /// `keys`: the pool keys to sample (the desired ones; any with containers are
    /// added).
    pub(crate) fn sample(&self, registry: &Registry, keys: &[PoolKey]) {
        let s = self.take(registry, keys, true);
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() >= CAPACITY {
            samples.pop_front();
        }
        samples.push_back(s);
    }

    /// Every kept sample, oldest first, and a last one for now.
    pub fn snapshot(&self, registry: &Registry, keys: &[PoolKey]) -> Vec<Sample> {
        let live = self.take(registry, keys, false);
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples
            .iter()
            .cloned()
            .chain(std::iter::once(live))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0], 0.99), Some(3.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v[..10], 0.99), Some(10.0));
    }

    #[test]
    fn the_claim_window_is_bounded() {
        let h = History::default();
        for i in 0..(MAX_LATENCIES + 5) {
            h.record_claim(Duration::from_micros(i as u64));
        }
        let w = h.window.lock().unwrap();
        assert_eq!(w.latencies.len(), MAX_LATENCIES);
        assert_eq!(w.claims, MAX_LATENCIES as u64 + 5);
    }
}
