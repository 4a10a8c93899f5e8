//! Which claims belong to a workspace, for expiry with `purgeOnExpiry`.

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::lifecycle::patches::{current_replicas, replicas_to_restore};
use crate::model::names::statefulset_claim_name;

/// A volume claim of a workspace that `purgeOnExpiry` deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceClaim {
    /// Claim name.
    pub name: String,
    /// Created from the StatefulSet's volumeClaimTemplates (so certainly the
    /// workspace's own); otherwise referenced by the pod template, and to be
    /// deleted only if it carries the workspace label with this workspace's name.
    pub from_template: bool,
}

/// The claims of a workspace: `<template>-<statefulset>-<ordinal>` for every
/// volumeClaimTemplate and ordinal below the replicas it had before the stop
/// (at least 1), and the claims its pod template mounts.
pub fn workspace_claims(sts: &StatefulSet) -> Vec<WorkspaceClaim> {
    let Some(name) = sts.metadata.name.as_deref() else {
        return Vec::new();
    };
    let ordinals = replicas_to_restore(sts).max(current_replicas(sts)).max(1);
    let mut claims = Vec::new();
    let Some(spec) = sts.spec.as_ref() else {
        return claims;
    };
    for template in spec.volume_claim_templates.iter().flatten() {
        if let Some(t) = template.metadata.name.as_deref() {
            for ordinal in 0..ordinals {
                claims.push(WorkspaceClaim {
                    name: statefulset_claim_name(t, name, u64::from(ordinal.unsigned_abs())),
                    from_template: true,
                });
            }
        }
    }
    let volumes = spec.template.spec.as_ref().and_then(|p| p.volumes.as_ref());
    for volume in volumes.into_iter().flatten() {
        if let Some(pvc) = volume.persistent_volume_claim.as_ref() {
            if !claims.iter().any(|c| c.name == pvc.claim_name) {
                claims.push(WorkspaceClaim {
                    name: pvc.claim_name.clone(),
                    from_template: false,
                });
            }
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::test_support::*;
    use crate::model::keys::REPLICAS_BEFORE_STOP;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn claims_of_a_workspace() {
        use k8s_openapi::api::core::v1::{
            PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
            Volume,
        };
        let mut s = sts(Some(0), &[(REPLICAS_BEFORE_STOP, "2")]);
        if let Some(spec) = s.spec.as_mut() {
            spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("home".into()),
                    ..Default::default()
                },
                ..Default::default()
            }]);
            spec.template = PodTemplateSpec {
                spec: Some(PodSpec {
                    volumes: Some(vec![Volume {
                        name: "cache".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: "alice-cache".into(),
                            read_only: None,
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
        }
        let names: Vec<(String, bool)> = workspace_claims(&s)
            .into_iter()
            .map(|c| (c.name, c.from_template))
            .collect();
        assert_eq!(
            names,
            vec![
                ("home-dev-alice-0".to_string(), true),
                ("home-dev-alice-1".to_string(), true),
                ("alice-cache".to_string(), false),
            ]
        );
    }
}
