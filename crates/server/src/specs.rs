//! Between the configuration and the engine: a pool's settings as the engine
//! runs it ([`pool_spec`]) and back as the API shows them ([`pool_settings`]),
//! and the engine's whole configuration ([`engine_config`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use warmpool_client::PoolSettings;
use warmpool_engine::{EngineConfig, PoolSpec};
use warmpool_runtime::{Resources, Template, Workload};

use crate::config::{scaling_settings, Config, PoolConfig, RuntimeKind, SETTINGS};

/// What the engine is told, from the config.
pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        pools: config
            .pools
            .iter()
            .map(|p| pool_spec(p, config.runtime))
            .collect(),
        max_instances: config.max_instances,
        claim_timeout: config.claim_timeout,
        stop_grace: config.stop_grace,
        probe_interval: config.probe_interval,
        reconcile_interval: config.reconcile_interval,
        sweep_interval: config.sweep_interval,
        tombstone_retention: config.tombstone_retention,
    }
}

/// A pool as the engine runs it, its workload as `runtime` runs it: an image on
/// the image runtimes; otherwise its command, or without one the sample app.
/// Its env and targets are in key order, as a document's maps are, so that the
/// same pool from a config file and from the API is the same spec (an env in
/// another order is not a new template).
pub fn pool_spec(config: &PoolConfig, runtime: RuntimeKind) -> PoolSpec {
    let mut env = config.env.clone();
    env.sort_by(|a, b| a.0.cmp(&b.0));
    let mut targets = config.targets.clone();
    targets.sort_by_key(|(l, _)| l.to_string());
    let workload = match runtime {
        RuntimeKind::Docker | RuntimeKind::Kubernetes => Workload::Image {
            image: config.image.clone(),
            pids_limit: config.pids_limit,
        },
        RuntimeKind::Process | RuntimeKind::Sim if config.command.is_empty() => Workload::SampleApp,
        RuntimeKind::Process | RuntimeKind::Sim => Workload::Command(config.command.clone()),
    };
    PoolSpec {
        name: config.name.clone(),
        template: Arc::new(Template {
            workload,
            health_path: config.health_path.clone(),
            env,
            resources: Resources {
                vcpu: config.vcpu,
                memory_mib: config.memory_mib,
                disk_mb: config.disk_mb,
            },
            start_timeout: config.start_timeout,
            // Empty: the default, so that templates from before the setting
            // serialise as they did (revisions are compared by that text).
            files_dir: if config.files_dir == warmpool_runtime::DEFAULT_FILES_DIR {
                String::new()
            } else {
                config.files_dir.clone()
            },
            pull: config.pull,
            hardening: config.hardening.clone(),
        }),
        targets,
        batch_size: config.batch_size,
        batch_spacing: config.batch_spacing,
        max_lifetime: config.max_lifetime,
        idle_timeout: config.idle_timeout,
        max_surge: config.max_surge,
        rollout_failure_limit: config.rollout_failure_limit,
        progress_deadline: config.progress_deadline,
        scaling: config.scaling.clone(),
        bind: config.bind,
        labels: config.labels.clone(),
    }
}

/// A pool's settings as `GET /v1/pools/{pool}` shows them: every one resolved,
/// keyed as in a `[pools.NAME]` table (a setting the runtime does not use shows
/// its default: the image on the process runtime, the command on Docker).
pub fn pool_settings(spec: &PoolSpec) -> PoolSettings {
    let default_image = SETTINGS
        .iter()
        .find(|s| s.env == "WARMPOOL_IMAGE")
        .map_or("", |s| s.default);
    let t = &spec.template;
    let (command, image, pids_limit) = match &t.workload {
        Workload::SampleApp => (Vec::new(), default_image.to_owned(), None),
        Workload::Command(c) => (c.clone(), default_image.to_owned(), None),
        Workload::Image { image, pids_limit } => (Vec::new(), image.clone(), *pids_limit),
    };
    PoolSettings {
        command: Some(command),
        image: Some(image),
        health_path: Some(t.health_path.clone()),
        target: None,
        targets: Some(
            spec.targets
                .iter()
                .map(|(l, n)| (l.to_string(), *n))
                .collect::<BTreeMap<_, _>>(),
        ),
        locations: None,
        batch_size: Some(spec.batch_size),
        batch_spacing: Some(spec.batch_spacing.as_secs_f64()),
        max_lifetime: Some(spec.max_lifetime.as_secs_f64()),
        idle_timeout: Some(spec.idle_timeout.map_or(0.0, |d| d.as_secs_f64())),
        start_timeout: Some(t.start_timeout.as_secs_f64()),
        app_env: Some(t.env.iter().cloned().collect()),
        vcpu: Some(t.resources.vcpu.unwrap_or(0.0)),
        memory_mib: Some(t.resources.memory_mib.unwrap_or(0)),
        pids_limit: Some(pids_limit.unwrap_or(0)),
        disk_mb: Some(t.resources.disk_mb.unwrap_or(0)),
        max_surge: Some(spec.max_surge.to_string()),
        rollout_failure_limit: Some(spec.rollout_failure_limit),
        progress_deadline: Some(spec.progress_deadline.as_secs_f64()),
        scaling: spec.scaling.as_ref().map(scaling_settings),
        bind: Some(spec.bind.as_str().to_owned()),
        files_dir: Some(t.files_dir().to_owned()),
        pull: Some(t.pull.as_str().to_owned()),
        no_new_privileges: Some(t.hardening.no_new_privileges),
        drop_capabilities: Some(t.hardening.drop_capabilities),
        read_only_root: Some(t.hardening.read_only_root.as_str().to_owned()),
        user: Some(t.hardening.user.clone()),
        tmpfs: Some(t.hardening.tmpfs.clone()),
        labels: Some(spec.labels.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::pool_from_json;

    #[test]
    fn a_pool_read_back_from_its_settings_is_the_same_spec() {
        for runtime in [RuntimeKind::Process, RuntimeKind::Docker] {
            let config = Config::from_lookup(|k| match k {
                "WARMPOOL_APP_ENV" => Some("B=1 A=2".into()),
                "WARMPOOL_TARGETS" => Some("wnam=2,default=1,apac=3".into()),
                "WARMPOOL_VCPU" => Some("0".into()),
                _ => None,
            })
            .unwrap();
            let spec = pool_spec(config.default_pool(), runtime);
            let serde_json::Value::Object(settings) =
                serde_json::to_value(pool_settings(&spec)).unwrap()
            else {
                panic!("settings are an object");
            };
            let again = pool_from_json(&spec.name, &settings).unwrap();
            assert_eq!(pool_spec(&again, runtime), spec, "{runtime:?}");
        }
    }
}
