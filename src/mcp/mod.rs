//! The MCP door: an rmcp server whose tools, resources and prompts call
//! [`FhirService::execute`] directly, with a [`Ctx`] via `mcp` naming the
//! tool, so scopes, Consent, limits and the audit trail apply exactly as
//! for REST. Served over streamable HTTP at `/mcp` (see [`http`]) and over
//! stdio by `vesta mcp` (see [`serve_stdio`]).
//!
//! Architecture Invariant: this module holds no authorization or consent
//! logic. It turns a bearer token into a `Principal` (as the REST door does)
//! and everything else is decided in `service/`.

pub mod clinical;
pub mod http;
pub mod registry;
pub mod render;
pub mod resources;
pub mod sessions;
pub mod tools;

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt};

use crate::auth::AuthServer;
use crate::policy::Principal;
use crate::service::{Ctx, FhirService};

/// Most extra hosts in `mcp_allowed_hosts`.
pub const MAX_MCP_ALLOWED_HOSTS: usize = 64;
/// Longest host name accepted in `mcp_allowed_hosts`.
pub const MAX_HOST_CHARS: usize = 255;

/// Checks the `mcp_allowed_hosts` setting: bare `name` or `name:port`.
pub fn check_allowed_hosts(hosts: &[String]) -> Result<(), String> {
    if hosts.len() > MAX_MCP_ALLOWED_HOSTS {
        return Err(format!("at most {MAX_MCP_ALLOWED_HOSTS} hosts"));
    }
    for h in hosts {
        let ok = !h.is_empty()
            && h.len() <= MAX_HOST_CHARS
            && !h.contains(['/', ' ', '@', '?', '#'])
            && h.is_ascii();
        if !ok {
            return Err(format!(
                "'{h}' is not a host name or host:port (no scheme, no path)"
            ));
        }
    }
    Ok(())
}

/// Who is calling, as the door that authenticated the request saw it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub peer: Option<String>,
    pub request_id: String,
    pub purposes: Vec<String>,
    /// The HTTP request's AuditEvent counter (rmcp may run the handler on
    /// another task than the request's, where the task-local is not set).
    pub recorded: crate::audit::fence::Recorded,
}

/// Where a request's caller comes from.
#[derive(Clone)]
enum CallerSource {
    /// Streamable HTTP: the bearer middleware put a [`Caller`] in the HTTP
    /// request's extensions, which rmcp hands over as `http::request::Parts`.
    Http,
    /// stdio: the token from `VESTA_MCP_TOKEN`, verified again on every
    /// request (so expiry and revocation take effect mid-session).
    Stdio {
        auth: Arc<AuthServer>,
        token: Arc<str>,
    },
}

/// The MCP server: one per session (HTTP) or process (stdio); cheap to clone.
#[derive(Clone)]
pub struct McpDoor {
    service: FhirService,
    source: CallerSource,
}

impl McpDoor {
    /// The door behind `/mcp`: callers come from the bearer middleware.
    pub fn http(service: FhirService) -> McpDoor {
        McpDoor {
            service,
            source: CallerSource::Http,
        }
    }

    /// The stdio door for `token` (verified for the MCP audience per request).
    pub fn stdio(service: FhirService, auth: Arc<AuthServer>, token: String) -> McpDoor {
        McpDoor {
            service,
            source: CallerSource::Stdio {
                auth,
                token: token.into(),
            },
        }
    }

    /// The caller of a request. Fails closed: no verified caller, no answer.
    async fn caller(&self, rc: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
        match &self.source {
            CallerSource::Http => rc
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(|p| p.extensions.get::<Caller>())
                .cloned()
                .ok_or_else(|| ErrorData::internal_error("no authenticated caller", None)),
            CallerSource::Stdio { auth, token } => {
                let header = format!("Bearer {token}");
                let principal = match auth.principal(Some(&header), &auth.mcp_resource()).await {
                    Ok(p) => p,
                    Err(e) => {
                        // Expired or revoked mid-session: refused and audited
                        // like a 401 at the HTTP door.
                        let why = match e {
                            crate::auth::BearerError::Missing => "missing".to_string(),
                            crate::auth::BearerError::Invalid(w) => w,
                        };
                        let err = crate::service::ServiceError::new(
                            401,
                            crate::fhir::outcome::Issue::error("login", why.clone()),
                        );
                        let ctx = Ctx::new(String::new(), Arc::new(Principal::anonymous()))
                            .via("mcp", None);
                        if self.service.audit_refusal(&ctx, None, &err).await.is_err() {
                            return Err(ErrorData::internal_error(
                                "the audit trail cannot be written",
                                None,
                            ));
                        }
                        return Err(ErrorData::invalid_request(
                            format!("VESTA_MCP_TOKEN is not valid: {why}"),
                            None,
                        ));
                    }
                };
                Ok(Caller {
                    principal: Arc::new(principal),
                    peer: None,
                    request_id: uuid::Uuid::new_v4().to_string(),
                    purposes: Vec::new(),
                    recorded: Default::default(),
                })
            }
        }
    }

    /// The service context for one tool (or resource, or prompt) call.
    async fn ctx(&self, rc: &RequestContext<RoleServer>, tool: &str) -> Result<Ctx, ErrorData> {
        let c = self.caller(rc).await?;
        let mut ctx = Ctx::new(c.request_id, c.principal)
            .via("mcp", c.peer)
            .with_tool(tool)
            .with_recorded(c.recorded);
        ctx.purposes = c.purposes;
        Ok(ctx)
    }
}

impl ServerHandler for McpDoor {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .build();
        ServerConfig::new(caps)
            .with_server_info(
                Implementation::new("vesta", env!("CARGO_PKG_VERSION"))
                    .with_title("Vesta FHIR R4 server"),
            )
            .with_instructions(
                "FHIR R4 data through Vesta. Use find_tools to discover tools, resolve to \
                 find a patient by name and birth date (it never picks one of several), \
                 patient_summary for a condensed record. Tools that change data \
                 (fhir_update, fhir_patch, fhir_delete, fhir_transaction) make a dry run \
                 unless called with confirm: true.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            registry::catalog().iter().map(|t| t.to_tool()).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(spec) = registry::find(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool '{}'", request.name),
                None,
            ));
        };
        let ctx = self.ctx(&context, spec.name).await?;
        let args = request.arguments.unwrap_or_default();
        let started = std::time::Instant::now();
        let out = registry::invoke(spec, self.service.clone(), ctx, args).await;
        crate::metrics::record_tool_call(spec.name, out.is_error, started.elapsed().as_secs_f64());
        Ok(CallToolResponse::Complete(out.into_result()))
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let ctx = self.ctx(&context, "resources/list").await?;
        resources::list(&self.service, &ctx, request.and_then(|r| r.cursor)).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let ctx = self.ctx(&context, "resources/read").await?;
        resources::read(&self.service, &ctx, &request.uri)
            .await
            .map(ReadResourceResponse::Complete)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(resources::prompts()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        resources::prompt(&request.name, request.arguments.as_ref())
            .map(GetPromptResponse::Complete)
    }
}

/// A finished tool call: FHIR JSON (or an OperationOutcome) and a short text.
pub(crate) fn tool_result(
    structured: serde_json::Value,
    text: String,
    is_error: bool,
) -> CallToolResult {
    let mut r = if is_error {
        CallToolResult::error(vec![rmcp::model::ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![rmcp::model::ContentBlock::text(text)])
    };
    r.structured_content = Some(structured);
    r
}

/// `vesta mcp`: serves MCP over stdin/stdout for the token in
/// `VESTA_MCP_TOKEN` (stdio has no OAuth), until stdin closes.
pub async fn serve_stdio(
    service: FhirService,
    auth: Arc<AuthServer>,
    token: String,
) -> anyhow::Result<()> {
    // Fail at start, not at the first call, when the token is not for us.
    let header = format!("Bearer {token}");
    if let Err(e) = auth.principal(Some(&header), &auth.mcp_resource()).await {
        let why = match &e {
            crate::auth::BearerError::Missing => "missing".to_string(),
            crate::auth::BearerError::Invalid(w) => w.clone(),
        };
        let err = crate::service::ServiceError::new(
            401,
            crate::fhir::outcome::Issue::error("login", why.clone()),
        );
        let ctx = Ctx::new(String::new(), Arc::new(Principal::anonymous())).via("mcp", None);
        let _ = service.audit_refusal(&ctx, None, &err).await;
        anyhow::bail!(
            "VESTA_MCP_TOKEN is not valid for {}: {why} (mint one with `vesta token --resource {}`)",
            auth.mcp_resource(),
            auth.mcp_resource()
        );
    }
    let door = McpDoor::stdio(service, auth, token);
    let running = door
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP stdio start failed: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| anyhow::anyhow!("MCP stdio session failed: {e}"))?;
    Ok(())
}
