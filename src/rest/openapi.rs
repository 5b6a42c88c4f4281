//! The OpenAPI 3.1 document of the REST surface (built with utoipa's model):
//! FHIR interactions, generic over the resource type, operations, the SMART
//! endpoints, health and metrics. Served at `/openapi.json`, browsable at
//! `/docs` (Swagger UI, vendored into the binary).

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{
    AuthorizationCode, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes, SecurityRequirement,
    SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder,
    PathsBuilder, Required, ResponseBuilder, ServerBuilder, Type,
};

/// One documented operation.
pub struct Endpoint {
    pub path: &'static str,
    pub method: HttpMethod,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Needs a bearer token.
    pub secured: bool,
    /// Takes a body of this media type.
    pub body: Option<&'static str>,
    /// Answers with this media type on success.
    pub produces: &'static str,
    /// The status of a success.
    pub ok_status: &'static str,
}

const FHIR_JSON: &str = "application/fhir+json";
const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const HTML: &str = "text/html";

const fn fhir(
    path: &'static str,
    method: HttpMethod,
    summary: &'static str,
    body: Option<&'static str>,
) -> Endpoint {
    Endpoint {
        path,
        method,
        tag: "FHIR",
        summary,
        secured: true,
        body,
        produces: FHIR_JSON,
        ok_status: "200",
    }
}

const fn plain(
    path: &'static str,
    method: HttpMethod,
    tag: &'static str,
    summary: &'static str,
    body: Option<&'static str>,
    produces: &'static str,
) -> Endpoint {
    Endpoint {
        path,
        method,
        tag,
        summary,
        secured: false,
        body,
        produces,
        ok_status: "200",
    }
}

/// Every route the server answers. The FHIR catch-all (`/fhir/{*path}`) is
/// listed by interaction.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        secured: false,
        ..fhir(
            "/fhir/metadata",
            HttpMethod::Get,
            "CapabilityStatement (no token needed)",
            None,
        )
    },
    fhir(
        "/fhir",
        HttpMethod::Post,
        "batch or transaction Bundle",
        Some(FHIR_JSON),
    ),
    fhir("/fhir", HttpMethod::Get, "system search (_type)", None),
    fhir(
        "/fhir/_search",
        HttpMethod::Post,
        "system search with a form body (_type)",
        Some(FORM),
    ),
    fhir("/fhir/_history", HttpMethod::Get, "system history", None),
    fhir(
        "/fhir/$reindex",
        HttpMethod::Post,
        "put stored SearchParameters in force and rebuild the index (administrators)",
        None,
    ),
    fhir(
        "/fhir/AuditEvent/$verify-audit",
        HttpMethod::Get,
        "check the audit trail's hash chain (auditors and administrators)",
        None,
    ),
    fhir(
        "/fhir/AuditEvent/$verify-audit",
        HttpMethod::Post,
        "check the audit trail's hash chain (auditors and administrators)",
        None,
    ),
    fhir("/fhir/{type}", HttpMethod::Get, "search", None),
    fhir(
        "/fhir/{type}",
        HttpMethod::Post,
        "create (If-None-Exist for conditional create)",
        Some(FHIR_JSON),
    ),
    fhir(
        "/fhir/{type}",
        HttpMethod::Put,
        "conditional update (search in the query)",
        Some(FHIR_JSON),
    ),
    fhir(
        "/fhir/{type}",
        HttpMethod::Patch,
        "conditional patch (JSON Patch)",
        Some("application/json-patch+json"),
    ),
    fhir(
        "/fhir/{type}",
        HttpMethod::Delete,
        "conditional delete",
        None,
    ),
    fhir(
        "/fhir/{type}/_search",
        HttpMethod::Post,
        "search with a form body",
        Some(FORM),
    ),
    fhir(
        "/fhir/{type}/_history",
        HttpMethod::Get,
        "type history",
        None,
    ),
    fhir("/fhir/{type}/{id}", HttpMethod::Get, "read", None),
    fhir(
        "/fhir/{type}/{id}",
        HttpMethod::Put,
        "update (or create with this id); If-Match for version checks",
        Some(FHIR_JSON),
    ),
    fhir(
        "/fhir/{type}/{id}",
        HttpMethod::Patch,
        "patch (JSON Patch)",
        Some("application/json-patch+json"),
    ),
    fhir("/fhir/{type}/{id}", HttpMethod::Delete, "delete", None),
    fhir(
        "/fhir/{type}/{id}/_history",
        HttpMethod::Get,
        "instance history",
        None,
    ),
    fhir(
        "/fhir/{type}/{id}/_history/{vid}",
        HttpMethod::Get,
        "version read",
        None,
    ),
    fhir(
        "/fhir/Patient/{id}/$everything",
        HttpMethod::Get,
        "the patient's compartment",
        None,
    ),
    fhir(
        "/fhir/Patient/$everything",
        HttpMethod::Get,
        "every patient's compartment (paged)",
        None,
    ),
    fhir(
        "/fhir/Patient/{id}/{compartmentType}",
        HttpMethod::Get,
        "search in the patient's compartment (`*` for every type)",
        None,
    ),
    plain(
        "/fhir/.well-known/smart-configuration",
        HttpMethod::Get,
        "SMART",
        "SMART configuration",
        None,
        JSON,
    ),
    plain(
        "/.well-known/smart-configuration",
        HttpMethod::Get,
        "SMART",
        "SMART configuration",
        None,
        JSON,
    ),
    plain(
        "/.well-known/openid-configuration",
        HttpMethod::Get,
        "SMART",
        "OpenID Connect discovery",
        None,
        JSON,
    ),
    plain(
        "/.well-known/oauth-authorization-server",
        HttpMethod::Get,
        "SMART",
        "RFC 8414 metadata",
        None,
        JSON,
    ),
    plain(
        "/auth/jwks",
        HttpMethod::Get,
        "SMART",
        "token signing keys (current and previous)",
        None,
        JSON,
    ),
    plain(
        "/auth/smart-style.json",
        HttpMethod::Get,
        "SMART",
        "style hints for apps",
        None,
        JSON,
    ),
    plain(
        "/auth/authorize",
        HttpMethod::Get,
        "SMART",
        "authorization request (sign-in page)",
        None,
        HTML,
    ),
    plain(
        "/auth/authorize",
        HttpMethod::Post,
        "SMART",
        "authorization request by form (authorize-post)",
        Some(FORM),
        HTML,
    ),
    plain(
        "/auth/login",
        HttpMethod::Post,
        "SMART",
        "sign-in form (consent page)",
        Some(FORM),
        HTML,
    ),
    plain(
        "/auth/consent",
        HttpMethod::Post,
        "SMART",
        "consent form (redirect with code)",
        Some(FORM),
        HTML,
    ),
    plain(
        "/auth/token",
        HttpMethod::Post,
        "SMART",
        "token: authorization_code, refresh_token, client_credentials",
        Some(FORM),
        JSON,
    ),
    plain(
        "/auth/introspect",
        HttpMethod::Post,
        "SMART",
        "token introspection (RFC 7662)",
        Some(FORM),
        JSON,
    ),
    plain(
        "/auth/revoke",
        HttpMethod::Post,
        "SMART",
        "token revocation (RFC 7009)",
        Some(FORM),
        JSON,
    ),
    plain(
        "/auth/register",
        HttpMethod::Post,
        "SMART",
        "dynamic client registration (RFC 7591)",
        Some(JSON),
        JSON,
    ),
    Endpoint {
        secured: true,
        ..plain(
            "/auth/launch",
            HttpMethod::Post,
            "SMART",
            "EHR launch context (bearer token of EHR staff)",
            Some(JSON),
            JSON,
        )
    },
    plain(
        "/health/live",
        HttpMethod::Get,
        "Operations",
        "liveness",
        None,
        JSON,
    ),
    plain(
        "/health/ready",
        HttpMethod::Get,
        "Operations",
        "readiness (database reachable)",
        None,
        JSON,
    ),
    plain(
        "/metrics",
        HttpMethod::Get,
        "Operations",
        "Prometheus metrics",
        None,
        "text/plain",
    ),
    Endpoint {
        secured: true,
        ..plain(
            "/mcp",
            HttpMethod::Post,
            "MCP",
            "Model Context Protocol, streamable HTTP: revision 2026-07-28 stateless (JSON responses), earlier revisions in a session (Mcp-Session-Id from initialize); bearer token for the MCP resource",
            Some(JSON),
            JSON,
        )
    },
    Endpoint {
        secured: true,
        ..plain(
            "/mcp",
            HttpMethod::Get,
            "MCP",
            "MCP server-sent event stream of a session (Mcp-Session-Id; 405 for stateless 2026-07-28 requests)",
            None,
            "text/event-stream",
        )
    },
    Endpoint {
        secured: true,
        ..plain(
            "/mcp",
            HttpMethod::Delete,
            "MCP",
            "end an MCP session (Mcp-Session-Id); 404 for an unknown session",
            None,
            JSON,
        )
    },
    plain(
        "/.well-known/oauth-protected-resource",
        HttpMethod::Get,
        "MCP",
        "RFC 9728 protected resource metadata",
        None,
        JSON,
    ),
    plain(
        "/.well-known/oauth-protected-resource/mcp",
        HttpMethod::Get,
        "MCP",
        "RFC 9728 protected resource metadata of /mcp",
        None,
        JSON,
    ),
    plain(
        "/openapi.json",
        HttpMethod::Get,
        "Operations",
        "this document",
        None,
        JSON,
    ),
    Endpoint {
        ok_status: "303",
        ..plain(
            "/docs",
            HttpMethod::Get,
            "Operations",
            "redirects to /docs/",
            None,
            HTML,
        )
    },
    plain(
        "/docs/",
        HttpMethod::Get,
        "Operations",
        "browsable API documentation",
        None,
        HTML,
    ),
    plain(
        "/docs/{file}",
        HttpMethod::Get,
        "Operations",
        "the documentation page's scripts and styles",
        None,
        "*/*",
    ),
];

/// How the document names the router's route `route` (an axum pattern, as
/// listed by [`super::route_paths`]): the same path, except `/fhir/` (as
/// `/fhir`) and Swagger UI's assets `{*rest}` (as `{file}`). `None` for the
/// FHIR catch-all, which is documented interaction by interaction.
pub fn documented_path(route: &str) -> Option<String> {
    match route {
        "/fhir/{*path}" => None,
        "/fhir/" => Some("/fhir".to_string()),
        r => Some(r.replace("{*rest}", "{file}")),
    }
}

pub fn method_name(m: &HttpMethod) -> &'static str {
    match m {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Put => "put",
        HttpMethod::Delete => "delete",
        HttpMethod::Patch => "patch",
        HttpMethod::Head => "head",
        HttpMethod::Options => "options",
        HttpMethod::Trace => "trace",
    }
}

fn path_params(path: &str) -> Vec<utoipa::openapi::path::Parameter> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let what = match name {
                "type" => "resource type, e.g. Patient",
                "id" => "logical id",
                "vid" => "version id",
                "file" => "file name",
                _ => "a Patient-compartment resource type, or *",
            };
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(what))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build()
        })
        .collect()
}

/// The document for a server whose FHIR base is `fhir_base` and issuer `issuer`.
pub fn document(issuer: &str, fhir_base: &str) -> OpenApi {
    let mut paths = PathsBuilder::new().build();
    for e in ENDPOINTS {
        let mut op = OperationBuilder::new()
            .tag(e.tag)
            .summary(Some(e.summary))
            .operation_id(Some(format!(
                "{}{}",
                method_name(&e.method),
                e.path.replace(['/', '{', '}', '.', '$', '-'], "_")
            )))
            .parameters(Some(path_params(e.path)))
            .response(
                e.ok_status,
                ResponseBuilder::new()
                    .description("success")
                    .content(e.produces, ContentBuilder::new().build()),
            )
            .response(
                "400",
                ResponseBuilder::new()
                    .description("invalid request (OperationOutcome or OAuth error)"),
            );
        if e.secured {
            op = op
                .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
                .security(SecurityRequirement::new("smart", Vec::<String>::new()))
                .response(
                    "401",
                    ResponseBuilder::new()
                        .description("missing or invalid token (WWW-Authenticate)"),
                )
                .response(
                    "403",
                    ResponseBuilder::new().description("the token's scopes do not allow this"),
                );
        }
        if let Some(media) = e.body {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(media, ContentBuilder::new().build())
                    .build(),
            ));
        }
        paths.add_path_operation(e.path, vec![e.method.clone()], op.build());
    }
    let scopes = Scopes::from_iter([
        ("patient/*.rs", "read the launch patient's data"),
        ("user/*.rs", "read what the signed-in user may"),
        ("launch/patient", "pick a patient at launch"),
        ("openid", "OpenID Connect"),
        ("fhirUser", "the user's FHIR resource"),
        ("offline_access", "a refresh token"),
    ]);
    let components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        )
        .security_scheme(
            "smart",
            SecurityScheme::OAuth2(OAuth2::new([Flow::AuthorizationCode(
                AuthorizationCode::new(
                    format!("{issuer}/auth/authorize"),
                    format!("{issuer}/auth/token"),
                    scopes,
                ),
            )])),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Vesta")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "SMART-on-FHIR R4 server. FHIR paths are generic over the resource type; \
                     the CapabilityStatement (`/fhir/metadata`) lists the types, parameters and operations.",
                )),
        )
        .servers(Some([ServerBuilder::new().url(issuer).build()]))
        .paths(paths)
        .components(Some(components))
        .build()
        .with_fhir_base(fhir_base)
}

trait WithFhirBase {
    fn with_fhir_base(self, fhir_base: &str) -> Self;
}

impl WithFhirBase for OpenApi {
    /// Records the FHIR base as an extension, for tools that want it.
    fn with_fhir_base(mut self, fhir_base: &str) -> Self {
        let mut ext = utoipa::openapi::extensions::Extensions::default();
        ext.insert("x-fhir-base".into(), serde_json::json!(fhir_base));
        self.extensions = Some(ext);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path the router has is in the document (methods are probed
    /// against a live server by `tests/it/openapi.rs`).
    #[test]
    fn every_router_route_is_documented() {
        let documented: Vec<&str> = ENDPOINTS.iter().map(|e| e.path).collect();
        let routes = super::super::route_paths();
        assert!(routes.len() >= 20, "{routes:?}");
        for route in &routes {
            match documented_path(route) {
                Some(p) => assert!(
                    documented.contains(&p.as_str()),
                    "route {route} is not in the OpenAPI document"
                ),
                None => assert!(documented.iter().any(|p| p.starts_with("/fhir/{type}"))),
            }
        }
        let doc = serde_json::to_value(document("http://x", "http://x/fhir")).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/fhir/{type}/{id}"]["put"].is_object());
    }

    /// No path and method is listed twice (the document would keep only one).
    #[test]
    fn endpoints_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for e in ENDPOINTS {
            assert!(
                seen.insert((e.path, method_name(&e.method))),
                "{} {} listed twice",
                method_name(&e.method),
                e.path
            );
        }
    }
}
