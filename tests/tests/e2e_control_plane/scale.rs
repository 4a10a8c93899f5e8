//! `scale`, `stop` and `start` follow the pods and keep every claim; guarded changes right
//! after other changes do not conflict.

use devenv_e2e::objects::{get, get_ok};
use devenv_e2e::output::{assert_mentions, ok, stderr};
use devenv_e2e::plugin::{dv, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::workspace::{
    assert_every_mutation, claim_uids, pod_names_of, sts_claim_names, wait_claims, wait_pods,
    wait_settled, TIER, WAIT,
};
use devenv_e2e::{eventually, shared};
use serde_json::json;

#[test]
fn scale_stop_start_follow_the_pods_and_keep_every_claim() {
    let _serial = serial();
    let _t = Timer::start("scale_stop_start_follow_the_pods_and_keep_every_claim");
    let c = shared();
    let ns = c.fresh_namespace("scale");
    let _wh = webhook_for(c, &ns);

    ok(
        &dv(c, &ns, &["create", "team", "--replicas", "3", "--no-wait"]),
        "create team --replicas 3",
    );
    wait_pods(c, &ns, "team", &pod_names_of("team", 3));
    wait_claims(c, &ns, "team", &sts_claim_names("team", 0..3));

    ok(
        &dv(c, &ns, &["scale", "team", "--replicas", "5"]),
        "scale 5",
    );
    wait_pods(c, &ns, "team", &pod_names_of("team", 5));
    let all = sts_claim_names("team", 0..5);
    wait_claims(c, &ns, "team", &all);
    let uids = claim_uids(c, &ns, "team");

    ok(
        &dv(c, &ns, &["scale", "team", "--replicas", "2"]),
        "scale 2",
    );
    wait_pods(c, &ns, "team", &pod_names_of("team", 2));
    assert_eq!(
        claim_uids(c, &ns, "team"),
        uids,
        "all five pods' claims are kept"
    );

    wait_settled(c, &ns, "team");
    let out = ok(&dv(c, &ns, &["stop", "team"]), "stop team");
    assert_mentions(&out, &["stopped"], "stop");
    wait_pods(c, &ns, "team", &[]);
    assert_eq!(
        get_ok(c, &["statefulset", "team", "-n", &ns])["spec"]["replicas"],
        0
    );
    assert_eq!(claim_uids(c, &ns, "team"), uids, "stop keeps the claims");

    wait_settled(c, &ns, "team");
    ok(&dv(c, &ns, &["start", "team"]), "start team");
    wait_pods(c, &ns, "team", &pod_names_of("team", 2));
    assert_eq!(
        get_ok(c, &["statefulset", "team", "-n", &ns])["spec"]["replicas"],
        2
    );
    assert_eq!(claim_uids(c, &ns, "team"), uids, "start reuses the claims");

    // Vertical: the large tier.
    wait_settled(c, &ns, "team");
    ok(
        &dv(c, &ns, &["scale", "team", "--tier", "large"]),
        "scale --tier large",
    );
    let sts = get_ok(c, &["statefulset", "team", "-n", &ns]);
    assert_eq!(sts["metadata"]["annotations"][TIER], "large");
    assert_eq!(
        sts["spec"]["template"]["metadata"]["annotations"][TIER],
        "large"
    );
    let container = sts["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "workspace")
        .cloned()
        .expect("workspace container");
    assert_eq!(
        container["resources"],
        json!({"limits": {"cpu": "8", "memory": "16Gi"}, "requests": {"cpu": "2", "memory": "8Gi"}})
    );
    // The rolling update replaces the highest ordinal first; the webhook admits the
    // large pod. (The controller then waits for that pod to be Running and Ready before
    // replacing team-0, which never happens without a node: the node suite covers the
    // rest of the rollout.)
    let update_revision = eventually("the update revision", WAIT, || {
        let s = get(c, &["statefulset", "team", "-n", &ns])?;
        let rev = s["status"]["updateRevision"].as_str()?.to_owned();
        (rev != s["status"]["currentRevision"].as_str().unwrap_or_default()).then_some(rev)
    });
    let pod = eventually("team-1 re-created with the large tier", WAIT, || {
        let p = get(c, &["pod", "team-1", "-n", &ns])?;
        let fresh = p["metadata"]["labels"]["controller-revision-hash"] == update_revision.as_str()
            && p["metadata"]["deletionTimestamp"].is_null();
        fresh.then_some(p)
    });
    assert_eq!(pod["metadata"]["annotations"][TIER], "large");
    assert_every_mutation(&pod, ("2", "8Gi"), ("8", "16Gi"), |t| format!("{t}-team-1"));
    assert_eq!(
        claim_uids(c, &ns, "team"),
        uids,
        "resizing keeps the claims"
    );
}

/// `stop`, `start` and `scale --tier` send their patch guarded by the resourceVersion
/// they read; the StatefulSet controller's status writes change it all the time while
/// pods come and go. Run right after another change, as a script would, they must not
/// fail with a conflict (they should re-read and retry, as kubectl does). Today about
/// one call in five fails: `error: conflict while trying to patch workspace "w": Operation
/// cannot be fulfilled on statefulsets.apps "w": the object has been modified`.
#[test]
fn guarded_changes_right_after_other_changes_do_not_conflict() {
    let _serial = serial();
    let _t = Timer::start("guarded_changes_right_after_other_changes_do_not_conflict");
    let c = shared();
    let ns = c.fresh_namespace("conflict");
    let _wh = webhook_for(c, &ns);
    let mut failures = Vec::new();
    let mut calls = 0;
    for i in 0..6 {
        let name = format!("w{i}");
        ok(&dv(c, &ns, &["create", &name, "--no-wait"]), "create");
        for args in [
            vec!["stop", name.as_str()],
            vec!["start", name.as_str()],
            vec!["scale", name.as_str(), "--replicas", "2"],
            vec!["scale", name.as_str(), "--tier", "micro"],
        ] {
            calls += 1;
            let out = dv(c, &ns, &args);
            if !out.status.success() {
                failures.push(format!("{}: {}", args.join(" "), stderr(&out).trim()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} commands failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
