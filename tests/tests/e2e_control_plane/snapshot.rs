//! VolumeSnapshots against external-snapshotter v8's real CRDs: `snapshot` makes one per
//! claim that the schema accepts as sent; `restore --from-snapshot SET --as NEW` makes a
//! workspace whose claims the StatefulSet controller creates filled from them (admitted by
//! the webhook); a neighbour restoring someone else's snapshot, or a snapshot he took of
//! someone else's claim, is refused by the API server naming the claim's owner. Without the
//! snapshot API, `snapshot` names the missing capability. Scaled up once its snapshots are
//! deleted, a restored workspace gets its new member, empty, and keeps its pod. (No CSI
//! driver here: nothing is snapshotted, the restored claims stay Pending; the driver's part
//! is not this repo's.)

use serde_json::{json, Value};

use devenv_e2e::objects::{absent, get, get_ok};
use devenv_e2e::output::{assert_mentions, fails, ok};
use devenv_e2e::plugin::{devenv_as, dv, kubectl_as, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::snapshots::install_snapshot_crds;
use devenv_e2e::workspace::{sts_claim_names, wait_claims};
use devenv_e2e::{eventually, shared, unique_name, Cluster};
use std::time::Duration;

const CLASS: &str = "devenv-e2e-snapshots";

fn apply(c: &Cluster, doc: &Value) {
    ok(
        &c.kubectl_stdin(["apply", "-f", "-"], &doc.to_string()),
        "apply",
    );
}

fn devenv_user(ns: &str, user: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": format!("devenv-{user}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "devenv-user"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    })
}

/// The snapshots of `workspace`'s set `set`.
fn snapshots_of(c: &Cluster, ns: &str, workspace: &str, set: &str) -> Vec<Value> {
    let out = ok(
        &c.kubectl([
            "get",
            "volumesnapshots",
            "-n",
            ns,
            "-l",
            &format!("devenv.io/workspace={workspace},devenv.io/snapshot-set={set}"),
            "-o",
            "json",
        ]),
        "get volumesnapshots",
    );
    let v: Value = serde_json::from_str(&out).unwrap_or_default();
    v["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn snapshots_restore_as_a_new_workspace_of_the_owner_only() {
    let _serial = serial();
    let _t = Timer::start("snapshots_restore_as_a_new_workspace_of_the_owner_only");
    let c = shared();
    let ns = unique_name("snap");
    ok(&c.kubectl(["create", "namespace", &ns]), "create namespace");

    // No snapshot API yet: the command names what is missing.
    let _wh = webhook_for(c, &ns);
    ok(
        &dv(c, &ns, &["create", "probe", "--no-wait"]),
        "create probe (admin)",
    );
    let err = fails(
        &dv(c, &ns, &["snapshot", "probe"]),
        "snapshot without the API",
    );
    assert_mentions(
        &err,
        &[
            "does not serve VolumeSnapshots",
            "snapshot.storage.k8s.io/v1",
            "kubectl devenv backup",
        ],
        "snapshot without the API",
    );

    install_snapshot_crds(c);
    apply(
        c,
        &json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": CLASS},
            "driver": "devenv.test/no-driver",
            "deletionPolicy": "Delete",
        }),
    );
    // A webhook started now watches the snapshot API from its start.
    drop(_wh);
    let _wh = webhook_for(c, &ns);
    // (status exits 1 here: this cluster lacks a default StorageClass; its lines still say.)
    let status = String::from_utf8_lossy(&dv(c, &ns, &["status"]).stdout).to_string();
    assert!(
        status.contains(&format!("VolumeSnapshotClass {CLASS}")),
        "{status}"
    );

    let alice = unique_name("alice");
    let bob = unique_name("bob");
    let alice_cfg = c.user_kubeconfig(&alice).expect("alice's kubeconfig");
    let bob_cfg = c.user_kubeconfig(&bob).expect("bob's kubeconfig");
    apply(c, &devenv_user(&ns, &alice));
    apply(c, &devenv_user(&ns, &bob));
    eventually("the bindings", Duration::from_secs(30), || {
        (devenv_as(&alice_cfg, ["-n", &ns, "list"]).status.success()
            && devenv_as(&bob_cfg, ["-n", &ns, "list"]).status.success())
        .then_some(())
    });
    ok(
        &devenv_as(&alice_cfg, ["-n", &ns, "create", "alice", "--no-wait"]),
        "create alice as alice",
    );
    wait_claims(c, &ns, "alice", &sts_claim_names("alice", 0..1));

    // No default class, and alice may not list classes (cluster-scoped): she is told --class.
    let err = fails(
        &devenv_as(&alice_cfg, ["-n", &ns, "snapshot", "alice"]),
        "snapshot without a class",
    );
    assert_mentions(&err, &["--class"], "snapshot without a class");

    // 1. A snapshot per claim, stored as sent (the CRD's schema prunes nothing we set).
    let out = devenv_as(
        &alice_cfg,
        ["-n", &ns, "snapshot", "alice", "--class", CLASS],
    );
    let said = ok(&out, "snapshot alice");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let set = err
        .split_whitespace()
        .skip_while(|w| *w != "set")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    assert!(!set.is_empty(), "snapshot names its set: {err}");
    let snaps = snapshots_of(c, &ns, "alice", &set);
    assert_eq!(snaps.len(), 3, "{said}\n{snaps:?}");
    let mut sources: Vec<String> = snaps
        .iter()
        .map(|s| {
            assert_eq!(s["spec"]["volumeSnapshotClassName"], CLASS, "{s}");
            assert_eq!(s["metadata"]["annotations"]["devenv.io/member"], "0", "{s}");
            assert_eq!(
                s["metadata"]["name"],
                format!(
                    "{}.{set}",
                    s["spec"]["source"]["persistentVolumeClaimName"]
                        .as_str()
                        .unwrap_or("?")
                ),
                "{s}"
            );
            s["spec"]["source"]["persistentVolumeClaimName"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    sources.sort();
    assert_eq!(sources, sts_claim_names("alice", 0..1));
    // The real schema judges a snapshot with two sources (its CEL rule).
    let mut both = snaps[0].clone();
    both["metadata"] = json!({"name": "two-sources", "namespace": ns});
    both["spec"]["source"]["volumeSnapshotContentName"] = json!("content-x");
    let refused = fails(
        &c.kubectl_stdin(["create", "-f", "-"], &both.to_string()),
        "a snapshot with two sources",
    );
    assert_mentions(&refused, &["exactly one of"], "a snapshot with two sources");

    // 2. In place is not what a snapshot restore does: it says --as.
    let err = fails(
        &devenv_as(
            &alice_cfg,
            ["-n", &ns, "restore", "alice", "--from-snapshot", &set],
        ),
        "in-place restore from a snapshot",
    );
    assert_mentions(&err, &["--as NEW"], "in-place restore from a snapshot");

    // 3. Restored --as a new workspace: its claims are made filled from the snapshots.
    ok(
        &devenv_as(
            &alice_cfg,
            [
                "-n",
                &ns,
                "restore",
                "alice",
                "--from-snapshot",
                &set,
                "--as",
                "alice2",
            ],
        ),
        "restore --from-snapshot --as alice2",
    );
    let claims = wait_claims(c, &ns, "alice2", &sts_claim_names("alice2", 0..1));
    for (name, claim) in &claims {
        let volume = name.split('-').next().unwrap_or_default();
        assert_eq!(
            claim["spec"]["dataSourceRef"]["name"],
            format!("{volume}-alice-0.{set}"),
            "{name}: {claim}"
        );
        assert_eq!(claim["spec"]["dataSourceRef"]["kind"], "VolumeSnapshot");
        assert_eq!(
            claim["metadata"]["annotations"]["devenv.io/owner"],
            alice.as_str()
        );
    }

    // 4. Bob restores alice's set into a workspace of his: refused, nothing made.
    let err = fails(
        &devenv_as(
            &bob_cfg,
            [
                "-n",
                &ns,
                "restore",
                "alice",
                "--from-snapshot",
                &set,
                "--as",
                "bob2",
            ],
        ),
        "bob restoring alice's snapshots",
    );
    assert_mentions(
        &err,
        &[
            "dataSourceRef",
            "workspace-alice-0",
            &format!("belongs to workspace alice of {alice}"),
        ],
        "bob restoring alice's snapshots",
    );
    assert!(absent(c, &["statefulset", "bob2", "-n", &ns]));

    // 5. Bob snapshots alice's claim himself. Labelled as a set of his workspace, or planted
    // among alice's sets: refused by the webhook (a workspace's snapshots are its owner's, of
    // its own claims). Deleting alice's snapshot: refused too (it is her data).
    ok(
        &devenv_as(&bob_cfg, ["-n", &ns, "create", "bob", "--no-wait"]),
        "create bob as bob",
    );
    let snapshot = |name: &str, labels: Value| {
        json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {
                "name": name, "namespace": ns, "labels": labels,
                "annotations": {"devenv.io/volume": "workspace", "devenv.io/member": "0", "devenv.io/image": "busybox:1.36"},
            },
            "spec": {"volumeSnapshotClassName": CLASS, "source": {"persistentVolumeClaimName": "workspace-alice-0"}},
        })
    };
    for (name, labels, says) in [
        (
            "workspace-bob-0.evil".to_owned(),
            json!({"devenv.io/workspace": "bob", "devenv.io/snapshot-set": "evil"}),
            "is of one of its claims, not of claim \"workspace-alice-0\"".to_owned(),
        ),
        (
            format!("workspace-alice-0.{set}x"),
            json!({"devenv.io/workspace": "alice", "devenv.io/snapshot-set": format!("{set}x")}),
            format!("workspace alice belongs to {alice}"),
        ),
    ] {
        let out = kubectl_as(
            &bob_cfg,
            &ns,
            &["create", "-f", "-"],
            Some(&snapshot(&name, labels)),
        );
        let err = fails(&out, &format!("bob creating labelled snapshot {name}"));
        assert_mentions(&err, &[&says], &format!("bob creating {name}"));
    }
    let alices = format!("workspace-alice-0.{set}");
    let err = fails(
        &kubectl_as(&bob_cfg, &ns, &["delete", "volumesnapshot", &alices], None),
        "bob deleting alice's snapshot",
    );
    assert_mentions(
        &err,
        &["deleting a snapshot deletes the data it holds"],
        "bob deleting alice's snapshot",
    );
    assert!(!absent(c, &["volumesnapshot", &alices, "-n", &ns]));
    // Unlabelled, it is not the webhook's to judge (RBAC lets him): but it fills nothing.
    let out = kubectl_as(
        &bob_cfg,
        &ns,
        &["create", "-f", "-"],
        Some(&snapshot("workspace-bob-0.evil", json!({}))),
    );
    ok(&out, "bob creates an unlabelled snapshot of alice's claim");
    // The plugin finds no set of bob's in it (unlabelled; and its source is not his claim).
    let err = fails(
        &devenv_as(
            &bob_cfg,
            [
                "-n",
                &ns,
                "restore",
                "bob",
                "--from-snapshot",
                "evil",
                "--as",
                "bob3",
            ],
        ),
        "restore of a planted set",
    );
    assert_mentions(
        &err,
        &["snapshot set", "\"evil\" not found"],
        "restore of a planted set",
    );
    // Nor does the webhook, when bob writes the StatefulSet himself.
    let made = ok(
        &devenv_as(
            &bob_cfg,
            [
                "-n",
                &ns,
                "create",
                "bob3",
                "--dry-run=client",
                "-o",
                "json",
            ],
        ),
        "bob3's objects",
    );
    let objects: Value = serde_json::from_str(&made).unwrap_or_default();
    let mut sts = objects["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["kind"] == "StatefulSet")
        .cloned()
        .unwrap_or_default();
    sts["spec"]["volumeClaimTemplates"][0]["spec"]["dataSourceRef"] = json!({
        "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "workspace-bob-0.evil"
    });
    let refused = eventually(
        "the webhook to see bob's snapshot",
        Duration::from_secs(30),
        || {
            let out = kubectl_as(&bob_cfg, &ns, &["create", "-f", "-"], Some(&sts));
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            (!out.status.success() && err.contains("is of claim")).then_some(err)
        },
    );
    assert_mentions(
        &refused,
        &[
            "dataSourceRef",
            "is of claim \"workspace-alice-0\"",
            &format!("workspace alice of {alice}"),
        ],
        "bob's StatefulSet filled from his snapshot of alice's claim",
    );
    assert!(absent(c, &["statefulset", "bob3", "-n", &ns]));
    let sts = get_ok(c, &["statefulset", "alice2", "-n", &ns]);
    assert_eq!(
        sts["metadata"]["annotations"]["devenv.io/owner"],
        alice.as_str()
    );

    // 6. Alice deletes her set (its data is in alice2's claims now) and scales alice2 up:
    // the templates that named the snapshots would have the new member's claims refused, so
    // the StatefulSet is replaced by one with plain templates (orphan delete: the pod that
    // was there is kept), and the new member starts empty, as create's do.
    ok(
        &kubectl_as(
            &alice_cfg,
            &ns,
            &[
                "delete",
                "volumesnapshots",
                "-l",
                &format!("devenv.io/workspace=alice,devenv.io/snapshot-set={set}"),
            ],
            None,
        ),
        "alice deletes her snapshot set",
    );
    assert!(snapshots_of(c, &ns, "alice", &set).is_empty());
    let pod_uid = eventually("alice2-0", Duration::from_secs(30), || {
        get(c, &["pod", "alice2-0", "-n", &ns])
            .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_owned))
    });
    // Bob scaling it: refused before anything is deleted (the replacement is asked first).
    let err = fails(
        &devenv_as(&bob_cfg, ["-n", &ns, "scale", "alice2", "--replicas", "2"]),
        "bob scaling alice's restored workspace",
    );
    assert_mentions(
        &err,
        &[&format!("workspace alice2 belongs to {alice}")],
        "bob scaling alice2",
    );
    let kept = get_ok(c, &["statefulset", "alice2", "-n", &ns]);
    assert_eq!(kept["metadata"]["uid"], sts["metadata"]["uid"]);
    // At the namespace's StatefulSet quota (the one replaced counts until it is gone), the
    // replacement still goes through.
    let count = ok(
        &c.kubectl(["get", "statefulsets", "-n", &ns, "-o", "name"]),
        "count StatefulSets",
    )
    .lines()
    .count()
    .to_string();
    apply(
        c,
        &json!({
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "statefulsets", "namespace": ns},
            "spec": {"hard": {"count/statefulsets.apps": count}},
        }),
    );
    eventually("the quota to count", Duration::from_secs(60), || {
        let q = get(c, &["resourcequota", "statefulsets", "-n", &ns])?;
        (q["status"]["used"]["count/statefulsets.apps"] == count.as_str()).then_some(())
    });
    ok(
        &devenv_as(
            &alice_cfg,
            ["-n", &ns, "scale", "alice2", "--replicas", "2"],
        ),
        "scale alice2 --replicas 2 after its snapshots are gone, at the quota",
    );
    let claims = wait_claims(c, &ns, "alice2", &sts_claim_names("alice2", 0..2));
    for (name, claim) in &claims {
        let filled = !claim["spec"]["dataSourceRef"].is_null();
        assert_eq!(filled, name.ends_with("-0"), "{name}: {claim}");
    }
    let replaced = get_ok(c, &["statefulset", "alice2", "-n", &ns]);
    assert_ne!(replaced["metadata"]["uid"], sts["metadata"]["uid"]);
    assert_eq!(replaced["spec"]["replicas"], 2);
    for t in replaced["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert!(t["spec"]["dataSourceRef"].is_null(), "{t}");
    }
    let pod = get_ok(c, &["pod", "alice2-0", "-n", &ns]);
    assert_eq!(pod["metadata"]["uid"].as_str(), Some(pod_uid.as_str()));
    let _ = c.kubectl(["delete", "namespace", &ns, "--wait=false"]);
}
