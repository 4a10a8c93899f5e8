//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses a different subset

use devenv_shared::admission::mutate::{mutate_pod, PodMutation};
use devenv_shared::model::policy::Policy;
use json_patch::{Patch, PatchOperation};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

/// A raw pod document from YAML (kept raw: patches must apply to what the API server sends,
/// nulls included, not to a re-serialised typed pod).
pub fn raw(yaml: &str) -> Value {
    match serde_yaml::from_str(yaml) {
        Ok(v) => v,
        Err(e) => panic!("bad test YAML: {e}\n{yaml}"),
    }
}

pub fn typed(doc: &Value) -> Pod {
    match serde_json::from_value(doc.clone()) {
        Ok(p) => p,
        Err(e) => panic!("not a Pod: {e}\n{doc}"),
    }
}

/// Applies a patch to a raw document; panics with the patch on failure.
pub fn apply_raw(doc: &Value, patch: &Patch) -> Value {
    let mut out = doc.clone();
    if let Err(e) = json_patch::patch(&mut out, &patch.0) {
        panic!(
            "patch does not apply: {e}\npatch: {}\ndoc: {doc}",
            serde_json::to_string_pretty(patch).unwrap_or_default()
        );
    }
    out
}

/// Mutates a raw pod, applies the patch to the raw document and checks the result is a Pod
/// and that mutating again changes nothing.
pub fn mutate_raw(policy: &Policy, doc: &Value) -> (PodMutation, Value, Pod) {
    let pod = typed(doc);
    let mutation = mutate_pod(policy, &pod);
    assert!(
        mutation
            .patch
            .0
            .iter()
            .all(|op| matches!(op, PatchOperation::Add(_))),
        "only add operations expected: {:?}",
        mutation.patch
    );
    let patched_doc = apply_raw(doc, &mutation.patch);
    let patched = typed(&patched_doc);
    let again = mutate_pod(policy, &patched);
    assert!(
        again.patch.0.is_empty(),
        "not idempotent, second patch: {}",
        serde_json::to_string_pretty(&again.patch).unwrap_or_default()
    );
    assert_eq!(
        again.bare_claims, mutation.bare_claims,
        "claims differ on re-mutation"
    );
    (mutation, patched_doc, patched)
}

/// Paths of a patch, as strings.
pub fn paths(patch: &Patch) -> Vec<String> {
    patch.0.iter().map(|op| op.path().to_string()).collect()
}

/// Value at a JSON pointer.
pub fn at<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    doc.pointer(pointer)
}
