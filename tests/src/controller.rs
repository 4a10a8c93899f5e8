//! The workspace lifecycle controller (`devenv-webhook lifecycle`) as a process, for
//! the suites that need one: `tests/controller.rs` (the rules on the control plane)
//! and `tests/e2e_node.rs` (exec sessions and data on the real node).
//!
//! [`controller_user`] makes a user bound to exactly the ClusterRole of
//! `tests/lifecycle/rbac.yaml`, so the RBAC the install grants is what the controller
//! gets. [`Controller::start`] runs the controller restricted to one namespace with a
//! short Lease (3s, renewed every 1s), its policy from a file and its log in a file
//! that is printed when the test fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::webhook::{free_port, kill_with_watchdog, spawn_watchdog, webhook_binary};
use crate::{check_ok, eventually, Cluster};

/// The controller's ClusterRole (the same rules as the install's).
pub const RBAC: &str = include_str!("../lifecycle/rbac.yaml");

/// The user every test controller runs as. One name for all of them, so the test webhook
/// can be told it (`DEVENV_CONTROLLER_USERS`, as the install tells the in-cluster webhook
/// the devenv ServiceAccount): the controller acts for workspace owners.
pub const CONTROLLER_USER: &str = "devenv-lifecycle-e2e";

/// The user [`CONTROLLER_USER`], bound to the controller's ClusterRole only; returns its
/// kubeconfig.
pub fn controller_user(c: &Cluster) -> PathBuf {
    static ROLE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    {
        let mut applied = ROLE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*applied {
            check_ok(
                &["apply", "ClusterRole"],
                &c.kubectl_stdin(["apply", "-f", "-"], RBAC),
            );
            *applied = true;
        }
    }
    let user = CONTROLLER_USER;
    let kubeconfig = c.user_kubeconfig(user).expect("user kubeconfig");
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "devenv-lifecycle"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    });
    check_ok(
        &["apply", "ClusterRoleBinding"],
        &c.kubectl_stdin(["apply", "-f", "-"], &binding.to_string()),
    );
    kubeconfig
}

/// The rules the install adds for scheduled backups (`backup.every`).
pub const BACKUP_RBAC: &str = include_str!("../lifecycle/backup-rbac.yaml");

/// Grants [`CONTROLLER_USER`] the scheduled-backup rules too, as the install does when the
/// policy sets `backup.every`; the grant is taken back when the guard drops, so the other
/// suites' controllers keep exactly the default rights.
pub fn grant_backups(c: &Cluster) -> BackupGrant<'_> {
    check_ok(
        &["apply", "ClusterRole devenv-lifecycle-backup"],
        &c.kubectl_stdin(["apply", "-f", "-"], BACKUP_RBAC),
    );
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("{CONTROLLER_USER}-backup")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "devenv-lifecycle-backup"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": CONTROLLER_USER}],
    });
    check_ok(
        &["apply", "ClusterRoleBinding backup"],
        &c.kubectl_stdin(["apply", "-f", "-"], &binding.to_string()),
    );
    BackupGrant(c)
}

/// Takes [`grant_backups`]' binding back when dropped.
pub struct BackupGrant<'a>(&'a Cluster);

impl Drop for BackupGrant<'_> {
    fn drop(&mut self) {
        let _ = self.0.kubectl([
            "delete",
            "clusterrolebinding",
            &format!("{CONTROLLER_USER}-backup"),
            "--ignore-not-found",
        ]);
    }
}

/// A running `devenv-webhook lifecycle`; killed when dropped (its log is printed when
/// the test is failing).
pub struct Controller {
    child: Child,
    watchdog: Option<Child>,
    identity: String,
    metrics_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Controller {
    /// Starts a controller acting in `namespace` only, holding Lease `lease` there as
    /// `identity`, with the policy document `policy` (YAML).
    pub fn start(
        kubeconfig: &Path,
        namespace: &str,
        lease: &str,
        identity: &str,
        policy: &str,
    ) -> Controller {
        let dir = tempfile::tempdir().expect("temp dir");
        let policy_file = dir.path().join("policy.yaml");
        std::fs::write(&policy_file, policy).expect("write policy");
        let log = dir.path().join("controller.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let metrics_port = free_port().expect("a free loopback port");
        let child = Command::new(webhook_binary().unwrap_or_else(|e| panic!("{e:#}")))
            .arg("lifecycle")
            .arg("--policy")
            .arg(&policy_file)
            .args(["--namespace", namespace])
            .args(["--lease-namespace", namespace])
            .args(["--lease-name", lease])
            .args(["--identity", identity])
            .args(["--lease-duration", "3s", "--renew-every", "1s"])
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("DEVENV_E2E_CONTROLLER_LOG")
                    .unwrap_or_else(|_| "info,devenv_webhook=debug".to_owned()),
            )
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("start devenv-webhook lifecycle");
        // Killed also when this test process dies without dropping it (`kill -9`, a CI
        // timeout): the watchdog knows it by its own policy file on its command line.
        let watchdog = spawn_watchdog("devenv-lifecycle-watchdog", child.id(), &policy_file);
        Controller {
            child,
            watchdog,
            identity: identity.to_string(),
            metrics_port,
            log,
            _dir: dir,
        }
    }

    /// The identity it holds the Lease as.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The process id (for [`crate::kwok::usage`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET /metrics, once it answers.
    pub fn metrics(&self) -> String {
        eventually("the metrics endpoint", Duration::from_secs(20), || {
            let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .ok()?;
            let mut body = String::new();
            s.read_to_string(&mut body).ok()?;
            body.contains("200 OK").then_some(body)
        })
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -TERM {}: {status}", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "controller exited with {status}:\n{}",
                    self.log()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "controller did not stop within 15s of SIGTERM:\n{}",
            self.log()
        );
    }

    /// SIGKILL (a crash: the Lease is not released).
    pub fn kill(&mut self) {
        kill_with_watchdog(&mut self.child, &mut self.watchdog);
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- log of controller {} ----\n{}",
                self.identity,
                self.log()
            );
        }
    }
}
