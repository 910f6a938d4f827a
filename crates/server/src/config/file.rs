//! The config file (`warmpool.toml`, keys are the `serve` flags with `_` for
//! `-`): read into values as their env vars would hold them, and the resolved
//! configuration printed back as one (`--check-config`).

use std::collections::HashMap;

use super::reader::{read_pool, valid_pool_name};
use super::settings::setting;
use super::{Config, ConfigError, PoolConfig, Setting, SETTINGS};

/// A parsed config file: top-level values, keyed by env var, values as they would
/// be written in one; and the `[pools.NAME]` tables as written, in name order
/// (each read by [`pool_from_table`] when the configuration is built).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFile {
    pub settings: HashMap<String, String>,
    pub pools: Vec<(String, toml::Table)>,
}

/// One pool's settings from its `[pools.NAME]` table: the checks of a config
/// file's pool (its name, each key a per-pool setting, each value of a type the
/// key takes) and then its values, every setting the table leaves out taking its
/// built-in default. Errors name the field: `pools.NAME.key`, or `pools.NAME` for
/// the name. It does not refuse the default pool's name: that is for the caller
/// that knows which pool the top-level settings configure.
pub fn pool_from_table(name: &str, table: &toml::Table) -> Result<PoolConfig, ConfigError> {
    if !valid_pool_name(name) {
        return Err(ConfigError {
            key: format!("pools.{name}"),
            value: String::new(),
            reason: "a pool name is up to 63 letters, digits, - or _".into(),
        });
    }
    let mut values: HashMap<&'static str, String> = HashMap::new();
    for (key, value) in flatten_scaling(table.clone()) {
        let bad = |reason: String| ConfigError {
            key: format!("pools.{name}.{}", shown_key(&key)),
            value: match &value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            reason,
        };
        let s = file_setting(&key).ok_or_else(|| bad("unknown setting".into()))?;
        if !s.per_pool {
            return Err(bad(format!("{key} is global; set it at the top level")));
        }
        values.insert(s.env, file_value(s, value.clone()).map_err(bad)?);
    }
    read_pool(name, &|env| values.get(env).cloned())
}

impl Config {
    /// Reads a configuration file (`warmpool.toml`). Its top-level keys are the
    /// `serve` flags with `_` for `-` (`runtime = "docker"`, `batch_size = 10`,
    /// `vcpu = 0.5`); `[pools.NAME]` tables take the per-pool ones. Lists are
    /// accepted where a setting is a list (`locations`, `command`, `api_token`),
    /// and tables for `targets` (`{ weur = 5 }`) and `app_env` (`{ KEY = "v" }`).
    pub fn parse_file(text: &str) -> Result<ConfigFile, ConfigError> {
        let bad = |reason: String| ConfigError {
            key: "WARMPOOL_CONFIG".into(),
            value: String::new(),
            reason,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
        let mut file = ConfigFile::default();
        for (key, value) in flatten_scaling(table) {
            if key == "pools" {
                let toml::Value::Table(pools) = value else {
                    return Err(bad("pools: expected [pools.NAME] tables".into()));
                };
                // Their keys and values are checked by `pool_from_table`, which
                // the API's pool documents go through too.
                for (name, pool) in pools {
                    let toml::Value::Table(pool) = pool else {
                        return Err(bad(format!("pools.{name}: expected a table")));
                    };
                    file.pools.push((name, pool));
                }
                continue;
            }
            let shown = shown_key(&key);
            let s = file_setting(&key).ok_or_else(|| bad(format!("unknown setting {shown:?}")))?;
            let v = file_value(s, value).map_err(|e| bad(format!("{shown}: {e}")))?;
            file.settings.insert(s.env.to_owned(), v);
        }
        Ok(file)
    }

    /// The resolved configuration as a config file: every setting with its value,
    /// each pool in its table, tokens redacted (as comments, so that the output is
    /// itself a valid config file). What `serve --check-config` prints.
    pub fn to_toml(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# warmpool's resolved configuration (flags, then env vars, then the config file, then defaults)\n",
        );
        let write = |out: &mut String, resolved: &[(&'static str, String)]| {
            let mut rows: Vec<&(&'static str, String)> = resolved.iter().collect();
            rows.sort_by_key(|(env, _)| SETTINGS.iter().position(|s| s.env == *env));
            for (env, v) in rows {
                let s = setting(env);
                let key = s.file_key();
                if env.ends_with("_TOKEN") {
                    // `v` is the number of tokens (their values are not kept).
                    let _ = writeln!(out, "# {key} = <{v} token(s), redacted>");
                } else {
                    let _ = writeln!(out, "{key} = {}", toml_literal(v));
                }
            }
        };
        write(&mut out, &self.resolved);
        let _ = writeln!(out, "\n# the default pool, {:?}", self.pools[0].name);
        write(&mut out, &self.pools[0].resolved);
        for p in &self.pools[1..] {
            let _ = writeln!(out, "\n[pools.{}]", p.name);
            write(&mut out, &p.resolved);
        }
        out
    }
}

/// The setting a config file key names.
/// A table's entries, its `scaling` table's as the settings they are (`min` is
/// `scaling_min`) with `scaling = "on"`: the table's presence turns it on.
fn flatten_scaling(table: toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(t) if key == "scaling" => {
                out.push((key, toml::Value::String("on".into())));
                out.extend(t.into_iter().map(|(k, v)| (format!("scaling_{k}"), v)));
            }
            value => out.push((key, value)),
        }
    }
    out
}

/// A key as its table writes it (`scaling_min` is `scaling.min`).
fn shown_key(key: &str) -> String {
    match key.strip_prefix("scaling_") {
        Some(k) => format!("scaling.{k}"),
        None => key.to_owned(),
    }
}

fn file_setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.file_key() == key)
}

/// A config file value as the string its env var would hold.
fn file_value(s: &Setting, value: toml::Value) -> Result<String, String> {
    use toml::Value;
    let scalar = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Integer(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    };
    if let Some(v) = scalar(&value) {
        return Ok(v);
    }
    let strings = |items: &[Value]| -> Result<Vec<String>, String> {
        items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| "expected a list of strings".to_owned()))
            .collect()
    };
    match (s.env, value) {
        (
            "WARMPOOL_LOCATIONS" | "WARMPOOL_API_TOKEN" | "WARMPOOL_ADMIN_TOKEN" | "WARMPOOL_TMPFS",
            Value::Array(a),
        ) => Ok(strings(&a)?.join(",")),
        ("WARMPOOL_COMMAND", Value::Array(a)) => Ok(shell_words::join(strings(&a)?)),
        ("WARMPOOL_TARGETS", Value::Table(t)) => t
            .iter()
            .map(|(l, n)| match n {
                Value::Integer(n) => Ok(format!("{l}={n}")),
                _ => Err(format!("{l}: expected a whole number")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        ("WARMPOOL_POOL_LABELS", Value::Table(t)) => t
            .iter()
            .map(|(k, v)| {
                scalar(v)
                    .map(|v| format!("{k}={v}"))
                    .ok_or_else(|| format!("{k}: expected a string"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        ("WARMPOOL_APP_ENV", Value::Table(t)) => t
            .iter()
            .map(|(k, v)| {
                scalar(v)
                    .map(|v| shell_words::quote(&format!("{k}={v}")).into_owned())
                    .ok_or_else(|| format!("{k}: expected a string"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(" ")),
        (_, other) => Err(format!(
            "expected a string, number or boolean, got {}",
            other.type_str()
        )),
    }
}

/// `v` as a TOML value that reads back as exactly `v`: numbers and booleans bare
/// where they print back the same, everything else a string.
fn toml_literal(v: &str) -> String {
    let canonical_int = v == "0"
        || (!v.is_empty()
            && !v.starts_with('0')
            && v.len() < 19
            && v.bytes().all(|b| b.is_ascii_digit()));
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let canonical_float = !frac.is_empty()
        && (whole == "0" || (!whole.starts_with('0') && !whole.is_empty()))
        && whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
        && v.parse::<f64>().is_ok_and(|f| f.to_string() == v);
    if canonical_int || canonical_float || v == "true" || v == "false" {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use warmpool_core::Location;

    use super::*;
    use crate::config::RuntimeKind;

    fn from_file(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let file = Config::parse_file(text)?;
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(|k| env.get(k).cloned(), &file)
    }

    #[test]
    fn config_files_use_flag_names_and_refuse_unknown_keys() {
        let c = from_file(
            "runtime = \"docker\"\nbatch_size = 4\nvcpu = 0.5\ndocker_publish = true\nimage = \"x/y:1\"\nlocations = [\"weur\", \"wnam\"]",
            &[],
        )
        .unwrap();
        assert_eq!(c.runtime, RuntimeKind::Docker);
        let p = c.default_pool();
        assert_eq!(p.batch_size, 4);
        assert_eq!(p.vcpu, Some(0.5));
        assert!(c.docker_publish);
        assert_eq!(p.image, "x/y:1");
        assert_eq!(p.targets, vec![(Location::Weur, 30), (Location::Wnam, 30)]);
        for bad in [
            "colour = \"red\"",
            "target = [1]",
            "runtime = ",
            "pools = 3",
            "[pools]\na = 1",
        ] {
            let e = Config::parse_file(bad).unwrap_err();
            assert_eq!(e.key, "WARMPOOL_CONFIG", "{bad}");
        }
    }

    #[test]
    fn named_pools_have_their_own_settings_and_env_vars_configure_the_default_one() {
        let text = r#"
            target = 2
            memory_mib = 64

            [pools.python]
            command = ["python3", "-m", "http.server"]
            health_path = "/"
            targets = { weur = 3, wnam = 1 }
            max_lifetime = 600
            idle_timeout = 60
            app_env = { GREETING = "hello world", MODE = "fast" }
            vcpu = 1.5

            [pools.bare]
        "#;
        let c = from_file(text, &[("POOL_TARGET_INSTANCES", "4")]).unwrap();
        assert_eq!(
            c.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["default", "bare", "python"]
        );
        let d = c.default_pool();
        assert_eq!(
            d.targets,
            vec![(Location::Default, 4)],
            "env wins over file"
        );
        assert_eq!(d.memory_mib, Some(64));

        let py = c.pool("python").unwrap();
        assert_eq!(py.command, ["python3", "-m", "http.server"]);
        assert_eq!(py.health_path, "/");
        assert_eq!(py.targets, vec![(Location::Weur, 3), (Location::Wnam, 1)]);
        assert_eq!(py.max_lifetime, Duration::from_secs(600));
        assert_eq!(py.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(
            py.env,
            vec![
                ("GREETING".into(), "hello world".into()),
                ("MODE".into(), "fast".into())
            ]
        );
        assert_eq!(py.vcpu, Some(1.5));
        // Left out: the built-in defaults, not the default pool's values.
        assert_eq!(py.memory_mib, Some(256));
        let bare = c.pool("bare").unwrap();
        assert_eq!(bare.targets, vec![(Location::Default, 30)]);
        assert_eq!(bare.image, "warmpool/sample-app:latest");
    }

    #[test]
    fn pool_errors_name_the_pool() {
        for (text, key) in [
            ("[pools.py]\ntarget = \"many\"", "pools.py.target"),
            ("[pools.py]\nhealth_path = \"x\"", "pools.py.health_path"),
            ("[pools.py]\ntargets = \"mars=1\"", "pools.py.targets"),
            ("[pools.py]\nmemory_mib = -5", "pools.py.memory_mib"),
            ("[pools.default]\ntarget = 1", "pools.default"),
            ("[pools.a]\nlisten = \"0.0.0.0:1\"", "pools.a.listen"),
            ("[pools.a]\nshape = \"round\"", "pools.a.shape"),
            ("[pools.a]\ntargets = { weur = \"x\" }", "pools.a.targets"),
            ("[pools.a]\nmax_surge = \"0%\"", "pools.a.max_surge"),
            ("[pools.\"a b\"]\ntarget = 1", "pools.a b"),
        ] {
            let e = from_file(text, &[]).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn the_printed_config_reads_back_as_the_same_config() {
        let text = r#"
            runtime = "sim"
            targets = { weur = 2 }
            locations = "default"
            app_env = { A = "it's \"quoted\"" }
            api_token = ["aaaaaaaaaaaaaaaa-1"]
            [scaling]
            buffer = "20%"
            locations = "auto"
            [pools.py]
            command = "python3 -m http.server"
            batch_spacing = 0.5
            [pools.other]
            idle_timeout = 30
            scaling_max = 7
        "#;
        let c = from_file(text, &[("WARMPOOL_DATA_DIR", "/tmp/x y")]).unwrap();
        let printed = c.to_toml();
        assert!(!printed.contains("aaaaaaaaaaaaaaaa"), "{printed}");
        assert!(
            printed.contains("# api_token = <1 token(s), redacted>"),
            "{printed}"
        );
        let again = from_file(&printed, &[]).unwrap();
        assert_eq!(again.api_tokens.len(), 0);
        let scaling = |name: &str| {
            let p = again.pools.iter().find(|p| p.name == name).unwrap();
            p.scaling.clone()
        };
        assert_eq!(scaling("default").unwrap().buffer.to_string(), "20%");
        assert_eq!(scaling("other").unwrap().max, Some(7));
        assert_eq!(scaling("py"), None);
        let with_tokens = Config {
            api_tokens: c.api_tokens.clone(),
            ..again.clone()
        };
        assert_eq!(with_tokens.pools, c.pools);
        assert_eq!(
            again.to_toml(),
            printed.replace("<1 token(s)", "<0 token(s)")
        );
        assert_eq!(Config::defaults().to_toml().matches("\n[pools.").count(), 0);
    }

    /// A TOML value of any type, as it would be written in a config file.
    fn toml_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let scalar = prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            Just("nan".to_owned()),
            Just("-inf".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            "\\PC{0,24}".prop_map(|s| toml::Value::String(s).to_string()),
            "(weur|wnam|mars|default|[a-z]{1,4})(=[0-9]{1,6})?(,[a-z]{1,4}=-?[0-9]{1,3})?"
                .prop_map(|s| toml::Value::String(s).to_string()),
        ];
        prop_oneof![
            4 => scalar.clone(),
            1 => proptest::collection::vec(scalar.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            1 => proptest::collection::vec(("[a-z]{1,5}", scalar), 0..3).prop_map(|v| {
                let kv: Vec<String> = v.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    }

    proptest::proptest! {
        /// Any text as a config file: an answer, never a panic.
        #[test]
        fn arbitrary_config_text_never_panics(text in "\\PC{0,300}") {
            let _ = from_file(&text, &[]);
        }

        /// Config files of real keys (top level and in pools) with values of any
        /// type: accepted, or refused with an error naming where.
        #[test]
        fn every_key_with_any_value_is_accepted_or_named(
            top in proptest::collection::vec((0..SETTINGS.len(), toml_value()), 0..6),
            pool in proptest::collection::vec((0..SETTINGS.len(), toml_value()), 0..6),
        ) {
            let line = |(i, v): &(usize, String)| format!("{} = {v}\n", SETTINGS[*i].file_key());
            let mut text: String = top.iter().map(line).collect();
            text.push_str("[pools.p]\n");
            text.extend(pool.iter().map(line));
            if let Err(e) = from_file(&text, &[]) {
                let known = e.key == "WARMPOOL_CONFIG"
                    || e.key.starts_with("pools.p")
                    || SETTINGS.iter().any(|s| s.env == e.key);
                proptest::prop_assert!(known, "{e} for {text}");
            }
        }
    }

    /// Every example config in the repository is valid.
    #[test]
    fn example_configs_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let c = from_file(&text, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!c.pools.is_empty());
                if path.ends_with("warmpool.toml") {
                    // The reference example lists every setting
                    // (scripts/gen-example-config.py writes it).
                    for s in SETTINGS {
                        let key = s.file_key();
                        assert!(
                            text.lines().any(|l| l.starts_with(&format!("{key} = "))
                                || l.starts_with(&format!("# {key} = "))),
                            "{key} missing from {}",
                            path.display()
                        );
                    }
                    assert_eq!(c, Config::defaults(), "it holds the defaults");
                }
                n += 1;
            }
        }
        assert!(n >= 3, "expected the example configs in {}", dir.display());
    }
}
