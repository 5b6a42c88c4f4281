//! The audit trail: AuditEvents (IHE BALP) for every interaction and
//! authorization event, appended to a hash chain that `verify` checks.
//!
//! Writes append their AuditEvent inside their own database transaction
//! (`WriteTx::append_audit`); everything else goes through [`AuditLog::record`],
//! which answers only once the record is safe, so a request whose audit
//! record cannot be written fails (fail closed). Safe means committed (group
//! commit: concurrent records share one transaction) or, on a SQLite server,
//! written to the [`journal`], whose ingester stores the records in batches
//! without making reads wait for the writer. Reading the trail first waits
//! for the journal to be stored ([`AuditLog::settled`]).

pub mod chain;
pub mod event;
pub mod export;
pub mod fence;
pub mod journal;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};

use crate::store::{AuditRow, Backend, Store, StoreResult};

/// Records waiting for the writer; a full queue makes callers wait.
const AUDIT_QUEUE: usize = 4_096;
/// Most records appended in one transaction.
const MAX_AUDIT_BATCH: usize = 512;
/// Journaled records not yet stored; past this, callers wait for room.
const MAX_UNSTORED: usize = 16_384;
/// Longest a caller waits for room in the journal before its request fails.
const ROOM_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an AuditEvent read or `$verify-audit` waits for the journal's
/// records to be stored.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// First pause before storing a refused batch again; doubles up to
/// [`MAX_RETRY_PAUSE`]. The records stay in the journal meanwhile.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// The caller's IP address, when the server was started with connection
/// info (always, through `startup`).
pub fn peer_of(extensions: &axum::http::Extensions) -> Option<String> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// Most purposes of use read from one request.
pub const MAX_PURPOSES: usize = 8;

/// `X-Purpose-Of-Use: TREAT, ETREAT`: v3-ActReason codes (a `system|code`
/// keeps the code); Consent provisions and the AuditEvent use them.
pub fn purposes_of_use(headers: &axum::http::HeaderMap) -> Vec<String> {
    headers
        .get_all("x-purpose-of-use")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().rsplit('|').next().unwrap_or_default().to_string())
        .filter(|p| !p.is_empty())
        .take(MAX_PURPOSES)
        .collect()
}

/// The audit record could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("the audit record could not be written")]
pub struct AuditError;

type Job = (AuditRow, oneshot::Sender<Result<(), AuditError>>);

/// Appends AuditEvents; cheap to share.
pub struct AuditLog {
    store: Store,
    /// Started on first use, inside the runtime that serves requests.
    door: OnceLock<Door>,
}

/// How records reach the database.
enum Door {
    /// Each caller waits for the commit of its record (group commit).
    Commit(mpsc::Sender<Job>),
    /// Each caller waits for its record to be journaled; [`run_ingest`] stores
    /// the journal's records in the background.
    Journal(Arc<Ingest>),
}

/// The journal and what its ingester shares with callers.
struct Ingest {
    journal: journal::Journal,
    /// Rung after each append.
    wake: Notify,
    /// Room for records journaled and not yet stored.
    room: Semaphore,
    /// The last ticket stored; `None` until the files earlier processes
    /// left are stored.
    stored: watch::Sender<Option<u64>>,
    /// Rung by [`AuditLog::close`]; the ingester stores what is left, then ends.
    stop: Notify,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl AuditLog {
    pub fn new(store: Store) -> AuditLog {
        AuditLog {
            store,
            door: OnceLock::new(),
        }
    }

    fn door(&self) -> &Door {
        self.door.get_or_init(|| {
            if let Some(dir) = self.store.audit_journal_dir() {
                match journal::Journal::open(dir) {
                    Ok(Some((journal, left))) => return self.start_journal(journal, left),
                    Ok(None) => tracing::info!(
                        "audit journal in use by another process: records wait for their commit"
                    ),
                    Err(e) => tracing::warn!(
                        error_kind = "audit",
                        "audit journal unavailable ({e}): records wait for their commit"
                    ),
                }
            }
            let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
            tokio::spawn(writer(self.store.clone(), rx));
            Door::Commit(tx)
        })
    }

    fn start_journal(&self, journal: journal::Journal, left: Vec<PathBuf>) -> Door {
        let ingest = Arc::new(Ingest {
            journal,
            wake: Notify::new(),
            room: Semaphore::new(MAX_UNSTORED),
            stored: watch::Sender::new(None),
            stop: Notify::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run_ingest(self.store.clone(), ingest.clone(), left));
        *ingest.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Door::Journal(ingest)
    }

    /// Appends `row`: answers once it is committed, or journaled where the
    /// store keeps a journal (see [`journal`]).
    pub async fn record(&self, row: AuditRow) -> Result<(), AuditError> {
        match self.door() {
            Door::Commit(queue) => {
                let (done, wait) = oneshot::channel();
                queue.send((row, done)).await.map_err(|_| AuditError)?;
                wait.await.map_err(|_| AuditError)?
            }
            Door::Journal(ingest) => {
                let permit = tokio::time::timeout(ROOM_TIMEOUT, ingest.room.acquire())
                    .await
                    .map_err(|_| {
                        tracing::error!(
                            error_kind = "audit",
                            "audit journal full: the database stores no records"
                        );
                        AuditError
                    })?
                    .map_err(|_| AuditError)?;
                match ingest.journal.append(row) {
                    Ok(_) => {
                        permit.forget();
                        ingest.wake.notify_one();
                        Ok(())
                    }
                    Err(e) => {
                        crate::metrics::record_audit_writes(1, false);
                        tracing::error!(error_kind = "audit", "audit journal append failed: {e}");
                        Err(AuditError)
                    }
                }
            }
        }
    }

    /// Waits until every record appended before the call is in the
    /// database, so that reading the trail finds them.
    pub async fn settled(&self) -> Result<(), AuditError> {
        let Door::Journal(ingest) = self.door() else {
            return Ok(());
        };
        let target = ingest.journal.last_ticket();
        let mut stored = ingest.stored.subscribe();
        let reached = tokio::time::timeout(
            SETTLE_TIMEOUT,
            stored.wait_for(|t| t.is_some_and(|t| t >= target)),
        )
        .await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(AuditError),
        }
    }

    /// Stores what the journal holds and stops its ingester (at shutdown,
    /// before the store closes). Records appended later wait in the journal
    /// for the next start.
    pub async fn close(&self) {
        let Some(Door::Journal(ingest)) = self.door.get() else {
            return;
        };
        ingest.stop.notify_one();
        let task = ingest.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(SETTLE_TIMEOUT, &mut task)
                .await
                .is_err()
            {
                // The database refuses the records: they stay journaled.
                task.abort();
            }
        }
    }
}

/// The journal's ingester: first the records earlier processes left in
/// `left`, then batch after batch of this process's, until stopped.
async fn run_ingest(store: Store, ingest: Arc<Ingest>, left: Vec<PathBuf>) {
    for path in left {
        recover(&store, &path).await;
    }
    ingest.stored.send_replace(Some(0));
    loop {
        let stopping = tokio::select! {
            _ = ingest.wake.notified() => false,
            _ = ingest.stop.notified() => true,
        };
        loop {
            let (rows, last) = ingest.journal.take(MAX_AUDIT_BATCH);
            if rows.is_empty() {
                break;
            }
            let count = rows.len();
            store_batch(&store, Arc::new(rows)).await;
            ingest.journal.committed(last, false);
            ingest.room.add_permits(count);
            ingest.stored.send_replace(Some(last));
        }
        if stopping {
            // Everything taken is stored: leave an empty file behind.
            let (_, last) = ingest.journal.take(0);
            ingest.journal.committed(last, true);
            return;
        }
    }
}

/// Stores the records of a journal file left behind that are not stored
/// yet (a crash can come between a batch's commit and its file's removal),
/// then removes the file.
async fn recover(store: &Store, path: &std::path::Path) {
    let read = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || journal::read_file(&path)).await
    };
    let (rows, skipped) = match read {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::error!(error_kind = "audit", "audit journal file unreadable: {e}");
            return;
        }
        Err(_) => return,
    };
    if skipped > 0 {
        tracing::warn!(
            error_kind = "audit",
            skipped,
            "damaged audit journal lines skipped (a write cut short)"
        );
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let stored = until_ok("audit journal recovery", || store.audit_ids_stored(&ids)).await;
    let fresh: Vec<AuditRow> = rows
        .into_iter()
        .filter(|r| !stored.contains(&r.id))
        .collect();
    let recovered = fresh.len();
    for batch in fresh.chunks(MAX_AUDIT_BATCH) {
        store_batch(store, Arc::new(batch.to_vec())).await;
    }
    if recovered > 0 {
        tracing::info!(recovered, "audit records stored from the journal");
    }
    journal::remove(path);
}

/// Appends `rows` in one transaction, trying again (with growing pauses)
/// until it commits: the records are safe in the journal meanwhile.
async fn store_batch(store: &Store, rows: Arc<Vec<AuditRow>>) {
    until_ok("storing journaled audit records", || {
        let (store, rows) = (store.clone(), rows.clone());
        async move {
            let shared = rows.clone();
            let result = match store.audit_session(move |append, _| append(&shared)).await {
                Some(Ok(committed)) => committed,
                Some(Err(e)) => Err(e),
                None => store.append_audit(&rows).await,
            };
            crate::metrics::record_audit_writes(rows.len(), result.is_ok());
            result
        }
    })
    .await
}

/// Runs `attempt` until it succeeds, logging each failure as `what` and
/// pausing [`RETRY_PAUSE`], doubling up to [`MAX_RETRY_PAUSE`].
async fn until_ok<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut pause = RETRY_PAUSE;
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(e) => {
                tracing::error!(error_kind = "audit", "{what} failed: {}", e.kind_name());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
        }
    }
}

/// Most batches one SQLite writer session commits before it lets other
/// writers (resource writes) take the connection.
const MAX_SESSION_BATCHES: usize = 8;
/// Longest a SQLite writer session keeps taking new batches.
const MAX_SESSION: std::time::Duration = std::time::Duration::from_millis(20);

/// `first` and what else is queued, up to a batch.
fn take_batch(first: Job, rx: &mut mpsc::Receiver<Job>) -> Vec<Job> {
    let mut jobs = vec![first];
    while jobs.len() < MAX_AUDIT_BATCH {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
    jobs
}

/// Answers every caller of a batch of `count` records with `result`.
fn answer(
    waiters: Vec<oneshot::Sender<Result<(), AuditError>>>,
    count: usize,
    result: StoreResult<()>,
) {
    crate::metrics::record_audit_writes(count, result.is_ok());
    if let Err(e) = &result {
        tracing::error!(
            error_kind = "audit",
            "audit append failed: {}",
            e.kind_name()
        );
    }
    for w in waiters {
        let _ = w.send(result.as_ref().map(|_| ()).map_err(|_| AuditError));
    }
}

/// The group-commit loop: takes what is queued (up to a batch), appends it
/// in one transaction, and answers every caller. On SQLite the writer
/// connection is held for a session that commits batch after batch while
/// more are queued (at most [`MAX_SESSION_BATCHES`] or [`MAX_SESSION`], and
/// no longer once the WAL checkpointer waits for the writer),
/// answering each batch as soon as it commits; a session that cannot start
/// drops its batch, which fails those requests (fail closed).
async fn writer(store: Store, rx: mpsc::Receiver<Job>) {
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
    loop {
        let jobs = {
            let mut q = queue.lock().await;
            let Some(first) = q.recv().await else { return };
            take_batch(first, &mut q)
        };
        if store.backend() != Backend::Sqlite {
            let (rows, waiters): (Vec<AuditRow>, Vec<_>) = jobs.into_iter().unzip();
            let result = store.append_audit(&rows).await;
            answer(waiters, rows.len(), result);
            continue;
        }
        let q = queue.clone();
        let session = store
            .audit_session(move |append, writer_wanted| {
                let started = std::time::Instant::now();
                let mut jobs = jobs;
                for round in 1..=MAX_SESSION_BATCHES {
                    let (rows, waiters): (Vec<AuditRow>, Vec<_>) = jobs.into_iter().unzip();
                    answer(waiters, rows.len(), append(&rows));
                    if round == MAX_SESSION_BATCHES
                        || started.elapsed() >= MAX_SESSION
                        || writer_wanted()
                    {
                        break;
                    }
                    // The task awaits this session, so the queue is free.
                    let mut q = q.blocking_lock();
                    match q.try_recv() {
                        Ok(first) => jobs = take_batch(first, &mut q),
                        Err(_) => break,
                    }
                }
            })
            .await;
        if let Some(Err(e)) = session {
            tracing::error!(
                error_kind = "audit",
                "audit writer session failed: {}",
                e.kind_name()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditQuery, StoreOptions};

    fn options(dir: &std::path::Path, audit_sync_full: bool) -> StoreOptions {
        StoreOptions {
            database_url: None,
            data_dir: dir.to_path_buf(),
            max_connections: 2,
            acquire_timeout_ms: 5_000,
            sqlite_sync_full: true,
            sqlite_audit_sync_full: audit_sync_full,
            sqlite_writer_cache_kib: 1_024,
            sqlite_background_checkpoint: true,
        }
    }

    fn row(id: &str) -> AuditRow {
        AuditRow {
            id: id.into(),
            recorded_ms: 1_700_000_000_000,
            type_code: "t".into(),
            subtype: "s".into(),
            action: "R".into(),
            outcome: "0".into(),
            content: format!(r#"{{"resourceType":"AuditEvent","id":"{id}"}}"#),
            refs: vec![("patient", "Patient/p1".into())],
        }
    }

    async fn stored_ids(store: &Store) -> Vec<String> {
        let q = AuditQuery {
            ascending: true,
            ..Default::default()
        };
        let (page, _) = store.audit_search(&q, 100, false).await.expect("search");
        page.into_iter()
            .map(|(_, json)| {
                let v: serde_json::Value = serde_json::from_str(&json).expect("json");
                v["id"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    /// A SQLite server store with its journal folder.
    async fn journaled_store(dir: &std::path::Path) -> (Store, std::path::PathBuf) {
        let store = Store::open(&options(dir, false)).await.expect("open");
        let journal = store.audit_journal_dir().expect("journal").to_path_buf();
        (store, journal)
    }

    fn journal_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .expect("journal dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "ndjson"))
            })
            .count()
    }

    #[tokio::test]
    async fn journaled_records_are_stored_once_settled() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, journal_dir) = journaled_store(dir.path()).await;
        let log = AuditLog::new(store.clone());
        for i in 0..50 {
            log.record(row(&format!("r{i:02}"))).await.expect("record");
        }
        log.settled().await.expect("settled");
        let ids = stored_ids(&store).await;
        assert_eq!(ids.len(), 50);
        assert_eq!(ids[0], "r00", "stored in the order recorded");
        assert_eq!(ids[49], "r49");
        log.close().await;
        // Everything stored: one empty file is all that stays.
        assert_eq!(journal_files(&journal_dir), 1);
        let report = crate::audit::chain::verify(&store).await.expect("verify");
        assert!(report.is_intact());
        store.close().await;
    }

    #[tokio::test]
    async fn records_a_crash_left_in_the_journal_are_stored_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, journal_dir) = journaled_store(dir.path()).await;
        // An earlier process journaled three records and stored the first
        // (its crash came before the journal file was removed).
        store.append_audit(&[row("a")]).await.expect("append");
        {
            let (journal, _) = journal::Journal::open(&journal_dir)
                .expect("open journal")
                .expect("not held");
            for id in ["a", "b", "c"] {
                journal.append(row(id)).expect("append");
            }
        }
        let log = AuditLog::new(store.clone());
        log.settled().await.expect("settled");
        assert_eq!(stored_ids(&store).await, ["a", "b", "c"]);
        assert_eq!(journal_files(&journal_dir), 1, "the old file is removed");
        log.close().await;
        assert!(crate::audit::chain::verify(&store)
            .await
            .expect("verify")
            .is_intact());
        store.close().await;
    }

    #[tokio::test]
    async fn a_journal_held_elsewhere_or_turned_off_means_waiting_for_commits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, journal_dir) = journaled_store(dir.path()).await;
        let _held = journal::Journal::open(&journal_dir)
            .expect("open journal")
            .expect("not held");
        let log = AuditLog::new(store.clone());
        log.record(row("x")).await.expect("record");
        // Committed before `record` answered: no settling needed.
        assert_eq!(stored_ids(&store).await, ["x"]);
        store.close().await;

        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&options(dir.path(), true)).await.expect("open");
        assert!(store.audit_journal_dir().is_none());
        store.close().await;
    }
}
