//! Mutation of workspace pods and StatefulSets into JSON Patches: fill in what is missing,
//! never overwrite what is stated.
//!
//! The patches only ever `add`, and only where the pod has nothing (the key is absent or
//! `null`): when a parent object is missing the whole object is added, since an `add` below
//! a missing parent fails; list items are appended with `/-`. Keys are escaped per RFC 6901.
//! So a patch applies to any pod shape, and mutating the patched pod again yields an empty
//! patch.
//!
//! Decisions are made on the typed pod; its `None` is exactly the raw object's "absent or
//! null", which is where an `add` is both valid and non-destructive.

use std::collections::{BTreeMap, HashSet};

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, Pod, SecurityContext};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use serde_json::{json, Map, Value};

use crate::keys::{TIER_ANNOTATION, WORKSPACE_LABEL};
use crate::objects::{bare_pod_claim, bare_pod_claim_name, claim_template, statefulset_claim_name};
use crate::policy::{is_dns1123_label, Policy, Tier};
use crate::pss::is_windows;
use crate::quantity::Quantity;

/// The result of mutating a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMutation {
    /// JSON Patch for the admission response; empty when nothing is missing.
    pub patch: Patch,
    /// Bare-pod claims the pod's volumes reference and the webhook must ensure exist
    /// (named `<volume>-<workspace>`, see [`crate::objects::bare_pod_claim_name`]). Empty for
    /// StatefulSet pods, whose claims the StatefulSet controller creates.
    pub claims: Vec<PersistentVolumeClaim>,
}

/// Collects `add` operations.
#[derive(Default)]
struct Ops(Vec<PatchOperation>);

fn pointer(path: &[String]) -> PointerBuf {
    // Token::new escapes `~` and `/` (RFC 6901).
    PointerBuf::from_tokens(path.iter().map(|s| Token::new(s.as_str())))
}

fn child(path: &[String], key: impl Into<String>) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(key.into());
    p
}

/// Drops empty objects, so filling never adds `{}` for a section with nothing to contribute.
fn prune(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            let pruned: Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                .collect();
            (!pruned.is_empty()).then_some(Value::Object(pruned))
        }
        other => Some(other),
    }
}

impl Ops {
    fn add(&mut self, path: &[String], value: Value) {
        self.0.push(PatchOperation::Add(AddOperation {
            path: pointer(path),
            value,
        }));
    }

    /// Adds the parts of `desired` that `current` lacks, recursing into objects both have.
    /// Anything `current` states (a scalar, a list, an object key) is left alone.
    fn fill(&mut self, current: Option<&Value>, path: &[String], desired: Value) {
        let Some(desired) = prune(desired) else {
            return;
        };
        match (current, desired) {
            (None | Some(Value::Null), desired) => self.add(path, desired),
            (Some(Value::Object(current)), Value::Object(desired)) => {
                for (key, value) in desired {
                    let path = child(path, key.as_str());
                    self.fill(current.get(&key), &path, value);
                }
            }
            _ => {}
        }
    }

    /// Appends items to a list, creating it when absent or null.
    fn append(&mut self, current: Option<&Value>, path: &[String], items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        match current {
            Some(Value::Array(_)) => {
                for item in items {
                    self.add(&child(path, "-"), item);
                }
            }
            // Absent or null. (A non-list here would not have deserialised into the typed
            // object, so this is the only other case.)
            _ => self.add(path, Value::Array(items)),
        }
    }
}

fn path(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| s.to_string()).collect()
}

/// The workspace name: the `devenv.io/workspace` label, when it can be part of claim names
/// (validation refuses the others with an explanation).
fn workspace_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(WORKSPACE_LABEL))
        .map(String::as_str)
        .filter(|w| is_dns1123_label(w))
}

/// The owning StatefulSet's name, from `ownerReferences`.
fn statefulset_owner(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|o| o.kind == "StatefulSet" && o.api_version.starts_with("apps/"))
        .map(|o| o.name.as_str())
}

/// `<statefulset>-<ordinal>` -> ordinal.
fn ordinal(pod_name: &str, statefulset: &str) -> Option<u64> {
    pod_name
        .strip_prefix(statefulset)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// The pod-level securityContext defaults. Windows pods get only runAsNonRoot: the API server
/// forbids the Linux-only fields on them.
fn pod_security_defaults(policy: &Policy, windows: bool) -> Value {
    if windows {
        json!({ "runAsNonRoot": true })
    } else {
        json!({
            "runAsNonRoot": true,
            "runAsUser": policy.user.uid,
            "runAsGroup": policy.user.gid,
            "fsGroup": policy.user.fs_group,
            "seccompProfile": { "type": "RuntimeDefault" },
        })
    }
}

/// Fills one container's securityContext: allowPrivilegeEscalation false and capabilities
/// drop [ALL] (appending ALL to a drop list that lacks it).
fn fill_container_security(
    ops: &mut Ops,
    current: Option<&Value>,
    container_path: &[String],
    sc: Option<&SecurityContext>,
    windows: bool,
) {
    if windows {
        // Linux-only fields are forbidden on Windows pods; upstream exempts them too.
        return;
    }
    let privileged = sc.and_then(|sc| sc.privileged) == Some(true);
    let adds_sys_admin = sc
        .and_then(|sc| sc.capabilities.as_ref())
        .and_then(|c| c.add.as_ref())
        .is_some_and(|add| add.iter().any(|a| a == "SYS_ADMIN" || a == "CAP_SYS_ADMIN"));
    let mut desired = json!({ "capabilities": { "drop": ["ALL"] } });
    // The API server refuses allowPrivilegeEscalation=false next to privileged=true or an
    // added SYS_ADMIN. Leave it unset there, so the user gets the validating webhook's clear
    // "privileged containers are not allowed" instead of a confusing API error.
    if !privileged && !adds_sys_admin {
        desired["allowPrivilegeEscalation"] = json!(false);
    }
    let sc_path = child(container_path, "securityContext");
    let current_sc = current.and_then(|c| c.get("securityContext"));
    ops.fill(current_sc, &sc_path, desired);
    let drop = sc
        .and_then(|sc| sc.capabilities.as_ref())
        .and_then(|c| c.drop.as_ref());
    if let Some(drop) = drop {
        if !drop.iter().any(|d| d == "ALL") {
            ops.add(
                &path_join(&sc_path, &["capabilities", "drop", "-"]),
                json!("ALL"),
            );
        }
    }
}

fn path_join(base: &[String], rest: &[&str]) -> Vec<String> {
    let mut p = base.to_vec();
    p.extend(rest.iter().map(|s| s.to_string()));
    p
}

/// A quantity a container states for a resource, if any.
fn stated(list: Option<&BTreeMap<String, K8sQuantity>>, key: &str) -> Option<String> {
    list.and_then(|l| l.get(key)).map(|q| q.0.clone())
}

/// The requests and limits to fill for a container, per resource name: only absent keys, and
/// never a request above the limit.
fn resource_defaults(tier: &Tier, container: &Container) -> Value {
    let resources = container.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let mut fill_limits = Map::new();
    let mut fill_requests = Map::new();
    for (key, tier_request, tier_limit) in [
        ("cpu", &tier.requests.cpu, &tier.limits.cpu),
        ("memory", &tier.requests.memory, &tier.limits.memory),
    ] {
        let stated_limit = stated(limits, key);
        let stated_request = stated(requests, key);
        let parse = |s: &str| Quantity::parse(s).ok();
        if stated_limit.is_none() {
            // A stated request above the tier's limit would make the filled limit invalid
            // (request > limit); leave the limit out and let validation explain the request.
            let request_too_big =
                match (stated_request.as_deref().and_then(parse), parse(tier_limit)) {
                    (Some(request), Some(limit)) => request > limit,
                    _ => false,
                };
            if !request_too_big {
                fill_limits.insert(key.to_string(), json!(tier_limit));
            }
        }
        if stated_request.is_none() {
            // A container that states a limit below the tier's request gets request = limit.
            let value = match (stated_limit.as_deref(), parse(tier_request)) {
                (Some(limit), Some(request)) if parse(limit).is_some_and(|l| l < request) => {
                    limit.to_string()
                }
                _ => tier_request.clone(),
            };
            fill_requests.insert(key.to_string(), json!(value));
        }
    }
    json!({ "limits": fill_limits, "requests": fill_requests })
}

fn same_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Mutates a workspace pod on CREATE: pod securityContext, every container's securityContext,
/// the tier's resources on regular and init containers, the policy's volumes mounted in every
/// regular container, and the policy's Secrets as optional envFrom.
///
/// Volumes: a StatefulSet-owned pod already has the claim volumes (the controller adds one per
/// claim template); when one is missing a `persistentVolumeClaim` volume for
/// `<volume>-<statefulset>-<ordinal>` is added. A bare pod gets volumes for the claims
/// `<volume>-<workspace>`, which are returned in [`PodMutation::claims`]. A policy volume the
/// pod already has a volume for (any type, by name) is mounted as it is. A volume is only
/// added when some container mounts it, and a mount only where the pod will have the volume.
/// Bare-pod claims go in the pod's namespace, `default` when the object names none.
pub fn mutate_pod(policy: &Policy, pod: &Pod) -> PodMutation {
    let Some(Ok(spec_json)) = pod.spec.as_ref().map(serde_json::to_value) else {
        // No spec (nothing to patch), or unreachable for k8s-openapi types.
        return PodMutation::default();
    };
    mutate_pod_as_sent(policy, pod, Some(&spec_json))
}

/// [`mutate_pod`] given the pod's `spec` as the JSON document the patch will be applied
/// to: the admission request's own object, which saves serialising the typed pod again
/// on every request (and is exactly what the API server patches). `spec_json` must be
/// the JSON of `pod.spec`; `None` or a non-object means there is nothing to patch.
pub fn mutate_pod_as_sent(policy: &Policy, pod: &Pod, spec_json: Option<&Value>) -> PodMutation {
    let mut ops = Ops::default();
    let mut claims = Vec::new();
    let (Some(spec), Some(doc_spec @ Value::Object(_))) = (&pod.spec, spec_json) else {
        return PodMutation::default();
    };
    let doc_spec = Some(doc_spec);
    let windows = is_windows(spec);
    let tier = policy.tier(
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TIER_ANNOTATION))
            .map(String::as_str),
    );

    ops.fill(
        doc_spec.and_then(|s| s.get("securityContext")),
        &path(&["spec", "securityContext"]),
        pod_security_defaults(policy, windows),
    );

    // Container security contexts and resources.
    let lists: [(&str, &[Container]); 2] = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (list, containers) in lists {
        for (i, container) in containers.iter().enumerate() {
            let c_path = path(&["spec", list, &i.to_string()]);
            let current = doc_spec.and_then(|s| s.get(list)).and_then(|l| l.get(i));
            fill_container_security(
                &mut ops,
                current,
                &c_path,
                container.security_context.as_ref(),
                windows,
            );
            ops.fill(
                current.and_then(|c| c.get("resources")),
                &child(&c_path, "resources"),
                resource_defaults(tier, container),
            );
        }
    }
    for (i, container) in spec
        .ephemeral_containers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let c_path = path(&["spec", "ephemeralContainers", &i.to_string()]);
        let current = doc_spec
            .and_then(|s| s.get("ephemeralContainers"))
            .and_then(|l| l.get(i));
        fill_container_security(
            &mut ops,
            current,
            &c_path,
            container.security_context.as_ref(),
            windows,
        );
    }

    // Volumes and mounts (regular containers only: init containers run before the workspace
    // is used, ephemeral containers cannot mount new volumes).
    let workspace = workspace_of(pod);
    let owner = statefulset_owner(pod);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pod_volumes = spec.volumes.as_deref().unwrap_or(&[]);
    let mut new_volumes = Vec::new();
    let mut new_mounts: Vec<Vec<Value>> = vec![Vec::new(); spec.containers.len()];
    for volume in &policy.volumes {
        let needing: Vec<usize> =
            spec.containers
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    !c.volume_mounts.as_deref().unwrap_or(&[]).iter().any(|m| {
                        m.name == volume.name || same_path(&m.mount_path, &volume.mount_path)
                    })
                })
                .map(|(i, _)| i)
                .collect();
        let existing = pod_volumes.iter().find(|v| v.name == volume.name);
        let have_volume = match existing {
            Some(existing) => {
                // A bare pod already pointing at its workspace claim (e.g. this mutation
                // applied before): the claim must still exist.
                if let (None, Some(ws)) = (owner, workspace) {
                    let claim = bare_pod_claim_name(&volume.name, ws);
                    if existing
                        .persistent_volume_claim
                        .as_ref()
                        .is_some_and(|p| p.claim_name == claim)
                    {
                        claims.push(bare_pod_claim(volume, ws, namespace));
                    }
                }
                true
            }
            None if needing.is_empty() => false,
            None => {
                let claim_name = match owner {
                    Some(sts) => pod
                        .metadata
                        .name
                        .as_deref()
                        .and_then(|name| ordinal(name, sts))
                        .map(|n| statefulset_claim_name(&volume.name, sts, n)),
                    None => workspace.map(|ws| {
                        claims.push(bare_pod_claim(volume, ws, namespace));
                        bare_pod_claim_name(&volume.name, ws)
                    }),
                };
                match claim_name {
                    Some(claim_name) => {
                        new_volumes.push(json!({
                            "name": volume.name,
                            "persistentVolumeClaim": { "claimName": claim_name },
                        }));
                        true
                    }
                    // No way to name the claim (no workspace label, or a StatefulSet pod
                    // without an ordinal name): no volume, hence no mount.
                    None => false,
                }
            }
        };
        if have_volume {
            for i in needing {
                if let Some(mounts) = new_mounts.get_mut(i) {
                    mounts.push(json!({ "name": volume.name, "mountPath": volume.mount_path }));
                }
            }
        }
    }

    for (i, container) in spec.containers.iter().enumerate() {
        let c_path = path(&["spec", "containers", &i.to_string()]);
        let current = doc_spec
            .and_then(|s| s.get("containers"))
            .and_then(|l| l.get(i));
        let mounts = new_mounts
            .get_mut(i)
            .map(std::mem::take)
            .unwrap_or_default();
        ops.append(
            current.and_then(|c| c.get("volumeMounts")),
            &child(&c_path, "volumeMounts"),
            mounts,
        );
        let env_from = container.env_from.as_deref().unwrap_or(&[]);
        let secrets: Vec<Value> = policy
            .secrets
            .inject
            .iter()
            .filter(|name| {
                !env_from
                    .iter()
                    .any(|e| e.secret_ref.as_ref().is_some_and(|s| &s.name == *name))
            })
            .map(|name| json!({ "secretRef": { "name": name, "optional": true } }))
            .collect();
        ops.append(
            current.and_then(|c| c.get("envFrom")),
            &child(&c_path, "envFrom"),
            secrets,
        );
    }
    ops.append(
        doc_spec.and_then(|s| s.get("volumes")),
        &path(&["spec", "volumes"]),
        new_volumes,
    );

    // Duplicate claims (same volume listed twice by a malformed pod) are pointless to apply.
    let mut seen = HashSet::new();
    claims.retain(|c| seen.insert(c.metadata.name.clone()));
    PodMutation {
        patch: Patch(ops.0),
        claims,
    }
}

/// Mutates the `pods/ephemeralcontainers` subresource: fills the securityContext of the
/// ephemeral containers that are new compared to `old` (existing ones cannot be changed; all
/// of them when `old` is None). Nothing else of the pod may change through this subresource.
pub fn mutate_ephemeral_containers(_policy: &Policy, pod: &Pod, old: Option<&Pod>) -> Patch {
    let mut ops = Ops::default();
    let Some(spec) = &pod.spec else {
        return Patch::default();
    };
    let Ok(doc) = serde_json::to_value(pod) else {
        return Patch::default();
    };
    let existing: HashSet<&str> = old
        .and_then(|o| o.spec.as_ref())
        .and_then(|s| s.ephemeral_containers.as_deref())
        .unwrap_or(&[])
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let windows = is_windows(spec);
    for (i, container) in spec
        .ephemeral_containers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        if existing.contains(container.name.as_str()) {
            continue;
        }
        let current = doc
            .get("spec")
            .and_then(|s| s.get("ephemeralContainers"))
            .and_then(|l| l.get(i));
        fill_container_security(
            &mut ops,
            current,
            &path(&["spec", "ephemeralContainers", &i.to_string()]),
            container.security_context.as_ref(),
            windows,
        );
    }
    Patch(ops.0)
}

/// Mutates a workspace StatefulSet (one whose `spec.template` carries the workspace label):
/// adds a claim template ([`crate::objects::claim_template`]) for every policy volume it
/// lacks, unless the pod template has its own volume of that name, and fills
/// `persistentVolumeClaimRetentionPolicy` with Retain/Retain so deleting or scaling down a
/// workspace never deletes its data. Pod-level fields are applied when the pods are admitted.
pub fn mutate_statefulset(policy: &Policy, sts: &StatefulSet) -> Patch {
    let mut ops = Ops::default();
    let Some(spec) = &sts.spec else {
        return Patch::default();
    };
    let Some(workspace) = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(WORKSPACE_LABEL))
        .filter(|w| !w.is_empty())
    else {
        return Patch::default();
    };
    let Ok(doc) = serde_json::to_value(sts) else {
        return Patch::default();
    };
    let doc_spec = doc.get("spec");
    let existing: HashSet<&str> = spec
        .volume_claim_templates
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let template_volumes: HashSet<&str> = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[])
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    let templates: Vec<Value> = policy
        .volumes
        .iter()
        .filter(|v| {
            !existing.contains(v.name.as_str()) && !template_volumes.contains(v.name.as_str())
        })
        .filter_map(|v| serde_json::to_value(claim_template(v, workspace)).ok())
        .collect();
    ops.append(
        doc_spec.and_then(|s| s.get("volumeClaimTemplates")),
        &path(&["spec", "volumeClaimTemplates"]),
        templates,
    );
    ops.fill(
        doc_spec.and_then(|s| s.get("persistentVolumeClaimRetentionPolicy")),
        &path(&["spec", "persistentVolumeClaimRetentionPolicy"]),
        json!({ "whenDeleted": "Retain", "whenScaled": "Retain" }),
    );
    Patch(ops.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_rfc6901() {
        let p = pointer(&path(&["metadata", "annotations", "devenv.io/tier", "a~b"]));
        assert_eq!(p.to_string(), "/metadata/annotations/devenv.io~1tier/a~0b");
    }

    #[test]
    fn fill_adds_only_what_is_missing() {
        let mut ops = Ops::default();
        let current = json!({"a": 1, "b": null, "c": {"d": 2}, "e": [1]});
        ops.fill(
            Some(&current),
            &path(&["x"]),
            json!({"a": 9, "b": 9, "c": {"d": 9, "f": 9}, "e": {"g": 1}, "h": {}, "i": {"j": {}}}),
        );
        let paths: Vec<String> = ops.0.iter().map(|op| op.path().to_string()).collect();
        assert_eq!(paths, vec!["/x/b", "/x/c/f"]);
    }

    #[test]
    fn ordinal_of_statefulset_pods() {
        assert_eq!(ordinal("alice-0", "alice"), Some(0));
        assert_eq!(ordinal("alice-12", "alice"), Some(12));
        assert_eq!(ordinal("alice-x", "alice"), None);
        assert_eq!(ordinal("alice", "alice"), None);
        assert_eq!(ordinal("bob-0", "alice"), None);
    }
}
