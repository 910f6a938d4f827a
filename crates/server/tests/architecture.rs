//! The crate boundaries ARCHITECTURE.md promises, checked on the manifests: the
//! heavy or IO-bound dependencies stay in the one crate that needs them.

use std::path::Path;

fn manifest(krate: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(krate).join("Cargo.toml")).unwrap()
}

/// The dependency names of a crate (normal, dev and build).
fn deps(krate: &str) -> Vec<String> {
    let doc: toml::Table = manifest(krate).parse().unwrap();
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|section| doc.get(*section).and_then(|d| d.as_table()))
        .flat_map(|t| t.keys().cloned())
        .collect()
}

const CRATES: [&str; 10] = [
    "bench",
    "core",
    "store",
    "runtime",
    "docker",
    "kubernetes",
    "client",
    "sample-app",
    "engine",
    "server",
];

/// The Docker runtime, and the bench's raw Docker baseline (which must not go
/// through warmpool's own runtime code to be a baseline).
#[test]
fn only_the_docker_crate_and_the_bench_depend_on_bollard() {
    for c in CRATES {
        assert_eq!(
            deps(c).iter().any(|d| d == "bollard"),
            c == "docker" || c == "bench",
            "{c}"
        );
    }
}

#[test]
fn only_the_kubernetes_crate_depends_on_kube() {
    for c in CRATES {
        for dep in ["kube", "k8s-openapi", "tower-test"] {
            assert_eq!(
                deps(c).iter().any(|d| d == dep),
                c == "kubernetes",
                "{c} and {dep}"
            );
        }
    }
}

#[test]
fn only_the_store_knows_sql() {
    for c in CRATES {
        assert_eq!(deps(c).iter().any(|d| d == "rusqlite"), c == "store", "{c}");
    }
}

#[test]
fn core_does_no_io() {
    let core = deps("core");
    for io in [
        "tokio",
        "rusqlite",
        "hyper",
        "axum",
        "reqwest",
        "bollard",
        "kube",
        "serde_json",
    ] {
        assert!(!core.iter().any(|d| d == io), "core depends on {io}");
    }
}

#[test]
fn the_engine_knows_no_http_framework() {
    let engine = deps("engine");
    for dep in [
        "axum",
        "hyper",
        "hyper-util",
        "utoipa",
        "reqwest",
        "tower",
        "warmpool-client",
        "rusqlite",
        "bollard",
        "kube",
    ] {
        assert!(!engine.iter().any(|d| d == dep), "engine depends on {dep}");
    }
    for dep in ["warmpool-core", "warmpool-store", "warmpool-runtime"] {
        assert!(engine.iter().any(|d| d == dep), "engine lacks {dep}");
    }
    assert!(deps("server").iter().any(|d| d == "warmpool-engine"));
}

/// The modules of a crate's `src` (a file or a directory is one module; files
/// inside a module's directory belong to it) and the crate modules each one
/// names: `crate::m` paths, `use crate::{m, ...}` groups, and names the crate root
/// re-exports from a module (`pub use m::{A, B}`) resolved to that module.
fn module_graph(
    krate: &str,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src");
    let mut files: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                for e in std::fs::read_dir(dir).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "rs") {
                        files.push((name.clone(), std::fs::read_to_string(&p).unwrap()));
                    }
                }
            }
        } else if path.extension().is_some_and(|x| x == "rs") {
            files.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    let modules: BTreeSet<String> = files
        .iter()
        .map(|(m, _)| m.clone())
        .filter(|m| m != "lib" && m != "main")
        .collect();
    // Names the root re-exports, by the module they come from.
    let root = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut reexport: BTreeMap<String, String> = BTreeMap::new();
    for line in root.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        if !modules.contains(module) {
            continue;
        }
        let names = names
            .trim_end_matches(';')
            .trim_matches(|c| c == '{' || c == '}');
        for n in names.split(',') {
            let n = n.trim();
            let n = n.rsplit(" as ").next().unwrap_or(n).trim();
            let n = n.rsplit("::").next().unwrap_or(n);
            if !n.is_empty() {
                reexport.insert(n.to_owned(), module.to_owned());
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &files {
        if !modules.contains(module) {
            continue;
        }
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let to = graph.entry(module.clone()).or_default();
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or("").to_owned())
                    .collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                vec![rest[..end].to_owned()]
            };
            for n in names {
                let target = if modules.contains(&n) {
                    Some(n)
                } else {
                    reexport.get(&n).cloned()
                };
                if let Some(t) = target.filter(|t| t != module) {
                    to.insert(t);
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, if any, as the list of modules around it.
fn find_cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for n in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(n, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = Default::default();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_cycle_between_modules_of_the_engine_or_the_server() {
    for krate in ["engine", "server"] {
        let graph = module_graph(krate);
        assert!(graph.len() > 5, "{krate}: modules not found");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{krate}: import cycle {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .iter()
        .fold(std::collections::BTreeMap::new(), |mut g, (f, t)| {
            g.entry(f.to_string())
                .or_insert_with(std::collections::BTreeSet::new)
                .insert(t.to_string());
            g
        });
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
