//! The TLS handshake with the upstream server, with the one client configuration of
//! `mailcred_core::tls` (system roots, or the spec's caPem instead; invariant 3).

use std::time::Duration;

use mailcred_core::crd::UpstreamEndpoint;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::UpstreamIo;
use crate::error::Error;

/// Socket reads under TLS are this large. rustls asks its transport for at most 4 KiB at a
/// time, so without this buffer a FETCH body costs one `recvfrom` per 4 KiB (strace: 34,605
/// calls for 100 MB of bodies); with it, one per what the socket holds, up to this size.
/// Bounded per session, and only touched once that much data arrives at once.
const TLS_READ_BUF: usize = 64 * 1024;

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
        TlsConnector::from(config)
            .connect(server_name, BufReader::with_capacity(TLS_READ_BUF, tcp)),
    )
    .await
    .map_err(|_| fail(format!("no TLS handshake within {timeout:?}")))?
    .map_err(|e| fail(e.to_string()))?;
    Ok(Box::new(stream))
}
