//! Planner statistics kept fresh on PostgreSQL. Its autovacuum analyses a
//! table up to a minute after it grew; until then the planner sizes every
//! search by the old statistics (of an empty table, after a first bulk
//! load) and can pick plans that run for minutes. So a write transaction
//! that brings the resources written since the last ANALYZE to as many as
//! were counted then (at least [`ANALYZE_AFTER_MIN`]) runs ANALYZE before
//! it answers; one write in that many pays for it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use super::index_rows::INDEX_TABLES;

/// Fewest resources written before an ANALYZE is due.
pub const ANALYZE_AFTER_MIN: i64 = 1_000;
/// Share of the rows counted at the last ANALYZE that makes one due: as
/// many again (so a load from empty runs it about log2(rows / 1,000) times).
pub const ANALYZE_AFTER_SHARE: f64 = 1.0;

/// Resources written since the last ANALYZE, and how many there were then.
#[derive(Debug, Default)]
pub(super) struct StatsTracker {
    written: AtomicI64,
    rows_at_analyze: AtomicI64,
    running: AtomicBool,
}

impl StatsTracker {
    /// Sets the row count the statistics describe (at open or after ANALYZE).
    pub(super) fn analyzed(&self, rows: i64) {
        self.rows_at_analyze.store(rows.max(0), Ordering::Release);
        self.written.store(0, Ordering::Release);
    }

    /// Counts `n` resources written; true when an ANALYZE is now due and
    /// no other one is running (the caller must then call [`Self::done`]).
    pub(super) fn note(&self, n: i64) -> bool {
        let written = self.written.fetch_add(n, Ordering::AcqRel) + n;
        let base = self.rows_at_analyze.load(Ordering::Acquire);
        let due = (base as f64 * ANALYZE_AFTER_SHARE) as i64;
        written >= due.max(ANALYZE_AFTER_MIN)
            && self
                .running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Ends a run started by [`Self::note`]: on success the written rows
    /// are now described (`rows` is the new count).
    pub(super) fn done(&self, rows: Option<i64>) {
        if let Some(rows) = rows {
            self.analyzed(rows);
        }
        self.running.store(false, Ordering::Release);
    }
}

/// The resources counted in PostgreSQL's statistics (0 before any ANALYZE).
pub(super) async fn counted_rows(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(MAX(GREATEST(reltuples, 0))::bigint, 0) FROM pg_class WHERE relname = 'resources'",
    )
    .fetch_one(pool)
    .await
}

/// Runs ANALYZE over the tables searches are planned on (resources,
/// versions, search indexes; the audit and auth tables are left to
/// autovacuum); the new row count, or `None` when it failed (logged: the
/// write it follows has committed and stands).
pub(super) async fn analyze(pool: &sqlx::PgPool) -> Option<i64> {
    let started = std::time::Instant::now();
    let tables = ["resources", "resource_versions"]
        .iter()
        .chain(INDEX_TABLES.iter())
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("ANALYZE {tables}");
    let result = match sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await {
        Ok(_) => counted_rows(pool).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(rows) => {
            tracing::info!(
                kind = "store",
                rows,
                ms = started.elapsed().as_millis() as u64,
                "planner statistics refreshed after writes"
            );
            Some(rows)
        }
        Err(_) => {
            tracing::warn!(kind = "store", error_kind = "analyze", "ANALYZE failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_a_fifth_and_at_least_the_minimum() {
        let t = StatsTracker::default();
        assert!(!t.note(999));
        assert!(t.note(1), "1,000 written into an empty table");
        assert!(!t.note(5_000), "one run at a time");
        t.done(Some(10_000));
        assert!(!t.note(9_999));
        assert!(t.note(1), "as many again as 10,000");
        t.done(None);
        assert!(t.note(1), "a failed run is due again");
    }
}
