//! The state all sessions of one relay share: settings, the credential source (or, in
//! account-set mode, the account directory), metrics, the upstream, the rate buckets, the
//! SIZE last seen, and the message memory budget.

mod rates;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use mailcred_core::accounts::AccountDirectory;
use mailcred_core::crd::RateLimits;
use mailcred_core::credential::{CredentialSource, UsableCredential};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::RelayConfig;
use crate::metrics::RelayMetrics;
use crate::policy::RateLimiters;
use rates::{MAX_RATE_ENTRIES, RateMap};

/// The budget counts in units of this many bytes (semaphore permits are u32).
pub(crate) const BUDGET_UNIT: usize = 1024;

pub(crate) struct Shared<U> {
    pub(crate) config: RelayConfig,
    pub(crate) source: Arc<dyn CredentialSource>,
    pub(crate) metrics: RelayMetrics,
    pub(crate) upstream: U,
    /// Account-set mode: the accounts the application may pick with AUTH (then `source` is
    /// not used).
    pub(crate) accounts: OnceLock<Arc<dyn AccountDirectory>>,
    rates: Mutex<RateMap>,
    /// SIZE advertised in EHLO: the last policy seen (0 until a credential was loaded).
    size: AtomicU64,
    /// Message bytes all sessions may hold, in [`BUDGET_UNIT`]s.
    pub(crate) message_memory: Arc<Semaphore>,
}

impl<U> Shared<U> {
    pub(crate) fn new(
        config: RelayConfig,
        source: Arc<dyn CredentialSource>,
        metrics: RelayMetrics,
        upstream: U,
    ) -> Self {
        let units = config
            .message_memory
            .div_ceil(BUDGET_UNIT)
            .min(Semaphore::MAX_PERMITS);
        Self {
            config,
            source,
            metrics,
            upstream,
            accounts: OnceLock::new(),
            rates: Mutex::new(RateMap::new(MAX_RATE_ENTRIES)),
            size: AtomicU64::new(0),
            message_memory: Arc::new(Semaphore::new(units)),
        }
    }

    pub(crate) fn advertised_size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    pub(crate) fn set_advertised_size(&self, size: u64) {
        self.size.store(size, Ordering::Relaxed);
    }

    /// The token buckets of this credential; rebuilt (full) when its limits change.
    pub(crate) fn rate_limiters(
        &self,
        credential: &UsableCredential,
        limits: &RateLimits,
    ) -> Arc<RateLimiters> {
        let mut guard = match self.rates.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.limiters(&credential.id(), limits)
    }
}

/// The share of the message memory budget one message holds; returned on drop.
#[derive(Default)]
pub(crate) struct MemoryReservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl MemoryReservation {
    pub(crate) fn bytes(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, |p| p.num_permits() * BUDGET_UNIT)
    }

    /// Grows the reservation to at least `need` bytes; false if the budget has no room.
    pub(crate) fn ensure(&mut self, budget: &Arc<Semaphore>, need: usize) -> bool {
        let have = self.bytes();
        if need <= have {
            return true;
        }
        let more = (need - have).div_ceil(BUDGET_UNIT);
        let Ok(more) = u32::try_from(more) else {
            return false;
        };
        match budget.clone().try_acquire_many_owned(more) {
            Ok(p) => {
                match self.permit.as_mut() {
                    Some(existing) => existing.merge(p),
                    None => self.permit = Some(p),
                }
                true
            }
            Err(_) => false,
        }
    }
}
