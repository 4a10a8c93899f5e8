//! TLS: the serving certificate lives in an [`ArcSwap`] behind a rustls
//! [`ResolvesServerCert`], so a rotated Secret takes effect on the next handshake without a
//! restart, without dropping a request and without a lock on the handshake path.
//!
//! The certificate directory has the layout of a mounted `kubernetes.io/tls` Secret
//! (`tls.crt`, `tls.key`); a [`FileReloader`] follows the pair (polled, for the reason
//! given there) and swaps each usable new pair into the resolver's [`ArcSwap`].

use super::metrics::{Metrics, ReloadResult};
use crate::reload::{FileReloader, Reload};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of the certificate chain in the certificate directory.
pub const CERT_FILE: &str = "tls.crt";
/// File name of the private key in the certificate directory.
pub const KEY_FILE: &str = "tls.key";
/// ALPN protocols offered, best first: the API server speaks HTTP/2 when it is offered.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate/key pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `tls.crt` holds no PEM certificate.
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// `tls.crt` is not PEM.
    #[error("{}: invalid PEM certificate: {message}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `tls.key` holds no usable private key.
    #[error("{}: no usable PEM private key: {message}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key is not the certificate's, or the crypto provider refuses it.
    #[error("{} and {} do not make a usable pair: {message}", cert.display(), key.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls says.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The crypto provider: ring, chosen explicitly so that no process-wide default is needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a [`CertifiedKey`] from PEM bytes; paths are only used in error messages.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Mismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The certificate and key files of a directory.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// `DIR/tls.crt`
    pub cert: PathBuf,
    /// `DIR/tls.key`
    pub key: PathBuf,
}

impl CertFiles {
    /// The files of a Kubernetes TLS Secret mounted at `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        CertFiles {
            cert: dir.join(CERT_FILE),
            key: dir.join(KEY_FILE),
        }
    }
}

/// Serves whatever certificate was loaded last.
#[derive(Debug)]
pub struct CertResolver {
    current: Arc<ArcSwap<CertifiedKey>>,
}

impl CertResolver {
    /// A resolver serving `key` until [`CertResolver::set`] is called.
    pub fn new(key: CertifiedKey) -> Self {
        Self::sharing(Arc::new(ArcSwap::from_pointee(key)))
    }

    /// A resolver serving whatever `current` holds (a [`FileReloader`]'s value).
    pub fn sharing(current: Arc<ArcSwap<CertifiedKey>>) -> Self {
        CertResolver { current }
    }

    /// New handshakes get `key` from now on; open connections keep theirs.
    pub fn set(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// The certificate currently served (end-entity first).
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The server's TLS configuration around `resolver`: TLS 1.2 and 1.3, ALPN h2 and http/1.1.
pub fn server_config(
    resolver: Arc<CertResolver>,
    provider: Arc<CryptoProvider>,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// What the reloader's messages call the pair.
const WHAT: &str = "serving certificate";

/// Loads the pair now (an unusable pair is an error: the server must not start without
/// one) and follows it; serve it with [`CertResolver::sharing`] of its
/// [`FileReloader::current`].
pub async fn reloader(
    files: CertFiles,
    provider: Arc<CryptoProvider>,
) -> anyhow::Result<FileReloader<CertifiedKey>> {
    let paths = vec![files.cert.clone(), files.key.clone()];
    FileReloader::load(WHAT, paths, move |contents| {
        let [cert, key] = contents else {
            anyhow::bail!("expected {} and {}", CERT_FILE, KEY_FILE);
        };
        Ok(certified_key(
            cert,
            key,
            &files.cert,
            &files.key,
            &provider,
        )?)
    })
    .await
}

/// Counts the reloads in `metrics` and logs each new certificate's expiry. A pair that
/// cannot be read is not counted: a Secret update removes the files for a moment.
pub fn report_reloads(metrics: Arc<Metrics>) -> impl FnMut(Reload<'_, CertifiedKey>) + Send {
    move |event| match event {
        Reload::Loaded {
            paths, contents, ..
        } => {
            metrics.cert_reload(ReloadResult::Ok);
            let pem = contents.first().map(|pem| String::from_utf8_lossy(pem));
            let not_after = pem
                .and_then(|pem| devenv_shared::build::certs::not_after(&pem).ok())
                .map_or_else(|| "unknown".to_owned(), |t| t.to_string());
            let cert = paths.first().map(|p| p.display().to_string());
            tracing::info!(cert = cert.unwrap_or_default(), %not_after, "serving certificate reloaded");
        }
        Reload::Rejected => metrics.cert_reload(ReloadResult::Error),
        Reload::Unreadable => {}
    }
}
