//! Request rate limits: one GCRA budget per signed-in user (sized by role) and
//! one per backend client (tokens with no user), through `governor`'s keyed
//! limiters, with a bounded key table.
//!
//! Keys: a token with a user is limited by its username, whichever app sends
//! it (a user cannot multiply their budget by using several apps); a token
//! without a user (SMART backend services, client credentials) by its client
//! id. `--insecure-open` and local-command principals and anonymous requests
//! (which only reach the CapabilityStatement) are not limited: they carry no
//! identity to key on (see `docs/SECURITY.md`, Guards).
//!
//! The API knows nothing of HTTP: [`RateLimiter::check`] takes a
//! [`Principal`] and answers how long to wait.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::Quota;

use crate::policy::{Principal, PrincipalKind};

/// Default requests per minute for a user whose role is `patient`.
pub const DEFAULT_PATIENT_PER_MINUTE: u32 = 20;
/// Default requests per minute for clinical staff (admin, clinician, nurse).
pub const DEFAULT_CLINICAL_STAFF_PER_MINUTE: u32 = 200;
/// Default requests per minute for other staff roles (coordinator, faculty,
/// researcher, readonly) and for users whose role has no entry.
pub const DEFAULT_USER_PER_MINUTE: u32 = 100;
/// Default requests per minute for a backend client (a token with no user).
pub const DEFAULT_BACKEND_PER_MINUTE: u32 = 600;
/// Largest configurable budget (100 000 a minute is about 1 700 a second).
pub const MAX_PER_MINUTE: u32 = 100_000;
/// Most keys (users or clients) one limiter tracks. Beyond it, keys not yet
/// tracked share one overflow budget, so memory stays bounded whatever the
/// number of identities (about 100 bytes a key: some 10 MB per role at most).
pub const MAX_TRACKED_KEYS: usize = 100_000;
/// How often keys whose budget is full again (idle keys) are dropped.
pub const EVICT_INTERVAL_S: u64 = 60;
/// Least time between two evictions forced by a full table.
pub const MIN_FORCED_EVICT_GAP_S: u64 = 1;

/// The key all new identities share once a table holds [`MAX_TRACKED_KEYS`]
/// (real keys are prefixed `u:` or `c:`, so none can collide with it).
const OVERFLOW_KEY: &str = "";

/// The budget of a user or client in requests per minute (with a burst of
/// the same size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Budget per role (`smart-config/roles.toml` names).
    pub role_per_minute: BTreeMap<String, u32>,
    /// Budget for users whose role has no entry in `role_per_minute`.
    pub user_per_minute: u32,
    /// Budget for tokens with no user (backend services).
    pub backend_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let mut role_per_minute = BTreeMap::new();
        for role in ["admin", "clinician", "nurse"] {
            role_per_minute.insert(role.to_string(), DEFAULT_CLINICAL_STAFF_PER_MINUTE);
        }
        for role in ["coordinator", "faculty", "researcher", "readonly"] {
            role_per_minute.insert(role.to_string(), DEFAULT_USER_PER_MINUTE);
        }
        role_per_minute.insert("patient".to_string(), DEFAULT_PATIENT_PER_MINUTE);
        RateLimitSettings {
            role_per_minute,
            user_per_minute: DEFAULT_USER_PER_MINUTE,
            backend_per_minute: DEFAULT_BACKEND_PER_MINUTE,
        }
    }
}

impl RateLimitSettings {
    /// The first value out of range, as `(config key, message)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let range = format!("must be between 1 and {MAX_PER_MINUTE}");
        let ok = |n: u32| (1..=MAX_PER_MINUTE).contains(&n);
        if !ok(self.user_per_minute) {
            return Err(("rate_limit_user_per_minute".into(), range));
        }
        if !ok(self.backend_per_minute) {
            return Err(("rate_limit_backend_per_minute".into(), range));
        }
        for (role, n) in &self.role_per_minute {
            if !ok(*n) {
                return Err((format!("rate_limit_role_per_minute.{role}"), range));
            }
        }
        Ok(())
    }
}

/// Seconds a throttled caller should wait (at least 1), for `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfterSecs(pub u64);

/// A `governor` keyed state store that tracks at most [`MAX_TRACKED_KEYS`]
/// keys; a key that is not tracked when the table is full is measured
/// against the shared overflow key instead.
#[derive(Debug, Default)]
pub struct BoundedStore {
    map: DashMapStateStore<String>,
    max_keys: usize,
    /// Set when a key had to use the overflow budget (asks for an eviction).
    overflowed: Arc<AtomicBool>,
}

impl StateStore for BoundedStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if self.map.contains_key(key) || self.map.len() < self.max_keys {
            self.map.measure_and_replace(key, f)
        } else {
            self.overflowed.store(true, Ordering::Relaxed);
            self.map.measure_and_replace(&OVERFLOW_KEY.to_string(), f)
        }
    }
}

impl ShrinkableKeyedStateStore<String> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.map, drop_below)
    }
    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.map)
    }
    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&self.map)
    }
    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&self.map)
    }
}

type Keyed<C> =
    governor::RateLimiter<String, BoundedStore, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One budget class: a keyed limiter and its metric label.
struct Class<C: Clock> {
    /// `backend`, `user` or a role name from configuration (never an id).
    label: String,
    limiter: Keyed<C>,
}

/// The rate limiter shared by every request (in the app state).
pub struct RateLimiter<C: Clock = DefaultClock> {
    roles: HashMap<String, Class<C>>,
    user: Class<C>,
    backend: Class<C>,
    clock: C,
    last_evict: Mutex<C::Instant>,
    /// Shared with every class's store: some table is full.
    overflowed: Arc<AtomicBool>,
}

impl RateLimiter<DefaultClock> {
    /// A limiter on the system's monotonic clock.
    pub fn new(settings: &RateLimitSettings) -> Self {
        RateLimiter::with_clock(settings, DefaultClock::default(), MAX_TRACKED_KEYS)
    }
}

fn quota(per_minute: u32) -> Quota {
    let n = NonZeroU32::new(per_minute.clamp(1, MAX_PER_MINUTE)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(n)
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// A limiter on `clock` tracking at most `max_keys` keys per class (tests
    /// use a fake clock and a small table).
    pub fn with_clock(settings: &RateLimitSettings, clock: C, max_keys: usize) -> Self {
        let overflowed = Arc::new(AtomicBool::new(false));
        let class = |label: &str, per_minute: u32| Class {
            label: label.to_string(),
            limiter: governor::RateLimiter::new(
                quota(per_minute),
                BoundedStore {
                    map: DashMapStateStore::default(),
                    max_keys: max_keys.max(1),
                    overflowed: overflowed.clone(),
                },
                clock.clone(),
            ),
        };
        let roles = settings
            .role_per_minute
            .iter()
            .map(|(role, n)| (role.clone(), class(role, *n)))
            .collect();
        RateLimiter {
            roles,
            user: class("user", settings.user_per_minute),
            backend: class("backend", settings.backend_per_minute),
            last_evict: Mutex::new(clock.now()),
            clock,
            overflowed,
        }
    }

    /// Counts one request for `principal`: `Err` with the seconds to wait
    /// when its budget is spent. Unlimited for principals without identity.
    pub fn check(&self, principal: &Principal) -> Result<(), RetryAfterSecs> {
        if principal.kind != PrincipalKind::Token {
            return Ok(());
        }
        let (class, key) = match (&principal.username, &principal.client_id) {
            (Some(user), _) => {
                let class = principal
                    .role
                    .as_ref()
                    .and_then(|r| self.roles.get(r))
                    .unwrap_or(&self.user);
                (class, format!("u:{user}"))
            }
            (None, Some(client)) => (&self.backend, format!("c:{client}")),
            (None, None) => return Ok(()),
        };
        self.maybe_evict();
        match class.limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                crate::metrics::record_throttled(&class.label);
                Err(RetryAfterSecs(ceil_secs(wait)))
            }
        }
    }

    /// Keys tracked across all classes (for tests and diagnostics).
    pub fn tracked_keys(&self) -> usize {
        self.classes().map(|c| c.limiter.len()).sum()
    }

    fn classes(&self) -> impl Iterator<Item = &Class<C>> {
        self.roles.values().chain([&self.user, &self.backend])
    }

    /// Drops idle keys every [`EVICT_INTERVAL_S`], or sooner (at most every
    /// [`MIN_FORCED_EVICT_GAP_S`]) when a table is full. One caller evicts;
    /// the others go on.
    fn maybe_evict(&self) {
        let Ok(mut last) = self.last_evict.try_lock() else {
            return;
        };
        let now = self.clock.now();
        let since = Duration::from(now.duration_since(*last));
        let due = since >= Duration::from_secs(EVICT_INTERVAL_S)
            || (since >= Duration::from_secs(MIN_FORCED_EVICT_GAP_S)
                && self.overflowed.load(Ordering::Relaxed));
        if !due {
            return;
        }
        *last = now;
        self.overflowed.store(false, Ordering::Relaxed);
        for c in self.classes() {
            c.limiter.retain_recent();
            c.limiter.shrink_to_fit();
        }
    }
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn token(client: &str, user: Option<&str>, role: Option<&str>) -> Principal {
        let mut p = Principal::anonymous();
        p.kind = PrincipalKind::Token;
        p.client_id = Some(client.into());
        p.username = user.map(str::to_string);
        p.role = role.map(str::to_string);
        p
    }

    fn settings(patient: u32, user: u32, backend: u32) -> RateLimitSettings {
        let mut s = RateLimitSettings {
            user_per_minute: user,
            backend_per_minute: backend,
            ..RateLimitSettings::default()
        };
        s.role_per_minute.insert("patient".into(), patient);
        s
    }

    fn allowed(l: &RateLimiter<FakeRelativeClock>, p: &Principal, n: usize) -> usize {
        (0..n).filter(|_| l.check(p).is_ok()).count()
    }

    #[test]
    fn defaults_follow_roles_and_are_valid() {
        let s = RateLimitSettings::default();
        assert!(s.check().is_ok());
        assert_eq!(s.role_per_minute["patient"], DEFAULT_PATIENT_PER_MINUTE);
        assert_eq!(
            s.role_per_minute["clinician"],
            DEFAULT_CLINICAL_STAFF_PER_MINUTE
        );
        assert_eq!(s.role_per_minute.len(), 8);
    }

    #[test]
    fn out_of_range_names_the_key() {
        let mut s = settings(0, 10, 10);
        assert_eq!(
            s.check().unwrap_err().0,
            "rate_limit_role_per_minute.patient"
        );
        s = settings(1, 10, MAX_PER_MINUTE + 1);
        assert_eq!(s.check().unwrap_err().0, "rate_limit_backend_per_minute");
    }

    #[test]
    fn budget_by_role_then_retry_after_then_refill() {
        let clock = FakeRelativeClock::default();
        let l = RateLimiter::with_clock(&settings(3, 5, 7), clock.clone(), 100);
        let pat = token("app", Some("pat"), Some("patient"));
        assert_eq!(allowed(&l, &pat, 10), 3);
        // 3 a minute: one cell every 20 s.
        assert_eq!(l.check(&pat), Err(RetryAfterSecs(20)));
        clock.advance(Duration::from_millis(19_500));
        assert_eq!(l.check(&pat), Err(RetryAfterSecs(1)));
        clock.advance(Duration::from_millis(500));
        assert!(l.check(&pat).is_ok());
        // A user whose role has no entry gets the user default.
        let other = token("app", Some("olga"), Some("nonesuch"));
        assert_eq!(allowed(&l, &other, 10), 5);
        let no_role = token("app", Some("nora"), None);
        assert_eq!(allowed(&l, &no_role, 10), 5);
        // Backend clients: by client id.
        assert_eq!(allowed(&l, &token("svc-a", None, None), 10), 7);
        assert_eq!(allowed(&l, &token("svc-b", None, None), 10), 7);
    }

    #[test]
    fn a_user_is_one_key_across_apps_and_users_do_not_share() {
        let l = RateLimiter::with_clock(&settings(2, 5, 5), FakeRelativeClock::default(), 100);
        assert_eq!(
            allowed(&l, &token("app1", Some("pat"), Some("patient")), 1),
            1
        );
        assert_eq!(
            allowed(&l, &token("app2", Some("pat"), Some("patient")), 5),
            1
        );
        assert_eq!(
            allowed(&l, &token("app1", Some("paula"), Some("patient")), 5),
            2
        );
    }

    #[test]
    fn principals_without_identity_are_not_limited() {
        let l = RateLimiter::with_clock(&settings(1, 1, 1), FakeRelativeClock::default(), 100);
        assert_eq!(allowed(&l, &Principal::anonymous(), 50), 50);
        let mut open = token("x", None, None);
        open.kind = PrincipalKind::Open;
        assert_eq!(allowed(&l, &open, 50), 50);
        let mut nobody = token("x", None, None);
        nobody.client_id = None;
        assert_eq!(allowed(&l, &nobody, 50), 50);
    }

    #[test]
    fn table_is_bounded_and_idle_keys_are_evicted() {
        // 6 a minute: one cell every 10 s, a burst of 6.
        let clock = FakeRelativeClock::default();
        let l = RateLimiter::with_clock(&settings(6, 6, 6), clock.clone(), 4);
        for i in 0..4 {
            assert!(l.check(&token(&format!("svc{i}"), None, None)).is_ok());
        }
        assert_eq!(l.tracked_keys(), 4);
        // The table is full: new clients share one overflow budget.
        for i in 0..6 {
            assert!(l.check(&token(&format!("new{i}"), None, None)).is_ok());
        }
        assert!(l.check(&token("new6", None, None)).is_err());
        assert_eq!(l.tracked_keys(), 5, "4 keys and the overflow key");
        // Tracked keys keep their own budget.
        assert!(l.check(&token("svc0", None, None)).is_ok());
        // The overflow asks for an early eviction (before EVICT_INTERVAL_S):
        // keys whose budget is full again (svc1..3, one cell used) go; svc0
        // (two cells) and the overflow key (six) stay.
        clock.advance(Duration::from_secs(25));
        assert!(l.check(&token("fresh", None, None)).is_ok());
        assert_eq!(l.tracked_keys(), 3);
        // Without overflow, idle keys go every EVICT_INTERVAL_S.
        clock.advance(Duration::from_secs(EVICT_INTERVAL_S + 60));
        assert!(l.check(&token("fresh2", None, None)).is_ok());
        assert_eq!(l.tracked_keys(), 1);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(2_001)), 3);
        assert_eq!(ceil_secs(Duration::from_secs(20)), 20);
    }
}
