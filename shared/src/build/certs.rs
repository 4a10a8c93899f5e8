//! Certificates for the admission webhook: a private CA and a serving
//! certificate signed by it.
//!
//! The API server only talks to webhooks over TLS and verifies the serving
//! certificate against the `caBundle` of the webhook configuration, so both the
//! plugin's `install` and `devenv-webhook gen-certs` create the pair here. The
//! keys are ECDSA P-256; the serving certificate carries `serverAuth` and the
//! Service DNS names / IP addresses it is reached by.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// Common name of the CA that signs the webhook's serving certificate.
pub const CA_COMMON_NAME: &str = "devenv-webhook-ca";
/// Common name of the serving certificate when it has no SAN to borrow one from.
pub const SERVING_COMMON_NAME: &str = "devenv-webhook";
/// How much longer the CA lives than the serving certificate it signs, so that a
/// renewal of the serving certificate near its end is still signed by a valid CA.
pub const CA_EXTRA_VALIDITY: Duration = Duration::days(365);
/// Clock skew tolerated between the machine that makes the certificate and the
/// API server that checks it.
const BACKDATE: Duration = Duration::minutes(5);

/// Errors from making or reading certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// No subject alternative name was given: the certificate would match nothing.
    #[error("at least one subject alternative name (DNS name or IP address) is required")]
    NoSubjectAltNames,
    /// The validity is zero or negative.
    #[error("certificate validity must be positive, got {0}")]
    InvalidValidity(Duration),
    /// An empty subject alternative name was given.
    #[error("empty subject alternative name")]
    EmptySan,
    /// A SAN is neither an IP address nor a valid DNS name.
    #[error("invalid subject alternative name {name:?}: {source}")]
    InvalidSan {
        /// The name as given.
        name: String,
        /// Why rcgen refused it.
        #[source]
        source: rcgen::Error,
    },
    /// Key generation or signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The input holds no PEM `CERTIFICATE` block.
    #[error("no PEM certificate found")]
    NoCertificate,
    /// The PEM or DER could not be parsed.
    #[error("invalid certificate: {0}")]
    Parse(String),
}

/// A CA and a serving certificate signed by it, all PEM-encoded.
#[derive(Clone)]
pub struct CertBundle {
    /// The CA certificate: the `caBundle` of the webhook configuration (`ca.crt`).
    pub ca_cert_pem: String,
    /// The CA private key (PKCS#8), to sign a renewed serving certificate.
    pub ca_key_pem: String,
    /// The serving certificate (`tls.crt`).
    pub cert_pem: String,
    /// The serving private key (PKCS#8, `tls.key`).
    pub key_pem: String,
}

impl std::fmt::Debug for CertBundle {
    // Never print private keys, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("ca_key_pem", &"<redacted>")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

fn san(name: &str) -> Result<SanType, CertError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(CertError::EmptySan);
    }
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = trimmed
        .to_owned()
        .try_into()
        .map_err(|source| CertError::InvalidSan {
            name: name.to_owned(),
            source,
        })?;
    Ok(SanType::DnsName(dns))
}

/// Creates a CA (CN `devenv-webhook-ca`) and a serving certificate signed by it.
///
/// `sans` are DNS names (`devenv-webhook.devenv-system.svc`) or IP addresses
/// (`127.0.0.1`, `::1`); the serving certificate is valid for `validity` from
/// now (backdated a few minutes for clock skew), the CA for a year longer.
pub fn generate(sans: &[String], validity: Duration) -> Result<CertBundle, CertError> {
    if sans.is_empty() {
        return Err(CertError::NoSubjectAltNames);
    }
    if validity <= Duration::ZERO {
        return Err(CertError::InvalidValidity(validity));
    }
    let subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<Vec<_>, _>>()?;
    let now = OffsetDateTime::now_utc();

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - BACKDATE;
    ca_params.not_after = now + validity + CA_EXTRA_VALIDITY;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_cert_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let common_name = sans
        .iter()
        .map(|s| s.trim())
        .find(|s| s.parse::<IpAddr>().is_err())
        .unwrap_or(SERVING_COMMON_NAME);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = subject_alt_names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    Ok(CertBundle {
        ca_cert_pem,
        ca_key_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The end of validity (`notAfter`) of the first certificate in `cert_pem`.
pub fn not_after(cert_pem: &str) -> Result<OffsetDateTime, CertError> {
    for pem in x509_parser::pem::Pem::iter_from_buffer(cert_pem.as_bytes()) {
        let pem = pem.map_err(|e| CertError::Parse(e.to_string()))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| CertError::Parse(e.to_string()))?;
        return Ok(cert.validity().not_after.to_datetime());
    }
    Err(CertError::NoCertificate)
}

/// Whether the certificate in `cert_pem` must be renewed at `now`: it ends within
/// `threshold`, has already ended, or cannot be read at all.
pub fn needs_renewal(cert_pem: &str, now: OffsetDateTime, threshold: Duration) -> bool {
    match not_after(cert_pem) {
        Ok(end) => end - now <= threshold,
        Err(_) => true,
    }
}

// ---------------------------------------------------------------------------
// Readers of existing certificates (`status`, install renewal, tests)
// ---------------------------------------------------------------------------

/// The DNS names and IP addresses of the first certificate in `pem`.
pub fn cert_sans(pem: &str) -> Result<Vec<String>, CertError> {
    use x509_parser::extensions::GeneralName;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| CertError::Parse(e.to_string()))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block
            .parse_x509()
            .map_err(|e| CertError::Parse(e.to_string()))?;
        let mut out = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(d) => out.push((*d).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            out.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        return Ok(out);
    }
    Err(CertError::NoCertificate)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// The PEM `CERTIFICATE` blocks of a bundle, as DER.
pub fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

/// Whether every certificate of `ca_pem` is in `bundle_pem` (compared as DER,
/// so whitespace and order do not matter).
pub fn bundle_contains(bundle_pem: &str, ca_pem: &str) -> bool {
    let bundle = pem_certificates(bundle_pem);
    let wanted = pem_certificates(ca_pem);
    !wanted.is_empty() && wanted.iter().all(|c| bundle.contains(c))
}

/// Whether the SANs of an existing certificate cover exactly what is needed.
pub fn sans_match(existing: &[String], wanted: &[String]) -> bool {
    let mut a: Vec<&String> = existing.iter().collect();
    let mut b: Vec<&String> = wanted.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn der(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        pem.contents
    }

    fn sans() -> Vec<String> {
        vec![
            "devenv-webhook.devenv-system.svc".to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ]
    }

    #[test]
    fn serving_cert_is_signed_by_the_ca_and_has_the_sans() {
        let bundle = generate(&sans(), Duration::days(30)).expect("generate");
        let ca_der = der(&bundle.ca_cert_pem);
        let leaf_der = der(&bundle.cert_pem);
        let (_, ca) = X509Certificate::from_der(&ca_der).expect("ca");
        let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("leaf");

        // The CA.
        assert_eq!(
            ca.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok()),
            Some(CA_COMMON_NAME)
        );
        assert!(ca.is_ca());
        assert_eq!(ca.subject(), ca.issuer());

        // The leaf is issued by the CA: issuer DN and authority key id match.
        assert_eq!(leaf.issuer(), ca.subject());
        assert!(!leaf.is_ca());
        let ca_ski = ca
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .expect("CA subject key identifier");
        let leaf_aki = leaf
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .expect("leaf authority key identifier");
        assert_eq!(ca_ski, leaf_aki);

        // SANs: DNS names and IP addresses, each of the right type.
        let san = leaf
            .subject_alternative_name()
            .expect("san ext")
            .expect("san present");
        let names = &san.value.general_names;
        assert!(names.contains(&GeneralName::DNSName("devenv-webhook.devenv-system.svc")));
        assert!(names.contains(&GeneralName::DNSName("localhost")));
        assert!(names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
        let v6: [u8; 16] = std::net::Ipv6Addr::LOCALHOST.octets();
        assert!(names.contains(&GeneralName::IPAddress(&v6)));
        assert_eq!(names.len(), 4);

        // serverAuth.
        let eku = leaf
            .extended_key_usage()
            .expect("eku ext")
            .expect("eku present");
        assert!(eku.value.server_auth);
    }

    #[test]
    fn validity_is_as_given_and_the_ca_lives_longer() {
        let bundle = generate(&sans(), Duration::days(10)).expect("generate");
        let now = OffsetDateTime::now_utc();
        let leaf_end = not_after(&bundle.cert_pem).expect("leaf not_after");
        let ca_end = not_after(&bundle.ca_cert_pem).expect("ca not_after");
        let diff = (leaf_end - now) - Duration::days(10);
        assert!(diff.abs() < Duration::minutes(1), "leaf ends {leaf_end}");
        assert!(ca_end > leaf_end + Duration::days(300));
    }

    #[test]
    fn renewal_threshold() {
        let bundle = generate(&sans(), Duration::days(10)).expect("generate");
        let now = OffsetDateTime::now_utc();
        assert!(!needs_renewal(&bundle.cert_pem, now, Duration::days(5)));
        assert!(needs_renewal(&bundle.cert_pem, now, Duration::days(11)));
        assert!(needs_renewal(
            &bundle.cert_pem,
            now + Duration::days(20),
            Duration::ZERO
        ));
        assert!(needs_renewal("not a certificate", now, Duration::ZERO));
    }

    #[test]
    fn each_call_makes_a_new_ca() {
        let a = generate(&sans(), Duration::days(1)).expect("a");
        let b = generate(&sans(), Duration::days(1)).expect("b");
        assert_ne!(a.ca_cert_pem, b.ca_cert_pem);
        assert_ne!(a.key_pem, b.key_pem);
        assert!(a.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{a:?}").contains(&a.key_pem));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            generate(&[], Duration::days(1)),
            Err(CertError::NoSubjectAltNames)
        ));
        assert!(matches!(
            generate(&sans(), Duration::ZERO),
            Err(CertError::InvalidValidity(_))
        ));
        assert!(matches!(
            generate(&["bad name ☃".to_owned()], Duration::days(1)),
            Err(CertError::InvalidSan { .. })
        ));
        assert!(matches!(not_after(""), Err(CertError::NoCertificate)));
        assert!(
            not_after("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
    }
}
