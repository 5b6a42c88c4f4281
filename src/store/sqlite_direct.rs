//! SQLite through rusqlite where sqlx's thread hand-offs cost more than the
//! work: point reads on the calling thread (a small pool of read-only
//! connections beside sqlx's read pool), and whole transactions on sqlx's
//! writer connection with its handle locked (`on_writer`).
//!
//! sqlx-sqlite runs each connection on a worker thread of its own, so every
//! statement is a message to that thread and its rows a message back. For a
//! read by id that takes microseconds in SQLite, those wake-ups cost more
//! than the query (docs/PERFORMANCE.md, fifth pass). The queries here are
//! single-row lookups by primary key or unique index, short enough to run on
//! an async worker without `spawn_blocking`. Everything else (searches,
//! history, writes) stays on sqlx.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreResult;

/// Connections kept open between reads; more are opened when needed (one
/// per async worker thread in use at once) and closed past this many.
const MAX_IDLE: usize = 8;
/// Page cache of each connection, in KiB (as `PRAGMA cache_size=-N`); point
/// reads touch a few pages each and the OS keeps the file cached.
const CACHE_KIB: u32 = 16_384;

/// Read-only connections to one SQLite file.
pub(super) struct DirectReads {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    /// Set by `close`: connections are no longer kept after a read.
    closed: AtomicBool,
}

/// `Some(path)` when `path` names a file that other connections can open
/// (`None` for an in-memory database).
pub(super) fn plain_file(path: &Path) -> Option<&Path> {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file:") {
        return None;
    }
    Some(path)
}

/// The file or folder SQLite-style beside the database file at `path`:
/// its name with `suffix` added (`vesta.db-wal`, `vesta.db-audit`).
pub(super) fn beside(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    std::path::PathBuf::from(name)
}

impl DirectReads {
    /// Read-only connections to the file at `path` (see [`plain_file`]).
    pub(super) fn new(path: &Path, busy_timeout: Duration) -> DirectReads {
        DirectReads {
            path: path.to_path_buf(),
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.pragma_update(None, "cache_size", -i64::from(CACHE_KIB))?;
        conn.pragma_update(None, "temp_store", "memory")?;
        Ok(conn)
    }

    /// Closes the idle connections; a read in flight closes its own when
    /// it ends.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Runs `f` on an idle connection (or a new one) and keeps the
    /// connection for the next read unless `f` failed.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        let out = f(&conn)?;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE && !self.closed.load(Ordering::Acquire) {
            idle.push(conn);
        }
        Ok(out)
    }
}

/// Runs `f` on sqlx's single SQLite writer connection, on a blocking
/// thread, with the connection's handle locked away from sqlx's worker
/// thread for the whole call. Writers queue on the pool exactly as for a
/// `WriteTx`. A connection that `f` leaves inside a transaction, or that `f`
/// failed on (it may have changed a setting it could not restore), is
/// closed, never returned to the pool.
pub(super) async fn on_writer<T, F>(write: &sqlx::SqlitePool, f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let conn = write.acquire().await?;
    let rt = tokio::runtime::Handle::current();
    // Locking, `f` and unlocking all happen on the blocking thread, so a
    // cancelled caller can never hand the handle back while it is in use.
    let joined = tokio::task::spawn_blocking(move || {
        let mut conn = conn;
        let out = {
            let mut locked = rt.block_on(conn.lock_handle())?;
            // SAFETY: the handle is valid and used by this thread alone while
            // `locked` lives (sqlx's worker waits on the lock); `db` is dropped
            // before `locked`, and `from_handle` does not close the handle.
            let mut db = unsafe { Connection::from_handle(locked.as_raw_handle().as_ptr()) }?;
            let out = f(&mut db);
            let clean = db.is_autocommit() && out.is_ok();
            drop(db);
            drop(locked);
            if !clean {
                conn.close_on_drop();
            }
            out
        };
        Ok::<_, super::StoreError>((conn, out))
    })
    .await;
    match joined {
        Ok(Ok((conn, out))) => {
            // Returned to the pool here, on the runtime.
            drop(conn);
            Ok(out?)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(super::StoreError::Setup(
            "the SQLite writer thread failed".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_databases_are_not_plain_files() {
        assert!(plain_file(Path::new(":memory:")).is_none());
        assert!(plain_file(Path::new("file:sqlx-in-memory-1")).is_none());
        assert!(plain_file(Path::new("/tmp/x/vesta.db")).is_some());
    }

    #[test]
    fn reads_see_committed_rows_and_reuse_connections() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let w = Connection::open(&path).expect("open");
        w.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER);")
            .expect("schema");
        let reads = DirectReads::new(&path, Duration::from_secs(1));
        let get = |k: &str| {
            reads.with(|c| {
                use rusqlite::OptionalExtension;
                c.prepare_cached("SELECT v FROM t WHERE k = ?1")?
                    .query_row([k], |r| r.get::<_, i64>(0))
                    .optional()
            })
        };
        assert_eq!(get("a").expect("read"), None);
        w.execute("INSERT INTO t VALUES ('a', 7)", [])
            .expect("insert");
        assert_eq!(get("a").expect("read"), Some(7));
        assert_eq!(reads.idle.lock().expect("lock").len(), 1);
        // A read-only connection refuses writes.
        let refused = reads.with(|c| c.execute("INSERT INTO t VALUES ('b', 1)", []));
        assert!(refused.is_err());
        // After close, reads still answer but keep no connection open.
        reads.close();
        assert_eq!(get("a").expect("read"), Some(7));
        assert_eq!(reads.idle.lock().expect("lock").len(), 0);
    }
}
