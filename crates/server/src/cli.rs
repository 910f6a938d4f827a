//! The `warmpool` command line: `serve`, `sample-app`, and client commands against a
//! running warmpool.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches, Parser, Subcommand};
use warmpool_client::{
    ClaimRequest, Client, ContainerQuery, PoolDetail, PoolSettings, PoolView, PutPoolResponse,
};

use crate::config::{settings_from_table, Config, SETTINGS};

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
    /// rate, scale, a rollout under load and autoscaling against a demand trace,
    /// against same-run baselines (see docs/BENCHMARKS.md).
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
        /// Env for the app, KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Label of the container, KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// A file for the container, PATH=LOCAL_FILE: LOCAL_FILE's content is
        /// written at PATH under its files dir (repeatable).
        #[arg(long = "file", value_name = "PATH=LOCAL_FILE")]
        files: Vec<String>,
        /// Claim from a pool whose labels match this selector (instead of --pool).
        #[arg(long)]
        selector: Option<String>,
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
    /// Move a claimed container's expiry SECONDS later (up to its claim plus its
    /// pool's maximum lifetime).
    Extend { id: String, seconds: u64 },
    /// Reset a claimed container's idle timer, as a proxied request does.
    Keepalive { id: String },
    /// Show each pool's numbers; `pools get|rm|rollback NAME` for one pool.
    Pools {
        #[command(subcommand)]
        action: Option<PoolsCmd>,
    },
    /// Create or change pools from a file of `[pools.NAME]` tables (a config
    /// file's pools), printing what changes; pools it does not name are left alone.
    Apply {
        /// The TOML file.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: std::path::PathBuf,
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make the server re-read its config file and apply its pools if the file
    /// changed since they were last applied.
    Reload,
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
    /// Print a shell completion script: `warmpool completions bash >
    /// /etc/bash_completion.d/warmpool` (zsh: a `_warmpool` file on `$fpath`;
    /// fish: `~/.config/fish/completions/warmpool.fish`).
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the manual page (roff): `warmpool man > warmpool.1; man -l warmpool.1`.
    Man,
}

/// The shells `warmpool completions` writes for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// The completion script for `shell`.
pub fn completions(shell: CompletionShell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(
        shell.generator(),
        &mut <Cli as clap::CommandFactory>::command(),
        "warmpool",
        &mut out,
    );
    out
}

/// The manual page: `warmpool(1)`, with every command and `serve`'s settings.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    // Each command's own options, under a heading of its name.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        out.extend_from_slice(format!(".SH \"WARMPOOL {}\"\n", name.to_uppercase()).as_bytes());
        let man = clap_mangen::Man::new(sub.clone());
        let mut part = Vec::new();
        man.render_options_section(&mut part)?;
        // Its options section, under the command's heading instead of its own.
        let text = String::from_utf8_lossy(&part).replacen(".SH OPTIONS\n", "", 1);
        out.extend_from_slice(text.as_bytes());
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// What `warmpool pools` does to one pool.
#[derive(Subcommand, Debug)]
pub enum PoolsCmd {
    /// Show a pool's settings, revision, rollout and numbers per location.
    Get { name: String },
    /// Delete a pool: its ready containers stop, allocated ones run to the end of
    /// their lifetime, and claims naming it answer 404.
    Rm { name: String },
    /// Return a pool to its previous revision.
    Rollback { name: String },
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
            env,
            labels,
            files,
            selector,
        } => {
            let mut file_map = std::collections::BTreeMap::new();
            for (path, local) in pairs("--file", files)? {
                let content = std::fs::read_to_string(&local)
                    .map_err(|e| anyhow::anyhow!("--file {path}={local}: {e}"))?;
                file_map.insert(path, content);
            }
            let c = client
                .claim(&ClaimRequest {
                    pool: pool.clone(),
                    location: location.clone(),
                    max_lifetime_in_seconds: *ttl,
                    env: (!env.is_empty()).then(|| pairs("--env", env)).transpose()?,
                    labels: (!labels.is_empty())
                        .then(|| pairs("--label", labels))
                        .transpose()?,
                    files: (!file_map.is_empty()).then_some(file_map),
                    selector: selector.clone(),
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
                    label: None,
                    limit: None,
                })
                .await?;
            if cli.json {
                print_json(&list)?;
            } else {
                table(
                    &[
                        "id", "state", "pool", "rev", "location", "address", "created", "expires",
                    ],
                    list.containers
                        .into_iter()
                        .map(|c| {
                            vec![
                                c.id,
                                c.state,
                                c.pool,
                                c.revision.to_string(),
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
        Cmd::Extend { id, seconds } => {
            let c = client.extend(id, *seconds).await?;
            if cli.json {
                print_json(&c)?;
            } else {
                println!("{} expires {}", c.id, opt(&c.expires_at));
            }
        }
        Cmd::Keepalive { id } => {
            let c = client.keepalive(id).await?;
            if cli.json {
                print_json(&c)?;
            } else {
                println!("{} {}", c.id, c.state);
            }
        }
        Cmd::Pools { action: None } => {
            let p = client.pools().await?;
            if cli.json {
                print_json(&p)?;
            } else {
                pool_table(p.pools);
                println!("live {} of at most {}", p.live, p.max_instances);
            }
        }
        Cmd::Pools {
            action: Some(PoolsCmd::Get { name }),
        } => {
            let d = client.pool(name).await?;
            if cli.json {
                print_json(&d)?;
            } else {
                print!("{}", pool_summary(&d));
                println!();
                pool_table(d.locations);
            }
        }
        Cmd::Pools {
            action: Some(PoolsCmd::Rm { name }),
        } => {
            client.delete_pool(name).await?;
            println!(
                "pool/{name} deleted (draining: ready containers stop, allocated ones run to the end of their lifetime)"
            );
        }
        Cmd::Pools {
            action: Some(PoolsCmd::Rollback { name }),
        } => {
            let d = client.rollback(name).await?;
            if cli.json {
                print_json(&d)?;
            } else {
                println!("pool/{name} rolled back to revision {}", d.revision);
            }
        }
        Cmd::Apply { file, dry_run } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let pools =
                apply_pools(&text).with_context(|| format!("cannot apply {}", file.display()))?;
            // Every pool past the server's checks before any is changed.
            let mut answers = Vec::new();
            for (name, settings) in &pools {
                let a = client
                    .put_pool(name, settings, true)
                    .await
                    .with_context(|| format!("pool/{name}"))?;
                answers.push(a);
            }
            if !dry_run {
                answers.clear();
                for (name, settings) in &pools {
                    let a = client
                        .put_pool(name, settings, false)
                        .await
                        .with_context(|| format!("pool/{name}"))?;
                    answers.push(a);
                }
            }
            if cli.json {
                print_json(&answers)?;
            } else {
                for ((name, _), a) in pools.iter().zip(&answers) {
                    print!("{}", describe_put(name, a));
                }
            }
        }
        Cmd::Reload => {
            let r = client.reload().await?;
            if cli.json {
                print_json(&r)?;
            } else {
                println!(
                    "{}: {}",
                    if r.applied { "applied" } else { "not applied" },
                    r.reason
                );
                for a in &r.pools {
                    print!("{}", describe_put(&a.pool.name, a));
                }
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
        Cmd::Serve(_)
        | Cmd::SampleApp
        | Cmd::Openapi
        | Cmd::Bench(_)
        | Cmd::Completions { .. }
        | Cmd::Man => {
            unreachable!("not client commands")
        }
    }
    Ok(0)
}

/// Prints pool keys as a table.
fn pool_table(pools: Vec<PoolView>) {
    table(
        &[
            "pool",
            "rev",
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
        pools
            .into_iter()
            .map(|p| {
                vec![
                    p.pool,
                    p.revision.to_string(),
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
}

/// The pools of an `apply` file, in name order, each checked here as the server
/// will check it (so that an error names its field before anything is sent) and
/// in the types the API takes. Top-level keys are refused: they are the server's
/// own settings, not a pool's.
fn apply_pools(text: &str) -> anyhow::Result<Vec<(String, PoolSettings)>> {
    let doc: toml::Table = text.parse().context("not a TOML file")?;
    if let Some(key) = doc.keys().find(|k| *k != "pools") {
        anyhow::bail!(
            "{key}: apply takes [pools.NAME] tables; top-level settings are the server's own"
        );
    }
    let Some(pools) = doc.get("pools") else {
        anyhow::bail!("no [pools.NAME] table");
    };
    let toml::Value::Table(pools) = pools else {
        anyhow::bail!("pools: expected [pools.NAME] tables");
    };
    let mut out = Vec::new();
    for (name, table) in pools {
        let toml::Value::Table(table) = table else {
            anyhow::bail!("pools.{name}: expected a table");
        };
        out.push((name.clone(), settings_from_table(name, table)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What a `PUT` of pool `name` did (or, dry, would do), as `kubectl apply`
/// says it: `pool/NAME created|configured|unchanged`, then each change.
fn describe_put(name: &str, a: &PutPoolResponse) -> String {
    use std::fmt::Write;
    let dry = if a.dry_run { " (dry run)" } else { "" };
    let what = if a.created {
        "created"
    } else if a.changes.is_empty() {
        "unchanged"
    } else {
        "configured"
    };
    let mut out = format!("pool/{name} {what}{dry}\n");
    if a.created {
        return out;
    }
    let value = |v: &Option<serde_json::Value>| match v {
        Some(v) => v.to_string(),
        None => "(default)".to_owned(),
    };
    for c in &a.changes {
        let revision = if c.is_template() {
            " (new revision)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {}: {} -> {}{revision}",
            c.key,
            value(&c.old),
            value(&c.new)
        );
    }
    out
}

/// A pool's detail as text: revision and rollout, then its settings as the
/// `[pools.NAME]` table that `apply` takes.
fn pool_summary(d: &PoolDetail) -> String {
    use std::fmt::Write;
    let r = &d.rollout;
    let mut out = String::new();
    let _ = writeln!(out, "pool      {}", d.name);
    let _ = writeln!(
        out,
        "revision  {} (stable {})",
        d.revision, r.stable_revision
    );
    let _ = writeln!(
        out,
        "rollout   {} of revision {}: {} updated ready, {} stale ready, {} outdated allocated",
        r.phase, r.revision, r.updated_ready, r.stale_ready, r.outdated_allocated
    );
    if let Some(started) = &r.started_at {
        let _ = writeln!(
            out,
            "          started {started}, deadline {}",
            opt(&r.deadline)
        );
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "error     {e}");
    }
    let _ = writeln!(out, "created   {}", d.created_at);
    let _ = writeln!(out, "updated   {}", d.updated_at);
    match toml::Value::try_from(&d.settings) {
        Ok(settings) => {
            let pools = toml::Table::from_iter([(d.name.clone(), settings)]);
            let doc = toml::Table::from_iter([("pools".to_owned(), toml::Value::Table(pools))]);
            let _ = write!(out, "\n{doc}");
        }
        Err(e) => {
            let _ = writeln!(out, "\nsettings: cannot show them: {e}");
        }
    }
    out
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
        Cmd::Completions { shell } => {
            std::io::Write::write_all(&mut std::io::stdout(), &completions(*shell))?;
            Ok(0)
        }
        Cmd::Man => {
            std::io::Write::write_all(&mut std::io::stdout(), &man_page()?)?;
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
                for w in config.warnings() {
                    eprintln!("warning: {w}");
                }
                print!("{}", config.to_toml());
                return Ok(0);
            }
            use tracing_subscriber::layer::SubscriberExt as _;
            use tracing_subscriber::util::SubscriberInitExt as _;
            use tracing_subscriber::Layer as _;
            let rt = tokio::runtime::Runtime::new()?;
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
            let logs = if config.log_json {
                logs.json().with_filter(filter).boxed()
            } else {
                logs.with_filter(filter).boxed()
            };
            // Traces, when asked for: a layer of their own beside the log lines.
            let (traces, exporter) = match &config.otlp_endpoint {
                Some(url) => {
                    let (layer, exporter) = crate::otel::layer(url, rt.handle().clone())
                        .context("cannot set up the trace export")?;
                    (Some(layer), Some(exporter))
                }
                None => (None, None),
            };
            tracing_subscriber::registry()
                .with(logs)
                .with(traces)
                .init();
            if let Some(url) = &config.otlp_endpoint {
                tracing::info!(endpoint = %url, "exporting traces over OTLP/HTTP");
            }
            // SIGHUP and `POST /v1/reload` read the same flags and env vars and
            // the config file as it is then.
            let reread = args.clone();
            let reload: crate::state::Reload = std::sync::Arc::new(move || reread.config());
            let served = rt.block_on(crate::server::run(config, Some(reload)));
            if let Some(exporter) = exporter {
                // The last spans go out while the runtime that sends them still runs.
                rt.block_on(async { tokio::task::spawn_blocking(|| exporter.shutdown()).await })?;
            }
            served.context("warmpool failed")?;
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

/// `KEY=VALUE` arguments of `flag` as a map.
fn pairs(
    flag: &str,
    args: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    args.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("{flag} {a:?}: expected KEY=VALUE"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use warmpool_client::{RolloutStatus, SettingChange};

    use super::*;

    fn detail(name: &str, settings: PoolSettings) -> PoolDetail {
        PoolDetail {
            name: name.into(),
            settings,
            revision: 3,
            rollout: RolloutStatus {
                revision: 3,
                stable_revision: 2,
                updated_ready: 4,
                stale_ready: 2,
                outdated_allocated: 1,
                phase: "progressing".into(),
                error: None,
                started_at: Some("2025-01-01T00:00:00Z".into()),
                deadline: Some("2025-01-01T00:10:00Z".into()),
            },
            locations: vec![],
            events: vec![],
            created_at: "2024-12-01T00:00:00Z".into(),
            updated_at: "2025-01-01T00:00:00Z".into(),
        }
    }

    fn put(created: bool, dry_run: bool, changes: Vec<SettingChange>) -> PutPoolResponse {
        PutPoolResponse {
            pool: detail("web", PoolSettings::default()),
            created,
            dry_run,
            new_revision: changes.iter().any(SettingChange::is_template),
            changes,
        }
    }

    fn change(key: &str, old: Option<serde_json::Value>, new: serde_json::Value) -> SettingChange {
        SettingChange {
            key: key.into(),
            old,
            new: Some(new),
        }
    }

    #[test]
    fn commands_parse() {
        for (args, ok) in [
            (&["warmpool", "pools"][..], true),
            (&["warmpool", "pools", "get", "web"], true),
            (&["warmpool", "pools", "rm", "web"], true),
            (&["warmpool", "pools", "rollback", "web"], true),
            (&["warmpool", "pools", "rm"], false),
            (&["warmpool", "apply", "-f", "pools.toml"], true),
            (
                &["warmpool", "apply", "--filename", "pools.toml", "--dry-run"],
                true,
            ),
            (&["warmpool", "apply"], false),
            (&["warmpool", "reload", "--json"], true),
        ] {
            assert_eq!(Cli::try_parse_from(args).is_ok(), ok, "{args:?}");
        }
        let cli = Cli::try_parse_from(["warmpool", "apply", "-f", "p.toml", "--dry-run"]).unwrap();
        assert!(matches!(cli.command, Cmd::Apply { dry_run: true, .. }));
    }

    #[test]
    fn apply_refuses_top_level_settings() {
        for text in ["runtime = \"docker\"\n[pools.a]\ntarget = 1", "target = 1"] {
            let e = apply_pools(text).unwrap_err();
            assert!(
                e.to_string().contains(
                    "apply takes [pools.NAME] tables; top-level settings are the server's own"
                ),
                "{e:#}"
            );
        }
        for (text, says) in [
            ("", "no [pools.NAME] table"),
            ("pools = 1", "pools: expected [pools.NAME] tables"),
            ("[pools]\na = 1", "pools.a: expected a table"),
            ("[pools.a", "not a TOML file"),
        ] {
            let e = apply_pools(text).unwrap_err();
            assert!(format!("{e:#}").contains(says), "{text}: {e:#}");
        }
    }

    #[test]
    fn apply_checks_each_pool_before_sending_naming_the_field() {
        let e = apply_pools("[pools.a]\ntarget = 1\n[pools.b]\nhealth_path = \"x\"").unwrap_err();
        let e = e.downcast::<crate::config::ConfigError>().unwrap();
        assert_eq!(e.key, "pools.b.health_path");
    }

    #[test]
    fn apply_sends_each_pool_in_name_order_with_what_its_table_sets() {
        let pools = apply_pools(
            "[pools.web]\ncommand = \"python3 -m http.server\"\ntarget = 2\n[pools.api]\nimage = \"x:1\"\n[pools.bare]",
        )
        .unwrap();
        let names: Vec<&str> = pools.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["api", "bare", "web"]);
        assert_eq!(
            serde_json::to_value(&pools[0].1).unwrap(),
            json!({"image": "x:1"})
        );
        assert_eq!(serde_json::to_value(&pools[1].1).unwrap(), json!({}));
        assert_eq!(
            serde_json::to_value(&pools[2].1).unwrap(),
            json!({"command": ["python3", "-m", "http.server"], "targets": {"default": 2}})
        );
    }

    #[test]
    fn put_answers_read_like_kubectl_apply() {
        for (answer, expected) in [
            (put(true, false, vec![]), "pool/web created\n"),
            (put(true, true, vec![]), "pool/web created (dry run)\n"),
            (put(false, false, vec![]), "pool/web unchanged\n"),
            (
                put(
                    false,
                    true,
                    vec![
                        change("image", Some(json!("a")), json!("b")),
                        change("targets", Some(json!({"weur": 1})), json!({"weur": 2})),
                    ],
                ),
                "pool/web configured (dry run)\n  image: \"a\" -> \"b\" (new revision)\n  targets: {\"weur\":1} -> {\"weur\":2}\n",
            ),
            (
                put(false, false, vec![change("max_surge", None, json!("3"))]),
                "pool/web configured\n  max_surge: (default) -> \"3\"\n",
            ),
        ] {
            assert_eq!(describe_put("web", &answer), expected);
        }
    }

    #[test]
    fn a_pools_summary_holds_its_settings_as_a_table_apply_takes() {
        let settings = PoolSettings {
            command: Some(vec!["python3".into(), "-m".into(), "http.server".into()]),
            image: Some("x:1".into()),
            health_path: Some("/".into()),
            targets: Some([("weur".to_owned(), 3), ("wnam".to_owned(), 0)].into()),
            batch_size: Some(10),
            batch_spacing: Some(0.5),
            max_lifetime: Some(3600.0),
            idle_timeout: Some(0.0),
            start_timeout: Some(30.0),
            app_env: Some([("A".to_owned(), "it's \"quoted\"".to_owned())].into()),
            vcpu: Some(0.25),
            memory_mib: Some(256),
            pids_limit: Some(0),
            disk_mb: Some(512),
            max_surge: Some("25%".into()),
            rollout_failure_limit: Some(3),
            progress_deadline: Some(600.0),
            scaling: Some(warmpool_client::ScalingSettings {
                min: Some(1),
                max: Some(0),
                buffer: Some("20%".into()),
                scale_down_delay: Some(300.0),
                safety: Some(2.0),
                locations: Some("auto".into()),
            }),
            ..Default::default()
        };
        let text = pool_summary(&detail("web", settings.clone()));
        assert!(text.contains("revision  3 (stable 2)"), "{text}");
        assert!(
            text.contains(
                "rollout   progressing of revision 3: 4 updated ready, 2 stale ready, 1 outdated allocated"
            ),
            "{text}"
        );
        let (_, table) = text.split_once("\n\n").unwrap();
        let pools = apply_pools(table).unwrap_or_else(|e| panic!("{e:#}\n{table}"));
        assert_eq!(pools, vec![("web".to_owned(), settings)]);
    }
}
