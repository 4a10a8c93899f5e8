//! The HTTPS server: a TLS accept loop with a connection limit, hyper connections
//! (HTTP/2 or HTTP/1.1 by ALPN) with header and handshake deadlines, certificate and policy
//! reloads in the background, and a graceful drain on shutdown.

use crate::app::{self, AppState, RequestLimits};
use crate::cluster::{ClaimEnsurer, SecretStoreCatalog};
use crate::metrics::Metrics;
use crate::policy_watch::PolicyReloader;
use crate::tls::{self, CertFiles, CertReloader};
use anyhow::Context as _;
use arc_swap::ArcSwap;
use devenv_shared::policy::Policy;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Whether to use the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubeMode {
    /// Use it when a configuration is found (in-cluster environment or kubeconfig);
    /// run without it otherwise.
    #[default]
    Auto,
    /// Never: empty Secret catalog, claims not created.
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
    cert_reloader: CertReloader,
    policy_reloader: Option<PolicyReloader>,
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
            tracing::info!("Kubernetes API use is off: no Secret catalog, claims not created");
            None
        }
        KubeMode::Auto => match kube::Client::try_default().await {
            Ok(client) => {
                tracing::info!("Kubernetes API configuration found: watching injectable Secrets, creating bare pods' claims");
                Some(client)
            }
            Err(e) => {
                tracing::info!(reason = %e,
                    "no Kubernetes API access: no Secret is injectable and claims are not created");
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
        let cert_reloader =
            CertReloader::load(CertFiles::in_dir(&config.cert_dir), provider.clone())
                .await
                .context("cannot load the serving certificate")?;
        let tls_config = tls::server_config(cert_reloader.resolver(), provider)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls_config));

        let (policy, policy_reloader) = match &config.policy_file {
            Some(path) => {
                let reloader = PolicyReloader::load(path.clone())
                    .context("refusing to start with an invalid policy")?;
                (reloader.shared(), Some(reloader))
            }
            None => (Arc::new(ArcSwap::from_pointee(Policy::default())), None),
        };

        let metrics = Arc::new(Metrics::new());
        let mut builder = AppState::builder(policy)
            .metrics(metrics)
            .limits(config.request_limits);
        let mut background = Vec::new();
        if let Some(client) = kube_client(config.kube).await {
            let (catalog, task) = SecretStoreCatalog::start(client.clone());
            background.push(task);
            builder = builder
                .secret_store(catalog)
                .claims(ClaimEnsurer::new(client));
        }
        let state = builder.build();

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for metrics"))?,
            ),
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

    /// Serves until `shutdown` completes, then stops accepting, drains in-flight requests
    /// for up to the grace period and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Server {
            listener,
            metrics_listener,
            acceptor,
            state,
            limits,
            cert_reloader,
            policy_reloader,
            mut background,
        } = self;
        let metrics = state.metrics().clone();
        background.push(tokio::spawn(
            cert_reloader.run(limits.reload_interval, metrics.clone()),
        ));
        if let Some(reloader) = policy_reloader {
            background.push(tokio::spawn(
                reloader.run(limits.reload_interval, metrics.clone()),
            ));
        }
        if let Some(l) = metrics_listener {
            let addr = l
                .local_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            let router = app::metrics_router(state.clone());
            background.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(l, router).await {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            }));
            tracing::info!(addr = %addr, "serving metrics over plain HTTP");
        }

        let builders = Arc::new(ConnBuilders::new(&limits));
        let service = TowerToHyperService::new(app::router(state.clone()));
        // HTTP/2 connections get a GOAWAY as soon as shutdown starts; HTTP/1 connections
        // first close themselves after their next response (see `h1_drain`).
        let graceful_h1 = GracefulShutdown::new();
        let graceful_h2 = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        tracing::info!(addr = %listener.local_addr()?, "listening");

        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break, // the semaphore is never closed
                },
            };
            let (tcp, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // e.g. EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let acceptor = acceptor.clone();
            let builders = builders.clone();
            let service = service.clone();
            let watchers = (graceful_h1.watcher(), graceful_h2.watcher());
            let handshake_timeout = limits.tls_handshake_timeout;
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _open = metrics.connection_opened();
                let stream =
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                let (watcher, builder) = if h2 {
                    (watchers.1, &builders.h2)
                } else {
                    (watchers.0, &builders.h1)
                };
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }

        drop(listener);
        state.set_draining();
        let deadline = tokio::time::Instant::now() + limits.shutdown_grace;
        tracing::info!(
            http1 = graceful_h1.count(),
            http2 = graceful_h2.count(),
            grace = ?limits.shutdown_grace,
            "shutting down: no new connections, draining in-flight requests"
        );
        let h2_drained = tokio::spawn(graceful_h2.shutdown());
        // HTTP/1: every response now says `Connection: close`, so busy connections end
        // after their current request; give idle ones a moment before closing them.
        let h1_deadline =
            tokio::time::Instant::now() + limits.h1_drain.min(limits.shutdown_grace / 2);
        while graceful_h1.count() > 0 && tokio::time::Instant::now() < h1_deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drained = async move {
            graceful_h1.shutdown().await;
            let _ = h2_drained.await;
        };
        tokio::select! {
            () = drained => tracing::info!("all connections drained"),
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!("grace period over; closing the remaining connections");
            }
        }
        for task in background {
            task.abort();
        }
        Ok(())
    }
}

/// One builder per protocol, so the protocol chosen by ALPN is served without sniffing
/// the first bytes (which no timeout would cover).
struct ConnBuilders {
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl ConnBuilders {
    fn new(limits: &ServerLimits) -> Self {
        let mut base = auto::Builder::new(TokioExecutor::new());
        base.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        base.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.h2_keep_alive_interval)
            .keep_alive_timeout(Duration::from_secs(20))
            .max_concurrent_streams(limits.h2_max_concurrent_streams);
        ConnBuilders {
            h1: base.clone().http1_only(),
            h2: base.http2_only(),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Binds and serves until SIGTERM/SIGINT, then drains and returns.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    server.run(shutdown_signal()).await
}
