//! What the suites know about a workspace from the outside, as the README promises it:
//! its labels and annotations, its three claims, the pods and claims its StatefulSet
//! makes, and every mutation the webhook makes to a stored pod. Written here from the
//! documentation, not imported from `devenv_shared`, so a change of the product's
//! constants shows up as a failing suite.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::objects::{get, get_ok, items, name_of};
use crate::{eventually, Cluster};

/// The label that makes an object a workspace's.
pub const WORKSPACE_LABEL: &str = "devenv.io/workspace";
/// The tier annotation (StatefulSet, its template, the pods).
pub const TIER: &str = "devenv.io/tier";
/// When a session last used the workspace (RFC 3339).
pub const LAST_ACTIVITY: &str = "devenv.io/last-activity";
/// A workspace's own idle timeout.
pub const IDLE_TIMEOUT: &str = "devenv.io/idle-timeout";
/// When the lifecycle controller will stop a warned workspace.
pub const IDLE_WARNING: &str = "devenv.io/idle-warning";
/// Set by the lifecycle controller on a workspace it stopped.
pub const HIBERNATED: &str = "devenv.io/hibernated";
/// When a workspace was stopped.
pub const STOPPED_AT: &str = "devenv.io/stopped-at";
/// A stopped workspace's own time to live.
pub const TTL: &str = "devenv.io/ttl";
/// The replicas `start` restores.
pub const REPLICAS_BEFORE_STOP: &str = "devenv.io/replicas-before-stop";

/// The three claim templates of the default policy: (template, size, mount path).
pub const VOLUMES: [(&str, &str, &str); 3] = [
    ("workspace", "10Gi", "/workspace"),
    ("history", "1Gi", "/commandhistory"),
    ("config", "1Gi", "/home/dev/.config"),
];

/// A PersistentVolume of `class` made for `claim` in `ns` alone (`claimRef`), as big as the
/// default policy's template of that claim asks, so the claim binds without a provisioner and
/// its capacity is exactly its first size. `host_dir` is where its (never written) hostPath
/// would be: no storage is real in the control-plane and scale suites.
pub fn volume_for_claim(ns: &str, claim: &str, class: &str, host_dir: &str) -> Value {
    let size = VOLUMES
        .iter()
        .find(|(template, _, _)| claim.starts_with(&format!("{template}-")))
        .map_or("1Gi", |(_, size, _)| *size);
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": { "name": format!("{ns}-{claim}") },
        "spec": {
            "capacity": { "storage": size },
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": { "path": format!("{host_dir}/{claim}") },
            "claimRef": { "namespace": ns, "name": claim },
        },
    })
}

/// How long the control-plane suites wait for a controller to catch up.
pub const WAIT: Duration = Duration::from_secs(90);

/// A bare pod labelled as workspace `ws`, with one container `workspace` as given.
pub fn workspace_pod(name: &str, ws: &str, container: Value, volumes: Option<Value>) -> Value {
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
pub fn plain_container() -> Value {
    json!({ "name": "workspace", "image": "busybox:1.36", "command": ["sleep", "3600"] })
}

/// Names of the pods of workspace `ws` (by label), sorted; Terminating ones included.
pub fn pod_names(c: &Cluster, ns: &str, ws: &str) -> Vec<String> {
    let sel = format!("{WORKSPACE_LABEL}={ws}");
    let mut names: Vec<String> = items(&get_ok(c, &["pods", "-n", ns, "-l", &sel]))
        .iter()
        .map(name_of)
        .collect();
    names.sort();
    names
}

/// `NAME-0` .. `NAME-(n-1)`: the pods of a StatefulSet of `n` replicas.
pub fn pod_names_of(ws: &str, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{ws}-{i}")).collect()
}

/// Claims of workspace `ws` (by label): name -> claim.
pub fn claims(c: &Cluster, ns: &str, ws: &str) -> BTreeMap<String, Value> {
    let sel = format!("{WORKSPACE_LABEL}={ws}");
    items(&get_ok(c, &["pvc", "-n", ns, "-l", &sel]))
        .into_iter()
        .map(|p| (name_of(&p), p))
        .collect()
}

/// Claims of workspace `ws`: name -> uid.
pub fn claim_uids(c: &Cluster, ns: &str, ws: &str) -> BTreeMap<String, String> {
    claims(c, ns, ws)
        .into_iter()
        .map(|(n, p)| (n, p["metadata"]["uid"].as_str().unwrap_or_default().into()))
        .collect()
}

/// The claim names the StatefulSet controller makes: `<template>-<sts>-<ordinal>`, sorted.
pub fn sts_claim_names(sts: &str, ordinals: std::ops::Range<u32>) -> Vec<String> {
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

/// Waits until the pods of workspace `ws` are exactly `want`.
pub fn wait_pods(c: &Cluster, ns: &str, ws: &str, want: &[String]) {
    eventually(
        &format!("pods of {ws} in {ns} to be exactly {want:?}"),
        WAIT,
        || (pod_names(c, ns, ws) == want).then_some(()),
    );
}

/// Waits until the claims of workspace `ws` are exactly `want`; returns them.
pub fn wait_claims(c: &Cluster, ns: &str, ws: &str, want: &[String]) -> BTreeMap<String, Value> {
    eventually(
        &format!("claims of {ws} in {ns} to be exactly {want:?}"),
        WAIT,
        || {
            let got = claims(c, ns, ws);
            (got.keys().cloned().collect::<Vec<_>>() == want).then_some(got)
        },
    )
}

/// Waits until the StatefulSet controller has caught up with the spec and stopped
/// writing status (its status writes change the resourceVersion `stop`, `start` and
/// `scale --tier` guard their patches with; see the control-plane suite's
/// `guarded_changes_right_after_other_changes_do_not_conflict`).
pub fn wait_settled(c: &Cluster, ns: &str, sts: &str) {
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

/// Every mutation the webhook promises, on a stored pod of workspace tier `limits`
/// (cpu, memory) / `requests`, with claims named by `claim_name(template)`.
pub fn assert_every_mutation(
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
