//! TLS client configurations for upstream servers, one per distinct CA bundle (system roots
//! under `None`), and the handshake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailcred_core::crd::UpstreamEndpoint;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::UpstreamIo;
use crate::error::Error;

#[derive(Default)]
pub struct TlsConfigs {
    cache: Mutex<HashMap<Option<String>, Arc<ClientConfig>>>,
}

/// Distinct CA bundles cached; a sidecar serves one or a few credentials.
const MAX_CACHED_TLS_CONFIGS: usize = 16;

impl TlsConfigs {
    pub fn get(&self, ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
        let key = ca_pem.map(str::to_owned);
        if let Ok(cache) = self.cache.lock()
            && let Some(c) = cache.get(&key)
        {
            return Ok(c.clone());
        }
        let config = Arc::new(build_client_config(ca_pem)?);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED_TLS_CONFIGS {
                cache.clear();
            }
            cache.insert(key, config.clone());
        }
        Ok(config)
    }
}

fn build_client_config(ca_pem: Option<&str>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("caPem is not valid PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("caPem holds an unusable certificate: {e}"))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates (caPem empty, or no system roots)".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

pub(super) async fn tls_handshake(
    tcp: TcpStream,
    endpoint: &UpstreamEndpoint,
    tls: &TlsConfigs,
    timeout: Duration,
) -> Result<UpstreamIo, Error> {
    let name = format!("{}:{}", endpoint.host, endpoint.port);
    let fail = |detail: String| Error::UpstreamTls {
        endpoint: name.clone(),
        detail,
    };
    let config = tls.get(endpoint.ca_pem.as_deref()).map_err(&fail)?;
    let server_name =
        ServerName::try_from(endpoint.host.clone()).map_err(|e| fail(e.to_string()))?;
    let stream = tokio::time::timeout(
        timeout,
        TlsConnector::from(config).connect(server_name, tcp),
    )
    .await
    .map_err(|_| fail(format!("no TLS handshake within {timeout:?}")))?
    .map_err(|e| fail(e.to_string()))?;
    Ok(Box::new(stream))
}
