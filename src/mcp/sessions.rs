//! MCP sessions for the protocol revisions with an `initialize` handshake
//! (2025-11-25 and before): rmcp's in-memory session manager with a bound on
//! live sessions and an idle timeout, and each session bound to the subject
//! and client of the token that opened it.
//!
//! A session carries no authority: every request in it is authorised by its
//! own bearer token in [`super::http`]'s guard, which also refuses a token
//! whose subject or client is not the session's [`Owner`]. Revision
//! 2026-07-28 has no sessions; rmcp serves it statelessly beside these.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::ServerSseMessage;
use rmcp::transport::streamable_http_server::{SessionId, SessionManager};

use crate::policy::Principal;

/// Default for `mcp_max_sessions`: live sessions one instance holds.
pub const DEFAULT_MCP_MAX_SESSIONS: usize = 1_000;
/// Largest `mcp_max_sessions` accepted.
pub const MAX_MCP_SESSIONS: usize = 100_000;
/// Default for `mcp_session_idle_s`: a session with no message for this
/// long is closed (its id then answers 404).
pub const DEFAULT_MCP_SESSION_IDLE_S: u64 = 300;
/// Largest `mcp_session_idle_s` accepted (one day).
pub const MAX_MCP_SESSION_IDLE_S: u64 = 86_400;
/// Longest `Mcp-Session-Id` looked up; rmcp issues UUIDs (36 characters).
pub const MAX_SESSION_ID_CHARS: usize = 64;

/// Whose session it is: the token's client and subject (the user, or the
/// client itself for a backend service). A later token of the same user
/// and app (a refreshed one) may continue the session; any other may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    client_id: Option<String>,
    subject: Option<String>,
}

impl Owner {
    pub fn of(p: &Principal) -> Owner {
        Owner {
            client_id: p.client_id.clone(),
            subject: p.username.clone().or_else(|| p.client_id.clone()),
        }
    }
}

/// Why a session could not be opened or reached.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    #[error("the server holds its limit of {0} MCP sessions")]
    Full(usize),
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
}

/// The session table behind `/mcp`: rmcp's [`LocalSessionManager`] (idle
/// timeout from `mcp_session_idle_s`), at most `max` live sessions, and the
/// owner of each.
pub struct Sessions {
    inner: LocalSessionManager,
    owners: Mutex<HashMap<SessionId, Owner>>,
    /// Serialises "count, then create" so the bound is exact.
    creating: tokio::sync::Mutex<()>,
    max: usize,
}

impl Sessions {
    pub fn new(max: usize, idle_s: u64) -> Sessions {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(Duration::from_secs(idle_s));
        Sessions {
            inner,
            owners: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            max,
        }
    }

    fn owners(&self) -> MutexGuard<'_, HashMap<SessionId, Owner>> {
        // A panic while holding the lock leaves the map consistent (single
        // inserts and removes), so a poisoned lock is still usable.
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live sessions (opened, not yet ended or timed out).
    pub async fn live(&self) -> usize {
        self.inner.sessions.read().await.len()
    }

    /// True when no further session may be opened.
    pub async fn is_full(&self) -> bool {
        self.live().await >= self.max
    }

    /// The most live sessions.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Records who opened `id` (called once, when `initialize` answered).
    /// A session that has already ended is not recorded, and owners of
    /// ended sessions are dropped, so the table never outgrows the sessions.
    pub async fn bind(&self, id: &str, owner: Owner) {
        let live = self.inner.sessions.read().await;
        let mut owners = self.owners();
        if live.contains_key(id) {
            owners.insert(Arc::from(id), owner);
        }
        owners.retain(|k, _| live.contains_key(k));
    }

    /// Who opened session `id`; `None` for an unknown or ended session, or
    /// one never bound (which is then refused like an unknown one).
    pub fn owner(&self, id: &str) -> Option<Owner> {
        self.owners().get(id).cloned()
    }
}

impl SessionManager for Sessions {
    type Error = SessionsError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let _one_at_a_time = self.creating.lock().await;
        if self.is_full().await {
            return Err(SessionsError::Full(self.max));
        }
        Ok(self.inner.create_session().await?)
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        Ok(self.inner.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        Ok(self.inner.has_session(id).await?)
    }

    /// DELETE, the idle timeout and a failed handshake all end here.
    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.inner.close_session(id).await;
        self.owners().remove(id);
        Ok(closed?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.create_stream(id, message).await?)
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        Ok(self.inner.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.resume(id, last_event_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_and_owned() {
        let s = Sessions::new(1, 60);
        let (id, _transport) = s.create_session().await.expect("first session");
        assert!(s.is_full().await);
        assert!(matches!(
            s.create_session().await,
            Err(SessionsError::Full(1))
        ));
        let alice = Owner {
            client_id: Some("app".into()),
            subject: Some("alice".into()),
        };
        assert_eq!(s.owner(&id), None, "unbound sessions have no owner");
        s.bind(&id, alice.clone()).await;
        assert_eq!(s.owner(&id), Some(alice));
        s.close_session(&id).await.expect("close");
        assert_eq!(s.owner(&id), None);
        assert!(!s.is_full().await);
    }

    #[test]
    fn owner_is_subject_and_client() {
        let mut p = Principal::anonymous();
        p.client_id = Some("backend".into());
        let backend = Owner::of(&p);
        assert_eq!(backend.subject.as_deref(), Some("backend"));
        p.username = Some("pat".into());
        assert_ne!(Owner::of(&p), backend);
    }
}
