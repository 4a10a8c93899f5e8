//! Forbidden workspace pods and `kubectl debug` containers are denied naming the field, by
//! our webhook or by Pod Security, and leave no claims behind.

use std::process::Output;
use std::time::Duration;

use devenv_e2e::objects::{absent, create, get_ok, name_of};
use devenv_e2e::output::{assert_mentions, fails, ok};
use devenv_e2e::plugin::webhook_for;
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::workspace::{claims, plain_container, workspace_pod, WORKSPACE_LABEL};
use devenv_e2e::{eventually, shared, Cluster};
use serde_json::{json, Value};

/// Creates `pod` in `ns` and returns the refusal's text; asserts nothing was stored.
fn refused(c: &Cluster, ns: &str, pod: &Value, what: &str) -> String {
    let text = fails(&create(c, ns, pod), what);
    assert!(
        absent(c, &["pod", &name_of(pod), "-n", ns]),
        "{what}: the pod exists"
    );
    text
}

fn forbidden_pods() -> Vec<(&'static str, Value)> {
    vec![
        (
            "privileged",
            workspace_pod(
                "priv",
                "carol",
                json!({"name": "workspace", "image": "busybox:1.36",
                       "securityContext": {"privileged": true}}),
                None,
            ),
        ),
        (
            "hostPath",
            workspace_pod(
                "hostpath",
                "dave",
                plain_container(),
                Some(json!([{"name": "host", "hostPath": {"path": "/etc"}}])),
            ),
        ),
        (
            "runAsUser 0",
            workspace_pod(
                "root",
                "erin",
                json!({"name": "workspace", "image": "busybox:1.36",
                       "securityContext": {"runAsUser": 0}}),
                None,
            ),
        ),
    ]
}

/// Adds an ephemeral container the way `kubectl debug` does (the pods/ephemeralcontainers
/// subresource).
fn add_ephemeral(c: &Cluster, ns: &str, pod: &str, container: Value) -> Output {
    let patch = json!({"spec": {"ephemeralContainers": [container]}});
    c.kubectl([
        "patch",
        "pod",
        pod,
        "-n",
        ns,
        "--subresource=ephemeralcontainers",
        "--type=strategic",
        "-p",
        &patch.to_string(),
    ])
}

#[test]
fn forbidden_workspace_pods_and_debug_containers_are_denied_naming_the_field() {
    let _serial = serial();
    let _t =
        Timer::start("forbidden_workspace_pods_and_debug_containers_are_denied_naming_the_field");
    let c = shared();
    let restricted = c.fresh_namespace("deny-restricted");
    // Where PodSecurity enforces nothing, our validating webhook is the only judge, and
    // its message is what reaches the user. (In a `restricted` namespace the built-in
    // PodSecurity plugin runs before validating webhooks and refuses first.)
    let open = c.fresh_namespace("deny-open");
    c.kubectl_ok([
        "label",
        "namespace",
        &open,
        "pod-security.kubernetes.io/enforce=privileged",
        "--overwrite",
    ]);
    let _wh = webhook_for(c, &open);

    let our_paths = [
        (
            "privileged",
            "spec.containers[0].securityContext.privileged",
        ),
        ("hostPath", "spec.volumes[0].hostPath"),
        (
            "runAsUser 0",
            "spec.containers[0].securityContext.runAsUser",
        ),
    ];
    let psa_words = [
        ("privileged", "securityContext.privileged=true"),
        ("hostPath", "hostPath"),
        ("runAsUser 0", "runAsUser=0"),
    ];
    for (what, pod) in forbidden_pods() {
        let path = our_paths.iter().find(|(w, _)| *w == what).unwrap().1;
        let text = eventually(
            &format!("{what}: a refusal from the webhook, not from PodSecurity"),
            Duration::from_secs(20),
            || {
                let t = refused(c, &open, &pod, what);
                (!t.contains("violates PodSecurity")).then_some(t)
            },
        );
        assert_mentions(
            &text,
            &[
                "pods.validate.devenv.io",
                "denied the request",
                path,
                "not allowed",
            ],
            what,
        );

        let text = refused(c, &restricted, &pod, what);
        let word = psa_words.iter().find(|(w, _)| *w == what).unwrap().1;
        assert_mentions(&text, &["forbidden", word], &format!("{what} (restricted)"));
    }

    // `kubectl debug`: an ephemeral container added through the subresource.
    for ns in [&open, &restricted] {
        let target = workspace_pod("target", "gus", plain_container(), None);
        ok(&create(c, ns, &target), "a compliant workspace pod");
        let out = add_ephemeral(
            c,
            ns,
            "target",
            json!({"name": "debugger", "image": "busybox:1.36",
                   "securityContext": {"privileged": true}}),
        );
        let text = fails(&out, "a privileged ephemeral container");
        if ns == &open {
            assert_mentions(
                &text,
                &[
                    "pods.validate.devenv.io",
                    "spec.ephemeralContainers[0].securityContext.privileged",
                ],
                "privileged debug container",
            );
        } else {
            assert_mentions(
                &text,
                &["forbidden", "debugger", "securityContext.privileged=true"],
                "privileged debug container (restricted)",
            );
        }
        let stored = get_ok(c, &["pod", "target", "-n", ns]);
        assert!(
            stored["spec"]["ephemeralContainers"].is_null(),
            "denied, yet stored: {:#}",
            stored["spec"]["ephemeralContainers"]
        );
        // Control: a debug container that follows the rules is admitted.
        let out = add_ephemeral(
            c,
            ns,
            "target",
            json!({"name": "debugger", "image": "busybox:1.36",
                   "securityContext": {
                       "allowPrivilegeEscalation": false,
                       "capabilities": {"drop": ["ALL"]},
                       "runAsNonRoot": true,
                       "seccompProfile": {"type": "RuntimeDefault"}}}),
        );
        ok(&out, "a restricted ephemeral container");

        // The real `kubectl debug`, as a user types it. Its default profile (legacy)
        // and `baseline` state no securityContext: the mutating webhook fills it, and in
        // the `restricted` namespace the built-in PodSecurity check accepts the result.
        let debug = |name: &str, profile: Option<&str>| {
            let mut args = vec![
                "debug".to_owned(),
                "target".to_owned(),
                "-n".to_owned(),
                ns.to_string(),
                "--image=busybox:1.36".to_owned(),
                format!("--container={name}"),
            ];
            args.extend(profile.map(|p| format!("--profile={p}")));
            c.kubectl(&args)
        };
        ok(
            &debug("dbg-default", None),
            "kubectl debug (default profile)",
        );
        ok(
            &debug("dbg-restricted", Some("restricted")),
            "kubectl debug --profile=restricted",
        );
        ok(
            &debug("dbg-baseline", Some("baseline")),
            "kubectl debug --profile=baseline",
        );
        let stored = get_ok(c, &["pod", "target", "-n", ns]);
        let containers = stored["spec"]["ephemeralContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let default = containers
            .iter()
            .find(|c| c["name"] == "dbg-default")
            .unwrap_or_else(|| panic!("dbg-default not stored: {containers:#?}"));
        assert_eq!(
            default["securityContext"]["capabilities"]["drop"],
            json!(["ALL"]),
            "the webhook filled the debug container's securityContext: {default:#}"
        );
        assert_eq!(
            default["securityContext"]["allowPrivilegeEscalation"],
            json!(false),
            "{default:#}"
        );
        // `general`, `netadmin` and `sysadmin` add capabilities or privilege: refused,
        // and in our message the user is told which profiles pass.
        for (profile, word) in [
            ("general", "SYS_PTRACE"),
            ("netadmin", "NET_ADMIN"),
            ("sysadmin", "privileged"),
        ] {
            let name = format!("dbg-{profile}");
            let what = format!("kubectl debug --profile={profile} in {ns}");
            let text = fails(&debug(&name, Some(profile)), &what);
            if ns == &open {
                assert_mentions(
                    &text,
                    &[
                        "pods.validate.devenv.io",
                        "spec.ephemeralContainers[4].securityContext.",
                        word,
                        "--profile=restricted",
                    ],
                    &what,
                );
            } else {
                assert_mentions(&text, &["forbidden", name.as_str(), word], &what);
            }
        }
    }
}

/// The mutating webhook creates a bare pod's claims while admitting it, before the
/// validating webhook or PodSecurity look at the pod: a refused pod must not leave
/// claims behind (storage quota, and claims a user who may not create claims gets
/// made for them).
#[test]
fn refused_workspace_pods_leave_no_claims() {
    let _serial = serial();
    let _t = Timer::start("refused_workspace_pods_leave_no_claims");
    let c = shared();
    let restricted = c.fresh_namespace("noleak-restricted");
    let open = c.fresh_namespace("noleak-open");
    c.kubectl_ok([
        "label",
        "namespace",
        &open,
        "pod-security.kubernetes.io/enforce=privileged",
        "--overwrite",
    ]);
    let _wh = webhook_for(c, &open);
    let mut leaks = Vec::new();
    for ns in [&restricted, &open] {
        for (what, pod) in forbidden_pods() {
            refused(c, ns, &pod, what);
            let ws = pod["metadata"]["labels"][WORKSPACE_LABEL]
                .as_str()
                .unwrap()
                .to_owned();
            // The claims are created within the webhook's answer (it waits up to 4s).
            std::thread::sleep(Duration::from_millis(500));
            let left: Vec<String> = claims(c, ns, &ws).into_keys().collect();
            if !left.is_empty() {
                leaks.push(format!("{what} pod refused in {ns}: claims {left:?} left"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "refused pods left claims:\n{}",
        leaks.join("\n")
    );
}
