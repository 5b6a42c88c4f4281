//! Conditional interactions: create with `If-None-Exist`, and update, patch
//! and delete addressed by a search, with the spec's 0/1/many outcomes.

use serde_json::Value;

use super::access::{check_reverse_chains, patient_compartment, require, search_restriction};
use super::interaction::{query_pairs, Interaction};
use super::{Body, Ctx, FhirService, Outcome, ServiceError, ServiceResult};
use crate::fhir::ResourceType;
use crate::policy::scope::Perms;
use crate::search::plan::SearchPlan;

/// What a conditional search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matches {
    None,
    One(String),
    Many,
}

impl FhirService {
    /// Runs the search `query` on `res_type` and says whether it matched
    /// nothing, one resource (its id), or several. Unknown parameters are
    /// refused: a condition that is silently ignored would match everything.
    pub(super) async fn conditional_matches(
        &self,
        ctx: &Ctx,
        res_type: &str,
        query: &str,
    ) -> ServiceResult<Matches> {
        let principal = &ctx.principal;
        let mut params: Vec<(String, String)> = query_pairs(query)
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "_format" | "_pretty"))
            .collect();
        if params.is_empty() {
            return Err(ServiceError::invalid(
                "a conditional interaction needs search parameters",
                None,
            ));
        }
        // The condition sees only what the principal may search: a match
        // outside its reach must not decide (or reveal) anything.
        check_reverse_chains(principal, &params)?;
        let restriction = search_restriction(&require(principal, Perms::S, res_type)?, res_type)?;
        if let Some(r) = &restriction {
            params.extend(r.filter.iter().cloned());
        }
        let mut plan = SearchPlan::parse(
            &self.registry.get(),
            vec![res_type.to_string()],
            &params,
            2,
            2,
        )?;
        super::access::check_inner_types(principal, &plan.clauses)?;
        if !plan.ignored.is_empty() {
            return Err(ServiceError::invalid(
                format!(
                    "unknown search parameter(s) in the condition: {}",
                    plan.ignored.join(", ")
                ),
                None,
            ));
        }
        for (_, c) in plan.clauses.iter_mut() {
            Box::pin(self.expand_valuesets(c)).await?;
        }
        if let Some(p) = restriction.as_ref().and_then(|r| r.patient.as_deref()) {
            plan.compartment = patient_compartment(p, res_type);
        }
        // Nor a match the patients' Consents hide from this request: it
        // answers as if it were not there.
        plan.consent = self.consent_filter(ctx).await?;
        plan.count = 2;
        plan.includes.clear();
        plan.revincludes.clear();
        let (sql, binds, keys) = plan.page_sql(&self.registry.get())?;
        let rows = self.store.search_rows(sql, &binds, keys).await?;
        Ok(match rows.as_slice() {
            [] => Matches::None,
            [one] => Matches::One(one.res_id.clone()),
            _ => Matches::Many,
        })
    }

    /// Turns a conditional interaction into a plain one by running its search.
    /// `Ok(Err(outcome))` when the answer is decided without a write.
    pub(super) async fn resolve_conditional(
        &self,
        ctx: &Ctx,
        i: Interaction,
    ) -> ServiceResult<Result<Interaction, Outcome>> {
        let many = |what: &str| {
            ServiceError::precondition_failed(format!(
                "the {what} condition matched more than one resource"
            ))
        };
        Ok(match i {
            Interaction::Create {
                res_type,
                resource,
                if_none_exist: Some(q),
            } => {
                match self.conditional_matches(ctx, res_type.as_str(), &q).await? {
                    Matches::None => Ok(Interaction::Create {
                        res_type,
                        resource,
                        if_none_exist: None,
                    }),
                    Matches::One(id) => {
                        // Already there: answer 200 with the existing resource.
                        let mut existing = self.read(ctx, &res_type, &id).await?;
                        existing.status = 200;
                        Err(existing)
                    }
                    Matches::Many => return Err(many("If-None-Exist")),
                }
            }
            Interaction::ConditionalUpdate {
                res_type,
                query,
                resource,
            } => {
                let body_id = resource
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                match self
                    .conditional_matches(ctx, res_type.as_str(), &query)
                    .await?
                {
                    Matches::None => match body_id {
                        Some(id) => Ok(Interaction::Update {
                            res_type,
                            id,
                            resource,
                            if_match: None,
                        }),
                        None => Ok(Interaction::Create {
                            res_type,
                            resource,
                            if_none_exist: None,
                        }),
                    },
                    Matches::One(id) => {
                        if body_id.as_ref().is_some_and(|b| *b != id) {
                            return Err(ServiceError::invalid(
                                "the resource id does not match the resource the condition found",
                                Some(&format!("{res_type}.id")),
                            ));
                        }
                        let mut resource = resource;
                        if let Some(obj) = resource.as_object_mut() {
                            obj.insert("id".into(), Value::String(id.clone()));
                        }
                        Ok(Interaction::Update {
                            res_type,
                            id,
                            resource,
                            if_match: None,
                        })
                    }
                    Matches::Many => return Err(many("update")),
                }
            }
            Interaction::ConditionalPatch {
                res_type,
                query,
                patch,
            } => match self
                .conditional_matches(ctx, res_type.as_str(), &query)
                .await?
            {
                Matches::None => {
                    return Err(ServiceError::not_found(
                        "the patch condition matched no resource",
                    ))
                }
                Matches::One(id) => Ok(Interaction::Patch {
                    res_type,
                    id,
                    patch,
                    if_match: None,
                }),
                Matches::Many => return Err(many("patch")),
            },
            Interaction::ConditionalDelete { res_type, query } => {
                match self
                    .conditional_matches(ctx, res_type.as_str(), &query)
                    .await?
                {
                    Matches::None => Err(Outcome {
                        status: 204,
                        body: Body::None,
                        version: None,
                    }),
                    Matches::One(id) => Ok(Interaction::Delete { res_type, id }),
                    Matches::Many => return Err(many("delete")),
                }
            }
            other => Ok(other),
        })
    }

    /// Resolves a conditional reference (`Patient?identifier=x`) to `Type/id`.
    pub(super) async fn resolve_reference(
        &self,
        ctx: &Ctx,
        reference: &str,
    ) -> ServiceResult<String> {
        let (t, q) = reference
            .split_once('?')
            .ok_or_else(|| ServiceError::invalid("not a conditional reference", None))?;
        if ResourceType::parse(t).is_none() {
            return Err(ServiceError::invalid(
                format!("conditional reference to unknown type '{t}'"),
                None,
            ));
        }
        match self.conditional_matches(ctx, t, q).await? {
            Matches::One(id) => Ok(format!("{t}/{id}")),
            Matches::None => Err(ServiceError::precondition_failed(format!(
                "the conditional reference {t}?… matched no resource"
            ))),
            Matches::Many => Err(ServiceError::precondition_failed(format!(
                "the conditional reference {t}?… matched several resources"
            ))),
        }
    }

    /// Runs a conditional interaction directly (outside a Bundle).
    pub(super) async fn conditional(&self, ctx: &Ctx, i: Interaction) -> ServiceResult<Outcome> {
        match self.resolve_conditional(ctx, i).await? {
            Ok(plain) => Box::pin(self.execute(ctx, plain)).await,
            Err(decided) => Ok(decided),
        }
    }
}
