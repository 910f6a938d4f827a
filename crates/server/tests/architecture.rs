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

const CRATES: [&str; 8] = [
    "core",
    "store",
    "runtime",
    "docker",
    "kubernetes",
    "client",
    "sample-app",
    "server",
];

#[test]
fn only_the_docker_crate_depends_on_bollard() {
    for c in CRATES {
        assert_eq!(deps(c).iter().any(|d| d == "bollard"), c == "docker", "{c}");
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
