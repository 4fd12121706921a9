//! The bookkeeping of the upstream pools: one pool per credential (an account set has many),
//! keyed by credential id. A pooled connection is authenticated as its credential's user, so
//! it is only ever handed to a transaction of that very credential (same id, same decrypted
//! credential: a re-seal or re-decrypt starts a new pool). Bounded three ways: connections
//! per credential, connections over all credentials (the longest idle one is closed first),
//! and the number of pools (the least recently used goes).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use mailcred_core::credential::UsableCredential;

/// Pools kept at most; each holds its target (with the password) while its credential lives.
pub(super) const MAX_POOLS: usize = 4096;

pub(super) struct Idle<C> {
    pub(super) conn: C,
    pub(super) since: Instant,
}

struct Pool<T, C> {
    /// Weak: the credential source decides how long plaintext lives; when it drops its
    /// copy and no session holds one, this pool (and its copy of the password) goes too.
    credential: Weak<UsableCredential>,
    target: Arc<T>,
    /// Oldest first; handed out newest first (the likeliest to be alive).
    idle: Vec<Idle<C>>,
    used: u64,
}

pub(super) struct Limits {
    pub(super) per_credential: usize,
    pub(super) total_idle: usize,
    pub(super) max_pools: usize,
}

pub(super) struct Pools<T, C> {
    map: HashMap<String, Pool<T, C>>,
    idle_total: usize,
    clock: u64,
    limits: Limits,
}

impl<T, C> Pools<T, C> {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            map: HashMap::new(),
            idle_total: 0,
            clock: 0,
            limits,
        }
    }

    #[cfg(test)]
    pub(super) fn idle_total(&self) -> usize {
        self.idle_total
    }

    #[cfg(test)]
    pub(super) fn pools(&self) -> usize {
        self.map.len()
    }

    /// The target of this very credential's pool and, if one is idle (younger than
    /// `max_idle`), a connection; `None` when the credential has no pool yet.
    pub(super) fn checkout(
        &mut self,
        credential: &Arc<UsableCredential>,
        max_idle: Duration,
    ) -> Option<(Arc<T>, Option<Idle<C>>)> {
        self.clock += 1;
        let pool = self.map.get_mut(&credential.id())?;
        if pool.credential.as_ptr() != Arc::as_ptr(credential) {
            return None;
        }
        pool.used = self.clock;
        while let Some(idle) = pool.idle.pop() {
            self.idle_total -= 1;
            if idle.since.elapsed() < max_idle {
                return Some((pool.target.clone(), Some(idle)));
            }
        }
        Some((pool.target.clone(), None))
    }

    /// A new pool for `credential`, in place of one of an older copy of it; the least
    /// recently used pool goes when there are too many.
    pub(super) fn insert(&mut self, credential: &Arc<UsableCredential>, target: Arc<T>) {
        self.clock += 1;
        let id = credential.id();
        if !self.map.contains_key(&id) && self.map.len() >= self.limits.max_pools {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, p)| p.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.remove(&oldest);
            }
        }
        self.remove(&id);
        self.map.insert(
            id,
            Pool {
                credential: Arc::downgrade(credential),
                target,
                idle: Vec::new(),
                used: self.clock,
            },
        );
    }

    fn remove(&mut self, id: &str) {
        if let Some(pool) = self.map.remove(id) {
            self.idle_total -= pool.idle.len();
        }
    }

    /// Puts a connection back into the pool it came from, if that pool still stands and has
    /// room; otherwise gives it back (the caller drops it: the socket closes).
    pub(super) fn checkin(&mut self, id: &str, target: &Arc<T>, conn: C) -> Option<C> {
        let per_credential = self.limits.per_credential;
        match self.map.get(id) {
            Some(p) if Arc::ptr_eq(&p.target, target) && p.idle.len() < per_credential => {}
            _ => return Some(conn),
        }
        if self.limits.total_idle == 0 {
            return Some(conn);
        }
        if self.idle_total >= self.limits.total_idle {
            self.close_longest_idle();
        }
        let pool = self.map.get_mut(id)?;
        pool.idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        self.idle_total += 1;
        None
    }

    fn close_longest_idle(&mut self) {
        let oldest = self
            .map
            .iter()
            .filter_map(|(k, p)| p.idle.first().map(|i| (k, i.since)))
            .min_by_key(|(_, since)| *since)
            .map(|(k, _)| k.clone());
        if let Some(pool) = oldest.and_then(|k| self.map.get_mut(&k)) {
            pool.idle.remove(0);
            self.idle_total -= 1;
        }
    }

    /// Drops the pools whose credential expired from the cache and idle connections older
    /// than `max_idle`.
    pub(super) fn sweep(&mut self, max_idle: Duration) -> usize {
        let before = self.map.len();
        self.map.retain(|_, p| p.credential.strong_count() > 0);
        for pool in self.map.values_mut() {
            pool.idle.retain(|i| i.since.elapsed() < max_idle);
        }
        self.idle_total = self.map.values().map(|p| p.idle.len()).sum();
        before - self.map.len()
    }
}

#[cfg(test)]
#[path = "pools_tests.rs"]
mod tests;
