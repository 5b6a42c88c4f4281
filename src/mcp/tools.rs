//! The FHIR tools: each turns its arguments into an `Interaction` (through
//! `service::interaction::parse`, as a Bundle entry would) and runs it with
//! `FhirService::execute`. Destructive tools default to a dry run.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::registry::{
    catalog, Call, DEFAULT_TOOL_COUNT, MAX_CURSOR_CHARS, MAX_ID_CHARS, MAX_PARAM_CHARS,
    MAX_PARAM_VALUES, MAX_PATCH_OPS, MAX_QUERY_CHARS, MAX_SEARCH_PARAMS, MAX_SINCE_CHARS,
    MAX_TOOL_COUNT, MAX_TYPE_CHARS, MAX_VERSION_CHARS,
};
use super::render::{body_json, bundle_entries, summarize, ToolOutput};
use crate::fhir::validate::{check_resource, IdRule};
use crate::fhir::ResourceType;
use crate::service::interaction::{parse, urlencode, RawRequest};
use crate::service::{Interaction, Outcome, ServiceError, ServiceResult};

/// Most dry-run changes listed.
pub const MAX_LISTED_CHANGES: usize = 50;
/// Most tools `find_tools` returns.
pub const MAX_FOUND_TOOLS: usize = 8;

type Args = Map<String, Value>;

/// A string argument of at most `max` characters.
pub fn string_arg(args: &Args, name: &str, max: usize) -> Result<Option<String>, ToolOutput> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ToolOutput::invalid(format!(
            "'{name}' is longer than {max} characters"
        ))),
        Some(Value::Number(n)) if name == "version" || name == "ifMatch" => Ok(Some(n.to_string())),
        Some(_) => Err(ToolOutput::invalid(format!("'{name}' must be a string"))),
    }
}

fn required(args: &Args, name: &str, max: usize) -> Result<String, ToolOutput> {
    string_arg(args, name, max)?
        .ok_or_else(|| ToolOutput::invalid(format!("the argument '{name}' is required")))
}

fn bool_arg(args: &Args, name: &str) -> Result<bool, ToolOutput> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ToolOutput::invalid(format!(
            "'{name}' must be true or false"
        ))),
    }
}

/// An integer argument in `1..=max` (default `default`).
pub fn count_arg(args: &Args, name: &str, default: usize, max: usize) -> Result<usize, ToolOutput> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
            _ => Err(ToolOutput::invalid(format!(
                "'{name}' must be an integer from 1 to {max}"
            ))),
        },
    }
}

fn object_arg(args: &Args, name: &str) -> Result<Value, ToolOutput> {
    match args.get(name) {
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(ToolOutput::invalid(format!(
            "'{name}' must be a JSON object"
        ))),
        None => Err(ToolOutput::invalid(format!(
            "the argument '{name}' is required"
        ))),
    }
}

/// A resource type name, checked against the R4 types.
fn type_arg(args: &Args) -> Result<Option<String>, ToolOutput> {
    match string_arg(args, "type", MAX_TYPE_CHARS)? {
        None => Ok(None),
        Some(t) => match ResourceType::parse(&t) {
            Some(rt) => Ok(Some(rt.to_string())),
            None => Err(ToolOutput::error(&ServiceError::not_found(format!(
                "unknown resource type '{t}'"
            )))),
        },
    }
}

fn id_arg(args: &Args, name: &str) -> Result<Option<String>, ToolOutput> {
    let id = string_arg(args, name, MAX_ID_CHARS)?;
    match id {
        Some(i) if !crate::fhir::is_valid_id(&i) => {
            Err(ToolOutput::invalid(format!("'{i}' is not a valid FHIR id")))
        }
        other => Ok(other),
    }
}

/// Parses a door-neutral request and runs it; a request refused by the
/// parser is recorded with `audit_refusal`, as REST does.
pub async fn run_request(
    call: &Call,
    method: &str,
    path: &str,
    query: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> ServiceResult<Outcome> {
    let parsed = parse(RawRequest {
        method,
        path,
        query,
        body,
        if_match,
        ..RawRequest::default()
    });
    match parsed {
        Ok(i) => call.execute(i).await,
        Err(e) => {
            call.service.audit_refusal(&call.ctx, None, &e).await?;
            Err(e)
        }
    }
}

/// A stored or generated resource as a tool result.
fn resource_result(o: &Outcome, verb: &str) -> ToolOutput {
    let v = body_json(o);
    let text = if verb.is_empty() {
        summarize(&v)
    } else {
        format!("{verb} {}", summarize(&v))
    };
    ToolOutput::ok(v, text)
}

fn finish(r: ServiceResult<Outcome>, verb: &str) -> ToolOutput {
    match r {
        Ok(o) => resource_result(&o, verb),
        Err(e) => ToolOutput::error(&e),
    }
}

macro_rules! arg {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(out) => return out,
        }
    };
}

pub async fn read(call: Call) -> ToolOutput {
    let t = arg!(type_arg(&call.args)).unwrap_or_default();
    let id = arg!(id_arg(&call.args, "id")).unwrap_or_default();
    let path = match arg!(string_arg(&call.args, "version", MAX_VERSION_CHARS)) {
        Some(v) => format!("{t}/{id}/_history/{}", urlencode(&v)),
        None => format!("{t}/{id}"),
    };
    finish(run_request(&call, "GET", &path, "", None, None).await, "")
}

/// The opaque cursor for a Bundle's `next` link (its path and query
/// relative to the FHIR base).
fn cursor_of(bundle: &Value, base: &str) -> Option<String> {
    let next = bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")?["url"]
        .as_str()?;
    let rel = next.strip_prefix(base)?.trim_start_matches('/');
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rel))
}

/// The path and query a cursor stands for.
fn decode_cursor(cursor: &str) -> Result<(String, String), ToolOutput> {
    let bad = || ToolOutput::invalid("the cursor is not one this server gave");
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(bad());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let rel = String::from_utf8(bytes).map_err(|_| bad())?;
    let (path, query) = rel.split_once('?').unwrap_or((rel.as_str(), ""));
    Ok((path.to_string(), query.to_string()))
}

/// A page of a search or history Bundle, as compact entries and a cursor.
fn page_result(o: &Outcome, base: &str, what: &str) -> ToolOutput {
    let bundle = body_json(o);
    let entries = bundle_entries(&bundle);
    let mut out = json!({"count": entries.len()});
    if let Some(t) = bundle["total"].as_u64() {
        out["total"] = json!(t);
    }
    let mut lines: Vec<String> = entries.iter().map(|e| summarize(&e["resource"])).collect();
    out["entries"] = Value::Array(entries);
    let mut text = match bundle["total"].as_u64() {
        Some(t) => format!("{} of {t} {what}", lines.len()),
        None => format!("{} {what}", lines.len()),
    };
    if let Some(c) = cursor_of(&bundle, base) {
        out["nextCursor"] = json!(c);
        lines.push("(more: call again with cursor = nextCursor)".into());
    }
    if !lines.is_empty() {
        text.push_str(":\n");
        text.push_str(&lines.join("\n"));
    }
    ToolOutput::ok(out, text)
}

/// `params` as query pairs: each value a string (or number/bool), or a list.
fn search_pairs(params: Option<&Value>) -> Result<Vec<(String, String)>, ToolOutput> {
    let Some(p) = params else {
        return Ok(Vec::new());
    };
    let obj = p
        .as_object()
        .ok_or_else(|| ToolOutput::invalid("'params' must be an object of name → value(s)"))?;
    if obj.len() > MAX_SEARCH_PARAMS {
        return Err(ToolOutput::invalid(format!(
            "at most {MAX_SEARCH_PARAMS} search parameters"
        )));
    }
    let scalar = |k: &str, v: &Value| -> Result<String, ToolOutput> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(ToolOutput::invalid(format!(
                    "the value of '{k}' must be a string or a list of strings"
                )))
            }
        };
        if s.chars().count() > MAX_PARAM_CHARS {
            return Err(ToolOutput::invalid(format!(
                "the value of '{k}' is longer than {MAX_PARAM_CHARS} characters"
            )));
        }
        Ok(s)
    };
    let mut pairs = Vec::new();
    for (k, v) in obj {
        if k.len() > MAX_PARAM_CHARS || k.is_empty() {
            return Err(ToolOutput::invalid(
                "a search parameter name is empty or too long",
            ));
        }
        if matches!(k.as_str(), "_count" | "_cursor" | "_format" | "_pretty") {
            return Err(ToolOutput::invalid(format!(
                "'{k}' is set by the tool (use count and cursor)"
            )));
        }
        match v {
            Value::Array(vs) if vs.len() > MAX_PARAM_VALUES => {
                return Err(ToolOutput::invalid(format!(
                    "at most {MAX_PARAM_VALUES} values for '{k}'"
                )))
            }
            Value::Array(vs) => {
                for x in vs {
                    pairs.push((k.clone(), scalar(k, x)?));
                }
            }
            other => pairs.push((k.clone(), scalar(k, other)?)),
        }
    }
    Ok(pairs)
}

fn query_of(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn search(call: Call) -> ToolOutput {
    let t = arg!(type_arg(&call.args)).unwrap_or_default();
    let base = call.service.base_url().to_string();
    let (path, query) = match arg!(string_arg(&call.args, "cursor", MAX_CURSOR_CHARS)) {
        Some(c) => {
            let (path, query) = arg!(decode_cursor(&c));
            if path != t {
                return ToolOutput::invalid("the cursor belongs to a search of another type");
            }
            (path, query)
        }
        None => {
            let mut pairs = arg!(search_pairs(call.args.get("params")));
            let count = arg!(count_arg(
                &call.args,
                "count",
                DEFAULT_TOOL_COUNT,
                MAX_TOOL_COUNT
            ));
            pairs.push(("_count".into(), count.to_string()));
            if arg!(bool_arg(&call.args, "summary")) {
                pairs.push(("_summary".into(), "true".into()));
            }
            (t.clone(), query_of(&pairs))
        }
    };
    match run_request(&call, "GET", &path, &query, None, None).await {
        Ok(o) => page_result(&o, &base, &format!("{t} resources")),
        Err(e) => ToolOutput::error(&e),
    }
}

pub async fn history(call: Call) -> ToolOutput {
    let t = arg!(type_arg(&call.args));
    let id = arg!(id_arg(&call.args, "id"));
    let base = call.service.base_url().to_string();
    let path = match (&t, &id) {
        (Some(t), Some(id)) => format!("{t}/{id}/_history"),
        (Some(t), None) => format!("{t}/_history"),
        (None, None) => "_history".to_string(),
        (None, Some(_)) => return ToolOutput::invalid("an id needs its type"),
    };
    let query = match arg!(string_arg(&call.args, "cursor", MAX_CURSOR_CHARS)) {
        Some(c) => {
            let (p, q) = arg!(decode_cursor(&c));
            if p != path {
                return ToolOutput::invalid("the cursor belongs to another history");
            }
            q
        }
        None => {
            let count = arg!(count_arg(
                &call.args,
                "count",
                DEFAULT_TOOL_COUNT,
                MAX_TOOL_COUNT
            ));
            let mut pairs = vec![("_count".to_string(), count.to_string())];
            if let Some(s) = arg!(string_arg(&call.args, "since", MAX_SINCE_CHARS)) {
                pairs.push(("_since".into(), s));
            }
            query_of(&pairs)
        }
    };
    match run_request(&call, "GET", &path, &query, None, None).await {
        Ok(o) => page_result(&o, &base, "versions"),
        Err(e) => ToolOutput::error(&e),
    }
}

/// The type named by `type`, else by the resource's `resourceType`.
fn write_type(args: &Args, resource: &Value) -> Result<String, ToolOutput> {
    match type_arg(args)? {
        Some(t) => Ok(t),
        None => resource["resourceType"]
            .as_str()
            .filter(|t| t.len() <= MAX_TYPE_CHARS)
            .map(str::to_string)
            .ok_or_else(|| ToolOutput::invalid("the resource has no resourceType")),
    }
}

pub async fn create(call: Call) -> ToolOutput {
    let resource = arg!(object_arg(&call.args, "resource"));
    let t = arg!(write_type(&call.args, &resource));
    finish(
        run_request(&call, "POST", &t, "", Some(resource), None).await,
        "created",
    )
}

/// The current content of `t/id` (read through the service, audited), or
/// `None` when it does not exist (or is hidden from this caller).
async fn current(call: &Call, t: &str, id: &str) -> Result<Option<Value>, ToolOutput> {
    match run_request(call, "GET", &format!("{t}/{id}"), "", None, None).await {
        Ok(o) => Ok(Some(body_json(&o))),
        Err(e) if e.status == 404 || e.status == 410 => Ok(None),
        Err(e) => Err(ToolOutput::error(&e)),
    }
}

/// Drops `meta.versionId`/`lastUpdated` so a diff shows content changes.
fn without_meta(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            if let Some(o) = v.as_object_mut() {
                o.remove("meta");
            }
        }
    }
    v
}

/// JSON Patch operations from `before` to `after` (at most [`MAX_LISTED_CHANGES`]).
fn changes(before: &Value, after: &Value) -> (Vec<Value>, usize) {
    let patch = json_patch::diff(&without_meta(before.clone()), &without_meta(after.clone()));
    let all: Vec<Value> = serde_json::to_value(&patch)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let n = all.len();
    (all.into_iter().take(MAX_LISTED_CHANGES).collect(), n)
}

fn structural_issues(resource: &Value, t: &str, id_rule: IdRule<'_>) -> Vec<Value> {
    match check_resource(resource, ResourceType::parse(t), id_rule) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems
            .into_iter()
            .map(|p| {
                json!({"severity": "error", "code": p.code,
                       "diagnostics": p.message, "expression": [p.path]})
            })
            .collect(),
    }
}

fn dry_run(
    target: &str,
    verb: &str,
    changes: Vec<Value>,
    total: usize,
    issues: Vec<Value>,
    note: &str,
) -> ToolOutput {
    let mut text = format!("DRY RUN, nothing changed: would {verb} {target} ({total} change(s))");
    if !issues.is_empty() {
        text.push_str(&format!(
            "; {} validation issue(s) would refuse it",
            issues.len()
        ));
    }
    if !note.is_empty() {
        text.push_str("; ");
        text.push_str(note);
    }
    text.push_str(". Call again with confirm: true to apply.");
    for c in changes.iter().take(10) {
        text.push_str(&format!(
            "\n  {} {}",
            c["op"].as_str().unwrap_or("?"),
            c["path"].as_str().unwrap_or("")
        ));
    }
    ToolOutput::ok(
        json!({"dryRun": true, "wouldChange": target, "action": verb,
               "changes": changes, "changeCount": total, "issues": issues}),
        text,
    )
}

pub async fn update(call: Call) -> ToolOutput {
    let t = arg!(type_arg(&call.args)).unwrap_or_default();
    let id = arg!(id_arg(&call.args, "id")).unwrap_or_default();
    let resource = arg!(object_arg(&call.args, "resource"));
    let if_match = arg!(string_arg(&call.args, "ifMatch", MAX_VERSION_CHARS));
    let target = format!("{t}/{id}");
    if !arg!(bool_arg(&call.args, "confirm")) {
        let before = arg!(current(&call, &t, &id).await);
        let issues = structural_issues(&resource, &t, IdRule::MustEqual(&id));
        let (verb, note, base) = match &before {
            Some(b) => (
                "update",
                format!(
                    "current version {}",
                    b["meta"]["versionId"].as_str().unwrap_or("?")
                ),
                b.clone(),
            ),
            None => (
                "create (by update)",
                "it does not exist now".to_string(),
                json!({}),
            ),
        };
        let (ch, n) = changes(&base, &resource);
        return dry_run(&target, verb, ch, n, issues, &note);
    }
    let etag = if_match.map(|v| format!("W/\"{v}\""));
    finish(
        run_request(&call, "PUT", &target, "", Some(resource), etag.as_deref()).await,
        "updated",
    )
}

pub async fn patch(call: Call) -> ToolOutput {
    let t = arg!(type_arg(&call.args)).unwrap_or_default();
    let id = arg!(id_arg(&call.args, "id")).unwrap_or_default();
    let ops = match call.args.get("patch") {
        Some(Value::Array(ops)) if !ops.is_empty() && ops.len() <= MAX_PATCH_OPS => {
            Value::Array(ops.clone())
        }
        _ => {
            return ToolOutput::invalid(format!(
                "'patch' must be a list of 1 to {MAX_PATCH_OPS} JSON Patch operations"
            ))
        }
    };
    let if_match = arg!(string_arg(&call.args, "ifMatch", MAX_VERSION_CHARS));
    let target = format!("{t}/{id}");
    if !arg!(bool_arg(&call.args, "confirm")) {
        let Some(before) = arg!(current(&call, &t, &id).await) else {
            return ToolOutput::error(&ServiceError::not_found(format!("{target} is not known")));
        };
        let mut after = before.clone();
        if let Err(e) = crate::service::apply_json_patch(&mut after, &ops) {
            let why = e
                .issues
                .first()
                .map(|i| i.diagnostics.clone())
                .unwrap_or_default();
            return ToolOutput::invalid(format!("the patch does not apply: {why}"));
        }
        let issues = structural_issues(&after, &t, IdRule::MustEqual(&id));
        let (ch, n) = changes(&before, &after);
        let note = format!(
            "current version {}",
            before["meta"]["versionId"].as_str().unwrap_or("?")
        );
        return dry_run(&target, "patch", ch, n, issues, &note);
    }
    let etag = if_match.map(|v| format!("W/\"{v}\""));
    finish(
        run_request(&call, "PATCH", &target, "", Some(ops), etag.as_deref()).await,
        "patched",
    )
}

pub async fn delete(call: Call) -> ToolOutput {
    let t = arg!(type_arg(&call.args)).unwrap_or_default();
    let id = arg!(id_arg(&call.args, "id")).unwrap_or_default();
    let target = format!("{t}/{id}");
    if !arg!(bool_arg(&call.args, "confirm")) {
        let Some(before) = arg!(current(&call, &t, &id).await) else {
            return ToolOutput::error(&ServiceError::not_found(format!("{target} is not known")));
        };
        let note = format!("now: {}", summarize(&before));
        return dry_run(&target, "delete", Vec::new(), 1, Vec::new(), &note);
    }
    match run_request(&call, "DELETE", &target, "", None, None).await {
        Ok(o) => {
            let version = o.version.as_ref().map(|v| v.version).unwrap_or_default();
            ToolOutput::ok(
                json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information",
                       "code": "informational", "diagnostics": format!("deleted {target}")}],
                       "deleted": target, "version": version}),
                format!("deleted {target}"),
            )
        }
        Err(e) => ToolOutput::error(&e),
    }
}

pub async fn transaction(call: Call) -> ToolOutput {
    let bundle = arg!(object_arg(&call.args, "bundle"));
    if bundle["resourceType"] != "Bundle"
        || !matches!(bundle["type"].as_str(), Some("transaction" | "batch"))
    {
        return ToolOutput::invalid("'bundle' must be a Bundle of type transaction or batch");
    }
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let max = call.service.limits().max_bundle_entries;
    if entries.len() > max {
        return ToolOutput::error(&ServiceError::too_large(format!(
            "at most {max} entries in a Bundle"
        )));
    }
    if !arg!(bool_arg(&call.args, "confirm")) {
        let mut listed = Vec::new();
        let mut issues = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let method = e["request"]["method"].as_str().unwrap_or("?");
            let url = e["request"]["url"].as_str().unwrap_or("?");
            if listed.len() < MAX_LISTED_CHANGES {
                listed.push(json!({"op": method, "path": url}));
            }
            if let Some(r) = e.get("resource").filter(|r| r.is_object()) {
                let t = r["resourceType"].as_str().unwrap_or_default();
                for mut issue in structural_issues(r, t, IdRule::Ignore) {
                    issue["entry"] = json!(i);
                    issues.push(issue);
                }
            }
        }
        let kind = bundle["type"].as_str().unwrap_or("transaction").to_string();
        return dry_run(
            &format!("{} entries", entries.len()),
            &format!("run the {kind} of"),
            listed,
            entries.len(),
            issues,
            "",
        );
    }
    match run_request(&call, "POST", "", "", Some(bundle), None).await {
        Ok(o) => {
            let v = body_json(&o);
            let n = v["entry"].as_array().map_or(0, Vec::len);
            let statuses: Vec<String> = v["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .take(20)
                .map(|e| {
                    format!(
                        "{} {}",
                        e["response"]["status"].as_str().unwrap_or("?"),
                        e["response"]["location"].as_str().unwrap_or("")
                    )
                })
                .collect();
            ToolOutput::ok(
                v,
                format!("{n} entries processed:\n{}", statuses.join("\n")),
            )
        }
        Err(e) => ToolOutput::error(&e),
    }
}

pub async fn validate(call: Call) -> ToolOutput {
    let resource = arg!(object_arg(&call.args, "resource"));
    let t = arg!(write_type(&call.args, &resource));
    let issues = structural_issues(&resource, &t, IdRule::Ignore);
    if issues.is_empty() {
        ToolOutput::ok(
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information",
                   "code": "informational", "diagnostics": format!("the {t} is valid")}]}),
            format!("valid {t}"),
        )
    } else {
        let text = format!(
            "invalid {t}: {}",
            issues[0]["diagnostics"].as_str().unwrap_or("")
        );
        ToolOutput::ok(
            json!({"resourceType": "OperationOutcome", "issue": issues}),
            text,
        )
    }
}

pub async fn capabilities(call: Call) -> ToolOutput {
    let t = arg!(type_arg(&call.args));
    let o = match run_request(&call, "GET", "metadata", "", None, None).await {
        Ok(o) => o,
        Err(e) => return ToolOutput::error(&e),
    };
    let mut cs = body_json(&o);
    let resources = cs["rest"][0]["resource"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let kept: Vec<Value> = match &t {
        Some(t) => resources
            .into_iter()
            .filter(|r| r["type"] == *t.as_str())
            .collect(),
        // Without a type: each type with its interactions only (the full
        // statement is too large for a model's context).
        None => resources
            .into_iter()
            .map(|r| json!({"type": r["type"], "interaction": r["interaction"]}))
            .collect(),
    };
    let names: Vec<String> = kept
        .iter()
        .filter_map(|r| r["type"].as_str().map(str::to_string))
        .collect();
    let text = match &t {
        Some(t) => {
            let params: Vec<&str> = kept
                .first()
                .and_then(|r| r["searchParam"].as_array())
                .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            format!("{t}: search parameters {}", params.join(", "))
        }
        None => format!(
            "FHIR {} server; {} resource types (pass type for one type's search parameters)",
            cs["fhirVersion"].as_str().unwrap_or("4.0.1"),
            names.len()
        ),
    };
    if let Some(rest) = cs["rest"].get_mut(0) {
        rest["resource"] = Value::Array(kept);
    }
    ToolOutput::ok(cs, text)
}

/// Words a user may say for what a tool does.
const SYNONYMS: &[(&str, &str)] = &[
    ("remove", "delete"),
    ("erase", "delete"),
    ("edit", "update"),
    ("modify", "update"),
    ("change", "update"),
    ("fix", "update"),
    ("get", "read"),
    ("fetch", "read"),
    ("show", "read"),
    ("open", "read"),
    ("look", "search"),
    ("lookup", "search"),
    ("query", "search"),
    ("list", "search"),
    ("who", "resolve"),
    ("identify", "resolve"),
    ("meds", "medications"),
    ("drugs", "medications"),
    ("prescriptions", "medications"),
    ("chart", "summary"),
    ("overview", "summary"),
    ("add", "create"),
    ("new", "create"),
    ("versions", "history"),
    ("check", "validate"),
    ("bulk", "transaction"),
];

fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_string)
        .collect()
}

/// The catalog's tools ranked for `query` (best first, at most
/// [`MAX_FOUND_TOOLS`], only those matching at all).
pub fn rank_tools(q: &str) -> Vec<(u32, &'static super::registry::ToolSpec)> {
    let mut wanted: Vec<String> = Vec::new();
    for w in words(q) {
        for (from, to) in SYNONYMS {
            if w == *from {
                wanted.push((*to).to_string());
            }
        }
        wanted.push(w);
    }
    let mut scored: Vec<(u32, &super::registry::ToolSpec)> = catalog()
        .iter()
        .map(|t| {
            let name = words(&t.name.replace('_', " "));
            let title = words(t.title);
            let desc = words(t.description);
            let score = wanted
                .iter()
                .map(|w| {
                    let mut s = 0;
                    if name.contains(w) {
                        s += 5;
                    }
                    if t.keywords.contains(&w.as_str()) {
                        s += 3;
                    }
                    if title.contains(w) {
                        s += 2;
                    }
                    if desc.contains(w) {
                        s += 1;
                    }
                    s
                })
                .sum();
            (score, t)
        })
        .filter(|(s, _)| *s > 0)
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.name.cmp(b.1.name)));
    scored.truncate(MAX_FOUND_TOOLS);
    scored
}

pub async fn find_tools(call: Call) -> ToolOutput {
    let q = arg!(required(&call.args, "query", MAX_QUERY_CHARS));
    let scored = rank_tools(&q);
    let found: Vec<Value> = scored
        .iter()
        .map(|(s, t)| {
            json!({"name": t.name, "title": t.title, "description": t.description,
                   "score": s, "readOnly": t.read_only, "destructive": t.destructive})
        })
        .collect();
    let text = if found.is_empty() {
        "no tool matches; try other words".to_string()
    } else {
        scored
            .iter()
            .map(|(_, t)| format!("{}: {}", t.name, t.title))
            .collect::<Vec<_>>()
            .join("\n")
    };
    ToolOutput::ok(json!({"tools": found}), text)
}

/// Runs a search `Type?pairs` for the clinical tools; `Ok(None)` when the
/// caller may not search that type at all (403), so a summary can say so.
pub async fn search_bundle(
    call: &Call,
    t: &str,
    pairs: &[(String, String)],
) -> ServiceResult<Option<Value>> {
    match run_request(call, "GET", t, &query_of(pairs), None, None).await {
        Ok(o) => Ok(Some(body_json(&o))),
        Err(e) if e.status == 403 => Ok(None),
        Err(e) => Err(e),
    }
}

/// `MAX_ID_CHARS`-bounded id argument (for the clinical tools).
pub fn patient_id_arg(args: &Args, name: &str) -> Result<String, ToolOutput> {
    id_arg(args, name)?
        .ok_or_else(|| ToolOutput::invalid(format!("the argument '{name}' is required")))
}

/// A required free-text argument.
pub fn text_arg(args: &Args, name: &str) -> Result<String, ToolOutput> {
    required(args, name, MAX_QUERY_CHARS)
}

/// The patient read for a summary; errors as tool results.
pub async fn read_resource(call: &Call, t: &str, id: &str) -> Result<Value, ToolOutput> {
    run_request(call, "GET", &format!("{t}/{id}"), "", None, None)
        .await
        .map(|o| body_json(&o))
        .map_err(|e| ToolOutput::error(&e))
}

/// Interactions built directly (not through the parser), for resources.
pub fn everything(patient: &str, count: usize) -> Interaction {
    Interaction::Search {
        target: crate::service::search::SearchTarget::Everything {
            patient: Some(patient.to_string()),
        },
        params: vec![("_count".into(), count.to_string())],
        strict: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_params_become_pairs_within_limits() {
        let p = json!({"name": "Doe", "birthdate": ["ge1970", "lt1980"], "_id": 5});
        let pairs = search_pairs(Some(&p)).expect("pairs");
        assert_eq!(pairs.len(), 4);
        assert!(pairs.contains(&("birthdate".into(), "lt1980".into())));
        assert!(pairs.contains(&("_id".into(), "5".into())));
        assert!(search_pairs(Some(&json!({"_count": "5"}))).is_err());
        assert!(search_pairs(Some(&json!({"name": {"x": 1}}))).is_err());
        assert!(search_pairs(Some(&json!({"name": "x".repeat(MAX_PARAM_CHARS + 1)}))).is_err());
        let many: Map<String, Value> = (0..=MAX_SEARCH_PARAMS)
            .map(|i| (format!("p{i}"), json!("v")))
            .collect();
        assert!(search_pairs(Some(&Value::Object(many))).is_err());
        let values = json!({"code": vec!["a"; MAX_PARAM_VALUES + 1]});
        assert!(search_pairs(Some(&values)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let bundle = json!({"link": [{"relation": "next",
            "url": "http://h/fhir/Patient?name=x&_count=2&_cursor=abc"}]});
        let c = cursor_of(&bundle, "http://h/fhir").expect("cursor");
        let (path, query) = decode_cursor(&c).expect("decoded");
        assert_eq!(path, "Patient");
        assert_eq!(query, "name=x&_count=2&_cursor=abc");
        assert!(decode_cursor("%%%").is_err());
        assert!(decode_cursor(&"A".repeat(MAX_CURSOR_CHARS + 1)).is_err());
        // A link to another server is not turned into a cursor.
        assert!(cursor_of(&bundle, "http://other/fhir").is_none());
    }

    #[test]
    fn find_tools_understands_synonyms() {
        let first = |q: &str| rank_tools(q).first().map(|(_, t)| t.name);
        assert_eq!(first("remove a resource"), Some("fhir_delete"));
        assert_eq!(
            first("meds and allergies of a patient"),
            Some("patient_summary")
        );
        assert_eq!(first("who is John Doe"), Some("resolve"));
        assert!(rank_tools("zzzz qqqq").is_empty());
        assert!(rank_tools("search").len() <= MAX_FOUND_TOOLS);
    }

    #[test]
    fn dry_run_changes_ignore_version_meta() {
        let before = json!({"resourceType": "Patient", "id": "1", "meta": {"versionId": "3"}, "active": true});
        let after = json!({"resourceType": "Patient", "id": "1", "active": false});
        let (ops, n) = changes(&before, &after);
        assert_eq!(n, 1, "{ops:?}");
        assert_eq!(ops[0]["path"], "/active");
    }

    #[test]
    fn every_tool_has_schemas_and_named_limits() {
        for t in catalog() {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            assert_eq!(t.output_schema["type"], "object", "{}", t.name);
            assert_eq!(t.input_schema["additionalProperties"], false, "{}", t.name);
            let tool = t.to_tool();
            assert!(tool.annotations.is_some() && tool.output_schema.is_some());
            // Destructive tools take confirm; read-only ones do not.
            let has_confirm = t.input_schema["properties"].get("confirm").is_some();
            assert_eq!(has_confirm, t.destructive, "{}", t.name);
        }
    }
}
