//! Claim-time set-up with real sample-app processes: env, secret env, files,
//! labels and metadata delivered before the id is returned; the bind hook
//! failing or missing (502, the container released, never handed out); a pool
//! with `bind = "none"`; selectors across pools with `preferred`; bad input
//! refused with the store unchanged; secret values found nowhere warmpool
//! writes.

mod common;

use std::time::Duration;

use common::{poll, pool_ready, InProc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use warmpool_client::ContainerQuery;

const T: Duration = Duration::from_secs(30);

async fn claim(wp: &InProc, body: Value) -> (StatusCode, Value) {
    let r = wp
        .http
        .post(format!("{}/container", wp.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The env the sample app in container `id` reports at `GET /env`.
async fn app_env(wp: &InProc, id: &str) -> Value {
    let r = wp.proxied(id, "/env").await;
    assert_eq!(r.status(), 200, "GET /env through the proxy");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_claim_gets_its_env_files_labels_and_metadata_before_its_id() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "2")]).await;
    wp.wait_ready("default", 2, T).await;
    let (status, c) = claim(
        &wp,
        json!({
            "env": {"GREETING": "hello", "EMPTY": ""},
            "secretEnv": {"API_KEY": "not-so-secret-here"},
            "files": {"a.txt": "alpha", "conf/deep/b.json": "{\"b\":1}"},
            "labels": {"team": "a", "tier": "free"},
            "metadata": {"user": "u1", "tags": [1, 2]},
        }),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["warm"], true, "a warm pool serves a set-up claim warm");
    let id = c["id"].as_str().unwrap().to_owned();

    // Delivered before the answer: no polling needed.
    let env = app_env(&wp, &id).await;
    assert_eq!(env["GREETING"], "hello");
    assert_eq!(env["EMPTY"], "");
    assert_eq!(env["API_KEY"], "not-so-secret-here");
    let dir = wp.dir.path().join("containers").join(&id);
    assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "alpha");
    assert_eq!(
        std::fs::read_to_string(dir.join("conf/deep/b.json")).unwrap(),
        "{\"b\":1}"
    );

    // Labels and metadata are stored and shown, and filter the list.
    let view = wp.client.container(&id).await.unwrap();
    assert_eq!(view.labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(view.metadata, Some(json!({"user": "u1", "tags": [1, 2]})));
    let listed = |label: &'static str| common::labelled_ids(&wp.client, label);
    assert_eq!(listed("team=a,tier in (free,pro)").await, vec![id.clone()]);
    assert!(!listed("team!=a").await.contains(&id));

    // A plain claim of the same pool is not given the first one's env.
    let (status, plain) = claim(&wp, json!({})).await;
    assert_eq!(status, 200);
    let other = app_env(&wp, plain["id"].as_str().unwrap()).await;
    assert!(other.get("GREETING").is_none(), "{other}");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_none_starts_a_container_with_the_claims_env_and_never_pools_it() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1"), ("WARMPOOL_BIND", "none")]).await;
    wp.wait_ready("default", 1, T).await;
    let (status, c) = claim(
        &wp,
        json!({"env": {"MODE": "baked"}, "secretEnv": {"TOKEN": "t0k"}, "files": {"x.txt": "x"}}),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        c["warm"], false,
        "env without a hook: a container started for it"
    );
    let id = c["id"].as_str().unwrap();
    let env = app_env(&wp, id).await;
    assert_eq!(env["MODE"], "baked");
    assert_eq!(env["TOKEN"], "t0k");
    let file = wp.dir.path().join("containers").join(id).join("x.txt");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "x");
    // The warm container is still there for claims without env, and is warm.
    assert_eq!(pool_ready(&wp.client, "default", "default").await, 1);
    let (status, plain) = claim(&wp, json!({"labels": {"a": "b"}})).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["warm"], true);
    wp.shutdown().await;
}

/// A pool of the sample app whose `/admin/bind` answers as `mode` says
/// (`SAMPLE_APP_BIND`: `absent` 404, `fail` 500).
fn hook_pools() -> String {
    let bin = common::bin();
    format!(
        r#"
        [pools.failing]
        command = ["{bin}", "sample-app"]
        app_env = {{ SAMPLE_APP_BIND = "fail" }}
        target = 1
        batch_spacing = 0
        [pools.absent]
        command = ["{bin}", "sample-app"]
        app_env = {{ SAMPLE_APP_BIND = "absent" }}
        target = 1
        batch_spacing = 0
        [pools.strict]
        command = ["{bin}", "sample-app"]
        app_env = {{ SAMPLE_APP_BIND = "absent" }}
        bind = "required"
        target = 1
        batch_spacing = 0
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_missing_hook_fails_the_claim_and_releases_the_container() {
    let mut wp =
        InProc::start_with_file(&[("POOL_TARGET_INSTANCES", "0")], &hook_pools(), None).await;
    let c = wp.client.clone();
    poll(T, "the three pools to fill", || {
        let c = c.clone();
        async move {
            let mut n = 0;
            for p in ["failing", "absent", "strict"] {
                n += pool_ready(&c, p, "default").await;
            }
            (n == 3).then_some(())
        }
    })
    .await;

    let refused = [
        ("failing", json!({"labels": {"a": "b"}}), "answered 500"),
        ("strict", json!({"metadata": {"k": 1}}), "bind is required"),
        (
            "absent",
            json!({"env": {"A": "1"}}),
            "only the hook can deliver",
        ),
    ];
    let mut released = Vec::new();
    for (pool, mut body, why) in refused {
        body["pool"] = json!(pool);
        let before = live(&wp).await;
        let (status, p) = claim(&wp, body).await;
        assert_eq!(status, 502, "{pool}: {p}");
        assert_eq!(p["type"], "https://warmpool.dev/problems/setup-failed");
        assert_eq!(p["field"], "bind", "{p}");
        assert!(p["detail"].as_str().unwrap().contains(why), "{pool}: {p}");
        // The container it took was stopped, never handed out.
        let after = live(&wp).await;
        let gone: Vec<_> = before.difference(&after).cloned().collect();
        assert_eq!(gone.len(), 1, "{pool}: one container released: {gone:?}");
        let v = wp.client.container(&gone[0]).await.unwrap();
        assert_eq!(
            v.stop_reason.as_deref(),
            Some("set-up failed at step bind"),
            "{pool}"
        );
        released.push(gone[0].clone());
    }
    // An optional hook that is absent is fine for what warmpool delivers itself.
    let (status, ok) = claim(
        &wp,
        json!({"pool": "absent", "labels": {"a": "b"}, "files": {"f": "1"}}),
    )
    .await;
    assert_eq!(status, 200, "{ok}");
    assert!(!released.contains(&ok["id"].as_str().unwrap().to_owned()));
    wp.shutdown().await;
}

/// Ids of containers that are not stopping or stopped.
async fn live(wp: &InProc) -> std::collections::BTreeSet<String> {
    wp.client
        .containers(&ContainerQuery::default())
        .await
        .unwrap()
        .containers
        .into_iter()
        .filter(|c| !matches!(c.state.as_str(), "stopping" | "stopped" | "failed"))
        .map(|c| c.id)
        .collect()
}

fn labelled_pools() -> String {
    let bin = common::bin();
    format!(
        r#"
        [pools.py]
        command = ["{bin}", "sample-app"]
        labels = {{ runtime = "python3.12" }}
        target = 1
        batch_spacing = 3600
        [pools.gpu]
        command = ["{bin}", "sample-app"]
        labels = {{ runtime = "python3.12", gpu = "true" }}
        target = 1
        batch_spacing = 3600
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_pick_pools_by_label_preferred_first() {
    let mut wp =
        InProc::start_with_file(&[("POOL_TARGET_INSTANCES", "0")], &labelled_pools(), None).await;
    let c = wp.client.clone();
    poll(T, "py and gpu to fill", || {
        let c = c.clone();
        async move {
            (pool_ready(&c, "py", "default").await == 1
                && pool_ready(&c, "gpu", "default").await == 1)
                .then_some(())
        }
    })
    .await;
    let pick = json!({"selector": "runtime=python3.12", "preferred": ["gpu=true"]});
    // Preferred first, while it has a warm container.
    let (status, first) = claim(&wp, pick.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        (first["pool"].as_str(), first["warm"].as_bool()),
        (Some("gpu"), Some(true))
    );
    // Then the selector alone: py's warm one (gpu's next batch is an hour away).
    let (_, second) = claim(&wp, pick.clone()).await;
    assert_eq!(
        (second["pool"].as_str(), second["warm"].as_bool()),
        (Some("py"), Some(true))
    );
    // No warm container anywhere: an on-demand start in the most preferred pool.
    let (_, third) = claim(&wp, pick).await;
    assert_eq!(
        (third["pool"].as_str(), third["warm"].as_bool()),
        (Some("gpu"), Some(false))
    );
    // A set-based selector.
    let (status, v) = claim(&wp, json!({"selector": "gpu notin (true),runtime"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["pool"], "py");

    let problem = |status: StatusCode, p: &Value, kind: &str, field: &str| {
        assert_eq!(
            p["type"],
            format!("https://warmpool.dev/problems/{kind}"),
            "{p}"
        );
        assert_eq!(p["field"], field, "{p}");
        assert!(status.is_client_error(), "{status}");
    };
    let (status, p) = claim(&wp, json!({"selector": "runtime=ruby"})).await;
    assert_eq!(status, 404);
    problem(status, &p, "no-matching-pool", "selector");
    let (status, p) = claim(&wp, json!({"selector": "runtime in (", "pool": "py"})).await;
    assert_eq!(status, 422);
    problem(status, &p, "invalid-value", "selector");
    let (status, p) = claim(&wp, json!({"selector": "runtime in ("})).await;
    assert_eq!(status, 422, "{p}");
    problem(status, &p, "invalid-value", "selector");
    let (status, p) = claim(&wp, json!({"preferred": ["gpu=true", "a b c"]})).await;
    assert_eq!(status, 422, "{p}");
    problem(status, &p, "invalid-value", "preferred");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_set_up_input_is_refused_naming_the_field_and_changes_nothing() {
    let mut wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    wp.wait_ready("default", 1, T).await;
    let snapshot = |wp: &InProc| {
        let (http, base) = (wp.http.clone(), wp.base.clone());
        async move {
            let get = |path: &'static str| {
                let (http, base) = (http.clone(), base.clone());
                async move {
                    http.get(format!("{base}{path}"))
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap()
                }
            };
            (get("/v1/containers").await, get("/v1/events").await)
        }
    };
    let before = snapshot(&wp).await;
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("K{i}"), json!("v"))).collect();
    let cases = [
        (json!({"env": many}), "env"),
        (json!({"env": {"BIG": "x".repeat(33 * 1024)}}), "env"),
        (json!({"env": {"PORT": "1"}}), "env"),
        (json!({"env": {"NOT A NAME": "1"}}), "env"),
        (
            json!({"secretEnv": {"A": "1"}, "env": {"A": "2"}}),
            "secretEnv",
        ),
        (json!({"files": {"../escape": "x"}}), "files"),
        (json!({"files": {"a/../../escape": "x"}}), "files"),
        (json!({"files": {"/etc/passwd": "x"}}), "files"),
        (
            json!({"files": {"big": "x".repeat(1024 * 1024 + 1)}}),
            "files",
        ),
        (json!({"labels": {"bad key!": "v"}}), "labels"),
        (json!({"labels": {"ok": "bad value!"}}), "labels"),
        (
            json!({"metadata": {"blob": "x".repeat(17 * 1024)}}),
            "metadata",
        ),
    ];
    for (body, field) in cases {
        let (status, p) = claim(&wp, body.clone()).await;
        assert_eq!(status, 422, "{field}: {p}");
        assert_eq!(p["field"], field, "{p}");
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    }
    assert_eq!(snapshot(&wp).await, before, "the store changed");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_env_values_are_written_nowhere_warmpool_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("warmpool.log");
    let config = dir.path().join("warmpool.toml");
    let bin = common::bin();
    std::fs::write(
        &config,
        format!(
            "[pools.baked]\ncommand = [\"{bin}\", \"sample-app\"]\nbind = \"none\"\ntarget = 0\n"
        ),
    )
    .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let secret = format!("s3cr3t-{nanos:x}-{}", std::process::id());
    let config = config.display().to_string();
    let mut wp = common::Proc::spawn_with_stderr(
        &data,
        &[
            ("POOL_TARGET_INSTANCES", "1"),
            ("WARMPOOL_CONFIG", &config),
            // Everything warmpool logs, its own debug lines included.
            ("RUST_LOG", "debug"),
        ],
        std::fs::File::create(&log_path).unwrap().into(),
    );
    common::wait_ready(&wp.client, "default", 1, T).await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    // Through the bind hook (a warm container), and baked into a container
    // started for the claim (`bind = "none"`).
    for pool in ["default", "baked"] {
        let r = http
            .post(format!("{}/container", wp.base))
            .json(&json!({"pool": pool, "secretEnv": {"SECRET_TOKEN": secret}, "env": {"PLAIN": "p"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{pool}");
        let c: Value = r.json().await.unwrap();
        let id = c["id"].as_str().unwrap().to_owned();
        // The app has it (so the test is not vacuous)...
        let env: Value = http
            .get(format!("{}/container/{id}/env", wp.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(env["SECRET_TOKEN"], secret.as_str(), "{pool}");
        ids.push(id);
    }
    // ...and nothing warmpool answers shows it.
    let mut pages = vec![
        "/v1/containers".to_owned(),
        "/v1/events".to_owned(),
        "/v1/pools".to_owned(),
        "/metrics".to_owned(),
        "/v1/status".to_owned(),
    ];
    pages.extend(ids.iter().map(|id| format!("/v1/containers/{id}")));
    for page in pages {
        let body = http
            .get(format!("{}{page}", wp.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!body.is_empty(), "{page} answered nothing");
        assert!(!body.contains(&secret), "{page} shows the secret");
    }
    let db = data.join("warmpool.db");
    let wal = data.join("warmpool.db-wal");
    let grep = |what: &str| {
        for path in [&db, &wal, &log_path] {
            if let Ok(bytes) = std::fs::read(path) {
                let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
                assert!(!found, "{what}: {} holds the secret", path.display());
            }
        }
    };
    assert!(wal.exists(), "the store runs in WAL mode");
    grep("while running");
    wp.sigterm();
    grep("after shutdown");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("DEBUG"), "the log was captured at debug level");
}
