//! Objects of the cluster as JSON, through the real `kubectl` as the admin: get them
//! ([`get`], [`get_ok`], [`fetch`]), check they are gone ([`absent`]), create them
//! ([`create`], [`create_ok`]), and read the fields the suites look at.

use std::process::Output;

use serde_json::Value;

use crate::output::{json_of, stderr, stdout};
use crate::{check_ok, Cluster};

/// `kubectl get ARGS -o json` as admin: `None` when it fails for any reason (NotFound,
/// or a transient error a polling caller retries).
pub fn get(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut a: Vec<&str> = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let out = c.kubectl(&a);
    out.status.success().then(|| json_of(&stdout(&out)))
}

/// `kubectl get WHAT -n NS -o json` (`WHAT` such as `pod/alice-0`), as [`get`].
pub fn get_in(c: &Cluster, ns: &str, what: &str) -> Option<Value> {
    get(c, &[what, "-n", ns])
}

/// Like [`get`], but panics unless it succeeds.
pub fn get_ok(c: &Cluster, args: &[&str]) -> Value {
    get(c, args).unwrap_or_else(|| panic!("kubectl get {} failed", args.join(" ")))
}

/// Like [`get`], but `None` only for NotFound: any other failure panics with it.
pub fn fetch(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut a: Vec<&str> = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let out = c.kubectl(&a);
    if !out.status.success() {
        let err = stderr(&out);
        assert!(
            err.contains("NotFound"),
            "kubectl get {}: {err}",
            args.join(" ")
        );
        return None;
    }
    Some(json_of(&stdout(&out)))
}

/// Whether `kubectl get` says NotFound (and not some other failure).
pub fn absent(c: &Cluster, args: &[&str]) -> bool {
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

/// `kubectl create -n NS -f -` of a manifest as admin.
pub fn create(c: &Cluster, ns: &str, manifest: &Value) -> Output {
    c.kubectl_stdin(["create", "-n", ns, "-f", "-"], &manifest.to_string())
}

/// Like [`create`], but panics with kubectl's output unless it succeeds.
pub fn create_ok(c: &Cluster, ns: &str, manifest: &Value) {
    check_ok(&["create", &manifest.to_string()], &create(c, ns, manifest));
}

/// The `items` of a list.
pub fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// `metadata.name`.
pub fn name_of(o: &Value) -> String {
    o["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `metadata.uid`.
pub fn uid(o: &Value) -> String {
    o["metadata"]["uid"].as_str().unwrap_or_default().to_owned()
}

/// `metadata.annotations[key]`.
pub fn annotation(o: &Value, key: &str) -> Option<String> {
    o["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_owned)
}

/// A StatefulSet's `spec.replicas` (1, the API's default, when absent).
pub fn replicas(sts: &Value) -> i64 {
    sts["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// A pod that is not being deleted and whose `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The `events.k8s.io` Events of namespace `ns` regarding the object named `name`, in
/// the order the API lists them.
pub fn events_about(c: &Cluster, ns: &str, name: &str) -> Vec<Value> {
    let out = c.kubectl(["get", "events.events.k8s.io", "-n", ns, "-o", "json"]);
    let list = json_of(&check_ok(&["get", "events", "-n", ns], &out));
    items(&list)
        .into_iter()
        .filter(|e| e["regarding"]["name"] == name)
        .collect()
}

/// The reasons of [`events_about`].
pub fn event_reasons(c: &Cluster, ns: &str, name: &str) -> Vec<String> {
    events_about(c, ns, name)
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect()
}
