//! A real worker node for a [`Cluster`]: `tests/cluster/node/node.sh up DIR` on the
//! cluster's directory (a private containerd, a bridge CNI network, the v1.33 kubelet,
//! the test images `devenv.test/{workspace,git-daemon,pause}:1` imported, a default
//! StorageClass `devenv-local` and local PersistentVolumes). See
//! `tests/cluster/node/README.md`.
//!
//! * [`Node::start`] joins a node to a cluster; dropping the [`Node`] (also while a test
//!   panics and unwinds) runs `node.sh down DIR`.
//! * [`shared_node`] gives one node on [`crate::shared`]'s cluster for all the tests of
//!   a test binary; it is taken down at process exit, before the cluster (`atexit`
//!   handlers run in reverse order of registration). When the test binary is killed,
//!   the cluster's watchdog runs `cluster.sh down`, which takes the node down first.
//!
//! The node needs the system packages of `tests/cluster/node/install-deps.sh` (CI's
//! `.ci/run` calls it) and root. When they are missing, [`Node::start`] fails and says
//! so: tests `expect` it and fail, they never skip.
//!
//! Local PVs come in sets (one 10Gi and two 1Gi: the three claims of one workspace
//! pod); they are `Retain`, so a deleted claim's PV stays `Released` until
//! [`Node::recycle`]. [`Node::ensure_pv_sets`] tops up what is `Available`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{kubectl_binary, shared, Cluster};

/// Path of `tests/cluster/node/node.sh`.
pub fn node_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/node/node.sh")
}

/// Path of `tests/cluster/node/install-deps.sh`.
pub fn install_deps_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/node/install-deps.sh")
}

/// The image every workspace of the node suites runs (imported, never pulled).
pub const WORKSPACE_IMAGE: &str = "devenv.test/workspace:1";
/// `git daemon` on :9418 over `/srv/git`, which holds the seeded `demo.git`.
pub const GIT_DAEMON_IMAGE: &str = "devenv.test/git-daemon:1";
/// The StorageClass `node.sh up` makes (the cluster default).
pub const STORAGE_CLASS: &str = "devenv-local";

/// Fails with what is missing unless the machine can run a node: the tools of
/// `install-deps.sh`, the CNI plugins, and root. (`node.sh` checks the same; this
/// says it before anything starts.)
pub fn check_deps() -> Result<()> {
    let mut missing = Vec::new();
    for tool in [
        "containerd",
        "containerd-shim-runc-v2",
        "runc",
        "ctr",
        "umoci",
        "skopeo",
        "busybox",
        "iptables",
        "ip",
        "openssl",
        "python3",
        "setsid",
        "flock",
        "git",
        "gcc",
    ] {
        if !on_path(tool) {
            missing.push(tool.to_owned());
        }
    }
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        if !Path::new("/usr/lib/cni").join(plugin).exists() {
            missing.push(format!("/usr/lib/cni/{plugin}"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "the test node's system packages are missing ({}): run {} first (CI's .ci/run does)",
            missing.join(", "),
            install_deps_script().display()
        );
    }
    // /proc/self belongs to the process's effective user.
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if euid.ok() != Some(0) {
        bail!("the test node must run as root (containerd, kubelet, mounts, a bridge)");
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// A node joined to a cluster. Dropping it runs `node.sh down` on the cluster's dir.
#[derive(Debug)]
pub struct Node {
    /// The cluster's directory; the node's state is in `DIR/node`.
    pub dir: PathBuf,
    /// The Node's name (`devenv-node`, `devenv-node-N` for slot N > 0).
    pub name: String,
    /// Pod subnet, `10.244.N.0/24`.
    pub subnet: String,
    /// The host's address on the node's bridge (`10.244.N.1`): reachable from the host
    /// and from pods, unlike loopback (which Endpoints may not name).
    pub gateway: String,
    /// The node's containerd socket (`ctr -a SOCK -n k8s.io ...`).
    pub containerd_socket: PathBuf,
    /// How long `node.sh up` took (containerd, images, kubelet, Ready, PVs).
    pub startup: Duration,
    kubeconfig: PathBuf,
    stopped: AtomicBool,
}

impl Node {
    /// Runs `node.sh up` on `cluster`'s directory and waits (in `node.sh`) until the
    /// Node is Ready, the StorageClass and the first PV sets exist.
    pub fn start(cluster: &Cluster) -> Result<Node> {
        check_deps()?;
        let script = node_script();
        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(&script)
            .arg("up")
            .arg(&cluster.dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} up", script.display()))?;
        let startup = t0.elapsed();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
            // `up` stopped what it started and kept DIR/node/logs (quoted above): remove it.
            run_down(&cluster.dir);
            bail!(
                "could not start the test node ({} up {} exited with {}):\n{stderr}",
                script.display(),
                cluster.dir.display(),
                out.status
            );
        }
        let env_file = cluster.dir.join("node/node.env");
        let env = std::fs::read_to_string(&env_file)
            .with_context(|| format!("reading {}", env_file.display()))?;
        let get = |key: &str| -> Result<String> {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(str::to_owned)
                .with_context(|| format!("{} has no {key}", env_file.display()))
        };
        let node = Node {
            dir: cluster.dir.clone(),
            name: get("NODE_NAME")?,
            subnet: get("SUBNET")?,
            gateway: get("GATEWAY")?,
            containerd_socket: PathBuf::from(get("CONTAINERD_ADDRESS")?),
            startup,
            kubeconfig: cluster.kubeconfig.clone(),
            stopped: AtomicBool::new(false),
        };
        eprintln!(
            "devenv-e2e: node {} Ready in {:.1}s (pods in {})",
            node.name,
            startup.as_secs_f64(),
            node.subnet
        );
        Ok(node)
    }

    /// Runs `node.sh down`: stops the kubelet, containerd and every pod, undoes the
    /// host changes and removes `DIR/node`. Idempotent; `Drop` calls it.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        run_down(&self.dir);
    }

    /// `node.sh pvs DIR N`: `n` more PV sets (one 10Gi and two 1Gi local PVs each).
    pub fn add_pv_sets(&self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.script(&["pvs", &n.to_string()])
    }

    /// `node.sh recycle DIR`: wipes the Released PVs and makes them Available again.
    pub fn recycle(&self) -> Result<()> {
        self.script(&["recycle"])
    }

    /// How many complete PV sets are `Available`: min(10Gi PVs, 1Gi PVs / 2).
    pub fn available_pv_sets(&self) -> Result<usize> {
        let out = Command::new(kubectl_binary())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["get", "pv", "-l"])
            .arg(format!("devenv.test/node={}", self.name))
            .args(["-o", "json"])
            .stdin(Stdio::null())
            .output()
            .context("running kubectl get pv")?;
        if !out.status.success() {
            bail!(
                "kubectl get pv failed: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        let list: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing kubectl get pv -o json")?;
        let (mut big, mut small) = (0usize, 0usize);
        for pv in list["items"].as_array().into_iter().flatten() {
            if pv["status"]["phase"] != "Available" {
                continue;
            }
            match pv["spec"]["capacity"]["storage"].as_str() {
                Some("10Gi") => big += 1,
                Some("1Gi") => small += 1,
                _ => {}
            }
        }
        Ok(big.min(small / 2))
    }

    /// Makes sure at least `sets` PV sets are Available (one per workspace pod about
    /// to start): recycles Released ones first, then adds what is still missing.
    pub fn ensure_pv_sets(&self, sets: usize) -> Result<()> {
        if self.available_pv_sets()? >= sets {
            return Ok(());
        }
        self.recycle()?;
        let have = self.available_pv_sets()?;
        self.add_pv_sets(sets.saturating_sub(have))
    }

    /// The tail of the node's `kubelet` or `containerd` log, for failure messages.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let path = self.dir.join("node/logs").join(format!("{component}.log"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn script(&self, args: &[&str]) -> Result<()> {
        let script = node_script();
        let (cmd, rest) = args.split_first().context("no node.sh command")?;
        let out = Command::new("bash")
            .arg(&script)
            .arg(cmd)
            .arg(&self.dir)
            .args(rest)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} {cmd}", script.display()))?;
        if !out.status.success() {
            bail!(
                "node.sh {} {} failed ({}): {}",
                args.join(" "),
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_down(dir: &Path) {
    let out = Command::new("bash")
        .arg(node_script())
        .arg("down")
        .arg(dir)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "devenv-e2e: node.sh down {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr).trim_end()
        ),
        Err(e) => eprintln!("devenv-e2e: cannot run node.sh down {}: {e}", dir.display()),
    }
}

static SHARED_NODE: OnceLock<std::result::Result<Node, String>> = OnceLock::new();

extern "C" fn stop_shared_node_at_exit() {
    if let Some(Ok(node)) = SHARED_NODE.get() {
        node.stop();
    }
}

/// A node on the shared cluster ([`crate::shared`]), started by the first caller and
/// stopped at process exit before the cluster. When it cannot start, every test that
/// asks for it panics with the same reason.
pub fn shared_node() -> &'static Node {
    let started = SHARED_NODE.get_or_init(|| {
        // The cluster first: its atexit handler is then registered before ours, and
        // handlers run last-registered first, so the node goes down before the cluster.
        let cluster = shared();
        let result = Node::start(cluster).map_err(|e| format!("{e:#}"));
        if result.is_ok() {
            // SAFETY: registers a plain `extern "C" fn()` with no captured state.
            let rc = unsafe { libc::atexit(stop_shared_node_at_exit) };
            if rc != 0 {
                eprintln!(
                    "devenv-e2e: atexit registration failed: cluster.sh down stops the node instead"
                );
            }
        }
        result
    });
    match started {
        Ok(node) => node,
        Err(reason) => panic!("the shared test node did not start: {reason}"),
    }
}
