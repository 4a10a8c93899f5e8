//! Mutation on real pod shapes: patches apply to the raw object, fill only what is missing,
//! and are idempotent.

mod common;

use common::{apply_raw, at, mutate_raw, paths, raw, typed};
use devenv_shared::admission::mutate::{
    mutate_ephemeral_containers, mutate_pod, mutate_statefulset,
};
use devenv_shared::admission::validate::validate_pod;
use devenv_shared::admission::violation::NoExtraSecrets;
use devenv_shared::model::policy::Policy;
use json_patch::PatchOperation;
use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{json, Value};

const BARE: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: alice
  namespace: team-a
  labels:
    devenv.io/workspace: alice
spec:
  containers:
  - name: dev
    image: ghcr.io/devenv/base:1
"#;

fn policy() -> Policy {
    Policy::default()
}

#[test]
fn bare_pod_without_security_context_gets_everything() {
    let doc = raw(BARE);
    let (mutation, patched_doc, patched) = mutate_raw(&policy(), &doc);

    // One add for the whole pod securityContext, since the parent is absent.
    assert_eq!(
        at(&patched_doc, "/spec/securityContext"),
        Some(&json!({
            "runAsNonRoot": true,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"}
        }))
    );
    let c = &patched_doc["spec"]["containers"][0];
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(
        c["resources"],
        json!({"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "500m", "memory": "2Gi"}})
    );
    assert_eq!(
        c["volumeMounts"],
        json!([
            {"name": "workspace", "mountPath": "/workspace"},
            {"name": "history", "mountPath": "/commandhistory"},
            {"name": "config", "mountPath": "/home/dev/.config"}
        ])
    );
    assert_eq!(
        c["envFrom"],
        json!([{"secretRef": {"name": "devenv-secrets", "optional": true}}])
    );
    assert_eq!(
        patched_doc["spec"]["volumes"],
        json!([
            {"name": "workspace", "persistentVolumeClaim": {"claimName": "workspace-alice-bare"}},
            {"name": "history", "persistentVolumeClaim": {"claimName": "history-alice-bare"}},
            {"name": "config", "persistentVolumeClaim": {"claimName": "config-alice-bare"}}
        ])
    );

    // The lifecycle controller creates them once the pod exists; until then the pod waits.
    assert!(mutation.bare_claims);
    assert_eq!(
        patched_doc["spec"]["schedulingGates"],
        json!([{"name": "devenv.io/claims"}])
    );

    // The result satisfies the whole policy.
    let violations = validate_pod(&policy(), &patched, &NoExtraSecrets);
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn null_fields_are_filled_with_whole_objects() {
    // What a client may send: explicit nulls everywhere. `add` on a null member replaces it.
    let doc = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "n", "namespace": "ns", "labels": {"devenv.io/workspace": "n"}, "annotations": null},
        "spec": {
            "securityContext": null,
            "volumes": null,
            "initContainers": [{"name": "init", "image": "x", "securityContext": null, "resources": null}],
            "containers": [{
                "name": "dev", "image": "x",
                "securityContext": {"capabilities": null, "allowPrivilegeEscalation": null},
                "resources": {"limits": null, "requests": null},
                "volumeMounts": null, "envFrom": null
            }],
            "ephemeralContainers": null
        }
    });
    let (mutation, patched_doc, _) = mutate_raw(&policy(), &doc);
    assert_eq!(
        patched_doc["spec"]["securityContext"]["runAsNonRoot"],
        json!(true)
    );
    assert_eq!(
        patched_doc["spec"]["initContainers"][0]["securityContext"],
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(
        patched_doc["spec"]["initContainers"][0]["resources"]["limits"],
        json!({"cpu": "2", "memory": "4Gi"})
    );
    // Init containers get no workspace volumes or secrets.
    assert!(patched_doc["spec"]["initContainers"][0]
        .get("volumeMounts")
        .is_none());
    assert!(patched_doc["spec"]["initContainers"][0]
        .get("envFrom")
        .is_none());
    let c = &patched_doc["spec"]["containers"][0];
    assert_eq!(
        c["securityContext"]["capabilities"],
        json!({"drop": ["ALL"]})
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"],
        json!(false)
    );
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "500m", "memory": "2Gi"})
    );
    assert_eq!(c["volumeMounts"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        patched_doc["spec"]["volumes"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(mutation.bare_claims);
    // Every add targeted an absent or null member, or appended.
    for p in paths(&mutation.patch) {
        let existing = at(&doc, &p);
        assert!(
            p.ends_with("/-") || existing.is_none() || existing == Some(&Value::Null),
            "{p} overwrote {existing:?}"
        );
    }
}

#[test]
fn stated_values_are_never_overwritten() {
    let doc = raw(r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: ns
  labels: {devenv.io/workspace: bob}
spec:
  securityContext:
    runAsUser: 2000
    seccompProfile: {type: Localhost, localhostProfile: my.json}
  containers:
  - name: dev
    image: x
    securityContext:
      allowPrivilegeEscalation: true
      capabilities:
        drop: [NET_RAW]
    resources:
      limits: {cpu: "1"}
  - name: small
    image: x
    resources:
      limits: {cpu: 250m, memory: 256Mi}
  - name: req
    image: x
    resources:
      requests: {cpu: 100m}
"#);
    let (mutation, patched_doc, _) = mutate_raw(&policy(), &doc);
    let sc = &patched_doc["spec"]["securityContext"];
    assert_eq!(sc["runAsUser"], json!(2000), "stated uid kept");
    assert_eq!(sc["runAsGroup"], json!(1000), "absent gid filled");
    assert_eq!(
        sc["seccompProfile"],
        json!({"type": "Localhost", "localhostProfile": "my.json"})
    );

    let dev = &patched_doc["spec"]["containers"][0];
    assert_eq!(
        dev["securityContext"]["allowPrivilegeEscalation"],
        json!(true),
        "never replaced"
    );
    assert_eq!(
        dev["securityContext"]["capabilities"]["drop"],
        json!(["NET_RAW", "ALL"])
    );
    assert_eq!(
        dev["resources"]["limits"],
        json!({"cpu": "1", "memory": "4Gi"})
    );
    assert_eq!(
        dev["resources"]["requests"],
        json!({"cpu": "500m", "memory": "2Gi"})
    );

    // Limits below the tier's requests: requests follow the limits, never above them.
    let small = &patched_doc["spec"]["containers"][1];
    assert_eq!(
        small["resources"]["limits"],
        json!({"cpu": "250m", "memory": "256Mi"})
    );
    assert_eq!(
        small["resources"]["requests"],
        json!({"cpu": "250m", "memory": "256Mi"})
    );

    // A stated request is kept; the limit is filled.
    let req = &patched_doc["spec"]["containers"][2];
    assert_eq!(
        req["resources"]["requests"],
        json!({"cpu": "100m", "memory": "2Gi"})
    );
    assert_eq!(
        req["resources"]["limits"],
        json!({"cpu": "2", "memory": "4Gi"})
    );

    // No replace/remove, and the drop list was appended to, not rewritten.
    assert!(paths(&mutation.patch)
        .contains(&"/spec/containers/0/securityContext/capabilities/drop/-".to_string()));
}

#[test]
fn request_above_tier_limit_leaves_limit_absent() {
    // Filling the tier's limit would make request > limit, which the API server rejects with a
    // confusing message; validation explains the real problem instead.
    let doc = raw(r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns, labels: {devenv.io/workspace: w}}
spec:
  containers:
  - name: dev
    image: x
    resources:
      requests: {cpu: "3"}
"#);
    let (_, patched_doc, patched) = mutate_raw(&policy(), &doc);
    assert_eq!(
        patched_doc["spec"]["containers"][0]["resources"]["limits"],
        json!({"memory": "4Gi"})
    );
    let violations = validate_pod(&policy(), &patched, &NoExtraSecrets);
    let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|v| v.starts_with("spec.containers[0].resources.requests.cpu: 3 is above the cpu limit of tier \"small\" (2)")),
        "{text:?}"
    );
}

#[test]
fn tier_annotation_selects_resources_and_unknown_falls_back() {
    let mut doc = raw(BARE);
    doc["metadata"]["annotations"] = json!({"devenv.io/tier": "large"});
    let (_, patched_doc, _) = mutate_raw(&policy(), &doc);
    assert_eq!(
        patched_doc["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "8", "memory": "16Gi"}, "requests": {"cpu": "2", "memory": "8Gi"}})
    );
    doc["metadata"]["annotations"] = json!({"devenv.io/tier": "huge"});
    let (_, patched_doc, _) = mutate_raw(&policy(), &doc);
    assert_eq!(
        patched_doc["spec"]["containers"][0]["resources"]["limits"],
        json!({"cpu": "2", "memory": "4Gi"})
    );
}

#[test]
fn statefulset_pod_only_gets_mounts() {
    // As the StatefulSet controller creates it: claim volumes already present.
    let doc = raw(r#"
apiVersion: v1
kind: Pod
metadata:
  name: alice-0
  namespace: team-a
  labels: {devenv.io/workspace: alice}
  ownerReferences:
  - {apiVersion: apps/v1, kind: StatefulSet, name: alice, uid: u1, controller: true}
spec:
  containers:
  - name: dev
    image: x
  volumes:
  - name: workspace
    persistentVolumeClaim: {claimName: workspace-alice-0}
  - name: history
    persistentVolumeClaim: {claimName: history-alice-0}
"#);
    let (mutation, patched_doc, _) = mutate_raw(&policy(), &doc);
    assert!(
        !mutation.bare_claims,
        "the StatefulSet controller creates StatefulSet claims"
    );
    // Only the volumes the StatefulSet's claim templates gave it are mounted: a claim the
    // webhook invented (`config-alice-0`) would be made by nobody, and the pod would wait
    // for it for ever (a workspace created before the policy named a third volume).
    assert_eq!(
        patched_doc["spec"]["containers"][0]["volumeMounts"],
        json!([
            {"name": "workspace", "mountPath": "/workspace"},
            {"name": "history", "mountPath": "/commandhistory"}
        ])
    );
    assert_eq!(patched_doc["spec"]["volumes"], doc["spec"]["volumes"]);
    assert!(!paths(&mutation.patch)
        .iter()
        .any(|p| p.starts_with("/spec/volumes")));
    assert!(patched_doc["spec"].get("schedulingGates").is_none());
}

#[test]
fn statefulset_pod_without_ordinal_name_gets_no_unnameable_volume() {
    let doc = raw(r#"
apiVersion: v1
kind: Pod
metadata:
  generateName: weird-
  namespace: ns
  labels: {devenv.io/workspace: alice}
  ownerReferences:
  - {apiVersion: apps/v1, kind: StatefulSet, name: alice, uid: u1, controller: true}
spec:
  containers:
  - {name: dev, image: x}
  volumes:
  - name: workspace
    persistentVolumeClaim: {claimName: workspace-alice-0}
"#);
    let (mutation, patched_doc, _) = mutate_raw(&policy(), &doc);
    assert!(!mutation.bare_claims);
    // Only the volume the pod has is mounted: a mount of a missing volume is invalid.
    assert_eq!(
        patched_doc["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "workspace", "mountPath": "/workspace"}])
    );
    assert_eq!(
        patched_doc["spec"]["volumes"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn existing_mounts_and_volumes_are_respected() {
    let doc = raw(r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns, labels: {devenv.io/workspace: carol}}
spec:
  containers:
  - name: dev
    image: x
    volumeMounts:
    - {name: code, mountPath: /workspace/}
    envFrom:
    - secretRef: {name: devenv-secrets}
  - name: side
    image: x
    volumeMounts:
    - {name: history, mountPath: /elsewhere}
  volumes:
  - name: code
    emptyDir: {}
  - name: history
    emptyDir: {}
"#);
    let (mutation, patched_doc, _) = mutate_raw(&policy(), &doc);
    assert!(mutation.bare_claims);
    let dev = &patched_doc["spec"]["containers"][0];
    // /workspace/ is taken by "code": no workspace mount there; history's emptyDir is mounted.
    assert_eq!(
        dev["volumeMounts"],
        json!([
            {"name": "code", "mountPath": "/workspace/"},
            {"name": "history", "mountPath": "/commandhistory"},
            {"name": "config", "mountPath": "/home/dev/.config"}
        ])
    );
    assert_eq!(
        dev["envFrom"].as_array().map(Vec::len),
        Some(1),
        "secret already there"
    );
    let side = &patched_doc["spec"]["containers"][1];
    assert_eq!(
        side["volumeMounts"],
        json!([
            {"name": "history", "mountPath": "/elsewhere"},
            {"name": "workspace", "mountPath": "/workspace"},
            {"name": "config", "mountPath": "/home/dev/.config"}
        ])
    );
    // "history" is the pod's own emptyDir: no claim for it.
    let names = claim_names(&patched_doc);
    assert_eq!(names, vec!["workspace-carol-bare", "config-carol-bare"]);
    assert_eq!(
        patched_doc["spec"]["volumes"],
        json!([
            {"name": "code", "emptyDir": {}},
            {"name": "history", "emptyDir": {}},
            {"name": "workspace", "persistentVolumeClaim": {"claimName": "workspace-carol-bare"}},
            {"name": "config", "persistentVolumeClaim": {"claimName": "config-carol-bare"}}
        ])
    );
}

#[test]
fn volume_not_mounted_anywhere_is_not_added() {
    // Every container already has something at /workspace: no workspace volume, no claim.
    let doc = raw(r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns, labels: {devenv.io/workspace: d}}
spec:
  containers:
  - name: dev
    image: x
    volumeMounts: [{name: code, mountPath: /workspace}]
  volumes: [{name: code, emptyDir: {}}]
"#);
    let (mutation, patched_doc, _) = mutate_raw(&policy(), &doc);
    assert!(mutation.bare_claims);
    let names = claim_names(&patched_doc);
    assert_eq!(names, vec!["history-d-bare", "config-d-bare"]);
    let vols: Vec<_> = patched_doc["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(vols, vec!["code", "history", "config"]);
}

#[test]
fn already_mutated_bare_pod_still_reports_its_claims() {
    let (first, patched_doc, _) = mutate_raw(&policy(), &raw(BARE));
    let second = mutate_pod(&policy(), &typed(&patched_doc));
    assert!(second.patch.0.is_empty());
    assert!(first.bare_claims);
    assert_eq!(second.bare_claims, first.bare_claims);
}

#[test]
fn pod_without_workspace_label_gets_security_but_no_claims() {
    let mut doc = raw(BARE);
    doc["metadata"]["labels"] = json!({});
    let (mutation, patched_doc, _) = mutate_raw(&policy(), &doc);
    assert!(!mutation.bare_claims);
    assert!(patched_doc["spec"].get("volumes").is_none());
    assert!(patched_doc["spec"]["containers"][0]
        .get("volumeMounts")
        .is_none());
    assert_eq!(
        patched_doc["spec"]["securityContext"]["runAsNonRoot"],
        json!(true)
    );
}

#[test]
fn privileged_container_gets_no_conflicting_allow_privilege_escalation() {
    // allowPrivilegeEscalation=false with privileged=true (or an added SYS_ADMIN) is an API
    // error; leave it for the validating webhook to deny clearly.
    let doc = raw(r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns, labels: {devenv.io/workspace: e}}
spec:
  containers:
  - name: a
    image: x
    securityContext: {privileged: true}
  - name: b
    image: x
    securityContext:
      capabilities: {add: [CAP_SYS_ADMIN]}
"#);
    let (_, patched_doc, patched) = mutate_raw(&policy(), &doc);
    for i in 0..2 {
        let sc = &patched_doc["spec"]["containers"][i]["securityContext"];
        assert!(sc.get("allowPrivilegeEscalation").is_none(), "{sc}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    }
    let fields: Vec<_> = validate_pod(&policy(), &patched, &NoExtraSecrets)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert!(
        fields.contains(&"spec.containers[0].securityContext.privileged".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"spec.containers[1].securityContext.capabilities.add[0]".to_string()),
        "{fields:?}"
    );
}

#[test]
fn windows_pod_gets_no_linux_only_fields() {
    let mut doc = raw(BARE);
    doc["spec"]["os"] = json!({"name": "windows"});
    let (_, patched_doc, patched) = mutate_raw(&policy(), &doc);
    assert_eq!(
        patched_doc["spec"]["securityContext"],
        json!({"runAsNonRoot": true})
    );
    assert!(patched_doc["spec"]["containers"][0]
        .get("securityContext")
        .is_none());
    let violations = validate_pod(&policy(), &patched, &NoExtraSecrets);
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn ephemeral_containers_get_security_context() {
    let doc = raw(r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns, labels: {devenv.io/workspace: f}}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: dev
    image: x
  ephemeralContainers:
  - name: old
    image: busybox
  - name: debug
    image: busybox
    securityContext: {capabilities: {drop: [NET_RAW]}}
"#);
    // Whole-pod mutation covers ephemeral containers too, but never gives them volumes or
    // resources (the API forbids both).
    let (_, patched_doc, _) = mutate_raw(&policy(), &doc);
    let eph = &patched_doc["spec"]["ephemeralContainers"];
    assert_eq!(
        eph[0],
        json!({"name": "old", "image": "busybox", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}})
    );
    assert_eq!(
        eph[1]["securityContext"]["capabilities"]["drop"],
        json!(["NET_RAW", "ALL"])
    );

    // The subresource mutation only touches containers the old pod did not have.
    let pod = typed(&doc);
    let mut old_doc = doc.clone();
    if let Some(list) = old_doc["spec"]["ephemeralContainers"].as_array_mut() {
        list.truncate(1);
    }
    let old = typed(&old_doc);
    let patch = mutate_ephemeral_containers(&policy(), &pod, Some(&old));
    assert_eq!(
        paths(&patch),
        vec![
            "/spec/ephemeralContainers/1/securityContext/allowPrivilegeEscalation",
            "/spec/ephemeralContainers/1/securityContext/capabilities/drop/-",
        ]
    );
    let patched = apply_raw(&doc, &patch);
    assert_eq!(
        patched["spec"]["ephemeralContainers"][0],
        doc["spec"]["ephemeralContainers"][0]
    );
    let all = mutate_ephemeral_containers(&policy(), &pod, None);
    assert_eq!(all.0.len(), 3);
}

#[test]
fn compliant_pod_gets_an_empty_patch() {
    let (_, patched_doc, _) = mutate_raw(&policy(), &raw(BARE));
    let again = mutate_pod(&policy(), &typed(&patched_doc));
    assert!(again.patch.0.is_empty());
}

#[test]
fn patch_serialises_as_rfc6902() {
    let mutation = mutate_pod(&policy(), &typed(&raw(BARE)));
    let json = serde_json::to_value(&mutation.patch).unwrap_or_default();
    let ops = json.as_array().cloned().unwrap_or_default();
    assert!(!ops.is_empty());
    for op in ops {
        assert_eq!(op["op"], "add", "{op}");
        assert!(
            op["path"].as_str().is_some_and(|p| p.starts_with("/spec/")),
            "{op}"
        );
    }
    assert!(mutation
        .patch
        .0
        .iter()
        .all(|op| matches!(op, PatchOperation::Add(_))));
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

/// The claim names a patched pod document mounts.
fn claim_names(doc: &Value) -> Vec<String> {
    doc["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .map(str::to_string)
        .collect()
}

fn sts(doc: &Value) -> StatefulSet {
    match serde_json::from_value(doc.clone()) {
        Ok(s) => s,
        Err(e) => panic!("not a StatefulSet: {e}"),
    }
}

#[test]
fn statefulset_gets_claim_templates_and_retention() {
    let doc = raw(STS);
    let patch = mutate_statefulset(&policy(), &sts(&doc), None);
    let patched = apply_raw(&doc, &patch);
    let templates = patched["spec"]["volumeClaimTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<_> = templates
        .iter()
        .filter_map(|t| t["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["workspace", "history", "config"]);
    assert_eq!(
        templates[0]["metadata"]["labels"]["devenv.io/workspace"],
        "alice"
    );
    assert_eq!(
        templates[0]["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubectl-devenv"
    );
    assert_eq!(
        templates[0]["spec"]["accessModes"],
        json!(["ReadWriteOnce"])
    );
    assert_eq!(
        templates[0]["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
    assert_eq!(
        patched["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    // Idempotent, and the pod template is left for pod admission.
    assert!(mutate_statefulset(&policy(), &sts(&patched), None)
        .0
        .is_empty());
    assert_eq!(patched["spec"]["template"], doc["spec"]["template"]);
}

#[test]
fn statefulset_keeps_what_it_states() {
    let mut doc = raw(STS);
    doc["spec"]["volumeClaimTemplates"] =
        json!([{"metadata": {"name": "workspace"}, "spec": {"accessModes": ["ReadWriteMany"]}}]);
    doc["spec"]["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": "Delete"});
    doc["spec"]["template"]["spec"]["volumes"] = json!([{"name": "history", "emptyDir": {}}]);
    let patch = mutate_statefulset(&policy(), &sts(&doc), None);
    assert_eq!(
        paths(&patch),
        vec![
            "/spec/volumeClaimTemplates/-",
            "/spec/persistentVolumeClaimRetentionPolicy/whenScaled"
        ]
    );
    let patched = apply_raw(&doc, &patch);
    assert_eq!(
        patched["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"],
        json!(["ReadWriteMany"])
    );
    assert_eq!(
        patched["spec"]["volumeClaimTemplates"][1]["metadata"]["name"],
        "config"
    );
    assert_eq!(
        patched["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Delete"
    );
}

#[test]
fn non_workspace_statefulset_is_untouched() {
    let mut doc = raw(STS);
    doc["spec"]["template"]["metadata"]["labels"] = json!({"app": "db"});
    assert!(mutate_statefulset(&policy(), &sts(&doc), None).0.is_empty());
}

#[test]
fn pod_without_spec_is_not_patched() {
    let doc = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"devenv.io/workspace": "x"}}});
    let mutation = mutate_pod(&policy(), &typed(&doc));
    assert!(mutation.patch.0.is_empty());
    assert!(!mutation.bare_claims);
}

#[test]
fn invalid_workspace_name_gets_no_claims() {
    // "Alice_1" cannot be part of a claim name; validation explains it.
    let mut doc = raw(BARE);
    doc["metadata"]["labels"]["devenv.io/workspace"] = json!("Alice_1");
    let (mutation, patched_doc, _) = mutate_raw(&policy(), &doc);
    assert!(!mutation.bare_claims);
    assert!(patched_doc["spec"].get("volumes").is_none());
}

#[test]
fn statefulset_without_metadata_gets_a_patch_that_applies() {
    // Found by fuzz/request_path: a patch into a missing `/metadata` does not apply.
    let mut doc = raw(STS);
    doc.as_object_mut().map(|o| o.remove("metadata"));
    doc["spec"]["volumeClaimTemplates"] = json!([{"spec": {"accessModes": ["ReadWriteOnce"]}}]);
    let patch = mutate_statefulset(&policy(), &sts(&doc), Some("alice"));
    let patched = apply_raw(&doc, &patch);
    assert_eq!(
        patched["metadata"]["annotations"]["devenv.io/owner"],
        "alice"
    );
    assert_eq!(
        patched["metadata"]["labels"]["devenv.io/workspace"],
        "alice"
    );
    assert_eq!(
        patched["spec"]["volumeClaimTemplates"][0]["metadata"]["annotations"]["devenv.io/owner"],
        "alice"
    );
}
