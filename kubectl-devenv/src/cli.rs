//! Command line: what a user types after `kubectl devenv`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
        default_value = devenv_shared::install::DEFAULT_NAMESPACE
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
    /// Change the number of workspace pods, or their tier / CPU / memory.
    Scale(ScaleArgs),
    /// Scale a workspace to zero, remembering its replicas (volumes are kept).
    Stop(StopStartArgs),
    /// Start a stopped workspace with the replicas it had.
    Start(StopStartArgs),
    /// Delete a workspace; its volumes are kept unless --purge.
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
    /// Manage the Secrets injected into workspaces.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Install or upgrade the admission webhook.
    Install(InstallArgs),
    /// Remove the webhook; workspaces and their data are kept.
    Uninstall(UninstallArgs),
    /// Check the webhook, its certificate, storage and network policy support.
    Status(StatusArgs),
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
    /// Container image of the workspace.
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
    /// Idle time after which the workspace may be hibernated (e.g. 8h).
    #[arg(long, value_name = "DURATION")]
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
    /// Wait until the workspace is ready, showing progress (default when stdin is a terminal).
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,
    /// Return as soon as the objects are created.
    #[arg(long, overrides_with = "wait")]
    pub no_wait: bool,
    /// How long --wait waits (e.g. 90s, 5m, 1h).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// The image `create` uses without --image: the project's workspace image,
/// whose entrypoint runs sshd on port 2222.
pub fn default_workspace_image() -> String {
    format!("ghcr.io/devenv-io/workspace:{}", env!("CARGO_PKG_VERSION"))
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
    #[command(flatten)]
    pub change: ChangeArgs,
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
    /// Also delete the volumes (all data of the workspace).
    #[arg(long)]
    pub purge: bool,
    /// Do not ask for confirmation (required for --purge without a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
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
    /// Webhook image.
    #[arg(long, default_value_t = devenv_shared::install::default_image())]
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

/// Parses `90s`, `5m`, `1h30m`, `2h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected e.g. 90s, 5m, 1h30m");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !number.is_empty() || s.is_empty() {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
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
        assert!(!a.wait && !a.no_wait);
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
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("45").unwrap().as_secs(), 45);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m").is_err());
    }
}
