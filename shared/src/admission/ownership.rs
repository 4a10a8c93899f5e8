//! Whose is it: the rules that pin a workspace's pods, StatefulSet and claims to the
//! workspace and its owner. They need the request (who asks, what changes) and the cluster
//! (which workspaces exist, whose they are), so they sit beside the pod rules of
//! [`crate::admission::validate`] rather than in them.
//!
//! # How ownership is proven
//!
//! * A workspace's owner is the username of the request that created it, recorded by the
//!   mutating webhook as [`OWNER_ANNOTATION`] on the StatefulSet, its pod template and claim
//!   templates (so on its pods and claims), or on a bare pod (and, by the lifecycle
//!   controller, on its claims). It is never taken from the user and never changes, but by
//!   an admin. A workspace exists as long as any of its objects does (claims outlive a
//!   deleted StatefulSet), and so does its owner.
//! * A pod belongs to StatefulSet `S` of workspace `W` only when the StatefulSet controller
//!   creates it, its controller ownerReference names `S` with the uid the webhook's cache
//!   holds, `S` is named `W` and its template carries `W`, the pod is named `W-<ordinal>` and
//!   carries `S`'s owner. An ownerReference alone proves nothing: anyone may write one.
//! * A pod created by a user is a bare workspace pod: no StatefulSet claims it, and its
//!   workspace is new or its requester's.
//! * A claim belongs to `W` when it is labelled `W` and carries `W`'s owner. A pod of `W` may
//!   mount claims of `W`, and claims that do not exist yet under `W`'s canonical names (the
//!   StatefulSet's `<volume>-W-<ordinal>`, a bare pod's `<volume>-W-bare`), which only the
//!   StatefulSet controller and the devenv controller may create (the claim webhook).
//!
//! What they cannot see: objects without the workspace label. Inside one namespace anyone
//! who may create pods can mount any claim with a pod that is not a workspace; the namespace
//! is the boundary that stops that (`kubectl devenv tenant add`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::admission::access::{owner_of, owner_rule, Requester, Role};
use crate::admission::catalog::{ClaimFacts, Lookup, SnapshotFacts, WorkspaceCatalog};
use crate::admission::mutate::controller_statefulset;
use crate::admission::references::claim_references;
use crate::admission::violation::Violation;
use crate::model::keys::{CLAIMS_GATE, OWNER_ANNOTATION, WORKSPACE_LABEL};
use crate::model::names::{bare_pod_claim_name, statefulset_claim_name, statefulset_ordinal};
use crate::model::policy::Policy;
use crate::model::snapshot::SNAPSHOT_GROUP;

/// Said when a cache has not synced: nothing is proven, so nothing is let through.
pub const NOT_SYNCED: &str =
    "the devenv webhook has not finished loading the cluster's workspaces and claims; retry in a few seconds";

fn violation(field: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation {
        field: field.into(),
        message: message.into(),
    }
}

/// The workspace label of an object, when it has one (empty included).
pub fn workspace_label(meta: &ObjectMeta) -> Option<&str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(WORKSPACE_LABEL))
        .map(String::as_str)
}

fn owner_field() -> String {
    format!("metadata.annotations[{OWNER_ANNOTATION}]")
}

fn label_field() -> String {
    format!("metadata.labels[{WORKSPACE_LABEL}]")
}

/// Who may act on `workspace` (by its recorded owner): `Ok` or the violation to report.
fn may_act(
    cluster: &dyn WorkspaceCatalog,
    requester: &Requester,
    namespace: &str,
    workspace: &str,
    field: &str,
) -> Result<(), Violation> {
    if requester.is_trusted() {
        return Ok(());
    }
    match cluster.workspace_owner(namespace, workspace) {
        Lookup::Missing => Ok(()),
        Lookup::Unknown => Err(violation(field, NOT_SYNCED)),
        Lookup::Found(owner) if requester.may_act_for(owner.as_deref()) => Ok(()),
        Lookup::Found(owner) => Err(violation(field, owner_rule(workspace, owner.as_deref()))),
    }
}

/// Checks one claim a workspace pod mounts: it must be `workspace`'s and `owner`'s, or not
/// exist yet under a name only the workspace's own creators may give it (`canonical`).
fn claim_rule(
    cluster: &dyn WorkspaceCatalog,
    namespace: &str,
    workspace: &str,
    owner: Option<&str>,
    field: &str,
    claim: &str,
    canonical: bool,
) -> Option<Violation> {
    match cluster.claim(namespace, claim) {
        Lookup::Unknown => Some(violation(field, NOT_SYNCED)),
        Lookup::Missing if canonical => None,
        Lookup::Missing => Some(violation(
            field,
            format!(
                "claim {claim:?} does not exist and is not a name workspace {workspace} may give its claims; mount only the workspace's own claims"
            ),
        )),
        Lookup::Found(ClaimFacts {
            workspace: w,
            owner: o,
            ..
        })
            if w.as_deref() == Some(workspace) && o.as_deref() == owner =>
        {
            None
        }
        Lookup::Found(facts) => Some(violation(
            field,
            format!(
                "claim {claim:?} is not workspace {workspace}'s ({}); a workspace pod may mount only its own workspace's claims",
                describe_claim(&facts)
            ),
        )),
    }
}

fn describe_claim(facts: &ClaimFacts) -> String {
    match (&facts.workspace, &facts.owner) {
        (Some(w), Some(o)) => format!("it belongs to workspace {w} of {o}"),
        (Some(w), None) => format!("it belongs to workspace {w}, which has no recorded owner"),
        (None, _) => format!("it is not labelled {WORKSPACE_LABEL}"),
    }
}

/// The ownership rules of a pod entering a workspace (CREATE, or an UPDATE that sets the
/// workspace label): who may create it, and which claims it may mount.
pub fn pod_provenance(
    policy: &Policy,
    cluster: &dyn WorkspaceCatalog,
    requester: &Requester,
    pod: &Pod,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(workspace) = workspace_label(&pod.metadata) else {
        return out;
    };
    if requester.is_trusted() {
        return out;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let owner = owner_of(&pod.metadata);
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let references = pod.metadata.owner_references.as_deref().unwrap_or(&[]);
    let Some(spec) = &pod.spec else {
        return out;
    };

    if let Some(reference) = controller_statefulset(pod) {
        let i = references
            .iter()
            .position(|r| std::ptr::eq(r, reference))
            .unwrap_or(0);
        let field = format!("metadata.ownerReferences[{i}]");
        if requester.role != Role::StatefulSetController {
            out.push(violation(
                field,
                format!(
                    "only the StatefulSet controller creates the pods of StatefulSet {}; remove the ownerReference (scale the workspace with kubectl devenv scale {})",
                    reference.name, reference.name
                ),
            ));
            return out;
        }
        let sts = match cluster.statefulset(namespace, &reference.name) {
            Lookup::Unknown => {
                out.push(violation(field, NOT_SYNCED));
                return out;
            }
            Lookup::Missing => {
                out.push(violation(
                    field,
                    format!(
                        "StatefulSet {} is not a workspace StatefulSet the devenv webhook knows",
                        reference.name
                    ),
                ));
                return out;
            }
            Lookup::Found(sts) => sts,
        };
        if sts.uid != reference.uid || sts.deleting {
            out.push(violation(
                field.clone(),
                format!("the ownerReference's uid is not that of StatefulSet {} (or it is being deleted)", reference.name),
            ));
        }
        if reference.name != workspace || sts.workspace.as_deref() != Some(workspace) {
            out.push(violation(
                field.clone(),
                format!(
                    "StatefulSet {} is not workspace {workspace}'s (a workspace's StatefulSet is named like the workspace and its template carries its label)",
                    reference.name
                ),
            ));
        }
        let Some(ordinal) = statefulset_ordinal(name, workspace) else {
            out.push(violation(
                "metadata.name",
                format!("pod {name:?} is not named {workspace}-<ordinal>"),
            ));
            return out;
        };
        // Both unset: a workspace made before owners were recorded keeps running.
        if owner != sts.owner.as_deref() {
            out.push(violation(
                owner_field(),
                format!(
                    "the pod's owner must be its StatefulSet's ({})",
                    sts.owner.as_deref().unwrap_or("none recorded")
                ),
            ));
        }
        for r in claim_references(spec) {
            let canonical = sts
                .claim_templates
                .iter()
                .any(|t| t == r.volume && r.claim == statefulset_claim_name(t, workspace, ordinal));
            if let Some(v) = claim_rule(
                cluster,
                namespace,
                workspace,
                sts.owner.as_deref(),
                &r.field,
                r.claim,
                canonical,
            ) {
                out.push(v);
            }
        }
        return out;
    }

    if let Some((i, other)) = references
        .iter()
        .enumerate()
        .find(|(_, r)| r.controller == Some(true))
    {
        out.push(violation(
            format!("metadata.ownerReferences[{i}]"),
            format!(
                "workspace pods are made by their StatefulSet (kubectl devenv create) or directly (a bare pod); the pods of {} {} cannot be workspaces",
                other.kind, other.name
            ),
        ));
        return out;
    }

    // A bare pod, created by its requester.
    if requester.username.is_empty() {
        out.push(violation(
            owner_field(),
            "a request without a user name cannot own a workspace",
        ));
        return out;
    }
    if owner != Some(requester.username.as_str()) {
        out.push(violation(
            owner_field(),
            format!(
                "the owner of a bare workspace pod is the user who creates it ({}), recorded by the devenv mutating webhook; remove the annotation",
                requester.username
            ),
        ));
    }
    match cluster.statefulset(namespace, workspace) {
        Lookup::Found(_) => out.push(violation(
            label_field(),
            format!(
                "workspace {workspace} is StatefulSet {workspace}: its pods are made by the StatefulSet controller (kubectl devenv scale {workspace} --replicas N)"
            ),
        )),
        Lookup::Unknown => out.push(violation(label_field(), NOT_SYNCED)),
        Lookup::Missing => {}
    }
    if let Err(v) = may_act(cluster, requester, namespace, workspace, &label_field()) {
        out.push(v);
    }
    // `bob-0` while StatefulSet bob is stopped would take its place when it starts.
    if let Some((statefulset, digits)) = name.rsplit_once('-') {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Lookup::Found(_) = cluster.statefulset(namespace, statefulset) {
                out.push(violation(
                    "metadata.name",
                    format!("pod name {name:?} is ordinal {digits} of StatefulSet {statefulset}; choose another name"),
                ));
            }
        }
    }
    for r in claim_references(spec) {
        let canonical = policy
            .volumes
            .iter()
            .any(|v| v.name == r.volume && r.claim == bare_pod_claim_name(&v.name, workspace));
        if let Some(v) = claim_rule(
            cluster,
            namespace,
            workspace,
            Some(&requester.username),
            &r.field,
            r.claim,
            canonical,
        ) {
            out.push(v);
        }
    }
    out
}

/// What changed in a pod UPDATE, for [`pod_update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodChange {
    /// Spec and the annotations validation reads are unchanged: bookkeeping (finalizers,
    /// ownerReferences, other labels) that anyone with the right may do.
    Bookkeeping,
    /// A change the owner makes (an image, a toleration): the whole pod is validated.
    Owner,
    /// The pod enters a workspace (its label is added or changed): validated like a CREATE.
    Enters,
}

/// The rules of a pod UPDATE (the pod itself, not a subresource) between two pods that carry
/// the workspace label on at least one side: what kind of change it is, or why it is refused.
/// `relevant_unchanged` says whether spec and the annotations validation reads are equal.
pub fn pod_update(
    requester: &Requester,
    old: &Pod,
    new: &Pod,
    relevant_unchanged: bool,
) -> Result<PodChange, Vec<Violation>> {
    let (old_ws, new_ws) = (
        workspace_label(&old.metadata),
        workspace_label(&new.metadata),
    );
    let admin = requester.role == Role::Admin;
    let owner = owner_of(&old.metadata);
    match (old_ws, new_ws) {
        (Some(w), None) if !admin => {
            return Err(vec![violation(
                label_field(),
                format!("the {WORKSPACE_LABEL} label cannot be removed from a pod of workspace {w} (it would take the pod out of the workspace's rules); delete the pod instead"),
            )])
        }
        (Some(_), None) => return Ok(PodChange::Bookkeeping),
        (old_ws, Some(new_ws)) if old_ws != Some(new_ws) => return Ok(PodChange::Enters),
        _ => {}
    }
    if owner_of(&new.metadata) != owner && !admin {
        return Err(vec![violation(
            owner_field(),
            format!("{OWNER_ANNOTATION} records who created the workspace and cannot change (but by an admin)"),
        )]);
    }
    let gate = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| g.iter().any(|g| g.name == CLAIMS_GATE))
    };
    if gate(old) && !gate(new) && !requester.is_trusted() {
        return Err(vec![violation(
            "spec.schedulingGates",
            format!("the {CLAIMS_GATE} scheduling gate is lifted by the devenv controller once the pod's claims exist and are its own; wait for it"),
        )]);
    }
    if relevant_unchanged {
        return Ok(PodChange::Bookkeeping);
    }
    let workspace = new_ws.unwrap_or_default();
    if !requester.may_act_for(owner) {
        return Err(vec![violation("spec", owner_rule(workspace, owner))]);
    }
    Ok(PodChange::Owner)
}

/// The rules of `pods/ephemeralcontainers` and `pods/resize` on a workspace pod: its owner,
/// admins and the devenv controllers only (the subresource cannot change metadata, so the old
/// pod's owner is the owner).
pub fn pod_subresource(
    requester: &Requester,
    old: Option<&Pod>,
    new: &Pod,
    what: &str,
) -> Vec<Violation> {
    let meta = old.map(|p| &p.metadata).unwrap_or(&new.metadata);
    let owner = owner_of(meta);
    if requester.may_act_for(owner) {
        return Vec::new();
    }
    let workspace = workspace_label(meta).unwrap_or_default();
    vec![violation(what, owner_rule(workspace, owner))]
}

/// `pods/status` may not move a pod between workspaces nor change its owner (the kubelet
/// never does; the webhook is only asked when one of them changes).
pub fn pod_status(requester: &Requester, old: &Pod, new: &Pod) -> Vec<Violation> {
    if requester.role == Role::Admin {
        return Vec::new();
    }
    let mut out = Vec::new();
    if workspace_label(&old.metadata) != workspace_label(&new.metadata) {
        out.push(violation(
            label_field(),
            format!("the {WORKSPACE_LABEL} label cannot be changed through pods/status"),
        ));
    }
    if owner_of(&old.metadata) != owner_of(&new.metadata) {
        out.push(violation(
            owner_field(),
            format!("{OWNER_ANNOTATION} cannot be changed through pods/status"),
        ));
    }
    out
}

fn template_workspace(sts: &StatefulSet) -> Option<&str> {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(workspace_label)
}

/// The ownership rules of a workspace StatefulSet, on CREATE (`old` None) and UPDATE.
pub fn statefulset_rules(
    cluster: &dyn WorkspaceCatalog,
    requester: &Requester,
    sts: &StatefulSet,
    old: Option<&StatefulSet>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(workspace) = template_workspace(sts) else {
        // The template label was removed: only an admin takes a StatefulSet out of a workspace.
        if let Some(old_ws) = old.and_then(template_workspace) {
            if requester.role != Role::Admin {
                out.push(violation(
                    format!("spec.template.{}", label_field()),
                    format!("the {WORKSPACE_LABEL} label of workspace {old_ws}'s pod template cannot be removed"),
                ));
            }
        }
        return out;
    };
    let namespace = sts.metadata.namespace.as_deref().unwrap_or("default");
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    let owner = owner_of(&sts.metadata);
    let admin = requester.role == Role::Admin;
    let template_owner = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(owner_of);
    if template_owner != owner {
        out.push(violation(
            format!("spec.template.{}", owner_field()),
            "the pod template's owner must be the StatefulSet's (the devenv mutating webhook records both)",
        ));
    }
    if let Some(label) = workspace_label(&sts.metadata) {
        if label != workspace {
            out.push(violation(label_field(), format!("the StatefulSet is labelled {label:?} but its pods {workspace:?}; label both the same")));
        }
    }
    match old {
        None => {
            if name != workspace {
                out.push(violation(
                    "metadata.name",
                    format!("a workspace's StatefulSet is named like the workspace: name it {workspace:?}, or label its pod template {WORKSPACE_LABEL}={name}"),
                ));
            }
            if !requester.is_trusted() {
                if requester.username.is_empty() {
                    out.push(violation(
                        owner_field(),
                        "a request without a user name cannot own a workspace",
                    ));
                } else if owner != Some(requester.username.as_str()) {
                    out.push(violation(owner_field(), format!("the owner of a new workspace is the user who creates it ({}), recorded by the devenv mutating webhook; remove the annotation", requester.username)));
                }
            }
            if let Err(v) = may_act(cluster, requester, namespace, workspace, &label_field()) {
                out.push(v);
            }
        }
        Some(old) => {
            if template_workspace(old) != Some(workspace) && !admin {
                out.push(violation(
                    format!("spec.template.{}", label_field()),
                    format!("the pod template's {WORKSPACE_LABEL} label cannot change (it would move the pods to another workspace)"),
                ));
            }
            let old_owner = owner_of(&old.metadata);
            if owner != old_owner && !admin {
                out.push(violation(owner_field(), format!("{OWNER_ANNOTATION} records who created the workspace and cannot change (but by an admin)")));
            }
            let changed = old.spec != sts.spec
                || old.metadata.annotations != sts.metadata.annotations
                || old.metadata.labels != sts.metadata.labels;
            if changed && !requester.may_act_for(old_owner) {
                out.push(violation("spec", owner_rule(workspace, old_owner)));
            }
        }
    }
    if !out.is_empty() {
        return out;
    }
    // Where the claims' data comes from is judged when the templates are new: a source only
    // counts when a claim is made, and a snapshot deleted since must not freeze the
    // workspace (a stop, a scale, a finalizer update are UPDATEs with the same templates).
    let templates = |s: &StatefulSet| s.spec.as_ref().map(|s| s.volume_claim_templates.clone());
    let templates_new = old.is_none_or(|o| templates(o) != templates(sts));
    if !admin && templates_new {
        for (t, template) in sts
            .spec
            .iter()
            .flat_map(|s| s.volume_claim_templates.iter().flatten())
            .enumerate()
        {
            if let Some(spec) = &template.spec {
                let field = format!("spec.volumeClaimTemplates[{t}].spec");
                out.extend(claim_source_rule(cluster, namespace, owner, &field, spec));
            }
        }
    }
    out.extend(claim_squatting(cluster, sts, old, workspace, owner));
    out
}

/// Where a workspace claim's data may come from (`dataSource`, `dataSourceRef`): nowhere
/// (an empty volume), or a VolumeSnapshot of the same namespace taken of a claim of a
/// workspace of the same owner (`kubectl devenv restore --from-snapshot`). A clone of a claim,
/// a populator, another namespace's snapshot, a pre-provisioned snapshot (its origin is
/// unproven) or a snapshot of someone else's claim would put another workspace's data, or
/// data from anywhere, into this one. Admins are not asked (their callers skip this).
pub fn claim_source_rule(
    cluster: &dyn WorkspaceCatalog,
    namespace: &str,
    owner: Option<&str>,
    field: &str,
    spec: &PersistentVolumeClaimSpec,
) -> Option<Violation> {
    let mut sources = Vec::new();
    if let Some(d) = &spec.data_source {
        sources.push((
            "dataSource",
            d.api_group.as_deref(),
            d.kind.as_str(),
            d.name.as_str(),
            None,
        ));
    }
    if let Some(d) = &spec.data_source_ref {
        sources.push((
            "dataSourceRef",
            d.api_group.as_deref(),
            d.kind.as_str(),
            d.name.as_str(),
            d.namespace.as_deref(),
        ));
    }
    for (key, group, kind, name, other_ns) in sources {
        let at = format!("{field}.{key}");
        if group != Some(SNAPSHOT_GROUP) || kind != "VolumeSnapshot" {
            return Some(violation(
                at,
                format!("a workspace's volume may be filled only from a VolumeSnapshot of its owner's workspaces (kubectl devenv restore --from-snapshot), not from a {kind} (a clone or populator may hold another workspace's data); remove {key}"),
            ));
        }
        if other_ns.is_some_and(|n| n != namespace) {
            return Some(violation(
                at,
                format!("VolumeSnapshot {name:?} of another namespace may hold another workspace's data; restore from a snapshot in {namespace}"),
            ));
        }
        let refused = |why: String| {
            Some(violation(
                at.clone(),
                format!("VolumeSnapshot {name:?} {why}; a workspace's volume is filled only from snapshots of its owner's workspaces"),
            ))
        };
        match cluster.snapshot(namespace, name) {
            Lookup::Unknown => return Some(violation(at.clone(), NOT_SYNCED)),
            Lookup::Missing => {
                return refused("does not exist (or the webhook has not seen it yet: retry)".into())
            }
            Lookup::Found(SnapshotFacts {
                source_claim: None,
                ..
            }) => {
                return refused("is pre-provisioned: nothing proves whose data it holds".into())
            }
            Lookup::Found(SnapshotFacts {
                source_claim: Some(claim),
                created: taken,
            }) => match cluster.claim(namespace, &claim) {
                Lookup::Unknown => return Some(violation(at.clone(), NOT_SYNCED)),
                // The claim that has the name now is not the one snapshotted when the snapshot
                // is older: a name freed by a deleted workspace and taken again by another
                // owner must not open the earlier owner's snapshots to them.
                Lookup::Found(ClaimFacts { created, .. })
                    if matches!((taken, created), (Some(t), Some(c)) if t < c) =>
                {
                    return refused(format!(
                        "was taken before claim {claim:?} was made: it is of an earlier claim of that name, whose owner nothing proves"
                    ))
                }
                Lookup::Found(ClaimFacts {
                    workspace: Some(_),
                    owner: o,
                    ..
                }) if o.is_some() && o.as_deref() == owner => {}
                Lookup::Found(facts) => {
                    return refused(format!("is of claim {claim:?}: {}", describe_claim(&facts)))
                }
                Lookup::Missing => {
                    return refused(format!(
                        "is of claim {claim:?}, which is gone, so nothing proves whose it was"
                    ))
                }
            },
        }
    }
    None
}

/// The claims a StatefulSet's new ordinals will get, `<template>-W-<ordinal>`: one that
/// exists and is not the workspace's (someone made it first) would be taken over by the
/// StatefulSet controller, so the StatefulSet is refused instead.
fn claim_squatting(
    cluster: &dyn WorkspaceCatalog,
    sts: &StatefulSet,
    old: Option<&StatefulSet>,
    workspace: &str,
    owner: Option<&str>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(spec) = &sts.spec else {
        return out;
    };
    let namespace = sts.metadata.namespace.as_deref().unwrap_or("default");
    let start = spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(0);
    let replicas = |s: &StatefulSet| {
        s.spec
            .as_ref()
            .and_then(|s| s.replicas)
            .map_or(1, |r| u64::try_from(r).unwrap_or(0))
    };
    let from = old.map_or(0, replicas);
    // Bounded: a huge replica count is the quota's to refuse, not this loop's to walk.
    let to = replicas(sts).min(from.saturating_add(1000));
    for (t, template) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let Some(template_name) = template.metadata.name.as_deref() else {
            continue;
        };
        for n in from..to {
            let claim = statefulset_claim_name(template_name, workspace, start + n);
            let field = format!("spec.volumeClaimTemplates[{t}]");
            if let Some(v) = claim_rule(cluster, namespace, workspace, owner, &field, &claim, true)
            {
                out.push(v);
            }
        }
    }
    out
}

/// The rules of a claim labelled as a workspace's (CREATE, UPDATE, DELETE): who may make one,
/// that its label and owner never change, and who may delete it.
pub fn claim_admission(
    cluster: &dyn WorkspaceCatalog,
    requester: &Requester,
    claim: Option<&PersistentVolumeClaim>,
    old: Option<&PersistentVolumeClaim>,
) -> Vec<Violation> {
    let admin = requester.role == Role::Admin;
    match (claim, old) {
        // CREATE
        (Some(claim), None) => {
            let Some(workspace) = workspace_label(&claim.metadata) else {
                return Vec::new();
            };
            if !admin {
                let namespace = claim.metadata.namespace.as_deref().unwrap_or("default");
                if let Some(spec) = &claim.spec {
                    if let Some(v) = claim_source_rule(
                        cluster,
                        namespace,
                        owner_of(&claim.metadata),
                        "spec",
                        spec,
                    ) {
                        return vec![v];
                    }
                }
            }
            if requester.is_trusted() {
                return Vec::new();
            }
            let name = claim.metadata.name.as_deref().unwrap_or_default();
            let namespace = claim.metadata.namespace.as_deref().unwrap_or("default");
            if requester.role == Role::StatefulSetController {
                if let Lookup::Found(sts) = cluster.statefulset(namespace, workspace) {
                    let canonical = sts.claim_templates.iter().any(|t| {
                        name.strip_prefix(&format!("{t}-"))
                            .and_then(|rest| statefulset_ordinal(rest, workspace))
                            .is_some()
                    });
                    if canonical
                        && sts.workspace.as_deref() == Some(workspace)
                        && owner_of(&claim.metadata) == sts.owner.as_deref()
                    {
                        return Vec::new();
                    }
                } else if let Lookup::Unknown = cluster.statefulset(namespace, workspace) {
                    return vec![violation(label_field(), NOT_SYNCED)];
                }
            }
            vec![violation(
                label_field(),
                format!(
                    "claims of workspace {workspace} are made by its StatefulSet or by the devenv controller, with the workspace's owner; create workspaces with kubectl devenv create"
                ),
            )]
        }
        // UPDATE
        (Some(claim), Some(old)) => {
            if admin {
                return Vec::new();
            }
            let mut out = Vec::new();
            if workspace_label(&claim.metadata) != workspace_label(&old.metadata) {
                out.push(violation(
                    label_field(),
                    format!("the {WORKSPACE_LABEL} label of a workspace's claim cannot change"),
                ));
            }
            if owner_of(&claim.metadata) != owner_of(&old.metadata) {
                out.push(violation(
                    owner_field(),
                    format!(
                        "{OWNER_ANNOTATION} of a workspace's claim cannot change (but by an admin)"
                    ),
                ));
            }
            out
        }
        // DELETE
        (None, Some(old)) => {
            let Some(workspace) = workspace_label(&old.metadata) else {
                return Vec::new();
            };
            let owner = owner_of(&old.metadata);
            if requester.may_act_for(owner) || requester.is_cluster_component() {
                return Vec::new();
            }
            vec![violation(
                "metadata.name",
                format!(
                    "{} (deleting a claim deletes its data)",
                    owner_rule(workspace, owner)
                ),
            )]
        }
        (None, None) => Vec::new(),
    }
}

/// The rules of a VolumeSnapshot labelled as workspace W's (what `kubectl devenv snapshot`
/// makes), whose labels a restore trusts to find a set: made only by W's owner (or an admin
/// or the devenv controller) and only of W's own claims; its label never changes; deleted
/// only by W's owner, admins, the devenv controllers and the cluster's own components
/// (deleting a snapshot deletes the data it holds).
pub fn snapshot_admission(
    cluster: &dyn WorkspaceCatalog,
    requester: &Requester,
    snapshot: Option<&crate::model::snapshot::VolumeSnapshot>,
    old: Option<&crate::model::snapshot::VolumeSnapshot>,
) -> Vec<Violation> {
    let admin = requester.role == Role::Admin;
    // Whose workspace W is: its objects' owner, else (W is gone) the snapshot's own record.
    let owner_of_workspace =
        |meta: &ObjectMeta, workspace: &str| -> Result<Option<String>, Violation> {
            let namespace = meta.namespace.as_deref().unwrap_or("default");
            match cluster.workspace_owner(namespace, workspace) {
                Lookup::Unknown => Err(violation(label_field(), NOT_SYNCED)),
                Lookup::Found(owner) => Ok(owner),
                Lookup::Missing => Ok(owner_of(meta).map(str::to_owned)),
            }
        };
    match (snapshot, old) {
        // CREATE
        (Some(snapshot), None) => {
            let Some(workspace) = workspace_label(&snapshot.metadata) else {
                return Vec::new();
            };
            if requester.is_trusted() {
                return Vec::new();
            }
            let namespace = snapshot.metadata.namespace.as_deref().unwrap_or("default");
            let owner = match cluster.workspace_owner(namespace, workspace) {
                Lookup::Unknown => return vec![violation(label_field(), NOT_SYNCED)],
                Lookup::Missing => {
                    return vec![violation(
                        label_field(),
                        format!("workspace {workspace} does not exist: a snapshot labelled as a workspace's is of its claims (kubectl devenv snapshot {workspace})"),
                    )]
                }
                Lookup::Found(owner) => owner,
            };
            if !requester.may_act_for(owner.as_deref()) {
                return vec![violation(
                    label_field(),
                    owner_rule(workspace, owner.as_deref()),
                )];
            }
            let claim = snapshot.spec.source.persistent_volume_claim_name.as_deref();
            let of_workspace = claim.is_some_and(|c| {
                matches!(cluster.claim(namespace, c), Lookup::Found(ClaimFacts { workspace: Some(w), .. }) if w == workspace)
            });
            if of_workspace {
                Vec::new()
            } else {
                vec![violation(
                    "spec.source.persistentVolumeClaimName",
                    format!(
                        "a snapshot labelled as workspace {workspace}'s is of one of its claims, not of {}; label it as the workspace whose claim it is, or not at all",
                        claim.map_or_else(|| "a pre-provisioned snapshot".to_owned(), |c| format!("claim {c:?}"))
                    ),
                )]
            }
        }
        // UPDATE
        (Some(snapshot), Some(old)) => {
            if admin || workspace_label(&snapshot.metadata) == workspace_label(&old.metadata) {
                Vec::new()
            } else {
                vec![violation(
                    label_field(),
                    format!("the {WORKSPACE_LABEL} label of a workspace's snapshot cannot change"),
                )]
            }
        }
        // DELETE
        (None, Some(old)) => {
            let Some(workspace) = workspace_label(&old.metadata) else {
                return Vec::new();
            };
            if requester.is_trusted() || requester.is_cluster_component() {
                return Vec::new();
            }
            match owner_of_workspace(&old.metadata, workspace) {
                Err(v) => vec![v],
                Ok(owner) if requester.may_act_for(owner.as_deref()) => Vec::new(),
                Ok(owner) => vec![violation(
                    "metadata.name",
                    format!(
                        "{} (deleting a snapshot deletes the data it holds)",
                        owner_rule(workspace, owner.as_deref())
                    ),
                )],
            }
        }
        (None, None) => Vec::new(),
    }
}
