//! Image pulls: one pull per image at a time (starts that need it wait on the same
//! one), its progress kept for the pool's status and logged, and the registry's
//! credentials read from the Docker config file at each pull.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::image::CreateImageOptions;
use bollard::models::CreateImageInfo;
use bollard::Docker;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::TryStreamExt;
use warmpool_runtime::{PullPolicy, PullStatus, RuntimeError};

/// With `pull = "always"`, a pull that succeeded this recently serves the next
/// starts too: a refill after each claim does not ask the registry each time
/// (Docker Hub counts those requests against a rate limit).
pub const ALWAYS_FRESH_FOR: Duration = Duration::from_secs(60);

/// How often a pull's progress is logged while it runs.
const LOG_EVERY: Duration = Duration::from_secs(5);

type Outcome = Result<(), Arc<str>>;

/// The pulls of one runtime: those in flight and the last one of each image.
#[derive(Default)]
pub struct Pulls {
    inflight: Mutex<HashMap<String, Shared<BoxFuture<'static, Outcome>>>>,
    last: Mutex<HashMap<String, (PullStatus, Option<Instant>)>>,
}

impl Pulls {
    pub fn status(&self, image: &str) -> Option<PullStatus> {
        self.last.lock().unwrap().get(image).map(|(s, _)| s.clone())
    }

    /// Whether an `always` start may skip its pull: one of the image succeeded
    /// within [`ALWAYS_FRESH_FOR`].
    pub fn fresh(&self, image: &str) -> bool {
        self.last
            .lock()
            .unwrap()
            .get(image)
            .and_then(|(_, ok)| *ok)
            .is_some_and(|at| at.elapsed() < ALWAYS_FRESH_FOR)
    }

    fn set(&self, status: PullStatus, succeeded: Option<Instant>) {
        self.last
            .lock()
            .unwrap()
            .insert(status.image.clone(), (status, succeeded));
    }

    /// Pulls `image`, or waits for the pull of it already in flight. The error
    /// names the image, the policy and the registry's message.
    pub async fn pull(
        self: &Arc<Self>,
        docker: &Docker,
        image: &str,
        policy: PullPolicy,
        config_file: Option<PathBuf>,
        limit: Duration,
    ) -> Result<(), RuntimeError> {
        let shared = {
            let mut inflight = self.inflight.lock().unwrap();
            inflight
                .entry(image.to_owned())
                .or_insert_with(|| {
                    let pulls = self.clone();
                    let docker = docker.clone();
                    let image = image.to_owned();
                    let task = tokio::spawn(async move {
                        let outcome = pulls.run(&docker, &image, config_file, limit).await;
                        pulls.inflight.lock().unwrap().remove(&image);
                        outcome
                    });
                    async move {
                        task.await
                            .unwrap_or_else(|_| Err(Arc::from("the pull task ended abruptly")))
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        shared.await.map_err(|message| {
            RuntimeError::CannotStart(format!(
                "cannot pull image {image} (pull = \"{policy}\"): {message}"
            ))
        })
    }

    async fn run(
        &self,
        docker: &Docker,
        image: &str,
        config_file: Option<PathBuf>,
        limit: Duration,
    ) -> Outcome {
        let began = Instant::now();
        let started_at = now_ms();
        let mut status = PullStatus {
            image: image.to_owned(),
            phase: "pulling",
            detail: "asking the registry".to_owned(),
            started_at,
            ended_at: None,
        };
        self.set(status.clone(), None);
        let registry = registry_of(image);
        let credentials = credentials(registry, config_file.as_deref()).await;
        tracing::info!(
            image,
            registry,
            credentials = credentials.is_some(),
            "pulling image"
        );
        let outcome =
            tokio::time::timeout(limit, self.stream(docker, image, credentials, &mut status))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "the pull did not finish within {} s",
                        limit.as_secs()
                    ))
                });
        status.ended_at = Some(now_ms());
        let took = began.elapsed();
        match &outcome {
            Ok(()) => {
                status.phase = "pulled";
                status.detail = format!("pulled in {:.3} s", took.as_secs_f64());
                tracing::info!(image, seconds = took.as_secs_f64(), "image pulled");
                self.set(status, Some(Instant::now()));
            }
            Err(message) => {
                status.phase = "failed";
                status.detail = message.clone();
                tracing::warn!(image, error = %message, "image pull failed");
                self.set(status, None);
            }
        }
        outcome.map_err(Arc::from)
    }

    /// Follows the engine's progress stream to its end.
    async fn stream(
        &self,
        docker: &Docker,
        image: &str,
        credentials: Option<DockerCredentials>,
        status: &mut PullStatus,
    ) -> Result<(), String> {
        let (from_image, tag) = split_reference(image);
        let mut stream = docker.create_image(
            Some(CreateImageOptions {
                from_image,
                tag,
                ..Default::default()
            }),
            None,
            credentials,
        );
        let mut layers: HashMap<String, Layer> = HashMap::new();
        let mut logged = Instant::now();
        while let Some(info) = stream.try_next().await.map_err(message)? {
            if !apply(&mut layers, info) {
                continue;
            }
            status.detail = progress(&layers);
            self.set(status.clone(), None);
            if logged.elapsed() >= LOG_EVERY {
                logged = Instant::now();
                tracing::info!(image, progress = %status.detail, "pulling image");
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Layer {
    done: bool,
    current: u64,
    total: u64,
}

/// Takes one line of the engine's progress stream into `layers`; false for a
/// line about no layer (`Pulling from ...`, `Digest: ...`, `Status: ...`).
fn apply(layers: &mut HashMap<String, Layer>, info: CreateImageInfo) -> bool {
    let (Some(id), Some(state)) = (info.id, info.status) else {
        return false;
    };
    if tag_line(&state) {
        return false;
    }
    let layer = layers.entry(id).or_default();
    match state.as_str() {
        "Pull complete" | "Already exists" => layer.done = true,
        "Downloading" => {
            if let Some(d) = info.progress_detail {
                layer.current = d.current.unwrap_or(0).max(0) as u64;
                layer.total = d.total.unwrap_or(0).max(0) as u64;
            }
        }
        "Download complete" => layer.current = layer.total,
        _ => {}
    }
    true
}

fn tag_line(state: &str) -> bool {
    state.starts_with("Pulling from")
        || state.starts_with("Digest:")
        || state.starts_with("Status:")
}

/// `2 of 5 layers done, 12.3 of 40.1 MB`.
fn progress(layers: &HashMap<String, Layer>) -> String {
    let done = layers.values().filter(|l| l.done).count();
    let current: u64 = layers
        .values()
        .map(|l| if l.done { l.total } else { l.current })
        .sum();
    let total: u64 = layers.values().map(|l| l.total).sum();
    let mut s = format!("{done} of {} layers done", layers.len());
    if total > 0 {
        s.push_str(&format!(
            ", {:.1} of {:.1} MB",
            current as f64 / 1e6,
            total as f64 / 1e6
        ));
    }
    s
}

/// The registry's own words: the engine passes its message on.
fn message(e: DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message,
        DockerError::DockerStreamError { error } => error,
        other => other.to_string(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An image reference as the engine's pull takes it: the name, and its tag or
/// digest (`latest` when it has neither: an empty tag would pull every tag).
pub fn split_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        // The engine reads a digest reference whole.
        return (image, "");
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// The registry an image comes from, as the Docker config file keys it:
/// `docker.io` for a name without a registry part.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// A key of the config file's `auths` or `credHelpers` as a registry host:
/// without scheme or path, Docker Hub's aliases as `docker.io`.
fn host_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    }
}

/// The Docker config file: the one set, or `$DOCKER_CONFIG/config.json`, or
/// `~/.docker/config.json`.
pub fn config_file(set: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = set {
        return Some(p.to_owned());
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The credentials of `registry` from the Docker config file, as `docker login`
/// left them: an `auths` entry, or a credential helper (`credHelpers`, then
/// `credsStore`). `None` (an anonymous pull) when there are none or the file
/// cannot be read; a file that is there but unreadable is logged.
pub async fn credentials(registry: &str, file: Option<&Path>) -> Option<DockerCredentials> {
    let path = config_file(file)?;
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the Docker config file");
            return None;
        }
    };
    let config: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the Docker config file is not JSON");
            return None;
        }
    };
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    };
    let helper = config["credHelpers"]
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| host_of(k) == registry))
        .and_then(|(_, v)| v.as_str())
        .or_else(|| config["credsStore"].as_str());
    if let Some(entry) = config["auths"]
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| host_of(k) == registry))
        .map(|(_, v)| v)
    {
        if let Some(c) = from_auth_entry(entry, &server) {
            return Some(c);
        }
    }
    match helper {
        Some(h) if !h.is_empty() => from_helper(h, &server).await,
        _ => None,
    }
}

/// An `auths` entry: `auth` (base64 of `user:password`) or an `identitytoken`.
fn from_auth_entry(entry: &serde_json::Value, server: &str) -> Option<DockerCredentials> {
    let identitytoken = entry["identitytoken"].as_str().map(str::to_owned);
    let (username, password) = entry["auth"]
        .as_str()
        .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        .map_or((None, None), |(u, p)| (Some(u), Some(p)));
    if username.is_none() && identitytoken.is_none() {
        return None;
    }
    Some(DockerCredentials {
        username,
        password,
        identitytoken,
        serveraddress: Some(server.to_owned()),
        ..Default::default()
    })
}

/// Asks `docker-credential-HELPER get`, as the docker CLI does.
async fn from_helper(helper: &str, server: &str) -> Option<DockerCredentials> {
    use tokio::io::AsyncWriteExt;
    let program = format!("docker-credential-{helper}");
    let run = async {
        let mut child = tokio::process::Command::new(&program)
            .arg("get")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(server.as_bytes()).await?;
        }
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(out)) if out.status.success() => out,
        Ok(Ok(_)) => return None, // the helper has nothing for this registry
        Ok(Err(e)) => {
            tracing::warn!(helper = %program, error = %e, "cannot run the Docker credential helper");
            return None;
        }
        Err(_) => {
            tracing::warn!(helper = %program, "the Docker credential helper did not answer within 10 s");
            return None;
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let user = v["Username"].as_str()?.to_owned();
    let secret = v["Secret"].as_str()?.to_owned();
    Some(if user == "<token>" {
        DockerCredentials {
            identitytoken: Some(secret),
            serveraddress: Some(server.to_owned()),
            ..Default::default()
        }
    } else {
        DockerCredentials {
            username: Some(user),
            password: Some(secret),
            serveraddress: Some(server.to_owned()),
            ..Default::default()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_and_tag_with_latest_by_default() {
        assert_eq!(split_reference("alpine"), ("alpine", "latest"));
        assert_eq!(split_reference("alpine:3.20"), ("alpine", "3.20"));
        assert_eq!(
            split_reference("127.0.0.1:5000/team/app"),
            ("127.0.0.1:5000/team/app", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/team/app:v2"),
            ("127.0.0.1:5000/team/app", "v2")
        );
        let digest = "ghcr.io/a/b@sha256:0123abcd";
        assert_eq!(split_reference(digest), (digest, ""));
    }

    #[test]
    fn registries_are_named_as_the_config_file_keys_them() {
        assert_eq!(registry_of("alpine"), "docker.io");
        assert_eq!(registry_of("library/alpine:3"), "docker.io");
        assert_eq!(registry_of("ghcr.io/a/b"), "ghcr.io");
        assert_eq!(registry_of("127.0.0.1:5000/a"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/a"), "localhost");
        assert_eq!(host_of("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(host_of("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(host_of("https://ghcr.io"), "ghcr.io");
    }

    #[tokio::test]
    async fn credentials_come_from_the_auths_entry_of_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("warm:p:ss");
        std::fs::write(
            &file,
            serde_json::json!({"auths": {
                "127.0.0.1:5000": {"auth": auth},
                "https://index.docker.io/v1/": {"identitytoken": "tok"},
            }})
            .to_string(),
        )
        .unwrap();
        let c = credentials("127.0.0.1:5000", Some(&file)).await.unwrap();
        assert_eq!(c.username.as_deref(), Some("warm"));
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5000"));
        let hub = credentials("docker.io", Some(&file)).await.unwrap();
        assert_eq!(hub.identitytoken.as_deref(), Some("tok"));
        assert_eq!(
            hub.serveraddress.as_deref(),
            Some("https://index.docker.io/v1/")
        );
        assert!(credentials("ghcr.io", Some(&file)).await.is_none());
        assert!(credentials("ghcr.io", Some(&dir.path().join("none.json")))
            .await
            .is_none());
    }

    #[test]
    fn the_engines_progress_lines_become_layers_done_and_bytes() {
        let line = |id: &str, status: &str, current: i64, total: i64| CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: Some(bollard::models::ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            ..Default::default()
        };
        let mut layers = HashMap::new();
        let mut seen = Vec::new();
        for info in [
            line("v2", "Pulling from team/app", 0, 0),
            line("aaa", "Pulling fs layer", 0, 0),
            line("bbb", "Already exists", 0, 0),
            line("aaa", "Downloading", 1_000_000, 4_000_000),
            line("aaa", "Download complete", 0, 0),
            line("aaa", "Extracting", 5, 9),
            line("aaa", "Pull complete", 0, 0),
            line("v2", "Digest: sha256:00", 0, 0),
        ] {
            if apply(&mut layers, info) {
                seen.push(progress(&layers));
            }
        }
        assert_eq!(
            seen,
            [
                "0 of 1 layers done",
                "1 of 2 layers done",
                "1 of 2 layers done, 1.0 of 4.0 MB",
                "1 of 2 layers done, 4.0 of 4.0 MB",
                "1 of 2 layers done, 4.0 of 4.0 MB",
                "2 of 2 layers done, 4.0 of 4.0 MB",
            ]
        );
    }

    #[test]
    fn progress_counts_layers_and_bytes() {
        let mut layers = HashMap::new();
        layers.insert(
            "a".to_owned(),
            Layer {
                done: true,
                current: 5,
                total: 2_000_000,
            },
        );
        layers.insert(
            "b".to_owned(),
            Layer {
                done: false,
                current: 500_000,
                total: 1_000_000,
            },
        );
        assert_eq!(progress(&layers), "1 of 2 layers done, 2.5 of 3.0 MB");
    }
}
