//! Helpers shared by the integration tests: run the real binary with no
//! cluster (a kubeconfig path that does not exist), or against a fake API
//! server on loopback ([`fake_api`]).

#![allow(dead_code)]

pub mod fake_api;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The plugin binary built by cargo for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-devenv"))
}

/// Runs the plugin with `args`, with no reachable cluster and no kubeconfig.
pub fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("KUBECONFIG", "/nonexistent/devenv-test/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("DEVENV_INSTALL_NAMESPACE")
        .output()
        .expect("the plugin binary runs")
}

/// Runs and returns stdout, failing the test with stderr when it fails.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "kubectl-devenv {args:?} failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}
