//! `warmpool bench`: one command that measures what warmpool exists for (claim
//! latency and throughput, warm vs cold starts, proxy overhead, fill rate, memory
//! and latency at scale, a rollout under load, autoscaling against a demand
//! trace), each next to a baseline measured in the same run.
//!
//! It starts its own warmpool servers by running this very binary with `serve`
//! (so `cargo run --release -- bench` measures the release build), each on
//! 127.0.0.1:0 with a temp data dir, and stops everything it started.

pub mod demand;
pub mod load;
pub mod procs;
pub mod refill;
pub mod report;
pub mod scenarios;
pub mod setup;
pub mod stats;
pub mod svg;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use report::{Machine, Report, Row};
use scenarios::Params;

/// `warmpool bench`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A short run (a few minutes): smaller pools, fewer samples, one round,
    /// a shorter demand trace.
    #[arg(long)]
    pub quick: bool,
    /// With `--json` (warmpool's global flag): write the results as JSON to FILE
    /// as well as the table; `--json` alone prints the JSON instead of the table.
    #[arg(value_name = "FILE")]
    pub json_file: Option<PathBuf>,
    /// Where to write the SVG charts.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub svg_dir: PathBuf,
    /// Run only these scenarios: comma separated numbers or names, e.g. 1,4 or
    /// demand (warm-claim, throughput, warm-vs-cold, proxy, fill, scale,
    /// rollout, demand, setup, refill).
    #[arg(long, value_delimiter = ',', value_name = "N,...", value_parser = scenario_number)]
    pub only: Vec<u8>,
    /// Skip the Docker cases even when a Docker Engine is available.
    #[arg(long)]
    pub no_docker: bool,
}

/// The scenarios: their numbers and the names `--only` takes as well.
pub const SCENARIOS: &[(u8, &str)] = &[
    (1, "warm-claim"),
    (2, "throughput"),
    (3, "warm-vs-cold"),
    (4, "proxy"),
    (5, "fill"),
    (6, "scale"),
    (7, "rollout"),
    (8, "demand"),
    (9, "setup"),
    (10, "refill"),
];

/// A scenario's number, from its number or its name.
fn scenario_number(s: &str) -> Result<u8, String> {
    SCENARIOS
        .iter()
        .find(|(n, name)| *name == s || s.parse() == Ok(*n))
        .map(|(n, _)| *n)
        .ok_or_else(|| {
            let names: Vec<String> = SCENARIOS
                .iter()
                .map(|(n, name)| format!("{n} {name}"))
                .collect();
            format!("no scenario {s:?}; they are: {}", names.join(", "))
        })
}

/// State of one run: options, results, and the progress bar.
pub struct Ctx {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Latency series for the warm-vs-cold chart (sorted ms).
    pub cdf: Vec<(String, Vec<f64>)>,
    /// Throughput bars for the proxy chart.
    pub proxy_bars: Vec<(String, f64, String)>,
    /// Charts a scenario drew itself: file name and SVG.
    pub charts: Vec<(String, String)>,
    /// Tables a scenario prints after the main one.
    pub tables: Vec<String>,
    /// Scenario 8's runs, for the JSON.
    pub demand: Vec<demand::DemandRun>,
    /// Why the Docker cases are skipped, if they are.
    pub docker_skip: Option<String>,
    pub nginx: Option<PathBuf>,
    /// wrk, if installed: scenario 4 measures the proxy with it too.
    pub wrk: Option<PathBuf>,
    bar: ProgressBar,
    started: Instant,
    tty: bool,
}

impl Ctx {
    /// Moves the progress indicator on to the next step.
    pub fn step(&self, what: &str) {
        self.bar.inc(1);
        self.bar.set_message(what.to_owned());
        if !self.tty {
            eprintln!("[{:>5.1}s] {what}", self.started.elapsed().as_secs_f64());
        }
    }

    pub fn note(&mut self, n: String) {
        self.notes.push(n);
    }
}

/// The number of progress steps of a run (an estimate; the bar only moves).
fn steps(p: &Params, only: &dyn Fn(u8) -> bool) -> u64 {
    let mut n = 0;
    if only(1) {
        n += 4;
    }
    if only(2) {
        n += 3;
    }
    if only(3) {
        n += 2;
    }
    if only(4) {
        n += 3 + 2 * p.proxy_rounds as u64;
    }
    if only(5) {
        n += 2 * p.fill_rounds as u64;
    }
    if only(6) {
        n += 2;
    }
    if only(7) {
        n += 3;
    }
    if only(8) {
        // Three setups on each of two runtimes.
        n += 6;
    }
    if only(9) {
        n += 4;
    }
    if only(10) {
        n += 4;
    }
    n
}

/// Runs the benchmark (`json`: warmpool's global `--json` flag); the exit code is
/// 1 if a scenario failed.
pub fn run(args: &BenchArgs, json: bool) -> anyhow::Result<i32> {
    // Checked here, not by clap's `requires`: `--json` is the parent's global
    // flag, which a `requires` cannot name once the command is built on its own
    // (as the man page and completions build it).
    if let (Some(file), false) = (&args.json_file, json) {
        anyhow::bail!(
            "bench {}: a results file needs --json (warmpool bench --json {0})",
            file.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args, json))
}

async fn run_async(args: &BenchArgs, json: bool) -> anyhow::Result<i32> {
    let p = Params::new(args.quick);
    let only = |n: u8| args.only.is_empty() || args.only.contains(&n);
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        ProgressBar::new(steps(&p, &only))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let docker_skip = if args.no_docker {
        Some("--no-docker".to_owned())
    } else {
        procs::docker_unavailable().await
    };
    let mut ctx = Ctx {
        rows: Vec::new(),
        notes: Vec::new(),
        cdf: Vec::new(),
        proxy_bars: Vec::new(),
        charts: Vec::new(),
        tables: Vec::new(),
        demand: Vec::new(),
        docker_skip,
        nginx: procs::nginx_path(),
        wrk: procs::wrk_path(),
        bar,
        started: Instant::now(),
        tty,
    };
    let machine_at_start = Machine::read();
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if ctx.docker_skip.is_none() {
        procs::docker_cleanup().await;
    }

    let mut failed = 0;
    // Ctrl-C drops the running scenario, whose servers, nginx and apps are then
    // stopped by their `Drop`; the Docker containers are removed below.
    let interrupted = {
        let all = async {
            macro_rules! scenario {
                ($n:expr, $name:expr, $body:expr) => {
                    if only($n) {
                        if let Err(e) = $body {
                            failed += 1;
                            ctx.note(format!("scenario {} ({}) FAILED: {e:#}", $n, $name));
                        }
                    }
                };
            }
            scenario!(
                1,
                "warm claim, sim",
                scenarios::warm_claim(&mut ctx, "sim", p.sim_pool, p.sim_claims).await
            );
            scenario!(
                1,
                "warm claim, process",
                scenarios::warm_claim(&mut ctx, "process", p.process_pool, p.process_pool - 2)
                    .await
            );
            scenario!(
                2,
                "claim throughput",
                scenarios::throughput(&mut ctx, &p).await
            );
            scenario!(
                3,
                "warm vs cold",
                scenarios::warm_vs_cold(&mut ctx, &p).await
            );
            scenario!(4, "proxy overhead", scenarios::proxy(&mut ctx, &p).await);
            scenario!(5, "fill rate", scenarios::fill(&mut ctx, &p).await);
            scenario!(6, "scale", scenarios::scale(&mut ctx, &p).await);
            scenario!(
                7,
                "rollout under load",
                scenarios::rollout(&mut ctx, &p).await
            );
            scenario!(
                8,
                "demand trace, sim",
                demand::demand(&mut ctx, &p, "sim").await
            );
            scenario!(
                8,
                "demand trace, process",
                demand::demand(&mut ctx, &p, "process").await
            );
            scenario!(9, "claim-time setup", setup::setup(&mut ctx, &p).await);
            scenario!(
                10,
                "claims during refill",
                refill::refill(&mut ctx, &p).await
            );
        };
        tokio::select! {
            _ = all => false,
            _ = tokio::signal::ctrl_c() => true,
        }
    };
    if interrupted {
        failed += 1;
        ctx.note("interrupted: the results are incomplete".into());
    }

    if ctx.docker_skip.is_none() {
        procs::docker_cleanup().await;
        procs::docker_network_remove().await;
    } else if let Some(why) = &ctx.docker_skip {
        let n = format!("Docker cases skipped: {why}");
        if !ctx.notes.iter().any(|x| x.contains("Docker")) {
            ctx.note(n);
        }
    }
    ctx.bar.finish_and_clear();
    let seconds = ctx.started.elapsed().as_secs_f64();

    let report = Report {
        quick: args.quick,
        started_at,
        build: report::Build::this(),
        machine: machine_at_start,
        rows: ctx.rows.clone(),
        notes: ctx.notes.clone(),
        demand: ctx.demand.clone(),
        seconds,
    };
    let report_json = serde_json::to_string_pretty(&report)? + "\n";
    // `--json` alone: the JSON document is the output; otherwise the table.
    let json_only = json && args.json_file.is_none();
    macro_rules! say {
        ($($t:tt)*) => {
            if json_only { eprintln!($($t)*) } else { println!($($t)*) }
        };
    }
    say!(
        "warmpool bench{} at {} ({} build): {} CPUs, {:.0} GiB, load average {} at start; {:.0} s",
        if args.quick { " --quick" } else { "" },
        report.build.commit,
        report.build.profile,
        report.machine.cpus,
        report.machine.memory_gib,
        report.machine.load_average,
        seconds
    );
    say!();
    say!("{}", report::table(&ctx.rows).trim_end());
    for t in &ctx.tables {
        say!();
        say!("{}", t.trim_end());
    }
    if !ctx.tables.is_empty() {
        say!();
    }
    for n in &ctx.notes {
        say!("note: {n}");
    }

    std::fs::create_dir_all(&args.svg_dir)
        .with_context(|| format!("cannot create {}", args.svg_dir.display()))?;
    let mut written = Vec::new();
    if !ctx.cdf.is_empty() {
        let path = args.svg_dir.join("claim-latency.svg");
        std::fs::write(
            &path,
            svg::cdf(
                "Claim latency: warm vs cold",
                "cumulative distribution; claim = POST /container until the id; + first byte = then GET / through the proxy",
                &ctx.cdf,
            ),
        )?;
        written.push(path);
    }
    if !ctx.proxy_bars.is_empty() {
        let path = args.svg_dir.join("proxy-throughput.svg");
        std::fs::write(
            &path,
            svg::bars(
                "Proxy throughput: GET / on the sample app",
                "same load generator, same connections and duration, interleaved rounds (median)",
                "req/s",
                &ctx.proxy_bars,
            ),
        )?;
        written.push(path);
    }
    for (name, svg) in &ctx.charts {
        let path = args.svg_dir.join(name);
        std::fs::write(&path, svg)?;
        written.push(path);
    }
    for w in written {
        say!("chart: {}", w.display());
    }
    if let Some(path) = &args.json_file {
        std::fs::write(path, &report_json)
            .with_context(|| format!("cannot write {}", path.display()))?;
        say!("json: {}", path.display());
    } else if json_only {
        print!("{report_json}");
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_selected_by_number_or_name() {
        assert_eq!(scenario_number("7"), Ok(7));
        assert_eq!(scenario_number("rollout"), Ok(7));
        assert_eq!(scenario_number("8"), Ok(8));
        assert_eq!(scenario_number("demand"), Ok(8));
        assert_eq!(scenario_number("1"), Ok(1));
        assert_eq!(scenario_number("9"), Ok(9));
        assert_eq!(scenario_number("setup"), Ok(9));
        assert_eq!(scenario_number("10"), Ok(10));
        assert_eq!(scenario_number("refill"), Ok(10));
        assert!(scenario_number("11").is_err());
        assert!(scenario_number("roll").is_err());
    }
}
