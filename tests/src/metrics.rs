//! metrics-server (`sigs.k8s.io/metrics-server`, built by `tests/cluster/build.sh`) as a
//! process beside a [`Node`], serving `metrics.k8s.io/v1beta1` through the cluster's
//! real aggregation layer: a selector-less Service in `kube-system` whose Endpoints
//! name the host's address on the node's bridge, and the APIService
//! `v1beta1.metrics.k8s.io` (the API server runs with `--enable-aggregator-routing`,
//! so it dials the endpoint, not a ClusterIP nobody routes). metrics-server scrapes the
//! kubelet's `/metrics/resource` every 10 s, authenticates the API server's proxied
//! requests with the front-proxy CA and authorizes them with SubjectAccessReviews, as
//! in any cluster. Dropping it unregisters the API and stops the process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::node::Node;
use crate::webhook::free_port;
use crate::Cluster;

const NAME: &str = "devenv-test-metrics-server";
const API_SERVICE: &str = "v1beta1.metrics.k8s.io";

/// The directory of the binaries `tests/cluster/build.sh` caches: `$DEVENV_K8S_BIN`,
/// else its default cache directory for the versions it pins.
pub fn k8s_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DEVENV_K8S_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = include_str!("../cluster/build.sh");
    let pinned = |key: &str| {
        script
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .with_context(|| format!("tests/cluster/build.sh pins no {key}"))
    };
    let root = match std::env::var_os("DEVENV_K8S_CACHE") {
        Some(root) => PathBuf::from(root),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/devenv-k8s"),
    };
    Ok(root.join(format!(
        "k8s-{}-etcd-{}",
        pinned("K8S_VERSION")?,
        pinned("ETCD_VERSION")?
    )))
}

/// A running metrics-server registered as the cluster's metrics API.
pub struct MetricsServer {
    child: Child,
    log: PathBuf,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl MetricsServer {
    /// Starts metrics-server on `node`'s bridge address, registers it, and waits
    /// until the API server answers `GET /apis/metrics.k8s.io/v1beta1/nodes`.
    pub fn start(cluster: &Cluster, node: &Node) -> Result<MetricsServer> {
        let bin = k8s_bin_dir()?.join("metrics-server");
        if !bin.is_file() {
            bail!(
                "{} is missing: run tests/cluster/build.sh (tests/run.sh does)",
                bin.display()
            );
        }
        let dir = tempfile::tempdir().context("temp dir")?;
        let log = dir.path().join("metrics-server.log");
        let log_file = std::fs::File::create(&log).context("log file")?;
        let port = free_port()?;
        let kubeconfig = cluster.kubeconfig.display().to_string();
        let child = Command::new(&bin)
            .arg(format!("--secure-port={port}"))
            .arg(format!("--bind-address={}", node.gateway))
            .arg(format!("--cert-dir={}", dir.path().join("certs").display()))
            .arg(format!("--kubeconfig={kubeconfig}"))
            .arg(format!("--authentication-kubeconfig={kubeconfig}"))
            .arg(format!("--authorization-kubeconfig={kubeconfig}"))
            // The kubelet's serving certificate is signed by the cluster CA for its
            // hostname; metrics-server is not given that CA here.
            .arg("--kubelet-insecure-tls")
            .arg("--kubelet-preferred-address-types=Hostname")
            .arg("--kubelet-use-node-status-port")
            .arg("--metric-resolution=10s")
            .arg("--kubelet-request-timeout=5s")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("log file")?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = MetricsServer {
            child,
            log,
            kubeconfig: cluster.kubeconfig.clone(),
            _dir: dir,
        };
        let objects = json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": NAME, "namespace": "kube-system"},
                    "spec": {"ports": [{"port": 443, "targetPort": port, "protocol": "TCP"}]},
                },
                {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": NAME, "namespace": "kube-system"},
                    "subsets": [{
                        "addresses": [{"ip": node.gateway}],
                        "ports": [{"port": port, "protocol": "TCP"}],
                    }],
                },
                {
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": API_SERVICE},
                    "spec": {
                        "group": "metrics.k8s.io",
                        "version": "v1beta1",
                        "groupPriorityMinimum": 100,
                        "versionPriority": 100,
                        // metrics-server's certificate is self-signed.
                        "insecureSkipTLSVerify": true,
                        "service": {"name": NAME, "namespace": "kube-system", "port": 443},
                    },
                },
            ],
        });
        let out = cluster.kubectl_stdin(["apply", "-f", "-"], &objects.to_string());
        if !out.status.success() {
            bail!(
                "registering metrics-server failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = cluster.kubectl(["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]);
            if out.status.success() {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("metrics-server exited with {status}:\n{}", server.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "metrics.k8s.io/v1beta1 not served within 120s: {}\n---- metrics-server log:\n{}",
                    String::from_utf8_lossy(&out.stderr).trim_end(),
                    server.log()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(server)
    }

    /// What metrics-server has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = Command::new(crate::kubectl_binary())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", "apiservice", API_SERVICE, "--ignore-not-found"])
            .args(["--wait=false"])
            .stdin(Stdio::null())
            .output();
        let _ = Command::new(crate::kubectl_binary())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", "-n", "kube-system", "service,endpoints", NAME])
            .args(["--ignore-not-found", "--wait=false"])
            .stdin(Stdio::null())
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- metrics-server log ----\n{}", self.log());
        }
    }
}
