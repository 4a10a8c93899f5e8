//! TLS: the serving certificate lives in an [`ArcSwap`] behind a rustls
//! [`ResolvesServerCert`], so a rotated Secret takes effect on the next handshake without a
//! restart, without dropping a request and without a lock on the handshake path.
//!
//! The certificate directory has the layout of a mounted `kubernetes.io/tls` Secret
//! (`tls.crt`, `tls.key`). The kubelet updates such a mount by swapping a `..data` symlink,
//! which file watches on `tls.crt` itself miss, so the files are polled: their contents are
//! compared with what was last loaded.

use crate::metrics::{Metrics, ReloadResult};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// File name of the certificate chain in the certificate directory.
pub const CERT_FILE: &str = "tls.crt";
/// File name of the private key in the certificate directory.
pub const KEY_FILE: &str = "tls.key";
/// ALPN protocols offered, best first: the API server speaks HTTP/2 when it is offered.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate/key pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
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

    async fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |path: PathBuf| async move {
            tokio::fs::read(&path)
                .await
                .map_err(|source| TlsError::Read { path, source })
        };
        let cert = read(self.cert.clone()).await?;
        let key = read(self.key.clone()).await?;
        Ok((cert, key))
    }
}

/// Serves whatever certificate was loaded last.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver serving `key` until [`CertResolver::set`] is called.
    pub fn new(key: CertifiedKey) -> Self {
        CertResolver {
            current: ArcSwap::from_pointee(key),
        }
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

/// Loads the certificate directory and keeps it fresh.
#[derive(Debug)]
pub struct CertReloader {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    /// The bytes of the last attempt, so an unchanged (or unchanged bad) pair is not reparsed
    /// or re-logged every tick.
    last: (Vec<u8>, Vec<u8>),
    /// Whether the current read failure was logged already.
    read_failing: bool,
}

impl CertReloader {
    /// Loads the pair now; an unusable pair is an error (the server must not start without one).
    pub async fn load(files: CertFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let (cert, key) = files.read().await?;
        let ck = certified_key(&cert, &key, &files.cert, &files.key, &provider)?;
        Ok(CertReloader {
            files,
            provider,
            resolver: Arc::new(CertResolver::new(ck)),
            last: (cert, key),
            read_failing: false,
        })
    }

    /// The resolver to put in the TLS configuration.
    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    /// Rereads the files once; swaps the certificate when they changed and make a usable pair.
    /// Returns whether a new certificate is now served.
    pub async fn check(&mut self, metrics: &Metrics) -> bool {
        let (cert, key) = match self.files.read().await {
            Ok(pair) => {
                self.read_failing = false;
                pair
            }
            Err(e) => {
                // A missing file during a Secret update is transient: keep serving, retry,
                // and say so once rather than every tick.
                if !self.read_failing {
                    tracing::warn!(error = %e, "cannot reread the serving certificate; keeping the current one");
                    self.read_failing = true;
                }
                return false;
            }
        };
        if cert == self.last.0 && key == self.last.1 {
            return false;
        }
        let result = certified_key(
            &cert,
            &key,
            &self.files.cert,
            &self.files.key,
            &self.provider,
        );
        self.last = (cert, key);
        match result {
            Ok(ck) => {
                self.resolver.set(ck);
                metrics.cert_reload(ReloadResult::Ok);
                let not_after =
                    devenv_shared::certs::not_after(&String::from_utf8_lossy(&self.last.0))
                        .map(|t| t.to_string())
                        .unwrap_or_else(|_| "unknown".to_owned());
                tracing::info!(cert = %self.files.cert.display(), %not_after, "serving certificate reloaded");
                true
            }
            Err(e) => {
                metrics.cert_reload(ReloadResult::Error);
                tracing::error!(error = %e, "new serving certificate is unusable; keeping the current one");
                false
            }
        }
    }

    /// Polls every `interval` for ever.
    pub async fn run(mut self, interval: Duration, metrics: Arc<Metrics>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.check(&metrics).await;
        }
    }
}
