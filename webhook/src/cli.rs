//! The command line of both programs: `devenv-webhook serve` (the admission server),
//! `devenv-webhook lifecycle` (the lifecycle controller) and `devenv-webhook gen-certs`;
//! logging; the async runtime.

use crate::controller::lease::{default_identity, LeaseConfig};
use crate::controller::ControllerConfig;
use crate::server::{self, KubeMode, ServeConfig, ServerLimits};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Admission webhook for devenv workspaces.
#[derive(Debug, Parser)]
#[command(name = "devenv-webhook", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission endpoints over HTTPS.
    Serve(ServeArgs),
    /// Write a CA and a serving certificate (ca.crt, tls.crt, tls.key) to a directory.
    GenCerts(GenCertsArgs),
    /// Run the workspace lifecycle controller: idle hibernation (after a warning) and expiry.
    Lifecycle(ControllerArgs),
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Kubernetes API use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubeArg {
    /// Use the API when a configuration is found (in-cluster or KUBECONFIG), else run without.
    Auto,
    /// Never use it: no Secret is injectable beyond the policy's, no workspace StatefulSet is known.
    Off,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS listen address.
    #[arg(long, env = "DEVENV_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Directory with tls.crt and tls.key (a mounted kubernetes.io/tls Secret); reloaded on change.
    #[arg(long, env = "DEVENV_WEBHOOK_CERT_DIR")]
    pub cert_dir: PathBuf,
    /// Policy file (YAML); reloaded on change. The built-in policy when absent.
    #[arg(long, env = "DEVENV_WEBHOOK_POLICY")]
    pub policy: Option<PathBuf>,
    /// Also serve GET /metrics over plain HTTP on this address.
    #[arg(long, env = "DEVENV_WEBHOOK_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "DEVENV_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Kubernetes API use.
    #[arg(long, env = "DEVENV_WEBHOOK_KUBE", value_enum, default_value_t = KubeArg::Auto)]
    pub kube: KubeArg,
    /// User names the devenv controllers run as, comma-separated, added to the policy's
    /// `access.controllers`: they act for workspace owners (install sets it to the devenv
    /// ServiceAccount, whose name depends on the namespace and so is not in the policy).
    #[arg(long, env = "DEVENV_CONTROLLER_USERS", value_delimiter = ',')]
    pub controller_users: Vec<String>,
    /// Connections served at once.
    #[arg(long, env = "DEVENV_WEBHOOK_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "DEVENV_WEBHOOK_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Seconds to go on answering, not ready, after SIGTERM/SIGINT and before the drain:
    /// long enough for the API server to stop routing to this replica (the in-cluster
    /// install sets 5; 0, the default, stops accepting at once, for a local process).
    #[arg(long, env = "DEVENV_WEBHOOK_SHUTDOWN_DELAY_SECS", default_value_t = 0)]
    pub shutdown_delay_secs: u64,
}

/// `gen-certs` options.
#[derive(Debug, Args)]
pub struct GenCertsArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// DNS name or IP address the webhook is reached by (repeatable), e.g.
    /// devenv-webhook.devenv-system.svc
    #[arg(long = "san", required = true, num_args = 1..)]
    pub sans: Vec<String>,
    /// Validity of the serving certificate in days (the CA lives a year longer).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// `devenv-webhook lifecycle` options.
#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// Policy file (YAML) whose `lifecycle:` section applies; reread every 30s (a bad
    /// file never replaces a good policy). The built-in defaults when absent.
    #[arg(long, env = "DEVENV_LIFECYCLE_POLICY")]
    pub policy: Option<PathBuf>,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "devenv-system")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = devenv_shared::build::install::LIFECYCLE_LEASE)]
    pub lease_name: String,
    /// This replica's identity in the Lease [default: $POD_NAME, else HOSTNAME-PID].
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Manage the workspaces of this namespace only [default: all namespaces].
    #[arg(long)]
    pub namespace: Option<String>,
    /// Plain-HTTP listen address for GET /metrics and GET /healthz.
    #[arg(
        long,
        env = "DEVENV_LIFECYCLE_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,
    /// Lease duration: how long a silent leader keeps the lease.
    #[arg(long, default_value = "15s", value_parser = duration_arg)]
    pub lease_duration: Duration,
    /// Lease renew period (the leader stops acting when it could not renew for 2/3 of
    /// the lease duration).
    #[arg(long, default_value = "5s", value_parser = duration_arg)]
    pub renew_every: Duration,
    /// Log format.
    #[arg(long, env = "DEVENV_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ControllerArgs {
    /// The controller configuration these options describe.
    pub fn config(&self) -> ControllerConfig {
        ControllerConfig {
            lease: LeaseConfig {
                namespace: self.lease_namespace.clone(),
                name: self.lease_name.clone(),
                identity: self.identity.clone().unwrap_or_else(default_identity),
                lease_duration: self.lease_duration,
                renew_every: self.renew_every,
            },
            namespace: self.namespace.clone(),
            policy_file: self.policy.clone(),
            metrics_listen: self.metrics_listen,
        }
    }
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    let d = devenv_shared::model::duration::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!("invalid duration {s:?}: must be more than 0"));
    }
    Ok(d)
}

impl ServeArgs {
    /// The server configuration these options describe.
    pub fn config(&self) -> ServeConfig {
        let mut config = ServeConfig::new(self.listen, self.cert_dir.clone());
        config.policy_file.clone_from(&self.policy);
        config.controller_users = self
            .controller_users
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        config.metrics_listen = self.metrics_listen;
        config.kube = match self.kube {
            KubeArg::Auto => KubeMode::Auto,
            KubeArg::Off => KubeMode::Off,
        };
        config.limits = ServerLimits {
            max_connections: self.max_connections,
            shutdown_delay: Duration::from_secs(self.shutdown_delay_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            ..ServerLimits::default()
        };
        config
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr; stdout stays free for command output.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: cannot set up logging: {e}");
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `gen-certs`: writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `args.out`.
pub fn gen_certs(args: &GenCertsArgs) -> anyhow::Result<Vec<PathBuf>> {
    let bundle = devenv_shared::build::certs::generate(
        &args.sans,
        time::Duration::days(i64::from(args.days.max(1))),
    )?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let files = [
        ("ca.crt", bundle.ca_cert_pem.as_str(), 0o644),
        (
            crate::server::tls::CERT_FILE,
            bundle.cert_pem.as_str(),
            0o644,
        ),
        (crate::server::tls::KEY_FILE, bundle.key_pem.as_str(), 0o600),
    ];
    let mut written = Vec::new();
    for (name, contents, mode) in files {
        let path = args.out.join(name);
        write_file(&path, contents, mode)?;
        written.push(path);
    }
    Ok(written)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let config = args.config();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let result = runtime.block_on(server::serve(config));
            // Do not wait for tasks still running (watchers, leftover connections).
            runtime.shutdown_timeout(Duration::from_secs(1));
            if let Err(e) = &result {
                tracing::error!(error = format!("{e:#}"), "devenv-webhook stopped");
            }
            result
        }
        Command::Lifecycle(args) => {
            init_logging(args.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let result = runtime.block_on(crate::controller::run(args.config()));
            runtime.shutdown_timeout(Duration::from_secs(1));
            if let Err(e) = &result {
                tracing::error!(error = format!("{e:#}"), "devenv-webhook lifecycle stopped");
            }
            result
        }
        Command::GenCerts(args) => {
            for path in gen_certs(&args)? {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    // The lifecycle controller's registry client (reqwest, for scheduled backups) takes the
    // process's rustls provider; the admission server names its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_args() {
        assert_eq!(duration_arg("15s"), Ok(Duration::from_secs(15)));
        assert!(duration_arg("0").is_err());
        assert!(duration_arg("fast").unwrap_err().contains("\"fast\""));
    }
}
