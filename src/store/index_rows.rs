//! The rows of the search-index tables for one resource, one vector per parameter type.

use crate::fhir::instant::Millis;

/// A `string` parameter value.
#[derive(Debug, Clone, PartialEq)]
pub struct StringRow {
    pub param: String,
    /// Lower case with accents removed, for the default and `:contains` matches.
    pub value_norm: String,
    /// As written, for `:exact`.
    pub value: String,
}

/// A `token` parameter value (Coding, Identifier, code, boolean, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub param: String,
    pub system: Option<String>,
    pub code: Option<String>,
    /// Normalised display/text, for `:text`.
    pub text_norm: Option<String>,
}

/// A `reference` parameter value.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceRow {
    pub param: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Absolute URL or canonical, when the reference is not local.
    pub target_url: Option<String>,
}

/// A `date` parameter value as the inclusive range its precision implies.
#[derive(Debug, Clone, PartialEq)]
pub struct DateRow {
    pub param: String,
    pub low_ms: Millis,
    pub high_ms: Millis,
}

/// A `number` parameter value as the range its precision implies.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberRow {
    pub param: String,
    pub low: f64,
    pub high: f64,
}

/// A `quantity` parameter value.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityRow {
    pub param: String,
    pub system: Option<String>,
    pub code: Option<String>,
    pub low: f64,
    pub high: f64,
}

/// A `uri` parameter value.
#[derive(Debug, Clone, PartialEq)]
pub struct UriRow {
    pub param: String,
    pub value: String,
}

/// A `composite` parameter value (two components).
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeRow {
    pub param: String,
    /// The first component's most specific key (`system|code`, or `code`
    /// without a system, a folded string, `Type/id`).
    pub first_key: String,
    /// The first component's bare code (what a query without a system matches).
    pub first_code: String,
    /// The second component's most specific key when it is a token, string
    /// or reference; for a quantity, its unit's `system|code` (or `code`).
    pub second_key: Option<String>,
    /// The second component's bare code (or unit code).
    pub second_code: Option<String>,
    /// The second component's range when it is a quantity (value) or a date (ms).
    pub second_low: Option<f64>,
    pub second_high: Option<f64>,
}

/// Plain text for `_text` / `_content`, matched by substring.
#[derive(Debug, Clone, PartialEq)]
pub struct FulltextRow {
    pub param: String,
    /// Lower case, accents removed.
    pub text: String,
}

/// Everything the search index holds for one resource version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexRows {
    pub strings: Vec<StringRow>,
    pub tokens: Vec<TokenRow>,
    pub references: Vec<ReferenceRow>,
    pub dates: Vec<DateRow>,
    pub numbers: Vec<NumberRow>,
    pub quantities: Vec<QuantityRow>,
    pub uris: Vec<UriRow>,
    pub composites: Vec<CompositeRow>,
    pub fulltext: Vec<FulltextRow>,
}

/// A value bound into an index insert.
#[derive(Debug, Clone)]
pub(crate) enum Cell<'a> {
    Text(Option<&'a str>),
    Int(i64),
    Real(f64),
    OptReal(Option<f64>),
}

/// One index table: its name, its value columns, and its rows as cells.
pub(crate) struct Table<'a> {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<Cell<'a>>>,
}

fn t(s: &str) -> Cell<'_> {
    Cell::Text(Some(s))
}

fn ot(s: &Option<String>) -> Cell<'_> {
    Cell::Text(s.as_deref())
}

impl IndexRows {
    pub fn is_empty(&self) -> bool {
        self.tables().iter().all(|t| t.rows.is_empty())
    }

    /// The rows grouped by table, ready to insert (`rid` and `res_type` are added by the writer).
    pub(crate) fn tables(&self) -> Vec<Table<'_>> {
        vec![
            Table {
                name: "idx_string",
                columns: &["param", "value_norm", "value"],
                rows: self
                    .strings
                    .iter()
                    .map(|r| vec![t(&r.param), t(&r.value_norm), t(&r.value)])
                    .collect(),
            },
            Table {
                name: "idx_token",
                columns: &["param", "system", "code", "text_norm"],
                rows: self
                    .tokens
                    .iter()
                    .map(|r| vec![t(&r.param), ot(&r.system), ot(&r.code), ot(&r.text_norm)])
                    .collect(),
            },
            Table {
                name: "idx_reference",
                columns: &["param", "target_type", "target_id", "target_url"],
                rows: self
                    .references
                    .iter()
                    .map(|r| {
                        vec![
                            t(&r.param),
                            ot(&r.target_type),
                            ot(&r.target_id),
                            ot(&r.target_url),
                        ]
                    })
                    .collect(),
            },
            Table {
                name: "idx_date",
                columns: &["param", "low_ms", "high_ms"],
                rows: self
                    .dates
                    .iter()
                    .map(|r| vec![t(&r.param), Cell::Int(r.low_ms), Cell::Int(r.high_ms)])
                    .collect(),
            },
            Table {
                name: "idx_number",
                columns: &["param", "low", "high"],
                rows: self
                    .numbers
                    .iter()
                    .map(|r| vec![t(&r.param), Cell::Real(r.low), Cell::Real(r.high)])
                    .collect(),
            },
            Table {
                name: "idx_quantity",
                columns: &["param", "system", "code", "low", "high"],
                rows: self
                    .quantities
                    .iter()
                    .map(|r| {
                        vec![
                            t(&r.param),
                            ot(&r.system),
                            ot(&r.code),
                            Cell::Real(r.low),
                            Cell::Real(r.high),
                        ]
                    })
                    .collect(),
            },
            Table {
                name: "idx_uri",
                columns: &["param", "value"],
                rows: self
                    .uris
                    .iter()
                    .map(|r| vec![t(&r.param), t(&r.value)])
                    .collect(),
            },
            Table {
                name: "idx_composite",
                columns: &[
                    "param",
                    "components",
                    "first_key",
                    "first_code",
                    "second_key",
                    "second_code",
                    "second_low",
                    "second_high",
                ],
                rows: self
                    .composites
                    .iter()
                    .map(|r| {
                        vec![
                            t(&r.param),
                            // Kept for the column's NOT NULL; no query reads it.
                            t(""),
                            t(&r.first_key),
                            t(&r.first_code),
                            ot(&r.second_key),
                            ot(&r.second_code),
                            Cell::OptReal(r.second_low),
                            Cell::OptReal(r.second_high),
                        ]
                    })
                    .collect(),
            },
            Table {
                name: "idx_fulltext",
                columns: &["param", "text"],
                rows: self
                    .fulltext
                    .iter()
                    .map(|r| vec![t(&r.param), t(&r.text)])
                    .collect(),
            },
        ]
    }
}

/// Names of every index table, for deleting a resource's rows.
pub(crate) const INDEX_TABLES: [&str; 9] = [
    "idx_string",
    "idx_token",
    "idx_reference",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_uri",
    "idx_composite",
    "idx_fulltext",
];
