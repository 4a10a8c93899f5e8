//! VolumeSnapshots of a workspace (`kubectl devenv snapshot`, `restore --from-snapshot`):
//! one snapshot per claim, taken together as a *set* named by its time, and the new
//! workspace's claim templates filled from a set. Pure; the plugin sends them.
//!
//! A snapshot is named `CLAIM.SET` (`workspace-alice-0.20261204t101500z`) and labelled with
//! the workspace and the set; its annotations say what `restore --as` needs to make a
//! workspace like the one snapshotted (image, tier, the claim's size), so a set restores
//! after its workspace is deleted. Whose data a snapshot holds is not what its labels say
//! but what its `spec.source` names: the webhook fills a workspace's claims only from
//! snapshots of its owner's claims ([`crate::admission::ownership::claim_source_rule`]).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::TypedObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::build::workspace::labels;
use crate::model::keys::{OWNER_ANNOTATION, TIER_ANNOTATION};
use crate::model::names::statefulset_claim_name;
use crate::model::snapshot::{
    VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec, SNAPSHOT_GROUP,
};

/// Label: the set a snapshot belongs to (its time, `20261204t101500z`).
pub const SET_LABEL: &str = "devenv.io/snapshot-set";
/// Annotation: the volume (claim template) snapshotted.
pub const VOLUME_ANNOTATION: &str = "devenv.io/volume";
/// Annotation: the pool member (StatefulSet ordinal).
pub const MEMBER_ANNOTATION: &str = "devenv.io/member";
/// Annotation: the workspace container's image when snapshotted.
pub const IMAGE_ANNOTATION: &str = "devenv.io/image";
/// Annotation: the claim's requested size when snapshotted (a restored claim asks as much).
pub const SIZE_ANNOTATION: &str = "devenv.io/claim-size";

/// The name of the set taken at `now`.
pub fn set_name(now: Timestamp) -> String {
    now.strftime("%Y%m%dt%H%M%Sz").to_string()
}

/// What one snapshot is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOf {
    pub workspace: String,
    pub namespace: String,
    pub claim: String,
    pub volume: String,
    pub member: u64,
    pub claim_size: Option<String>,
    pub image: String,
    pub tier: Option<String>,
    pub owner: Option<String>,
}

/// The VolumeSnapshot of one claim in set `set`, with class `class`.
pub fn volume_snapshot(of: &SnapshotOf, set: &str, class: &str) -> VolumeSnapshot {
    let mut labels = labels(&of.workspace);
    labels.insert(SET_LABEL.to_owned(), set.to_owned());
    let mut annotations = BTreeMap::from([
        (VOLUME_ANNOTATION.to_owned(), of.volume.clone()),
        (MEMBER_ANNOTATION.to_owned(), of.member.to_string()),
        (IMAGE_ANNOTATION.to_owned(), of.image.clone()),
    ]);
    for (key, value) in [
        (SIZE_ANNOTATION, &of.claim_size),
        (TIER_ANNOTATION, &of.tier),
        (OWNER_ANNOTATION, &of.owner),
    ] {
        if let Some(v) = value {
            annotations.insert(key.to_owned(), v.clone());
        }
    }
    VolumeSnapshot {
        api_version: <VolumeSnapshot as k8s_openapi::Resource>::API_VERSION.to_owned(),
        kind: <VolumeSnapshot as k8s_openapi::Resource>::KIND.to_owned(),
        metadata: ObjectMeta {
            name: Some(format!("{}.{set}", of.claim)),
            namespace: Some(of.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(of.claim.clone()),
                volume_snapshot_content_name: None,
            },
            volume_snapshot_class_name: Some(class.to_owned()),
        },
        status: None,
    }
}

/// A set as found: member 0's snapshot of each volume, and what the workspace was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSet {
    /// Volume -> (snapshot name, claim size).
    pub volumes: BTreeMap<String, (String, Option<String>)>,
    pub image: String,
    pub tier: Option<String>,
}

/// Reads set `set` of `workspace` out of the snapshots listed with its labels. Labels and
/// annotations are anyone's to write (whoever may create snapshots in the namespace), so
/// only a snapshot named `CLAIM.SET` for member 0's claim of a volume, taken of that very
/// claim, counts; a set whose counted snapshots disagree on the image is refused, naming
/// them. `restore --as` makes a one-member workspace: member 0's snapshots are the ones
/// used. `Ok(None)`: no such set.
pub fn found_set(
    snapshots: &[VolumeSnapshot],
    workspace: &str,
    set: &str,
) -> Result<Option<FoundSet>, String> {
    let mut volumes = BTreeMap::new();
    let mut images: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tier = None;
    for s in snapshots {
        let a = s.metadata.annotations.clone().unwrap_or_default();
        let (Some(volume), Some(name)) = (a.get(VOLUME_ANNOTATION), s.metadata.name.clone()) else {
            continue;
        };
        let claim = statefulset_claim_name(volume, workspace, 0);
        let genuine = name == format!("{claim}.{set}")
            && s.spec.source.persistent_volume_claim_name.as_deref() == Some(claim.as_str())
            && a.get(MEMBER_ANNOTATION).map(String::as_str) == Some("0");
        if !genuine {
            continue;
        }
        volumes.insert(
            volume.clone(),
            (name.clone(), a.get(SIZE_ANNOTATION).cloned()),
        );
        images
            .entry(a.get(IMAGE_ANNOTATION).cloned().unwrap_or_default())
            .or_default()
            .push(name);
        tier = tier.or_else(|| a.get(TIER_ANNOTATION).cloned());
    }
    if images.len() > 1 {
        let said: Vec<String> = images
            .iter()
            .map(|(image, names)| format!("{image:?} ({})", names.join(", ")))
            .collect();
        return Err(format!(
            "the snapshots of set {set} name different images: {}; delete the ones you did not take, or take a new set",
            said.join(", ")
        ));
    }
    if volumes.is_empty() {
        return Ok(None);
    }
    Ok(Some(FoundSet {
        volumes,
        image: images.into_keys().next().unwrap_or_default(),
        tier,
    }))
}

/// Fills each claim template of `sts` whose volume the set holds from its snapshot
/// (`dataSourceRef`); returns the volumes filled.
pub fn fill_from(sts: &mut StatefulSet, set: &FoundSet) -> Vec<String> {
    let mut filled = Vec::new();
    let Some(spec) = sts.spec.as_mut() else {
        return filled;
    };
    for template in spec.volume_claim_templates.iter_mut().flatten() {
        let Some(name) = template.metadata.name.clone() else {
            continue;
        };
        let Some((snapshot, _)) = set.volumes.get(&name) else {
            continue;
        };
        let claim = template.spec.get_or_insert_with(Default::default);
        claim.data_source_ref = Some(TypedObjectReference {
            api_group: Some(SNAPSHOT_GROUP.to_owned()),
            kind: "VolumeSnapshot".to_owned(),
            name: snapshot.clone(),
            namespace: None,
        });
        filled.push(name);
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::keys::WORKSPACE_LABEL;

    fn of(volume: &str, member: u64) -> SnapshotOf {
        SnapshotOf {
            workspace: "alice".into(),
            namespace: "team".into(),
            claim: format!("{volume}-alice-{member}"),
            volume: volume.into(),
            member,
            claim_size: Some("10Gi".into()),
            image: "reg/dev:1".into(),
            tier: Some("small".into()),
            owner: Some("alice".into()),
        }
    }

    #[test]
    fn a_snapshot_names_its_claim_and_set_and_says_what_restore_needs() {
        let set = set_name("2026-12-04T10:15:00Z".parse().unwrap());
        assert_eq!(set, "20261204t101500z");
        let s = volume_snapshot(&of("workspace", 0), &set, "csi-snap");
        assert_eq!(
            s.metadata.name.as_deref(),
            Some("workspace-alice-0.20261204t101500z")
        );
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels[WORKSPACE_LABEL], "alice");
        assert_eq!(labels[SET_LABEL], set);
        assert_eq!(
            s.spec.source.persistent_volume_claim_name.as_deref(),
            Some("workspace-alice-0")
        );
        assert_eq!(
            s.spec.volume_snapshot_class_name.as_deref(),
            Some("csi-snap")
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["apiVersion"], "snapshot.storage.k8s.io/v1");
        assert_eq!(json["kind"], "VolumeSnapshot");
        assert!(json["spec"]["source"]
            .get("volumeSnapshotContentName")
            .is_none());
    }

    #[test]
    fn a_set_restores_member_zero_into_the_matching_claim_templates() {
        let set = "t";
        let mut snaps: Vec<_> = [of("workspace", 0), of("history", 0), of("workspace", 1)]
            .iter()
            .map(|o| volume_snapshot(o, set, "c"))
            .collect();
        // Someone else's snapshot labelled into the set: another name, another source.
        let mut planted = volume_snapshot(&of("config", 0), set, "c");
        planted.metadata.name = Some("planted.t".into());
        snaps.push(planted);
        let found = found_set(&snaps, "alice", set).unwrap().unwrap();
        assert_eq!(found.image, "reg/dev:1");
        assert_eq!(found.tier.as_deref(), Some("small"));
        assert_eq!(
            found.volumes["workspace"].0, "workspace-alice-0.t",
            "member 0's, not member 1's"
        );
        let spec = crate::build::workspace::WorkspaceSpec::new("bob", "team", "reg/dev:1");
        let mut sts =
            crate::build::workspace::build(&spec, &crate::model::policy::Policy::default())
                .unwrap()
                .stateful_set;
        let filled = fill_from(&mut sts, &found);
        assert_eq!(filled, ["workspace", "history"]);
        let templates = sts.spec.unwrap().volume_claim_templates.unwrap();
        let source = |n: &str| {
            templates
                .iter()
                .find(|t| t.metadata.name.as_deref() == Some(n))
                .and_then(|t| t.spec.as_ref()?.data_source_ref.clone())
        };
        assert_eq!(source("history").unwrap().name, "history-alice-0.t");
        assert_eq!(
            source("config"),
            None,
            "a volume the set lacks starts empty"
        );
        assert_eq!(found_set(&[], "alice", set), Ok(None));
    }

    #[test]
    fn a_set_whose_snapshots_disagree_on_the_image_is_refused() {
        let mine = volume_snapshot(&of("workspace", 0), "t", "c");
        let mut theirs = volume_snapshot(&of("history", 0), "t", "c");
        theirs
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(IMAGE_ANNOTATION.into(), "evil/steal:1".into());
        let err = found_set(&[mine, theirs], "alice", "t").unwrap_err();
        assert!(
            err.contains("\"evil/steal:1\" (history-alice-0.t)"),
            "{err}"
        );
    }
}
