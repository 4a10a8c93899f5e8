//! The errors a user sees: unreachable cluster, existing name, RBAC, plain text.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use devenv_e2e::objects::{absent, get_ok};
use devenv_e2e::output::{assert_mentions, fails, ok};
use devenv_e2e::plugin::{devenv_as, dv, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::webhook::free_port;
use devenv_e2e::{eventually, shared, unique_name, Cluster};
use serde_json::{json, Value};

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let _serial = serial();
    let _t = Timer::start("errors_are_clear_and_exit_non_zero");
    let c = shared();
    let ns = c.fresh_namespace("errors");
    let _wh = webhook_for(c, &ns);

    // An unreachable cluster: a kubeconfig pointing at a closed port.
    let (_dir, unreachable, port) = unreachable_kubeconfig(c);
    for args in [
        vec!["list"],
        vec!["create", "x", "--no-wait"],
        vec!["status"],
    ] {
        let t0 = Instant::now();
        let out = devenv_as(&unreachable, &args);
        let text = fails(&out, &format!("{args:?} against a closed port"));
        assert_mentions(
            &text,
            &[
                "cannot reach the Kubernetes API server",
                &format!("127.0.0.1:{port}"),
                "--kubeconfig",
            ],
            "unreachable cluster",
        );
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "took {:?}",
            t0.elapsed()
        );
    }

    // A name that exists.
    ok(&dv(c, &ns, &["create", "dup", "--no-wait"]), "create dup");
    let before = desired_state(&get_ok(c, &["statefulset", "dup", "-n", &ns]));
    let text = fails(
        &dv(c, &ns, &["create", "dup", "--no-wait"]),
        "create dup again",
    );
    assert_mentions(&text, &["dup", "already exists", &ns], "duplicate");
    assert_eq!(
        desired_state(&get_ok(c, &["statefulset", "dup", "-n", &ns])),
        before,
        "the existing workspace is untouched"
    );

    // RBAC: a user who may only view this namespace.
    let user = unique_name("viewer");
    let viewer = c.user_kubeconfig(&user).expect("user kubeconfig");
    c.kubectl_ok([
        "create",
        "rolebinding",
        "view",
        "--clusterrole=view",
        &format!("--user={user}"),
        "-n",
        &ns,
    ]);
    let as_viewer = |args: &[&str]| {
        let mut a = vec!["-n", ns.as_str()];
        a.extend_from_slice(args);
        devenv_as(&viewer, a)
    };
    eventually("the view binding", Duration::from_secs(30), || {
        as_viewer(&["list"]).status.success().then_some(())
    });
    let text = ok(&as_viewer(&["list"]), "list as viewer");
    assert!(text.contains("dup"), "{text}");
    for (args, verb) in [
        (vec!["create", "zed", "--no-wait"], "cannot"),
        (vec!["delete", "dup"], "cannot delete"),
        (vec!["stop", "dup"], "cannot patch"),
        (
            vec!["secrets", "set", "s", "--from-literal", "K=V"],
            "cannot",
        ),
    ] {
        let text = fails(&as_viewer(&args), &format!("{args:?} as viewer"));
        assert_mentions(
            &text,
            &["forbidden", &user, verb, &ns, "kubectl auth can-i"],
            &format!("{args:?} as viewer"),
        );
    }
    assert!(absent(c, &["serviceaccount", "zed", "-n", &ns]));
    assert!(absent(c, &["statefulset", "zed", "-n", &ns]));
    assert_eq!(
        desired_state(&get_ok(c, &["statefulset", "dup", "-n", &ns])),
        before,
        "the viewer changed nothing"
    );
    // And one with no rights at all.
    let nobody = unique_name("nobody");
    let nobody_cfg = c.user_kubeconfig(&nobody).expect("user kubeconfig");
    let text = fails(
        &devenv_as(&nobody_cfg, ["-n", &ns, "list"]),
        "list with no rights",
    );
    assert_mentions(&text, &["forbidden", &nobody, "cannot list"], "no rights");
}

/// What a user reads on a failure is the error and its hint: at the default verbosity no
/// internal log line (`ERROR kube_client::client::builder: failed with ...`), and no
/// terminal colour codes when stderr is not a terminal. Today both appear above every
/// API error.
/// An application's StatefulSet, Service and ServiceAccount named like a workspace are not
/// the plugin's: `stop`, `start`, `scale`, `backup`, `restore` (in place) and `delete`
/// refuse or leave them, and nothing of them changes.
#[test]
fn the_plugin_never_acts_on_an_application_named_like_a_workspace() {
    let _serial = serial();
    let _t = Timer::start("the_plugin_never_acts_on_an_application_named_like_a_workspace");
    let c = shared();
    let ns = c.fresh_namespace("not-mine");
    let _wh = webhook_for(c, &ns);
    let app = json!({
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet",
             "metadata": {"name": "redis", "namespace": ns, "labels": {"app": "redis"}},
             "spec": {"replicas": 1, "serviceName": "redis",
                      "selector": {"matchLabels": {"app": "redis"}},
                      "template": {"metadata": {"labels": {"app": "redis"}},
                                   "spec": {"containers": [{"name": "redis", "image": "redis:7"}]}}}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "redis", "namespace": ns},
             "spec": {"selector": {"app": "redis"}, "ports": [{"port": 6379}]}},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "redis", "namespace": ns}}
        ]
    });
    ok(
        &c.kubectl_stdin(["apply", "-f", "-"], &app.to_string()),
        "apply the application",
    );
    let before = get_ok(c, &["statefulset", "redis", "-n", &ns]);
    for args in [
        vec!["stop", "redis"],
        vec!["start", "redis"],
        vec!["scale", "redis", "--replicas", "3"],
        vec!["backup", "redis", "--to", "127.0.0.1:1/never"],
        vec!["restore", "redis", "--from", "127.0.0.1:1/never:tag"],
    ] {
        let text = fails(&dv(c, &ns, &args), &format!("{args:?}"));
        assert_mentions(
            &text,
            &[
                "statefulset",
                "redis",
                "is not a workspace",
                "devenv.io/workspace=redis",
            ],
            &format!("{args:?}"),
        );
    }
    let text = fails(&dv(c, &ns, &["delete", "redis"]), "delete redis");
    assert_mentions(
        &text,
        &[
            "not deleting statefulset.apps/redis",
            "not deleting service/redis",
        ],
        "delete redis",
    );
    let after = get_ok(c, &["statefulset", "redis", "-n", &ns]);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(after["spec"]["replicas"], 1, "{after}");
    assert!(
        !absent(c, &["service", "redis", "-n", &ns]),
        "the Service was deleted"
    );
    assert!(
        !absent(c, &["serviceaccount", "redis", "-n", &ns]),
        "the ServiceAccount was deleted"
    );
}

#[test]
fn error_output_is_plain_text_without_internal_log_lines() {
    let _serial = serial();
    let _t = Timer::start("error_output_is_plain_text_without_internal_log_lines");
    let c = shared();
    let (_dir, unreachable, _) = unreachable_kubeconfig(c);
    let out = devenv_as(&unreachable, ["list"]);
    let text = fails(&out, "list against a closed port");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in non-terminal output:\n{text:?}"
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("error: ")),
        "the first line is the error, not a log line:\n{text}"
    );
    assert!(!text.contains("kube_client"), "internal log line:\n{text}");
}

/// What a user changes on an object (not the status its controller keeps writing):
/// uid, generation, labels, annotations and spec.
fn desired_state(o: &Value) -> Value {
    json!([
        o["metadata"]["uid"],
        o["metadata"]["generation"],
        o["metadata"]["labels"],
        o["metadata"]["annotations"],
        o["spec"],
    ])
}

/// The admin kubeconfig pointed at a closed loopback port: (its directory, removed when
/// dropped; its path; the port).
fn unreachable_kubeconfig(c: &Cluster) -> (tempfile::TempDir, PathBuf, u16) {
    let port = free_port().expect("a port");
    let dir = tempfile::tempdir().expect("temp dir");
    let unreachable: PathBuf = dir.path().join("unreachable.kubeconfig");
    let admin = std::fs::read_to_string(&c.kubeconfig).expect("admin kubeconfig");
    let moved = admin.replace(&c.server, &format!("https://127.0.0.1:{port}"));
    assert_ne!(moved, admin, "the kubeconfig names {}", c.server);
    std::fs::write(&unreachable, moved).expect("write kubeconfig");
    (dir, unreachable, port)
}
