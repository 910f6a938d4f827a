//! Claim-time set-up against a real Docker Engine running the sample image: the
//! claim's files are in the container (uploaded by the runtime under the pool's
//! `files_dir`, read back with `docker cp`, since the image is `FROM scratch` and
//! has no `cat`), and the app sees the claim's env at `GET /env`. Skips with a
//! reason when Docker is not there, unless `WARMPOOL_REQUIRE_DOCKER=1`.

mod common;

use std::time::Duration;

use common::{docker_ready, read_out, InProc};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_claims_get_their_files_and_env_before_their_id() {
    if !docker_ready("docker_claims_get_their_files_and_env_before_their_id") {
        return;
    }
    let mut wp = InProc::start(&[
        ("WARMPOOL_RUNTIME", "docker"),
        ("WARMPOOL_DOCKER_NETWORK", "warmpool-test"),
        ("WARMPOOL_STOP_GRACE_SECONDS", "2"),
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_FILES_DIR", "/srv/claim"),
    ])
    .await;
    wp.wait_ready("default", 1, T).await;
    let r = wp
        .http
        .post(format!("{}/container", wp.base))
        .json(&json!({
            "env": {"GREETING": "hello docker"},
            "secretEnv": {"TOKEN": "tok"},
            "files": {"a.txt": "alpha", "conf/deep/b.json": "{\"b\":1}", "c.txt": "x".repeat(4096)},
            "labels": {"team": "d"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["warm"], true, "{c}");
    let id = c["id"].as_str().unwrap();
    let name = format!("warmpool-{id}");
    assert_eq!(read_out(&name, "/srv/claim/a.txt"), "alpha");
    assert_eq!(read_out(&name, "/srv/claim/conf/deep/b.json"), "{\"b\":1}");
    assert_eq!(read_out(&name, "/srv/claim/c.txt"), "x".repeat(4096));
    let env: Value = wp.proxied(id, "/env").await.json().await.unwrap();
    assert_eq!(env["GREETING"], "hello docker");
    assert_eq!(env["TOKEN"], "tok");
    assert_eq!(env["WARMPOOL_FILES_DIR"], "/srv/claim");
    wp.shutdown().await;
}
