//! Per-client limit on bad tokens: after `max_failures` refusals within `window`, a client
//! address gets 429 for every link until its window ends. Counting only failures keeps an owner
//! who opens the link and submits from ever meeting the limit; a guesser meets it at once. The
//! map of clients is bounded, so many addresses cannot grow memory without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client addresses remembered at most; beyond it the oldest window is forgotten.
const MAX_CLIENTS: usize = 10_000;

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

pub struct BadTokenLimiter {
    max_failures: u32,
    window: Duration,
    clients: Mutex<HashMap<IpAddr, Window>>,
}

impl BadTokenLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        // A poisoned lock only means a panic elsewhere mid-update; the counts stay usable.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True while `client` has used up its bad tokens for the current window.
    pub fn is_limited(&self, client: IpAddr) -> bool {
        let now = Instant::now();
        self.clients().get(&client).is_some_and(|w| {
            now.duration_since(w.start) < self.window && w.failures >= self.max_failures
        })
    }

    /// Counts one bad token from `client`.
    pub fn record_failure(&self, client: IpAddr) {
        let now = Instant::now();
        let mut clients = self.clients();
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, w| now.duration_since(w.start) < self.window);
            if clients.len() >= MAX_CLIENTS
                && let Some(oldest) = clients.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k)
            {
                clients.remove(&oldest);
            }
        }
        let w = clients.entry(client).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(w.start) >= self.window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_one_client_after_its_failures_and_not_others() {
        let limiter = BadTokenLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..2 {
            limiter.record_failure(a);
        }
        assert!(!limiter.is_limited(a));
        limiter.record_failure(a);
        assert!(limiter.is_limited(a));
        assert!(!limiter.is_limited(b));
    }

    #[test]
    fn the_window_ends() {
        let limiter = BadTokenLimiter::new(1, Duration::from_millis(30));
        let a: IpAddr = "::1".parse().unwrap();
        limiter.record_failure(a);
        assert!(limiter.is_limited(a));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!limiter.is_limited(a));
    }

    #[test]
    fn the_client_map_stays_bounded() {
        let limiter = BadTokenLimiter::new(1, Duration::from_secs(60));
        for i in 0..(MAX_CLIENTS as u32 + 50) {
            limiter.record_failure(IpAddr::from(i.to_be_bytes()));
        }
        assert!(limiter.clients().len() <= MAX_CLIENTS);
    }
}
