//! The plugin as users run it: through the real `kubectl` binary, which finds
//! `kubectl-devenv` on PATH. Skipped (with a note) where kubectl is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kubectl() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("KUBECTL").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/kubectl")),
        Some(PathBuf::from("/usr/local/bin/kubectl")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
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
    () => {
        match kubectl() {
            Some(k) => k,
            None => {
                eprintln!("kubectl not found: skipping");
                return;
            }
        }
    };
}

#[test]
fn kubectl_plugin_list_finds_it() {
    let kubectl = need_kubectl!();
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
    let kubectl = need_kubectl!();
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
    let kubectl = need_kubectl!();
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
    let kubectl = need_kubectl!();
    let dir = plugin_dir();
    let out = kubectl_run(&kubectl, dir.path(), &["devenv", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/devenv-test/kubeconfig"),
        "{stderr}"
    );
}
