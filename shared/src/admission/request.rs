//! Request-level glue between an AdmissionReview request and the pure rules, used by the
//! webhook. Pure: no I/O, and no side effects to carry out: admission creates nothing.
//!
//! Rules:
//! * Objects that are not workspaces are allowed untouched. An object is a workspace when it
//!   carries the `devenv.io/workspace` label, whatever the value (empty included: the
//!   webhooks select on the key, and a value that is not a workspace name is refused). The
//!   label is read from the [`DynamicObject`] (pods and claims: `metadata.labels`;
//!   StatefulSets: `spec.template.metadata.labels`, else `metadata.labels`) of the object and
//!   of the old object before anything is converted, so other traffic costs a map lookup or
//!   two.
//! * Pods: CREATE is mutated (securityContext, resources, identity, volumes, Secrets; the
//!   requester recorded as owner) and validated: the pod rules plus who may create a pod of
//!   this workspace and which claims it may mount ([`ownership::pod_provenance`]).
//! * Pod UPDATE ([`ownership::pod_update`]): bookkeeping (finalizers, ownerReferences, other
//!   labels: spec and the annotations validation reads unchanged) is allowed to anyone, like
//!   Pod Security Admission does, so an old pod's finalizer never gets stuck; the label and the
//!   owner never change and are never removed (but by an admin); an UPDATE that adds the label
//!   or changes it is validated in full like a CREATE; any other change is the owner's and is
//!   validated in full.
//! * `pods/ephemeralcontainers` (mutated: the new containers' securityContext) and
//!   `pods/resize`: the owner's, and the whole pod is validated. `pods/status`: may not change
//!   the label or owner. Other pod subresources are allowed.
//! * StatefulSets: CREATE is mutated (claim templates, retention policy, owner) and validated
//!   (template rules, named like the workspace, the workspace new or the requester's, no
//!   squatted claims); UPDATE keeps the recorded owner and is the owner's.
//! * Claims labelled as a workspace's: made only by the StatefulSet controller for a proven
//!   workspace StatefulSet or by the devenv controller; label and owner never change; deleted
//!   only by the owner, admins, the devenv controllers and the cluster's own components.
//! * CONNECT is allowed; DELETE is allowed but for workspace claims.
//! * An object that cannot be read as its typed kind is denied, naming why.
//!
//! Denials read `workspace <name> denied: <violation>; <violation>`.

use json_patch::{AddOperation, PatchOperation};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, Status};

use crate::admission::access::{owner_of, Requester, Role};
use crate::admission::catalog::Cluster;
use crate::admission::mutate::{
    mutate_ephemeral_containers, mutate_pod_as_sent, mutate_statefulset, record_pod_owner,
};
use crate::admission::ownership::{self, PodChange};
use crate::admission::review::{typed, typed_in_namespace};
use crate::admission::validate::{validate_pod, validate_statefulset};
use crate::admission::violation::Violation;
use crate::model::keys::{TIER_ANNOTATION, WORKSPACE_LABEL};
use crate::model::policy::Policy;
use crate::model::snapshot::{VolumeSnapshot, SNAPSHOT_GROUP};

/// What to answer.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The response to put into the AdmissionReview (carries the request uid, the patch or
    /// the denial).
    pub response: AdmissionResponse,
    /// The workspace name (the `devenv.io/workspace` label), None for non-workspace objects.
    pub workspace: Option<String>,
    /// The denial message when denied (for logs and metrics).
    pub denied: Option<String>,
}

/// What a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Pod,
    PodEphemeralContainers,
    PodResize,
    PodStatus,
    /// binding, eviction, ...: never a workspace decision.
    PodOtherSubresource,
    StatefulSet,
    StatefulSetSubresource,
    Claim,
    /// `snapshot.storage.k8s.io` VolumeSnapshots labelled as a workspace's.
    Snapshot,
    Other,
}

fn target<T: kube::core::Resource>(req: &AdmissionRequest<T>) -> Target {
    let sub = req.sub_resource.as_deref().filter(|s| !s.is_empty());
    // The resource decides (the webhook is registered per resource); the kind is a fallback
    // for requests that carry no resource.
    let no_resource = req.resource.resource.is_empty();
    let core = |resource: &str, kind: &str| {
        (req.resource.group.is_empty() && req.resource.resource == resource)
            || (no_resource && req.kind.group.is_empty() && req.kind.kind == kind)
    };
    let is_sts = (req.resource.group == "apps" && req.resource.resource == "statefulsets")
        || (no_resource && req.kind.group == "apps" && req.kind.kind == "StatefulSet");
    if core("pods", "Pod") {
        return match sub {
            None => Target::Pod,
            Some("ephemeralcontainers") => Target::PodEphemeralContainers,
            Some("resize") => Target::PodResize,
            Some("status") => Target::PodStatus,
            Some(_) => Target::PodOtherSubresource,
        };
    }
    if is_sts {
        return if sub.is_none() {
            Target::StatefulSet
        } else {
            Target::StatefulSetSubresource
        };
    }
    if core("persistentvolumeclaims", "PersistentVolumeClaim") && sub.is_none() {
        return Target::Claim;
    }
    let is_snapshot = (req.resource.group == SNAPSHOT_GROUP
        && req.resource.resource == "volumesnapshots")
        || (no_resource && req.kind.group == SNAPSHOT_GROUP && req.kind.kind == "VolumeSnapshot");
    if is_snapshot && sub.is_none() {
        return Target::Snapshot;
    }
    Target::Other
}

fn label_str<'a>(value: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(serde_json::Value::as_str)
}

/// The workspace label of the object, read without converting it; `Some("")` for an empty
/// value (a workspace with an invalid name, refused by validation).
fn workspace_of(target: Target, obj: &DynamicObject) -> Option<&str> {
    let meta_label = || {
        obj.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(WORKSPACE_LABEL))
            .map(String::as_str)
    };
    match target {
        Target::Pod
        | Target::PodEphemeralContainers
        | Target::PodResize
        | Target::PodStatus
        | Target::Claim
        | Target::Snapshot => meta_label(),
        Target::StatefulSet => label_str(
            &obj.data,
            &["spec", "template", "metadata", "labels", WORKSPACE_LABEL],
        )
        .or_else(meta_label),
        _ => None,
    }
}

/// The workspace of the request: the new object's, else the old object's (an UPDATE that
/// removes the label, a DELETE).
fn request_workspace(target: Target, req: &AdmissionRequest<DynamicObject>) -> Option<String> {
    req.object
        .as_ref()
        .and_then(|o| workspace_of(target, o))
        .or_else(|| {
            req.old_object
                .as_ref()
                .and_then(|o| workspace_of(target, o))
        })
        .map(str::to_string)
}

fn allow(req: &AdmissionRequest<DynamicObject>, workspace: Option<String>) -> Decision {
    Decision {
        response: AdmissionResponse::from(req),
        workspace,
        denied: None,
    }
}

/// Shown for a workspace whose name is not a name (empty, say).
fn shown(workspace: &str) -> &str {
    if workspace.is_empty() {
        "\"\""
    } else {
        workspace
    }
}

fn deny(req: &AdmissionRequest<DynamicObject>, workspace: &str, reason: &str) -> Decision {
    let message = format!("workspace {} denied: {reason}", shown(workspace));
    let mut response = AdmissionResponse::from(req).deny(&message);
    // 403 Forbidden, as the API server reports built-in admission denials.
    response.result = Status::failure(&message, "Forbidden").with_code(403);
    Decision {
        response,
        workspace: Some(workspace.to_string()),
        denied: Some(message),
    }
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn with_patch(
    req: &AdmissionRequest<DynamicObject>,
    workspace: &str,
    patch: json_patch::Patch,
) -> Decision {
    if patch.0.is_empty() {
        return allow(req, Some(workspace.to_string()));
    }
    match AdmissionResponse::from(req).with_patch(patch) {
        Ok(response) => Decision {
            response,
            workspace: Some(workspace.to_string()),
            denied: None,
        },
        Err(e) => deny(
            req,
            workspace,
            &format!("the patch cannot be serialised: {e}"),
        ),
    }
}

fn requester(policy: &Policy, req: &AdmissionRequest<DynamicObject>) -> Requester {
    Requester::of(&policy.access, &req.user_info)
}

/// The owner a new workspace object gets: its creator's name; an admin may state another
/// (to create a workspace for someone).
fn owner_to_record(requester: &Requester, stated: Option<&str>) -> String {
    match (requester.role, stated) {
        (Role::Admin, Some(stated)) => stated.to_string(),
        _ => requester.username.clone(),
    }
}

/// The mutating webhook's decision for a request.
pub fn mutate(policy: &Policy, req: &AdmissionRequest<DynamicObject>) -> Decision {
    if matches!(req.operation, Operation::Delete | Operation::Connect) {
        return allow(req, None);
    }
    let target = target(req);
    let Some(obj) = req.object.as_ref() else {
        return allow(req, None);
    };
    let Some(workspace) = workspace_of(target, obj).map(str::to_string) else {
        return allow(req, None);
    };
    let who = requester(policy, req);
    let old_workspace = req
        .old_object
        .as_ref()
        .and_then(|o| workspace_of(target, o));
    match (target, &req.operation) {
        (Target::Pod, Operation::Create) => match typed_in_namespace::<Pod>(req, obj, "Pod") {
            Ok(pod) => {
                let mut patch = mutate_pod_as_sent(policy, &pod, obj.data.get("spec")).patch;
                // The StatefulSet controller's pods carry the owner of their template.
                if who.role != Role::StatefulSetController {
                    let owner = owner_to_record(&who, owner_of(&pod.metadata));
                    patch.0.extend(record_pod_owner(&pod, &owner).0);
                }
                with_patch(req, &workspace, patch)
            }
            Err(e) => deny(req, &workspace, &e.to_string()),
        },
        // A pod entering a workspace by an UPDATE gets its owner, like a new one.
        (Target::Pod, Operation::Update) if old_workspace != Some(workspace.as_str()) => {
            match typed_in_namespace::<Pod>(req, obj, "Pod") {
                Ok(pod) => {
                    let owner = owner_to_record(&who, owner_of(&pod.metadata));
                    with_patch(req, &workspace, record_pod_owner(&pod, &owner))
                }
                Err(e) => deny(req, &workspace, &e.to_string()),
            }
        }
        (Target::PodEphemeralContainers, _) => {
            let pod = match typed_in_namespace::<Pod>(req, obj, "Pod") {
                Ok(pod) => pod,
                Err(e) => return deny(req, &workspace, &e.to_string()),
            };
            // The old pod tells which ephemeral containers already exist (and are immutable).
            let old: Option<Pod> = req
                .old_object
                .as_ref()
                .and_then(|o| typed::<Pod>(o, "Pod").ok());
            with_patch(
                req,
                &workspace,
                mutate_ephemeral_containers(policy, &pod, old.as_ref()),
            )
        }
        (Target::StatefulSet, op) => {
            let sts = match typed_in_namespace::<StatefulSet>(req, obj, "StatefulSet") {
                Ok(sts) => sts,
                Err(e) => return deny(req, &workspace, &e.to_string()),
            };
            let old: Option<StatefulSet> = req
                .old_object
                .as_ref()
                .and_then(|o| typed::<StatefulSet>(o, "StatefulSet").ok());
            let owner = match (op, &old) {
                (Operation::Create, _) | (_, None) => {
                    Some(owner_to_record(&who, owner_of(&sts.metadata)))
                }
                // An admin may hand a workspace over; otherwise the recorded owner stays,
                // also when a server-side apply leaves it out.
                (_, Some(old)) if who.role == Role::Admin && owner_of(&sts.metadata).is_some() => {
                    owner_of(&sts.metadata)
                        .or_else(|| owner_of(&old.metadata))
                        .map(str::to_string)
                }
                (_, Some(old)) => owner_of(&old.metadata).map(str::to_string),
            };
            let mut patch = mutate_statefulset(policy, &sts, owner.as_deref());
            // An object sent without metadata (we fill its namespace in): the patch adds into
            // `/metadata`, which must then exist.
            if obj.metadata == ObjectMeta::default() && !patch.0.is_empty() {
                patch.0.insert(
                    0,
                    PatchOperation::Add(AddOperation {
                        path: "/metadata".parse().unwrap_or_default(),
                        value: serde_json::json!({}),
                    }),
                );
            }
            if *op != Operation::Create {
                // volumeClaimTemplates cannot change after creation.
                patch.0.retain(|op| {
                    !op.path()
                        .to_string()
                        .starts_with("/spec/volumeClaimTemplates")
                });
            }
            with_patch(req, &workspace, patch)
        }
        // Other pod UPDATEs change nothing the mutation fills (pod specs are largely
        // immutable); subresources and claims are not mutated.
        _ => allow(req, Some(workspace)),
    }
}

/// Annotations whose change matters to validation.
fn relevant_annotations(pod: &Pod) -> Vec<(&String, &String)> {
    pod.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            k.as_str() == TIER_ANNOTATION
                || k.starts_with("container.apparmor.security.beta.kubernetes.io/")
        })
        .collect()
}

/// The validating webhook's decision for a request.
pub fn validate(
    policy: &Policy,
    cluster: &dyn Cluster,
    req: &AdmissionRequest<DynamicObject>,
) -> Decision {
    if req.operation == Operation::Connect {
        return allow(req, None);
    }
    let target = target(req);
    if req.operation == Operation::Delete && !matches!(target, Target::Claim | Target::Snapshot) {
        return allow(req, None);
    }
    let Some(workspace) = request_workspace(target, req) else {
        return allow(req, None);
    };
    let who = requester(policy, req);
    let violations = match target {
        Target::Pod | Target::PodEphemeralContainers | Target::PodResize | Target::PodStatus => {
            match pod_violations(policy, cluster, &who, target, req) {
                Ok(v) => v,
                Err(e) => return deny(req, &workspace, &e),
            }
        }
        Target::StatefulSet => {
            let Some(obj) = req.object.as_ref() else {
                return allow(req, Some(workspace));
            };
            let sts = match typed_in_namespace::<StatefulSet>(req, obj, "StatefulSet") {
                Ok(sts) => sts,
                Err(e) => return deny(req, &workspace, &e.to_string()),
            };
            let old: Option<StatefulSet> = req
                .old_object
                .as_ref()
                .and_then(|o| typed_in_namespace::<StatefulSet>(req, o, "StatefulSet").ok());
            let mut out = ownership::statefulset_rules(cluster, &who, &sts, old.as_ref());
            out.extend(validate_statefulset(policy, &sts, cluster));
            out
        }
        Target::Claim => {
            let read = |o: Option<&DynamicObject>| {
                o.map(|o| {
                    typed_in_namespace::<PersistentVolumeClaim>(req, o, "PersistentVolumeClaim")
                })
                .transpose()
            };
            let (claim, old) = match (read(req.object.as_ref()), read(req.old_object.as_ref())) {
                (Ok(c), Ok(o)) => (c, o),
                (Err(e), _) | (_, Err(e)) => return deny(req, &workspace, &e.to_string()),
            };
            ownership::claim_admission(cluster, &who, claim.as_ref(), old.as_ref())
        }
        Target::Snapshot => {
            let read = |o: Option<&DynamicObject>| {
                o.map(|o| typed_in_namespace::<VolumeSnapshot>(req, o, "VolumeSnapshot"))
                    .transpose()
            };
            let (snapshot, old) = match (read(req.object.as_ref()), read(req.old_object.as_ref())) {
                (Ok(s), Ok(o)) => (s, o),
                (Err(e), _) | (_, Err(e)) => return deny(req, &workspace, &e.to_string()),
            };
            ownership::snapshot_admission(cluster, &who, snapshot.as_ref(), old.as_ref())
        }
        _ => return allow(req, Some(workspace)),
    };
    if violations.is_empty() {
        return allow(req, Some(workspace));
    }
    let mut reason = join(&violations);
    if target == Target::PodEphemeralContainers
        && violations
            .iter()
            .any(|v| v.field.starts_with("spec.ephemeralContainers"))
    {
        reason.push_str(DEBUG_PROFILE_HINT);
    }
    deny(req, &workspace, &reason)
}

/// The violations of a pod request; `Err` when the pod cannot be read.
fn pod_violations(
    policy: &Policy,
    cluster: &dyn Cluster,
    who: &Requester,
    target: Target,
    req: &AdmissionRequest<DynamicObject>,
) -> Result<Vec<Violation>, String> {
    let pod = match req.object.as_ref() {
        Some(obj) => typed_in_namespace::<Pod>(req, obj, "Pod").map_err(|e| e.to_string())?,
        None => return Ok(Vec::new()),
    };
    let old: Option<Pod> = req
        .old_object
        .as_ref()
        .map(|o| typed_in_namespace::<Pod>(req, o, "Pod"))
        .transpose()
        .map_err(|e| e.to_string())?;
    let full = |pod: &Pod| validate_pod(policy, pod, cluster);
    Ok(match (target, &old) {
        (Target::Pod, None) => {
            let mut out = full(&pod);
            out.extend(ownership::pod_provenance(policy, cluster, who, &pod));
            out
        }
        (Target::Pod, Some(old)) => {
            let unchanged =
                old.spec == pod.spec && relevant_annotations(old) == relevant_annotations(&pod);
            match ownership::pod_update(who, old, &pod, unchanged) {
                Err(v) => v,
                Ok(PodChange::Bookkeeping) => Vec::new(),
                Ok(PodChange::Owner) => full(&pod),
                Ok(PodChange::Enters) => {
                    let mut out = full(&pod);
                    out.extend(ownership::pod_provenance(policy, cluster, who, &pod));
                    out
                }
            }
        }
        (Target::PodStatus, Some(old)) => ownership::pod_status(who, old, &pod),
        (Target::PodEphemeralContainers, _) => {
            let mut out =
                ownership::pod_subresource(who, old.as_ref(), &pod, "spec.ephemeralContainers");
            out.extend(full(&pod));
            out
        }
        (Target::PodResize, _) => {
            let mut out = ownership::pod_subresource(who, old.as_ref(), &pod, "spec.containers");
            out.extend(full(&pod));
            out
        }
        _ => Vec::new(),
    })
}

/// Appended to a refused debug container: the user typed `kubectl debug --profile=...`,
/// not a securityContext, so say which profiles pass. The default (`legacy`), `baseline`
/// and `restricted` do (the mutating webhook fills what they leave out); `general`,
/// `netadmin` and `sysadmin` add capabilities or privilege, which no mutation may remove.
pub const DEBUG_PROFILE_HINT: &str = " (kubectl debug: use --profile=restricted, baseline or the default legacy; general, netadmin and sysadmin add capabilities or privilege that workspaces refuse)";
