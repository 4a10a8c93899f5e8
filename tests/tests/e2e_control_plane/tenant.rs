//! `tenant add|list|remove` on the real control plane, as minted users bound through
//! `tenant add`: a tenant's user works in its namespace, another tenant's user cannot see
//! or read anything of it, the namespace enforces `restricted` and carries the quota,
//! `remove` keeps the claims (and `add` again gives them back), `--purge` deletes it all,
//! and a namespace that is not a tenant is never touched.

use std::time::Duration;

use devenv_e2e::objects::{absent, get, get_ok, items};
use devenv_e2e::output::{assert_mentions, fails, json_of, ok, ok_both, stderr};
use devenv_e2e::plugin::{devenv, devenv_as, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::workspace::{claim_uids, pod_names_of, sts_claim_names, wait_claims, wait_pods};
use devenv_e2e::{eventually, shared, unique_name};

/// RBAC bindings reach the authorizer's cache within seconds; this bounds the wait.
const RBAC: Duration = Duration::from_secs(30);

#[test]
fn tenants_keep_users_apart_by_namespace() {
    let _serial = serial();
    let _t = Timer::start("tenants_keep_users_apart_by_namespace");
    let c = shared();
    let team_a = unique_name("team-a");
    let team_b = unique_name("team-b");
    // install (inside webhook_for) creates the devenv-user ClusterRole `tenant add` binds.
    let _wh = webhook_for(c, &team_a);
    assert!(
        get(c, &["clusterrole", "devenv-user"]).is_some(),
        "install made no devenv-user ClusterRole"
    );
    let alice = unique_name("alice");
    let bob = unique_name("bob");
    let alice_cfg = c.user_kubeconfig(&alice).expect("alice's kubeconfig");
    let bob_cfg = c.user_kubeconfig(&bob).expect("bob's kubeconfig");

    let (out, err) = ok_both(
        &devenv(c, ["tenant", "add", &team_a, "--user", &alice]),
        "tenant add team-a",
    );
    assert_mentions(
        &out,
        &[
            &format!("namespace/{team_a} created"),
            "resourcequota/devenv created",
            "limitrange/devenv created",
            "rolebinding.rbac.authorization.k8s.io/devenv-user created",
            "room for 1 workspace(s) of tier small",
        ],
        "tenant add team-a",
    );
    assert!(!err.contains("does not exist"), "{err}");
    ok(
        &devenv(c, ["tenant", "add", &team_b, "--user", &bob]),
        "tenant add team-b",
    );

    // The namespace: Pod Security restricted, the tenant label, the quota, the limits.
    let ns = get_ok(c, &["namespace", &team_a]);
    let labels = &ns["metadata"]["labels"];
    for mode in ["enforce", "warn", "audit"] {
        assert_eq!(
            labels[format!("pod-security.kubernetes.io/{mode}")],
            "restricted",
            "{ns}"
        );
    }
    assert_eq!(labels["devenv.io/tenant"], team_a.as_str(), "{ns}");
    let quota = get_ok(c, &["resourcequota", "devenv", "-n", &team_a]);
    let hard = &quota["spec"]["hard"];
    for (resource, want) in [
        ("requests.cpu", "500m"),
        ("limits.cpu", "2"),
        ("requests.memory", "2Gi"),
        ("limits.memory", "4Gi"),
        ("requests.storage", "12Gi"),
        ("persistentvolumeclaims", "3"),
        ("pods", "1"),
        ("count/statefulsets.apps", "1"),
    ] {
        assert_eq!(hard[resource], want, "{resource}: {quota}");
    }
    let limits = get_ok(c, &["limitrange", "devenv", "-n", &team_a]);
    let max = &limits["spec"]["limits"][0]["max"];
    assert_eq!(max["cpu"], "8", "{limits}");
    assert_eq!(max["memory"], "16Gi", "{limits}");

    // Running it again changes nothing.
    let before = quota["metadata"]["resourceVersion"].clone();
    let out = ok(
        &devenv(c, ["tenant", "add", &team_a, "--user", &alice]),
        "tenant add team-a again",
    );
    assert_mentions(&out, &[&format!("namespace/{team_a} configured")], "again");
    assert_eq!(
        get_ok(c, &["resourcequota", "devenv", "-n", &team_a])["metadata"]["resourceVersion"],
        before,
        "re-running tenant add rewrote the quota"
    );

    // Alice works in team-a.
    let as_alice = |args: &[&str]| {
        let mut a = vec!["-n", team_a.as_str()];
        a.extend_from_slice(args);
        devenv_as(&alice_cfg, a)
    };
    eventually("alice's binding in team-a", RBAC, || {
        as_alice(&["list"]).status.success().then_some(())
    });
    let out = ok(
        &as_alice(&["create", "ws", "--no-wait", "--dry-run=server"]),
        "create --dry-run=server as alice",
    );
    assert_mentions(&out, &["workspace/ws created (server dry run)"], "dry run");
    assert!(absent(c, &["statefulset", "ws", "-n", &team_a]));
    ok(&as_alice(&["create", "ws", "--no-wait"]), "create as alice");
    wait_pods(c, &team_a, "ws", &pod_names_of("ws", 1));
    wait_claims(c, &team_a, "ws", &sts_claim_names("ws", 0..1));
    let text = ok(&as_alice(&["list"]), "list as alice");
    let row = text
        .lines()
        .find(|l| l.starts_with("ws "))
        .unwrap_or_else(|| panic!("no row for ws:\n{text}"));
    // OWNER: recorded by the webhook from alice's request.
    assert_mentions(row, &[&alice], "list as alice: OWNER");
    ok(&as_alice(&["get", "ws"]), "get as alice");

    // Bob, a user of team-b, sees and reads nothing of team-a.
    eventually("bob's binding in team-b", RBAC, || {
        devenv_as(&bob_cfg, ["-n", &team_b, "list"])
            .status
            .success()
            .then_some(())
    });
    let as_bob_in_a = |args: &[&str]| {
        let mut a = vec!["-n", team_a.as_str()];
        a.extend_from_slice(args);
        devenv_as(&bob_cfg, a)
    };
    let text = fails(&as_bob_in_a(&["list"]), "list -n team-a as bob");
    assert_mentions(
        &text,
        &[
            "forbidden",
            &bob,
            "cannot list",
            &team_a,
            "kubectl auth can-i",
        ],
        "list -n team-a as bob",
    );
    for args in [
        vec!["get", "ws"],
        vec!["exec", "ws", "--", "true"],
        vec!["delete", "ws"],
        vec!["stop", "ws"],
    ] {
        let text = fails(&as_bob_in_a(&args), &format!("{args:?} as bob"));
        assert_mentions(&text, &["forbidden", &bob], &format!("{args:?} as bob"));
    }
    for what in [
        "pods",
        "pod/ws-0",
        "persistentvolumeclaims",
        "persistentvolumeclaim/workspace-ws-0",
        "secrets",
        "statefulsets",
    ] {
        let out = c.kubectl_as(&bob_cfg, ["get", what, "-n", &team_a]);
        assert!(!out.status.success(), "bob got {what} in team-a");
        assert_mentions(
            &stderr(&out),
            &["forbidden", &bob],
            &format!("get {what} as bob"),
        );
    }
    assert!(get(c, &["statefulset", "ws", "-n", &team_a]).is_some());

    // tenant list shows both, with their users and workspaces.
    let text = ok(&devenv(c, ["tenant", "list"]), "tenant list");
    let row_of = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in:\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        row_of(&team_a)[1..5],
        [alice.clone(), "<none>".into(), "small".into(), "1/1".into()],
        "{text}"
    );
    assert_eq!(
        row_of(&team_b)[1..5],
        [bob.clone(), "<none>".into(), "small".into(), "0/1".into()],
        "{text}"
    );
    let listed = json_of(&ok(
        &devenv(c, ["tenant", "list", "-o", "json"]),
        "tenant list -o json",
    ));
    let a = items(&listed)
        .into_iter()
        .find(|t| t["name"] == team_a.as_str())
        .unwrap_or_else(|| panic!("{team_a} not in {listed}"));
    assert_eq!(a["users"][0], alice.as_str());
    assert_eq!(a["workspaces"], 1);
    assert_eq!(a["quota"]["pods"]["hard"], "1");

    // remove: access and workspaces go, the claims and the namespace stay.
    let uids = claim_uids(c, &team_a, "ws");
    assert_eq!(uids.len(), 3, "{uids:?}");
    let (out, err) = ok_both(
        &devenv(c, ["tenant", "remove", &team_a]),
        "tenant remove team-a",
    );
    assert_mentions(
        &out,
        &[
            "rolebinding.rbac.authorization.k8s.io/devenv-user deleted",
            "statefulset.apps/ws deleted",
        ],
        "tenant remove",
    );
    assert_mentions(
        &err,
        &[
            &format!("Kept namespace {team_a}"),
            "3 claim(s)",
            &format!("kubectl devenv tenant add {team_a} --user {alice} --tier small"),
        ],
        "tenant remove",
    );
    assert!(absent(c, &["rolebinding", "devenv-user", "-n", &team_a]));
    assert!(absent(c, &["statefulset", "ws", "-n", &team_a]));
    wait_pods(c, &team_a, "ws", &[]);
    assert_eq!(claim_uids(c, &team_a, "ws"), uids, "remove kept the claims");
    assert!(get(c, &["namespace", &team_a]).is_some());
    assert!(get(c, &["resourcequota", "devenv", "-n", &team_a]).is_some());
    eventually("alice's access to go", RBAC, || {
        (!as_alice(&["list"]).status.success()).then_some(())
    });
    assert_mentions(
        &fails(&as_alice(&["list"]), "list as removed alice"),
        &["forbidden", &alice],
        "removed alice",
    );

    // add again: the access is back, and the workspace finds its data.
    ok(
        &devenv(c, ["tenant", "add", &team_a, "--user", &alice]),
        "tenant add team-a after remove",
    );
    eventually("alice's binding back", RBAC, || {
        as_alice(&["list"]).status.success().then_some(())
    });
    ok(&as_alice(&["create", "ws", "--no-wait"]), "create ws again");
    wait_pods(c, &team_a, "ws", &pod_names_of("ws", 1));
    assert_eq!(
        claim_uids(c, &team_a, "ws"),
        uids,
        "create reused the claims"
    );

    // --purge backs every workspace up first: with nowhere to put the backups it is
    // refused and nothing is deleted; --no-backup deletes the namespace and everything in
    // it, saying there is no backup.
    let refused = fails(
        &devenv(c, ["tenant", "remove", &team_a, "--purge", "--yes"]),
        "tenant remove --purge without a backup repository",
    );
    assert_mentions(
        &refused,
        &["no backup repository", "--no-backup"],
        "purge refused",
    );
    assert_eq!(
        claim_uids(c, &team_a, "ws"),
        uids,
        "a refused purge deleted claims"
    );
    let out = ok(
        &devenv(
            c,
            [
                "tenant",
                "remove",
                &team_a,
                "--purge",
                "--yes",
                "--no-backup",
            ],
        ),
        "tenant remove --purge --yes --no-backup",
    );
    assert_mentions(&out, &[&format!("namespace/{team_a} deleted")], "purge");
    eventually(
        "team-a to be deleted",
        Duration::from_secs(120),
        || match get(c, &["namespace", &team_a]) {
            None => Some(()),
            Some(ns) => (ns["metadata"]["deletionTimestamp"].is_string()).then_some(()),
        },
    );
    ok(
        &devenv(
            c,
            [
                "tenant",
                "remove",
                &team_b,
                "--purge",
                "--yes",
                "--no-backup",
            ],
        ),
        "tenant remove team-b --purge",
    );
}

/// `tenant add` and `tenant remove` never touch a namespace that is not labelled
/// `devenv.io/tenant=NAME`, and say which label is missing.
#[test]
fn tenant_commands_refuse_a_namespace_that_is_not_a_tenant() {
    let _serial = serial();
    let _t = Timer::start("tenant_commands_refuse_a_namespace_that_is_not_a_tenant");
    let c = shared();
    let plain = c.fresh_namespace("not-a-tenant");
    let label = format!("devenv.io/tenant={plain}");
    for args in [
        vec!["tenant", "remove", plain.as_str()],
        vec!["tenant", "remove", plain.as_str(), "--purge", "--yes"],
        vec!["tenant", "add", plain.as_str(), "--user", "someone"],
    ] {
        let text = fails(&devenv(c, &args), &format!("{args:?}"));
        assert_mentions(
            &text,
            &["is not a devenv tenant", &label],
            &format!("{args:?}"),
        );
    }
    let ns = get_ok(c, &["namespace", &plain]);
    assert!(ns["metadata"]["deletionTimestamp"].is_null(), "{ns}");
    assert!(
        ns["metadata"]["labels"]["devenv.io/tenant"].is_null(),
        "{ns}"
    );
    assert!(absent(c, &["resourcequota", "devenv", "-n", &plain]));
    assert!(absent(c, &["rolebinding", "devenv-user", "-n", &plain]));
    let text = fails(
        &devenv(c, ["tenant", "remove", &unique_name("nobody")]),
        "remove a missing tenant",
    );
    assert_mentions(
        &text,
        &["not found", "kubectl devenv tenant list"],
        "missing",
    );
}
