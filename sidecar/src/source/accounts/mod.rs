//! Account-set mode (docs/accounts.md): every MailCredential of the namespace labelled
//! `mailcred.io/account-set=<set>`, fed by ONE list+watch by label selector ([`watch`]) or a
//! directory of manifests ([`dir`]), served to the front-ends per connection through
//! [`AccountDirectory`] (the application names the account with SMTP AUTH / IMAP LOGIN).
//!
//! What is held per account is the resource (the outline: endpoints, policy, access, the
//! sealed secret) and its last use. Plaintexts are decrypted lazily on first use into a bounded
//! cache ([`cache`]): at most `cache_size` of them, each for at most the TTL, least recently
//! used evicted, mlocked while cached, zeroized once the cache and the last session let go.
//! A feed change drops the plaintext of the account it touches at once (deleted, re-sealed,
//! access revoked, lifetime ended); a timer at the earliest TTL or `spec.expiresAt` end of a
//! cached plaintext drops the rest ([`AccountSet::expire_until`]). Access and lifetime are
//! checked again on every hand-out, so a refusal never waits for a timer.
//!
//! Single flight per account: concurrent first uses of one account wait on that account's
//! own async mutex for one KMS Decrypt; different accounts decrypt in parallel. The state
//! mutex (a std one) is never held across an await.

mod cache;
pub mod dir;
mod expiry;
mod handle;
mod lookup;
mod metrics;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mailcred_core::Error;
use mailcred_core::accounts::{ACCOUNT_SET_LABEL, expired_at};
use mailcred_core::crd::MailCredential;
use mailcred_core::kms::KmsProvider;
use mailcred_core::upstream_auth::TokenSourceFactory;
use tokio::sync::Notify;

pub use metrics::AccountSetMetrics;

use super::{DropReason, KMS_TIMEOUT};
use cache::PlaintextCache;

/// What an account set serves, and how much it may hold.
#[derive(Debug, Clone)]
pub struct AccountSetConfig {
    /// The set's name (the label value), checked by `accounts::check_set_name`.
    pub set: String,
    pub namespace: String,
    /// The pod's ServiceAccount: an account that does not list it does not exist for this pod.
    pub service_account: String,
    /// Longest time a plaintext stays cached.
    pub ttl: Duration,
    /// Most plaintexts cached at once.
    pub cache_size: usize,
}

/// One account: its latest resource and when the app last used it.
struct Account {
    resource: Arc<MailCredential>,
    /// Held across the KMS call of this account only (single flight).
    flight: Arc<tokio::sync::Mutex<()>>,
    last_used: Option<SystemTime>,
}

struct State {
    accounts: HashMap<String, Account>,
    cache: PlaintextCache,
}

/// The accounts of one set, with their bounded plaintext cache.
pub struct AccountSet {
    config: AccountSetConfig,
    /// Attached after the first list ([`Self::attach`]): a missing RBAC grant fails before
    /// any cloud SDK starts, as in single-credential mode.
    opener: OnceLock<Opener>,
    kms_timeout: Duration,
    state: Mutex<State>,
    metrics: AccountSetMetrics,
    /// The first full list (or directory scan) has been applied (readiness).
    loaded: AtomicBool,
    /// Wakes the expiry timer when a plaintext is cached or a resource changes.
    changed: Notify,
    /// Handles hold the set; `account()` has only `&self`.
    me: Weak<AccountSet>,
}

/// What decrypts: the KMS providers and the OAuth token sources.
struct Opener {
    kms: Arc<dyn KmsProvider>,
    tokens: Option<Arc<dyn TokenSourceFactory>>,
}

/// Why an account may not be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    AccessRevoked,
    Expired,
}

impl AccountSet {
    /// An empty set; feed it ([`watch`], [`dir`]), then [`Self::attach`] the KMS.
    pub fn new(config: AccountSetConfig, metrics: AccountSetMetrics) -> Arc<Self> {
        let cache = PlaintextCache::new(config.cache_size);
        Arc::new_cyclic(|me| Self {
            config,
            opener: OnceLock::new(),
            kms_timeout: KMS_TIMEOUT,
            state: Mutex::new(State {
                accounts: HashMap::new(),
                cache,
            }),
            metrics,
            loaded: AtomicBool::new(false),
            changed: Notify::new(),
            me: me.clone(),
        })
    }

    /// Lets accounts be decrypted with `kms` (and OAuth ones opened with `tokens`). Until
    /// then `credential()` answers [`Error::NotLoaded`]. A second call changes nothing.
    pub fn attach(&self, kms: Arc<dyn KmsProvider>, tokens: Option<Arc<dyn TokenSourceFactory>>) {
        let _ = self.opener.set(Opener { kms, tokens });
    }

    pub fn config(&self) -> &AccountSetConfig {
        &self.config
    }

    /// Whether the first full list has been applied (readiness).
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Accounts loaded (whether or not this pod may use them).
    pub fn len(&self) -> usize {
        self.state().accounts.len()
    }

    // The registration API's (registration branch) and the tests'.
    #[allow(dead_code)]
    /// Plaintexts cached now.
    pub fn cached_plaintexts(&self) -> usize {
        self.state().cache.len()
    }

    // The registration API's (registration branch) and the tests'.
    #[allow(dead_code)]
    /// When the app last asked for account `name`'s credential (registration API `GET`);
    /// `None` if never since this sidecar started, or no such account.
    pub fn last_used(&self, name: &str) -> Option<SystemTime> {
        self.state().accounts.get(name)?.last_used
    }

    // The registration API's (registration branch) and the tests'.
    #[allow(dead_code)]
    /// The latest resource of account `name` (no plaintext in it), for the registration API.
    pub fn resource(&self, name: &str) -> Option<Arc<MailCredential>> {
        self.state().accounts.get(name).map(|a| a.resource.clone())
    }

    // The registration API's (registration branch) and the tests'.
    #[allow(dead_code)]
    /// Every loaded resource, in no particular order.
    pub fn resources(&self) -> Vec<Arc<MailCredential>> {
        self.state()
            .accounts
            .values()
            .map(|a| a.resource.clone())
            .collect()
    }

    /// Adds or updates one account from the feed; one that left the set (label, namespace)
    /// is removed. A changed account's plaintext is dropped at once if it went stale.
    pub fn apply(&self, resource: MailCredential) {
        let now = now_time();
        let mut state = self.state();
        self.apply_locked(&mut state, resource, &now);
        self.publish(&state);
        drop(state);
        self.changed.notify_one();
    }

    /// Removes account `name` (deleted, or out of the set): its plaintext goes at once.
    pub fn remove(&self, name: &str) {
        let mut state = self.state();
        if state.accounts.remove(name).is_some() {
            tracing::info!(account = %name, "account removed from the set");
        }
        self.drop_if_stale(&mut state, name, &now_time());
        self.publish(&state);
    }

    /// A full list (watch start or re-list, directory scan): applies every resource and
    /// removes the accounts it no longer holds. Marks the set loaded.
    pub fn replace_all(&self, resources: Vec<MailCredential>) {
        let now = now_time();
        let mut state = self.state();
        let mut seen = HashSet::with_capacity(resources.len());
        for resource in resources {
            if let Some(name) = resource.metadata.name.clone() {
                self.apply_locked(&mut state, resource, &now);
                seen.insert(name);
            }
        }
        let gone: Vec<String> = state
            .accounts
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            state.accounts.remove(&name);
            self.drop_if_stale(&mut state, &name, &now);
        }
        self.publish(&state);
        drop(state);
        self.loaded.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    fn apply_locked(&self, state: &mut State, resource: MailCredential, now: &Time) {
        let Some(name) = resource.metadata.name.clone() else {
            return;
        };
        if !self.belongs(&resource) {
            state.accounts.remove(&name);
            self.drop_if_stale(state, &name, now);
            return;
        }
        match state.accounts.get_mut(&name) {
            // A re-list or an unrelated metadata edit: keep the version the cache knows.
            Some(a) if same_account(&a.resource, &resource) => return,
            Some(a) => a.resource = Arc::new(resource),
            None => {
                state.accounts.insert(
                    name.clone(),
                    Account {
                        resource: Arc::new(resource),
                        flight: Arc::default(),
                        last_used: None,
                    },
                );
            }
        }
        self.drop_if_stale(state, &name, now);
    }

    /// Whether `resource` is in this set: the label and the namespace.
    fn belongs(&self, resource: &MailCredential) -> bool {
        resource.metadata.namespace.as_deref() == Some(self.config.namespace.as_str())
            && resource
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ACCOUNT_SET_LABEL))
                .is_some_and(|v| v == &self.config.set)
    }

    /// Why this pod may not use `resource` at `now`, if it may not.
    fn refusal(&self, resource: &MailCredential, now: &Time) -> Option<Refusal> {
        if !resource
            .spec
            .access
            .service_accounts
            .iter()
            .any(|a| a == &self.config.service_account)
        {
            Some(Refusal::AccessRevoked)
        } else if expired_at(resource, now) {
            Some(Refusal::Expired)
        } else {
            None
        }
    }

    /// [`Self::refusal`] as the error a front-end logs (it answers the app as for a wrong
    /// token either way).
    fn check(&self, name: &str, resource: &MailCredential, now: &Time) -> Result<(), Error> {
        match self.refusal(resource, now) {
            None => Ok(()),
            Some(Refusal::AccessRevoked) => Err(Error::AccessDenied {
                id: self.id(name),
                service_account: self.config.service_account.clone(),
            }),
            // The operator deletes it soon; until then it is as good as deleted.
            Some(Refusal::Expired) => Err(Error::Deleted { id: self.id(name) }),
        }
    }

    /// `namespace/name` of account `name`.
    fn id(&self, name: &str) -> String {
        format!("{}/{name}", self.config.namespace)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The gauges, from the state just changed.
    fn publish(&self, state: &State) {
        let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.accounts.set(as_gauge(state.accounts.len()));
        self.metrics
            .cached_plaintexts
            .set(as_gauge(state.cache.len()));
    }

    fn dropped(&self, name: &str, why: DropReason) {
        self.metrics.source.dropped(why);
        tracing::debug!(
            account = %name,
            reason = why.label(),
            "decrypted account credential dropped: {}",
            why.describe()
        );
    }
}

/// Same spec and labels: nothing the cache or the access check looks at changed.
fn same_account(a: &MailCredential, b: &MailCredential) -> bool {
    a.spec == b.spec && a.metadata.labels == b.metadata.labels
}

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cache;
#[cfg(test)]
mod tests_feeds;
#[cfg(test)]
mod tests_prop;
