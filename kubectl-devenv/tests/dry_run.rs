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
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, ResourceQuota, Secret, Service, ServiceAccount,
};
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
        "ResourceQuota" => {
            let q: ResourceQuota = round_trip(doc);
            assert!(!q.spec.unwrap().hard.unwrap().is_empty());
        }
        "LimitRange" => {
            let l: LimitRange = round_trip(doc);
            assert!(!l.spec.unwrap().limits.is_empty());
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
    let args = [
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
        "3Gi",
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
    ];
    let kinds = validate_output(&args);
    assert_eq!(
        kinds,
        ["ServiceAccount", "Service", "NetworkPolicy", "StatefulSet"]
    );
    let docs = parse(&run_ok(&args)).unwrap();
    let by_kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap();

    // NAME and -n: every object is `full` in namespace team.
    for d in &docs {
        assert_eq!(d["metadata"]["name"], "full", "{}", d["kind"]);
        assert_eq!(d["metadata"]["namespace"], "team", "{}", d["kind"]);
    }
    let sts: StatefulSet = serde_json::from_value(by_kind("StatefulSet").clone()).unwrap();
    let annotations = sts.metadata.annotations.clone().unwrap();
    let spec = sts.spec.unwrap();
    let template = spec.template;
    let pod = template.spec.unwrap();
    let workspace = pod
        .containers
        .iter()
        .find(|c| c.name == "workspace")
        .unwrap();
    let clone = pod
        .init_containers
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.name == "clone"))
        .expect("--repo adds the clone init container");

    // --image: the workspace container and the clone container (it needs git).
    assert_eq!(workspace.image.as_deref(), Some("example.com/dev:2"));
    assert_eq!(clone.image.as_deref(), Some("example.com/dev:2"));
    // --tier: the annotation on the StatefulSet and on its pods.
    assert_eq!(annotations["devenv.io/tier"], "large");
    assert_eq!(
        template.metadata.unwrap().annotations.unwrap()["devenv.io/tier"],
        "large"
    );
    // --replicas
    assert_eq!(spec.replicas, Some(2));
    // --secret: injected as environment, optional (the policy's Secret too).
    let secret_refs: Vec<(String, Option<bool>)> = workspace
        .env_from
        .iter()
        .flatten()
        .filter_map(|e| e.secret_ref.as_ref())
        .map(|r| (r.name.clone(), r.optional))
        .collect();
    assert!(
        secret_refs.contains(&("tokens".to_owned(), Some(true))),
        "{secret_refs:?}"
    );
    // --repo and --branch: what the clone container clones.
    let env = |name: &str| {
        clone
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        env("DEVENV_REPO").as_deref(),
        Some("https://github.com/org/api.git")
    );
    assert_eq!(env("DEVENV_BRANCH").as_deref(), Some("main"));
    assert_eq!(env("DEVENV_REPO_DIR").as_deref(), Some("api"));
    // --storage-class and the three sizes: the claim templates.
    let claims: Vec<(String, String, Option<String>)> = spec
        .volume_claim_templates
        .unwrap()
        .into_iter()
        .map(|c| {
            let s = c.spec.unwrap();
            (
                c.metadata.name.unwrap(),
                s.resources.unwrap().requests.unwrap()["storage"].0.clone(),
                s.storage_class_name,
            )
        })
        .collect();
    let fast = Some("fast".to_owned());
    assert_eq!(
        claims,
        [
            ("workspace".to_owned(), "50Gi".to_owned(), fast.clone()),
            ("history".to_owned(), "2Gi".to_owned(), fast.clone()),
            ("config".to_owned(), "3Gi".to_owned(), fast),
        ]
    );
    // --cpu and --memory: requests and limits of both containers.
    for c in [workspace, clone] {
        let r = c.resources.as_ref().unwrap();
        for list in [r.requests.as_ref().unwrap(), r.limits.as_ref().unwrap()] {
            assert_eq!(list["cpu"].0, "4", "{}", c.name);
            assert_eq!(list["memory"].0, "8Gi", "{}", c.name);
        }
    }
    // --idle-timeout: the workspace's annotation, as written.
    assert_eq!(annotations["devenv.io/idle-timeout"], "2h");
    // --keep-alive: an idle loop instead of the image's entrypoint.
    let command = workspace.command.clone().unwrap_or_default();
    assert_eq!(command[..2], ["/bin/sh", "-c"], "{command:?}");
    assert!(command[2].contains("while sleep"), "{command:?}");

    // Without the flags none of that is there.
    let plain = parse(&run_ok(&[
        "create",
        "full",
        "--dry-run=client",
        "-o",
        "yaml",
    ]))
    .unwrap();
    let plain = plain.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
    let plain: StatefulSet = serde_json::from_value(plain.clone()).unwrap();
    assert!(!plain
        .metadata
        .annotations
        .unwrap()
        .contains_key("devenv.io/idle-timeout"));
    let plain = plain.spec.unwrap();
    assert_eq!(plain.replicas, Some(1));
    let plain_pod = plain.template.spec.unwrap();
    assert!(plain_pod.init_containers.is_none());
    assert!(plain_pod.containers[0].command.is_none());
    assert!(plain.volume_claim_templates.unwrap().iter().all(|c| c
        .spec
        .as_ref()
        .unwrap()
        .storage_class_name
        .is_none()));
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
            assert!(devenv_shared::build::certs::bundle_contains(
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

#[test]
fn tenant_add_yaml_and_json() {
    for format in ["yaml", "json"] {
        let kinds = validate_output(&[
            "tenant",
            "add",
            "team-a",
            "--user",
            "alice",
            "--dry-run=client",
            "-o",
            format,
        ]);
        assert_eq!(
            kinds,
            ["Namespace", "ResourceQuota", "LimitRange", "RoleBinding"]
        );
    }
}

/// The quota of `tenant add --workspaces 3 --tier large` with the default policy: large
/// is 2 CPU / 8Gi requested, 8 CPU / 16Gi limit; every workspace has 10Gi + 1Gi + 1Gi of
/// claims.
#[test]
fn tenant_add_quota_is_the_tier_times_the_workspaces() {
    let text = run_ok(&[
        "tenant",
        "add",
        "team-a",
        "--user",
        "alice",
        "--group",
        "team-a-devs",
        "--workspaces",
        "3",
        "--tier",
        "large",
        "-n",
        "ignored",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let docs = parse(&text).unwrap();
    let by_kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap().clone();

    let quota: ResourceQuota = serde_json::from_value(by_kind("ResourceQuota")).unwrap();
    assert_eq!(quota.metadata.name.as_deref(), Some("devenv"));
    assert_eq!(quota.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(
        quota.metadata.annotations.unwrap()["devenv.io/tier"],
        "large"
    );
    let hard: Vec<(String, String)> = quota
        .spec
        .unwrap()
        .hard
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let want: Vec<(String, String)> = [
        ("count/statefulsets.apps", "3"),
        ("limits.cpu", "24"),
        ("limits.memory", "48Gi"),
        ("persistentvolumeclaims", "9"),
        ("pods", "3"),
        ("requests.cpu", "6"),
        ("requests.memory", "24Gi"),
        ("requests.storage", "36Gi"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(hard, want);

    let limits: LimitRange = serde_json::from_value(by_kind("LimitRange")).unwrap();
    let item = &limits.spec.unwrap().limits[0];
    assert_eq!(item.type_, "Container");
    let max = item.max.clone().unwrap();
    assert_eq!(
        (max["cpu"].0.as_str(), max["memory"].0.as_str()),
        ("8", "16Gi")
    );
    assert!(item.default.is_none() && item.default_request.is_none());

    // The namespace is the tenant's name, whatever -n says, and enforces restricted.
    let ns: Namespace = serde_json::from_value(by_kind("Namespace")).unwrap();
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(ns.metadata.name.as_deref(), Some("team-a"));
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels["devenv.io/tenant"], "team-a");

    let rb: RoleBinding = serde_json::from_value(by_kind("RoleBinding")).unwrap();
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("ClusterRole", "devenv-user")
    );
    let subjects: Vec<(String, String)> = rb
        .subjects
        .unwrap()
        .into_iter()
        .map(|s| (s.kind, s.name))
        .collect();
    assert_eq!(
        subjects,
        [
            ("User".to_owned(), "alice".to_owned()),
            ("Group".to_owned(), "team-a-devs".to_owned())
        ]
    );
}

#[test]
fn tenant_add_sizes_from_the_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        "defaultTier: dev\ntiers:\n  dev:\n    requests: {cpu: 250m, memory: 1Gi}\n    limits: {cpu: 1, memory: 3Gi}\nvolumes:\n- {name: workspace, size: 5Gi, mountPath: /workspace}\n",
    )
    .unwrap();
    let text = run_ok(&[
        "tenant",
        "add",
        "solo",
        "--user",
        "dana",
        "--workspaces",
        "2",
        "--policy-file",
        path.to_str().unwrap(),
        "--dry-run=client",
        "-o",
        "json",
    ]);
    let docs = parse(&text).unwrap();
    let quota = docs.iter().find(|d| d["kind"] == "ResourceQuota").unwrap();
    let hard = &quota["spec"]["hard"];
    assert_eq!(hard["requests.cpu"], "500m");
    assert_eq!(hard["limits.memory"], "6Gi");
    assert_eq!(hard["requests.storage"], "10Gi");
    assert_eq!(hard["persistentvolumeclaims"], "2");
    assert_eq!(quota["metadata"]["annotations"]["devenv.io/tier"], "dev");
}

#[test]
fn tenant_remove_dry_run_names_what_would_go() {
    let text = run_ok(&["tenant", "remove", "team-a", "--dry-run=client"]);
    assert!(
        text.contains("rolebinding.rbac.authorization.k8s.io/devenv-user deleted (dry run)"),
        "{text}"
    );
    assert!(
        text.contains("every claim and the namespace kept"),
        "{text}"
    );
    assert!(!text.contains("namespace/team-a"), "{text}");
    let text = run_ok(&["tenant", "remove", "team-a", "--purge", "--dry-run=client"]);
    assert_eq!(text, "namespace/team-a deleted (dry run)\n");
}
