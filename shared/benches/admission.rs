//! Admission hot paths: the webhook answers every pod CREATE in the cluster, so the
//! non-workspace path must be near free and the workspace path cheap.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use devenv_shared::admission::catalog::EmptyCluster;
use devenv_shared::admission::mutate::mutate_pod;
use devenv_shared::admission::request;
use devenv_shared::admission::validate::validate_pod;
use devenv_shared::admission::violation::NoExtraSecrets;
use devenv_shared::model::policy::Policy;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::{json, Value};

fn pod(labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "alice", "namespace": "team-a", "labels": labels},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [
                {"name": "dev", "image": "ghcr.io/devenv/base:1", "env": [{"name": "A", "value": "b"}]},
                {"name": "side", "image": "ghcr.io/devenv/side:1", "ports": [{"containerPort": 8080}]}
            ]
        }
    })
}

fn request(object: Value) -> Option<AdmissionRequest<DynamicObject>> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "operation": "CREATE", "namespace": "team-a", "name": "alice",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "userInfo": {}, "object": object
        }
    }))
    .ok()?;
    review.try_into().ok()
}

fn benches(c: &mut Criterion) {
    let policy = Policy::default();
    let workspace = pod(json!({"devenv.io/workspace": "alice"}));
    let other = pod(json!({"app": "web"}));
    let (Some(ws_req), Some(other_req)) = (request(workspace.clone()), request(other)) else {
        return;
    };
    let Ok(typed) = serde_json::from_value::<Pod>(workspace) else {
        return;
    };

    c.bench_function("admission::mutate non-workspace pod", |b| {
        b.iter(|| request::mutate(black_box(&policy), black_box(&other_req)))
    });
    c.bench_function("admission::mutate workspace pod", |b| {
        b.iter(|| request::mutate(black_box(&policy), black_box(&ws_req)))
    });
    c.bench_function("admission::validate workspace pod", |b| {
        b.iter(|| request::validate(black_box(&policy), &EmptyCluster, black_box(&ws_req)))
    });
    c.bench_function("mutate_pod", |b| {
        b.iter(|| mutate_pod(black_box(&policy), black_box(&typed)))
    });
    c.bench_function("validate_pod", |b| {
        b.iter(|| validate_pod(black_box(&policy), black_box(&typed), &NoExtraSecrets))
    });
}

criterion_group!(admission_benches, benches);
criterion_main!(admission_benches);
