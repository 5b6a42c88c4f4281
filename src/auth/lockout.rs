//! Failed sign-ins and client-secret checks, counted per username and per
//! client id in this instance's memory: after [`MAX_FAILURES`] in a row the
//! identity is locked for a window that doubles with every further failure
//! up to [`MAX_LOCK_S`]. A locked identity gets the very answer of a wrong
//! password or secret, for unknown identities too, so a lock reveals
//! nothing about whether an account exists.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row before an identity is locked.
pub const MAX_FAILURES: u32 = 5;
/// The first lock's length; each further failure doubles it.
pub const FIRST_LOCK_S: u64 = 30;
/// The longest lock: 15 minutes.
pub const MAX_LOCK_S: u64 = 15 * 60;
/// Identities tracked at once; beyond it new ones share one overflow entry.
pub const MAX_TRACKED_IDENTITIES: usize = 10_000;

const OVERFLOW: &str = "\u{0}overflow";

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

/// Failure counters (one table for users, one for clients).
#[derive(Debug, Default)]
pub struct Lockout {
    entries: Mutex<HashMap<String, Entry>>,
}

/// How long the lock after `failures` failures in a row lasts.
fn lock_for(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(MAX_FAILURES)?;
    let secs = FIRST_LOCK_S.saturating_mul(1u64 << over.min(20));
    Some(Duration::from_secs(secs.min(MAX_LOCK_S)))
}

impl Lockout {
    /// Is `key` locked now?
    pub fn is_locked(&self, key: &str) -> bool {
        self.is_locked_at(key, Instant::now())
    }

    /// Counts a failure for `key`.
    pub fn failed(&self, key: &str) {
        self.failed_at(key, Instant::now())
    }

    /// A success clears `key`'s count.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(key);
        }
    }

    fn is_locked_at(&self, key: &str, now: Instant) -> bool {
        let Ok(m) = self.entries.lock() else {
            return false;
        };
        let entry = m.get(key).or_else(|| {
            (m.len() >= MAX_TRACKED_IDENTITIES)
                .then(|| m.get(OVERFLOW))
                .flatten()
        });
        entry
            .and_then(|e| e.locked_until)
            .is_some_and(|until| now < until)
    }

    fn failed_at(&self, key: &str, now: Instant) {
        let Ok(mut m) = self.entries.lock() else {
            return;
        };
        if !m.contains_key(key) && m.len() >= MAX_TRACKED_IDENTITIES {
            // Drop identities that are unlocked and quiet for a whole window.
            let quiet = Duration::from_secs(MAX_LOCK_S);
            m.retain(|k, e| {
                k == OVERFLOW
                    || e.locked_until.is_some_and(|u| now < u)
                    || now.duration_since(e.last_failure) < quiet
            });
        }
        let key = if m.contains_key(key) || m.len() < MAX_TRACKED_IDENTITIES {
            key
        } else {
            OVERFLOW
        };
        let e = m.entry(key.to_string()).or_insert(Entry {
            failures: 0,
            locked_until: None,
            last_failure: now,
        });
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        e.locked_until = lock_for(e.failures).map(|d| now + d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_five_failures_with_a_growing_window() {
        let l = Lockout::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            l.failed_at("u", t0);
        }
        assert!(!l.is_locked_at("u", t0));
        l.failed_at("u", t0);
        assert!(l.is_locked_at("u", t0));
        assert!(l.is_locked_at("u", t0 + Duration::from_secs(FIRST_LOCK_S - 1)));
        assert!(!l.is_locked_at("u", t0 + Duration::from_secs(FIRST_LOCK_S)));
        assert!(!l.is_locked_at("v", t0), "others are not locked");
        // The next failure after the window doubles it.
        let t1 = t0 + Duration::from_secs(FIRST_LOCK_S);
        l.failed_at("u", t1);
        assert!(l.is_locked_at("u", t1 + Duration::from_secs(2 * FIRST_LOCK_S - 1)));
        assert_eq!(
            lock_for(MAX_FAILURES + 30),
            Some(Duration::from_secs(MAX_LOCK_S))
        );
        assert_eq!(lock_for(MAX_FAILURES - 1), None);
        l.succeeded("u");
        assert!(!l.is_locked_at("u", t1));
    }

    #[test]
    fn the_table_is_bounded() {
        let l = Lockout::default();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_IDENTITIES + 50 {
            l.failed_at(&format!("u{i}"), t0);
        }
        let size = l.entries.lock().unwrap().len();
        assert!(size <= MAX_TRACKED_IDENTITIES + 1, "{size}");
    }
}
