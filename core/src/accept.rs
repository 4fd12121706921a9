//! The accept loop both front-ends run: loopback only (DESIGN invariant 2), a bounded number
//! of open connections (one over the limit hears the protocol's refusal and is closed, without
//! holding up the loop or starting a task: a flood of refused connections costs nothing that
//! outlives its accept), a back-off when accepting fails (EMFILE and the like) instead of a
//! busy loop, and on shutdown: stop accepting, give open sessions a grace period, then end
//! what is left.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long the loop waits after a failed accept: long enough not to spin while the process
/// is out of descriptors, short enough to serve again soon after one is freed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a front-end's listener is bound by.
#[derive(Clone, Debug)]
pub struct AcceptRules {
    /// The front-end's name in log lines ("SMTP relay", "IMAP proxy").
    pub name: &'static str,
    pub max_connections: usize,
    /// Written to a connection over the limit before it is closed.
    pub refusal: &'static [u8],
    /// How long open sessions may go on after shutdown.
    pub shutdown_grace: Duration,
    /// Serve on a non-loopback address (`--unsafe-listen-any`).
    pub allow_non_loopback: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("{name} listener has no address: {source}")]
    NoAddress {
        name: &'static str,
        source: std::io::Error,
    },
    #[error(
        "refusing to serve the {name} on non-loopback address {address}: applications must reach the sidecar only from inside the pod"
    )]
    NotLoopback {
        name: &'static str,
        address: SocketAddr,
    },
}

/// Accepts connections until `shutdown` is cancelled, running `session` for each (it sees
/// the same `shutdown` and should wind down when it is cancelled), then drains within the
/// grace period and aborts what is left. `refused` is called for each connection turned away
/// at the limit (for a metric or a log line).
pub async fn serve_connections<S, F>(
    listener: TcpListener,
    rules: &AcceptRules,
    shutdown: CancellationToken,
    refused: impl Fn(SocketAddr),
    session: S,
) -> Result<(), AcceptError>
where
    S: Fn(TcpStream, SocketAddr, CancellationToken) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    serve_from(listener, rules, shutdown, refused, session).await
}

/// Where the loop takes its connections from: a `TcpListener`, or in the tests one whose
/// accepts fail on cue (a process cannot be run out of descriptors on cue).
trait ConnectionSource {
    fn local_addr(&self) -> io::Result<SocketAddr>;
    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)>;
}

impl ConnectionSource for TcpListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        TcpListener::accept(self).await
    }
}

async fn serve_from<L, S, F>(
    listener: L,
    rules: &AcceptRules,
    shutdown: CancellationToken,
    refused: impl Fn(SocketAddr),
    session: S,
) -> Result<(), AcceptError>
where
    L: ConnectionSource,
    S: Fn(TcpStream, SocketAddr, CancellationToken) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let name = rules.name;
    let local = listener
        .local_addr()
        .map_err(|source| AcceptError::NoAddress { name, source })?;
    if !local.ip().is_loopback() && !rules.allow_non_loopback {
        return Err(AcceptError::NotLoopback {
            name,
            address: local,
        });
    }
    tracing::info!(address = %local, "{name} listening");
    let permits = Arc::new(Semaphore::new(rules.max_connections.max(1)));
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "{name}: accepting a connection failed");
                        // Shutdown cuts the back-off short: out of descriptors, every accept
                        // fails at once, and the select above may pick it over the shutdown.
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        }
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "{name}: connection refused: too many open connections");
                    refused(peer);
                    // A fresh socket's send buffer is empty and the refusal is one short line,
                    // so a non-blocking write takes it whole; one that cannot is closed unread.
                    let _ = stream.try_write(rules.refusal);
                    drop(stream);
                    continue;
                };
                let run = session(stream, peer, shutdown.clone());
                sessions.spawn(async move {
                    run.await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tracing::info!(
        open = sessions.len(),
        "{name} stopped accepting; waiting for open sessions"
    );
    let drained = tokio::time::timeout(rules.shutdown_grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = sessions.len(),
            "{name}: shutdown grace period over; closing the remaining sessions"
        );
        sessions.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
#[path = "accept_tests.rs"]
mod tests;
