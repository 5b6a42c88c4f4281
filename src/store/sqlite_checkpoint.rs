//! Background WAL checkpoints for a SQLite server: WAL pages go back into
//! the database file beside the commits instead of inside one of them.
//!
//! Left to itself, SQLite checkpoints in the connection whose commit pushed
//! the WAL past `wal_autocheckpoint` pages, before that commit returns. On a
//! server every read waits for its AuditEvent's commit, so each such
//! checkpoint (70-95 ms for 10,000 pages here) stalled every request in
//! flight (docs/PERFORMANCE.md, sixth pass). This task instead copies pages
//! on a connection of its own every [`Limits::interval`] in PASSIVE mode,
//! which neither waits for nor blocks readers and the writer.
//!
//! A PASSIVE checkpoint never lets the WAL start over while commits keep
//! coming: SQLite rewinds the WAL only when a writer begins at a moment when
//! every frame is already copied. So once the WAL holds
//! [`Limits::restart_at_frames`], the task catches up (PASSIVE passes back to
//! back), takes the writer's slot in the pool (writers queue behind it, as
//! behind any write; the audit session lets go early) and copies the few
//! frames written since its last pass; the next write then rewinds the WAL.
//! The writer's own auto-checkpoint stays on at a higher
//! mark ([`WRITER_FALLBACK_PAGES`]) in case this task falls behind.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// When the checkpointer runs and when it restarts the WAL.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Pause between two PASSIVE checkpoints.
    pub interval: Duration,
    /// WAL frames at which the WAL is restarted under the writer's slot.
    pub restart_at_frames: i64,
    /// PASSIVE passes run back to back (1 ms apart) before a restart, so
    /// that the pass under the writer's slot has little left to copy.
    /// Stopping them early once a pass found few new frames (4 passes, under
    /// 256 frames) gave a p99 of 20-23 ms against 14-15 ms for 20 passes.
    pub catch_up_passes: u32,
}

/// The server's limits. At 16 clients reading (six to eight WAL pages of
/// audit commits per read) the WAL grew 30,000-46,000 frames a second, so
/// it rewinds three to five times a second at ~13,000 frames (~53 MB, under
/// `journal_size_limit`); each last pass held the writer 7-9 ms at the
/// median, 10-21 ms at p90 (docs/PERFORMANCE.md, sixth and seventh passes).
pub(super) const LIMITS: Limits = Limits {
    interval: Duration::from_millis(AUDIT_SYNC_WINDOW_MS),
    restart_at_frames: 8_000,
    catch_up_passes: 20,
};

/// Busy timeout of the checkpointer's connection (PASSIVE checkpoints do
/// not wait for locks; this covers opening and pragmas).
const BUSY_TIMEOUT: Duration = Duration::from_millis(10);

/// Pause between two catch-up passes.
const CATCH_UP_PAUSE: Duration = Duration::from_millis(1);

/// The writer connection's own `wal_autocheckpoint` while the checkpointer
/// runs: only reached if the checkpointer falls behind (a reader holding
/// the WAL for seconds, a stopped task).
pub(super) const WRITER_FALLBACK_PAGES: u32 = 32_000;

/// Page cache of the checkpointer's connection, in KiB: a checkpoint reads
/// WAL frames straight from the file, not through the cache.
const CACHE_KIB: i64 = 2_048;

/// The longest an audit-only commit made without its own fsync waits for
/// one (`StoreOptions::sqlite_audit_sync_full = false`): a PASSIVE pass that
/// finds frames to copy fsyncs the whole WAL first, and one runs every
/// [`Limits::interval`] after the previous one ends.
pub(super) const AUDIT_SYNC_WINDOW_MS: u64 = 50;

/// A running checkpointer; [`Checkpointer::stop`] ends it.
pub(super) struct Checkpointer {
    stop: Arc<Notify>,
    /// Set while the task waits for the writer's slot to restart the WAL.
    wants_writer: Arc<AtomicBool>,
    /// True while the task runs (and so syncs the WAL every interval).
    running: Arc<AtomicBool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens a connection of its own to `path` and starts the task on the
    /// current runtime. `sync_full` mirrors the store's `synchronous`.
    pub(super) fn start(
        path: &Path,
        write: sqlx::SqlitePool,
        sync_full: bool,
        limits: Limits,
    ) -> rusqlite::Result<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(
            None,
            "synchronous",
            if sync_full { "FULL" } else { "NORMAL" },
        )?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        let stop = Arc::new(Notify::new());
        let wants_writer = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicBool::new(true));
        let signals = Signals {
            stop: stop.clone(),
            wants_writer: wants_writer.clone(),
        };
        let flag = Lowered(running.clone());
        let wal = super::sqlite_direct::beside(path, "-wal");
        let task = tokio::spawn(async move {
            let _running = flag;
            run(conn, wal, write, signals, limits).await;
        });
        Ok(Checkpointer {
            stop,
            wants_writer,
            running,
            task: Mutex::new(Some(task)),
        })
    }

    /// A flag that reads true while the checkpointer waits for the writer:
    /// a holder of the writer that loops (the audit session) lets go early.
    pub(super) fn wants_writer(&self) -> Arc<AtomicBool> {
        self.wants_writer.clone()
    }

    /// True while the task runs; false once it stopped or failed.
    pub(super) fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Ends the task after the pass in progress, if any.
    pub(super) async fn stop(&self) {
        self.stop.notify_one();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Lowers its flag when dropped: when the task ends, also by a panic.
struct Lowered(Arc<AtomicBool>);

impl Drop for Lowered {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

struct Signals {
    stop: Arc<Notify>,
    wants_writer: Arc<AtomicBool>,
}

/// `(busy, frames in the WAL, frames copied)` as `PRAGMA wal_checkpoint`
/// reports them.
type Outcome = (i64, i64, i64);

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Outcome> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// True when a PASSIVE pass that copied `copied` of `frames` WAL frames, after
/// one that had copied `before`, did not sync the WAL itself. SQLite syncs
/// the WAL at the start of every pass that copies something; a pass held
/// back by a reader's older snapshot copies nothing and syncs nothing, so
/// commits made without their own fsync (audit records) would wait for
/// that reader.
fn wal_left_unsynced(before: i64, copied: i64, frames: i64) -> bool {
    copied == before && frames > copied
}

/// The checkpointer's connection, moved to a blocking thread for each
/// checkpoint; lost (and the task ended) only if that thread panics.
struct Ckpt {
    conn: Option<Connection>,
    /// The WAL file, synced directly when a pass could not copy anything.
    wal: std::path::PathBuf,
    /// Frames the previous pass reported copied.
    copied: i64,
}

impl Ckpt {
    /// Runs one checkpoint, then syncs the WAL if the pass did not;
    /// `None` when the connection is gone.
    async fn run(&mut self, mode: &'static str) -> Option<rusqlite::Result<Outcome>> {
        let conn = self.conn.take()?;
        let (wal, before) = (self.wal.clone(), self.copied);
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let out = checkpoint(&conn, mode);
            if let Ok((_, frames, copied)) = out {
                if wal_left_unsynced(before, copied, frames) {
                    // fsync flushes the file whichever descriptor wrote it.
                    if let Err(e) = std::fs::File::open(&wal).and_then(|f| f.sync_data()) {
                        tracing::warn!(error_kind = "checkpoint", "WAL sync failed: {e}");
                    }
                }
            }
            (conn, out)
        })
        .await
        .ok()?;
        self.conn = Some(conn);
        if let Ok((_, _, copied)) = out {
            self.copied = copied;
        }
        Some(out)
    }

    /// A PASSIVE checkpoint: frames now in the WAL, `None` on failure.
    async fn passive(&mut self) -> Option<i64> {
        match self.run("PASSIVE").await? {
            Ok((_, frames, _)) => Some(frames),
            Err(e) => {
                tracing::warn!(error_kind = "checkpoint", "WAL checkpoint failed: {e}");
                None
            }
        }
    }
}

async fn run(
    conn: Connection,
    wal: std::path::PathBuf,
    write: sqlx::SqlitePool,
    signals: Signals,
    limits: Limits,
) {
    let mut conn = Ckpt {
        conn: Some(conn),
        wal,
        copied: 0,
    };
    loop {
        tokio::select! {
            _ = signals.stop.notified() => return,
            _ = tokio::time::sleep(limits.interval) => {}
        }
        let Some(frames) = conn.passive().await else {
            if conn.conn.is_none() {
                tracing::error!(error_kind = "checkpoint", "WAL checkpointer stopped");
                return;
            }
            continue;
        };
        if frames < limits.restart_at_frames {
            continue;
        }
        for _ in 0..limits.catch_up_passes {
            tokio::time::sleep(CATCH_UP_PAUSE).await;
            if conn.passive().await.is_none() {
                break;
            }
        }
        // Holding the writer's slot keeps writers queued in the pool (woken
        // as soon as it is free) instead of polling SQLite's busy handler.
        signals.wants_writer.store(true, Ordering::Release);
        let waited = std::time::Instant::now();
        let slot = write.acquire().await;
        signals.wants_writer.store(false, Ordering::Release);
        let slot = match slot {
            Ok(slot) => slot,
            Err(e) => {
                tracing::warn!(error_kind = "checkpoint", "WAL restart skipped: {e}");
                continue;
            }
        };
        // With writers held off, copy what is left. The writer's next
        // transaction then starts on a fully copied WAL and rewinds it
        // (unless a reader that began before this pass still holds it; the
        // next pass tries again). RESTART would also wait for such readers,
        // with SQLite's busy handler sleeping 1, 2, 5 ms… while every
        // writer waits; it measured within noise of this pass.
        let held = std::time::Instant::now();
        let restart = conn.run("PASSIVE").await;
        drop(slot);
        match restart {
            None => {
                tracing::error!(error_kind = "checkpoint", "WAL checkpointer stopped");
                return;
            }
            Some(Err(e)) => tracing::warn!(error_kind = "checkpoint", "WAL restart failed: {e}"),
            Some(Ok((busy, frames, _))) => tracing::debug!(
                busy,
                frames,
                waited_us = (held - waited).as_micros() as u64,
                held_us = held.elapsed().as_micros() as u64,
                "WAL restart"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    /// Frames the WAL file holds. With `journal_size_limit=0` the writer
    /// truncates the file at the first commit after the WAL restarts, so the
    /// size tells frames since the last restart (without checkpointing).
    fn wal_frames(path: &Path) -> u64 {
        let wal = path.with_extension("db-wal");
        let len = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
        len.saturating_sub(32) / (4096 + 24)
    }

    #[test]
    fn a_pass_that_copied_nothing_leaves_the_wal_to_sync() {
        // Copied nothing new while frames wait (a reader holds them back).
        assert!(wal_left_unsynced(120, 120, 300));
        // Copied something: SQLite synced the WAL first.
        assert!(!wal_left_unsynced(120, 200, 300));
        // Everything already copied, or an empty WAL: nothing to sync.
        assert!(!wal_left_unsynced(300, 300, 300));
        assert!(!wal_left_unsynced(0, 0, 0));
    }

    #[tokio::test]
    async fn wal_restarts_under_continuous_commits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let connect = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("synchronous", "OFF")
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", "0");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect)
            .await
            .expect("pool");
        sqlx::query("CREATE TABLE t (v INTEGER)")
            .execute(&write)
            .await
            .expect("schema");
        let commit = async |v: i64| {
            sqlx::query("INSERT INTO t VALUES ($1)")
                .bind(v)
                .execute(&write)
                .await
                .expect("insert");
        };
        for v in 0..200 {
            commit(v).await;
        }
        // Nothing else checkpoints: every commit stays in the WAL.
        assert!(wal_frames(&path) >= 200, "{}", wal_frames(&path));

        let limits = Limits {
            interval: Duration::from_millis(5),
            restart_at_frames: 50,
            catch_up_passes: 2,
        };
        let ckpt = Checkpointer::start(&path, write.clone(), false, limits).expect("start");
        // Back-to-back commits: a PASSIVE checkpoint alone never catches up
        // with them, so only the restart under the writer's slot rewinds
        // (the WAL file then shrinks: journal_size_limit=0). Counts rewinds
        // rather than timing them, so a loaded machine only makes it slower.
        let started = std::time::Instant::now();
        let (mut n, mut rewinds, mut last): (i64, u32, u64) = (0, 0, wal_frames(&path));
        while (rewinds < 3 || n < 500) && started.elapsed() < Duration::from_secs(30) {
            commit(n).await;
            n += 1;
            if n % 25 == 0 {
                let now = wal_frames(&path);
                if now < last {
                    rewinds += 1;
                }
                last = now;
            }
        }
        ckpt.stop().await;
        assert!(rewinds >= 3, "{rewinds} rewinds in {n} commits");
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&write)
            .await
            .expect("count");
        assert_eq!(count, 200 + n);
        // A stopped checkpointer stays stopped.
        ckpt.stop().await;
    }
}
