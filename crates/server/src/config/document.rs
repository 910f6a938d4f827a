//! A pool's settings as a document: a JSON object read exactly like a config
//! file's `[pools.NAME]` table ([`pool_from_json`]), a pool's resolved settings
//! as one ([`PoolConfig::settings`]), and what differs between two of them
//! ([`settings_diff`]).

use std::collections::BTreeMap;

use serde_json::Value as Json;
use warmpool_client::{PoolSettings, ScalingSettings, SettingChange};
use warmpool_core::ScalingPolicy;

use super::{pool_from_table, ConfigError, PoolConfig};

/// One pool's settings from a JSON object whose keys are a `[pools.NAME]` table's
/// (`{"image": "x:1", "targets": {"weur": 3}}`): its values become TOML values
/// and go through [`pool_from_table`], so a document is refused exactly as the
/// same table in a config file would be, with the same error naming the field.
pub fn pool_from_json(
    name: &str,
    body: &serde_json::Map<String, Json>,
) -> Result<PoolConfig, ConfigError> {
    let mut table = toml::Table::new();
    for (key, value) in body {
        let value = to_toml(value).ok_or_else(|| ConfigError {
            key: format!("pools.{name}.{key}"),
            value: value.to_string(),
            reason: "null is not a value; leave the key out for its default".into(),
        })?;
        table.insert(key.clone(), value);
    }
    pool_from_table(name, &table)
}

/// The settings a `[pools.NAME]` table sets, checked as [`pool_from_table`]
/// checks them, each in the type [`PoolSettings`] gives it (`command = "a b"`
/// becomes `["a", "b"]`; `target` and `locations` become the `targets` they
/// make). Read back by [`pool_from_json`], it is the same pool as the table;
/// what `warmpool apply` sends.
pub fn settings_from_table(name: &str, table: &toml::Table) -> Result<PoolSettings, ConfigError> {
    let all = pool_from_table(name, table)?.settings();
    let set = |key: &str| table.contains_key(key);
    let targets = set("target") || set("targets") || set("locations");
    Ok(PoolSettings {
        command: all.command.filter(|_| set("command")),
        image: all.image.filter(|_| set("image")),
        health_path: all.health_path.filter(|_| set("health_path")),
        target: None,
        targets: all.targets.filter(|_| targets),
        locations: None,
        batch_size: all.batch_size.filter(|_| set("batch_size")),
        batch_spacing: all.batch_spacing.filter(|_| set("batch_spacing")),
        max_lifetime: all.max_lifetime.filter(|_| set("max_lifetime")),
        idle_timeout: all.idle_timeout.filter(|_| set("idle_timeout")),
        start_timeout: all.start_timeout.filter(|_| set("start_timeout")),
        app_env: all.app_env.filter(|_| set("app_env")),
        vcpu: all.vcpu.filter(|_| set("vcpu")),
        memory_mib: all.memory_mib.filter(|_| set("memory_mib")),
        pids_limit: all.pids_limit.filter(|_| set("pids_limit")),
        disk_mb: all.disk_mb.filter(|_| set("disk_mb")),
        max_surge: all.max_surge.filter(|_| set("max_surge")),
        rollout_failure_limit: all
            .rollout_failure_limit
            .filter(|_| set("rollout_failure_limit")),
        progress_deadline: all.progress_deadline.filter(|_| set("progress_deadline")),
        scaling: all.scaling.filter(|_| {
            table
                .keys()
                .any(|k| k == "scaling" || k.starts_with("scaling_"))
        }),
        bind: all.bind.filter(|_| set("bind")),
        files_dir: all.files_dir.filter(|_| set("files_dir")),
        pull: all.pull.filter(|_| set("pull")),
        no_new_privileges: all.no_new_privileges.filter(|_| set("no_new_privileges")),
        drop_capabilities: all.drop_capabilities.filter(|_| set("drop_capabilities")),
        read_only_root: all.read_only_root.filter(|_| set("read_only_root")),
        user: all.user.filter(|_| set("user")),
        tmpfs: all.tmpfs.filter(|_| set("tmpfs")),
        labels: all.labels.filter(|_| set("labels")),
    })
}

/// A JSON value as the TOML value a config file would hold (`None`: a null
/// somewhere in it, which TOML has no word for).
fn to_toml(value: &Json) -> Option<toml::Value> {
    Some(match value {
        Json::Null => return None,
        Json::Bool(b) => toml::Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            // Beyond i64 (a u64) or fractional: the setting's own check says
            // whether it takes it.
            None => toml::Value::Float(n.as_f64()?),
        },
        Json::String(s) => toml::Value::String(s.clone()),
        Json::Array(items) => toml::Value::Array(items.iter().map(to_toml).collect::<Option<_>>()?),
        Json::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| Some((k.clone(), to_toml(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

impl PoolConfig {
    /// Every resolved setting of this pool, keyed as in its `[pools.NAME]` table
    /// (its targets as `targets`, without `target` and `locations`), such that
    /// [`pool_from_json`] reads it back as this pool. What `GET /v1/pools/{pool}`
    /// shows, and what two revisions of a pool are compared by.
    pub fn settings(&self) -> PoolSettings {
        PoolSettings {
            command: Some(self.command.clone()),
            image: Some(self.image.clone()),
            health_path: Some(self.health_path.clone()),
            target: None,
            targets: Some(
                self.targets
                    .iter()
                    .map(|(l, n)| (l.to_string(), *n))
                    .collect(),
            ),
            locations: None,
            batch_size: Some(self.batch_size),
            batch_spacing: Some(self.batch_spacing.as_secs_f64()),
            max_lifetime: Some(self.max_lifetime.as_secs_f64()),
            idle_timeout: Some(self.idle_timeout.map_or(0.0, |d| d.as_secs_f64())),
            start_timeout: Some(self.start_timeout.as_secs_f64()),
            app_env: Some(self.env.iter().cloned().collect()),
            vcpu: Some(self.vcpu.unwrap_or(0.0)),
            memory_mib: Some(self.memory_mib.unwrap_or(0)),
            pids_limit: Some(self.pids_limit.unwrap_or(0)),
            disk_mb: Some(self.disk_mb.unwrap_or(0)),
            max_surge: Some(self.max_surge.to_string()),
            rollout_failure_limit: Some(self.rollout_failure_limit),
            progress_deadline: Some(self.progress_deadline.as_secs_f64()),
            scaling: self.scaling.as_ref().map(scaling_settings),
            bind: Some(self.bind.as_str().to_owned()),
            files_dir: Some(self.files_dir.clone()),
            pull: Some(self.pull.as_str().to_owned()),
            no_new_privileges: Some(self.hardening.no_new_privileges),
            drop_capabilities: Some(self.hardening.drop_capabilities),
            read_only_root: Some(self.hardening.read_only_root.as_str().to_owned()),
            user: Some(self.hardening.user.clone()),
            tmpfs: Some(self.hardening.tmpfs.clone()),
            labels: Some(self.labels.clone()),
        }
    }
}

/// A scaling policy as its `[scaling]` table, every value resolved.
pub fn scaling_settings(p: &ScalingPolicy) -> ScalingSettings {
    ScalingSettings {
        min: Some(p.min),
        max: Some(p.max.unwrap_or(0)),
        buffer: Some(p.buffer.to_string()),
        scale_down_delay: Some(p.scale_down_delay.as_secs_f64()),
        safety: Some(p.safety),
        locations: Some(p.locations.as_str().to_owned()),
    }
}

/// The keys whose values differ between `old` and `new` (a key one of them
/// leaves out counts as a change, with `None` on that side), in key order. A
/// change of one of [`warmpool_client::TEMPLATE_KEYS`] makes a new revision
/// ([`SettingChange::is_template`]).
pub fn settings_diff(old: &PoolSettings, new: &PoolSettings) -> Vec<SettingChange> {
    let (old, new) = (as_map(old), as_map(new));
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| SettingChange {
            key: k.clone(),
            old: old.get(k).cloned(),
            new: new.get(k).cloned(),
        })
        .collect()
}

/// `settings` as a JSON object of the keys it sets.
fn as_map(settings: &PoolSettings) -> BTreeMap<String, Json> {
    match serde_json::to_value(settings) {
        Ok(Json::Object(map)) => map.into_iter().collect(),
        // A struct of plain fields serialises to an object, always.
        other => unreachable!("PoolSettings serialised to {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use warmpool_client::TEMPLATE_KEYS;
    use warmpool_core::{Location, Surge};

    use super::*;

    /// `text` as the `[pools.NAME]` table it is.
    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn object(v: Json) -> serde_json::Map<String, Json> {
        match v {
            Json::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    /// `p` without what is not a setting (its resolved strings) and with its
    /// lists in a set order: a document's `targets` and `app_env` are maps, which
    /// keep no order.
    fn normal(mut p: PoolConfig) -> PoolConfig {
        p.resolved.clear();
        p.targets.sort_by_key(|(l, _)| l.to_string());
        p.env.sort();
        p
    }

    /// A pool's settings as JSON read back give the same pool.
    fn check_round_trip(toml_text: &str) {
        let p = pool_from_table("p", &table(toml_text)).unwrap();
        let doc = object(serde_json::to_value(p.settings()).unwrap());
        let again = pool_from_json("p", &doc).unwrap_or_else(|e| panic!("{toml_text}: {e}"));
        assert_eq!(normal(again), normal(p.clone()), "{toml_text}");
        assert_eq!(settings_diff(&p.settings(), &p.settings()), vec![]);
    }

    #[test]
    fn settings_read_back_as_the_same_pool() {
        for text in [
            "",
            "target = 0",
            "locations = [\"wnam\", \"weur\"]\ntarget = 4",
            "targets = { weur = 3, apac = 0 }",
            r#"
            command = ["python3", "-m", "http.server", "it's \"quoted\""]
            health_path = "/"
            app_env = { GREETING = "hello world", EMPTY = "", EQ = "a=b" }
            vcpu = 1.5
            memory_mib = 0
            pids_limit = 64
            disk_mb = 0
            batch_size = 2
            batch_spacing = 0.25
            max_lifetime = 600
            idle_timeout = 60
            start_timeout = 0.1
            max_surge = "3"
            rollout_failure_limit = 7
            progress_deadline = 90.5
            "#,
            "image = \"x/y:1\"\nvcpu = 0\nmax_surge = \"100%\"\nidle_timeout = 0",
            "command = \"sh -c 'exit 1'\"\napp_env = \"A=1 B='two words'\"",
        ] {
            check_round_trip(text);
        }
    }

    #[test]
    fn a_table_as_typed_settings_is_the_same_pool() {
        for (text, keys) in [
            ("", vec![]),
            ("target = 4", vec!["targets"]),
            ("locations = \"wnam,weur\"", vec!["targets"]),
            (
                "command = \"python3 -m http.server\"\nvcpu = \"0.5\"\nmax_surge = 2",
                vec!["command", "max_surge", "vcpu"],
            ),
            (
                "app_env = \"A=1 B='two words'\"\nidle_timeout = 0\nprogress_deadline = 60",
                vec!["app_env", "idle_timeout", "progress_deadline"],
            ),
        ] {
            let settings = settings_from_table("p", &table(text)).unwrap();
            let doc = object(serde_json::to_value(&settings).unwrap());
            assert_eq!(doc.keys().collect::<Vec<_>>(), keys, "{text}");
            let from_doc = pool_from_json("p", &doc).unwrap();
            let from_table = pool_from_table("p", &table(text)).unwrap();
            assert_eq!(normal(from_doc), normal(from_table), "{text}");
        }
        let e = settings_from_table("p", &table("batch_size = 0")).unwrap_err();
        assert_eq!(e.key, "pools.p.batch_size");
    }

    #[test]
    fn settings_show_every_resolved_value() {
        let p = pool_from_table("p", &table("vcpu = 0\nidle_timeout = 30")).unwrap();
        let doc = serde_json::to_value(p.settings()).unwrap();
        assert_eq!(
            doc,
            json!({
                "command": [],
                "image": "warmpool/sample-app:latest",
                "health_path": "/healthz",
                "targets": {"default": 30},
                "batch_size": 10,
                "batch_spacing": 10.0,
                "max_lifetime": 3600.0,
                "idle_timeout": 30.0,
                "start_timeout": 30.0,
                "app_env": {},
                "vcpu": 0.0,
                "memory_mib": 256,
                "pids_limit": 256,
                "disk_mb": 512,
                "max_surge": "25%",
                "rollout_failure_limit": 3,
                "progress_deadline": 600.0,
                "bind": "optional",
                "files_dir": "/warmpool/files",
                "pull": "if-missing",
                "no_new_privileges": true,
                "drop_capabilities": true,
                "read_only_root": "auto",
                "user": "",
                "tmpfs": ["/tmp"],
                "labels": {},
            })
        );
    }

    #[test]
    fn documents_are_refused_as_the_same_table_would_be() {
        // (JSON document, the same as TOML, the field the error names)
        for (doc, text, field) in [
            (
                json!({"health_path": "x"}),
                "health_path = \"x\"",
                "health_path",
            ),
            (json!({"target": "many"}), "target = \"many\"", "target"),
            (
                json!({"targets": {"mars": 1}}),
                "targets = { mars = 1 }",
                "targets",
            ),
            (
                json!({"targets": {"weur": "x"}}),
                "targets = { weur = \"x\" }",
                "targets",
            ),
            (json!({"memory_mib": -5}), "memory_mib = -5", "memory_mib"),
            (json!({"batch_size": 0.5}), "batch_size = 0.5", "batch_size"),
            (json!({"vcpu": "lots"}), "vcpu = \"lots\"", "vcpu"),
            (
                json!({"max_surge": "0%"}),
                "max_surge = \"0%\"",
                "max_surge",
            ),
            (json!({"max_surge": 0}), "max_surge = 0", "max_surge"),
            (
                json!({"rollout_failure_limit": 0}),
                "rollout_failure_limit = 0",
                "rollout_failure_limit",
            ),
            (
                json!({"progress_deadline": 0}),
                "progress_deadline = 0",
                "progress_deadline",
            ),
            (
                json!({"app_env": {"A B": "1"}}),
                "app_env = { \"A B\" = \"1\" }",
                "app_env",
            ),
            (
                json!({"app_env": [1, [2]]}),
                "app_env = [1, [2]]",
                "app_env",
            ),
            (
                json!({"command": [["x"]]}),
                "command = [[\"x\"]]",
                "command",
            ),
            (json!({"shape": "round"}), "shape = \"round\"", "shape"),
            (
                json!({"listen": "0.0.0.0:1"}),
                "listen = \"0.0.0.0:1\"",
                "listen",
            ),
        ] {
            let from_json = pool_from_json("py", &object(doc.clone())).unwrap_err();
            let from_toml = pool_from_table("py", &table(text)).unwrap_err();
            assert_eq!(from_json, from_toml, "{doc}");
            assert_eq!(from_json.key, format!("pools.py.{field}"), "{doc}");
        }
    }

    #[test]
    fn null_is_refused_naming_its_key() {
        for doc in [
            json!({"image": null}),
            json!({"app_env": {"A": null}}),
            json!({"command": ["x", null]}),
        ] {
            let key = object(doc.clone()).keys().next().unwrap().clone();
            let e = pool_from_json("py", &object(doc.clone())).unwrap_err();
            assert_eq!(e.key, format!("pools.py.{key}"), "{doc}");
            assert!(e.reason.starts_with("null is not a value"), "{e}");
        }
    }

    #[test]
    fn bad_pool_names_are_refused_and_the_default_pools_is_not() {
        for name in ["", "a b", "a/b", &"x".repeat(64)] {
            let e = pool_from_json(name, &serde_json::Map::new()).unwrap_err();
            assert_eq!(e.key, format!("pools.{name}"));
        }
        let p = pool_from_json("default", &object(json!({"target": 2}))).unwrap();
        assert_eq!(p.targets, vec![(Location::Default, 2)]);
    }

    #[test]
    fn documents_take_the_types_a_config_file_takes() {
        let p = pool_from_json(
            "py",
            &object(json!({
                "command": "python3 -m http.server",
                "locations": "weur,wnam",
                "target": 2,
                "batch_spacing": 1,
                "max_surge": 2,
                "rollout_failure_limit": "4",
                "progress_deadline": 0.5e3,
            })),
        )
        .unwrap();
        assert_eq!(p.command, ["python3", "-m", "http.server"]);
        assert_eq!(p.targets, vec![(Location::Weur, 2), (Location::Wnam, 2)]);
        assert_eq!(p.batch_spacing, Duration::from_secs(1));
        assert_eq!(p.max_surge, Surge::Count(2));
        assert_eq!(p.rollout_failure_limit, 4);
        assert_eq!(p.progress_deadline, Duration::from_secs(500));
    }

    #[test]
    fn a_diff_lists_changed_keys_in_order_and_tells_template_changes() {
        let old = pool_from_table("p", &table("")).unwrap().settings();
        let new = pool_from_table(
            "p",
            &table("image = \"x:2\"\ntargets = { default = 30, weur = 1 }\nbatch_size = 10"),
        )
        .unwrap()
        .settings();
        let diff = settings_diff(&old, &new);
        assert_eq!(
            diff,
            vec![
                SettingChange {
                    key: "image".into(),
                    old: Some(json!("warmpool/sample-app:latest")),
                    new: Some(json!("x:2")),
                },
                SettingChange {
                    key: "targets".into(),
                    old: Some(json!({"default": 30})),
                    new: Some(json!({"default": 30, "weur": 1})),
                },
            ]
        );
        assert!(diff[0].is_template());
        assert!(!diff[1].is_template());

        // A key one side leaves out (an input that is only partial).
        let partial = PoolSettings {
            image: Some("x:2".into()),
            ..Default::default()
        };
        let diff = settings_diff(&partial, &new);
        assert_eq!(diff.len(), 25, "{diff:?}");
        assert!(diff.iter().all(|c| c.old.is_none() && c.new.is_some()));
        assert!(diff.windows(2).all(|w| w[0].key < w[1].key));
    }

    #[test]
    fn template_keys_are_settings_and_only_they_make_a_revision() {
        let settings =
            serde_json::to_value(pool_from_table("p", &table("")).unwrap().settings()).unwrap();
        for key in TEMPLATE_KEYS {
            assert!(settings.get(key).is_some(), "{key} is not a setting");
        }
        for (text, template) in [
            ("image = \"x:2\"", true),
            ("command = [\"sh\"]", true),
            ("health_path = \"/\"", true),
            ("app_env = { A = \"1\" }", true),
            ("vcpu = 2", true),
            ("memory_mib = 1", true),
            ("pids_limit = 1", true),
            ("disk_mb = 1", true),
            ("start_timeout = 1", true),
            ("target = 1", false),
            ("batch_size = 1", false),
            ("batch_spacing = 1", false),
            ("max_lifetime = 1", false),
            ("idle_timeout = 1", false),
            ("max_surge = 1", false),
            ("rollout_failure_limit = 1", false),
            ("progress_deadline = 1", false),
        ] {
            let old = pool_from_table("p", &table("")).unwrap().settings();
            let new = pool_from_table("p", &table(text)).unwrap().settings();
            let diff = settings_diff(&old, &new);
            assert_eq!(diff.len(), 1, "{text}: {diff:?}");
            assert_eq!(diff[0].is_template(), template, "{text}");
        }
    }
}
