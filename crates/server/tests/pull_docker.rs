//! Image pulls from a real registry: Debian's `docker-registry`, started by the
//! test on 127.0.0.1 with htpasswd auth. The sample image is pushed there under a
//! fresh name and removed from the engine; warmpool pulls it with the credentials
//! of a Docker config file, which it reads at each pull (a `docker login` after
//! start-up counts, no restart). Pull failures become the pool's `lastError` with
//! the registry's message, and each policy (`if-missing`, `always`, `never`) does
//! what it says; a pull is logged from its start to its end. Skips with a reason
//! when Docker, the sample image, the registry or `htpasswd` is missing, unless
//! `WARMPOOL_REQUIRE_DOCKER=1`.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{docker, docker_ready, poll, InProc, IMAGE};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(90);
const USER: &str = "warm";
const PASSWORD: &str = "pool-s3cret";

/// A registry serving on 127.0.0.1:`port`, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the test can run (see the module's doc).
fn ready(test: &str) -> bool {
    if !docker_ready(test) {
        return false;
    }
    let missing: Vec<_> = ["docker-registry", "htpasswd"]
        .into_iter()
        .filter(|p| !on_path(p))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "{} not installed (Debian: apt-get install docker-registry apache2-utils)",
        missing.join(" and ")
    );
    if std::env::var("WARMPOOL_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and WARMPOOL_REQUIRE_DOCKER=1");
    }
    eprintln!("skipping {test}: {reason}");
    false
}

async fn start_registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .unwrap();
    assert!(htpasswd.status.success());
    std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
    // A free port, found by binding it; the registry takes it right after.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\n\
         http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: warmpool-test\n    path: {htpasswd}\n",
        root = dir.path().join("data").display(),
        htpasswd = dir.path().join("htpasswd").display(),
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let registry = Registry {
        child,
        port,
        _dir: dir,
    };
    let url = format!("http://127.0.0.1:{port}/v2/");
    poll(T, "the registry to answer", || {
        let url = url.clone();
        async move {
            // 401: up, and asking for credentials.
            let r = reqwest::get(&url).await.ok()?;
            (r.status() == 401).then_some(())
        }
    })
    .await;
    registry
}

/// `docker --config DIR ARGS`, which must succeed (`stdin` fed when given).
fn docker_with(config_dir: &Path, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("docker")
        .arg("--config")
        .arg(config_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The view of `pool` at the default location.
async fn pool_view(wp: &InProc, pool: &str) -> Option<Value> {
    let v: Value = wp
        .http
        .get(format!("{}/v1/pools", wp.base))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["pools"]
        .as_array()?
        .iter()
        .find(|p| p["pool"] == pool && p["location"] == "default")
        .cloned()
}

/// Polls `pool`'s view until `f` holds; returns that view.
async fn wait_view(wp: &InProc, pool: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    poll(T, what, || async {
        pool_view(wp, pool).await.filter(|v| f(v))
    })
    .await
}

fn image_present(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_pull_their_image_with_the_registrys_credentials_and_as_their_policy_says() {
    let test = "pools_pull_their_image_with_the_registrys_credentials_and_as_their_policy_says";
    if !ready(test) {
        return;
    }
    let registry = start_registry().await;
    let host = format!("127.0.0.1:{}", registry.port);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let pulled = format!("{host}/warmpool-test/app:{tag}");
    let kept = format!("{host}/warmpool-test/app:{tag}-kept");
    let absent = format!("{host}/warmpool-test/app:{tag}-absent");

    // `docker login` and push, with a config dir of the test's own.
    let login = tempfile::tempdir().unwrap();
    docker_with(
        login.path(),
        &["login", &host, "-u", USER, "--password-stdin"],
        Some(PASSWORD),
    );
    for image in [&pulled, &kept] {
        docker(&["tag", IMAGE, image]);
        docker_with(login.path(), &["push", image], None);
    }
    // Only `kept` stays on the engine.
    docker(&["rmi", &pulled]);
    assert!(!image_present(&pulled));
    assert!(image_present(&kept));

    // warmpool starts with a config file that has no credentials yet.
    let config_dir = tempfile::tempdir().unwrap();
    let config_file = config_dir.path().join("config.json");
    std::fs::write(&config_file, "{}").unwrap();
    let mut wp = InProc::start(&[
        ("WARMPOOL_RUNTIME", "docker"),
        ("WARMPOOL_DOCKER_NETWORK", "warmpool-test"),
        ("WARMPOOL_STOP_GRACE_SECONDS", "2"),
        ("WARMPOOL_RECONCILE_INTERVAL_SECONDS", "0.2"),
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_IMAGE", &pulled),
        ("WARMPOOL_DOCKER_CONFIG", &config_file.display().to_string()),
    ])
    .await;

    // 1. Without credentials the registry refuses: its words are the pool's
    //    last error, naming the image and the policy; the pull shows as failed.
    let v = wait_view(&wp, "default", "the anonymous pull to fail", |v| {
        v["lastError"].is_string() && v["pull"]["phase"] == "failed"
    })
    .await;
    let error = v["lastError"].as_str().unwrap();
    eprintln!("anonymous pull: {error}");
    assert!(
        error.contains(&format!(
            "cannot pull image {pulled} (pull = \"if-missing\")"
        )),
        "{error}"
    );
    assert!(
        [
            "unauthorized",
            "authentication required",
            "no basic auth credentials"
        ]
        .iter()
        .any(|m| error.contains(m)),
        "the registry's message is not in: {error}"
    );
    assert_eq!(v["ready"], 0);
    assert!(!image_present(&pulled));

    // 2. The credentials appear in the file (a `docker login`): the next pull
    //    uses them, with no restart, and the pool fills.
    std::fs::copy(login.path().join("config.json"), &config_file).unwrap();
    let v = wait_view(
        &wp,
        "default",
        "the pool to fill from the pulled image",
        |v| v["ready"] == 1,
    )
    .await;
    eprintln!("pulled: {}", v["pull"]);
    assert_eq!(v["pull"]["phase"], "pulled", "{v}");
    assert_eq!(v["pull"]["image"], pulled.as_str());
    assert!(v["pull"]["endedAt"].is_string(), "{v}");
    assert!(
        v["pull"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("pulled in "),
        "{v}"
    );
    assert!(image_present(&pulled));
    let c: Value = wp
        .http
        .post(format!("{}/container", wp.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["warm"], true, "{c}");
    let health = wp.proxied(c["id"].as_str().unwrap(), "/healthz").await;
    assert_eq!(health.status(), 200);

    // 3. `never` on an image the engine lacks: no pull, and an error naming
    //    the image and the policy.
    let put = |pool: &str, body: Value| {
        let http = wp.http.clone();
        let url = format!("{}/v1/pools/{pool}", wp.base);
        async move {
            let r = http.put(url).json(&body).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    put(
        "never",
        json!({"image": absent, "pull": "never", "targets": {"default": 1}}),
    )
    .await;
    let v = wait_view(&wp, "never", "the never pool's error", |v| {
        v["lastError"].is_string()
    })
    .await;
    let error = v["lastError"].as_str().unwrap();
    eprintln!("never: {error}");
    assert!(
        error.contains(&format!(
            "image {absent} is not on the Docker Engine, and its pool's pull policy is \"never\""
        )),
        "{error}"
    );
    assert!(!error.contains("build-sample-image"), "{error}");
    assert!(v["pull"].is_null(), "a never pool pulled: {v}");

    // 4. `if-missing` on a tag the registry does not have: the registry's
    //    "manifest unknown" is the pool's last error.
    put(
        "missing",
        json!({"image": absent, "targets": {"default": 1}}),
    )
    .await;
    let v = wait_view(&wp, "missing", "the missing pool's error", |v| {
        v["lastError"].is_string()
    })
    .await;
    let error = v["lastError"].as_str().unwrap();
    eprintln!("missing tag: {error}");
    assert!(
        error.contains(&format!("cannot pull image {absent}")),
        "{error}"
    );
    assert!(
        error.contains("manifest unknown") || error.contains("not found"),
        "the registry's message is not in: {error}"
    );
    assert_eq!(v["pull"]["phase"], "failed", "{v}");

    // 5. `always` pulls an image the engine already has; `if-missing` does not.
    put(
        "always",
        json!({"image": kept, "pull": "always", "targets": {"default": 1}}),
    )
    .await;
    let v = wait_view(&wp, "always", "the always pool to fill", |v| {
        v["ready"] == 1
    })
    .await;
    assert_eq!(v["pull"]["phase"], "pulled", "{v}");
    assert_eq!(v["pull"]["image"], kept.as_str());
    let detail: Value = wp
        .http
        .get(format!("{}/v1/pools/always", wp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["settings"]["pull"], "always", "{detail}");

    wp.shutdown().await;
    for image in [&pulled, &kept] {
        let _ = Command::new("docker")
            .args(["rmi", "-f", image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_image_is_never_pulled_even_under_always() {
    let test = "the_sample_image_is_never_pulled_even_under_always";
    if !docker_ready(test) {
        return;
    }
    let mut wp = InProc::start(&[
        ("WARMPOOL_RUNTIME", "docker"),
        ("WARMPOOL_DOCKER_NETWORK", "warmpool-test"),
        ("POOL_TARGET_INSTANCES", "1"),
        ("WARMPOOL_IMAGE", IMAGE),
        ("WARMPOOL_PULL", "always"),
    ])
    .await;
    // The image is there, so the pool fills; with `always` on any other image
    // a pull would show, but the sample image is never pulled.
    let v = wait_view(&wp, "default", "the sample pool to fill", |v| {
        v["ready"] == 1
    })
    .await;
    assert!(v["pull"].is_null(), "the sample image was pulled: {v}");
    wp.shutdown().await;
}

/// A pull is in warmpool's log: its start (with the registry, and whether
/// credentials were found) and its end (with the time it took).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_is_logged_from_its_start_to_its_end() {
    use std::io::Read;
    let test = "a_pull_is_logged_from_its_start_to_its_end";
    if !ready(test) {
        return;
    }
    let registry = start_registry().await;
    let host = format!("127.0.0.1:{}", registry.port);
    let image = format!(
        "{host}/warmpool-test/logged:{}",
        uuid::Uuid::new_v4().simple()
    );
    let login = tempfile::tempdir().unwrap();
    docker_with(
        login.path(),
        &["login", &host, "-u", USER, "--password-stdin"],
        Some(PASSWORD),
    );
    docker(&["tag", IMAGE, &image]);
    docker_with(login.path(), &["push", &image], None);
    docker(&["rmi", &image]);

    let data = tempfile::tempdir().unwrap();
    let config_file = login.path().join("config.json").display().to_string();
    let mut p = common::Proc::spawn_with_stderr(
        data.path(),
        &[
            ("WARMPOOL_RUNTIME", "docker"),
            ("WARMPOOL_DOCKER_NETWORK", "warmpool-test"),
            ("POOL_TARGET_INSTANCES", "1"),
            ("WARMPOOL_IMAGE", &image),
            ("WARMPOOL_DOCKER_CONFIG", &config_file),
            ("RUST_LOG", "warn,warmpool_docker=info"),
        ],
        Stdio::piped(),
    );
    common::wait_ready(&p.client, "default", 1, T).await;
    // A few lines at info level: the pipe cannot fill up before the exit.
    let mut pipe = p.child.stderr.take().unwrap();
    assert!(p.sigterm().success());
    let mut log = String::new();
    pipe.read_to_string(&mut log).unwrap();
    let line = |what: &str| {
        log.lines()
            .find(|l| l.contains(what) && l.contains(&image))
            .unwrap_or_else(|| panic!("no {what:?} line for {image} in:\n{log}"))
            .to_owned()
    };
    let start = line("pulling image");
    assert!(start.contains(&format!("registry=\"{host}\"")), "{start}");
    assert!(start.contains("credentials=true"), "{start}");
    let end = line("image pulled");
    assert!(end.contains("seconds="), "{end}");
    let _ = Command::new("docker")
        .args(["rmi", "-f", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    drop(registry);
}
