//! Leader election for the controller on a coordination.k8s.io Lease (kube-lease-manager,
//! which renews by server-side apply and so cannot double-lock). Only the controller is
//! elected: every replica serves the webhook.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::{Error, FIELD_MANAGER, Result};

/// Where and as whom to hold the Lease.
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

/// Runs `work` whenever this replica holds the Lease; stops it at once when the Lease is lost
/// (another replica may already be reconciling) and starts it again on re-acquisition.
/// Returns when `shutdown` is cancelled, after releasing the Lease.
pub async fn run_while_leader<F, Fut>(
    client: Client,
    settings: LeaseSettings,
    metrics: Metrics,
    shutdown: CancellationToken,
    work: F,
) -> Result<()>
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let duration = settings.duration.as_secs().max(2);
    let lease_error = |detail: String| Error::LeaderElection {
        lease: format!("{}/{}", settings.namespace, settings.name),
        detail,
    };
    let manager = LeaseManagerBuilder::new(client, settings.name.clone())
        .with_namespace(settings.namespace.clone())
        .with_identity(settings.identity.clone())
        .with_duration(duration)
        // Renew a third of the way before expiry: survives one slow API round trip.
        .with_grace((duration / 3).max(1))
        .with_field_manager(format!("{FIELD_MANAGER}-{}", settings.identity))
        .build()
        .await
        .map_err(|e| lease_error(e.to_string()))?;
    let (mut is_leader, lease_task) = manager.watch().await;

    'outer: loop {
        // Follower: wait for the Lease.
        while !*is_leader.borrow_and_update() {
            tokio::select! {
                changed = is_leader.changed() => {
                    if changed.is_err() {
                        return Err(lease_error("the lease manager stopped".into()));
                    }
                }
                () = shutdown.cancelled() => break 'outer,
            }
        }
        info!(lease = %settings.name, identity = %settings.identity, "acquired the Lease; starting the controller");
        metrics.leader.set(1);
        let term = shutdown.child_token();
        let running = work(term.clone());
        tokio::pin!(running);
        loop {
            tokio::select! {
                () = &mut running => break 'outer,
                changed = is_leader.changed() => {
                    if changed.is_err() || !*is_leader.borrow_and_update() {
                        // Dropping `running` stops in-flight reconciles now: the new leader
                        // must not race with them.
                        term.cancel();
                        metrics.leader.set(0);
                        warn!(lease = %settings.name, "lost the Lease; controller stopped");
                        if changed.is_err() {
                            return Err(lease_error("the lease manager stopped".into()));
                        }
                        continue 'outer;
                    }
                }
            }
        }
    }
    metrics.leader.set(0);
    // Closing the channel makes the manager release the Lease, so a successor starts at once
    // instead of waiting for expiry.
    drop(is_leader);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => info!(lease = %settings.name, "released the Lease"),
        Ok(Ok(Err(e))) => warn!(lease = %settings.name, error = %e, "could not release the Lease"),
        Ok(Err(e)) => warn!(lease = %settings.name, error = %e, "lease task failed"),
        Err(_) => {
            warn!(lease = %settings.name, "releasing the Lease timed out; it expires on its own")
        }
    }
    Ok(())
}
