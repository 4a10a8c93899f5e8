//! Validation of workspace pods and StatefulSets: the Pod Security Standards `restricted`
//! profile (see [`crate::pss`]) plus the workspace rules: a known tier, resources within the
//! tier's limits, and only injectable Secrets.
//!
//! Pure: the only outside knowledge, which Secrets a namespace offers, comes in through
//! [`SecretCatalog`].

use std::fmt;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::keys::{INJECT_LABEL, TIER_ANNOTATION, WORKSPACE_LABEL};
use crate::policy::{is_dns1123_label, Policy, Tier};
use crate::pss::{self, ContainerKind};
use crate::quantity::Quantity;

/// One reason a workspace is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path, e.g. `spec.containers[0].securityContext.privileged`.
    pub field: String,
    /// What rule is broken and what to do about it.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Which Secrets beyond the policy's `secrets.inject` a workspace may use.
///
/// The webhook implements it with a reflector of Secrets labelled `devenv.io/inject=true`.
pub trait SecretCatalog {
    fn is_injectable(&self, namespace: &str, name: &str) -> bool;
}

/// No Secret is injectable beyond the policy's `secrets.inject`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoExtraSecrets;

impl SecretCatalog for NoExtraSecrets {
    fn is_injectable(&self, _namespace: &str, _name: &str) -> bool {
        false
    }
}

/// Any `Fn(namespace, name) -> bool` is a catalog (handy in tests and small tools).
impl<F: Fn(&str, &str) -> bool> SecretCatalog for F {
    fn is_injectable(&self, namespace: &str, name: &str) -> bool {
        self(namespace, name)
    }
}

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

/// The workspace rules alone (tier, resources, Secrets), without the Pod Security checks.
pub fn workspace_rules(
    policy: &Policy,
    meta: &ObjectMeta,
    spec: &PodSpec,
    secrets: &dyn SecretCatalog,
) -> Vec<Violation> {
    let mut out = Vec::new();
    workspace_name_rule(meta, &mut out);
    let tier = tier_rule(policy, meta, &mut out);
    if let Some((name, tier)) = tier {
        resource_rules(policy, name, tier, spec, &mut out);
    }
    secret_rules(policy, meta, spec, secrets, &mut out);
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
                    claim_name: crate::objects::statefulset_claim_name(&name, &sts_name, 0),
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
    let mutation = crate::mutate::mutate_pod(policy, &pod);
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

/// The workspace name becomes part of claim names (`<volume>-<workspace>`), so it must be a
/// DNS-1123 label; label values may hold characters (`_`, upper case) that names may not.
fn workspace_name_rule(meta: &ObjectMeta, out: &mut Vec<Violation>) {
    let name = meta.labels.as_ref().and_then(|l| l.get(WORKSPACE_LABEL));
    if let Some(name) = name {
        if !is_dns1123_label(name) {
            out.push(Violation {
                field: format!("metadata.labels[{WORKSPACE_LABEL}]"),
                message: format!(
                    "{name:?} is not a valid workspace name; use a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters), e.g. alice"
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
    for c in pss::containers(spec) {
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

/// Every Secret the pod pulls (env secretKeyRef, envFrom secretRef, secret volumes, projected
/// secret sources) must be in the policy's `secrets.inject` or injectable per the catalog.
fn secret_rules(
    policy: &Policy,
    meta: &ObjectMeta,
    spec: &PodSpec,
    secrets: &dyn SecretCatalog,
    out: &mut Vec<Violation>,
) {
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let mut references: Vec<(String, &str)> = Vec::new();
    for c in pss::containers(spec) {
        for (i, env) in c.env.iter().enumerate() {
            if let Some(r) = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                references.push((
                    format!("{}.env[{i}].valueFrom.secretKeyRef.name", c.path()),
                    &r.name,
                ));
            }
        }
        for (i, from) in c.env_from.iter().enumerate() {
            if let Some(r) = &from.secret_ref {
                references.push((format!("{}.envFrom[{i}].secretRef.name", c.path()), &r.name));
            }
        }
    }
    for (i, volume) in spec.volumes.as_deref().unwrap_or(&[]).iter().enumerate() {
        if let Some(name) = volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref())
        {
            references.push((format!("spec.volumes[{i}].secret.secretName"), name));
        }
        let sources = volume
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_deref())
            .unwrap_or(&[]);
        for (j, source) in sources.iter().enumerate() {
            if let Some(s) = &source.secret {
                references.push((
                    format!("spec.volumes[{i}].projected.sources[{j}].secret.name"),
                    &s.name,
                ));
            }
        }
    }
    for (field, name) in references {
        // An empty name is the API server's to refuse; there is no Secret to judge.
        if name.is_empty()
            || policy.secrets.inject.iter().any(|s| s == name)
            || secrets.is_injectable(namespace, name)
        {
            continue;
        }
        out.push(Violation {
            field,
            message: format!(
                "Secret {name:?} is not injectable into workspaces; label it {INJECT_LABEL}=true in namespace {namespace:?} or add it to the policy's secrets.inject"
            ),
        });
    }
}
