//! Patient Consent (scope `patient-privacy`) as a decision on one access:
//! nested provisions (an exception nested in a provision reverses it; among
//! provisions that apply at one level, deny wins), matched on `actor`,
//! `purpose`, `period`, `class`, `code`, `dataPeriod`, `securityLabel`,
//! `action` and `data`. Several active Consents of one patient: deny wins.

use serde_json::Value;

use super::Principal;
use crate::search::dates;
use crate::search::definitions::Registry;
use crate::search::index::extract_params;

/// `Consent.scope` of privacy consents.
pub const PRIVACY_SCOPE: &str = "patient-privacy";
/// Most nested provision levels evaluated (deeper ones are ignored as
/// malformed and the Consent denies).
pub const MAX_PROVISION_DEPTH: usize = 8;

/// What the consent says about one access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentVerdict {
    Permit,
    Deny,
}

/// The access being decided: who, why, what (and when).
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub principal: &'a Principal,
    /// Purposes of use asserted for the request (v3-ActReason codes).
    pub purposes: &'a [String],
    /// `access` for reads, `correct` for writes (consentaction codes).
    pub action: &'a str,
    pub res_type: &'a str,
    pub resource: &'a Value,
    pub now_ms: i64,
}

fn codes(v: &Value) -> impl Iterator<Item = (&str, &str)> {
    v.as_array().into_iter().flatten().map(|c| {
        (
            c["system"].as_str().unwrap_or_default(),
            c["code"].as_str().unwrap_or_default(),
        )
    })
}

fn in_period(period: &Value, t: i64) -> bool {
    let start = period["start"].as_str().and_then(dates::range).map(|r| r.0);
    let end = period["end"].as_str().and_then(dates::range).map(|r| r.1);
    start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e)
}

/// Does `actor` (a provision's `actor` list) name this principal?
fn actor_matches(actors: &Value, p: &Principal) -> bool {
    actors.as_array().into_iter().flatten().any(|a| {
        let r = &a["reference"];
        let reference = r["reference"].as_str();
        let ident = r["identifier"]["value"].as_str();
        let by_ref = reference.is_some() && reference == p.fhir_user.as_deref();
        let by_client = ident.is_some() && ident == p.client_id.as_deref();
        let by_user = ident.is_some() && ident == p.username.as_deref();
        let by_role = a["role"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["code"].as_str().is_some() && c["code"].as_str() == p.role.as_deref())
            || (a["role"]["text"].as_str().is_some()
                && a["role"]["text"].as_str() == p.role.as_deref());
        // A role-only actor applies to everyone in the role; a referenced
        // actor to that person, app or user.
        let has_ref = reference.is_some() || ident.is_some();
        (has_ref && (by_ref || by_client || by_user)) || (!has_ref && by_role)
    })
}

/// The resource's clinical date range, from its `date` search parameter.
fn data_dates(reg: &Registry, resource: &Value) -> Vec<(i64, i64)> {
    let rows = extract_params(reg, resource, &["date".to_string()]);
    rows.dates.iter().map(|d| (d.low_ms, d.high_ms)).collect()
}

/// True when every criterion the provision states holds for `a`.
fn applies(reg: &Registry, prov: &Value, a: &Access<'_>) -> bool {
    if prov.get("period").is_some() && !in_period(&prov["period"], a.now_ms) {
        return false;
    }
    if prov.get("actor").is_some() && !actor_matches(&prov["actor"], a.principal) {
        return false;
    }
    if prov.get("action").is_some() {
        let wanted = prov["action"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|cc| codes(&cc["coding"]).any(|(_, c)| c == a.action));
        if !wanted {
            return false;
        }
    }
    if prov.get("purpose").is_some()
        && !codes(&prov["purpose"]).any(|(_, c)| a.purposes.iter().any(|p| p == c))
    {
        return false;
    }
    if prov.get("class").is_some() && !codes(&prov["class"]).any(|(_, c)| c == a.res_type) {
        return false;
    }
    if prov.get("securityLabel").is_some() {
        let labels: Vec<(&str, &str)> = codes(&a.resource["meta"]["security"]).collect();
        if !codes(&prov["securityLabel"]).any(|l| labels.contains(&l)) {
            return false;
        }
    }
    if prov.get("code").is_some() {
        let rows = extract_params(reg, a.resource, &["code".to_string()]);
        let matched = prov["code"].as_array().into_iter().flatten().any(|cc| {
            codes(&cc["coding"]).any(|(s, c)| {
                rows.tokens.iter().any(|t| {
                    t.code.as_deref() == Some(c) && (s.is_empty() || t.system.as_deref() == Some(s))
                })
            })
        });
        if !matched {
            return false;
        }
    }
    if prov.get("dataPeriod").is_some() {
        let p = &prov["dataPeriod"];
        let start = p["start"].as_str().and_then(dates::range).map(|r| r.0);
        let end = p["end"].as_str().and_then(dates::range).map(|r| r.1);
        let inside = data_dates(reg, a.resource)
            .iter()
            .any(|(lo, hi)| start.is_none_or(|s| *hi >= s) && end.is_none_or(|e| *lo <= e));
        if !inside {
            return false;
        }
    }
    if prov.get("data").is_some() {
        let me = format!(
            "{}/{}",
            a.res_type,
            a.resource["id"].as_str().unwrap_or_default()
        );
        let named = prov["data"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["reference"]["reference"].as_str() == Some(me.as_str()));
        if !named {
            return false;
        }
    }
    true
}

fn verdict_of(prov: &Value, inherited: ConsentVerdict) -> ConsentVerdict {
    match prov["type"].as_str() {
        Some("deny") => ConsentVerdict::Deny,
        Some("permit") => ConsentVerdict::Permit,
        _ => inherited,
    }
}

/// The verdict of a provision that applies: its own type, unless nested
/// provisions that apply say otherwise (deny wins among them).
fn evaluate(
    reg: &Registry,
    prov: &Value,
    a: &Access<'_>,
    inherited: ConsentVerdict,
    depth: usize,
) -> ConsentVerdict {
    let own = verdict_of(prov, inherited);
    if depth >= MAX_PROVISION_DEPTH {
        return ConsentVerdict::Deny;
    }
    let mut nested: Option<ConsentVerdict> = None;
    for child in prov["provision"].as_array().into_iter().flatten() {
        if applies(reg, child, a) {
            let v = evaluate(reg, child, a, own, depth + 1);
            nested = Some(match (nested, v) {
                (Some(ConsentVerdict::Deny), _) | (_, ConsentVerdict::Deny) => ConsentVerdict::Deny,
                _ => ConsentVerdict::Permit,
            });
        }
    }
    nested.unwrap_or(own)
}

/// True for an active Consent with scope `patient-privacy` in force at `now`.
pub fn in_force(consent: &Value, now_ms: i64) -> bool {
    consent["status"] == "active"
        && codes(&consent["scope"]["coding"]).any(|(_, c)| c == PRIVACY_SCOPE)
        && (consent["provision"].get("period").is_none()
            || in_period(&consent["provision"]["period"], now_ms))
}

/// The verdict of one Consent on an access. A root provision's criteria
/// other than `period` scope it: a root that does not apply leaves the
/// access to `default`.
pub fn decide(
    reg: &Registry,
    consent: &Value,
    a: &Access<'_>,
    default: ConsentVerdict,
) -> ConsentVerdict {
    let root = &consent["provision"];
    if !root.is_object() || !applies(reg, root, a) {
        return default;
    }
    evaluate(reg, root, a, default, 0)
}

/// The verdict of all of a patient's Consents (deny wins); `default` when
/// there are none.
pub fn decide_all(
    reg: &Registry,
    consents: &[Value],
    a: &Access<'_>,
    default: ConsentVerdict,
) -> ConsentVerdict {
    if consents.is_empty() {
        return default;
    }
    let mut out = ConsentVerdict::Permit;
    for c in consents {
        if decide(reg, c, a, default) == ConsentVerdict::Deny {
            out = ConsentVerdict::Deny;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PrincipalKind;
    use serde_json::json;

    fn who(fhir_user: &str, role: &str) -> Principal {
        Principal {
            kind: PrincipalKind::Token,
            fhir_user: Some(fhir_user.into()),
            role: Some(role.into()),
            client_id: Some("app".into()),
            ..Principal::open()
        }
    }

    fn check(consent: &Value, p: &Principal, purposes: &[String], res: &Value) -> ConsentVerdict {
        let reg = crate::search::definitions::core();
        let a = Access {
            principal: p,
            purposes,
            action: "access",
            res_type: res["resourceType"].as_str().unwrap(),
            resource: res,
            now_ms: 1_800_000_000_000,
        };
        decide_all(
            &reg,
            std::slice::from_ref(consent),
            &a,
            ConsentVerdict::Permit,
        )
    }

    fn lab(code: &str, date: &str) -> Value {
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": date, "subject": {"reference": "Patient/p1"}})
    }

    #[test]
    fn deny_all_except_my_doctor_but_never_hiv_results() {
        // Deny everyone; permit Dr Alice; but deny HIV tests even to her.
        let consent = json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "provision": {"type": "deny", "provision": [{
            "type": "permit",
            "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/alice"}}],
            "provision": [{"type": "deny", "code": [{"coding": [{"system": "http://loinc.org", "code": "75622-1"}]}]}]
        }]}});
        let alice = who("Practitioner/alice", "clinician");
        let bob = who("Practitioner/bob", "clinician");
        assert_eq!(
            check(&consent, &alice, &[], &lab("718-7", "2026-01-01")),
            ConsentVerdict::Permit
        );
        assert_eq!(
            check(&consent, &alice, &[], &lab("75622-1", "2026-01-01")),
            ConsentVerdict::Deny
        );
        assert_eq!(
            check(&consent, &bob, &[], &lab("718-7", "2026-01-01")),
            ConsentVerdict::Deny
        );
    }

    #[test]
    fn purpose_class_data_period_and_labels() {
        let consent = json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "provision": {"type": "permit", "provision": [
            {"type": "deny", "purpose": [{"code": "HRESCH"}]},
            {"type": "deny", "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}]},
            {"type": "deny", "dataPeriod": {"end": "2010-12-31"}},
            {"type": "deny", "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}
        ]}});
        let alice = who("Practitioner/alice", "clinician");
        let recent = lab("718-7", "2026-01-01");
        assert_eq!(
            check(&consent, &alice, &[], &recent),
            ConsentVerdict::Permit
        );
        assert_eq!(
            check(&consent, &alice, &["HRESCH".into()], &recent),
            ConsentVerdict::Deny
        );
        assert_eq!(
            check(&consent, &alice, &[], &lab("718-7", "2009-05-01")),
            ConsentVerdict::Deny
        );
        let cond = json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}});
        assert_eq!(check(&consent, &alice, &[], &cond), ConsentVerdict::Deny);
        let mut restricted = recent.clone();
        restricted["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]});
        assert_eq!(
            check(&consent, &alice, &[], &restricted),
            ConsentVerdict::Deny
        );
    }

    #[test]
    fn inactive_or_expired_consents_are_not_in_force() {
        let mut c = json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"code": "patient-privacy"}]},
            "provision": {"type": "deny", "period": {"end": "2020-01-01"}}});
        assert!(!in_force(&c, 1_800_000_000_000));
        c["provision"]["period"] = json!({"start": "2020-01-01"});
        assert!(in_force(&c, 1_800_000_000_000));
        c["status"] = json!("inactive");
        assert!(!in_force(&c, 1_800_000_000_000));
    }
}
