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

use crate::store::{AuditRow, Store};

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

/// The group-commit loop: takes what is queued (up to a batch), appends it
/// in one transaction, and answers every caller.
async fn writer(store: Store, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_AUDIT_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (rows, waiters): (Vec<AuditRow>, Vec<_>) = jobs.into_iter().unzip();
        let count = rows.len();
        let result = store.append_audit(rows).await;
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
}
