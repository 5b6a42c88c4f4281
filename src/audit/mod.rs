//! The audit trail: AuditEvents (IHE BALP) for every interaction and
//! authorization event, appended to a hash chain that `verify` checks.
//!
//! Writes append their AuditEvent inside their own database transaction
//! (`WriteTx::append_audit`); everything else goes through [`AuditLog::record`],
//! which batches concurrent records into one transaction (group commit) and
//! answers only once they are committed, so a request whose audit record
//! cannot be written fails (fail closed).

pub mod chain;
pub mod event;
pub mod export;

use std::sync::OnceLock;

use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditRow, Backend, Store, StoreResult};

/// Records waiting for the writer; a full queue makes callers wait.
const AUDIT_QUEUE: usize = 4_096;
/// Most records appended in one transaction.
const MAX_AUDIT_BATCH: usize = 512;

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
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl AuditLog {
    pub fn new(store: Store) -> AuditLog {
        AuditLog {
            store,
            queue: OnceLock::new(),
        }
    }

    fn sender(&self) -> &mpsc::Sender<Job> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
            tokio::spawn(writer(self.store.clone(), rx));
            tx
        })
    }

    /// Appends `row` and waits until it is committed.
    pub async fn record(&self, row: AuditRow) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        self.sender()
            .send((row, done))
            .await
            .map_err(|_| AuditError)?;
        wait.await.map_err(|_| AuditError)?
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
