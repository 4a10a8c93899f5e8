//! The objects of one tenant: a namespace for a developer or a team, sized from the
//! policy's tiers, and bound to the `devenv-user` ClusterRole that `install` creates.
//!
//! A namespace is Kubernetes' isolation boundary: whoever may create pods in a namespace
//! can read its volumes, whatever a label-scoped webhook says. So the safe layout is one
//! namespace per trust domain, and [`build`] makes it the easy one:
//!
//! * the Namespace `NAME`, enforcing Pod Security `restricted` (and warning and auditing
//!   it), labelled `devenv.io/tenant=NAME`;
//! * the ResourceQuota `devenv`: room for N workspace pods of one tier and their claims;
//! * the LimitRange `devenv`: no container above the largest tier's limits;
//! * the RoleBinding `devenv-user`: the tenant's users and groups get the `devenv-user`
//!   ClusterRole ([`crate::build::install::user_rules`]) in this namespace only.
//!
//! [`build`] is the only way the project builds them: `kubectl devenv tenant add` applies
//! exactly its output and `--dry-run=client` prints exactly that. Pure, like every builder.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::build::install::{EXCLUDED_NAMESPACES, USER_ROLE};
use crate::model::keys::{MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL, TIER_ANNOTATION};
use crate::model::names::{check_dns_label, is_subject_name, NameError};
use crate::model::policy::{Policy, Tier};
use crate::model::quantity::Quantity as ParsedQuantity;

/// Name of the tenant's ResourceQuota.
pub const QUOTA_NAME: &str = "devenv";
/// Name of the tenant's LimitRange.
pub const LIMIT_RANGE_NAME: &str = "devenv";
/// Name of the tenant's RoleBinding (to the ClusterRole of the same name).
pub const ROLE_BINDING_NAME: &str = USER_ROLE;
/// The API group of RBAC subjects that are users or groups.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What `tenant add` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantSpec {
    /// The tenant's name: the name of its namespace.
    pub name: String,
    /// Users bound to `devenv-user` (`--user`), as the API server names them.
    pub users: Vec<String>,
    /// Groups bound to `devenv-user` (`--group`).
    pub groups: Vec<String>,
    /// How many workspace pods of `tier` the quota makes room for (`--workspaces`).
    pub workspaces: u32,
    /// The tier the quota is sized for; `None` = the policy's default tier.
    pub tier: Option<String>,
    /// The webhook's namespace: never a tenant (the webhook does not watch it).
    pub install_namespace: String,
}

impl TenantSpec {
    /// A spec for one workspace of the default tier, with no users yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            workspaces: 1,
            install_namespace: crate::build::install::DEFAULT_NAMESPACE.to_owned(),
            ..Self::default()
        }
    }
}

/// The objects of a tenant, in the order they are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantObjects {
    pub namespace: Namespace,
    pub resource_quota: ResourceQuota,
    pub limit_range: LimitRange,
    pub role_binding: RoleBinding,
}

impl TenantObjects {
    /// The objects as JSON, in apply order: the namespace first, its limits next, and the
    /// access last, so the users never get a namespace without its quota.
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        Ok(vec![
            serde_json::to_value(&self.namespace)?,
            serde_json::to_value(&self.resource_quota)?,
            serde_json::to_value(&self.limit_range)?,
            serde_json::to_value(&self.role_binding)?,
        ])
    }
}

/// Why a tenant cannot be built, or a namespace is not one. Checked before any API call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("invalid tenant name {name:?}: {reason} (it is the name of the tenant's namespace)")]
    InvalidName { name: String, reason: NameError },
    #[error(
        "invalid tenant name {0:?}: the admission webhook does not watch that namespace; choose another name"
    )]
    ReservedName(String),
    #[error("a tenant needs at least one --user or --group: who may use its namespace")]
    NoSubjects,
    #[error(
        "invalid {flag} {name:?}: write the name as the API server reports it (non-empty, no surrounding spaces), e.g. alice or system:authenticated"
    )]
    InvalidSubject { flag: &'static str, name: String },
    #[error(
        "invalid --workspaces 0: must be 1 or more (how many workspaces the quota makes room for)"
    )]
    NoWorkspaces,
    #[error("unknown --tier {tier:?}; the policy defines: {}", known.join(", "))]
    UnknownTier { tier: String, known: Vec<String> },
    #[error("the policy's {field} {value:?} is not a Kubernetes quantity; fix the policy")]
    InvalidQuantity { field: String, value: String },
    #[error(
        "--workspaces {workspaces} is too many: the quota's {resource} does not fit in a quantity"
    )]
    TooLarge {
        workspaces: u32,
        resource: &'static str,
    },
    #[error(
        "namespace {name:?} is not a devenv tenant: it is not labelled {label}={name}\n  \
         tenant commands only touch namespaces that `kubectl devenv tenant add` made; to make this one a tenant on purpose, label it first: kubectl label namespace {name} {label}={name}",
        label = TENANT_LABEL
    )]
    NotATenant { name: String },
}

/// Checks a tenant name: a DNS-1123 label (it names a namespace), not a namespace the
/// webhook never watches.
pub fn validate_name(name: &str, install_namespace: &str) -> Result<(), TenantError> {
    check_dns_label(name, 63).map_err(|reason| TenantError::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    if EXCLUDED_NAMESPACES.contains(&name) || name == install_namespace {
        return Err(TenantError::ReservedName(name.to_owned()));
    }
    Ok(())
}

/// Labels on every object of tenant `name`.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TENANT_LABEL.to_owned(), name.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "devenv".to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
    ])
}

/// Label selector of every tenant namespace (`tenant list`); each one found is then
/// checked with [`is_tenant_namespace`].
pub fn tenant_selector() -> String {
    TENANT_LABEL.to_owned()
}

/// Whether `ns` is the namespace of tenant `name`: named `name` and labelled
/// `devenv.io/tenant=name`.
pub fn is_tenant_namespace(ns: &Namespace, name: &str) -> bool {
    ns.metadata.name.as_deref() == Some(name)
        && ns
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TENANT_LABEL))
            .is_some_and(|v| v == name)
}

/// `Ok` when `ns` is the namespace of tenant `name`; the error names the label otherwise.
/// `tenant remove` refuses any other namespace, and `tenant add` refuses to take one over.
pub fn check_tenant_namespace(ns: &Namespace, name: &str) -> Result<(), TenantError> {
    if is_tenant_namespace(ns, name) {
        Ok(())
    } else {
        Err(TenantError::NotATenant {
            name: name.to_owned(),
        })
    }
}

fn meta(name: &str, namespace: Option<&str>, tenant: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(tenant)),
        ..Default::default()
    }
}

/// Checks everything of a spec that does not need the policy (name, users and groups,
/// workspace count), so a command can refuse it before any call; [`build`] checks it too.
pub fn validate(spec: &TenantSpec) -> Result<(), TenantError> {
    validate_name(&spec.name, &spec.install_namespace)?;
    if spec.users.is_empty() && spec.groups.is_empty() {
        return Err(TenantError::NoSubjects);
    }
    for (flag, names) in [("--user", &spec.users), ("--group", &spec.groups)] {
        if let Some(bad) = names.iter().find(|n| !is_subject_name(n)) {
            return Err(TenantError::InvalidSubject {
                flag,
                name: bad.clone(),
            });
        }
    }
    if spec.workspaces == 0 {
        return Err(TenantError::NoWorkspaces);
    }
    Ok(())
}

fn parse(field: String, value: &str) -> Result<ParsedQuantity, TenantError> {
    ParsedQuantity::parse(value).map_err(|_| TenantError::InvalidQuantity {
        field,
        value: value.to_owned(),
    })
}

/// Builds the tenant's objects.
pub fn build(spec: &TenantSpec, policy: &Policy) -> Result<TenantObjects, TenantError> {
    validate(spec)?;
    let tier_name = spec.tier.as_deref().unwrap_or(&policy.default_tier);
    let tier = policy
        .lookup_tier(tier_name)
        .ok_or_else(|| TenantError::UnknownTier {
            tier: tier_name.to_owned(),
            known: policy.tier_names().into_iter().map(str::to_owned).collect(),
        })?;
    let name = spec.name.as_str();
    Ok(TenantObjects {
        namespace: namespace(name),
        resource_quota: ResourceQuota {
            // The tier it is sized for, so `tenant list` can show it and `tenant remove` can
            // say how to size it the same again.
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(
                    TIER_ANNOTATION.to_owned(),
                    tier_name.to_owned(),
                )])),
                ..meta(QUOTA_NAME, Some(name), name)
            },
            spec: Some(ResourceQuotaSpec {
                hard: Some(quota_hard(policy, tier_name, tier, spec.workspaces)?),
                ..Default::default()
            }),
            status: None,
        },
        limit_range: LimitRange {
            metadata: meta(LIMIT_RANGE_NAME, Some(name), name),
            spec: Some(LimitRangeSpec {
                limits: vec![LimitRangeItem {
                    type_: "Container".to_owned(),
                    // No `default` / `defaultRequest`: the webhook sets every workspace
                    // container's resources from its tier; a default here would only hide
                    // a container the webhook did not size.
                    max: Some(container_max(policy)?),
                    ..Default::default()
                }],
            }),
        },
        role_binding: role_binding(spec),
    })
}

fn namespace(name: &str) -> Namespace {
    let mut labels = labels(name);
    for mode in ["enforce", "warn", "audit"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".to_owned(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The quota's `hard` limits: room for `n` workspace pods of `tier` and their claims.
///
/// * `requests.*` / `limits.*` cpu and memory: `n` times the tier's. Every container of a
///   workspace pod (init containers included) gets the tier's resources from the webhook,
///   so a pod costs exactly one tier; ephemeral (debug) containers cannot state resources
///   and cost nothing.
/// * `pods`: `n`, no headroom. A tenant's users cannot create pods themselves (`devenv-user`
///   has no pods create: the bare-pod path is closed to them), `kubectl debug` adds
///   ephemeral containers to an existing pod rather than a pod, and a StatefulSet replaces a
///   pod only after the old one is gone, so `n` workspace pods never need `n + 1`. A
///   workspace scaled to two replicas uses two of the `n`.
/// * `count/statefulsets.apps`: `n` workspaces, running or stopped.
/// * `persistentvolumeclaims` and `requests.storage`: `n` times the policy's volumes. Claims
///   kept by `delete` (without `--purge`) still count: kept data costs its space.
fn quota_hard(
    policy: &Policy,
    tier_name: &str,
    tier: &Tier,
    n: u32,
) -> Result<BTreeMap<String, Quantity>, TenantError> {
    let times = |q: ParsedQuantity, resource: &'static str| {
        q.checked_mul(u64::from(n)).ok_or(TenantError::TooLarge {
            workspaces: n,
            resource,
        })
    };
    let field = |part: &str, what: &str| format!("tiers.{tier_name}.{part}.{what}");
    let cpu = |q: ParsedQuantity| Quantity(q.to_string());
    let bytes = |q: ParsedQuantity| Quantity(q.to_binary_si());

    let mut storage = ParsedQuantity::ZERO;
    for (i, v) in policy.volumes.iter().enumerate() {
        storage = storage
            .checked_add(parse(format!("volumes[{i}].size"), &v.size)?)
            .ok_or(TenantError::TooLarge {
                workspaces: n,
                resource: "requests.storage",
            })?;
    }
    let count = |per: u64, resource: &'static str| {
        per.checked_mul(u64::from(n))
            .map(|c| Quantity(c.to_string()))
            .ok_or(TenantError::TooLarge {
                workspaces: n,
                resource,
            })
    };
    let volumes = u64::try_from(policy.volumes.len()).unwrap_or(u64::MAX);
    Ok(BTreeMap::from([
        (
            "requests.cpu".to_owned(),
            cpu(times(
                parse(field("requests", "cpu"), &tier.requests.cpu)?,
                "requests.cpu",
            )?),
        ),
        (
            "limits.cpu".to_owned(),
            cpu(times(
                parse(field("limits", "cpu"), &tier.limits.cpu)?,
                "limits.cpu",
            )?),
        ),
        (
            "requests.memory".to_owned(),
            bytes(times(
                parse(field("requests", "memory"), &tier.requests.memory)?,
                "requests.memory",
            )?),
        ),
        (
            "limits.memory".to_owned(),
            bytes(times(
                parse(field("limits", "memory"), &tier.limits.memory)?,
                "limits.memory",
            )?),
        ),
        (
            "requests.storage".to_owned(),
            bytes(times(storage, "requests.storage")?),
        ),
        (
            "persistentvolumeclaims".to_owned(),
            count(volumes, "persistentvolumeclaims")?,
        ),
        ("pods".to_owned(), count(1, "pods")?),
        (
            "count/statefulsets.apps".to_owned(),
            count(1, "count/statefulsets.apps")?,
        ),
    ]))
}

/// The largest limits of any tier, cpu and memory each (as the policy writes them), so
/// that every tier fits (`scale --tier` may move a workspace to any tier the quota has
/// room for) and nothing larger does.
fn container_max(policy: &Policy) -> Result<BTreeMap<String, Quantity>, TenantError> {
    let mut cpu: Option<(ParsedQuantity, &str)> = None;
    let mut memory: Option<(ParsedQuantity, &str)> = None;
    for (name, tier) in &policy.tiers {
        let c = parse(format!("tiers.{name}.limits.cpu"), &tier.limits.cpu)?;
        let m = parse(format!("tiers.{name}.limits.memory"), &tier.limits.memory)?;
        if cpu.is_none_or(|(max, _)| c > max) {
            cpu = Some((c, &tier.limits.cpu));
        }
        if memory.is_none_or(|(max, _)| m > max) {
            memory = Some((m, &tier.limits.memory));
        }
    }
    let mut max = BTreeMap::new();
    if let Some((_, c)) = cpu {
        max.insert("cpu".to_owned(), Quantity(c.to_owned()));
    }
    if let Some((_, m)) = memory {
        max.insert("memory".to_owned(), Quantity(m.to_owned()));
    }
    Ok(max)
}

/// The RoleBinding `devenv-user`: every `--user` and `--group` (once each, in the order
/// given) to the ClusterRole `devenv-user`.
fn role_binding(spec: &TenantSpec) -> RoleBinding {
    let mut subjects: Vec<Subject> = Vec::new();
    for (kind, names) in [("User", &spec.users), ("Group", &spec.groups)] {
        for name in names {
            let subject = Subject {
                kind: kind.to_owned(),
                name: name.clone(),
                api_group: Some(RBAC_GROUP.to_owned()),
                namespace: None,
            };
            if !subjects.contains(&subject) {
                subjects.push(subject);
            }
        }
    }
    RoleBinding {
        metadata: meta(ROLE_BINDING_NAME, Some(&spec.name), &spec.name),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.to_owned(),
            kind: "ClusterRole".to_owned(),
            name: USER_ROLE.to_owned(),
        },
        subjects: Some(subjects),
    }
}

/// The users and groups a tenant RoleBinding grants, as `(users, groups)`.
pub fn subjects_of(binding: &RoleBinding) -> (Vec<String>, Vec<String>) {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    for s in binding.subjects.iter().flatten() {
        match s.kind.as_str() {
            "User" => users.push(s.name.clone()),
            "Group" => groups.push(s.name.clone()),
            _ => {}
        }
    }
    (users, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TenantSpec {
        TenantSpec {
            users: vec!["alice".into()],
            ..TenantSpec::new("team-a")
        }
    }

    fn built(s: &TenantSpec) -> TenantObjects {
        build(s, &Policy::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn hard(o: &TenantObjects) -> BTreeMap<String, String> {
        o.resource_quota
            .spec
            .as_ref()
            .and_then(|s| s.hard.as_ref())
            .map(|h| h.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
            .unwrap_or_default()
    }

    fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn namespace_enforces_restricted_and_names_the_tenant() {
        let ns = built(&spec()).namespace;
        assert_eq!(ns.metadata.name.as_deref(), Some("team-a"));
        assert_eq!(ns.metadata.namespace, None);
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels,
            strings(&[
                ("devenv.io/tenant", "team-a"),
                ("app.kubernetes.io/part-of", "devenv"),
                ("app.kubernetes.io/managed-by", "kubectl-devenv"),
                ("pod-security.kubernetes.io/enforce", "restricted"),
                ("pod-security.kubernetes.io/enforce-version", "latest"),
                ("pod-security.kubernetes.io/warn", "restricted"),
                ("pod-security.kubernetes.io/warn-version", "latest"),
                ("pod-security.kubernetes.io/audit", "restricted"),
                ("pod-security.kubernetes.io/audit-version", "latest"),
            ])
        );
        assert!(is_tenant_namespace(&ns, "team-a"));
        assert!(!is_tenant_namespace(&ns, "team-b"));
    }

    #[test]
    fn quota_is_n_times_the_tier_and_the_volumes() {
        // Default policy: small = 500m/2Gi requests, 2/4Gi limits; volumes 10Gi + 1Gi + 1Gi.
        let one = built(&spec());
        assert_eq!(
            hard(&one),
            strings(&[
                ("requests.cpu", "500m"),
                ("limits.cpu", "2"),
                ("requests.memory", "2Gi"),
                ("limits.memory", "4Gi"),
                ("requests.storage", "12Gi"),
                ("persistentvolumeclaims", "3"),
                ("pods", "1"),
                ("count/statefulsets.apps", "1"),
            ])
        );
        let three_large = built(&TenantSpec {
            workspaces: 3,
            tier: Some("large".into()),
            ..spec()
        });
        assert_eq!(
            hard(&three_large),
            strings(&[
                ("requests.cpu", "6"),
                ("limits.cpu", "24"),
                ("requests.memory", "24Gi"),
                ("limits.memory", "48Gi"),
                ("requests.storage", "36Gi"),
                ("persistentvolumeclaims", "9"),
                ("pods", "3"),
                ("count/statefulsets.apps", "3"),
            ])
        );
        let three_micro = built(&TenantSpec {
            workspaces: 3,
            tier: Some("micro".into()),
            ..spec()
        });
        let h = hard(&three_micro);
        // micro = 125m/512Mi requests, 500m/1Gi limits.
        assert_eq!(h["requests.cpu"], "375m");
        assert_eq!(h["limits.cpu"], "1500m");
        assert_eq!(h["requests.memory"], "1536Mi");
        assert_eq!(h["limits.memory"], "3Gi");
        let q = &three_micro.resource_quota.metadata;
        assert_eq!(
            (q.name.as_deref(), q.namespace.as_deref()),
            (Some("devenv"), Some("team-a"))
        );
        let tier_of = |o: &TenantObjects| {
            o.resource_quota
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(TIER_ANNOTATION).cloned())
        };
        assert_eq!(tier_of(&three_micro).as_deref(), Some("micro"));
        // Without --tier: the default tier, named.
        assert_eq!(tier_of(&one).as_deref(), Some("small"));
    }

    #[test]
    fn quota_follows_the_policy_volumes() {
        let policy = Policy::from_yaml(
            "volumes:\n- {name: workspace, size: 20Gi, mountPath: /workspace}\n- {name: cache, size: 512Mi, mountPath: /cache}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let o = build(
            &TenantSpec {
                workspaces: 2,
                ..spec()
            },
            &policy,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let h = hard(&o);
        assert_eq!(h["requests.storage"], "41Gi");
        assert_eq!(h["persistentvolumeclaims"], "4");
        let none = Policy::from_yaml("volumes: []\n").unwrap_or_else(|e| panic!("{e}"));
        let h = hard(&build(&spec(), &none).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(h["requests.storage"], "0");
        assert_eq!(h["persistentvolumeclaims"], "0");
    }

    #[test]
    fn limit_range_caps_containers_at_the_largest_tier_without_defaults() {
        let o = built(&spec());
        let lr = o.limit_range;
        assert_eq!(lr.metadata.name.as_deref(), Some("devenv"));
        assert_eq!(lr.metadata.namespace.as_deref(), Some("team-a"));
        let items = lr.spec.map(|s| s.limits).unwrap_or_default();
        assert_eq!(items.len(), 1);
        let item = &items[0];
        assert_eq!(item.type_, "Container");
        // large: limits 8 / 16Gi, the largest of the default tiers, whatever --tier says.
        let max: BTreeMap<String, String> = item
            .max
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        assert_eq!(max, strings(&[("cpu", "8"), ("memory", "16Gi")]));
        assert!(item.default.is_none() && item.default_request.is_none());
        assert!(item.min.is_none() && item.max_limit_request_ratio.is_none());

        // cpu and memory each from the tier that has the most of it.
        let policy = Policy::from_yaml(
            "defaultTier: a\ntiers:\n  a: {requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 4000m, memory: 1Gi}}\n  b: {requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 2, memory: 32Gi}}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let o = build(&spec(), &policy).unwrap_or_else(|e| panic!("{e}"));
        let max = o.limit_range.spec.map(|s| s.limits).unwrap_or_default()[0]
            .max
            .clone()
            .unwrap_or_default();
        assert_eq!(max["cpu"].0, "4000m");
        assert_eq!(max["memory"].0, "32Gi");
    }

    #[test]
    fn role_binding_grants_devenv_user_to_every_user_and_group_once() {
        let o = built(&TenantSpec {
            users: vec!["alice".into(), "bob".into(), "alice".into()],
            groups: vec!["team-a-devs".into()],
            ..spec()
        });
        let rb = &o.role_binding;
        assert_eq!(rb.metadata.name.as_deref(), Some("devenv-user"));
        assert_eq!(rb.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            (
                rb.role_ref.kind.as_str(),
                rb.role_ref.name.as_str(),
                rb.role_ref.api_group.as_str()
            ),
            ("ClusterRole", USER_ROLE, "rbac.authorization.k8s.io")
        );
        let subjects: Vec<(&str, &str, Option<&str>)> = rb
            .subjects
            .iter()
            .flatten()
            .map(|s| (s.kind.as_str(), s.name.as_str(), s.api_group.as_deref()))
            .collect();
        let g = Some("rbac.authorization.k8s.io");
        assert_eq!(
            subjects,
            vec![
                ("User", "alice", g),
                ("User", "bob", g),
                ("Group", "team-a-devs", g)
            ]
        );
        assert_eq!(
            subjects_of(rb),
            (
                vec!["alice".to_owned(), "bob".to_owned()],
                vec!["team-a-devs".to_owned()]
            )
        );
        // A group alone is enough.
        let o = built(&TenantSpec {
            users: vec![],
            groups: vec!["devs".into()],
            ..spec()
        });
        assert_eq!(
            subjects_of(&o.role_binding),
            (vec![], vec!["devs".to_owned()])
        );
    }

    #[test]
    fn every_object_carries_the_tenant_labels_and_applies_in_order() {
        let o = built(&spec());
        for m in [
            &o.namespace.metadata,
            &o.resource_quota.metadata,
            &o.limit_range.metadata,
            &o.role_binding.metadata,
        ] {
            let l = m.labels.clone().unwrap_or_default();
            assert_eq!(l.get(TENANT_LABEL).map(String::as_str), Some("team-a"));
            assert_eq!(
                l.get(MANAGED_BY_LABEL).map(String::as_str),
                Some(MANAGED_BY)
            );
        }
        let kinds: Vec<String> = o
            .to_values()
            .unwrap_or_default()
            .iter()
            .map(|v| v["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            kinds,
            ["Namespace", "ResourceQuota", "LimitRange", "RoleBinding"]
        );
        assert_eq!(
            build(&spec(), &Policy::default()),
            build(&spec(), &Policy::default())
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        for (name, want) in [
            ("Team", "invalid tenant name \"Team\": contains 'T'"),
            ("team_a", "contains '_'"),
            ("-team", "must start and end"),
            ("", "must not be empty"),
        ] {
            let e = build(&TenantSpec::new(name), &Policy::default())
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert!(matches!(&e, Err(m) if m.contains(want)), "{name}: {e:?}");
        }
        let long = "a".repeat(64);
        assert!(matches!(
            validate_name(&long, "devenv-system"),
            Err(TenantError::InvalidName {
                reason: NameError::TooLong { max: 63, len: 64 },
                ..
            })
        ));
        assert!(validate_name(&"a".repeat(63), "devenv-system").is_ok());
        for reserved in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "devenv-system",
        ] {
            assert_eq!(
                validate_name(reserved, "devenv-system"),
                Err(TenantError::ReservedName(reserved.to_owned()))
            );
        }
        assert_eq!(
            build(
                &TenantSpec {
                    install_namespace: "ops".into(),
                    ..TenantSpec {
                        name: "ops".into(),
                        ..spec()
                    }
                },
                &Policy::default()
            ),
            Err(TenantError::ReservedName("ops".into()))
        );
    }

    #[test]
    fn subjects_are_required_and_checked() {
        let e = build(
            &TenantSpec {
                users: vec![],
                ..spec()
            },
            &Policy::default(),
        );
        assert_eq!(e, Err(TenantError::NoSubjects));
        assert!(TenantError::NoSubjects
            .to_string()
            .contains("--user or --group"));
        let e = build(
            &TenantSpec {
                users: vec!["alice".into(), " bob".into()],
                ..spec()
            },
            &Policy::default(),
        );
        assert_eq!(
            e,
            Err(TenantError::InvalidSubject {
                flag: "--user",
                name: " bob".into()
            })
        );
        let e = build(
            &TenantSpec {
                groups: vec![String::new()],
                ..spec()
            },
            &Policy::default(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(m) if m.starts_with("invalid --group \"\"")),
            "{e:?}"
        );
    }

    #[test]
    fn workspaces_must_be_at_least_one() {
        let e = build(
            &TenantSpec {
                workspaces: 0,
                ..spec()
            },
            &Policy::default(),
        );
        assert_eq!(e, Err(TenantError::NoWorkspaces));
        assert!(TenantError::NoWorkspaces
            .to_string()
            .contains("--workspaces 0"));
        // The largest count still fits.
        let h = hard(&built(&TenantSpec {
            workspaces: u32::MAX,
            ..spec()
        }));
        assert_eq!(h["pods"], u32::MAX.to_string());
    }

    #[test]
    fn unknown_tier_names_the_valid_ones() {
        let e = build(
            &TenantSpec {
                tier: Some("huge".into()),
                ..spec()
            },
            &Policy::default(),
        );
        assert_eq!(
            e.as_ref().map(|_| ()).map_err(ToString::to_string),
            Err("unknown --tier \"huge\"; the policy defines: large, micro, small".to_owned())
        );
        // Without --tier: the policy's default tier.
        let p = Policy::from_yaml("defaultTier: large\n").unwrap_or_else(|e| panic!("{e}"));
        let h = hard(&build(&spec(), &p).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(h["requests.cpu"], "2");
    }

    #[test]
    fn only_a_namespace_labelled_for_its_tenant_is_one() {
        let named = |name: &str, label: Option<&str>| Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: label.map(|v| BTreeMap::from([(TENANT_LABEL.to_owned(), v.to_owned())])),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(check_tenant_namespace(&named("team-a", Some("team-a")), "team-a").is_ok());
        for ns in [
            named("team-a", None),
            named("team-a", Some("team-b")),
            named("team-a", Some("")),
            named("team-b", Some("team-a")),
        ] {
            let e = check_tenant_namespace(&ns, "team-a");
            assert_eq!(
                e,
                Err(TenantError::NotATenant {
                    name: "team-a".into()
                })
            );
        }
        let text = TenantError::NotATenant {
            name: "team-a".into(),
        }
        .to_string();
        assert!(
            text.contains("not labelled devenv.io/tenant=team-a")
                && text.contains("kubectl label namespace team-a devenv.io/tenant=team-a"),
            "{text}"
        );
    }
}
