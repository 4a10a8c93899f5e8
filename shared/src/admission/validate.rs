//! Validation of workspace pods and StatefulSets: the Pod Security Standards `restricted`
//! profile (see [`crate::admission::pss`]) plus the workspace rules: a known tier, resources within the
//! tier's limits, and only injectable Secrets.
//!
//! Pure: the only outside knowledge, which Secrets a namespace offers, comes in through
//! [`SecretCatalog`].

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::admission::containers::{containers, ContainerKind};
use crate::admission::mutate::mutate_pod;
use crate::admission::pss;
use crate::admission::references::{secret_references, token_references, SecretUse};
use crate::admission::violation::{SecretCatalog, Violation};
use crate::model::keys::{INJECT_LABEL, TIER_ANNOTATION, WORKSPACE_LABEL};
use crate::model::names::{check_workspace_name, statefulset_claim_name, MAX_WORKSPACE_NAME_LEN};
use crate::model::policy::{Policy, Tier};
use crate::model::quantity::Quantity;

/// Every reason to refuse this workspace pod: Pod Security Standard `restricted` violations
/// first, then workspace rules. Empty when the pod may run.
///
/// The Secret rule looks Secrets up in the pod's `metadata.namespace` (the admission glue
/// fills it from the request when the object omits it).
pub fn validate_pod(policy: &Policy, pod: &Pod, secrets: &dyn SecretCatalog) -> Vec<Violation> {
    let mut out = pss::check_restricted(pod);
    if let Some(spec) = &pod.spec {
        out.extend(workspace_rules(policy, &pod.metadata, spec, secrets));
    }
    out
}

/// The workspace rules alone (name, tier, resources, Secrets, ServiceAccount and token,
/// volume sources), without the Pod Security checks.
pub fn workspace_rules(
    policy: &Policy,
    meta: &ObjectMeta,
    spec: &PodSpec,
    secrets: &dyn SecretCatalog,
) -> Vec<Violation> {
    let mut out = Vec::new();
    workspace_name_rule(meta, &mut out);
    // The ServiceAccount is named after the workspace: with no valid name, the name rule
    // above is the one thing to fix.
    let named = out.is_empty();
    let tier = tier_rule(policy, meta, &mut out);
    if let Some((name, tier)) = tier {
        resource_rules(policy, name, tier, spec, &mut out);
    }
    secret_rules(policy, meta, spec, secrets, &mut out);
    if named {
        service_account_rules(policy, meta, spec, &mut out);
    }
    volume_source_rules(policy, spec, &mut out);
    out
}

/// Validates a StatefulSet's pod template as its pods will be admitted: the template is
/// turned into the pod the StatefulSet controller would create (ordinal 0, owned by the
/// StatefulSet, with the claim volumes), mutated like the webhook mutates pods, then
/// validated. So a template that leaves out fields the mutation fills in is accepted, and one
/// stating a forbidden value is refused now rather than leaving a StatefulSet whose pods can
/// never be created. Field paths are prefixed `spec.template.`.
pub fn validate_statefulset(
    policy: &Policy,
    sts: &StatefulSet,
    secrets: &dyn SecretCatalog,
) -> Vec<Violation> {
    let Some(spec) = &sts.spec else {
        return vec![Violation {
            field: "spec".to_string(),
            message: "a StatefulSet needs a spec; add one".to_string(),
        }];
    };
    let template = &spec.template;
    let sts_name = sts
        .metadata
        .name
        .clone()
        .or_else(|| sts.metadata.generate_name.clone())
        .unwrap_or_else(|| "statefulset".to_string());
    let mut meta = template.metadata.clone().unwrap_or_default();
    meta.name = Some(format!("{sts_name}-0"));
    meta.namespace = sts.metadata.namespace.clone();
    meta.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".to_string(),
        kind: "StatefulSet".to_string(),
        name: sts_name.clone(),
        uid: sts.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    // The StatefulSet controller gives each pod a volume per claim template (replacing a
    // template volume of the same name).
    for claim in spec.volume_claim_templates.as_deref().unwrap_or(&[]) {
        let Some(name) = claim.metadata.name.clone() else {
            continue;
        };
        let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != name);
        volumes.push(k8s_openapi::api::core::v1::Volume {
            persistent_volume_claim: Some(
                k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                    claim_name: statefulset_claim_name(&name, &sts_name, 0),
                    read_only: None,
                },
            ),
            name,
            ..Default::default()
        });
    }
    let pod = Pod {
        metadata: meta,
        spec: Some(pod_spec),
        status: None,
    };
    let mutation = mutate_pod(policy, &pod);
    let mutated = apply(&pod, &mutation.patch);
    let violations = match mutated {
        Ok(mutated) => validate_pod(policy, &mutated, secrets),
        // Not expected (the mutation only adds what is absent), but never a panic: validate
        // the template as written instead.
        Err(_) => validate_pod(policy, &pod, secrets),
    };
    violations
        .into_iter()
        .map(|v| Violation {
            field: format!("spec.template.{}", v.field),
            message: v.message,
        })
        .collect()
}

fn apply(pod: &Pod, patch: &json_patch::Patch) -> Result<Pod, String> {
    let mut doc = serde_json::to_value(pod).map_err(|e| e.to_string())?;
    json_patch::patch(&mut doc, patch).map_err(|e| e.to_string())?;
    serde_json::from_value(doc).map_err(|e| e.to_string())
}

/// The workspace label makes an object a workspace whatever its value (the webhooks select
/// on the key), so the value must be a name the workspace's objects can carry: a DNS-1123
/// label of at most 52 characters (see [`MAX_WORKSPACE_NAME_LEN`]). Empty is not a name.
fn workspace_name_rule(meta: &ObjectMeta, out: &mut Vec<Violation>) {
    let name = meta.labels.as_ref().and_then(|l| l.get(WORKSPACE_LABEL));
    if let Some(name) = name {
        if let Err(reason) = check_workspace_name(name) {
            out.push(Violation {
                field: format!("metadata.labels[{WORKSPACE_LABEL}]"),
                message: format!(
                    "{name:?} is not a valid workspace name ({reason}); use a DNS-1123 label of at most {MAX_WORKSPACE_NAME_LEN} characters (lowercase letters, digits and '-'), e.g. alice"
                ),
            });
        }
    }
}

/// An unknown `devenv.io/tier` is refused (mutation silently used the default, so the user
/// must hear about the typo here). Returns the tier to check resources against.
fn tier_rule<'a>(
    policy: &'a Policy,
    meta: &'a ObjectMeta,
    out: &mut Vec<Violation>,
) -> Option<(&'a str, &'a Tier)> {
    let requested = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(TIER_ANNOTATION))
        .map(String::as_str);
    if let Some(name) = requested {
        if policy.lookup_tier(name).is_none() {
            out.push(Violation {
                field: format!("metadata.annotations[{TIER_ANNOTATION}]"),
                message: format!(
                    "unknown tier {name:?}; use one of: {} (or remove the annotation for the default tier, {})",
                    policy.tier_names().join(", "),
                    policy.default_tier
                ),
            });
            return None;
        }
    }
    Some(policy.tier_name(requested))
}

fn resource_rules(
    policy: &Policy,
    tier_name: &str,
    tier: &Tier,
    spec: &PodSpec,
    out: &mut Vec<Violation>,
) {
    let larger = || {
        let names = policy.tier_names();
        format!(
            "lower it or choose a larger tier with the {TIER_ANNOTATION} annotation (tiers: {})",
            names.join(", ")
        )
    };
    let limits = [("cpu", &tier.limits.cpu), ("memory", &tier.limits.memory)];
    let mut check_list = |path: &str,
                          list: Option<&std::collections::BTreeMap<String, K8sQuantity>>,
                          require: bool| {
        for (resource, tier_limit) in limits {
            let Ok(max) = Quantity::parse(tier_limit) else {
                // A validated policy always parses; an unvalidated one cannot be enforced.
                continue;
            };
            let field = format!("{path}.{resource}");
            match list.and_then(|l| l.get(resource)) {
                Some(value) => match Quantity::parse(&value.0) {
                    Ok(q) if q > max => out.push(Violation {
                        field,
                        message: format!(
                            "{} is above the {resource} limit of tier {tier_name:?} ({tier_limit}); {}",
                            value.0,
                            larger()
                        ),
                    }),
                    Ok(_) => {}
                    Err(_) => out.push(Violation {
                        field,
                        message: format!("{:?} is not a Kubernetes quantity; use e.g. 500m or 2Gi", value.0),
                    }),
                },
                None if require => out.push(Violation {
                    field,
                    message: format!(
                        "a {resource} limit is required in workspaces of tier {tier_name:?} (at most {tier_limit}); set one, or let the devenv mutating webhook fill in the tier's limit"
                    ),
                }),
                None => {}
            }
        }
    };
    for c in containers(spec) {
        // Ephemeral containers cannot state resources; they share the pod's.
        if c.kind == ContainerKind::Ephemeral {
            continue;
        }
        let resources: Option<&ResourceRequirements> = c.resources;
        let base = format!("{}.resources", c.path());
        check_list(
            &format!("{base}.limits"),
            resources.and_then(|r| r.limits.as_ref()),
            true,
        );
        check_list(
            &format!("{base}.requests"),
            resources.and_then(|r| r.requests.as_ref()),
            false,
        );
    }
    // Pod-level resources (PodLevelResources) are bounded by the same tier.
    if let Some(resources) = &spec.resources {
        check_list("spec.resources.limits", resources.limits.as_ref(), false);
        check_list(
            "spec.resources.requests",
            resources.requests.as_ref(),
            false,
        );
    }
}

/// Every Secret the pod names ([`secret_references`]) must be one workspaces may use:
/// environment and volume Secrets from the policy's `secrets.inject` or labelled
/// `devenv.io/inject=true` in the namespace (the catalog); image pull Secrets from
/// `secrets.imagePull`; CSI node-publish Secrets like environment ones (on a driver the
/// policy allows, see [`volume_source_rules`]). Secrets of volume types Pod Security refuses
/// are refused here too, so no reference goes unjudged.
fn secret_rules(
    policy: &Policy,
    meta: &ObjectMeta,
    spec: &PodSpec,
    secrets: &dyn SecretCatalog,
    out: &mut Vec<Violation>,
) {
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    for r in secret_references(spec) {
        // An empty name is the API server's to refuse; there is no Secret to judge.
        if r.name.is_empty() {
            continue;
        }
        let name = r.name;
        let message = match r.used_as {
            SecretUse::Env | SecretUse::Volume | SecretUse::CsiNodePublish => {
                if policy.secrets.inject.iter().any(|s| s == name)
                    || secrets.is_injectable(namespace, name)
                {
                    continue;
                }
                format!(
                    "Secret {name:?} is not injectable into workspaces; label it {INJECT_LABEL}=true in namespace {namespace:?} or add it to the policy's secrets.inject"
                )
            }
            SecretUse::ImagePull => {
                if policy.secrets.image_pull.iter().any(|s| s == name) {
                    continue;
                }
                format!(
                    "image pull Secret {name:?} is not one workspaces may use; add it to the policy's secrets.imagePull, or remove it (the pod's ServiceAccount may have added it: give the workspace its own ServiceAccount)"
                )
            }
            SecretUse::LegacyVolume => format!(
                "Secret {name:?} is handed to a volume type workspaces may not use; use a persistentVolumeClaim, secret or projected volume"
            ),
        };
        out.push(Violation {
            field: r.field,
            message,
        });
    }
}

/// A workspace pod runs as its workspace's own ServiceAccount (named like the workspace,
/// made by `kubectl devenv create`) or one the policy allows, and carries no API token unless
/// the policy allows tokens: workspaces run untrusted code, and a token reads whatever its
/// ServiceAccount may read (Secrets, other workspaces).
fn service_account_rules(
    policy: &Policy,
    meta: &ObjectMeta,
    spec: &PodSpec,
    out: &mut Vec<Violation>,
) {
    let workspace = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(WORKSPACE_LABEL))
        .map(String::as_str)
        .unwrap_or_default();
    // The API server defaults an absent ServiceAccount to `default` before admission.
    let account = spec.service_account_name.as_deref().unwrap_or("default");
    let allowed =
        |name: &str| name == workspace || policy.service_accounts.allow.iter().any(|a| a == name);
    if !allowed(account) {
        out.push(Violation {
            field: "spec.serviceAccountName".to_string(),
            message: format!(
                "workspace pods run as their workspace's own ServiceAccount: set serviceAccountName: {workspace} (kubectl devenv create makes it; for a bare pod, kubectl create serviceaccount {workspace}), not {account:?}, or add {account:?} to the policy's serviceAccounts.allow"
            ),
        });
    }
    if let Some(alias) = spec.service_account.as_deref() {
        if !alias.is_empty() && alias != account {
            out.push(Violation {
                field: "spec.serviceAccount".to_string(),
                message: format!(
                    "the deprecated serviceAccount ({alias:?}) differs from serviceAccountName ({account:?}); remove it"
                ),
            });
        }
    }
    if policy.service_accounts.token {
        return;
    }
    if spec.automount_service_account_token == Some(true) {
        out.push(Violation {
            field: "spec.automountServiceAccountToken".to_string(),
            message: "workspace pods carry no Kubernetes API token: set automountServiceAccountToken: false (or let the policy allow tokens: serviceAccounts.token)".to_string(),
        });
    }
    for token in token_references(spec) {
        let why = if token.injected {
            format!("the API server mounted ServiceAccount {account:?}'s token because it automounts tokens; set automountServiceAccountToken: false on the pod")
        } else {
            "remove the serviceAccountToken projection".to_string()
        };
        out.push(Violation {
            field: token.field,
            message: format!(
                "workspace pods carry no Kubernetes API token; {why} (or let the policy allow tokens: serviceAccounts.token)"
            ),
        });
    }
}

/// Volume sources that reach data beyond the workspace's own claims: generic ephemeral
/// volumes that clone or bind an existing claim, volume or snapshot (or mint a claim labelled
/// as some workspace's), inline CSI volumes of drivers the policy does not list, and DRA
/// resource claims by name (someone else's device).
fn volume_source_rules(policy: &Policy, spec: &PodSpec, out: &mut Vec<Violation>) {
    for (i, v) in spec.volumes.as_deref().unwrap_or(&[]).iter().enumerate() {
        if let Some(template) = v
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
        {
            let at = format!("spec.volumes[{i}].ephemeral.volumeClaimTemplate");
            let claim = &template.spec;
            for (field, set, what) in [
                (
                    "dataSource",
                    claim.data_source.is_some(),
                    "clones an existing claim or snapshot",
                ),
                (
                    "dataSourceRef",
                    claim.data_source_ref.is_some(),
                    "fills the volume from an existing claim, snapshot or populator",
                ),
                (
                    "volumeName",
                    claim.volume_name.is_some(),
                    "binds an existing PersistentVolume",
                ),
                (
                    "selector",
                    claim.selector.is_some(),
                    "binds an existing PersistentVolume by its labels",
                ),
            ] {
                if set {
                    out.push(Violation {
                        field: format!("{at}.spec.{field}"),
                        message: format!(
                            "an ephemeral volume of a workspace pod {what}, which may hold another workspace's data; remove {field} (a workspace's data lives in its own claims)"
                        ),
                    });
                }
            }
            let devenv_keys = template
                .metadata
                .as_ref()
                .into_iter()
                .flat_map(|m| {
                    m.labels
                        .iter()
                        .flatten()
                        .chain(m.annotations.iter().flatten())
                })
                .filter(|(k, _)| k.starts_with("devenv.io/"));
            for (key, _) in devenv_keys {
                out.push(Violation {
                    field: format!("{at}.metadata[{key}]"),
                    message: format!(
                        "an ephemeral volume's claim may not carry {key}: claims of workspaces are made by their StatefulSet or the devenv controller; remove it"
                    ),
                });
            }
        }
        if let Some(csi) = &v.csi {
            if !policy.inline_csi_drivers.contains(&csi.driver) {
                out.push(Violation {
                    field: format!("spec.volumes[{i}].csi.driver"),
                    message: format!(
                        "inline CSI volumes of driver {:?} are not allowed in workspaces (a driver mounts whatever it is told to); use a persistentVolumeClaim, or add the driver to the policy's inlineCsiDrivers",
                        csi.driver
                    ),
                });
            }
        }
    }
    for (i, claim) in spec
        .resource_claims
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        if let Some(name) = &claim.resource_claim_name {
            out.push(Violation {
                field: format!("spec.resourceClaims[{i}].resourceClaimName"),
                message: format!(
                    "a workspace pod may not use the existing ResourceClaim {name:?} (it may be another workspace's device); use resourceClaimTemplateName"
                ),
            });
        }
    }
}
