//! Test harness: certificates in a temporary directory laid out like a mounted Secret, the
//! real server on an ephemeral port, and a small rustls + hyper client.
#![allow(dead_code)]

use bytes::Bytes;
use devenv_shared::build::certs;
use devenv_shared::build::certs::CertBundle;
use devenv_webhook::{AppState, KubeMode, ServeConfig, Server};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub const SANS: [&str; 3] = ["localhost", "127.0.0.1", "devenv-webhook.devenv-system.svc"];

pub fn bundle() -> CertBundle {
    let sans: Vec<String> = SANS.iter().map(|s| (*s).to_owned()).collect();
    certs::generate(&sans, time::Duration::days(1)).expect("generate certificates")
}

/// A certificate directory updated the way the kubelet updates a mounted Secret:
/// `tls.crt -> ..data/tls.crt`, `..data -> ..<version>/`, swapped atomically by rename.
pub struct CertDir {
    pub dir: tempfile::TempDir,
    version: u32,
}

impl CertDir {
    pub fn new(bundle: &CertBundle) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut this = CertDir { dir, version: 0 };
        this.write(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes());
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(Path::new("..data").join(name), this.path().join(name))
                .expect("symlink file");
        }
        this
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a new version and swaps `..data` to it in one rename.
    pub fn write(&mut self, cert: &[u8], key: &[u8]) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        let vdir = self.path().join(&version);
        std::fs::create_dir(&vdir).expect("version dir");
        std::fs::write(vdir.join("tls.crt"), cert).expect("write cert");
        std::fs::write(vdir.join("tls.key"), key).expect("write key");
        let tmp = self.path().join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).expect("symlink data");
        std::fs::rename(&tmp, self.path().join("..data")).expect("swap ..data");
    }

    pub fn rotate(&mut self, bundle: &CertBundle) {
        self.write(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes());
    }
}

pub fn fast_config(cert_dir: &Path) -> ServeConfig {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().expect("addr"), cert_dir.to_path_buf());
    config.kube = KubeMode::Off;
    config.limits.reload_interval = Duration::from_millis(100);
    config.limits.header_read_timeout = Duration::from_secs(1);
    config.limits.tls_handshake_timeout = Duration::from_secs(1);
    config.limits.shutdown_grace = Duration::from_secs(5);
    config.request_limits.body_read_timeout = Duration::from_secs(2);
    config
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: ServeConfig) -> Self {
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr().expect("local addr");
        let metrics_addr = server.metrics_addr();
        let state = server.state();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            metrics_addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    TlsConnector::from(config).connect(name, tcp).await
}

/// A response: status, body, negotiated HTTP version.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub version: hyper::Version,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// An HTTP connection over TLS, h2 or http/1.1 as negotiated.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    pub async fn open(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Self> {
        let stream = tls_connect(addr, config).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok(Conn::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok(Conn::H1(send))
        }
    }

    pub async fn send(&mut self, method: &str, path: &str, body: Vec<u8>) -> anyhow::Result<Reply> {
        let req = Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .header("host", "localhost")
            .body(Full::new(Bytes::from(body)))?;
        let resp = match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status().as_u16();
        let version = resp.version();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            body,
            version,
        })
    }
}

/// One request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    ca_pem: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<Reply> {
    let mut conn = Conn::open(addr, client_config(ca_pem, &[b"h2", b"http/1.1"])).await?;
    conn.send(method, path, body).await
}

pub fn pod(labels: serde_json::Value, container: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dev-0", "namespace": "team-a", "labels": labels},
        "spec": {"containers": [container]}
    })
}

pub fn review(uid: &str, object: serde_json::Value) -> Vec<u8> {
    let body = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "dev-0",
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    });
    serde_json::to_vec(&body).expect("json")
}

pub fn workspace_pod() -> serde_json::Value {
    pod(
        serde_json::json!({"devenv.io/workspace": "alice"}),
        serde_json::json!({"name": "dev", "image": "ghcr.io/devenv/base:1"}),
    )
}

pub fn plain_pod() -> serde_json::Value {
    pod(
        serde_json::json!({"app": "web"}),
        serde_json::json!({"name": "web", "image": "nginx:1"}),
    )
}

pub fn privileged_workspace_pod() -> serde_json::Value {
    pod(
        serde_json::json!({"devenv.io/workspace": "alice"}),
        serde_json::json!({
            "name": "dev",
            "image": "ghcr.io/devenv/base:1",
            "securityContext": {"privileged": true}
        }),
    )
}

/// Polls `cond` every 50ms for up to `within`.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
