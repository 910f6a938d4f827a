//! The `warmpool` command line against a real server.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::InProc;
use warmpool_client::ClaimRequest;
use warmpool_runtime::{SimMode, SimRuntime, SAMPLE_APP_BIN};

fn cli(base: &str, args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .env("WARMPOOL_URL", base)
        .env_remove("WARMPOOL_API_TOKEN")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_print_tables_and_json() {
    let sim = Arc::new(SimRuntime::new(SimMode::Instant, "127.0.0.1:9"));
    let mut wp = InProc::start_with(&[("POOL_TARGET_INSTANCES", "2")], Some(sim)).await;
    let base = wp.base.clone();
    let b = base.clone();
    let out =
        tokio::task::spawn_blocking(move || cli(&b, &["wait", "--ready", "2", "--timeout", "20"]))
            .await
            .unwrap();
    stdout(&out);

    let b = base.clone();
    let outputs = tokio::task::spawn_blocking(move || {
        let id = stdout(&cli(&b, &["claim", "--location", "default", "--ttl", "60"]))
            .trim()
            .to_owned();
        let ls = stdout(&cli(&b, &["ls", "--state", "allocated"]));
        let get = stdout(&cli(&b, &["get", &id]));
        let pools_json = stdout(&cli(&b, &["pools", "--json"]));
        let pools = stdout(&cli(&b, &["pools"]));
        let events = stdout(&cli(&b, &["events", "--limit", "50"]));
        let release = stdout(&cli(&b, &["release", &id]));
        let bad = cli(&b, &["claim", "--location", "mars"]);
        (id, ls, get, pools_json, pools, events, release, bad)
    })
    .await
    .unwrap();
    let (id, ls, get, pools_json, pools, events, release, bad) = outputs;
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert!(ls.starts_with("ID"), "{ls}");
    assert!(ls.contains(&id) && ls.contains("allocated"), "{ls}");
    let got: serde_json::Value = serde_json::from_str(&get).unwrap();
    assert_eq!(got["id"], id.as_str());
    let p: serde_json::Value = serde_json::from_str(&pools_json).unwrap();
    assert_eq!(p["pools"][0]["target"], 2);
    assert_eq!(p["pools"][0]["hits"], 1);
    assert!(
        pools.contains("TARGET") && pools.contains("default"),
        "{pools}"
    );
    assert!(
        events.contains(&id) && events.contains("allocated"),
        "{events}"
    );
    assert_eq!(release.trim(), format!("{id} stopped"));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown location"));
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_gives_up_at_its_deadline_with_exit_code_1() {
    let sim = Arc::new(SimRuntime::new(SimMode::Manual, "127.0.0.1:9"));
    let mut wp = InProc::start_with(&[("POOL_TARGET_INSTANCES", "1")], Some(sim)).await;
    let b = wp.base.clone();
    let started = std::time::Instant::now();
    let out =
        tokio::task::spawn_blocking(move || cli(&b, &["wait", "--ready", "1", "--timeout", "1"]))
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only 0 of 1"));
    wp.shutdown().await;
}

#[test]
fn check_config_validates_and_names_the_bad_setting() {
    let ok = Command::new(common::bin())
        .args(["serve", "--check-config", "--target", "5"])
        .env("POOL_BATCH_SIZE", "3")
        .output()
        .unwrap();
    assert!(ok.status.success());
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("\ntarget = 5\n") && out.contains("\nbatch_size = 3\n"),
        "{out}"
    );

    let bad = Command::new(common::bin())
        .args(["serve", "--check-config"])
        .env("POOL_BATCH_SPACING_IN_SECONDS", "soon")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("invalid POOL_BATCH_SPACING_IN_SECONDS=\"soon\""));
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let o = cli("http://127.0.0.1:1", &["pools"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot reach warmpool at http://127.0.0.1:1")
    );
}

#[test]
fn a_config_file_sets_values_that_flags_and_env_override() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warmpool.toml");
    std::fs::write(&file, "runtime = \"docker\"\ntarget = 7\nbatch_size = 3\n").unwrap();
    // `serve --check-config --config PATH ARGS...`: what it prints.
    let check = |path: &std::path::Path, args: &[&str]| {
        let out = Command::new(common::bin())
            .args(["serve", "--check-config", "--config"])
            .arg(path)
            .args(args)
            .env_remove("POOL_BATCH_SIZE")
            .env_remove("POOL_TARGET_INSTANCES")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = check(&file, &["--target", "9"]);
    assert!(
        text.contains("\nruntime = \"docker\"\n")
            && text.contains("\ntarget = 9\n")
            && text.contains("\nbatch_size = 3\n"),
        "{text}"
    );

    // The example with several pools prints each pool's resolved table, and what
    // it prints is itself a config file that resolves to the same thing.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/multi-pool.toml"
    );
    let printed = check(std::path::Path::new(example), &[]);
    assert!(
        printed.contains("\n[pools.python]\n")
            && printed.contains("\n[pools.jobs]\n")
            && printed.contains("\ntargets = \"weur=3,wnam=1\"\n"),
        "{printed}"
    );
    std::fs::write(&file, &printed).unwrap();
    assert_eq!(check(&file, &[]), printed);

    std::fs::write(&file, "colour = \"red\"\n").unwrap();
    let bad = Command::new(common::bin())
        .args(["serve", "--check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown setting \"colour\""));
}

/// `warmpool completions bash|zsh|fish` prints a script its shell accepts (bash:
/// sourced, it registers a completion for `warmpool` that offers the commands),
/// naming every command.
#[test]
fn completions_are_generated_for_three_shells() {
    let script = |shell: &str| stdout(&cli("http://127.0.0.1:9", &["completions", shell]));
    let bash = script("bash");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warmpool.bash");
    std::fs::write(&file, &bash).unwrap();
    // Sourced into bash, asked to complete `warmpool cl`: `claim` is offered.
    let offered = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; complete -p warmpool; COMP_WORDS=(warmpool cl); COMP_CWORD=1; \
             _warmpool warmpool cl warmpool; echo \"${{COMPREPLY[@]}}\"",
            file.display()
        ))
        .output()
        .unwrap();
    let out = stdout(&offered);
    assert!(out.contains("-F _warmpool warmpool"), "{out}");
    assert!(
        out.lines().last().unwrap().split(' ').any(|w| w == "claim"),
        "{out}"
    );
    for cmd in [
        "serve",
        "claim",
        "extend",
        "keepalive",
        "pools",
        "completions",
        "man",
    ] {
        assert!(bash.contains(cmd), "bash completion lacks {cmd}");
    }
    assert!(script("zsh").starts_with("#compdef warmpool"));
    assert!(script("fish").contains("complete -c warmpool"));
    let bad = cli("http://127.0.0.1:9", &["completions", "tcsh"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// `warmpool man` prints a manual page that `man` renders, with a section for
/// every command and `serve`'s settings.
#[test]
fn the_man_page_renders_with_every_command() {
    let roff = stdout(&cli("http://127.0.0.1:9", &["man"]));
    assert!(
        roff.contains(".TH warmpool 1"),
        "{}",
        &roff[..200.min(roff.len())]
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warmpool.1");
    std::fs::write(&file, &roff).unwrap();
    // groff renders it (what `man -l` runs), when it is installed.
    let text = match Command::new("groff")
        // Plain text: no overstriking for bold and underline.
        .args(["-man", "-Tutf8", "-P-bcu"])
        .arg(&file)
        .output()
    {
        Ok(o) => {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
        Err(e) => {
            eprintln!("groff is not installed ({e}): checking the roff source only");
            roff.clone()
        }
    };
    for section in [
        "WARMPOOL SERVE",
        "WARMPOOL CLAIM",
        "WARMPOOL EXTEND",
        "WARMPOOL COMPLETIONS",
    ] {
        assert!(text.contains(section), "no section {section}");
    }
    assert!(
        text.contains("max-instances"),
        "serve's settings are listed"
    );
}

/// The pids of `parent`'s children, from /proc.
fn children_of(parent: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // Field 4 of /proc/PID/stat, after the parenthesised command name.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// A pool with no command runs the sample app from the lean `warmpool-sample-app`
/// beside the warmpool binary when it is there, else from warmpool's own
/// `sample-app`, and serves claims either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_app_runs_from_the_lean_binary_beside_warmpool_when_it_is_there() {
    let lean_source = Path::new(common::bin()).with_file_name(SAMPLE_APP_BIN);
    assert!(
        lean_source.is_file(),
        "{} is missing: the README's test command (cargo test --workspace) builds it, \
         as does cargo build -p warmpool-sample-app",
        lean_source.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("lean-app-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let warmpool = dir.path().join("warmpool");
    let lean = dir.path().join(SAMPLE_APP_BIN);
    // Hard links: the test target dir is one file system, and the binaries are big.
    std::fs::hard_link(common::bin(), &warmpool).unwrap();

    for (with_lean, expected) in [(false, &warmpool), (true, &lean)] {
        if with_lean {
            std::fs::hard_link(&lean_source, &lean).unwrap();
        }
        let data = tempfile::tempdir().unwrap();
        let p = common::Proc::spawn_program(
            &warmpool,
            data.path(),
            &[("WARMPOOL_COMMAND", ""), ("POOL_TARGET_INSTANCES", "2")],
            Stdio::inherit(),
        );
        common::wait_ready(&p.client, "default", 2, Duration::from_secs(30)).await;
        let kids = children_of(p.child.id());
        assert_eq!(kids.len(), 2, "children of warmpool: {kids:?}");
        for pid in kids {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
            let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
            let args: Vec<&[u8]> = args.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            assert_eq!(&exe, expected, "with the lean binary there: {with_lean}");
            assert_eq!(
                args.len(),
                if with_lean { 1 } else { 2 },
                "{:?}",
                args.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>()
            );
        }
        // Either app serves a claim through the proxy.
        let c = p.client.claim(&ClaimRequest::default()).await.unwrap();
        assert!(c.warm, "{c:?}");
        let health = reqwest::get(format!("{}/container/{}/healthz", p.base, c.id))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
}
