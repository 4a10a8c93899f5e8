//! The one plain-HTTP metrics server of each program: `GET /metrics` (a prometheus-client
//! [`Registry`] in the OpenMetrics text format) and `GET /healthz`. The admission server
//! runs it on `--metrics-listen` when asked, the lifecycle controller always.

use anyhow::Context as _;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders every metric of `registry` in the OpenMetrics text format (empty if a metric
/// cannot be encoded, which prometheus-client only reports for a broken writer).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// `GET /metrics` and `GET /healthz` over `registry`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(&registry)) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
}

/// Binds the metrics address (so a taken port stops the program at startup).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))
}

/// Serves [`router`] on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    tracing::info!(addr = %addr, "serving /metrics and /healthz over plain HTTP");
    if let Err(e) = axum::serve(listener, router(registry)).await {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[tokio::test]
    async fn serves_metrics_and_health_over_plain_http() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("devenv_test_things", "Things", counter.clone());
        counter.inc();
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(registry)));
        let get = |path: &'static str| async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut reply = String::new();
            tcp.read_to_string(&mut reply).await.unwrap();
            reply
        };
        let metrics = get("/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(
            metrics.contains(&format!("content-type: {CONTENT_TYPE}")),
            "{metrics}"
        );
        assert!(metrics.contains("devenv_test_things_total 1"), "{metrics}");
        assert!(metrics.ends_with("# EOF\n"), "{metrics}");
        let health = get("/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("\r\n\r\nok"), "{health}");
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        server.abort();
    }
}
