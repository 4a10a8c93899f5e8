//! The webhook down: only workspace pods are blocked, nothing is left half created, and
//! the same commands work once it is back.

use std::time::Duration;

use devenv_e2e::objects::{absent, create, get_ok, name_of};
use devenv_e2e::output::{assert_mentions, fails, ok};
use devenv_e2e::plugin::{devenv, dv, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::shared;
use devenv_e2e::workspace::{
    claims, plain_container, pod_names, pod_names_of, wait_pods, workspace_pod,
};
use serde_json::{json, Value};

#[test]
fn webhook_outage_blocks_only_workspace_pods_and_leaves_nothing_half_created() {
    let _serial = serial();
    let _t =
        Timer::start("webhook_outage_blocks_only_workspace_pods_and_leaves_nothing_half_created");
    let c = shared();
    let ns = c.fresh_namespace("outage");
    let mut wh = webhook_for(c, &ns);

    // A compliant pod without the workspace label: stored exactly as sent.
    let plain = |name: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name, "labels": { "app": "plain" } },
            "spec": {
                "automountServiceAccountToken": false,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 1234,
                    "seccompProfile": { "type": "RuntimeDefault" },
                },
                "containers": [{
                    "name": "c",
                    "image": "busybox:1.36",
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "capabilities": { "drop": ["ALL"] },
                    },
                }],
            },
        })
    };
    let untouched = |sent: &Value| {
        let name = name_of(sent);
        let stored = get_ok(c, &["pod", &name, "-n", &ns]);
        assert_eq!(
            stored["spec"]["securityContext"], sent["spec"]["securityContext"],
            "{name}: pod securityContext changed"
        );
        let (sc, ss) = (
            &stored["spec"]["containers"][0],
            &sent["spec"]["containers"][0],
        );
        assert_eq!(
            sc["securityContext"], ss["securityContext"],
            "{name}: container securityContext changed"
        );
        assert!(
            sc["resources"].as_object().is_none_or(|r| r.is_empty()),
            "{name}: resources added: {}",
            sc["resources"]
        );
        assert!(sc["envFrom"].is_null(), "{name}: envFrom added");
        assert!(sc["volumeMounts"].is_null(), "{name}: mounts added");
        assert!(stored["spec"]["volumes"].is_null(), "{name}: volumes added");
        assert_eq!(stored["metadata"]["labels"], sent["metadata"]["labels"]);
        assert!(
            stored["metadata"]["annotations"].is_null(),
            "{name}: annotations added: {}",
            stored["metadata"]["annotations"]
        );
    };
    let up = plain("plain-up");
    ok(&create(c, &ns, &up), "a non-workspace pod, webhook up");
    untouched(&up);

    wh.stop().expect("stopping the webhook");
    assert!(!wh.is_running());
    let down = plain("plain-down");
    ok(&create(c, &ns, &down), "a non-workspace pod, webhook down");
    untouched(&down);

    // A workspace pod is refused, and nothing of it is left.
    let pod = workspace_pod("frank-pod", "frank", plain_container(), None);
    let text = fails(&create(c, &ns, &pod), "a workspace pod, webhook down");
    assert_mentions(
        &text,
        &[
            "failed calling webhook",
            "pods.mutate.devenv.io",
            "connection refused",
        ],
        "outage refusal",
    );
    assert!(absent(c, &["pod", "frank-pod", "-n", &ns]));
    assert!(claims(c, &ns, "frank").is_empty(), "claims left behind");

    // `create` through the plugin: a clear error, no StatefulSet, pod or claim.
    let out = dv(c, &ns, &["create", "gina", "--no-wait"]);
    let text = fails(&out, "create while the webhook is down");
    assert_mentions(
        &text,
        &[
            "could not call an admission webhook",
            "kubectl devenv status",
        ],
        "create during the outage",
    );
    assert!(absent(c, &["statefulset", "gina", "-n", &ns]));
    std::thread::sleep(Duration::from_secs(1));
    assert!(pod_names(c, &ns, "gina").is_empty());
    assert!(claims(c, &ns, "gina").is_empty());

    // status says so.
    let text = fails(&devenv(c, ["status"]), "status during the outage");
    assert_mentions(&text, &["unhealthy", &wh.url()], "status during the outage");

    // Back up: the same create works.
    wh.start_again().expect("restarting the webhook");
    ok(
        &dv(c, &ns, &["create", "gina", "--no-wait"]),
        "create after the outage",
    );
    wait_pods(c, &ns, "gina", &pod_names_of("gina", 1));
    ok(&create(c, &ns, &pod), "the workspace pod after the outage");
}
