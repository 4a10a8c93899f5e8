//! Every `--dry-run=client` output is valid for the pinned Kubernetes API
//! (k8s-openapi, v1.33): each printed object deserializes into its typed
//! struct (which fails on a missing required field or a wrong type) and
//! serializes back to exactly the printed JSON (which fails on any unknown or
//! misspelled field, since k8s-openapi drops those). All without a cluster.

mod common;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

use common::{run, run_ok};
use kubectl_devenv::output::parse;

fn round_trip<T: Serialize + DeserializeOwned>(doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("not a valid {}: {e}\n{doc:#}", doc["kind"]));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, doc,
        "fields lost in the round trip of {}",
        doc["kind"]
    );
    typed
}

/// Validates one printed object; returns its kind.
fn validate(doc: &Value) -> String {
    let kind = doc["kind"]
        .as_str()
        .expect("every object has a kind")
        .to_owned();
    assert!(doc["apiVersion"].is_string(), "{kind} has no apiVersion");
    assert!(
        doc["metadata"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "{kind} has no name"
    );
    match kind.as_str() {
        "Namespace" => {
            round_trip::<Namespace>(doc);
        }
        "ServiceAccount" => {
            round_trip::<ServiceAccount>(doc);
        }
        "Service" => {
            let s: Service = round_trip(doc);
            assert!(!s.spec.unwrap().ports.unwrap().is_empty());
        }
        "NetworkPolicy" => {
            round_trip::<NetworkPolicy>(doc);
        }
        "StatefulSet" => {
            let s: StatefulSet = round_trip(doc);
            let spec = s.spec.unwrap();
            let pod = spec.template.spec.unwrap();
            assert!(!pod.containers.is_empty());
            assert!(pod.containers.iter().all(|c| c.image.is_some()));
            assert!(spec
                .template
                .metadata
                .unwrap()
                .labels
                .unwrap()
                .iter()
                .all(|(k, v)| {
                    spec.selector
                        .match_labels
                        .as_ref()
                        .unwrap()
                        .get(k)
                        .is_none_or(|s| s == v)
                }));
        }
        "Deployment" => {
            let d: Deployment = round_trip(doc);
            let pod = d.spec.unwrap().template.spec.unwrap();
            assert!(pod.containers.iter().all(|c| c.image.is_some()));
        }
        "ClusterRole" => {
            round_trip::<ClusterRole>(doc);
        }
        "ClusterRoleBinding" => {
            round_trip::<ClusterRoleBinding>(doc);
        }
        "Role" => {
            round_trip::<Role>(doc);
        }
        "RoleBinding" => {
            round_trip::<RoleBinding>(doc);
        }
        "ConfigMap" => {
            round_trip::<ConfigMap>(doc);
        }
        "Secret" => {
            // Redacted values are not base64, so only the shape is checked.
            let mut shape = doc.clone();
            if let Some(Value::Object(data)) = shape.get_mut("data") {
                for v in data.values_mut() {
                    if v == "<redacted>" {
                        *v = Value::String(String::new());
                    }
                }
            }
            round_trip::<Secret>(&shape);
        }
        "PodDisruptionBudget" => {
            round_trip::<PodDisruptionBudget>(doc);
        }
        "MutatingWebhookConfiguration" => {
            let m: MutatingWebhookConfiguration = round_trip(doc);
            assert!(!m.webhooks.unwrap().is_empty());
        }
        "ValidatingWebhookConfiguration" => {
            let v: ValidatingWebhookConfiguration = round_trip(doc);
            assert!(!v.webhooks.unwrap().is_empty());
        }
        other => panic!("unexpected kind {other}"),
    }
    kind
}

fn validate_output(args: &[&str]) -> Vec<String> {
    let text = run_ok(args);
    let docs = parse(&text).unwrap_or_else(|e| panic!("{args:?} printed unparsable output: {e}"));
    assert!(!docs.is_empty(), "{args:?} printed nothing");
    docs.iter().map(validate).collect()
}

#[test]
fn create_yaml_and_json() {
    for format in ["yaml", "json"] {
        let kinds = validate_output(&["create", "demo", "--dry-run=client", "-o", format]);
        assert_eq!(
            kinds,
            ["ServiceAccount", "Service", "NetworkPolicy", "StatefulSet"]
        );
    }
}

#[test]
fn create_with_every_flag() {
    validate_output(&[
        "create",
        "full",
        "-n",
        "team",
        "--image",
        "example.com/dev:2",
        "--tier",
        "large",
        "--replicas",
        "2",
        "--secret",
        "tokens",
        "--repo",
        "https://github.com/org/api.git",
        "--branch",
        "main",
        "--storage-class",
        "fast",
        "--workspace-size",
        "50Gi",
        "--history-size",
        "2Gi",
        "--config-size",
        "2Gi",
        "--cpu",
        "4",
        "--memory",
        "8Gi",
        "--idle-timeout",
        "2h",
        "--keep-alive",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
}

#[test]
fn install_variants() {
    let kinds = validate_output(&["install", "--dry-run=client", "-o", "yaml"]);
    assert!(kinds.contains(&"Secret".to_owned()) && kinds.contains(&"Deployment".to_owned()));
    let kinds = validate_output(&["install", "--dry-run=client", "-o", "json", "--no-certs"]);
    assert!(!kinds.contains(&"Secret".to_owned()));
    let kinds = validate_output(&[
        "install",
        "--dry-run=client",
        "-o",
        "yaml",
        "--webhook-url",
        "https://127.0.0.1:8443",
    ]);
    assert!(!kinds.contains(&"Deployment".to_owned()));
    assert!(!kinds.contains(&"Service".to_owned()));
}

#[test]
fn install_certificate_matches_ca_bundle() {
    let text = run_ok(&["install", "--dry-run=client", "-o", "json"]);
    let docs = parse(&text).unwrap();
    let secret = docs.iter().find(|d| d["kind"] == "Secret").unwrap();
    let secret: Secret = serde_json::from_value(secret.clone()).unwrap();
    let ca = String::from_utf8(secret.data.unwrap()["ca.crt"].0.clone()).unwrap();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let doc = docs.iter().find(|d| d["kind"] == kind).unwrap();
        for hook in doc["webhooks"].as_array().unwrap() {
            let bundle: k8s_openapi::ByteString =
                serde_json::from_value(hook["clientConfig"]["caBundle"].clone()).unwrap();
            assert!(devenv_shared::install::bundle_contains(
                &String::from_utf8(bundle.0).unwrap(),
                &ca
            ));
        }
    }
}

#[test]
fn secrets_set_is_redacted() {
    let out = run(&[
        "secrets",
        "set",
        "--from-literal",
        "TOKEN=hunter2",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("aHVudGVyMg"),
        "{text}"
    );
    let docs = parse(&text).unwrap();
    assert_eq!(validate(&docs[0]), "Secret");
    assert_eq!(docs[0]["metadata"]["labels"]["devenv.io/inject"], "true");
    assert_eq!(docs[0]["metadata"]["name"], "devenv-secrets");
}

#[test]
fn scale_dry_run_prints_the_patch() {
    let text = run_ok(&[
        "scale",
        "demo",
        "--replicas",
        "3",
        "--dry-run=client",
        "-o",
        "json",
    ]);
    let patch: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(patch, serde_json::json!({"spec": {"replicas": 3}}));
}
