//! Validation messages: each rule names the field path, the rule and what to do.

mod common;

use common::{mutate_raw, raw, typed};
use devenv_shared::admission::containers;
use devenv_shared::admission::validate::{validate_pod, validate_statefulset};
use devenv_shared::admission::violation::{NoExtraSecrets, Violation};
use devenv_shared::model::policy::Policy;
use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{json, Value};

/// A pod that satisfies everything (the default policy's mutation applied).
fn compliant() -> Value {
    let doc = raw(r#"
apiVersion: v1
kind: Pod
metadata:
  name: alice
  namespace: team-a
  labels: {devenv.io/workspace: alice}
spec:
  containers:
  - {name: dev, image: x}
  initContainers:
  - {name: init, image: x}
"#);
    let (_, patched, _) = mutate_raw(&Policy::default(), &doc);
    patched
}

/// Appends to a list of the document (the list must exist).
fn push(list: &mut Value, item: Value) {
    match list.as_array_mut() {
        Some(items) => items.push(item),
        None => panic!("not a list: {list}"),
    }
}

fn violations(doc: &Value) -> Vec<Violation> {
    validate_pod(&Policy::default(), &typed(doc), &NoExtraSecrets)
}

fn lines(doc: &Value) -> Vec<String> {
    violations(doc).iter().map(ToString::to_string).collect()
}

/// Asserts exactly one violation, on `field`, whose text contains every fragment.
fn expect_one(doc: &Value, field: &str, fragments: &[&str]) {
    let found = violations(doc);
    assert_eq!(
        found.len(),
        1,
        "expected one violation on {field}, got {found:#?}"
    );
    assert_eq!(found[0].field, field);
    for f in fragments {
        assert!(
            found[0].message.contains(f),
            "{:?} lacks {f:?}",
            found[0].message
        );
    }
}

#[test]
fn compliant_pod_has_no_violations() {
    assert!(
        violations(&compliant()).is_empty(),
        "{:?}",
        lines(&compliant())
    );
}

#[test]
fn display_is_field_colon_message() {
    let mut doc = compliant();
    doc["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true);
    let l = lines(&doc);
    assert!(
        l.iter().any(|l| l.starts_with(
            "spec.containers[0].securityContext.privileged: privileged containers are not allowed in workspaces"
        )),
        "{l:?}"
    );
}

#[test]
fn privileged_pod_also_fails_privilege_escalation() {
    let mut doc = compliant();
    doc["spec"]["containers"][0]["securityContext"] =
        json!({"privileged": true, "capabilities": {"drop": ["ALL"]}});
    let fields: Vec<_> = violations(&doc).into_iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        vec![
            "spec.containers[0].securityContext.privileged",
            "spec.containers[0].securityContext.allowPrivilegeEscalation",
        ]
    );
}

#[test]
fn host_namespaces() {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        let mut doc = compliant();
        doc["spec"][field] = json!(true);
        expect_one(
            &doc,
            &format!("spec.{field}"),
            &["host namespaces", "set it to false"],
        );
    }
    let mut doc = compliant();
    doc["spec"]["hostNetwork"] = json!(false);
    assert!(violations(&doc).is_empty());
}

#[test]
fn capabilities() {
    let mut doc = compliant();
    doc["spec"]["containers"][0]["securityContext"]["capabilities"] =
        json!({"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN", "SYS_ADMIN"]});
    let found = violations(&doc);
    let fields: Vec<_> = found.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.containers[0].securityContext.capabilities.add[1]",
            "spec.containers[0].securityContext.capabilities.add[2]",
        ]
    );
    assert!(found[0].message.contains("\"CHOWN\""));
    assert!(!found[0].message.contains("not even the baseline"));
    assert!(found[1]
        .message
        .contains("not even the baseline standard allows it"));
    assert!(found[1]
        .message
        .contains("only NET_BIND_SERVICE may be added"));

    let mut doc = compliant();
    doc["spec"]["initContainers"][0]["securityContext"]["capabilities"] = json!({"drop": ["all"]});
    expect_one(
        &doc,
        "spec.initContainers[0].securityContext.capabilities.drop",
        &[
            "init container \"init\" must drop all capabilities",
            "[\"ALL\"]",
        ],
    );
}

#[test]
fn volume_types() {
    let mut doc = compliant();
    push(
        &mut doc["spec"]["volumes"],
        json!({"name": "host", "hostPath": {"path": "/"}}),
    );
    expect_one(
        &doc,
        "spec.volumes[3].hostPath",
        &[
            "volume \"host\" uses the hostPath volume type",
            "volume types",
            "persistentVolumeClaim",
        ],
    );
    // Allowed types, and a source-less volume (the API server defaults it to emptyDir).
    let mut doc = compliant();
    let volumes = &mut doc["spec"]["volumes"];
    push(volumes, json!({"name": "e", "emptyDir": {}}));
    push(volumes, json!({"name": "c", "configMap": {"name": "c"}}));
    push(volumes, json!({"name": "i", "image": {"reference": "x"}}));
    push(volumes, json!({"name": "n"}));
    assert!(violations(&doc).is_empty(), "{:?}", lines(&doc));
}

#[test]
fn host_ports() {
    let mut doc = compliant();
    doc["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": 80}, {"containerPort": 81, "hostPort": 8081}]);
    expect_one(
        &doc,
        "spec.containers[0].ports[1].hostPort",
        &["host port 8081", "port-forward"],
    );
}

#[test]
fn app_armor() {
    let mut doc = compliant();
    doc["metadata"]["annotations"] = json!({
        "container.apparmor.security.beta.kubernetes.io/dev": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/init": "localhost/x",
    });
    expect_one(
        &doc,
        "metadata.annotations[container.apparmor.security.beta.kubernetes.io/dev]",
        &["\"unconfined\"", "runtime/default or localhost/<profile>"],
    );
    let mut doc = compliant();
    doc["spec"]["securityContext"]["appArmorProfile"] = json!({"type": "Unconfined"});
    doc["spec"]["containers"][0]["securityContext"]["appArmorProfile"] =
        json!({"type": "RuntimeDefault"});
    expect_one(
        &doc,
        "spec.securityContext.appArmorProfile.type",
        &["Unconfined", "RuntimeDefault or Localhost"],
    );
}

#[test]
fn se_linux() {
    let mut doc = compliant();
    doc["spec"]["securityContext"]["seLinuxOptions"] =
        json!({"type": "spc_t", "user": "u", "role": "", "level": "s0"});
    doc["spec"]["containers"][0]["securityContext"]["seLinuxOptions"] =
        json!({"type": "container_engine_t"});
    let fields: Vec<_> = violations(&doc).into_iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        vec![
            "spec.securityContext.seLinuxOptions.type",
            "spec.securityContext.seLinuxOptions.user",
        ]
    );
}

#[test]
fn proc_mount_even_in_a_user_namespace() {
    let mut doc = compliant();
    doc["spec"]["hostUsers"] = json!(false);
    doc["spec"]["containers"][0]["securityContext"]["procMount"] = json!("Unmasked");
    expect_one(
        &doc,
        "spec.containers[0].securityContext.procMount",
        &["\"Unmasked\"", "Default"],
    );
}

#[test]
fn seccomp() {
    let mut doc = compliant();
    doc["spec"]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
    let found = violations(&doc);
    let fields: Vec<_> = found.iter().map(|v| v.field.as_str()).collect();
    // The explicit bad value, and the containers left without a valid profile.
    assert_eq!(fields, vec!["spec.securityContext.seccompProfile.type"; 2]);
    assert!(found[0].message.contains("\"Unconfined\" is not allowed"));
    assert!(
        found[1]
            .message
            .contains("on the pod or on containers \"init\", \"dev\""),
        "{}",
        found[1].message
    );

    // Every container setting it is enough.
    let mut doc = compliant();
    doc["spec"]["securityContext"]
        .as_object_mut()
        .map(|sc| sc.remove("seccompProfile"));
    for list in ["containers", "initContainers"] {
        doc["spec"][list][0]["securityContext"]["seccompProfile"] =
            json!({"type": "Localhost", "localhostProfile": "p.json"});
    }
    assert!(violations(&doc).is_empty(), "{:?}", lines(&doc));
}

#[test]
fn sysctls() {
    let mut doc = compliant();
    doc["spec"]["securityContext"]["sysctls"] = json!([
        {"name": "net.ipv4.tcp_notsent_lowat", "value": "16384"},
        {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 16777216"},
        {"name": "kernel.msgmax", "value": "1"},
    ]);
    expect_one(
        &doc,
        "spec.securityContext.sysctls[2].name",
        &["\"kernel.msgmax\"", "safe set"],
    );
}

#[test]
fn windows_host_process() {
    let mut doc = compliant();
    doc["spec"]["containers"][0]["securityContext"]["windowsOptions"] =
        json!({"hostProcess": true});
    expect_one(
        &doc,
        "spec.containers[0].securityContext.windowsOptions.hostProcess",
        &["HostProcess"],
    );
}

#[test]
fn probe_and_lifecycle_hosts() {
    let mut doc = compliant();
    let c = &mut doc["spec"]["containers"][0];
    c["livenessProbe"] = json!({"httpGet": {"port": 80, "host": "10.0.0.1"}});
    c["readinessProbe"] = json!({"tcpSocket": {"port": 80}});
    c["lifecycle"] = json!({"preStop": {"tcpSocket": {"port": 80, "host": "db"}}});
    let fields: Vec<_> = violations(&doc).into_iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        vec![
            "spec.containers[0].livenessProbe.httpGet.host",
            "spec.containers[0].lifecycle.preStop.tcpSocket.host",
        ]
    );
}

#[test]
fn privilege_escalation() {
    let mut doc = compliant();
    doc["spec"]["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
    expect_one(
        &doc,
        "spec.initContainers[0].securityContext.allowPrivilegeEscalation",
        &[
            "init container \"init\" must not allow privilege escalation",
            "set securityContext.allowPrivilegeEscalation to false",
        ],
    );
}

#[test]
fn run_as_non_root_and_user() {
    let mut doc = compliant();
    doc["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
    doc["spec"]["containers"][0]["securityContext"]["runAsUser"] = json!(0);
    let fields: Vec<_> = violations(&doc).into_iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        vec![
            "spec.containers[0].securityContext.runAsNonRoot",
            "spec.containers[0].securityContext.runAsUser",
        ]
    );

    // Not set on the pod: every container must set it.
    let mut doc = compliant();
    doc["spec"]["securityContext"]["runAsNonRoot"] = Value::Null;
    doc["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = json!(true);
    expect_one(
        &doc,
        "spec.securityContext.runAsNonRoot",
        &["on the pod or on container \"init\""],
    );

    // A user-namespaced pod is exempt (policy v1.35+): root there is not root on the node.
    let mut doc = compliant();
    doc["spec"]["hostUsers"] = json!(false);
    doc["spec"]["securityContext"]["runAsNonRoot"] = json!(false);
    doc["spec"]["securityContext"]["runAsUser"] = json!(0);
    assert!(violations(&doc).is_empty(), "{:?}", lines(&doc));
}

#[test]
fn windows_pods_are_exempt_from_linux_only_checks() {
    let doc = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "w", "namespace": "ns", "labels": {"devenv.io/workspace": "w"}},
        "spec": {
            "os": {"name": "windows"},
            "serviceAccountName": "w",
            "securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]
        }
    });
    assert!(violations(&doc).is_empty(), "{:?}", lines(&doc));
    assert!(containers::is_windows(
        typed(&doc).spec.as_ref().map_or(&Default::default(), |s| s)
    ));
}

#[test]
fn unknown_tier_lists_the_tiers() {
    let mut doc = compliant();
    doc["metadata"]["annotations"] = json!({"devenv.io/tier": "huge"});
    expect_one(
        &doc,
        "metadata.annotations[devenv.io/tier]",
        &[
            "unknown tier \"huge\"; use one of: large, micro, small",
            "default tier, small",
        ],
    );
}

#[test]
fn resources_above_the_tier() {
    let mut doc = compliant();
    doc["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "6", "memory": "4Gi"}, "requests": {"cpu": "500m", "memory": "5Gi"}});
    let found = violations(&doc);
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 2, "{text:?}");
    assert!(text[0].starts_with(
        "spec.containers[0].resources.limits.cpu: 6 is above the cpu limit of tier \"small\" (2); lower it or choose a larger tier with the devenv.io/tier annotation (tiers: large, micro, small)"
    ), "{text:?}");
    assert!(text[1].starts_with("spec.containers[0].resources.requests.memory: 5Gi is above the memory limit of tier \"small\" (4Gi)"), "{text:?}");

    // The same pod fits the large tier.
    doc["metadata"]["annotations"] = json!({"devenv.io/tier": "large"});
    assert!(violations(&doc).is_empty(), "{:?}", lines(&doc));

    // A missing limit is unbounded, hence above the tier.
    let mut doc = compliant();
    doc["spec"]["initContainers"][0]["resources"] = json!({"limits": {"cpu": "1"}});
    expect_one(
        &doc,
        "spec.initContainers[0].resources.limits.memory",
        &["limit is required", "at most 4Gi"],
    );
}

#[test]
fn secrets_must_be_injectable() {
    let mut doc = compliant();
    let c = &mut doc["spec"]["containers"][0];
    c["env"] = json!([
        {"name": "A", "value": "x"},
        {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    ]);
    push(
        &mut c["envFrom"],
        json!({"secretRef": {"name": "team-token"}}),
    );
    let volumes = &mut doc["spec"]["volumes"];
    push(
        volumes,
        json!({"name": "s", "secret": {"secretName": "tls"}}),
    );
    push(
        volumes,
        json!({"name": "p", "projected": {"sources": [
            {"configMap": {"name": "c"}},
            {"secret": {"name": "devenv-secrets"}},
            {"secret": {"name": "other"}},
        ]}}),
    );
    let found = violations(&doc);
    let fields: Vec<_> = found.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.containers[0].env[1].valueFrom.secretKeyRef.name",
            "spec.containers[0].envFrom[1].secretRef.name",
            "spec.volumes[3].secret.secretName",
            "spec.volumes[4].projected.sources[2].secret.name",
        ]
    );
    assert_eq!(
        found[0].message,
        "Secret \"db\" is not injectable into workspaces; label it devenv.io/inject=true in namespace \"team-a\" or add it to the policy's secrets.inject"
    );

    // Injectable per the catalog (namespace-aware).
    let catalog = |ns: &str, name: &str| ns == "team-a" && name != "other";
    let found = validate_pod(&Policy::default(), &typed(&doc), &catalog);
    let fields: Vec<_> = found.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["spec.volumes[4].projected.sources[2].secret.name"]
    );
}

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: alice, namespace: team-a}
spec:
  serviceName: alice
  selector: {matchLabels: {devenv.io/workspace: alice}}
  template:
    metadata:
      labels: {devenv.io/workspace: alice}
    spec:
      containers:
      - {name: dev, image: x}
"#;

fn sts_violations(doc: &Value) -> Vec<Violation> {
    let sts: StatefulSet = match serde_json::from_value(doc.clone()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    validate_statefulset(&Policy::default(), &sts, &NoExtraSecrets)
}

#[test]
fn statefulset_template_is_judged_as_its_pods_will_be() {
    // Leaves out what pod mutation fills in: fine.
    let doc = raw(STS);
    assert!(
        sts_violations(&doc).is_empty(),
        "{:?}",
        sts_violations(&doc)
    );

    // States forbidden values: refused now, with template paths.
    let mut doc = raw(STS);
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
        json!({"privileged": true});
    doc["spec"]["template"]["spec"]["hostPID"] = json!(true);
    doc["spec"]["template"]["metadata"]["annotations"] = json!({"devenv.io/tier": "xl"});
    let fields: Vec<_> = sts_violations(&doc).into_iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        vec![
            "spec.template.spec.hostPID",
            "spec.template.spec.containers[0].securityContext.privileged",
            "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation",
            "spec.template.metadata.annotations[devenv.io/tier]",
        ]
    );

    let doc = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"}});
    let fields: Vec<_> = sts_violations(&doc).into_iter().map(|v| v.field).collect();
    assert_eq!(fields, vec!["spec"]);
}

#[test]
fn pod_without_spec_is_refused() {
    let doc = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}});
    let fields: Vec<_> = violations(&doc).into_iter().map(|v| v.field).collect();
    assert_eq!(fields, vec!["spec"]);
}

#[test]
fn workspace_name_must_be_a_dns_label() {
    let mut doc = compliant();
    doc["metadata"]["labels"]["devenv.io/workspace"] = json!("Alice_1");
    expect_one(
        &doc,
        "metadata.labels[devenv.io/workspace]",
        &[
            "\"Alice_1\" is not a valid workspace name",
            "DNS-1123 label",
        ],
    );
}
