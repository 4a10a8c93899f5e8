//! manifests/quota.yaml fits exactly 3 workspaces of the default policy's
//! small tier, and parses as the Kubernetes types of the pinned API version.

mod common;

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};

use devenv_shared::model::policy::Policy;
use devenv_shared::model::quantity::{cpu_millicores, memory_bytes};

const USERS: i128 = 3;

fn docs() -> (ResourceQuota, LimitRange) {
    let text = std::fs::read_to_string(common::repo_root().join("manifests/quota.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    let quota: ResourceQuota = serde_json::from_value(docs[0].clone()).unwrap();
    let limits: LimitRange = serde_json::from_value(docs[1].clone()).unwrap();
    // Round trip: no field was lost (a misspelled field would be).
    assert_eq!(serde_json::to_value(&quota).unwrap(), docs[0]);
    assert_eq!(serde_json::to_value(&limits).unwrap(), docs[1]);
    (quota, limits)
}

#[test]
fn quota_fits_three_small_workspaces() {
    let policy = Policy::default();
    let small = &policy.tiers["small"];
    let (quota, _) = docs();
    let hard = quota.spec.unwrap().hard.unwrap();
    let cpu = |k: &str| cpu_millicores(&hard[k].0).unwrap();
    let mem = |k: &str| memory_bytes(&hard[k].0).unwrap();
    assert_eq!(
        cpu("requests.cpu"),
        USERS * cpu_millicores(&small.requests.cpu).unwrap()
    );
    assert_eq!(
        cpu("limits.cpu"),
        USERS * cpu_millicores(&small.limits.cpu).unwrap()
    );
    assert_eq!(
        mem("requests.memory"),
        USERS * memory_bytes(&small.requests.memory).unwrap()
    );
    assert_eq!(
        mem("limits.memory"),
        USERS * memory_bytes(&small.limits.memory).unwrap()
    );
    let storage: i128 = policy
        .volumes
        .iter()
        .map(|v| memory_bytes(&v.size).unwrap())
        .sum();
    assert_eq!(mem("requests.storage"), USERS * storage);
    assert_eq!(
        hard["persistentvolumeclaims"].0,
        (USERS * policy.volumes.len() as i128).to_string()
    );
    assert_eq!(hard["pods"].0, USERS.to_string());
}

#[test]
fn limit_range_defaults_to_the_small_tier() {
    let policy = Policy::default();
    let small = &policy.tiers["small"];
    let (_, lr) = docs();
    let items = lr.spec.unwrap().limits;
    let container = items.iter().find(|l| l.type_ == "Container").unwrap();
    let get = |m: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               k: &str| { m.as_ref().unwrap()[k].0.clone() };
    assert_eq!(get(&container.default_request, "cpu"), small.requests.cpu);
    assert_eq!(
        get(&container.default_request, "memory"),
        small.requests.memory
    );
    assert_eq!(get(&container.default, "cpu"), small.limits.cpu);
    assert_eq!(get(&container.default, "memory"), small.limits.memory);
    assert_eq!(get(&container.max, "cpu"), small.limits.cpu);
    assert_eq!(get(&container.max, "memory"), small.limits.memory);
    let pvc = items
        .iter()
        .find(|l| l.type_ == "PersistentVolumeClaim")
        .unwrap();
    let max = memory_bytes(&get(&pvc.max, "storage")).unwrap();
    let min = memory_bytes(&get(&pvc.min, "storage")).unwrap();
    for v in &policy.volumes {
        let size = memory_bytes(&v.size).unwrap();
        assert!(
            min <= size && size <= max,
            "volume {} ({}) outside the LimitRange",
            v.name,
            v.size
        );
    }
}
