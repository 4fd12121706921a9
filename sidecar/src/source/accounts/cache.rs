//! The bounded plaintext cache of an account set: at most `capacity` decrypted credentials,
//! the least recently used evicted first. Plain data, no locking and no clock of its own: the
//! account set holds it under its state mutex and decides staleness.
//!
//! Recency is a sequence number per touch; `order` maps it back to the name, so eviction
//! and touch are O(log n) with n at most the capacity.

use std::collections::{BTreeMap, HashMap};

use super::super::Cached;

struct Slot {
    cached: Cached,
    seq: u64,
}

pub(super) struct PlaintextCache {
    capacity: usize,
    slots: HashMap<String, Slot>,
    order: BTreeMap<u64, String>,
    next_seq: u64,
}

impl PlaintextCache {
    /// A cache of at most `capacity` plaintexts (at least one).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            slots: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The entry of `name`, marked as used now.
    pub(super) fn touch(&mut self, name: &str) -> Option<&Cached> {
        let seq = self.bump();
        let slot = self.slots.get_mut(name)?;
        self.order.remove(&slot.seq);
        slot.seq = seq;
        self.order.insert(seq, name.to_owned());
        Some(&slot.cached)
    }

    /// The entry of `name`, recency unchanged.
    pub(super) fn peek(&self, name: &str) -> Option<&Cached> {
        self.slots.get(name).map(|s| &s.cached)
    }

    /// Stores `cached` for `name` as the most recently used, replacing any entry of `name`
    /// (dropped first, so its pages are unlocked before the new ones are locked). Returns the
    /// entries evicted to stay within the capacity, for the caller to count.
    pub(super) fn insert(&mut self, name: &str, cached: Cached) -> Vec<Cached> {
        drop(self.remove(name));
        let mut evicted = Vec::new();
        while self.slots.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.slots.remove(&oldest) {
                evicted.push(slot.cached);
            }
        }
        let seq = self.bump();
        self.order.insert(seq, name.to_owned());
        self.slots.insert(name.to_owned(), Slot { cached, seq });
        evicted
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<Cached> {
        let slot = self.slots.remove(name)?;
        self.order.remove(&slot.seq);
        Some(slot.cached)
    }

    /// Names of the cached accounts (for the expiry scan).
    pub(super) fn names(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }

    fn bump(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}
