//! Admission decisions without the network: request bytes -> AdmissionReview ->
//! decision -> response bytes, exactly the work `devenv-webhook` does per request
//! between reading the body and writing the answer. Regressions in parsing,
//! `devenv_shared::admission` or serialisation show here without TLS and HTTP noise.
//!
//! `cargo bench -p devenv-bench --bench admission`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use devenv_bench::Fixture;
use devenv_shared::admission::catalog::EmptyCluster;
use devenv_shared::admission::mutate::mutate_pod;
use devenv_shared::admission::request::{self, Decision};
use devenv_shared::admission::review::parse_review;
use devenv_shared::admission::validate::validate_pod;
use devenv_shared::admission::violation::NoExtraSecrets;
use devenv_shared::model::policy::Policy;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionRequest;
use kube::core::DynamicObject;

const UID: &str = "0000000a-0000-4000-8000-00000000002a";

#[derive(Clone, Copy)]
enum Endpoint {
    Mutate,
    Validate,
}

/// What the webhook does per request: parse, decide, serialise.
fn handle(policy: &Policy, endpoint: Endpoint, body: &[u8]) -> Vec<u8> {
    let review = match parse_review(body) {
        Ok(r) => r,
        Err(e) => panic!("fixture does not parse: {e}"),
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => panic!("fixture has no request: {e}"),
    };
    let decision: Decision = match endpoint {
        Endpoint::Mutate => request::mutate(policy, &request),
        Endpoint::Validate => request::validate(policy, &EmptyCluster, &request),
    };
    match serde_json::to_vec(&decision.response.into_review()) {
        Ok(v) => v,
        Err(e) => panic!("response does not serialise: {e}"),
    }
}

fn fixture_body(name: &str) -> Vec<u8> {
    match Fixture::load(name) {
        Ok(f) => f.with_uid(UID),
        Err(e) => panic!("{e:#}"),
    }
}

fn pipeline(c: &mut Criterion) {
    let policy = Policy::default();
    let mut group = c.benchmark_group("admission");
    for (endpoint, ep_name) in [
        (Endpoint::Mutate, "mutate"),
        (Endpoint::Validate, "validate"),
    ] {
        for name in ["workspace-pod", "bare-pod-violations", "non-workspace-pod"] {
            let body = fixture_body(name);
            // Sanity: the answer echoes the uid.
            let out = handle(&policy, endpoint, &body);
            assert!(
                String::from_utf8_lossy(&out).contains(UID),
                "{ep_name}/{name}: uid not echoed"
            );
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(format!("{ep_name}/{name}"), |b| {
                b.iter(|| handle(black_box(&policy), endpoint, black_box(&body)))
            });
        }
    }
    group.finish();
}

/// The stages of the mutate path for the workspace pod, to see where time goes.
fn stages(c: &mut Criterion) {
    let policy = Policy::default();
    let body = fixture_body("workspace-pod");
    let parse = |body: &[u8]| -> AdmissionRequest<DynamicObject> {
        let review = match parse_review(body) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        match review.try_into() {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    };
    let request = parse(&body);
    let pod: Pod = match request
        .object
        .as_ref()
        .map(serde_json::to_value)
        .and_then(Result::ok)
        .map(serde_json::from_value)
    {
        Some(Ok(p)) => p,
        _ => panic!("fixture object is not a Pod"),
    };
    let mut group = c.benchmark_group("stages/workspace-pod");
    group.bench_function("parse-review", |b| b.iter(|| parse(black_box(&body))));
    // The floor under parse-review: the body as a plain JSON tree.
    group.bench_function("parse-json-value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)))
    });
    // The pod alone, straight from its bytes into the typed struct.
    let object_bytes = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => v["request"]["object"].to_string().into_bytes(),
        Err(e) => panic!("{e}"),
    };
    group.bench_function("parse-typed-pod", |b| {
        b.iter(|| serde_json::from_slice::<Pod>(black_box(&object_bytes)))
    });
    group.bench_function("admission::mutate", |b| {
        b.iter(|| request::mutate(black_box(&policy), black_box(&request)))
    });
    group.bench_function("mutate_pod", |b| {
        b.iter(|| mutate_pod(black_box(&policy), black_box(&pod)))
    });
    group.bench_function("validate_pod", |b| {
        b.iter(|| validate_pod(black_box(&policy), black_box(&pod), &NoExtraSecrets))
    });
    let decision = request::mutate(&policy, &request);
    group.bench_function("serialize-response", |b| {
        b.iter_batched(
            || decision.response.clone(),
            |r| serde_json::to_vec(&r.into_review()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, pipeline, stages);
criterion_main!(benches);
