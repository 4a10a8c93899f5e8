//! The workspace policy: who workspaces run as, how large they may be (tiers), which
//! persistent volumes they get and which Secrets are injected.
//!
//! One typed model, loaded from YAML. A policy file may be partial: every top-level section
//! it leaves out (and every field of `user` it leaves out) comes from [`Policy::default`].
//! Sections that are present replace the default section as a whole (a `tiers:` map defines
//! all the tiers, it does not add to the built-in ones), so what a file says is what applies.
//!
//! Loading validates: a [`PolicyError`] names the field path and what to do about it, e.g.
//! `tiers.large.limits.cpu: "eight" is not a Kubernetes quantity (e.g. 8 or 8000m)`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::model::lifecycle_policy::LifecyclePolicy;
use crate::model::names::{is_dns1123_label, is_dns1123_subdomain, is_subject_name};
use crate::model::quantity::Quantity;

/// The whole policy. Build it with [`Policy::from_yaml`], [`Policy::load`] or
/// [`Policy::default`]; a policy deserialised some other way should be checked with
/// [`Policy::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "PolicyFile")]
pub struct Policy {
    pub user: UserPolicy,
    /// Tier used when a workspace names none (and, by mutation, when it names an unknown one).
    pub default_tier: String,
    /// Tiers by name, selected with the `devenv.io/tier` annotation.
    pub tiers: BTreeMap<String, Tier>,
    /// Persistent volumes every workspace gets, in order.
    pub volumes: Vec<VolumePolicy>,
    pub secrets: SecretsPolicy,
    /// Which ServiceAccounts workspace pods may run as, and whether with an API token.
    pub service_accounts: ServiceAccountPolicy,
    /// CSI drivers workspace pods may use as inline (`csi:`) volumes. Empty by default: a
    /// driver can mount anything it is told to (secrets-store drivers mount cloud secrets).
    pub inline_csi_drivers: Vec<String>,
    /// Who may act on any workspace, and which controllers act for workspaces.
    pub access: AccessPolicy,
    /// Idle hibernation and expiry, enforced by `devenv-webhook lifecycle`.
    #[serde(default)]
    pub lifecycle: LifecyclePolicy,
    /// Where `kubectl devenv backup` (and the backups `delete --purge` and an in-place
    /// `restore` take first) go when no `--to` is given.
    #[serde(default, skip_serializing_if = "BackupPolicy::is_unset")]
    pub backup: BackupPolicy,
}

/// `backup:` of the policy.
///
/// ```yaml
/// backup:
///   repository: registry.example.com/devenv/backups   # an OCI repository, no tag
///   every: 24h      # the lifecycle controller backs every workspace up this often; 0 = never
///   keep: 7         # scheduled backups kept per workspace (older ones are deleted)
///   credentialsSecret: devenv-backup-registry   # kubernetes.io/dockerconfigjson, install namespace
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BackupPolicy {
    /// The OCI repository backups are pushed to; `None`: every backup needs `--to`. Its
    /// grammar is the OCI client's (`kubectl devenv backup` checks it and names this field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// How often the lifecycle controller backs each workspace up (`None`, `0`, the
    /// default: never). The install grants the controller exec into pods only when set.
    #[serde(
        with = "crate::model::duration::optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<std::time::Duration>,
    /// Scheduled backups kept per workspace (default [`DEFAULT_BACKUP_KEEP`]); older
    /// scheduled ones are deleted from the registry. Other backups (manual, pre-restore,
    /// pre-purge) are never pruned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// A `kubernetes.io/dockerconfigjson` Secret in the install namespace with the
    /// registry's credentials for the controller's scheduled backups (`None`: anonymous).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// Scheduled backups kept per workspace when `backup.keep` is not set.
pub const DEFAULT_BACKUP_KEEP: u32 = 7;

impl BackupPolicy {
    /// Nothing set: printed policies (the installed default) leave the section out.
    pub fn is_unset(&self) -> bool {
        self == &BackupPolicy::default()
    }

    /// How many scheduled backups of each workspace are kept.
    pub fn keep(&self) -> u32 {
        self.keep.unwrap_or(DEFAULT_BACKUP_KEEP)
    }

    /// Values that parse but make no sense, as (field within the section, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.every.is_some() && self.repository.is_none() {
            out.push((
                "every",
                "scheduled backups need somewhere to go: set backup.repository (REGISTRY/REPO) too, or remove backup.every".to_string(),
            ));
        }
        if self.keep == Some(0) {
            out.push((
                "keep",
                "must be at least 1: the newest good backup is never deleted".to_string(),
            ));
        }
        if let Some(name) = &self.credentials_secret {
            if !is_dns1123_subdomain(name) {
                out.push((
                    "credentialsSecret",
                    format!("{name:?} is not a Secret name (a DNS-1123 subdomain)"),
                ));
            }
        }
        out
    }
}

/// The identity workspace processes run as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UserPolicy {
    pub uid: i64,
    pub gid: i64,
    pub fs_group: i64,
    /// Where the `config` volume is mounted by default.
    pub config_dir: String,
}

/// Requests and limits of one tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tier {
    pub requests: TierResources,
    pub limits: TierResources,
}

/// cpu and memory as Kubernetes quantity strings (`500m`, `2`, `4Gi`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierResources {
    #[serde(deserialize_with = "quantity_string")]
    pub cpu: String,
    #[serde(deserialize_with = "quantity_string")]
    pub memory: String,
}

/// A persistent volume every workspace gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumePolicy {
    /// Volume name: the claim template name of a workspace StatefulSet, and the prefix of a
    /// bare pod's claim name (see [`crate::model::names`]). A DNS-1123 label.
    pub name: String,
    /// Storage requested by the claim, a Kubernetes quantity (`10Gi`).
    #[serde(deserialize_with = "quantity_string")]
    pub size: String,
    /// Where the volume is mounted in every workspace container.
    pub mount_path: String,
    /// StorageClass of the claim; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// Secrets injected into every workspace container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SecretsPolicy {
    /// Secret names added as `envFrom: [{secretRef: {name, optional: true}}]`. Optional, so a
    /// namespace without the Secret still runs workspaces.
    pub inject: Vec<String>,
    /// Secrets workspace pods may name in `imagePullSecrets` (registry credentials are
    /// credentials: a pod may only use the ones the platform team lists here).
    pub image_pull: Vec<String>,
}

/// The ServiceAccounts of workspace pods. A workspace pod runs as its workspace's own
/// ServiceAccount (named like the workspace, made by `kubectl devenv create`) or one listed
/// here, and carries no API token unless `token` is true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServiceAccountPolicy {
    /// ServiceAccounts any workspace pod may run as, besides its workspace's own. Default:
    /// `default`, the namespace's own identity, which holds no rights unless someone grants
    /// them and, without a token, no API identity at all: a bare workspace pod then needs no
    /// ServiceAccount made by hand (the API server refuses a pod whose ServiceAccount does
    /// not exist). Set `allow: []` to pin every workspace pod to its workspace's own.
    pub allow: Vec<String>,
    /// Whether workspace pods may mount an API token (automountServiceAccountToken, or a
    /// projected serviceAccountToken volume). Off: workspaces run untrusted code.
    pub token: bool,
}

impl Default for ServiceAccountPolicy {
    fn default() -> Self {
        ServiceAccountPolicy {
            allow: vec!["default".to_string()],
            token: false,
        }
    }
}

/// Who is trusted beyond a workspace's owner. Usernames and groups are the API server's
/// (`userInfo` of the request): a user's certificate CN/O, a token's user, or
/// `system:serviceaccount:NAMESPACE:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AccessPolicy {
    /// Members of these groups may act on any workspace (create its pods, debug, resize,
    /// delete its claims). Default: `system:masters`, the cluster administrators.
    pub admin_groups: Vec<String>,
    /// These users may act on any workspace.
    pub admin_users: Vec<String>,
    /// Who creates the pods and claims of workspace StatefulSets: the StatefulSet
    /// controller, under its own ServiceAccount when kube-controller-manager runs with
    /// `--use-service-account-credentials` (the usual), else as `system:kube-controller-manager`.
    pub statefulset_controllers: Vec<String>,
    /// The lifecycle controller's identities: it creates bare pods' claims, lets their pods
    /// schedule, stops idle workspaces and purges expired ones. The install adds its own
    /// ServiceAccount to this list when it runs the controller (`DEVENV_CONTROLLER_USERS`).
    pub controllers: Vec<String>,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            admin_groups: vec!["system:masters".to_string()],
            admin_users: Vec::new(),
            statefulset_controllers: vec![
                "system:serviceaccount:kube-system:statefulset-controller".to_string(),
                "system:kube-controller-manager".to_string(),
            ],
            controllers: Vec::new(),
        }
    }
}

/// The file format: every section optional, so partial files fill in from the defaults and
/// the `config` volume's default mount path can follow `user.configDir`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyFile {
    user: Option<UserPolicy>,
    default_tier: Option<String>,
    tiers: Option<BTreeMap<String, Tier>>,
    volumes: Option<Vec<VolumePolicy>>,
    secrets: Option<SecretsPolicy>,
    service_accounts: Option<ServiceAccountPolicy>,
    inline_csi_drivers: Option<Vec<String>>,
    access: Option<AccessPolicy>,
    lifecycle: Option<LifecyclePolicy>,
    backup: Option<BackupPolicy>,
}

impl From<PolicyFile> for Policy {
    fn from(file: PolicyFile) -> Policy {
        let user = file.user.unwrap_or_default();
        let volumes = file
            .volumes
            .unwrap_or_else(|| default_volumes(&user.config_dir));
        Policy {
            default_tier: file.default_tier.unwrap_or_else(|| "small".to_string()),
            tiers: file.tiers.unwrap_or_else(default_tiers),
            volumes,
            secrets: file.secrets.unwrap_or_default(),
            service_accounts: file.service_accounts.unwrap_or_default(),
            inline_csi_drivers: file.inline_csi_drivers.unwrap_or_default(),
            access: file.access.unwrap_or_default(),
            lifecycle: file.lifecycle.unwrap_or_default(),
            backup: file.backup.unwrap_or_default(),
            user,
        }
    }
}

impl Default for UserPolicy {
    fn default() -> Self {
        UserPolicy {
            uid: 1000,
            gid: 1000,
            fs_group: 1000,
            config_dir: "/home/dev/.config".to_string(),
        }
    }
}

impl Default for SecretsPolicy {
    fn default() -> Self {
        SecretsPolicy {
            inject: vec!["devenv-secrets".to_string()],
            image_pull: Vec::new(),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from(PolicyFile::default())
    }
}

fn tier(req_cpu: &str, req_mem: &str, lim_cpu: &str, lim_mem: &str) -> Tier {
    Tier {
        requests: TierResources {
            cpu: req_cpu.to_string(),
            memory: req_mem.to_string(),
        },
        limits: TierResources {
            cpu: lim_cpu.to_string(),
            memory: lim_mem.to_string(),
        },
    }
}

fn default_tiers() -> BTreeMap<String, Tier> {
    BTreeMap::from([
        ("micro".to_string(), tier("125m", "512Mi", "500m", "1Gi")),
        ("small".to_string(), tier("500m", "2Gi", "2", "4Gi")),
        ("large".to_string(), tier("2", "8Gi", "8", "16Gi")),
    ])
}

fn default_volumes(config_dir: &str) -> Vec<VolumePolicy> {
    let volume = |name: &str, size: &str, mount_path: &str| VolumePolicy {
        name: name.to_string(),
        size: size.to_string(),
        mount_path: mount_path.to_string(),
        storage_class: None,
    };
    vec![
        volume("workspace", "10Gi", "/workspace"),
        volume("history", "1Gi", "/commandhistory"),
        volume("config", "1Gi", config_dir),
    ]
}

/// Accepts a quantity written as a YAML string or a bare number (`cpu: 2`, `cpu: 0.5`), since
/// YAML authors write both; the value is kept as the string Kubernetes would see.
fn quantity_string<'de, D: serde::Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a Kubernetes quantity such as 500m, 2 or 4Gi")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    de.deserialize_any(Visitor)
}

/// One problem found in a policy: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// e.g. `tiers.large.limits.cpu`
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not the policy's shape. serde_yaml's message carries the field path
    /// (e.g. `tiers.small: unknown field `cpus`, expected `requests` or `limits``).
    #[error("{}policy is not valid: {source}", file_prefix(.path))]
    Parse {
        path: Option<PathBuf>,
        #[source]
        source: serde_yaml::Error,
    },
    /// Well-formed, but the values are unusable. Every problem is listed.
    #[error("{}{}", file_prefix(.path), join_problems(.problems))]
    Invalid {
        path: Option<PathBuf>,
        problems: Vec<PolicyProblem>,
    },
}

impl PolicyError {
    /// The problems found in an otherwise well-formed policy (empty for read and parse errors).
    pub fn problems(&self) -> &[PolicyProblem] {
        match self {
            PolicyError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }

    fn in_file(self, file: &Path) -> PolicyError {
        match self {
            PolicyError::Parse { source, .. } => PolicyError::Parse {
                path: Some(file.to_path_buf()),
                source,
            },
            PolicyError::Invalid { problems, .. } => PolicyError::Invalid {
                path: Some(file.to_path_buf()),
                problems,
            },
            other => other,
        }
    }
}

fn file_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

fn join_problems(problems: &[PolicyProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Policy {
    /// This policy with `users` added to `access.controllers` (each once): the devenv
    /// controllers' own identities, which depend on where they are installed.
    pub fn with_controllers(mut self, users: &[String]) -> Policy {
        for user in users {
            if !self.access.controllers.contains(user) {
                self.access.controllers.push(user.clone());
            }
        }
        self
    }

    /// Parses and validates a policy. Missing sections come from [`Policy::default`].
    pub fn from_yaml(yaml: &str) -> Result<Policy, PolicyError> {
        // An empty file (or one holding only comments) is the default policy, not an error.
        let file: PolicyFile = if yaml.trim().is_empty() || is_only_comments(yaml) {
            PolicyFile::default()
        } else {
            serde_yaml::from_str(yaml)
                .map_err(|source| PolicyError::Parse { path: None, source })?
        };
        let policy = Policy::from(file);
        policy.validate()?;
        Ok(policy)
    }

    /// Reads, parses and validates a policy file; errors name the file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let yaml = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::from_yaml(&yaml).map_err(|e| e.in_file(path))
    }

    /// Checks every rule and reports all problems at once.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut problems = Vec::new();
        let mut problem = |field: String, message: String| {
            problems.push(PolicyProblem { field, message });
        };

        // user
        for (field, value) in [
            ("user.uid", self.user.uid),
            ("user.gid", self.user.gid),
            ("user.fsGroup", self.user.fs_group),
        ] {
            if value == 0 {
                problem(
                    field.to_string(),
                    "0 is root; workspaces run as a non-root user, use an id such as 1000"
                        .to_string(),
                );
            } else if value < 0 {
                problem(
                    field.to_string(),
                    format!("{value} is not a valid id; use a positive id such as 1000"),
                );
            }
        }
        if !self.user.config_dir.starts_with('/') {
            problem(
                "user.configDir".to_string(),
                format!(
                    "{:?} is not an absolute path; use e.g. /home/dev/.config",
                    self.user.config_dir
                ),
            );
        }

        // tiers
        if self.tiers.is_empty() {
            problem(
                "tiers".to_string(),
                "no tiers are defined; define at least the default tier".to_string(),
            );
        }
        for (name, tier) in &self.tiers {
            if !is_dns1123_label(name) {
                problem(
                    format!("tiers.{name}"),
                    "tier names must be lowercase DNS labels (a-z, 0-9, '-'), e.g. large"
                        .to_string(),
                );
            }
            let mut parsed = BTreeMap::new();
            for (kind, resources) in [("requests", &tier.requests), ("limits", &tier.limits)] {
                for (resource, value, example) in [
                    ("cpu", &resources.cpu, "8 or 8000m"),
                    ("memory", &resources.memory, "16Gi or 512Mi"),
                ] {
                    let field = format!("tiers.{name}.{kind}.{resource}");
                    match Quantity::parse(value) {
                        Ok(q) if q.is_negative() || q.is_zero() => problem(
                            field,
                            format!("{value:?} must be greater than zero (e.g. {example})"),
                        ),
                        Ok(q) => {
                            parsed.insert((kind, resource), q);
                        }
                        Err(_) => problem(
                            field,
                            format!("{value:?} is not a Kubernetes quantity (e.g. {example})"),
                        ),
                    }
                }
            }
            for resource in ["cpu", "memory"] {
                if let (Some(request), Some(limit)) = (
                    parsed.get(&("requests", resource)),
                    parsed.get(&("limits", resource)),
                ) {
                    if request > limit {
                        let (req_s, lim_s) = match resource {
                            "cpu" => (&tier.requests.cpu, &tier.limits.cpu),
                            _ => (&tier.requests.memory, &tier.limits.memory),
                        };
                        problem(
                            format!("tiers.{name}.requests.{resource}"),
                            format!(
                                "{req_s} is above tiers.{name}.limits.{resource} ({lim_s}); \
                                 a request must not exceed its limit, lower the request or raise the limit"
                            ),
                        );
                    }
                }
            }
        }
        if !self.tiers.contains_key(&self.default_tier) {
            problem(
                "defaultTier".to_string(),
                format!(
                    "tier {:?} is not defined in tiers; set defaultTier to one of: {}",
                    self.default_tier,
                    self.tier_names().join(", ")
                ),
            );
        }

        // volumes
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        for (i, volume) in self.volumes.iter().enumerate() {
            let at = format!("volumes[{i}]");
            if !is_dns1123_label(&volume.name) {
                problem(
                    format!("{at}.name"),
                    format!(
                        "{:?} is not a DNS-1123 label; use lowercase letters, digits and '-', \
                         at most 63 characters, e.g. workspace",
                        volume.name
                    ),
                );
            } else if !names.insert(volume.name.as_str()) {
                problem(
                    format!("{at}.name"),
                    format!(
                        "{:?} is used by an earlier volume; volume names must be unique",
                        volume.name
                    ),
                );
            }
            match Quantity::parse(&volume.size) {
                Ok(q) if q.is_negative() || q.is_zero() => problem(
                    format!("{at}.size"),
                    format!("{:?} must be greater than zero (e.g. 10Gi)", volume.size),
                ),
                Ok(_) => {}
                Err(_) => problem(
                    format!("{at}.size"),
                    format!("{:?} is not a Kubernetes quantity (e.g. 10Gi)", volume.size),
                ),
            }
            if !volume.mount_path.starts_with('/') || volume.mount_path == "/" {
                problem(
                    format!("{at}.mountPath"),
                    format!(
                        "{:?} is not an absolute path below /; use e.g. /workspace",
                        volume.mount_path
                    ),
                );
            } else if volume.mount_path.contains(':') {
                // The API server rejects mount paths containing ':'.
                problem(
                    format!("{at}.mountPath"),
                    format!("{:?} must not contain ':'", volume.mount_path),
                );
            } else if !paths.insert(normalize_path(&volume.mount_path)) {
                problem(
                    format!("{at}.mountPath"),
                    format!(
                        "{:?} is used by an earlier volume; mount paths must be unique",
                        volume.mount_path
                    ),
                );
            }
            if let Some(class) = &volume.storage_class {
                if !is_dns1123_subdomain(class) {
                    problem(
                        format!("{at}.storageClass"),
                        format!(
                            "{class:?} is not a valid StorageClass name (a DNS-1123 subdomain); \
                             omit it to use the cluster's default StorageClass"
                        ),
                    );
                }
            }
        }

        // A claim is named `<volume>-<statefulset>-<ordinal>`: with volume names `a` and `a-b`,
        // `a-b-c-0` would be volume `a` of `b-c` and volume `a-b` of `c`. Refuse the pair.
        for (i, volume) in self.volumes.iter().enumerate() {
            if let Some(prefix) = self.volumes.iter().find(|other| {
                other.name != volume.name && volume.name.starts_with(&format!("{}-", other.name))
            }) {
                problem(
                    format!("volumes[{i}].name"),
                    format!(
                        "{:?} starts with the volume name {:?} and a '-': their claims' names could \
                         collide (<volume>-<workspace>-<ordinal>); rename one of them",
                        volume.name, prefix.name
                    ),
                );
            }
        }

        // Names listed in the policy: each a valid name of its kind, each once.
        let lists: [(&str, &[String], &str, &str); 4] = [
            (
                "secrets.inject",
                &self.secrets.inject,
                "Secret",
                "devenv-secrets",
            ),
            (
                "secrets.imagePull",
                &self.secrets.image_pull,
                "Secret",
                "registry-credentials",
            ),
            (
                "serviceAccounts.allow",
                &self.service_accounts.allow,
                "ServiceAccount",
                "ci",
            ),
            (
                "inlineCsiDrivers",
                &self.inline_csi_drivers,
                "CSI driver",
                "csi.example.com",
            ),
        ];
        for (at, names, kind, example) in lists {
            let mut seen = HashSet::new();
            for (i, name) in names.iter().enumerate() {
                let field = format!("{at}[{i}]");
                if !is_dns1123_subdomain(name) {
                    problem(
                        field,
                        format!(
                            "{name:?} is not a valid {kind} name (a DNS-1123 subdomain: lowercase \
                             letters, digits, '-' and '.'), e.g. {example}"
                        ),
                    );
                } else if !seen.insert(name.as_str()) {
                    problem(
                        field,
                        format!("{name:?} is listed twice; list each {kind} once"),
                    );
                }
            }
        }
        for (at, names) in [
            ("access.adminGroups", &self.access.admin_groups),
            ("access.adminUsers", &self.access.admin_users),
            (
                "access.statefulsetControllers",
                &self.access.statefulset_controllers,
            ),
            ("access.controllers", &self.access.controllers),
        ] {
            for (i, name) in names.iter().enumerate() {
                if !is_subject_name(name) {
                    problem(
                        format!("{at}[{i}]"),
                        format!("{name:?} is not a user or group name; write it as the API server reports it, e.g. system:masters"),
                    );
                }
            }
        }

        for (field, message) in self.lifecycle.problems() {
            problem(format!("lifecycle.{field}"), message);
        }
        for (field, message) in self.backup.problems() {
            problem(format!("backup.{field}"), message);
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Invalid {
                path: None,
                problems,
            })
        }
    }

    /// The tier for a `devenv.io/tier` annotation value: the named tier when it exists, else
    /// the default tier. Mutation uses this fallback; validation separately denies unknown
    /// names (see [`Policy::lookup_tier`]).
    pub fn tier(&self, name: Option<&str>) -> &Tier {
        self.tier_name(name).1
    }

    /// Like [`Policy::tier`], also returning the resolved tier name (for messages).
    pub fn tier_name(&self, name: Option<&str>) -> (&str, &Tier) {
        if let Some((name, tier)) = name.and_then(|n| self.tiers.get_key_value(n)) {
            return (name.as_str(), tier);
        }
        match self.tiers.get_key_value(&self.default_tier) {
            Some((name, tier)) => (name.as_str(), tier),
            // Only an unvalidated policy lacks its default tier; fall back to the built-in
            // default rather than panicking in the admission path.
            None => ("small", builtin_small()),
        }
    }

    /// The tier with exactly this name, if defined.
    pub fn lookup_tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.get(name)
    }

    /// Tier names, sorted.
    pub fn tier_names(&self) -> Vec<&str> {
        self.tiers.keys().map(String::as_str).collect()
    }

    /// The policy volume with this name.
    pub fn volume(&self, name: &str) -> Option<&VolumePolicy> {
        self.volumes.iter().find(|v| v.name == name)
    }
}

fn builtin_small() -> &'static Tier {
    static SMALL: OnceLock<Tier> = OnceLock::new();
    SMALL.get_or_init(|| tier("500m", "2Gi", "2", "4Gi"))
}

fn is_only_comments(yaml: &str) -> bool {
    yaml.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    })
}

/// Mount paths `/a/` and `/a` are the same place.
fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::quantity::{cpu_millicores, memory_bytes};
    use std::time::Duration;

    fn err(yaml: &str) -> String {
        match Policy::from_yaml(yaml) {
            Ok(_) => panic!("expected an error for {yaml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = Policy::default();
        assert!(p.validate().is_ok());
        assert_eq!(
            (p.user.uid, p.user.gid, p.user.fs_group),
            (1000, 1000, 1000)
        );
        assert_eq!(p.user.config_dir, "/home/dev/.config");
        assert_eq!(p.default_tier, "small");
        assert_eq!(p.tier_names(), vec!["large", "micro", "small"]);
        let small = p.tier(None);
        assert_eq!(small, &tier("500m", "2Gi", "2", "4Gi"));
        assert_eq!(p.tier(Some("micro")), &tier("125m", "512Mi", "500m", "1Gi"));
        assert_eq!(p.tier(Some("large")), &tier("2", "8Gi", "8", "16Gi"));
        let vols: Vec<_> = p
            .volumes
            .iter()
            .map(|v| (v.name.as_str(), v.size.as_str(), v.mount_path.as_str()))
            .collect();
        assert_eq!(
            vols,
            vec![
                ("workspace", "10Gi", "/workspace"),
                ("history", "1Gi", "/commandhistory"),
                ("config", "1Gi", "/home/dev/.config"),
            ]
        );
        assert!(p.volumes.iter().all(|v| v.storage_class.is_none()));
        assert_eq!(p.secrets.inject, vec!["devenv-secrets"]);
        // The defaults' own quantities parse as expected.
        assert_eq!(cpu_millicores(&small.requests.cpu), Ok(500));
        assert_eq!(memory_bytes(&small.limits.memory), Ok(4 << 30));
    }

    #[test]
    fn unknown_tier_falls_back_to_default() {
        let p = Policy::default();
        assert_eq!(p.tier(Some("huge")), p.tier(Some("small")));
        assert_eq!(p.tier_name(Some("huge")).0, "small");
        assert_eq!(p.tier_name(Some("large")).0, "large");
        assert!(p.lookup_tier("huge").is_none());
    }

    #[test]
    fn empty_and_partial_files_fill_from_defaults() {
        assert_eq!(Policy::from_yaml("").ok(), Some(Policy::default()));
        assert_eq!(
            Policy::from_yaml("# nothing\n").ok(),
            Some(Policy::default())
        );
        assert_eq!(Policy::from_yaml("{}").ok(), Some(Policy::default()));

        let p = Policy::from_yaml("user:\n  uid: 2000\n").unwrap_or_default();
        assert_eq!(p.user.uid, 2000);
        assert_eq!(p.user.gid, 1000);
        assert_eq!(p.tiers, Policy::default().tiers);

        // The config volume follows a changed configDir.
        let p = Policy::from_yaml("user:\n  configDir: /home/me/.config\n").unwrap_or_default();
        assert_eq!(
            p.volume("config").map(|v| v.mount_path.as_str()),
            Some("/home/me/.config")
        );

        let p = Policy::from_yaml("secrets:\n  inject: []\n").unwrap_or_default();
        assert!(p.secrets.inject.is_empty());
        assert_eq!(p.volumes.len(), 3);
    }

    #[test]
    fn numeric_quantities_are_accepted() {
        let yaml = "defaultTier: one\ntiers:\n  one:\n    requests: {cpu: 0.5, memory: 1Gi}\n    limits: {cpu: 2, memory: 2Gi}\n";
        let p = Policy::from_yaml(yaml).unwrap_or_default();
        assert_eq!(p.tier(None).requests.cpu, "0.5");
        assert_eq!(p.tier(None).limits.cpu, "2");
        assert_eq!(p.default_tier, "one");
    }

    #[test]
    fn bad_quantity_names_the_field_and_an_example() {
        let yaml = "tiers:\n  small:\n    requests: {cpu: 500m, memory: 2Gi}\n    limits: {cpu: 2, memory: 4Gi}\n  large:\n    requests: {cpu: 2, memory: 8Gi}\n    limits: {cpu: eight, memory: 16Gi}\n";
        let e = err(yaml);
        assert!(
            e.contains(
                r#"tiers.large.limits.cpu: "eight" is not a Kubernetes quantity (e.g. 8 or 8000m)"#
            ),
            "{e}"
        );
        let e = err("volumes:\n- {name: workspace, size: ten, mountPath: /workspace}\n");
        assert!(
            e.contains(r#"volumes[0].size: "ten" is not a Kubernetes quantity (e.g. 10Gi)"#),
            "{e}"
        );
    }

    #[test]
    fn requests_above_limits_are_refused() {
        let yaml = "tiers:\n  small:\n    requests: {cpu: 4, memory: 2Gi}\n    limits: {cpu: 2, memory: 1Gi}\n";
        let Err(e) = Policy::from_yaml(yaml) else {
            panic!("accepted")
        };
        let fields: Vec<_> = e.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["tiers.small.requests.cpu", "tiers.small.requests.memory"]
        );
        assert!(
            e.to_string()
                .contains("4 is above tiers.small.limits.cpu (2)"),
            "{e}"
        );
    }

    #[test]
    fn default_tier_must_exist() {
        let e = err("defaultTier: huge\n");
        assert!(
            e.contains(r#"defaultTier: tier "huge" is not defined in tiers; set defaultTier to one of: large, micro, small"#),
            "{e}"
        );
        let e = err("tiers:\n  big:\n    requests: {cpu: 1, memory: 1Gi}\n    limits: {cpu: 1, memory: 1Gi}\n");
        assert!(e.contains(r#"defaultTier: tier "small""#), "{e}");
    }

    #[test]
    fn root_ids_are_refused() {
        let Err(e) = Policy::from_yaml("user: {uid: 0, gid: 0, fsGroup: -1}\n") else {
            panic!("accepted")
        };
        let fields: Vec<_> = e.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["user.uid", "user.gid", "user.fsGroup"]);
        assert!(e.to_string().contains("user.uid: 0 is root"), "{e}");
    }

    #[test]
    fn volume_rules() {
        let e = err("volumes:\n- {name: Work_Space, size: 1Gi, mountPath: /a}\n- {name: b, size: 1Gi, mountPath: relative}\n- {name: b, size: 1Gi, mountPath: /a/}\n- {name: c, size: 0, mountPath: /c, storageClass: Bad_Class}\n");
        assert!(
            e.contains(r#"volumes[0].name: "Work_Space" is not a DNS-1123 label"#),
            "{e}"
        );
        assert!(
            e.contains(r#"volumes[1].mountPath: "relative" is not an absolute path"#),
            "{e}"
        );
        assert!(
            e.contains(r#"volumes[2].name: "b" is used by an earlier volume"#),
            "{e}"
        );
        assert!(
            e.contains(r#"volumes[2].mountPath: "/a/" is used by an earlier volume"#),
            "{e}"
        );
        assert!(
            e.contains(r#"volumes[3].size: "0" must be greater than zero"#),
            "{e}"
        );
        assert!(e.contains(r#"volumes[3].storageClass: "Bad_Class""#), "{e}");
        let p = Policy::from_yaml(
            "volumes:\n- {name: w, size: 1Gi, mountPath: /w, storageClass: fast.ssd}\n",
        );
        assert!(p.is_ok());
        assert!(Policy::from_yaml("volumes: []\n").is_ok());
    }

    #[test]
    fn secret_names_must_be_subdomains() {
        let e = err("secrets:\n  inject: [ok.name, Not_OK, ok.name]\n");
        assert!(
            e.contains(r#"secrets.inject[1]: "Not_OK" is not a valid Secret name"#),
            "{e}"
        );
        assert!(
            e.contains(r#"secrets.inject[2]: "ok.name" is listed twice"#),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let e = err("tiers:\n  small:\n    requests: {cpu: 1, memory: 1Gi, gpu: 1}\n    limits: {cpu: 1, memory: 1Gi}\n");
        assert!(
            e.contains("tiers.small.requests: unknown field `gpu`"),
            "{e}"
        );
        let e = err("users: {}\n");
        assert!(e.contains("unknown field `users`"), "{e}");
        let e = err("user: {uid: 1000, home: /x}\n");
        assert!(e.contains("user: unknown field `home`"), "{e}");
        let e = err("tiers:\n  small:\n    limits: {cpu: 1, memory: 1Gi}\n");
        assert!(e.contains("tiers.small: missing field `requests`"), "{e}");
        let e = err("- not a map\n");
        assert!(e.contains("policy is not valid"), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let missing = Path::new("/nonexistent/devenv-policy.yaml");
        let e = Policy::load(missing).map(|_| ()).map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(m) if m.starts_with("cannot read the policy file /nonexistent/devenv-policy.yaml")),
            "{e:?}"
        );

        let dir = std::env::temp_dir().join(format!("devenv-policy-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("policy.yaml");
        let _ = std::fs::write(&file, "defaultTier: huge\n");
        let e = Policy::load(&file).map(|_| ()).map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        let expected = format!("{}: defaultTier: tier \"huge\"", file.display());
        assert!(matches!(&e, Err(m) if m.starts_with(&expected)), "{e:?}");
    }

    #[test]
    fn round_trips_through_yaml() {
        let p = Policy::default();
        let yaml = serde_yaml::to_string(&p).unwrap_or_default();
        assert!(yaml.contains("defaultTier: small"), "{yaml}");
        assert_eq!(Policy::from_yaml(&yaml).ok(), Some(p));
    }

    #[test]
    fn access_defaults_and_lists() {
        let p = Policy::default();
        assert_eq!(p.access.admin_groups, vec!["system:masters"]);
        assert!(p.access.admin_users.is_empty());
        assert_eq!(
            p.access.statefulset_controllers,
            vec![
                "system:serviceaccount:kube-system:statefulset-controller",
                "system:kube-controller-manager"
            ]
        );
        assert!(p.secrets.image_pull.is_empty());
        assert_eq!(p.service_accounts, ServiceAccountPolicy::default());
        assert!(!p.service_accounts.token);
        assert!(p.inline_csi_drivers.is_empty());
        let p = Policy::from_yaml(
            "secrets:\n  imagePull: [regcred]\nserviceAccounts:\n  allow: [ci]\n  token: true\ninlineCsiDrivers: [csi.example.com]\naccess:\n  adminGroups: [platform]\n",
        )
        .unwrap_or_default();
        assert_eq!(p.secrets.image_pull, vec!["regcred"]);
        // A section that is present but partial keeps the defaults of what it leaves out.
        assert_eq!(p.secrets.inject, vec!["devenv-secrets"]);
        assert_eq!(p.service_accounts.allow, vec!["ci"]);
        assert!(p.service_accounts.token);
        assert_eq!(p.inline_csi_drivers, vec!["csi.example.com"]);
        assert_eq!(p.access.admin_groups, vec!["platform"]);
        assert_eq!(p.access.statefulset_controllers.len(), 2);
        let e = err("secrets:\n  imagePull: [Bad_Name]\nserviceAccounts:\n  allow: [ci, ci]\naccess:\n  adminUsers: [\" \"]\n");
        assert!(
            e.contains(r#"secrets.imagePull[0]: "Bad_Name" is not a valid Secret name"#),
            "{e}"
        );
        assert!(
            e.contains(r#"serviceAccounts.allow[1]: "ci" is listed twice"#),
            "{e}"
        );
        assert!(
            e.contains(r#"access.adminUsers[0]: " " is not a user or group name"#),
            "{e}"
        );
    }

    #[test]
    fn volume_names_must_not_prefix_each_other() {
        let e = err("volumes:\n- {name: data, size: 1Gi, mountPath: /a}\n- {name: data-cache, size: 1Gi, mountPath: /b}\n");
        assert!(
            e.contains(r#"volumes[1].name: "data-cache" starts with the volume name "data""#),
            "{e}"
        );
        assert!(Policy::from_yaml("volumes:\n- {name: data, size: 1Gi, mountPath: /a}\n- {name: datacache, size: 1Gi, mountPath: /b}\n").is_ok());
    }

    #[test]
    fn backup_section_names_the_default_repository_and_refuses_unknown_fields() {
        let p = Policy::from_yaml("backup:\n  repository: reg.example.com/devenv/backups\n")
            .unwrap_or_default();
        assert_eq!(
            p.backup.repository.as_deref(),
            Some("reg.example.com/devenv/backups")
        );
        assert!(Policy::default().backup.is_unset());
        // Unset, the section is not printed (the installed default policy stays as it was).
        let printed = serde_yaml::to_string(&Policy::default()).unwrap_or_default();
        assert!(!printed.contains("backup"), "{printed}");
        assert!(Policy::from_yaml("backup:\n  everyday: 24h\n").is_err());
    }

    #[test]
    fn a_backup_schedule_needs_a_repository_and_keeps_at_least_one() {
        let p = Policy::from_yaml(
            "backup:\n  repository: reg.example.com/b\n  every: 24h\n  keep: 3\n  credentialsSecret: reg-creds\n",
        )
        .unwrap_or_default();
        assert_eq!(p.backup.every, Some(Duration::from_secs(86_400)));
        assert_eq!(p.backup.keep(), 3);
        assert_eq!(p.backup.credentials_secret.as_deref(), Some("reg-creds"));
        assert_eq!(Policy::default().backup.keep(), DEFAULT_BACKUP_KEEP);
        // `every: 0` is off, as the lifecycle durations.
        let off = Policy::from_yaml("backup:\n  every: 0\n").unwrap_or_default();
        assert_eq!(off.backup.every, None);
        let e = Policy::from_yaml(
            "backup:\n  every: 24h\n  keep: 0\n  credentialsSecret: Not_A_Name\n",
        )
        .err()
        .unwrap_or_else(|| panic!("accepted"));
        let fields: Vec<_> = e.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["backup.every", "backup.keep", "backup.credentialsSecret"]
        );
        assert!(e.to_string().contains("set backup.repository"), "{e}");
        // A schedule round-trips through the printed policy (the install's ConfigMap).
        let printed = serde_yaml::to_string(&p).unwrap_or_default();
        assert_eq!(
            Policy::from_yaml(&printed).unwrap_or_default().backup,
            p.backup
        );
    }

    #[test]
    fn lifecycle_section_is_read_with_the_rest() {
        let p = Policy::from_yaml("lifecycle:\n  idleTimeout: 30m\n").unwrap_or_default();
        assert_eq!(p.lifecycle.idle_timeout, Some(Duration::from_secs(30 * 60)));
        assert_eq!(p.tiers, Policy::default().tiers);
        assert_eq!(
            Policy::from_yaml("").map(|p| p.lifecycle).ok(),
            Some(LifecyclePolicy::default())
        );
        let e = err("lifecycle:\n  idleTimeout: 1.5h\n");
        assert!(e.contains("\"1.5h\""), "{e}");
        // One loader for every reader: a document the webhook refuses (a tier without
        // requests) is refused for its lifecycle section too, with the field path.
        let e = err("tiers:\n  small: {}\nlifecycle:\n  idleTimeout: 30m\n");
        assert!(e.contains("tiers.small: missing field `requests`"), "{e}");
        let Err(e) = Policy::from_yaml("lifecycle:\n  warningBefore: 0\n") else {
            panic!("accepted")
        };
        let fields: Vec<_> = e.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["lifecycle.warningBefore"]);
    }
}
