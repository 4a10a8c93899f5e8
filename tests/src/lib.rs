//! Harness for the end-to-end suites: starts the real control plane built by
//! `tests/cluster/build.sh` (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler) on loopback with `tests/cluster/cluster.sh`, and drives it with
//! the real `kubectl`.
//!
//! Two ways to get a cluster:
//!
//! * [`Cluster::start`] gives a cluster owned by the caller; dropping it (also while a
//!   test panics and unwinds) runs `cluster.sh down`, which stops every process and
//!   removes its directory.
//! * [`shared`] gives one cluster for all the tests of a test binary, started by the
//!   first test that asks and stopped when the binary exits. Tests isolate from each
//!   other with [`Cluster::fresh_namespace`], never by sharing a namespace.
//!
//! How the shared cluster is stopped (a static is never dropped): the first call to
//! [`shared`] registers a `libc::atexit` handler. libtest's `main` ends through
//! `std::process::exit` or a normal return, and both run `atexit` handlers, so the
//! handler runs `cluster.sh down` once all tests are done, failed ones included. That
//! needs no `#[ctor]`, no custom test harness and no `Drop` on a static. What `atexit`
//! cannot cover — the test binary killed by a signal (Ctrl-C, `kill -9`, a CI timeout) —
//! is covered by the watchdog that `cluster.sh up` starts when given
//! `DEVENV_CLUSTER_OWNER_PID`: it polls the owner process and runs `down` once it is
//! gone. Every cluster this crate starts passes its own process id, so no control
//! plane outlives the test process that started it.
//!
//! When the Kubernetes binaries are not built, [`Cluster::start`] returns an error that
//! says so and how to build them; tests `expect` it and fail loudly, they never skip.
//!
//! Every helper more than one suite (or module of a suite) uses lives here, once:
//!
//! | module | what |
//! | --- | --- |
//! | this one | [`Cluster`], [`shared`], [`eventually`], [`check_ok`], [`unique_name`] |
//! | [`output`] | a command's output: succeeded, failed, mentions; JSON; base64 |
//! | [`objects`] | objects as JSON through `kubectl get` / `create`, and their fields |
//! | [`workspace`] | a workspace from the outside: keys, claims, pods, every mutation |
//! | [`plugin`] | `kubectl devenv` as a user runs it; install / uninstall |
//! | [`browser`] | headless Chromium over the DevTools protocol: navigate, evaluate, screenshot |
//! | [`portal`] | `kubectl devenv ui` as a process, and the HTTP a browser sends it |
//! | [`webhook`] | `devenv-webhook serve` as a process on loopback |
//! | [`controller`] | `devenv-webhook lifecycle` as a process, and its RBAC-bound user |
//! | [`node`] | a real worker node (kubelet, containerd, bridge CNI, local PVs) |
//! | [`metrics`] | metrics-server through the aggregation layer |
//! | [`kwok`] | simulated nodes (kwok) for the scale run; a process's CPU and memory |
//! | [`release`] | the release images, a loopback registry, the node pulling from it |
//! | [`serial`] | one test at a time, and how long each took |

pub mod browser;
pub mod controller;
pub mod kwok;
pub mod metrics;
pub mod node;
pub mod objects;
pub mod output;
pub mod plugin;
pub mod portal;
pub mod release;
pub mod serial;
pub mod snapshots;
pub mod webhook;
pub mod workspace;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// The `kubectl` the suites drive, unless `DEVENV_KUBECTL` names another.
pub const DEFAULT_KUBECTL: &str = "/usr/bin/kubectl";

/// `tests/cluster/build.sh`: the Kubernetes version comes from it, so the harness and
/// the build never disagree.
const BUILD_SH: &str = include_str!("../cluster/build.sh");

/// The Kubernetes version `tests/cluster/build.sh` builds, e.g. `v1.33.13`.
pub fn k8s_version() -> &'static str {
    BUILD_SH
        .lines()
        .find_map(|l| l.strip_prefix("K8S_VERSION="))
        .map(|v| v.split_whitespace().next().unwrap_or(v).trim_matches('"'))
        .expect("tests/cluster/build.sh sets K8S_VERSION=")
}

/// Path of `tests/cluster/cluster.sh`.
pub fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/cluster.sh")
}

/// The `kubectl` binary: `$DEVENV_KUBECTL` or `/usr/bin/kubectl`.
pub fn kubectl_binary() -> PathBuf {
    std::env::var_os("DEVENV_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBECTL))
}

/// A running control plane. Dropping it stops it and removes [`Cluster::dir`].
#[derive(Debug)]
pub struct Cluster {
    /// The cluster's directory: certificates, etcd data, logs, kubeconfigs.
    pub dir: PathBuf,
    /// Admin kubeconfig (CN=devenv-admin, O=system:masters), context `devenv-test`.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// How long `cluster.sh up` took.
    pub startup: Duration,
    stopped: AtomicBool,
}

impl Cluster {
    /// Starts a control plane in a new temporary directory and waits until it is
    /// ready: `/readyz`, controller-manager and scheduler healthy, the `default`
    /// namespace and its `default` ServiceAccount present.
    pub fn start() -> Result<Cluster> {
        let script = cluster_script();
        let dir = tempfile::Builder::new()
            .prefix("devenv-cluster-")
            .tempdir()
            .context("creating the cluster's temporary directory")?
            // `cluster.sh down` removes it.
            .keep();
        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(&script)
            .arg("up")
            .arg(&dir)
            .env("DEVENV_CLUSTER_OWNER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} up", script.display()))?;
        let startup = t0.elapsed();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // Stop whatever is left and remove the directory (its logs are quoted in the error).
            let _ = Command::new("bash")
                .arg(&script)
                .arg("down")
                .arg(&dir)
                .stdin(Stdio::null())
                .output();
            let _ = std::fs::remove_dir_all(&dir);
            bail!(
                "could not start the test control plane ({} up {} exited with {}):\n{}",
                script.display(),
                dir.display(),
                out.status,
                stderr.trim_end()
            );
        }
        let env =
            std::fs::read_to_string(dir.join("cluster.env")).context("reading cluster.env")?;
        let server = env
            .lines()
            .find_map(|l| l.strip_prefix("APISERVER_URL="))
            .context("cluster.env has no APISERVER_URL")?
            .to_string();
        eprintln!(
            "devenv-e2e: control plane up in {:.1}s at {} ({server})",
            startup.as_secs_f64(),
            dir.display()
        );
        Ok(Cluster {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            server,
            startup,
            stopped: AtomicBool::new(false),
        })
    }

    /// Stops the control plane and removes its directory. Idempotent; `Drop` calls it.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let out = Command::new("bash")
            .arg(cluster_script())
            .arg("down")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "devenv-e2e: cluster.sh down {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&o.stderr).trim_end()
            ),
            Err(e) => eprintln!(
                "devenv-e2e: cannot run cluster.sh down {}: {e}",
                self.dir.display()
            ),
        }
    }

    /// A `kubectl` command with `--kubeconfig` set to the admin kubeconfig, to add
    /// arguments, stdin or environment to.
    pub fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new(kubectl_binary());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the real `kubectl` as the cluster admin and returns its output, whatever
    /// the exit status. Panics only when `kubectl` cannot be run at all.
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.kubectl_command();
        cmd.args(args);
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", kubectl_binary().display()))
    }

    /// Like [`Cluster::kubectl`] with `input` on stdin (e.g. `apply -f -`).
    pub fn kubectl_stdin<I, S>(&self, args: I, input: &str) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.kubectl_command();
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", kubectl_binary().display()));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_owned();
        // Write from another thread: kubectl may fill its stdout before reading all of stdin.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().expect("waiting for kubectl");
        let _ = writer.join();
        out
    }

    /// Runs `kubectl` as admin, panics with its stderr unless it succeeds, returns stdout.
    pub fn kubectl_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.kubectl(&args);
        check_ok(&args, &out)
    }

    /// Mints a client certificate CN=`name` (no groups besides `system:authenticated`)
    /// and returns the path of its kubeconfig, `DIR/NAME.kubeconfig`. It has no
    /// permissions until a (Cluster)RoleBinding grants them to User `name`.
    pub fn user_kubeconfig(&self, name: &str) -> Result<PathBuf> {
        self.user_kubeconfig_in_groups(name, &[])
    }

    /// Like [`Cluster::user_kubeconfig`], with O=`group` for each group.
    pub fn user_kubeconfig_in_groups(&self, name: &str, groups: &[&str]) -> Result<PathBuf> {
        let out = Command::new("bash")
            .arg(cluster_script())
            .arg("user")
            .arg(&self.dir)
            .arg(name)
            .args(groups)
            .stdin(Stdio::null())
            .output()
            .context("running cluster.sh user")?;
        if !out.status.success() {
            bail!(
                "cluster.sh user {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(self.dir.join(format!("{name}.kubeconfig")))
    }

    /// Runs `kubectl` with another kubeconfig (e.g. one from [`Cluster::user_kubeconfig`]).
    pub fn kubectl_as<I, S>(&self, kubeconfig: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Command::new(kubectl_binary())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", kubectl_binary().display()))
    }

    /// Creates a namespace with a unique name starting with `prefix`, labelled
    /// `pod-security.kubernetes.io/enforce=restricted`, and waits for its `default`
    /// ServiceAccount (pods cannot be created before it exists). Returns its name.
    pub fn fresh_namespace(&self, prefix: &str) -> String {
        let name = unique_name(prefix);
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "devenv-e2e/test": "true",
                },
            },
        });
        let out = self.kubectl_stdin(["create", "-f", "-"], &manifest.to_string());
        check_ok(&["create namespace", &name], &out);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.kubectl([
                "get",
                "serviceaccount",
                "default",
                "-n",
                &name,
                "-o",
                "name",
            ]);
            if out.status.success() {
                return name;
            }
            if Instant::now() > deadline {
                panic!(
                    "the default ServiceAccount of namespace {name} did not appear in 60s: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The tail (last `lines` lines) of a component's log: `etcd`, `kube-apiserver`,
    /// `kube-controller-manager`, `kube-scheduler`. For failure messages.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("logs").join(format!("{component}.log")))
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Panics with the command and its stderr unless `out` succeeded; returns stdout.
pub fn check_ok<S: AsRef<OsStr>>(args: &[S], out: &Output) -> String {
    if !out.status.success() {
        let shown: Vec<_> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        panic!(
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A DNS-1123 label: `prefix` (lowercased, other characters turned into `-`, cut to
/// 40) then `-` and a suffix unique in this process and across processes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut p: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    p = p.trim_matches('-').to_string();
    if p.is_empty() || !p.starts_with(|c: char| c.is_ascii_lowercase()) {
        p = format!("t{p}");
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{p}-{n}-{:x}",
        (std::process::id() as u64) << 20 ^ (nanos as u64 & 0xfffff)
    )
}

static SHARED: OnceLock<std::result::Result<Cluster, String>> = OnceLock::new();

extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(cluster)) = SHARED.get() {
        cluster.stop();
    }
}

/// The cluster shared by all tests of this test binary: started by the first caller
/// (the others wait for it), stopped at process exit (see the crate docs). When it
/// cannot start, every test that asks for it panics with the same reason.
pub fn shared() -> &'static Cluster {
    let started = SHARED.get_or_init(|| {
        let result = Cluster::start().map_err(|e| format!("{e:#}"));
        if result.is_ok() {
            // SAFETY: registers a plain `extern "C" fn()` with no captured state.
            let rc = unsafe { libc::atexit(stop_shared_at_exit) };
            if rc != 0 {
                eprintln!("devenv-e2e: atexit registration failed: the watchdog stops the shared cluster instead");
            }
        }
        result
    });
    match started {
        Ok(cluster) => cluster,
        Err(reason) => panic!("the shared test control plane did not start: {reason}"),
    }
}

/// Polls `f` every 250 ms until it returns `Some`, failing the test after `timeout`
/// with what was awaited. Controllers act asynchronously; tests wait on observed state.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
