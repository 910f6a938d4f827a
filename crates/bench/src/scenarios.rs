//! The first seven scenarios of the benchmark (the eighth is in `demand.rs`).
//! Each starts what it measures, measures it next to its baseline in the same
//! run, reports rows and stops everything again.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::Method;

use crate::load::{self, claim, Conn};
use crate::procs::{self, patch_pool, Nginx, RawApp, Server};
use crate::report::Row;
use crate::stats::{median, Samples};
use crate::Ctx;

/// Sizes and durations of one run (`--quick` or the default).
#[derive(Clone, Debug)]
pub struct Params {
    pub sim_pool: u64,
    pub sim_claims: u64,
    pub process_pool: u64,
    pub throughput_pool: u64,
    pub throughput_clients: usize,
    pub throughput_secs: f64,
    pub ttfb_warm: u64,
    pub ttfb_cold: u64,
    pub ttfb_docker: u64,
    pub proxy_rounds: usize,
    pub proxy_secs: f64,
    pub proxy_conns: usize,
    pub stream_iters: usize,
    pub ws_rounds: usize,
    pub fill_process: u64,
    pub fill_docker: u64,
    pub fill_rounds: usize,
    pub scale_big: u64,
    pub scale_small: u64,
    pub scale_claims: u64,
    /// Scenario 7: the pool rolled out, and the claims per second meanwhile.
    pub rollout_pool: u64,
    pub rollout_rate: f64,
    /// Seconds of claims before the first rollout (the refills settle).
    pub rollout_warmup_secs: f64,
    /// Rollouts in a row under the same claims, and plain fills before them.
    pub rollout_rounds: usize,
    /// Seconds a rollout has to complete before the scenario fails.
    pub rollout_deadline_secs: u64,
    /// Scenario 8: the trace's shape, and the autoscaled setup's scale-down
    /// delay.
    pub demand: crate::demand::Shape,
    pub demand_delay_secs: f64,
    /// Scenario 9: set-up claims (and as many plain ones), and cold starts
    /// with the set-up, on the process runtime and on Docker.
    pub setup_claims: u64,
    pub setup_cold: u64,
    pub setup_claims_docker: u64,
    pub setup_cold_docker: u64,
    /// Scenario 10: each pool's size and the claims made on each, on the
    /// process runtime and on Docker.
    pub refill_pool: u64,
    pub refill_claims: u64,
    pub refill_pool_docker: u64,
    pub refill_claims_docker: u64,
}

impl Params {
    pub fn new(quick: bool) -> Params {
        if quick {
            Params {
                sim_pool: 300,
                sim_claims: 250,
                process_pool: 20,
                throughput_pool: 4_000,
                throughput_clients: 16,
                throughput_secs: 1.5,
                ttfb_warm: 5,
                ttfb_cold: 3,
                ttfb_docker: 2,
                proxy_rounds: 1,
                proxy_secs: 1.0,
                proxy_conns: 16,
                stream_iters: 2,
                ws_rounds: 200,
                fill_process: 30,
                fill_docker: 10,
                fill_rounds: 1,
                scale_big: 10_000,
                scale_small: 100,
                scale_claims: 200,
                rollout_pool: 30,
                rollout_rate: 20.0,
                rollout_warmup_secs: 1.0,
                rollout_rounds: 2,
                rollout_deadline_secs: 60,
                demand: crate::demand::Shape::new(true),
                demand_delay_secs: 3.0,
                setup_claims: 10,
                setup_cold: 3,
                setup_claims_docker: 4,
                setup_cold_docker: 2,
                refill_pool: 20,
                refill_claims: 15,
                refill_pool_docker: 6,
                refill_claims_docker: 4,
            }
        } else {
            Params {
                sim_pool: 1_000,
                sim_claims: 900,
                process_pool: 50,
                throughput_pool: 10_000,
                throughput_clients: 32,
                throughput_secs: 4.0,
                ttfb_warm: 20,
                ttfb_cold: 10,
                ttfb_docker: 8,
                proxy_rounds: 5,
                proxy_secs: 3.0,
                proxy_conns: 16,
                stream_iters: 5,
                ws_rounds: 2_000,
                fill_process: 100,
                fill_docker: 50,
                fill_rounds: 2,
                scale_big: 100_000,
                scale_small: 100,
                scale_claims: 5_000,
                rollout_pool: 100,
                rollout_rate: 50.0,
                rollout_warmup_secs: 2.0,
                rollout_rounds: 3,
                rollout_deadline_secs: 120,
                demand: crate::demand::Shape::new(false),
                demand_delay_secs: 10.0,
                setup_claims: 40,
                setup_cold: 10,
                setup_claims_docker: 15,
                setup_cold_docker: 5,
                refill_pool: 100,
                refill_claims: 90,
                refill_pool_docker: 40,
                refill_claims_docker: 30,
            }
        }
    }
}

/// A pool filled in one batch and then left alone (no refill during the
/// measurement: the next batch would be an hour away).
pub(crate) fn static_pool(runtime: &str, n: u64) -> Vec<(&'static str, String)> {
    vec![
        ("WARMPOOL_RUNTIME", runtime.to_owned()),
        ("POOL_TARGET_INSTANCES", n.to_string()),
        ("POOL_BATCH_SIZE", n.clamp(1, 10_000).to_string()),
        ("POOL_BATCH_SPACING_IN_SECONDS", "3600".into()),
    ]
}

pub(crate) fn docker_settings(mut s: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    s.push(("WARMPOOL_DOCKER_NETWORK", procs::NETWORK.into()));
    s
}

/// Waits until the reconciler passes that followed a fill are over
/// ([`Server::settled`]).
pub(crate) async fn settle(server: &Server) -> anyhow::Result<()> {
    server.settled(Duration::from_secs(60)).await
}

async fn release(conn: &mut Conn, id: &str) -> anyhow::Result<()> {
    conn.request(
        Method::DELETE,
        &format!("/v1/containers/{id}"),
        Bytes::new(),
        false,
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- scenario 1

/// Claims one at a time over one keep-alive connection, each next to a
/// `GET /healthz` on the same connection (the floor: HTTP over loopback).
async fn sequential_claims(
    server: &Server,
    claims: u64,
) -> anyhow::Result<(Samples, Samples, u64)> {
    let mut conn = Conn::connect(server.addr).await?;
    for _ in 0..5 {
        conn.get("/healthz").await?;
    }
    let (mut claim_s, mut health_s, mut cold) = (Samples::default(), Samples::default(), 0);
    for _ in 0..claims {
        let t = Instant::now();
        conn.get("/healthz").await?;
        health_s.push(t.elapsed());
        let c = claim(&mut conn).await?;
        claim_s.push(c.took);
        if !c.warm {
            cold += 1;
        }
    }
    Ok((claim_s, health_s, cold))
}

pub async fn warm_claim(
    ctx: &mut Ctx,
    runtime: &str,
    pool: u64,
    claims: u64,
) -> anyhow::Result<()> {
    ctx.step(&format!("1 warm claim: filling a {runtime} pool of {pool}"));
    let server = Server::spawn(&static_pool(runtime, pool))?;
    server.wait_ready(pool, Duration::from_secs(120)).await?;
    settle(&server).await?;
    ctx.step(&format!("1 warm claim: {claims} claims ({runtime})"));
    let (c, h, cold) = sequential_claims(&server, claims).await?;
    server.stop();
    if cold > 0 {
        ctx.note(format!(
            "1 warm claim ({runtime}): {cold} of {claims} claims were not warm"
        ));
    }
    let (cs, hs) = (c.summary(), h.summary());
    let met = cs.median_ms < 1.0 && cs.p99_ms < 5.0;
    ctx.rows.push(
        Row::new(
            "1 warm claim",
            format!("POST /container, {runtime} runtime, pool {pool}"),
        )
        .latency(cs.clone())
        .ratio(cs.median_ms / hs.median_ms, "x GET /healthz (p50)")
        .goal("p50 < 1 ms, p99 < 5 ms", met),
    );
    ctx.rows.push(
        Row::new(
            "1 warm claim",
            format!("baseline GET /healthz, same connection ({runtime})"),
        )
        .latency(hs),
    );
    ctx.cdf
        .push((format!("warm claim ({runtime})"), c.sorted_ms()));
    Ok(())
}

// ---------------------------------------------------------------- scenario 2

/// What the claimers of one round of scenario 2 got.
#[derive(Default)]
struct ClaimRound {
    ids: Vec<String>,
    latency: Samples,
    errors: u64,
    cold: u64,
    /// From the first claim to the last answer.
    seconds: f64,
}

impl ClaimRound {
    /// Adds `other`'s claims and errors (not its time).
    fn merge(&mut self, other: ClaimRound) {
        self.ids.extend(other.ids);
        self.latency.extend(&other.latency);
        self.errors += other.errors;
        self.cold += other.cold;
    }
}

/// `clients` connections claiming back to back for `duration`, or until
/// `budget` claims are made in all.
async fn claim_round(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    budget: u64,
) -> anyhow::Result<ClaimRound> {
    let budget = Arc::new(AtomicU64::new(budget));
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(Conn::connect(addr).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let budget = budget.clone();
        tasks.spawn(async move {
            let mut got = ClaimRound::default();
            while Instant::now() < deadline
                && budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                    .is_ok()
            {
                match claim(&mut conn).await {
                    Ok(c) => {
                        got.latency.push(c.took);
                        got.cold += u64::from(!c.warm);
                        got.ids.push(c.id);
                    }
                    Err(_) => got.errors += 1,
                }
            }
            (got, Instant::now())
        });
    }
    let (mut all, mut end) = (ClaimRound::default(), started);
    while let Some(r) = tasks.join_next().await {
        let (got, t) = r?;
        all.merge(got);
        end = end.max(t);
    }
    all.seconds = (end - started).as_secs_f64();
    Ok(all)
}

pub async fn throughput(ctx: &mut Ctx, p: &Params) -> anyhow::Result<()> {
    let pool = p.throughput_pool;
    ctx.step(&format!("2 throughput: filling a sim pool of {pool}"));
    let server = Server::spawn(&static_pool("sim", pool))?;
    server.wait_ready(pool, Duration::from_secs(120)).await?;
    settle(&server).await?;
    // Baseline and claims alternate, in rounds of half the time each, so that
    // a change in the machine's load meets both sides.
    const ROUNDS: u32 = 2;
    let duration = Duration::from_secs_f64(p.throughput_secs) / ROUNDS;
    let mut claims = ClaimRound::default();
    let mut base: Option<load::LoadResult> = None;
    for round in 1..=ROUNDS {
        ctx.step(&format!(
            "2 throughput: GET /healthz baseline, round {round} of {ROUNDS}"
        ));
        let b = load::load(server.addr, "/healthz", p.throughput_clients, duration).await?;
        match &mut base {
            None => base = Some(b),
            Some(a) => a.merge(b),
        }
        ctx.step(&format!(
            "2 throughput: claims from {} clients, round {round} of {ROUNDS}",
            p.throughput_clients
        ));
        // Stop before the pool runs dry, so that every claim is a warm one:
        // each round may take its share of 90% of the pool.
        let round = claim_round(
            server.addr,
            p.throughput_clients,
            duration,
            pool * 9 / 10 / u64::from(ROUNDS),
        )
        .await?;
        claims.seconds += round.seconds;
        claims.merge(round);
    }
    let base = base.expect("at least one round");
    let ClaimRound {
        ids,
        latency: lat,
        errors,
        cold,
        seconds: secs,
    } = claims;
    server.stop();
    let total = ids.len();
    let unique = ids.iter().collect::<HashSet<_>>().len();
    let dups = total - unique;
    let rate = total as f64 / secs;
    if errors > 0 || cold > 0 {
        ctx.note(format!(
            "2 throughput: {errors} claims failed, {cold} were not warm"
        ));
    }
    ctx.rows.push(
        Row::new(
            "2 throughput",
            format!(
                "{} concurrent claimers, sim pool {pool}, {total} claims, {dups} duplicate ids",
                p.throughput_clients
            ),
        )
        .latency(lat.summary())
        .value(rate, "claims/s")
        .ratio(rate / base.rps(), "x GET /healthz rate")
        .goal(
            "> 2000 claims/s, no duplicate id",
            rate > 2000.0 && dups == 0,
        ),
    );
    ctx.rows.push(
        Row::new(
            "2 throughput",
            format!(
                "baseline GET /healthz, same {} clients",
                p.throughput_clients
            ),
        )
        .latency(base.latency.summary())
        .value(base.rps(), "req/s"),
    );
    if dups > 0 {
        bail!("{dups} duplicate container ids handed out");
    }
    Ok(())
}

// ---------------------------------------------------------------- scenario 3

/// Issue 17's goal for a warm claim and the first byte through the proxy.
const FIRST_BYTE_GOAL: &str = "p50 <= 0.7 ms";
const FIRST_BYTE_GOAL_MS: f64 = 0.7;

/// Claim, then `GET /` through the proxy: time until its first byte.
async fn claim_to_first_byte(conn: &mut Conn) -> anyhow::Result<(Duration, load::Claim)> {
    let t = Instant::now();
    let c = claim(conn).await?;
    let a = conn.get(&format!("/container/{}/", c.id)).await?;
    if !a.status.is_success() {
        bail!("GET through the proxy answered {}", a.status);
    }
    Ok((t.elapsed(), c))
}

/// One warm claim and first byte on `conn`, then the wait until the pool's
/// refill is done (so that no sample overlaps another's start).
async fn ttfb_warm_one(server: &Server, conn: &mut Conn) -> anyhow::Result<Duration> {
    let (t, c) = claim_to_first_byte(conn).await?;
    if !c.warm {
        bail!("a claim of the warm pool was not warm");
    }
    settle(server).await?;
    Ok(t)
}

async fn ttfb_cold_one(server: &Server) -> anyhow::Result<Duration> {
    let mut conn = Conn::connect(server.addr).await?;
    let (t, c) = claim_to_first_byte(&mut conn).await?;
    if c.warm {
        bail!("a claim of the empty pool was warm");
    }
    release(&mut conn, &c.id).await?;
    Ok(t)
}

pub async fn warm_vs_cold(ctx: &mut Ctx, p: &Params) -> anyhow::Result<()> {
    ctx.step("3 warm vs cold: process runtime");
    let warm = Server::spawn(&static_pool("process", p.ttfb_warm))?;
    let cold = Server::spawn(&static_pool("process", 0))?;
    warm.wait_ready(p.ttfb_warm, Duration::from_secs(60))
        .await?;
    settle(&warm).await?;
    // The floor's other half: a bare app, idle on a live connection like the
    // pooled container's, then asked for `GET /` (it wakes as that one does).
    let app = RawApp::spawn()?;
    load::wait_first_byte(
        app.addr,
        "/healthz",
        Instant::now(),
        Duration::from_secs(60),
    )
    .await?;
    let mut idle = Conn::connect(app.addr).await?;
    idle.get("/healthz").await?;
    // Warm and cold samples alternate, each on a quiet machine.
    let mut conn = Conn::connect(warm.addr).await?;
    let (mut w, mut c, mut d) = (Samples::default(), Samples::default(), Samples::default());
    for i in 0..p.ttfb_warm.max(p.ttfb_cold) {
        if i < p.ttfb_warm {
            w.push(ttfb_warm_one(&warm, &mut conn).await?);
            let t = Instant::now();
            let a = idle.get("/").await?;
            if !a.status.is_success() {
                bail!("the bare app answered {}", a.status);
            }
            d.push(t.elapsed());
        }
        if i < p.ttfb_cold {
            c.push(ttfb_cold_one(&cold).await?);
            settle(&cold).await?;
        }
    }
    warm.stop();
    cold.stop();
    drop(app);
    let (ws, cs, ds) = (w.summary(), c.summary(), d.summary());
    ctx.rows.push(
        Row::new(
            "3 warm vs cold",
            "process: warm claim + first byte via proxy",
        )
        .latency(ws.clone())
        .goal(FIRST_BYTE_GOAL, ws.median_ms <= FIRST_BYTE_GOAL_MS),
    );
    ctx.rows.push(
        Row::new(
            "3 warm vs cold",
            "baseline GET / direct to an idle bare app, live connection",
        )
        .latency(ds.clone())
        .ratio(ds.median_ms / ws.median_ms, "x warm (p50)"),
    );
    ctx.rows.push(
        Row::new(
            "3 warm vs cold",
            "process: on-demand start (empty pool) + first byte",
        )
        .latency(cs.clone())
        .ratio(cs.median_ms / ws.median_ms, "x warm (p50)"),
    );
    ctx.cdf
        .push(("warm claim + first byte (process)".into(), w.sorted_ms()));
    ctx.cdf
        .push(("on-demand + first byte (process)".into(), c.sorted_ms()));

    if let Some(why) = ctx.docker_skip.clone() {
        ctx.note(format!("3 warm vs cold, Docker: skipped: {why}"));
        return Ok(());
    }
    ctx.step("3 warm vs cold: Docker");
    procs::docker_network().await?;
    let n = p.ttfb_docker;
    let warm = Server::spawn(&docker_settings(static_pool("docker", n)))?;
    let cold = Server::spawn(&docker_settings(static_pool("docker", 0)))?;
    warm.wait_ready(n, Duration::from_secs(120)).await?;
    settle(&warm).await?;
    // Warm, cold and raw samples alternate, each on a quiet machine.
    let mut conn = Conn::connect(warm.addr).await?;
    let (mut w, mut c, mut raw) = (Samples::default(), Samples::default(), Samples::default());
    for i in 0..n {
        w.push(ttfb_warm_one(&warm, &mut conn).await?);
        c.push(ttfb_cold_one(&cold).await?);
        settle(&cold).await?;
        let t = Instant::now();
        let (id, addr) = procs::docker_run(&format!("warmpool-bench-ttfb-{i}")).await?;
        raw.push(load::wait_first_byte(addr, "/", t, Duration::from_secs(60)).await?);
        procs::docker(&["rm", "-f", &id]).await?;
    }
    warm.stop();
    cold.stop();
    let (ws, cs, rs) = (w.summary(), c.summary(), raw.summary());
    ctx.rows.push(
        Row::new(
            "3 warm vs cold",
            "docker: warm claim + first byte via proxy",
        )
        .latency(ws.clone())
        .goal(FIRST_BYTE_GOAL, ws.median_ms <= FIRST_BYTE_GOAL_MS),
    );
    ctx.rows.push(
        Row::new("3 warm vs cold", "docker: on-demand start + first byte")
            .latency(cs.clone())
            .ratio(cs.median_ms / ws.median_ms, "x warm (p50)")
            .goal(
                "cold >= 450 x warm (p50)",
                cs.median_ms >= 450.0 * ws.median_ms,
            ),
    );
    ctx.rows.push(
        Row::new(
            "3 warm vs cold",
            "docker: plain `docker run` + wait for first byte",
        )
        .latency(rs.clone())
        .ratio(rs.median_ms / ws.median_ms, "x warm (p50)"),
    );
    ctx.cdf
        .push(("warm claim + first byte (docker)".into(), w.sorted_ms()));
    ctx.cdf
        .push(("on-demand + first byte (docker)".into(), c.sorted_ms()));
    ctx.cdf
        .push(("docker run + first byte".into(), raw.sorted_ms()));
    Ok(())
}

// ---------------------------------------------------------------- scenario 4

struct Side {
    name: &'static str,
    addr: SocketAddr,
    /// Path prefix of the app on this side ("" or "/container/{id}").
    prefix: String,
}

/// The sides `0..n` in the order of round `round`: interleaved, and the order
/// rotates from round to round.
fn rotated(round: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + round) % n)
}

/// Issue 17's goal for the proxy on tiny responses.
const PROXY_GOAL: &str = ">= 1.0x nginx and >= 0.5x direct";

/// Whether req/s of direct, warmpool and nginx (in that order) meet [`PROXY_GOAL`].
fn proxy_goal_met(rps: &[f64]) -> bool {
    rps[1] >= rps[2] && rps[1] >= 0.5 * rps[0]
}

/// Scenario 4's `GET /` again, driven by wrk (an outside load generator, one
/// thread, the same connections and duration), in interleaved rounds whose order
/// rotates; the median round of each side is reported.
async fn proxy_wrk(
    ctx: &mut Ctx,
    p: &Params,
    bin: &std::path::Path,
    sides: &[Side],
) -> anyhow::Result<()> {
    let url = |s: &Side| format!("http://{}{}/", s.addr, s.prefix);
    let mut runs: Vec<Vec<procs::WrkRun>> = sides.iter().map(|_| Vec::new()).collect();
    for round in 0..p.proxy_rounds {
        ctx.step(&format!(
            "4 proxy: GET / with wrk, round {} of {}",
            round + 1,
            p.proxy_rounds
        ));
        for i in rotated(round, sides.len()) {
            runs[i].push(procs::wrk(bin, &url(&sides[i]), p.proxy_conns, p.proxy_secs).await?);
        }
    }
    let mid = |v: &mut Vec<procs::WrkRun>| {
        v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        v[v.len() / 2]
    };
    let mid: Vec<procs::WrkRun> = runs.iter_mut().map(mid).collect();
    let rps: Vec<f64> = mid.iter().map(|r| r.rps).collect();
    for (i, s) in sides.iter().enumerate() {
        let mut row = Row::new(
            "4 proxy",
            format!(
                "GET / {}, wrk -t1, {} conns, {}x{}s (median round: p50 {:.3} ms, p99 {:.3} ms)",
                s.name,
                p.proxy_conns,
                p.proxy_rounds,
                p.proxy_secs.ceil().max(1.0),
                mid[i].p50_ms,
                mid[i].p99_ms
            ),
        )
        .value(rps[i], "req/s");
        if i > 0 {
            row = row.ratio(rps[i] / rps[0], "x direct req/s");
        }
        ctx.rows.push(row);
    }
    if sides.len() == 3 {
        ctx.rows.push(
            Row::new("4 proxy", "GET / warmpool vs nginx, wrk")
                .ratio(rps[1] / rps[2], "x nginx req/s")
                .goal(
                    &format!("{PROXY_GOAL} (x direct {:.2})", rps[1] / rps[0]),
                    proxy_goal_met(&rps),
                ),
        );
    }
    Ok(())
}

pub async fn proxy(ctx: &mut Ctx, p: &Params) -> anyhow::Result<()> {
    ctx.step("4 proxy: starting warmpool, the app and nginx");
    let server = Server::spawn(&static_pool("process", 1))?;
    server.wait_ready(1, Duration::from_secs(60)).await?;
    let mut conn = Conn::connect(server.addr).await?;
    let c = claim(&mut conn).await?;
    let app = server.container_addr(&c.id).await?;
    let nginx = match &ctx.nginx {
        Some(bin) => Some(Nginx::start(bin, app).await?),
        None => {
            ctx.note(
                "4 proxy: nginx is not installed, so the nginx side is skipped \
                 (install it with `apt-get install -y nginx`; the bench starts and stops it itself)"
                    .into(),
            );
            None
        }
    };
    let mut sides = vec![
        Side {
            name: "direct",
            addr: app,
            prefix: String::new(),
        },
        Side {
            name: "warmpool",
            addr: server.addr,
            prefix: format!("/container/{}", c.id),
        },
    ];
    if let Some(n) = &nginx {
        sides.push(Side {
            name: "nginx",
            addr: n.addr,
            prefix: String::new(),
        });
    }
    let secs = Duration::from_secs_f64(p.proxy_secs);
    // Warm-up: connections, caches, the upstream pools.
    for s in &sides {
        load::load(
            s.addr,
            &format!("{}/", s.prefix),
            p.proxy_conns,
            Duration::from_millis(300),
        )
        .await?;
    }
    let mut results: Vec<load::LoadResult> = sides.iter().map(|_| Default::default()).collect();
    let mut per_round: Vec<Vec<f64>> = sides.iter().map(|_| Vec::new()).collect();
    for round in 0..p.proxy_rounds {
        ctx.step(&format!(
            "4 proxy: GET / round {} of {}",
            round + 1,
            p.proxy_rounds
        ));
        // Interleaved, and the order rotates from round to round.
        for i in rotated(round, sides.len()) {
            let s = &sides[i];
            let r = load::load(s.addr, &format!("{}/", s.prefix), p.proxy_conns, secs).await?;
            per_round[i].push(r.rps());
            results[i].merge(r);
        }
    }
    let rps: Vec<f64> = per_round.iter().map(|v| median(v)).collect();
    for (i, s) in sides.iter().enumerate() {
        let mut row = Row::new(
            "4 proxy",
            format!(
                "GET / {}, {} conns, {}x{}s",
                s.name, p.proxy_conns, p.proxy_rounds, p.proxy_secs
            ),
        )
        .latency(results[i].latency.summary())
        .value(rps[i], "req/s");
        if i > 0 {
            row = row.ratio(rps[i] / rps[0], "x direct req/s");
        }
        if results[i].errors > 0 {
            ctx.note(format!(
                "4 proxy: {} errors on the {} side",
                results[i].errors, s.name
            ));
        }
        ctx.rows.push(row);
        ctx.proxy_bars.push((
            s.name.to_owned(),
            rps[i],
            format!(
                "(p50 {:.2} ms, p99 {:.2} ms)",
                results[i].latency.summary().median_ms,
                results[i].latency.summary().p99_ms
            ),
        ));
    }
    if sides.len() == 3 {
        ctx.rows.push(
            Row::new("4 proxy", "GET / warmpool vs nginx")
                .ratio(rps[1] / rps[2], "x nginx req/s")
                .goal(
                    &format!("{PROXY_GOAL} (x direct {:.2})", rps[1] / rps[0]),
                    proxy_goal_met(&rps),
                ),
        );
    }
    match ctx.wrk.clone() {
        Some(bin) => proxy_wrk(ctx, p, &bin, &sides).await?,
        None => ctx.note(
            "4 proxy: wrk is not installed, so the outside load generator's figures are \
             skipped (install it with `apt-get install -y wrk`)"
                .into(),
        ),
    }

    ctx.step("4 proxy: WebSocket echo");
    // One socket per side, round trips interleaved side by side.
    let mut sockets = Vec::new();
    for s in &sides {
        sockets.push(load::Ws::connect(&format!("ws://{}{}/ws", s.addr, s.prefix)).await?);
    }
    let mut rtt: Vec<Samples> = sides.iter().map(|_| Samples::default()).collect();
    for i in 0..p.ws_rounds {
        for (k, ws) in sockets.iter_mut().enumerate() {
            rtt[k].push(ws.round_trip(i).await?);
        }
    }
    for ws in sockets {
        ws.close().await;
    }
    let ws_direct = rtt[0].summary().median_ms;
    for (i, s) in sides.iter().enumerate() {
        let ws = rtt[i].summary();
        let mut row = Row::new("4 proxy", format!("WebSocket echo round trip, {}", s.name))
            .latency(ws.clone());
        if i > 0 {
            row = row.ratio(ws.median_ms / ws_direct, "x direct (p50)");
        }
        ctx.rows.push(row);
    }

    ctx.step("4 proxy: 10 MiB bodies");
    const MIB10: usize = 10 * 1024 * 1024;
    std::fs::write(
        server.container_dir(&c.id).join("index.txt"),
        vec![b'x'; MIB10],
    )
    .context("cannot write the container's 10 MiB text file")?;
    let upload = Bytes::from(vec![b'y'; MIB10]);
    let mut down: Vec<Samples> = sides.iter().map(|_| Samples::default()).collect();
    let mut up: Vec<Samples> = sides.iter().map(|_| Samples::default()).collect();
    let mut conns = Vec::new();
    for s in &sides {
        conns.push(Conn::connect(s.addr).await?);
    }
    for _ in 0..p.stream_iters {
        for (i, s) in sides.iter().enumerate() {
            let t = Instant::now();
            let a = conns[i].get(&format!("{}/", s.prefix)).await?;
            if a.length != MIB10 as u64 {
                bail!("{}: got {} bytes instead of 10 MiB", s.name, a.length);
            }
            down[i].push(t.elapsed());
            let t = Instant::now();
            let a = conns[i]
                .request(
                    Method::POST,
                    &format!("{}/upload", s.prefix),
                    upload.clone(),
                    false,
                )
                .await?;
            if !a.status.is_success() {
                bail!("{}: upload answered {}", s.name, a.status);
            }
            up[i].push(t.elapsed());
        }
    }
    for (what, samples) in [("download", &down), ("upload", &up)] {
        let base = samples[0].summary().median_ms;
        for (i, s) in sides.iter().enumerate() {
            let sum = samples[i].summary();
            let mut row = Row::new("4 proxy", format!("10 MiB {what}, {}", s.name))
                .latency(sum.clone())
                .value(10.0 / (sum.median_ms / 1000.0), "MiB/s");
            if i > 0 {
                row = row.ratio(sum.median_ms / base, "x direct time (p50)");
            }
            ctx.rows.push(row);
        }
    }
    drop(nginx);
    server.stop();
    Ok(())
}

// ---------------------------------------------------------------- scenario 5

/// `n` raw starts, `parallel` at a time, each waited for until it answers.
/// Seconds for `n` raw starts of `kind`, `parallel` at a time; `run` tells a
/// Docker fill's container names from another's.
async fn raw_fill(kind: &str, n: u64, parallel: usize, run: usize) -> anyhow::Result<f64> {
    let took = match kind {
        "process" => raw_process_fill(n, parallel).await?,
        _ => raw_docker_fill(n, parallel, run).await?,
    };
    Ok(took.as_secs_f64())
}

async fn raw_process_fill(n: u64, parallel: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let t = Instant::now();
            let app = RawApp::spawn()?;
            load::wait_first_byte(app.addr, "/healthz", t, Duration::from_secs(60)).await?;
            drop(permit);
            anyhow::Ok(app)
        });
    }
    let mut apps = Vec::new();
    while let Some(r) = tasks.join_next().await {
        apps.push(r??);
    }
    let took = started.elapsed();
    drop(apps);
    Ok(took)
}

async fn raw_docker_fill(n: u64, parallel: usize, round: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let t = Instant::now();
            let (id, addr) = procs::docker_run(&format!("warmpool-bench-fill-{round}-{i}")).await?;
            load::wait_first_byte(addr, "/healthz", t, Duration::from_secs(120)).await?;
            drop(permit);
            anyhow::Ok(id)
        });
    }
    let mut ids = Vec::new();
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok(id) => ids.push(id),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    let took = started.elapsed();
    procs::docker_cleanup().await;
    match first_err {
        Some(e) => Err(e),
        None => Ok(took),
    }
}

fn fill_settings(runtime: &str, n: u64) -> Vec<(&'static str, String)> {
    let mut s = vec![
        ("WARMPOOL_RUNTIME", runtime.to_owned()),
        ("POOL_TARGET_INSTANCES", n.to_string()),
        ("POOL_BATCH_SIZE", "10".into()),
        ("POOL_BATCH_SPACING_IN_SECONDS", "0".into()),
        ("WARMPOOL_START_TIMEOUT_SECONDS", "120".into()),
    ];
    if runtime == "docker" {
        s = docker_settings(s);
    }
    s
}

async fn warmpool_fill(runtime: &str, n: u64) -> anyhow::Result<Duration> {
    let server = Server::spawn(&fill_settings(runtime, n))?;
    let took = server.wait_ready(n, Duration::from_secs(300)).await?;
    server.stop();
    Ok(took)
}

pub async fn fill(ctx: &mut Ctx, p: &Params) -> anyhow::Result<()> {
    let mut kinds = vec![("process", p.fill_process)];
    match ctx.docker_skip.clone() {
        None => kinds.push(("docker", p.fill_docker)),
        Some(why) => ctx.note(format!("5 fill, Docker: skipped: {why}")),
    }
    for (kind, n) in kinds {
        if kind == "docker" {
            procs::docker_network().await?;
        }
        // With no spacing, a batch starts at every pass, so warmpool may have
        // up to all `n` starts in flight: both pairings are reported, raw starts
        // 10 at a time (the batch size) and all at once (the most in flight).
        let (mut pool, mut raw, mut raw_all) = (Vec::new(), Vec::new(), Vec::new());
        let parallel_all = usize::try_from(n).unwrap_or(usize::MAX).max(1);
        for round in 0..p.fill_rounds {
            ctx.step(&format!(
                "5 fill: {n} {kind} containers, round {}",
                round + 1
            ));
            pool.push(warmpool_fill(kind, n).await?.as_secs_f64());
            raw.push(raw_fill(kind, n, 10, 2 * round).await?);
            raw_all.push(raw_fill(kind, n, parallel_all, 2 * round + 1).await?);
        }
        let (pm, rm, am) = (median(&pool), median(&raw), median(&raw_all));
        ctx.rows.push(
            Row::new(
                "5 fill",
                format!("warmpool fills {n} {kind}, batch 10, no spacing"),
            )
            .value(pm, "s")
            .ratio(pm / rm, "x raw starts 10 at a time"),
        );
        ctx.rows.push(
            Row::new(
                "5 fill",
                format!("{n} raw {kind} starts, 10 at a time, each until it answers"),
            )
            .value(rm, "s"),
        );
        ctx.rows.push(
            Row::new(
                "5 fill",
                format!("{n} raw {kind} starts, all at once, each until it answers"),
            )
            .value(am, "s"),
        );
        ctx.rows.push(
            Row::new(
                "5 fill",
                format!("warmpool vs {n} raw {kind} starts all at once"),
            )
            .ratio(pm / am, "x raw starts all at once"),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- scenario 6

pub async fn scale(ctx: &mut Ctx, p: &Params) -> anyhow::Result<()> {
    let live_pool = |n: u64| {
        vec![
            ("WARMPOOL_RUNTIME", "sim".to_owned()),
            ("POOL_TARGET_INSTANCES", n.to_string()),
            ("POOL_BATCH_SIZE", n.clamp(1, 10_000).to_string()),
            ("POOL_BATCH_SPACING_IN_SECONDS", "0".into()),
        ]
    };
    ctx.step(&format!(
        "6 scale: filling sim pools of {} and {}",
        p.scale_small, p.scale_big
    ));
    let small = Server::spawn(&live_pool(p.scale_small))?;
    let big = Server::spawn(&live_pool(p.scale_big))?;
    small
        .wait_ready(p.scale_small, Duration::from_secs(60))
        .await?;
    let fill_big = big
        .wait_ready(p.scale_big, Duration::from_secs(300))
        .await?;
    settle(&small).await?;
    settle(&big).await?;
    let (rss_small, rss_big) = (small.rss_kib().unwrap_or(0), big.rss_kib().unwrap_or(0));

    ctx.step(&format!(
        "6 scale: {} claims on each, interleaved",
        p.scale_claims
    ));
    let (s0, b0) = (
        small.reconcile_metrics().await?,
        big.reconcile_metrics().await?,
    );
    let mut cs = Conn::connect(small.addr).await?;
    let mut cb = Conn::connect(big.addr).await?;
    let (mut ls, mut lb) = (Samples::default(), Samples::default());
    let block = 50;
    let mut done = 0;
    // Every claim must be warm: a cold one would measure a start, not a claim.
    let mut cold = 0;
    while done < p.scale_claims {
        for _ in 0..block {
            let c = claim(&mut cs).await?;
            cold += u64::from(!c.warm);
            ls.push(c.took);
        }
        for _ in 0..block {
            let c = claim(&mut cb).await?;
            cold += u64::from(!c.warm);
            lb.push(c.took);
        }
        done += block;
    }
    if cold > 0 {
        bail!("6 scale: {cold} of {} claims were not warm", 2 * done);
    }
    // Let the passes the claims triggered finish before reading the metrics.
    settle(&small).await?;
    settle(&big).await?;
    let (s1, b1) = (
        small.reconcile_metrics().await?,
        big.reconcile_metrics().await?,
    );
    let pass = |a: (f64, f64), b: (f64, f64)| {
        let n = b.1 - a.1;
        ((b.0 - a.0) / n.max(1.0) * 1000.0, n)
    };
    let ((pass_small, n_small), (pass_big, n_big)) = (pass(s0, s1), pass(b0, b1));
    let rss_big_after = big.rss_kib().unwrap_or(0);
    small.stop();
    big.stop();

    let (ss, sb) = (ls.summary(), lb.summary());
    let r = sb.median_ms / ss.median_ms;
    let r99 = sb.p99_ms / ss.p99_ms;
    let mib = |k: u64| k as f64 / 1024.0;
    ctx.rows.push(
        Row::new(
            "6 scale",
            format!("RSS of warmpool, {} tracked (sim)", p.scale_small),
        )
        .value(mib(rss_small), "MiB"),
    );
    ctx.rows.push(
        Row::new(
            "6 scale",
            format!("RSS of warmpool, {} tracked (sim)", p.scale_big),
        )
        .value(mib(rss_big), "MiB")
        .ratio(rss_big as f64 / rss_small.max(1) as f64, "x at small")
        .goal("< 150 MiB", mib(rss_big) < 150.0),
    );
    ctx.rows.push(
        Row::new(
            "6 scale",
            format!(
                "RSS after {} claims, {} tracked",
                p.scale_claims, p.scale_big
            ),
        )
        .value(mib(rss_big_after), "MiB"),
    );
    ctx.rows.push(
        Row::new(
            "6 scale",
            format!("time to fill {} sim containers", p.scale_big),
        )
        .value(fill_big.as_secs_f64(), "s"),
    );
    ctx.rows.push(
        Row::new("6 scale", format!("claim latency, pool {}", p.scale_small)).latency(ss.clone()),
    );
    ctx.rows.push(
        Row::new("6 scale", format!("claim latency, pool {}", p.scale_big))
            .latency(sb.clone())
            .ratio(r99, "x pool small (p99)")
            .goal(
                &format!("p99 <= 1.2x pool small's (p50 ratio {r:.2})"),
                r99 <= 1.2,
            ),
    );
    ctx.rows.push(
        Row::new(
            "6 scale",
            format!(
                "one reconcile pass, {} tracked (mean of {n_small})",
                p.scale_small
            ),
        )
        .value(pass_small, "ms"),
    );
    ctx.rows.push(
        Row::new(
            "6 scale",
            format!(
                "one reconcile pass, {} tracked (mean of {n_big})",
                p.scale_big
            ),
        )
        .value(pass_big, "ms")
        .ratio(pass_big / pass_small, "x pool small")
        .goal("<= 2x pool small's", pass_big <= 2.0 * pass_small),
    );
    ctx.cdf.push((
        format!("warm claim, sim pool {}", p.scale_big),
        lb.sorted_ms(),
    ));
    Ok(())
}

// ---------------------------------------------------------------- scenario 7

/// The pool scenario 7 rolls out (the server's default pool).
const ROLLOUT_POOL: &str = "default";
/// How often scenario 7 reads `GET /v1/pools/{pool}`: the resolution of its
/// durations and of the lowest ready count.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// `GET path` as JSON over `conn`.
pub(crate) async fn get_json(conn: &mut Conn, path: &str) -> anyhow::Result<serde_json::Value> {
    let a = conn.request(Method::GET, path, Bytes::new(), true).await?;
    if !a.status.is_success() {
        bail!(
            "GET {path} answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    Ok(serde_json::from_slice(&a.body)?)
}

/// Ready containers of a `PoolDetail`, every revision and location.
fn ready_of(detail: &serde_json::Value) -> u64 {
    detail["locations"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["ready"].as_u64()).sum())
        .unwrap_or(0)
}

/// What [`watch_pool`] saw.
struct Watched {
    /// From `since` until the sample that met the condition was answered (or
    /// until the last sample, if it was never met).
    took: Duration,
    /// The condition was met (otherwise `within` ran out).
    done: bool,
    /// The lowest ready count of the samples.
    lowest_ready: u64,
    samples: u64,
    /// The last sample: the rollout's status and the ready count.
    last: serde_json::Value,
}

impl Watched {
    /// Fails unless the condition was met.
    fn done(self, what: &str) -> anyhow::Result<Watched> {
        if !self.done {
            bail!(
                "{what}: not done after {:.1} s: {}",
                self.took.as_secs_f64(),
                self.last
            );
        }
        Ok(self)
    }
}

/// Reads the pool every [`SAMPLE_EVERY`] until `done` says it is done (or
/// fails) or `within` has passed.
async fn watch_pool(
    conn: &mut Conn,
    pool: &str,
    since: Instant,
    within: Duration,
    mut done: impl FnMut(&serde_json::Value) -> anyhow::Result<bool>,
) -> anyhow::Result<Watched> {
    let path = format!("/v1/pools/{pool}");
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut lowest_ready, mut samples) = (u64::MAX, 0);
    loop {
        tick.tick().await;
        let detail = get_json(conn, &path).await?;
        let took = since.elapsed();
        samples += 1;
        lowest_ready = lowest_ready.min(ready_of(&detail));
        let met = done(&detail)?;
        if met || took > within {
            return Ok(Watched {
                took,
                done: met,
                lowest_ready,
                samples,
                last: serde_json::json!({
                    "rollout": detail["rollout"],
                    "ready": ready_of(&detail),
                }),
            });
        }
    }
}

/// The claims of an open-loop run that were due in a window.
#[derive(Default)]
struct Tally {
    answered: u64,
    warm: u64,
    failed: u64,
    latency: Samples,
    first_error: Option<String>,
}

impl Tally {
    /// The claims due in any of `windows` (start, length; half-open).
    fn of(claims: &[load::ClaimRecord], windows: &[(Instant, Duration)]) -> Tally {
        let mut t = Tally::default();
        let due_in = |c: &&load::ClaimRecord| {
            windows
                .iter()
                .any(|(from, len)| c.due >= *from && c.due < *from + *len)
        };
        for c in claims.iter().filter(due_in) {
            match &c.warm {
                Ok(warm) => {
                    t.answered += 1;
                    t.warm += u64::from(*warm);
                    t.latency.push(c.took);
                }
                Err(e) => {
                    t.failed += 1;
                    t.first_error.get_or_insert_with(|| e.clone());
                }
            }
        }
        t
    }

    fn warm_percent(&self) -> f64 {
        100.0 * self.warm as f64 / self.answered.max(1) as f64
    }
}

/// Batch spacing of scenario 7's pool (its batch size is 10): small, but not
/// 0, so that both the fill and the rollout go at the pace of their batches.
const ROLLOUT_SPACING_SECS: f64 = 0.1;

fn secs_range(v: &[f64]) -> String {
    let (lo, hi) = v.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), x| {
        (lo.min(*x), hi.max(*x))
    });
    format!("{lo:.2}-{hi:.2} s")
}

/// A pool of `rollout_pool` process containers, claimed at `rollout_rate` per
/// second (each released once answered), rolls out a new revision (a changed
/// `app_env`), `rollout_rounds` times in a row. Baselines in the same run: as
/// many plain fills of the same pool with the same batch settings (target
/// 0 -> n, no claims), and the same claims for as long again once the last
/// rollout is complete.
pub async fn rollout(ctx: &mut Ctx, p: &Params) -> anyhow::Result<()> {
    let (n, rate, pool) = (p.rollout_pool, p.rollout_rate, ROLLOUT_POOL);
    let rounds = p.rollout_rounds.max(1);
    let sc = "7 rollout";
    let detail_path = format!("/v1/pools/{pool}");
    ctx.step(&format!("7 rollout: {rounds} plain fills of {n} (process)"));
    let server = Server::spawn(&[
        ("WARMPOOL_RUNTIME", "process".into()),
        ("WARMPOOL_POOL", pool.into()),
        ("POOL_TARGET_INSTANCES", "0".into()),
        ("POOL_BATCH_SIZE", "10".into()),
        (
            "POOL_BATCH_SPACING_IN_SECONDS",
            ROLLOUT_SPACING_SECS.to_string(),
        ),
        ("WARMPOOL_START_TIMEOUT_SECONDS", "120".into()),
    ])?;
    let mut conn = Conn::connect(server.addr).await?;
    let detail = get_json(&mut conn, &detail_path).await?;
    let surge = detail["settings"]["max_surge"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let mut fills = Vec::new();
    for round in 0..rounds {
        if round > 0 {
            // Back to an empty pool: every ready container stopped.
            let t = Instant::now();
            patch_pool(
                &mut conn,
                pool,
                serde_json::json!({ "targets": { "default": 0 } }),
            )
            .await?;
            watch_pool(&mut conn, pool, t, Duration::from_secs(60), |d| {
                let starting: u64 = d["locations"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|l| l["starting"].as_u64()).sum())
                    .unwrap_or(0);
                Ok(ready_of(d) == 0 && starting == 0)
            })
            .await?
            .done("emptying the pool")?;
            settle(&server).await?;
        }
        let t = Instant::now();
        patch_pool(
            &mut conn,
            pool,
            serde_json::json!({ "targets": { "default": n } }),
        )
        .await?;
        let fill = watch_pool(&mut conn, pool, t, Duration::from_secs(300), |d| {
            Ok(ready_of(d) >= n)
        })
        .await?
        .done("plain fill")?;
        fills.push(fill.took.as_secs_f64());
    }
    settle(&server).await?;

    ctx.step(&format!(
        "7 rollout: claims at {rate}/s, {rounds} rollouts in a row"
    ));
    let claims = load::OpenClaims::start(server.addr, rate);
    tokio::time::sleep(Duration::from_secs_f64(p.rollout_warmup_secs)).await;
    let (mut windows, mut durations, mut befores) = (Vec::new(), Vec::new(), Vec::new());
    // Until at most one, and until no ready container of the old revision.
    let (mut all_but_one, mut replaced) = (Vec::new(), Vec::new());
    let (mut lowest, mut samples) = (u64::MAX, 0);
    let deadline = Duration::from_secs(p.rollout_deadline_secs);
    // The rollout that did not complete in time, if one did not.
    let mut stuck: Option<String> = None;
    let mut old_stayed = false;
    for round in 0..rounds {
        if round > 0 {
            // The refills of the last rollout's claims settle.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        befores.push(ready_of(&get_json(&mut conn, &detail_path).await?).to_string());
        let t = Instant::now();
        let answer = patch_pool(
            &mut conn,
            pool,
            serde_json::json!({ "app_env": { "BENCH_REVISION": (round + 2).to_string() } }),
        )
        .await?;
        if answer["newRevision"] != serde_json::Value::Bool(true) {
            bail!("changing app_env made no new revision: {answer}");
        }
        let revision = answer["pool"]["revision"]
            .as_u64()
            .context("PATCH answered no revision")?;
        // When the samples first show at most one, and no ready container of an
        // older revision.
        let (mut one_left, mut old_gone): (Option<Duration>, Option<Duration>) = (None, None);
        let roll = watch_pool(&mut conn, pool, t, deadline, |d| {
            let r = &d["rollout"];
            let current = r["revision"].as_u64() == Some(revision);
            let stale = r["staleReady"].as_u64().unwrap_or(u64::MAX);
            if current && stale <= 1 {
                one_left.get_or_insert_with(|| t.elapsed());
            }
            if current && stale == 0 {
                old_gone.get_or_insert_with(|| t.elapsed());
            }
            match r["phase"].as_str() {
                Some("failed") => bail!("the rollout failed: {}", r["error"]),
                Some("complete") => Ok(current),
                _ => Ok(false),
            }
        })
        .await?;
        windows.push((t, roll.took));
        durations.push(roll.took.as_secs_f64());
        // Not gone by the deadline: the deadline stands for it (a lower bound).
        old_stayed |= old_gone.is_none();
        replaced.push(old_gone.unwrap_or(roll.took).as_secs_f64());
        all_but_one.push(one_left.unwrap_or(roll.took).as_secs_f64());
        lowest = lowest.min(roll.lowest_ready);
        samples += roll.samples;
        if !roll.done {
            stuck = Some(format!(
                "rollout {} of {rounds} not complete after {} s (last sample: {})",
                round + 1,
                deadline.as_secs(),
                roll.last
            ));
            break;
        }
    }

    // The same claims for as long again, with no rollout.
    let total: Duration = windows.iter().map(|(_, d)| *d).sum();
    let quiet_for = total.clamp(Duration::from_secs(1), Duration::from_secs(30));
    ctx.step(&format!(
        "7 rollout: the same claims for {:.1} s without a rollout",
        quiet_for.as_secs_f64()
    ));
    let t2 = Instant::now();
    let quiet = watch_pool(
        &mut conn,
        pool,
        t2,
        quiet_for + Duration::from_secs(10),
        |_| Ok(t2.elapsed() >= quiet_for),
    )
    .await?;
    let result = claims.stop().await?;
    server.stop();

    let during = Tally::of(&result.claims, &windows);
    let after = Tally::of(&result.claims, &[(t2, quiet.took)]);
    for (what, tally) in [("during the rollouts", &during), ("after them", &after)] {
        if let Some(e) = &tally.first_error {
            ctx.note(format!(
                "7 rollout: {} claims {what} failed; the first: {e}",
                tally.failed
            ));
        }
    }
    if result.release_errors > 0 {
        ctx.note(format!(
            "7 rollout: {} releases failed",
            result.release_errors
        ));
    }
    let load_text = format!("process pool {n}, {rate} claims/s");
    ctx.rows.push(
        Row::new(
            sc,
            format!(
                "warm claims during {}: {} of {} answered, {} failed ({load_text})",
                match windows.len() {
                    1 => "the rollout".to_owned(),
                    k => format!("{k} rollouts"),
                },
                during.warm,
                during.answered,
                during.failed
            ),
        )
        .value(during.warm_percent(), "% warm")
        .goal(
            "100% warm, no claim failed",
            during.answered > 0 && during.warm == during.answered && during.failed == 0,
        ),
    );
    ctx.rows.push(
        Row::new(
            sc,
            format!(
                "warm claims, same load, no rollout: {} of {} answered, {} failed",
                after.warm, after.answered, after.failed
            ),
        )
        .value(after.warm_percent(), "% warm"),
    );
    let (ds, qs) = (during.latency.summary(), after.latency.summary());
    ctx.rows.push(
        Row::new(sc, "claim latency during the rollouts (from its tick)")
            .latency(ds.clone())
            .ratio(ds.median_ms / qs.median_ms, "x no rollout (p50)"),
    );
    ctx.rows.push(
        Row::new(
            sc,
            format!(
                "claim latency, same load, no rollout ({:.1} s after them)",
                quiet.took.as_secs_f64()
            ),
        )
        .latency(qs),
    );
    ctx.rows.push(
        Row::new(
            sc,
            format!(
                "lowest ready during the rollouts (target {n}; ready before each: {}; {samples} samples)",
                befores.join(", ")
            ),
        )
        .value(lowest as f64, "ready")
        .ratio(lowest as f64 / n as f64, "x target"),
    );
    ctx.rows.push(
        Row::new(
            sc,
            format!(
                "lowest ready, same load, no rollout ({} samples)",
                quiet.samples
            ),
        )
        .value(quiet.lowest_ready as f64, "ready")
        .ratio(quiet.lowest_ready as f64 / n as f64, "x target"),
    );
    let (rm, gm, fm) = (median(&durations), median(&replaced), median(&fills));
    let done = durations.len();
    let om = median(&all_but_one);
    ctx.rows.push(
        Row::new(
            sc,
            format!(
                "rollout of {n} under load: PATCH app_env until at most 1 ready container of the old revision: median of {done}, {}",
                secs_range(&all_but_one)
            ),
        )
        .value(om, "s")
        .ratio(om / fm, "x plain fill"),
    );
    ctx.rows.push(
        Row::new(
            sc,
            format!(
                "rollout of {n} under load: PATCH app_env until no ready container of the old revision: median of {done}, {}{}",
                secs_range(&replaced),
                if old_stayed { "; the old revision still ready at the deadline" } else { "" }
            ),
        )
        .value(gm, "s")
        .ratio(gm / fm, "x plain fill"),
    );
    let incomplete = match &stuck {
        Some(_) => format!(
            "; rollout {done} NOT complete after {} s",
            deadline.as_secs()
        ),
        None => String::new(),
    };
    ctx.rows.push(
        Row::new(
            sc,
            format!(
                "rollout of {n} under load: PATCH app_env until phase complete (surge {surge}): median of {done}, {}{incomplete}",
                secs_range(&durations)
            ),
        )
        .value(rm, "s")
        .ratio(rm / fm, "x plain fill")
        .goal(
            &format!("complete within {} s", deadline.as_secs()),
            stuck.is_none(),
        ),
    );
    ctx.rows.push(
        Row::new(
            sc,
            format!(
                "plain fill of {n}, no load, target 0 -> {n} until {n} ready (batch 10, spacing {ROLLOUT_SPACING_SECS} s): median of {rounds}, {}",
                secs_range(&fills)
            ),
        )
        .value(fm, "s"),
    );
    if let Some(stuck) = stuck {
        bail!("{stuck}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::ClaimRecord;

    #[test]
    fn a_tally_counts_the_claims_due_in_its_windows() {
        let t0 = Instant::now();
        let at = |ms: u64, warm: Result<bool, String>| ClaimRecord {
            due: t0 + Duration::from_millis(ms),
            took: Duration::from_millis(1),
            warm,
        };
        let claims = [
            at(0, Ok(true)),
            at(100, Ok(true)),
            at(200, Ok(false)),
            at(300, Err("503".into())),
            at(400, Ok(true)),
        ];
        let ms = Duration::from_millis;
        let t = Tally::of(&claims, &[(t0 + ms(100), ms(200))]);
        assert_eq!((t.answered, t.warm, t.failed), (2, 1, 0));
        assert_eq!(t.warm_percent(), 50.0);
        // Two windows; each is half-open.
        let t = Tally::of(&claims, &[(t0 + ms(250), ms(100)), (t0 + ms(400), ms(1))]);
        assert_eq!((t.answered, t.warm, t.failed), (1, 1, 1));
        assert_eq!(t.first_error.as_deref(), Some("503"));
        assert_eq!(t.latency.len(), 1);
    }
}
