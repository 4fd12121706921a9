//! Verified upstream TLS (invariant 3), written once: the SMTP and IMAP upstreams, the
//! operator's `caPem` validation and the plugin's pre-prompt checks all come here.
//!
//! Trust is the system roots, or exactly the CA bundle the spec names (it replaces the system
//! roots: that is what the envelope binds). Plaintext only when the spec says `tls: none` with
//! `insecure: true`. One crypto provider (aws-lc-rs) and one root store for the process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::crd::{TlsMode, UpstreamEndpoint};

/// Why no client configuration could be built. `Display` says what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsError {
    InvalidPem(String),
    NoCertificate,
    UnusableCertificate(String),
    NoSystemRoots,
    PlaintextNotAllowed,
    InvalidServerName(String),
    Config(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPem(e) => write!(
                f,
                "caPem is not valid PEM ({e}); give the CA certificate(s) in PEM form"
            ),
            Self::NoCertificate => write!(
                f,
                "caPem contains no PEM CERTIFICATE block; give the CA certificate(s) in PEM form, or leave caPem out to use the system roots"
            ),
            Self::UnusableCertificate(e) => write!(
                f,
                "caPem holds a certificate that cannot be a trust anchor ({e})"
            ),
            Self::NoSystemRoots => write!(
                f,
                "no system CA certificates found (install ca-certificates, or give caPem)"
            ),
            Self::PlaintextNotAllowed => write!(
                f,
                "tls: none needs insecure: true (plaintext upstream is for tests only)"
            ),
            Self::InvalidServerName(h) => write!(f, "{h:?} is not a valid TLS server name"),
            Self::Config(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The certificates of a `caPem` bundle, each usable as a trust anchor.
pub fn ca_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::InvalidPem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let mut probe = RootCertStore::empty();
    for cert in &certs {
        probe
            .add(cert.clone())
            .map_err(|e| TlsError::UnusableCertificate(e.to_string()))?;
    }
    Ok(certs)
}

/// The name the upstream's certificate must carry.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::InvalidServerName(host.to_owned()))
}

/// The client configuration for `endpoint`, or `None` for an explicitly insecure plaintext one.
pub fn for_endpoint(endpoint: &UpstreamEndpoint) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    match endpoint.tls {
        TlsMode::None if endpoint.insecure => Ok(None),
        TlsMode::None => Err(TlsError::PlaintextNotAllowed),
        TlsMode::Implicit | TlsMode::Starttls => {
            client_config(endpoint.ca_pem.as_deref()).map(Some)
        }
    }
}

/// Distinct CA bundles kept; a sidecar serves one or a few credentials (or a bounded set).
const MAX_CACHED_CONFIGS: usize = 64;

/// The configuration trusting `ca_pem`, or the system roots under `None`; built once per
/// distinct bundle (building parses every root).
pub fn client_config(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, TlsError> {
    static CACHE: OnceLock<Mutex<HashMap<Option<String>, Arc<ClientConfig>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = ca_pem.map(str::to_owned);
    if let Ok(cache) = cache.lock()
        && let Some(config) = cache.get(&key)
    {
        return Ok(config.clone());
    }
    let roots = match ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(ca_certificates(pem)?);
            roots
        }
        None => system_roots()?.clone(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    if let Ok(mut cache) = cache.lock() {
        if cache.len() >= MAX_CACHED_CONFIGS {
            cache.clear();
        }
        cache.insert(key, config.clone());
    }
    Ok(config)
}

/// The platform's roots (rustls-native-certs: /etc/ssl/certs on Debian), read once.
fn system_roots() -> Result<&'static RootCertStore, TlsError> {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    });
    if roots.is_empty() {
        Err(TlsError::NoSystemRoots)
    } else {
        Ok(roots)
    }
}

/// The TLS reason inside an I/O error from a handshake (tokio-rustls wraps `rustls::Error`
/// in the `io::Error`), found by type so callers never match on message text.
pub fn handshake_failure(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// True when the peer's certificate was refused (unknown issuer, wrong name, expired...).
pub fn is_certificate_rejection(err: &std::io::Error) -> bool {
    matches!(
        handshake_failure(err),
        Some(rustls::Error::InvalidCertificate(_))
    )
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
