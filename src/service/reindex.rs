//! `$reindex` / `vesta reindex`: put the stored SearchParameters in force
//! and rebuild every resource's index rows under the new registry.

use serde_json::{json, Value};

use super::{FhirService, Outcome, ServiceError, ServiceResult};
use crate::search::index::extract;

/// Resources reindexed per database transaction.
pub const REINDEX_CHUNK: i64 = 500;

impl FhirService {
    /// Loads the active SearchParameter resources stored here into the
    /// registry. Returns how many were accepted.
    pub async fn load_custom_search_parameters(&self) -> ServiceResult<usize> {
        let mut custom: Vec<Value> = Vec::new();
        let mut after = 0;
        loop {
            let rows = self
                .store
                .scan(Some("SearchParameter"), after, REINDEX_CHUNK)
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.0;
            for (_, _, content) in rows {
                custom.push(serde_json::from_str(&content).map_err(|_| ServiceError::internal())?);
            }
        }
        Ok(self.registry.install(&custom))
    }

    /// Reloads the stored SearchParameters and rebuilds every index row.
    /// `progress` is told the number of resources done after each chunk.
    pub async fn reindex(&self, progress: &(dyn Fn(u64) + Sync)) -> ServiceResult<(usize, u64)> {
        let custom = self.load_custom_search_parameters().await?;
        let reg = self.registry.get();
        let (mut done, mut after) = (0u64, 0i64);
        loop {
            let rows = self.store.scan(None, after, REINDEX_CHUNK).await?;
            let Some(last) = rows.last() else { break };
            after = last.0;
            let mut prepared = Vec::with_capacity(rows.len());
            for (rid, res_type, content) in rows {
                let v: Value =
                    serde_json::from_str(&content).map_err(|_| ServiceError::internal())?;
                prepared.push((rid, res_type, extract(&reg, &v)));
            }
            let mut tx = self.store.begin().await?;
            for (rid, res_type, index) in &prepared {
                tx.replace_index(*rid, res_type, index).await?;
            }
            tx.commit().await?;
            done += prepared.len() as u64;
            progress(done);
        }
        Ok((custom, done))
    }

    pub(super) async fn reindex_operation(&self) -> ServiceResult<Outcome> {
        let (custom, done) = self.reindex(&|_| {}).await?;
        Ok(Outcome::generated(
            200,
            json!({
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "searchParametersInForce", "valueInteger": custom},
                    {"name": "resourcesReindexed", "valueInteger": done},
                ]
            }),
        ))
    }
}
