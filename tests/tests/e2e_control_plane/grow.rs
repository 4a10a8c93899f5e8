//! `scale NAME --workspace-size`: every claim's request grows, the StatefulSet is replaced
//! with the new claim templates and adopts its pods without replacing them; what cannot
//! grow is refused, naming the size or the StorageClass, before anything is written. The
//! filesystem growing is the storage driver's job (these claims are bound to pre-made
//! volumes with no resizer, so their capacity stays and `get` shows the resize pending).

use devenv_e2e::objects::{get, get_ok, uid};
use devenv_e2e::output::{assert_mentions, both, json_of, ok};
use devenv_e2e::plugin::{dv, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::workspace::{
    pod_names_of, sts_claim_names, volume_for_claim, wait_claims, wait_pods,
};
use devenv_e2e::{check_ok, eventually, shared, Cluster};
use serde_json::{json, Value};
use std::time::Duration;

const GROW: &str = "devenv-e2e-grow";
const FIXED: &str = "devenv-e2e-fixed";

fn ensure_class(c: &Cluster, name: &str, expand: bool) {
    if get(c, &["storageclass", name]).is_some() {
        return;
    }
    let sc = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": { "name": name },
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": expand,
    });
    check_ok(
        &["create storageclass", name],
        &c.kubectl_stdin(["create", "-f", "-"], &sc.to_string()),
    );
}

/// A volume of `class` made for `claim` alone (claimRef), as big as the claim asks, so the
/// claim binds without a node and its capacity is exactly its first size.
fn volume_for(c: &Cluster, ns: &str, claim: &str, class: &str) {
    let pv = volume_for_claim(ns, claim, class, &format!("/tmp/devenv-e2e-grow/{ns}"));
    check_ok(
        &["create pv", claim],
        &c.kubectl_stdin(["create", "-f", "-"], &pv.to_string()),
    );
}

fn claim(c: &Cluster, ns: &str, name: &str) -> Value {
    get_ok(c, &["pvc", name, "-n", ns])
}

fn wait_bound(c: &Cluster, ns: &str, names: &[String]) {
    eventually("the claims to bind", Duration::from_secs(90), || {
        names
            .iter()
            .all(|n| claim(c, ns, n)["status"]["phase"] == "Bound")
            .then_some(())
    });
}

#[test]
fn growing_volumes_raises_every_claim_keeps_the_pods_and_refuses_what_cannot_grow() {
    let _serial = serial();
    let _t = Timer::start(
        "growing_volumes_raises_every_claim_keeps_the_pods_and_refuses_what_cannot_grow",
    );
    let c = shared();
    let ns = c.fresh_namespace("grow");
    let _wh = webhook_for(c, &ns);
    ensure_class(c, GROW, true);
    ensure_class(c, FIXED, false);

    let claims = sts_claim_names("team", 0..2);
    for name in &claims {
        volume_for(c, &ns, name, GROW);
    }
    ok(
        &dv(
            c,
            &ns,
            &[
                "create",
                "team",
                "--replicas",
                "2",
                "--storage-class",
                GROW,
                "--no-wait",
            ],
        ),
        "create team",
    );
    wait_pods(c, &ns, "team", &pod_names_of("team", 2));
    wait_claims(c, &ns, "team", &claims);
    wait_bound(c, &ns, &claims);
    // One pool member scaled away: its claims are kept, and grow too.
    ok(
        &dv(c, &ns, &["scale", "team", "--replicas", "1"]),
        "scale 1",
    );
    wait_pods(c, &ns, "team", &pod_names_of("team", 1));
    let pod_uid = uid(&get_ok(c, &["pod", "team-0", "-n", &ns]));
    let old_sts = get_ok(c, &["statefulset", "team", "-n", &ns]);

    // Refused before anything is written: smaller, not a quantity, an unknown size flag mix.
    let smaller = dv(c, &ns, &["scale", "team", "--workspace-size", "5Gi"]);
    assert_eq!(smaller.status.code(), Some(2), "{smaller:?}");
    assert_mentions(
        &both(&smaller),
        &["--workspace-size 5Gi", "only grow"],
        "a smaller size",
    );
    let junk = dv(c, &ns, &["scale", "team", "--workspace-size", "lots"]);
    assert_eq!(junk.status.code(), Some(2), "{junk:?}");
    assert_mentions(
        &both(&junk),
        &["--workspace-size \"lots\"", "50Gi"],
        "not a quantity",
    );
    assert_eq!(
        uid(&get_ok(c, &["statefulset", "team", "-n", &ns])),
        uid(&old_sts),
        "a refusal replaced the StatefulSet"
    );

    // A server dry run checks everything and writes nothing.
    ok(
        &dv(
            c,
            &ns,
            &[
                "scale",
                "team",
                "--workspace-size",
                "20Gi",
                "--dry-run=server",
            ],
        ),
        "scale --workspace-size 20Gi --dry-run=server",
    );
    assert_eq!(
        claim(c, &ns, "workspace-team-0")["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );

    let out = ok(
        &dv(c, &ns, &["scale", "team", "--workspace-size", "20Gi"]),
        "scale --workspace-size 20Gi",
    );
    assert_mentions(
        &out,
        &["workspace: 10Gi -> 20Gi (2 claims grown)"],
        "the resize",
    );
    for n in ["workspace-team-0", "workspace-team-1"] {
        let pvc = claim(c, &ns, n);
        assert_eq!(
            pvc["spec"]["resources"]["requests"]["storage"], "20Gi",
            "{n}"
        );
    }
    assert_eq!(
        claim(c, &ns, "history-team-0")["spec"]["resources"]["requests"]["storage"],
        "1Gi",
        "history was not asked to grow"
    );
    let sts = get_ok(c, &["statefulset", "team", "-n", &ns]);
    assert_ne!(uid(&sts), uid(&old_sts), "the StatefulSet was not replaced");
    let templates = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let size_of = |name: &str| {
        templates
            .iter()
            .find(|t| t["metadata"]["name"] == name)
            .map(|t| t["spec"]["resources"]["requests"]["storage"].clone())
    };
    assert_eq!(size_of("workspace"), Some(json!("20Gi")));
    assert_eq!(size_of("history"), Some(json!("1Gi")));
    assert_eq!(
        sts["spec"]["template"], old_sts["spec"]["template"],
        "pod template changed"
    );
    assert_eq!(sts["spec"]["replicas"], 1);
    // The running pod is adopted by the new StatefulSet, not replaced.
    let new_sts_uid = uid(&sts);
    eventually("team-0 to be adopted", Duration::from_secs(60), || {
        let p = get(c, &["pod", "team-0", "-n", &ns])?;
        (p["metadata"]["ownerReferences"][0]["uid"] == new_sts_uid.as_str()).then_some(p)
    });
    std::thread::sleep(Duration::from_secs(3));
    let p = get_ok(c, &["pod", "team-0", "-n", &ns]);
    assert_eq!(uid(&p), pod_uid, "the pod was replaced");
    // The driver has not grown them (no resizer here): get shows actual -> requested, kept
    // claims of the scaled-away pod included (2 x (10+1+1)Gi -> 2 x (20+1+1)Gi).
    let shown = ok(
        &dv(c, &ns, &["get", "team", "-o", "json"]),
        "get team -o json",
    );
    let view = json_of(&shown);
    assert_eq!(view["storage"], "24Gi->44Gi", "{view}");
    // Again: nothing to do.
    let again = ok(
        &dv(c, &ns, &["scale", "team", "--workspace-size", "20Gi"]),
        "scale again",
    );
    assert_mentions(&again, &["already have these sizes"], "the same size again");
    // A new pool member gets the new size.
    volume_for(c, &ns, "workspace-team-2", GROW);
    ok(
        &dv(c, &ns, &["scale", "team", "--replicas", "3"]),
        "scale 3",
    );
    let pvc = eventually("workspace-team-2", Duration::from_secs(60), || {
        get(c, &["pvc", "workspace-team-2", "-n", &ns])
    });
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "20Gi");

    // A class that cannot expand is named.
    let fixed_claims = sts_claim_names("fixed", 0..1);
    for name in &fixed_claims {
        volume_for(c, &ns, name, FIXED);
    }
    ok(
        &dv(
            c,
            &ns,
            &["create", "fixed", "--storage-class", FIXED, "--no-wait"],
        ),
        "create fixed",
    );
    wait_claims(c, &ns, "fixed", &fixed_claims);
    wait_bound(c, &ns, &fixed_claims);
    let refused = dv(c, &ns, &["scale", "fixed", "--history-size", "2Gi"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert_mentions(
        &both(&refused),
        &[FIXED, "allowVolumeExpansion", "history-fixed-0"],
        "a fixed class",
    );
    let _ = c.kubectl(["delete", "namespace", &ns, "--wait=false"]);
}
