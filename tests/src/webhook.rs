//! The admission webhook as a process on loopback.
//!
//! [`WebhookProcess::start`] runs `target/debug/devenv-webhook gen-certs --san 127.0.0.1`
//! into a temporary directory, then `devenv-webhook serve --listen 127.0.0.1:PORT
//! --cert-dir DIR` with `KUBECONFIG` set to the cluster's admin kubeconfig (so it
//! reflects the injectable Secrets and creates bare pods' claims), and waits until
//! `GET /readyz` answers over TLS verified with the generated CA. Register it with
//! [`WebhookProcess::install_args`] (`install --webhook-url URL --cert-dir DIR`, see
//! [`crate::plugin::install`]). [`WebhookProcess::stop`] / [`WebhookProcess::start_again`]
//! simulate an outage (same port, same certificate, same log). Its stdout and stderr go
//! to one log file ([`WebhookProcess::log`]) so tests can check what it printed (e.g.
//! that no secret value appears). Dropping it kills it; a watchdog kills it too if the
//! test process dies without dropping it (`kill -9`, a CI timeout), as the cluster's does.
//!
//! The binary comes from `CARGO_TARGET_DIR` (default `../target` from this crate)
//! `/debug`, built by `cargo build --workspace --bins` (tests/run.sh does that first);
//! `DEVENV_WEBHOOK_BIN` points elsewhere. The plugin, `kubectl devenv`, is run by
//! [`crate::plugin`].

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::Cluster;

/// How long [`WebhookProcess::start`] waits for `/readyz` (it waits for the Secret
/// catalog's first sync, at most 30 s by the webhook's own grace period).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`WebhookProcess::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// `RUST_LOG` of the webhook unless `DEVENV_E2E_WEBHOOK_LOG` says otherwise: debug
/// for our crates, so a secret-leak check looks at everything the webhook says.
pub const DEFAULT_LOG_FILTER: &str = "info,devenv_webhook=debug,devenv_shared=debug";

/// The cargo target directory: `$CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn built(name: &str, env_override: &str) -> Result<PathBuf> {
    let path = match std::env::var_os(env_override) {
        Some(p) => PathBuf::from(p),
        None => target_dir().join("debug").join(name),
    };
    if !path.is_file() {
        bail!(
            "{} is not built: run `cargo build --workspace --bins` (tests/run.sh does) or set {env_override}",
            path.display()
        );
    }
    Ok(path)
}

/// `target/debug/devenv-webhook`, or `$DEVENV_WEBHOOK_BIN`.
pub fn webhook_binary() -> Result<PathBuf> {
    built("devenv-webhook", "DEVENV_WEBHOOK_BIN")
}

/// A free loopback port (the kernel's pick; released before the webhook binds it).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("picking a free loopback port")?
        .port())
}

/// A running `devenv-webhook serve` on `127.0.0.1`. Dropping it kills it.
#[derive(Debug)]
pub struct WebhookProcess {
    binary: PathBuf,
    kubeconfig: PathBuf,
    port: u16,
    cert_dir: PathBuf,
    log: PathBuf,
    namespace: Option<String>,
    child: Option<Child>,
    watchdog: Option<Child>,
    /// Holds the certificates and the log; removed on drop.
    dir: tempfile::TempDir,
}

impl WebhookProcess {
    /// Generates a CA and a serving certificate for `127.0.0.1`, starts the webhook on a
    /// free loopback port with the cluster's admin kubeconfig, and waits until it is
    /// ready. `namespace_for_logs` (a test's namespace) selects the log lines printed
    /// when the test panics; `None` prints the log's tail.
    pub fn start(cluster: &Cluster, namespace_for_logs: Option<&str>) -> Result<WebhookProcess> {
        let binary = webhook_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("devenv-webhook-")
            .tempdir()
            .context("creating the webhook's temporary directory")?;
        let cert_dir = dir.path().join("tls");
        let out = Command::new(&binary)
            .arg("gen-certs")
            .arg("--out")
            .arg(&cert_dir)
            .args(["--san", "127.0.0.1"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} gen-certs", binary.display()))?;
        if !out.status.success() {
            bail!(
                "devenv-webhook gen-certs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        for f in ["ca.crt", "tls.crt", "tls.key"] {
            if !cert_dir.join(f).is_file() {
                bail!(
                    "devenv-webhook gen-certs wrote no {}",
                    cert_dir.join(f).display()
                );
            }
        }
        let mut webhook = WebhookProcess {
            binary,
            kubeconfig: cluster.kubeconfig.clone(),
            port: free_port()?,
            cert_dir,
            log: dir.path().join("webhook.log"),
            namespace: namespace_for_logs.map(str::to_owned),
            child: None,
            watchdog: None,
            dir,
        };
        webhook.spawn()?;
        Ok(webhook)
    }

    /// The running server's process id (for [`crate::kwok::usage`]).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `https://127.0.0.1:PORT`, what `install --webhook-url` takes.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (the same across [`WebhookProcess::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory with `ca.crt`, `tls.crt` and `tls.key`: `install --cert-dir`.
    pub fn cert_dir(&self) -> &Path {
        &self.cert_dir
    }

    /// The CA that signed its serving certificate (`cert_dir/ca.crt`).
    pub fn ca_file(&self) -> PathBuf {
        self.cert_dir.join("ca.crt")
    }

    /// The CA's PEM text.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_file()).unwrap_or_default()
    }

    /// `install --webhook-url URL --cert-dir DIR`: arguments for [`devenv`].
    pub fn install_args(&self) -> Vec<String> {
        vec![
            "install".to_owned(),
            "--webhook-url".to_owned(),
            self.url(),
            "--cert-dir".to_owned(),
            self.cert_dir.display().to_string(),
        ]
    }

    /// The log file: stdout and stderr of every run, appended.
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// Everything the webhook printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process runs now.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Stops it (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) and waits for the exit, so
    /// nothing listens on its port any more. Errors when it did not exit cleanly on
    /// SIGTERM. A no-op when it is not running.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.stop_watchdog();
        if let Some(status) = child.try_wait().context("checking the webhook")? {
            bail!(
                "the webhook had already exited ({status}):\n{}",
                self.log_tail(40)
            );
        }
        signal(&child, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().context("waiting for the webhook")? {
                if !status.success() {
                    bail!(
                        "the webhook exited with {status} on SIGTERM:\n{}",
                        self.log_tail(40)
                    );
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "the webhook did not stop within {STOP_TIMEOUT:?} of SIGTERM (killed):\n{}",
            self.log_tail(40)
        )
    }

    /// Kills it at once (SIGKILL), like a crash. A no-op when it is not running.
    pub fn kill(&mut self) {
        self.stop_watchdog();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again after [`WebhookProcess::stop`] or [`WebhookProcess::kill`]: same
    /// port, certificate and log file; waits until it is ready.
    pub fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("the webhook is already running");
        }
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let filter = std::env::var("DEVENV_E2E_WEBHOOK_LOG")
            .unwrap_or_else(|_| DEFAULT_LOG_FILTER.to_owned());
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--cert-dir")
            .arg(&self.cert_dir)
            .env("KUBECONFIG", &self.kubeconfig)
            .env(
                "DEVENV_CONTROLLER_USERS",
                crate::controller::CONTROLLER_USER,
            )
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .env_remove("DEVENV_WEBHOOK_POLICY")
            .env_remove("DEVENV_WEBHOOK_KUBE")
            .env_remove("DEVENV_WEBHOOK_METRICS_LISTEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log file")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} serve", self.binary.display()))?;
        self.watchdog = spawn_watchdog("devenv-webhook-watchdog", child.id(), &self.cert_dir);
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls `GET /readyz` with curl (which `tests/cluster/cluster.sh` needs anyway),
    /// verifying the serving certificate against our CA and the IP SAN.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/readyz", self.url());
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                // The watchdog only kills after this process is gone: say so if it ended.
                let watchdog = match self.watchdog.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(w))) => format!("; its watchdog had ended ({w})"),
                    Some(Ok(None)) => "; its watchdog was still waiting".to_owned(),
                    _ => String::new(),
                };
                self.stop_watchdog();
                bail!(
                    "devenv-webhook serve on port {} exited with {status} before it was ready{watchdog}:\n{}",
                    self.port,
                    self.log_tail(40)
                );
            }
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "3", "--cacert"])
                .arg(self.ca_file())
                .arg(&url)
                .stdin(Stdio::null())
                .output()
                .context("running curl (needed to probe the webhook)")?;
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && body.starts_with("ready") {
                return Ok(());
            }
            if Instant::now() > deadline {
                let last = format!("{body}{}", String::from_utf8_lossy(&out.stderr));
                self.kill();
                bail!(
                    "devenv-webhook on port {} was not ready within {READY_TIMEOUT:?} (last answer: {}):\n{}",
                    self.port,
                    last.trim(),
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop_watchdog(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// What is printed when the owning test panics: the lines about its namespace (and
    /// every warning and error), else the log's tail.
    fn log_for_failure(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = match &self.namespace {
            Some(ns) => text
                .lines()
                .filter(|l| l.contains(ns.as_str()) || l.contains("WARN") || l.contains("ERROR"))
                .collect(),
            None => text.lines().collect(),
        };
        lines[lines.len().saturating_sub(100)..].join("\n")
    }
}

impl Drop for WebhookProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- devenv-webhook on {} ({}; log {}) ----\n{}",
                self.url(),
                self.namespace.as_deref().unwrap_or("all namespaces"),
                self.dir.path().display(),
                self.log_for_failure()
            );
        }
    }
}

/// Sends `signal` (a name: `TERM`, `KILL`) to a child we started and have not reaped.
fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kills `child` (and reaps it), then its watchdog ([`spawn_watchdog`]): how every helper
/// process of the suites is stopped when its owner drops.
pub fn kill_with_watchdog(child: &mut Child, watchdog: &mut Option<Child>) {
    let _ = child.kill();
    let _ = child.wait();
    if let Some(mut w) = watchdog.take() {
        let _ = w.kill();
        let _ = w.wait();
    }
}

/// A shell loop that kills a helper process (the webhook, the registry) once this test
/// process is gone (it cannot run `Drop` when killed by a signal). It checks the child's
/// command line names `mark` (its own certificate directory, its own config file) before
/// killing, so a recycled pid is never hit, and ends by itself when the child is gone.
/// It first waits for the child's exec (until then its command line is the test's), and
/// kills only once the owner is gone. Best effort: `None` when `sh` cannot be started.
pub fn spawn_watchdog(name: &str, child: u32, mark: &Path) -> Option<Child> {
    const SCRIPT: &str = r#"owner=$1 child=$2 mark=$3
alive() { tr '\0' '\n' < "/proc/$child/cmdline" 2>/dev/null | grep -qxF -- "$mark"; }
n=0; while ! alive && [ $n -lt 100 ] && kill -0 "$child" 2>/dev/null; do sleep 0.1; n=$((n+1)); done
while kill -0 "$owner" 2>/dev/null && alive; do sleep 1; done
if ! kill -0 "$owner" 2>/dev/null && alive; then kill -9 "$child"; fi"#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg(name)
        .arg(std::process::id().to_string())
        .arg(child.to_string())
        .arg(mark)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}
