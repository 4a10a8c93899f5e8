//! What `create` makes, and every mutation on the pods the StatefulSet controller creates
//! (from a workspace made by the plugin, and from one written by hand).

use devenv_e2e::objects::{create, get_ok, name_of};
use devenv_e2e::output::{assert_mentions, ok};
use devenv_e2e::plugin::{dv, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::shared;
use devenv_e2e::workspace::{
    assert_every_mutation, plain_container, pod_names_of, sts_claim_names, wait_claims, wait_pods,
    TIER, VOLUMES, WORKSPACE_LABEL,
};
use serde_json::json;

#[test]
fn create_makes_the_workspace_and_the_stored_pods_carry_every_mutation() {
    let _serial = serial();
    let _t = Timer::start("create_makes_the_workspace_and_the_stored_pods_carry_every_mutation");
    let c = shared();
    let ns = c.fresh_namespace("create");
    let _wh = webhook_for(c, &ns);

    let out = ok(
        &dv(c, &ns, &["create", "alice", "--no-wait"]),
        "create alice",
    );
    assert_mentions(&out, &["workspace/alice created"], "create output");

    let sts = get_ok(c, &["statefulset", "alice", "-n", &ns]);
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["metadata"]["labels"][WORKSPACE_LABEL], "alice");
    assert_eq!(sts["metadata"]["annotations"][TIER], "small");
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    let svc = get_ok(c, &["service", "alice", "-n", &ns]);
    assert_eq!(svc["spec"]["clusterIP"], "None", "headless: {svc:#}");
    let np = get_ok(c, &["networkpolicy", "alice", "-n", &ns]);
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"][WORKSPACE_LABEL],
        "alice"
    );
    let sa = get_ok(c, &["serviceaccount", "alice", "-n", &ns]);
    assert_eq!(sa["automountServiceAccountToken"], false, "{sa:#}");

    // The controller creates alice-0 and its three claims.
    wait_pods(c, &ns, "alice", &pod_names_of("alice", 1));
    let claims = wait_claims(c, &ns, "alice", &sts_claim_names("alice", 0..1));
    for (template, size, _) in VOLUMES {
        let claim = &claims[&format!("{template}-alice-0")];
        assert_eq!(
            claim["spec"]["resources"]["requests"]["storage"], size,
            "{template}: {claim:#}"
        );
        assert_eq!(claim["metadata"]["labels"][WORKSPACE_LABEL], "alice");
    }
    let pod = get_ok(c, &["pod", "alice-0", "-n", &ns]);
    assert_eq!(pod["status"]["phase"], "Pending", "no node: {pod:#}");
    assert_every_mutation(&pod, ("500m", "2Gi"), ("2", "4Gi"), |t| {
        format!("{t}-alice-0")
    });
    assert_eq!(pod["metadata"]["annotations"][TIER], "small");

    // A StatefulSet written by hand (no security context, no resources, no claims):
    // the webhook adds the claim templates, and the pods the controller creates from
    // it get every mutation. PodSecurity only warns about the template.
    let raw = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": "raw", "labels": { WORKSPACE_LABEL: "raw" } },
        "spec": {
            "serviceName": "raw",
            "replicas": 1,
            "selector": { "matchLabels": { WORKSPACE_LABEL: "raw" } },
            "template": {
                "metadata": { "labels": { WORKSPACE_LABEL: "raw" } },
                "spec": { "containers": [plain_container()] },
            },
        },
    });
    ok(&create(c, &ns, &raw), "create a raw workspace StatefulSet");
    let stored = get_ok(c, &["statefulset", "raw", "-n", &ns]);
    let templates: Vec<String> = stored["spec"]["volumeClaimTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(name_of)
        .collect();
    assert_eq!(
        templates,
        vec!["workspace", "history", "config"],
        "claim templates added by the webhook"
    );
    wait_pods(c, &ns, "raw", &pod_names_of("raw", 1));
    wait_claims(c, &ns, "raw", &sts_claim_names("raw", 0..1));
    let pod = get_ok(c, &["pod", "raw-0", "-n", &ns]);
    assert_every_mutation(&pod, ("500m", "2Gi"), ("2", "4Gi"), |t| {
        format!("{t}-raw-0")
    });
}
