//! The plugin as users run it: through the real `kubectl` binary, which finds
//! `kubectl-devenv` on PATH.
//!
//! kubectl is required: without it these tests FAIL. Where it cannot be
//! installed, opt out by name with `DEVENV_SKIP_KUBECTL_TESTS=1`; each test
//! then writes a loud "NOT RUN" line to the terminal (past libtest's capture)
//! and passes without having checked anything.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The opt-out, by name.
const SKIP_VAR: &str = "DEVENV_SKIP_KUBECTL_TESTS";

/// kubectl: $KUBECTL, else the first `kubectl` on PATH, else the usual places.
fn find_kubectl() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("kubectl"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .into_iter()
        .chain(on_path)
        .chain([
            PathBuf::from("/usr/bin/kubectl"),
            PathBuf::from("/usr/local/bin/kubectl"),
        ])
        .find(|p| p.is_file())
}

/// kubectl, or `None` only when the user opted out by name (after saying
/// loudly that `test` did not run); a missing kubectl otherwise fails.
fn kubectl(test: &str) -> Option<PathBuf> {
    if let Some(k) = find_kubectl() {
        return Some(k);
    }
    if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
        // Straight to stderr: libtest captures eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** NOT RUN: {test}: kubectl not found and {SKIP_VAR}=1 ***\n"
        );
        return None;
    }
    panic!(
        "kubectl not found (looked at $KUBECTL, PATH, /usr/bin, /usr/local/bin): install it, \
         point KUBECTL at it, or opt out of these tests with {SKIP_VAR}=1"
    );
}

/// A directory holding only `kubectl-devenv`, so `kubectl plugin list` sees
/// nothing else of the build directory.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("kubectl-devenv");
    #[cfg(unix)]
    std::os::unix::fs::symlink(common::binary(), &target).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(common::binary(), &target).unwrap();
    dir
}

fn kubectl_run(kubectl: &Path, dir: &Path, args: &[&str]) -> Output {
    let path = std::env::join_paths([
        dir.to_path_buf(),
        PathBuf::from("/usr/bin"),
        PathBuf::from("/bin"),
    ])
    .unwrap();
    Command::new(kubectl)
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", "/nonexistent/devenv-test/kubeconfig")
        .env("HOME", dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

macro_rules! need_kubectl {
    ($test:literal) => {
        match kubectl($test) {
            Some(k) => k,
            None => return,
        }
    };
}

#[test]
fn kubectl_plugin_list_finds_it() {
    let kubectl = need_kubectl!("kubectl_plugin_list_finds_it");
    let dir = plugin_dir();
    let out = kubectl_run(&kubectl, dir.path(), &["plugin", "list"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("kubectl-devenv"), "{stdout}");
}

#[test]
fn kubectl_devenv_help_runs() {
    let kubectl = need_kubectl!("kubectl_devenv_help_runs");
    let dir = plugin_dir();
    let out = kubectl_run(&kubectl, dir.path(), &["devenv", "--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Usage: kubectl devenv"), "{stdout}");
    for cmd in [
        "create",
        "list",
        "exec",
        "attach",
        "scale",
        "stop",
        "start",
        "delete",
        "secrets",
        "install",
        "uninstall",
        "status",
        "completion",
    ] {
        assert!(stdout.contains(cmd), "help lacks {cmd}");
    }
}

#[test]
fn kubectl_devenv_create_dry_run_needs_no_cluster() {
    let kubectl = need_kubectl!("kubectl_devenv_create_dry_run_needs_no_cluster");
    let dir = plugin_dir();
    let out = kubectl_run(
        &kubectl,
        dir.path(),
        &["devenv", "create", "demo", "--dry-run=client", "-o", "yaml"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("kind: StatefulSet"), "{stdout}");
    let expected = common::run_ok(&["create", "demo", "--dry-run=client", "-o", "yaml"]);
    assert_eq!(
        stdout, expected,
        "kubectl passes arguments and output through unchanged"
    );
}

#[test]
fn kubectl_passes_the_exit_code_through() {
    let kubectl = need_kubectl!("kubectl_passes_the_exit_code_through");
    let dir = plugin_dir();
    let out = kubectl_run(&kubectl, dir.path(), &["devenv", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/devenv-test/kubeconfig"),
        "{stderr}"
    );
}
