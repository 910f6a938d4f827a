//! The Kubernetes manifests of `deploy/kubernetes/`, checked as text (no cluster
//! here): the ConfigMap's `warmpool.toml` is a valid configuration for the
//! Kubernetes runtime, the Role grants exactly the verbs the runtime uses, and the
//! Deployment runs one replica, recreated, on a PersistentVolumeClaim; every
//! setting the manifests name exists.

use std::path::{Path, PathBuf};

use warmpool_server::config::{Config, RuntimeKind};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

fn manifest(name: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(name)).unwrap()
}

#[test]
fn the_configmap_holds_a_valid_kubernetes_configuration() {
    let yaml = manifest("configmap.yaml");
    let start = yaml.find("warmpool.toml: |").expect("a warmpool.toml key");
    let toml: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let file = Config::parse_file(&toml).unwrap();
    let config = Config::from_sources(|_| None, &file).unwrap();
    assert_eq!(config.runtime, RuntimeKind::Kubernetes);
    assert_eq!(config.k8s_namespace, "warmpool");
    assert_eq!(config.data_dir, PathBuf::from("/data"));
    assert!(
        !config.listen.ip().is_loopback(),
        "reachable through the Service"
    );
}

#[test]
fn the_role_grants_exactly_what_the_runtime_uses_on_pods() {
    let rbac = manifest("rbac.yaml");
    let rules: Vec<&str> = rbac
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("verbs:") || l.trim_start().starts_with("resources:")
        })
        .map(str::trim)
        .collect();
    assert_eq!(
        rules,
        [
            r#"resources: ["pods"]"#,
            r#"verbs: ["create", "get", "list", "watch", "delete"]"#
        ]
    );
    assert!(rbac.contains("kind: ServiceAccount") && rbac.contains("kind: RoleBinding"));
    assert!(!rbac.contains("ClusterRole"), "namespaced only");
}

#[test]
fn warmpool_runs_as_one_recreated_replica_on_a_volume() {
    let d = manifest("deployment.yaml");
    assert!(d.contains("replicas: 1\n"));
    assert!(d.contains("type: Recreate"));
    assert!(d.contains("serviceAccountName: warmpool"));
    assert!(d.contains("claimName: warmpool-data") && d.contains("mountPath: /data"));
    assert!(manifest("storage.yaml").contains("kind: PersistentVolumeClaim"));
    assert!(manifest("service.yaml").contains("kind: Service"));
    // kustomization.yaml lists every manifest.
    let k = manifest("kustomization.yaml");
    for e in std::fs::read_dir(deploy_dir()).unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                k.contains(&format!("- {name}")),
                "{name} missing from kustomization.yaml"
            );
        }
    }
}

/// Every setting the manifests name (in comments too) is one warmpool reads: a
/// renamed or misspelt env var (`WARMPOOL_K8S_NAMESPACE` once) fails here.
#[test]
fn every_setting_the_manifests_name_exists() {
    let known: Vec<&str> = warmpool_server::config::SETTINGS
        .iter()
        .map(|s| s.env)
        .collect();
    let mut named = 0;
    for entry in std::fs::read_dir(deploy_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("WARMPOOL_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            assert!(
                known.contains(&name.as_str()),
                "{} names {name}, which is no setting",
                path.display()
            );
            named += 1;
        }
    }
    assert!(
        named >= 3,
        "the manifests name the namespace and the tokens"
    );
}

/// The Dockerfile a script writes (its `<<'DOCKERFILE'` heredoc).
fn dockerfile_of(script: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts")
            .join(script),
    )
    .unwrap();
    let start = text.find("<<'DOCKERFILE'\n").expect("a Dockerfile heredoc") + 15;
    let end = start + text[start..].find("\nDOCKERFILE").unwrap();
    text[start..end].to_owned()
}

/// warmpool's image and the sample image run as the unprivileged user 65532
/// (the one the Deployment and the runtime's pods name), which owns the
/// directories each writes. The sample image's user is also checked on a real
/// container (`tests/hardening_docker.rs`).
#[test]
fn both_images_run_as_a_non_root_user_that_owns_their_writable_directories() {
    for (script, dirs) in [
        ("build-image.sh", &["/data"][..]),
        ("build-sample-image.sh", &["/data", "/warmpool/files"][..]),
    ] {
        let dockerfile = dockerfile_of(script);
        let user: Vec<&str> = dockerfile
            .lines()
            .filter(|l| l.starts_with("USER "))
            .collect();
        assert_eq!(user, ["USER 65532:65532"], "{script}");
        for dir in dirs {
            assert!(
                dockerfile
                    .lines()
                    .any(|l| l.starts_with("COPY --chown=65532:65532 ")
                        && l.ends_with(&format!(" {dir}"))),
                "{script}: {dir} is not the user's"
            );
        }
    }
    assert!(manifest("deployment.yaml").contains("runAsUser: 65532"));
}
