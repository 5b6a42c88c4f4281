//! The clinical tools: `patient_summary` (a condensed `$everything`, from a
//! few bounded searches, each audited) and `resolve` (description → ranked
//! candidate patients with reasons; never picks one of several).

use serde_json::{json, Value};

use super::registry::Call;
use super::render::{concept, human_name, summarize, value_text, ToolOutput};
use super::tools::{count_arg, patient_id_arg, read_resource, search_bundle, text_arg};

/// Most items per summary section.
pub const MAX_SUMMARY_ITEMS: usize = 50;
/// Items per section when `max_items` is absent.
pub const DEFAULT_SUMMARY_ITEMS: usize = 10;
/// Most candidates `resolve` returns.
pub const MAX_CANDIDATES: usize = 10;
/// Candidates returned when `limit` is absent.
pub const DEFAULT_CANDIDATES: usize = 5;
/// Most patients one `resolve` search reads.
pub const RESOLVE_POOL: usize = 50;
/// Most words of a `resolve` query used.
pub const MAX_RESOLVE_WORDS: usize = 8;

fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["search"]["mode"] != "include" && e["resource"]["resourceType"] != "OperationOutcome"
        })
        .map(|e| e["resource"].clone())
        .collect()
}

fn when(r: &Value) -> Value {
    for k in [
        "effectiveDateTime",
        "onsetDateTime",
        "authoredOn",
        "recordedDate",
        "issued",
    ] {
        if let Some(d) = r[k].as_str() {
            return json!(d);
        }
    }
    if let Some(s) = r["period"]["start"]
        .as_str()
        .or(r["effectivePeriod"]["start"].as_str())
    {
        return json!(s);
    }
    Value::Null
}

/// One compact item: reference, what, value, status, when.
fn item(r: &Value) -> Value {
    let what = ["code", "medicationCodeableConcept", "type", "class"]
        .iter()
        .find_map(|k| match &r[*k] {
            Value::Array(a) => a.first().and_then(concept),
            v if v.is_object() => concept(v).or_else(|| {
                v["display"]
                    .as_str()
                    .or(v["code"].as_str())
                    .map(str::to_string)
            }),
            _ => None,
        })
        .or_else(|| {
            r["medicationReference"]["display"]
                .as_str()
                .map(str::to_string)
        });
    let status = r["status"]
        .as_str()
        .map(str::to_string)
        .or_else(|| concept(&r["clinicalStatus"]));
    let mut v = json!({
        "reference": format!("{}/{}", r["resourceType"].as_str().unwrap_or("?"), r["id"].as_str().unwrap_or("?")),
        "what": what, "status": status, "when": when(r),
    });
    if let Some(x) = value_text(r) {
        v["value"] = json!(x);
    }
    if let Some(c) = r["criticality"].as_str() {
        v["criticality"] = json!(c);
    }
    if let Some(d) = r["dosageInstruction"][0]["text"].as_str() {
        v["dosage"] = json!(d);
    }
    let reactions: Vec<String> = r["reaction"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|x| x["manifestation"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| concept(&m))
        .collect();
    if !reactions.is_empty() {
        v["reactions"] = json!(reactions);
    }
    v
}

/// A summary section: its key, the type searched, the search.
type Section = (&'static str, &'static str, Vec<(String, String)>);

pub async fn patient_summary(call: Call) -> ToolOutput {
    let id = match patient_id_arg(&call.args, "patient_id") {
        Ok(v) => v,
        Err(o) => return o,
    };
    let n = match count_arg(
        &call.args,
        "max_items",
        DEFAULT_SUMMARY_ITEMS,
        MAX_SUMMARY_ITEMS,
    ) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let patient = match read_resource(&call, "Patient", &id).await {
        Ok(p) => p,
        Err(o) => return o,
    };
    let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            ("patient".into(), id.clone()),
            ("_count".into(), n.to_string()),
        ];
        v.extend(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        v
    };
    let sections: [Section; 7] = [
        ("problems", "Condition", p(&[("clinical-status", "active")])),
        (
            "medications",
            "MedicationRequest",
            p(&[("status", "active")]),
        ),
        ("allergies", "AllergyIntolerance", p(&[])),
        (
            "vitals",
            "Observation",
            p(&[("category", "vital-signs"), ("_sort", "-date")]),
        ),
        (
            "labs",
            "Observation",
            p(&[("category", "laboratory"), ("_sort", "-date")]),
        ),
        ("encounters", "Encounter", p(&[("_sort", "-date")])),
        (
            "statements",
            "MedicationStatement",
            p(&[("status", "active")]),
        ),
    ];
    let mut out = json!({
        "patient": {
            "reference": format!("Patient/{id}"),
            "name": human_name(&patient["name"]),
            "gender": patient["gender"],
            "birthDate": patient["birthDate"],
            "deceased": patient.get("deceasedBoolean").or(patient.get("deceasedDateTime")),
        }
    });
    let mut notes: Vec<String> = Vec::new();
    let mut text = vec![summarize(&patient)];
    for (key, t, pairs) in sections {
        match search_bundle(&call, t, &pairs).await {
            Ok(Some(bundle)) => {
                let items: Vec<Value> = resources(&bundle).iter().map(item).collect();
                if let Some(total) = bundle["total"].as_u64() {
                    if total as usize > items.len() {
                        notes.push(format!("{key}: {} of {total} shown", items.len()));
                    }
                }
                text.push(format!("{key}: {}", items.len()));
                if key == "statements" {
                    if let Some(meds) = out["medications"].as_array_mut() {
                        meds.extend(items);
                    }
                } else {
                    out[key] = Value::Array(items);
                }
            }
            Ok(None) => {
                notes.push(format!("{key}: not permitted for this token"));
                if key != "statements" {
                    out[key] = json!([]);
                }
            }
            Err(e) => return ToolOutput::error(&e),
        }
    }
    out["notes"] = json!(notes);
    ToolOutput::ok(out, text.join("\n"))
}

/// What a `resolve` query asks for.
#[derive(Debug, Default)]
struct Wanted {
    names: Vec<String>,
    /// `1970`, `1970-03` or `1970-03-02`.
    birth: Option<String>,
    gender: Option<&'static str>,
    identifiers: Vec<String>,
}

fn is_date(w: &str) -> bool {
    let b = w.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    match b.len() {
        4 => digits(0..4),
        7 => digits(0..4) && b[4] == b'-' && digits(5..7),
        10 => digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10),
        _ => false,
    }
}

fn understand(q: &str) -> Wanted {
    let mut w = Wanted::default();
    let filler = [
        "born", "dob", "birth", "on", "in", "the", "patient", "named", "called", "aged", "mr",
        "mrs", "ms", "dr", "b", "mrn", "id", "and",
    ];
    for raw in q
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .take(MAX_RESOLVE_WORDS * 2)
    {
        let word =
            raw.trim_matches(|c: char| c == '.' || c == '"' || c == '\'' || c == '(' || c == ')');
        let lower = word.to_lowercase();
        if word.is_empty() || filler.contains(&lower.as_str()) {
            continue;
        }
        if is_date(word) {
            w.birth = Some(word.to_string());
        } else if matches!(lower.as_str(), "male" | "man" | "m") {
            w.gender = Some("male");
        } else if matches!(lower.as_str(), "female" | "woman" | "f") {
            w.gender = Some("female");
        } else if word.chars().any(|c| c.is_ascii_digit()) {
            w.identifiers.push(word.to_string());
        } else if w.names.len() < MAX_RESOLVE_WORDS {
            w.names.push(lower);
        }
    }
    w
}

fn name_parts(p: &Value) -> (Vec<String>, Vec<String>) {
    let mut family = Vec::new();
    let mut given = Vec::new();
    for n in p["name"].as_array().into_iter().flatten() {
        if let Some(f) = n["family"].as_str() {
            family.push(f.to_lowercase());
        }
        for g in n["given"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            given.push(g.to_lowercase());
        }
    }
    (family, given)
}

/// Score, reasons, and whether nothing asked for contradicts the candidate
/// (a "full" match).
fn score(p: &Value, w: &Wanted) -> (i32, Vec<String>, bool) {
    let (family, given) = name_parts(p);
    let mut s = 0;
    let mut full = true;
    let mut why = Vec::new();
    for n in &w.names {
        if family.contains(n) {
            s += 4;
            why.push(format!("family name '{n}'"));
        } else if given.contains(n) {
            s += 3;
            why.push(format!("given name '{n}'"));
        } else if family
            .iter()
            .chain(given.iter())
            .any(|x| x.starts_with(n.as_str()))
        {
            s += 1;
            why.push(format!("a name starts with '{n}'"));
        } else {
            s -= 2;
            full = false;
            why.push(format!("no name matches '{n}'"));
        }
    }
    if let Some(b) = &w.birth {
        match p["birthDate"].as_str() {
            Some(d) if d.starts_with(b.as_str()) => {
                s += 4;
                why.push(format!("born {d} matches {b}"));
            }
            Some(d) => {
                s -= 4;
                full = false;
                why.push(format!("born {d}, not {b}"));
            }
            None => {
                full = false;
                why.push("no birth date on record".into());
            }
        }
    }
    if let Some(g) = w.gender {
        if p["gender"] == g {
            s += 1;
            why.push(format!("gender {g}"));
        } else {
            s -= 1;
            full = false;
            why.push(format!("gender is not {g}"));
        }
    }
    for i in &w.identifiers {
        let hit = p["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["value"].as_str() == Some(i.as_str()));
        if hit {
            s += 6;
            why.push(format!("identifier {i}"));
        } else if w.names.is_empty() {
            full = false;
        }
    }
    (s, why, full)
}

pub async fn resolve(call: Call) -> ToolOutput {
    let q = match text_arg(&call.args, "query") {
        Ok(v) => v,
        Err(o) => return o,
    };
    let limit = match count_arg(&call.args, "limit", DEFAULT_CANDIDATES, MAX_CANDIDATES) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let w = understand(&q);
    let pool = RESOLVE_POOL.to_string();
    // Candidate searches: every name word (so a misspelt second name still
    // finds the first), each identifier; with no names, the birth date.
    let mut searches: Vec<Vec<(String, String)>> = Vec::new();
    for n in &w.names {
        searches.push(vec![
            ("name".into(), n.clone()),
            ("_count".into(), pool.clone()),
        ]);
    }
    for i in &w.identifiers {
        searches.push(vec![
            ("identifier".into(), i.clone()),
            ("_count".into(), pool.clone()),
        ]);
    }
    if searches.is_empty() {
        match &w.birth {
            Some(b) => searches.push(vec![
                ("birthdate".into(), b.clone()),
                ("_count".into(), pool.clone()),
            ]),
            None => return ToolOutput::invalid("say a name, a birth date or an identifier"),
        }
    }
    let mut seen: Vec<Value> = Vec::new();
    for pairs in &searches {
        match search_bundle(&call, "Patient", pairs).await {
            Ok(Some(b)) => {
                for r in resources(&b) {
                    if !seen.iter().any(|s| s["id"] == r["id"]) {
                        seen.push(r);
                    }
                }
            }
            Ok(None) => {
                return ToolOutput::error(&crate::service::ServiceError::forbidden(
                    "this token may not search Patients",
                ))
            }
            Err(e) => return ToolOutput::error(&e),
        }
    }
    let mut ranked: Vec<(i32, Vec<String>, bool, Value)> = seen
        .into_iter()
        .map(|p| {
            let (s, why, full) = score(&p, &w);
            (s, why, full, p)
        })
        .filter(|r| r.0 > 0)
        .collect();
    // Full matches first, then by score.
    ranked.sort_by_key(|r| (std::cmp::Reverse(r.2), std::cmp::Reverse(r.0)));
    let full: Vec<&Value> = ranked.iter().filter(|r| r.2).map(|r| &r.3).collect();
    let unique = (full.len() == 1).then(|| full[0]["id"].clone());
    let full_count = full.len();
    let kind = match full_count {
        0 => "none",
        1 => "unique",
        _ => "ambiguous",
    };
    let total = ranked.len();
    ranked.truncate(limit);
    let lines: Vec<String> = ranked
        .iter()
        .map(|(_, why, _, p)| format!("{} ({})", summarize(p), why.join(", ")))
        .collect();
    let candidates: Vec<Value> = ranked
        .iter()
        .map(|(s, why, full, p)| {
            json!({"id": p["id"], "reference": format!("Patient/{}", p["id"].as_str().unwrap_or("")),
                   "name": human_name(&p["name"]), "birthDate": p["birthDate"], "gender": p["gender"],
                   "score": s, "fullMatch": full, "why": why})
        })
        .collect();
    let text = match kind {
        "unique" => format!(
            "one patient matches everything given:\n{}",
            lines.join("\n")
        ),
        "ambiguous" => format!(
            "{full_count} patients match everything given; ask which one is meant:\n{}",
            lines.join("\n")
        ),
        _ if total == 0 => format!("no patient matches \"{q}\""),
        _ => format!(
            "no patient matches everything given; near misses:\n{}",
            lines.join("\n")
        ),
    };
    let mut out = json!({"match": kind, "candidates": candidates, "total": total,
                         "fullMatches": full_count});
    if let Some(id) = unique {
        out["id"] = id;
    }
    ToolOutput::ok(out, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_is_understood() {
        let w = understand("John Doe born 1970");
        assert_eq!(w.names, vec!["john", "doe"]);
        assert_eq!(w.birth.as_deref(), Some("1970"));
        let w = understand("Mrs. Jane Smith, DOB 1980-02-03, female, MRN 12345");
        assert_eq!(w.names, vec!["jane", "smith"]);
        assert_eq!(w.birth.as_deref(), Some("1980-02-03"));
        assert_eq!(w.gender, Some("female"));
        assert_eq!(w.identifiers, vec!["12345"]);
        assert!(understand(&"x ".repeat(100)).names.len() <= MAX_RESOLVE_WORDS);
    }

    #[test]
    fn candidates_are_scored_with_reasons() {
        let w = understand("John Doe born 1970");
        let exact =
            json!({"name": [{"family": "Doe", "given": ["John"]}], "birthDate": "1970-01-02"});
        let other_year =
            json!({"name": [{"family": "Doe", "given": ["John"]}], "birthDate": "1985-01-02"});
        let other_name =
            json!({"name": [{"family": "Roe", "given": ["Jane"]}], "birthDate": "1970-05-05"});
        let (a, why, full_a) = score(&exact, &w);
        let (b, _, full_b) = score(&other_year, &w);
        let (c, _, _) = score(&other_name, &w);
        assert!(a > b && b > 0 && c <= 0, "{a} {b} {c}");
        assert!(full_a && !full_b);
        assert!(
            why.iter().any(|r| r.contains("family name 'doe'")),
            "{why:?}"
        );
        assert!(why.iter().any(|r| r.contains("matches 1970")), "{why:?}");
    }
}
