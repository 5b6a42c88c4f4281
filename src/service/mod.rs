//! The interactions every door (REST, bundles, import, later MCP) calls.
//!
//! A door parses its request into an [`Interaction`], calls
//! [`FhirService::execute`], and renders the [`Outcome`]. Validation, limits
//! and versioning rules live here once.

mod access;
mod audit;
mod audit_query;
mod bundle;
mod conditional;
pub mod consent;
mod consent_cache;
mod crud;
pub mod error;
mod history;
pub mod import;
pub mod interaction;
mod reindex;
pub mod search;

use std::sync::Arc;

use serde_json::Value;

pub use crud::{apply_json_patch, MAX_PATCHED_BYTES, MAX_PATCH_OPERATIONS};
pub use error::{ServiceError, ServiceResult};
pub use interaction::{Interaction, Preference};

use crate::fhir::capability;
use crate::fhir::instant::Millis;
use crate::policy::Principal;
use crate::search::definitions::{Registry, RegistryCell};
use crate::store::Store;

/// Limits on what one request may ask for. Each is configurable; see `config`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most entries in one batch or transaction Bundle.
    pub max_bundle_entries: usize,
    /// Largest `_count` honoured on search and history pages.
    pub max_count: usize,
    /// Page size when no `_count` is given.
    pub default_count: usize,
}

/// Default for [`Limits::max_body_bytes`]: 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Default for [`Limits::max_bundle_entries`].
pub const DEFAULT_MAX_BUNDLE_ENTRIES: usize = 10_000;
/// Default for [`Limits::max_count`].
pub const DEFAULT_MAX_COUNT: usize = 1_000;
/// Default for [`Limits::default_count`].
pub const DEFAULT_COUNT: usize = 50;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_bundle_entries: DEFAULT_MAX_BUNDLE_ENTRIES,
            max_count: DEFAULT_MAX_COUNT,
            default_count: DEFAULT_COUNT,
        }
    }
}

/// Who is asking, from where, through which door, and under which request id.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub request_id: String,
    /// The verified subject; every decision in the service reads it.
    pub principal: Arc<Principal>,
    /// The caller's network address, for the audit trail.
    pub peer: Option<String>,
    /// `rest`, `mcp`, `cli`, `auth`: recorded in every AuditEvent.
    pub door: &'static str,
    /// Purposes of use asserted for the request (v3-ActReason codes, from
    /// the `X-Purpose-Of-Use` header); Consent provisions match on them.
    pub purposes: Vec<String>,
    /// The MCP tool (or resource/prompt) the request came from, recorded in
    /// the AuditEvent beside the door; `None` for other doors.
    pub tool: Option<String>,
    /// The interaction being audited (set per interaction by `execute`).
    audit: Arc<audit::AuditSlot>,
    /// AuditEvents recorded for the request this context serves (shared by
    /// its clones: the HTTP fence audits a refusal only when it is zero).
    pub recorded: crate::audit::fence::Recorded,
}

impl Ctx {
    pub fn new(request_id: impl Into<String>, principal: Arc<Principal>) -> Ctx {
        Ctx {
            request_id: request_id.into(),
            principal,
            peer: None,
            door: "rest",
            purposes: Vec::new(),
            tool: None,
            audit: Arc::default(),
            recorded: crate::audit::fence::Recorded::current(),
        }
    }

    /// The same caller, counting its AuditEvents into `recorded` (a door
    /// whose handlers may run on another task than the request's).
    pub fn with_recorded(mut self, recorded: crate::audit::fence::Recorded) -> Ctx {
        self.recorded = recorded;
        self
    }

    /// The same caller through `door` from `peer`.
    pub fn via(mut self, door: &'static str, peer: Option<String>) -> Ctx {
        self.door = door;
        self.peer = peer;
        self
    }

    /// The same caller through the MCP tool `name` (recorded in the AuditEvent).
    pub fn with_tool(mut self, name: impl Into<String>) -> Ctx {
        self.tool = Some(name.into());
        self
    }

    /// A local command (import, reindex) run by the operator: no restriction.
    pub fn internal() -> Ctx {
        Ctx::new(String::new(), Arc::new(Principal::open())).via("cli", None)
    }
}

/// A resource as stored: its JSON text (served as is) and version facts.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub res_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: Millis,
    pub json: String,
}

/// What an interaction answers.
#[derive(Debug, Clone)]
pub enum Body {
    /// A stored resource (read, vread, create, update, patch).
    Stored(StoredResource),
    /// A generated resource (Bundle, CapabilityStatement, OperationOutcome).
    Generated(Value),
    None,
}

/// The result of an interaction: HTTP status, body and version headers.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    pub body: Body,
    /// Version facts for ETag / Last-Modified / Location, when a single
    /// resource version is concerned (also after a delete).
    pub version: Option<VersionFacts>,
}

/// Identifies one version, for the response headers.
#[derive(Debug, Clone)]
pub struct VersionFacts {
    pub res_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: Millis,
}

impl Outcome {
    fn stored(status: u16, r: StoredResource) -> Outcome {
        Outcome {
            status,
            version: Some(VersionFacts {
                res_type: r.res_type.clone(),
                id: r.id.clone(),
                version: r.version,
                last_updated: r.last_updated,
            }),
            body: Body::Stored(r),
        }
    }

    fn generated(status: u16, v: Value) -> Outcome {
        Outcome {
            status,
            body: Body::Generated(v),
            version: None,
        }
    }
}

/// The FHIR service: cheap to clone, shared by every door.
#[derive(Clone)]
pub struct FhirService {
    store: Store,
    limits: Limits,
    /// Absolute FHIR base URL, used in `fullUrl` and links.
    base_url: String,
    started_ms: Millis,
    /// The search parameters in force (vendored plus stored, after a reindex).
    registry: RegistryCell,
    /// `rest.security` of the CapabilityStatement (SMART endpoints).
    security: Option<Value>,
    /// The audit trail every interaction is recorded in.
    audit: Arc<crate::audit::AuditLog>,
    /// How patients' Consents are enforced.
    consent: consent::ConsentSettings,
    /// Consents remembered between requests (see `consent_cache`).
    consent_cache: Arc<consent_cache::ConsentCache>,
    /// Request budgets per user and backend client, checked by
    /// [`FhirService::handle`] for every door.
    rate_limiter: Option<Arc<crate::guard::RateLimiter>>,
}

impl FhirService {
    pub fn new(store: Store, limits: Limits, base_url: String) -> Self {
        FhirService {
            limits,
            base_url: base_url.trim_end_matches('/').to_string(),
            started_ms: crate::fhir::instant::now_ms(),
            registry: RegistryCell::default(),
            security: None,
            audit: Arc::new(crate::audit::AuditLog::new(store.clone())),
            consent: consent::ConsentSettings::default(),
            consent_cache: Arc::default(),
            rate_limiter: None,
            store,
        }
    }

    /// Sets the request budgets that [`FhirService::handle`] enforces.
    pub fn set_rate_limiter(&mut self, limiter: crate::guard::RateLimiter) {
        self.rate_limiter = Some(Arc::new(limiter));
    }

    /// Sets how patients' Consents are enforced.
    pub fn set_consent(&mut self, settings: consent::ConsentSettings) {
        self.consent = settings;
    }

    /// Sets the CapabilityStatement's `rest.security` (the SMART endpoints).
    pub fn set_security(&mut self, security: Value) {
        self.security = Some(security);
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores what the audit journal holds, then closes the store.
    pub async fn close(&self) {
        self.audit.close().await;
        self.store.close().await;
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The search parameters in force now.
    pub fn registry(&self) -> std::sync::Arc<Registry> {
        self.registry.get()
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Runs one interaction, unaudited: only [`FhirService::execute`] calls it.
    async fn run(&self, ctx: &Ctx, interaction: Interaction) -> ServiceResult<Outcome> {
        audit::refuse_audit_writes(&interaction)?;
        self.break_glass(ctx)?;
        if let Some(answer) = self.audit_interaction(ctx, &interaction).await {
            return answer;
        }
        match interaction {
            Interaction::Capabilities => {
                let mut cs = capability::capability_statement(
                    &self.base_url,
                    self.started_ms,
                    &self.registry.get(),
                );
                if let (Some(sec), Some(rest)) = (&self.security, cs["rest"].get_mut(0)) {
                    rest["security"] = sec.clone();
                }
                Ok(Outcome::generated(200, cs))
            }
            Interaction::Read { res_type, id } => self.read(ctx, &res_type, &id).await,
            Interaction::VRead {
                res_type,
                id,
                version,
            } => self.vread(ctx, &res_type, &id, &version).await,
            Interaction::Create {
                res_type,
                resource,
                if_none_exist: None,
            } => self.create(ctx, res_type, resource).await,
            i @ (Interaction::Create { .. }
            | Interaction::ConditionalUpdate { .. }
            | Interaction::ConditionalPatch { .. }
            | Interaction::ConditionalDelete { .. }) => self.conditional(ctx, i).await,
            Interaction::Update {
                res_type,
                id,
                resource,
                if_match,
            } => self.update(ctx, res_type, &id, resource, if_match).await,
            Interaction::Patch {
                res_type,
                id,
                patch,
                if_match,
            } => self.patch(ctx, res_type, &id, patch, if_match).await,
            Interaction::Delete { res_type, id } => self.delete(ctx, res_type, &id).await,
            Interaction::History { scope, params } => self.history(ctx, scope, &params).await,
            Interaction::Search {
                target,
                params,
                strict,
            } => self.search(ctx, target, &params, strict).await,
            Interaction::Reindex => {
                if !ctx.principal.is_admin() {
                    return Err(ServiceError::forbidden(
                        "$reindex needs an administrator's token",
                    ));
                }
                self.reindex_operation().await
            }
            Interaction::Bundle { bundle, preference } => {
                self.process_bundle(ctx, bundle, preference).await
            }
            // Answered by `audit_interaction` above.
            Interaction::VerifyAudit => Err(ServiceError::internal()),
        }
    }
}
