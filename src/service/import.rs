//! Bulk load through the same validation and write path as REST: resources
//! are validated (CPU, in parallel with writing) and then stored in chunks,
//! one database transaction per chunk.

use std::collections::HashSet;

use serde_json::Value;

use super::access::WriteGuard;
use super::crud::{invalid, new_id, write_many_in_tx, Effect, PendingWrite, WriteKind};
use super::Ctx;
use super::{FhirService, ServiceError, ServiceResult};
use crate::audit::event::{build, Action, AuditFacts, EventKind};
use crate::fhir::instant::now_ms;
use crate::fhir::validate::{check_resource, IdRule};
use crate::fhir::ResourceType;
use crate::search::compartment;
use crate::search::definitions::Registry;
use crate::search::index::extract;
use crate::store::{IndexRows, WriteTx};

/// Resources stored per database transaction during an import.
pub const IMPORT_CHUNK: usize = 1_000;

/// A resource that passed validation, with the id it will be stored under.
#[derive(Debug)]
pub struct ValidResource {
    res_type: ResourceType,
    id: String,
    /// Resources without an id are created with a new one; with an id, they
    /// are upserted (so that a re-run creates no duplicates).
    upsert: bool,
    resource: Value,
    /// Extracted on the validating thread, off the writer's path.
    index: IndexRows,
}

/// Counts of what an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub invalid: u64,
}

impl ImportCounts {
    pub fn stored(&self) -> u64 {
        self.created + self.updated + self.unchanged
    }

    pub fn add(&mut self, other: &ImportCounts) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.invalid += other.invalid;
    }
}

/// Validates one resource for import. Pure CPU work; safe to run on any thread.
pub fn validate_for_import(reg: &Registry, resource: Value) -> ServiceResult<ValidResource> {
    let res_type = check_resource(&resource, None, IdRule::Ignore).map_err(invalid)?;
    let (id, upsert) = match resource.get("id").and_then(Value::as_str) {
        Some(id) => (id.to_string(), true),
        None => (new_id(), false),
    };
    let index = extract(reg, &resource);
    Ok(ValidResource {
        res_type,
        id,
        upsert,
        resource,
        index,
    })
}

impl FhirService {
    /// Stores validated resources in one transaction: the current versions
    /// are read per type in one lookup, and the new versions and their index
    /// rows written with multi-row statements (`WriteTx::save_many`).
    pub async fn import_chunk(&self, chunk: Vec<ValidResource>) -> ServiceResult<ImportCounts> {
        let mut counts = ImportCounts::default();
        let reg = self.registry.get();
        // `vesta import` is the operator's own command, run with local access.
        let guard = WriteGuard::open(&reg);
        let mut tx = self.store.begin().await?;
        let mut facts = AuditFacts::new(EventKind::Operation("import".into()), Action::Create);
        for r in &chunk {
            facts.entity(format!("{}/{}", r.res_type, r.id));
            if r.res_type.as_str() == "Patient" {
                facts.patient(&r.id);
            } else if let Some(params) = compartment::patient_params(r.res_type.as_str()) {
                for row in &r.index.references {
                    if row.target_type.as_deref() == Some("Patient") && params.contains(&row.param)
                    {
                        if let Some(id) = &row.target_id {
                            facts.patient(id);
                        }
                    }
                }
            }
        }
        for batch in distinct_runs(chunk) {
            write_batch(&mut tx, batch, &guard, &mut counts).await?;
        }
        facts.detail = Some(format!(
            "{} created, {} updated, {} unchanged",
            counts.created, counts.updated, counts.unchanged
        ));
        let ctx = Ctx::internal();
        let row = build(&facts, &self.actor(&ctx), now_ms());
        tx.append_audit(&[row]).await?;
        tx.commit().await?;
        Ok(counts)
    }
}

/// Splits `chunk` into consecutive runs in which no resource appears twice,
/// so that each run can be written as one batch (a later copy of the same
/// resource must see the earlier one as its current version).
fn distinct_runs(chunk: Vec<ValidResource>) -> Vec<Vec<ValidResource>> {
    let mut runs = vec![];
    let mut run: Vec<ValidResource> = vec![];
    let mut seen = HashSet::new();
    for r in chunk {
        let key = (r.res_type, r.id.clone());
        if seen.contains(&key) {
            runs.push(std::mem::take(&mut run));
            seen.clear();
        }
        seen.insert(key);
        run.push(r);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// Writes distinct resources through the shared batched write.
async fn write_batch(
    tx: &mut WriteTx,
    batch: Vec<ValidResource>,
    guard: &WriteGuard<'_>,
    counts: &mut ImportCounts,
) -> ServiceResult<()> {
    let writes = batch
        .into_iter()
        .map(|r| PendingWrite {
            kind: if r.upsert {
                WriteKind::Update { if_match: None }
            } else {
                WriteKind::Create
            },
            res_type: r.res_type,
            id: r.id,
            resource: r.resource,
            index: r.index,
        })
        .collect();
    let planned = write_many_in_tx(tx, writes, guard)
        .await
        .map_err(|e| e.error)?;
    for plan in planned {
        match plan.effect {
            Effect::Created => counts.created += 1,
            Effect::Updated => counts.updated += 1,
            Effect::Unchanged => counts.unchanged += 1,
        }
    }
    Ok(())
}

/// Splits a Bundle read from a file into the resources to import, or tells
/// the caller to process it as a batch/transaction.
pub enum BundleImport {
    /// A transaction or batch: run it through the Bundle interaction.
    Interaction(Value),
    /// A collection (or other non-request Bundle): import each entry's resource.
    Resources(Vec<Value>),
}

pub fn classify_bundle(bundle: Value) -> Result<BundleImport, ServiceError> {
    match bundle.get("type").and_then(Value::as_str) {
        Some("transaction" | "batch") => Ok(BundleImport::Interaction(bundle)),
        Some(_) => Ok(BundleImport::Resources(
            bundle
                .get("entry")
                .and_then(Value::as_array)
                .map(|entries| {
                    entries
                        .iter()
                        .filter_map(|e| e.get("resource").cloned())
                        .collect()
                })
                .unwrap_or_default(),
        )),
        None => Err(ServiceError::invalid(
            "Bundle.type is missing",
            Some("Bundle.type"),
        )),
    }
}
