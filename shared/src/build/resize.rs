//! Growing a workspace's volumes (`kubectl devenv scale NAME --workspace-size 50Gi`): a pure
//! plan from what the cluster holds, so every refusal is decided (and tested) before anything
//! is written.
//!
//! Kubernetes keeps a StatefulSet's `volumeClaimTemplates` immutable, and a claim can only
//! grow, only while bound, and only where its StorageClass says `allowVolumeExpansion: true`.
//! So a resize (1) raises the request of every existing claim of the workspace, kept claims of
//! scaled-down pods included, and (2) replaces the StatefulSet by one with the new templates:
//! deleted with the orphan cascade (its pods and claims stay) and created again with the same
//! pod template, so the new StatefulSet adopts the running pods without restarting them and
//! new pool members get the new size. Growing the filesystem is the storage driver's job.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};

use crate::model::quantity::Quantity;

/// One requested size: the claim template (policy volume) name and the new size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeRequest {
    pub volume: String,
    pub size: String,
}

/// What a resize writes, in order: the claim patches, then the StatefulSet replacement.
#[derive(Debug, Clone, PartialEq)]
pub struct ResizePlan {
    /// `(claim name, merge patch)` for every claim whose request grows.
    pub claims: Vec<(String, Value)>,
    /// The StatefulSet to create after the orphan delete: the one read, with the new template
    /// sizes and without what the API server owns (uid, resourceVersion, status, ...).
    /// `None` when every template already has the requested size.
    pub statefulset: Option<StatefulSet>,
    /// What changes, for the user: `workspace: 10Gi -> 50Gi (3 claims)`.
    pub summary: Vec<String>,
}

/// Why a resize is refused. Each names the field, the object and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResizeError {
    #[error("--{volume}-size {size:?}: {reason}")]
    BadSize {
        volume: String,
        size: String,
        reason: String,
    },
    #[error(
        "workspace {workspace} has no volume {volume:?} (its volumes: {known}); \
         pass the size of one of them"
    )]
    UnknownVolume {
        workspace: String,
        volume: String,
        known: String,
    },
    #[error(
        "--{volume}-size {to}: smaller than the {from} {what} already requests; volumes can \
         only grow (to get a smaller one, back it up and create a new workspace)"
    )]
    Smaller {
        volume: String,
        what: String,
        from: String,
        to: String,
    },
    #[error(
        "claim {claim} uses StorageClass {class:?}, which does not allow expansion \
         (allowVolumeExpansion is not true); ask the cluster admin to enable it on the class \
         if its driver can expand volumes"
    )]
    ClassCannotExpand { claim: String, class: String },
    #[error(
        "claim {claim} uses StorageClass {class:?}, which does not exist; its size cannot be \
         changed"
    )]
    UnknownClass { claim: String, class: String },
    #[error(
        "claim {claim} has no StorageClass (a pre-provisioned volume); its size cannot be \
         changed"
    )]
    NoClass { claim: String },
    #[error(
        "claim {claim} is {phase}, not Bound; Kubernetes resizes only bound claims: wait \
         until it binds (kubectl get pvc {claim}) and run this again"
    )]
    NotBound { claim: String, phase: String },
}

fn storage_request(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.as_str())
}

/// The claims of `statefulset` made from its template `volume`: `<volume>-<sts>-<ordinal>`.
fn claims_of<'a>(
    volume: &str,
    statefulset: &str,
    claims: &'a [PersistentVolumeClaim],
) -> Vec<&'a PersistentVolumeClaim> {
    let prefix = format!("{volume}-{statefulset}-");
    claims
        .iter()
        .filter(|c| {
            c.metadata.name.as_deref().is_some_and(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .collect()
}

fn parse(volume: &str, size: &str) -> Result<Quantity, ResizeError> {
    let bad = |reason: String| ResizeError::BadSize {
        volume: volume.to_owned(),
        size: size.to_owned(),
        reason,
    };
    let q = Quantity::parse(size).map_err(|e| bad(format!("{e} (write it like 50Gi)")))?;
    if q.is_negative() || q.is_zero() {
        return Err(bad(
            "a volume size must be positive (write it like 50Gi)".into()
        ));
    }
    Ok(q)
}

/// Whether `class` lets claims grow.
fn check_class(claim: &PersistentVolumeClaim, classes: &[StorageClass]) -> Result<(), ResizeError> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    if phase != "Bound" {
        return Err(ResizeError::NotBound { claim: name, phase });
    }
    let Some(class) = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .filter(|c| !c.is_empty())
    else {
        return Err(ResizeError::NoClass { claim: name });
    };
    match classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(&class))
    {
        None => Err(ResizeError::UnknownClass { claim: name, class }),
        Some(c) if c.allow_volume_expansion != Some(true) => {
            Err(ResizeError::ClassCannotExpand { claim: name, class })
        }
        Some(_) => Ok(()),
    }
}

/// The plan to give `sts`'s volumes the `requested` sizes, from the claims of its namespace
/// and the cluster's StorageClasses. Refuses (before anything is written) a size that is not a
/// positive quantity, a volume the workspace does not have, a size smaller than a template's
/// or a claim's, an unbound claim, and a claim whose class cannot expand.
pub fn plan(
    sts: &StatefulSet,
    claims: &[PersistentVolumeClaim],
    classes: &[StorageClass],
    requested: &[SizeRequest],
) -> Result<ResizePlan, ResizeError> {
    let name = sts.metadata.name.clone().unwrap_or_default();
    let templates = sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    let mut new_templates = templates.clone();
    let mut out = ResizePlan {
        claims: Vec::new(),
        statefulset: None,
        summary: Vec::new(),
    };
    let mut templates_change = false;
    for req in requested {
        let to = parse(&req.volume, &req.size)?;
        let Some(index) = templates
            .iter()
            .position(|t| t.metadata.name.as_deref() == Some(&req.volume))
        else {
            let known: Vec<&str> = templates
                .iter()
                .filter_map(|t| t.metadata.name.as_deref())
                .collect();
            return Err(ResizeError::UnknownVolume {
                workspace: name,
                volume: req.volume.clone(),
                known: known.join(", "),
            });
        };
        let smaller = |what: String, from: &str| ResizeError::Smaller {
            volume: req.volume.clone(),
            what,
            from: from.to_owned(),
            to: req.size.clone(),
        };
        let template_size = storage_request(&templates[index]).unwrap_or("0");
        let template_grows = match Quantity::parse(template_size) {
            Ok(from) if to < from => {
                return Err(smaller(
                    format!("claim template {}", req.volume),
                    template_size,
                ))
            }
            Ok(from) => to > from,
            Err(_) => true,
        };
        let mut grown = 0;
        for claim in claims_of(&req.volume, &name, claims) {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            let current = storage_request(claim).unwrap_or("0");
            match Quantity::parse(current) {
                Ok(from) if to < from => {
                    return Err(smaller(format!("claim {claim_name}"), current))
                }
                Ok(from) if to == from => continue,
                _ => {}
            }
            check_class(claim, classes)?;
            out.claims.push((
                claim_name,
                json!({ "spec": { "resources": { "requests": { "storage": req.size } } } }),
            ));
            grown += 1;
        }
        if template_grows {
            templates_change = true;
            let spec = new_templates[index]
                .spec
                .get_or_insert_with(Default::default);
            spec.resources
                .get_or_insert_with(Default::default)
                .requests
                .get_or_insert_with(BTreeMap::new)
                .insert("storage".into(), K8sQuantity(req.size.clone()));
        }
        if template_grows || grown > 0 {
            out.summary.push(format!(
                "{}: {template_size} -> {} ({grown} claim{} grown)",
                req.volume,
                req.size,
                if grown == 1 { "" } else { "s" }
            ));
        }
    }
    if templates_change {
        out.statefulset = Some(replacement(sts, new_templates));
    }
    Ok(out)
}

/// The StatefulSet that replaces `sts` (after an orphan delete) with `templates` as its claim
/// templates: the same pod template, labels, annotations and owners, without what the API
/// server owns (uid, resourceVersion, status, ...). A workspace restored from snapshots has
/// templates filled from them. Its claims exist; a source only counts when a claim is made,
/// and the snapshot may be gone by now (the webhook would refuse the new StatefulSet for it,
/// and a new member's claim with it), so the replacement starts new pool members empty, as
/// `create` does.
fn replacement(sts: &StatefulSet, mut templates: Vec<PersistentVolumeClaim>) -> StatefulSet {
    let mut next = sts.clone();
    next.metadata = ObjectMeta {
        name: sts.metadata.name.clone(),
        namespace: sts.metadata.namespace.clone(),
        labels: sts.metadata.labels.clone(),
        annotations: sts.metadata.annotations.clone(),
        owner_references: sts.metadata.owner_references.clone(),
        ..Default::default()
    };
    next.status = None;
    for template in &mut templates {
        if let Some(spec) = template.spec.as_mut() {
            spec.data_source = None;
            spec.data_source_ref = None;
        }
    }
    if let Some(spec) = next.spec.as_mut() {
        spec.volume_claim_templates = Some(templates);
    }
    next
}

/// `sts` as a StatefulSet to create again after an orphan delete, its templates as they are
/// (without data sources, as every replacement).
pub fn as_new(sts: &StatefulSet) -> StatefulSet {
    let templates = sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    replacement(sts, templates)
}

/// Scaling a workspace restored from snapshots up to `replicas`: its templates still name
/// the snapshots its first member's claims were filled from, so a new member would be made
/// from them too, or (once they are deleted) not at all, its claim refused. The StatefulSet
/// to put in its place (orphan delete, pods adopted) has plain templates and `replicas`, so
/// new members start empty as `create`'s do. `None` when no template names a source (the
/// replicas patch is all it takes) or when the workspace is not growing.
pub fn scale_up_replacement(sts: &StatefulSet, replicas: i32) -> Option<StatefulSet> {
    let spec = sts.spec.as_ref()?;
    if replicas <= spec.replicas.unwrap_or(1) {
        return None;
    }
    let templates = spec.volume_claim_templates.clone().unwrap_or_default();
    let sourced = templates.iter().any(|t| {
        t.spec
            .as_ref()
            .is_some_and(|s| s.data_source.is_some() || s.data_source_ref.is_some())
    });
    if !sourced {
        return None;
    }
    let mut next = replacement(sts, templates);
    if let Some(spec) = next.spec.as_mut() {
        spec.replicas = Some(replicas);
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, VolumeResourceRequirements,
    };

    fn template(volume: &str, size: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(volume.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".into(),
                        K8sQuantity(size.into()),
                    )])),
                    limits: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn claim(name: &str, size: &str, class: Option<&str>, phase: &str) -> PersistentVolumeClaim {
        let mut c = template(name, size);
        if let Some(spec) = c.spec.as_mut() {
            spec.storage_class_name = class.map(str::to_owned);
        }
        c.status = Some(PersistentVolumeClaimStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        c
    }

    fn class(name: &str, expand: Option<bool>) -> StorageClass {
        StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            allow_volume_expansion: expand,
            provisioner: "example.com/driver".into(),
            ..Default::default()
        }
    }

    fn sts() -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("alice".into()),
                namespace: Some("dev".into()),
                uid: Some("u-1".into()),
                resource_version: Some("42".into()),
                labels: Some(BTreeMap::from([(
                    "devenv.io/workspace".into(),
                    "alice".into(),
                )])),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                volume_claim_templates: Some(vec![
                    template("workspace", "10Gi"),
                    template("history", "1Gi"),
                ]),
                ..Default::default()
            }),
            status: Some(Default::default()),
        }
    }

    fn req(volume: &str, size: &str) -> Vec<SizeRequest> {
        vec![SizeRequest {
            volume: volume.into(),
            size: size.into(),
        }]
    }

    fn claims() -> Vec<PersistentVolumeClaim> {
        vec![
            claim("workspace-alice-0", "10Gi", Some("grow"), "Bound"),
            // a kept claim of a scaled-down pod grows too
            claim("workspace-alice-3", "10Gi", Some("grow"), "Bound"),
            claim("history-alice-0", "1Gi", Some("fixed"), "Bound"),
            // another workspace's claims are not alice's, whatever the prefix
            claim("workspace-alice-bob-0", "10Gi", Some("fixed"), "Bound"),
            claim("workspace-alice-bare", "10Gi", Some("fixed"), "Bound"),
        ]
    }

    fn classes() -> Vec<StorageClass> {
        vec![class("grow", Some(true)), class("fixed", None)]
    }

    #[test]
    fn growing_patches_every_claim_of_the_template_and_replaces_the_statefulset() {
        let p = plan(&sts(), &claims(), &classes(), &req("workspace", "50Gi")).unwrap();
        let names: Vec<&str> = p.claims.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["workspace-alice-0", "workspace-alice-3"]);
        assert_eq!(
            p.claims[0].1["spec"]["resources"]["requests"]["storage"],
            "50Gi"
        );
        let next = p.statefulset.unwrap();
        assert_eq!(next.metadata.uid, None);
        assert_eq!(next.metadata.resource_version, None);
        assert_eq!(next.status, None);
        assert_eq!(next.metadata.labels, sts().metadata.labels);
        let t = next.spec.unwrap().volume_claim_templates.unwrap();
        assert_eq!(storage_request(&t[0]), Some("50Gi"));
        assert_eq!(storage_request(&t[1]), Some("1Gi"), "history is untouched");
        assert_eq!(p.summary, ["workspace: 10Gi -> 50Gi (2 claims grown)"]);
    }

    fn restored() -> StatefulSet {
        let mut restored = sts();
        if let Some(t) = restored
            .spec
            .as_mut()
            .and_then(|s| s.volume_claim_templates.as_mut())
        {
            t[0].spec
                .get_or_insert_with(Default::default)
                .data_source_ref = Some(k8s_openapi::api::core::v1::TypedObjectReference {
                api_group: Some("snapshot.storage.k8s.io".into()),
                kind: "VolumeSnapshot".into(),
                name: "workspace-alice-0.t1".into(),
                namespace: None,
            });
        }
        restored
    }

    #[test]
    fn a_restored_workspace_scaled_up_is_replaced_by_one_whose_new_members_start_empty() {
        let restored = restored();
        let now = restored.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let next = scale_up_replacement(&restored, now + 2).unwrap();
        assert_eq!(next.metadata.uid, None);
        assert_eq!(next.metadata.resource_version, None);
        assert_eq!(next.metadata.labels, restored.metadata.labels);
        assert_eq!(next.metadata.annotations, restored.metadata.annotations);
        let spec = next.spec.unwrap();
        assert_eq!(spec.replicas, Some(now + 2));
        assert_eq!(spec.template, restored.spec.clone().unwrap().template);
        let t = spec.volume_claim_templates.unwrap();
        assert!(t
            .iter()
            .all(|t| t.spec.as_ref().unwrap().data_source_ref.is_none()));
        assert_eq!(storage_request(&t[0]), Some("10Gi"), "sizes are kept");
        // Not growing, or nothing to strip: the replicas patch does it.
        assert_eq!(scale_up_replacement(&restored, now), None);
        assert_eq!(scale_up_replacement(&restored, 0), None);
        assert_eq!(scale_up_replacement(&sts(), now + 2), None);
        // Created again as it was (a failed replacement): same templates, no sources.
        let again = as_new(&restored);
        assert_eq!(again.metadata.uid, None);
        let spec = again.spec.unwrap();
        assert_eq!(spec.replicas, Some(now));
        let t = spec.volume_claim_templates.unwrap();
        assert!(t
            .iter()
            .all(|t| t.spec.as_ref().unwrap().data_source_ref.is_none()));
    }

    #[test]
    fn a_workspace_restored_from_snapshots_grows_without_its_templates_sources() {
        let restored = restored();
        let p = plan(&restored, &claims(), &classes(), &req("workspace", "50Gi")).unwrap();
        let t = p
            .statefulset
            .unwrap()
            .spec
            .unwrap()
            .volume_claim_templates
            .unwrap();
        assert_eq!(t[0].spec.as_ref().unwrap().data_source_ref, None);
        assert_eq!(storage_request(&t[0]), Some("50Gi"));
    }

    #[test]
    fn the_same_size_again_changes_nothing_and_equal_quantities_are_equal() {
        let p = plan(&sts(), &claims(), &classes(), &req("workspace", "10Gi")).unwrap();
        assert!(p.claims.is_empty() && p.statefulset.is_none() && p.summary.is_empty());
        // 10240Mi is 10Gi
        let p = plan(&sts(), &claims(), &classes(), &req("workspace", "10240Mi")).unwrap();
        assert!(p.claims.is_empty() && p.statefulset.is_none(), "{p:?}");
    }

    #[test]
    fn a_resize_interrupted_after_the_claims_resumes_with_the_statefulset() {
        let mut grown = claims();
        for c in &mut grown[..2] {
            *c = claim(
                c.metadata.name.as_deref().unwrap(),
                "50Gi",
                Some("grow"),
                "Bound",
            );
        }
        let p = plan(&sts(), &grown, &classes(), &req("workspace", "50Gi")).unwrap();
        assert!(p.claims.is_empty());
        assert!(p.statefulset.is_some());
    }

    #[test]
    fn refusals_name_the_field_the_object_and_what_to_do() {
        let err = |volume: &str, size: &str, claims: &[PersistentVolumeClaim]| {
            plan(&sts(), claims, &classes(), &req(volume, size))
                .unwrap_err()
                .to_string()
        };
        let e = err("workspace", "5Gi", &claims());
        assert!(
            e.contains("--workspace-size 5Gi") && e.contains("only grow"),
            "{e}"
        );
        let e = err("history", "2Gi", &claims());
        assert!(
            e.contains("\"fixed\"") && e.contains("allowVolumeExpansion"),
            "{e}"
        );
        let e = err("workspace", "lots", &claims());
        assert!(
            e.contains("--workspace-size \"lots\"") && e.contains("50Gi"),
            "{e}"
        );
        let e = err("workspace", "0", &claims());
        assert!(e.contains("positive"), "{e}");
        let e = err("config", "2Gi", &claims());
        assert!(e.contains("workspace, history"), "{e}");
        let pending = vec![claim("workspace-alice-0", "10Gi", Some("grow"), "Pending")];
        let e = err("workspace", "50Gi", &pending);
        assert!(
            e.contains("Pending") && e.contains("kubectl get pvc workspace-alice-0"),
            "{e}"
        );
        let classless = vec![claim("workspace-alice-0", "10Gi", None, "Bound")];
        assert!(err("workspace", "50Gi", &classless).contains("no StorageClass"));
        let gone = vec![claim("workspace-alice-0", "10Gi", Some("gone"), "Bound")];
        assert!(err("workspace", "50Gi", &gone).contains("does not exist"));
        // a claim already grown past the request (by hand) is not shrunk
        let big = vec![claim("workspace-alice-0", "80Gi", Some("grow"), "Bound")];
        let e = err("workspace", "50Gi", &big);
        assert!(
            e.contains("claim workspace-alice-0") && e.contains("80Gi"),
            "{e}"
        );
    }
}
