//! Keeps the cached plaintext out of swap: the pages that hold the password are locked while
//! the cache holds it. Best effort: without CAP_IPC_LOCK, RLIMIT_MEMLOCK (often 64 KiB or
//! 8 MiB in containers) may refuse; then one warning, and the sidecar works as before.

use std::sync::atomic::{AtomicBool, Ordering};

/// A locked byte range, unlocked on drop.
pub struct LockedRange {
    addr: usize,
    len: usize,
    locked: bool,
}

impl LockedRange {
    /// Locks the pages under `bytes`. The caller keeps the allocation alive and unmoved for
    /// as long as this value lives (a `Box<str>` inside an `Arc` held next to it).
    pub fn lock(bytes: &[u8]) -> Self {
        let (addr, len) = (bytes.as_ptr() as usize, bytes.len());
        // SAFETY: mlock only changes the residency of pages mapped under a live allocation.
        let locked = len > 0 && unsafe { libc::mlock(bytes.as_ptr().cast(), len) } == 0;
        if !locked && len > 0 {
            let error = std::io::Error::last_os_error();
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, "cannot mlock the cached password (RLIMIT_MEMLOCK or no CAP_IPC_LOCK): it may reach swap under memory pressure");
            }
        }
        Self { addr, len, locked }
    }

    #[cfg(test)]
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl Drop for LockedRange {
    fn drop(&mut self) {
        if self.locked {
            // SAFETY: munlock takes an address range; an already unmapped range only fails.
            unsafe { libc::munlock(self.addr as *const libc::c_void, self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ranges_are_not_locked_and_drop_is_harmless() {
        let r = LockedRange::lock(&[]);
        assert!(!r.is_locked());
    }

    #[test]
    fn a_small_range_locks_where_the_limit_allows() {
        let secret = vec![7u8; 32];
        let r = LockedRange::lock(&secret);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct we pass.
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
        // Root (CAP_IPC_LOCK) or any limit of at least two pages must succeed.
        let root = unsafe { libc::geteuid() } == 0;
        if root || limit.rlim_cur >= 8192 {
            assert!(r.is_locked());
        }
        drop(r);
    }
}
