//! Change counters: writes that change what a cache holds (a Consent, a
//! revoked access token) bump their topic's counter in the same transaction;
//! each instance keeps the newest values it knows, from its own commits at
//! once and from the database every [`REFRESH_EVERY_MS`], so a cache entry
//! taken under an older value is known to be out of date.
//!
//! A value is only handed out while it is fresh: when the last successful
//! refresh is older than [`MAX_STALE_MS`] (or none ran, as in the command
//! line tools), [`Store::change_counter`] answers `None` and callers read the
//! database as if nothing were cached.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::Row;

use super::{with_db, Db, Store, StoreResult};
use crate::fhir::instant::{now_ms, Millis};

/// How often a serving instance reads the counters other instances bump.
pub const REFRESH_EVERY_MS: u64 = 250;
/// Counters older than this are not used: caches are bypassed.
pub const MAX_STALE_MS: Millis = 2_000;

/// What a counter tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Consent resources (any create, update, patch or delete of one).
    Consent,
    /// Access tokens revoked at the revocation endpoint.
    Revocation,
}

impl Topic {
    const ALL: [Topic; 2] = [Topic::Consent, Topic::Revocation];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Consent => "consent",
            Topic::Revocation => "revocation",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }

    fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The newest counter values this instance knows.
#[derive(Debug)]
pub(super) struct Changes {
    values: [AtomicI64; 2],
    /// When the last successful refresh started (ms); 0: never.
    refreshed_ms: AtomicI64,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            values: [AtomicI64::new(i64::MIN), AtomicI64::new(i64::MIN)],
            refreshed_ms: AtomicI64::new(0),
        }
    }
}

impl Changes {
    /// Takes in a value read or committed; counters only move forward.
    pub(super) fn observe(&self, topic: Topic, value: i64) {
        self.values[topic.slot()].fetch_max(value, Ordering::AcqRel);
    }

    fn refreshed(&self, started_ms: Millis) {
        self.refreshed_ms.fetch_max(started_ms, Ordering::AcqRel);
    }

    fn current(&self, topic: Topic, now: Millis) -> Option<i64> {
        let at = self.refreshed_ms.load(Ordering::Acquire);
        if at == 0 || now - at > MAX_STALE_MS {
            return None;
        }
        Some(self.values[topic.slot()].load(Ordering::Acquire))
    }
}

/// The statement that bumps a counter and returns its new value.
pub(super) const BUMP: &str =
    "UPDATE change_counters SET value = value + 1 WHERE topic = $1 RETURNING value";

impl Store {
    /// The newest value of `topic`'s counter, or `None` when this instance
    /// has not refreshed the counters recently (do not use a cache then).
    pub fn change_counter(&self, topic: Topic) -> Option<i64> {
        self.changes.current(topic, now_ms())
    }

    /// Reads every counter from the database.
    pub async fn refresh_changes(&self) -> StoreResult<()> {
        let started = now_ms();
        let rows = with_db!(&self.db, pool => {
            sqlx::query("SELECT topic, value FROM change_counters")
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        for (topic, value) in rows {
            if let Some(t) = Topic::parse(&topic) {
                self.changes.observe(t, value);
            }
        }
        self.changes.refreshed(started);
        Ok(())
    }

    /// Refreshes the counters every [`REFRESH_EVERY_MS`] until aborted (a
    /// serving instance runs this; a failed refresh is logged and retried,
    /// and the counters go stale, which turns the caches off).
    pub fn watch_changes(&self) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(REFRESH_EVERY_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = store.refresh_changes().await {
                    tracing::warn!(
                        kind = "store",
                        error_kind = e.kind_name(),
                        "change counters could not be read"
                    );
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_only_move_forward_and_go_stale() {
        let c = Changes::default();
        assert_eq!(c.current(Topic::Consent, 1_000), None, "never refreshed");
        c.refreshed(1_000);
        c.observe(Topic::Consent, 5);
        c.observe(Topic::Consent, 3);
        assert_eq!(c.current(Topic::Consent, 1_500), Some(5));
        assert_eq!(c.current(Topic::Revocation, 1_500), Some(i64::MIN));
        assert_eq!(c.current(Topic::Consent, 1_000 + MAX_STALE_MS), Some(5));
        assert_eq!(c.current(Topic::Consent, 1_001 + MAX_STALE_MS), None);
        c.refreshed(500);
        assert_eq!(
            c.current(Topic::Consent, 1_001 + MAX_STALE_MS),
            None,
            "an older refresh does not make the values fresh"
        );
    }

    #[test]
    fn topics_round_trip_their_names() {
        for t in Topic::ALL {
            assert_eq!(Topic::parse(t.as_str()), Some(t));
        }
        assert_eq!(Topic::parse("other"), None);
    }
}
