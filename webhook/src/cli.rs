//! The command line: `devenv-webhook serve` and `devenv-webhook gen-certs`.

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
    Lifecycle(crate::lifecycle::LifecycleArgs),
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
    /// Never use it: no Secret is injectable, claims are not created.
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
    /// Connections served at once.
    #[arg(long, env = "DEVENV_WEBHOOK_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "DEVENV_WEBHOOK_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
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

impl ServeArgs {
    /// The server configuration these options describe.
    pub fn config(&self) -> ServeConfig {
        let mut config = ServeConfig::new(self.listen, self.cert_dir.clone());
        config.policy_file.clone_from(&self.policy);
        config.metrics_listen = self.metrics_listen;
        config.kube = match self.kube {
            KubeArg::Auto => KubeMode::Auto,
            KubeArg::Off => KubeMode::Off,
        };
        config.limits = ServerLimits {
            max_connections: self.max_connections,
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
    let bundle = devenv_shared::certs::generate(
        &args.sans,
        time::Duration::days(i64::from(args.days.max(1))),
    )?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let files = [
        ("ca.crt", bundle.ca_cert_pem.as_str(), 0o644),
        (crate::tls::CERT_FILE, bundle.cert_pem.as_str(), 0o644),
        (crate::tls::KEY_FILE, bundle.key_pem.as_str(), 0o600),
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
            let result = runtime.block_on(crate::lifecycle::run(args));
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
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
