//! The token buckets of every credential the relay has sent for, keyed by credential id.
//! One sidecar may serve an account set of thousands of accounts, so the map is bounded: past
//! [`MAX_RATE_ENTRIES`] the least recently used account's buckets are dropped (they start
//! full again if that account sends later).

use std::collections::HashMap;
use std::sync::Arc;

use mailcred_core::crd::RateLimits;

use crate::policy::RateLimiters;

/// Accounts whose buckets are kept (the scale: 10,000 accounts per sidecar).
pub(crate) const MAX_RATE_ENTRIES: usize = 10_000;

struct Entry {
    limiters: Arc<RateLimiters>,
    /// Value of the map's clock at the last use (least recently used = smallest).
    used: u64,
}

/// Bounded map from credential id to its token buckets.
pub(crate) struct RateMap {
    entries: HashMap<String, Entry>,
    clock: u64,
    capacity: usize,
}

impl RateMap {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            clock: 0,
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The buckets of credential `id`; rebuilt (full) when its limits changed.
    pub(crate) fn limiters(&mut self, id: &str, limits: &RateLimits) -> Arc<RateLimiters> {
        self.clock += 1;
        let clock = self.clock;
        if let Some(entry) = self.entries.get_mut(id) {
            entry.used = clock;
            if entry.limiters.limits() != limits {
                entry.limiters = Arc::new(RateLimiters::new(limits));
            }
            return entry.limiters.clone();
        }
        if self.entries.len() >= self.capacity {
            // A linear scan, only when a new account arrives at a full map: cheaper than
            // keeping an order on every use, and bounded by the capacity.
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        let limiters = Arc::new(RateLimiters::new(limits));
        self.entries.insert(
            id.to_owned(),
            Entry {
                limiters: limiters.clone(),
                used: clock,
            },
        );
        limiters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32) -> RateLimits {
        RateLimits {
            messages_per_minute: Some(per_minute),
            ..Default::default()
        }
    }

    #[test]
    fn buckets_are_per_credential_and_survive_other_credentials() {
        let mut map = RateMap::new(10);
        let a = map.limiters("ns/a", &limits(1));
        assert!(a.take(1).is_ok());
        // B's use does not reset A's bucket (the single slot of before did).
        let b = map.limiters("ns/b", &limits(1));
        assert!(b.take(1).is_ok());
        let a_again = map.limiters("ns/a", &limits(1));
        assert!(Arc::ptr_eq(&a, &a_again));
        assert!(
            a_again.take(1).is_err(),
            "A's one message per minute is used up"
        );
    }

    #[test]
    fn changed_limits_rebuild_the_buckets() {
        let mut map = RateMap::new(10);
        let a = map.limiters("ns/a", &limits(1));
        assert!(a.take(1).is_ok());
        let a2 = map.limiters("ns/a", &limits(5));
        assert!(!Arc::ptr_eq(&a, &a2));
        assert!(a2.take(1).is_ok());
    }

    #[test]
    fn the_map_is_bounded_and_evicts_the_least_recently_used() {
        let mut map = RateMap::new(3);
        let a = map.limiters("a", &limits(1));
        map.limiters("b", &limits(1));
        map.limiters("c", &limits(1));
        // a is used again: b is now the least recently used.
        assert!(Arc::ptr_eq(&a, &map.limiters("a", &limits(1))));
        map.limiters("d", &limits(1));
        assert_eq!(map.len(), 3);
        assert!(Arc::ptr_eq(&a, &map.limiters("a", &limits(1))), "a kept");
        let before = map.len();
        map.limiters("b", &limits(1));
        assert_eq!(
            map.len(),
            before,
            "b was evicted and comes back in place of another"
        );
        for i in 0..1000 {
            map.limiters(&format!("x{i}"), &limits(1));
        }
        assert_eq!(map.len(), 3, "never more than the capacity");
    }
}
