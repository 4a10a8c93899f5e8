//! The plugin as a user runs it: `kubectl devenv ARGS` through the real `kubectl`
//! (plugin discovery on `PATH`, with the directory of the built `kubectl-devenv`
//! first), with `--kubeconfig` the cluster's admin kubeconfig ([`devenv`], [`dv`]) or
//! another one ([`devenv_as`]); and `install` / `uninstall` of a [`WebhookProcess`].
//!
//! The plugin comes from `CARGO_TARGET_DIR` (default `../target` from this crate)
//! `/debug`, built by `cargo build --workspace --bins` (tests/run.sh does that first);
//! `DEVENV_PLUGIN_DIR` points elsewhere.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::objects::get;
use crate::output::{ok, ok_both};
use crate::webhook::{target_dir, WebhookProcess};
use crate::{eventually, kubectl_binary, Cluster};

/// The namespace `kubectl devenv install` installs into.
pub const INSTALL_NS: &str = "devenv-system";

/// The kinds of the two webhook configurations `install` registers.
pub const CONFIGS: [&str; 2] = [
    "mutatingwebhookconfiguration",
    "validatingwebhookconfiguration",
];

/// The name of both configurations (and of the install's ClusterRole, binding and
/// ServiceAccount).
pub const CONFIG_NAME: &str = "devenv-webhook";

/// The directory holding the built `kubectl-devenv` (`target/debug`, or
/// `$DEVENV_PLUGIN_DIR`): prepended to `PATH` so `kubectl devenv` finds it.
pub fn plugin_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("DEVENV_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug"));
    let plugin = dir.join("kubectl-devenv");
    if !plugin.is_file() {
        bail!(
            "{} is not built: run `cargo build --workspace --bins` (tests/run.sh does) or set DEVENV_PLUGIN_DIR",
            plugin.display()
        );
    }
    Ok(dir)
}

/// A `kubectl devenv` command run as a user runs it: the real `kubectl` finds the
/// plugin on `PATH` (its directory first), `--kubeconfig KUBECONFIG` comes right after
/// `devenv`, stdin is not a terminal (no prompts, no `--wait` by default), and none of
/// the caller's `KUBECONFIG` / `DEVENV_*` settings leak in.
pub fn devenv_command(kubeconfig: &Path) -> Command {
    let dir = plugin_dir().unwrap_or_else(|e| panic!("{e:#}"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir];
    paths.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(paths).expect("PATH entries without ':'");
    let mut cmd = Command::new(kubectl_binary());
    cmd.arg("devenv")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("PATH", path)
        .env_remove("KUBECONFIG")
        .env_remove("DEVENV_INSTALL_NAMESPACE")
        .stdin(Stdio::null());
    cmd
}

/// Runs `kubectl devenv ARGS` as the cluster admin; returns its output whatever the
/// exit status. Panics only when `kubectl` cannot be run.
pub fn devenv<I, S>(cluster: &Cluster, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    devenv_as(&cluster.kubeconfig, args)
}

/// Runs `kubectl devenv --kubeconfig KUBECONFIG ARGS` (e.g. an RBAC-limited user's).
pub fn devenv_as<I, S>(kubeconfig: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = devenv_command(kubeconfig);
    cmd.args(args);
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {} devenv: {e}", kubectl_binary().display()))
}

/// `kubectl devenv -n NS ARGS` as the cluster admin, whatever the exit status.
pub fn dv(c: &Cluster, ns: &str, args: &[&str]) -> Output {
    let mut a = vec!["-n", ns];
    a.extend_from_slice(args);
    devenv(c, a)
}

/// [`dv`], which must succeed; returns (stdout, stderr).
pub fn dv_ok(c: &Cluster, ns: &str, args: &[&str]) -> (String, String) {
    ok_both(
        &dv(c, ns, args),
        &format!("kubectl devenv -n {ns} {}", args.join(" ")),
    )
}

/// Waits until `install` can work: a namespace left Terminating by an `uninstall` makes
/// it fail (see the control-plane suite's `install_right_after_uninstall_succeeds`).
pub fn wait_install_namespace_usable(c: &Cluster) {
    eventually(
        "namespace devenv-system not to be Terminating",
        Duration::from_secs(120),
        || match get(c, &["namespace", INSTALL_NS]) {
            None => Some(()),
            Some(ns) => (ns["status"]["phase"] != "Terminating").then_some(()),
        },
    );
}

/// `kubectl devenv install --webhook-url URL --cert-dir DIR`, checked; returns its stdout.
pub fn install(c: &Cluster, wh: &WebhookProcess) -> String {
    wait_install_namespace_usable(c);
    ok(&devenv(c, wh.install_args()), "kubectl devenv install")
}

/// `kubectl devenv uninstall`, checked; then waits until its namespace is gone.
pub fn uninstall(c: &Cluster) -> String {
    let out = ok(&devenv(c, ["uninstall"]), "kubectl devenv uninstall");
    wait_install_namespace_usable(c);
    out
}

/// A webhook process, registered with the cluster; `ns` (a test's namespace) selects
/// the log lines printed when the test fails.
pub fn webhook_for(c: &Cluster, ns: &str) -> WebhookProcess {
    let wh = WebhookProcess::start(c, Some(ns)).expect("starting devenv-webhook");
    install(c, &wh);
    wh
}

/// `kubectl --kubeconfig CFG -n NS ARGS..`, with `stdin` fed in when given.
pub fn kubectl_as(
    cfg: &Path,
    ns: &str,
    args: &[&str],
    stdin: Option<&serde_json::Value>,
) -> Output {
    let mut cmd = Command::new(kubectl_binary());
    cmd.arg("--kubeconfig").arg(cfg).args(["-n", ns]).args(args);
    let Some(doc) = stdin else {
        return cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("kubectl: {e}"));
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("kubectl: {e}"));
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write as _;
        let _ = input.write_all(doc.to_string().as_bytes());
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("kubectl: {e}"))
}
