//! Scenario 9, "setup": a claim that carries a set-up (env, three 4 KiB files,
//! labels and metadata, delivered before the id is returned) against a plain
//! warm claim, interleaved on one connection, and against a cold start with the
//! same set-up, on the process runtime and on Docker.

use std::time::{Duration, Instant};

use anyhow::bail;
use hyper::Method;

use crate::load::Conn;
use crate::procs::{self, Server};
use crate::report::Row;
use crate::scenarios::{docker_settings, settle, static_pool, Params};
use crate::stats::Samples;
use crate::Ctx;

/// The set-up claim's body: 8 env vars, three 4 KiB files (one nested),
/// 3 labels and a small metadata object.
pub fn setup_body() -> serde_json::Value {
    let env: serde_json::Map<String, serde_json::Value> = (0..8)
        .map(|i| (format!("SETUP_VAR_{i}"), format!("value-{i}").into()))
        .collect();
    let content = |c: char| c.to_string().repeat(4096);
    serde_json::json!({
        "env": env,
        "files": {
            "a.txt": content('a'),
            "conf/b.json": content('b'),
            "conf/deep/c.txt": content('c'),
        },
        "labels": {"team": "bench", "tier": "free", "app.example.com/run": "9"},
        "metadata": {"user": "bench", "attempt": 1, "tags": ["x", "y"]},
    })
}

/// One claim with `body` over `conn`: its latency and whether it was warm.
async fn claim_with(
    conn: &mut Conn,
    body: &serde_json::Value,
) -> anyhow::Result<(Duration, bool, String)> {
    let t = Instant::now();
    let (status, v) = conn.json(Method::POST, "/container", body).await?;
    let took = t.elapsed();
    if !status.is_success() {
        bail!("the claim answered {status}: {v}");
    }
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    Ok((took, v["warm"].as_bool().unwrap_or(false), id))
}

/// Set-up and plain claims of a warm pool (interleaved), and cold set-up
/// claims of an empty one.
async fn measure(
    ctx: &mut Ctx,
    runtime: &str,
    settings: impl Fn(Vec<(&'static str, String)>) -> Vec<(&'static str, String)>,
    n: u64,
    cold_n: u64,
    goal_ms: f64,
) -> anyhow::Result<()> {
    ctx.step(&format!("9 setup: filling a {runtime} pool of {}", 2 * n));
    let warm = Server::spawn(&settings(static_pool(runtime, 2 * n)))?;
    let cold = Server::spawn(&settings(static_pool(runtime, 0)))?;
    warm.wait_ready(2 * n, Duration::from_secs(120)).await?;
    settle(&warm).await?;
    ctx.step(&format!(
        "9 setup: {n} set-up and {n} plain claims ({runtime})"
    ));
    let body = setup_body();
    let plain = serde_json::json!({});
    let mut conn = Conn::connect(warm.addr).await?;
    for _ in 0..5 {
        conn.get("/healthz").await?;
    }
    let (mut with, mut without) = (Samples::default(), Samples::default());
    let mut not_warm = 0;
    for _ in 0..n {
        let (t, w, _) = claim_with(&mut conn, &body).await?;
        with.push(t);
        let (u, v, _) = claim_with(&mut conn, &plain).await?;
        without.push(u);
        not_warm += u64::from(!w) + u64::from(!v);
    }
    if not_warm > 0 {
        bail!("{not_warm} claims of the warm {runtime} pool were not warm");
    }
    let mut cold_s = Samples::default();
    let mut cold_conn = Conn::connect(cold.addr).await?;
    for _ in 0..cold_n {
        let (t, w, id) = claim_with(&mut cold_conn, &body).await?;
        if w {
            bail!("a claim of the empty {runtime} pool was warm");
        }
        cold_s.push(t);
        cold_conn
            .request(
                Method::DELETE,
                &format!("/v1/containers/{id}"),
                Default::default(),
                false,
            )
            .await?;
    }
    warm.stop();
    cold.stop();
    let (ws, ps, cs) = (with.summary(), without.summary(), cold_s.summary());
    let cold_ratio = cs.median_ms / ws.median_ms;
    let met = ws.median_ms < goal_ms && cold_ratio >= 10.0;
    ctx.rows.push(
        Row::new(
            "9 setup",
            format!("{runtime}: warm claim with env, 3 x 4 KiB files, labels, metadata"),
        )
        .latency(ws.clone())
        .ratio(ws.median_ms / ps.median_ms, "x plain warm claim (p50)")
        .goal(
            &format!("p50 < {goal_ms} ms, cold >= 10x it (cold {cold_ratio:.0}x)"),
            met,
        ),
    );
    ctx.rows.push(
        Row::new(
            "9 setup",
            format!("{runtime}: plain warm claim, interleaved"),
        )
        .latency(ps),
    );
    ctx.rows.push(
        Row::new(
            "9 setup",
            format!("{runtime}: cold start with the same set-up"),
        )
        .latency(cs)
        .ratio(cold_ratio, "x the warm set-up claim (p50)"),
    );
    ctx.cdf
        .push((format!("set-up claim ({runtime})"), with.sorted_ms()));
    Ok(())
}

pub async fn setup(ctx: &mut Ctx, p: &Params) -> anyhow::Result<()> {
    measure(ctx, "process", |s| s, p.setup_claims, p.setup_cold, 2.0).await?;
    if let Some(why) = ctx.docker_skip.clone() {
        ctx.note(format!("9 setup, Docker: skipped: {why}"));
        return Ok(());
    }
    procs::docker_network().await?;
    measure(
        ctx,
        "docker",
        docker_settings,
        p.setup_claims_docker,
        p.setup_cold_docker,
        25.0,
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_setup_body_has_three_4k_files() {
        let b = super::setup_body();
        let files = b["files"].as_object().unwrap();
        assert_eq!(files.len(), 3);
        assert!(files.values().all(|f| f.as_str().unwrap().len() == 4096));
        assert_eq!(b["env"].as_object().unwrap().len(), 8);
    }
}
