//! Backups of a workspace's volumes as OCI artifacts (`kubectl devenv backup`, `backups`,
//! `restore`): what one backup is in a registry, and the pod and commands that read and write
//! a volume. Pure: the plugin streams the bytes and talks to the registry.
//!
//! # One backup in a registry
//!
//! An OCI image manifest with `artifactType` [`ARTIFACT_TYPE`], so registries and tools that
//! list artifacts tell it from an image, and no runtime mistakes it for one:
//!
//! * its config blob is the [`BackupInfo`] as JSON ([`CONFIG_MEDIA_TYPE`]);
//! * one layer per claim: a plain tar of the volume's contents ([`LAYER_MEDIA_TYPE`]),
//!   annotated with the volume, the pool member and the mount path;
//! * manifest annotations: the workspace, its namespace and owner, the time, why it was taken
//!   and the total size, so `backups` lists without fetching any blob.
//!
//! Every blob is addressed by its sha256, so a restore checks every byte against the manifest
//! before it writes anything.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::build::workspace::{container_security_context, runtime_default_seccomp};
use crate::model::keys::{MANAGED_BY, MANAGED_BY_LABEL, WORKSPACE_CONTAINER};
use crate::model::policy::UserPolicy;

/// `artifactType` of a backup manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.devenv.workspace.backup.v1";
/// Media type of the config blob: [`BackupInfo`] as JSON.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.devenv.workspace.backup.config.v1+json";
/// Media type of a volume layer: an uncompressed tar of the volume's contents. Uncompressed
/// on purpose: a workspace's bulk is often already compressed (git packs, caches), and
/// compressing on the user's machine would cost more time than the bytes it saves.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// Media type of the manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Manifest annotation: the workspace backed up.
pub const WORKSPACE_KEY: &str = "io.devenv.backup.workspace";
/// Manifest annotation: its namespace.
pub const NAMESPACE_KEY: &str = "io.devenv.backup.namespace";
/// Manifest annotation: its owner (`devenv.io/owner`), absent when it has none.
pub const OWNER_KEY: &str = "io.devenv.backup.owner";
/// Manifest annotation: why it was taken ([`Reason`]).
pub const REASON_KEY: &str = "io.devenv.backup.reason";
/// Manifest annotation: total bytes of the volume layers.
pub const SIZE_KEY: &str = "io.devenv.backup.size";
/// Manifest annotation: when it was taken (RFC 3339), the OCI standard key.
pub const CREATED_KEY: &str = "org.opencontainers.image.created";
/// Layer annotation: the volume (claim template) name.
pub const VOLUME_KEY: &str = "io.devenv.backup.volume";
/// Layer annotation: the pool member (StatefulSet ordinal).
pub const MEMBER_KEY: &str = "io.devenv.backup.member";
/// Layer annotation: where the workspace container mounts the volume.
pub const MOUNT_KEY: &str = "io.devenv.backup.mount-path";
/// Layer annotation: the claim's requested size when it was backed up.
pub const CLAIM_SIZE_KEY: &str = "io.devenv.backup.claim-size";
/// Layer annotation: a file name for tools that extract layers (oras).
pub const TITLE_KEY: &str = "org.opencontainers.image.title";

/// Label of a short-lived pod that reads or writes a stopped workspace's claims: the
/// workspace. It is not [`crate::model::keys::WORKSPACE_LABEL`]: the pod is no workspace
/// pod, runs no user code, and the webhook leaves it alone.
pub const HELPER_LABEL: &str = "devenv.io/volume-helper-of";
/// Where a helper pod mounts member `m`'s volume `v`: `/volumes/m/v`.
pub const HELPER_ROOT: &str = "/volumes";
/// How long a helper pod may live even if the plugin that made it dies.
pub const HELPER_DEADLINE_SECONDS: i64 = 3600;

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// `kubectl devenv backup`.
    Manual,
    /// Taken by an in-place `restore` before it overwrote anything.
    PreRestore,
    /// Taken by `delete --purge` before the claims went.
    PrePurge,
    /// Taken by the lifecycle controller on the policy's `backup.every`; the only kind
    /// pruned (to `backup.keep`).
    Scheduled,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Manual => "manual",
            Reason::PreRestore => "pre-restore",
            Reason::PrePurge => "pre-purge",
            Reason::Scheduled => "scheduled",
        }
    }

    fn parse(text: &str) -> Option<Reason> {
        [
            Reason::Manual,
            Reason::PreRestore,
            Reason::PrePurge,
            Reason::Scheduled,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// What a backup is of: the config blob, and (most of it) the manifest's annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupInfo {
    pub workspace: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// RFC 3339, UTC, whole seconds.
    pub created: String,
    pub reason: Reason,
    /// What `restore --as` needs to make a workspace like this one.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The workspace container replaced the image's entrypoint (`create --keep-alive`).
    #[serde(default)]
    pub keep_alive: bool,
    /// Pool size when it was backed up.
    pub replicas: i32,
}

/// One volume of one pool member, as read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeCopy {
    /// The claim template's name: `workspace`, `history`, `config`.
    pub volume: String,
    /// StatefulSet ordinal.
    pub member: u64,
    /// Where the workspace container mounts it.
    pub mount_path: String,
    /// The claim's requested size (`10Gi`), when known.
    pub claim_size: Option<String>,
}

/// A blob as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

/// A backup read back from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// From the manifest's annotations (the config blob holds the same).
    pub info: BackupInfo,
    /// The volume layers, in manifest order.
    pub layers: Vec<(VolumeCopy, Blob)>,
    /// Sum of the layer sizes.
    pub size: u64,
}

/// A manifest that is not a devenv backup, or is one this version cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    #[error("{reference} is not a devenv backup: {reason}")]
    NotABackup { reference: String, reason: String },
    #[error("workspace {workspace} has no volumes to back up (no claims labelled with it)")]
    NothingToBackUp { workspace: String },
}

/// The config blob of a backup.
pub fn config_blob(info: &BackupInfo) -> Vec<u8> {
    // A struct of strings, numbers and an enum: serialising it cannot fail.
    serde_json::to_vec(info).unwrap_or_default()
}

/// The manifest of a backup whose config blob is `config` and whose layers were pushed as
/// `layers`, as the bytes to push (their sha256 is the backup's digest).
pub fn manifest(info: &BackupInfo, config: &Blob, layers: &[(VolumeCopy, Blob)]) -> Vec<u8> {
    let size: u64 = layers.iter().map(|(_, b)| b.size).sum();
    let mut annotations = BTreeMap::from([
        (WORKSPACE_KEY.to_owned(), info.workspace.clone()),
        (NAMESPACE_KEY.to_owned(), info.namespace.clone()),
        (CREATED_KEY.to_owned(), info.created.clone()),
        (REASON_KEY.to_owned(), info.reason.as_str().to_owned()),
        (SIZE_KEY.to_owned(), size.to_string()),
    ]);
    if let Some(owner) = &info.owner {
        annotations.insert(OWNER_KEY.to_owned(), owner.clone());
    }
    let layers: Vec<_> = layers
        .iter()
        .map(|(copy, blob)| {
            let mut a = BTreeMap::from([
                (VOLUME_KEY.to_owned(), copy.volume.clone()),
                (MEMBER_KEY.to_owned(), copy.member.to_string()),
                (MOUNT_KEY.to_owned(), copy.mount_path.clone()),
                (
                    TITLE_KEY.to_owned(),
                    format!("{}-{}.tar", copy.volume, copy.member),
                ),
            ]);
            if let Some(s) = &copy.claim_size {
                a.insert(CLAIM_SIZE_KEY.to_owned(), s.clone());
            }
            json!({
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": blob.digest,
                "size": blob.size,
                "annotations": a,
            })
        })
        .collect();
    let value = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config.digest,
            "size": config.size,
        },
        "layers": layers,
        "annotations": annotations,
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestFile {
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    layers: Vec<DescriptorFile>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorFile {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Whether `digest` is a sha256 digest as OCI writes it: `sha256:` and 64 lowercase hex.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Reads a manifest pulled from `reference` back into a [`Backup`]; refuses anything that
/// is not one (an image, another artifact, a layer without its volume or member, a digest
/// that is not sha256).
pub fn parse_manifest(reference: &str, bytes: &[u8]) -> Result<Backup, BackupError> {
    let not = |reason: String| BackupError::NotABackup {
        reference: reference.to_owned(),
        reason,
    };
    let file: ManifestFile = serde_json::from_slice(bytes)
        .map_err(|e| not(format!("its manifest is not an OCI image manifest ({e})")))?;
    if file.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
        return Err(not(format!(
            "its artifactType is {:?}, not {ARTIFACT_TYPE:?}",
            file.artifact_type.unwrap_or_default()
        )));
    }
    let a = &file.annotations;
    let get = |key: &str| {
        a.get(key)
            .cloned()
            .ok_or_else(|| not(format!("annotation {key} is missing")))
    };
    let reason_text = get(REASON_KEY)?;
    let reason = Reason::parse(&reason_text)
        .ok_or_else(|| not(format!("annotation {REASON_KEY} is {reason_text:?}")))?;
    let mut layers = Vec::new();
    for (i, layer) in file.layers.iter().enumerate() {
        let field = |what: &str| not(format!("layers[{i}]: {what}"));
        if layer.media_type != LAYER_MEDIA_TYPE {
            return Err(field(&format!("mediaType is {:?}", layer.media_type)));
        }
        if !is_sha256_digest(&layer.digest) {
            return Err(field(&format!(
                "digest {:?} is not a sha256 digest",
                layer.digest
            )));
        }
        let la = &layer.annotations;
        let volume = la
            .get(VOLUME_KEY)
            .ok_or_else(|| field(&format!("annotation {VOLUME_KEY} is missing")))?;
        let member = la
            .get(MEMBER_KEY)
            .and_then(|m| m.parse::<u64>().ok())
            .ok_or_else(|| field(&format!("annotation {MEMBER_KEY} is not a number")))?;
        let mount_path = la
            .get(MOUNT_KEY)
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| field(&format!("annotation {MOUNT_KEY} is not an absolute path")))?;
        layers.push((
            VolumeCopy {
                volume: volume.clone(),
                member,
                mount_path: mount_path.clone(),
                claim_size: la.get(CLAIM_SIZE_KEY).cloned(),
            },
            Blob {
                digest: layer.digest.clone(),
                size: layer.size,
            },
        ));
    }
    if layers.is_empty() {
        return Err(not("it has no volume layers".to_owned()));
    }
    let size = layers.iter().map(|(_, b)| b.size).sum();
    let replicas = layers
        .iter()
        .map(|(c, _)| c.member)
        .max()
        .map_or(1, |m| i32::try_from(m + 1).unwrap_or(i32::MAX));
    Ok(Backup {
        info: BackupInfo {
            workspace: get(WORKSPACE_KEY)?,
            namespace: get(NAMESPACE_KEY)?,
            owner: a.get(OWNER_KEY).cloned(),
            created: get(CREATED_KEY)?,
            reason,
            // What the config blob alone holds is read from it when a restore needs it.
            image: String::new(),
            tier: None,
            keep_alive: false,
            replicas,
        },
        layers,
        size,
    })
}

/// The tag a backup gets when none is given: `<workspace>-<reason>-<UTC time>`, e.g.
/// `alice-manual-20261202t190501z`. It sorts by time within a workspace and reason, and
/// fits the tag grammar (at most 128 of `[A-Za-z0-9_.-]`): workspace names are at most 52.
pub fn default_tag(workspace: &str, reason: Reason, now: Timestamp) -> String {
    let stamp = now.strftime("%Y%m%dt%H%M%Sz").to_string();
    format!("{workspace}-{}-{stamp}", reason.as_str())
}

/// The volumes of a workspace as its StatefulSet mounts them: `(claim template, mount path)`
/// of the `workspace` container, in template order. A template the container does not mount
/// is still data: it is listed with the path the helper pod would give it.
pub fn mounted_volumes(sts: &StatefulSet) -> Vec<(String, String)> {
    let Some(spec) = sts.spec.as_ref() else {
        return Vec::new();
    };
    let mounts: Vec<VolumeMount> = spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers.iter().find(|c| c.name == WORKSPACE_CONTAINER))
        .and_then(|c| c.volume_mounts.clone())
        .unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|t| t.metadata.name.clone())
        .map(|name| {
            let path = mounts
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.mount_path.clone())
                .unwrap_or_else(|| format!("/{name}"));
            (name, path)
        })
        .collect()
}

/// What [`archive_command`] says on stderr after the tar: `devenv-tar-exit=N`.
pub const TAR_EXIT_MARK: &str = "devenv-tar-exit=";

/// The command that writes a volume mounted at `dir` as a tar on stdout, as the workspace
/// user: every entry of the directory but `lost+found` (root's, unreadable), named on the
/// command line because BusyBox's tar has no `--exclude`; an empty volume is an empty tar
/// (two zero blocks). The directory is an argument, never spliced into the script.
///
/// On stderr it ends with tar's exit status ([`TAR_EXIT_MARK`]) and the sha256 of what it
/// wrote, computed in the pod (`tee` to stdout, `sha256sum` of the copy): the plugin
/// compares it with the digest of what arrived, so a stream cut short or changed on its way
/// through the API server is never pushed as a backup ([`check_archive`]). POSIX `sh` only
/// (dash has no `pipefail`), hence the status line.
pub fn archive_command(dir: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "cd -- \"$1\" || exit 1; set --; \
         for f in ./* ./.[!.]* ./..?*; do \
           [ -e \"$f\" ] || [ -L \"$f\" ] || continue; \
           [ \"$f\" = ./lost+found ] && continue; \
           set -- \"$@\" \"$f\"; \
         done; \
         { { if [ $# -eq 0 ]; then head -c 1024 /dev/zero; else tar -cf - \"$@\"; fi; \
             echo \"devenv-tar-exit=$?\" >&2; } \
           | tee /dev/fd/3 | sha256sum >&2; } 3>&1"
            .into(),
        "sh".into(),
        dir.into(),
    ]
}

/// Checks what [`archive_command`] said on stderr against the digest of what arrived:
/// `Ok(())`, or why the copy must not be used (tar failed, or the bytes differ).
pub fn check_archive(stderr: &str, received: &Blob) -> Result<(), String> {
    let tar_exit = stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(TAR_EXIT_MARK))
        .map(str::to_owned);
    let sent = stderr.lines().rev().find_map(|l| {
        let hex = l.split_whitespace().next()?;
        let digest = format!("sha256:{hex}");
        is_sha256_digest(&digest).then_some(digest)
    });
    let said = || {
        stderr
            .lines()
            .filter(|l| !l.starts_with(TAR_EXIT_MARK))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match (tar_exit.as_deref(), sent) {
        (Some("0"), Some(sent)) if sent == received.digest => Ok(()),
        (Some("0"), Some(sent)) => Err(format!(
            "the pod sent {sent}, and {} ({} bytes) arrived: the stream was cut short or changed on its way; run the backup again",
            received.digest, received.size
        )),
        (Some(code), _) if code != "0" => Err(format!("tar exited with {code}: {}", said())),
        _ => Err(format!(
            "the pod did not report tar's status and digest (does the image have sh, tar, tee and sha256sum?): {}",
            said()
        )),
    }
}

/// The command that makes the volume mounted at `dir` hold exactly the tar on stdin: it
/// empties the directory (all but `lost+found`), then extracts. The directory is passed as an
/// argument, never spliced into the script.
pub fn extract_command(dir: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "cd -- \"$1\" || exit 1; \
         for f in ./* ./.[!.]* ./..?*; do \
           [ -e \"$f\" ] || [ -L \"$f\" ] || continue; \
           [ \"$f\" = ./lost+found ] && continue; \
           rm -rf -- \"$f\" || exit 1; \
         done; \
         exec tar -xf -"
            .into(),
        "sh".into(),
        dir.into(),
    ]
}

/// Where a helper pod mounts member `member`'s volume `volume`.
pub fn helper_mount_path(member: u64, volume: &str) -> String {
    format!("{HELPER_ROOT}/{member}/{volume}")
}

/// A short-lived pod that mounts claims of a stopped workspace so they can be read (backup)
/// or written (restore): the workspace's own image (it has `tar` and `sh`), the workspace
/// user, Pod Security `restricted`, no service account token, and a deadline after which
/// the kubelet stops it even if nobody deletes it. `claims` are `(member, volume, claim)`.
pub fn helper_pod(
    name: &str,
    workspace: &str,
    image: &str,
    user: &UserPolicy,
    claims: &[(u64, String, String)],
    read_only: bool,
) -> Pod {
    let volumes = claims
        .iter()
        .enumerate()
        .map(|(i, (_, _, claim))| Volume {
            name: format!("v{i}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(read_only),
            }),
            ..Default::default()
        })
        .collect();
    let mounts = claims
        .iter()
        .enumerate()
        .map(|(i, (member, volume, _))| VolumeMount {
            name: format!("v{i}"),
            mount_path: helper_mount_path(*member, volume),
            read_only: Some(read_only),
            ..Default::default()
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([
                (HELPER_LABEL.to_owned(), workspace.to_owned()),
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
            ])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(HELPER_DEADLINE_SECONDS),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(1),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(user.uid),
                run_as_group: Some(user.gid),
                seccomp_profile: Some(runtime_default_seccomp()),
                ..Default::default()
            }),
            containers: vec![Container {
                name: "volumes".into(),
                image: Some(image.to_owned()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec!["sleep".into(), HELPER_DEADLINE_SECONDS.to_string()]),
                security_context: Some(container_security_context()),
                volume_mounts: Some(mounts),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn info() -> BackupInfo {
        BackupInfo {
            workspace: "alice".into(),
            namespace: "team-a".into(),
            owner: Some("alice@example.com".into()),
            created: "2026-12-02T19:05:01Z".into(),
            reason: Reason::PreRestore,
            image: "ghcr.io/devenv-io/workspace:0.1.0".into(),
            tier: Some("small".into()),
            keep_alive: false,
            replicas: 1,
        }
    }

    fn layers() -> Vec<(VolumeCopy, Blob)> {
        ["workspace", "history"]
            .iter()
            .zip(['a', 'b'])
            .map(|(v, c)| {
                (
                    VolumeCopy {
                        volume: (*v).into(),
                        member: 0,
                        mount_path: format!("/{v}"),
                        claim_size: Some("10Gi".into()),
                    },
                    Blob {
                        digest: digest(c),
                        size: 1024,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_manifest_reads_back_as_the_backup_it_was_made_of() {
        let config = Blob {
            digest: digest('c'),
            size: 10,
        };
        let bytes = manifest(&info(), &config, &layers());
        let back = parse_manifest("r/x:t", &bytes).unwrap();
        assert_eq!(back.layers, layers());
        assert_eq!(back.size, 2048);
        assert_eq!(back.info.workspace, "alice");
        assert_eq!(back.info.namespace, "team-a");
        assert_eq!(back.info.owner.as_deref(), Some("alice@example.com"));
        assert_eq!(back.info.reason, Reason::PreRestore);
        assert_eq!(back.info.created, "2026-12-02T19:05:01Z");
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["artifactType"], ARTIFACT_TYPE);
        assert_eq!(v["annotations"][SIZE_KEY], "2048");
        assert_eq!(v["layers"][1]["annotations"][TITLE_KEY], "history-0.tar");
        let cfg: BackupInfo = serde_json::from_slice(&config_blob(&info())).unwrap();
        assert_eq!(cfg, info());
    }

    #[test]
    fn what_is_not_a_backup_is_refused_with_the_reason() {
        let config = Blob {
            digest: digest('c'),
            size: 10,
        };
        let good: serde_json::Value =
            serde_json::from_slice(&manifest(&info(), &config, &layers())).unwrap();
        let refuse = |edit: &dyn Fn(&mut serde_json::Value), want: &str| {
            let mut m = good.clone();
            edit(&mut m);
            let e = parse_manifest("reg/r:t", &serde_json::to_vec(&m).unwrap())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("reg/r:t is not a devenv backup: "), "{e}");
            assert!(e.contains(want), "{e} should say {want}");
        };
        refuse(
            &|m| m["artifactType"] = "application/vnd.oci.image.config.v1+json".into(),
            "artifactType",
        );
        refuse(
            &|m| m["layers"][0]["digest"] = "md5:abc".into(),
            "layers[0]: digest",
        );
        refuse(
            &|m| {
                m["layers"][1]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove(MEMBER_KEY);
            },
            "layers[1]: annotation io.devenv.backup.member",
        );
        refuse(
            &|m| m["layers"][0]["annotations"][MOUNT_KEY] = "relative".into(),
            "absolute path",
        );
        refuse(&|m| m["layers"] = serde_json::json!([]), "no volume layers");
        refuse(
            &|m| m["annotations"][REASON_KEY] = "whim".into(),
            "io.devenv.backup.reason",
        );
        assert!(parse_manifest("x", b"not json").is_err());
    }

    #[test]
    fn default_tags_sort_by_time_and_fit_the_tag_grammar() {
        let t: Timestamp = "2026-12-02T19:05:01Z".parse().unwrap();
        let tag = default_tag(&"a".repeat(52), Reason::PreRestore, t);
        assert!(tag.ends_with("-pre-restore-20261202t190501z"), "{tag}");
        assert!(tag.len() <= 128);
        assert!(tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        let later: Timestamp = "2026-12-02T19:05:02Z".parse().unwrap();
        assert!(default_tag("a", Reason::Manual, t) < default_tag("a", Reason::Manual, later));
    }

    #[test]
    fn the_extract_command_takes_the_directory_as_an_argument() {
        let dir = "/work space/$(reboot)";
        let cmd = extract_command(dir);
        assert_eq!(cmd.last().map(String::as_str), Some(dir));
        assert!(!cmd[2].contains(dir));
        let archive = archive_command(dir);
        assert_eq!(archive.last().map(String::as_str), Some(dir));
        assert!(!archive[2].contains(dir));
        assert!(is_sha256_digest(&digest('0')));
        assert!(!is_sha256_digest(&digest('A')));
        assert!(!is_sha256_digest("sha256:00"));
    }

    #[test]
    fn an_archive_is_used_only_when_tar_succeeded_and_the_pod_sent_what_arrived() {
        let hex = "ab".repeat(32);
        let blob = Blob {
            digest: format!("sha256:{hex}"),
            size: 10,
        };
        let ok = format!("tar: removing leading /\ndevenv-tar-exit=0\n{hex}  -\n");
        assert_eq!(check_archive(&ok, &blob), Ok(()));
        let other = format!("devenv-tar-exit=0\n{}  -\n", "cd".repeat(32));
        let e = check_archive(&other, &blob).unwrap_err();
        assert!(e.contains("cut short or changed"), "{e}");
        let failed = format!("tar: ./secret: Permission denied\ndevenv-tar-exit=1\n{hex}  -\n");
        let e = check_archive(&failed, &blob).unwrap_err();
        assert!(
            e.starts_with("tar exited with 1: tar: ./secret: Permission denied"),
            "{e}"
        );
        let e = check_archive("sh: tee: not found\n", &blob).unwrap_err();
        assert!(e.contains("did not report"), "{e}");
    }

    #[test]
    fn a_helper_pod_is_restricted_and_mounts_each_claim_where_it_says() {
        let user = UserPolicy::default();
        let claims = vec![
            (0, "workspace".to_owned(), "workspace-alice-0".to_owned()),
            (1, "history".to_owned(), "history-alice-1".to_owned()),
        ];
        let pod = helper_pod("alice-volumes-x", "alice", "img:1", &user, &claims, true);
        let spec = pod.spec.unwrap();
        let c = &spec.containers[0];
        let mounts = c.volume_mounts.as_ref().unwrap();
        assert_eq!(mounts[1].mount_path, "/volumes/1/history");
        assert_eq!(mounts[1].read_only, Some(true));
        let vols = spec.volumes.unwrap();
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "workspace-alice-0"
        );
        let sc = spec.security_context.unwrap();
        assert_eq!(sc.run_as_user, Some(1000));
        assert_eq!(sc.run_as_non_root, Some(true));
        let csc = c.security_context.as_ref().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.active_deadline_seconds, Some(HELPER_DEADLINE_SECONDS));
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels.get(HELPER_LABEL).map(String::as_str), Some("alice"));
        assert!(!labels.contains_key(crate::model::keys::WORKSPACE_LABEL));
    }
}
