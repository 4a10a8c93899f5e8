//! Command line: what a user types after `kubectl devenv`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use devenv_shared::model::duration::parse_duration;

/// Persistent, policy-safe developer workspaces on any Kubernetes cluster.
///
/// Found by kubectl on PATH as `kubectl devenv`. A workspace is a StatefulSet
/// whose pods keep their volumes across restarts, scaling and deletion.
#[derive(Debug, Parser)]
#[command(name = "kubectl-devenv", bin_name = "kubectl devenv", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, spelled as kubectl spells them.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of the workspaces (default: the context's namespace, else "default").
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace the webhook is installed in.
    #[arg(
        long,
        global = true,
        value_name = "NAMESPACE",
        env = "DEVENV_INSTALL_NAMESPACE",
        default_value = devenv_shared::build::install::DEFAULT_NAMESPACE
    )]
    pub install_namespace: String,
    /// More logging on stderr: -v info, -vv debug, -vvv trace.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a workspace.
    Create(CreateArgs),
    /// List workspaces.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one workspace.
    Get(GetArgs),
    /// Run a command (default: a login shell) in a workspace pod.
    Exec(ExecArgs),
    /// Open a login shell in a workspace pod (exec with the default shell).
    Attach(AttachArgs),
    /// SSH into a workspace pod: the machine's OpenSSH client over the API server's
    /// port-forward (nothing exposed; your RBAC is the gate).
    Ssh(SshArgs),
    /// Print (or --write) the ssh config Host blocks of workspaces, for ssh, scp, rsync,
    /// git and VS Code Remote-SSH.
    SshConfig(SshConfigArgs),
    /// Manage the SSH public keys a workspace pod accepts.
    #[command(subcommand)]
    SshKey(SshKeyCommand),
    /// Forward local ports (on 127.0.0.1 only) to a workspace pod.
    PortForward(PortForwardArgs),
    /// Open VS Code on a workspace over Remote-SSH.
    Code(CodeArgs),
    /// Change the number of workspace pods, or their tier / CPU / memory.
    Scale(ScaleArgs),
    /// Scale a workspace to zero, remembering its replicas (volumes are kept).
    Stop(StopStartArgs),
    /// Start a stopped workspace with the replicas it had.
    Start(StopStartArgs),
    /// Delete a workspace; its volumes are kept unless --purge.
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
    /// Back a workspace's volumes up to an OCI registry (one artifact, a layer per volume).
    Backup(BackupArgs),
    /// List the backups in a repository, with their time, size and digest.
    Backups(BackupsArgs),
    /// Restore a backup in place (after backing up what is there) or --as a new workspace.
    Restore(RestoreArgs),
    /// Take a VolumeSnapshot of each of a workspace's claims (where the cluster has a CSI
    /// snapshot driver); restore them with restore --from-snapshot SET --as NEW.
    Snapshot(SnapshotArgs),
    /// Manage the Secrets injected into workspaces.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Manage tenants: a namespace each for a developer or a team, with its quota and access.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Install or upgrade the admission webhook.
    Install(InstallArgs),
    /// Remove the webhook; workspaces and their data are kept.
    Uninstall(UninstallArgs),
    /// Check the webhook, its certificate, storage and network policy support.
    Status(StatusArgs),
    /// Serve the workspace portal, a web page on 127.0.0.1 acting with your kubeconfig.
    Ui(UiArgs),
    /// Print a shell completion script.
    Completion(CompletionArgs),
}

/// `--dry-run` as kubectl has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DryRun {
    /// Send the request.
    #[default]
    None,
    /// Print what would be sent; contact no cluster.
    Client,
    /// Ask the API server to process the request without persisting it.
    Server,
}

/// Output of commands that change objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectFormat {
    Yaml,
    Json,
}

/// `ui`: where the portal listens, and what it shows.
#[derive(Debug, Clone, Args)]
pub struct UiArgs {
    /// Port on 127.0.0.1 (0: a free one, chosen by the system).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Print the URL only; do not open a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// Show the workspaces of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// Output of list/get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Wide,
    Json,
    Yaml,
    Name,
}

/// Flags shared by every command that changes something.
#[derive(Debug, Clone, Args)]
pub struct ChangeArgs {
    /// "client" prints the objects without contacting a cluster; "server" lets
    /// the API server check them without persisting.
    #[arg(
        long,
        value_enum,
        default_value = "none",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client"
    )]
    pub dry_run: DryRun,
    /// Print the objects (sent, or that would be sent) as YAML or JSON.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ObjectFormat>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Workspace name (DNS-1123 label, at most 52 characters).
    pub name: String,
    /// Container image of the workspace (default: the release's workspace image; for a
    /// private registry or mirror, e.g. registry.example.com/devenv/workspace:VERSION).
    #[arg(long, default_value_t = default_workspace_image())]
    pub image: String,
    /// Policy tier (e.g. micro, small, large; default: the policy's default tier).
    #[arg(long)]
    pub tier: Option<String>,
    /// Number of workspace pods (each with its own volumes).
    #[arg(long, default_value_t = 1)]
    pub replicas: i32,
    /// Secret whose keys become environment variables (repeatable).
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// Git repository cloned into the workspace volume on first start.
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    /// Branch of --repo (default: the remote's default branch).
    #[arg(long, requires = "repo")]
    pub branch: Option<String>,
    /// Storage class of the volumes (default: the policy's, else the cluster default).
    #[arg(long)]
    pub storage_class: Option<String>,
    /// Size of the workspace volume (e.g. 20Gi).
    #[arg(long, value_name = "SIZE")]
    pub workspace_size: Option<String>,
    /// Size of the shell-history volume.
    #[arg(long, value_name = "SIZE")]
    pub history_size: Option<String>,
    /// Size of the config (dotfiles) volume.
    #[arg(long, value_name = "SIZE")]
    pub config_size: Option<String>,
    /// CPU request and limit, overriding the tier (e.g. 2, 500m).
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory request and limit, overriding the tier (e.g. 4Gi).
    #[arg(long)]
    pub memory: Option<String>,
    /// Idle time after which the workspace may be hibernated (e.g. 8h, 1h30m; 0 = never).
    #[arg(long, value_name = "DURATION", value_parser = duration_text)]
    pub idle_timeout: Option<String>,
    /// Replace the image's entrypoint with an idle loop. Use it for images
    /// whose default command is an interactive shell (ubuntu, most devcontainer
    /// images), which would otherwise exit at once.
    #[arg(long)]
    pub keep_alive: bool,
    /// Policy file to build the objects with (default: the installed policy,
    /// or with --dry-run=client the built-in default policy).
    #[arg(long, value_name = "PATH")]
    pub policy_file: Option<PathBuf>,
    /// Public key file the workspace accepts over ssh (repeatable); written into the
    /// running workspace, so it needs the wait. Default, when waiting for a single pod:
    /// your ~/.ssh/id_ed25519.pub (or id_ecdsa.pub, id_rsa.pub), if there is one.
    #[arg(long = "ssh-key", value_name = "PUBKEY_FILE")]
    pub ssh_keys: Vec<PathBuf>,
    /// Wait until the workspace is ready, showing progress (default when stdin is a terminal).
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,
    /// Return as soon as the objects are created.
    #[arg(long, overrides_with = "wait")]
    pub no_wait: bool,
    /// How long --wait waits (e.g. 90s, 5m, 1h).
    #[arg(long, default_value = "5m", value_parser = positive_duration)]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// The image `create` uses without --image: the project's workspace image,
/// whose entrypoint runs sshd on port 2222.
pub fn default_workspace_image() -> String {
    devenv_shared::build::images::workspace()
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List workspaces in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format (default: a table).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ListFormat>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Workspace name.
    pub name: String,
    /// Output format (default: a table).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ListFormat>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Workspace name, optionally with the pod ordinal: NAME or NAME-ORDINAL (default ordinal 0).
    pub target: String,
    /// Keep stdin attached without a terminal (like kubectl exec -i).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Allocate a terminal (default: when stdin is a terminal).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Command and arguments (after --); default: a login shell (zsh, bash, then sh).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// Workspace name, optionally with the pod ordinal: NAME or NAME-ORDINAL.
    pub target: String,
    /// Carry stdin/stdout to the pod's sshd (port 2222) over the API server's
    /// port-forward: the ProxyCommand of the generated ssh config.
    #[arg(long, hide = true)]
    pub stdio: bool,
    /// Start the workspace first when it is stopped or hibernated, and wait for it.
    #[arg(long)]
    pub start: bool,
    /// Forward the ssh agent (ssh -A).
    #[arg(short = 'A', long = "forward-agent")]
    pub forward_agent: bool,
    /// Local forward, as ssh -L takes it: [BIND:]PORT:HOST:HOSTPORT (repeatable).
    #[arg(short = 'L', value_name = "SPEC")]
    pub local: Vec<String>,
    /// Remote forward, as ssh -R takes it (repeatable).
    #[arg(short = 'R', value_name = "SPEC")]
    pub remote: Vec<String>,
    /// Replace the known host keys of this workspace with the ones read through the API
    /// (after the workspace was re-created, for instance; ssh refuses a changed key).
    #[arg(long)]
    pub refresh_host_keys: bool,
    /// Command to run instead of a login shell (after --).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// Workspace name, optionally with the pod ordinal (or --all).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub target: Option<String>,
    /// Every running workspace pod of the namespace.
    #[arg(long)]
    pub all: bool,
    /// Write the blocks into the plugin's ssh config file (and, once, with your consent,
    /// an Include of it at the top of ~/.ssh/config) instead of printing them.
    #[arg(long)]
    pub write: bool,
    /// Consent to adding the Include to ~/.ssh/config without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// LocalForward lines to add: [LOCAL:]REMOTE ports (repeatable; e.g. 8080).
    #[arg(long = "forward", value_name = "[LOCAL:]REMOTE")]
    pub forwards: Vec<String>,
    /// Replace the known host keys with the ones read through the API.
    #[arg(long)]
    pub refresh_host_keys: bool,
}

#[derive(Debug, Subcommand)]
pub enum SshKeyCommand {
    /// Add public keys (default: your ~/.ssh/*.pub); they count at once, no restart.
    Add(SshKeyAddArgs),
    /// Remove a public key (by its .pub file or its comment).
    Remove(SshKeyRemoveArgs),
    /// List the public keys a workspace pod accepts.
    List(SshKeyListArgs),
}

#[derive(Debug, Args)]
pub struct SshKeyAddArgs {
    /// Workspace name, optionally with the pod ordinal.
    pub target: String,
    /// Public key files (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub, the
    /// first found).
    #[arg(value_name = "PUBKEY_FILE")]
    pub keys: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SshKeyRemoveArgs {
    /// Workspace name, optionally with the pod ordinal.
    pub target: String,
    /// The public key file of the key to remove.
    #[arg(
        value_name = "PUBKEY_FILE",
        required_unless_present = "comment",
        conflicts_with = "comment"
    )]
    pub key: Option<PathBuf>,
    /// Remove every key with exactly this comment instead (e.g. alice@laptop).
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct SshKeyListArgs {
    /// Workspace name, optionally with the pod ordinal.
    pub target: String,
}

#[derive(Debug, Args)]
pub struct PortForwardArgs {
    /// Workspace name, optionally with the pod ordinal.
    pub target: String,
    /// [LOCAL:]REMOTE ports (default 8080, the workspace's http port); LOCAL 0 picks a
    /// free port. Local ports listen on 127.0.0.1 only.
    #[arg(value_name = "[LOCAL:]REMOTE")]
    pub ports: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CodeArgs {
    /// Workspace name, optionally with the pod ordinal.
    pub target: String,
    /// Folder to open in the workspace.
    #[arg(default_value = "/workspace")]
    pub path: String,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Workspace name, optionally with the pod ordinal: NAME or NAME-ORDINAL.
    pub target: String,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Workspace name.
    pub name: String,
    /// New number of workspace pods (volumes of removed pods are kept).
    #[arg(long)]
    pub replicas: Option<i32>,
    /// New tier: pods restart with its resources; data is kept.
    #[arg(long)]
    pub tier: Option<String>,
    /// New CPU request and limit.
    #[arg(long)]
    pub cpu: Option<String>,
    /// New memory request and limit.
    #[arg(long)]
    pub memory: Option<String>,
    /// Grow the workspace volume of every pod (e.g. 50Gi; its StorageClass must allow
    /// expansion). Pods keep running; new pool members get the new size.
    #[arg(long, value_name = "SIZE")]
    pub workspace_size: Option<String>,
    /// Grow the shell history volume (like --workspace-size).
    #[arg(long, value_name = "SIZE")]
    pub history_size: Option<String>,
    /// Grow the tool config volume (like --workspace-size).
    #[arg(long, value_name = "SIZE")]
    pub config_size: Option<String>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

impl ScaleArgs {
    /// The volume sizes asked for, by claim template name.
    pub fn size_requests(&self) -> Vec<devenv_shared::build::resize::SizeRequest> {
        [
            ("workspace", &self.workspace_size),
            ("history", &self.history_size),
            ("config", &self.config_size),
        ]
        .into_iter()
        .filter_map(|(volume, size)| {
            size.as_ref()
                .map(|size| devenv_shared::build::resize::SizeRequest {
                    volume: volume.to_owned(),
                    size: size.clone(),
                })
        })
        .collect()
    }
}

#[derive(Debug, Args)]
pub struct StopStartArgs {
    /// Workspace name.
    pub name: String,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Workspace name.
    pub name: String,
    /// Also delete the volumes (all data of the workspace), after backing them up.
    #[arg(long)]
    pub purge: bool,
    /// Do not ask for confirmation (required for --purge without a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Where --purge backs up first (default: the policy's backup.repository).
    #[arg(long, value_name = "REF", requires = "purge")]
    pub backup_to: Option<String>,
    /// --purge without a backup first: the data is gone for good.
    #[arg(long, requires = "purge", conflicts_with = "backup_to")]
    pub no_backup: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// Where backups go and how to reach the registry: shared by `backup`, `backups`,
/// `restore` and `delete --purge`.
#[derive(Debug, Clone, Args, Default)]
pub struct RegistryArgs {
    /// Talk plain HTTP to the registry (as oras --plain-http). Registries on 127.0.0.1,
    /// localhost and [::1] are spoken to in plain HTTP without it.
    #[arg(long)]
    pub plain_http: bool,
    /// Docker config with the registry's credentials (default: $DOCKER_CONFIG/config.json,
    /// else ~/.docker/config.json; none: anonymous).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<std::path::PathBuf>,
    /// A docker config's JSON given directly (the lifecycle controller's, read from the
    /// policy's `backup.credentialsSecret`); takes the place of `--registry-config`.
    #[arg(skip)]
    pub docker_config_json: Option<DockerConfigJson>,
}

/// The text of a docker config; its `Debug` never shows it.
#[derive(Clone, Default)]
pub struct DockerConfigJson(pub String);

impl std::fmt::Debug for DockerConfigJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DockerConfigJson(<redacted>)")
    }
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Workspace name.
    pub name: String,
    /// The VolumeSnapshotClass (default: the one annotated
    /// snapshot.storage.kubernetes.io/is-default-class=true).
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Workspace name.
    pub name: String,
    /// REGISTRY/REPO[:TAG] (default: the policy's backup.repository, tagged
    /// NAME-manual-TIME).
    #[arg(long, value_name = "REF")]
    pub to: Option<String>,
    /// Back up only this volume (repeatable; default: all of them).
    #[arg(long = "volume", value_name = "VOLUME")]
    pub volumes: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct BackupsArgs {
    /// Only the backups of this workspace.
    pub name: Option<String>,
    /// The repository to list (default: the policy's backup.repository).
    #[arg(long, value_name = "REGISTRY/REPO")]
    pub from: Option<String>,
    /// Backups of every namespace (default: the current namespace's).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format (default: a table).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ListFormat>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The workspace to restore into (with --as: the workspace the backup is of).
    pub name: String,
    /// The backup: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST.
    #[arg(
        long,
        value_name = "REF",
        required_unless_present = "from_snapshot",
        conflicts_with = "from_snapshot"
    )]
    pub from: Option<String>,
    /// A snapshot set of the workspace (what `snapshot` printed), restored --as a new
    /// workspace whose claims the CSI driver fills from the snapshots.
    #[arg(long, value_name = "SET")]
    pub from_snapshot: Option<String>,
    /// Restore into a new workspace of this name (made like the one backed up) instead.
    #[arg(long = "as", value_name = "NEW")]
    pub as_new: Option<String>,
    /// Where the backup taken before an in-place restore goes (default: the repository
    /// of --from).
    #[arg(long, value_name = "REF")]
    pub backup_to: Option<String>,
    /// Do not back up what is there before an in-place restore (it is lost).
    #[arg(long)]
    pub no_backup: bool,
    /// How long to wait for the workspace to be ready.
    #[arg(long, default_value = "5m", value_parser = positive_duration)]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create or update an injected Secret (existing keys not named are kept).
    Set(SecretsSetArgs),
}

#[derive(Debug, Args)]
pub struct SecretsSetArgs {
    /// Secret name.
    #[arg(default_value = "devenv-secrets")]
    pub name: String,
    /// KEY=VALUE (repeatable).
    #[arg(long = "from-literal", value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// Name of a local environment variable; its value is stored under its name (repeatable).
    #[arg(long = "from-env", value_name = "VAR")]
    pub from_env: Vec<String>,
    /// KEY=PATH, or PATH (key = file name): a file's content (repeatable).
    #[arg(long = "from-file", value_name = "KEY=PATH")]
    pub from_file: Vec<String>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// `kubectl devenv tenant ...`. A tenant is a namespace named after it: the isolation
/// boundary between developers or teams (whoever can create pods in a namespace can read
/// its volumes, so people who must not read each other's data get a namespace each).
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create or update a tenant: its namespace, quota and access.
    ///
    /// The namespace NAME (Pod Security "restricted", label devenv.io/tenant=NAME), a
    /// ResourceQuota for --workspaces workspaces of --tier, a LimitRange at the largest
    /// tier, and the devenv-user ClusterRole (made by install) for its users and groups.
    /// Running it again updates the tenant to exactly what the flags say (users and groups
    /// not named lose their access). An existing namespace not labelled as the tenant is
    /// refused.
    Add(TenantAddArgs),
    /// List tenants: users, groups, workspaces and quota use.
    #[command(visible_alias = "ls")]
    List(TenantListArgs),
    /// Remove a tenant's access and workspaces; its data is kept unless --purge.
    ///
    /// Deletes the RoleBinding devenv-user and every workspace (as `delete` does), and
    /// keeps the namespace, its quota and every claim: `tenant add` again gives the access
    /// back, and workspaces re-created with the same names find their data. With --purge,
    /// deletes the namespace and everything in it. Only a namespace labelled
    /// devenv.io/tenant=NAME is touched.
    #[command(visible_alias = "rm")]
    Remove(TenantRemoveArgs),
}

#[derive(Debug, Args)]
pub struct TenantAddArgs {
    /// Tenant name: the name of its namespace (DNS-1123 label).
    pub name: String,
    /// User who may use the tenant's namespace, as the API server names them (repeatable).
    #[arg(long = "user", value_name = "USER")]
    pub users: Vec<String>,
    /// Group whose members may use the tenant's namespace (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// How many workspace pods of --tier the quota makes room for.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workspaces: u32,
    /// Tier the quota is sized for (default: the policy's default tier).
    #[arg(long)]
    pub tier: Option<String>,
    /// Policy file to size the quota with (default: the installed policy, or with
    /// --dry-run=client the built-in default policy).
    #[arg(long, value_name = "PATH")]
    pub policy_file: Option<PathBuf>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct TenantListArgs {
    /// Output format (default: a table).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ListFormat>,
}

#[derive(Debug, Args)]
pub struct TenantRemoveArgs {
    /// Tenant name (its namespace must be labelled devenv.io/tenant=NAME).
    pub name: String,
    /// Delete the namespace and everything in it, all data of every workspace included
    /// (each workspace is backed up first, as delete --purge does).
    #[arg(long)]
    pub purge: bool,
    /// Do not ask for confirmation (required for --purge without a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Where --purge backs each workspace up first (default: the policy's backup.repository).
    #[arg(long, value_name = "REF", requires = "purge")]
    pub backup_to: Option<String>,
    /// --purge without backups first: the data is gone for good.
    #[arg(long, requires = "purge", conflicts_with = "backup_to")]
    pub no_backup: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Webhook running outside the cluster (https://HOST:PORT): register it
    /// instead of deploying one; no Deployment, Service, TLS Secret or PDB.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// With --webhook-url: directory holding tls.crt, tls.key and ca.crt for
    /// that webhook; reused while valid, (re)written otherwise.
    #[arg(long, value_name = "DIR", requires = "webhook_url")]
    pub cert_dir: Option<PathBuf>,
    /// Webhook image (default: the release's; for a private registry or mirror, e.g.
    /// registry.example.com/devenv/devenv-webhook:VERSION).
    #[arg(long, default_value_t = devenv_shared::build::install::default_image())]
    pub image: String,
    /// Webhook replicas.
    #[arg(long, default_value_t = 2)]
    pub replicas: i32,
    /// Policy file (default: the policy already installed, else the built-in default).
    #[arg(long, value_name = "PATH")]
    pub policy_file: Option<PathBuf>,
    /// Install no certificate: no TLS Secret, no caBundle. For GitOps, with
    /// cert-manager (or an out-of-band Secret devenv-webhook-tls) providing them.
    #[arg(long)]
    pub no_certs: bool,
    /// Return once the objects are applied, without waiting for the webhook's
    /// replicas to be Ready and reachable (GitOps-style use).
    #[arg(long)]
    pub no_wait: bool,
    /// How long install waits for the replicas to be Ready and called by the API
    /// server (e.g. 90s, 5m).
    #[arg(long, default_value = "3m", value_parser = positive_duration)]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the report as YAML or JSON.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ObjectFormat>,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// Shell to generate the script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// A duration flag that must be more than 0 (`--timeout`): the project's one
/// grammar ([`parse_duration`]: `90s`, `5m`, `1h30m`; a bare `45` is refused
/// with the fix, as kubectl's own duration flags refuse it).
pub fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!(
            "invalid duration {text:?}: must be more than 0, e.g. 90s or 5m"
        ));
    }
    Ok(d)
}

/// A duration flag kept as written (`--idle-timeout`, stored as the
/// workspace's annotation), checked with the one grammar; `0` means never.
pub fn duration_text(text: &str) -> Result<String, String> {
    parse_duration(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut full = vec!["kubectl-devenv"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn ssh_commands_parse_as_ssh_and_kubectl_users_expect() {
        match parse(&[
            "ssh",
            "alice",
            "-A",
            "-L",
            "9000:localhost:9000",
            "--",
            "id",
            "-u",
        ])
        .command
        {
            Command::Ssh(a) => {
                assert_eq!(a.target, "alice");
                assert!(a.forward_agent && !a.stdio && !a.start);
                assert_eq!(a.local, ["9000:localhost:9000"]);
                assert_eq!(a.command, ["id", "-u"]);
            }
            other => panic!("{other:?}"),
        }
        // The ProxyCommand form, global flags after the subcommand as the config writes.
        match parse(&[
            "--context",
            "c",
            "--namespace",
            "team",
            "ssh",
            "--stdio",
            "team-2",
        ])
        .command
        {
            Command::Ssh(a) => assert!(a.stdio && a.target == "team-2"),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["kubectl-devenv", "ssh-config"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-devenv", "ssh-config", "a", "--all"]).is_err());
        match parse(&["ssh-config", "--all", "--write", "--forward", "8080"]).command {
            Command::SshConfig(a) => assert!(a.all && a.write && a.forwards == ["8080"]),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["kubectl-devenv", "ssh-key", "remove", "alice"]).is_err());
        match parse(&["ssh-key", "remove", "alice", "--comment", "me@laptop"]).command {
            Command::SshKey(SshKeyCommand::Remove(a)) => {
                assert_eq!(a.comment.as_deref(), Some("me@laptop"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["port-forward", "alice", "9000:8080", "0:22"]).command {
            Command::PortForward(a) => assert_eq!(a.ports, ["9000:8080", "0:22"]),
            other => panic!("{other:?}"),
        }
        match parse(&["code", "alice"]).command {
            Command::Code(a) => assert_eq!(a.path, "/workspace"),
            other => panic!("{other:?}"),
        }
        match parse(&[
            "create",
            "a",
            "--ssh-key",
            "/k1.pub",
            "--ssh-key",
            "/k2.pub",
        ])
        .command
        {
            Command::Create(a) => assert_eq!(a.ssh_keys.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() {
        let c = parse(&[
            "create",
            "demo",
            "-n",
            "team",
            "--context",
            "prod",
            "-vv",
            "--kubeconfig",
            "/k",
        ]);
        assert_eq!(c.global.namespace.as_deref(), Some("team"));
        assert_eq!(c.global.context.as_deref(), Some("prod"));
        assert_eq!(c.global.verbose, 2);
        assert_eq!(
            c.global.kubeconfig.as_deref(),
            Some(std::path::Path::new("/k"))
        );
        assert_eq!(c.global.install_namespace, "devenv-system");
    }

    #[test]
    fn create_flags() {
        let c = parse(&[
            "create",
            "demo",
            "--image",
            "img",
            "--tier",
            "large",
            "--replicas",
            "2",
            "--secret",
            "a",
            "--secret",
            "b",
            "--repo",
            "https://x/y.git",
            "--branch",
            "dev",
            "--storage-class",
            "fast",
            "--workspace-size",
            "20Gi",
            "--history-size",
            "2Gi",
            "--config-size",
            "3Gi",
            "--cpu",
            "2",
            "--memory",
            "4Gi",
            "--no-wait",
            "--timeout",
            "90s",
            "--dry-run=client",
            "-o",
            "json",
        ]);
        let Command::Create(a) = c.command else {
            panic!("not create")
        };
        assert_eq!(a.name, "demo");
        assert_eq!(a.image, "img");
        assert_eq!(a.tier.as_deref(), Some("large"));
        assert_eq!(a.replicas, 2);
        assert_eq!(a.secrets, vec!["a", "b"]);
        assert_eq!(a.branch.as_deref(), Some("dev"));
        assert_eq!(a.workspace_size.as_deref(), Some("20Gi"));
        assert!(a.no_wait && !a.wait);
        assert_eq!(a.timeout, std::time::Duration::from_secs(90));
        assert_eq!(a.change.dry_run, DryRun::Client);
        assert_eq!(a.change.output, Some(ObjectFormat::Json));
    }

    #[test]
    fn create_defaults() {
        let Command::Create(a) = parse(&["create", "demo"]).command else {
            panic!()
        };
        assert_eq!(a.replicas, 1);
        assert_eq!(a.timeout, std::time::Duration::from_secs(300));
        assert_eq!(a.change.dry_run, DryRun::None);
        assert!(a.image.ends_with(env!("CARGO_PKG_VERSION")));
        assert_eq!(a.image, devenv_shared::build::images::workspace());
        assert!(!a.wait && !a.no_wait);
    }

    #[test]
    fn install_defaults_to_the_release_webhook_image_and_image_overrides_it() {
        let Command::Install(a) = parse(&["install"]).command else {
            panic!()
        };
        assert_eq!(a.image, devenv_shared::build::images::webhook());
        let Command::Install(a) = parse(&["install", "--image", "r.example/w:1"]).command else {
            panic!()
        };
        assert_eq!(a.image, "r.example/w:1");
        let Command::Create(a) = parse(&["create", "x", "--image", "r.example/ws:1"]).command
        else {
            panic!()
        };
        assert_eq!(a.image, "r.example/ws:1");
    }

    #[test]
    fn dry_run_spellings() {
        for (arg, want) in [
            ("--dry-run", DryRun::Client),
            ("--dry-run=client", DryRun::Client),
            ("--dry-run=server", DryRun::Server),
            ("--dry-run=none", DryRun::None),
        ] {
            let Command::Create(a) = parse(&["create", arg, "demo"]).command else {
                panic!()
            };
            assert_eq!(a.change.dry_run, want, "{arg}");
            assert_eq!(a.name, "demo");
        }
        let mut full = vec!["kubectl-devenv", "create", "demo", "--dry-run=maybe"];
        assert!(Cli::try_parse_from(full.drain(..)).is_err());
    }

    #[test]
    fn branch_needs_repo() {
        assert!(
            Cli::try_parse_from(["kubectl-devenv", "create", "demo", "--branch", "x"]).is_err()
        );
    }

    #[test]
    fn exec_command_after_double_dash() {
        let Command::Exec(a) = parse(&["exec", "demo-1", "-t", "--", "ls", "-la"]).command else {
            panic!()
        };
        assert_eq!(a.target, "demo-1");
        assert!(a.tty && !a.stdin);
        assert_eq!(a.command, vec!["ls", "-la"]);
        let Command::Exec(a) = parse(&["exec", "demo"]).command else {
            panic!()
        };
        assert!(a.command.is_empty());
    }

    #[test]
    fn list_get_scale_delete_secrets_install() {
        let Command::List(a) = parse(&["ls", "-A", "-o", "wide"]).command else {
            panic!()
        };
        assert!(a.all_namespaces);
        assert_eq!(a.output, Some(ListFormat::Wide));
        let Command::Get(a) = parse(&["get", "demo", "-o", "name"]).command else {
            panic!()
        };
        assert_eq!(a.output, Some(ListFormat::Name));
        let Command::Scale(a) =
            parse(&["scale", "demo", "--replicas", "3", "--tier", "large"]).command
        else {
            panic!()
        };
        assert_eq!(a.replicas, Some(3));
        assert_eq!(a.tier.as_deref(), Some("large"));
        let Command::Delete(a) = parse(&["rm", "demo", "--purge", "-y"]).command else {
            panic!()
        };
        assert!(a.purge && a.yes);
        let Command::Secrets(SecretsCommand::Set(a)) = parse(&[
            "secrets",
            "set",
            "--from-literal",
            "A=1",
            "--from-env",
            "HOME",
            "--from-file",
            "k=/p",
        ])
        .command
        else {
            panic!()
        };
        assert_eq!(a.name, "devenv-secrets");
        assert_eq!(a.from_literal, vec!["A=1"]);
        let Command::Install(a) = parse(&[
            "install",
            "--webhook-url",
            "https://h:1",
            "--cert-dir",
            "/d",
            "--no-certs",
            "--image",
            "i",
        ])
        .command
        else {
            panic!()
        };
        assert_eq!(a.webhook_url.as_deref(), Some("https://h:1"));
        assert!(a.no_certs);
        let c = parse(&["status", "--install-namespace", "ops"]);
        assert_eq!(c.global.install_namespace, "ops");
        assert!(Cli::try_parse_from(["kubectl-devenv", "install", "--cert-dir", "/d"]).is_err());
    }

    #[test]
    fn tenant_flags() {
        let Command::Tenant(TenantCommand::Add(a)) = parse(&[
            "tenant",
            "add",
            "team-a",
            "--user",
            "alice",
            "--user",
            "bob",
            "--group",
            "devs",
            "--workspaces",
            "3",
            "--tier",
            "large",
            "--dry-run=client",
            "-o",
            "json",
        ])
        .command
        else {
            panic!("not tenant add")
        };
        assert_eq!(a.name, "team-a");
        assert_eq!(a.users, vec!["alice", "bob"]);
        assert_eq!(a.groups, vec!["devs"]);
        assert_eq!(a.workspaces, 3);
        assert_eq!(a.tier.as_deref(), Some("large"));
        assert_eq!(a.change.dry_run, DryRun::Client);
        assert_eq!(a.change.output, Some(ObjectFormat::Json));
        let Command::Tenant(TenantCommand::Add(a)) =
            parse(&["tenant", "add", "t", "--group", "g"]).command
        else {
            panic!("not tenant add")
        };
        assert_eq!((a.workspaces, a.tier), (1, None));
        let Command::Tenant(TenantCommand::List(a)) =
            parse(&["tenant", "ls", "-o", "name"]).command
        else {
            panic!("not tenant list")
        };
        assert_eq!(a.output, Some(ListFormat::Name));
        let Command::Tenant(TenantCommand::Remove(a)) =
            parse(&["tenant", "rm", "t", "--purge", "-y"]).command
        else {
            panic!("not tenant remove")
        };
        assert!(a.purge && a.yes);
        assert!(Cli::try_parse_from([
            "kubectl-devenv",
            "tenant",
            "add",
            "t",
            "--workspaces",
            "-1"
        ])
        .is_err());
    }

    #[test]
    fn durations() {
        let timeout = |t: &str| {
            Cli::try_parse_from(["kubectl-devenv", "create", "demo", "--timeout", t]).map(|c| {
                let Command::Create(a) = c.command else {
                    panic!("not create")
                };
                a.timeout.as_secs()
            })
        };
        assert_eq!(timeout("5m").unwrap(), 300);
        assert_eq!(timeout("1h30m").unwrap(), 5400);
        assert_eq!(timeout("45s").unwrap(), 45);
        // One grammar for every duration flag: a bare number says how to write it.
        let e = timeout("45").unwrap_err().to_string();
        assert!(e.contains(r#"invalid duration "45""#), "{e}");
        assert!(e.contains("write e.g. 45s or 45m"), "{e}");
        assert!(timeout("5x").is_err());
        assert!(timeout("").is_err());
        assert!(timeout("m").is_err());
        assert!(timeout("30m1h").is_err());
        // --timeout must be more than 0.
        let e = timeout("0").unwrap_err().to_string();
        assert!(e.contains("more than 0"), "{e}");

        let idle = |t: &str| {
            Cli::try_parse_from(["kubectl-devenv", "create", "demo", "--idle-timeout", t]).map(
                |c| {
                    let Command::Create(a) = c.command else {
                        panic!("not create")
                    };
                    a.idle_timeout
                },
            )
        };
        // Kept as written: it becomes the workspace's annotation.
        assert_eq!(idle("90m").unwrap().as_deref(), Some("90m"));
        assert_eq!(idle("0").unwrap().as_deref(), Some("0"));
        let e = idle("45").unwrap_err().to_string();
        assert!(
            e.contains(r#"invalid duration "45""#) && e.contains("write e.g. 45s or 45m"),
            "{e}"
        );
    }
}
