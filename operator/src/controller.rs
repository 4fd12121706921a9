//! The MailCredential controller: validate, keep the per-credential Role and RoleBinding, and
//! report status and Events. Every step is idempotent; the status is patched only when it
//! changed, so a quiet cluster costs two no-op applies per credential per resync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use mailcred_core::crd::MailCredential;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::access::{self, MANAGED_BY, MANAGED_BY_LABEL};
use crate::account_roles::{self, SetRoles};
use crate::lifetime::{self, Lifetime};
use crate::metrics::Metrics;
use crate::seal_age::{RetiredKeys, Seal};
use crate::status::{self, DesiredCondition};
use crate::validation;
use crate::{Error, FIELD_MANAGER, Result};

/// Events carry at most 1 kB of note.
const MAX_EVENT_NOTE: usize = 1000;
/// Reconciles running at once; bounds API load after a restart with many credentials.
const CONCURRENCY: u16 = 8;
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    /// Publishes ReconcileFailed Events; it folds repeats into a series, so a credential that
    /// keeps failing does not flood the namespace with Events.
    pub recorder: Recorder,
    reporter: Reporter,
    pub metrics: Metrics,
    /// How often a credential is re-checked without changes.
    pub resync: Duration,
    /// Consecutive failures per `namespace/name`, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The clock for condition timestamps (fixed in tests).
    now: fn() -> Time,
    /// Keys whose credentials get the KeyRetired condition (`--retired-kms-key`).
    retired_keys: RetiredKeys,
    /// One Role + RoleBinding per account set (account_roles.rs).
    pub set_roles: SetRoles,
}

impl Context {
    pub fn new(
        client: Client,
        reporter_instance: String,
        metrics: Metrics,
        resync: Duration,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(reporter_instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            client,
            metrics,
            resync,
            failures: Mutex::default(),
            now: || Time(k8s_openapi::jiff::Timestamp::now()),
            retired_keys: RetiredKeys::default(),
            set_roles: SetRoles::default(),
        }
    }

    /// A context that flags credentials sealed with one of `keys`.
    pub fn with_retired_keys(mut self, keys: RetiredKeys) -> Self {
        self.retired_keys = keys;
        self
    }

    /// A context whose condition timestamps are `now()` (tests).
    pub fn with_clock(mut self, now: fn() -> Time) -> Self {
        self.now = now;
        self
    }

    fn failure_count(&self, key: &str, bump: bool) -> u32 {
        // A poisoned lock only means a reconcile panicked mid-update; the counts stay usable.
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if bump {
            let n = map.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        } else {
            map.remove(key);
            0
        }
    }
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    // Its own trimmed cache (kube's stream-control API, feature unstable-runtime):
    // Controller::new would keep managedFields and kubectl's last-applied copy of every spec.
    let (store, writer) = reflector::store::<MailCredential>();
    // The seal-age gauges read this term's cache; a replica that loses the Lease stops them.
    ctx.metrics.seal_ages.watch(Some(store.clone()));
    let metrics = ctx.metrics.clone();
    ctx.set_roles.attach(store.clone());
    Controller::for_stream(crate::cache::credentials(client.clone(), writer), store)
        .owns(Api::<Role>::all(client.clone()), owned.clone())
        .owns(Api::<RoleBinding>::all(client), owned)
        .with_config(ControllerConfig::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(credential = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile loop"),
            }
        })
        .await;
    metrics.seal_ages.watch(None);
    info!("controller stopped");
}

fn key(obj: &MailCredential) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// One reconcile: records metrics and, on failure, a Warning Event that says what failed.
pub async fn reconcile(obj: Arc<MailCredential>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = apply(&obj, &ctx).await;
    match &result {
        Ok(_) => {
            ctx.failure_count(&key(&obj), false);
            ctx.metrics.reconciled("ok", started.elapsed());
        }
        Err(e) => {
            ctx.metrics.reconciled(e.metric_label(), started.elapsed());
            warn!(credential = %key(&obj), error = %e, "reconcile failed");
            let event = Event {
                type_: EventType::Warning,
                reason: "ReconcileFailed".into(),
                note: Some(status::truncate(
                    format!("{e}; retrying with backoff"),
                    MAX_EVENT_NOTE,
                )),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(pe) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
                warn!(credential = %key(&obj), error = %pe, "could not publish Event");
            }
        }
    }
    result
}

/// Requeues a failed credential with exponential backoff (5 s doubling, at most 5 min).
pub fn error_policy(obj: Arc<MailCredential>, _error: &Error, ctx: Arc<Context>) -> Action {
    let n = ctx.failure_count(&key(&obj), true);
    Action::requeue(backoff(n))
}

/// Delay after the `n`-th consecutive failure.
pub fn backoff(n: u32) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

async fn apply(obj: &MailCredential, ctx: &Context) -> Result<Action> {
    let namespace = obj
        .metadata
        .namespace
        .as_deref()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let name = obj
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingMetadata("metadata.name"))?;
    let owner = obj
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("metadata.uid"))?;

    if obj.metadata.deletion_timestamp.is_some() {
        // Going away (foreground deletion): the garbage collector removes the Role and
        // RoleBinding; re-applying them would only recreate dependents of a deleted owner.
        return Ok(Action::await_change());
    }

    let now = (ctx.now)();
    if lifetime::lifetime(obj, &now) == Lifetime::Ended {
        return lifetime::delete_expired(obj, ctx).await;
    }
    let v = validation::validate(namespace, name, &obj.spec, &now);

    // RBAC first: access must follow spec.access even while the secret is being fixed, and
    // an emptied list must revoke at once. Account-set members share their set's Role.
    let role_name = match account_roles::set_of(obj) {
        Some(set) => ctx
            .set_roles
            .apply(&ctx.client, namespace, set, &v.service_accounts, ctx.resync)
            .await?
            .role()
            .to_string(),
        None => apply_own_role(ctx, namespace, name, owner, &v.service_accounts).await?,
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();

    let current = obj.status.as_ref();
    let seal = Seal::new(
        &obj.spec,
        v.sealed.as_ref().ok().map(String::as_str),
        &ctx.retired_keys,
    );
    let mut conditions = status::desired_conditions(&v, &role_name);
    conditions.extend(seal.condition(name, current));
    let generation = obj.metadata.generation;
    let desired = status::desired_status(current, &conditions, &v, &seal, generation, &now);
    if current != Some(&desired) {
        let patch = json!({
            "apiVersion": MailCredential::api_version(&()),
            "kind": MailCredential::kind(&()),
            "status": desired,
        });
        Api::<MailCredential>::namespaced(ctx.client.clone(), namespace)
            .patch_status(name, &params, &Patch::Apply(&patch))
            .await
            .map_err(Error::kube(format!(
                "patching status of MailCredential {namespace}/{name}"
            )))?;
        ctx.metrics.status_patches.inc();
        // Events after the status: if the patch fails, the same transitions are seen again on
        // retry, so each transition is announced once. A transition never repeats within
        // minutes, so a recorder per reconcile loses no series folding, and nothing stays
        // cached (a shared recorder keeps every Event for 6 minutes: ~40,000 of them when the
        // operator first meets 10,000 credentials).
        let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
        for transition in status::transitions(current, &conditions) {
            publish_transition(obj, &recorder, transition).await;
        }
    }
    // A pending link is looked at again when it expires, so the status says Expired on time.
    let next = crate::seal_request::until_expiry(&obj.spec, &now)
        .map_or(ctx.resync, |left| left.min(ctx.resync));
    // A lifetime is looked at again when it ends, so the delete is on time (lifetime.rs).
    Ok(Action::requeue(
        next.min(lifetime::next_look(obj, &now, ctx.resync)),
    ))
}

/// The credential's own Role and RoleBinding (access.rs); returns their name.
async fn apply_own_role(
    ctx: &Context,
    namespace: &str,
    name: &str,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    service_accounts: &[String],
) -> Result<String> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let role = access::role(namespace, name, owner.clone());
    let role_name = access::role_name(name);
    Api::<Role>::namespaced(ctx.client.clone(), namespace)
        .patch(&role_name, &params, &Patch::Apply(&role))
        .await
        .map_err(Error::kube(format!(
            "applying Role {namespace}/{role_name}"
        )))?;
    let binding = access::role_binding(namespace, name, service_accounts, owner);
    Api::<RoleBinding>::namespaced(ctx.client.clone(), namespace)
        .patch(&role_name, &params, &Patch::Apply(&binding))
        .await
        .map_err(Error::kube(format!(
            "applying RoleBinding {namespace}/{role_name}"
        )))?;
    Ok(role_name)
}

async fn publish_transition(obj: &MailCredential, recorder: &Recorder, c: &DesiredCondition) {
    let event = Event {
        type_: if c.is_healthy() {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: c.reason.clone(),
        note: Some(status::truncate(
            format!(
                "{} is {}: {}",
                c.type_,
                if c.status { "True" } else { "False" },
                c.message
            ),
            MAX_EVENT_NOTE,
        )),
        action: format!("Set{}", c.type_),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(credential = %key(obj), error = %e, reason = %c.reason, "could not publish Event");
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(7), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
