//! The HL7 FHIRPath R4 conformance suite (vendored in `tests/data/fhirpath-r4`)
//! run against the engine, with inputs converted by `fhir::format::xml_to_json`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::value::Item;
use super::{evaluate_items, Expression};

const SUITE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fhirpath-r4");
/// The suite's cases (a 712th is commented out in the file).
const SUITE_CASES: usize = 711;
/// At least 90 % must pass.
const MIN_PASSED: usize = 641;

/// A parsed XML element (just enough XML for the suite file).
#[derive(Debug, Default)]
struct XmlElem {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<XmlElem>,
    text: String,
}

impl XmlElem {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn child(&self, name: &str) -> Option<&XmlElem> {
        self.children.iter().find(|c| c.name == name)
    }
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Parses elements, attributes and text; skips the prolog and comments.
fn parse_xml(src: &str) -> Result<XmlElem, String> {
    let mut stack: Vec<XmlElem> = vec![XmlElem::default()];
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            rest = &after[end + 3..];
        } else if let Some(after) = rest.strip_prefix("<?") {
            let end = after.find("?>").ok_or("unterminated prolog")?;
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>').ok_or("unterminated end tag")?;
            let done = stack.pop().ok_or("unbalanced")?;
            if done.name != after[..end].trim() {
                return Err(format!("mismatched </{}>", &after[..end]));
            }
            stack.last_mut().ok_or("unbalanced")?.children.push(done);
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('<') {
            let end = after.find('>').ok_or("unterminated tag")?;
            let mut tag = &after[..end];
            let self_closing = tag.ends_with('/');
            if self_closing {
                tag = &tag[..tag.len() - 1];
            }
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let mut elem = XmlElem {
                name: tag[..name_end].to_string(),
                ..XmlElem::default()
            };
            let mut attrs = tag[name_end..].trim();
            while let Some(eq) = attrs.find('=') {
                let key = attrs[..eq].trim().to_string();
                let value_part = attrs[eq + 1..].trim_start();
                let quote = value_part.chars().next().ok_or("bad attribute")?;
                let close = value_part[1..].find(quote).ok_or("bad attribute")?;
                elem.attrs
                    .push((key, unescape_xml(&value_part[1..1 + close])));
                attrs = value_part[close + 2..].trim_start();
            }
            if self_closing {
                stack.last_mut().ok_or("unbalanced")?.children.push(elem);
            } else {
                stack.push(elem);
            }
            rest = &after[end + 1..];
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            stack
                .last_mut()
                .ok_or("unbalanced")?
                .text
                .push_str(&unescape_xml(&rest[..end]));
            rest = &rest[end..];
        }
    }
    let mut doc = stack.pop().ok_or("unbalanced")?;
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    doc.children.pop().ok_or_else(|| "empty document".into())
}

struct Case {
    group: String,
    name: String,
    input_file: String,
    expression: String,
    invalid: bool,
    strict: bool,
    predicate: bool,
    outputs: Vec<(String, String)>,
}

fn load_cases(dir: &Path) -> Vec<Case> {
    let path = dir.join("tests-fhir-r4.xml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let root = parse_xml(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()));
    let mut cases = Vec::new();
    for group in root.children.iter().filter(|g| g.name == "group") {
        for test in group.children.iter().filter(|t| t.name == "test") {
            let expr = test.child("expression");
            cases.push(Case {
                group: group.attr("name").unwrap_or_default().to_string(),
                name: test.attr("name").unwrap_or_default().to_string(),
                input_file: test.attr("inputfile").unwrap_or_default().to_string(),
                expression: expr.map(|e| e.text.trim().to_string()).unwrap_or_default(),
                invalid: expr.and_then(|e| e.attr("invalid")).is_some(),
                strict: test.attr("mode") == Some("strict"),
                predicate: test.attr("predicate") == Some("true"),
                outputs: test
                    .children
                    .iter()
                    .filter(|o| o.name == "output")
                    .map(|o| {
                        (
                            o.attr("type").unwrap_or_default().to_string(),
                            o.text.clone(),
                        )
                    })
                    .collect(),
            });
        }
    }
    cases
}

/// `Ok(())` when the case passes, else the failure reason.
fn run_case(
    case: &Case,
    inputs: &HashMap<String, Result<serde_json::Value, String>>,
) -> Result<(), String> {
    let input = match inputs.get(&case.input_file) {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(format!("input {} not convertible: {e}", case.input_file)),
        None => return Err(format!("input {} missing", case.input_file)),
    };
    let expr = match Expression::parse(&case.expression) {
        Ok(e) => e,
        Err(_) if case.invalid => return Ok(()),
        Err(e) => return Err(format!("parse error: {e}")),
    };
    let result = match evaluate_items(&expr, input, case.strict) {
        Ok(_) if case.invalid => return Err("expected an error".into()),
        Ok(r) => r,
        Err(_) if case.invalid => return Ok(()),
        Err(e) => return Err(format!("evaluation error: {e}")),
    };
    let result = if case.predicate {
        vec![Item::Bool(!result.is_empty())]
    } else {
        result
    };
    let got: Vec<(String, String)> = result
        .iter()
        .map(|i| {
            let ty = i.type_name().unwrap_or("?").to_string();
            let text = i
                .display()
                .map_or_else(|| "<complex>".to_string(), |t| t.into_owned());
            (ty, text)
        })
        .collect();
    if got == case.outputs {
        Ok(())
    } else {
        Err("wrong result".into())
    }
}

fn suite_dir() -> PathBuf {
    let dir = PathBuf::from(SUITE_DIR);
    assert!(
        dir.join("tests-fhir-r4.xml").is_file(),
        "the HL7 FHIRPath R4 suite is expected at {} (tests-fhir-r4.xml and input/)",
        dir.display()
    );
    dir
}

#[test]
fn hl7_fhirpath_r4_suite() {
    let dir = suite_dir();
    let cases = load_cases(&dir);
    let mut inputs = HashMap::new();
    for case in &cases {
        inputs.entry(case.input_file.clone()).or_insert_with(|| {
            let path = dir.join("input").join(&case.input_file);
            let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
            crate::fhir::format::xml_to_json(&bytes).map_err(|e| format!("{e:?}"))
        });
    }
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut passed = 0;
    for case in &cases {
        match run_case(case, &inputs) {
            Ok(()) => passed += 1,
            Err(reason) => {
                let label = if case.name.is_empty() {
                    format!("{}: {}", case.group, case.expression)
                } else {
                    case.name.clone()
                };
                failures.entry(reason).or_default().push(label);
            }
        }
    }
    println!("fhirpath conformance: {passed}/{} passed", cases.len());
    for (reason, names) in &failures {
        println!("  {reason} ({}): {}", names.len(), names.join(", "));
    }
    assert_eq!(cases.len(), SUITE_CASES, "the suite file changed");
    assert!(
        passed >= MIN_PASSED,
        "fhirpath conformance: {passed}/{} passed, need {MIN_PASSED}",
        cases.len()
    );
}

#[test]
fn xml_reader_handles_the_suite_shapes() {
    let doc =
        parse_xml("<?xml version=\"1.0\"?><!-- c --><a x=\"1 &lt; 2\"><b/><c>t &amp; u</c></a>")
            .expect("parses");
    assert_eq!(doc.attr("x"), Some("1 < 2"));
    assert_eq!(doc.children.len(), 2);
    assert_eq!(doc.child("c").map(|c| c.text.as_str()), Some("t & u"));
}
