//! Pure translation between warmpool and Docker Engine objects: the container
//! created for a `ContainerSpec` (name, labels, env, port, resource limits,
//! network) and what a listed container says back (id, address, running). No IO,
//! so every rule is tested on its own.

use std::collections::HashMap;

use bollard::container::Config;
use bollard::models::{
    ContainerSummary, HostConfig, Mount, MountTypeEnum, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, PortBinding,
};
use warmpool_core::ContainerId;
use warmpool_runtime::{
    ContainerSpec, OwnedContainer, RuntimeError, SAMPLE_APP_DATA_DIR, SAMPLE_APP_IMAGE,
};

use crate::DockerConfig;

/// Label naming the warmpool instance that owns a container.
pub const LABEL_INSTANCE: &str = "dev.warmpool.instance";
/// Label holding the warmpool container id.
pub const LABEL_CONTAINER: &str = "dev.warmpool.container-id";
pub const LABEL_POOL: &str = "dev.warmpool.pool";
pub const LABEL_LOCATION: &str = "dev.warmpool.location";
/// The revision of its pool a container was started from.
pub const LABEL_REVISION: &str = "dev.warmpool.revision";

/// The engine's name of a container: `warmpool-<id>`.
pub(crate) fn container_name(id: ContainerId) -> String {
    format!("warmpool-{id}")
}

/// The `label=` filter of every container one warmpool instance owns.
pub(crate) fn owned_label(instance_id: &str) -> String {
    format!("{LABEL_INSTANCE}={instance_id}")
}

/// The engine's key of the app's port: `8080/tcp`.
pub(crate) fn port_key(port: u16) -> String {
    format!("{port}/tcp")
}

/// The container that runs `spec`: the workload's image, warmpool's labels, the
/// app's env, its port (published on 127.0.0.1 with `publish`), the network, and
/// the limits: CPU (0.25 is a quarter of one) as NanoCpus, memory as a hard limit
/// with no swap, the image's pids limit, and disk as the writable layer's size
/// where the storage driver takes one (`disk_supported`). A workload that is no
/// image (a command) is refused.
pub(crate) fn create_config(
    spec: &ContainerSpec,
    cfg: &DockerConfig,
    disk_supported: bool,
) -> Result<Config<String>, RuntimeError> {
    let workload = &spec.template.workload;
    let Some((image, pids_limit)) = workload.image() else {
        return Err(workload.unsupported("docker"));
    };
    let env = spec
        .app_env(&cfg.instance_id, cfg.container_port)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let labels = HashMap::from([
        (LABEL_INSTANCE.to_owned(), cfg.instance_id.clone()),
        (LABEL_CONTAINER.to_owned(), spec.id.to_string()),
        (LABEL_POOL.to_owned(), spec.key.pool.to_string()),
        (LABEL_LOCATION.to_owned(), spec.key.location.to_string()),
        (LABEL_REVISION.to_owned(), spec.revision.to_string()),
    ]);
    let port_key = port_key(cfg.container_port);
    let res = spec.template.resources;
    let memory = res.memory_mib.map(|m| (m * 1024 * 1024) as i64);
    let hardening = &spec.template.hardening;
    let read_only = hardening.read_only(image);
    let files_dir = spec.template.files_dir();
    // A tmpfs's size: the container's memory (tmpfs pages count against it),
    // or 256 MiB without a memory limit.
    let tmpfs_size = format!("size={}m", res.memory_mib.unwrap_or(256));
    // A tmpfs's mode alone does not make it the app's (the image directory's
    // is copied up over it): it is owned by the app's user where it is known.
    let owner = hardening.owner(image);
    let owned = owner.map_or_else(String::new, |(uid, gid)| format!("uid={uid},gid={gid},"));
    let tmpfs = read_only.then(|| {
        let mut dirs: Vec<&str> = hardening.tmpfs.iter().map(String::as_str).collect();
        if image == SAMPLE_APP_IMAGE {
            dirs.push(SAMPLE_APP_DATA_DIR);
        }
        dirs.into_iter()
            .filter(|d| *d != files_dir)
            .map(|d| {
                (
                    d.to_owned(),
                    format!("rw,nosuid,nodev,{owned}mode=1777,{tmpfs_size}"),
                )
            })
            .collect::<HashMap<_, _>>()
    });
    // On a read-only root, the files dir is a volume of its own (the engine
    // uploads into volumes, not into a tmpfs mount), itself a tmpfs, owned by
    // the app's user where it is known (else writable by anyone, sticky).
    let mounts = read_only.then(|| {
        let owner = match owner {
            Some((uid, gid)) => format!("uid={uid},gid={gid},mode=0755"),
            None => "mode=1777".to_owned(),
        };
        vec![Mount {
            target: Some(files_dir.to_owned()),
            typ: Some(MountTypeEnum::VOLUME),
            volume_options: Some(MountVolumeOptions {
                labels: Some(HashMap::from([(
                    LABEL_INSTANCE.to_owned(),
                    cfg.instance_id.clone(),
                )])),
                driver_config: Some(MountVolumeOptionsDriverConfig {
                    name: Some("local".to_owned()),
                    options: Some(HashMap::from([
                        ("type".to_owned(), "tmpfs".to_owned()),
                        ("device".to_owned(), "tmpfs".to_owned()),
                        ("o".to_owned(), format!("{owner},{tmpfs_size}")),
                    ])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });
    let host_config = HostConfig {
        readonly_rootfs: read_only.then_some(true),
        tmpfs,
        mounts,
        security_opt: hardening
            .no_new_privileges
            .then(|| vec!["no-new-privileges:true".to_owned()]),
        cap_drop: hardening.drop_capabilities.then(|| vec!["ALL".to_owned()]),
        network_mode: Some(cfg.network.clone()),
        nano_cpus: res.vcpu.map(|v| (v * 1e9) as i64),
        memory,
        memory_swap: memory,
        pids_limit,
        storage_opt: res
            .disk_mb
            .filter(|_| disk_supported)
            .map(|mb| HashMap::from([("size".to_owned(), format!("{mb}M"))])),
        port_bindings: cfg.publish.then(|| {
            HashMap::from([(
                port_key.clone(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )])
        }),
        ..Default::default()
    };
    Ok(Config {
        image: Some(image.to_owned()),
        user: (!hardening.user.is_empty()).then(|| hardening.user.clone()),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: Some(HashMap::from([(port_key, HashMap::new())])),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// Where the proxy reaches a container: its IP on the network and the app's port,
/// or with `publish` the host port on 127.0.0.1; `None` while it has neither.
pub(crate) fn address(
    cfg: &DockerConfig,
    network_ip: Option<String>,
    published: Option<u16>,
) -> Option<String> {
    if cfg.publish {
        published.map(|p| format!("127.0.0.1:{p}"))
    } else {
        network_ip
            .filter(|ip| !ip.is_empty())
            .map(|ip| format!("{ip}:{}", cfg.container_port))
    }
}

/// A listed container of ours, by its labels (never its name); `None` for one
/// without a container id label.
pub(crate) fn owned(cfg: &DockerConfig, c: ContainerSummary) -> Option<OwnedContainer> {
    let id = c.labels.as_ref()?.get(LABEL_CONTAINER)?.parse().ok()?;
    let ip = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.get(&cfg.network))
        .and_then(|n| n.ip_address.clone());
    let published = c.ports.as_ref().and_then(|ports| {
        ports
            .iter()
            .find(|p| p.private_port == cfg.container_port && p.public_port.is_some())
            .and_then(|p| p.public_port)
    });
    Some(OwnedContainer {
        id,
        address: address(cfg, ip, published),
        running: c.state.as_deref() == Some("running"),
        handle: c.id?,
    })
}

/// Whether a listed container's state says it has ended: exited or dead (or
/// no state). Created (a start in progress), running, restarting, paused and
/// removing ones have not (a removal is reported by its own event).
pub(crate) fn has_ended(state: Option<&str>) -> bool {
    matches!(state, None | Some("exited" | "dead"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_container_being_started_has_not_ended() {
        assert!(!has_ended(Some("created")));
        assert!(!has_ended(Some("running")));
        assert!(!has_ended(Some("paused")));
        assert!(has_ended(Some("exited")));
        assert!(has_ended(Some("dead")));
        assert!(has_ended(None));
    }
    use std::sync::Arc;
    use std::time::Duration;

    use bollard::models::{ContainerSummaryNetworkSettings, EndpointSettings, Port, PortTypeEnum};
    use warmpool_core::{Location, PoolKey};
    use warmpool_runtime::{Resources, Template, Workload, SAMPLE_APP_IMAGE};

    use super::*;

    fn cfg(publish: bool) -> DockerConfig {
        DockerConfig {
            instance_id: "inst-1".into(),
            network: "warmpool-net".into(),
            container_port: 8080,
            publish,
            socket: None,
            api_timeout: Duration::from_secs(10),
            pull_timeout: Duration::from_secs(600),
            config_file: None,
        }
    }

    fn spec(workload: Workload, resources: Resources) -> ContainerSpec {
        ContainerSpec {
            id: ContainerId::random(),
            key: PoolKey::new("web", Location::Weur),
            revision: 3,
            env: Vec::new(),
            template: Arc::new(Template {
                workload,
                health_path: "/healthz".into(),
                env: vec![("SIZE".into(), "large".into())],
                resources,
                start_timeout: Duration::ZERO,
                files_dir: String::new(),
                pull: Default::default(),
                hardening: Default::default(),
            }),
        }
    }

    fn image(pids_limit: Option<i64>) -> Workload {
        Workload::Image {
            image: "registry.example/app:1".into(),
            pids_limit,
        }
    }

    fn env_of(c: &Config<String>) -> HashMap<String, String> {
        c.env
            .as_ref()
            .unwrap()
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn labels_name_the_instance_container_pool_location_and_revision() {
        let s = spec(image(None), Resources::default());
        let c = create_config(&s, &cfg(false), true).unwrap();
        assert_eq!(c.image.as_deref(), Some("registry.example/app:1"));
        assert_eq!(
            c.labels.unwrap(),
            HashMap::from([
                (LABEL_INSTANCE.to_owned(), "inst-1".to_owned()),
                (LABEL_CONTAINER.to_owned(), s.id.to_string()),
                (LABEL_POOL.to_owned(), "web".to_owned()),
                (LABEL_LOCATION.to_owned(), "weur".to_owned()),
                (LABEL_REVISION.to_owned(), "3".to_owned()),
            ])
        );
        assert_eq!(container_name(s.id), format!("warmpool-{}", s.id));
        assert_eq!(owned_label("inst-1"), "dev.warmpool.instance=inst-1");
    }

    #[test]
    fn env_carries_the_port_ids_location_and_the_pools_own_last() {
        let s = spec(image(None), Resources::default());
        let c = create_config(&s, &cfg(false), true).unwrap();
        let env = env_of(&c);
        assert_eq!(env["PORT"], "8080");
        assert_eq!(env["WARMPOOL_CONTAINER_ID"], s.id.to_string());
        assert_eq!(env["WARMPOOL_INSTANCE_ID"], "inst-1");
        assert_eq!(env["WARMPOOL_POOL"], "web");
        assert_eq!(env["WARMPOOL_LOCATION"], "weur");
        assert_eq!(env["SIZE"], "large");
        assert_eq!(env["WARMPOOL_FILES_DIR"], "/warmpool/files");
        assert_eq!(c.env.as_ref().unwrap().last().unwrap(), "SIZE=large");

        // A claim's env (a container started for one claim) comes after it;
        // a template's files dir is the app's.
        let mut s = spec(image(None), Resources::default());
        s.env = vec![("SIZE".into(), "small".into())];
        s.template = Arc::new(Template {
            files_dir: "/srv/claim".into(),
            ..(*s.template).clone()
        });
        let c = create_config(&s, &cfg(false), true).unwrap();
        let env = env_of(&c);
        assert_eq!(env["SIZE"], "small");
        assert_eq!(env["WARMPOOL_FILES_DIR"], "/srv/claim");
        assert_eq!(c.env.as_ref().unwrap().last().unwrap(), "SIZE=small");
    }

    #[test]
    fn containers_are_hardened_by_default_and_each_option_relaxes() {
        use warmpool_runtime::{Hardening, ReadOnlyRoot};
        // A user's image: no new privileges, no capabilities, its own user, a
        // writable root (auto).
        let s = spec(image(None), Resources::default());
        let c = create_config(&s, &cfg(false), true).unwrap();
        let host = c.host_config.unwrap();
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges:true".to_owned()])
        );
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.readonly_rootfs, None);
        assert_eq!((host.tmpfs, host.mounts, c.user), (None, None, None));

        // The sample image: a read-only root, tmpfs for /tmp and its data, the
        // files dir a tmpfs volume owned by its user (65532).
        let mut s = spec(Workload::SampleApp, Resources::default());
        s.template = Arc::new(Template {
            resources: Resources {
                memory_mib: Some(64),
                ..Resources::default()
            },
            ..(*s.template).clone()
        });
        let host = create_config(&s, &cfg(false), true)
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(host.readonly_rootfs, Some(true));
        let tmpfs = host.tmpfs.unwrap();
        assert_eq!(
            tmpfs
                .keys()
                .map(String::as_str)
                .collect::<std::collections::BTreeSet<_>>(),
            ["/data", "/tmp"].into()
        );
        assert_eq!(
            tmpfs["/tmp"],
            "rw,nosuid,nodev,uid=65532,gid=65532,mode=1777,size=64m"
        );
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].target.as_deref(), Some("/warmpool/files"));
        assert_eq!(mounts[0].typ, Some(MountTypeEnum::VOLUME));
        let driver = mounts[0]
            .volume_options
            .as_ref()
            .unwrap()
            .driver_config
            .as_ref()
            .unwrap();
        let options = driver.options.as_ref().unwrap();
        assert_eq!(options["type"], "tmpfs");
        assert_eq!(options["o"], "uid=65532,gid=65532,mode=0755,size=64m");

        // Each one relaxed; a user set; a read-only root asked of a user's image
        // whose user is a name: the files dir writable by anyone.
        let mut s = spec(image(None), Resources::default());
        s.template = Arc::new(Template {
            hardening: Hardening {
                no_new_privileges: false,
                drop_capabilities: false,
                read_only_root: ReadOnlyRoot::On,
                user: "app".into(),
                tmpfs: vec!["/var/cache".into(), "/warmpool/files".into()],
            },
            ..(*s.template).clone()
        });
        let c = create_config(&s, &cfg(false), true).unwrap();
        assert_eq!(c.user.as_deref(), Some("app"));
        let host = c.host_config.unwrap();
        assert_eq!((host.security_opt, host.cap_drop), (None, None));
        assert_eq!(host.readonly_rootfs, Some(true));
        // The files dir is the volume, not also a tmpfs.
        assert_eq!(
            host.tmpfs.unwrap().keys().collect::<Vec<_>>(),
            ["/var/cache"]
        );
        let mounts = host.mounts.unwrap();
        let o = &mounts[0]
            .volume_options
            .as_ref()
            .unwrap()
            .driver_config
            .as_ref()
            .unwrap()
            .options
            .as_ref()
            .unwrap()["o"];
        assert_eq!(o, "mode=1777,size=256m");

        // The sample image with its read-only root turned off.
        let mut s = spec(Workload::SampleApp, Resources::default());
        s.template = Arc::new(Template {
            hardening: Hardening {
                read_only_root: ReadOnlyRoot::Off,
                ..Hardening::default()
            },
            ..(*s.template).clone()
        });
        let host = create_config(&s, &cfg(false), true)
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(
            (host.readonly_rootfs, host.tmpfs, host.mounts),
            (None, None, None)
        );
    }

    #[test]
    fn the_port_is_exposed_and_published_on_loopback_only_when_asked() {
        let s = spec(image(None), Resources::default());
        let c = create_config(&s, &cfg(false), true).unwrap();
        assert_eq!(
            c.exposed_ports.unwrap(),
            HashMap::from([("8080/tcp".to_owned(), HashMap::new())])
        );
        let host = c.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("warmpool-net"));
        assert_eq!(host.port_bindings, None);

        let c = create_config(&s, &cfg(true), true).unwrap();
        let bindings = c.host_config.unwrap().port_bindings.unwrap();
        assert_eq!(
            bindings["8080/tcp"],
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }])
        );
    }

    #[test]
    fn resources_become_engine_limits() {
        let res = Resources {
            vcpu: Some(0.25),
            memory_mib: Some(256),
            disk_mb: Some(512),
        };
        let s = spec(image(Some(64)), res);
        let host = create_config(&s, &cfg(false), true)
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(host.nano_cpus, Some(250_000_000));
        assert_eq!(host.memory, Some(256 * 1024 * 1024));
        assert_eq!(host.memory_swap, host.memory, "no swap");
        assert_eq!(host.pids_limit, Some(64));
        assert_eq!(
            host.storage_opt,
            Some(HashMap::from([("size".to_owned(), "512M".to_owned())]))
        );
        // A storage driver that takes no size: no disk limit, the rest stays.
        let host = create_config(&s, &cfg(false), false)
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(host.storage_opt, None);
        assert_eq!(host.pids_limit, Some(64));
        // No limits at all.
        let host = create_config(&spec(image(None), Resources::default()), &cfg(false), true)
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(
            (
                host.nano_cpus,
                host.memory,
                host.memory_swap,
                host.pids_limit,
                host.storage_opt
            ),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn the_sample_app_runs_its_image_and_a_command_is_refused() {
        let s = spec(Workload::SampleApp, Resources::default());
        let c = create_config(&s, &cfg(false), true).unwrap();
        assert_eq!(c.image.as_deref(), Some(SAMPLE_APP_IMAGE));
        let s = spec(Workload::Command(vec!["sh".into()]), Resources::default());
        let e = create_config(&s, &cfg(false), true).unwrap_err();
        assert!(
            matches!(
                e,
                RuntimeError::Unsupported {
                    runtime: "docker",
                    workload: "a command"
                }
            ),
            "{e:?}"
        );
    }

    fn summary(id: &str, state: &str, ip: &str, public_port: Option<u16>) -> ContainerSummary {
        ContainerSummary {
            id: Some("abc123".into()),
            labels: Some(HashMap::from([(LABEL_CONTAINER.to_owned(), id.to_owned())])),
            state: Some(state.into()),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(HashMap::from([(
                    "warmpool-net".to_owned(),
                    EndpointSettings {
                        ip_address: Some(ip.into()),
                        ..Default::default()
                    },
                )])),
            }),
            ports: Some(vec![Port {
                ip: Some("127.0.0.1".into()),
                private_port: 8080,
                public_port,
                typ: Some(PortTypeEnum::TCP),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn listed_containers_are_read_by_label_with_their_address() {
        let id = ContainerId::random();
        let o = owned(
            &cfg(false),
            summary(&id.to_string(), "running", "172.18.0.5", None),
        )
        .unwrap();
        assert_eq!(
            o,
            OwnedContainer {
                id,
                handle: "abc123".into(),
                address: Some("172.18.0.5:8080".into()),
                running: true,
            }
        );
        let o = owned(
            &cfg(true),
            summary(&id.to_string(), "exited", "", Some(32768)),
        )
        .unwrap();
        assert_eq!(o.address.as_deref(), Some("127.0.0.1:32768"));
        assert!(!o.running);
        // Not on the network (yet), or not published: no address.
        let o = owned(&cfg(false), summary(&id.to_string(), "created", "", None)).unwrap();
        assert_eq!(o.address, None);
        assert_eq!(
            owned(
                &cfg(true),
                summary(&id.to_string(), "running", "172.18.0.5", None)
            )
            .unwrap()
            .address,
            None
        );
        // Not ours to parse.
        assert_eq!(
            owned(
                &cfg(false),
                summary("not-an-id", "running", "172.18.0.5", None)
            ),
            None
        );
    }
}
