//! Builders of the workspace's PersistentVolumeClaims: the one place that decides their names,
//! labels and specs, used by the webhook (StatefulSet claim templates, bare-pod claims) and by
//! the plugin's `create`.
//!
//! Claim names, for a policy volume `<volume>` and workspace `<workspace>`:
//!
//! * StatefulSet workspaces: the claim template is named `<volume>`; the StatefulSet
//!   controller then creates `<volume>-<statefulset>-<ordinal>` (see [`crate::model::names::statefulset_claim_name`]).
//! * Bare pods (no StatefulSet owner): `<volume>-<workspace>-bare`, e.g. `workspace-alice-bare`
//!   (see [`crate::model::names::bare_pod_claim_name`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::keys::{MANAGED_BY, MANAGED_BY_LABEL, OWNER_ANNOTATION, WORKSPACE_LABEL};
use crate::model::names::bare_pod_claim_name;
use crate::model::policy::VolumePolicy;

/// Labels of every workspace claim: `devenv.io/workspace=<workspace>` and
/// `app.kubernetes.io/managed-by=kubectl-devenv`.
pub fn claim_labels(workspace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (WORKSPACE_LABEL.to_string(), workspace.to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
    ])
}

fn claim_spec(volume: &VolumePolicy) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".to_string()]),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(volume.size.clone()),
            )])),
            limits: None,
        }),
        // Only when set: an explicit `storageClassName: ""` would mean "no class" rather than
        // "the cluster default".
        storage_class_name: volume.storage_class.clone(),
        ..Default::default()
    }
}

/// The `volumeClaimTemplates` entry for a policy volume of a workspace StatefulSet.
///
/// Named exactly like the policy volume (`workspace`, `history`, ...), so the StatefulSet
/// controller adds a pod volume of that name backed by the claim
/// `<volume>-<statefulset>-<ordinal>`. Labelled with the workspace and managed-by labels;
/// ReadWriteOnce; `storageClassName` only when the policy sets one. No namespace: templates
/// take the StatefulSet's.
pub fn claim_template(policy_volume: &VolumePolicy, workspace: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(policy_volume.name.clone()),
            labels: Some(claim_labels(workspace)),
            ..Default::default()
        },
        spec: Some(claim_spec(policy_volume)),
        status: None,
    }
}

/// The claim of a bare workspace pod (one without a StatefulSet owner), named
/// [`bare_pod_claim_name`](crate::model::names::bare_pod_claim_name)
/// (`<volume>-<workspace>-bare`) in `namespace`, with the same labels and spec as
/// [`claim_template`] and the workspace's `owner`. The lifecycle controller creates it once
/// the pod exists (admission creates nothing).
pub fn bare_pod_claim(
    policy_volume: &VolumePolicy,
    workspace: &str,
    namespace: &str,
    owner: &str,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(bare_pod_claim_name(&policy_volume.name, workspace)),
            namespace: Some(namespace.to_string()),
            labels: Some(claim_labels(workspace)),
            annotations: Some(BTreeMap::from([(
                OWNER_ANNOTATION.to_string(),
                owner.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(claim_spec(policy_volume)),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::names::statefulset_claim_name;

    fn volume(storage_class: Option<&str>) -> VolumePolicy {
        VolumePolicy {
            name: "workspace".to_string(),
            size: "10Gi".to_string(),
            mount_path: "/workspace".to_string(),
            storage_class: storage_class.map(str::to_string),
        }
    }

    #[test]
    fn template_is_named_like_the_volume() {
        let pvc = claim_template(&volume(None), "alice");
        assert_eq!(pvc.metadata.name.as_deref(), Some("workspace"));
        assert_eq!(pvc.metadata.namespace, None);
        let labels = pvc.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("devenv.io/workspace").map(String::as_str),
            Some("alice")
        );
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("kubectl-devenv")
        );
        let spec = pvc.spec.unwrap_or_default();
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        assert_eq!(spec.storage_class_name, None);
        let storage = spec
            .resources
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").cloned());
        assert_eq!(storage, Some(Quantity("10Gi".to_string())));
    }

    #[test]
    fn storage_class_only_when_set() {
        let pvc = claim_template(&volume(Some("fast")), "alice");
        assert_eq!(
            pvc.spec.and_then(|s| s.storage_class_name).as_deref(),
            Some("fast")
        );
        let json = serde_json::to_value(claim_template(&volume(None), "a")).unwrap_or_default();
        assert!(json["spec"].get("storageClassName").is_none(), "{json}");
    }

    #[test]
    fn bare_pod_claim_is_per_workspace() {
        assert_eq!(
            bare_pod_claim_name("workspace", "alice"),
            "workspace-alice-bare"
        );
        assert_eq!(
            statefulset_claim_name("history", "alice", 0),
            "history-alice-0"
        );
        let pvc = bare_pod_claim(&volume(None), "alice", "team-a", "alice@example.com");
        assert_eq!(pvc.metadata.name.as_deref(), Some("workspace-alice-bare"));
        assert_eq!(
            pvc.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(OWNER_ANNOTATION))
                .map(String::as_str),
            Some("alice@example.com")
        );
        assert_eq!(pvc.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(pvc.spec, claim_template(&volume(None), "alice").spec);
        // Serialises as a complete object for server-side apply.
        let json = serde_json::to_value(&pvc).unwrap_or_default();
        assert_eq!(json["apiVersion"], "v1");
        assert_eq!(json["kind"], "PersistentVolumeClaim");
    }
}
