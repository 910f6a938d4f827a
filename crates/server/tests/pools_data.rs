//! Pools as data, end to end: what the API changes survives a restart, the
//! config file is applied again only when it changed (at start, on SIGHUP, on
//! `POST /v1/reload`), a deleted pool drains, the pool endpoints refuse bad
//! input exactly as the config file would, and `warmpool apply` shows a diff
//! and is idempotent.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{poll, pool_ready, InProc, Proc};
use warmpool_client::{ClaimRequest, ClientError, ContainerQuery, PoolSettings};

const T: Duration = Duration::from_secs(60);

fn sighup(p: &Proc) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
}

async fn target(client: &warmpool_client::Client, pool: &str) -> Option<u32> {
    let d = client.pool(pool).await.ok()?;
    Some(d.locations.iter().map(|l| l.target).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_changes_survive_a_restart_and_the_config_file_applies_again_only_when_edited() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warmpool.toml");
    std::fs::write(&file, "[pools.py]\ntarget = 1\nbatch_spacing = 0\n").unwrap();
    let path = file.display().to_string();
    let settings = [("POOL_TARGET_INSTANCES", "1"), ("WARMPOOL_CONFIG", &path)];
    let data = dir.path().join("data");

    let first = Proc::spawn(&data, &settings);
    assert_eq!(target(&first.client, "py").await, Some(1));
    // Changed through the API: a target, and a pool of its own.
    first
        .client
        .patch_pool_settings(
            "default",
            &PoolSettings {
                targets: Some([("default".to_string(), 2)].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let put = first
        .client
        .put_pool(
            "extra",
            &PoolSettings {
                target: Some(1),
                batch_spacing: Some(0.0),
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert!(put.created);
    drop(first); // SIGTERM: an orderly stop.

    // A restart with the same file keeps what the API changed.
    let second = Proc::spawn(&data, &settings);
    assert_eq!(target(&second.client, "default").await, Some(2));
    assert_eq!(target(&second.client, "extra").await, Some(1));
    assert_eq!(target(&second.client, "py").await, Some(1));
    poll(T, "the pools to fill", || async {
        (pool_ready(&second.client, "extra", "default").await >= 1
            && pool_ready(&second.client, "default", "default").await >= 2)
            .then_some(())
    })
    .await;
    // Nothing to reload: the file is as last applied.
    let r = second.client.reload().await.unwrap();
    assert!(!r.applied, "{r:?}");

    // An edited file applies on SIGHUP, like an API change.
    std::fs::write(&file, "[pools.py]\ntarget = 2\nbatch_spacing = 0\n").unwrap();
    sighup(&second);
    poll(T, "SIGHUP to apply the edited file", || async {
        (target(&second.client, "py").await == Some(2)).then_some(())
    })
    .await;
    // Pools the file does not name are left as the API made them.
    assert_eq!(target(&second.client, "extra").await, Some(1));
    // And through the API: an invalid file is refused, nothing changes.
    std::fs::write(&file, "[pools.py]\ntarget = -1\n").unwrap();
    let r = second.client.reload().await;
    let Err(ClientError::Api { problem }) = r else {
        panic!("an invalid file was reloaded: {r:?}");
    };
    assert_eq!(problem.status, 422, "{problem:?}");
    assert!(problem.detail.contains("pools.py.target"), "{problem:?}");
    assert_eq!(target(&second.client, "py").await, Some(2));
    std::fs::write(&file, "[pools.py]\ntarget = 3\nbatch_spacing = 0\n").unwrap();
    let r = second.client.reload().await.unwrap();
    assert!(r.applied);
    assert_eq!(target(&second.client, "py").await, Some(3));
    drop(second);

    // The next start keeps the reloaded file's pools (it is as last applied).
    let third = Proc::spawn(&data, &settings);
    assert_eq!(target(&third.client, "py").await, Some(3));
    assert_eq!(target(&third.client, "default").await, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pool_drains_and_claims_naming_it_answer_404() {
    // In process, the sample app is the warmpool binary's (not the test's).
    let file = format!(
        "[pools.py]\ntarget = 2\nbatch_spacing = 0\ncommand = [\"{}\", \"sample-app\"]\n",
        common::bin()
    );
    let wp = InProc::start_with_file(&[("POOL_TARGET_INSTANCES", "1")], &file, None).await;
    let c = wp.client.clone();
    poll(T, "py to fill", || async {
        (pool_ready(&c, "py", "default").await >= 2).then_some(())
    })
    .await;
    let py = ClaimRequest {
        pool: Some("py".into()),
        ..Default::default()
    };
    let held = c.claim(&py).await.unwrap();
    c.delete_pool("py").await.unwrap();

    // Claims naming it: 404 unknown-pool.
    match c.claim(&py).await {
        Err(ClientError::Api { problem }) if problem.status == 404 => {
            assert!(problem.kind.ends_with("unknown-pool"), "{problem:?}")
        }
        other => panic!("a claim of a deleted pool: {other:?}"),
    }
    assert!(matches!(
        c.pool("py").await,
        Err(ClientError::Api { problem }) if problem.status == 404
    ));
    // Its ready containers stop; the allocated one runs on and answers.
    poll(T, "py's ready containers to stop", || async {
        let ready = c
            .containers(&ContainerQuery {
                pool: Some("py".into()),
                state: Some("ready".into()),
                ..Default::default()
            })
            .await
            .ok()?;
        ready.containers.is_empty().then_some(())
    })
    .await;
    assert_eq!(c.container(&held.id).await.unwrap().state, "allocated");
    assert_eq!(wp.proxied(&held.id, "/").await.status(), 200);
    // The default pool is untouched.
    let d = c.claim(&ClaimRequest::default()).await.unwrap();
    assert!(d.warm);
    common::books_balance(wp.app(), T).await;
}

/// A request and its problem document.
async fn problem(
    wp: &InProc,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = wp.http.request(method, format!("{}{path}", wp.base));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    if status >= 400 {
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_endpoints_refuse_bad_input_as_the_config_file_does() {
    use reqwest::Method;
    let wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;

    // A setting the config file refuses is refused with the same message,
    // naming the field.
    let table: toml::Table = "health_path = \"x\"".parse().unwrap();
    let expected = warmpool_server::config::pool_from_table("new", &table)
        .unwrap_err()
        .to_string();
    let (s, p) = problem(
        &wp,
        Method::PUT,
        "/v1/pools/new",
        Some(serde_json::json!({"health_path": "x"})),
    )
    .await;
    assert_eq!((s, p["field"].as_str()), (422, Some("health_path")), "{p}");
    assert_eq!(p["detail"], expected);
    for (body, field) in [
        (serde_json::json!({"colour": 1}), "colour"),
        (serde_json::json!({"batch_size": 0}), "batch_size"),
        (serde_json::json!({"batch_size": "many"}), "batch_size"),
        (serde_json::json!({"max_surge": "0%"}), "max_surge"),
        (serde_json::json!({"targets": {"mars": 1}}), "targets"),
        (serde_json::json!({"listen": "0.0.0.0:1"}), "listen"),
        (serde_json::json!({"image": null}), "image"),
    ] {
        let (s, p) = problem(&wp, Method::PUT, "/v1/pools/new", Some(body.clone())).await;
        assert_eq!((s, p["field"].as_str()), (422, Some(field)), "{body}: {p}");
    }
    let (s, _) = problem(
        &wp,
        Method::PUT,
        "/v1/pools/bad%20name",
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(s, 422);
    let (s, p) = problem(&wp, Method::PUT, "/v1/pools/new?dryRun=maybe", None).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("dryRun")));
    let (s, _) = problem(&wp, Method::PUT, "/v1/pools/new?colour=red", None).await;
    assert_eq!(s, 400);
    let r = wp
        .http
        .put(format!("{}/v1/pools/new", wp.base))
        .header("content-type", "text/plain")
        .body("target = 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Nothing was created by any of that.
    let (s, p) = problem(&wp, Method::GET, "/v1/pools/new", None).await;
    assert_eq!(s, 404);
    assert!(p["type"].as_str().unwrap().ends_with("unknown-pool"));
    // A dry run says what would be, and creates nothing.
    let dry = wp
        .client
        .put_pool(
            "new",
            &PoolSettings {
                target: Some(2),
                ..Default::default()
            },
            true,
        )
        .await
        .unwrap();
    assert!(dry.created && dry.dry_run);
    assert_eq!(dry.pool.settings.targets.unwrap()["default"], 2);
    assert_eq!(
        problem(&wp, Method::GET, "/v1/pools/new", None).await.0,
        404
    );

    for (method, path) in [
        (Method::GET, "/v1/pools/nope"),
        (Method::DELETE, "/v1/pools/nope"),
        (Method::POST, "/v1/pools/nope/rollback"),
        (Method::PATCH, "/v1/pools/nope"),
    ] {
        let (s, p) = problem(
            &wp,
            method.clone(),
            path,
            Some(serde_json::json!({"target": 1})),
        )
        .await;
        assert_eq!(s, 404, "{method} {path}: {p}");
    }
    // A pool at its first revision has nothing to roll back to.
    let (s, p) = problem(&wp, Method::POST, "/v1/pools/default/rollback", None).await;
    assert_eq!(s, 409, "{p}");
    // An in-process server has no config to read again.
    let (s, p) = problem(&wp, Method::POST, "/v1/reload", None).await;
    assert_eq!(s, 409, "{p}");
    assert!(p["type"].as_str().unwrap().ends_with("no-config-source"));
}

fn run(args: &[&str]) -> String {
    let out = Command::new(common::bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "warmpool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_shows_what_changes_and_a_second_run_changes_nothing() {
    let wp = InProc::start(&[("POOL_TARGET_INSTANCES", "1")]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pools.toml");
    let path = file.display().to_string();
    let url = wp.base.clone();
    let apply = |extra: &[&str]| {
        let mut args = vec!["--url", url.as_str(), "apply", "-f", path.as_str()];
        args.extend_from_slice(extra);
        run(&args)
    };
    std::fs::write(
        &file,
        "[pools.web]\ntarget = 1\nbatch_spacing = 0\n\n[pools.api]\ntargets = { weur = 1 }\n",
    )
    .unwrap();

    // A dry run changes nothing.
    let out = apply(&["--dry-run"]);
    assert!(out.contains("pool/web created"), "{out}");
    assert_eq!(
        problem(&wp, reqwest::Method::GET, "/v1/pools/web", None)
            .await
            .0,
        404
    );
    let out = apply(&[]);
    assert!(out.contains("pool/api created"), "{out}");
    assert!(out.contains("pool/web created"), "{out}");
    // Idempotent: nothing changes the second time.
    let out = apply(&[]);
    assert!(out.contains("pool/api unchanged"), "{out}");
    assert!(out.contains("pool/web unchanged"), "{out}");
    let revision = wp.client.pool("web").await.unwrap().revision;

    // An edit shows each change, and a template change says it makes a revision.
    std::fs::write(
        &file,
        "[pools.web]\ntarget = 2\nbatch_spacing = 0\napp_env = { V = \"2\" }\n\n[pools.api]\ntargets = { weur = 1 }\n",
    )
    .unwrap();
    let out = apply(&[]);
    assert!(out.contains("pool/web configured"), "{out}");
    assert!(out.contains("targets"), "{out}");
    assert!(out.contains("app_env"), "{out}");
    assert!(out.contains("(new revision)"), "{out}");
    assert!(out.contains("pool/api unchanged"), "{out}");
    let web = wp.client.pool("web").await.unwrap();
    assert_eq!(web.revision, revision + 1);
    assert_eq!(web.settings.targets.unwrap()["default"], 2);

    let out = run(&["--url", url.as_str(), "pools", "rm", "web"]);
    assert!(out.contains("pool/web deleted"), "{out}");
    assert!(matches!(
        wp.client.pool("web").await,
        Err(ClientError::Api { problem }) if problem.status == 404
    ));
}
