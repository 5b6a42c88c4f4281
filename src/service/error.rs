//! The service layer's error: an HTTP status plus the OperationOutcome issues that explain it.

use crate::fhir::outcome::{operation_outcome, Issue};
use crate::store::StoreError;
use serde_json::Value;

/// A failed interaction. Every door renders it as an OperationOutcome with `status`.
#[derive(Debug, Clone)]
pub struct ServiceError {
    pub status: u16,
    pub issues: Vec<Issue>,
    /// For 429: seconds until the budget allows another request.
    pub retry_after_s: Option<u64>,
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn new(status: u16, issue: Issue) -> Self {
        ServiceError {
            status,
            issues: vec![issue],
            retry_after_s: None,
        }
    }

    /// 429 with issue code `throttled`; doors send `Retry-After: secs`.
    pub fn throttled(secs: u64) -> Self {
        ServiceError {
            retry_after_s: Some(secs),
            ..ServiceError::new(
                429,
                Issue::error("throttled", format!("too many requests; retry in {secs} s")),
            )
        }
    }

    /// 400 with issue code `invalid`, optionally at an element path.
    pub fn invalid(message: impl Into<String>, path: Option<&str>) -> Self {
        let mut issue = Issue::error("invalid", message);
        if let Some(p) = path {
            issue = issue.at(p);
        }
        Self::new(400, issue)
    }

    /// 400 with one issue per problem of a refused resource (never none).
    pub fn invalid_all(e: crate::fhir::validate::Invalid) -> Self {
        let mut issues: Vec<Issue> = e
            .problems
            .into_iter()
            .map(|p| Issue::error(p.code, p.message).at(p.path))
            .collect();
        if issues.is_empty() {
            issues.push(Issue::error("invalid", "the resource is not valid"));
        }
        // A check that could not run (no thread for a deep document) is
        // the server's trouble, not the client's.
        let transient = issues.iter().any(|i| i.code == "transient");
        ServiceError {
            status: if transient { 503 } else { 400 },
            issues,
            retry_after_s: None,
        }
    }

    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::new(400, Issue::error("not-supported", message))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, Issue::error("not-found", message))
    }

    /// 403: the token does not allow this (never used to hide data; see `policy`).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, Issue::error("forbidden", message))
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, Issue::error("deleted", message))
    }

    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(412, Issue::error("conflict", message))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, Issue::error("conflict", message))
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, Issue::error("too-costly", message))
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, Issue::error("not-supported", message))
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, Issue::error("not-supported", message))
    }

    pub fn unavailable() -> Self {
        Self::new(
            503,
            Issue::error("transient", "the database is unavailable; try again"),
        )
    }

    pub fn internal() -> Self {
        Self::new(500, Issue::error("exception", "internal server error"))
    }

    pub fn outcome(&self) -> Value {
        operation_outcome(&self.issues)
    }
}

/// The database is there but cannot answer now (pool exhausted, I/O, SQLite
/// busy or locked past its timeout): 503, worth a retry.
fn unavailable(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => true,
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
            f.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        ),
        _ => false,
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => {
                ServiceError::conflict("a concurrent request wrote the same resource; retry")
            }
            e if unavailable(&e) => {
                tracing::warn!(kind = "database_unavailable", "database unavailable");
                ServiceError::unavailable()
            }
            other => {
                // Only the error kind is logged: driver messages can quote values.
                let code = match &other {
                    StoreError::Database(sqlx::Error::Database(db)) => {
                        db.code().map(|c| c.to_string()).unwrap_or_default()
                    }
                    StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                        f.extended_code.to_string()
                    }
                    _ => String::new(),
                };
                tracing::error!(kind = "database_error", code = %code, "storage failure");
                ServiceError::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_failure(code: i32) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    #[test]
    fn busy_sqlite_is_unavailable_and_other_failures_internal() {
        let busy = ServiceError::from(sqlite_failure(rusqlite::ffi::SQLITE_BUSY));
        assert_eq!(busy.status, 503);
        let locked = ServiceError::from(sqlite_failure(rusqlite::ffi::SQLITE_LOCKED));
        assert_eq!(locked.status, 503);
        let corrupt = ServiceError::from(sqlite_failure(rusqlite::ffi::SQLITE_CORRUPT));
        assert_eq!(corrupt.status, 500);
        let timeout = ServiceError::from(StoreError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(timeout.status, 503);
    }
}
