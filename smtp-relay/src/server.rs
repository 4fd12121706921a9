//! The listener: accepts application connections (bounded), runs one session each, and on
//! shutdown stops accepting, lets in-flight messages finish within a grace period, then stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailcred_core::crd::RateLimits;
use mailcred_core::credential::{CredentialSource, UsableCredential};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;
use crate::error::Error;
use crate::metrics::RelayMetrics;
use crate::policy::RateLimiters;
use crate::reply::Reply;
use crate::session::Session;
use crate::upstream::{Deliver, LettreUpstream};

/// How often expired upstream pools are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// State shared by all sessions of one relay.
pub(crate) struct Shared<D> {
    pub(crate) config: RelayConfig,
    pub(crate) source: Arc<dyn CredentialSource>,
    pub(crate) metrics: RelayMetrics,
    pub(crate) upstream: D,
    rates: Mutex<Option<(String, RateLimits, Arc<RateLimiters>)>>,
    /// SIZE advertised in EHLO: the last policy seen (0 until a credential was loaded).
    size: AtomicU64,
}

impl<D> Shared<D> {
    pub(crate) fn advertised_size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    pub(crate) fn set_advertised_size(&self, size: u64) {
        self.size.store(size, Ordering::Relaxed);
    }

    /// The token buckets of this credential; rebuilt (full) when its limits change.
    pub(crate) fn rate_limiters(&self, credential: &UsableCredential) -> Arc<RateLimiters> {
        let id = credential.id();
        let limits = &credential.policy.smtp.rate_limits;
        let mut guard = match self.rates.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match guard.as_ref() {
            Some((i, l, r)) if *i == id && l == limits => r.clone(),
            _ => {
                let r = Arc::new(RateLimiters::new(limits));
                *guard = Some((id, limits.clone(), r.clone()));
                r
            }
        }
    }
}

/// The SMTP relay of one credential.
pub struct SmtpRelay<D = LettreUpstream> {
    pub(crate) shared: Arc<Shared<D>>,
}

impl SmtpRelay<LettreUpstream> {
    /// A relay that delivers through lettre to the credential's `spec.smtp`.
    pub fn new(
        config: RelayConfig,
        source: Arc<dyn CredentialSource>,
        metrics: RelayMetrics,
    ) -> Self {
        let built = metrics.upstream_pools_built.clone();
        let upstream = LettreUpstream::new(config.clone(), move || {
            built.inc();
        });
        Self::with_upstream(config, source, metrics, upstream)
    }
}

impl<D: Deliver> SmtpRelay<D> {
    /// A relay with another delivery (tests).
    pub fn with_upstream(
        config: RelayConfig,
        source: Arc<dyn CredentialSource>,
        metrics: RelayMetrics,
        upstream: D,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                source,
                metrics,
                upstream,
                rates: Mutex::new(None),
                size: AtomicU64::new(0),
            }),
        }
    }

    /// Serves until `shutdown` is cancelled, then drains within the grace period.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let shared = self.shared;
        let permits = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
        let mut sessions = JoinSet::new();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            while sessions.try_join_next().is_some() {}
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sweep.tick() => shared.upstream.sweep(),
                accepted = listener.accept() => {
                    let (mut stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "connection refused: too many open connections");
                        sessions.spawn(async move {
                            let reply = Reply::new(421, "4.7.0", "too many connections, try again later");
                            let _ = stream.write_all(&reply.to_wire()).await;
                        });
                        continue;
                    };
                    let shared = shared.clone();
                    let token = shutdown.clone();
                    sessions.spawn(async move {
                        shared.metrics.open_connections.inc();
                        Session::new(&shared, stream, token).run().await;
                        shared.metrics.open_connections.dec();
                        drop(permit);
                    });
                }
            }
        }
        drop(listener);
        let open = sessions.len();
        tracing::info!(
            open,
            "SMTP relay stopped accepting; waiting for in-flight messages"
        );
        let drained = tokio::time::timeout(shared.config.shutdown_grace, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = sessions.len(),
                "shutdown grace period over; closing remaining SMTP sessions"
            );
            sessions.abort_all();
            while sessions.join_next().await.is_some() {}
        }
        Ok(())
    }
}
