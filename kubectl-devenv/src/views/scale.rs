//! What `scale`, `stop` and `start` send: patches of the workspace
//! StatefulSet, computed from the StatefulSet as read. Claims are never
//! touched: the retention policy keeps them when pods go away.
//!
//! Guarded patches carry the `resourceVersion` that was read, so a concurrent
//! change between the read and the write is a conflict, never a lost update.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use devenv_shared::admission::validate;
use devenv_shared::build::workspace;
use devenv_shared::lifecycle::patches;
use devenv_shared::model::keys::TIER_ANNOTATION;
use devenv_shared::model::keys::{CLONE_CONTAINER, WORKSPACE_CONTAINER};
use devenv_shared::model::policy::Policy;

use crate::error::Error;

/// Merge patch setting the number of pods.
pub fn replicas_patch(replicas: i32) -> Value {
    json!({ "spec": { "replicas": replicas } })
}

fn annotation<'a>(sts: &'a StatefulSet, key: &str) -> Option<&'a str> {
    sts.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn container_resources(sts: &StatefulSet, name: &str) -> Option<ResourceRequirements> {
    sts.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == name)?
        .resources
        .clone()
}

fn has_init_container(sts: &StatefulSet, name: &str) -> bool {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.init_containers.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.name == name))
}

/// Strategic merge patch for a vertical scale: new resources and tier
/// annotation on the pod template (a rolling restart; claims stay).
///
/// With `tier`, resources come from that tier (plus `cpu`/`memory`). Without,
/// the current resources are kept and only `cpu`/`memory` replaced, so an
/// earlier override of the other resource survives.
pub fn vertical_patch(
    sts: &StatefulSet,
    policy: &Policy,
    tier: Option<&str>,
    cpu: Option<&str>,
    memory: Option<&str>,
) -> Result<Value, Error> {
    let current_tier = annotation(sts, TIER_ANNOTATION)
        .unwrap_or(policy.default_tier.as_str())
        .to_owned();
    let (new_tier, resources) = match tier {
        Some(t) => (t.to_owned(), workspace::resources(policy, t, cpu, memory)?),
        None => {
            for (field, value) in [("cpu", cpu), ("memory", memory)] {
                if let Some(v) = value.filter(|v| !workspace::is_quantity(v)) {
                    return Err(workspace::WorkspaceError::InvalidQuantity {
                        field: field.into(),
                        value: v.into(),
                    }
                    .into());
                }
            }
            let mut r = match container_resources(sts, WORKSPACE_CONTAINER) {
                Some(r) => r,
                None => workspace::resources(policy, &current_tier, None, None)?,
            };
            for (key, value) in [("cpu", cpu), ("memory", memory)] {
                if let Some(v) = value {
                    let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.to_owned());
                    r.requests
                        .get_or_insert_with(Default::default)
                        .insert(key.into(), q.clone());
                    r.limits
                        .get_or_insert_with(Default::default)
                        .insert(key.into(), q);
                }
            }
            (current_tier, r)
        }
    };
    let resources = serde_json::to_value(&resources).map_err(anyhow::Error::from)?;
    let mut pod_spec = json!({
        "containers": [{ "name": WORKSPACE_CONTAINER, "resources": resources }]
    });
    if has_init_container(sts, CLONE_CONTAINER) {
        pod_spec["initContainers"] = json!([{ "name": CLONE_CONTAINER, "resources": resources }]);
    }
    Ok(json!({
        "metadata": {
            "resourceVersion": sts.metadata.resource_version,
            "annotations": { TIER_ANNOTATION: new_tier },
        },
        "spec": {
            "template": {
                "metadata": { "annotations": { TIER_ANNOTATION: new_tier } },
                "spec": pod_spec,
            }
        }
    }))
}

/// Merge patch for `stop` ([`patches::stop_patch`], guarded by the
/// resourceVersion read). `None` when already stopped.
pub fn stop_patch(sts: &StatefulSet, now: Timestamp) -> Option<Value> {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    (replicas > 0).then(|| patches::guarded(patches::stop_patch(sts, now), sts))
}

/// Merge patch for `start` ([`patches::start_patch`]: restores the
/// remembered replicas, default 1, and clears the stop and hibernation
/// marks). `None` when already running.
pub fn start_patch(sts: &StatefulSet, now: Timestamp) -> Option<Value> {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    (replicas == 0).then(|| patches::guarded(patches::start_patch(sts, now), sts))
}

/// The StatefulSet as it will be after a vertical patch, to check it locally.
pub fn apply_vertical(sts: &StatefulSet, patch: &Value) -> Result<StatefulSet, Error> {
    let mut out = sts.clone();
    let tier = patch["metadata"]["annotations"][TIER_ANNOTATION]
        .as_str()
        .map(str::to_owned);
    let resources: Option<ResourceRequirements> = serde_json::from_value(
        patch["spec"]["template"]["spec"]["containers"][0]["resources"].clone(),
    )
    .map_err(anyhow::Error::from)?;
    if let Some(t) = &tier {
        out.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(TIER_ANNOTATION.into(), t.clone());
    }
    if let Some(spec) = out.spec.as_mut() {
        if let Some(t) = &tier {
            spec.template
                .metadata
                .get_or_insert_with(Default::default)
                .annotations
                .get_or_insert_with(Default::default)
                .insert(TIER_ANNOTATION.into(), t.clone());
        }
        if let Some(pod) = spec.template.spec.as_mut() {
            let inits = pod
                .init_containers
                .iter_mut()
                .flatten()
                .filter(|c| c.name == CLONE_CONTAINER);
            for c in pod
                .containers
                .iter_mut()
                .filter(|c| c.name == WORKSPACE_CONTAINER)
                .chain(inits)
            {
                c.resources = resources.clone();
            }
        }
    }
    Ok(out)
}

/// Checks a vertical change against the policy before sending it, as the
/// webhook will (tier limits): a refusal names the limit now, not at the
/// first restarted pod.
pub fn check_vertical(sts: &StatefulSet, policy: &Policy, patch: &Value) -> Result<(), Error> {
    let after = apply_vertical(sts, patch)?;
    let violations = validate::validate_statefulset(policy, &after, &|_: &str, _: &str| true);
    if violations.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = violations.iter().map(|v| format!("  - {v}")).collect();
    Err(Error::Usage(format!(
        "the policy does not allow this size:\n{}",
        list.join("\n")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use devenv_shared::build::workspace::{build, WorkspaceSpec};
    use devenv_shared::model::keys;

    fn sts(replicas: i32, repo: bool) -> StatefulSet {
        let mut s = WorkspaceSpec::new("demo", "team", "img");
        s.replicas = replicas;
        if repo {
            s.repo = Some("https://x/y.git".into());
        }
        let mut sts = build(&s, &Policy::default()).unwrap().stateful_set;
        sts.metadata.resource_version = Some("42".into());
        sts
    }

    #[test]
    fn tier_change_takes_the_tiers_resources() {
        let p = Policy::default();
        let patch = vertical_patch(&sts(1, true), &p, Some("large"), None, None).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(patch["metadata"]["annotations"][TIER_ANNOTATION], "large");
        let t = &patch["spec"]["template"];
        assert_eq!(t["metadata"]["annotations"][TIER_ANNOTATION], "large");
        let c = &t["spec"]["containers"][0];
        assert_eq!(c["name"], WORKSPACE_CONTAINER);
        assert_eq!(
            c["resources"]["limits"]["memory"],
            p.tiers["large"].limits.memory
        );
        assert_eq!(t["spec"]["initContainers"][0]["name"], CLONE_CONTAINER);
        // Without a clone container, none is added by the patch.
        let patch = vertical_patch(&sts(1, false), &p, Some("large"), None, None).unwrap();
        assert!(patch["spec"]["template"]["spec"]
            .get("initContainers")
            .is_none());
        assert!(vertical_patch(&sts(1, false), &p, Some("huge"), None, None).is_err());
    }

    #[test]
    fn cpu_only_keeps_the_current_memory_and_tier() {
        let p = Policy::default();
        let patch = vertical_patch(&sts(1, false), &p, None, Some("1500m"), None).unwrap();
        assert_eq!(patch["metadata"]["annotations"][TIER_ANNOTATION], "small");
        let r = &patch["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"]["cpu"], "1500m");
        assert_eq!(r["limits"]["cpu"], "1500m");
        assert_eq!(r["limits"]["memory"], p.tiers["small"].limits.memory);
        assert!(vertical_patch(&sts(1, false), &p, None, Some("fast"), None).is_err());
    }

    #[test]
    fn stop_and_start() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let running = sts(3, false);
        let stop = stop_patch(&running, now).unwrap();
        assert_eq!(stop["spec"]["replicas"], 0);
        assert_eq!(
            stop["metadata"]["annotations"][keys::REPLICAS_BEFORE_STOP],
            "3"
        );
        assert_eq!(stop["metadata"]["resourceVersion"], "42");
        assert!(start_patch(&running, now).is_none());

        let mut stopped = sts(0, false);
        stopped
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(keys::REPLICAS_BEFORE_STOP.into(), "3".into());
        assert!(stop_patch(&stopped, now).is_none());
        let start = start_patch(&stopped, now).unwrap();
        assert_eq!(start["spec"]["replicas"], 3);
        assert!(start["metadata"]["annotations"][keys::REPLICAS_BEFORE_STOP].is_null());
        assert!(start["metadata"]["annotations"][keys::HIBERNATED].is_null());
        // Nothing remembered: one pod.
        let start = start_patch(&sts(0, false), now).unwrap();
        assert_eq!(start["spec"]["replicas"], 1);
    }

    #[test]
    fn vertical_changes_are_checked_against_the_tier() {
        let p = Policy::default();
        let s = sts(1, true);
        let ok = vertical_patch(&s, &p, Some("large"), None, None).unwrap();
        assert!(check_vertical(&s, &p, &ok).is_ok());
        let after = apply_vertical(&s, &ok).unwrap();
        let pod = after.spec.unwrap().template.spec.unwrap();
        assert_eq!(
            pod.containers[0]
                .resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap()["memory"]
                .0,
            "16Gi"
        );
        assert_eq!(
            pod.init_containers.unwrap()[0]
                .resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap()["memory"]
                .0,
            "16Gi"
        );
        let too_big = vertical_patch(&s, &p, None, None, Some("10Gi")).unwrap();
        let e = check_vertical(&s, &p, &too_big).unwrap_err().to_string();
        assert!(e.contains("above the memory limit"), "{e}");
    }

    #[test]
    fn replicas_patch_is_minimal() {
        assert_eq!(replicas_patch(2), json!({"spec": {"replicas": 2}}));
    }
}
