//! SQL for search clauses. Every value is a bound parameter; the text is
//! built only from fixed fragments, table/column names and placeholder numbers.
//! Conditions take the form `r.rid IN (SELECT rid FROM idx_… WHERE …)` so that
//! each index table is entered through its (res_type, param, value) index.

use super::dates;
use super::definitions::{ParamDef, ParamKind};
use super::query::{Clause, Modifier};
use super::values::{parse_decimal, parse_quantity, parse_token, unescape, Prefix};
use crate::fhir::instant::now_ms;
use crate::service::ServiceError;

pub use crate::store::Bind;

/// SQL text under construction with its bound values.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    pub binds: Vec<Bind>,
    /// Write clauses as correlated `EXISTS` probes of each candidate row
    /// (for plans that walk candidates in row order) instead of
    /// `rid IN (all matches)`.
    pub correlated: bool,
    /// Resources Consent hides from this request: left out of the inner
    /// sets of chains and `_has` too.
    pub consent: Option<ConsentFilter>,
}

/// What patients' Consents hide from one request's search.
#[derive(Debug, Clone, Default)]
pub struct ConsentFilter {
    /// Row ids denied by an in-force Consent.
    pub hidden: Vec<i64>,
    /// Opt-in: only resources of these patients (those with a Consent) or
    /// of no patient are visible. `None` under opt-out.
    pub permitted_patients: Option<Vec<String>>,
}

impl ConsentFilter {
    /// The condition on resource alias `r`, `None` when nothing is hidden.
    pub fn sql(&self, sql: &mut Sql, r: &str) -> Option<String> {
        let mut conds = Vec::new();
        if !self.hidden.is_empty() {
            let marks: Vec<String> = self
                .hidden
                .iter()
                .map(|rid| sql.bind(Bind::Int(*rid)))
                .collect();
            conds.push(format!("{r}.rid NOT IN ({})", marks.join(", ")));
        }
        if let Some(ps) = &self.permitted_patients {
            let patient = sql.text("Patient");
            let marks: Vec<String> = ps.iter().map(|p| sql.text(p)).collect();
            let (own, foreign) = if marks.is_empty() {
                (
                    format!("{r}.res_type <> {patient}"),
                    format!("x.target_type = {patient}"),
                )
            } else {
                let list = marks.join(", ");
                (
                    format!("({r}.res_type <> {patient} OR {r}.res_id IN ({list}))"),
                    format!("x.target_type = {patient} AND x.target_id NOT IN ({list})"),
                )
            };
            conds.push(own);
            conds.push(format!(
                "NOT EXISTS (SELECT 1 FROM idx_reference x WHERE x.rid = {r}.rid AND {foreign})"
            ));
        }
        (!conds.is_empty()).then(|| conds.join(" AND "))
    }
}

impl Sql {
    /// Binds `b` and returns its placeholder (`$n`).
    pub fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    pub fn text(&mut self, s: &str) -> String {
        self.bind(Bind::Text(s.to_string()))
    }

    /// A row limit, written as a literal rather than bound: SQLite re-plans a
    /// statement on every execution when its `LIMIT` is a bound parameter
    /// (the planner reads the bound value, so each new binding expires the
    /// prepared statement). The value is an integer the server computed.
    pub fn limit(&self, n: i64) -> String {
        n.max(0).to_string()
    }
}

fn bad(name: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(
        format!("search parameter '{name}': {}", message.into()),
        Some(name),
    )
}

/// The smallest string greater than every string starting with `prefix`
/// (for index-friendly starts-with ranges).
pub fn prefix_end(prefix: &str) -> String {
    let mut s = prefix.to_string();
    s.push(char::MAX);
    s
}

/// The SQL for the resource type of alias `r`: a bound name, or for a
/// search over several types (`*`) the row's own type.
fn type_expr(sql: &mut Sql, res_type: &str, r: &str) -> String {
    if res_type == "*" {
        format!("{r}.res_type")
    } else {
        sql.text(res_type)
    }
}

/// The inner clause of a chain, or of a `_has` that is collected, selects a
/// set of resources: it is collected (`IN`), not probed per row.
fn inner_clause(
    sql: &mut Sql,
    res_type: &str,
    r: &str,
    c: &Clause,
) -> Result<String, ServiceError> {
    let correlated = std::mem::replace(&mut sql.correlated, false);
    let out = clause(sql, res_type, r, c);
    sql.correlated = correlated;
    out
}

/// Adds the Consent condition on alias `r` to an inner set's condition.
fn with_consent(sql: &mut Sql, r: &str, cond: String) -> String {
    let filter = sql.consent.clone();
    match filter.and_then(|f| f.sql(sql, r)) {
        Some(c) => format!("{cond} AND {c}"),
        None => cond,
    }
}

/// Condition on resource alias `r` for one clause of a search on `res_type`
/// (`*` when several types are searched).
pub fn clause(sql: &mut Sql, res_type: &str, r: &str, c: &Clause) -> Result<String, ServiceError> {
    match c {
        Clause::Param {
            def,
            modifier,
            values,
        } => param(sql, res_type, r, def, modifier, values),
        Clause::Chain { def, target, inner } => {
            let t = type_expr(sql, res_type, r);
            let (p, tt) = (sql.text(&def.code), sql.text(target));
            let r2 = format!("{r}c");
            let inner_sql = inner_clause(sql, target, &r2, inner)?;
            let inner_sql = with_consent(sql, &r2, inner_sql);
            Ok(format!(
                "{r}.rid IN (SELECT x.rid FROM idx_reference x WHERE x.res_type = {t} AND x.param = {p} \
                 AND x.target_type = {tt} AND x.target_id IN (SELECT {r2}.res_id FROM resources {r2} \
                 WHERE {r2}.res_type = {tt} AND {r2}.deleted = 0 AND {inner_sql}))"
            ))
        }
        Clause::Has { source, def, inner } => {
            let me = type_expr(sql, res_type, r);
            let (s, p) = (sql.text(source), sql.text(&def.code));
            let r2 = format!("{r}h");
            if sql.correlated {
                // Probed per candidate: its referrers through the reference
                // index, each tested per row (the inner clause correlated too).
                let inner_sql = clause(sql, source, &r2, inner)?;
                let inner_sql = with_consent(sql, &r2, inner_sql);
                return Ok(format!(
                    "EXISTS (SELECT 1 FROM idx_reference x WHERE x.res_type = {s} AND x.param = {p} \
                     AND x.target_id = {r}.res_id AND x.target_type = {me} AND EXISTS (SELECT 1 FROM resources {r2} \
                     WHERE {r2}.rid = x.rid AND {r2}.deleted = 0 AND {inner_sql}))"
                ));
            }
            let inner_sql = inner_clause(sql, source, &r2, inner)?;
            let inner_sql = with_consent(sql, &r2, inner_sql);
            Ok(format!(
                "{r}.res_id IN (SELECT x.target_id FROM idx_reference x WHERE x.res_type = {s} AND x.param = {p} \
                 AND x.target_type = {me} AND x.rid IN (SELECT {r2}.rid FROM resources {r2} \
                 WHERE {r2}.res_type = {s} AND {r2}.deleted = 0 AND {inner_sql}))"
            ))
        }
    }
}

fn table(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::String => "idx_string",
        ParamKind::Token => "idx_token",
        ParamKind::Reference => "idx_reference",
        ParamKind::Date => "idx_date",
        ParamKind::Number => "idx_number",
        ParamKind::Quantity => "idx_quantity",
        ParamKind::Uri => "idx_uri",
        ParamKind::Composite | ParamKind::Special => "idx_composite",
    }
}

#[allow(clippy::too_many_arguments)]
fn param(
    sql: &mut Sql,
    res_type: &str,
    r: &str,
    def: &ParamDef,
    modifier: &Modifier,
    values: &[String],
) -> Result<String, ServiceError> {
    let (code, kind) = (def.code.as_str(), def.kind);
    // Specials answered from the resources table itself.
    if code == "_id" {
        let marks: Vec<String> = values.iter().map(|v| sql.text(&unescape(v))).collect();
        let op = if *modifier == Modifier::Not {
            "NOT IN"
        } else {
            "IN"
        };
        return Ok(format!("{r}.res_id {op} ({})", marks.join(", ")));
    }
    if code == "_lastUpdated" {
        let mut ors = Vec::new();
        for v in values {
            ors.push(date_cond(
                sql,
                code,
                &format!("{r}.last_updated"),
                &format!("{r}.last_updated"),
                v,
            )?);
        }
        return Ok(format!("({})", ors.join(" OR ")));
    }
    let t = if code == "_text" || code == "_content" {
        "idx_fulltext"
    } else {
        table(kind)
    };
    // `:of-type` values are indexed under their own parameter name.
    let stored = if *modifier == Modifier::OfType {
        format!("{code}:of-type")
    } else {
        code.to_string()
    };
    let rt = type_expr(sql, res_type, r);
    let p = sql.text(&stored);
    let correlated = sql.correlated;
    // `r` has (or lacks) an index row of this parameter matching `cond`.
    let member = |cond: Option<&str>, negate: bool| {
        let extra = cond.map(|c| format!(" AND ({c})")).unwrap_or_default();
        let not = if negate { "NOT " } else { "" };
        if correlated {
            format!(
                "{not}EXISTS (SELECT 1 FROM {t} x WHERE x.rid = {r}.rid AND x.param = {p}{extra})"
            )
        } else {
            format!("{r}.rid {not}IN (SELECT x.rid FROM {t} x WHERE x.res_type = {rt} AND x.param = {p}{extra})")
        }
    };
    if *modifier == Modifier::Missing {
        return Ok(member(
            None,
            values.first().map(String::as_str) == Some("true"),
        ));
    }
    if let Modifier::Members { members, negate } = modifier {
        let mut ors = Vec::with_capacity(members.len());
        for m in members {
            // A `code` element is indexed without a system (it is implied by
            // its binding), so a member matches a system-less code too.
            let s = sql.text(&m.system);
            ors.push(match &m.code {
                Some(c) => format!(
                    "((x.system = {s} OR x.system IS NULL) AND x.code = {})",
                    sql.text(c)
                ),
                None => format!("(x.system = {s} OR (x.system IS NULL AND x.code IS NOT NULL))"),
            });
        }
        let cond = if ors.is_empty() {
            "1 = 0".to_string()
        } else {
            ors.join(" OR ")
        };
        return Ok(member(Some(&cond), *negate));
    }
    let mut ors = Vec::with_capacity(values.len());
    for v in values {
        ors.push(value_cond(sql, def, modifier, v)?);
    }
    let cond = ors.join(" OR ");
    Ok(member(Some(&cond), *modifier == Modifier::Not))
}

/// SQL counting (up to `cap`) the index rows that match a plain parameter
/// clause: a cheap selectivity probe. `None` for clauses it cannot probe.
pub fn probe(
    res_type: &str,
    c: &Clause,
    cap: i64,
) -> Result<Option<(String, Vec<Bind>)>, ServiceError> {
    let Clause::Param {
        def,
        modifier,
        values,
    } = c
    else {
        return Ok(None);
    };
    if !matches!(
        modifier,
        Modifier::None | Modifier::Exact | Modifier::Contains | Modifier::Text
    ) || def.code == "_id"
        || def.code == "_lastUpdated"
        || def.code == "_text"
        || def.code == "_content"
    {
        return Ok(None);
    }
    let mut sql = Sql::default();
    let (rt, p) = (sql.text(res_type), sql.text(&def.code));
    let mut ors = Vec::new();
    for v in values {
        ors.push(value_cond(&mut sql, def, modifier, v)?);
    }
    let limit = sql.limit(cap);
    Ok(Some((
        format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM {} x WHERE x.res_type = {rt} AND x.param = {p} AND ({}) LIMIT {limit}) n",
            table(def.kind),
            ors.join(" OR ")
        ),
        sql.binds,
    )))
}

fn value_cond(
    sql: &mut Sql,
    def: &ParamDef,
    modifier: &Modifier,
    v: &str,
) -> Result<String, ServiceError> {
    let name = def.code.as_str();
    Ok(match def.kind {
        ParamKind::String => {
            let norm = super::normalize::fold(&unescape(v));
            if name == "_text" || name == "_content" {
                // Full text: the words may stand anywhere in the text.
                let pattern = format!("%{}%", like_escape(&norm));
                return Ok(format!("x.text LIKE {} ESCAPE '\\'", sql.text(&pattern)));
            }
            match modifier {
                Modifier::Exact => format!("x.value = {}", sql.text(&unescape(v))),
                Modifier::Contains => {
                    let pattern = format!("%{}%", like_escape(&norm));
                    format!("x.value_norm LIKE {} ESCAPE '\\'", sql.text(&pattern))
                }
                Modifier::None | Modifier::Text => {
                    let (lo, hi) = (sql.text(&norm), sql.text(&prefix_end(&norm)));
                    format!("(x.value_norm >= {lo} AND x.value_norm < {hi})")
                }
                m => {
                    return Err(bad(
                        name,
                        format!("modifier {m:?} does not apply to strings"),
                    ))
                }
            }
        }
        ParamKind::Token => token_cond(sql, name, modifier, v)?,
        ParamKind::Reference => reference_cond(sql, name, modifier, v)?,
        ParamKind::Date => date_cond(sql, name, "x.low_ms", "x.high_ms", v)?,
        ParamKind::Number => {
            let (prefix, num) = Prefix::split(v);
            let d =
                parse_decimal(num).ok_or_else(|| bad(name, format!("'{v}' is not a number")))?;
            number_cond(sql, prefix, d.value, d.half_width)
        }
        ParamKind::Quantity => {
            let q = parse_quantity(v).ok_or_else(|| {
                bad(
                    name,
                    format!("'{v}' is not a quantity ([prefix]number|system|code)"),
                )
            })?;
            let mut cond = number_cond(sql, q.prefix, q.number.value, q.number.half_width);
            if let Some(code) = &q.code {
                cond = format!("{cond} AND x.code = {}", sql.text(code));
            }
            if let Some(system) = &q.system {
                cond = format!("{cond} AND x.system = {}", sql.text(system));
            }
            format!("({cond})")
        }
        ParamKind::Uri => {
            let u = unescape(v);
            match modifier {
                Modifier::None | Modifier::Exact => format!("x.value = {}", sql.text(&u)),
                Modifier::Below => {
                    let (lo, hi) = (sql.text(&u), sql.text(&prefix_end(&u)));
                    format!("(x.value >= {lo} AND x.value < {hi})")
                }
                Modifier::Above => {
                    let full = sql.text(&u);
                    format!("substr({full}, 1, length(x.value)) = x.value")
                }
                Modifier::Contains => {
                    let pattern = format!("%{}%", like_escape(&u));
                    format!("x.value LIKE {} ESCAPE '\\'", sql.text(&pattern))
                }
                m => return Err(bad(name, format!("modifier {m:?} does not apply to uris"))),
            }
        }
        ParamKind::Composite => {
            composite_cond(sql, name, def.components.get(1).and_then(|c| c.kind), v)?
        }
        ParamKind::Special => {
            return Err(ServiceError::not_supported(format!(
                "search parameter '{name}' (special) is not supported"
            )))
        }
    })
}

/// `first$second`: the first component by key; the second by key, or by
/// range when it is a number/quantity (`gt130|system|code`) or a date, as
/// the second component's kind says (guessed from the value when unknown).
fn composite_cond(
    sql: &mut Sql,
    name: &str,
    second_kind: Option<ParamKind>,
    v: &str,
) -> Result<String, ServiceError> {
    let parts = super::values::split_escaped_keep(v, '$');
    let [first, second] = parts.as_slice() else {
        return Err(bad(name, "a composite value has two parts joined by '$'"));
    };
    let t = parse_token(first);
    let Some(code) = &t.code else {
        return Err(bad(name, "the first component needs a code"));
    };
    let mut cond = component_cond(sql, "first", t.system.as_deref(), code);
    let (_, rest) = Prefix::split(second);
    let number_part = rest.split('|').next().unwrap_or("");
    let ranged = matches!(
        second_kind,
        None | Some(ParamKind::Quantity | ParamKind::Number)
    );
    let dated = matches!(second_kind, None | Some(ParamKind::Date));
    if let Some(q) =
        parse_quantity(second).filter(|_| ranged && parse_decimal(number_part).is_some())
    {
        let num = number_cond(sql, q.prefix, q.number.value, q.number.half_width)
            .replace("x.low", "x.second_low")
            .replace("x.high", "x.second_high");
        let unit = match &q.code {
            Some(c) => format!(
                " AND {}",
                component_cond(sql, "second", q.system.as_deref(), c)
            ),
            None => String::new(),
        };
        cond = format!("{cond}{unit} AND {num}");
    } else if second_kind.is_some() && ranged {
        return Err(bad(name, "the second component needs a number or quantity"));
    } else if dated && dates::range(rest).is_some() {
        let d = date_cond(sql, name, "x.second_low", "x.second_high", second)?;
        cond = format!("{cond} AND {d}");
    } else if second_kind == Some(ParamKind::Date) {
        return Err(bad(name, "the second component needs a date"));
    } else {
        let t = parse_token(second);
        let Some(code) = &t.code else {
            return Err(bad(name, "the second component needs a value"));
        };
        let second = component_cond(sql, "second", t.system.as_deref(), code);
        cond = format!("{cond} AND {second}");
    }
    Ok(format!("({cond})"))
}

/// One composite component (`first` or `second`): with a system, its most
/// specific key (`system|code`); without one (or with an empty one), its
/// bare code, which is a string's or a reference's whole value too.
fn component_cond(sql: &mut Sql, column: &str, system: Option<&str>, code: &str) -> String {
    match system.filter(|s| !s.is_empty()) {
        Some(s) => format!("x.{column}_key = {}", sql.text(&format!("{s}|{code}"))),
        None => format!("x.{column}_code = {}", sql.text(code)),
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn token_cond(
    sql: &mut Sql,
    name: &str,
    modifier: &Modifier,
    v: &str,
) -> Result<String, ServiceError> {
    match modifier {
        Modifier::Text => {
            let norm = super::normalize::fold(&unescape(v));
            let (lo, hi) = (sql.text(&norm), sql.text(&prefix_end(&norm)));
            return Ok(format!("(x.text_norm >= {lo} AND x.text_norm < {hi})"));
        }
        Modifier::OfType => {
            let parts = super::values::split_escaped(v, '|');
            let [system, code, value] = parts.as_slice() else {
                return Err(bad(name, ":of-type takes system|code|value"));
            };
            return Ok(format!(
                "x.system = {} AND x.code = {}",
                sql.text(system),
                sql.text(&format!("{code}|{value}"))
            ));
        }
        Modifier::None | Modifier::Not => {}
        Modifier::In | Modifier::NotIn | Modifier::Above | Modifier::Below => {
            return Err(ServiceError::not_supported(format!(
                "search parameter '{name}': this token modifier is not supported yet"
            )))
        }
        m => {
            return Err(bad(
                name,
                format!("modifier {m:?} does not apply to tokens"),
            ))
        }
    }
    let tok = parse_token(v);
    let mut parts = Vec::new();
    if let Some(code) = &tok.code {
        parts.push(format!("x.code = {}", sql.text(code)));
    }
    match tok.system.as_deref() {
        Some("") => parts.push("x.system IS NULL".into()),
        Some(s) => parts.push(format!("x.system = {}", sql.text(s))),
        None => {}
    }
    if parts.is_empty() {
        return Err(bad(name, "a token needs a code or a system"));
    }
    Ok(format!("({})", parts.join(" AND ")))
}

fn reference_cond(
    sql: &mut Sql,
    name: &str,
    modifier: &Modifier,
    v: &str,
) -> Result<String, ServiceError> {
    let v = unescape(v);
    if *modifier == Modifier::Identifier {
        return Err(ServiceError::not_supported(format!(
            "search parameter '{name}': :identifier is not supported yet"
        )));
    }
    let row = super::to_rows::parse_reference(name, &v);
    let type_filter = match modifier {
        Modifier::Type(t) => Some(t.clone()),
        Modifier::None => row.target_type.clone(),
        m => {
            return Err(bad(
                name,
                format!("modifier {m:?} does not apply to references"),
            ))
        }
    };
    if let Some(id) = row.target_id.as_deref().or_else(|| {
        // A bare id (`subject=123`).
        (!v.contains('/') && !v.contains(':') && crate::fhir::is_valid_id(&v)).then_some(v.as_str())
    }) {
        let mut cond = format!("x.target_id = {}", sql.text(id));
        if let Some(t) = type_filter {
            cond = format!("{cond} AND x.target_type = {}", sql.text(&t));
        }
        return Ok(format!("({cond})"));
    }
    Ok(format!("x.target_url = {}", sql.text(&v)))
}

/// A date comparison between the stored range [`lo_col`, `hi_col`] and `value`.
pub fn date_cond(
    sql: &mut Sql,
    name: &str,
    lo_col: &str,
    hi_col: &str,
    value: &str,
) -> Result<String, ServiceError> {
    let (prefix, text) = Prefix::split(value);
    let (lo, hi) = dates::range(text).ok_or_else(|| {
        bad(
            name,
            format!("'{value}' is not a valid date, dateTime or instant"),
        )
    })?;
    let (l, h) = (sql.bind(Bind::Int(lo)), sql.bind(Bind::Int(hi)));
    Ok(match prefix {
        Prefix::Eq => format!("({lo_col} >= {l} AND {hi_col} <= {h})"),
        Prefix::Ne => format!("NOT ({lo_col} >= {l} AND {hi_col} <= {h})"),
        Prefix::Gt => format!("{hi_col} > {h}"),
        Prefix::Lt => format!("{lo_col} < {l}"),
        Prefix::Ge => format!("({hi_col} >= {l})"),
        Prefix::Le => format!("({lo_col} <= {h})"),
        Prefix::Sa => format!("{lo_col} > {h}"),
        Prefix::Eb => format!("{hi_col} < {l}"),
        Prefix::Ap => {
            // Approximately: within 10 % of the distance from now, at least a day.
            let now = now_ms();
            let slack = ((now - lo).abs() / 10).max(86_400_000);
            let (al, ah) = (
                sql.bind(Bind::Int(lo - slack)),
                sql.bind(Bind::Int(hi + slack)),
            );
            format!("({lo_col} <= {ah} AND {hi_col} >= {al})")
        }
    })
}

/// A number comparison: the resource value (centre of the stored range)
/// against the search value with its implied precision.
fn number_cond(sql: &mut Sql, prefix: Prefix, value: f64, half_width: f64) -> String {
    let centre = "((x.low + x.high) / 2)";
    let b = |sql: &mut Sql, f: f64| sql.bind(Bind::Real(f));
    match prefix {
        Prefix::Eq => {
            let (l, h) = (b(sql, value - half_width), b(sql, value + half_width));
            format!("({centre} >= {l} AND {centre} < {h})")
        }
        Prefix::Ne => {
            let (l, h) = (b(sql, value - half_width), b(sql, value + half_width));
            format!("NOT ({centre} >= {l} AND {centre} < {h})")
        }
        Prefix::Gt | Prefix::Sa => format!("{centre} > {}", b(sql, value)),
        Prefix::Lt | Prefix::Eb => format!("{centre} < {}", b(sql, value)),
        Prefix::Ge => format!("{centre} >= {}", b(sql, value)),
        Prefix::Le => format!("{centre} <= {}", b(sql, value)),
        Prefix::Ap => {
            let slack = (value.abs() * 0.1).max(half_width);
            let (l, h) = (b(sql, value - slack), b(sql, value + slack));
            format!("({centre} >= {l} AND {centre} <= {h})")
        }
    }
}
