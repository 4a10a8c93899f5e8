//! Bare workspace pods (made directly, not by a StatefulSet): their claims are created by
//! the lifecycle controller once the pod exists, never by admission, so a pod the API server
//! refuses leaves nothing behind and a user who could not create claims gets none made for
//! a pod they could not make. The mutating webhook holds the pod back with the
//! [`CLAIMS_GATE`] scheduling gate; [`bare_pod_step`] says what the controller does next.
//!
//! A claim under a bare pod's canonical name (`<volume>-<workspace>-bare`) that exists is
//! used only when it carries the pod's workspace label and owner; otherwise the pod stays
//! gated and is told why (the validating webhook already refuses such a pod at creation;
//! this covers two pods of one new workspace created at once by different users).

use json_patch::{Patch, PatchOperation, RemoveOperation, TestOperation};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde_json::json;

use crate::admission::access::owner_of;
use crate::admission::catalog::{ClaimFacts, Lookup};
use crate::admission::ownership::workspace_label;
use crate::build::claims::bare_pod_claim;
use crate::model::keys::CLAIMS_GATE;
use crate::model::names::bare_pod_claim_name;
use crate::model::policy::Policy;

/// What the controller does for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum BareStep {
    /// Nothing: not gated by devenv, or being deleted.
    Nothing,
    /// Create these claims, then look again.
    Create(Vec<PersistentVolumeClaim>),
    /// Every claim is there and the pod's: remove the gate with this patch.
    LiftGate(Patch),
    /// The pod cannot get its claims: leave it gated and say why (Warning Event).
    Refuse(String),
    /// A claim's state is not known yet: look again later.
    Retry,
}

/// The next step for `pod`, given what `claim(name)` says of the claims of its namespace.
pub fn bare_pod_step(
    policy: &Policy,
    pod: &Pod,
    claim: impl Fn(&str) -> Lookup<ClaimFacts>,
) -> BareStep {
    let Some(spec) = &pod.spec else {
        return BareStep::Nothing;
    };
    let gates = spec.scheduling_gates.as_deref().unwrap_or(&[]);
    let Some(gate) = gates.iter().position(|g| g.name == CLAIMS_GATE) else {
        return BareStep::Nothing;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return BareStep::Nothing;
    }
    let Some(workspace) = workspace_label(&pod.metadata) else {
        return BareStep::Nothing;
    };
    let Some(owner) = owner_of(&pod.metadata) else {
        return BareStep::Refuse(
            "pod has no recorded owner; its claims are made only for a pod the devenv webhook admitted (recreate it)"
                .to_string(),
        );
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut create = Vec::new();
    for volume in spec.volumes.iter().flatten() {
        let Some(source) = &volume.persistent_volume_claim else {
            continue;
        };
        let Some(policy_volume) = policy.volumes.iter().find(|v| {
            v.name == volume.name && source.claim_name == bare_pod_claim_name(&v.name, workspace)
        }) else {
            // Not a claim devenv makes for this pod; admission judged it.
            continue;
        };
        match claim(&source.claim_name) {
            Lookup::Unknown => return BareStep::Retry,
            Lookup::Missing => {
                create.push(bare_pod_claim(policy_volume, workspace, namespace, owner))
            }
            Lookup::Found(ClaimFacts {
                workspace: Some(w),
                owner: Some(o),
                ..
            }) if w == workspace && o == owner => {}
            Lookup::Found(facts) => {
                return BareStep::Refuse(format!(
                    "claim {} exists and is not workspace {workspace}'s of {owner} (it is {}'s of {}); delete this pod, or the claim if it is yours",
                    source.claim_name,
                    facts.workspace.as_deref().unwrap_or("no workspace"),
                    facts.owner.as_deref().unwrap_or("nobody recorded"),
                ));
            }
        }
    }
    if !create.is_empty() {
        return BareStep::Create(create);
    }
    BareStep::LiftGate(lift_gate_patch(gate))
}

/// Removes scheduling gate `index`, testing first that it is still the devenv gate (the
/// list may have changed since the pod was read).
pub fn lift_gate_patch(index: usize) -> Patch {
    let path = format!("/spec/schedulingGates/{index}");
    let at = |p: &str| p.parse().unwrap_or_default();
    Patch(vec![
        PatchOperation::Test(TestOperation {
            path: at(&path),
            value: json!({ "name": CLAIMS_GATE }),
        }),
        PatchOperation::Remove(RemoveOperation { path: at(&path) }),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pod(gated: bool) -> Pod {
        let mut doc = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "scratch", "namespace": "team-a",
                         "labels": {"devenv.io/workspace": "alice"},
                         "annotations": {"devenv.io/owner": "alice"}},
            "spec": {
                "containers": [{"name": "dev", "image": "x"}],
                "volumes": [
                    {"name": "workspace", "persistentVolumeClaim": {"claimName": "workspace-alice-bare"}},
                    {"name": "history", "persistentVolumeClaim": {"claimName": "history-alice-bare"}},
                    {"name": "config", "persistentVolumeClaim": {"claimName": "config-alice-bare"}},
                    {"name": "scratch", "emptyDir": {}}
                ],
                "schedulingGates": [{"name": "other"}, {"name": "devenv.io/claims"}]
            }
        });
        if !gated {
            doc["spec"]["schedulingGates"] = json!([{"name": "other"}]);
        }
        serde_json::from_value(doc).unwrap_or_default()
    }

    fn facts(w: &str, o: &str) -> Lookup<ClaimFacts> {
        Lookup::Found(ClaimFacts {
            workspace: Some(w.into()),
            owner: Some(o.into()),
            created: None,
        })
    }

    #[test]
    fn missing_claims_are_created_with_the_pods_owner() {
        let step = bare_pod_step(&Policy::default(), &pod(true), |name| {
            if name == "history-alice-bare" {
                facts("alice", "alice")
            } else {
                Lookup::Missing
            }
        });
        let BareStep::Create(claims) = step else {
            panic!("{step:?}")
        };
        let names: Vec<_> = claims
            .iter()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        assert_eq!(names, vec!["workspace-alice-bare", "config-alice-bare"]);
        for c in &claims {
            assert_eq!(c.metadata.namespace.as_deref(), Some("team-a"));
            assert_eq!(owner_of(&c.metadata), Some("alice"));
            assert_eq!(workspace_label(&c.metadata), Some("alice"));
        }
    }

    #[test]
    fn the_gate_is_lifted_when_every_claim_is_the_pods() {
        let step = bare_pod_step(&Policy::default(), &pod(true), |_| facts("alice", "alice"));
        let BareStep::LiftGate(patch) = step else {
            panic!("{step:?}")
        };
        let mut doc = serde_json::to_value(pod(true)).unwrap_or(Value::Null);
        json_patch::patch(&mut doc, &patch.0).expect("applies");
        assert_eq!(doc["spec"]["schedulingGates"], json!([{"name": "other"}]));
        // Against a pod whose gates moved, the test operation fails: nothing is removed.
        let mut moved = serde_json::to_value(pod(true)).unwrap_or(Value::Null);
        moved["spec"]["schedulingGates"] = json!([{"name": "devenv.io/claims"}, {"name": "other"}]);
        assert!(json_patch::patch(&mut moved, &patch.0).is_err());
    }

    #[test]
    fn someone_elses_claim_keeps_the_pod_gated() {
        for (w, o) in [("alice", "mallory"), ("bob", "alice")] {
            let step = bare_pod_step(&Policy::default(), &pod(true), |_| facts(w, o));
            let BareStep::Refuse(why) = step else {
                panic!("{step:?}")
            };
            assert!(
                why.contains("workspace-alice-bare") && why.contains(o),
                "{why}"
            );
        }
        let unlabelled = |_: &str| Lookup::Found(ClaimFacts::default());
        assert!(matches!(
            bare_pod_step(&Policy::default(), &pod(true), unlabelled),
            BareStep::Refuse(_)
        ));
    }

    #[test]
    fn ungated_ownerless_or_unknown() {
        let p = Policy::default();
        assert_eq!(
            bare_pod_step(&p, &pod(false), |_| Lookup::Missing),
            BareStep::Nothing
        );
        assert_eq!(
            bare_pod_step(&p, &pod(true), |_| Lookup::Unknown),
            BareStep::Retry
        );
        let mut ownerless = pod(true);
        ownerless.metadata.annotations = None;
        assert!(matches!(
            bare_pod_step(&p, &ownerless, |_| Lookup::Missing),
            BareStep::Refuse(_)
        ));
    }
}
