//! rustls client configuration and inspection of the certificate a server serves.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Reads every `CERTIFICATE` block of a PEM file.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    pem_certs(&pem).with_context(|| format!("parsing {}", path.display()))
}

/// Parses every `CERTIFICATE` block of PEM text.
pub fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut &pem[..]).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        bail!("no PEM certificate");
    }
    Ok(certs)
}

/// A TLS 1.2/1.3 client (ring provider, like the webhook) trusting exactly the
/// CA certificates in `ca_files`, as the API server trusts the `caBundle`, and
/// offering only `http/1.1` by ALPN.
pub fn client_config(ca_files: &[impl AsRef<Path>]) -> Result<Arc<ClientConfig>> {
    let mut pems = Vec::new();
    for f in ca_files {
        pems.push(
            std::fs::read(f.as_ref())
                .with_context(|| format!("reading {}", f.as_ref().display()))?,
        );
    }
    client_config_from_pems(&pems)
}

/// Like [`client_config`], from PEM text.
pub fn client_config_from_pems(pems: &[impl AsRef<[u8]>]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for pem in pems {
        for cert in pem_certs(pem.as_ref())? {
            roots.add(cert).context("adding CA certificate")?;
        }
    }
    if roots.is_empty() {
        bail!("no CA certificate given");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 keep-alive, one request at a time per connection, as the API server's
    // webhook client does; the webhook also offers h2, so ask explicitly.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Opens TCP (no Nagle) and completes the TLS handshake within `timeout`.
pub async fn connect(
    addr: SocketAddr,
    server_name: &ServerName<'static>,
    config: &Arc<ClientConfig>,
    timeout: Duration,
) -> std::io::Result<TlsStream<TcpStream>> {
    let fut = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        TlsConnector::from(Arc::clone(config))
            .connect(server_name.clone(), tcp)
            .await
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect/TLS handshake timed out",
        )),
    }
}

/// The leaf certificate a fresh TLS handshake to `addr` is served.
pub async fn served_certificate(
    addr: SocketAddr,
    server_name: &ServerName<'static>,
    config: &Arc<ClientConfig>,
) -> Result<CertificateDer<'static>> {
    let tls = connect(addr, server_name, config, Duration::from_secs(5)).await?;
    let (_, conn) = tls.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| anyhow!("server sent no certificate"))?;
    Ok(leaf.clone().into_owned())
}

/// SHA-256 fingerprint of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// Serial number of a DER certificate, lowercase hex.
pub fn serial(der: &[u8]) -> Result<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow!("parsing certificate: {e}"))?;
    Ok(hex(cert.raw_serial()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
