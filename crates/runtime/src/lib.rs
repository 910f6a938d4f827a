//! The `Runtime` trait (what actually runs containers), the process runtime (the
//! embedded default) and a simulated runtime for deterministic tests.
//!
//! Runtimes with heavy dependencies (Docker, Kubernetes) live in crates of their own
//! and implement the same trait; [`watch`] is the event watch they share.

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod probe;
mod process;
mod sim;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use warmpool_core::{ContainerId, PoolKey};

pub use error::RuntimeError;
pub use probe::HttpProbe;
pub use process::{ProcessConfig, ProcessRuntime, SampleAppCommand, SAMPLE_APP_BIN};
pub use sim::{SimMode, SimRuntime};

/// Env var naming the warmpool instance that started a container: the tag by which
/// a restarted warmpool tells its own containers from anybody else's.
pub const INSTANCE_ENV: &str = "WARMPOOL_INSTANCE_ID";

/// The image of warmpool's sample app (`scripts/build-sample-image.sh` builds it):
/// what an image runtime runs for [`Workload::SampleApp`].
pub const SAMPLE_APP_IMAGE: &str = "warmpool/sample-app:latest";

/// Where a claim's files go in a container when its template names no
/// [`Template::files_dir`].
pub const DEFAULT_FILES_DIR: &str = "/warmpool/files";

/// Env var telling the app where its claim's files are (a Docker or Kubernetes
/// container: its template's files dir; a process: its own work dir).
pub const FILES_DIR_ENV: &str = "WARMPOOL_FILES_DIR";

/// What every container of one pool runs, and with what; one per pool, shared by
/// its containers.
///
/// Serialisable, so that a pool's revisions can be kept (the engine stores each
/// template as JSON and compares revisions by that text).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Template {
    pub workload: Workload,
    /// Readiness probe path.
    pub health_path: String,
    /// Extra env of the pool, set after warmpool's own variables.
    pub env: Vec<(String, String)>,
    pub resources: Resources,
    /// How long a container has to become ready. A runtime that must first find
    /// it a place (Kubernetes scheduling) also bounds that wait by it; zero: the
    /// runtime's own default.
    pub start_timeout: Duration,
    /// Where a claim's files are written in a container (an absolute path inside
    /// it; the image runtimes); empty: [`DEFAULT_FILES_DIR`]. Left out of the JSON
    /// when empty, so that a template from before this field serialises to the
    /// same text (revisions are compared by that text).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub files_dir: String,
    /// When an image runtime pulls its image. Left out of the JSON when it is
    /// the default, for the same reason as `files_dir`.
    #[serde(default, skip_serializing_if = "PullPolicy::is_default")]
    pub pull: PullPolicy,
    /// How an image runtime locks its containers down (Docker; Kubernetes pods
    /// always pass the "restricted" Pod Security level). Left out of the JSON
    /// when it is the default, for the same reason as `files_dir`.
    #[serde(default, skip_serializing_if = "Hardening::is_default")]
    pub hardening: Hardening,
}

/// The user warmpool's sample image runs as (non-root), and the owner of its
/// writable directories.
pub const SAMPLE_APP_UID: u32 = 65532;

/// The sample app's data directory (its working directory, where it keeps its
/// text): writable on a read-only root.
pub const SAMPLE_APP_DATA_DIR: &str = "/data";

/// How a Docker container is locked down. Each is on by default and each can
/// be relaxed per pool.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Hardening {
    /// `no-new-privileges`: no setuid binary or file capability raises the
    /// app's privileges.
    pub no_new_privileges: bool,
    /// Every Linux capability dropped (`--cap-drop ALL`).
    pub drop_capabilities: bool,
    /// A read-only root file system, with a tmpfs at each of `tmpfs` and the
    /// files dir on a volume of its own (a tmpfs too).
    pub read_only_root: ReadOnlyRoot,
    /// The user (`uid[:gid]` or a name the image knows) the app runs as; empty:
    /// the image's own.
    pub user: String,
    /// Writable tmpfs directories on a read-only root.
    pub tmpfs: Vec<String>,
}

impl Default for Hardening {
    fn default() -> Self {
        Self {
            no_new_privileges: true,
            drop_capabilities: true,
            read_only_root: ReadOnlyRoot::Auto,
            user: String::new(),
            tmpfs: vec!["/tmp".to_owned()],
        }
    }
}

impl Hardening {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `image` runs on a read-only root: `auto` means only the sample
    /// image, whose writable directories are known.
    pub fn read_only(&self, image: &str) -> bool {
        match self.read_only_root {
            ReadOnlyRoot::On => true,
            ReadOnlyRoot::Off => false,
            ReadOnlyRoot::Auto => image == SAMPLE_APP_IMAGE,
        }
    }

    /// The numeric uid and gid the app runs as, where known: those of `user`
    /// (`uid` or `uid:gid`), or the sample image's; `None` for a name, or the
    /// image's own user of an image not ours.
    pub fn owner(&self, image: &str) -> Option<(u32, u32)> {
        if self.user.is_empty() {
            return (image == SAMPLE_APP_IMAGE).then_some((SAMPLE_APP_UID, SAMPLE_APP_UID));
        }
        let (uid, gid) = match self.user.split_once(':') {
            Some((u, g)) => (u.parse().ok()?, g.parse().ok()?),
            None => {
                let uid = self.user.parse().ok()?;
                (uid, uid)
            }
        };
        Some((uid, gid))
    }
}

/// Whether a container's root file system is read-only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReadOnlyRoot {
    /// Read-only for the sample image (its writable directories are known),
    /// writable for other images.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "true")]
    On,
    #[serde(rename = "false")]
    Off,
}

impl ReadOnlyRoot {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadOnlyRoot::Auto => "auto",
            ReadOnlyRoot::On => "true",
            ReadOnlyRoot::Off => "false",
        }
    }
}

impl std::str::FromStr for ReadOnlyRoot {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ReadOnlyRoot::Auto),
            "true" | "1" | "yes" => Ok(ReadOnlyRoot::On),
            "false" | "0" | "no" => Ok(ReadOnlyRoot::Off),
            _ => Err("expected auto, true or false".to_owned()),
        }
    }
}

/// When an image runtime pulls a template's image from its registry, as
/// Kubernetes' `imagePullPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pulled when the engine does not have it (`IfNotPresent`).
    #[default]
    IfMissing,
    /// Pulled before starts (`Always`): the engine checks the registry for a
    /// newer image under the same tag. Starts that overlap share one pull.
    Always,
    /// Never pulled (`Never`): a missing image fails the start.
    Never,
}

impl PullPolicy {
    /// As the setting spells it: `if-missing`, `always`, `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::IfMissing => "if-missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        }
    }

    pub fn is_default(&self) -> bool {
        *self == PullPolicy::IfMissing
    }
}

impl std::str::FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "if-missing" => Ok(PullPolicy::IfMissing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            _ => Err("expected if-missing, always or never".to_owned()),
        }
    }
}

impl std::fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last pull of one image by an image runtime, as a pool's status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullStatus {
    pub image: String,
    /// `pulling`, `pulled` or `failed`.
    pub phase: &'static str,
    /// Progress while pulling (layers done, bytes), the time it took once
    /// pulled, the registry's message once failed.
    pub detail: String,
    /// When it started and ended, in ms since the Unix epoch.
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

impl Template {
    /// Where a claim's files are written in a container: [`Template::files_dir`],
    /// or [`DEFAULT_FILES_DIR`] when that is empty.
    pub fn files_dir(&self) -> &str {
        if self.files_dir.is_empty() {
            DEFAULT_FILES_DIR
        } else {
            &self.files_dir
        }
    }
}

/// What a container runs. Each runtime runs the kinds it can and fails the start of
/// any other with [`RuntimeError::Unsupported`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Workload {
    /// warmpool's own sample app: the process runtime runs its own program with
    /// `sample-app` ([`ProcessRuntime::with_sample_app`]), an image runtime the
    /// [`SAMPLE_APP_IMAGE`].
    #[default]
    SampleApp,
    /// A program and its arguments, run as a local process (process runtime).
    Command(Vec<String>),
    /// A container image (Docker and Kubernetes runtimes).
    Image {
        image: String,
        /// Processes per container. Docker's own limit (`PidsLimit`): a Pod has no
        /// such field (it is a kubelet setting), and a local process none either.
        pids_limit: Option<i64>,
    },
}

impl Workload {
    /// What an image runtime runs: the image and its pids limit; `None` for a
    /// command, which runs no image.
    pub fn image(&self) -> Option<(&str, Option<i64>)> {
        match self {
            Workload::SampleApp => Some((SAMPLE_APP_IMAGE, None)),
            Workload::Image { image, pids_limit } => Some((image, *pids_limit)),
            Workload::Command(_) => None,
        }
    }

    /// How errors name it: `the sample app`, `a command`, `an image`.
    pub fn kind(&self) -> &'static str {
        match self {
            Workload::SampleApp => "the sample app",
            Workload::Command(c) if c.is_empty() => "an empty command",
            Workload::Command(_) => "a command",
            Workload::Image { .. } => "an image",
        }
    }

    /// The error of a runtime that cannot run it.
    pub fn unsupported(&self, runtime: &'static str) -> RuntimeError {
        RuntimeError::Unsupported {
            runtime,
            workload: self.kind(),
        }
    }
}

/// Limits of one container, where the runtime enforces them (`None`: no limit):
/// its size, which the image runtimes enforce (CPU, memory, disk).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    pub vcpu: Option<f64>,
    pub memory_mib: Option<u64>,
    pub disk_mb: Option<u64>,
}

/// What to run: one container of a pool.
///
/// Its `Debug` shows the names of [`ContainerSpec::env`], never the values (they
/// may be a claim's secrets); no runtime logs a spec's env values either.
#[derive(Clone)]
pub struct ContainerSpec {
    pub id: ContainerId,
    pub key: PoolKey,
    pub template: Arc<Template>,
    /// The revision of its pool the template is (labelled on what the runtime
    /// makes, so that `docker ps` or `kubectl get pods` shows it).
    pub revision: u32,
    /// A claim's env, for a container started for that one claim (empty for a
    /// pool's own containers): set last, after the template's env. May hold
    /// secret values.
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for ContainerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSpec")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("template", &self.template)
            .field("revision", &self.revision)
            .field(
                "env",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ContainerSpec {
    /// The env every runtime gives the app: its port, its id, its location and
    /// its files dir (the template's), then the template's env, then the claim's
    /// ([`ContainerSpec::env`]).
    pub fn app_env(&self, instance_id: &str, port: u16) -> Vec<(String, String)> {
        self.app_env_with_files_dir(instance_id, port, self.template.files_dir())
    }

    /// [`ContainerSpec::app_env`] with another files dir (the process runtime's:
    /// the container's own work dir).
    pub fn app_env_with_files_dir(
        &self,
        instance_id: &str,
        port: u16,
        files_dir: &str,
    ) -> Vec<(String, String)> {
        let (region, country) = self.key.location.region_and_country();
        let mut env = vec![
            ("PORT".to_owned(), port.to_string()),
            ("WARMPOOL_CONTAINER_ID".to_owned(), self.id.to_string()),
            ("WARMPOOL_POOL".to_owned(), self.key.pool.to_string()),
            (
                "WARMPOOL_LOCATION".to_owned(),
                self.key.location.to_string(),
            ),
            ("WARMPOOL_REGION".to_owned(), region.to_owned()),
            ("WARMPOOL_COUNTRY".to_owned(), country.to_owned()),
            (INSTANCE_ENV.to_owned(), instance_id.to_owned()),
            (FILES_DIR_ENV.to_owned(), files_dir.to_owned()),
        ];
        env.extend(self.template.env.iter().cloned());
        env.extend(self.env.iter().cloned());
        env
    }
}

/// The parts of a claim's file path (`a/b.txt`: `["a", "b.txt"]`), or why it is
/// refused: empty, absolute, with a `..` or a NUL, or naming a directory (a
/// trailing `/`). Empty and `.` segments are dropped. The API checks paths first;
/// runtimes check again before writing.
pub fn file_path_parts(path: &str) -> Result<Vec<&str>, RuntimeError> {
    let refuse = |reason: &str| {
        Err(RuntimeError::FileRefused {
            path: path.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if path.is_empty() {
        return refuse("the path is empty");
    }
    if path.starts_with('/') {
        return refuse("the path is absolute");
    }
    if path.contains('\0') {
        return refuse("the path holds a NUL byte");
    }
    if matches!(path.rsplit('/').next(), Some("" | ".")) {
        return refuse("the path names a directory");
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return refuse("the path holds `..`"),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return refuse("the path is empty");
    }
    Ok(parts)
}

/// What the runtime answered to a start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// The runtime's own name for the object (pid, container id, pod name).
    pub handle: String,
    /// Where the proxy reaches the app, as `host:port`.
    pub address: String,
}

/// A container of ours, as listed by the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedContainer {
    pub id: ContainerId,
    pub handle: String,
    pub address: Option<String>,
    pub running: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inspection {
    Running,
    Exited { code: Option<i32> },
    Gone,
}

/// Something the runtime noticed on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// A container stopped running (crashed, was killed, or finished stopping).
    Exited {
        id: ContainerId,
        code: Option<i32>,
        /// Human-readable: `exited with code 1`, `killed by signal 9`, `out of memory`.
        detail: String,
    },
}

/// What actually runs containers. Implementations must be safe to call
/// concurrently, and every operation is idempotent where it can be: stopping or
/// removing something already gone is success.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Short name (`process`, `sim`, `docker`, `kubernetes`), recorded per container.
    fn name(&self) -> &'static str;

    /// Creates and starts the container. Returns once it runs (not once it is ready).
    async fn start(&self, spec: &ContainerSpec) -> Result<Started, RuntimeError>;

    /// Waits until the container answers its readiness probe (the template's
    /// health path), failing on timeout or if it exits first.
    async fn wait_ready(
        &self,
        spec: &ContainerSpec,
        started: &Started,
        timeout: Duration,
    ) -> Result<(), RuntimeError>;

    /// Stops gracefully: SIGTERM (or the runtime's equivalent), then a kill after
    /// `grace`. Returns once it no longer runs.
    async fn stop(
        &self,
        id: ContainerId,
        handle: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError>;

    /// Removes what is left of a stopped container: once it returns,
    /// [`Runtime::list_owned`] no longer lists it.
    async fn remove(&self, id: ContainerId, handle: &str) -> Result<(), RuntimeError>;

    async fn inspect(&self, id: ContainerId, handle: &str) -> Result<Inspection, RuntimeError>;

    /// Every container this warmpool instance owns, found by its tags, not by names.
    async fn list_owned(&self) -> Result<Vec<OwnedContainer>, RuntimeError>;

    /// Takes over a container found by [`Runtime::list_owned`] after a restart, so that
    /// its exit is noticed like that of any other.
    async fn adopt(&self, owned: &OwnedContainer) -> Result<(), RuntimeError>;

    /// Events the runtime notices on its own (exits). A lagging receiver should
    /// relist and compare.
    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent>;

    /// Writes a claim's files into a running container, each at `path` (relative,
    /// already checked by the caller: no `..`, not absolute) under the container's
    /// files dir, atomically per file (parents created).
    ///
    /// A runtime that cannot (Kubernetes: no exec or copy rights are granted)
    /// answers [`RuntimeError::CannotWriteFiles`]: the files are then delivered
    /// through the app's `/admin/bind` hook.
    /// The last pull of `image` (an image runtime's; `None`: never pulled
    /// since this runtime started, or a runtime that pulls nothing).
    fn pull_status(&self, image: &str) -> Option<PullStatus> {
        let _ = image;
        None
    }

    async fn write_files(
        &self,
        id: ContainerId,
        handle: &str,
        template: &Template,
        files: &[(String, Vec<u8>)],
    ) -> Result<(), RuntimeError> {
        let _ = (id, handle, template, files);
        Err(RuntimeError::CannotWriteFiles {
            runtime: self.name(),
        })
    }

    /// Whether its containers' addresses answer HTTP, so that warmpool can keep
    /// probing ready ones (false for the simulated runtime, whose addresses are
    /// made up).
    fn reachable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use warmpool_core::Location;

    use super::*;

    fn template() -> Template {
        Template {
            workload: Workload::Image {
                image: "app:1".into(),
                pids_limit: Some(64),
            },
            health_path: "/healthz".into(),
            env: vec![("A".into(), "1".into())],
            resources: Resources {
                vcpu: Some(0.5),
                memory_mib: Some(64),
                disk_mb: None,
            },
            start_timeout: Duration::from_secs(30),
            files_dir: String::new(),
            pull: PullPolicy::IfMissing,
            hardening: Hardening::default(),
        }
    }

    /// The engine compares revisions by a template's JSON text: a template from
    /// before `files_dir` must serialise to the very same text, or every pool
    /// would roll out on upgrade.
    #[test]
    fn a_template_without_a_files_dir_serialises_as_before() {
        let before = r#"{"workload":{"Image":{"image":"app:1","pids_limit":64}},"health_path":"/healthz","env":[["A","1"]],"resources":{"vcpu":0.5,"memory_mib":64,"disk_mb":null},"start_timeout":{"secs":30,"nanos":0}}"#;
        assert_eq!(serde_json::to_string(&template()).unwrap(), before);
        assert_eq!(
            serde_json::to_string(&Template::default()).unwrap(),
            r#"{"workload":"SampleApp","health_path":"","env":[],"resources":{"vcpu":null,"memory_mib":null,"disk_mb":null},"start_timeout":{"secs":0,"nanos":0}}"#
        );
        let read: Template = serde_json::from_str(before).unwrap();
        assert_eq!(read, template());
        assert_eq!(read.files_dir(), DEFAULT_FILES_DIR);

        let t = Template {
            files_dir: "/srv/claim".into(),
            ..template()
        };
        let text = serde_json::to_string(&t).unwrap();
        assert!(text.ends_with(r#","files_dir":"/srv/claim"}"#), "{text}");
        assert_eq!(serde_json::from_str::<Template>(&text).unwrap(), t);
        assert_eq!(t.files_dir(), "/srv/claim");

        let t = Template {
            pull: PullPolicy::Never,
            ..template()
        };
        let text = serde_json::to_string(&t).unwrap();
        assert!(text.ends_with(r#","pull":"never"}"#), "{text}");
        assert_eq!(serde_json::from_str::<Template>(&text).unwrap(), t);

        let t = Template {
            hardening: Hardening {
                drop_capabilities: false,
                ..Hardening::default()
            },
            ..template()
        };
        let text = serde_json::to_string(&t).unwrap();
        assert!(text.contains(r#""hardening":{"#), "{text}");
        assert_eq!(serde_json::from_str::<Template>(&text).unwrap(), t);
    }

    #[test]
    fn hardening_knows_the_sample_images_user_and_read_only_root() {
        let h = Hardening::default();
        assert!(h.read_only(SAMPLE_APP_IMAGE));
        assert!(!h.read_only("ghcr.io/me/app:1"));
        assert_eq!(h.owner(SAMPLE_APP_IMAGE), Some((65532, 65532)));
        assert_eq!(h.owner("ghcr.io/me/app:1"), None);
        let user = |u: &str| Hardening {
            user: u.into(),
            read_only_root: ReadOnlyRoot::On,
            ..Hardening::default()
        };
        assert!(user("1000").read_only("ghcr.io/me/app:1"));
        assert_eq!(user("1000").owner("x"), Some((1000, 1000)));
        assert_eq!(user("1000:2000").owner("x"), Some((1000, 2000)));
        assert_eq!(user("app").owner(SAMPLE_APP_IMAGE), None);
        for r in [ReadOnlyRoot::Auto, ReadOnlyRoot::On, ReadOnlyRoot::Off] {
            assert_eq!(r.as_str().parse::<ReadOnlyRoot>(), Ok(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }

    #[test]
    fn pull_policies_read_back_as_they_are_spelled() {
        for p in [PullPolicy::IfMissing, PullPolicy::Always, PullPolicy::Never] {
            assert_eq!(p.as_str().parse::<PullPolicy>(), Ok(p));
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        assert!("IfNotPresent".parse::<PullPolicy>().is_err());
    }

    fn spec(env: Vec<(String, String)>) -> ContainerSpec {
        ContainerSpec {
            id: ContainerId::random(),
            key: PoolKey::new("p", Location::Default),
            template: Arc::new(template()),
            revision: 3,
            env,
        }
    }

    #[test]
    fn a_claims_env_comes_last_and_its_values_stay_out_of_debug() {
        let s = spec(vec![
            ("A".into(), "claim".into()),
            ("TOKEN".into(), "s3cr3t-value".into()),
        ]);
        let env = s.app_env("inst", 8080);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "PORT",
                "WARMPOOL_CONTAINER_ID",
                "WARMPOOL_POOL",
                "WARMPOOL_LOCATION",
                "WARMPOOL_REGION",
                "WARMPOOL_COUNTRY",
                INSTANCE_ENV,
                FILES_DIR_ENV,
                "A",
                "A",
                "TOKEN"
            ]
        );
        // The last value of a name is the one a process or container sees.
        assert_eq!(env[8].1, "1");
        assert_eq!(env[9].1, "claim");
        assert_eq!(env[7].1, DEFAULT_FILES_DIR);
        assert_eq!(
            s.app_env_with_files_dir("inst", 8080, "/work/x")[7].1,
            "/work/x"
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("\"TOKEN\""), "{shown}");
        assert!(spec(Vec::new()).app_env("inst", 1).len() == 9);
    }

    #[test]
    fn file_paths_are_relative_and_stay_inside() {
        assert_eq!(file_path_parts("a.txt").unwrap(), ["a.txt"]);
        assert_eq!(
            file_path_parts("a/./b//c.txt").unwrap(),
            ["a", "b", "c.txt"]
        );
        assert_eq!(file_path_parts("..a/b..").unwrap(), ["..a", "b.."]);
        for bad in [
            "", "/a", "//a", "..", "../a", "a/../b", "a/..", "a/", ".", "a/.", "./", "a\0b",
        ] {
            let e = file_path_parts(bad).unwrap_err();
            assert!(matches!(e, RuntimeError::FileRefused { .. }), "{bad:?}");
        }
        assert_eq!(
            file_path_parts("../x").unwrap_err().to_string(),
            r#"runtime error: cannot write file "../x": the path holds `..`"#
        );
    }
}
