//! Scenario 10, "refill": warm claims one at a time on one keep-alive connection
//! while the pool refills after each (spacing 0: every claim starts a
//! replacement at once), against the same claims on a pool whose refill is held
//! back (the next batch an hour away), in alternating blocks, each block after
//! the previous one's refills are over. On the process runtime and on Docker.
//! Issue 17's goal: p99 at most 3 ms while refilling.

use std::time::Duration;

use anyhow::bail;

use crate::load::{claim, Conn};
use crate::procs::{self, Server};
use crate::report::Row;
use crate::scenarios::{docker_settings, settle, static_pool, Params};
use crate::stats::Samples;
use crate::Ctx;

/// Claims in a block, before the other pool's turn.
const BLOCK: u64 = 10;

/// The goal for claims while the pool refills, p99 in ms.
const GOAL_P99_MS: f64 = 3.0;

/// `n` warm claims on `conn`, back to back; fails on a claim that is not warm.
async fn block(conn: &mut Conn, n: u64, into: &mut Samples) -> anyhow::Result<()> {
    for _ in 0..n {
        let c = claim(conn).await?;
        if !c.warm {
            bail!("a claim was not warm (the pool ran dry)");
        }
        into.push(c.took);
    }
    Ok(())
}

async fn measure(
    ctx: &mut Ctx,
    runtime: &str,
    settings: impl Fn(Vec<(&'static str, String)>) -> Vec<(&'static str, String)>,
    pool: u64,
    claims: u64,
) -> anyhow::Result<()> {
    ctx.step(&format!("10 refill: filling two {runtime} pools of {pool}"));
    let mut refilling = static_pool(runtime, pool);
    refilling.retain(|(k, _)| *k != "POOL_BATCH_SPACING_IN_SECONDS");
    refilling.push(("POOL_BATCH_SPACING_IN_SECONDS", "0".into()));
    // One after the other: starts that time out on a swamped engine would
    // not be retried by the held-back pool (its next batch is an hour away).
    let ready = Duration::from_secs(180);
    let refilling = Server::spawn(&settings(refilling))?;
    refilling.wait_ready(pool, ready).await?;
    settle(&refilling).await?;
    let held = Server::spawn(&settings(static_pool(runtime, pool)))?;
    held.wait_ready(pool, ready).await?;
    settle(&held).await?;
    ctx.step(&format!(
        "10 refill: {claims} claims while refilling, {claims} held back ({runtime})"
    ));
    let (mut r_conn, mut h_conn) = (
        Conn::connect(refilling.addr).await?,
        Conn::connect(held.addr).await?,
    );
    let (mut r, mut h) = (Samples::default(), Samples::default());
    let mut done = 0;
    while done < claims {
        let n = BLOCK.min(claims - done);
        block(&mut h_conn, n, &mut h).await?;
        block(&mut r_conn, n, &mut r).await?;
        // The next block starts on a quiet machine.
        settle(&refilling).await?;
        done += n;
    }
    refilling.stop();
    held.stop();
    let (rs, hs) = (r.summary(), h.summary());
    let met = rs.p99_ms <= GOAL_P99_MS;
    ctx.rows.push(
        Row::new(
            "10 refill",
            format!("{runtime}: warm claim while the pool refills (pool {pool}, spacing 0)"),
        )
        .latency(rs.clone())
        .ratio(rs.p99_ms / hs.p99_ms, "x held back (p99)")
        .goal("p99 <= 3 ms", met),
    );
    ctx.rows.push(
        Row::new(
            "10 refill",
            format!("{runtime}: warm claim, refill held back, interleaved"),
        )
        .latency(hs),
    );
    ctx.cdf
        .push((format!("claim while refilling ({runtime})"), r.sorted_ms()));
    Ok(())
}

pub async fn refill(ctx: &mut Ctx, p: &Params) -> anyhow::Result<()> {
    measure(ctx, "process", |s| s, p.refill_pool, p.refill_claims).await?;
    if let Some(why) = ctx.docker_skip.clone() {
        ctx.note(format!("10 refill, Docker: skipped: {why}"));
        return Ok(());
    }
    procs::docker_network().await?;
    measure(
        ctx,
        "docker",
        docker_settings,
        p.refill_pool_docker,
        p.refill_claims_docker,
    )
    .await
}
