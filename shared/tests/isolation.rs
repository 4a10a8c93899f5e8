//! Workspace isolation at the request level: every way a user with ordinary rights in a
//! namespace could reach another workspace's pods, claims or Secrets, tried against
//! `mutate` then `validate` exactly as the API server calls them (the mutating webhook's
//! patch applied before validation), on the pod shapes the API server sends.

mod common;

use common::apply_raw;
use devenv_shared::admission::catalog::{
    ClaimFacts, SnapshotFacts, StatefulSetFacts, StaticCluster,
};
use devenv_shared::admission::ownership::NOT_SYNCED;
use devenv_shared::admission::request::{mutate, validate, Decision};
use devenv_shared::model::keys::{CLAIMS_GATE, OWNER_ANNOTATION};
use devenv_shared::model::policy::Policy;
use json_patch::Patch;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::{json, Value};

const NS: &str = "team";
const STS_CONTROLLER: &str = "system:serviceaccount:kube-system:statefulset-controller";
const DEVENV: &str = "system:serviceaccount:devenv-system:devenv-webhook";

/// Who asks.
#[derive(Clone, Copy)]
struct User<'a> {
    name: &'a str,
    groups: &'a [&'a str],
}

const ALICE: User = User {
    name: "alice",
    groups: &["system:authenticated"],
};
const BOB: User = User {
    name: "bob",
    groups: &["system:authenticated"],
};
const ADMIN: User = User {
    name: "root",
    groups: &["system:masters"],
};
const STS: User = User {
    name: STS_CONTROLLER,
    groups: &["system:serviceaccounts"],
};
const CONTROLLER: User = User {
    name: DEVENV,
    groups: &["system:serviceaccounts"],
};

struct Req<'a> {
    operation: &'a str,
    resource: (&'a str, &'a str, &'a str), // group, kind, resource
    sub_resource: Option<&'a str>,
    object: Option<Value>,
    old_object: Option<Value>,
    user: User<'a>,
}

const POD: (&str, &str, &str) = ("", "Pod", "pods");
const STATEFULSET: (&str, &str, &str) = ("apps", "StatefulSet", "statefulsets");
const CLAIM: (&str, &str, &str) = ("", "PersistentVolumeClaim", "persistentvolumeclaims");
const SNAPSHOT: (&str, &str, &str) = (
    "snapshot.storage.k8s.io",
    "VolumeSnapshot",
    "volumesnapshots",
);

fn req(
    operation: &str,
    resource: (&'static str, &'static str, &'static str),
    user: User<'static>,
) -> Req<'static> {
    Req {
        operation: if operation == "CREATE" {
            "CREATE"
        } else if operation == "UPDATE" {
            "UPDATE"
        } else {
            "DELETE"
        },
        resource,
        sub_resource: None,
        object: None,
        old_object: None,
        user,
    }
}

fn request(r: &Req) -> AdmissionRequest<DynamicObject> {
    let (group, kind, resource) = r.resource;
    let mut req = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": resource},
        "name": "x",
        "namespace": NS,
        "operation": r.operation,
        "userInfo": {"username": r.user.name, "groups": r.user.groups},
        "object": r.object,
        "oldObject": r.old_object,
    });
    if let Some(sub) = r.sub_resource {
        req["subResource"] = json!(sub);
    }
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": req,
    }))
    .unwrap_or_else(|e| panic!("bad review: {e}"));
    review
        .try_into()
        .unwrap_or_else(|e| panic!("no request: {e:?}"))
}

fn policy() -> Policy {
    let mut p = Policy::default();
    p.access.controllers.push(DEVENV.to_string());
    p
}

fn patch_of(d: &Decision) -> Patch {
    d.response
        .patch
        .as_ref()
        .map(|bytes| serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("bad patch: {e}")))
        .unwrap_or_default()
}

/// What the API server does: mutate, apply the patch, validate the result. Returns the
/// stored object and the validating decision.
fn admit(cluster: &StaticCluster, r: Req) -> (Value, Decision) {
    admit_with(&policy(), cluster, r)
}

fn admit_with(policy: &Policy, cluster: &StaticCluster, mut r: Req) -> (Value, Decision) {
    let mutated = mutate(policy, &request(&r));
    assert!(
        mutated.denied.is_none(),
        "mutation denied: {:?}",
        mutated.denied
    );
    if let Some(object) = r.object.take() {
        r.object = Some(apply_raw(&object, &patch_of(&mutated)));
    }
    let decision = validate(policy, cluster, &request(&r));
    (r.object.unwrap_or(Value::Null), decision)
}

fn allowed(cluster: &StaticCluster, r: Req) -> Value {
    let (object, d) = admit(cluster, r);
    assert!(d.denied.is_none(), "expected allowed, got: {:?}", d.denied);
    assert!(d.response.allowed);
    object
}

/// Denied, and the message names every expected fragment.
fn denied(cluster: &StaticCluster, r: Req, expect: &[&str]) -> String {
    let (_, d) = admit(cluster, r);
    let message = d
        .denied
        .unwrap_or_else(|| panic!("expected a denial naming {expect:?}"));
    assert!(!d.response.allowed);
    for e in expect {
        assert!(
            message.contains(e),
            "denial does not name {e:?}:\n{message}"
        );
    }
    message
}

/// A bare workspace pod as `kubectl run` sends it after the API server's own admission: the
/// ServiceAccount defaulted to `default`, whose token volume is mounted.
fn bare_pod(name: &str, workspace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"devenv.io/workspace": workspace}},
        "spec": {
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "containers": [{
                "name": "workspace",
                "image": "registry.example.com/dev:1",
                "volumeMounts": [{"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            }],
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}}],
        },
    })
}

fn pod_create(user: User<'static>, pod: Value) -> Req<'static> {
    Req {
        object: Some(pod),
        ..req("CREATE", POD, user)
    }
}

/// A StatefulSet pod as the StatefulSet controller creates it for `kubectl devenv create`.
fn sts_pod(workspace: &str, ordinal: u32, uid: &str, owner: &str) -> Value {
    let claims: Vec<Value> = ["workspace", "history", "config"]
        .iter()
        .map(|v| json!({"name": v, "persistentVolumeClaim": {"claimName": format!("{v}-{workspace}-{ordinal}")}}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{workspace}-{ordinal}"),
            "namespace": NS,
            "labels": {"devenv.io/workspace": workspace},
            "annotations": {OWNER_ANNOTATION: owner},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": workspace, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "serviceAccountName": workspace,
            "automountServiceAccountToken": false,
            "containers": [{"name": "workspace", "image": "registry.example.com/dev:1"}],
            "volumes": claims,
        },
    })
}

fn statefulset_facts(workspace: &str, owner: &str) -> StatefulSetFacts {
    StatefulSetFacts {
        uid: format!("uid-{workspace}"),
        workspace: Some(workspace.to_string()),
        owner: Some(owner.to_string()),
        claim_templates: vec!["workspace".into(), "history".into(), "config".into()],
        deleting: false,
    }
}

fn claim_of(workspace: &str, owner: &str) -> ClaimFacts {
    ClaimFacts {
        workspace: Some(workspace.into()),
        owner: Some(owner.into()),
        created: None,
    }
}

/// bob's workspace: StatefulSet bob with its three claims for ordinal 0.
fn with_bob() -> StaticCluster {
    let mut c =
        StaticCluster::default().with_statefulset(NS, "bob", statefulset_facts("bob", "bob"));
    for v in ["workspace", "history", "config"] {
        c = c.with_claim(NS, &format!("{v}-bob-0"), claim_of("bob", "bob"));
    }
    c
}

// ---------------------------------------------------------------------------------------
// Bare pods: identity, claims, owner

#[test]
fn a_bare_pod_gets_its_owner_identity_and_gated_claims_of_its_own() {
    let mut pod = bare_pod("alice", "alice");
    // A stated owner is never believed.
    pod["metadata"]["annotations"] = json!({OWNER_ANNOTATION: "bob"});
    // A strict policy (`serviceAccounts.allow: []`) runs it as its workspace's own
    // ServiceAccount; the default one lets it keep the namespace's `default`, which needs
    // no ServiceAccount made by hand. Either way without a token.
    let mut strict = policy();
    strict.service_accounts.allow.clear();
    let (stored, d) = admit_with(
        &strict,
        &StaticCluster::default(),
        pod_create(ALICE, pod.clone()),
    );
    assert!(d.response.allowed, "{:?}", d.denied);
    assert_eq!(stored["spec"]["serviceAccountName"], "alice");
    assert_eq!(stored["spec"]["serviceAccount"], "alice");
    assert_eq!(stored["spec"]["automountServiceAccountToken"], false);
    let stored = allowed(&StaticCluster::default(), pod_create(ALICE, pod));
    assert_eq!(stored["metadata"]["annotations"][OWNER_ANNOTATION], "alice");
    assert_eq!(stored["spec"]["serviceAccountName"], "default");
    assert_eq!(stored["spec"]["automountServiceAccountToken"], false);
    let volumes: Vec<&str> = stored["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .collect();
    assert_eq!(
        volumes,
        vec![
            "workspace-alice-bare",
            "history-alice-bare",
            "config-alice-bare"
        ]
    );
    // The API server's token volume for `default` is gone, with its mount.
    let text = stored.to_string();
    assert!(!text.contains("kube-api-access"), "{text}");
    assert_eq!(
        stored["spec"]["schedulingGates"],
        json!([{"name": CLAIMS_GATE}])
    );
}

#[test]
fn a_bare_pod_labelled_like_a_statefulset_pod_never_gets_its_claims() {
    // The case: a bare pod labelled bob-0 got bob's StatefulSet claims.
    let stored = allowed(
        &StaticCluster::default(),
        pod_create(ALICE, bare_pod("p", "bob-0")),
    );
    let text = stored.to_string();
    assert!(text.contains("workspace-bob-0-bare"), "{text}");
    assert!(!text.contains("\"workspace-bob-0\""), "{text}");
}

#[test]
fn a_bare_pod_may_not_mount_another_workspaces_claim() {
    let mut pod = bare_pod("p", "alice");
    pod["spec"]["volumes"] =
        json!([{"name": "loot", "persistentVolumeClaim": {"claimName": "workspace-bob-0"}}]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "loot", "mountPath": "/loot"}]);
    denied(&with_bob(), pod_create(ALICE, pod.clone()), &[
        "spec.volumes[0].persistentVolumeClaim.claimName",
        "claim \"workspace-bob-0\" is not workspace alice's (it belongs to workspace bob of bob)",
    ]);
    // A claim that does not exist and is not one of alice's names: squatting a future
    // name is refused too.
    pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = json!("workspace-carol-0");
    denied(
        &with_bob(),
        pod_create(ALICE, pod),
        &["claim \"workspace-carol-0\" does not exist"],
    );
}

#[test]
fn a_bare_pod_of_someone_elses_workspace_is_refused() {
    let cluster = StaticCluster::default()
        .with_claim(NS, "workspace-carol-bare", claim_of("carol", "carol"))
        .with_pod_owner(NS, "carol", Some("carol"));
    denied(
        &cluster,
        pod_create(ALICE, bare_pod("carol-2", "carol")),
        &["workspace carol belongs to carol: only its owner"],
    );
    // Its owner may add one; so may an admin.
    allowed(
        &cluster,
        pod_create(
            User {
                name: "carol",
                groups: &[],
            },
            bare_pod("carol-2", "carol"),
        ),
    );
    allowed(&cluster, pod_create(ADMIN, bare_pod("carol-3", "carol")));
}

#[test]
fn a_bare_pod_of_a_statefulset_workspace_is_refused() {
    denied(
        &with_bob(),
        pod_create(BOB, bare_pod("extra", "bob")),
        &["workspace bob is StatefulSet bob"],
    );
    // ...and a pod may not take a StatefulSet pod's name.
    denied(
        &with_bob(),
        pod_create(ALICE, bare_pod("bob-0", "alice")),
        &["metadata.name", "ordinal 0 of StatefulSet bob"],
    );
}

#[test]
fn an_empty_or_invalid_workspace_label_is_refused() {
    for value in ["", "Bob", "-x", &"a".repeat(53)] {
        let mut pod = bare_pod("p", value);
        pod["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
        denied(
            &StaticCluster::default(),
            pod_create(ALICE, pod),
            &[
                "metadata.labels[devenv.io/workspace]",
                "is not a valid workspace name",
            ],
        );
    }
}

// ---------------------------------------------------------------------------------------
// Secrets and credentials

#[test]
fn every_secret_reference_is_judged() {
    let cases: [(&str, Value, &str); 5] = [
        (
            "imagePullSecrets",
            json!({"imagePullSecrets": [{"name": "regcred"}]}),
            "spec.imagePullSecrets[0].name",
        ),
        (
            "csi",
            json!({"volumes": [{"name": "s", "csi": {"driver": "secrets-store.csi.k8s.io", "nodePublishSecretRef": {"name": "cloud-creds"}}}]}),
            "spec.volumes[0].csi.nodePublishSecretRef.name",
        ),
        (
            "env",
            json!({"containers": [{"name": "workspace", "image": "i:1", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}]}]}),
            "spec.containers[0].env[0].valueFrom.secretKeyRef.name",
        ),
        (
            "projected",
            json!({"volumes": [{"name": "s", "projected": {"sources": [{"secret": {"name": "db"}}]}}]}),
            "spec.volumes[0].projected.sources[0].secret.name",
        ),
        (
            "secret volume",
            json!({"volumes": [{"name": "s", "secret": {"secretName": "db"}}]}),
            "spec.volumes[0].secret.secretName",
        ),
    ];
    for (what, spec, field) in cases {
        let mut pod = bare_pod("p", "alice");
        for (k, v) in spec.as_object().into_iter().flatten() {
            pod["spec"][k] = v.clone();
        }
        let message = denied(&StaticCluster::default(), pod_create(ALICE, pod), &[field]);
        assert!(message.contains("Secret"), "{what}: {message}");
    }
    // The policy's image pull allow-list.
    let mut pod = bare_pod("p", "alice");
    pod["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    let mut p = policy();
    p.secrets.image_pull.push("regcred".into());
    let r = pod_create(ALICE, pod);
    let m = mutate(&p, &request(&r));
    let object = apply_raw(r.object.as_ref().unwrap_or(&Value::Null), &patch_of(&m));
    let d = validate(
        &p,
        &StaticCluster::default(),
        &request(&Req {
            object: Some(object),
            ..r
        }),
    );
    assert!(d.denied.is_none(), "{:?}", d.denied);
}

#[test]
fn a_workspace_pod_runs_as_its_own_serviceaccount_without_a_token() {
    let mut pod = bare_pod("p", "alice");
    pod["spec"]["serviceAccountName"] = json!("ci-deployer");
    pod["spec"]["serviceAccount"] = json!("ci-deployer");
    denied(
        &StaticCluster::default(),
        pod_create(ALICE, pod),
        &["spec.serviceAccountName", "set serviceAccountName: alice"],
    );
    let mut pod = bare_pod("p", "alice");
    pod["spec"]["automountServiceAccountToken"] = json!(true);
    denied(
        &StaticCluster::default(),
        pod_create(ALICE, pod),
        &["spec.automountServiceAccountToken"],
    );
    // A token the author asked for is not the API server's: refused, not removed.
    let mut pod = bare_pod("p", "alice");
    pod["spec"]["volumes"][0]["name"] = json!("my-token");
    pod["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("my-token");
    denied(
        &StaticCluster::default(),
        pod_create(ALICE, pod),
        &[
            "spec.volumes[0].projected.sources[0].serviceAccountToken",
            "carry no Kubernetes API token",
        ],
    );
}

#[test]
fn ephemeral_and_inline_volumes_cannot_reach_other_data() {
    for (field, template) in [
        (
            "dataSource",
            json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": "workspace-bob-0"}}),
        ),
        (
            "dataSourceRef",
            json!({"dataSourceRef": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "bob-snap"}}),
        ),
        ("volumeName", json!({"volumeName": "pv-of-bob"})),
        (
            "selector",
            json!({"selector": {"matchLabels": {"owner": "bob"}}}),
        ),
    ] {
        let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
        for (k, v) in template.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        let mut pod = bare_pod("p", "alice");
        pod["spec"]["volumes"] =
            json!([{"name": "clone", "ephemeral": {"volumeClaimTemplate": {"spec": spec}}}]);
        pod["spec"]["containers"][0]["volumeMounts"] = json!([]);
        denied(
            &StaticCluster::default(),
            pod_create(ALICE, pod),
            &[&format!(
                "spec.volumes[0].ephemeral.volumeClaimTemplate.spec.{field}"
            )],
        );
    }
    // A plain scratch ephemeral volume is fine; one that mints a workspace-labelled claim is not.
    let mut pod = bare_pod("p", "alice");
    pod["spec"]["volumes"] = json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([]);
    allowed(&StaticCluster::default(), pod_create(ALICE, pod.clone()));
    pod["spec"]["volumes"][0]["ephemeral"]["volumeClaimTemplate"]["metadata"] =
        json!({"labels": {"devenv.io/workspace": "bob"}});
    denied(
        &StaticCluster::default(),
        pod_create(ALICE, pod),
        &["may not carry devenv.io/workspace"],
    );
    // DRA: an existing ResourceClaim by name.
    let mut pod = bare_pod("p", "alice");
    pod["spec"]["resourceClaims"] = json!([{"name": "gpu", "resourceClaimName": "bobs-gpu"}]);
    denied(
        &StaticCluster::default(),
        pod_create(ALICE, pod),
        &["spec.resourceClaims[0].resourceClaimName"],
    );
}

// ---------------------------------------------------------------------------------------
// StatefulSet pods: provenance

#[test]
fn the_statefulset_controllers_pod_is_proven_against_the_cache() {
    let cluster = with_bob();
    let good = sts_pod("bob", 0, "uid-bob", "bob");
    allowed(&cluster, pod_create(STS, good.clone()));
    // A user writing the same ownerReference proves nothing.
    denied(
        &cluster,
        pod_create(ALICE, good.clone()),
        &[
            "metadata.ownerReferences[0]",
            "only the StatefulSet controller creates the pods of StatefulSet bob",
        ],
    );
    // The forged reference (bob-00, no controller: true) is a bare pod of bob: refused.
    let mut forged = good.clone();
    forged["metadata"]["name"] = json!("bob-00");
    forged["metadata"]["ownerReferences"][0]["controller"] = json!(null);
    denied(
        &cluster,
        pod_create(ALICE, forged),
        &["workspace bob is StatefulSet bob"],
    );
    // The controller, for a StatefulSet the cache does not hold (or another uid).
    let mut other = good.clone();
    other["metadata"]["ownerReferences"][0]["uid"] = json!("uid-evil");
    denied(
        &cluster,
        pod_create(STS, other),
        &["uid is not that of StatefulSet bob"],
    );
    // A pod whose claims are not its ordinal's.
    let mut wrong = good.clone();
    wrong["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = json!("workspace-bob-7");
    denied(
        &cluster,
        pod_create(STS, wrong),
        &["claim \"workspace-bob-7\" does not exist"],
    );
    // A pod carrying another owner than its StatefulSet.
    let mut owner = good;
    owner["metadata"]["annotations"][OWNER_ANNOTATION] = json!("alice");
    denied(
        &cluster,
        pod_create(STS, owner),
        &["the pod's owner must be its StatefulSet's (bob)"],
    );
}

#[test]
fn pods_of_other_controllers_cannot_be_workspaces() {
    let mut pod = bare_pod("web-7c9f-abcde", "bob");
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7c9f", "uid": "u", "controller": true}]);
    denied(
        &StaticCluster::default(),
        pod_create(
            User {
                name: "system:serviceaccount:kube-system:replicaset-controller",
                groups: &[],
            },
            pod,
        ),
        &["the pods of ReplicaSet web-7c9f cannot be workspaces"],
    );
}

// ---------------------------------------------------------------------------------------
// UPDATEs and subresources

fn stored_bare(owner: User<'static>) -> Value {
    allowed(
        &StaticCluster::default(),
        pod_create(owner, bare_pod("alice", "alice")),
    )
}

#[test]
fn adding_the_label_validates_the_pod_like_a_create() {
    let mut plain = bare_pod("p", "x");
    plain["metadata"]["labels"] = json!({});
    plain["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    let mut labelled = plain.clone();
    labelled["metadata"]["labels"] = json!({"devenv.io/workspace": "mallory"});
    denied(
        &StaticCluster::default(),
        Req {
            object: Some(labelled),
            old_object: Some(plain),
            ..req("UPDATE", POD, ALICE)
        },
        &["securityContext.privileged"],
    );
}

#[test]
fn the_label_and_owner_never_change_and_the_label_is_never_removed() {
    let stored = stored_bare(ALICE);
    let mut unlabelled = stored.clone();
    unlabelled["metadata"]["labels"] = json!({});
    denied(
        &StaticCluster::default(),
        Req {
            object: Some(unlabelled.clone()),
            old_object: Some(stored.clone()),
            ..req("UPDATE", POD, ALICE)
        },
        &["cannot be removed from a pod of workspace alice"],
    );
    allowed(
        &StaticCluster::default(),
        Req {
            object: Some(unlabelled),
            old_object: Some(stored.clone()),
            ..req("UPDATE", POD, ADMIN)
        },
    );
    let mut stolen = stored.clone();
    stolen["metadata"]["annotations"][OWNER_ANNOTATION] = json!("bob");
    denied(
        &StaticCluster::default(),
        Req {
            object: Some(stolen),
            old_object: Some(stored.clone()),
            ..req("UPDATE", POD, BOB)
        },
        &["devenv.io/owner records who created the workspace"],
    );
    // Through pods/status too.
    let mut relabelled = stored.clone();
    relabelled["metadata"]["labels"]["devenv.io/workspace"] = json!("bob");
    denied(
        &StaticCluster::default(),
        Req {
            object: Some(relabelled),
            old_object: Some(stored),
            sub_resource: Some("status"),
            ..req("UPDATE", POD, BOB)
        },
        &["cannot be changed through pods/status"],
    );
}

#[test]
fn only_the_owner_changes_a_workspace_pod() {
    let stored = stored_bare(ALICE);
    let mut new_image = stored.clone();
    new_image["spec"]["containers"][0]["image"] = json!("evil:1");
    denied(
        &StaticCluster::default(),
        Req {
            object: Some(new_image.clone()),
            old_object: Some(stored.clone()),
            ..req("UPDATE", POD, BOB)
        },
        &["workspace alice belongs to alice"],
    );
    allowed(
        &StaticCluster::default(),
        Req {
            object: Some(new_image),
            old_object: Some(stored.clone()),
            ..req("UPDATE", POD, ALICE)
        },
    );
    // Bookkeeping is anyone's (a finalizer, another label).
    let mut finalizer = stored.clone();
    finalizer["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    allowed(
        &StaticCluster::default(),
        Req {
            object: Some(finalizer),
            old_object: Some(stored.clone()),
            ..req("UPDATE", POD, BOB)
        },
    );
    // The claims gate is the controller's to lift.
    let mut ungated = stored.clone();
    ungated["spec"]["schedulingGates"] = json!([]);
    denied(
        &StaticCluster::default(),
        Req {
            object: Some(ungated.clone()),
            old_object: Some(stored.clone()),
            ..req("UPDATE", POD, ALICE)
        },
        &["lifted by the devenv controller"],
    );
    allowed(
        &StaticCluster::default(),
        Req {
            object: Some(ungated),
            old_object: Some(stored),
            ..req("UPDATE", POD, CONTROLLER)
        },
    );
}

#[test]
fn resize_and_debug_containers_are_the_owners_and_stay_in_the_tier() {
    let stored = stored_bare(ALICE);
    let mut bigger = stored.clone();
    bigger["spec"]["containers"][0]["resources"]["limits"] =
        json!({"cpu": "64", "memory": "256Gi"});
    let resize = |user, object: Value| Req {
        object: Some(object),
        old_object: Some(stored.clone()),
        sub_resource: Some("resize"),
        ..req("UPDATE", POD, user)
    };
    denied(
        &StaticCluster::default(),
        resize(ALICE, bigger.clone()),
        &[
            "spec.containers[0].resources.limits.cpu",
            "spec.containers[0].resources.limits.memory",
        ],
    );
    let mut within = stored.clone();
    within["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("2");
    allowed(&StaticCluster::default(), resize(ALICE, within.clone()));
    denied(
        &StaticCluster::default(),
        resize(BOB, within),
        &["workspace alice belongs to alice"],
    );
    let mut debug = stored.clone();
    debug["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox:1"}]);
    let ephemeral = |user| Req {
        object: Some(debug.clone()),
        old_object: Some(stored.clone()),
        sub_resource: Some("ephemeralcontainers"),
        ..req("UPDATE", POD, user)
    };
    allowed(&StaticCluster::default(), ephemeral(ALICE));
    denied(
        &StaticCluster::default(),
        ephemeral(BOB),
        &[
            "spec.ephemeralContainers",
            "workspace alice belongs to alice",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// StatefulSets

fn statefulset(name: &str, workspace: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {"devenv.io/workspace": workspace}},
            "template": {
                "metadata": {"labels": {"devenv.io/workspace": workspace}},
                "spec": {
                    "serviceAccountName": workspace,
                    "automountServiceAccountToken": false,
                    "containers": [{"name": "workspace", "image": "registry.example.com/dev:1"}],
                },
            },
        },
    })
}

#[test]
fn a_statefulset_records_its_owner_everywhere_its_objects_are() {
    let stored = allowed(
        &StaticCluster::default(),
        Req {
            object: Some(statefulset("alice", "alice")),
            ..req("CREATE", STATEFULSET, ALICE)
        },
    );
    assert_eq!(stored["metadata"]["annotations"][OWNER_ANNOTATION], "alice");
    assert_eq!(stored["metadata"]["labels"]["devenv.io/workspace"], "alice");
    assert_eq!(
        stored["spec"]["template"]["metadata"]["annotations"][OWNER_ANNOTATION],
        "alice"
    );
    for template in stored["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert_eq!(
            template["metadata"]["annotations"][OWNER_ANNOTATION], "alice",
            "{template}"
        );
        assert_eq!(
            template["metadata"]["labels"]["devenv.io/workspace"], "alice",
            "{template}"
        );
    }
    // A server-side apply that leaves the owner out keeps it.
    let mut reapplied = stored.clone();
    reapplied["metadata"]["annotations"] = json!({});
    reapplied["spec"]["template"]["metadata"]["annotations"] = json!({});
    let kept = allowed(
        &StaticCluster::default(),
        Req {
            object: Some(reapplied),
            old_object: Some(stored.clone()),
            ..req("UPDATE", STATEFULSET, ALICE)
        },
    );
    assert_eq!(kept["metadata"]["annotations"][OWNER_ANNOTATION], "alice");
    assert_eq!(
        kept["spec"]["template"]["metadata"]["annotations"][OWNER_ANNOTATION],
        "alice"
    );
    // Another user changing the image: refused.
    let mut changed = stored.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:1");
    denied(
        &StaticCluster::default(),
        Req {
            object: Some(changed),
            old_object: Some(stored.clone()),
            ..req("UPDATE", STATEFULSET, BOB)
        },
        &["workspace alice belongs to alice"],
    );
    // The lifecycle controller stops it.
    let mut stopped = stored.clone();
    stopped["spec"]["replicas"] = json!(0);
    allowed(
        &StaticCluster::default(),
        Req {
            object: Some(stopped),
            old_object: Some(stored),
            ..req("UPDATE", STATEFULSET, CONTROLLER)
        },
    );
}

#[test]
fn a_statefulset_cannot_take_another_workspaces_name_claims_or_label() {
    // Named unlike its workspace: its claims would be another workspace's names.
    denied(
        &StaticCluster::default(),
        Req {
            object: Some(statefulset("bob", "alice")),
            ..req("CREATE", STATEFULSET, ALICE)
        },
        &["metadata.name", "named like the workspace"],
    );
    // bob's workspace, deleted but for its claims: not alice's to re-create.
    let claims_only =
        StaticCluster::default().with_claim(NS, "workspace-bob-0", claim_of("bob", "bob"));
    denied(
        &claims_only,
        Req {
            object: Some(statefulset("bob", "bob")),
            ..req("CREATE", STATEFULSET, ALICE)
        },
        &["workspace bob belongs to bob"],
    );
    allowed(
        &claims_only,
        Req {
            object: Some(statefulset("bob", "bob")),
            ..req("CREATE", STATEFULSET, BOB)
        },
    );
    // A claim squatted under carol's future name (made by someone else, unlabelled).
    let squatted =
        StaticCluster::default().with_claim(NS, "workspace-carol-0", ClaimFacts::default());
    denied(&squatted, Req { object: Some(statefulset("carol", "carol")), ..req("CREATE", STATEFULSET, User { name: "carol", groups: &[] }) }, &[
        "claim \"workspace-carol-0\" is not workspace carol's (it is not labelled devenv.io/workspace)",
    ]);
    // Moving an existing StatefulSet's pods to another workspace.
    let stored = allowed(
        &StaticCluster::default(),
        Req {
            object: Some(statefulset("alice", "alice")),
            ..req("CREATE", STATEFULSET, ALICE)
        },
    );
    let mut moved = stored.clone();
    moved["spec"]["template"]["metadata"]["labels"]["devenv.io/workspace"] = json!("bob");
    denied(
        &StaticCluster::default(),
        Req {
            object: Some(moved),
            old_object: Some(stored),
            ..req("UPDATE", STATEFULSET, ALICE)
        },
        &["label cannot change"],
    );
}

// ---------------------------------------------------------------------------------------
// Claims

fn claim(name: &str, workspace: &str, owner: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS, "labels": {"devenv.io/workspace": workspace}, "annotations": {OWNER_ANNOTATION: owner}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
    })
}

/// A StatefulSet of `workspace` whose `workspace` claim template is filled from `source`
/// (a `dataSourceRef`).
fn statefulset_from(workspace: &str, source: Value) -> Value {
    let mut sts = statefulset(workspace, workspace);
    sts["spec"]["volumeClaimTemplates"] = json!([{
        "metadata": {"name": "workspace"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}},
            "dataSourceRef": source,
        },
    }]);
    sts
}

fn snapshot_ref(name: &str) -> Value {
    json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": name})
}

/// alice's workspace `alice` (a claim) with a snapshot of it; bob's with a snapshot of his;
/// a snapshot of a claim nobody labelled; a pre-provisioned one.
fn with_snapshots() -> StaticCluster {
    let of = |claim: &str| SnapshotFacts {
        source_claim: Some(claim.into()),
        created: None,
    };
    with_bob()
        .with_claim(NS, "workspace-alice-0", claim_of("alice", "alice"))
        .with_claim(NS, "loose", ClaimFacts::default())
        .with_snapshot(NS, "workspace-alice-0.t1", of("workspace-alice-0"))
        .with_snapshot(NS, "workspace-bob-0.t1", of("workspace-bob-0"))
        .with_snapshot(NS, "loose.t1", of("loose"))
        .with_snapshot(NS, "preprovisioned", SnapshotFacts::default())
}

#[test]
fn a_workspace_is_filled_only_from_snapshots_of_its_owners_workspaces() {
    let cluster = with_snapshots();
    // alice restores her own snapshot into a new workspace of hers.
    allowed(
        &cluster,
        Req {
            object: Some(statefulset_from(
                "alice2",
                snapshot_ref("workspace-alice-0.t1"),
            )),
            ..req("CREATE", STATEFULSET, ALICE)
        },
    );
    // bob's snapshot, a snapshot of an unlabelled claim, a pre-provisioned one, one that
    // does not exist, another namespace's: refused, naming the field and why.
    for (name, why) in [
        ("workspace-bob-0.t1", "it belongs to workspace bob of bob"),
        ("loose.t1", "it is not labelled devenv.io/workspace"),
        ("preprovisioned", "pre-provisioned"),
        ("nope", "does not exist"),
    ] {
        denied(
            &cluster,
            Req {
                object: Some(statefulset_from("alice2", snapshot_ref(name))),
                ..req("CREATE", STATEFULSET, ALICE)
            },
            &["spec.volumeClaimTemplates[0].spec.dataSourceRef", why],
        );
    }
    let mut elsewhere = snapshot_ref("workspace-alice-0.t1");
    elsewhere["namespace"] = json!("other");
    denied(
        &cluster,
        Req {
            object: Some(statefulset_from("alice2", elsewhere)),
            ..req("CREATE", STATEFULSET, ALICE)
        },
        &["another namespace"],
    );
    // A clone of bob's claim (dataSource PersistentVolumeClaim) or a populator.
    let mut clone = statefulset("alice2", "alice2");
    clone["spec"]["volumeClaimTemplates"] = json!([{
        "metadata": {"name": "workspace"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}},
                 "dataSource": {"kind": "PersistentVolumeClaim", "name": "workspace-bob-0"}},
    }]);
    denied(
        &cluster,
        Req {
            object: Some(clone),
            ..req("CREATE", STATEFULSET, ALICE)
        },
        &[
            "spec.volumeClaimTemplates[0].spec.dataSource",
            "not from a PersistentVolumeClaim",
        ],
    );
    // The claim itself, as the StatefulSet controller makes it from a template (the
    // template may predate the rule, or come through a path the StatefulSet rule missed).
    let cluster = cluster.with_statefulset(NS, "alice2", statefulset_facts("alice2", "alice"));
    let mut from_bob = claim("workspace-alice2-0", "alice2", "alice");
    from_bob["spec"]["dataSourceRef"] = snapshot_ref("workspace-bob-0.t1");
    denied(
        &cluster,
        Req {
            object: Some(from_bob),
            ..req("CREATE", CLAIM, STS)
        },
        &["spec.dataSourceRef", "workspace bob of bob"],
    );
    let mut from_own = claim("workspace-alice2-0", "alice2", "alice");
    from_own["spec"]["dataSourceRef"] = snapshot_ref("workspace-alice-0.t1");
    allowed(
        &cluster,
        Req {
            object: Some(from_own.clone()),
            ..req("CREATE", CLAIM, STS)
        },
    );
    // An unsynced snapshot cache proves nothing: refused, retry.
    let unsynced = StaticCluster {
        unsynced: true,
        ..cluster.clone()
    };
    denied(
        &unsynced,
        Req {
            object: Some(from_own),
            ..req("CREATE", CLAIM, STS)
        },
        &[NOT_SYNCED],
    );
    // An admin restores anything.
    allowed(
        &cluster,
        Req {
            object: Some(statefulset_from("bob2", snapshot_ref("preprovisioned"))),
            ..req("CREATE", STATEFULSET, ADMIN)
        },
    );
}

#[test]
fn a_snapshot_older_than_the_claim_holding_its_name_fills_nothing() {
    let at = |t: &str| t.parse().ok();
    // alice's workspace ws was purged; bob took the name; the snapshot is of alice's claim.
    let cluster = StaticCluster::default()
        .with_claim(
            NS,
            "workspace-ws-0",
            ClaimFacts {
                created: at("2026-12-04T12:00:00Z"),
                ..claim_of("ws", "bob")
            },
        )
        .with_snapshot(
            NS,
            "workspace-ws-0.old",
            SnapshotFacts {
                source_claim: Some("workspace-ws-0".into()),
                created: at("2026-12-01T09:00:00Z"),
            },
        )
        .with_snapshot(
            NS,
            "workspace-ws-0.new",
            SnapshotFacts {
                source_claim: Some("workspace-ws-0".into()),
                created: at("2026-12-04T12:30:00Z"),
            },
        );
    denied(
        &cluster,
        Req {
            object: Some(statefulset_from("copy", snapshot_ref("workspace-ws-0.old"))),
            ..req("CREATE", STATEFULSET, BOB)
        },
        &["was taken before claim \"workspace-ws-0\" was made"],
    );
    // bob's own snapshot of his claim restores.
    allowed(
        &cluster,
        Req {
            object: Some(statefulset_from("copy", snapshot_ref("workspace-ws-0.new"))),
            ..req("CREATE", STATEFULSET, BOB)
        },
    );
}

#[test]
fn a_deleted_snapshot_never_freezes_the_workspace_it_filled() {
    let cluster = with_snapshots();
    let stored = allowed(
        &cluster,
        Req {
            object: Some(statefulset_from(
                "alice2",
                snapshot_ref("workspace-alice-0.t1"),
            )),
            ..req("CREATE", STATEFULSET, ALICE)
        },
    );
    // The snapshot is gone; stop (replicas 0) is an UPDATE with the same templates.
    let gone = StaticCluster {
        snapshots: Default::default(),
        ..cluster
    }
    .with_statefulset(NS, "alice2", statefulset_facts("alice2", "alice"));
    let mut stopped = stored.clone();
    stopped["spec"]["replicas"] = json!(0);
    allowed(
        &gone,
        Req {
            object: Some(stopped),
            old_object: Some(stored.clone()),
            ..req("UPDATE", STATEFULSET, ALICE)
        },
    );
    // New templates are judged again.
    let mut retargeted = stored.clone();
    retargeted["spec"]["volumeClaimTemplates"][0]["spec"]["dataSourceRef"]["name"] =
        json!("workspace-bob-0.t1");
    denied(
        &gone,
        Req {
            object: Some(retargeted),
            old_object: Some(stored),
            ..req("UPDATE", STATEFULSET, ALICE)
        },
        &["dataSourceRef"],
    );
}

/// A VolumeSnapshot labelled as `workspace`'s, of claim `claim`.
fn labelled_snapshot(name: &str, workspace: &str, claim: &str) -> Value {
    json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name, "namespace": NS, "labels": {"devenv.io/workspace": workspace, "devenv.io/snapshot-set": "t"}},
        "spec": {"volumeSnapshotClassName": "c", "source": {"persistentVolumeClaimName": claim}},
    })
}

#[test]
fn a_workspaces_snapshots_are_made_and_deleted_by_its_owner_of_its_own_claims() {
    let cluster =
        with_snapshots().with_statefulset(NS, "alice", statefulset_facts("alice", "alice"));
    // alice snapshots her claim, labelled as her workspace's.
    allowed(
        &cluster,
        Req {
            object: Some(labelled_snapshot(
                "workspace-alice-0.t",
                "alice",
                "workspace-alice-0",
            )),
            ..req("CREATE", SNAPSHOT, ALICE)
        },
    );
    // bob plants a snapshot in alice's sets (of her own claim: the restore would trust its
    // annotations), or labels a snapshot of bob's claim as alice's.
    denied(
        &cluster,
        Req {
            object: Some(labelled_snapshot(
                "workspace-alice-0.t",
                "alice",
                "workspace-alice-0",
            )),
            ..req("CREATE", SNAPSHOT, BOB)
        },
        &["workspace alice belongs to alice"],
    );
    denied(
        &cluster,
        Req {
            object: Some(labelled_snapshot(
                "workspace-alice-0.x",
                "alice",
                "workspace-bob-0",
            )),
            ..req("CREATE", SNAPSHOT, ALICE)
        },
        &[
            "spec.source.persistentVolumeClaimName",
            "claim \"workspace-bob-0\"",
        ],
    );
    // Deleting one is deleting data: the owner's, not bob's.
    let stored = labelled_snapshot("workspace-alice-0.t", "alice", "workspace-alice-0");
    denied(
        &cluster,
        Req {
            old_object: Some(stored.clone()),
            ..req("DELETE", SNAPSHOT, BOB)
        },
        &["deleting a snapshot deletes the data it holds"],
    );
    allowed(
        &cluster,
        Req {
            old_object: Some(stored.clone()),
            ..req("DELETE", SNAPSHOT, ALICE)
        },
    );
    // Relabelled into bob's workspace: refused.
    let mut moved = stored.clone();
    moved["metadata"]["labels"]["devenv.io/workspace"] = json!("bob");
    denied(
        &cluster,
        Req {
            object: Some(moved),
            old_object: Some(stored),
            ..req("UPDATE", SNAPSHOT, BOB)
        },
        &["label of a workspace's snapshot cannot change"],
    );
    // Unlabelled snapshots are not the webhook's (the namespace is the boundary).
    let mut plain = labelled_snapshot("mine", "x", "workspace-bob-0");
    plain["metadata"]["labels"] = json!({});
    allowed(
        &cluster,
        Req {
            object: Some(plain),
            ..req("CREATE", SNAPSHOT, ALICE)
        },
    );
}

#[test]
fn workspace_claims_are_made_by_their_statefulset_or_the_controller() {
    let cluster = with_bob();
    allowed(
        &cluster,
        Req {
            object: Some(claim("workspace-bob-1", "bob", "bob")),
            ..req("CREATE", CLAIM, STS)
        },
    );
    allowed(
        &cluster,
        Req {
            object: Some(claim("workspace-alice-bare", "alice", "alice")),
            ..req("CREATE", CLAIM, CONTROLLER)
        },
    );
    // A user minting a claim labelled as bob's (or the ephemeral-volume controller doing it
    // for a pod's template) is refused.
    denied(
        &cluster,
        Req {
            object: Some(claim("workspace-bob-9", "bob", "bob")),
            ..req("CREATE", CLAIM, ALICE)
        },
        &["made by its StatefulSet or by the devenv controller"],
    );
    denied(
        &cluster,
        Req {
            object: Some(claim("p-x", "bob", "bob")),
            ..req(
                "CREATE",
                CLAIM,
                User {
                    name: "system:serviceaccount:kube-system:ephemeral-volume-controller",
                    groups: &[],
                },
            )
        },
        &["made by its StatefulSet"],
    );
    // The StatefulSet controller, for a claim that is not the StatefulSet's.
    denied(
        &cluster,
        Req {
            object: Some(claim("other-bob-0", "bob", "bob")),
            ..req("CREATE", CLAIM, STS)
        },
        &["made by its StatefulSet"],
    );
    denied(
        &cluster,
        Req {
            object: Some(claim("workspace-bob-1", "bob", "alice")),
            ..req("CREATE", CLAIM, STS)
        },
        &["made by its StatefulSet"],
    );
}

#[test]
fn workspace_claims_keep_their_label_and_owner_and_only_owners_delete_them() {
    let old = claim("workspace-bob-0", "bob", "bob");
    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"]["devenv.io/workspace"] = json!("alice");
    relabelled["metadata"]["annotations"][OWNER_ANNOTATION] = json!("alice");
    denied(
        &with_bob(),
        Req {
            object: Some(relabelled),
            old_object: Some(old.clone()),
            ..req("UPDATE", CLAIM, ALICE)
        },
        &[
            "label of a workspace's claim cannot change",
            "devenv.io/owner of a workspace's claim cannot change",
        ],
    );
    // The volume binder and provisioners annotate claims: bookkeeping passes.
    let mut bound = old.clone();
    bound["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] = json!("yes");
    bound["spec"]["volumeName"] = json!("pv-1");
    allowed(
        &with_bob(),
        Req {
            object: Some(bound),
            old_object: Some(old.clone()),
            ..req(
                "UPDATE",
                CLAIM,
                User {
                    name: "system:serviceaccount:kube-system:persistent-volume-binder",
                    groups: &[],
                },
            )
        },
    );
    let delete = |user| Req {
        old_object: Some(old.clone()),
        ..req("DELETE", CLAIM, user)
    };
    denied(
        &with_bob(),
        delete(ALICE),
        &[
            "workspace bob belongs to bob",
            "deleting a claim deletes its data",
        ],
    );
    allowed(&with_bob(), delete(BOB));
    allowed(&with_bob(), delete(ADMIN));
    allowed(&with_bob(), delete(CONTROLLER));
    allowed(
        &with_bob(),
        delete(User {
            name: "system:serviceaccount:kube-system:namespace-controller",
            groups: &[],
        }),
    );
}

// ---------------------------------------------------------------------------------------
// Caches

#[test]
fn an_unsynced_cache_refuses_what_it_cannot_prove() {
    let unsynced = StaticCluster {
        unsynced: true,
        ..StaticCluster::default()
    };
    denied(
        &unsynced,
        pod_create(ALICE, bare_pod("p", "alice")),
        &[NOT_SYNCED],
    );
    denied(
        &unsynced,
        pod_create(STS, sts_pod("bob", 0, "uid-bob", "bob")),
        &[NOT_SYNCED],
    );
    denied(
        &unsynced,
        Req {
            object: Some(statefulset("alice", "alice")),
            ..req("CREATE", STATEFULSET, ALICE)
        },
        &[NOT_SYNCED],
    );
    // What needs no cache is unaffected: a non-workspace pod, an admin.
    let mut plain = bare_pod("p", "x");
    plain["metadata"]["labels"] = json!({});
    allowed(&unsynced, pod_create(ALICE, plain));
    allowed(&unsynced, pod_create(ADMIN, bare_pod("p", "alice")));
}
