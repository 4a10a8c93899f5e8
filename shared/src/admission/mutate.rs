//! Mutation of workspace pods and StatefulSets into JSON Patches: fill in what is missing,
//! never overwrite what is stated.
//!
//! The patches `add`, and only where the pod has nothing (the key is absent or `null`): when
//! a parent object is missing the whole object is added, since an `add` below a missing
//! parent fails; list items are appended with `/-`. Keys are escaped per RFC 6901. So a patch
//! applies to any pod shape, and mutating the patched pod again yields an empty patch.
//!
//! Two things are replaced or removed, both put there by the API server rather than the
//! pod's author, and both a workspace's identity: the `default` ServiceAccount it defaulted
//! the pod to becomes the workspace's own, and the token volume it mounted for `default`
//! (`kube-api-access-*`) is removed when the policy allows no tokens.
//!
//! Decisions are made on the typed pod; its `None` is exactly the raw object's "absent or
//! null", which is where an `add` is both valid and non-destructive.

use std::collections::{BTreeMap, HashSet};

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, SecurityContext, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{json, Map, Value};

use crate::admission::containers::is_windows;
use crate::admission::references::is_injected_token_volume;
use crate::build::claims::claim_template;
use crate::model::keys::{CLAIMS_GATE, OWNER_ANNOTATION, TIER_ANNOTATION, WORKSPACE_LABEL};
use crate::model::names::{bare_pod_claim_name, check_workspace_name};
use crate::model::policy::{Policy, Tier};
use crate::model::quantity::Quantity;

/// The result of mutating a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMutation {
    /// JSON Patch for the admission response; empty when nothing is missing.
    pub patch: Patch,
    /// Whether the pod mounts bare-pod claims (`<volume>-<workspace>-bare`): the lifecycle
    /// controller creates them once the pod exists, and the pod waits for that behind the
    /// [`CLAIMS_GATE`] scheduling gate. False for StatefulSet pods.
    pub bare_claims: bool,
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
        .filter(|w| check_workspace_name(w).is_ok())
}

/// The StatefulSet a pod says controls it: its controller ownerReference, when that names
/// an `apps` StatefulSet. A claim, not a proof: anyone may write ownerReferences, and
/// validation proves it against the StatefulSet the webhook knows.
pub fn controller_statefulset(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|o| {
            o.controller == Some(true)
                && o.kind == "StatefulSet"
                && o.api_version.starts_with("apps/")
        })
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
/// the tier's resources on regular and init containers, the workspace's identity (its own
/// ServiceAccount, no API token), the policy's volumes mounted in every regular container,
/// and the policy's Secrets as optional envFrom.
///
/// Volumes: a StatefulSet pod (one with a controller ownerReference to a StatefulSet) has
/// its claim volumes from the StatefulSet controller, which names them; nothing is added for
/// it (validation proves the pod is the StatefulSet's). A bare pod gets a
/// `persistentVolumeClaim` volume for each policy volume it lacks, named
/// `<volume>-<workspace>-bare` ([`bare_pod_claim_name`]), and the scheduling gate
/// [`CLAIMS_GATE`]: admission creates nothing, the lifecycle controller creates the claims
/// once the pod exists and then lifts the gate. A policy volume the pod already has a volume
/// for (any type, by name) is mounted as it is. A volume is only added when some container
/// mounts it, and a mount only where the pod will have the volume.
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
    let (Some(spec), Some(doc_spec @ Value::Object(_))) = (&pod.spec, spec_json) else {
        return PodMutation::default();
    };
    let mut ops = Ops::default();
    let windows = is_windows(spec);
    let tier = policy.tier(
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TIER_ANNOTATION))
            .map(String::as_str),
    );
    // Removals first, in descending index order, so the adds below (appends with `/-` and
    // paths into containers, which are never removed) still point where they mean to.
    let token_removals = injected_token_removals(policy, spec);
    ops.0.extend(token_removals.ops);
    ops.fill(
        doc_spec.get("securityContext"),
        &path(&["spec", "securityContext"]),
        pod_security_defaults(policy, windows),
    );
    fill_identity(&mut ops, policy, pod, doc_spec);
    fill_containers(&mut ops, tier, spec, doc_spec, windows);
    let bare_volumes = fill_volumes(
        &mut ops,
        policy,
        pod,
        spec,
        doc_spec,
        &token_removals.mounts,
    );
    fill_env_from(&mut ops, policy, spec, doc_spec);
    let gated = spec
        .scheduling_gates
        .iter()
        .flatten()
        .any(|g| g.name == CLAIMS_GATE);
    if bare_volumes && !gated {
        ops.append(
            doc_spec.get("schedulingGates"),
            &path(&["spec", "schedulingGates"]),
            vec![json!({ "name": CLAIMS_GATE })],
        );
    }
    PodMutation {
        patch: Patch(ops.0),
        bare_claims: bare_volumes,
    }
}

/// Container securityContexts (all three lists) and the tier's resources (init and regular
/// containers: ephemeral containers cannot state resources).
fn fill_containers(ops: &mut Ops, tier: &Tier, spec: &PodSpec, doc_spec: &Value, windows: bool) {
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
            let current = doc_spec.get(list).and_then(|l| l.get(i));
            fill_container_security(
                ops,
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
        let current = doc_spec.get("ephemeralContainers").and_then(|l| l.get(i));
        fill_container_security(
            ops,
            current,
            &c_path,
            container.security_context.as_ref(),
            windows,
        );
    }
}

/// The workspace's identity: its own ServiceAccount where the API server defaulted the pod to
/// `default` (or it names none), and no automounted token unless the policy allows tokens.
fn fill_identity(ops: &mut Ops, policy: &Policy, pod: &Pod, doc_spec: &Value) {
    let Some(workspace) = workspace_of(pod) else {
        return;
    };
    let Some(spec) = &pod.spec else {
        return;
    };
    let account = spec.service_account_name.as_deref();
    if matches!(account, None | Some("") | Some("default"))
        && !policy.service_accounts.allow.iter().any(|a| a == "default")
    {
        // `add` replaces an existing member (RFC 6902), here the API server's default.
        ops.add(&path(&["spec", "serviceAccountName"]), json!(workspace));
        if doc_spec.get("serviceAccount").is_some_and(|v| !v.is_null()) {
            ops.add(&path(&["spec", "serviceAccount"]), json!(workspace));
        }
    }
    if !policy.service_accounts.token {
        ops.fill(
            doc_spec.get("automountServiceAccountToken"),
            &path(&["spec", "automountServiceAccountToken"]),
            json!(false),
        );
    }
}

/// What removing the API server's injected token volume takes.
struct TokenRemovals {
    ops: Vec<PatchOperation>,
    /// Names of the removed volumes (their mounts are gone too).
    mounts: Vec<String>,
}

/// The `kube-api-access-*` volume ServiceAccount admission adds when the pod's ServiceAccount
/// automounts its token, and its mounts in every container: removed when the policy allows no
/// tokens. (A token the pod's author asked for is left for validation to refuse.)
fn injected_token_removals(policy: &Policy, spec: &PodSpec) -> TokenRemovals {
    let mut out = TokenRemovals {
        ops: Vec::new(),
        mounts: Vec::new(),
    };
    if policy.service_accounts.token {
        return out;
    }
    let volumes = spec.volumes.as_deref().unwrap_or(&[]);
    let injected: Vec<(usize, &str)> = volumes
        .iter()
        .enumerate()
        .filter(|(_, v)| is_injected_token_volume(v))
        .map(|(i, v)| (i, v.name.as_str()))
        .collect();
    if injected.is_empty() {
        return out;
    }
    let remove = |p: Vec<String>| PatchOperation::Remove(RemoveOperation { path: pointer(&p) });
    let lists: [(&str, Vec<&[VolumeMount]>); 3] = [
        (
            "initContainers",
            spec.init_containers
                .iter()
                .flatten()
                .map(|c| c.volume_mounts.as_deref().unwrap_or(&[]))
                .collect(),
        ),
        (
            "containers",
            spec.containers
                .iter()
                .map(|c| c.volume_mounts.as_deref().unwrap_or(&[]))
                .collect(),
        ),
        (
            "ephemeralContainers",
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| c.volume_mounts.as_deref().unwrap_or(&[]))
                .collect(),
        ),
    ];
    for (list, mounts_per_container) in lists {
        for (c, mounts) in mounts_per_container.iter().enumerate() {
            for (m, mount) in mounts.iter().enumerate().rev() {
                if injected.iter().any(|(_, name)| *name == mount.name) {
                    out.ops.push(remove(path(&[
                        "spec",
                        list,
                        &c.to_string(),
                        "volumeMounts",
                        &m.to_string(),
                    ])));
                }
            }
        }
    }
    for (i, name) in injected.iter().rev() {
        out.ops
            .push(remove(path(&["spec", "volumes", &i.to_string()])));
        out.mounts.push((*name).to_string());
    }
    out
}

/// The policy's volumes and their mounts; returns whether bare-pod claim volumes are added
/// or already there (the pod then waits behind [`CLAIMS_GATE`] for the controller).
fn fill_volumes(
    ops: &mut Ops,
    policy: &Policy,
    pod: &Pod,
    spec: &PodSpec,
    doc_spec: &Value,
    removed: &[String],
) -> bool {
    let workspace = workspace_of(pod);
    let statefulset_pod = controller_statefulset(pod).is_some();
    let pod_volumes: Vec<_> = spec
        .volumes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter(|v| !removed.contains(&v.name))
        .collect();
    let mut bare = false;
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
        let have_volume = match pod_volumes.iter().find(|v| v.name == volume.name) {
            Some(existing) => {
                if let (false, Some(ws)) = (statefulset_pod, workspace) {
                    bare |= existing
                        .persistent_volume_claim
                        .as_ref()
                        .is_some_and(|p| p.claim_name == bare_pod_claim_name(&volume.name, ws));
                }
                true
            }
            None if needing.is_empty() => false,
            // The StatefulSet controller gives its pods their claim volumes; one it did not
            // give is not a claim of this workspace, and none is invented here.
            None if statefulset_pod => false,
            None => match workspace {
                Some(ws) => {
                    new_volumes.push(json!({
                        "name": volume.name,
                        "persistentVolumeClaim": { "claimName": bare_pod_claim_name(&volume.name, ws) },
                    }));
                    bare = true;
                    true
                }
                // No valid workspace name: no claim name, no volume, no mount.
                None => false,
            },
        };
        if have_volume {
            for i in needing {
                if let Some(mounts) = new_mounts.get_mut(i) {
                    mounts.push(json!({ "name": volume.name, "mountPath": volume.mount_path }));
                }
            }
        }
    }
    for (i, mounts) in new_mounts.into_iter().enumerate() {
        let current = doc_spec.get("containers").and_then(|l| l.get(i));
        ops.append(
            current.and_then(|c| c.get("volumeMounts")),
            &path(&["spec", "containers", &i.to_string(), "volumeMounts"]),
            mounts,
        );
    }
    ops.append(
        doc_spec.get("volumes"),
        &path(&["spec", "volumes"]),
        new_volumes,
    );
    bare
}

/// The policy's Secrets as optional `envFrom` of every regular container.
fn fill_env_from(ops: &mut Ops, policy: &Policy, spec: &PodSpec, doc_spec: &Value) {
    for (i, container) in spec.containers.iter().enumerate() {
        let current = doc_spec.get("containers").and_then(|l| l.get(i));
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
            &path(&["spec", "containers", &i.to_string(), "envFrom"]),
            secrets,
        );
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
/// adds a claim template ([`crate::build::claims::claim_template`]) for every policy volume it
/// lacks, unless the pod template has its own volume of that name, and fills
/// `persistentVolumeClaimRetentionPolicy` with Retain/Retain so deleting or scaling down a
/// workspace never deletes its data. Pod-level fields are applied when the pods are admitted.
///
/// With `owner`, records it ([`OWNER_ANNOTATION`]) on the StatefulSet, its pod template (so
/// every pod carries it) and every claim template (so every claim does), and the workspace
/// label on the StatefulSet and its claim templates, where the caches and the claim rule look
/// for them. The request glue passes the requester on CREATE and the recorded owner on
/// UPDATE (a server-side apply that does not state it would otherwise drop it).
pub fn mutate_statefulset(policy: &Policy, sts: &StatefulSet, owner: Option<&str>) -> Patch {
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
        .filter(|w| check_workspace_name(w).is_ok())
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
    if let Some(owner) = owner {
        label_and_owner(&mut ops, &sts.metadata, &["metadata"], workspace, owner);
        match &spec.template.metadata {
            Some(m) => set_entry(
                &mut ops,
                m.annotations.as_ref(),
                &["spec", "template", "metadata"],
                "annotations",
                OWNER_ANNOTATION,
                owner,
                true,
            ),
            None => ops.add(
                &path(&["spec", "template", "metadata"]),
                json!({ "annotations": { OWNER_ANNOTATION: owner } }),
            ),
        }
        for (i, claim) in spec.volume_claim_templates.iter().flatten().enumerate() {
            let base = ["spec", "volumeClaimTemplates", &i.to_string(), "metadata"];
            label_and_owner(&mut ops, &claim.metadata, &base, workspace, owner);
        }
    }
    let templates: Vec<Value> = policy
        .volumes
        .iter()
        .filter(|v| {
            !existing.contains(v.name.as_str()) && !template_volumes.contains(v.name.as_str())
        })
        .map(|v| {
            let mut claim = claim_template(v, workspace);
            if let Some(owner) = owner {
                claim
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(OWNER_ANNOTATION.to_string(), owner.to_string());
            }
            claim
        })
        .filter_map(|claim| serde_json::to_value(claim).ok())
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

/// Records `owner` ([`OWNER_ANNOTATION`]) on a pod: the requester of a bare pod's CREATE,
/// whatever the pod stated (an owner is never a value the user supplies).
pub fn record_pod_owner(pod: &Pod, owner: &str) -> Patch {
    let mut ops = Ops::default();
    set_entry(
        &mut ops,
        pod.metadata.annotations.as_ref(),
        &["metadata"],
        "annotations",
        OWNER_ANNOTATION,
        owner,
        true,
    );
    Patch(ops.0)
}

/// Records the workspace label (kept when present) and the owner (always) in the metadata
/// at `base`. Metadata with nothing in it may be absent from the object as sent, so it is
/// added whole: a patch into a missing `/metadata` would not apply.
fn label_and_owner(ops: &mut Ops, meta: &ObjectMeta, base: &[&str], workspace: &str, owner: &str) {
    if *meta == ObjectMeta::default() {
        ops.add(
            &path(base),
            json!({
                "labels": { WORKSPACE_LABEL: workspace },
                "annotations": { OWNER_ANNOTATION: owner },
            }),
        );
        return;
    }
    set_entry(
        ops,
        meta.labels.as_ref(),
        base,
        "labels",
        WORKSPACE_LABEL,
        workspace,
        false,
    );
    set_entry(
        ops,
        meta.annotations.as_ref(),
        base,
        "annotations",
        OWNER_ANNOTATION,
        owner,
        true,
    );
}

/// Sets `<base>/<field>/<key>` of a string map (labels, annotations) to `value`: adds the
/// map when absent, the entry when absent, and replaces a different value when `replace`.
fn set_entry(
    ops: &mut Ops,
    map: Option<&BTreeMap<String, String>>,
    base: &[&str],
    field: &str,
    key: &str,
    value: &str,
    replace: bool,
) {
    let mut at = path(base);
    at.push(field.to_string());
    match map.map(|m| m.get(key)) {
        None => ops.add(&at, json!({ key: value })),
        Some(None) => ops.add(&child(&at, key), json!(value)),
        Some(Some(current)) if replace && current != value => {
            ops.add(&child(&at, key), json!(value))
        }
        Some(Some(_)) => {}
    }
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
}
