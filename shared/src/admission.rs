//! Request-level glue between an AdmissionReview request and the pure policy functions, used
//! by the webhook. Pure: no I/O; the webhook creates the returned claims and serves the
//! response.
//!
//! Rules:
//! * Objects that are not workspaces are allowed untouched. The label is read from the
//!   [`DynamicObject`] (pods: `metadata.labels`; StatefulSets: `spec.template.metadata.labels`)
//!   before anything is converted, so non-workspace traffic costs one map lookup.
//! * Pods: CREATE is mutated and validated. UPDATE is validated only (pod specs are
//!   largely immutable, so mutation patches nothing) and, like Pod Security Admission, updates
//!   that change neither the spec nor security-relevant annotations are allowed without
//!   re-validation, so that e.g. removing a finalizer from an old pod never gets stuck.
//! * `pods/ephemeralcontainers`: the new ephemeral containers' securityContext is mutated;
//!   the whole pod is validated. `pods/resize` is validated (it can raise resources). Other
//!   pod subresources (status, binding, eviction, ...) are allowed.
//! * StatefulSets: CREATE is mutated (claim templates, retention policy); UPDATE only gets the
//!   retention policy, since claim templates are immutable. Both are validated.
//! * DELETE and CONNECT are allowed.
//! * An object that cannot be read as its typed kind is denied, naming why.
//!
//! Denials read `workspace <name> denied: <violation>; <violation>`.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status, TypeMeta};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::keys::{TIER_ANNOTATION, WORKSPACE_LABEL};
use crate::mutate::{mutate_ephemeral_containers, mutate_pod_as_sent, mutate_statefulset};
use crate::policy::Policy;
use crate::validate::{validate_pod, validate_statefulset, SecretCatalog, Violation};

/// What to answer, and what the webhook must do besides.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The response to put into the AdmissionReview (carries the request uid, the patch or
    /// the denial).
    pub response: AdmissionResponse,
    /// Bare-pod claims the webhook must ensure exist before the pod can start (empty on
    /// dry-run requests: a dry run must not have side effects).
    pub claims: Vec<PersistentVolumeClaim>,
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
    /// status, binding, eviction, ...: never a workspace decision.
    PodOtherSubresource,
    StatefulSet,
    StatefulSetSubresource,
    Other,
}

fn target<T: kube::core::Resource>(req: &AdmissionRequest<T>) -> Target {
    let sub = req.sub_resource.as_deref().filter(|s| !s.is_empty());
    // The resource decides (the webhook is registered per resource); the kind is a fallback
    // for requests that carry no resource.
    let no_resource = req.resource.resource.is_empty();
    let is_pod = (req.resource.group.is_empty() && req.resource.resource == "pods")
        || (no_resource && req.kind.group.is_empty() && req.kind.kind == "Pod");
    let is_sts = (req.resource.group == "apps" && req.resource.resource == "statefulsets")
        || (no_resource && req.kind.group == "apps" && req.kind.kind == "StatefulSet");
    match (is_pod, is_sts, sub) {
        (true, _, None) => Target::Pod,
        (true, _, Some("ephemeralcontainers")) => Target::PodEphemeralContainers,
        (true, _, Some("resize")) => Target::PodResize,
        (true, _, Some(_)) => Target::PodOtherSubresource,
        (_, true, None) => Target::StatefulSet,
        (_, true, Some(_)) => Target::StatefulSetSubresource,
        _ => Target::Other,
    }
}

fn label_str<'a>(value: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(serde_json::Value::as_str)
}

/// The workspace label of the object, read without converting it.
fn workspace_of(target: Target, obj: &DynamicObject) -> Option<String> {
    let name = match target {
        Target::Pod | Target::PodEphemeralContainers | Target::PodResize => obj
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(WORKSPACE_LABEL))
            .map(String::as_str),
        Target::StatefulSet => label_str(
            &obj.data,
            &["spec", "template", "metadata", "labels", WORKSPACE_LABEL],
        ),
        _ => None,
    };
    name.filter(|n| !n.is_empty()).map(str::to_string)
}

fn allow(req: &AdmissionRequest<DynamicObject>, workspace: Option<String>) -> Decision {
    Decision {
        response: AdmissionResponse::from(req),
        claims: Vec::new(),
        workspace,
        denied: None,
    }
}

fn deny(req: &AdmissionRequest<DynamicObject>, workspace: &str, reason: &str) -> Decision {
    let message = format!("workspace {workspace} denied: {reason}");
    let mut response = AdmissionResponse::from(req).deny(&message);
    // 403 Forbidden, as the API server reports built-in admission denials.
    response.result = Status::failure(&message, "Forbidden").with_code(403);
    Decision {
        response,
        claims: Vec::new(),
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

/// Parses an AdmissionReview body into kube's types, as `serde_json::from_slice` would,
/// in a fraction of the time.
///
/// kube's `AdmissionReview` and `DynamicObject` use `#[serde(flatten)]`, which makes serde
/// buffer the whole review (the pod twice over, for `object` and `oldObject`) in an
/// intermediate tree before building the real one: the biggest single cost of a request.
/// Here the body becomes one `serde_json::Value`, the objects are taken out of it, the
/// small rest is read into kube's types, and each object is split into type, metadata and
/// data directly. An object of an unusual shape (`apiVersion` without `kind`, say) is
/// read the ordinary way, so the result is always what serde's derive gives.
pub fn parse_review(bytes: &[u8]) -> Result<AdmissionReview<DynamicObject>, serde_json::Error> {
    let mut doc: Value = match serde_json::from_slice(bytes) {
        Ok(doc) => doc,
        // A `Value` insists on every string being valid, even in fields serde's derive
        // skips unread (a lone surrogate escape in an unknown field, found by fuzzing):
        // let the derive have the last word.
        Err(_) => return serde_json::from_slice(bytes),
    };
    let mut object = None;
    let mut old_object = None;
    if let Some(Value::Object(request)) = doc.get_mut("request") {
        for (slot, key) in [(&mut object, "object"), (&mut old_object, "oldObject")] {
            if let Some(value @ Value::Object(_)) = request.get_mut(key) {
                // Leaves null behind, which reads as "no object" below.
                *slot = Some(value.take());
            }
        }
    }
    let mut review = AdmissionReview::<DynamicObject>::deserialize(&doc)?;
    if let Some(request) = review.request.as_mut() {
        request.object = object.map(dynamic_object).transpose()?;
        request.old_object = old_object.map(dynamic_object).transpose()?;
    }
    Ok(review)
}

/// A JSON object as kube's `DynamicObject` (see [`parse_review`]).
fn dynamic_object(mut value: Value) -> Result<DynamicObject, serde_json::Error> {
    let Value::Object(map) = &mut value else {
        return serde_json::from_value(value);
    };
    let types = match (map.get("apiVersion"), map.get("kind")) {
        (Some(Value::String(_)), Some(Value::String(_))) => {
            let mut text = |key: &str| match map.remove(key) {
                Some(Value::String(s)) => s,
                _ => String::new(),
            };
            Some(TypeMeta {
                api_version: text("apiVersion"),
                kind: text("kind"),
            })
        }
        (None, None) => None,
        _ => return serde_json::from_value(value),
    };
    let metadata = match map.remove("metadata") {
        Some(meta) => ObjectMeta::deserialize(&meta)?,
        None => ObjectMeta::default(),
    };
    Ok(DynamicObject {
        types,
        metadata,
        data: value,
    })
}

/// Converts the dynamic object to its typed kind; the error names the kind and serde's reason.
///
/// Reads the body straight from the parsed `data` (borrowing, no intermediate
/// `Value` of the whole object: this is on every request's path) and takes the
/// metadata as parsed. A stated apiVersion/kind must be the expected one, as a
/// typed parse of the whole object would insist.
fn typed<K>(obj: &DynamicObject, kind: &str) -> Result<K, String>
where
    K: DeserializeOwned + k8s_openapi::Resource + kube::Resource<DynamicType = ()>,
{
    let unreadable = |reason: String| format!("the object cannot be read as a {kind}: {reason}");
    if let Some(types) = &obj.types {
        if types.kind != K::KIND || types.api_version != K::API_VERSION {
            return Err(unreadable(format!(
                "it is a {} {}, not a {} {}",
                types.api_version,
                types.kind,
                K::API_VERSION,
                K::KIND
            )));
        }
    }
    let mut typed = K::deserialize(&obj.data).map_err(|e| unreadable(e.to_string()))?;
    *typed.meta_mut() = obj.metadata.clone();
    Ok(typed)
}

/// The typed pod with its namespace filled from the request (objects being created may omit
/// it; claims and Secret lookups need it).
fn typed_pod(req: &AdmissionRequest<DynamicObject>, obj: &DynamicObject) -> Result<Pod, String> {
    let mut pod: Pod = typed(obj, "Pod")?;
    if pod.metadata.namespace.is_none() {
        pod.metadata.namespace.clone_from(&req.namespace);
    }
    Ok(pod)
}

fn typed_statefulset(
    req: &AdmissionRequest<DynamicObject>,
    obj: &DynamicObject,
) -> Result<StatefulSet, String> {
    let mut sts: StatefulSet = typed(obj, "StatefulSet")?;
    if sts.metadata.namespace.is_none() {
        sts.metadata.namespace.clone_from(&req.namespace);
    }
    Ok(sts)
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
            claims: Vec::new(),
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

/// The mutating webhook's decision for a request, when no Secret catalog is at hand:
/// every Secret is taken as injectable for the purpose of deciding whether bare-pod claims
/// are worth creating (the validating webhook still judges the Secrets).
pub fn mutate(policy: &Policy, req: &AdmissionRequest<DynamicObject>) -> Decision {
    mutate_with(policy, &|_: &str, _: &str| true, req)
}

/// Would the pod, once patched, be refused by the validating webhook? Bare-pod claims are a
/// side effect of mutation, which runs before validation: a pod that will be refused must
/// not leave claims behind. (A later refusal by another admission step — a quota, say — can
/// still leave them; they are harmless and the workspace's next pod reuses them.)
fn refused_after_patch(
    policy: &Policy,
    secrets: &dyn SecretCatalog,
    pod: &Pod,
    patch: &json_patch::Patch,
) -> bool {
    let Ok(mut doc) = serde_json::to_value(pod) else {
        return true;
    };
    if json_patch::patch(&mut doc, patch).is_err() {
        return true;
    }
    match serde_json::from_value::<Pod>(doc) {
        Ok(patched) => !validate_pod(policy, &patched, secrets).is_empty(),
        Err(_) => true,
    }
}

/// The mutating webhook's decision for a request; `secrets` tells which Secrets the
/// namespace may inject (used to decide whether bare-pod claims are created).
pub fn mutate_with(
    policy: &Policy,
    secrets: &dyn SecretCatalog,
    req: &AdmissionRequest<DynamicObject>,
) -> Decision {
    if matches!(req.operation, Operation::Delete | Operation::Connect) {
        return allow(req, None);
    }
    let target = target(req);
    let Some(obj) = req.object.as_ref() else {
        return allow(req, None);
    };
    let Some(workspace) = workspace_of(target, obj) else {
        return allow(req, None);
    };
    match (target, &req.operation) {
        (Target::Pod, Operation::Create) => match typed_pod(req, obj) {
            Ok(pod) => {
                let mutation = mutate_pod_as_sent(policy, &pod, obj.data.get("spec"));
                let refused = !mutation.claims.is_empty()
                    && refused_after_patch(policy, secrets, &pod, &mutation.patch);
                let mut decision = with_patch(req, &workspace, mutation.patch);
                if decision.denied.is_none() && !req.dry_run && !refused {
                    decision.claims = mutation.claims;
                }
                decision
            }
            Err(e) => deny(req, &workspace, &e),
        },
        (Target::PodEphemeralContainers, _) => {
            let pod = match typed_pod(req, obj) {
                Ok(pod) => pod,
                Err(e) => return deny(req, &workspace, &e),
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
        (Target::StatefulSet, op) => match typed_statefulset(req, obj) {
            Ok(sts) => {
                let mut patch = mutate_statefulset(policy, &sts);
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
            Err(e) => deny(req, &workspace, &e),
        },
        // Pod UPDATE: pod fields are immutable or only meaningfully validated; resize and
        // other subresources are not mutated.
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
    secrets: &dyn SecretCatalog,
    req: &AdmissionRequest<DynamicObject>,
) -> Decision {
    if matches!(req.operation, Operation::Delete | Operation::Connect) {
        return allow(req, None);
    }
    let target = target(req);
    let Some(obj) = req.object.as_ref() else {
        return allow(req, None);
    };
    let Some(workspace) = workspace_of(target, obj) else {
        return allow(req, None);
    };
    let violations = match target {
        Target::Pod | Target::PodEphemeralContainers | Target::PodResize => {
            let pod = match typed_pod(req, obj) {
                Ok(pod) => pod,
                Err(e) => return deny(req, &workspace, &e),
            };
            if target == Target::Pod && req.operation == Operation::Update {
                if pod.metadata.deletion_timestamp.is_some() {
                    // A pod on its way out: never block its finalizers.
                    return allow(req, Some(workspace));
                }
                let old: Option<Pod> = req
                    .old_object
                    .as_ref()
                    .and_then(|o| typed::<Pod>(o, "Pod").ok());
                if let Some(old) = old {
                    if old.spec == pod.spec
                        && relevant_annotations(&old) == relevant_annotations(&pod)
                    {
                        return allow(req, Some(workspace));
                    }
                }
            }
            validate_pod(policy, &pod, secrets)
        }
        Target::StatefulSet => match typed_statefulset(req, obj) {
            Ok(sts) => validate_statefulset(policy, &sts, secrets),
            Err(e) => return deny(req, &workspace, &e),
        },
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

/// Appended to a refused debug container: the user typed `kubectl debug --profile=...`,
/// not a securityContext, so say which profiles pass. The default (`legacy`), `baseline`
/// and `restricted` do (the mutating webhook fills what they leave out); `general`,
/// `netadmin` and `sysadmin` add capabilities or privilege, which no mutation may remove.
pub const DEBUG_PROFILE_HINT: &str = " (kubectl debug: use --profile=restricted, baseline or the default legacy; general, netadmin and sysadmin add capabilities or privilege that workspaces refuse)";
