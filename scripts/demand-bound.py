#!/usr/bin/env python3
"""The least idle container-seconds any sizing of one pool could reach on the
demand trace of `warmpool bench` (scenario 8) at a given miss ratio: a bound
for the autoscaler, not a benchmark of it.

The sizer here is clairvoyant: it knows the trace's true rate at each instant
and resizes at once, with no estimate and no hold. With a refill time R (a
claimed container's replacement is ready R seconds later), the containers being
refilled at a rate r are Poisson with mean m = r R, so a pool of size D has
E[max(D - N, 0)] ready and misses a claim with probability P[N >= D]. For each
0.1 s of the trace it picks the D that minimises idle + lambda x misses, and
lambda is searched for the least idle whose misses stay within the budget.

    scripts/demand-bound.py [REFILL_SECONDS:STATIC_SIZE ...]
        (default: 0.021:4 0.015:4 0.012:4 0.312:25)

Prints, per refill time: the bound and its misses, a static pool of the given
size (the bench's peak-sized pool) with its expected idle and misses in the
same model, and the ratio of the two.
"""
import math
import sys

BASE, PEAK = 4.0, 40.0
PHASES = (20.0, 30.0, 40.0, 20.0)  # base, step, decline, tail (seconds)
CLAIMS = BASE * (PHASES[0] + PHASES[3]) + PEAK * PHASES[1] + (BASE + PEAK) / 2 * PHASES[2]
BUDGET = 0.01  # the goal's miss ratio
DT = 0.1


def rate(t):
    step, decline, tail = PHASES[0], PHASES[0] + PHASES[1], sum(PHASES[:3])
    if t < step or t >= tail:
        return BASE
    if t < decline:
        return PEAK
    return PEAK + (BASE - PEAK) * (t - decline) / PHASES[2]


def terms(m):
    """(ready, miss) of each pool size d for mean m: E[max(d - N, 0)], P[N >= d]."""
    top = int(m + 10 * math.sqrt(m) + 10)
    p, cdf, out = math.exp(-m), 0.0, []
    ready = 0.0
    for d in range(top + 1):
        # ready(d) = sum_{i<d} (d - i) p_i; miss(d) = 1 - P[N <= d - 1].
        out.append((ready, 1.0 - cdf))
        cdf += p
        ready += cdf
        p *= m / (d + 1)
    return out


def slices(refill):
    """(rate, table) for each DT of the trace."""
    cache = {}
    for k in range(int(sum(PHASES) / DT)):
        r = round(rate(k * DT), 9)
        yield r, cache.setdefault(r, terms(r * refill))


def plan(refill, lam):
    idle = missed = 0.0
    for r, t in slices(refill):
        ready, miss = min(t, key=lambda x: x[0] + lam * r * x[1])
        idle += ready * DT
        missed += r * miss * DT
    return idle, missed


def bound(refill):
    lo, hi = 0.0, 1e4
    best = plan(refill, hi)
    for _ in range(40):
        mid = (lo + hi) / 2
        idle, missed = plan(refill, mid)
        if missed <= BUDGET * CLAIMS:
            best, hi = (idle, missed), mid
        else:
            lo = mid
    return best


def static(refill, d):
    idle = missed = 0.0
    for r, t in slices(refill):
        ready, miss = t[d] if d < len(t) else (d - r * refill, 0.0)
        idle += ready * DT
        missed += r * miss * DT
    return idle, missed


def main():
    args = sys.argv[1:]
    if not args:
        args = ["0.021:4", "0.015:4", "0.012:4", "0.312:25"]
    print(f"trace: {CLAIMS:.0f} claims expected; miss budget {BUDGET:.0%}")
    print("REFILL s  BOUND ctr-s  ITS MISSES  STATIC POOL  ITS ctr-s  ITS MISSES  BOUND / STATIC")
    for a in args:
        refill, size = float(a.split(":")[0]), int(a.split(":")[1])
        idle, missed = bound(refill)
        s_idle, s_missed = static(refill, size)
        print(
            f"{refill:8.3f}  {idle:11.0f}  {100 * missed / CLAIMS:9.2f}%  {size:11d}"
            f"  {s_idle:9.0f}  {100 * s_missed / CLAIMS:9.2f}%  {idle / s_idle:14.2f}"
        )


if __name__ == "__main__":
    main()
