//! The YAML in manifests/ is exactly what the plugin prints:
//!
//! - manifests/install.yaml = `install --dry-run=client -o yaml --no-certs`
//!   (after its leading comment block)
//! - manifests/examples/workspace.yaml = `create demo --dry-run=client -o yaml`
//!
//! Run with UPDATE_MANIFESTS=1 to rewrite them from the current code.

mod common;

use std::path::Path;

use common::{repo_root, run_ok};

/// Leading `#` lines (and blank lines among them) of a file.
fn header(text: &str) -> String {
    text.lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

fn check(path: &Path, generated: &str) {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let head = header(&existing);
    let expected = format!("{head}{generated}");
    if std::env::var_os("UPDATE_MANIFESTS").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, &expected).unwrap();
        return;
    }
    assert!(
        existing == expected,
        "{} is out of date with the plugin's output; regenerate it with:\n  \
         UPDATE_MANIFESTS=1 cargo test -p kubectl-devenv --test manifests",
        path.display()
    );
}

#[test]
fn install_manifest_matches_install_dry_run() {
    let out = run_ok(&["install", "--dry-run=client", "-o", "yaml", "--no-certs"]);
    assert!(
        !out.contains("BEGIN CERTIFICATE"),
        "no certificate may be in git"
    );
    assert!(!out.contains("PRIVATE KEY"), "no key may be in git");
    assert!(!out.contains("caBundle"));
    check(&repo_root().join("manifests/install.yaml"), &out);
}

#[test]
fn example_workspace_matches_create_dry_run() {
    let out = run_ok(&["create", "demo", "--dry-run=client", "-o", "yaml"]);
    check(&repo_root().join("manifests/examples/workspace.yaml"), &out);
}

#[test]
fn kustomization_lists_the_install_manifest() {
    let text = std::fs::read_to_string(repo_root().join("manifests/kustomization.yaml")).unwrap();
    let k: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(k["kind"], "Kustomization");
    let resources: Vec<&str> = k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(resources, vec!["install.yaml"]);
}

#[test]
fn cert_manager_overlay_issues_the_webhook_secret() {
    use devenv_shared::build::install::{service_sans, DEFAULT_NAMESPACE, TLS_SECRET};
    let dir = repo_root().join("manifests/cert-manager");
    let k: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let resources: Vec<&str> = k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(resources.contains(&"../install.yaml") && resources.contains(&"certificates.yaml"));
    let text = std::fs::read_to_string(dir.join("certificates.yaml")).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let serving = docs
        .iter()
        .find(|d| d["kind"] == "Certificate" && d["spec"]["secretName"] == TLS_SECRET)
        .expect("a Certificate issuing the webhook's TLS Secret");
    assert_eq!(
        serving["metadata"]["name"], TLS_SECRET,
        "inject-ca-from names it"
    );
    assert_eq!(serving["metadata"]["namespace"], DEFAULT_NAMESPACE);
    let dns: Vec<String> = serving["spec"]["dnsNames"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for san in service_sans(DEFAULT_NAMESPACE) {
        assert!(dns.contains(&san), "missing dnsName {san}");
    }
}
