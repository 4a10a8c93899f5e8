//! The accept loop: TLS with a connection limit, hyper connections (HTTP/2 or HTTP/1.1 by
//! ALPN) with header and handshake deadlines, the reloads and the metrics listener in the
//! background, and a graceful drain on shutdown.

use super::app;
use super::tls;
use super::{Server, ServerLimits};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

impl Server {
    /// Serves until `shutdown` completes, then goes on serving, not ready, for the
    /// shutdown delay, then stops accepting, drains in-flight requests for up to the grace
    /// period and returns.
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
        // The reloads and the metrics listener stop when the drain is over, with the other
        // background tasks (aborted below).
        let cert_reloader = cert_reloader.on_reload(tls::report_reloads(metrics.clone()));
        background.push(tokio::spawn(
            cert_reloader.run(limits.reload_interval, std::future::pending()),
        ));
        let policy_reloader =
            policy_reloader.on_reload(super::report_policy_reloads(metrics.clone()));
        background.push(tokio::spawn(
            policy_reloader.run(limits.reload_interval, std::future::pending()),
        ));
        if let Some(l) = metrics_listener {
            background.push(tokio::spawn(crate::metrics_http::serve(
                l,
                metrics.registry(),
            )));
        }

        let builders = Arc::new(ConnBuilders::new(&limits));
        let service = TowerToHyperService::new(app::router(state.clone()));
        // HTTP/2 connections get a GOAWAY as soon as shutdown starts; HTTP/1 connections
        // first close themselves after their next response (see `h1_drain`).
        let graceful_h1 = GracefulShutdown::new();
        let graceful_h2 = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        tracing::info!(addr = %listener.local_addr()?, "listening");

        let delay = limits.shutdown_delay;
        let not_ready = state.clone();
        let shutdown = async move {
            shutdown.await;
            if !delay.is_zero() {
                not_ready.set_draining();
                tracing::info!(
                    ?delay,
                    "shutting down: not ready, still answering until the endpoints are updated"
                );
                tokio::time::sleep(delay).await;
            }
        };
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
                // Which protocol the API server's webhook client chose (ALPN), per connection.
                tracing::debug!(%peer, protocol = if h2 { "h2" } else { "http/1.1" }, "connection accepted");
                // The other protocol's watcher goes now: a watcher counts as a connection
                // of its protocol until dropped, and the shutdown waits for HTTP/1 ones.
                let (h1_watcher, h2_watcher) = watchers;
                let (watcher, builder) = if h2 {
                    drop(h1_watcher);
                    (h2_watcher, &builders.h2)
                } else {
                    drop(h2_watcher);
                    (h1_watcher, &builders.h1)
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
