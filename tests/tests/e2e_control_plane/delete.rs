//! `delete` keeps the claims, `create` reuses them, `--purge --yes` removes them.

use devenv_e2e::objects::{absent, get, get_ok};
use devenv_e2e::output::{assert_mentions, both, fails, ok};
use devenv_e2e::plugin::{dv, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::workspace::{
    assert_every_mutation, claim_uids, claims, pod_names_of, sts_claim_names, wait_claims,
    wait_pods, WAIT,
};
use devenv_e2e::{eventually, shared};

#[test]
fn delete_keeps_the_claims_create_reuses_them_and_purge_removes_them() {
    let _serial = serial();
    let _t = Timer::start("delete_keeps_the_claims_create_reuses_them_and_purge_removes_them");
    let c = shared();
    let ns = c.fresh_namespace("delete");
    let _wh = webhook_for(c, &ns);
    let names = sts_claim_names("alice", 0..1);

    ok(
        &dv(c, &ns, &["create", "alice", "--no-wait"]),
        "create alice",
    );
    wait_pods(c, &ns, "alice", &pod_names_of("alice", 1));
    wait_claims(c, &ns, "alice", &names);
    let uids = claim_uids(c, &ns, "alice");

    let out = ok(&dv(c, &ns, &["delete", "alice"]), "delete alice");
    assert_mentions(&out, &["statefulset.apps/alice deleted"], "delete");
    for kind in ["statefulset", "service", "networkpolicy", "serviceaccount"] {
        assert!(
            absent(c, &[kind, "alice", "-n", &ns]),
            "{kind} alice remains"
        );
    }
    wait_pods(c, &ns, "alice", &[]);
    assert_eq!(claim_uids(c, &ns, "alice"), uids, "delete keeps the claims");
    let text = both(&dv(c, &ns, &["delete", "alice"]));
    assert!(!text.contains("persistentvolumeclaim"), "{text}");

    // Re-created: the same claims (same UIDs), no new ones.
    ok(
        &dv(c, &ns, &["create", "alice", "--no-wait"]),
        "create alice again",
    );
    wait_pods(c, &ns, "alice", &pod_names_of("alice", 1));
    assert_eq!(
        claim_uids(c, &ns, "alice"),
        uids,
        "create reuses the claims"
    );
    let pod = get_ok(c, &["pod", "alice-0", "-n", &ns]);
    assert_every_mutation(&pod, ("500m", "2Gi"), ("2", "4Gi"), |t| {
        format!("{t}-alice-0")
    });

    // --purge without a terminal needs --yes, and deletes nothing without it.
    let text = fails(
        &dv(c, &ns, &["delete", "alice", "--purge"]),
        "purge without --yes",
    );
    assert_mentions(&text, &["--yes"], "purge without --yes");
    assert!(get(c, &["statefulset", "alice", "-n", &ns]).is_some());
    assert_eq!(claim_uids(c, &ns, "alice"), uids);

    // --purge backs the data up first: with no repository (none in the policy, no
    // --backup-to) it is refused before anything is deleted, and says how to go on.
    let text = fails(
        &dv(c, &ns, &["delete", "alice", "--purge", "--yes"]),
        "purge without a backup repository",
    );
    assert_mentions(
        &text,
        &["no backup repository", "--backup-to", "--no-backup"],
        "purge without a backup repository",
    );
    assert!(get(c, &["statefulset", "alice", "-n", &ns]).is_some());
    assert_eq!(claim_uids(c, &ns, "alice"), uids);

    let (out, said) = devenv_e2e::output::ok_both(
        &dv(
            c,
            &ns,
            &["delete", "alice", "--purge", "--yes", "--no-backup"],
        ),
        "delete --purge --yes --no-backup",
    );
    assert_mentions(&said, &["without a backup"], "purge --no-backup says so");
    for n in &names {
        assert_mentions(
            &out,
            &[&format!("persistentvolumeclaim/{n} deleted")],
            "purge",
        );
    }
    assert!(absent(c, &["statefulset", "alice", "-n", &ns]));
    eventually("the claims to be gone", WAIT, || {
        claims(c, &ns, "alice").is_empty().then_some(())
    });
    wait_pods(c, &ns, "alice", &[]);
}
