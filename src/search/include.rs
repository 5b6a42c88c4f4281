//! SQL for `_include` and `_revinclude` over a page of results.

use super::plan::IncludeSpec;
use super::sql::{Bind, Sql};

/// Most resources added to one page by `_include`/`_revinclude`.
pub const MAX_INCLUDED: usize = 1_000;
/// Most rounds of `:iterate`.
pub const MAX_INCLUDE_ROUNDS: usize = 3;

fn rid_list(sql: &mut Sql, rids: &[i64]) -> String {
    rids.iter()
        .map(|r| sql.bind(Bind::Int(*r)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resources referenced from the rows `rids` (of any type) through `spec`.
pub fn include_sql(spec: &IncludeSpec, rids: &[i64]) -> (String, Vec<Bind>) {
    let mut sql = Sql::default();
    let list = rid_list(&mut sql, rids);
    let mut conds = vec![format!("x.rid IN ({list})")];
    if spec.source != "*" {
        conds.push(format!("x.res_type = {}", sql.text(&spec.source)));
    }
    if let Some(p) = &spec.param {
        conds.push(format!("x.param = {}", sql.text(p)));
    }
    if let Some(t) = &spec.target {
        conds.push(format!("x.target_type = {}", sql.text(t)));
    }
    let limit = sql.limit(MAX_INCLUDED as i64 + 1);
    let text = format!(
        "SELECT DISTINCT r.rid, r.res_type, r.res_id, v.content FROM idx_reference x \
         JOIN resources r ON r.res_type = x.target_type AND r.res_id = x.target_id \
         JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version \
         WHERE {} AND r.deleted = 0 ORDER BY r.rid LIMIT {limit}",
        conds.join(" AND ")
    );
    (text, sql.binds)
}

/// Resources of `spec.source` that reference any of `targets` (`(type, id)`) through `spec.param`.
pub fn revinclude_sql(spec: &IncludeSpec, targets: &[(String, String)]) -> (String, Vec<Bind>) {
    let mut sql = Sql::default();
    let pairs: Vec<String> = targets
        .iter()
        .map(|(t, id)| {
            format!(
                "(x.target_type = {} AND x.target_id = {})",
                sql.text(t),
                sql.text(id)
            )
        })
        .collect();
    let mut conds = vec![format!("({})", pairs.join(" OR "))];
    if spec.source != "*" {
        conds.push(format!("x.res_type = {}", sql.text(&spec.source)));
    }
    if let Some(p) = &spec.param {
        conds.push(format!("x.param = {}", sql.text(p)));
    }
    let limit = sql.limit(MAX_INCLUDED as i64 + 1);
    let text = format!(
        "SELECT DISTINCT r.rid, r.res_type, r.res_id, v.content FROM idx_reference x \
         JOIN resources r ON r.rid = x.rid \
         JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version \
         WHERE {} AND r.deleted = 0 ORDER BY r.rid LIMIT {limit}",
        conds.join(" AND ")
    );
    (text, sql.binds)
}
