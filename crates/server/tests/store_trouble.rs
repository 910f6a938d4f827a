//! Store trouble (issue 7, scenario 4): the data dir fills up while warmpool runs
//! (a small tmpfs, filled by a file), and a data dir that is read-only at start.
//! Claims fail with 503 and a problem document while writes fail, no claim is
//! answered that was not recorded, nothing leaks, and warmpool recovers by itself
//! when space comes back. Mounting needs root: without it the tests skip with a
//! printed reason, unless `WARMPOOL_REQUIRE_MOUNT=1` (set by `.ci/run`).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{poll, settings};
use warmpool_client::{ClaimRequest, Client};
use warmpool_server::config::Config;

/// A tmpfs mounted for one test, unmounted (lazily, so that it never fails) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, options: &str, test: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(at.to_owned())),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("WARMPOOL_REQUIRE_MOUNT").as_deref() != Ok("1"),
                    "{test}: cannot mount a tmpfs ({why}) and WARMPOOL_REQUIRE_MOUNT=1"
                );
                eprintln!("SKIPPED {test}: cannot mount a tmpfs ({why}); run as root");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` to the last block; answers the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 64 << 10, 4 << 10, 512] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_dir_fails_claims_with_503_records_every_answered_claim_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let Some(_mount) = Tmpfs::mount(&data, "size=8m", "store_trouble full") else {
        return;
    };
    let mut m = settings(&[
        ("POOL_TARGET_INSTANCES", "3"),
        ("WARMPOOL_MAX_LIFETIME_SECONDS", "600"),
    ]);
    m.insert("WARMPOOL_DATA_DIR".into(), data.display().to_string());
    let config = Config::from_sources(|k| m.get(k).cloned(), &Default::default()).unwrap();
    let running = warmpool_server::server::start(config, None).await.unwrap();
    let client = Client::new(&format!("http://{}", running.addr));
    let http = reqwest::Client::new();
    let claim_url = format!("http://{}/container", running.addr);
    common::wait_ready(&client, "default", 3, Duration::from_secs(30)).await;

    let mut answered: BTreeSet<String> = BTreeSet::new();
    let mut refused = 0u32;
    let filler = fill(&data);
    // Claim (and release, so that slots and the pool keep turning over) until the
    // store has refused a run of writes; every answer is a success or a 503
    // problem document.
    let t0 = Instant::now();
    let mut in_a_row = 0;
    let mut attempts = 0;
    while in_a_row < 10 {
        attempts += 1;
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the full disk never failed a claim ({attempts} attempts)"
        );
        let r = http
            .post(&claim_url)
            .json(&ClaimRequest::default())
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => {
                in_a_row = 0;
                let c: warmpool_client::ClaimResponse = r.json().await.unwrap();
                let _ = client.release(&c.id).await;
                answered.insert(c.id);
            }
            503 => {
                assert_eq!(r.headers()["content-type"], "application/problem+json");
                let p: serde_json::Value = r.json().await.unwrap();
                assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
                in_a_row += 1;
                refused += 1;
            }
            s => panic!(
                "a claim on a full disk answered {s}: {}",
                r.text().await.unwrap()
            ),
        }
    }
    let pools = client.pools().await.unwrap();
    let error = pools.pools[0].last_error.clone().unwrap_or_default();
    println!(
        "full data dir: {attempts} claims, {} answered, {refused} refused with 503; pool error: {error}",
        answered.len(),
    );
    assert!(
        error.contains("full"),
        "the pool does not say why: {error:?}"
    );

    // The refused writes are counted where an alert can see them.
    let metrics = http
        .get(format!("http://{}/metrics", running.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let write_errors: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("warmpool_store_write_errors_total ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no store write errors in:\n{metrics}"));
    assert!(
        write_errors >= 1.0,
        "{write_errors} store write errors counted"
    );
    assert!(running.app.store.write_errors() as f64 >= write_errors);

    // Space comes back: claims work again without a restart, and the pool refills.
    std::fs::remove_file(&filler).unwrap();
    let t1 = Instant::now();
    let id = poll(
        Duration::from_secs(30),
        "a claim to succeed again",
        || async { client.claim(&Default::default()).await.ok().map(|c| c.id) },
    )
    .await;
    answered.insert(id);
    common::wait_ready(&client, "default", 3, Duration::from_secs(60)).await;
    println!("recovered {:?} after space came back", t1.elapsed());

    // Every claim that was answered is recorded, and the books balance.
    let store = &running.app.store;
    for id in &answered {
        let row = store
            .container(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("claim {id} was answered but is not recorded"));
        assert!(
            row.allocated_at.is_some(),
            "{id} answered but never allocated: {row:?}"
        );
    }
    common::books_balance(&running.app, Duration::from_secs(30)).await;
    running.shutdown().await.unwrap();
}

#[test]
fn a_read_only_data_dir_stops_start_up_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("ro");
    let Some(_mount) = Tmpfs::mount(&data, "size=1m,ro", "store_trouble read-only") else {
        return;
    };
    let out = Command::new(common::bin())
        .arg("serve")
        .envs(settings(&[]))
        .env("WARMPOOL_DATA_DIR", &data)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not writable"), "{stderr}");
    assert!(stderr.contains(&data.display().to_string()), "{stderr}");
    assert!(stderr.to_lowercase().contains("read-only"), "{stderr}");
}
