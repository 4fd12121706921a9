//! Listeners: loopback only, unless explicitly (and loudly) told otherwise.

use std::net::SocketAddr;

use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "{what} listener {addr} is not a loopback address; the sidecar serves its own pod only. Use 127.0.0.1 / ::1, or pass --unsafe-listen-any if you really mean to expose the mail account"
    )]
    NotLoopback {
        what: &'static str,
        addr: SocketAddr,
    },
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Checks the address policy without binding.
pub fn check(what: &'static str, addr: SocketAddr, allow_any: bool) -> Result<(), ListenError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if allow_any {
        tracing::error!(
            %addr,
            what,
            "UNSAFE: listening on a non-loopback address (--unsafe-listen-any); anyone who can reach it can send as this mail account"
        );
        return Ok(());
    }
    Err(ListenError::NotLoopback { what, addr })
}

pub async fn bind(
    what: &'static str,
    addr: SocketAddr,
    allow_any: bool,
) -> Result<TcpListener, ListenError> {
    check(what, addr, allow_any)?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { what, addr, source })
}

/// The metrics listener: any address, since it serves counters only (no credential, no
/// name of one, no health endpoint), which is what a Prometheus in another pod must reach.
pub async fn bind_metrics(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    if !addr.ip().is_loopback() {
        tracing::info!(%addr, "metrics listener on a non-loopback address (serves /metrics only)");
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind {
            what: "metrics",
            addr,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_accepted_anything_else_refused() {
        for ok in ["127.0.0.1:2525", "127.3.4.5:1", "[::1]:2525"] {
            assert!(check("smtp", ok.parse().unwrap(), false).is_ok(), "{ok}");
        }
        for bad in [
            "0.0.0.0:2525",
            "[::]:2525",
            "10.0.0.1:25",
            "192.168.1.2:2525",
        ] {
            let err = check("smtp", bad.parse().unwrap(), false).unwrap_err();
            assert!(err.to_string().contains("--unsafe-listen-any"), "{bad}");
            assert!(check("smtp", bad.parse().unwrap(), true).is_ok(), "{bad}");
        }
    }
}
