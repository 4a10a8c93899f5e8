//! The attacker suite: in one shared namespace, bob — a user with the ordinary rights of a
//! namespace editor (pods, debug containers, resize, StatefulSets; no Secrets, no claim
//! creation) — tries every way we know to reach alice's workspace, its claims or a Secret,
//! and each is refused on the real API server with a message naming the field and the rule.
//! Alice's own workspace, made by `kubectl devenv create` as alice, keeps working, and the
//! StatefulSet controller's pod is admitted with alice as its owner.

use serde_json::{json, Value};

use devenv_e2e::objects::{absent, get_ok};
use devenv_e2e::output::{assert_mentions, fails, ok, stderr};
use devenv_e2e::plugin::{devenv_as, kubectl_as, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::workspace::{pod_names_of, sts_claim_names, wait_claims, wait_pods};
use devenv_e2e::{eventually, shared, unique_name, Cluster};
use std::path::Path;
use std::time::Duration;

const RBAC: Duration = Duration::from_secs(30);

/// Bob's namespace-editor rights (what a team member with `edit`-like access has), minus
/// Secrets and claim creation.
fn editor_role(ns: &str, user: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "List", "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "pod-editor", "namespace": ns},
                "rules": [
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                    {"apiGroups": [""], "resources": ["pods/ephemeralcontainers", "pods/resize", "pods/status"], "verbs": ["get", "update", "patch"]},
                    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
                    {"apiGroups": [""], "resources": ["persistentvolumeclaims", "serviceaccounts"], "verbs": ["get", "list"]}
                ]
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "pod-editor", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-editor"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "devenv-users", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "devenv-user"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
            }
        ]
    })
}

fn apply(c: &Cluster, doc: &Value) {
    let out = c.kubectl_stdin(["apply", "-f", "-"], &doc.to_string());
    assert!(out.status.success(), "apply: {}", stderr(&out));
}

/// Bob's bare workspace pod `name` of workspace `ws` (its ServiceAccount exists), with
/// `edit` applied to it.
fn bob_pod(name: &str, ws: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"devenv.io/workspace": ws}},
        "spec": {
            "serviceAccountName": ws,
            "containers": [{"name": "dev", "image": "busybox:1.36", "command": ["sleep", "3600"]}]
        }
    });
    edit(&mut pod);
    pod
}

/// Creating `pod` as `cfg` fails, and the refusal names every fragment.
fn refused(cfg: &Path, ns: &str, pod: &Value, fragments: &[&str], what: &str) -> String {
    let err = fails(
        &kubectl_as(cfg, ns, &["create", "-f", "-"], Some(pod)),
        what,
    );
    assert_mentions(&err, fragments, what);
    err
}

#[test]
fn a_neighbour_cannot_reach_a_workspaces_pods_claims_or_secrets() {
    let _serial = serial();
    let _t = Timer::start("a_neighbour_cannot_reach_a_workspaces_pods_claims_or_secrets");
    let c = shared();
    let ns = unique_name("shared");
    ok(&c.kubectl(["create", "namespace", &ns]), "create namespace");
    let _wh = webhook_for(c, &ns);
    let alice = unique_name("alice");
    let bob = unique_name("bob");
    let alice_cfg = c.user_kubeconfig(&alice).expect("alice's kubeconfig");
    let bob_cfg = c.user_kubeconfig(&bob).expect("bob's kubeconfig");
    apply(c, &editor_role(&ns, &bob));
    apply(
        c,
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "devenv-alice", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "devenv-user"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": alice}]
        }),
    );
    // A Secret of alice's that bob would like, and bob's own ServiceAccount for his pods.
    ok(
        &c.kubectl([
            "-n",
            &ns,
            "create",
            "secret",
            "generic",
            "alice-git",
            "--from-literal=token=s3cr3t",
        ]),
        "create secret",
    );
    ok(
        &c.kubectl(["-n", &ns, "create", "serviceaccount", "bobws"]),
        "create sa",
    );

    // Alice's workspace, made by the plugin as alice.
    eventually("alice's binding", RBAC, || {
        devenv_as(&alice_cfg, ["-n", &ns, "list"])
            .status
            .success()
            .then_some(())
    });
    ok(
        &devenv_as(&alice_cfg, ["-n", &ns, "create", "alice", "--no-wait"]),
        "create alice as alice",
    );
    wait_pods(c, &ns, "alice", &pod_names_of("alice", 1));
    wait_claims(c, &ns, "alice", &sts_claim_names("alice", 0..1));
    let sts = get_ok(c, &["statefulset", "alice", "-n", &ns]);
    assert_eq!(
        sts["metadata"]["annotations"]["devenv.io/owner"],
        alice.as_str(),
        "{sts}"
    );
    let pod = get_ok(c, &["pod", "alice-0", "-n", &ns]);
    assert_eq!(
        pod["metadata"]["annotations"]["devenv.io/owner"],
        alice.as_str(),
        "{pod}"
    );
    let claim = get_ok(c, &["pvc", "workspace-alice-0", "-n", &ns]);
    assert_eq!(
        claim["metadata"]["annotations"]["devenv.io/owner"],
        alice.as_str(),
        "{claim}"
    );
    let container = pod["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or("workspace")
        .to_string();
    let sts_uid = sts["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    eventually("bob's bindings", RBAC, || {
        kubectl_as(&bob_cfg, &ns, &["auth", "can-i", "create", "pods"], None)
            .status
            .success()
            .then_some(())
    });

    // 1. Mount alice's claim by name, or clone it through an ephemeral volume.
    refused(
        &bob_cfg,
        &ns,
        &bob_pod("loot", "bobws", |p| {
            p["spec"]["volumes"] = json!([{"name": "loot", "persistentVolumeClaim": {"claimName": "workspace-alice-0"}}]);
        }),
        &[
            "spec.volumes[0].persistentVolumeClaim.claimName",
            "is not workspace bobws's",
            "workspace alice of",
        ],
        "mount alice's claim",
    );
    refused(
        &bob_cfg,
        &ns,
        &bob_pod("clone", "bobws", |p| {
            p["spec"]["volumes"] = json!([{"name": "copy", "ephemeral": {"volumeClaimTemplate": {"spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}},
                "dataSource": {"kind": "PersistentVolumeClaim", "name": "workspace-alice-0"}}}}}]);
        }),
        &["spec.volumes[0].ephemeral.volumeClaimTemplate.spec.dataSource"],
        "clone alice's claim",
    );
    // Nothing was made for the refused pods (admission has no side effects).
    for claim in [
        "workspace-bobws-bare",
        "history-bobws-bare",
        "config-bobws-bare",
    ] {
        assert!(
            absent(c, &["pvc", claim, "-n", &ns]),
            "{claim} was created for a refused pod"
        );
    }

    // 2. Join alice's workspace: a bare pod of it, an ordinal name, a forged owner reference.
    refused(
        &bob_cfg,
        &ns,
        &bob_pod("alice-shell", "alice", |p| {
            p["spec"]["serviceAccountName"] = json!("alice")
        }),
        &[
            "metadata.labels[devenv.io/workspace]",
            "workspace alice is StatefulSet alice",
        ],
        "a bare pod of alice's workspace",
    );
    let forged = |controller: bool| {
        bob_pod("alice-1", "alice", |p| {
            p["spec"]["serviceAccountName"] = json!("alice");
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet",
                "name": "alice", "uid": sts_uid, "controller": controller}]);
        })
    };
    refused(
        &bob_cfg,
        &ns,
        &forged(true),
        &[
            "metadata.ownerReferences[0]",
            "only the StatefulSet controller creates the pods of StatefulSet alice",
        ],
        "a forged controller reference",
    );
    refused(
        &bob_cfg,
        &ns,
        &forged(false),
        &["workspace alice is StatefulSet alice"],
        "an owner reference without controller: true",
    );
    refused(
        &bob_cfg,
        &ns,
        &bob_pod("alice-7", "bobws", |_| {}),
        &["metadata.name", "ordinal 7 of StatefulSet alice"],
        "an ordinal name of alice's StatefulSet",
    );
    // A stated owner is never believed: the mutating webhook records the requester.
    ok(
        &kubectl_as(
            &bob_cfg,
            &ns,
            &["create", "-f", "-"],
            Some(&bob_pod("stated-owner", "bobws", |p| {
                p["metadata"]["annotations"] = json!({"devenv.io/owner": alice});
            })),
        ),
        "stating alice as the owner",
    );
    let stated = get_ok(c, &["pod", "stated-owner", "-n", &ns]);
    assert_eq!(
        stated["metadata"]["annotations"]["devenv.io/owner"],
        bob.as_str(),
        "{stated}"
    );
    ok(
        &c.kubectl(["-n", &ns, "delete", "pod", "stated-owner", "--wait=false"]),
        "delete",
    );

    // 3. Secrets and identities the allow-list does not name.
    refused(
        &bob_cfg,
        &ns,
        &bob_pod("csi", "bobws", |p| {
            p["spec"]["volumes"] = json!([{"name": "s", "csi": {"driver": "secrets-store.csi.k8s.io",
                "nodePublishSecretRef": {"name": "alice-git"}}}]);
        }),
        &["alice-git"],
        "a CSI nodePublishSecretRef",
    );
    refused(
        &bob_cfg,
        &ns,
        &bob_pod("pull", "bobws", |p| {
            p["spec"]["imagePullSecrets"] = json!([{"name": "alice-git"}])
        }),
        &["spec.imagePullSecrets[0]", "alice-git"],
        "an image pull Secret",
    );
    refused(
        &bob_cfg,
        &ns,
        &bob_pod("env", "bobws", |p| {
            p["spec"]["containers"][0]["env"] = json!([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "alice-git", "key": "token"}}}]);
        }),
        &[
            "spec.containers[0].env[0].valueFrom.secretKeyRef",
            "alice-git",
        ],
        "a secretKeyRef",
    );
    refused(
        &bob_cfg,
        &ns,
        &bob_pod("sa", "bobws", |p| {
            p["spec"]["serviceAccountName"] = json!("alice")
        }),
        &["spec.serviceAccountName", "not \"alice\""],
        "alice's ServiceAccount",
    );
    refused(
        &bob_cfg,
        &ns,
        &bob_pod("token", "bobws", |p| {
            p["spec"]["automountServiceAccountToken"] = json!(true)
        }),
        &["spec.automountServiceAccountToken"],
        "an API token",
    );

    // 4. Labels: an empty value, and a label added to a pod that breaks the rules.
    refused(
        &bob_cfg,
        &ns,
        &bob_pod("empty", "", |p| {
            p["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
        }),
        &[
            "metadata.labels[devenv.io/workspace]",
            "not a valid workspace name",
        ],
        "an empty workspace label",
    );
    let sneaky = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sneaky"},
        "spec": {"serviceAccountName": "bobws", "automountServiceAccountToken": false,
                 "containers": [{"name": "dev", "image": "busybox:1.36", "securityContext": {"privileged": true}}]}
    });
    ok(
        &kubectl_as(&bob_cfg, &ns, &["create", "-f", "-"], Some(&sneaky)),
        "a plain privileged pod",
    );
    let err = fails(
        &kubectl_as(
            &bob_cfg,
            &ns,
            &["label", "pod", "sneaky", "devenv.io/workspace=bobws"],
            None,
        ),
        "labelling a privileged pod as a workspace",
    );
    assert_mentions(&err, &["privileged"], "label update");

    // 5. Alice's running pod: debug containers, resize, owner and label, her StatefulSet.
    let err = fails(
        &kubectl_as(
            &bob_cfg,
            &ns,
            &[
                "debug",
                "alice-0",
                "--image=busybox:1.36",
                "-c",
                "peek",
                "--profile=restricted",
            ],
            None,
        ),
        "bob debugging alice's pod",
    );
    assert_mentions(&err, &["spec.ephemeralContainers", &alice], "debug");
    // Limits only: the pod stays Burstable (the API server refuses a QoS class change).
    let resize = json!({"spec": {"containers": [{"name": container, "resources": {"limits": {"cpu": "64"}}}]}}).to_string();
    let err = fails(
        &kubectl_as(
            &bob_cfg,
            &ns,
            &[
                "patch",
                "pod",
                "alice-0",
                "--subresource=resize",
                "--type=strategic",
                "-p",
                &resize,
            ],
            None,
        ),
        "bob resizing alice's pod",
    );
    assert_mentions(&err, &[&alice], "resize by bob");
    // Even an admin (who may act for alice) stays within the tier.
    let err = fails(
        &c.kubectl([
            "-n",
            &ns,
            "patch",
            "pod",
            "alice-0",
            "--subresource=resize",
            "--type=strategic",
            "-p",
            &resize,
        ]),
        "admin resizing beyond the tier",
    );
    assert_mentions(&err, &["resources.limits.cpu"], "resize beyond the tier");
    let err = fails(
        &kubectl_as(
            &bob_cfg,
            &ns,
            &[
                "annotate",
                "pod",
                "alice-0",
                "--overwrite",
                &format!("devenv.io/owner={bob}"),
            ],
            None,
        ),
        "bob taking alice's pod",
    );
    assert_mentions(
        &err,
        &["metadata.annotations[devenv.io/owner]"],
        "owner change",
    );
    let err = fails(
        &kubectl_as(
            &bob_cfg,
            &ns,
            &["label", "pod", "alice-0", "devenv.io/workspace-"],
            None,
        ),
        "bob removing the workspace label",
    );
    assert_mentions(
        &err,
        &["metadata.labels[devenv.io/workspace]"],
        "label removal",
    );
    let err = fails(
        &kubectl_as(
            &bob_cfg,
            &ns,
            &["set", "env", "statefulset/alice", "EVIL=1"],
            None,
        ),
        "bob changing alice's StatefulSet",
    );
    assert_mentions(&err, &[&alice], "statefulset update");
    let mut twin = sts.clone();
    twin["metadata"] = json!({"name": "alice-twin"});
    twin.as_object_mut().map(|o| o.remove("status"));
    refused(
        &bob_cfg,
        &ns,
        &twin,
        &["a workspace's StatefulSet is named like the workspace"],
        "a second StatefulSet of alice's workspace",
    );

    // What stays possible: bob's own bare workspace pod is admitted, owned by him, and
    // waits for its claims behind the devenv gate; alice-0 is untouched.
    ok(
        &kubectl_as(
            &bob_cfg,
            &ns,
            &["create", "-f", "-"],
            Some(&bob_pod("mine", "bobws", |_| {})),
        ),
        "bob's own bare workspace pod",
    );
    let mine = get_ok(c, &["pod", "mine", "-n", &ns]);
    assert_eq!(
        mine["metadata"]["annotations"]["devenv.io/owner"],
        bob.as_str(),
        "{mine}"
    );
    assert_eq!(
        mine["spec"]["schedulingGates"],
        json!([{"name": "devenv.io/claims"}]),
        "{mine}"
    );
    let after = get_ok(c, &["pod", "alice-0", "-n", &ns]);
    assert_eq!(
        after["metadata"]["annotations"]["devenv.io/owner"],
        alice.as_str()
    );
    assert!(
        after["spec"].get("ephemeralContainers").is_none(),
        "{after}"
    );
    ok(
        &c.kubectl(["delete", "namespace", &ns, "--wait=false"]),
        "cleanup",
    );
}
