//! Tests of the scaling decision: its bounds, its monotonicity, its hysteresis.

use super::*;
use proptest::prelude::*;

fn policy(min: u32, max: Option<u32>, buffer: Buffer, delay_s: u64) -> ScalingPolicy {
    ScalingPolicy {
        min,
        max,
        buffer,
        scale_down_delay: Duration::from_secs(delay_s),
        ..ScalingPolicy::default()
    }
}

fn signals(allocated: u32, rate: f64, start_ms: u64, active: bool, room: u32) -> Signals {
    Signals {
        allocated,
        claim_rate: rate,
        start_time: Duration::from_millis(start_ms),
        active,
        room,
    }
}

#[test]
fn buffers_and_modes_parse_and_print() {
    assert_eq!("3".parse(), Ok(Buffer::Count(3)));
    assert_eq!(" 20% ".parse(), Ok(Buffer::Percent(20)));
    assert_eq!("0".parse(), Ok(Buffer::Count(0)));
    for bad in ["", "-1", "x", "1001%", "100001", "2.5"] {
        assert_eq!(bad.parse::<Buffer>(), Err(InvalidBuffer), "{bad:?}");
    }
    assert_eq!(Buffer::Percent(20).to_string(), "20%");
    assert_eq!(Buffer::Percent(20).of(11), 3);
    assert_eq!(Buffer::Percent(20).of(0), 0);
    assert_eq!("auto".parse(), Ok(LocationMode::Auto));
    assert_eq!("configured".parse(), Ok(LocationMode::Configured));
    assert!("everywhere".parse::<LocationMode>().is_err());
}

#[test]
fn validation_names_the_field() {
    let mut p = policy(5, Some(3), Buffer::Count(1), 60);
    assert_eq!(p.validate().unwrap_err().field, "min");
    p.max = Some(5);
    assert_eq!(p.validate(), Ok(()));
    for bad in [-0.5, -1.0, f64::NAN, f64::INFINITY, 101.0] {
        p.safety = bad;
        assert_eq!(p.validate().unwrap_err().field, "safety", "{bad}");
    }
}

#[test]
fn the_largest_term_wins_and_says_so() {
    let p = policy(1, Some(40), Buffer::Count(3), 60);
    // Quiet: the buffer.
    let d = recommend(&p, &signals(0, 0.0, 300, true, 1000));
    assert_eq!(
        (d.size, d.reason.to_string()),
        (3, "buffer (0 in use)".into())
    );
    // 40 claims/s, 0.3 s starts, safety 2: 24 ready.
    let d = recommend(&p, &signals(10, 40.0, 300, true, 1000));
    assert_eq!(d.size, 24);
    assert_eq!(
        d.reason.to_string(),
        "demand: 40.00 claims/s × 0.30 s refill × 2 safety"
    );
    // Bounded by max, then by the room.
    let d = recommend(&p, &signals(10, 200.0, 300, true, 1000));
    assert_eq!((d.size, d.reason), (40, Reason::Max));
    let d = decide(
        &p,
        &signals(10, 200.0, 300, true, 7),
        &mut Hold::default(),
        Timestamp(0),
    );
    assert_eq!(
        (d.size, d.reason.to_string()),
        (7, "capped by max_instances".into())
    );
    // An inactive location: the minimum.
    let d = recommend(&p, &signals(0, 5.0, 300, false, 1000));
    assert_eq!((d.size, d.reason), (1, Reason::Idle));
    // A static target under the cap.
    assert_eq!(
        static_size(5000, 1000).reason.to_string(),
        "capped by max_instances"
    );
    assert_eq!(
        static_size(5, 1000),
        Decision {
            size: 5,
            reason: Reason::Static
        }
    );
}

#[test]
fn a_size_is_held_for_the_delay_then_shrinks() {
    let p = policy(0, None, Buffer::Count(2), 60);
    let mut h = Hold::default();
    let t = |s: i64| Timestamp(s * 1000);
    assert_eq!(
        decide(&p, &signals(0, 50.0, 300, true, 1000), &mut h, t(0)).size,
        30
    );
    // Demand gone: held for 60 s after it was last called for.
    let d = decide(&p, &signals(0, 0.0, 300, true, 1000), &mut h, t(30));
    assert_eq!(d.size, 30);
    assert_eq!(
        d.reason.to_string(),
        format!(
            "held by scale_down_delay for 30s more ({})",
            Reason::Demand {
                rate: 50.0,
                start: Duration::from_millis(300),
                safety: 2.0,
                spread: false
            }
        )
    );
    assert_eq!(
        decide(&p, &signals(0, 0.0, 300, true, 1000), &mut h, t(59)).size,
        30
    );
    assert_eq!(
        decide(&p, &signals(0, 0.0, 300, true, 1000), &mut h, t(60)).size,
        2
    );
    // Growth is immediate.
    assert_eq!(
        decide(&p, &signals(0, 30.0, 300, true, 1000), &mut h, t(61)).size,
        18
    );
    // A restored hold lasts until its delay passes; an idle location is at min.
    let mut h = Hold::restored(9, t(100));
    let d = decide(&p, &signals(0, 0.0, 300, true, 1000), &mut h, t(130));
    assert_eq!(d.size, 9);
    assert!(matches!(d.reason, Reason::Held { ref by, .. } if **by == Reason::Restored));
    assert_eq!(
        decide(&p, &signals(0, 0.0, 300, false, 1000), &mut h, t(160)).size,
        0
    );
    assert_eq!(h.held(), Some((0, t(160))));
}

#[test]
fn a_burst_raises_the_rate_within_a_second() {
    let mut r = ClaimRate::default();
    // A minute at 1 claim/s: about 1.
    for i in 0..60 {
        r.record(Timestamp(i * 1000));
    }
    let before = r.rate(Timestamp(60_000));
    assert!((0.6..1.4).contains(&before), "{before}");
    // Then 50/s: within a second the rate says most of it.
    for i in 0..50 {
        r.record(Timestamp(60_000 + i * 20));
    }
    let after = r.rate(Timestamp(61_000));
    assert!(after > 25.0, "{after}");
    // And a quiet minute later, little is left.
    assert!(r.rate(Timestamp(121_000)) < 1.0);
}

#[test]
fn demand_covers_the_spread_of_quick_starts() {
    // Slow starts: rate × start × safety.
    assert_eq!(demand(40.0, Duration::from_millis(300), 2.0), (24, false));
    // Quick ones: two ready containers would miss about one claim in twenty at
    // 40/s and 20 ms; the spread asks for 4 (0.8 + 2.5 × 0.89).
    assert_eq!(demand(40.0, Duration::from_millis(20), 2.0), (4, true));
    assert_eq!(demand(0.0, Duration::from_millis(20), 2.0), (0, false));
    assert_eq!(demand(f64::NAN, Duration::from_millis(20), 2.0), (0, false));
    // Safety 0: no demand term at all.
    assert_eq!(demand(40.0, Duration::from_millis(300), 0.0), (0, false));
    let d = recommend(
        &policy(0, None, Buffer::Count(1), 60),
        &signals(0, 40.0, 20, true, 100),
    );
    assert!(
        d.reason.to_string().ends_with("with their spread"),
        "{}",
        d.reason
    );
}

#[test]
fn the_fast_rate_holds_until_the_slow_one_catches_up() {
    let mut r = ClaimRate::default();
    for i in 0..120 {
        r.record(Timestamp(i * 250));
    }
    // Ten times as many: the fast average takes over and keeps the rate near
    // 40/s through the step, although the slow one passes half of it.
    let mut t = 30_000;
    let mut lowest = f64::MAX;
    while t < 60_000 {
        r.record(Timestamp(t));
        if t > 32_000 {
            lowest = lowest.min(r.rate(Timestamp(t)));
        }
        t += 25;
    }
    assert!(lowest > 30.0, "the rate fell to {lowest} within the step");
}

#[test]
fn start_times_p90() {
    let mut s = StartTimes::default();
    assert_eq!(s.p90(), None);
    for ms in 1..=10 {
        s.record(Duration::from_millis(ms * 100));
    }
    assert_eq!(s.p90(), Some(Duration::from_millis(900)));
    for _ in 0..StartTimes::KEPT {
        s.record(Duration::from_millis(50));
    }
    assert_eq!(s.p90(), Some(Duration::from_millis(50)));
}

/// A small deterministic generator (xorshift64*), for Poisson arrivals.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Exponentially distributed, mean `1 / rate`.
    fn exp(&mut self, rate: f64) -> f64 {
        -self.unit().ln() / rate
    }
}

/// Sizes decided once a second over `secs` of steady Poisson claims at `rate`.
fn steady_sizes(p: &ScalingPolicy, rate: f64, secs: i64, seed: u64) -> Vec<u32> {
    let mut rng = Rng(seed | 1);
    let (mut claims, mut hold) = (ClaimRate::default(), Hold::default());
    let mut next = rng.exp(rate);
    let mut sizes = Vec::new();
    for s in 1..=secs {
        while next < s as f64 {
            claims.record(Timestamp((next * 1000.0) as i64));
            next += rng.exp(rate);
        }
        let now = Timestamp(s * 1000);
        let sig = signals(0, claims.rate(now), 300, true, 100_000);
        sizes.push(decide(p, &sig, &mut hold, now).size);
    }
    sizes
}

fn changes(sizes: &[u32]) -> usize {
    sizes.windows(2).filter(|w| w[0] != w[1]).count()
}

/// Under a steady Poisson load the size settles: after a warm-up of one delay,
/// an hour sees at most two changes per delay on average; the same claims
/// without the delay change it far more often (so the measure can fail).
#[test]
fn no_flapping_under_steady_poisson_load() {
    for (rate, seed) in [(0.5, 1), (2.0, 2), (5.0, 3), (12.0, 4), (40.0, 5)] {
        let held = policy(0, None, Buffer::Count(0), 300);
        let sizes = steady_sizes(&held, rate, 3900, seed);
        let n = changes(&sizes[300..]);
        assert!(
            n <= 24,
            "{rate}/s: {n} changes in an hour with a 300 s delay"
        );
        let loose = policy(0, None, Buffer::Count(0), 0);
        let m = changes(&steady_sizes(&loose, rate, 3900, seed)[300..]);
        assert!(
            m > 4 * n.max(5),
            "{rate}/s: without a delay {m} changes, with one {n}"
        );
    }
}

proptest! {
    #[test]
    fn decisions_stay_within_bounds(
        min in 0u32..20, span in 0u32..50, unbounded in any::<bool>(),
        buffer in prop_oneof![(0u32..30).prop_map(Buffer::Count), (0u32..300).prop_map(Buffer::Percent)],
        delay in 0u64..120,
        steps in prop::collection::vec((0u32..200, 0.0f64..100.0, 1u64..3000, any::<bool>(), 0u32..150, 0i64..30_000), 1..30),
    ) {
        let p = policy(min, (!unbounded).then_some(min + span), buffer, delay);
        let mut hold = Hold::default();
        let mut now = Timestamp(0);
        let mut last: Option<(u32, Timestamp)> = None;
        for (allocated, rate, start, active, room, dt) in steps {
            now = now + Duration::from_millis(dt as u64);
            let s = signals(allocated, rate, start, active, room);
            let d = decide(&p, &s, &mut hold, now);
            prop_assert!(d.size <= room);
            if let Some(max) = p.max {
                prop_assert!(d.size <= max);
            }
            prop_assert!(d.size >= min.min(room));
            // The held size (before the cap) shrinks only once the delay has
            // passed since it was last called for.
            let (held, since) = hold.held().unwrap();
            if let Some((before, before_since)) = last.filter(|_| active) {
                if held < before {
                    prop_assert!(before_since + p.scale_down_delay <= now);
                }
            }
            last = Some((held, since)).filter(|_| active);
        }
    }

    #[test]
    fn decisions_are_monotone_in_demand(
        min in 0u32..10, max in 10u32..100,
        buffer in prop_oneof![(0u32..30).prop_map(Buffer::Count), (0u32..300).prop_map(Buffer::Percent)],
        history in prop::collection::vec((0u32..50, 0.0f64..50.0), 0..10),
        allocated in 0u32..100, more_allocated in 0u32..50,
        rate in 0.0f64..80.0, more_rate in 0.0f64..40.0,
        start in 1u64..2000, more_start in 0u64..2000,
        active in any::<bool>(), room in 0u32..200,
    ) {
        let p = policy(min, Some(max), buffer, 60);
        let mut hold = Hold::default();
        for (i, (a, r)) in history.into_iter().enumerate() {
            decide(&p, &signals(a, r, 500, true, 1000), &mut hold, Timestamp(i as i64 * 10_000));
        }
        let now = Timestamp(100_000);
        let low = signals(allocated, rate, start, active, room);
        let high = signals(allocated + more_allocated, rate + more_rate, start + more_start, true, room);
        let a = decide(&p, &low, &mut hold.clone(), now).size;
        let b = decide(&p, &high, &mut hold.clone(), now).size;
        prop_assert!(a <= b, "{low:?} gave {a}, {high:?} gave {b}");
    }
}
