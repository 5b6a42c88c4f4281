//! Batch and transaction Bundles. A transaction runs in one database
//! transaction, in the spec's order (DELETE, POST, PUT/PATCH, then GET), with
//! `urn:uuid:` references rewritten; a batch runs each entry on its own.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use serde_json::{json, Value};

use super::access::WriteGuard;
use super::crud::{
    delete_in_tx, invalid, new_id, patch_in_tx, write_many_in_tx, Effect, PendingWrite, WriteKind,
};
use super::interaction::{parse, Interaction, Preference, RawRequest};
use super::{
    Body, Ctx, FhirService, Outcome, ServiceError, ServiceResult, StoredResource, VersionFacts,
};
use crate::fhir::bundle::{entry_response, finish, new_bundle};
use crate::fhir::outcome::Issue;
use crate::fhir::resource::{conditional_references, rewrite_references};
use crate::fhir::validate::{check_resource, IdRule};
use crate::search::index::extract;
use crate::store::IndexRows;

/// Whether a Bundle is a transaction, and its entries with their `fullUrl`s.
type ParsedBundle = (bool, Vec<(Option<String>, Entry)>);

/// A Bundle entry turned into an interaction, with its position in the request.
struct Entry {
    index: usize,
    interaction: Interaction,
}

fn entry_error(index: usize, mut e: ServiceError) -> ServiceError {
    for issue in &mut e.issues {
        issue.diagnostics = format!("entry {index}: {}", issue.diagnostics);
        issue.expression = Some(match issue.expression.take() {
            Some(path) => format!("Bundle.entry[{index}].resource.{path}"),
            None => format!("Bundle.entry[{index}]"),
        });
    }
    e
}

/// The index rows extracted for entry `index` during validation.
fn take_index(indexes: &mut HashMap<usize, IndexRows>, index: usize) -> IndexRows {
    indexes.remove(&index).unwrap_or_default()
}

/// Orders entries as the transaction rules require.
fn phase(i: &Interaction) -> u8 {
    match i {
        Interaction::Delete { .. } | Interaction::ConditionalDelete { .. } => 0,
        Interaction::Create { .. } => 1,
        Interaction::Update { .. }
        | Interaction::Patch { .. }
        | Interaction::ConditionalUpdate { .. }
        | Interaction::ConditionalPatch { .. } => 2,
        _ => 3,
    }
}

/// The JSON Patch document a Bundle entry carries as a Binary resource.
fn patch_from_binary(body: Value) -> ServiceResult<Value> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Binary") {
        // FHIRPath Patch (Parameters) is not implemented.
        return Err(ServiceError::not_supported(
            "PATCH in a Bundle must carry a Binary with a JSON Patch document",
        ));
    }
    let data = body.get("data").and_then(Value::as_str).unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| ServiceError::invalid("Binary.data is not base64", Some("Binary.data")))?;
    crate::fhir::limits::parse_json(&bytes).map_err(|e| match e {
        Ok(refusal) => ServiceError::new(
            400,
            crate::fhir::outcome::Issue::error(refusal.code(), refusal.message("Binary.data"))
                .at("Binary.data"),
        ),
        Err(_) => ServiceError::invalid(
            "Binary.data is not a JSON Patch document",
            Some("Binary.data"),
        ),
    })
}

impl FhirService {
    fn parse_entries(&self, bundle: &Value) -> ServiceResult<ParsedBundle> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(ServiceError::invalid(
                "POST to the base needs a Bundle",
                Some("resourceType"),
            ));
        }
        let transaction = match bundle.get("type").and_then(Value::as_str) {
            Some("transaction") => true,
            Some("batch") => false,
            _ => {
                return Err(ServiceError::invalid(
                    "Bundle.type must be transaction or batch",
                    Some("Bundle.type"),
                ))
            }
        };
        let empty = vec![];
        let raw_entries = bundle
            .get("entry")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        if raw_entries.len() > self.limits.max_bundle_entries {
            return Err(ServiceError::too_large(format!(
                "a Bundle may hold at most {} entries",
                self.limits.max_bundle_entries
            )));
        }
        let base_prefix = format!("{}/", self.base_url);
        let mut out = Vec::with_capacity(raw_entries.len());
        for (index, raw) in raw_entries.iter().enumerate() {
            let request = raw.get("request").ok_or_else(|| {
                entry_error(
                    index,
                    ServiceError::invalid("entry.request is missing", None),
                )
            })?;
            let method = request
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let url = request
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or_default();
            for unsupported in ["ifNoneMatch", "ifModifiedSince"] {
                if request.get(unsupported).is_some() {
                    return Err(entry_error(
                        index,
                        ServiceError::not_supported(format!(
                            "request.{unsupported} is not supported yet"
                        )),
                    ));
                }
            }
            let url = url
                .strip_prefix(&base_prefix)
                .unwrap_or(url)
                .trim_matches('/');
            let (path, query) = url.split_once('?').unwrap_or((url, ""));
            let mut body = raw.get("resource").cloned();
            if method == "PATCH" {
                body = body
                    .map(patch_from_binary)
                    .transpose()
                    .map_err(|e| entry_error(index, e))?;
            }
            let interaction = parse(RawRequest {
                method,
                path,
                query,
                body,
                if_match: request.get("ifMatch").and_then(Value::as_str),
                if_none_exist: request.get("ifNoneExist").and_then(Value::as_str),
                prefer: None,
            })
            .map_err(|e| entry_error(index, e))?;
            if matches!(interaction, Interaction::Bundle { .. }) {
                return Err(entry_error(
                    index,
                    ServiceError::invalid("Bundles cannot be nested", None),
                ));
            }
            let full_url = raw
                .get("fullUrl")
                .and_then(Value::as_str)
                .map(str::to_string);
            out.push((full_url, Entry { index, interaction }));
        }
        Ok((transaction, out))
    }

    pub(super) async fn process_bundle(
        &self,
        ctx: &Ctx,
        bundle: Value,
        pref: Preference,
    ) -> ServiceResult<Outcome> {
        let (transaction, entries) = self.parse_entries(&bundle)?;
        if transaction {
            self.transaction(ctx, entries, pref).await
        } else {
            self.batch(ctx, entries, pref).await
        }
    }

    async fn batch(
        &self,
        ctx: &Ctx,
        entries: Vec<(Option<String>, Entry)>,
        pref: Preference,
    ) -> ServiceResult<Outcome> {
        let mut out = Vec::with_capacity(entries.len());
        for (_, entry) in entries {
            let is_write = phase(&entry.interaction) < 3;
            out.push(match Box::pin(self.execute(ctx, entry.interaction)).await {
                Ok(outcome) => self.response_entry(
                    outcome,
                    if is_write {
                        pref
                    } else {
                        Preference::Representation
                    },
                ),
                Err(e) => {
                    json!({"response": {"status": e.status.to_string(), "outcome": e.outcome()}})
                }
            });
        }
        let b = new_bundle("batch-response", &[]);
        Ok(Outcome::generated(200, finish(b, out, None)))
    }

    async fn transaction(
        &self,
        ctx: &Ctx,
        entries: Vec<(Option<String>, Entry)>,
        pref: Preference,
    ) -> ServiceResult<Outcome> {
        // 0. Conditional entries become plain ones (or are answered without a write).
        let mut ids: HashMap<usize, String> = HashMap::new();
        let mut refs: HashMap<String, String> = HashMap::new();
        let mut results: Vec<(usize, Value)> = Vec::with_capacity(entries.len());
        let mut plain = Vec::with_capacity(entries.len());
        for (full_url, entry) in entries {
            let index = entry.index;
            match self
                .resolve_conditional(ctx, entry.interaction)
                .await
                .map_err(|e| entry_error(index, e))?
            {
                Ok(interaction) => plain.push((full_url, Entry { index, interaction })),
                Err(decided) => {
                    if let (Some(url), Some(v)) = (full_url, &decided.version) {
                        refs.insert(url, format!("{}/{}", v.res_type, v.id));
                    }
                    results.push((index, self.response_entry(decided, pref)));
                }
            }
        }
        let mut entries = plain;
        // Conditional references (`Patient?identifier=…`) resolve to the one match.
        for (_, entry) in &entries {
            if let Interaction::Create { resource, .. } | Interaction::Update { resource, .. } =
                &entry.interaction
            {
                for r in conditional_references(resource) {
                    if let std::collections::hash_map::Entry::Vacant(slot) = refs.entry(r) {
                        let target = self
                            .resolve_reference(ctx, slot.key())
                            .await
                            .map_err(|e| entry_error(entry.index, e))?;
                        slot.insert(target);
                    }
                }
            }
        }
        // 1. Give every POST its id now and map fullUrls to the final references.
        for (full_url, entry) in &entries {
            let target = match &entry.interaction {
                Interaction::Create { res_type, .. } => {
                    let id = new_id();
                    ids.insert(entry.index, id.clone());
                    Some(format!("{res_type}/{id}"))
                }
                Interaction::Update { res_type, id, .. } => Some(format!("{res_type}/{id}")),
                _ => None,
            };
            if let (Some(url), Some(target)) = (full_url, target) {
                if refs.insert(url.clone(), target).is_some() {
                    return Err(entry_error(
                        entry.index,
                        ServiceError::invalid("duplicate fullUrl", None),
                    ));
                }
            }
        }
        // 2. Rewrite references, validate everything, and refuse two writes to one resource.
        let mut touched = HashSet::new();
        let mut indexes: HashMap<usize, IndexRows> = HashMap::new();
        let reg = self.registry.get();
        for (_, entry) in &mut entries {
            let index = entry.index;
            super::audit::refuse_audit_writes(&entry.interaction)
                .map_err(|e| entry_error(index, e))?;
            let key = match &mut entry.interaction {
                Interaction::Create {
                    res_type, resource, ..
                } => {
                    rewrite_references(resource, &refs);
                    check_resource(resource, Some(*res_type), IdRule::Ignore)
                        .map_err(|e| entry_error(index, invalid(e)))?;
                    indexes.insert(index, extract(&reg, resource));
                    None
                }
                Interaction::Update {
                    res_type,
                    id,
                    resource,
                    ..
                } => {
                    rewrite_references(resource, &refs);
                    check_resource(resource, Some(*res_type), IdRule::MustEqual(id))
                        .map_err(|e| entry_error(index, invalid(e)))?;
                    indexes.insert(index, extract(&reg, resource));
                    Some(format!("{res_type}/{id}"))
                }
                Interaction::Patch { res_type, id, .. } | Interaction::Delete { res_type, id } => {
                    Some(format!("{res_type}/{id}"))
                }
                _ => None,
            };
            if let Some(key) = key {
                if !touched.insert(key) {
                    return Err(entry_error(
                        index,
                        ServiceError::invalid(
                            "a transaction may change each resource only once",
                            None,
                        ),
                    ));
                }
            }
        }
        // 3. Writes in the spec's order, in one database transaction.
        entries.sort_by_key(|(_, e)| phase(&e.interaction));
        let mut reads = Vec::new();
        let mut written: Vec<StoredResource> = Vec::new();
        let mut deleted: Vec<VersionFacts> = Vec::new();
        let guard = WriteGuard::new(self, &reg, ctx).await?;
        let mut tx = self.store.begin().await?;
        // Creates and updates (distinct resources, checked above) go through
        // one batched write; patches and deletes run one by one.
        let mut batched: Vec<usize> = Vec::new();
        let mut writes: Vec<PendingWrite> = Vec::new();
        for (_, entry) in entries {
            let index = entry.index;
            let outcome = match entry.interaction {
                Interaction::Create {
                    res_type, resource, ..
                } => {
                    let id = ids
                        .get(&index)
                        .cloned()
                        .ok_or_else(ServiceError::internal)?;
                    batched.push(index);
                    writes.push(PendingWrite {
                        res_type,
                        id,
                        resource,
                        kind: WriteKind::Create,
                        index: take_index(&mut indexes, index),
                    });
                    continue;
                }
                Interaction::Update {
                    res_type,
                    id,
                    resource,
                    if_match,
                } => {
                    batched.push(index);
                    writes.push(PendingWrite {
                        res_type,
                        id,
                        resource,
                        kind: WriteKind::Update { if_match },
                        index: take_index(&mut indexes, index),
                    });
                    continue;
                }
                Interaction::Patch {
                    res_type,
                    id,
                    patch,
                    if_match,
                } => {
                    let stored =
                        patch_in_tx(&reg, &mut tx, res_type, &id, &patch, if_match, &guard)
                            .await
                            .map_err(|e| entry_error(index, e))?;
                    Outcome::stored(200, stored)
                }
                Interaction::Delete { res_type, id } => {
                    let facts = delete_in_tx(&mut tx, res_type, &id, &guard)
                        .await
                        .map_err(|e| entry_error(index, e))?;
                    // Deleting what does not exist is not an error (delete is idempotent).
                    Outcome {
                        status: 204,
                        body: Body::None,
                        version: facts,
                    }
                }
                other => {
                    reads.push((index, other));
                    continue;
                }
            };
            match (&outcome.body, &outcome.version) {
                (Body::Stored(r), _) => written.push(r.clone()),
                (Body::None, Some(v)) => deleted.push(v.clone()),
                _ => {}
            }
            results.push((index, self.response_entry(outcome, pref)));
        }
        let planned = write_many_in_tx(&mut tx, writes, &guard)
            .await
            .map_err(|e| match e.at.and_then(|at| batched.get(at)) {
                Some(&index) => entry_error(index, e.error),
                None => e.error,
            })?;
        for (index, plan) in batched.into_iter().zip(planned) {
            let status = if plan.effect == Effect::Created {
                201
            } else {
                200
            };
            written.push(plan.stored.clone());
            results.push((
                index,
                self.response_entry(Outcome::stored(status, plan.stored), pref),
            ));
        }
        let stored: Vec<&StoredResource> = written.iter().collect();
        let gone: Vec<&VersionFacts> = deleted.iter().collect();
        self.commit_audited(ctx, tx, 200, &stored, &gone).await?;
        // 4. Reads run after the writes are committed.
        for (index, interaction) in reads {
            let entry = match Box::pin(self.execute(ctx, interaction)).await {
                Ok(o) => self.response_entry(o, Preference::Representation),
                Err(e) => {
                    json!({"response": {"status": e.status.to_string(), "outcome": e.outcome()}})
                }
            };
            results.push((index, entry));
        }
        results.sort_by_key(|(i, _)| *i);
        let b = new_bundle("transaction-response", &[]);
        Ok(Outcome::generated(
            200,
            finish(b, results.into_iter().map(|(_, e)| e).collect(), None),
        ))
    }

    /// Renders an interaction's outcome as a response Bundle entry.
    fn response_entry(&self, outcome: Outcome, pref: Preference) -> Value {
        let location = outcome
            .version
            .as_ref()
            .filter(|_| outcome.status == 201)
            .map(|v| format!("{}/{}/_history/{}", v.res_type, v.id, v.version));
        let version = outcome
            .version
            .as_ref()
            .map(|v| (v.version, v.last_updated));
        let mut entry = json!({"response": entry_response(outcome.status, location, version)});
        if let Some(v) = &outcome.version {
            entry["fullUrl"] = json!(format!("{}/{}/{}", self.base_url, v.res_type, v.id));
        }
        match (outcome.body, pref) {
            (Body::Stored(StoredResource { json, .. }), Preference::Representation) => {
                if let Ok(v) = serde_json::from_str::<Value>(&json) {
                    entry["resource"] = v;
                }
            }
            (Body::Generated(v), _) => entry["resource"] = v,
            (Body::Stored(_), Preference::OperationOutcome) => {
                entry["response"]["outcome"] =
                    crate::fhir::outcome::operation_outcome(&[Issue::error("informational", "ok")
                        .with_severity(crate::fhir::outcome::Severity::Information)]);
            }
            _ => {}
        }
        entry
    }
}
