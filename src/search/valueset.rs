//! Expanding a ValueSet for `:in` / `:not-in`: its `compose` (explicit
//! concepts, or whole code systems) or its `expansion`, from a stored
//! ValueSet or one vendored in `fhir-profiles/valuesets.json`.

use std::sync::LazyLock;

use serde_json::Value;

/// Most codes one expansion may hold.
pub const MAX_VALUESET_CODES: usize = 10_000;

/// One member of an expansion: a code in a system, or (code `None`) every
/// code of the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub system: String,
    pub code: Option<String>,
}

static VENDORED: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let bundle: Value = serde_json::from_str(include_str!("../../fhir-profiles/valuesets.json"))
        .unwrap_or_default();
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
});

/// The vendored ValueSet with canonical `url` (a `|version` suffix is ignored).
pub fn vendored(url: &str) -> Option<&'static Value> {
    let url = url.split('|').next().unwrap_or(url);
    VENDORED.iter().find(|v| v["url"].as_str() == Some(url))
}

/// Expands `vs`. Errors name what cannot be expanded without a terminology server.
pub fn expand(vs: &Value) -> Result<Vec<Member>, String> {
    let mut out = Vec::new();
    if let Some(contains) = vs.pointer("/expansion/contains").and_then(Value::as_array) {
        collect_contains(contains, &mut out);
        return Ok(out);
    }
    let compose = vs
        .get("compose")
        .ok_or("the ValueSet has neither compose nor expansion")?;
    if compose.get("exclude").is_some() {
        return Err("ValueSets with compose.exclude are not supported".into());
    }
    for inc in compose["include"].as_array().into_iter().flatten() {
        if inc.get("filter").is_some() || inc.get("valueSet").is_some() {
            return Err(
                "ValueSets with filters or imported ValueSets need a terminology server".into(),
            );
        }
        let system = inc["system"]
            .as_str()
            .ok_or("compose.include without a system")?
            .to_string();
        match inc["concept"].as_array() {
            Some(concepts) => {
                for c in concepts {
                    if let Some(code) = c["code"].as_str() {
                        out.push(Member {
                            system: system.clone(),
                            code: Some(code.to_string()),
                        });
                    }
                }
            }
            None => out.push(Member { system, code: None }),
        }
        if out.len() > MAX_VALUESET_CODES {
            return Err(format!(
                "the expansion has more than {MAX_VALUESET_CODES} codes"
            ));
        }
    }
    Ok(out)
}

fn collect_contains(items: &[Value], out: &mut Vec<Member>) {
    for c in items {
        if out.len() > MAX_VALUESET_CODES {
            return;
        }
        if let (Some(s), Some(code)) = (c["system"].as_str(), c["code"].as_str()) {
            out.push(Member {
                system: s.to_string(),
                code: Some(code.to_string()),
            });
        }
        if let Some(nested) = c["contains"].as_array() {
            collect_contains(nested, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_sets_expand() {
        let vs = vendored("http://hl7.org/fhir/ValueSet/observation-vitalsignresult").unwrap();
        let members = expand(vs).unwrap();
        assert!(members.iter().any(|m| m.code.as_deref() == Some("8867-4")));
        let gender =
            expand(vendored("http://hl7.org/fhir/ValueSet/administrative-gender").unwrap())
                .unwrap();
        assert_eq!(
            gender,
            vec![Member {
                system: "http://hl7.org/fhir/administrative-gender".into(),
                code: None
            }]
        );
    }
}
