//! Simulated nodes for the scale run (`tests/tests/scale.rs`, `bench/scale.sh`): kwok,
//! built by `tests/cluster/build.sh` from the Go module proxy, beside the real control
//! plane. kwok plays the kubelet of every Node annotated `kwok.x-k8s.io/node=fake`:
//! it keeps the Node Ready (its Lease renewed), marks the pods scheduled there Running
//! with an address from `--cidr`, and finishes their deletion. Nothing listens on those
//! addresses and nothing is sent to them: the webhook and the controller run on
//! loopback and talk to the API server only.
//!
//! [`usage`] reads a process's CPU time and memory from `/proc`, for the figures of the
//! scale run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::metrics::k8s_bin_dir;
use crate::webhook::{kill_with_watchdog, spawn_watchdog};
use crate::{check_ok, eventually, Cluster};

/// The annotation kwok is told to manage nodes by.
pub const NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// Pod addresses kwok hands out: 4 Mi of them, outside the service range and the node
/// suite's bridge, and never routed (kwok's default /24 runs out at 254 pods).
const POD_CIDR: &str = "10.128.0.0/10";

/// `kwok` from the build cache, or `$DEVENV_KWOK_BIN`.
pub fn kwok_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("DEVENV_KWOK_BIN") {
        Some(p) => PathBuf::from(p),
        None => k8s_bin_dir()?.join("kwok"),
    };
    if !path.is_file() {
        bail!(
            "{} is not built: run tests/cluster/build.sh (it builds kwok with the Kubernetes binaries) or set DEVENV_KWOK_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// A running kwok, killed when dropped (and by a watchdog if this process dies first).
pub struct Kwok {
    child: Child,
    watchdog: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kwok {
    /// Starts kwok against `cluster` as its admin.
    pub fn start(cluster: &Cluster) -> Result<Kwok> {
        let binary = kwok_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("devenv-kwok-")
            .tempdir()
            .context("creating kwok's temporary directory")?;
        let log = dir.path().join("kwok.log");
        let log_file = std::fs::File::create(&log).context("kwok's log file")?;
        let child = Command::new(&binary)
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .arg("--manage-all-nodes=false")
            .arg(format!(
                "--manage-nodes-with-annotation-selector={}={}",
                NODE_ANNOTATION.0, NODE_ANNOTATION.1
            ))
            .arg(format!("--cidr={POD_CIDR}"))
            .arg("--node-ip=127.0.0.1")
            .arg("--node-lease-duration-seconds=40")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("kwok's log file")?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // The watchdog knows the process by an argument of its command line.
        let watchdog = spawn_watchdog("devenv-kwok-watchdog", child.id(), &cluster.kubeconfig);
        Ok(Kwok {
            child,
            watchdog,
            log,
            _dir: dir,
        })
    }

    /// Registers `count` simulated nodes `kwok-0…`, each big enough for `pods_per_node`
    /// workspace pods of any tier, and waits until the scheduler may use them (Ready).
    pub fn add_nodes(&mut self, cluster: &Cluster, count: usize, pods_per_node: usize) {
        for i in 0..count {
            let name = format!("kwok-{i}");
            let resources = json!({
                "cpu": "1000", "memory": "4Ti", "pods": pods_per_node.to_string(),
                "ephemeral-storage": "100Ti",
            });
            let node = json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": { NODE_ANNOTATION.0: NODE_ANNOTATION.1 },
                    "labels": { "kubernetes.io/hostname": name, "type": "kwok" },
                },
                "status": { "allocatable": resources, "capacity": resources },
            });
            check_ok(
                &["create node", &name],
                &cluster.kubectl_stdin(["create", "-f", "-"], &node.to_string()),
            );
        }
        eventually(
            &format!("{count} kwok nodes to be Ready"),
            Duration::from_secs(60),
            || {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("kwok exited with {status}:\n{}", self.log());
                }
                let out = cluster.kubectl([
                    "get", "nodes", "-l", "type=kwok", "-o",
                    "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
                ]);
                let ready = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| *l == "True")
                    .count();
                (ready == count).then_some(())
            },
        );
    }

    /// The process id (for [`usage`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kwok {
    fn drop(&mut self) {
        kill_with_watchdog(&mut self.child, &mut self.watchdog);
    }
}

/// What a process has used so far, from `/proc/PID/stat` and `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size now, in KiB.
    pub rss_kib: u64,
    /// Peak resident set size, in KiB.
    pub peak_rss_kib: u64,
}

/// The clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The CPU time and memory of process `pid` so far.
pub fn usage(pid: u32) -> Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("/proc/{pid}/stat has no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .with_context(|| format!("/proc/{pid}/stat field {i}"))
    };
    let cpu_seconds = (ticks(14)? + ticks(15)?) / clock_ticks();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("/proc/{pid}/status has no {key}"))
    };
    Ok(Usage {
        cpu_seconds,
        rss_kib: kib("VmRSS:")?,
        peak_rss_kib: kib("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_of_this_process_is_read() {
        let u = usage(std::process::id()).expect("own /proc entry");
        assert!(u.rss_kib > 0 && u.peak_rss_kib >= u.rss_kib, "{u:?}");
        assert!(u.cpu_seconds >= 0.0, "{u:?}");
    }
}
