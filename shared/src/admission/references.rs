//! Every way a pod spec reaches something outside itself that the workspace rules guard:
//! Secrets by name, claims by name, API credentials. One function per kind of target, so a
//! field cannot be judged in one rule and forgotten in another; each lists the field path of
//! every reference it finds.
//!
//! The fields are those of the v1.33 API (k8s-openapi `v1_33`). A field added by a later
//! API version belongs here first.

use k8s_openapi::api::core::v1::{PodSpec, Volume};

use crate::admission::containers::{containers, slice};

/// How a pod uses a Secret it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUse {
    /// `env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`: the values become environment.
    Env,
    /// `secret` volumes and `projected` Secret sources: the values become files.
    Volume,
    /// `csi.nodePublishSecretRef`: handed to the CSI driver of an inline volume.
    CsiNodePublish,
    /// `imagePullSecrets`: registry credentials the kubelet pulls with.
    ImagePull,
    /// The Secret of a volume type Pod Security `restricted` refuses anyway (azureFile,
    /// cephfs, cinder, flexVolume, iscsi, rbd, scaleIO, storageos).
    LegacyVolume,
}

/// One Secret a pod names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference<'a> {
    /// e.g. `spec.containers[0].env[2].valueFrom.secretKeyRef.name`.
    pub field: String,
    pub name: &'a str,
    pub used_as: SecretUse,
}

/// Every Secret the pod spec names, in field order: containers (init, regular, ephemeral),
/// volumes, image pull Secrets.
pub fn secret_references(spec: &PodSpec) -> Vec<SecretReference<'_>> {
    let mut refs = Vec::new();
    for c in containers(spec) {
        for (i, env) in c.env.iter().enumerate() {
            if let Some(r) = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                refs.push(SecretReference {
                    field: format!("{}.env[{i}].valueFrom.secretKeyRef.name", c.path()),
                    name: &r.name,
                    used_as: SecretUse::Env,
                });
            }
        }
        for (i, from) in c.env_from.iter().enumerate() {
            if let Some(r) = &from.secret_ref {
                refs.push(SecretReference {
                    field: format!("{}.envFrom[{i}].secretRef.name", c.path()),
                    name: &r.name,
                    used_as: SecretUse::Env,
                });
            }
        }
    }
    for (i, volume) in slice(&spec.volumes).iter().enumerate() {
        volume_secrets(i, volume, &mut refs);
    }
    for (i, pull) in slice(&spec.image_pull_secrets).iter().enumerate() {
        refs.push(SecretReference {
            field: format!("spec.imagePullSecrets[{i}].name"),
            name: &pull.name,
            used_as: SecretUse::ImagePull,
        });
    }
    refs
}

fn volume_secrets<'a>(i: usize, v: &'a Volume, out: &mut Vec<SecretReference<'a>>) {
    let at = |rest: &str| format!("spec.volumes[{i}].{rest}");
    if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
        out.push(SecretReference {
            field: at("secret.secretName"),
            name,
            used_as: SecretUse::Volume,
        });
    }
    let sources = v
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_deref())
        .unwrap_or(&[]);
    for (j, source) in sources.iter().enumerate() {
        if let Some(s) = &source.secret {
            out.push(SecretReference {
                field: at(&format!("projected.sources[{j}].secret.name")),
                name: &s.name,
                used_as: SecretUse::Volume,
            });
        }
    }
    if let Some(r) = v
        .csi
        .as_ref()
        .and_then(|c| c.node_publish_secret_ref.as_ref())
    {
        out.push(SecretReference {
            field: at("csi.nodePublishSecretRef.name"),
            name: &r.name,
            used_as: SecretUse::CsiNodePublish,
        });
    }
    if let Some(a) = &v.azure_file {
        out.push(SecretReference {
            field: at("azureFile.secretName"),
            name: &a.secret_name,
            used_as: SecretUse::LegacyVolume,
        });
    }
    let legacy = [
        (
            "cephfs",
            v.cephfs.as_ref().and_then(|s| s.secret_ref.as_ref()),
        ),
        (
            "cinder",
            v.cinder.as_ref().and_then(|s| s.secret_ref.as_ref()),
        ),
        (
            "flexVolume",
            v.flex_volume.as_ref().and_then(|s| s.secret_ref.as_ref()),
        ),
        (
            "iscsi",
            v.iscsi.as_ref().and_then(|s| s.secret_ref.as_ref()),
        ),
        ("rbd", v.rbd.as_ref().and_then(|s| s.secret_ref.as_ref())),
        ("scaleIO", v.scale_io.as_ref().map(|s| &s.secret_ref)),
        (
            "storageos",
            v.storageos.as_ref().and_then(|s| s.secret_ref.as_ref()),
        ),
    ];
    for (kind, reference) in legacy {
        if let Some(r) = reference {
            out.push(SecretReference {
                field: at(&format!("{kind}.secretRef.name")),
                name: &r.name,
                used_as: SecretUse::LegacyVolume,
            });
        }
    }
}

/// One claim a pod mounts by name (`persistentVolumeClaim.claimName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimReference<'a> {
    /// `spec.volumes[i].persistentVolumeClaim.claimName`.
    pub field: String,
    /// The pod volume's name.
    pub volume: &'a str,
    /// The claim's name.
    pub claim: &'a str,
}

/// Every claim the pod spec mounts by name.
pub fn claim_references(spec: &PodSpec) -> Vec<ClaimReference<'_>> {
    slice(&spec.volumes)
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            v.persistent_volume_claim.as_ref().map(|p| ClaimReference {
                field: format!("spec.volumes[{i}].persistentVolumeClaim.claimName"),
                volume: &v.name,
                claim: &p.claim_name,
            })
        })
        .collect()
}

/// One way a pod could carry an API credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenReference {
    /// `spec.automountServiceAccountToken` or
    /// `spec.volumes[i].projected.sources[j].serviceAccountToken`.
    pub field: String,
    /// Whether the API server's ServiceAccount admission put it there (the
    /// `kube-api-access-*` volume), rather than the pod's author.
    pub injected: bool,
}

/// The ServiceAccount token volumes of the pod spec.
pub fn token_references(spec: &PodSpec) -> Vec<TokenReference> {
    let mut out = Vec::new();
    for (i, v) in slice(&spec.volumes).iter().enumerate() {
        let sources = v
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_deref())
            .unwrap_or(&[]);
        for (j, source) in sources.iter().enumerate() {
            if source.service_account_token.is_some() {
                out.push(TokenReference {
                    field: format!("spec.volumes[{i}].projected.sources[{j}].serviceAccountToken"),
                    injected: is_injected_token_volume(v),
                });
            }
        }
    }
    out
}

/// The volume ServiceAccount admission adds to a pod whose ServiceAccount automounts its
/// token: `kube-api-access-<5 characters>`, projecting the token, the cluster CA and the
/// namespace.
pub fn is_injected_token_volume(v: &Volume) -> bool {
    v.name.starts_with("kube-api-access-")
        && v.projected
            .as_ref()
            .and_then(|p| p.sources.as_deref())
            .is_some_and(|s| s.iter().any(|s| s.service_account_token.is_some()))
}
