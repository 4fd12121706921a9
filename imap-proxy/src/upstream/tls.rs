//! The TLS handshake with the upstream server, with the one client configuration of
//! `mailcred_core::tls` (system roots, or the spec's caPem instead; invariant 3).

use std::time::Duration;

use mailcred_core::crd::UpstreamEndpoint;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::UpstreamIo;
use crate::error::Error;

pub(super) async fn tls_handshake(
    tcp: TcpStream,
    endpoint: &UpstreamEndpoint,
    timeout: Duration,
) -> Result<UpstreamIo, Error> {
    let name = format!("{}:{}", endpoint.host, endpoint.port);
    let fail = |detail: String| Error::UpstreamTls {
        endpoint: name.clone(),
        detail,
    };
    let config = mailcred_core::tls::client_config(endpoint.ca_pem.as_deref())
        .map_err(|e| fail(e.to_string()))?;
    let server_name =
        mailcred_core::tls::server_name(&endpoint.host).map_err(|e| fail(e.to_string()))?;
    let stream = tokio::time::timeout(
        timeout,
        TlsConnector::from(config).connect(server_name, tcp),
    )
    .await
    .map_err(|_| fail(format!("no TLS handshake within {timeout:?}")))?
    .map_err(|e| fail(e.to_string()))?;
    Ok(Box::new(stream))
}
