//! Command-line behaviour without a cluster: argument checks happen before
//! any call, errors say what to do, exit codes are non-zero on error.

mod common;

use common::{run, run_ok};

fn stderr_of(args: &[&str]) -> (i32, String) {
    let out = run(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_names_fail_before_any_call() {
    for (name, why) in [
        ("Demo", "lowercase"),
        ("demo_1", "lowercase"),
        ("demo-", "start and end"),
        (&"a".repeat(53), "at most 52"),
    ] {
        // Without --dry-run: the kubeconfig does not exist, so reaching it
        // would be a kubeconfig error; the name error must come first.
        let (code, err) = stderr_of(&["create", name]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(
            err.contains("invalid workspace name") && err.contains(why),
            "{name}: {err}"
        );
    }
}

#[test]
fn no_kubeconfig_is_a_clear_error() {
    let (code, err) = stderr_of(&["list"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot load a kubeconfig"), "{err}");
    assert!(err.contains("--kubeconfig"), "{err}");
}

#[test]
fn unreachable_cluster_names_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    // Port 1 on loopback: nothing listens there.
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\n\
         clusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}\n\
         users:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::binary())
        .args(["--kubeconfig", path.to_str().unwrap(), "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the Kubernetes API server at https://127.0.0.1:1"),
        "{err}"
    );
    assert!(err.contains("--context"), "{err}");
}

#[test]
fn policy_violations_are_reported_before_any_call() {
    // micro allows 500m CPU at most.
    let (code, err) = stderr_of(&[
        "create",
        "demo",
        "--tier",
        "micro",
        "--cpu",
        "4",
        "--dry-run=client",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("above the cpu limit"), "{err}");
    let (code, err) = stderr_of(&["create", "demo", "--tier", "huge", "--dry-run=client"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown tier"), "{err}");
}

#[test]
fn purge_without_terminal_needs_yes() {
    // A real purge (no --dry-run), stdin not a terminal, no --yes: refused as
    // a usage error before any call. The kubeconfig does not exist, so had it
    // tried to connect this would be a kubeconfig error instead.
    let (code, err) = stderr_of(&["delete", "demo", "--purge"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--purge deletes all data of the workspace; without a terminal to confirm on, pass --yes"),
        "{err}"
    );
    assert!(!err.contains("kubeconfig"), "{err}");
    // With --yes it goes on (to the missing kubeconfig).
    let (code, err) = stderr_of(&["delete", "demo", "--purge", "--yes"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot load a kubeconfig"), "{err}");
    // A client dry run never prompts; it names what would go.
    let out = run_ok(&["delete", "demo", "--purge", "--dry-run=client"]);
    assert!(out.contains("statefulset.apps/demo deleted (dry run)"));
    assert!(out.contains("persistentvolumeclaims with label devenv.io/workspace=demo"));
}

#[test]
fn duration_flags_name_the_value_and_the_fix() {
    // One grammar for every duration flag: a bare number is refused, with how
    // to write it, before anything else happens.
    for flag in ["--timeout", "--idle-timeout"] {
        let (code, err) = stderr_of(&["create", "demo", flag, "45", "--dry-run=client"]);
        assert_eq!(code, 2, "{flag}: {err}");
        assert!(err.contains(&format!("'45' for '{flag} ")), "{flag}: {err}");
        assert!(
            err.contains(r#"invalid duration "45": missing unit after 45: write e.g. 45s or 45m"#),
            "{flag}: {err}"
        );
        run_ok(&["create", "demo", flag, "45s", "--dry-run=client"]);
    }
    let (code, err) = stderr_of(&["create", "demo", "--timeout", "0", "--dry-run=client"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(r#"invalid duration "0": must be more than 0"#),
        "{err}"
    );
    // An idle timeout of 0 means never.
    let out = run_ok(&["create", "demo", "--idle-timeout", "0", "--dry-run=client"]);
    assert!(out.contains("devenv.io/idle-timeout: '0'"), "{out}");
}

#[test]
fn completion_scripts() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = run_ok(&["completion", shell]);
        assert!(
            out.contains("kubectl-devenv") || out.contains("kubectl_devenv"),
            "{shell}"
        );
    }
}

#[test]
fn namespace_comes_from_the_flag_in_dry_run() {
    let out = run_ok(&[
        "create",
        "demo",
        "-n",
        "team",
        "--dry-run=client",
        "-o",
        "json",
    ]);
    assert!(out.contains("\"namespace\": \"team\""));
}

#[test]
fn version_and_usage_errors() {
    let out = run_ok(&["--version"]);
    assert!(out.contains(env!("CARGO_PKG_VERSION")));
    let (code, _) = stderr_of(&["create"]);
    assert_eq!(code, 2);
    let (code, err) = stderr_of(&["scale", "demo"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--replicas"), "{err}");
}

#[test]
fn tenant_errors_name_the_flag_before_any_call() {
    // Without --dry-run: the kubeconfig does not exist, so each of these reaching for
    // the cluster would be a kubeconfig error instead.
    for (args, want) in [
        (
            vec!["tenant", "add", "Team_A", "--user", "alice"],
            r#"invalid tenant name "Team_A": contains 'T'"#,
        ),
        (
            vec!["tenant", "add", "team-a"],
            "a tenant needs at least one --user or --group",
        ),
        (
            vec!["tenant", "add", "team-a", "--user", " alice"],
            r#"invalid --user " alice""#,
        ),
        (
            vec!["tenant", "add", "team-a", "--group", ""],
            r#"invalid --group """#,
        ),
        (
            vec![
                "tenant",
                "add",
                "team-a",
                "--user",
                "alice",
                "--workspaces",
                "0",
            ],
            "invalid --workspaces 0: must be 1 or more",
        ),
        (
            vec!["tenant", "add", "kube-system", "--user", "alice"],
            "the admission webhook does not watch that namespace",
        ),
        (
            vec!["tenant", "remove", "devenv-system"],
            "the admission webhook does not watch that namespace",
        ),
        (
            vec!["tenant", "remove", "Bad"],
            r#"invalid tenant name "Bad""#,
        ),
    ] {
        let (code, err) = stderr_of(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("kubeconfig"), "{args:?}: {err}");
    }
    // The tier needs the policy: with --dry-run=client it is the built-in one.
    let (code, err) = stderr_of(&[
        "tenant",
        "add",
        "team-a",
        "--user",
        "alice",
        "--tier",
        "huge",
        "--dry-run=client",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(r#"unknown --tier "huge"; the policy defines: large, micro, small"#),
        "{err}"
    );
    // --workspaces takes a number.
    let (code, err) = stderr_of(&["tenant", "add", "t", "--user", "a", "--workspaces", "many"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--workspaces"), "{err}");
}

#[test]
fn tenant_purge_without_terminal_needs_yes() {
    let (code, err) = stderr_of(&["tenant", "remove", "team-a", "--purge"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "--purge deletes all data of the tenant; without a terminal to confirm on, pass --yes"
        ),
        "{err}"
    );
    assert!(!err.contains("kubeconfig"), "{err}");
    let (code, err) = stderr_of(&["tenant", "remove", "team-a", "--purge", "--yes"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot load a kubeconfig"), "{err}");
}
