//! The tool catalog: every MCP tool's name, description, keywords, input
//! and output schemas (with their limits), annotations and handler.
//!
//! Adding a tool (for example one for a custom `$operation`) is a change to
//! this file only: add a [`ToolSpec`] to [`catalog`] whose `run` builds an
//! `Interaction` and calls `call.execute(...)`; see `mcp/README.md`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{json, Map, Value};

use super::render::ToolOutput;
use super::{clinical, tools};
use crate::service::{Ctx, FhirService, Interaction, Outcome, ServiceResult};

/// Longest resource type name accepted.
pub const MAX_TYPE_CHARS: usize = 64;
/// Longest id accepted (FHIR ids are at most 64 characters).
pub const MAX_ID_CHARS: usize = 64;
/// Longest version id accepted.
pub const MAX_VERSION_CHARS: usize = 64;
/// Most search parameters in one `fhir_search` call.
pub const MAX_SEARCH_PARAMS: usize = 32;
/// Most values of one repeated search parameter.
pub const MAX_PARAM_VALUES: usize = 16;
/// Longest search parameter name or value.
pub const MAX_PARAM_CHARS: usize = 1_024;
/// Largest page a tool returns (entries sized for a model's context).
pub const MAX_TOOL_COUNT: usize = 100;
/// Page size when `count` is absent.
pub const DEFAULT_TOOL_COUNT: usize = 20;
/// Longest paging cursor accepted.
pub const MAX_CURSOR_CHARS: usize = 4_096;
/// Most JSON Patch operations in one `fhir_patch` call.
pub const MAX_PATCH_OPS: usize = 100;
/// Longest free-text query (`resolve`, `find_tools`).
pub const MAX_QUERY_CHARS: usize = 200;
/// Longest `since` instant accepted.
pub const MAX_SINCE_CHARS: usize = 40;
/// Most arguments accepted in one call (unknown ones are refused).
pub const MAX_ARGS: usize = 16;
/// Deepest arguments object accepted (the object itself is level 1): a
/// resource argument within [`crate::fhir::limits::MAX_JSON_DEPTH`] fits.
pub const MAX_ARGS_DEPTH: usize = crate::fhir::limits::MAX_JSON_DEPTH + 1;

/// What a tool's handler gets.
pub struct Call {
    pub service: FhirService,
    /// The caller, via `mcp`, with this tool's name (recorded in the audit).
    pub ctx: Ctx,
    pub args: Map<String, Value>,
}

impl Call {
    /// Runs one interaction through the audited service entry.
    pub async fn execute(&self, i: Interaction) -> ServiceResult<Outcome> {
        self.service.execute(&self.ctx, i).await
    }
}

pub type ToolFuture = Pin<Box<dyn Future<Output = ToolOutput> + Send>>;

/// One tool of the catalog.
pub struct ToolSpec {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// Words and synonyms `find_tools` matches besides name and description.
    pub keywords: &'static [&'static str],
    pub input_schema: Value,
    pub output_schema: Value,
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub run: fn(Call) -> ToolFuture,
}

impl ToolSpec {
    /// The MCP `Tool` listed by `tools/list`.
    pub fn to_tool(&self) -> Tool {
        let obj = |v: &Value| Arc::new(v.as_object().cloned().unwrap_or_default());
        let mut ann = ToolAnnotations::with_title(self.title)
            .read_only(self.read_only)
            .idempotent(self.idempotent)
            .destructive(self.destructive);
        ann.open_world_hint = Some(false);
        Tool::new(self.name, self.description, obj(&self.input_schema))
            .with_title(self.title)
            .with_raw_output_schema(obj(&self.output_schema))
            .with_annotations(ann)
    }
}

/// Runs the tool with [`checked_run`]; a call that recorded no AuditEvent
/// of its own (refused on its arguments, a dry run of a Bundle, a tool that
/// reads nothing) is recorded as one event of the tool, with its status.
/// Fails closed: a call that cannot be recorded answers 503.
pub async fn invoke(
    spec: &ToolSpec,
    service: FhirService,
    ctx: Ctx,
    args: Map<String, Value>,
) -> ToolOutput {
    let before = ctx.recorded.count();
    let audit_ctx = ctx.clone();
    let dry_run = spec.destructive && args.get("confirm") != Some(&Value::Bool(true));
    let out = checked_run(spec, service.clone(), ctx, args).await;
    if audit_ctx.recorded.count() != before {
        return out;
    }
    let detail = if out.is_error {
        out.structured["issue"][0]["diagnostics"]
            .as_str()
            .map(str::to_string)
    } else if dry_run {
        Some("dry run: nothing changed".to_string())
    } else {
        None
    };
    match service
        .audit_tool_call(&audit_ctx, spec.name, out.status, detail)
        .await
    {
        Ok(()) => out,
        Err(e) => ToolOutput::error(&e),
    }
}

/// Checks arguments against the schema's property names, then runs the tool.
async fn checked_run(
    spec: &ToolSpec,
    service: FhirService,
    ctx: Ctx,
    args: Map<String, Value>,
) -> ToolOutput {
    if args.len() > MAX_ARGS {
        return ToolOutput::invalid(format!("at most {MAX_ARGS} arguments"));
    }
    // Measured without recursion before any tool walks the arguments (the
    // object holding them is one level).
    let depth = args
        .values()
        .map(|v| crate::fhir::limits::value_depth(v, MAX_ARGS_DEPTH))
        .max()
        .unwrap_or(0);
    if depth >= MAX_ARGS_DEPTH {
        return ToolOutput::invalid(format!(
            "arguments may be nested at most {MAX_ARGS_DEPTH} levels deep"
        ));
    }
    let props = &spec.input_schema["properties"];
    if let Some(unknown) = args.keys().find(|k| props.get(k.as_str()).is_none()) {
        return ToolOutput::invalid(format!("{} has no argument '{unknown}'", spec.name));
    }
    for req in spec.input_schema["required"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(r) = req.as_str() {
            if !args.contains_key(r) {
                return ToolOutput::invalid(format!("{} needs the argument '{r}'", spec.name));
            }
        }
    }
    (spec.run)(Call { service, ctx, args }).await
}

/// The tool named `name`.
pub fn find(name: &str) -> Option<&'static ToolSpec> {
    catalog().iter().find(|t| t.name == name)
}

// --- schema pieces -------------------------------------------------------

fn type_schema() -> Value {
    json!({"type": "string", "pattern": "^[A-Z][A-Za-z]{1,63}$", "maxLength": MAX_TYPE_CHARS,
           "description": "FHIR resource type, e.g. Patient, Observation"})
}
fn id_schema() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$", "maxLength": MAX_ID_CHARS,
           "description": "logical id of the resource"})
}
fn confirm_schema() -> Value {
    json!({"type": "boolean", "default": false,
           "description": "true to make the change; otherwise a dry run shows what would change and changes nothing"})
}
fn resource_schema() -> Value {
    json!({"type": "object", "description": "a FHIR R4 resource as JSON (with resourceType)",
           "properties": {"resourceType": {"type": "string", "maxLength": MAX_TYPE_CHARS}},
           "required": ["resourceType"]})
}
fn count_schema() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": MAX_TOOL_COUNT, "default": DEFAULT_TOOL_COUNT,
           "description": "entries per page"})
}
fn cursor_schema() -> Value {
    json!({"type": "string", "maxLength": MAX_CURSOR_CHARS,
           "description": "nextCursor of a previous page"})
}
/// A FHIR resource (or, for a failure, an OperationOutcome).
fn resource_output() -> Value {
    json!({"type": "object", "properties": {"resourceType": {"type": "string"}}})
}
/// A page of compact entries.
fn page_output() -> Value {
    json!({"type": "object", "properties": {
        "total": {"type": "integer"},
        "count": {"type": "integer"},
        "entries": {"type": "array", "items": {"type": "object", "properties": {
            "reference": {"type": "string"}, "resource": {"type": "object"}, "mode": {"type": "string"}}}},
        "nextCursor": {"type": "string"}
    }})
}
/// A change made, or a dry run that says what would change.
fn change_output() -> Value {
    json!({"type": "object", "properties": {
        "resourceType": {"type": "string"},
        "dryRun": {"type": "boolean"},
        "wouldChange": {"type": "string"},
        "changes": {"type": "array"},
        "issues": {"type": "array"}
    }})
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

/// Every tool, built once.
pub fn catalog() -> &'static [ToolSpec] {
    static CATALOG: OnceLock<Vec<ToolSpec>> = OnceLock::new();
    CATALOG.get_or_init(build_catalog)
}

fn build_catalog() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "fhir_read",
            title: "Read a FHIR resource",
            description: "Read one resource by type and id (optionally one version).",
            keywords: &["get", "fetch", "open", "show", "lookup", "view", "version", "vread"],
            input_schema: obj(
                json!({"type": type_schema(), "id": id_schema(),
                       "version": {"type": "string", "maxLength": MAX_VERSION_CHARS, "description": "a versionId, for an older version"}}),
                &["type", "id"],
            ),
            output_schema: resource_output(),
            read_only: true,
            destructive: false,
            idempotent: true,
            run: |c| Box::pin(tools::read(c)),
        },
        ToolSpec {
            name: "fhir_search",
            title: "Search FHIR resources",
            description: "Search one resource type with FHIR search parameters given as an object \
                          ({\"name\": \"Doe\", \"birthdate\": [\"ge1970\", \"lt1980\"]}). Returns compact \
                          entries and a nextCursor for the next page.",
            keywords: &["find", "query", "list", "filter", "lookup", "where", "all"],
            input_schema: obj(
                json!({"type": type_schema(),
                       "params": {"type": "object", "maxProperties": MAX_SEARCH_PARAMS,
                                  "description": "search parameters: name → value or list of values (each ANDed)",
                                  "additionalProperties": {"anyOf": [
                                      {"type": "string", "maxLength": MAX_PARAM_CHARS},
                                      {"type": "array", "maxItems": MAX_PARAM_VALUES, "items": {"type": "string", "maxLength": MAX_PARAM_CHARS}}]}},
                       "count": count_schema(),
                       "summary": {"type": "boolean", "description": "only summary elements (_summary=true)"},
                       "cursor": cursor_schema()}),
                &["type"],
            ),
            output_schema: page_output(),
            read_only: true,
            destructive: false,
            idempotent: true,
            run: |c| Box::pin(tools::search(c)),
        },
        ToolSpec {
            name: "fhir_create",
            title: "Create a FHIR resource",
            description: "Create a new resource; the server assigns the id. Returns the stored resource.",
            keywords: &["add", "new", "insert", "post", "record", "write", "save"],
            input_schema: obj(json!({"type": type_schema(), "resource": resource_schema()}), &["resource"]),
            output_schema: resource_output(),
            read_only: false,
            destructive: false,
            idempotent: false,
            run: |c| Box::pin(tools::create(c)),
        },
        ToolSpec {
            name: "fhir_update",
            title: "Update (replace) a FHIR resource",
            description: "Replace a resource by id. Without confirm: true, a dry run shows the changes \
                          as JSON Patch operations and changes nothing.",
            keywords: &["edit", "modify", "change", "replace", "put", "correct", "fix", "write"],
            input_schema: obj(
                json!({"type": type_schema(), "id": id_schema(), "resource": resource_schema(),
                       "ifMatch": {"type": "string", "maxLength": MAX_VERSION_CHARS, "description": "expected current versionId"},
                       "confirm": confirm_schema()}),
                &["type", "id", "resource"],
            ),
            output_schema: change_output(),
            read_only: false,
            destructive: true,
            idempotent: true,
            run: |c| Box::pin(tools::update(c)),
        },
        ToolSpec {
            name: "fhir_patch",
            title: "Patch a FHIR resource",
            description: "Apply JSON Patch operations to a resource. Without confirm: true, a dry run \
                          shows the result's changes and changes nothing.",
            keywords: &["edit", "modify", "change", "partial", "set", "correct", "fix", "write"],
            input_schema: obj(
                json!({"type": type_schema(), "id": id_schema(),
                       "patch": {"type": "array", "minItems": 1, "maxItems": MAX_PATCH_OPS,
                                 "items": {"type": "object", "properties": {"op": {"type": "string"}, "path": {"type": "string"}}, "required": ["op", "path"]}},
                       "ifMatch": {"type": "string", "maxLength": MAX_VERSION_CHARS},
                       "confirm": confirm_schema()}),
                &["type", "id", "patch"],
            ),
            output_schema: change_output(),
            read_only: false,
            destructive: true,
            idempotent: false,
            run: |c| Box::pin(tools::patch(c)),
        },
        ToolSpec {
            name: "fhir_delete",
            title: "Delete a FHIR resource",
            description: "Delete a resource by id (history is kept). Without confirm: true, a dry run \
                          shows what would be deleted and deletes nothing.",
            keywords: &["remove", "erase", "drop", "retire", "destroy"],
            input_schema: obj(
                json!({"type": type_schema(), "id": id_schema(), "confirm": confirm_schema()}),
                &["type", "id"],
            ),
            output_schema: change_output(),
            read_only: false,
            destructive: true,
            idempotent: true,
            run: |c| Box::pin(tools::delete(c)),
        },
        ToolSpec {
            name: "fhir_history",
            title: "History of FHIR resources",
            description: "Versions of one resource (type and id), of a type (type), or of the whole server.",
            keywords: &["versions", "changes", "audit", "previous", "log", "timeline"],
            input_schema: obj(
                json!({"type": type_schema(), "id": id_schema(), "count": count_schema(),
                       "since": {"type": "string", "maxLength": MAX_SINCE_CHARS, "description": "instant, e.g. 2024-01-01T00:00:00Z"},
                       "cursor": cursor_schema()}),
                &[],
            ),
            output_schema: page_output(),
            read_only: true,
            destructive: false,
            idempotent: true,
            run: |c| Box::pin(tools::history(c)),
        },
        ToolSpec {
            name: "fhir_transaction",
            title: "Run a FHIR transaction or batch Bundle",
            description: "Process a transaction (all or nothing) or batch Bundle. Without confirm: true, \
                          a dry run lists each entry and validates its resource, and changes nothing.",
            keywords: &["bundle", "batch", "bulk", "many", "atomic", "multiple"],
            input_schema: obj(
                json!({"bundle": {"type": "object", "description": "a Bundle of type transaction or batch",
                                  "properties": {"resourceType": {"const": "Bundle"}, "type": {"enum": ["transaction", "batch"]}},
                                  "required": ["resourceType", "type"]},
                       "confirm": confirm_schema()}),
                &["bundle"],
            ),
            output_schema: change_output(),
            read_only: false,
            destructive: true,
            idempotent: false,
            run: |c| Box::pin(tools::transaction(c)),
        },
        ToolSpec {
            name: "fhir_validate",
            title: "Validate a FHIR resource",
            description: "Check a resource's structure against FHIR R4 without storing it; returns an OperationOutcome.",
            keywords: &["check", "verify", "lint", "conform", "valid"],
            input_schema: obj(json!({"type": type_schema(), "resource": resource_schema()}), &["resource"]),
            output_schema: resource_output(),
            read_only: true,
            destructive: false,
            idempotent: true,
            run: |c| Box::pin(tools::validate(c)),
        },
        ToolSpec {
            name: "fhir_capabilities",
            title: "Server capabilities",
            description: "The CapabilityStatement: resource types and interactions; with type, that type's \
                          interactions and search parameters.",
            keywords: &["metadata", "capability", "supported", "features", "conformance", "parameters"],
            input_schema: obj(json!({"type": type_schema()}), &[]),
            output_schema: resource_output(),
            read_only: true,
            destructive: false,
            idempotent: true,
            run: |c| Box::pin(tools::capabilities(c)),
        },
        ToolSpec {
            name: "patient_summary",
            title: "Patient summary",
            description: "A condensed record of one patient, sized for a model's context: demographics, \
                          active problems, medications, allergies, recent vitals and labs, encounters.",
            keywords: &["everything", "record", "chart", "overview", "briefing", "history", "problems",
                        "medications", "meds", "allergies", "vitals", "labs", "encounters", "clinical"],
            input_schema: obj(
                json!({"patient_id": id_schema(),
                       "max_items": {"type": "integer", "minimum": 1, "maximum": clinical::MAX_SUMMARY_ITEMS,
                                     "default": clinical::DEFAULT_SUMMARY_ITEMS, "description": "most items per section"}}),
                &["patient_id"],
            ),
            output_schema: json!({"type": "object", "properties": {
                "patient": {"type": "object"}, "problems": {"type": "array"}, "medications": {"type": "array"},
                "allergies": {"type": "array"}, "vitals": {"type": "array"}, "labs": {"type": "array"},
                "encounters": {"type": "array"}, "notes": {"type": "array"}}}),
            read_only: true,
            destructive: false,
            idempotent: true,
            run: |c| Box::pin(clinical::patient_summary(c)),
        },
        ToolSpec {
            name: "resolve",
            title: "Resolve a patient from a description",
            description: "Turn words like \"John Doe born 1970\" into ranked candidate patients with ids \
                          and why they matched. Never picks one of several: 'match' says unique, \
                          ambiguous (ask the user) or none (near misses may be listed).",
            keywords: &["identify", "who", "match", "lookup", "find", "patient", "name", "birth", "dob", "mrn"],
            input_schema: obj(
                json!({"query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS},
                       "limit": {"type": "integer", "minimum": 1, "maximum": clinical::MAX_CANDIDATES, "default": clinical::DEFAULT_CANDIDATES}}),
                &["query"],
            ),
            output_schema: json!({"type": "object", "properties": {
                "match": {"enum": ["unique", "ambiguous", "none"]},
                "candidates": {"type": "array"}, "id": {"type": "string"}}}),
            read_only: true,
            destructive: false,
            idempotent: true,
            run: |c| Box::pin(clinical::resolve(c)),
        },
        ToolSpec {
            name: "find_tools",
            title: "Find tools",
            description: "Search this server's tools by words and synonyms (e.g. 'remove', 'meds', 'who is').",
            keywords: &["help", "tools", "discover", "catalog", "how"],
            input_schema: obj(
                json!({"query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS}}),
                &["query"],
            ),
            output_schema: json!({"type": "object", "properties": {"tools": {"type": "array"}}}),
            read_only: true,
            destructive: false,
            idempotent: true,
            run: |c| Box::pin(tools::find_tools(c)),
        },
    ]
}
