//! Pod Security admission as the judge of the mutation: the built-in `restricted` check
//! refuses a bare workspace pod without the webhook and admits it with.

use devenv_e2e::objects::{absent, create, get_ok};
use devenv_e2e::output::{assert_mentions, fails, ok, stderr};
use devenv_e2e::plugin::{uninstall, webhook_for, CONFIGS, CONFIG_NAME};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::shared;
use devenv_e2e::workspace::{assert_every_mutation, claims, plain_container, workspace_pod};

#[test]
fn pod_security_admission_rejects_the_bare_pod_without_the_webhook_and_admits_it_with() {
    let _serial = serial();
    let _t = Timer::start(
        "pod_security_admission_rejects_the_bare_pod_without_the_webhook_and_admits_it_with",
    );
    let c = shared();
    let ns = c.fresh_namespace("psa-judge");
    // No webhook registered (whatever an earlier test left).
    uninstall(c);
    for kind in CONFIGS {
        assert!(absent(c, &[kind, CONFIG_NAME]));
    }
    let pod = workspace_pod("bare", "bob", plain_container(), None);

    let out = create(c, &ns, &pod);
    let text = fails(&out, "a bare pod without securityContext, no webhook");
    assert_mentions(
        &text,
        &["violates PodSecurity", "restricted", "runAsNonRoot"],
        "built-in Pod Security admission",
    );
    assert!(absent(c, &["pod", "bare", "-n", &ns]));
    assert!(
        claims(c, &ns, "bob").is_empty(),
        "no claims without the webhook"
    );

    let _wh = webhook_for(c, &ns);
    let out = create(c, &ns, &pod);
    ok(&out, "the same pod with the webhook installed");
    assert!(
        !stderr(&out).contains("would violate PodSecurity"),
        "admitted without PodSecurity warnings: {}",
        stderr(&out)
    );
    let stored = get_ok(c, &["pod", "bare", "-n", &ns]);
    assert_every_mutation(&stored, ("500m", "2Gi"), ("2", "4Gi"), |t| {
        format!("{t}-bob-bare")
    });
    // Bare pods' claims (`<volume>-<workspace>-bare`) are made by the lifecycle controller
    // once the pod exists (tests/tests/controller.rs); admission makes none, and the pod
    // waits for them behind the devenv scheduling gate.
    assert_eq!(
        stored["spec"]["schedulingGates"],
        serde_json::json!([{"name": "devenv.io/claims"}]),
        "{stored}"
    );
    assert!(claims(c, &ns, "bob").is_empty(), "admission created claims");
}
