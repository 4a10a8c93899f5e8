//! The objects of one workspace: a StatefulSet (one pod per replica, each with
//! its own persistent claims), a headless Service, a NetworkPolicy and a
//! ServiceAccount without a token.
//!
//! [`build`] is the only way the project builds them: `kubectl devenv create`
//! sends exactly what it returns, and `--dry-run=client` prints exactly that.
//! Everything here is pure: no I/O, no clock, so every field is unit-tested.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvFromSource, EnvVar, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext,
    Service, ServiceAccount, ServicePort, ServiceSpec, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::build::claims::claim_template;
use crate::model::duration::{parse_optional_duration, DurationError};
use crate::model::keys::{
    APP_NAME, CLONE_CONTAINER, IDLE_TIMEOUT, MANAGED_BY, MANAGED_BY_LABEL, TIER_ANNOTATION,
    WORKSPACE_CONTAINER, WORKSPACE_LABEL,
};
use crate::model::names::{
    check_dns_label, check_dns_subdomain, is_image_reference, NameError, MAX_WORKSPACE_NAME_LEN,
};
use crate::model::policy::{Policy, VolumePolicy};
use crate::model::quantity::Quantity as ParsedQuantity;

/// Port sshd listens on inside the container: a non-root process without
/// `NET_BIND_SERVICE` cannot bind 22.
pub const SSH_CONTAINER_PORT: i32 = 2222;
/// Port the Service exposes ssh on, so `ssh NAME-0.NAME` works as usual.
pub const SSH_SERVICE_PORT: i32 = 22;
/// Port for a dev server / web IDE.
pub const HTTP_PORT: i32 = 8080;
/// Volume (from the policy) that holds the source tree; `--repo` clones into it.
pub const WORKSPACE_VOLUME: &str = "workspace";
/// The policy volume that holds shell history (`HISTFILE` points into it).
pub const HISTORY_VOLUME: &str = "history";
/// Mount path of the source tree when the policy has no `workspace` volume.
pub const DEFAULT_WORKSPACE_PATH: &str = "/workspace";
/// Cloud metadata endpoint: workspaces run untrusted code, so they must not read
/// node credentials from it even though they may reach the internet.
pub const METADATA_CIDR: &str = "169.254.169.254/32";

/// With `keep_alive`, replaces the image's entrypoint with a process that idles
/// until the pod is stopped (the same trick dev-container tools use for images
/// whose default command is an interactive shell that would exit at once).
/// `trap` makes SIGTERM end it immediately instead of after the grace period.
pub const KEEP_ALIVE_SCRIPT: &str =
    "trap 'exit 0' TERM INT; while sleep 3600 & wait $!; do :; done";

/// The `clone` init container's script. Inputs come from the environment, never
/// from string interpolation, so a URL or branch cannot inject shell.
///
/// - `$DEVENV_DEST/.git` exists: the workspace already holds a repository: do nothing.
/// - `$DEVENV_DEST` is empty: clone into it, so the repository *is* the workspace.
/// - otherwise (existing work, or the `lost+found` of a fresh ext4 volume):
///   clone into `$DEVENV_DEST/$DEVENV_REPO_DIR`, unless that already exists.
///
/// Existing files are never overwritten: git refuses non-empty destinations, and
/// the script only ever clones into an empty or a new directory.
pub const CLONE_SCRIPT: &str = r#"set -eu
dest="$DEVENV_DEST"
if [ -e "$dest/.git" ]; then
  echo "devenv: $dest already holds a git repository; not cloning"
  exit 0
fi
if [ -n "$(ls -A "$dest" 2>/dev/null)" ]; then
  dest="$dest/$DEVENV_REPO_DIR"
  if [ -e "$dest" ]; then
    echo "devenv: $dest already exists; not cloning"
    exit 0
  fi
fi
set --
if [ -n "${DEVENV_BRANCH:-}" ]; then
  set -- --branch "$DEVENV_BRANCH"
fi
echo "devenv: cloning $DEVENV_REPO into $dest"
exec git clone "$@" -- "$DEVENV_REPO" "$dest"
"#;

/// What the user asked for. Everything optional falls back to the policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkspaceSpec {
    /// Workspace name: StatefulSet, Service, NetworkPolicy and ServiceAccount name.
    pub name: String,
    /// Namespace of all objects.
    pub namespace: String,
    /// Container image of the `workspace` (and `clone`) container.
    pub image: String,
    /// Policy tier; `None` = the policy's default tier.
    pub tier: Option<String>,
    /// Number of independent workspace pods (a pool), each with its own claims.
    pub replicas: i32,
    /// Secrets whose keys become environment variables (`envFrom`, optional), in
    /// addition to the policy's `secrets.inject`. The webhook admits only Secrets
    /// labelled `devenv.io/inject=true` (what `kubectl devenv secrets set` makes).
    pub secrets: Vec<String>,
    /// Git URL cloned into the workspace volume on first start.
    pub repo: Option<String>,
    /// Branch to clone; `None` = the remote's default branch.
    pub branch: Option<String>,
    /// Storage class of every claim; `None` = the policy's, else the cluster default.
    pub storage_class: Option<String>,
    /// Size overrides by policy volume name (`workspace`, `history`, `config`).
    pub volume_sizes: BTreeMap<String, String>,
    /// CPU override: request and limit (e.g. `2`, `500m`).
    pub cpu: Option<String>,
    /// Memory override: request and limit (e.g. `4Gi`).
    pub memory: Option<String>,
    /// Value of the `devenv.io/idle-timeout` annotation (read by the lifecycle
    /// controller): `2h`, `30m`, `0` = never.
    pub idle_timeout: Option<String>,
    /// Replace the image's entrypoint with [`KEEP_ALIVE_SCRIPT`]. Off by default:
    /// a workspace image runs its own entrypoint (sshd, a web IDE, an init).
    pub keep_alive: bool,
}

impl WorkspaceSpec {
    /// A spec with one replica and every other choice left to the policy.
    pub fn new(name: &str, namespace: &str, image: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            image: image.to_owned(),
            replicas: 1,
            ..Self::default()
        }
    }
}

/// The objects of one workspace, in the order they are created.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkspaceObjects {
    pub service_account: ServiceAccount,
    pub service: Service,
    pub network_policy: NetworkPolicy,
    pub stateful_set: StatefulSet,
}

/// Why a spec cannot be turned into objects. Checked before any API call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    #[error("invalid workspace name {name:?}: {reason}")]
    InvalidName { name: String, reason: NameError },
    #[error("unknown tier {tier:?}; the policy defines: {}", known.join(", "))]
    UnknownTier { tier: String, known: Vec<String> },
    #[error("unknown volume {volume:?}; the policy defines: {}", known.join(", "))]
    UnknownVolume { volume: String, known: Vec<String> },
    #[error(
        "invalid {field} {value:?}: expected a Kubernetes quantity such as 500m, 2, 512Mi or 10Gi"
    )]
    InvalidQuantity { field: String, value: String },
    #[error("invalid replicas {0}: must be 0 or more")]
    InvalidReplicas(i32),
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidReference {
        kind: String,
        name: String,
        reason: NameError,
    },
    #[error("invalid image {0:?}: must be non-empty and contain no whitespace")]
    InvalidImage(String),
    #[error(
        "invalid repository {0:?}: expected a git URL such as https://github.com/org/repo.git"
    )]
    InvalidRepo(String),
    #[error(
        "invalid branch {0:?}: must be non-empty, not start with '-', and contain no whitespace"
    )]
    InvalidBranch(String),
    #[error("--branch needs --repo")]
    BranchWithoutRepo,
    #[error("idle timeout: {0}")]
    InvalidIdleTimeout(DurationError),
}

/// Checks a workspace name (see [`MAX_WORKSPACE_NAME_LEN`]).
pub fn validate_name(name: &str) -> Result<(), WorkspaceError> {
    check_dns_label(name, MAX_WORKSPACE_NAME_LEN).map_err(|reason| WorkspaceError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// Whether `s` is a non-negative Kubernetes quantity (parsed by
/// [`crate::model::quantity`], the same parser the webhook uses). Catches typos before any
/// API call.
pub fn is_quantity(s: &str) -> bool {
    ParsedQuantity::parse(s).is_ok_and(|q| !q.is_negative())
}

fn check_quantity(field: &str, value: &str) -> Result<(), WorkspaceError> {
    if is_quantity(value) {
        Ok(())
    } else {
        Err(WorkspaceError::InvalidQuantity {
            field: field.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// Labels on every object of workspace `name`.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (WORKSPACE_LABEL.to_owned(), name.to_owned()),
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
    ])
}

/// The StatefulSet's selector (immutable once created, so kept to the one label
/// that identifies the workspace).
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(WORKSPACE_LABEL.to_owned(), name.to_owned())])
}

/// Label selector (`devenv.io/workspace=NAME`) for the pods and claims of a workspace.
pub fn selector_string(name: &str) -> String {
    format!("{WORKSPACE_LABEL}={name}")
}

/// Label selector matching the objects of every workspace.
pub fn all_workspaces_selector() -> String {
    WORKSPACE_LABEL.to_owned()
}

/// The tier a spec resolves to: its own, else the policy's default.
pub fn resolve_tier<'a>(policy: &'a Policy, tier: Option<&'a str>) -> &'a str {
    tier.unwrap_or(policy.default_tier.as_str())
}

/// Container resources for `tier`, with `cpu`/`memory` overriding both the
/// request and the limit of that resource (a workspace asked to have 2 CPUs
/// should get 2, not burst from less).
pub fn resources(
    policy: &Policy,
    tier: &str,
    cpu: Option<&str>,
    memory: Option<&str>,
) -> Result<ResourceRequirements, WorkspaceError> {
    let t = policy
        .tiers
        .get(tier)
        .ok_or_else(|| WorkspaceError::UnknownTier {
            tier: tier.to_owned(),
            known: policy.tiers.keys().cloned().collect(),
        })?;
    if let Some(c) = cpu {
        check_quantity("cpu", c)?;
    }
    if let Some(m) = memory {
        check_quantity("memory", m)?;
    }
    let pick = |base: &str, over: Option<&str>| Quantity(over.unwrap_or(base).to_owned());
    let requests = BTreeMap::from([
        ("cpu".to_owned(), pick(&t.requests.cpu, cpu)),
        ("memory".to_owned(), pick(&t.requests.memory, memory)),
    ]);
    let limits = BTreeMap::from([
        ("cpu".to_owned(), pick(&t.limits.cpu, cpu)),
        ("memory".to_owned(), pick(&t.limits.memory, memory)),
    ]);
    Ok(ResourceRequirements {
        requests: Some(requests),
        limits: Some(limits),
        ..Default::default()
    })
}

/// Directory name a repository clones into: the last path segment of the URL
/// without `.git` (`https://host/org/api.git` → `api`, `git@host:org/api` → `api`).
pub fn repo_dir_name(url: &str) -> Option<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let last = trimmed.rsplit(['/', ':']).next()?;
    let name = last.strip_suffix(".git").unwrap_or(last);
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then(|| name.to_owned())
}

fn meta(spec: &WorkspaceSpec, annotations: Option<BTreeMap<String, String>>) -> ObjectMeta {
    ObjectMeta {
        name: Some(spec.name.clone()),
        namespace: Some(spec.namespace.clone()),
        labels: Some(labels(&spec.name)),
        annotations,
        ..Default::default()
    }
}

/// Restricted-profile container security context: nothing a dev workflow needs
/// requires privilege escalation or Linux capabilities.
pub(crate) fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Default::default()
        }),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}

pub(crate) fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..Default::default()
    }
}

fn check_spec(spec: &WorkspaceSpec) -> Result<(), WorkspaceError> {
    validate_name(&spec.name)?;
    check_dns_label(&spec.namespace, 63).map_err(|reason| WorkspaceError::InvalidReference {
        kind: "namespace".into(),
        name: spec.namespace.clone(),
        reason,
    })?;
    if !is_image_reference(&spec.image) {
        return Err(WorkspaceError::InvalidImage(spec.image.clone()));
    }
    if spec.replicas < 0 {
        return Err(WorkspaceError::InvalidReplicas(spec.replicas));
    }
    for secret in &spec.secrets {
        check_dns_subdomain(secret).map_err(|reason| WorkspaceError::InvalidReference {
            kind: "secret".into(),
            name: secret.clone(),
            reason,
        })?;
    }
    if let Some(sc) = &spec.storage_class {
        check_dns_subdomain(sc).map_err(|reason| WorkspaceError::InvalidReference {
            kind: "storage class".into(),
            name: sc.clone(),
            reason,
        })?;
    }
    match (&spec.repo, &spec.branch) {
        (None, Some(_)) => return Err(WorkspaceError::BranchWithoutRepo),
        (Some(repo), _) if repo_dir_name(repo).is_none() || repo.starts_with('-') => {
            return Err(WorkspaceError::InvalidRepo(repo.clone()))
        }
        _ => {}
    }
    if let Some(idle) = &spec.idle_timeout {
        parse_optional_duration(idle).map_err(WorkspaceError::InvalidIdleTimeout)?;
    }
    if let Some(b) = &spec.branch {
        if b.is_empty() || b.starts_with('-') || b.chars().any(char::is_whitespace) {
            return Err(WorkspaceError::InvalidBranch(b.clone()));
        }
    }
    Ok(())
}

/// The policy's volumes with the spec's size and storage-class overrides applied.
pub fn effective_volumes(
    spec: &WorkspaceSpec,
    policy: &Policy,
) -> Result<Vec<VolumePolicy>, WorkspaceError> {
    let known: Vec<String> = policy.volumes.iter().map(|v| v.name.clone()).collect();
    for (volume, size) in &spec.volume_sizes {
        if !known.contains(volume) {
            return Err(WorkspaceError::UnknownVolume {
                volume: volume.clone(),
                known,
            });
        }
        check_quantity(&format!("{volume} size"), size)?;
    }
    Ok(policy
        .volumes
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if let Some(size) = spec.volume_sizes.get(&v.name) {
                v.size = size.clone();
            }
            if let Some(sc) = &spec.storage_class {
                v.storage_class = Some(sc.clone());
            }
            v
        })
        .collect())
}

/// Where the source tree lives: the `workspace` volume's mount path.
pub fn workspace_path(policy: &Policy) -> String {
    policy
        .volumes
        .iter()
        .find(|v| v.name == WORKSPACE_VOLUME)
        .map(|v| v.mount_path.clone())
        .unwrap_or_else(|| DEFAULT_WORKSPACE_PATH.to_owned())
}

/// Builds the objects of a workspace. Pure: the same inputs give the same objects.
pub fn build(spec: &WorkspaceSpec, policy: &Policy) -> Result<WorkspaceObjects, WorkspaceError> {
    check_spec(spec)?;
    let tier = resolve_tier(policy, spec.tier.as_deref()).to_owned();
    let resources = resources(policy, &tier, spec.cpu.as_deref(), spec.memory.as_deref())?;
    let volumes = effective_volumes(spec, policy)?;
    let claims: Vec<_> = volumes
        .iter()
        .map(|v| claim_template(v, &spec.name))
        .collect();
    // Mount each claim under the name the claim template actually got, so the
    // mounts can never drift from the templates' names.
    let mounts: Vec<VolumeMount> = volumes
        .iter()
        .zip(&claims)
        .map(|(v, claim)| VolumeMount {
            name: claim
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| v.name.clone()),
            mount_path: v.mount_path.clone(),
            ..Default::default()
        })
        .collect();
    let workdir = workspace_path(policy);

    let mut annotations = BTreeMap::from([(TIER_ANNOTATION.to_owned(), tier.clone())]);
    if let Some(idle) = &spec.idle_timeout {
        annotations.insert(IDLE_TIMEOUT.to_owned(), idle.clone());
    }
    let pod_annotations = BTreeMap::from([(TIER_ANNOTATION.to_owned(), tier.clone())]);

    // The policy's Secrets first (what the webhook would add), then the
    // workspace's own; each once.
    let mut secret_names: Vec<&String> = Vec::new();
    for s in policy.secrets.inject.iter().chain(&spec.secrets) {
        if !secret_names.contains(&s) {
            secret_names.push(s);
        }
    }
    let env_from: Vec<EnvFromSource> = secret_names
        .into_iter()
        .map(|s| EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: s.clone(),
                // A missing Secret must not keep the workspace from starting.
                optional: Some(true),
            }),
            ..Default::default()
        })
        .collect();

    let container_env = workspace_env(policy, &workdir);
    let container = Container {
        name: WORKSPACE_CONTAINER.to_owned(),
        image: Some(spec.image.clone()),
        env: Some(container_env),
        command: spec.keep_alive.then(|| {
            vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                KEEP_ALIVE_SCRIPT.to_owned(),
            ]
        }),
        working_dir: Some(workdir.clone()),
        ports: Some(vec![
            ContainerPort {
                name: Some("ssh".to_owned()),
                container_port: SSH_CONTAINER_PORT,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("http".to_owned()),
                container_port: HTTP_PORT,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            },
        ]),
        env_from: (!env_from.is_empty()).then_some(env_from),
        resources: Some(resources.clone()),
        security_context: Some(container_security_context()),
        volume_mounts: (!mounts.is_empty()).then(|| mounts.clone()),
        ..Default::default()
    };

    let init_containers = spec.repo.as_ref().map(|repo| {
        let workspace_mounts: Vec<VolumeMount> = mounts
            .iter()
            .filter(|m| m.mount_path == workdir)
            .cloned()
            .collect();
        let mut env = vec![
            env_var("DEVENV_REPO", repo),
            env_var("DEVENV_DEST", &workdir),
            env_var(
                "DEVENV_REPO_DIR",
                &repo_dir_name(repo).unwrap_or_else(|| "repo".to_owned()),
            ),
            // Non-root users may have no home; git wants one for its config.
            env_var("HOME", "/tmp"),
            // Fail instead of waiting forever for credentials nobody can type.
            env_var("GIT_TERMINAL_PROMPT", "0"),
        ];
        if let Some(branch) = &spec.branch {
            env.push(env_var("DEVENV_BRANCH", branch));
        }
        vec![Container {
            name: CLONE_CONTAINER.to_owned(),
            // The workspace image has git (it is a dev image), and reusing it
            // avoids pulling a second image.
            image: Some(spec.image.clone()),
            command: Some(vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                CLONE_SCRIPT.to_owned(),
            ]),
            env: Some(env),
            resources: Some(resources.clone()),
            security_context: Some(container_security_context()),
            volume_mounts: (!workspace_mounts.is_empty()).then_some(workspace_mounts),
            ..Default::default()
        }]
    });

    let pod_spec = PodSpec {
        service_account_name: Some(spec.name.clone()),
        // Workspaces run arbitrary code: no API credentials in the pod.
        automount_service_account_token: Some(false),
        // Service links add an env var per Service of the namespace to every
        // shell; useless noise in a dev environment.
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(policy.user.uid),
            run_as_group: Some(policy.user.gid),
            fs_group: Some(policy.user.fs_group),
            // Chown-ing a large workspace volume at every start is slow; only
            // do it when the volume's root has the wrong group.
            fs_group_change_policy: Some("OnRootMismatch".to_owned()),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..Default::default()
        }),
        init_containers,
        containers: vec![container],
        ..Default::default()
    };

    let stateful_set = StatefulSet {
        metadata: meta(spec, Some(annotations)),
        spec: Some(StatefulSetSpec {
            service_name: Some(spec.name.clone()),
            replicas: Some(spec.replicas),
            // Replicas are independent workspaces, not an ordered cluster: start
            // and stop them all at once.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&spec.name)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&spec.name)),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            volume_claim_templates: (!claims.is_empty()).then_some(claims),
            // Work is never deleted by scaling down or deleting the workspace.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            ..Default::default()
        }),
        status: None,
    };

    let service = Service {
        metadata: meta(spec, None),
        spec: Some(ServiceSpec {
            // Headless: each pod gets a stable DNS name NAME-ORDINAL.NAME.
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector_labels(&spec.name)),
            ports: Some(vec![
                ServicePort {
                    name: Some("ssh".to_owned()),
                    port: SSH_SERVICE_PORT,
                    target_port: Some(IntOrString::Int(SSH_CONTAINER_PORT)),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("http".to_owned()),
                    port: HTTP_PORT,
                    target_port: Some(IntOrString::Int(HTTP_PORT)),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        status: None,
    };

    let network_policy = NetworkPolicy {
        metadata: meta(spec, None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&spec.name)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            // Reachable from pods of its own namespace (an empty podSelector
            // without namespaceSelector means "this namespace").
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector::default()),
                    ..Default::default()
                }]),
                ports: None,
            }]),
            egress: Some(vec![
                // DNS, wherever the cluster runs it.
                NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector::default()),
                        ..Default::default()
                    }]),
                    ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
                },
                // The internet (package registries, git remotes), but not the
                // cloud metadata endpoint.
                NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: "0.0.0.0/0".to_owned(),
                            except: Some(vec![METADATA_CIDR.to_owned()]),
                        }),
                        ..Default::default()
                    }]),
                    ports: None,
                },
            ]),
        }),
    };

    let service_account = ServiceAccount {
        metadata: meta(spec, None),
        automount_service_account_token: Some(false),
        ..Default::default()
    };

    Ok(WorkspaceObjects {
        service_account,
        service,
        network_policy,
        stateful_set,
    })
}

/// Environment of the `workspace` container that makes the persistent volumes work:
/// - `HISTFILE` in the `history` volume, so bash and zsh history survives the pod;
/// - git's `safe.directory` for the workspace path (through `GIT_CONFIG_*`, no file to
///   write): the volume's root belongs to root on many provisioners (hostPath, local,
///   NFS) and git refuses, as uid 1000, to use a repository `--repo` cloned into it
///   ("detected dubious ownership").
pub fn workspace_env(policy: &Policy, workdir: &str) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if let Some(history) = policy.volumes.iter().find(|v| v.name == HISTORY_VOLUME) {
        env.push(env_var(
            "HISTFILE",
            &format!(
                "{}/.shell_history",
                history.mount_path.trim_end_matches('/')
            ),
        ));
    }
    env.push(env_var("GIT_CONFIG_COUNT", "1"));
    env.push(env_var("GIT_CONFIG_KEY_0", "safe.directory"));
    env.push(env_var("GIT_CONFIG_VALUE_0", workdir));
    env
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..Default::default()
    }
}

fn dns_port(protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(53)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::validate::validate_statefulset;
    use crate::admission::violation::NoExtraSecrets;

    fn policy() -> Policy {
        Policy::default()
    }

    fn spec() -> WorkspaceSpec {
        WorkspaceSpec::new("demo", "team", "example.com/dev:1")
    }

    fn built(s: &WorkspaceSpec) -> WorkspaceObjects {
        build(s, &policy()).unwrap()
    }

    fn pod_spec(o: &WorkspaceObjects) -> &PodSpec {
        o.stateful_set
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
    }

    fn main_container(o: &WorkspaceObjects) -> &Container {
        &pod_spec(o).containers[0]
    }

    fn q(s: &str) -> Quantity {
        Quantity(s.to_owned())
    }

    #[test]
    fn names_are_dns_labels_of_at_most_52_characters() {
        assert!(validate_name("demo").is_ok());
        assert!(validate_name("a-1").is_ok());
        assert!(validate_name(&"a".repeat(52)).is_ok());
        for bad in ["", "Demo", "-demo", "demo-", "de_mo", "de.mo", "dé"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(53);
        let e = validate_name(&long).unwrap_err().to_string();
        assert!(e.contains("at most 52"), "{e}");
    }

    #[test]
    fn every_object_has_the_workspace_labels_name_and_namespace() {
        let o = built(&spec());
        let metas = [
            &o.service_account.metadata,
            &o.service.metadata,
            &o.network_policy.metadata,
            &o.stateful_set.metadata,
        ];
        for m in metas {
            assert_eq!(m.name.as_deref(), Some("demo"));
            assert_eq!(m.namespace.as_deref(), Some("team"));
            let l = m.labels.as_ref().unwrap();
            assert_eq!(l[WORKSPACE_LABEL], "demo");
            assert_eq!(l["app.kubernetes.io/name"], "devenv-workspace");
            assert_eq!(l["app.kubernetes.io/instance"], "demo");
            assert_eq!(l["app.kubernetes.io/managed-by"], "kubectl-devenv");
        }
    }

    #[test]
    fn statefulset_spec() {
        let mut s = spec();
        s.replicas = 3;
        let o = built(&s);
        let sts = o.stateful_set.spec.as_ref().unwrap();
        assert_eq!(sts.service_name.as_deref(), Some("demo"));
        assert_eq!(sts.replicas, Some(3));
        assert_eq!(sts.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(
            sts.selector.match_labels.as_ref().unwrap(),
            &selector_labels("demo")
        );
        let tmeta = sts.template.metadata.as_ref().unwrap();
        assert_eq!(tmeta.labels.as_ref().unwrap(), &labels("demo"));
        assert_eq!(
            tmeta.annotations.as_ref().unwrap()[TIER_ANNOTATION],
            "small"
        );
        assert_eq!(
            o.stateful_set.metadata.annotations.as_ref().unwrap()[TIER_ANNOTATION],
            "small"
        );
        let retention = sts
            .persistent_volume_claim_retention_policy
            .as_ref()
            .unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    }

    #[test]
    fn pod_identity_and_security() {
        let o = built(&spec());
        let p = pod_spec(&o);
        assert_eq!(p.service_account_name.as_deref(), Some("demo"));
        assert_eq!(p.automount_service_account_token, Some(false));
        assert_eq!(p.enable_service_links, Some(false));
        let sc = p.security_context.as_ref().unwrap();
        let user = &policy().user;
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.run_as_user, Some(user.uid));
        assert_eq!(sc.run_as_group, Some(user.gid));
        assert_eq!(sc.fs_group, Some(user.fs_group));
        assert_eq!(sc.fs_group_change_policy.as_deref(), Some("OnRootMismatch"));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let c = main_container(&o);
        let csc = c.security_context.as_ref().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(
            csc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &vec!["ALL".to_owned()]
        );
        assert_eq!(csc.run_as_non_root, Some(true));
        assert_eq!(
            csc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        assert!(p.init_containers.is_none());
    }

    #[test]
    fn container_image_command_ports_and_workdir() {
        let o = built(&spec());
        let c = main_container(&o);
        assert_eq!(c.name, "workspace");
        assert_eq!(c.image.as_deref(), Some("example.com/dev:1"));
        // The image's own entrypoint runs by default.
        assert!(c.command.is_none());
        assert!(c.args.is_none());
        assert_eq!(c.working_dir.as_deref(), Some("/workspace"));
        let ports = c.ports.as_ref().unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].name.as_deref(), Some("ssh"));
        assert_eq!(ports[0].container_port, 2222);
        assert_eq!(ports[1].name.as_deref(), Some("http"));
        assert_eq!(ports[1].container_port, 8080);

        let mut s = spec();
        s.keep_alive = true;
        let o = built(&s);
        let cmd = main_container(&o).command.clone().unwrap();
        assert_eq!(cmd[..2], ["/bin/sh".to_owned(), "-c".to_owned()]);
        assert_eq!(cmd[2], KEEP_ALIVE_SCRIPT);
    }

    #[test]
    fn resources_come_from_the_tier_with_overrides() {
        let o = built(&spec());
        let r = main_container(&o).resources.clone().unwrap();
        let small = &policy().tiers["small"];
        assert_eq!(r.requests.as_ref().unwrap()["cpu"], q(&small.requests.cpu));
        assert_eq!(
            r.requests.as_ref().unwrap()["memory"],
            q(&small.requests.memory)
        );
        assert_eq!(r.limits.as_ref().unwrap()["cpu"], q(&small.limits.cpu));
        assert_eq!(
            r.limits.as_ref().unwrap()["memory"],
            q(&small.limits.memory)
        );

        let mut s = spec();
        s.tier = Some("large".into());
        s.cpu = Some("3".into());
        let o = built(&s);
        let r = main_container(&o).resources.clone().unwrap();
        let large = &policy().tiers["large"];
        assert_eq!(r.requests.as_ref().unwrap()["cpu"], q("3"));
        assert_eq!(r.limits.as_ref().unwrap()["cpu"], q("3"));
        assert_eq!(
            r.limits.as_ref().unwrap()["memory"],
            q(&large.limits.memory)
        );
        assert_eq!(
            o.stateful_set.metadata.annotations.as_ref().unwrap()[TIER_ANNOTATION],
            "large"
        );

        s.memory = Some("lots".into());
        assert!(matches!(
            build(&s, &policy()),
            Err(WorkspaceError::InvalidQuantity { .. })
        ));
        let mut s = spec();
        s.tier = Some("huge".into());
        let e = build(&s, &policy()).unwrap_err().to_string();
        assert!(e.contains("huge") && e.contains("micro"), "{e}");
    }

    #[test]
    fn claim_templates_come_from_the_policy_through_objects_claim_template() {
        let mut s = spec();
        s.volume_sizes.insert("workspace".into(), "50Gi".into());
        s.storage_class = Some("fast".into());
        let o = built(&s);
        let templates = o
            .stateful_set
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .clone()
            .unwrap();
        let p = policy();
        assert_eq!(templates.len(), p.volumes.len());
        for (t, v) in templates.iter().zip(&p.volumes) {
            let mut expected_volume = v.clone();
            if v.name == "workspace" {
                expected_volume.size = "50Gi".into();
            }
            expected_volume.storage_class = Some("fast".into());
            assert_eq!(t, &claim_template(&expected_volume, "demo"));
        }
        let mounts = main_container(&o).volume_mounts.clone().unwrap();
        for (m, v) in mounts.iter().zip(&p.volumes) {
            assert_eq!(m.name, v.name);
            assert_eq!(m.mount_path, v.mount_path);
        }
        let mut s = spec();
        s.volume_sizes.insert("cache".into(), "1Gi".into());
        assert!(matches!(
            build(&s, &policy()),
            Err(WorkspaceError::UnknownVolume { .. })
        ));
    }

    #[test]
    fn secrets_become_optional_env_from_after_the_policy_ones() {
        let mut s = spec();
        s.secrets = vec!["team-tokens".into(), "devenv-secrets".into()];
        let o = built(&s);
        let env_from = main_container(&o).env_from.clone().unwrap();
        let names: Vec<String> = env_from
            .iter()
            .map(|e| e.secret_ref.as_ref().unwrap().name.clone())
            .collect();
        assert_eq!(names, vec!["devenv-secrets", "team-tokens"]);
        assert!(env_from
            .iter()
            .all(|e| e.secret_ref.as_ref().unwrap().optional == Some(true)));
        s.secrets = vec!["Bad_Name".into()];
        assert!(build(&s, &policy()).is_err());
    }

    #[test]
    fn idle_timeout_annotation() {
        let mut s = spec();
        s.idle_timeout = Some("2h".into());
        let o = built(&s);
        assert_eq!(
            o.stateful_set.metadata.annotations.as_ref().unwrap()[IDLE_TIMEOUT],
            "2h"
        );
        s.idle_timeout = Some("soon".into());
        assert!(matches!(
            build(&s, &policy()),
            Err(WorkspaceError::InvalidIdleTimeout(_))
        ));
    }

    #[test]
    fn clone_init_container_only_with_repo() {
        let mut s = spec();
        s.repo = Some("https://github.com/org/api.git".into());
        s.branch = Some("main".into());
        let o = built(&s);
        let inits = pod_spec(&o).init_containers.clone().unwrap();
        assert_eq!(inits.len(), 1);
        let c = &inits[0];
        assert_eq!(c.name, "clone");
        assert_eq!(c.image.as_deref(), Some("example.com/dev:1"));
        assert_eq!(c.command.as_ref().unwrap()[2], CLONE_SCRIPT);
        let env: BTreeMap<String, String> = c
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect();
        assert_eq!(env["DEVENV_REPO"], "https://github.com/org/api.git");
        assert_eq!(env["DEVENV_BRANCH"], "main");
        assert_eq!(env["DEVENV_DEST"], "/workspace");
        assert_eq!(env["DEVENV_REPO_DIR"], "api");
        assert_eq!(env["GIT_TERMINAL_PROMPT"], "0");
        let mounts = c.volume_mounts.clone().unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_path, "/workspace");
        assert_eq!(c.security_context, main_container(&o).security_context);
        assert_eq!(c.resources, main_container(&o).resources);

        // No branch: no DEVENV_BRANCH, the remote's default branch.
        s.branch = None;
        let o = built(&s);
        let env = pod_spec(&o).init_containers.clone().unwrap()[0]
            .env
            .clone()
            .unwrap();
        assert!(env.iter().all(|e| e.name != "DEVENV_BRANCH"));

        let mut s = spec();
        s.branch = Some("main".into());
        assert_eq!(build(&s, &policy()), Err(WorkspaceError::BranchWithoutRepo));
        let mut s = spec();
        s.repo = Some("-uexploit".into());
        assert!(build(&s, &policy()).is_err());
        s.repo = Some("https://x/y.git".into());
        s.branch = Some("--upload-pack=x".into());
        assert!(build(&s, &policy()).is_err());
    }

    #[test]
    fn clone_script_never_clones_over_existing_work() {
        // The script's decisions, run for real by /bin/sh with a fake git.
        let dir = std::env::temp_dir().join(format!("devenv-clone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("bin");
        let dest = dir.join("ws");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&dest).unwrap();
        let fake_git = bin.join("git");
        // Records its arguments, and creates the target like git would.
        std::fs::write(
            &fake_git,
            "#!/bin/sh\necho \"$@\" >> \"$LOG\"\nfor last; do :; done\nmkdir -p \"$last/.git\"\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake_git, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let log = dir.join("log");
        let run = |branch: Option<&str>| {
            let mut cmd = std::process::Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(CLONE_SCRIPT)
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .env("LOG", &log)
                .env("DEVENV_REPO", "https://example.com/org/api.git")
                .env("DEVENV_DEST", &dest)
                .env("DEVENV_REPO_DIR", "api");
            if let Some(b) = branch {
                cmd.env("DEVENV_BRANCH", b);
            }
            assert!(cmd.status().unwrap().success());
            std::fs::read_to_string(&log).unwrap_or_default()
        };
        // Empty workspace: clone into it.
        let out = run(Some("dev"));
        assert_eq!(
            out.trim(),
            format!(
                "clone --branch dev -- https://example.com/org/api.git {}",
                dest.display()
            )
        );
        // Now a repository: nothing more.
        let out = run(None);
        assert_eq!(out.lines().count(), 1);
        // Existing work without a repository: clone beside it, once.
        std::fs::remove_dir_all(dest.join(".git")).unwrap();
        std::fs::write(dest.join("notes.txt"), "mine").unwrap();
        let _ = std::fs::remove_file(&log);
        let out = run(None);
        assert_eq!(
            out.trim(),
            format!(
                "clone -- https://example.com/org/api.git {}/api",
                dest.display()
            )
        );
        let out = run(None);
        assert_eq!(out.lines().count(), 1);
        assert_eq!(
            std::fs::read_to_string(dest.join("notes.txt")).unwrap(),
            "mine"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn repo_dir_names() {
        assert_eq!(
            repo_dir_name("https://github.com/org/api.git").as_deref(),
            Some("api")
        );
        assert_eq!(
            repo_dir_name("git@github.com:org/web").as_deref(),
            Some("web")
        );
        assert_eq!(repo_dir_name("https://host/x/y/").as_deref(), Some("y"));
        assert_eq!(repo_dir_name("https://host/.."), None);
        assert_eq!(repo_dir_name(""), None);
    }

    #[test]
    fn headless_service() {
        let o = built(&spec());
        let s = o.service.spec.as_ref().unwrap();
        assert_eq!(s.cluster_ip.as_deref(), Some("None"));
        assert_eq!(s.selector.as_ref().unwrap(), &selector_labels("demo"));
        let ports = s.ports.as_ref().unwrap();
        assert_eq!(ports[0].name.as_deref(), Some("ssh"));
        assert_eq!(ports[0].port, 22);
        assert_eq!(ports[0].target_port, Some(IntOrString::Int(2222)));
        assert_eq!(ports[1].name.as_deref(), Some("http"));
        assert_eq!(ports[1].port, 8080);
        assert_eq!(ports[1].target_port, Some(IntOrString::Int(8080)));
    }

    #[test]
    fn network_policy() {
        let o = built(&spec());
        let np = o.network_policy.spec.as_ref().unwrap();
        assert_eq!(
            np.pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap(),
            &selector_labels("demo")
        );
        assert_eq!(
            np.policy_types.as_ref().unwrap(),
            &vec!["Ingress".to_owned(), "Egress".to_owned()]
        );
        let ingress = np.ingress.as_ref().unwrap();
        assert_eq!(ingress.len(), 1);
        let from = ingress[0].from.as_ref().unwrap();
        assert_eq!(from[0].pod_selector, Some(LabelSelector::default()));
        assert!(from[0].namespace_selector.is_none());
        let egress = np.egress.as_ref().unwrap();
        assert_eq!(egress.len(), 2);
        let dns = &egress[0];
        assert_eq!(
            dns.to.as_ref().unwrap()[0].namespace_selector,
            Some(LabelSelector::default())
        );
        let ports = dns.ports.as_ref().unwrap();
        assert_eq!(ports[0].protocol.as_deref(), Some("UDP"));
        assert_eq!(ports[0].port, Some(IntOrString::Int(53)));
        assert_eq!(ports[1].protocol.as_deref(), Some("TCP"));
        assert_eq!(ports[1].port, Some(IntOrString::Int(53)));
        let internet = egress[1].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap();
        assert_eq!(internet.cidr, "0.0.0.0/0");
        assert_eq!(
            internet.except.as_ref().unwrap(),
            &vec![METADATA_CIDR.to_owned()]
        );
        assert!(egress[1].ports.is_none());
    }

    #[test]
    fn service_account_has_no_token() {
        let o = built(&spec());
        assert_eq!(
            o.service_account.automount_service_account_token,
            Some(false)
        );
    }

    #[test]
    fn the_webhook_has_nothing_to_add_or_refuse() {
        // What create sends is already what the policy wants: the mutating
        // webhook's patch is empty and the validating webhook admits it.
        let p = policy();
        for tier in ["micro", "small", "large"] {
            let mut s = spec();
            s.tier = Some(tier.into());
            s.repo = Some("https://github.com/org/api.git".into());
            let o = build(&s, &p).unwrap();
            let patch = crate::admission::mutate::mutate_statefulset(&p, &o.stateful_set, None);
            assert!(patch.0.is_empty(), "{tier}: {patch:?}");
            let v = validate_statefulset(&p, &o.stateful_set, &NoExtraSecrets);
            assert!(v.is_empty(), "{tier}: {v:?}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["1", "500m", "2Gi", "1.5", "1e3", "10G"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "two", "1GB", "-1", "1.2.3"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn build_is_deterministic() {
        assert_eq!(built(&spec()), built(&spec()));
    }
}

#[cfg(test)]
mod workspace_env_tests {
    use super::*;

    #[test]
    fn history_and_git_safe_directory_follow_the_policy_volumes() {
        let env = workspace_env(&Policy::default(), "/workspace");
        let get = |k: &str| {
            env.iter()
                .find(|e| e.name == k)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(
            get("HISTFILE").as_deref(),
            Some("/commandhistory/.shell_history")
        );
        assert_eq!(get("GIT_CONFIG_COUNT").as_deref(), Some("1"));
        assert_eq!(get("GIT_CONFIG_KEY_0").as_deref(), Some("safe.directory"));
        assert_eq!(get("GIT_CONFIG_VALUE_0").as_deref(), Some("/workspace"));
    }
}
