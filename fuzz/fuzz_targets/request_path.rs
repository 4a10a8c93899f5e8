//! Arbitrary bytes down the webhook's request path: parse as an
//! `AdmissionReview<DynamicObject>`, decide with `admission::mutate` and
//! `admission::validate`, serialise the response.
//!
//! Must never panic. Besides, for every request that parses:
//! - both responses serialise and echo the request uid;
//! - a mutation patch is a JSON Patch that applies to the object the API server
//!   sent (the API server rejects the request otherwise).

#![no_main]

use std::sync::OnceLock;

use devenv_shared::admission::request;
use devenv_shared::admission::review::parse_review;
use devenv_shared::admission::catalog::EmptyCluster;
use devenv_shared::model::policy::Policy;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::core::DynamicObject;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn policies() -> &'static [Policy; 2] {
    static P: OnceLock<[Policy; 2]> = OnceLock::new();
    P.get_or_init(|| {
        let custom = Policy::from_yaml(
            "defaultTier: micro\n\
             user: {uid: 2000, gid: 2000, fsGroup: 2000, configDir: /home/u/.config}\n\
             volumes:\n\
             - {name: workspace, size: 5Gi, mountPath: /workspace}\n\
             - {name: cache, size: 1Gi, mountPath: /home/u/.cache, storageClass: fast}\n\
             secrets: {inject: [a, b-c]}\n",
        )
        .unwrap_or_else(|e| panic!("fuzz policy is invalid: {e}"));
        [Policy::default(), custom]
    })
}

/// The object as the API server would send it: JSON without `null` members
/// (Go's encoder omits empty optional fields).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // The webhook's parser; whenever serde's derive on kube's types reads the body,
    // it must read it too.
    let review = match parse_review(data) {
        Ok(review) => review,
        Err(e) => {
            assert!(
                serde_json::from_slice::<AdmissionReview<DynamicObject>>(data).is_err(),
                "parse_review refuses a review serde reads: {e}"
            );
            return;
        }
    };
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let Ok(request) = request else {
        return;
    };
    let policy = &policies()[usize::from(data.len() % 2 == 1)];

    for decision in [
        request::mutate(policy, &request),
        request::validate(policy, &EmptyCluster, &request),
    ] {
        let response = decision.response;
        assert_eq!(response.uid, request.uid, "response does not echo the uid");
        let patch = response.patch.clone();
        let allowed = response.allowed;
        let bytes = serde_json::to_vec(&response.into_review())
            .unwrap_or_else(|e| panic!("response does not serialise: {e}"));
        let _: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("response is not JSON: {e}"));

        if let (true, Some(patch)) = (allowed, patch) {
            let patch: json_patch::Patch = serde_json::from_slice(&patch)
                .unwrap_or_else(|e| panic!("patch is not a JSON Patch: {e}"));
            // The object exactly as sent (duplicate keys resolved like Go: last wins).
            let Ok(raw) = serde_json::from_slice::<Value>(data) else {
                return;
            };
            let Some(mut object) = raw.pointer("/request/object").cloned() else {
                panic!("a patch for a request without object");
            };
            strip_nulls(&mut object);
            if let Err(e) = json_patch::patch(&mut object, &patch) {
                panic!(
                    "patch does not apply to the object: {e}\npatch: {}",
                    serde_json::to_string(&patch).unwrap_or_default()
                );
            }
        }
    }
});
