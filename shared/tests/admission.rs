//! Request-level decisions: which requests are mutated/validated, patches, denials.

mod common;

use common::{apply_raw, raw, typed};
use devenv_shared::admission::catalog::EmptyCluster;
use devenv_shared::admission::request::{mutate, validate, Decision, DEBUG_PROFILE_HINT};
use devenv_shared::admission::review::parse_review;
use devenv_shared::admission::validate::validate_pod;
use devenv_shared::admission::violation::NoExtraSecrets;
use devenv_shared::model::policy::Policy;
use json_patch::Patch;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::{json, Value};

struct Req<'a> {
    operation: &'a str,
    kind: (&'a str, &'a str, &'a str), // group, kind, resource
    sub_resource: Option<&'a str>,
    object: Option<Value>,
    old_object: Option<Value>,
    dry_run: bool,
}

impl Default for Req<'_> {
    fn default() -> Self {
        Req {
            operation: "CREATE",
            kind: ("", "Pod", "pods"),
            sub_resource: None,
            object: None,
            old_object: None,
            dry_run: false,
        }
    }
}

fn request(r: Req) -> AdmissionRequest<DynamicObject> {
    let (group, kind, resource) = r.kind;
    let version = "v1";
    let mut req = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "name": "alice",
        "namespace": "team-a",
        "operation": r.operation,
        "userInfo": {"username": "alice"},
        "object": r.object,
        "oldObject": r.old_object,
        "dryRun": r.dry_run,
    });
    if let Some(sub) = r.sub_resource {
        req["subResource"] = json!(sub);
    }
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": req,
    });
    // The webhook's parser, so every test here goes through it.
    let review = match parse_review(review.to_string().as_bytes()) {
        Ok(r) => r,
        Err(e) => panic!("bad review: {e}"),
    };
    match review.try_into() {
        Ok(r) => r,
        Err(e) => panic!("no request: {e}"),
    }
}

fn pod() -> Value {
    raw(r#"
apiVersion: v1
kind: Pod
metadata:
  name: alice
  labels: {devenv.io/workspace: alice}
spec:
  containers:
  - {name: dev, image: x}
"#)
}

fn patch_of(d: &Decision) -> Option<Patch> {
    let bytes = d.response.patch.as_ref()?;
    serde_json::from_slice(bytes).ok()
}

fn policy() -> Policy {
    Policy::default()
}

#[test]
fn non_workspace_objects_are_allowed_untouched() {
    let mut obj = pod();
    obj["metadata"]["labels"] = json!({"app": "web"});
    // Even a pod that is not a valid Pod is not our business when unlabelled.
    obj["spec"]["containers"] = json!("not a list");
    let req = request(Req {
        object: Some(obj.clone()),
        ..Default::default()
    });
    for d in [
        mutate(&policy(), &req),
        validate(&policy(), &EmptyCluster, &req),
    ] {
        assert!(d.response.allowed);
        assert!(d.response.patch.is_none());
        assert_eq!(d.workspace, None);
        assert_eq!(d.response.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    }
}

#[test]
fn workspace_pod_create_is_patched_then_valid() {
    let obj = pod();
    let req = request(Req {
        object: Some(obj.clone()),
        ..Default::default()
    });
    let d = mutate(&policy(), &req);
    assert!(d.response.allowed);
    assert_eq!(d.workspace.as_deref(), Some("alice"));
    assert_eq!(d.denied, None);
    let Some(patch) = patch_of(&d) else {
        panic!("no patch in {:?}", d.response)
    };
    let patched = typed(&apply_raw(&obj, &patch));
    // A bare pod mounts its own claims (the lifecycle controller creates them once the pod
    // exists: admission creates nothing), waits for them behind the claims gate, and
    // carries its creator as owner.
    let claims: Vec<_> = patched
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect();
    assert_eq!(
        claims,
        vec![
            "workspace-alice-bare",
            "history-alice-bare",
            "config-alice-bare"
        ]
    );
    let gates: Vec<_> = patched
        .spec
        .iter()
        .flat_map(|s| s.scheduling_gates.iter().flatten())
        .map(|g| g.name.clone())
        .collect();
    assert_eq!(gates, vec!["devenv.io/claims"]);
    assert_eq!(
        patched
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("devenv.io/owner"))
            .map(String::as_str),
        Some("alice")
    );
    assert!(validate_pod(&policy(), &patched, &NoExtraSecrets).is_empty());

    // The validating webhook then sees the mutated pod and allows it.
    let req = request(Req {
        object: Some(serde_json::to_value(&patched).unwrap_or_default()),
        ..Default::default()
    });
    let d = validate(&policy(), &EmptyCluster, &req);
    assert!(d.response.allowed, "{:?}", d.denied);
    assert_eq!(d.workspace.as_deref(), Some("alice"));
}

#[test]
fn dry_run_is_mutated_like_the_real_request() {
    // Admission has no side effects, so a dry run answers exactly what the request would.
    let dry = request(Req {
        object: Some(pod()),
        dry_run: true,
        ..Default::default()
    });
    let real = request(Req {
        object: Some(pod()),
        ..Default::default()
    });
    let (dry, real) = (mutate(&policy(), &dry), mutate(&policy(), &real));
    assert!(patch_of(&dry).is_some());
    assert_eq!(dry.response.patch, real.response.patch);
}

#[test]
fn pod_update_is_not_mutated() {
    let req = request(Req {
        operation: "UPDATE",
        object: Some(pod()),
        old_object: Some(pod()),
        ..Default::default()
    });
    let d = mutate(&policy(), &req);
    assert!(d.response.allowed);
    assert!(d.response.patch.is_none());
    assert_eq!(d.workspace.as_deref(), Some("alice"));
}

#[test]
fn violations_deny_with_the_workspace_name() {
    let mut obj = pod();
    obj["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    let req = request(Req {
        object: Some(obj),
        ..Default::default()
    });
    let d = validate(&policy(), &EmptyCluster, &req);
    assert!(!d.response.allowed);
    let message = d.denied.clone().unwrap_or_default();
    assert!(
        message.starts_with("workspace alice denied: spec.containers[0].securityContext.privileged: privileged containers are not allowed in workspaces"),
        "{message}"
    );
    // Every violation, joined.
    assert!(
        message.contains("; spec.securityContext.runAsNonRoot: "),
        "{message}"
    );
    assert_eq!(d.response.result.message, message);
    assert_eq!(d.response.result.code, 403);
}

/// The denial messages of both webhooks for a CREATE of `object` (both must deny).
fn denials(object: Value) -> Vec<String> {
    let req = request(Req {
        object: Some(object),
        ..Default::default()
    });
    [
        mutate(&policy(), &req),
        validate(&policy(), &EmptyCluster, &req),
    ]
    .into_iter()
    .map(|d| {
        assert!(!d.response.allowed);
        d.denied.unwrap_or_default()
    })
    .collect()
}

#[test]
fn unreadable_object_is_denied_not_panicked() {
    let mut obj = pod();
    obj["spec"]["containers"] = json!("not a list");
    for m in denials(obj) {
        assert!(
            m.starts_with("workspace alice denied: the object cannot be read as a Pod: "),
            "{m}"
        );
    }
}

#[test]
fn object_of_another_kind_is_denied() {
    let mut obj = pod();
    obj["kind"] = json!("Service");
    for m in denials(obj) {
        assert!(m.contains("it is a v1 Service, not a v1 Pod"), "{m}");
    }
}

#[test]
fn delete_is_allowed() {
    let req = request(Req {
        operation: "DELETE",
        old_object: Some(pod()),
        ..Default::default()
    });
    assert!(mutate(&policy(), &req).response.allowed);
    assert!(validate(&policy(), &EmptyCluster, &req).response.allowed);
}

#[test]
fn status_updates_are_never_blocked() {
    let mut obj = pod();
    obj["spec"]["hostNetwork"] = json!(true);
    let req = request(Req {
        operation: "UPDATE",
        sub_resource: Some("status"),
        object: Some(obj.clone()),
        old_object: Some(obj),
        ..Default::default()
    });
    assert!(validate(&policy(), &EmptyCluster, &req).response.allowed);
    assert!(mutate(&policy(), &req).response.patch.is_none());
}

#[test]
fn unchanged_update_of_an_old_pod_is_allowed_changed_one_validated() {
    // A pod created before the policy: metadata-only updates (finalizers, labels) must pass.
    let mut old = pod();
    old["spec"]["hostNetwork"] = json!(true);
    let mut new = old.clone();
    new["metadata"]["labels"]["extra"] = json!("x");
    let req = request(Req {
        operation: "UPDATE",
        object: Some(new.clone()),
        old_object: Some(old.clone()),
        ..Default::default()
    });
    assert!(validate(&policy(), &EmptyCluster, &req).response.allowed);

    new["spec"]["containers"][0]["image"] = json!("y");
    let req = request(Req {
        operation: "UPDATE",
        object: Some(new.clone()),
        old_object: Some(old.clone()),
        ..Default::default()
    });
    assert!(!validate(&policy(), &EmptyCluster, &req).response.allowed);

    // Changing the tier re-validates too.
    let mut retiered = old.clone();
    retiered["metadata"]["annotations"] = json!({"devenv.io/tier": "nope"});
    let req = request(Req {
        operation: "UPDATE",
        object: Some(retiered),
        old_object: Some(old),
        ..Default::default()
    });
    assert!(!validate(&policy(), &EmptyCluster, &req).response.allowed);
}

#[test]
fn ephemeral_containers_subresource() {
    let create = request(Req {
        object: Some(pod()),
        ..Default::default()
    });
    let Some(patch) = patch_of(&mutate(&policy(), &create)) else {
        panic!("no patch")
    };
    let running = apply_raw(&pod(), &patch);
    let mut debugged = running.clone();
    debugged["spec"]["ephemeralContainers"] =
        json!([{"name": "debug", "image": "busybox", "targetContainerName": "dev"}]);
    let req = request(Req {
        operation: "UPDATE",
        sub_resource: Some("ephemeralcontainers"),
        object: Some(debugged.clone()),
        old_object: Some(running),
        ..Default::default()
    });
    let d = mutate(&policy(), &req);
    let Some(patch) = patch_of(&d) else {
        panic!("no patch")
    };
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    assert_eq!(paths, vec!["/spec/ephemeralContainers/0/securityContext"]);
    let fixed = apply_raw(&debugged, &patch);

    // Validation of the subresource looks at the whole pod.
    let req = request(Req {
        operation: "UPDATE",
        sub_resource: Some("ephemeralcontainers"),
        object: Some(fixed.clone()),
        old_object: Some(fixed.clone()),
        ..Default::default()
    });
    assert!(validate(&policy(), &EmptyCluster, &req).response.allowed);
    let mut bad = fixed;
    bad["spec"]["ephemeralContainers"][0]["securityContext"]["privileged"] = json!(true);
    let req = request(Req {
        operation: "UPDATE",
        sub_resource: Some("ephemeralcontainers"),
        object: Some(bad),
        ..Default::default()
    });
    let d = validate(&policy(), &EmptyCluster, &req);
    assert!(!d.response.allowed);
    let denied = d.denied.unwrap_or_default();
    assert!(denied.contains("spec.ephemeralContainers[0].securityContext.privileged"));
    // The user typed a kubectl debug profile, not a securityContext: say which pass.
    assert!(denied.ends_with(DEBUG_PROFILE_HINT), "{denied}");

    // A pod's own containers are not judged as debug containers.
    let mut bad = pod();
    bad["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    let req = request(Req {
        object: Some(bad),
        ..Default::default()
    });
    let denied = validate(&policy(), &EmptyCluster, &req)
        .denied
        .unwrap_or_default();
    assert!(denied.contains("privileged"), "{denied}");
    assert!(!denied.contains("kubectl debug"), "{denied}");
}

#[test]
fn resize_is_validated() {
    let create = request(Req {
        object: Some(pod()),
        ..Default::default()
    });
    let Some(patch) = patch_of(&mutate(&policy(), &create)) else {
        panic!("no patch")
    };
    let mut resized = apply_raw(&pod(), &patch);
    resized["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("64Gi");
    let req = request(Req {
        operation: "UPDATE",
        sub_resource: Some("resize"),
        object: Some(resized),
        ..Default::default()
    });
    let d = validate(&policy(), &EmptyCluster, &req);
    assert!(!d.response.allowed);
    assert!(d.denied.unwrap_or_default().contains(
        "resources.limits.memory: 64Gi is above the memory limit of tier \"small\" (4Gi)"
    ));
}

fn sts() -> Value {
    raw(r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: alice}
spec:
  serviceName: alice
  selector: {matchLabels: {devenv.io/workspace: alice}}
  template:
    metadata:
      labels: {devenv.io/workspace: alice}
    spec:
      containers:
      - {name: dev, image: x}
"#)
}

#[test]
fn statefulset_create_and_update() {
    let kind = ("apps", "StatefulSet", "statefulsets");
    let req = request(Req {
        kind,
        object: Some(sts()),
        ..Default::default()
    });
    let d = mutate(&policy(), &req);
    assert_eq!(d.workspace.as_deref(), Some("alice"));
    let Some(patch) = patch_of(&d) else {
        panic!("no patch")
    };
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    // The creator is recorded as the owner on the StatefulSet, its pod template (so its
    // pods) and its claim templates (so its claims); the label goes on the StatefulSet.
    assert_eq!(
        paths,
        vec![
            "/metadata/labels",
            "/metadata/annotations",
            "/spec/template/metadata/annotations",
            "/spec/volumeClaimTemplates",
            "/spec/persistentVolumeClaimRetentionPolicy"
        ]
    );
    let stored = apply_raw(&sts(), &patch);
    assert_eq!(
        stored["metadata"]["annotations"]["devenv.io/owner"],
        "alice"
    );
    assert_eq!(stored["metadata"]["labels"]["devenv.io/workspace"], "alice");
    assert_eq!(
        stored["spec"]["template"]["metadata"]["annotations"]["devenv.io/owner"],
        "alice"
    );
    for t in stored["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert_eq!(
            t["metadata"]["annotations"]["devenv.io/owner"], "alice",
            "{t}"
        );
    }
    // The validating webhook sees the StatefulSet as mutated, and admits it.
    let stored_req = request(Req {
        kind,
        object: Some(stored.clone()),
        ..Default::default()
    });
    let d = validate(&policy(), &EmptyCluster, &stored_req);
    assert!(d.response.allowed, "{:?}", d.denied);
    // As sent, without the owner the mutating webhook records, it is refused.
    assert!(!validate(&policy(), &EmptyCluster, &req).response.allowed);

    // UPDATE: claim templates are immutable, only the retention policy may be filled.
    let req = request(Req {
        kind,
        operation: "UPDATE",
        object: Some(sts()),
        old_object: Some(sts()),
        ..Default::default()
    });
    let Some(patch) = patch_of(&mutate(&policy(), &req)) else {
        panic!("no patch")
    };
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    assert_eq!(paths, vec!["/spec/persistentVolumeClaimRetentionPolicy"]);

    let mut bad = stored.clone();
    bad["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
    let req = request(Req {
        kind,
        object: Some(bad),
        ..Default::default()
    });
    let d = validate(&policy(), &EmptyCluster, &req);
    assert!(!d.response.allowed);
    assert!(d
        .denied
        .unwrap_or_default()
        .starts_with("workspace alice denied: spec.template.spec.hostNetwork: "));

    // scale subresource: not ours.
    let req = request(Req {
        kind,
        operation: "UPDATE",
        sub_resource: Some("scale"),
        object: Some(
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "alice"}, "spec": {"replicas": 2}}),
        ),
        ..Default::default()
    });
    assert!(mutate(&policy(), &req).response.patch.is_none());
    assert!(validate(&policy(), &EmptyCluster, &req).response.allowed);
}

#[test]
fn unlabelled_statefulset_is_ignored() {
    let kind = ("apps", "StatefulSet", "statefulsets");
    let mut obj = sts();
    obj["spec"]["template"]["metadata"]["labels"] = json!({"app": "db"});
    obj["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
    let req = request(Req {
        kind,
        object: Some(obj),
        ..Default::default()
    });
    let d = validate(&policy(), &EmptyCluster, &req);
    assert!(d.response.allowed);
    assert_eq!(d.workspace, None);
    assert!(mutate(&policy(), &req).response.patch.is_none());
}

/// `parse_review` gives exactly what serde's derive on kube's types gives (it only
/// avoids the buffering of `#[serde(flatten)]`), on ordinary and odd shapes alike.
#[test]
fn parse_review_matches_serde() {
    let with_object = |object: Value, old: Value| {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "UPDATE",
                "userInfo": {"username": "alice"},
                "object": object,
                "oldObject": old,
            },
        })
    };
    let cases = [
        with_object(pod(), pod()),
        with_object(pod(), Value::Null),
        with_object(json!({"spec": {"containers": []}}), json!({})),
        with_object(json!({"apiVersion": "v1", "spec": {}}), Value::Null),
        with_object(json!({"kind": 7, "metadata": {"name": "x"}}), Value::Null),
        with_object(json!({"metadata": null}), Value::Null),
        with_object(json!({"metadata": {"labels": "no"}}), Value::Null),
        with_object(json!([1, 2]), Value::Null),
        with_object(json!("text"), Value::Null),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": null}),
        json!({"request": {"uid": 5}}),
        json!([]),
    ];
    for case in cases {
        let bytes = case.to_string();
        let by_serde = serde_json::from_slice::<AdmissionReview<DynamicObject>>(bytes.as_bytes());
        let fast = parse_review(bytes.as_bytes());
        match (&by_serde, &fast) {
            (Ok(a), Ok(b)) => {
                // Compare the values themselves: two failed conversions (None == None)
                // would prove nothing.
                let a = serde_json::to_value(a).unwrap_or_else(|e| panic!("{e}: {case}"));
                let b = serde_json::to_value(b).unwrap_or_else(|e| panic!("{e}: {case}"));
                assert_eq!(a, b, "{case}");
            }
            (Err(_), Err(_)) => {}
            _ => panic!("serde: {by_serde:?}\nparse_review: {fast:?}\nfor {case}"),
        }
    }
    // Bytes that are not UTF-8 where serde's derive reads no string (found by the
    // request_path fuzz target; a `Value` refuses them): parse_review must read it too.
    let odd: &[u8] = include_bytes!("../../fuzz/regressions/request_path/invalid-utf8-serde-skips");
    let by_serde = serde_json::from_slice::<AdmissionReview<DynamicObject>>(odd)
        .expect("serde's derive reads it");
    let fast = parse_review(odd).expect("so does parse_review");
    let by_serde = serde_json::to_value(by_serde).expect("serde's review as JSON");
    let fast = serde_json::to_value(fast).expect("parse_review's review as JSON");
    assert!(
        by_serde["request"].is_object(),
        "a review with a request: {by_serde}"
    );
    assert_eq!(by_serde, fast);
    // A review without a body at all is an error, not a panic.
    assert!(parse_review(b"").is_err() && parse_review(b"{").is_err());
}
