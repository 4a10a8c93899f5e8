//! The CSI snapshot API on the test cluster: external-snapshotter v8's own CRDs
//! (`tests/cluster/snapshot-crds.sh` fetches them through the Go module proxy), so the
//! VolumeSnapshots the plugin makes are judged by the real schema and its CEL rules. There
//! is no snapshot controller or CSI driver here: snapshots are stored, never taken, and a
//! claim filled from one stays Pending. What this repository controls (the objects, who may
//! restore what) is what the suites prove.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{check_ok, eventually, Cluster};

/// The three `snapshot.storage.k8s.io` CRDs.
pub const CRDS: [&str; 3] = [
    "volumesnapshotclasses",
    "volumesnapshotcontents",
    "volumesnapshots",
];

/// Applies the snapshot CRDs to `c` (idempotent) and waits until they are served.
pub fn install_snapshot_crds(c: &Cluster) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/snapshot-crds.sh");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (it needs go and the Go module proxy):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    for crd in CRDS {
        let file = format!("{dir}/snapshot.storage.k8s.io_{crd}.yaml");
        check_ok(
            &["apply", &file],
            &c.kubectl(["apply", "--server-side", "-f", &file]),
        );
    }
    for crd in CRDS {
        let name = format!("crd/{crd}.snapshot.storage.k8s.io");
        check_ok(
            &["wait established", &name],
            &c.kubectl([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &name,
            ]),
        );
    }
    eventually(
        "the snapshot API to be served",
        Duration::from_secs(60),
        || {
            c.kubectl(["get", "volumesnapshots", "-A"])
                .status
                .success()
                .then_some(())
        },
    );
}
