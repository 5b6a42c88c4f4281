//! read, vread, create, update, patch and delete, and the versioned write they share.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::access::{hidden, require, WriteGuard};
use super::{Ctx, FhirService, Outcome, ServiceError, ServiceResult, StoredResource, VersionFacts};
use crate::fhir::instant::now_ms;
use crate::fhir::resource::{same_content, stamp};
use crate::fhir::validate::{check_resource, IdRule};
use crate::fhir::ResourceType;
use crate::policy::scope::Perms;
use crate::policy::{visible, Decision};
use crate::search::definitions::Registry;
use crate::search::index::extract;
use crate::store::{Current, IndexRows, NewVersion, WriteTx};

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    Created,
    Updated,
    /// The content equalled the current version; nothing was written.
    Unchanged,
}

/// What a write should do if the resource already exists.
#[derive(Debug, Clone, Copy)]
pub(super) enum WriteKind {
    /// POST: the id is new.
    Create,
    /// PUT: create or replace, optionally only at a given version.
    Update { if_match: Option<i64> },
    /// PATCH: the patched resource replaces the current one.
    Patch { if_match: Option<i64> },
}

impl WriteKind {
    fn method(self) -> &'static str {
        match self {
            WriteKind::Create => "POST",
            WriteKind::Update { .. } => "PUT",
            WriteKind::Patch { .. } => "PATCH",
        }
    }
}

/// 400 with one OperationOutcome issue per problem, each at its element.
pub(super) fn invalid(e: crate::fhir::validate::Invalid) -> ServiceError {
    ServiceError::invalid_all(e)
}

pub(super) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn check_if_match(
    if_match: Option<i64>,
    current: Option<&crate::store::Current>,
) -> ServiceResult<()> {
    if let Some(expected) = if_match {
        match current {
            Some(c) if !c.deleted && c.version == expected => Ok(()),
            Some(c) if !c.deleted => Err(ServiceError::precondition_failed(format!(
                "If-Match names version {expected} but the current version is {}",
                c.version
            ))),
            _ => Err(ServiceError::precondition_failed(
                "If-Match given but the resource does not exist",
            )),
        }
    } else {
        Ok(())
    }
}

/// Stores `resource` (already validated) as the next version of
/// `res_type/id` inside `tx`. Returns the stored resource and what happened.
pub(super) async fn write_in_tx(
    tx: &mut WriteTx,
    res_type: ResourceType,
    id: &str,
    resource: Value,
    kind: WriteKind,
    index: &IndexRows,
    guard: &WriteGuard<'_>,
) -> ServiceResult<(StoredResource, Effect)> {
    let current = tx.current(res_type.as_str(), id).await?;
    pre_read(guard, res_type, id, kind, current.as_ref())?;
    let planned = plan_write(current.as_ref(), res_type, id, resource, kind, guard)?;
    if let Some(version) = planned.new_version(index) {
        tx.save(version).await?;
    }
    Ok((planned.stored, planned.effect))
}

/// One resource for [`write_many_in_tx`]: validated, with its index rows.
pub(super) struct PendingWrite {
    pub res_type: ResourceType,
    pub id: String,
    pub resource: Value,
    pub kind: WriteKind,
    pub index: IndexRows,
}

/// Why a batched write failed: at which write (by position), or in the store.
pub(super) struct BatchError {
    pub at: Option<usize>,
    pub error: ServiceError,
}

impl From<crate::store::StoreError> for BatchError {
    fn from(e: crate::store::StoreError) -> Self {
        BatchError {
            at: None,
            error: e.into(),
        }
    }
}

/// Stores distinct resources (no type and id twice) inside `tx`: one locked
/// lookup per type, the same decision as a single write ([`plan_write`]) for
/// each, and one batched save (`WriteTx::save_many`). Creates carry fresh
/// ids and are not looked up. Returns the plans in the order given.
pub(super) async fn write_many_in_tx(
    tx: &mut WriteTx,
    writes: Vec<PendingWrite>,
    guard: &WriteGuard<'_>,
) -> Result<Vec<Planned>, BatchError> {
    // Types in a fixed order, so that concurrent batches lock rows in one
    // order (PostgreSQL `FOR UPDATE`) and cannot deadlock on each other.
    let mut ids_by_type: BTreeMap<&'static str, (ResourceType, Vec<&str>)> = BTreeMap::new();
    for w in writes
        .iter()
        .filter(|w| !matches!(w.kind, WriteKind::Create))
    {
        ids_by_type
            .entry(w.res_type.as_str())
            .or_insert_with(|| (w.res_type, vec![]))
            .1
            .push(&w.id);
    }
    let mut currents: HashMap<ResourceType, HashMap<String, Current>> = HashMap::new();
    for (name, (t, mut ids)) in ids_by_type {
        ids.sort_unstable();
        currents.insert(t, tx.current_many(name, &ids).await?);
    }
    let mut planned = Vec::with_capacity(writes.len());
    for (at, w) in writes.into_iter().enumerate() {
        let current = currents.get(&w.res_type).and_then(|m| m.get(&w.id));
        pre_read(guard, w.res_type, &w.id, w.kind, current).map_err(|error| BatchError {
            at: Some(at),
            error,
        })?;
        let plan =
            plan_write(current, w.res_type, &w.id, w.resource, w.kind, guard).map_err(|error| {
                BatchError {
                    at: Some(at),
                    error,
                }
            })?;
        planned.push((plan, w.index));
    }
    let versions: Vec<_> = planned
        .iter()
        .filter_map(|(plan, index)| plan.new_version(index))
        .collect();
    tx.save_many(&versions).await?;
    Ok(planned.into_iter().map(|(plan, _)| plan).collect())
}

/// The decision on the current version a write reads before it writes:
/// the same as a read's ([`WriteGuard::reachable`]), so that a resource the
/// principal may not read answers like an absent id. An update that would
/// create (PUT to an id that does not exist) is open only to principals that
/// see every resource of the type and to backend clients (no user): for any
/// other, a 201 for a free id beside a 404 for a hidden one would tell
/// hidden ids apart, so it answers the same 404 (create with POST instead).
pub(super) fn pre_read(
    guard: &WriteGuard<'_>,
    res_type: ResourceType,
    id: &str,
    kind: WriteKind,
    current: Option<&Current>,
) -> ServiceResult<()> {
    let t = res_type.as_str();
    match kind {
        // A fresh id: nothing is read.
        WriteKind::Create => Ok(()),
        WriteKind::Update { .. } | WriteKind::Patch { .. } => {
            guard.reachable(Perms::U, t, id, current)?;
            if current.is_none_or(|c| c.deleted) && !guard.may_create_at_id(t) {
                return Err(hidden(t, id));
            }
            Ok(())
        }
    }
}

/// A write decided against the current version, not yet stored.
pub(super) struct Planned {
    pub stored: StoredResource,
    pub effect: Effect,
    /// The logical resource's row, when it has one.
    rid: Option<i64>,
    method: &'static str,
}

impl Planned {
    /// The version to store; `None` when the write changes nothing.
    pub fn new_version<'a>(&'a self, index: &'a IndexRows) -> Option<NewVersion<'a>> {
        (self.effect != Effect::Unchanged).then(|| NewVersion {
            res_type: &self.stored.res_type,
            res_id: &self.stored.id,
            rid: self.rid,
            version: self.stored.version,
            last_updated: self.stored.last_updated,
            method: self.method,
            content: Some(&self.stored.json),
            index,
        })
    }
}

/// Decides what writing `resource` as `res_type/id` does given its
/// `current` version (read and locked in the caller's transaction): checks
/// access and `If-Match`, detects an unchanged update, and stamps the new
/// version's meta. Pure; the caller stores the result.
pub(super) fn plan_write(
    current: Option<&Current>,
    res_type: ResourceType,
    id: &str,
    mut resource: Value,
    kind: WriteKind,
    guard: &WriteGuard<'_>,
) -> ServiceResult<Planned> {
    let t = res_type.as_str();
    let live = current.filter(|c| !c.deleted);
    // The current content, parsed once for the access check and the
    // unchanged-update check.
    let existing: Option<Value> = match live.and_then(|c| c.content.as_deref()) {
        Some(text) => Some(serde_json::from_str(text).map_err(|_| ServiceError::internal())?),
        None => None,
    };
    match live {
        // Creating (POST, or PUT/PATCH of a new or deleted id).
        None => guard.new_content(Perms::C, t, &resource)?,
        Some(_) => {
            if let Some(existing) = &existing {
                guard.existing(Perms::U, t, id, existing)?;
            }
            guard.new_content(Perms::U, t, &resource)?;
        }
    }
    match kind {
        WriteKind::Create if current.is_some() => {
            return Err(ServiceError::conflict(
                "a resource with this id already exists",
            ))
        }
        WriteKind::Update { if_match } | WriteKind::Patch { if_match } => {
            check_if_match(if_match, current)?
        }
        WriteKind::Create => {}
    }
    // An update that changes nothing keeps the current version (makes re-imports idempotent).
    if let (Some(c), Some(existing), Some(text)) =
        (live, &existing, live.and_then(|c| c.content.as_ref()))
    {
        if same_content(existing, &resource) {
            return Ok(Planned {
                stored: StoredResource {
                    res_type: res_type.to_string(),
                    id: id.to_string(),
                    version: c.version,
                    last_updated: c.last_updated,
                    json: text.clone(),
                },
                effect: Effect::Unchanged,
                rid: Some(c.rid),
                method: kind.method(),
            });
        }
    }
    let version = current.map_or(1, |c| c.version + 1);
    // Keep lastUpdated strictly increasing per resource even if the clock steps back.
    let last_updated = now_ms().max(current.map_or(0, |c| c.last_updated + 1));
    let obj = resource
        .as_object_mut()
        .ok_or_else(ServiceError::internal)?;
    stamp(obj, id, version, last_updated);
    let json = serde_json::to_string(&resource).map_err(|_| ServiceError::internal())?;
    let effect = if current.is_none_or(|c| c.deleted) {
        Effect::Created
    } else {
        Effect::Updated
    };
    Ok(Planned {
        stored: StoredResource {
            res_type: res_type.to_string(),
            id: id.to_string(),
            version,
            last_updated,
            json,
        },
        effect,
        rid: current.map(|c| c.rid),
        method: kind.method(),
    })
}

/// Writes a delete tombstone inside `tx`. `Ok(None)` when the resource never existed.
pub(super) async fn delete_in_tx(
    tx: &mut WriteTx,
    res_type: ResourceType,
    id: &str,
    guard: &WriteGuard<'_>,
) -> ServiceResult<Option<VersionFacts>> {
    guard.require(Perms::D, res_type.as_str())?;
    let Some(current) = tx.current(res_type.as_str(), id).await? else {
        return Ok(None);
    };
    // A resource the principal may not see is deleted exactly as an absent
    // one is: not at all (404 alone, 204 in a Bundle).
    match guard.reachable(Perms::D, res_type.as_str(), id, Some(&current)) {
        Err(e) if e.status == 404 => return Ok(None),
        other => other?,
    }
    if let (false, Some(text)) = (current.deleted, &current.content) {
        let existing: Value = serde_json::from_str(text).map_err(|_| ServiceError::internal())?;
        guard.existing(Perms::D, res_type.as_str(), id, &existing)?;
    }
    if current.deleted {
        return Ok(Some(VersionFacts {
            res_type: res_type.to_string(),
            id: id.to_string(),
            version: current.version,
            last_updated: current.last_updated,
        }));
    }
    let version = current.version + 1;
    let last_updated = now_ms().max(current.last_updated + 1);
    tx.save(NewVersion {
        res_type: res_type.as_str(),
        res_id: id,
        rid: Some(current.rid),
        version,
        last_updated,
        method: "DELETE",
        content: None,
        index: &Default::default(),
    })
    .await?;
    Ok(Some(VersionFacts {
        res_type: res_type.to_string(),
        id: id.to_string(),
        version,
        last_updated,
    }))
}

/// Most operations in one JSON Patch document.
pub const MAX_PATCH_OPERATIONS: usize = 1_000;
/// Largest document a patch may build, as JSON bytes (roughly): a `copy`
/// of a subtree into itself doubles the document, so growth is checked
/// after every operation.
pub const MAX_PATCHED_BYTES: usize = 16 * 1024 * 1024;

fn too_costly(message: String) -> ServiceError {
    ServiceError::new(
        400,
        crate::fhir::outcome::Issue::error("too-costly", message),
    )
}

/// Applies the JSON Patch document `patch` to `doc` within the limits:
/// at most [`MAX_PATCH_OPERATIONS`] operations, pointers of at most
/// [`MAX_JSON_DEPTH`] steps, and after each operation a document within
/// [`MAX_JSON_DEPTH`] and [`MAX_PATCHED_BYTES`]. `doc` is left half-patched
/// on an error (callers patch a copy).
///
/// [`MAX_JSON_DEPTH`]: crate::fhir::limits::MAX_JSON_DEPTH
pub fn apply_json_patch(doc: &mut Value, patch: &Value) -> ServiceResult<()> {
    use crate::fhir::limits::{value_depth, value_weight, MAX_JSON_DEPTH};
    let Some(ops) = patch.as_array() else {
        return Err(ServiceError::invalid(
            "the body is not a JSON Patch document: it must be an array of operations",
            None,
        ));
    };
    if ops.len() > MAX_PATCH_OPERATIONS {
        return Err(too_costly(format!(
            "a JSON Patch may hold at most {MAX_PATCH_OPERATIONS} operations"
        )));
    }
    for op in ops {
        for key in ["path", "from"] {
            let steps = op
                .get(key)
                .and_then(Value::as_str)
                .map_or(0, |p| p.matches('/').count());
            if steps > MAX_JSON_DEPTH {
                return Err(too_costly(format!(
                    "a JSON Patch '{key}' may have at most {MAX_JSON_DEPTH} steps"
                )));
            }
        }
        if value_depth(op, MAX_JSON_DEPTH) > MAX_JSON_DEPTH {
            return Err(too_costly(format!(
                "a JSON Patch operation is nested more than {MAX_JSON_DEPTH} levels deep"
            )));
        }
    }
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
        ServiceError::invalid(format!("the body is not a JSON Patch document: {e}"), None)
    })?;
    for op in &ops.0 {
        json_patch::patch(doc, std::slice::from_ref(op)).map_err(|e| {
            ServiceError::new(
                422,
                crate::fhir::outcome::Issue::error("processing", format!("patch failed: {e}")),
            )
        })?;
        if value_depth(doc, MAX_JSON_DEPTH) > MAX_JSON_DEPTH {
            return Err(too_costly(format!(
                "the patched resource would be nested more than {MAX_JSON_DEPTH} levels deep"
            )));
        }
        if value_weight(doc, MAX_PATCHED_BYTES) > MAX_PATCHED_BYTES {
            return Err(too_costly(format!(
                "the patched resource would be larger than {MAX_PATCHED_BYTES} bytes"
            )));
        }
    }
    Ok(())
}

/// Applies a JSON Patch document to `current`, refusing changes to type and id.
pub(super) fn apply_patch(current: &Value, patch: &Value, id: &str) -> ServiceResult<Value> {
    let mut doc = current.clone();
    apply_json_patch(&mut doc, patch)?;
    if doc.get("resourceType") != current.get("resourceType")
        || doc.get("id").and_then(Value::as_str) != Some(id)
    {
        return Err(ServiceError::new(
            422,
            crate::fhir::outcome::Issue::error(
                "processing",
                "a patch may not change resourceType or id",
            ),
        ));
    }
    Ok(doc)
}

impl FhirService {
    /// 404 unless `json` is visible under `decision` (unrestricted skips parsing).
    fn check_visible(
        &self,
        decision: &Decision,
        res_type: &str,
        id: &str,
        json: &str,
    ) -> ServiceResult<()> {
        if *decision == Decision::Unrestricted {
            return Ok(());
        }
        let v: Value = serde_json::from_str(json).map_err(|_| ServiceError::internal())?;
        if visible(&self.registry.get(), decision, res_type, &v) {
            Ok(())
        } else {
            Err(hidden(res_type, id))
        }
    }

    /// 404 unless the patients' Consents let this request see `json`, the
    /// current version or (with `version`) an earlier one, which is judged
    /// with the security labels of the versions after it as well.
    async fn check_consent(
        &self,
        ctx: &Ctx,
        res_type: &str,
        id: &str,
        version: Option<i64>,
        json: &str,
    ) -> ServiceResult<()> {
        if !self.consent_may_hide(ctx).await? {
            return Ok(());
        }
        let v: Value = serde_json::from_str(json).map_err(|_| ServiceError::internal())?;
        let allowed = match version {
            None => self.consent_allows(ctx, res_type, &v).await?,
            Some(n) => {
                self.consent_allows_version(ctx, res_type, id, n, &v)
                    .await?
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(hidden(res_type, id))
        }
    }

    pub(super) async fn read(
        &self,
        ctx: &Ctx,
        res_type: &ResourceType,
        id: &str,
    ) -> ServiceResult<Outcome> {
        let decision = require(&ctx.principal, Perms::R, res_type.as_str())?;
        let current = self
            .store
            .read(res_type.as_str(), id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("{res_type}/{id} is not known")))?;
        match current.content {
            // A restricted token cannot tell whose a tombstone was.
            _ if current.deleted && decision != Decision::Unrestricted => {
                Err(hidden(res_type.as_str(), id))
            }
            Some(json) if !current.deleted => {
                self.check_visible(&decision, res_type.as_str(), id, &json)?;
                self.check_consent(ctx, res_type.as_str(), id, None, &json)
                    .await?;
                Ok(Outcome::stored(
                    200,
                    StoredResource {
                        res_type: res_type.to_string(),
                        id: id.to_string(),
                        version: current.version,
                        last_updated: current.last_updated,
                        json,
                    },
                ))
            }
            _ => Err(ServiceError::gone(format!(
                "{res_type}/{id} has been deleted"
            ))),
        }
    }

    pub(super) async fn vread(
        &self,
        ctx: &Ctx,
        res_type: &ResourceType,
        id: &str,
        version: &str,
    ) -> ServiceResult<Outcome> {
        let not_found =
            || ServiceError::not_found(format!("{res_type}/{id} has no version {version}"));
        let decision = require(&ctx.principal, Perms::R, res_type.as_str())?;
        let n: i64 = version.parse().map_err(|_| not_found())?;
        let v = self
            .store
            .read_version(res_type.as_str(), id, n)
            .await?
            .ok_or_else(not_found)?;
        // A version the principal may not see answers exactly like a
        // version that does not exist.
        let hidden_as_absent = |e: ServiceError| if e.status == 404 { not_found() } else { e };
        match v.content {
            None if decision != Decision::Unrestricted => Err(not_found()),
            Some(json) => {
                self.check_visible(&decision, res_type.as_str(), id, &json)
                    .map_err(hidden_as_absent)?;
                self.check_consent(ctx, res_type.as_str(), id, Some(v.version), &json)
                    .await
                    .map_err(hidden_as_absent)?;
                Ok(Outcome::stored(
                    200,
                    StoredResource {
                        res_type: res_type.to_string(),
                        id: id.to_string(),
                        version: v.version,
                        last_updated: v.last_updated,
                        json,
                    },
                ))
            }
            None => Err(ServiceError::gone(format!(
                "version {version} of {res_type}/{id} is a deletion"
            ))),
        }
    }

    pub(super) async fn create(
        &self,
        ctx: &Ctx,
        res_type: ResourceType,
        resource: Value,
    ) -> ServiceResult<Outcome> {
        require(&ctx.principal, Perms::C, res_type.as_str())?;
        check_resource(&resource, Some(res_type), IdRule::Ignore).map_err(invalid)?;
        // Index rows do not depend on the version stamp: extract them before
        // the transaction so that it holds its locks for less time.
        let index = extract(&self.registry.get(), &resource);
        let reg = self.registry.get();
        let guard = WriteGuard::for_post(self, &reg, ctx);
        let mut tx = self.store.begin().await?;
        let (stored, _) = write_in_tx(
            &mut tx,
            res_type,
            &new_id(),
            resource,
            WriteKind::Create,
            &index,
            &guard,
        )
        .await?;
        self.commit_audited(ctx, tx, 201, &[&stored], &[]).await?;
        Ok(Outcome::stored(201, stored))
    }

    pub(super) async fn update(
        &self,
        ctx: &Ctx,
        res_type: ResourceType,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> ServiceResult<Outcome> {
        require(&ctx.principal, Perms::U, res_type.as_str())?;
        let reg = self.registry.get();
        check_resource(&resource, Some(res_type), IdRule::MustEqual(id)).map_err(invalid)?;
        let guard = WriteGuard::new(self, &reg, ctx).await?;
        let index = extract(&self.registry.get(), &resource);
        // Two concurrent creates of one new id race on the unique key; the
        // loser retries once and then sees the winner's version.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut tx = self.store.begin().await?;
            let result = write_in_tx(
                &mut tx,
                res_type,
                id,
                resource.clone(),
                WriteKind::Update { if_match },
                &index,
                &guard,
            )
            .await;
            let (stored, effect) = match result {
                Err(e) if e.status == 409 && attempts < 2 => continue,
                other => other?,
            };
            let status = if effect == Effect::Created { 201 } else { 200 };
            self.commit_audited(ctx, tx, status, &[&stored], &[])
                .await?;
            return Ok(Outcome::stored(status, stored));
        }
    }

    pub(super) async fn patch(
        &self,
        ctx: &Ctx,
        res_type: ResourceType,
        id: &str,
        patch: Value,
        if_match: Option<i64>,
    ) -> ServiceResult<Outcome> {
        require(&ctx.principal, Perms::U, res_type.as_str())?;
        let reg = self.registry.get();
        let guard = WriteGuard::new(self, &reg, ctx).await?;
        let mut tx = self.store.begin().await?;
        let stored = patch_in_tx(&reg, &mut tx, res_type, id, &patch, if_match, &guard).await?;
        self.commit_audited(ctx, tx, 200, &[&stored], &[]).await?;
        Ok(Outcome::stored(200, stored))
    }

    pub(super) async fn delete(
        &self,
        ctx: &Ctx,
        res_type: ResourceType,
        id: &str,
    ) -> ServiceResult<Outcome> {
        let reg = self.registry.get();
        let guard = WriteGuard::new(self, &reg, ctx).await?;
        let mut tx = self.store.begin().await?;
        let facts = delete_in_tx(&mut tx, res_type, id, &guard).await?;
        let deleted: Vec<&super::VersionFacts> = facts.iter().collect();
        let status = if facts.is_some() { 204 } else { 404 };
        self.commit_audited(ctx, tx, status, &[], &deleted).await?;
        match facts {
            Some(facts) => Ok(Outcome {
                status: 204,
                body: super::Body::None,
                version: Some(facts),
            }),
            None => Err(ServiceError::not_found(format!(
                "{res_type}/{id} is not known"
            ))),
        }
    }
}

/// Reads, patches, validates and stores a resource inside `tx`.
pub(super) async fn patch_in_tx(
    reg: &Registry,
    tx: &mut WriteTx,
    res_type: ResourceType,
    id: &str,
    patch: &Value,
    if_match: Option<i64>,
    guard: &WriteGuard<'_>,
) -> ServiceResult<StoredResource> {
    // A patch reads the current version (a `test` operation compares it,
    // and the answer carries it): it needs read as well as update.
    guard.require(Perms::R, res_type.as_str())?;
    let current = tx.current(res_type.as_str(), id).await?;
    guard.reachable(Perms::U, res_type.as_str(), id, current.as_ref())?;
    guard.reachable(Perms::R, res_type.as_str(), id, current.as_ref())?;
    let text = match &current {
        None => return Err(hidden(res_type.as_str(), id)),
        Some(c) if c.deleted => {
            return Err(ServiceError::gone(format!(
                "{res_type}/{id} has been deleted"
            )))
        }
        Some(c) => c.content.as_deref().ok_or_else(ServiceError::internal)?,
    };
    check_if_match(if_match, current.as_ref())?;
    let existing: Value = serde_json::from_str(text).map_err(|_| ServiceError::internal())?;
    guard.existing(Perms::U, res_type.as_str(), id, &existing)?;
    let patched = apply_patch(&existing, patch, id)?;
    check_resource(&patched, Some(res_type), IdRule::MustEqual(id)).map_err(|e| {
        let mut err = invalid(e);
        err.status = 422;
        err
    })?;
    let index = extract(reg, &patched);
    let (stored, _) = write_in_tx(
        tx,
        res_type,
        id,
        patched,
        WriteKind::Patch { if_match },
        &index,
        guard,
    )
    .await?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::limits::MAX_JSON_DEPTH;
    use serde_json::json;

    fn code(r: ServiceResult<()>) -> Option<&'static str> {
        r.err().and_then(|e| e.issues.first().map(|i| i.code))
    }

    #[test]
    fn patch_limits() {
        let mut doc = json!({"a": {"b": 1}});
        let ops: Vec<Value> = (0..MAX_PATCH_OPERATIONS)
            .map(|_| json!({"op": "replace", "path": "/a/b", "value": 2}))
            .collect();
        assert!(apply_json_patch(&mut doc, &Value::Array(ops.clone())).is_ok());
        let mut more = ops;
        more.push(json!({"op": "test", "path": "/a/b", "value": 2}));
        assert_eq!(
            code(apply_json_patch(&mut doc, &Value::Array(more))),
            Some("too-costly")
        );
        // A pointer of MAX_JSON_DEPTH steps is looked at; one more is refused.
        let path = "/x".repeat(MAX_JSON_DEPTH);
        assert_eq!(
            code(apply_json_patch(
                &mut doc,
                &json!([{"op": "remove", "path": path}])
            )),
            Some("processing")
        );
        let path = "/x".repeat(MAX_JSON_DEPTH + 1);
        assert_eq!(
            code(apply_json_patch(
                &mut doc,
                &json!([{"op": "remove", "path": path}])
            )),
            Some("too-costly")
        );
        // Copying a subtree into itself doubles it each time: stopped by depth.
        let mut doc = json!({"a": {"b": {}}});
        let grow: Vec<Value> = (0..200)
            .map(|_| json!({"op": "copy", "from": "/a", "path": "/a/b/c"}))
            .collect();
        let grow = Value::Array(grow);
        assert_eq!(code(apply_json_patch(&mut doc, &grow)), Some("too-costly"));
        // ... and by size when it stays shallow.
        let mut doc = json!({"a": ["x".repeat(1 << 20)]});
        let wide: Vec<Value> = (0..10)
            .map(|i| json!({"op": "copy", "from": "/a", "path": format!("/k{i}")}))
            .collect();
        assert!(apply_json_patch(&mut doc, &Value::Array(wide)).is_ok());
        let double: Vec<Value> = (0..40)
            .map(|_| json!({"op": "copy", "from": "", "path": "/a/0"}))
            .collect();
        assert_eq!(
            code(apply_json_patch(&mut doc, &Value::Array(double))),
            Some("too-costly")
        );
    }
}
