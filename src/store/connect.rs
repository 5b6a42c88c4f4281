//! Opening the database: SQLite in the data folder by default, PostgreSQL by URL.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{migrate, Db, Store, StoreError, StoreResult};

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `postgres://…` selects PostgreSQL; `None` uses SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Folder for the SQLite file (and, elsewhere, keys).
    pub data_dir: PathBuf,
    /// Connections in the read pool (SQLite) or the whole pool (PostgreSQL).
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing.
    pub acquire_timeout_ms: u64,
    /// SQLite only: `true` syncs the WAL on every commit (survives power loss,
    /// not only a process crash).
    pub sqlite_sync_full: bool,
    /// SQLite server: when false, AuditEvents of reads, searches and
    /// sign-ins go to the audit journal (`crate::audit::journal`) and are
    /// stored in batches, committed without their own fsync; the
    /// checkpointer's next pass (within
    /// [`super::sqlite_checkpoint::AUDIT_SYNC_WINDOW_MS`]) syncs them. When
    /// true each waits for its own fsynced commit. Resource writes and their
    /// AuditEvents follow `sqlite_sync_full`.
    pub sqlite_audit_sync_full: bool,
    /// SQLite only: page cache of the one writer connection, in KiB.
    pub sqlite_writer_cache_kib: u32,
    /// SQLite only: checkpoint the WAL on a task of its own (a server)
    /// instead of inside the commit that fills it (`vesta import`).
    pub sqlite_background_checkpoint: bool,
}

/// The writer's page cache for a server: small, because SQLite walks the
/// whole cache at the end of almost every write transaction. Its B-tree
/// balancing renumbers pages through the lock-byte page (page 262,145), which
/// lifts the cache's highest page number far past the file's end, so the
/// commit's truncation scans every hash slot instead of the last few. With
/// many small commits (the audit records of reads) that scan cost more than
/// the cache saved (docs/PERFORMANCE.md, fifth pass).
pub const SERVER_WRITER_CACHE_KIB: u32 = 8 * 1024;
/// The writer's page cache for `vesta import`: a few large commits, each
/// touching many index pages.
pub const IMPORT_WRITER_CACHE_KIB: u32 = 64 * 1024;
/// Page cache of each sqlx read connection (searches), in KiB.
const READER_CACHE_KIB: u32 = 64 * 1024;

/// File name of the SQLite database inside the data folder.
pub const SQLITE_FILE: &str = "vesta.db";
/// The audit journal's folder: the database file's name with this suffix.
pub const AUDIT_JOURNAL_SUFFIX: &str = "-audit";

impl Store {
    /// Opens (creating if needed) the database and runs pending migrations.
    pub async fn open(options: &StoreOptions) -> StoreResult<Store> {
        let acquire = Duration::from_millis(options.acquire_timeout_ms);
        let db = match options.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let connect = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(acquire)
                    .connect_with(connect)
                    .await?;
                migrate::migrator(Backend::Postgres).run(&pool).await?;
                Db::Postgres(pool)
            }
            Some(url) if url.starts_with("sqlite:") => {
                let connect = sqlite_tuning(SqliteConnectOptions::from_str(url)?, options);
                open_sqlite(connect, options, acquire).await?
            }
            Some(_) => {
                return Err(StoreError::Setup(
                    "database URL must start with postgres://, postgresql:// or sqlite:".into(),
                ))
            }
            None => {
                std::fs::create_dir_all(&options.data_dir).map_err(|e| {
                    StoreError::Setup(format!(
                        "cannot create data folder {}: {e}",
                        options.data_dir.display()
                    ))
                })?;
                let connect = sqlite_tuning(
                    SqliteConnectOptions::new().filename(options.data_dir.join(SQLITE_FILE)),
                    options,
                );
                open_sqlite(connect, options, acquire).await?
            }
        };
        let stats = std::sync::Arc::new(super::stats::StatsTracker::default());
        if let Db::Postgres(pool) = &db {
            stats.analyzed(super::stats::counted_rows(pool).await?);
        }
        Ok(Store {
            db,
            changes: Default::default(),
            stats,
        })
    }
}

/// WAL pages written before SQLite copies them back into the database file
/// (its default is 1,000). Hot index pages rewritten by many commits are
/// then copied back once per checkpoint instead of once per 4 MB.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;
/// The WAL file is truncated back to this size after a checkpoint.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// How long a statement waits for SQLite's lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn sqlite_tuning(connect: SqliteConnectOptions, options: &StoreOptions) -> SqliteConnectOptions {
    connect
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if options.sqlite_sync_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
        .pragma("cache_size", format!("-{READER_CACHE_KIB}"))
        .pragma("temp_store", "memory")
        .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
        .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string())
}

async fn open_sqlite(
    connect: SqliteConnectOptions,
    options: &StoreOptions,
    acquire: Duration,
) -> StoreResult<Db> {
    let file = super::sqlite_direct::plain_file(connect.get_filename());
    let background = options.sqlite_background_checkpoint && file.is_some();
    // Beside the database file, as SQLite's own `-wal` and `-shm` are.
    let audit_journal = file
        .filter(|_| background && !options.sqlite_audit_sync_full)
        .map(|path| super::sqlite_direct::beside(path, AUDIT_JOURNAL_SUFFIX));
    let mut writer = connect.clone().pragma(
        "cache_size",
        format!("-{}", options.sqlite_writer_cache_kib),
    );
    if background {
        writer = writer.pragma(
            "wal_autocheckpoint",
            super::sqlite_checkpoint::WRITER_FALLBACK_PAGES.to_string(),
        );
    }
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        // Writers queue here one behind another, so allow a longer wait.
        .acquire_timeout(acquire.max(Duration::from_secs(30)))
        .connect_with(writer)
        .await?;
    migrate::migrator(super::Backend::Sqlite)
        .run(&write)
        .await?;
    drop_resource_samples(&write).await?;
    let direct = file
        .map(|path| super::sqlite_direct::DirectReads::new(path, SQLITE_BUSY_TIMEOUT))
        .map(std::sync::Arc::new);
    let checkpointer = match file {
        Some(path) if background => Some(std::sync::Arc::new(
            super::sqlite_checkpoint::Checkpointer::start(
                path,
                write.clone(),
                options.sqlite_sync_full,
                super::sqlite_checkpoint::LIMITS,
            )?,
        )),
        _ => None,
    };
    let read = SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(acquire)
        .connect_with(connect.read_only(true))
        .await?;
    Ok(Db::Sqlite {
        read,
        write,
        direct,
        audit_journal,
        relaxed_audit: checkpointer.is_some()
            && options.sqlite_sync_full
            && !options.sqlite_audit_sync_full,
        checkpointer,
    })
}

/// Removes SQLite's STAT4 samples of the `resources` table (its `sqlite_stat1`
/// averages stay). With samples, the planner re-plans a point read on every
/// execution (each new `res_type`/`res_id` binding expires the statement),
/// and for a page of one type in row order it prefers scanning every
/// resource over the `(res_type, rid)` index, because the samples say how
/// many rows a type has but not that bulk-loaded rows of a type sit together
/// (1,000,000 resources: 43 ms instead of 15 ms for a date-range page).
pub(super) async fn drop_resource_samples(write: &sqlx::SqlitePool) -> StoreResult<()> {
    let has_stat4: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat4'")
            .fetch_optional(write)
            .await?;
    if has_stat4.is_some() {
        sqlx::query("DELETE FROM sqlite_stat4 WHERE tbl = 'resources'")
            .execute(write)
            .await?;
    }
    Ok(())
}
