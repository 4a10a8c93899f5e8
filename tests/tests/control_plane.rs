//! Smoke test of the real control plane the end-to-end suites run against
//! (tests/cluster/cluster.sh): version, controllers, scheduler, RBAC, and that a
//! cluster is torn down when its test panics.
//!
//!     cargo test -p devenv-e2e --test control_plane -- --nocapture
//!
//! Needs the binaries of tests/cluster/build.sh: without them every test fails and
//! says how to build them (it never skips).

use std::path::PathBuf;
use std::time::Duration;

use devenv_e2e::{check_ok, eventually, k8s_version, shared, Cluster};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn server_is_the_built_version_without_skew_warning() {
    let c = shared();
    let out = c.kubectl(["version", "-o", "json"]);
    let stdout = check_ok(&["version", "-o", "json"], &out);
    let v = json(&stdout);
    let server = v["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default();
    let client = v["clientVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default();
    eprintln!("kubectl client {client}, server {server}");
    assert_eq!(
        server,
        k8s_version(),
        "server version (build.sh builds {})",
        k8s_version()
    );
    assert_eq!(server, "v1.33.13");

    let out = c.kubectl(["version"]);
    let stdout = check_ok(&["version"], &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("Server Version: v1.33.13"),
        "kubectl version: {stdout}"
    );
    assert!(
        !stderr.to_lowercase().contains("warning") && !stdout.to_lowercase().contains("warning"),
        "kubectl version warned (skew?): {stdout}{stderr}"
    );
}

#[test]
fn default_service_account_and_root_ca_appear() {
    let c = shared();
    // `cluster.sh up` waited for this one.
    check_ok(
        &["get sa default -n default"],
        &c.kubectl(["get", "serviceaccount", "default", "-n", "default"]),
    );
    // A new namespace gets its own from the serviceaccount controller (fresh_namespace
    // waits for it) and the CA bundle from the root-ca-cert-publisher (--root-ca-file).
    let ns = c.fresh_namespace("sa");
    check_ok(
        &["get sa default"],
        &c.kubectl(["get", "serviceaccount", "default", "-n", &ns]),
    );
    let labels = json(&c.kubectl_ok(["get", "namespace", &ns, "-o", "json"]));
    assert_eq!(
        labels["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let ca = eventually(
        "configmap kube-root-ca.crt",
        Duration::from_secs(60),
        || {
            let out = c.kubectl([
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-n",
                &ns,
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        },
    );
    let ours = std::fs::read_to_string(c.dir.join("pki/ca.crt")).unwrap();
    assert_eq!(ca.trim(), ours.trim(), "kube-root-ca.crt is the cluster CA");
}

#[test]
fn statefulset_controller_creates_a_pending_pod() {
    let c = shared();
    let ns = c.fresh_namespace("sts");
    // Passes PodSecurity `restricted`, which the namespace enforces: otherwise the
    // controller's pod create is rejected and no pod appears.
    let sts = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": "web", "namespace": ns },
        "spec": {
            "serviceName": "web",
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{
                        "name": "pause",
                        "image": "registry.k8s.io/pause:3.10",
                        "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } }
                    }]
                }
            }
        }
    });
    check_ok(
        &["create statefulset"],
        &c.kubectl_stdin(["create", "-f", "-"], &sts.to_string()),
    );

    let pod = eventually(
        "pod web-0 created by the statefulset controller",
        Duration::from_secs(60),
        || {
            let out = c.kubectl(["get", "pod", "web-0", "-n", &ns, "-o", "json"]);
            out.status
                .success()
                .then(|| json(&String::from_utf8_lossy(&out.stdout)))
        },
    );
    assert_eq!(pod["status"]["phase"], "Pending", "{pod:#}");
    assert!(
        pod["spec"]["nodeName"].is_null(),
        "no node exists, yet: {pod:#}"
    );
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    // The ServiceAccount admission plugin mounted a projected token.
    assert_eq!(pod["spec"]["serviceAccountName"], "default");

    // The scheduler runs: with no node it marks the pod unschedulable.
    let cond = eventually(
        "PodScheduled=False from kube-scheduler",
        Duration::from_secs(60),
        || {
            let out = c.kubectl(["get", "pod", "web-0", "-n", &ns, "-o", "json"]);
            let p = json(&String::from_utf8_lossy(&out.stdout));
            p["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned())
        },
    );
    assert_eq!(cond["status"], "False", "{cond:#}");
    assert_eq!(cond["reason"], "Unschedulable", "{cond:#}");
    eprintln!("web-0: Pending, PodScheduled=False: {}", cond["message"]);
}

#[test]
fn rbac_limits_a_minted_user() {
    let c = shared();
    let ns = c.fresh_namespace("rbac");
    let user = devenv_e2e::unique_name("viewer");
    let kubeconfig = c.user_kubeconfig(&user).expect("minting a user");
    let whoami = json(&check_ok(
        &["auth whoami"],
        &c.kubectl_as(&kubeconfig, ["auth", "whoami", "-o", "json"]),
    ));
    assert_eq!(whoami["status"]["userInfo"]["username"], user.as_str());

    let out = c.kubectl_as(&kubeconfig, ["get", "pods", "-n", &ns]);
    assert!(!out.status.success(), "an unbound user listed pods");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    c.kubectl_ok([
        "create",
        "rolebinding",
        "view",
        "--clusterrole=view",
        &format!("--user={user}"),
        "-n",
        &ns,
    ]);
    eventually(
        "the view binding to take effect",
        Duration::from_secs(30),
        || {
            c.kubectl_as(&kubeconfig, ["get", "pods", "-n", &ns])
                .status
                .success()
                .then_some(())
        },
    );
    let can = c.kubectl_as(&kubeconfig, ["auth", "can-i", "create", "pods", "-n", &ns]);
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");
    let can = c.kubectl_as(
        &kubeconfig,
        ["auth", "can-i", "list", "pods", "-n", "default"],
    );
    assert_eq!(
        String::from_utf8_lossy(&can.stdout).trim(),
        "no",
        "the binding is namespaced"
    );

    // Groups: O=system:masters is cluster-admin.
    let admin2 = c
        .user_kubeconfig_in_groups(&devenv_e2e::unique_name("root"), &["system:masters"])
        .unwrap();
    let can = c.kubectl_as(&admin2, ["auth", "can-i", "*", "*"]);
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "yes");
}

fn recorded_pids(dir: &std::path::Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            // NAME PID START
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// A second, private cluster next to the shared one (ports must not collide), torn
/// down by `Drop` while its test thread panics.
#[test]
fn owned_cluster_is_removed_when_its_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel::<(PathBuf, Vec<(String, u32)>, String)>();
    let result = std::thread::spawn(move || {
        let c = Cluster::start().expect("starting a private control plane");
        let pids = recorded_pids(&c.dir);
        tx.send((c.dir.clone(), pids, c.server.clone())).unwrap();
        c.kubectl_ok(["get", "namespace", "default"]);
        panic!("deliberate panic with a running cluster");
    })
    .join();
    assert!(result.is_err(), "the thread panicked");
    let (dir, pids, server) = rx.recv().expect("the cluster started");
    eprintln!("private cluster {server} at {}: {pids:?}", dir.display());
    assert!(pids.iter().any(|(n, _)| n == "kube-apiserver"), "{pids:?}");
    assert!(!dir.exists(), "{} still exists after Drop", dir.display());
    for (name, pid) in pids {
        assert!(!running(pid), "{name} (pid {pid}) still runs after Drop");
    }
    let shared = shared();
    assert_ne!(
        shared.server, server,
        "two clusters got the same apiserver port"
    );
}
