//! Persistence: resources stored as JSON per version, the current-version
//! pointer, and the search-index rows, on SQLite or PostgreSQL.
//!
//! Both backends share one implementation: the [`with_db!`] and
//! [`with_tx!`] macros expand each query once per backend, so the SQL is
//! written once and runs on each driver natively (prepared and cached).

mod audit;
mod auth_state;
mod changes;
mod connect;
mod index_rows;
mod migrate;
mod read;
mod search;
mod sqlite_checkpoint;
mod sqlite_direct;
mod stats;
mod write;

pub use audit::{AuditLink, AuditQuery, AuditRow};
pub use auth_state::{AuthRecord, LIVE, REVOKED, USED};
pub use changes::{Topic, MAX_STALE_MS, REFRESH_EVERY_MS};
pub use connect::{Backend, StoreOptions, IMPORT_WRITER_CACHE_KIB, SERVER_WRITER_CACHE_KIB};
pub use index_rows::{
    CompositeRow, DateRow, FulltextRow, IndexRows, NumberRow, QuantityRow, ReferenceRow, StringRow,
    TokenRow, UriRow,
};
pub use read::{HistoryEntry, HistoryScope};
pub use search::{Bind, SearchRow};
pub use stats::{ANALYZE_AFTER_MIN, ANALYZE_AFTER_SHARE};
pub use write::{NewVersion, WriteTx};

use crate::fhir::instant::Millis;

/// Errors from the storage layer. Callers never show the inner text to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint failed: a concurrent writer created the same resource.
    #[error("concurrent write conflict")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From rusqlite (`sqlite_direct`: reads by id, the audit append).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Setup(String),
}

impl StoreError {
    /// A name for logs: the kind of failure, never the driver's text (which
    /// can quote values).
    pub fn kind_name(&self) -> &'static str {
        match self {
            StoreError::Conflict => "conflict",
            StoreError::Database(sqlx::Error::PoolTimedOut) => "pool_timed_out",
            StoreError::Database(sqlx::Error::Io(_)) => "io",
            StoreError::Database(sqlx::Error::Database(_)) => "database",
            StoreError::Database(_) => "driver",
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(..)) => "database",
            StoreError::Sqlite(_) => "driver",
            StoreError::Migrate(_) => "migrate",
            StoreError::Setup(_) => "setup",
        }
    }

    fn from_write(e: sqlx::Error) -> Self {
        match e.as_database_error() {
            Some(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Database(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The current state of one logical resource.
#[derive(Debug, Clone)]
pub struct Current {
    /// Internal row key; never shown to clients.
    pub rid: i64,
    pub version: i64,
    pub last_updated: Millis,
    pub deleted: bool,
    /// The JSON of the current version; `None` when it is a delete tombstone.
    pub content: Option<String>,
}

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct Version {
    pub version: i64,
    pub last_updated: Millis,
    /// The interaction that produced it: POST, PUT, PATCH or DELETE.
    pub method: String,
    pub content: Option<String>,
}

#[derive(Clone)]
enum Db {
    /// SQLite allows one writer at a time: writes go through a one-connection
    /// pool so that they queue in the app instead of failing with SQLITE_BUSY.
    Sqlite {
        read: sqlx::SqlitePool,
        write: sqlx::SqlitePool,
        /// Point reads on the calling thread; `None` for an in-memory file.
        direct: Option<std::sync::Arc<sqlite_direct::DirectReads>>,
        /// WAL checkpoints off the commit path; `None` where the writer
        /// checkpoints itself (`vesta import`, an in-memory file).
        checkpointer: Option<std::sync::Arc<sqlite_checkpoint::Checkpointer>>,
        /// Audit-only commits run at `synchronous=NORMAL` and are synced by
        /// the checkpointer's next pass (`StoreOptions::sqlite_audit_sync_full`).
        relaxed_audit: bool,
        /// Where reads' AuditEvents are journaled before they are stored
        /// (`crate::audit::journal`); `None` where each waits for its commit.
        audit_journal: Option<std::path::PathBuf>,
    },
    Postgres(sqlx::PgPool),
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// The change counters this instance knows (shared by clones).
    changes: std::sync::Arc<changes::Changes>,
    /// Writes since PostgreSQL's last ANALYZE (shared by clones).
    stats: std::sync::Arc<stats::StatsTracker>,
}

/// Runs `$body` with `$c` bound to the read pool of whichever backend is in use.
macro_rules! with_db {
    ($db:expr, $c:ident => $body:expr) => {
        match $db {
            Db::Sqlite { read, .. } => {
                let $c = read;
                $body
            }
            Db::Postgres(pool) => {
                let $c = pool;
                $body
            }
        }
    };
}
pub(crate) use with_db;

impl Store {
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        with_db!(&self.db, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }

    /// `(pool name, connections open, idle)` for each pool, for metrics.
    pub fn pool_stats(&self) -> Vec<(&'static str, u32, usize)> {
        match &self.db {
            Db::Sqlite { read, write, .. } => vec![
                ("sqlite_read", read.size(), read.num_idle()),
                ("sqlite_write", write.size(), write.num_idle()),
            ],
            Db::Postgres(pool) => vec![("postgres", pool.size(), pool.num_idle())],
        }
    }

    /// Refreshes the query planner's statistics (after a bulk load).
    pub async fn optimize(&self) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite { write, .. } => {
                sqlx::query("PRAGMA optimize=0x10002")
                    .execute(write)
                    .await?;
                connect::drop_resource_samples(write).await?;
            }
            Db::Postgres(pool) => {
                sqlx::query("ANALYZE").execute(pool).await?;
                self.stats.analyzed(stats::counted_rows(pool).await?);
            }
        }
        Ok(())
    }

    /// Closes every pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite {
                read,
                write,
                direct,
                checkpointer,
                ..
            } => {
                if let Some(checkpointer) = checkpointer {
                    checkpointer.stop().await;
                }
                // Readers first, so that the writer's checkpoint can move the
                // whole WAL into the database file: after a clean stop
                // `vesta.db` alone holds everything (a copied file is a backup).
                read.close().await;
                if let Some(direct) = direct {
                    direct.close();
                }
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(write)
                    .await
                {
                    tracing::warn!(
                        error_kind = "checkpoint",
                        "WAL checkpoint at close failed: {e}"
                    );
                }
                write.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> StoreResult<WriteTx> {
        WriteTx::begin(self).await
    }
}
