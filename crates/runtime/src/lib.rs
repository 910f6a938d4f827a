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
pub use process::{ProcessConfig, ProcessRuntime};
pub use sim::{SimMode, SimRuntime};

/// Env var naming the warmpool instance that started a container: the tag by which
/// a restarted warmpool tells its own containers from anybody else's.
pub const INSTANCE_ENV: &str = "WARMPOOL_INSTANCE_ID";

/// The image of warmpool's sample app (`scripts/build-sample-image.sh` builds it):
/// what an image runtime runs for [`Workload::SampleApp`].
pub const SAMPLE_APP_IMAGE: &str = "warmpool/sample-app:latest";

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
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    pub id: ContainerId,
    pub key: PoolKey,
    pub template: Arc<Template>,
    /// The revision of its pool the template is (labelled on what the runtime
    /// makes, so that `docker ps` or `kubectl get pods` shows it).
    pub revision: u32,
}

impl ContainerSpec {
    /// The env every runtime gives the app: its port, its id and its location.
    pub fn app_env(&self, instance_id: &str, port: u16) -> Vec<(String, String)> {
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
        ];
        env.extend(self.template.env.iter().cloned());
        env
    }
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

    /// Whether its containers' addresses answer HTTP, so that warmpool can keep
    /// probing ready ones (false for the simulated runtime, whose addresses are
    /// made up).
    fn reachable(&self) -> bool {
        true
    }
}
