//! A whole search: its clauses, sort, cursor and result controls, parsed from
//! the request parameters and turned into page and count SQL.

use base64::Engine;
use serde_json::{json, Value};

use super::definitions::{ParamKind, Registry};
use super::query::{parse_clause, Clause, Modifier, MAX_CLAUSES, RESULT_PARAMS};
pub use super::sql::ConsentFilter;
use super::sql::{clause, Bind, Sql};
use crate::service::ServiceError;

/// Most `_sort` keys.
pub const MAX_SORT_KEYS: usize = 4;
/// Most `_include` / `_revinclude` parameters.
pub const MAX_INCLUDE_PARAMS: usize = 16;

/// How a sort key's values compare (and are bound back from a cursor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Text,
    Int,
    Real,
}

/// One `_sort` key: an SQL expression over alias `r` and its direction.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub name: String,
    pub expr: String,
    pub descending: bool,
    pub key_type: KeyType,
}

/// `_include` / `_revinclude`: `Source:param[:Target]`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeSpec {
    pub source: String,
    /// `None` for `*` (every reference parameter).
    pub param: Option<String>,
    pub target: Option<String>,
    pub iterate: bool,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Accurate,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    False,
    True,
    Text,
    Data,
    Count,
}

/// A parsed search.
#[derive(Debug, Clone)]
pub struct SearchPlan {
    /// The types searched (one for a type search; `_type` or all for system search).
    pub types: Vec<String>,
    pub clauses: Vec<(String, Clause)>,
    /// Restricts results to a compartment (`Patient/123/Observation`, `$everything`).
    pub compartment: Option<Compartment>,
    pub sort: Vec<(String, bool)>,
    pub count: usize,
    pub cursor: Option<Cursor>,
    pub includes: Vec<IncludeSpec>,
    pub revincludes: Vec<IncludeSpec>,
    pub total: Total,
    pub summary: Summary,
    pub elements: Option<Vec<String>>,
    /// Walk candidates in row order and probe each clause (`EXISTS`), for
    /// clauses that match too much to collect (decided by the service's probe).
    pub scan: bool,
    /// Clauses (by position) that match too much to collect while another
    /// clause is selective: the selective ones are collected and these are
    /// probed per candidate row (`EXISTS`) instead of being collected whole.
    pub probed: Vec<usize>,
    /// Walk at most this many of the type's rows (after the cursor) for the
    /// page: set with probed `_has` clauses, whose matches are usually dense
    /// among the first rows. A page that comes back short proves nothing
    /// about the rows beyond, so the service then plans the search again
    /// without it (collected).
    pub window: Option<i64>,
    /// Parameters that were not understood (reported in the outcome).
    pub ignored: Vec<String>,
    /// The parameters to repeat in paging links (filters and controls).
    pub link_params: Vec<(String, String)>,
    /// What patients' Consents hide from this request (also inside chains
    /// and `_has`, so that no answer depends on a hidden resource).
    pub consent: Option<ConsentFilter>,
}

/// A compartment: the resources that reference `owner` through the
/// compartment's parameters for their type (and the owner itself).
#[derive(Debug, Clone)]
pub struct Compartment {
    pub owner_type: String,
    pub owner_id: String,
    pub include_owner: bool,
    /// `(resource type, parameters)` pairs from the CompartmentDefinition.
    pub members: Vec<(String, Vec<String>)>,
}

impl Compartment {
    fn sql(&self, sql: &mut Sql) -> String {
        let (ot, oid) = (sql.text(&self.owner_type), sql.text(&self.owner_id));
        let mut member_conds = Vec::new();
        for (t, params) in &self.members {
            if params.is_empty() {
                continue;
            }
            let tm = sql.text(t);
            let ps: Vec<String> = params.iter().map(|p| sql.text(p)).collect();
            member_conds.push(format!(
                "(x.res_type = {tm} AND x.param IN ({}))",
                ps.join(", ")
            ));
        }
        let members = if member_conds.is_empty() {
            "1 = 0".to_string()
        } else {
            format!(
                "r.rid IN (SELECT x.rid FROM idx_reference x WHERE x.target_type = {ot} AND x.target_id = {oid} AND ({}))",
                member_conds.join(" OR ")
            )
        };
        if self.include_owner {
            format!("((r.res_type = {ot} AND r.res_id = {oid}) OR {members})")
        } else {
            members
        }
    }
}

/// A keyset position: the sort-key values and rid of the row to continue
/// after (`next`) or before (`previous`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub backwards: bool,
    pub keys: Vec<Option<String>>,
    pub rid: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let v = json!({"b": self.backwards, "k": self.keys, "r": self.rid});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    pub fn decode(text: &str) -> Result<Cursor, ServiceError> {
        let err = || {
            ServiceError::invalid(
                "_cursor is not a cursor this server issued",
                Some("_cursor"),
            )
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| err())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| err())?;
        Ok(Cursor {
            backwards: v["b"].as_bool().ok_or_else(err)?,
            keys: v["k"]
                .as_array()
                .ok_or_else(err)?
                .iter()
                .map(|k| k.as_str().map(str::to_string))
                .collect(),
            rid: v["r"].as_i64().ok_or_else(err)?,
        })
    }
}

fn bad(name: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(format!("{name}: {}", message.into()), Some(name))
}

fn parse_include(value: &str, name: &str, iterate: bool) -> Result<IncludeSpec, ServiceError> {
    if value == "*" {
        return Ok(IncludeSpec {
            source: "*".into(),
            param: None,
            target: None,
            iterate,
        });
    }
    let parts: Vec<&str> = value.split(':').collect();
    let spec = match parts.as_slice() {
        [s, "*"] => IncludeSpec {
            source: s.to_string(),
            param: None,
            target: None,
            iterate,
        },
        [s, p] => IncludeSpec {
            source: s.to_string(),
            param: Some(p.to_string()),
            target: None,
            iterate,
        },
        [s, p, t] => IncludeSpec {
            source: s.to_string(),
            param: Some(p.to_string()),
            target: Some(t.to_string()),
            iterate,
        },
        _ => return Err(bad(name, "use Type:parameter[:TargetType]")),
    };
    if crate::fhir::ResourceType::parse(&spec.source).is_none() {
        return Err(bad(
            name,
            format!("unknown resource type '{}'", spec.source),
        ));
    }
    if let Some(t) = &spec.target {
        if crate::fhir::ResourceType::parse(t).is_none() {
            return Err(bad(name, format!("unknown resource type '{t}'")));
        }
    }
    Ok(spec)
}

impl SearchPlan {
    /// Parses `params` for a search over `types` (one type, or several for `_type`).
    pub fn parse(
        reg: &Registry,
        types: Vec<String>,
        params: &[(String, String)],
        default_count: usize,
        max_count: usize,
    ) -> Result<SearchPlan, ServiceError> {
        let mut plan = SearchPlan {
            types,
            clauses: vec![],
            compartment: None,
            scan: false,
            probed: vec![],
            window: None,
            sort: vec![],
            count: default_count,
            cursor: None,
            includes: vec![],
            revincludes: vec![],
            total: Total::None,
            summary: Summary::False,
            elements: None,
            ignored: vec![],
            link_params: vec![],
            consent: None,
        };
        for (name, value) in params {
            let base = name.split(':').next().unwrap_or("");
            if RESULT_PARAMS.contains(&base) {
                match base {
                    "_count" => {
                        let n: usize = value
                            .parse()
                            .map_err(|_| bad("_count", "must be a non-negative integer"))?;
                        if n > max_count {
                            return Err(bad("_count", format!("may be at most {max_count}")));
                        }
                        plan.count = n;
                    }
                    "_sort" => {
                        for key in value.split(',') {
                            let (desc, code) = match key.strip_prefix('-') {
                                Some(c) => (true, c),
                                None => (false, key),
                            };
                            plan.sort.push((code.to_string(), desc));
                        }
                        if plan.sort.len() > MAX_SORT_KEYS {
                            return Err(bad("_sort", format!("at most {MAX_SORT_KEYS} keys")));
                        }
                        plan.link_params.push((name.clone(), value.clone()));
                    }
                    "_include" | "_revinclude" => {
                        let iterate = name.ends_with(":iterate") || name.ends_with(":recurse");
                        let spec = parse_include(value, name, iterate)?;
                        if base == "_include" {
                            plan.includes.push(spec);
                        } else {
                            plan.revincludes.push(spec);
                        }
                        if plan.includes.len() + plan.revincludes.len() > MAX_INCLUDE_PARAMS {
                            return Err(bad(
                                base,
                                format!("at most {MAX_INCLUDE_PARAMS} include parameters"),
                            ));
                        }
                        plan.link_params.push((name.clone(), value.clone()));
                    }
                    "_total" => {
                        plan.total = match value.as_str() {
                            "none" => Total::None,
                            "accurate" | "estimate" => Total::Accurate,
                            _ => return Err(bad("_total", "must be none, estimate or accurate")),
                        };
                        plan.link_params.push((name.clone(), value.clone()));
                    }
                    "_summary" => {
                        plan.summary = match value.as_str() {
                            "false" => Summary::False,
                            "true" => Summary::True,
                            "text" => Summary::Text,
                            "data" => Summary::Data,
                            "count" => Summary::Count,
                            _ => {
                                return Err(bad(
                                    "_summary",
                                    "must be true, text, data, count or false",
                                ))
                            }
                        };
                        plan.link_params.push((name.clone(), value.clone()));
                    }
                    "_elements" => {
                        plan.elements = Some(
                            value
                                .split(',')
                                .map(|s| s.trim().to_string())
                                .filter(|s| !s.is_empty())
                                .collect(),
                        );
                        plan.link_params.push((name.clone(), value.clone()));
                    }
                    "_cursor" => plan.cursor = Some(Cursor::decode(value)?),
                    "_type" => plan.link_params.push((name.clone(), value.clone())),
                    _ => {}
                }
                continue;
            }
            // A filter: it must parse for every searched type.
            let mut parsed = None;
            let mut unknown = false;
            for t in &plan.types {
                match parse_clause(reg, t, name, value, 0)? {
                    Some(c) => parsed = Some(c),
                    None => unknown = true,
                }
                if unknown {
                    break;
                }
            }
            match (parsed, unknown) {
                (Some(c), false) => {
                    plan.clauses.push((name.clone(), c));
                    plan.link_params.push((name.clone(), value.clone()));
                }
                _ => plan.ignored.push(name.clone()),
            }
            if plan.clauses.len() > MAX_CLAUSES {
                return Err(ServiceError::invalid(
                    format!("a search may have at most {MAX_CLAUSES} parameters"),
                    None,
                ));
            }
        }
        // Validate sort keys now that the types are known.
        for (code, _) in &plan.sort {
            if code != "_id"
                && code != "_lastUpdated"
                && plan.types.iter().any(|t| reg.get(t, code).is_none())
            {
                return Err(bad(
                    "_sort",
                    format!("'{code}' is not a search parameter of the searched type"),
                ));
            }
        }
        Ok(plan)
    }

    /// The WHERE conditions on alias `r` (type, liveness, every clause).
    fn where_sql(&self, sql: &mut Sql) -> Result<String, ServiceError> {
        self.where_sql_except(sql, None)
    }

    /// The WHERE conditions, leaving out clause `skip` (answered by the driver).
    fn where_sql_except(&self, sql: &mut Sql, skip: Option<usize>) -> Result<String, ServiceError> {
        let mut conds = vec!["r.deleted = 0".to_string()];
        sql.consent = self.consent.clone();
        if let Some(f) = &self.consent {
            if let Some(c) = f.sql(sql, "r") {
                conds.push(c);
            }
        }
        let marks: Vec<String> = self.types.iter().map(|t| sql.text(t)).collect();
        conds.push(if marks.len() == 1 {
            format!("r.res_type = {}", marks[0])
        } else {
            format!("r.res_type IN ({})", marks.join(", "))
        });
        let t = if self.types.len() == 1 {
            self.types[0].as_str()
        } else {
            "*"
        };
        for (i, (_, c)) in self.clauses.iter().enumerate() {
            if Some(i) != skip {
                let correlated = sql.correlated;
                sql.correlated |= self.probed.contains(&i);
                let cond = clause(sql, t, "r", c);
                sql.correlated = correlated;
                conds.push(cond?);
            }
        }
        if let Some(c) = &self.compartment {
            conds.push(c.sql(sql));
        }
        Ok(conds.join(" AND "))
    }

    fn sort_keys(&self, reg: &Registry, sql: &mut Sql) -> Vec<SortKey> {
        let mut keys = Vec::new();
        for (code, desc) in &self.sort {
            let (expr, key_type) = match code.as_str() {
                "_id" => ("r.res_id".to_string(), KeyType::Text),
                "_lastUpdated" => ("r.last_updated".to_string(), KeyType::Int),
                _ => {
                    let Some(def) = self.types.first().and_then(|t| reg.get(t, code)) else {
                        continue;
                    };
                    let p = sql.text(code);
                    let agg = if *desc { "MAX" } else { "MIN" };
                    let (table, col, kt, missing) = match def.kind {
                        ParamKind::String => ("idx_string", "value_norm", KeyType::Text, "''"),
                        ParamKind::Token => ("idx_token", "code", KeyType::Text, "''"),
                        ParamKind::Reference => ("idx_reference", "target_id", KeyType::Text, "''"),
                        ParamKind::Uri => ("idx_uri", "value", KeyType::Text, "''"),
                        ParamKind::Date => (
                            "idx_date",
                            if *desc { "high_ms" } else { "low_ms" },
                            KeyType::Int,
                            "-4611686018427387904",
                        ),
                        ParamKind::Number => (
                            "idx_number",
                            if *desc { "high" } else { "low" },
                            KeyType::Real,
                            "-1e300",
                        ),
                        ParamKind::Quantity => (
                            "idx_quantity",
                            if *desc { "high" } else { "low" },
                            KeyType::Real,
                            "-1e300",
                        ),
                        ParamKind::Composite | ParamKind::Special => continue,
                    };
                    (
                        format!("COALESCE((SELECT {agg}(s.{col}) FROM {table} s WHERE s.rid = r.rid AND s.param = {p}), {missing})"),
                        kt,
                    )
                }
            };
            keys.push(SortKey {
                name: code.clone(),
                expr,
                descending: *desc,
                key_type,
            });
        }
        keys
    }

    /// SQL for one page (`count + 1` rows, to know whether more follow).
    /// Returns the SQL, its binds and the number of sort keys selected.
    pub fn page_sql(&self, reg: &Registry) -> Result<(String, Vec<Bind>, usize), ServiceError> {
        if self.sort.is_empty() {
            if let Some(driven) = self.driven_page_sql()? {
                return Ok(driven);
            }
        }
        if let Some(sorted) = self.date_sorted_page_sql(reg)? {
            return Ok(sorted);
        }
        let mut sql = Sql::default();
        let keys = self.sort_keys(reg, &mut sql);
        // In a compartment the compartment condition selects few rows; in a
        // scan the clauses match many: either way, probe clauses per row.
        sql.correlated = keys.is_empty() && (self.scan || self.compartment.is_some());
        let mut where_sql = self.where_sql(&mut sql)?;
        sql.correlated = false;
        if let Some(w) = self
            .window
            .filter(|_| keys.is_empty() && self.types.len() == 1)
        {
            let after = match &self.cursor {
                Some(c) if !c.backwards => c.rid,
                _ => 0,
            };
            let (t, after, limit) = (
                sql.text(&self.types[0]),
                sql.bind(Bind::Int(after)),
                sql.limit(w),
            );
            where_sql.push_str(&format!(
                " AND r.rid > {after} AND r.rid <= COALESCE((SELECT MAX(w.rid) FROM (SELECT w.rid FROM resources w \
                 WHERE w.res_type = {t} AND w.deleted = 0 AND w.rid > {after} ORDER BY w.rid LIMIT {limit}) w), {after})"
            ));
        }
        let key_cols: String = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!(", {} AS k{i}", k.expr))
            .collect();
        let key_text: String = (0..keys.len())
            .map(|i| format!(", CAST(q.k{i} AS TEXT)"))
            .collect();
        let backwards = self.cursor.as_ref().is_some_and(|c| c.backwards);
        // Keyset condition.
        let mut keyset = String::from("1 = 1");
        if let Some(c) = &self.cursor {
            if c.keys.len() != keys.len() {
                return Err(ServiceError::invalid(
                    "_cursor does not belong to this search",
                    Some("_cursor"),
                ));
            }
            let mut ors = Vec::new();
            let rid = sql.bind(Bind::Int(c.rid));
            for i in 0..=keys.len() {
                let mut ands = Vec::new();
                for (j, k) in keys.iter().enumerate().take(i) {
                    let v = bind_key(&mut sql, k.key_type, c.keys[j].as_deref())?;
                    ands.push(format!("q.k{j} = {v}"));
                }
                if i < keys.len() {
                    let k = &keys[i];
                    let v = bind_key(&mut sql, k.key_type, c.keys[i].as_deref())?;
                    let forward_gt = !k.descending;
                    let op = if forward_gt != backwards { ">" } else { "<" };
                    ands.push(format!("q.k{i} {op} {v}"));
                } else {
                    let op = if backwards { "<" } else { ">" };
                    ands.push(format!("q.rid {op} {rid}"));
                }
                ors.push(format!("({})", ands.join(" AND ")));
            }
            keyset = ors.join(" OR ");
        }
        let mut order: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                format!(
                    "q.k{i} {}",
                    if k.descending != backwards {
                        "DESC"
                    } else {
                        "ASC"
                    }
                )
            })
            .collect();
        order.push(format!("q.rid {}", if backwards { "DESC" } else { "ASC" }));
        let limit = sql.limit(self.count as i64 + 1);
        let text = format!(
            "SELECT q.rid, q.res_type, q.res_id, v.content{key_text} FROM \
             (SELECT r.rid, r.res_type, r.res_id, r.version{key_cols} FROM resources r WHERE {where_sql}) q \
             JOIN resource_versions v ON v.rid = q.rid AND v.version = q.version \
             WHERE {keyset} ORDER BY {} LIMIT {limit}",
            order.join(", ")
        );
        Ok((text, sql.binds, keys.len()))
    }

    /// A page in row order driven by an equality clause: its index rows come
    /// in row-id order for one (type, parameter, value), so the database reads
    /// matches in order and stops after the page instead of collecting and
    /// sorting every match. `None` when no clause can drive.
    fn driven_page_sql(&self) -> Result<Option<(String, Vec<Bind>, usize)>, ServiceError> {
        if self.types.len() != 1 {
            return Ok(None);
        }
        let res_type = self.types[0].as_str();
        let Some((index, table, cond_of)) = self
            .clauses
            .iter()
            .enumerate()
            .find_map(|(i, (_, c))| driver(c).map(|(t, f)| (i, t, f)))
        else {
            return Ok(None);
        };
        let mut sql = Sql::default();
        let (rt, p) = (sql.text(res_type), sql.text(&cond_of.0));
        let value_cond = cond_of.1(&mut sql);
        // The driver yields few enough candidates: probe the others per row.
        sql.correlated = true;
        let where_sql = self.where_sql_except(&mut sql, Some(index))?;
        sql.correlated = false;
        let backwards = self.cursor.as_ref().is_some_and(|c| c.backwards);
        let keyset = match &self.cursor {
            Some(c) if !c.keys.is_empty() => {
                return Err(ServiceError::invalid(
                    "_cursor does not belong to this search",
                    Some("_cursor"),
                ))
            }
            Some(c) => format!(
                "x.rid {} {}",
                if backwards { "<" } else { ">" },
                sql.bind(Bind::Int(c.rid))
            ),
            None => "1 = 1".into(),
        };
        let dir = if backwards { "DESC" } else { "ASC" };
        let limit = sql.limit(self.count as i64 + 1);
        let text = format!(
            "SELECT q.rid, q.res_type, q.res_id, v.content FROM \
             (SELECT x.rid AS rid FROM {table} x JOIN resources r ON r.rid = x.rid \
              WHERE x.res_type = {rt} AND x.param = {p} AND {value_cond} AND {keyset} AND {where_sql} \
              GROUP BY x.rid ORDER BY x.rid {dir} LIMIT {limit}) d \
             JOIN resources q ON q.rid = d.rid \
             JOIN resource_versions v ON v.rid = q.rid AND v.version = q.version \
             ORDER BY q.rid {dir}"
        );
        Ok(Some((text, sql.binds, 0)))
    }

    /// A page sorted by one date parameter that a clause also filters on (so
    /// every match has a value): walk that parameter's index in key order —
    /// each resource at its own key row (its latest end for `-date`, its
    /// earliest start for `date`) — test the clauses per row, and stop at the
    /// page, instead of computing and sorting the key of every match.
    fn date_sorted_page_sql(
        &self,
        reg: &Registry,
    ) -> Result<Option<(String, Vec<Bind>, usize)>, ServiceError> {
        let [(code, desc)] = self.sort.as_slice() else {
            return Ok(None);
        };
        if self.types.len() != 1 {
            return Ok(None);
        }
        let res_type = self.types[0].as_str();
        let Some(def) = reg.get(res_type, code) else {
            return Ok(None);
        };
        let filtered = self.clauses.iter().any(|(_, c)| {
            matches!(c, Clause::Param { def: d, modifier: Modifier::None, .. } if d.code == *code && d.kind == ParamKind::Date)
        });
        if def.kind != ParamKind::Date || !filtered {
            return Ok(None);
        }
        let (col, agg) = if *desc {
            ("high_ms", "MAX")
        } else {
            ("low_ms", "MIN")
        };
        let backwards = self.cursor.as_ref().is_some_and(|c| c.backwards);
        // Direction of the key in this fetch, and of the rid tie-break.
        let key_desc = *desc != backwards;
        let (key_dir, rid_dir) = if key_desc {
            ("DESC", if backwards { "DESC" } else { "ASC" })
        } else {
            ("ASC", if backwards { "DESC" } else { "ASC" })
        };
        let mut sql = Sql::default();
        let (rt, p) = (sql.text(res_type), sql.text(code));
        sql.correlated = true;
        let where_sql = self.where_sql(&mut sql)?;
        sql.correlated = false;
        let keyset = match &self.cursor {
            None => "1 = 1".to_string(),
            Some(c) => {
                let [Some(k)] = c.keys.as_slice() else {
                    return Err(ServiceError::invalid(
                        "_cursor does not belong to this search",
                        Some("_cursor"),
                    ));
                };
                let k: i64 = k.parse().map_err(|_| {
                    ServiceError::invalid("_cursor does not belong to this search", Some("_cursor"))
                })?;
                let (kb, rb) = (sql.bind(Bind::Int(k)), sql.bind(Bind::Int(c.rid)));
                let key_op = if key_desc { "<" } else { ">" };
                let rid_op = if backwards { "<" } else { ">" };
                format!("(x.{col} {key_op} {kb} OR (x.{col} = {kb} AND x.rid {rid_op} {rb}))")
            }
        };
        let limit = sql.limit(self.count as i64 + 1);
        let text = format!(
            "SELECT q.rid, q.res_type, q.res_id, v.content, CAST(d.k AS TEXT) FROM \
             (SELECT x.rid AS rid, x.{col} AS k FROM idx_date x JOIN resources r ON r.rid = x.rid \
              WHERE x.res_type = {rt} AND x.param = {p} \
              AND x.{col} = (SELECT {agg}(s.{col}) FROM idx_date s WHERE s.rid = x.rid AND s.param = x.param) \
              AND {keyset} AND {where_sql} \
              ORDER BY x.{col} {key_dir}, x.rid {rid_dir} LIMIT {limit}) d \
             JOIN resources q ON q.rid = d.rid \
             JOIN resource_versions v ON v.rid = q.rid AND v.version = q.version \
             ORDER BY d.k {key_dir}, d.rid {rid_dir}"
        );
        Ok(Some((text, sql.binds, 1)))
    }

    /// Whether the default-ordered page has no driver and no compartment, so
    /// that the service should probe how much its first clause matches.
    pub fn wants_probe(&self) -> bool {
        self.sort.is_empty()
            && self.compartment.is_none()
            && self.types.len() == 1
            && !self.clauses.is_empty()
            && !self.clauses.iter().any(|(_, c)| driver(c).is_some())
            && self
                .clauses
                .iter()
                .all(|(_, c)| matches!(c, Clause::Param { .. }))
    }

    /// True when a `_has` clause could be probed per row within a window:
    /// one type in row order, no compartment, no driving clause, and only
    /// parameter and `_has` clauses (at least one `_has`).
    pub fn wants_has_probe(&self) -> bool {
        self.sort.is_empty()
            && self.compartment.is_none()
            && self.types.len() == 1
            && !self.cursor.as_ref().is_some_and(|c| c.backwards)
            && !self.clauses.iter().any(|(_, c)| driver(c).is_some())
            && self
                .clauses
                .iter()
                .all(|(_, c)| matches!(c, Clause::Param { .. } | Clause::Has { .. }))
            && self
                .clauses
                .iter()
                .any(|(_, c)| matches!(c, Clause::Has { .. }))
    }

    /// SQL counting every match.
    pub fn count_sql(&self) -> Result<(String, Vec<Bind>), ServiceError> {
        let mut sql = Sql::default();
        let where_sql = self.where_sql(&mut sql)?;
        Ok((
            format!("SELECT COUNT(*) FROM resources r WHERE {where_sql}"),
            sql.binds,
        ))
    }
}

/// Builds the driver's value condition on alias `x`.
type DriverCond = (String, Box<dyn Fn(&mut Sql) -> String>);

/// A clause that can drive a page: one token with a system (or explicitly
/// none) and a code, or one reference with type and id, without modifiers.
fn driver(c: &Clause) -> Option<(&'static str, DriverCond)> {
    let Clause::Param {
        def,
        modifier,
        values,
    } = c
    else {
        return None;
    };
    if *modifier != Modifier::None
        || values.len() != 1
        || def.code == "_id"
        || def.code == "_lastUpdated"
    {
        return None;
    }
    let code = def.code.clone();
    match def.kind {
        ParamKind::Token => {
            let t = super::values::parse_token(&values[0]);
            let (system, value) = (t.system?, t.code?);
            Some((
                "idx_token",
                (
                    code,
                    Box::new(move |sql: &mut Sql| {
                        let c = sql.text(&value);
                        if system.is_empty() {
                            format!("x.code = {c} AND x.system IS NULL")
                        } else {
                            format!("x.code = {c} AND x.system = {}", sql.text(&system))
                        }
                    }),
                ),
            ))
        }
        ParamKind::Reference => {
            let v = super::values::unescape(&values[0]);
            let row = super::to_rows::parse_reference(&code, &v);
            let (t, id) = (row.target_type?, row.target_id?);
            if row.target_url.is_some() {
                return None;
            }
            Some((
                "idx_reference",
                (
                    code,
                    Box::new(move |sql: &mut Sql| {
                        format!(
                            "x.target_id = {} AND x.target_type = {}",
                            sql.text(&id),
                            sql.text(&t)
                        )
                    }),
                ),
            ))
        }
        _ => None,
    }
}

fn bind_key(sql: &mut Sql, kt: KeyType, v: Option<&str>) -> Result<String, ServiceError> {
    let err = || ServiceError::invalid("_cursor does not belong to this search", Some("_cursor"));
    let v = v.unwrap_or("");
    Ok(match kt {
        KeyType::Text => sql.text(v),
        KeyType::Int => sql.bind(Bind::Int(v.parse().map_err(|_| err())?)),
        KeyType::Real => sql.bind(Bind::Real(v.parse().map_err(|_| err())?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip() {
        let c = Cursor {
            backwards: true,
            keys: vec![Some("a".into()), None],
            rid: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("nonsense!").is_err());
    }
}
