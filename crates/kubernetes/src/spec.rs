//! Pure translation between warmpool and Kubernetes objects: the Pod built for a
//! container (name, labels, node selector, quantities, probe, env) and the state
//! read back from a Pod's status. No IO, so every rule is tested on its own.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, Pod,
    PodSecurityContext, PodSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use warmpool_core::{ContainerId, Location};
use warmpool_runtime::{ContainerSpec, PullPolicy, RuntimeError, Workload, SAMPLE_APP_IMAGE};

/// The standard label every object warmpool creates carries.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "warmpool";
/// Label naming the warmpool instance that owns a pod.
pub const LABEL_INSTANCE: &str = "warmpool.dev/instance";
/// Label holding the warmpool container id.
pub const LABEL_CONTAINER: &str = "warmpool.dev/container-id";
pub const LABEL_POOL: &str = "warmpool.dev/pool";
pub const LABEL_LOCATION: &str = "warmpool.dev/location";
/// The revision of its pool a pod was started from.
pub const LABEL_REVISION: &str = "warmpool.dev/revision";
/// Name of the one container of each pod.
pub const CONTAINER_NAME: &str = "app";
/// The node label a location selects by default.
pub const DEFAULT_LOCATION_LABEL: &str = "topology.kubernetes.io/region";

/// The user and group the sample app's pods run as (distroless's `nonroot`,
/// the sample image's own user).
pub const SAMPLE_APP_USER: i64 = warmpool_runtime::SAMPLE_APP_UID as i64;

/// Where the sample app reads and writes its `index.txt` (its image's working
/// directory).
pub use warmpool_runtime::SAMPLE_APP_DATA_DIR;

/// The pod of a container: `warmpool-<id>` (a UUID, so a valid DNS label).
pub fn pod_name(id: ContainerId) -> String {
    format!("warmpool-{id}")
}

/// A label value Kubernetes accepts: at most 63 characters of letters, digits, `-`,
/// `_` and `.`, beginning and ending with a letter or digit (or empty). Other
/// characters become `-`; what does not fit is cut.
pub fn label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The label selector of every pod one warmpool instance owns.
pub fn owned_selector(instance_id: &str) -> String {
    format!(
        "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTANCE}={}",
        label_value(instance_id)
    )
}

/// Where each location's pods may run: a node selector per location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The node label a location not listed in `overrides` selects, with the
    /// location's name as its value.
    pub location_label: String,
    /// Locations with their own node selector (empty: any node).
    pub overrides: Vec<(Location, Vec<(String, String)>)>,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            location_label: DEFAULT_LOCATION_LABEL.to_owned(),
            overrides: Vec::new(),
        }
    }
}

impl Placement {
    /// Parses `LOCATION=KEY=VALUE[,KEY=VALUE...]` entries separated by `;`, such as
    /// `weur=topology.kubernetes.io/zone=eu-west-1a;wnam=pool=us,tier=warm`. A
    /// location with nothing after `=` (`apac=`) may run on any node.
    pub fn parse(location_label: &str, overrides: &str) -> Result<Placement, String> {
        let location_label = location_label.trim();
        if location_label.is_empty() {
            return Err("the location label must not be empty".into());
        }
        let mut placement = Placement {
            location_label: location_label.to_owned(),
            overrides: Vec::new(),
        };
        for entry in overrides
            .split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (loc, rest) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?}: expected LOCATION=KEY=VALUE"))?;
            let loc: Location = loc.trim().parse().map_err(|e| format!("{e}"))?;
            let mut selector = Vec::new();
            for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .filter(|(k, _)| !k.trim().is_empty())
                    .ok_or_else(|| format!("{pair:?}: expected KEY=VALUE"))?;
                selector.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            placement.overrides.retain(|(l, _)| *l != loc);
            placement.overrides.push((loc, selector));
        }
        Ok(placement)
    }

    /// The node selector of `location`: `default` has none; a listed location has
    /// its own; any other selects `location_label=<location>`.
    pub fn node_selector(&self, location: Location) -> BTreeMap<String, String> {
        if let Some((_, sel)) = self.overrides.iter().find(|(l, _)| *l == location) {
            return sel.iter().cloned().collect();
        }
        if location == Location::Default {
            return BTreeMap::new();
        }
        BTreeMap::from([(self.location_label.clone(), location.to_string())])
    }
}

/// What is the same for every pod one runtime creates.
#[derive(Clone, Debug)]
pub struct PodSettings {
    pub instance_id: String,
    /// Port the app listens on in its pod (`PORT`).
    pub container_port: u16,
    pub placement: Placement,
}

/// A CPU amount as a quantity: whole millicores (`250m`).
pub fn cpu_quantity(vcpu: f64) -> Quantity {
    Quantity(format!("{}m", (vcpu * 1000.0).round().max(1.0) as u64))
}

/// Memory in MiB as a quantity (`256Mi`).
pub fn memory_quantity(mib: u64) -> Quantity {
    Quantity(format!("{mib}Mi"))
}

/// Disk in MB as an ephemeral-storage quantity (`512M`).
pub fn disk_quantity(mb: u64) -> Quantity {
    Quantity(format!("{mb}M"))
}

/// The pod that runs `spec`: its labels, the workload's image and the pool's env,
/// requests equal to limits (CPU, memory, ephemeral storage), a readiness probe on
/// the health path, `restartPolicy: Never` and the location's node selector. It
/// gets no service account token and no service links: nothing of the cluster's
/// leaks in. A workload that is no image (a command) is refused; a pids limit has
/// no Pod field (it is the kubelet's setting) and is not applied. The pool's pull
/// policy is the container's `imagePullPolicy`.
///
/// Every pod passes the "restricted" Pod Security Standard: it must run as a
/// non-root user, with no privilege escalation, every capability dropped and the
/// runtime's default seccomp profile. The claim files' directory is an
/// `emptyDir`, so a non-root app can write a bind's files there. The sample app,
/// whose writable directories are known, also runs as user 65532 on a read-only
/// root file system with `emptyDir`s for its data and `/tmp`; an image of the
/// user's runs as its image's (non-root) user on its own root file system.
pub fn build_pod(spec: &ContainerSpec, settings: &PodSettings) -> Result<Pod, RuntimeError> {
    let workload = &spec.template.workload;
    let Some((image, _pids_limit)) = workload.image() else {
        return Err(workload.unsupported("kubernetes"));
    };
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (
            LABEL_INSTANCE.to_owned(),
            label_value(&settings.instance_id),
        ),
        (LABEL_CONTAINER.to_owned(), spec.id.to_string()),
        (LABEL_POOL.to_owned(), label_value(spec.key.pool.as_ref())),
        (LABEL_LOCATION.to_owned(), spec.key.location.to_string()),
        (LABEL_REVISION.to_owned(), spec.revision.to_string()),
    ]);
    let env = spec
        .app_env(&settings.instance_id, settings.container_port)
        .into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            value_from: None,
        })
        .collect();
    let res = spec.template.resources;
    let mut amounts = BTreeMap::new();
    if let Some(v) = res.vcpu {
        amounts.insert("cpu".to_owned(), cpu_quantity(v));
    }
    if let Some(m) = res.memory_mib {
        amounts.insert("memory".to_owned(), memory_quantity(m));
    }
    if let Some(d) = res.disk_mb {
        amounts.insert("ephemeral-storage".to_owned(), disk_quantity(d));
    }
    let resources = (!amounts.is_empty()).then(|| ResourceRequirements {
        limits: Some(amounts.clone()),
        requests: Some(amounts),
        ..Default::default()
    });
    let port = i32::from(settings.container_port);
    let node_selector = settings.placement.node_selector(spec.key.location);
    let sample_app = matches!(workload, Workload::SampleApp);
    let mut writable = vec![("files", spec.template.files_dir().to_owned())];
    if sample_app {
        for (name, path) in [("data", SAMPLE_APP_DATA_DIR), ("tmp", "/tmp")] {
            // A files dir set to one of them is already writable.
            if writable.iter().all(|(_, p)| p != path) {
                writable.push((name, path.to_owned()));
            }
        }
    }
    let volumes = writable
        .iter()
        .map(|(name, _)| Volume {
            name: (*name).to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        })
        .collect();
    let volume_mounts = writable
        .into_iter()
        .map(|(name, path)| VolumeMount {
            name: name.to_owned(),
            mount_path: path,
            ..Default::default()
        })
        .collect();
    let user = sample_app.then_some(SAMPLE_APP_USER);
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(spec.id)),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: CONTAINER_NAME.to_owned(),
                image: Some(image.to_owned()),
                // The pool's pull policy, in the kubelet's words; the sample
                // image (loaded into the cluster, or pushed by the user) as
                // if-missing, never `Always` as its `:latest` tag would get.
                image_pull_policy: Some(
                    match spec.template.pull {
                        _ if sample_app || image == SAMPLE_APP_IMAGE => "IfNotPresent",
                        PullPolicy::IfMissing => "IfNotPresent",
                        PullPolicy::Always => "Always",
                        PullPolicy::Never => "Never",
                    }
                    .to_owned(),
                ),
                env: Some(env),
                ports: Some(vec![ContainerPort {
                    container_port: port,
                    name: Some("http".to_owned()),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                }]),
                resources,
                readiness_probe: Some(Probe {
                    http_get: Some(HTTPGetAction {
                        path: Some(spec.template.health_path.clone()),
                        port: IntOrString::Int(port),
                        ..Default::default()
                    }),
                    period_seconds: Some(1),
                    timeout_seconds: Some(1),
                    failure_threshold: Some(1),
                    success_threshold: Some(1),
                    ..Default::default()
                }),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".to_owned()]),
                        add: None,
                    }),
                    read_only_root_filesystem: sample_app.then_some(true),
                    run_as_non_root: Some(true),
                    ..Default::default()
                }),
                volume_mounts: Some(volume_mounts),
                ..Default::default()
            }],
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: user,
                run_as_group: user,
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            volumes: Some(volumes),
            restart_policy: Some("Never".to_owned()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            node_selector: (!node_selector.is_empty()).then_some(node_selector),
            ..Default::default()
        }),
        status: None,
    })
}

/// The container id a pod of ours carries in its labels.
pub fn container_id_of(pod: &Pod) -> Option<ContainerId> {
    pod.metadata
        .labels
        .as_ref()?
        .get(LABEL_CONTAINER)?
        .parse()
        .ok()
}

/// What a pod's status says, as warmpool needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Not running yet (being scheduled, pulling, creating); `reason` if given.
    Pending { reason: Option<String> },
    /// The scheduler found no node for it (it stays pending until one appears).
    Unschedulable { message: String },
    /// It cannot start without a change (image missing, bad config) or it keeps
    /// crashing; `reason` is the kubelet's (`ImagePullBackOff`, ...).
    Broken { reason: String, message: String },
    /// Its container runs; `ready` from the pod's Ready condition.
    Running { ip: Option<String>, ready: bool },
    /// Its container ended.
    Terminated {
        code: Option<i32>,
        reason: Option<String>,
        oom: bool,
    },
}

impl PodState {
    /// Whether the app may still be running.
    pub fn is_running(&self) -> bool {
        !matches!(self, PodState::Terminated { .. })
    }

    /// How the end is described in events and records.
    pub fn exit_detail(&self) -> String {
        match self {
            PodState::Terminated { oom: true, .. } => "out of memory (OOM killed)".to_owned(),
            PodState::Terminated {
                code: Some(c),
                reason,
                ..
            } => match reason.as_deref() {
                Some(r) if r != "Error" && r != "Completed" => {
                    format!("exited with code {c} ({r})")
                }
                _ => format!("exited with code {c}"),
            },
            PodState::Terminated { reason, .. } => match reason {
                Some(r) => format!("pod ended ({r})"),
                None => "pod ended".to_owned(),
            },
            PodState::Broken { reason, message } => {
                if message.is_empty() {
                    reason.clone()
                } else {
                    format!("{reason}: {message}")
                }
            }
            PodState::Unschedulable { message } => format!("pod unschedulable: {message}"),
            PodState::Pending { .. } | PodState::Running { .. } => "running".to_owned(),
        }
    }
}

/// Waiting reasons that do not go away by waiting.
const BROKEN: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
    "RunContainerError",
];

/// Reads the state of a pod from its status.
pub fn pod_state(pod: &Pod) -> PodState {
    let Some(status) = &pod.status else {
        return PodState::Pending { reason: None };
    };
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER_NAME).or(cs.first()));
    let state = container.and_then(|c| c.state.as_ref());
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        let oom = t.reason.as_deref() == Some("OOMKilled");
        return PodState::Terminated {
            code: Some(t.exit_code),
            reason: t.reason.clone(),
            oom,
        };
    }
    match status.phase.as_deref() {
        Some("Succeeded") | Some("Failed") => {
            // The phase ended without a container status (evicted, node lost).
            return PodState::Terminated {
                code: None,
                reason: status.reason.clone(),
                oom: false,
            };
        }
        _ => {}
    }
    if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = w.reason.clone().unwrap_or_default();
        if BROKEN.contains(&reason.as_str()) {
            return PodState::Broken {
                reason,
                message: w.message.clone().unwrap_or_default(),
            };
        }
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let condition = |t: &str| conditions.iter().find(|c| c.type_ == t);
    if let Some(c) = condition("PodScheduled") {
        if c.status == "False" && c.reason.as_deref() == Some("Unschedulable") {
            return PodState::Unschedulable {
                message: c.message.clone().unwrap_or_else(|| "no node fits".into()),
            };
        }
    }
    let running = state.is_some_and(|s| s.running.is_some());
    if status.phase.as_deref() == Some("Running") || running {
        let ready = condition("Ready").is_some_and(|c| c.status == "True");
        let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty());
        return PodState::Running { ip, ready };
    }
    PodState::Pending {
        reason: state
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone()),
    }
}

#[cfg(test)]
mod tests;
