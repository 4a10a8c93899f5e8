//! `kubectl devenv` and `devenv-webhook` against the real control plane (no node: pods
//! stay Pending): install / status / uninstall, what `create` makes and what the
//! webhook does to the pods the controllers create, Pod Security admission as the judge
//! of the mutation, denials, the webhook's outage, scaling, stop / start, delete and
//! purge, list / get, secrets, and the errors a user sees.
//!
//!     cargo build --workspace --bins
//!     cargo test -p devenv-e2e --test e2e_control_plane -- --test-threads=1 --nocapture
//!
//! The plugin runs through the real `kubectl` (plugin discovery on PATH), the webhook as
//! a process on loopback registered with `install --webhook-url` (see
//! `devenv_e2e::webhook`). Each test works in its own namespace (PodSecurity `restricted`
//! enforced). The webhook configurations are cluster-wide, so the tests take a lock and
//! run one at a time even without `--test-threads=1`; each one installs its own webhook
//! process (or uninstalls) first, so none depends on what an earlier one left.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use devenv_e2e::webhook::{devenv, devenv_as, free_port, WebhookProcess};
use devenv_e2e::{check_ok, eventually, shared, unique_name, Cluster};
use serde_json::{json, Value};

const WORKSPACE_LABEL: &str = "devenv.io/workspace";
const TIER: &str = "devenv.io/tier";
const INSTALL_NS: &str = "devenv-system";
const CONFIGS: [&str; 2] = [
    "mutatingwebhookconfiguration",
    "validatingwebhookconfiguration",
];
const CONFIG_NAME: &str = "devenv-webhook";
/// The three claim templates of the default policy: (template, size, mount path).
const VOLUMES: [(&str, &str, &str); 3] = [
    ("workspace", "10Gi", "/workspace"),
    ("history", "1Gi", "/commandhistory"),
    ("config", "1Gi", "/home/dev/.config"),
];
const WAIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------- helpers

/// One test at a time: the webhook configurations are cluster-scoped.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Prints how long a test took when it ends (passed or not).
struct Timer(&'static str, Instant);

impl Timer {
    fn start(name: &'static str) -> Timer {
        eprintln!("==== {name}");
        Timer(name, Instant::now())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        eprintln!(
            "==== {} {} in {:.1}s",
            self.0,
            if std::thread::panicking() {
                "FAILED"
            } else {
                "passed"
            },
            self.1.elapsed().as_secs_f64()
        );
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// Asserts a command succeeded; returns its stdout.
fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o).trim_end(),
        stderr(o).trim_end()
    );
    stdout(o)
}

/// Asserts a command failed with a non-zero exit code; returns stdout + stderr.
fn fails(o: &Output, what: &str) -> String {
    assert!(
        !o.status.success() && o.status.code().is_some_and(|c| c != 0),
        "{what} should have failed with a non-zero exit code, got {}:\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o).trim_end(),
        stderr(o).trim_end()
    );
    both(o)
}

/// Asserts `text` contains every needle (case-insensitive), naming what is checked.
fn assert_mentions(text: &str, needles: &[&str], what: &str) {
    let lower = text.to_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_lowercase()),
            "{what}: expected the message to mention {n:?}, got:\n{text}"
        );
    }
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `kubectl get ARGS -o json` as admin: `None` when it fails (e.g. NotFound).
fn get(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut a: Vec<&str> = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let out = c.kubectl(&a);
    out.status.success().then(|| json_of(&stdout(&out)))
}

fn get_ok(c: &Cluster, args: &[&str]) -> Value {
    get(c, args).unwrap_or_else(|| panic!("kubectl get {} failed", args.join(" ")))
}

/// Whether `kubectl get` says NotFound (and not some other failure).
fn absent(c: &Cluster, args: &[&str]) -> bool {
    let mut a: Vec<&str> = vec!["get"];
    a.extend_from_slice(args);
    let out = c.kubectl(&a);
    if out.status.success() {
        return false;
    }
    let e = stderr(&out);
    assert!(e.contains("NotFound") || e.contains("not found"), "{e}");
    true
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name_of(o: &Value) -> String {
    o["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Names of the pods of workspace `ws` (by label), sorted; Terminating ones included.
fn pod_names(c: &Cluster, ns: &str, ws: &str) -> Vec<String> {
    let sel = format!("{WORKSPACE_LABEL}={ws}");
    let mut names: Vec<String> = items(&get_ok(c, &["pods", "-n", ns, "-l", &sel]))
        .iter()
        .map(name_of)
        .collect();
    names.sort();
    names
}

/// Claims of workspace `ws` (by label): name -> claim.
fn claims(c: &Cluster, ns: &str, ws: &str) -> BTreeMap<String, Value> {
    let sel = format!("{WORKSPACE_LABEL}={ws}");
    items(&get_ok(c, &["pvc", "-n", ns, "-l", &sel]))
        .into_iter()
        .map(|p| (name_of(&p), p))
        .collect()
}

fn claim_uids(c: &Cluster, ns: &str, ws: &str) -> BTreeMap<String, String> {
    claims(c, ns, ws)
        .into_iter()
        .map(|(n, p)| (n, p["metadata"]["uid"].as_str().unwrap_or_default().into()))
        .collect()
}

/// The claim names the StatefulSet controller makes: `<template>-<sts>-<ordinal>`.
fn sts_claim_names(sts: &str, ordinals: std::ops::Range<u32>) -> Vec<String> {
    let mut v: Vec<String> = ordinals
        .flat_map(|i| {
            VOLUMES
                .iter()
                .map(move |(t, _, _)| format!("{t}-{sts}-{i}"))
        })
        .collect();
    v.sort();
    v
}

fn wait_pods(c: &Cluster, ns: &str, ws: &str, want: &[String]) {
    eventually(
        &format!("pods of {ws} in {ns} to be exactly {want:?}"),
        WAIT,
        || (pod_names(c, ns, ws) == want).then_some(()),
    );
}

fn wait_claims(c: &Cluster, ns: &str, ws: &str, want: &[String]) -> BTreeMap<String, Value> {
    eventually(
        &format!("claims of {ws} in {ns} to be exactly {want:?}"),
        WAIT,
        || {
            let got = claims(c, ns, ws);
            (got.keys().cloned().collect::<Vec<_>>() == want).then_some(got)
        },
    )
}

fn pod_names_of(ws: &str, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{ws}-{i}")).collect()
}

/// Waits until the StatefulSet controller has caught up with the spec and stopped
/// writing status (its status writes change the resourceVersion `stop`, `start` and
/// `scale --tier` guard their patches with; see
/// `guarded_changes_right_after_other_changes_do_not_conflict`).
fn wait_settled(c: &Cluster, ns: &str, sts: &str) {
    let mut last_rv = String::new();
    let mut stable_since = Instant::now();
    eventually(&format!("StatefulSet {ns}/{sts} to settle"), WAIT, || {
        let s = get(c, &["statefulset", sts, "-n", ns])?;
        let rv = s["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let caught_up = s["status"]["observedGeneration"] == s["metadata"]["generation"]
            && s["status"]["replicas"].as_i64().unwrap_or(0)
                == s["spec"]["replicas"].as_i64().unwrap_or(-1);
        if rv != last_rv || !caught_up {
            last_rv = rv;
            stable_since = Instant::now();
            return None;
        }
        (stable_since.elapsed() > Duration::from_millis(1500)).then_some(())
    });
}

/// `kubectl create -f -` of a manifest as admin.
fn create(c: &Cluster, ns: &str, manifest: &Value) -> Output {
    c.kubectl_stdin(["create", "-n", ns, "-f", "-"], &manifest.to_string())
}

/// A bare pod labelled as workspace `ws`, with one container `workspace` as given.
fn workspace_pod(name: &str, ws: &str, container: Value, volumes: Option<Value>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { WORKSPACE_LABEL: ws } },
        "spec": { "containers": [container] },
    });
    if let Some(v) = volumes {
        pod["spec"]["volumes"] = v;
    }
    pod
}

/// A container with no securityContext at all.
fn plain_container() -> Value {
    json!({ "name": "workspace", "image": "busybox:1.36", "command": ["sleep", "3600"] })
}

/// Waits until `install` can work: a namespace left Terminating by an `uninstall` makes
/// it fail (see `install_right_after_uninstall_succeeds`).
fn wait_install_namespace_usable(c: &Cluster) {
    eventually(
        "namespace devenv-system not to be Terminating",
        Duration::from_secs(120),
        || match get(c, &["namespace", INSTALL_NS]) {
            None => Some(()),
            Some(ns) => (ns["status"]["phase"] != "Terminating").then_some(()),
        },
    );
}

/// `kubectl devenv install --webhook-url URL --cert-dir DIR`, checked.
fn install(c: &Cluster, wh: &WebhookProcess) -> String {
    wait_install_namespace_usable(c);
    ok(&devenv(c, wh.install_args()), "kubectl devenv install")
}

/// `kubectl devenv uninstall`, checked; then waits until its namespace is gone.
fn uninstall(c: &Cluster) -> String {
    let out = ok(&devenv(c, ["uninstall"]), "kubectl devenv uninstall");
    wait_install_namespace_usable(c);
    out
}

/// A webhook process for this test, registered with the cluster.
fn webhook_for(c: &Cluster, ns: &str) -> WebhookProcess {
    let wh = WebhookProcess::start(c, Some(ns)).expect("starting devenv-webhook");
    install(c, &wh);
    wh
}

/// `kubectl devenv -n NS ARGS`.
fn dv(c: &Cluster, ns: &str, args: &[&str]) -> Output {
    let mut a = vec!["-n", ns];
    a.extend_from_slice(args);
    devenv(c, a)
}

fn resource_version(o: &Value) -> (String, Value) {
    (
        o["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        o["metadata"]["generation"].clone(),
    )
}

/// What a user changes on an object (not the status its controller keeps writing):
/// uid, generation, labels, annotations and spec.
fn desired_state(o: &Value) -> Value {
    json!([
        o["metadata"]["uid"],
        o["metadata"]["generation"],
        o["metadata"]["labels"],
        o["metadata"]["annotations"],
        o["spec"],
    ])
}

/// Standard base64, for Secret data and caBundle.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every mutation the webhook promises, on a stored pod of workspace tier `limits`
/// (cpu, memory) / `requests`, with claims named by `claim_name(template)`.
fn assert_every_mutation(
    pod: &Value,
    requests: (&str, &str),
    limits: (&str, &str),
    claim_name: impl Fn(&str) -> String,
) {
    let name = name_of(pod);
    let psc = &pod["spec"]["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{name}: runAsNonRoot: {psc}");
    assert_eq!(psc["runAsUser"], 1000, "{name}: runAsUser: {psc}");
    assert_eq!(psc["runAsGroup"], 1000, "{name}: runAsGroup: {psc}");
    assert_eq!(psc["fsGroup"], 1000, "{name}: fsGroup: {psc}");
    assert_eq!(
        psc["seccompProfile"]["type"], "RuntimeDefault",
        "{name}: seccomp: {psc}"
    );
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    let c = containers
        .iter()
        .find(|c| c["name"] == "workspace")
        .unwrap_or_else(|| panic!("{name} has no container workspace: {pod:#}"));
    let sc = &c["securityContext"];
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "{name}: allowPrivilegeEscalation: {sc}"
    );
    assert_eq!(
        sc["capabilities"]["drop"],
        json!(["ALL"]),
        "{name}: capabilities: {sc}"
    );
    assert_ne!(sc["privileged"], true, "{name}: {sc}");
    let r = &c["resources"];
    assert_eq!(r["requests"]["cpu"], requests.0, "{name}: resources {r}");
    assert_eq!(r["requests"]["memory"], requests.1, "{name}: resources {r}");
    assert_eq!(r["limits"]["cpu"], limits.0, "{name}: resources {r}");
    assert_eq!(r["limits"]["memory"], limits.1, "{name}: resources {r}");
    let env_from = c["envFrom"].as_array().cloned().unwrap_or_default();
    assert!(
        env_from.contains(&json!({"secretRef": {"name": "devenv-secrets", "optional": true}})),
        "{name}: envFrom of the policy's Secret, optional: {env_from:?}"
    );
    let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (template, _, path) in VOLUMES {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("{name}: no mount at {path}: {mounts:?}"));
        let vol_name = m["name"].as_str().unwrap_or_default();
        let v = volumes
            .iter()
            .find(|v| v["name"] == vol_name)
            .unwrap_or_else(|| panic!("{name}: no volume {vol_name}: {volumes:?}"));
        assert_eq!(
            v["persistentVolumeClaim"]["claimName"],
            claim_name(template),
            "{name}: volume {vol_name} at {path}"
        );
    }
}

/// A default StorageClass (no provisioner), so `status` has nothing to complain about
/// in a cluster that has none. Claims stay Pending either way (no node).
fn ensure_default_storage_class(c: &Cluster) {
    if get(c, &["storageclass", "devenv-e2e-default"]).is_some() {
        return;
    }
    let sc = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "devenv-e2e-default",
            "annotations": { "storageclass.kubernetes.io/is-default-class": "true" },
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    check_ok(
        &["create storageclass"],
        &c.kubectl_stdin(["create", "-f", "-"], &sc.to_string()),
    );
}

// ---------------------------------------------------------------- 1. install

#[test]
fn install_registers_both_webhooks_idempotently_and_uninstall_keeps_workspaces() {
    let _serial = serial();
    let _t =
        Timer::start("install_registers_both_webhooks_idempotently_and_uninstall_keeps_workspaces");
    let c = shared();
    let ns = c.fresh_namespace("install");
    ensure_default_storage_class(c);
    let wh = WebhookProcess::start(c, Some(&ns)).expect("starting devenv-webhook");
    let out = install(c, &wh);
    assert_mentions(&out, &["installed", &wh.url()], "install output");

    // Both configurations, pointing at our URL, trusting exactly our CA, only for
    // workspace-labelled objects, failing closed, never on CONNECT.
    let ca = base64(wh.ca_pem().as_bytes());
    assert!(ca.len() > 100, "CA read from {}", wh.ca_file().display());
    let mut before = Vec::new();
    for kind in CONFIGS {
        let cfg = get_ok(c, &[kind, CONFIG_NAME]);
        before.push(resource_version(&cfg));
        let hooks = cfg["webhooks"].as_array().expect("webhooks");
        assert_eq!(hooks.len(), 2, "{kind}: pods and statefulsets: {cfg:#}");
        for h in hooks {
            let hook = h["name"].as_str().unwrap_or_default();
            let cc = &h["clientConfig"];
            assert_eq!(
                cc["caBundle"],
                ca.as_str(),
                "{kind} {hook}: caBundle is our CA"
            );
            assert!(cc["service"].is_null(), "{kind} {hook}: {cc}");
            let url = cc["url"].as_str().unwrap_or_default();
            assert!(
                url.starts_with(&format!("{}/", wh.url())),
                "{kind} {hook}: url {url}"
            );
            assert_eq!(
                h["objectSelector"],
                json!({"matchExpressions": [{"key": WORKSPACE_LABEL, "operator": "Exists"}]}),
                "{kind} {hook}: objectSelector"
            );
            assert_eq!(h["failurePolicy"], "Fail", "{kind} {hook}");
            let rules = h["rules"].as_array().expect("rules");
            assert!(!rules.is_empty(), "{kind} {hook}: no rules");
            for r in rules {
                let ops: Vec<&str> = r["operations"]
                    .as_array()
                    .expect("operations")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                assert!(
                    !ops.contains(&"CONNECT") && !ops.contains(&"*"),
                    "{kind} {hook}: operations {ops:?}"
                );
            }
        }
    }
    // Both webhooks also see `kubectl debug` (pods/ephemeralcontainers): the mutating one
    // fills the debug container's securityContext, the validating one judges it.
    for config in CONFIGS {
        let stored = get_ok(c, &[config, CONFIG_NAME]);
        assert!(
            stored.to_string().contains("pods/ephemeralcontainers"),
            "{config}: {stored:#}"
        );
    }

    // status: healthy, no problem, exit 0.
    let out = devenv(c, ["status"]);
    let text = ok(&out, "kubectl devenv status");
    assert_mentions(
        &text,
        &[
            "present (2 webhooks)",
            "healthy",
            &wh.url(),
            "No problems found",
        ],
        "status",
    );
    let report = json_of(&ok(&devenv(c, ["status", "-o", "json"]), "status -o json"));
    assert!(
        report["webhookHealth"]
            .as_str()
            .is_some_and(|h| h.starts_with("healthy")),
        "{report:#}"
    );
    assert_eq!(report["problems"], json!([]), "{report:#}");

    // Re-running install changes nothing.
    let cluster_objects: Vec<Vec<&str>> = vec![
        vec!["clusterrole", CONFIG_NAME],
        vec!["clusterrolebinding", CONFIG_NAME],
        vec!["configmap", "devenv-policy", "-n", INSTALL_NS],
        vec!["serviceaccount", CONFIG_NAME, "-n", INSTALL_NS],
    ];
    let others_before: Vec<_> = cluster_objects
        .iter()
        .map(|a| resource_version(&get_ok(c, a)))
        .collect();
    let out = install(c, &wh);
    assert_mentions(&out, &["reused"], "second install keeps the certificate");
    for (kind, was) in CONFIGS.iter().zip(&before) {
        let now = resource_version(&get_ok(c, &[kind, CONFIG_NAME]));
        assert_eq!(&now, was, "{kind}: re-running install changed it");
    }
    for (args, was) in cluster_objects.iter().zip(&others_before) {
        let now = resource_version(&get_ok(c, args));
        assert_eq!(&now, was, "{args:?}: re-running install changed it");
    }

    // A workspace, then uninstall: the configurations go, the workspace stays.
    ok(&dv(c, &ns, &["create", "keep", "--no-wait"]), "create keep");
    wait_pods(c, &ns, "keep", &pod_names_of("keep", 1));
    let kept_claims = wait_claims(c, &ns, "keep", &sts_claim_names("keep", 0..1));
    let sts_uid = get_ok(c, &["statefulset", "keep", "-n", &ns])["metadata"]["uid"].clone();
    let out = uninstall(c);
    assert_mentions(&out, &["uninstalled", "kept"], "uninstall output");
    for kind in CONFIGS {
        assert!(absent(c, &[kind, CONFIG_NAME]), "{kind} still exists");
    }
    assert!(absent(c, &["clusterrole", CONFIG_NAME]));
    assert_eq!(
        get_ok(c, &["statefulset", "keep", "-n", &ns])["metadata"]["uid"],
        sts_uid,
        "the StatefulSet is untouched"
    );
    let uids_after = claim_uids(c, &ns, "keep");
    let uids_before: BTreeMap<String, String> = kept_claims
        .iter()
        .map(|(n, p)| (n.clone(), p["metadata"]["uid"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(uids_after, uids_before, "claims kept by uninstall");
    assert_eq!(pod_names(c, &ns, "keep"), pod_names_of("keep", 1));

    // status now reports the missing configurations and fails.
    let out = devenv(c, ["status"]);
    let text = fails(&out, "status without the webhook");
    assert_mentions(&text, &["missing", "kubectl devenv install"], "status");
}

/// `uninstall` deletes the namespace it created; the namespace controller needs a few
/// seconds to finish. Installing again in that window (an upgrade by reinstalling, a
/// script) must work, or at least wait: today it fails with
/// `patch serviceaccounts failed: ... 403 Forbidden: ... namespace devenv-system because
/// it is being terminated`.
#[test]
fn install_right_after_uninstall_succeeds() {
    let _serial = serial();
    let _t = Timer::start("install_right_after_uninstall_succeeds");
    let c = shared();
    let ns = c.fresh_namespace("reinstall");
    let wh = webhook_for(c, &ns);
    ok(&devenv(c, ["uninstall"]), "kubectl devenv uninstall");
    let out = devenv(c, wh.install_args());
    let result = both(&out);
    // Leave the cluster usable for the next tests whatever happened.
    if !out.status.success() {
        install(c, &wh);
    }
    assert!(
        out.status.success(),
        "install right after uninstall failed ({}):\n{result}",
        out.status
    );
    for kind in CONFIGS {
        assert!(get(c, &[kind, CONFIG_NAME]).is_some(), "{kind} missing");
    }
}

// ---------------------------------------------------------------- 2. create

#[test]
fn create_makes_the_workspace_and_the_stored_pods_carry_every_mutation() {
    let _serial = serial();
    let _t = Timer::start("create_makes_the_workspace_and_the_stored_pods_carry_every_mutation");
    let c = shared();
    let ns = c.fresh_namespace("create");
    let _wh = webhook_for(c, &ns);

    let out = ok(
        &dv(c, &ns, &["create", "alice", "--no-wait"]),
        "create alice",
    );
    assert_mentions(&out, &["workspace/alice created"], "create output");

    let sts = get_ok(c, &["statefulset", "alice", "-n", &ns]);
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["metadata"]["labels"][WORKSPACE_LABEL], "alice");
    assert_eq!(sts["metadata"]["annotations"][TIER], "small");
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    let svc = get_ok(c, &["service", "alice", "-n", &ns]);
    assert_eq!(svc["spec"]["clusterIP"], "None", "headless: {svc:#}");
    let np = get_ok(c, &["networkpolicy", "alice", "-n", &ns]);
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"][WORKSPACE_LABEL],
        "alice"
    );
    let sa = get_ok(c, &["serviceaccount", "alice", "-n", &ns]);
    assert_eq!(sa["automountServiceAccountToken"], false, "{sa:#}");

    // The controller creates alice-0 and its three claims.
    wait_pods(c, &ns, "alice", &pod_names_of("alice", 1));
    let claims = wait_claims(c, &ns, "alice", &sts_claim_names("alice", 0..1));
    for (template, size, _) in VOLUMES {
        let claim = &claims[&format!("{template}-alice-0")];
        assert_eq!(
            claim["spec"]["resources"]["requests"]["storage"], size,
            "{template}: {claim:#}"
        );
        assert_eq!(claim["metadata"]["labels"][WORKSPACE_LABEL], "alice");
    }
    let pod = get_ok(c, &["pod", "alice-0", "-n", &ns]);
    assert_eq!(pod["status"]["phase"], "Pending", "no node: {pod:#}");
    assert_every_mutation(&pod, ("500m", "2Gi"), ("2", "4Gi"), |t| {
        format!("{t}-alice-0")
    });
    assert_eq!(pod["metadata"]["annotations"][TIER], "small");

    // A StatefulSet written by hand (no security context, no resources, no claims):
    // the webhook adds the claim templates, and the pods the controller creates from
    // it get every mutation. PodSecurity only warns about the template.
    let raw = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": "raw", "labels": { WORKSPACE_LABEL: "raw" } },
        "spec": {
            "serviceName": "raw",
            "replicas": 1,
            "selector": { "matchLabels": { WORKSPACE_LABEL: "raw" } },
            "template": {
                "metadata": { "labels": { WORKSPACE_LABEL: "raw" } },
                "spec": { "containers": [plain_container()] },
            },
        },
    });
    ok(&create(c, &ns, &raw), "create a raw workspace StatefulSet");
    let stored = get_ok(c, &["statefulset", "raw", "-n", &ns]);
    let templates: Vec<String> = stored["spec"]["volumeClaimTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(name_of)
        .collect();
    assert_eq!(
        templates,
        vec!["workspace", "history", "config"],
        "claim templates added by the webhook"
    );
    wait_pods(c, &ns, "raw", &pod_names_of("raw", 1));
    wait_claims(c, &ns, "raw", &sts_claim_names("raw", 0..1));
    let pod = get_ok(c, &["pod", "raw-0", "-n", &ns]);
    assert_every_mutation(&pod, ("500m", "2Gi"), ("2", "4Gi"), |t| {
        format!("{t}-raw-0")
    });
}

// ---------------------------------------------------------------- 3. PSA as the judge

#[test]
fn pod_security_admission_rejects_the_bare_pod_without_the_webhook_and_admits_it_with() {
    let _serial = serial();
    let _t = Timer::start(
        "pod_security_admission_rejects_the_bare_pod_without_the_webhook_and_admits_it_with",
    );
    let c = shared();
    let ns = c.fresh_namespace("psa-judge");
    // No webhook registered (whatever an earlier test left).
    uninstall(c);
    for kind in CONFIGS {
        assert!(absent(c, &[kind, CONFIG_NAME]));
    }
    let pod = workspace_pod("bare", "bob", plain_container(), None);

    let out = create(c, &ns, &pod);
    let text = fails(&out, "a bare pod without securityContext, no webhook");
    assert_mentions(
        &text,
        &["violates PodSecurity", "restricted", "runAsNonRoot"],
        "built-in Pod Security admission",
    );
    assert!(absent(c, &["pod", "bare", "-n", &ns]));
    assert!(
        claims(c, &ns, "bob").is_empty(),
        "no claims without the webhook"
    );

    let _wh = webhook_for(c, &ns);
    let out = create(c, &ns, &pod);
    ok(&out, "the same pod with the webhook installed");
    assert!(
        !stderr(&out).contains("would violate PodSecurity"),
        "admitted without PodSecurity warnings: {}",
        stderr(&out)
    );
    let stored = get_ok(c, &["pod", "bare", "-n", &ns]);
    assert_every_mutation(&stored, ("500m", "2Gi"), ("2", "4Gi"), |t| {
        format!("{t}-bob")
    });
    // Bare pods' claims (`<volume>-<workspace>`) are made by the webhook.
    let want: Vec<String> = {
        let mut v: Vec<String> = VOLUMES.iter().map(|(t, _, _)| format!("{t}-bob")).collect();
        v.sort();
        v
    };
    wait_claims(c, &ns, "bob", &want);
}

// ---------------------------------------------------------------- 4. denials

/// Creates `pod` in `ns` and returns the refusal's text; asserts nothing was stored.
fn refused(c: &Cluster, ns: &str, pod: &Value, what: &str) -> String {
    let text = fails(&create(c, ns, pod), what);
    assert!(
        absent(c, &["pod", &name_of(pod), "-n", ns]),
        "{what}: the pod exists"
    );
    text
}

fn forbidden_pods() -> Vec<(&'static str, Value)> {
    vec![
        (
            "privileged",
            workspace_pod(
                "priv",
                "carol",
                json!({"name": "workspace", "image": "busybox:1.36",
                       "securityContext": {"privileged": true}}),
                None,
            ),
        ),
        (
            "hostPath",
            workspace_pod(
                "hostpath",
                "dave",
                plain_container(),
                Some(json!([{"name": "host", "hostPath": {"path": "/etc"}}])),
            ),
        ),
        (
            "runAsUser 0",
            workspace_pod(
                "root",
                "erin",
                json!({"name": "workspace", "image": "busybox:1.36",
                       "securityContext": {"runAsUser": 0}}),
                None,
            ),
        ),
    ]
}

/// Adds an ephemeral container the way `kubectl debug` does (the pods/ephemeralcontainers
/// subresource).
fn add_ephemeral(c: &Cluster, ns: &str, pod: &str, container: Value) -> Output {
    let patch = json!({"spec": {"ephemeralContainers": [container]}});
    c.kubectl([
        "patch",
        "pod",
        pod,
        "-n",
        ns,
        "--subresource=ephemeralcontainers",
        "--type=strategic",
        "-p",
        &patch.to_string(),
    ])
}

#[test]
fn forbidden_workspace_pods_and_debug_containers_are_denied_naming_the_field() {
    let _serial = serial();
    let _t =
        Timer::start("forbidden_workspace_pods_and_debug_containers_are_denied_naming_the_field");
    let c = shared();
    let restricted = c.fresh_namespace("deny-restricted");
    // Where PodSecurity enforces nothing, our validating webhook is the only judge, and
    // its message is what reaches the user. (In a `restricted` namespace the built-in
    // PodSecurity plugin runs before validating webhooks and refuses first.)
    let open = c.fresh_namespace("deny-open");
    c.kubectl_ok([
        "label",
        "namespace",
        &open,
        "pod-security.kubernetes.io/enforce=privileged",
        "--overwrite",
    ]);
    let _wh = webhook_for(c, &open);

    let our_paths = [
        (
            "privileged",
            "spec.containers[0].securityContext.privileged",
        ),
        ("hostPath", "spec.volumes[0].hostPath"),
        (
            "runAsUser 0",
            "spec.containers[0].securityContext.runAsUser",
        ),
    ];
    let psa_words = [
        ("privileged", "securityContext.privileged=true"),
        ("hostPath", "hostPath"),
        ("runAsUser 0", "runAsUser=0"),
    ];
    for (what, pod) in forbidden_pods() {
        let path = our_paths.iter().find(|(w, _)| *w == what).unwrap().1;
        let text = eventually(
            &format!("{what}: a refusal from the webhook, not from PodSecurity"),
            Duration::from_secs(20),
            || {
                let t = refused(c, &open, &pod, what);
                (!t.contains("violates PodSecurity")).then_some(t)
            },
        );
        assert_mentions(
            &text,
            &[
                "pods.validate.devenv.io",
                "denied the request",
                path,
                "not allowed",
            ],
            what,
        );

        let text = refused(c, &restricted, &pod, what);
        let word = psa_words.iter().find(|(w, _)| *w == what).unwrap().1;
        assert_mentions(&text, &["forbidden", word], &format!("{what} (restricted)"));
    }

    // `kubectl debug`: an ephemeral container added through the subresource.
    for ns in [&open, &restricted] {
        let target = workspace_pod("target", "gus", plain_container(), None);
        ok(&create(c, ns, &target), "a compliant workspace pod");
        let out = add_ephemeral(
            c,
            ns,
            "target",
            json!({"name": "debugger", "image": "busybox:1.36",
                   "securityContext": {"privileged": true}}),
        );
        let text = fails(&out, "a privileged ephemeral container");
        if ns == &open {
            assert_mentions(
                &text,
                &[
                    "pods.validate.devenv.io",
                    "spec.ephemeralContainers[0].securityContext.privileged",
                ],
                "privileged debug container",
            );
        } else {
            assert_mentions(
                &text,
                &["forbidden", "debugger", "securityContext.privileged=true"],
                "privileged debug container (restricted)",
            );
        }
        let stored = get_ok(c, &["pod", "target", "-n", ns]);
        assert!(
            stored["spec"]["ephemeralContainers"].is_null(),
            "denied, yet stored: {:#}",
            stored["spec"]["ephemeralContainers"]
        );
        // Control: a debug container that follows the rules is admitted.
        let out = add_ephemeral(
            c,
            ns,
            "target",
            json!({"name": "debugger", "image": "busybox:1.36",
                   "securityContext": {
                       "allowPrivilegeEscalation": false,
                       "capabilities": {"drop": ["ALL"]},
                       "runAsNonRoot": true,
                       "seccompProfile": {"type": "RuntimeDefault"}}}),
        );
        ok(&out, "a restricted ephemeral container");

        // The real `kubectl debug`, as a user types it. Its default profile (legacy)
        // and `baseline` state no securityContext: the mutating webhook fills it, and in
        // the `restricted` namespace the built-in PodSecurity check accepts the result.
        let debug = |name: &str, profile: Option<&str>| {
            let mut args = vec![
                "debug".to_owned(),
                "target".to_owned(),
                "-n".to_owned(),
                ns.to_string(),
                "--image=busybox:1.36".to_owned(),
                format!("--container={name}"),
            ];
            args.extend(profile.map(|p| format!("--profile={p}")));
            c.kubectl(&args)
        };
        ok(
            &debug("dbg-default", None),
            "kubectl debug (default profile)",
        );
        ok(
            &debug("dbg-restricted", Some("restricted")),
            "kubectl debug --profile=restricted",
        );
        ok(
            &debug("dbg-baseline", Some("baseline")),
            "kubectl debug --profile=baseline",
        );
        let stored = get_ok(c, &["pod", "target", "-n", ns]);
        let containers = stored["spec"]["ephemeralContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let default = containers
            .iter()
            .find(|c| c["name"] == "dbg-default")
            .unwrap_or_else(|| panic!("dbg-default not stored: {containers:#?}"));
        assert_eq!(
            default["securityContext"]["capabilities"]["drop"],
            json!(["ALL"]),
            "the webhook filled the debug container's securityContext: {default:#}"
        );
        assert_eq!(
            default["securityContext"]["allowPrivilegeEscalation"],
            json!(false),
            "{default:#}"
        );
        // `general`, `netadmin` and `sysadmin` add capabilities or privilege: refused,
        // and in our message the user is told which profiles pass.
        for (profile, word) in [
            ("general", "SYS_PTRACE"),
            ("netadmin", "NET_ADMIN"),
            ("sysadmin", "privileged"),
        ] {
            let name = format!("dbg-{profile}");
            let what = format!("kubectl debug --profile={profile} in {ns}");
            let text = fails(&debug(&name, Some(profile)), &what);
            if ns == &open {
                assert_mentions(
                    &text,
                    &[
                        "pods.validate.devenv.io",
                        "spec.ephemeralContainers[4].securityContext.",
                        word,
                        "--profile=restricted",
                    ],
                    &what,
                );
            } else {
                assert_mentions(&text, &["forbidden", name.as_str(), word], &what);
            }
        }
    }
}

/// The mutating webhook creates a bare pod's claims while admitting it, before the
/// validating webhook or PodSecurity look at the pod: a refused pod must not leave
/// claims behind (storage quota, and claims a user who may not create claims gets
/// made for them).
#[test]
fn refused_workspace_pods_leave_no_claims() {
    let _serial = serial();
    let _t = Timer::start("refused_workspace_pods_leave_no_claims");
    let c = shared();
    let restricted = c.fresh_namespace("noleak-restricted");
    let open = c.fresh_namespace("noleak-open");
    c.kubectl_ok([
        "label",
        "namespace",
        &open,
        "pod-security.kubernetes.io/enforce=privileged",
        "--overwrite",
    ]);
    let _wh = webhook_for(c, &open);
    let mut leaks = Vec::new();
    for ns in [&restricted, &open] {
        for (what, pod) in forbidden_pods() {
            refused(c, ns, &pod, what);
            let ws = pod["metadata"]["labels"][WORKSPACE_LABEL]
                .as_str()
                .unwrap()
                .to_owned();
            // The claims are created within the webhook's answer (it waits up to 4s).
            std::thread::sleep(Duration::from_millis(500));
            let left: Vec<String> = claims(c, ns, &ws).into_keys().collect();
            if !left.is_empty() {
                leaks.push(format!("{what} pod refused in {ns}: claims {left:?} left"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "refused pods left claims:\n{}",
        leaks.join("\n")
    );
}

// ---------------------------------------------------------------- 5. outage

#[test]
fn webhook_outage_blocks_only_workspace_pods_and_leaves_nothing_half_created() {
    let _serial = serial();
    let _t =
        Timer::start("webhook_outage_blocks_only_workspace_pods_and_leaves_nothing_half_created");
    let c = shared();
    let ns = c.fresh_namespace("outage");
    let mut wh = webhook_for(c, &ns);

    // A compliant pod without the workspace label: stored exactly as sent.
    let plain = |name: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name, "labels": { "app": "plain" } },
            "spec": {
                "automountServiceAccountToken": false,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 1234,
                    "seccompProfile": { "type": "RuntimeDefault" },
                },
                "containers": [{
                    "name": "c",
                    "image": "busybox:1.36",
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "capabilities": { "drop": ["ALL"] },
                    },
                }],
            },
        })
    };
    let untouched = |sent: &Value| {
        let name = name_of(sent);
        let stored = get_ok(c, &["pod", &name, "-n", &ns]);
        assert_eq!(
            stored["spec"]["securityContext"], sent["spec"]["securityContext"],
            "{name}: pod securityContext changed"
        );
        let (sc, ss) = (
            &stored["spec"]["containers"][0],
            &sent["spec"]["containers"][0],
        );
        assert_eq!(
            sc["securityContext"], ss["securityContext"],
            "{name}: container securityContext changed"
        );
        assert!(
            sc["resources"].as_object().is_none_or(|r| r.is_empty()),
            "{name}: resources added: {}",
            sc["resources"]
        );
        assert!(sc["envFrom"].is_null(), "{name}: envFrom added");
        assert!(sc["volumeMounts"].is_null(), "{name}: mounts added");
        assert!(stored["spec"]["volumes"].is_null(), "{name}: volumes added");
        assert_eq!(stored["metadata"]["labels"], sent["metadata"]["labels"]);
        assert!(
            stored["metadata"]["annotations"].is_null(),
            "{name}: annotations added: {}",
            stored["metadata"]["annotations"]
        );
    };
    let up = plain("plain-up");
    ok(&create(c, &ns, &up), "a non-workspace pod, webhook up");
    untouched(&up);

    wh.stop().expect("stopping the webhook");
    assert!(!wh.is_running());
    let down = plain("plain-down");
    ok(&create(c, &ns, &down), "a non-workspace pod, webhook down");
    untouched(&down);

    // A workspace pod is refused, and nothing of it is left.
    let pod = workspace_pod("frank-pod", "frank", plain_container(), None);
    let text = fails(&create(c, &ns, &pod), "a workspace pod, webhook down");
    assert_mentions(
        &text,
        &[
            "failed calling webhook",
            "pods.mutate.devenv.io",
            "connection refused",
        ],
        "outage refusal",
    );
    assert!(absent(c, &["pod", "frank-pod", "-n", &ns]));
    assert!(claims(c, &ns, "frank").is_empty(), "claims left behind");

    // `create` through the plugin: a clear error, no StatefulSet, pod or claim.
    let out = dv(c, &ns, &["create", "gina", "--no-wait"]);
    let text = fails(&out, "create while the webhook is down");
    assert_mentions(
        &text,
        &[
            "could not call an admission webhook",
            "kubectl devenv status",
        ],
        "create during the outage",
    );
    assert!(absent(c, &["statefulset", "gina", "-n", &ns]));
    std::thread::sleep(Duration::from_secs(1));
    assert!(pod_names(c, &ns, "gina").is_empty());
    assert!(claims(c, &ns, "gina").is_empty());

    // status says so.
    let text = fails(&devenv(c, ["status"]), "status during the outage");
    assert_mentions(&text, &["unhealthy", &wh.url()], "status during the outage");

    // Back up: the same create works.
    wh.start_again().expect("restarting the webhook");
    ok(
        &dv(c, &ns, &["create", "gina", "--no-wait"]),
        "create after the outage",
    );
    wait_pods(c, &ns, "gina", &pod_names_of("gina", 1));
    ok(&create(c, &ns, &pod), "the workspace pod after the outage");
}

// ---------------------------------------------------------------- 6. scale

#[test]
fn scale_stop_start_follow_the_pods_and_keep_every_claim() {
    let _serial = serial();
    let _t = Timer::start("scale_stop_start_follow_the_pods_and_keep_every_claim");
    let c = shared();
    let ns = c.fresh_namespace("scale");
    let _wh = webhook_for(c, &ns);

    ok(
        &dv(c, &ns, &["create", "team", "--replicas", "3", "--no-wait"]),
        "create team --replicas 3",
    );
    wait_pods(c, &ns, "team", &pod_names_of("team", 3));
    wait_claims(c, &ns, "team", &sts_claim_names("team", 0..3));

    ok(
        &dv(c, &ns, &["scale", "team", "--replicas", "5"]),
        "scale 5",
    );
    wait_pods(c, &ns, "team", &pod_names_of("team", 5));
    let all = sts_claim_names("team", 0..5);
    wait_claims(c, &ns, "team", &all);
    let uids = claim_uids(c, &ns, "team");

    ok(
        &dv(c, &ns, &["scale", "team", "--replicas", "2"]),
        "scale 2",
    );
    wait_pods(c, &ns, "team", &pod_names_of("team", 2));
    assert_eq!(
        claim_uids(c, &ns, "team"),
        uids,
        "all five pods' claims are kept"
    );

    wait_settled(c, &ns, "team");
    let out = ok(&dv(c, &ns, &["stop", "team"]), "stop team");
    assert_mentions(&out, &["stopped"], "stop");
    wait_pods(c, &ns, "team", &[]);
    assert_eq!(
        get_ok(c, &["statefulset", "team", "-n", &ns])["spec"]["replicas"],
        0
    );
    assert_eq!(claim_uids(c, &ns, "team"), uids, "stop keeps the claims");

    wait_settled(c, &ns, "team");
    ok(&dv(c, &ns, &["start", "team"]), "start team");
    wait_pods(c, &ns, "team", &pod_names_of("team", 2));
    assert_eq!(
        get_ok(c, &["statefulset", "team", "-n", &ns])["spec"]["replicas"],
        2
    );
    assert_eq!(claim_uids(c, &ns, "team"), uids, "start reuses the claims");

    // Vertical: the large tier.
    wait_settled(c, &ns, "team");
    ok(
        &dv(c, &ns, &["scale", "team", "--tier", "large"]),
        "scale --tier large",
    );
    let sts = get_ok(c, &["statefulset", "team", "-n", &ns]);
    assert_eq!(sts["metadata"]["annotations"][TIER], "large");
    assert_eq!(
        sts["spec"]["template"]["metadata"]["annotations"][TIER],
        "large"
    );
    let container = sts["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "workspace")
        .cloned()
        .expect("workspace container");
    assert_eq!(
        container["resources"],
        json!({"limits": {"cpu": "8", "memory": "16Gi"}, "requests": {"cpu": "2", "memory": "8Gi"}})
    );
    // The rolling update replaces the highest ordinal first; the webhook admits the
    // large pod. (The controller then waits for that pod to be Running and Ready before
    // replacing team-0, which never happens without a node: the node suite covers the
    // rest of the rollout.)
    let update_revision = eventually("the update revision", WAIT, || {
        let s = get(c, &["statefulset", "team", "-n", &ns])?;
        let rev = s["status"]["updateRevision"].as_str()?.to_owned();
        (rev != s["status"]["currentRevision"].as_str().unwrap_or_default()).then_some(rev)
    });
    let pod = eventually("team-1 re-created with the large tier", WAIT, || {
        let p = get(c, &["pod", "team-1", "-n", &ns])?;
        let fresh = p["metadata"]["labels"]["controller-revision-hash"] == update_revision.as_str()
            && p["metadata"]["deletionTimestamp"].is_null();
        fresh.then_some(p)
    });
    assert_eq!(pod["metadata"]["annotations"][TIER], "large");
    assert_every_mutation(&pod, ("2", "8Gi"), ("8", "16Gi"), |t| format!("{t}-team-1"));
    assert_eq!(
        claim_uids(c, &ns, "team"),
        uids,
        "resizing keeps the claims"
    );
}

/// `stop`, `start` and `scale --tier` send their patch guarded by the resourceVersion
/// they read; the StatefulSet controller's status writes change it all the time while
/// pods come and go. Run right after another change, as a script would, they must not
/// fail with a conflict (they should re-read and retry, as kubectl does). Today about
/// one call in five fails: `error: conflict while trying to patch workspace "w": Operation
/// cannot be fulfilled on statefulsets.apps "w": the object has been modified`.
#[test]
fn guarded_changes_right_after_other_changes_do_not_conflict() {
    let _serial = serial();
    let _t = Timer::start("guarded_changes_right_after_other_changes_do_not_conflict");
    let c = shared();
    let ns = c.fresh_namespace("conflict");
    let _wh = webhook_for(c, &ns);
    let mut failures = Vec::new();
    let mut calls = 0;
    for i in 0..6 {
        let name = format!("w{i}");
        ok(&dv(c, &ns, &["create", &name, "--no-wait"]), "create");
        for args in [
            vec!["stop", name.as_str()],
            vec!["start", name.as_str()],
            vec!["scale", name.as_str(), "--replicas", "2"],
            vec!["scale", name.as_str(), "--tier", "micro"],
        ] {
            calls += 1;
            let out = dv(c, &ns, &args);
            if !out.status.success() {
                failures.push(format!("{}: {}", args.join(" "), stderr(&out).trim()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} commands failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------- 7. delete

#[test]
fn delete_keeps_the_claims_create_reuses_them_and_purge_removes_them() {
    let _serial = serial();
    let _t = Timer::start("delete_keeps_the_claims_create_reuses_them_and_purge_removes_them");
    let c = shared();
    let ns = c.fresh_namespace("delete");
    let _wh = webhook_for(c, &ns);
    let names = sts_claim_names("alice", 0..1);

    ok(
        &dv(c, &ns, &["create", "alice", "--no-wait"]),
        "create alice",
    );
    wait_pods(c, &ns, "alice", &pod_names_of("alice", 1));
    wait_claims(c, &ns, "alice", &names);
    let uids = claim_uids(c, &ns, "alice");

    let out = ok(&dv(c, &ns, &["delete", "alice"]), "delete alice");
    assert_mentions(&out, &["statefulset.apps/alice deleted"], "delete");
    for kind in ["statefulset", "service", "networkpolicy", "serviceaccount"] {
        assert!(
            absent(c, &[kind, "alice", "-n", &ns]),
            "{kind} alice remains"
        );
    }
    wait_pods(c, &ns, "alice", &[]);
    assert_eq!(claim_uids(c, &ns, "alice"), uids, "delete keeps the claims");
    let text = both(&dv(c, &ns, &["delete", "alice"]));
    assert!(!text.contains("persistentvolumeclaim"), "{text}");

    // Re-created: the same claims (same UIDs), no new ones.
    ok(
        &dv(c, &ns, &["create", "alice", "--no-wait"]),
        "create alice again",
    );
    wait_pods(c, &ns, "alice", &pod_names_of("alice", 1));
    assert_eq!(
        claim_uids(c, &ns, "alice"),
        uids,
        "create reuses the claims"
    );
    let pod = get_ok(c, &["pod", "alice-0", "-n", &ns]);
    assert_every_mutation(&pod, ("500m", "2Gi"), ("2", "4Gi"), |t| {
        format!("{t}-alice-0")
    });

    // --purge without a terminal needs --yes, and deletes nothing without it.
    let text = fails(
        &dv(c, &ns, &["delete", "alice", "--purge"]),
        "purge without --yes",
    );
    assert_mentions(&text, &["--yes"], "purge without --yes");
    assert!(get(c, &["statefulset", "alice", "-n", &ns]).is_some());
    assert_eq!(claim_uids(c, &ns, "alice"), uids);

    let out = ok(
        &dv(c, &ns, &["delete", "alice", "--purge", "--yes"]),
        "delete --purge --yes",
    );
    for n in &names {
        assert_mentions(
            &out,
            &[&format!("persistentvolumeclaim/{n} deleted")],
            "purge",
        );
    }
    assert!(absent(c, &["statefulset", "alice", "-n", &ns]));
    eventually("the claims to be gone", WAIT, || {
        claims(c, &ns, "alice").is_empty().then_some(())
    });
    wait_pods(c, &ns, "alice", &[]);
}

// ---------------------------------------------------------------- 8. list / get

#[test]
fn list_and_get_report_the_real_state() {
    let _serial = serial();
    let _t = Timer::start("list_and_get_report_the_real_state");
    let c = shared();
    let ns = c.fresh_namespace("list");
    let _wh = webhook_for(c, &ns);

    ok(&dv(c, &ns, &["create", "busy", "--no-wait"]), "create busy");
    ok(
        &dv(c, &ns, &["create", "idle", "--tier", "micro", "--no-wait"]),
        "create idle",
    );
    wait_pods(c, &ns, "busy", &pod_names_of("busy", 1));
    wait_pods(c, &ns, "idle", &pod_names_of("idle", 1));
    wait_settled(c, &ns, "idle");
    ok(&dv(c, &ns, &["stop", "idle"]), "stop idle");
    wait_pods(c, &ns, "idle", &[]);

    let row = |text: &str, name: &str, all: bool| -> String {
        text.lines()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if all {
                    f.len() > 2 && f[0] == ns && f[1] == name
                } else {
                    f.first() == Some(&name)
                }
            })
            .unwrap_or_else(|| panic!("no row for {name} in:\n{text}"))
            .to_owned()
    };

    let text = ok(&dv(c, &ns, &["list"]), "list");
    assert!(text.starts_with("NAME"), "{text}");
    let busy = row(&text, "busy", false);
    assert_mentions(&busy, &["0/1", "Pending", "small"], "list: busy");
    let idle = row(&text, "idle", false);
    assert_mentions(&idle, &["0/0", "Stopped", "micro"], "list: idle");
    assert!(!idle.contains("Pending"), "{idle}");

    let text = ok(&devenv(c, ["list", "-A"]), "list -A");
    assert!(text.starts_with("NAMESPACE"), "{text}");
    assert_mentions(&row(&text, "busy", true), &["Pending"], "list -A: busy");
    assert_mentions(&row(&text, "idle", true), &["Stopped"], "list -A: idle");

    let text = ok(&dv(c, &ns, &["get", "busy"]), "get busy");
    assert_mentions(&row(&text, "busy", false), &["Pending"], "get busy");
    let text = ok(&dv(c, &ns, &["get", "idle"]), "get idle");
    assert_mentions(&row(&text, "idle", false), &["Stopped"], "get idle");

    let busy = json_of(&ok(
        &dv(c, &ns, &["get", "busy", "-o", "json"]),
        "get -o json",
    ));
    assert_eq!(busy["name"], "busy");
    assert_eq!(busy["namespace"], ns.as_str());
    assert!(busy["status"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Pending"));
    assert_eq!(busy["pods"][0]["name"], "busy-0");
    assert_eq!(busy["pods"][0]["phase"], "Pending");
    let claim_names: Vec<String> = busy["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(claim_names, sts_claim_names("busy", 0..1));

    let all = json_of(&ok(
        &devenv(c, ["list", "-A", "-o", "json"]),
        "list -A -o json",
    ));
    let list = all["items"].as_array().or(all.as_array()).expect("a list");
    let idle = list
        .iter()
        .find(|w| w["name"] == "idle" && w["namespace"] == ns.as_str())
        .unwrap_or_else(|| panic!("idle not in {all:#}"));
    assert_eq!(idle["status"], "Stopped");
    assert_eq!(idle["tier"], "micro");
    assert_eq!(idle["pods"], json!([]));

    let names = ok(&dv(c, &ns, &["list", "-o", "name"]), "list -o name");
    let mut lines: Vec<&str> = names.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["workspace/busy", "workspace/idle"]);
    let name = ok(&dv(c, &ns, &["get", "idle", "-o", "name"]), "get -o name");
    assert_eq!(name.trim(), "workspace/idle");

    let text = fails(&dv(c, &ns, &["get", "nobody"]), "get a missing workspace");
    assert_mentions(&text, &["nobody", "not found"], "get nobody");
}

// ---------------------------------------------------------------- 9. secrets

#[test]
fn secret_values_are_stored_but_never_printed_nor_logged() {
    let _serial = serial();
    let _t = Timer::start("secret_values_are_stored_but_never_printed_nor_logged");
    let c = shared();
    let ns = c.fresh_namespace("secrets");
    let wh = webhook_for(c, &ns);
    let value = format!("e2e-Sekr1t-{}", unique_name("v"));
    let env_value = format!("e2e-FromEnv-{}", unique_name("v"));
    let forms = |v: &str| vec![v.to_owned(), base64(v.as_bytes())];
    let mut secret_forms = forms(&value);
    secret_forms.extend(forms(&env_value));
    let mut printed = String::new();

    let literal = format!("API_TOKEN={value}");
    for verbosity in [None, Some("-v"), Some("-vvv")] {
        let mut args = vec!["-n", ns.as_str()];
        args.extend(verbosity);
        args.extend([
            "secrets",
            "set",
            "team-keys",
            "--from-literal",
            literal.as_str(),
        ]);
        let out = devenv(c, &args);
        ok(&out, &format!("secrets set {verbosity:?}"));
        assert_mentions(
            &stdout(&out),
            &["secret/team-keys", "API_TOKEN"],
            "secrets set",
        );
        if verbosity == Some("-vvv") {
            assert!(
                stderr(&out).lines().count() > 5,
                "-vvv logs: {}",
                stderr(&out)
            );
        }
        printed.push_str(&both(&out));
    }
    // Another key from the environment, with -o yaml (the applied object, redacted).
    let out = devenv_e2e::webhook::devenv_command(&c.kubeconfig)
        .args([
            "-n",
            &ns,
            "-vvv",
            "secrets",
            "set",
            "team-keys",
            "--from-env",
            "E2E_SECRET_FROM_ENV",
            "-o",
            "yaml",
        ])
        .env("E2E_SECRET_FROM_ENV", &env_value)
        .output()
        .expect("kubectl devenv");
    let yaml = ok(&out, "secrets set --from-env -o yaml");
    assert_mentions(
        &yaml,
        &["API_TOKEN: <redacted>", "E2E_SECRET_FROM_ENV: <redacted>"],
        "-o yaml",
    );
    printed.push_str(&both(&out));

    let secret = get_ok(c, &["secret", "team-keys", "-n", &ns]);
    assert_eq!(secret["metadata"]["labels"]["devenv.io/inject"], "true");
    assert_eq!(secret["data"]["API_TOKEN"], base64(value.as_bytes()));
    assert_eq!(
        secret["data"]["E2E_SECRET_FROM_ENV"],
        base64(env_value.as_bytes())
    );

    // A workspace using it: the webhook looks the Secret up (metadata only) and admits.
    ok(
        &dv(
            c,
            &ns,
            &[
                "-v",
                "create",
                "alice",
                "--secret",
                "team-keys",
                "--no-wait",
            ],
        ),
        "create --secret",
    );
    wait_pods(c, &ns, "alice", &pod_names_of("alice", 1));
    let pod = get_ok(c, &["pod", "alice-0", "-n", &ns]);
    let env_from = pod["spec"]["containers"][0]["envFrom"].to_string();
    assert!(env_from.contains("team-keys"), "{env_from}");
    printed.push_str(&both(&dv(c, &ns, &["-vvv", "get", "alice", "-o", "yaml"])));

    let log = wh.log();
    assert!(
        log.contains("listening"),
        "the webhook's log is captured: {log}"
    );
    for form in &secret_forms {
        assert!(
            !printed.contains(form.as_str()),
            "the plugin printed a secret value ({form}):\n{printed}"
        );
        assert!(
            !log.contains(form.as_str()),
            "the webhook logged a secret value ({form}):\n{log}"
        );
    }
}

// ---------------------------------------------------------------- 10. errors

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let _serial = serial();
    let _t = Timer::start("errors_are_clear_and_exit_non_zero");
    let c = shared();
    let ns = c.fresh_namespace("errors");
    let _wh = webhook_for(c, &ns);

    // An unreachable cluster: a kubeconfig pointing at a closed port.
    let port = free_port().expect("a port");
    let dir = tempfile::tempdir().expect("temp dir");
    let unreachable: PathBuf = dir.path().join("unreachable.kubeconfig");
    let admin = std::fs::read_to_string(&c.kubeconfig).expect("admin kubeconfig");
    let moved = admin.replace(&c.server, &format!("https://127.0.0.1:{port}"));
    assert_ne!(moved, admin, "the kubeconfig names {}", c.server);
    std::fs::write(&unreachable, moved).expect("write kubeconfig");
    for args in [
        vec!["list"],
        vec!["create", "x", "--no-wait"],
        vec!["status"],
    ] {
        let t0 = Instant::now();
        let out = devenv_as(&unreachable, &args);
        let text = fails(&out, &format!("{args:?} against a closed port"));
        assert_mentions(
            &text,
            &[
                "cannot reach the Kubernetes API server",
                &format!("127.0.0.1:{port}"),
                "--kubeconfig",
            ],
            "unreachable cluster",
        );
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "took {:?}",
            t0.elapsed()
        );
    }

    // A name that exists.
    ok(&dv(c, &ns, &["create", "dup", "--no-wait"]), "create dup");
    let before = desired_state(&get_ok(c, &["statefulset", "dup", "-n", &ns]));
    let text = fails(
        &dv(c, &ns, &["create", "dup", "--no-wait"]),
        "create dup again",
    );
    assert_mentions(&text, &["dup", "already exists", &ns], "duplicate");
    assert_eq!(
        desired_state(&get_ok(c, &["statefulset", "dup", "-n", &ns])),
        before,
        "the existing workspace is untouched"
    );

    // RBAC: a user who may only view this namespace.
    let user = unique_name("viewer");
    let viewer = c.user_kubeconfig(&user).expect("user kubeconfig");
    c.kubectl_ok([
        "create",
        "rolebinding",
        "view",
        "--clusterrole=view",
        &format!("--user={user}"),
        "-n",
        &ns,
    ]);
    let as_viewer = |args: &[&str]| {
        let mut a = vec!["-n", ns.as_str()];
        a.extend_from_slice(args);
        devenv_as(&viewer, a)
    };
    eventually("the view binding", Duration::from_secs(30), || {
        as_viewer(&["list"]).status.success().then_some(())
    });
    let text = ok(&as_viewer(&["list"]), "list as viewer");
    assert!(text.contains("dup"), "{text}");
    for (args, verb) in [
        (vec!["create", "zed", "--no-wait"], "cannot"),
        (vec!["delete", "dup"], "cannot delete"),
        (vec!["stop", "dup"], "cannot patch"),
        (
            vec!["secrets", "set", "s", "--from-literal", "K=V"],
            "cannot",
        ),
    ] {
        let text = fails(&as_viewer(&args), &format!("{args:?} as viewer"));
        assert_mentions(
            &text,
            &["forbidden", &user, verb, &ns, "kubectl auth can-i"],
            &format!("{args:?} as viewer"),
        );
    }
    assert!(absent(c, &["serviceaccount", "zed", "-n", &ns]));
    assert!(absent(c, &["statefulset", "zed", "-n", &ns]));
    assert_eq!(
        desired_state(&get_ok(c, &["statefulset", "dup", "-n", &ns])),
        before,
        "the viewer changed nothing"
    );
    // And one with no rights at all.
    let nobody = unique_name("nobody");
    let nobody_cfg = c.user_kubeconfig(&nobody).expect("user kubeconfig");
    let text = fails(
        &devenv_as(&nobody_cfg, ["-n", &ns, "list"]),
        "list with no rights",
    );
    assert_mentions(&text, &["forbidden", &nobody, "cannot list"], "no rights");
}

/// What a user reads on a failure is the error and its hint: at the default verbosity no
/// internal log line (`ERROR kube_client::client::builder: failed with ...`), and no
/// terminal colour codes when stderr is not a terminal. Today both appear above every
/// API error.
#[test]
fn error_output_is_plain_text_without_internal_log_lines() {
    let _serial = serial();
    let _t = Timer::start("error_output_is_plain_text_without_internal_log_lines");
    let c = shared();
    let port = free_port().expect("a port");
    let dir = tempfile::tempdir().expect("temp dir");
    let unreachable = dir.path().join("unreachable.kubeconfig");
    let admin = std::fs::read_to_string(&c.kubeconfig).expect("admin kubeconfig");
    std::fs::write(
        &unreachable,
        admin.replace(&c.server, &format!("https://127.0.0.1:{port}")),
    )
    .expect("write kubeconfig");
    let out = devenv_as(&unreachable, ["list"]);
    let text = fails(&out, "list against a closed port");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in non-terminal output:\n{text:?}"
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("error: ")),
        "the first line is the error, not a log line:\n{text}"
    );
    assert!(!text.contains("kube_client"), "internal log line:\n{text}");
}

// ---------------------------------------------------------------- the fixture

/// The fixture other suites reuse: stop / start_again keep the port and the CA, the port
/// is closed while stopped, and every start is a process that stays up.
#[test]
fn webhook_fixture_stops_and_starts_again_on_the_same_port() {
    let _serial = serial();
    let _t = Timer::start("webhook_fixture_stops_and_starts_again_on_the_same_port");
    let c = shared();
    let mut wh = WebhookProcess::start(c, None).expect("starting devenv-webhook");
    let (url, ca) = (wh.url(), wh.ca_pem());
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    let connects = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    for round in 0..4 {
        assert!(wh.is_running(), "round {round}: not running:\n{}", wh.log());
        assert!(connects(wh.port()), "round {round}: port closed");
        if round % 2 == 0 {
            wh.stop().expect("stop");
        } else {
            wh.kill();
        }
        assert!(!wh.is_running());
        assert!(!connects(wh.port()), "round {round}: still listening");
        wh.start_again().expect("start again");
        assert_eq!(wh.url(), url);
        assert_eq!(wh.ca_pem(), ca);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(wh.is_running(), "not running:\n{}", wh.log());
    let log = wh.log();
    assert_eq!(log.matches("listening").count(), 5, "{log}");
    let err = wh.start_again().expect_err("starting a running webhook");
    assert!(err.to_string().contains("already running"), "{err}");
}
