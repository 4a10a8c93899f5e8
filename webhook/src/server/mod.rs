//! `devenv-webhook serve`: the admission server.
//!
//! * [`app`]: the routes and handlers (`/mutate`, `/validate`, `/healthz`, `/readyz`,
//!   `/metrics`) around one [`AppState`];
//! * [`listener`]: the HTTPS accept loop and the graceful drain ([`Server::run`]);
//! * [`tls`]: the serving certificate, hot-reloaded; the policy file is followed the same
//!   way ([`crate::policy`]);
//! * [`cluster`]: with Kubernetes API access, watch caches of the injectable Secrets, the
//!   workspace StatefulSets, claims and workspace pods; [`owner_index`]: their claims and
//!   pods by workspace label, so an owner lookup is one hash lookup, not a scan;
//! * [`metrics`]: the server's Prometheus metrics.
//!
//! This module binds it all ([`Server::bind`]).

pub mod app;
pub mod cluster;
pub mod listener;
pub mod metrics;
pub mod owner_index;
pub mod tls;

use crate::reload::{FileReloader, Reload};
use anyhow::Context as _;
use app::{AppState, RequestLimits};
use cluster::ClusterCaches;
use devenv_shared::model::policy::Policy;
use metrics::{Metrics, ReloadResult};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tls::{CertFiles, CertResolver};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Whether to use the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubeMode {
    /// Use it when a configuration is found (in-cluster environment or kubeconfig);
    /// run without it otherwise.
    #[default]
    Auto,
    /// Never: no Secret is injectable beyond the policy's, no workspace StatefulSet is known.
    Off,
}

/// Connection-level limits and timings.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// The TLS handshake must finish within this.
    pub tls_handshake_timeout: Duration,
    /// HTTP/1 request headers must arrive within this (also closes idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// HTTP/2 keep-alive ping interval (a peer that does not answer is dropped).
    pub h2_keep_alive_interval: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// How often the certificate and policy files are checked for changes.
    pub reload_interval: Duration,
    /// After a shutdown signal, how long to go on accepting and answering while readiness
    /// fails, before the drain starts. A terminating pod leaves its Service's endpoints
    /// only when the endpoint controller and then the API server's endpoint cache have
    /// seen it: a webhook that stopped accepting at once would refuse the requests routed
    /// to it meanwhile, and with `failurePolicy: Fail` each refusal is a failed admission.
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// During shutdown, how long idle HTTP/1 keep-alive connections are left open (capped at
    /// half the grace period) so that a request already on its way is still answered, with
    /// `Connection: close`, before they are closed.
    pub h1_drain: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            h2_keep_alive_interval: Duration::from_secs(30),
            h2_max_concurrent_streams: 250,
            reload_interval: Duration::from_secs(2),
            shutdown_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(20),
            h1_drain: Duration::from_secs(5),
        }
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// Directory holding `tls.crt` and `tls.key`.
    pub cert_dir: PathBuf,
    /// Policy file; the built-in default policy when absent.
    pub policy_file: Option<PathBuf>,
    /// Users the devenv controllers run as, added to the policy's `access.controllers`.
    pub controller_users: Vec<String>,
    /// Plain-HTTP listen address for `GET /metrics`, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Kubernetes API use.
    pub kube: KubeMode,
    /// Connection limits.
    pub limits: ServerLimits,
    /// Request limits.
    pub request_limits: RequestLimits,
}

impl ServeConfig {
    /// Defaults for everything but the listen address and certificate directory.
    pub fn new(listen: SocketAddr, cert_dir: PathBuf) -> Self {
        ServeConfig {
            listen,
            cert_dir,
            policy_file: None,
            controller_users: Vec::new(),
            metrics_listen: None,
            kube: KubeMode::Auto,
            limits: ServerLimits::default(),
            request_limits: RequestLimits::default(),
        }
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    acceptor: TlsAcceptor,
    state: AppState,
    limits: ServerLimits,
    cert_reloader: FileReloader<CertifiedKey>,
    /// A fixed policy when there is no policy file.
    policy_reloader: FileReloader<Policy>,
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.listener.local_addr().ok())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

async fn kube_client(mode: KubeMode) -> Option<kube::Client> {
    match mode {
        KubeMode::Off => {
            tracing::info!("Kubernetes API use is off: no Secret is injectable and no workspace StatefulSet is known");
            None
        }
        KubeMode::Auto => match kube::Client::try_default().await {
            Ok(client) => {
                tracing::info!("Kubernetes API configuration found: watching injectable Secrets, workspace StatefulSets, claims and workspace pods");
                Some(client)
            }
            Err(e) => {
                tracing::info!(reason = %e,
                    "no Kubernetes API access: no Secret is injectable and no workspace StatefulSet is known");
                None
            }
        },
    }
}

impl Server {
    /// Loads certificates and policy (refusing bad ones), connects to the Kubernetes API when
    /// configured, and binds the listeners.
    pub async fn bind(config: ServeConfig) -> anyhow::Result<Server> {
        let provider = tls::provider();
        let cert_reloader = tls::reloader(CertFiles::in_dir(&config.cert_dir), provider.clone())
            .await
            .context("cannot load the serving certificate")?;
        let resolver = Arc::new(CertResolver::sharing(cert_reloader.current()));
        let tls_config = tls::server_config(resolver, provider)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls_config));

        let policy_reloader = match &config.policy_file {
            Some(path) => {
                crate::policy::reloader_with(path.clone(), config.controller_users.clone())
                    .await
                    .context("refusing to start with an invalid policy")?
            }
            None => crate::policy::built_in_with(config.controller_users.clone()),
        };

        let metrics = Arc::new(Metrics::new());
        let mut builder = AppState::builder(policy_reloader.current())
            .metrics(metrics)
            .limits(config.request_limits);
        let mut background = Vec::new();
        if let Some(client) = kube_client(config.kube).await {
            let (caches, tasks) = ClusterCaches::start(client);
            background.extend(tasks);
            builder = builder.caches(caches);
        }
        let state = builder.build();

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(crate::metrics_http::bind(addr).await?),
            None => None,
        };
        Ok(Server {
            listener,
            metrics_listener,
            acceptor,
            state,
            limits: config.limits,
            cert_reloader,
            policy_reloader,
            background,
        })
    }

    /// The HTTPS address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The plain-HTTP metrics address actually bound, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The handlers' state.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }
}

/// Counts the policy reloads in `metrics` (a file that cannot be read counts as an error
/// once per failing streak) and logs each good one.
fn report_policy_reloads(metrics: Arc<Metrics>) -> impl FnMut(Reload<'_, Policy>) + Send {
    move |event| match event {
        Reload::Loaded { paths, .. } => {
            metrics.policy_reload(ReloadResult::Ok);
            let path = paths.first().map(|p| p.display().to_string());
            tracing::info!(path = path.unwrap_or_default(), "policy reloaded");
        }
        Reload::Rejected | Reload::Unreadable => metrics.policy_reload(ReloadResult::Error),
    }
}

/// Binds and serves until SIGTERM/SIGINT, then drains and returns.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    server.run(crate::signal::shutdown_signal()).await
}
