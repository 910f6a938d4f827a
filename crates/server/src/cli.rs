//! The `warmpool` command line: `serve`, `sample-app`, and client commands against a
//! running warmpool.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches, Parser, Subcommand};
use warmpool_client::{ClaimRequest, Client, ContainerQuery};

use crate::config::{Config, SETTINGS};

#[derive(Parser, Debug)]
#[command(
    name = "warmpool",
    version,
    about = "Keeps pools of pre-started containers and hands one out instantly"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
    /// warmpool's URL, for client commands.
    #[arg(
        long,
        global = true,
        env = "WARMPOOL_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    pub url: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the warmpool server.
    Serve(ServeArgs),
    /// Run the sample app that pooled containers run by default.
    SampleApp,
    /// Print the OpenAPI document (what docs/openapi.json holds).
    Openapi,
    /// Measure claim latency and throughput, warm vs cold, proxy overhead, fill
    /// rate and scale against same-run baselines (see docs/BENCHMARKS.md).
    Bench(warmpool_bench::BenchArgs),
    /// Claim a container and print its id.
    Claim {
        /// Pool to claim from (default: the default pool).
        #[arg(long)]
        pool: Option<String>,
        #[arg(long)]
        location: Option<String>,
        /// Lifetime in seconds (default: the server's maximum).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// List containers.
    Ls {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        location: Option<String>,
        #[arg(long)]
        pool: Option<String>,
    },
    /// Show one container.
    Get { id: String },
    /// Stop and release a container early.
    Release { id: String },
    /// Show each pool's numbers.
    Pools,
    /// Show lifecycle events.
    Events {
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Wait until N containers are ready (exit code 1 at the deadline).
    Wait {
        #[arg(long)]
        ready: u32,
        #[arg(long)]
        location: Option<String>,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

/// `serve`'s flags: one per setting (see [`SETTINGS`]), each also read from its env
/// var, plus `--config FILE` (`WARMPOOL_CONFIG`), whose values come after both.
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    pub values: HashMap<String, String>,
    pub config_file: Option<String>,
    pub check_config: bool,
}

impl ServeArgs {
    pub fn config(&self) -> Result<Config, crate::config::ConfigError> {
        let file = match &self.config_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| crate::config::ConfigError {
                        key: "WARMPOOL_CONFIG".into(),
                        value: path.clone(),
                        reason: format!("cannot read it: {e}"),
                    })?;
                Config::parse_file(&text).map_err(|e| crate::config::ConfigError {
                    value: path.clone(),
                    ..e
                })?
            }
            None => Default::default(),
        };
        Config::from_sources(|k| self.values.get(k).cloned(), &file)
    }
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut s = ServeArgs::default();
        s.update_from_arg_matches(m)?;
        Ok(s)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for setting in SETTINGS {
            if let Some(v) = m.get_one::<String>(setting.env) {
                self.values.insert(setting.env.to_owned(), v.clone());
            }
        }
        self.check_config = m.get_flag("check-config");
        self.config_file = m.get_one::<String>("WARMPOOL_CONFIG").cloned();
        Ok(())
    }
}

impl Args for ServeArgs {
    fn augment_args(mut cmd: Command) -> Command {
        for s in SETTINGS {
            let help = if s.default.is_empty() {
                s.help.to_owned()
            } else {
                format!("{} [default: {}]", s.help, s.default)
            };
            let mut arg = Arg::new(s.env).long(s.flag).env(s.env).help(help);
            // On/off settings work as bare flags too: `--insecure-no-auth`.
            arg = if s.default == "false" {
                arg.value_name("BOOL")
                    .num_args(0..=1)
                    .default_missing_value("true")
            } else {
                arg.value_name("VALUE")
            };
            cmd = cmd.arg(arg);
        }
        cmd.arg(
            Arg::new("WARMPOOL_CONFIG")
                .long("config")
                .env("WARMPOOL_CONFIG")
                .value_name("FILE")
                .help("TOML file of settings (keys are these flags with _ for -); flags and env vars win over it"),
        )
        .arg(
            Arg::new("check-config")
                .long("check-config")
                .action(ArgAction::SetTrue)
                .help("Validate the configuration, print it, and exit"),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows as aligned columns.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// Runs a client command.
pub async fn run_client(cli: &Cli) -> anyhow::Result<i32> {
    let client = Client::new(&cli.url);
    let client = match std::env::var("WARMPOOL_API_TOKEN")
        .ok()
        .and_then(|t| t.split(',').next().map(str::to_owned))
    {
        Some(t) if !t.is_empty() => client.with_token(t),
        _ => client,
    };
    match &cli.command {
        Cmd::Claim {
            pool,
            location,
            ttl,
        } => {
            let c = client
                .claim(&ClaimRequest {
                    pool: pool.clone(),
                    location: location.clone(),
                    max_lifetime_in_seconds: *ttl,
                    ..Default::default()
                })
                .await?;
            if cli.json {
                print_json(&c)?;
            } else {
                println!("{}", c.id);
            }
        }
        Cmd::Ls {
            state,
            location,
            pool,
        } => {
            let list = client
                .containers(&ContainerQuery {
                    state: state.clone(),
                    location: location.clone(),
                    pool: pool.clone(),
                    limit: None,
                })
                .await?;
            if cli.json {
                print_json(&list)?;
            } else {
                table(
                    &[
                        "id", "state", "pool", "location", "address", "created", "expires",
                    ],
                    list.containers
                        .into_iter()
                        .map(|c| {
                            vec![
                                c.id,
                                c.state,
                                c.pool,
                                c.location,
                                opt(&c.address),
                                c.created_at,
                                opt(&c.expires_at),
                            ]
                        })
                        .collect(),
                );
            }
        }
        Cmd::Get { id } => {
            let c = client.container(id).await?;
            print_json(&c)?;
        }
        Cmd::Release { id } => {
            let c = client.release(id).await?;
            if cli.json {
                print_json(&c)?;
            } else {
                println!("{} {}", c.id, c.state);
            }
        }
        Cmd::Pools => {
            let p = client.pools().await?;
            if cli.json {
                print_json(&p)?;
            } else {
                table(
                    &[
                        "pool",
                        "location",
                        "target",
                        "ready",
                        "starting",
                        "allocated",
                        "failed",
                        "hits",
                        "misses",
                        "last error",
                    ],
                    p.pools
                        .into_iter()
                        .map(|p| {
                            vec![
                                p.pool,
                                p.location,
                                p.target.to_string(),
                                p.ready.to_string(),
                                p.starting.to_string(),
                                p.allocated.to_string(),
                                p.failed.to_string(),
                                p.hits.to_string(),
                                p.misses.to_string(),
                                opt(&p.last_error),
                            ]
                        })
                        .collect(),
                );
                println!("live {} of at most {}", p.live, p.max_instances);
            }
        }
        Cmd::Events { after, limit } => {
            let e = client.events(*after, *limit).await?;
            if cli.json {
                print_json(&e)?;
            } else {
                table(
                    &["seq", "at", "container", "from", "to", "reason"],
                    e.events
                        .into_iter()
                        .map(|e| {
                            vec![
                                e.seq.to_string(),
                                e.at,
                                e.container_id,
                                opt(&e.from),
                                e.to,
                                opt(&e.reason),
                            ]
                        })
                        .collect(),
                );
            }
        }
        Cmd::Wait {
            ready,
            location,
            timeout,
        } => return wait_ready(&client, *ready, location.as_deref(), *timeout).await,
        Cmd::Serve(_) | Cmd::SampleApp | Cmd::Openapi | Cmd::Bench(_) => {
            unreachable!("not client commands")
        }
    }
    Ok(0)
}

async fn wait_ready(
    client: &Client,
    want: u32,
    location: Option<&str>,
    timeout: u64,
) -> anyhow::Result<i32> {
    let bar = indicatif::ProgressBar::new(want as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} ready {pos}/{len} [{bar:30}] {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let ready: u32 = match client.pools().await {
            Ok(p) => p
                .pools
                .iter()
                .filter(|p| location.is_none_or(|l| p.location == l))
                .map(|p| p.ready)
                .sum(),
            Err(e) => {
                bar.set_message(e.to_string());
                0
            }
        };
        bar.set_position(ready.min(want) as u64);
        if ready >= want {
            bar.finish();
            return Ok(0);
        }
        if tokio::time::Instant::now() >= deadline {
            bar.abandon();
            eprintln!("only {ready} of {want} containers ready after {timeout}s");
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Entry point of the binary.
pub fn main() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    match &cli.command {
        Cmd::Openapi => {
            print!("{}", crate::routes::json());
            Ok(0)
        }
        Cmd::Bench(args) => warmpool_bench::run(args, cli.json),
        Cmd::SampleApp => {
            let config = warmpool_sample_app::Config::from_env()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(warmpool_sample_app::run(config))?;
            Ok(0)
        }
        Cmd::Serve(args) => {
            let config = args.config()?;
            if args.check_config {
                print!("{}", config.to_toml());
                return Ok(0);
            }
            let logs = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr);
            if config.log_json {
                logs.json().init();
            } else {
                logs.init();
            }
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(crate::server::run(config))
                .context("warmpool failed")?;
            Ok(0)
        }
        _ => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(run_client(&cli))
        }
    }
}
