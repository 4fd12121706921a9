//! Dropping cached plaintexts that went stale without a request: TTL passed, lifetime
//! (`spec.expiresAt`) ended. A timer sleeps until the earliest such end among the cached
//! plaintexts (at most `max_wait`, a backstop), and wakes early on any feed change or new
//! plaintext, so a plaintext outlives its TTL or its account's lifetime by milliseconds.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mailcred_core::crd::MailCredential;
use tokio_util::sync::CancellationToken;

use super::super::{Cached, DropReason};
use super::{AccountSet, Refusal, State, now_time};

impl AccountSet {
    /// Drops every stale cached plaintext; returns when the next one goes stale.
    pub fn expire(&self) -> Option<Instant> {
        let now = now_time();
        let mut state = self.state();
        for name in state.cache.names() {
            self.drop_if_stale(&mut state, &name, &now);
        }
        self.publish(&state);
        let instant = Instant::now();
        state
            .cache
            .names()
            .iter()
            .filter_map(|name| state.cache.peek(name))
            .map(|c| self.end_of(c, &now, instant))
            .min()
    }

    /// Runs [`Self::expire`] at every deadline, feed change and new plaintext (and at least
    /// every `max_wait`) until shutdown.
    pub async fn expire_until(&self, max_wait: Duration, shutdown: CancellationToken) {
        loop {
            let backstop = Instant::now() + max_wait;
            let wake = self.expire().map_or(backstop, |d| d.min(backstop));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = self.changed.notified() => {}
            }
        }
    }

    /// When `cached` goes stale by time alone: its TTL or its resource's lifetime.
    fn end_of(&self, cached: &Cached, now: &Time, instant: Instant) -> Instant {
        let ttl_end = cached.decrypted_at + self.config.ttl;
        match lifetime_left(&cached.resource, now) {
            // One millisecond past the end: `expired_at` counts the end instant as expired.
            Some(left) => ttl_end.min(instant + left + Duration::from_millis(1)),
            None => ttl_end,
        }
    }

    /// Empties account `name`'s cache slot (unlocking; zeroized once no session holds it)
    /// when it may no longer be handed out.
    pub(super) fn drop_if_stale(&self, state: &mut State, name: &str, now: &Time) {
        let Some(cached) = state.cache.peek(name) else {
            return;
        };
        let why = match state.accounts.get(name) {
            None => DropReason::Deleted,
            Some(account) => match self.staleness(cached, &account.resource, now) {
                Some(why) => why,
                None => return,
            },
        };
        state.cache.remove(name);
        self.dropped(name, why);
    }

    /// Why `cached` may not be handed out for `current` at `now`, if it may not.
    fn staleness(
        &self,
        cached: &Cached,
        current: &MailCredential,
        now: &Time,
    ) -> Option<DropReason> {
        match self.refusal(current, now) {
            Some(Refusal::AccessRevoked) => Some(DropReason::AccessRevoked),
            Some(Refusal::Expired) => Some(DropReason::Expired),
            None if !cached.credential.opened_from(current) => Some(DropReason::Resealed),
            None if cached.decrypted_at.elapsed() >= self.config.ttl => Some(DropReason::Ttl),
            None => None,
        }
    }
}

/// How long until `resource`'s lifetime ends (zero if it has), `None` without a lifetime.
fn lifetime_left(resource: &MailCredential, now: &Time) -> Option<Duration> {
    let end = resource.spec.expires_at.as_ref()?;
    let ms = end
        .0
        .as_millisecond()
        .saturating_sub(now.0.as_millisecond());
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}
