//! Builds one AuditEvent (IHE Basic Audit Log Patterns, BALP) from what the
//! service knows about an interaction: who (user, client app, network
//! address), what (type, subtype, action, outcome), on which resources and
//! patients, the query of a search, and the request id.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{json, Value};

use crate::fhir::instant::{format_instant, Millis};
use crate::policy::{Principal, PrincipalKind};
use crate::store::AuditRow;

/// Most resources named in one AuditEvent (a search page holds at most
/// `max_count` matches plus includes); the rest are counted in `outcomeDesc`.
pub const MAX_AUDIT_ENTITIES: usize = 2_000;
/// Most patients named in one AuditEvent.
pub const MAX_AUDIT_PATIENTS: usize = 2_000;

const AUDIT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
/// Vesta's own subtypes (authorization events, operations, MCP tools).
pub const VESTA_EVENT: &str = "urn:vesta:audit-event";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const BALP_ENTITY: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
/// `Identifier.system` of client applications (OAuth `client_id`).
pub const CLIENT_ID_SYSTEM: &str = "urn:vesta:client-id";
/// `Identifier.system` of sign-in user names.
pub const USERNAME_SYSTEM: &str = "urn:vesta:username";

/// What kind of event: a FHIR interaction, an operation, or an
/// authorization event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A RESTful interaction; the code is from `restful-interaction`
    /// (`read`, `search-type`, `transaction`, …).
    Rest(&'static str),
    /// `$name` operations and MCP tools (`urn:vesta:audit-event` codes).
    Operation(String),
    /// Sign-in and token events (`login`, `token-issued`, …).
    Auth(&'static str),
}

/// What was done: the AuditEvent `action` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }
}

/// The facts of one event, gathered by the service.
#[derive(Debug, Clone)]
pub struct AuditFacts {
    pub kind: EventKind,
    pub action: Action,
    /// HTTP status of the answer (or 200 for a success without one).
    pub status: u16,
    /// Why it failed (the OperationOutcome's first diagnostics).
    pub detail: Option<String>,
    /// `Type/id` or `Type/id/_history/v` of the resources concerned.
    pub entities: Vec<String>,
    /// Ids of the patients concerned.
    pub patients: BTreeSet<String>,
    /// The query of a search (`Type?params`), stored base64 as BALP asks.
    pub query: Option<String>,
    /// Set when a break-glass (emergency) purpose of use was asserted.
    pub break_glass: bool,
}

impl AuditFacts {
    pub fn new(kind: EventKind, action: Action) -> AuditFacts {
        AuditFacts {
            kind,
            action,
            status: 200,
            detail: None,
            entities: Vec::new(),
            patients: BTreeSet::new(),
            query: None,
            break_glass: false,
        }
    }

    /// Names a resource (bounded by [`MAX_AUDIT_ENTITIES`]).
    pub fn entity(&mut self, reference: String) {
        if self.entities.len() < MAX_AUDIT_ENTITIES && !self.entities.contains(&reference) {
            self.entities.push(reference);
        }
    }

    /// Names a patient (bounded by [`MAX_AUDIT_PATIENTS`]).
    pub fn patient(&mut self, id: &str) {
        if self.patients.len() < MAX_AUDIT_PATIENTS && !id.is_empty() {
            self.patients.insert(id.to_string());
        }
    }

    /// `0` success, `4` minor failure (refused, 4xx), `8` serious failure (5xx).
    pub fn outcome_code(&self) -> &'static str {
        match self.status {
            0..=399 => "0",
            400..=499 => "4",
            _ => "8",
        }
    }
}

/// Who asked, and through which door.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub principal: &'a Principal,
    /// The caller's network address.
    pub peer: Option<&'a str>,
    pub request_id: &'a str,
    /// `rest`, `mcp`, `cli`, `auth`.
    pub door: &'a str,
    /// The MCP tool the request came through, if any.
    pub tool: Option<&'a str>,
    /// The server's FHIR base (its network identity).
    pub server: &'a str,
    /// Purposes of use the request asserted (v3-ActReason codes).
    pub purposes: &'a [String],
}

fn coding(system: &str, code: &str, display: Option<&str>) -> Value {
    match display {
        Some(d) => json!({"system": system, "code": code, "display": d}),
        None => json!({"system": system, "code": code}),
    }
}

fn type_and_subtype(kind: &EventKind) -> (Value, Value) {
    match kind {
        EventKind::Rest(code) => (
            coding(AUDIT_TYPE, "rest", Some("RESTful Operation")),
            coding(RESTFUL, code, None),
        ),
        EventKind::Operation(name) => (
            coding(AUDIT_TYPE, "rest", Some("RESTful Operation")),
            coding(VESTA_EVENT, name, None),
        ),
        EventKind::Auth(code) => {
            let sub = if *code == "login" {
                coding(DCM, "110122", Some("Login"))
            } else {
                coding(VESTA_EVENT, code, None)
            };
            (coding(DCM, "110114", Some("User Authentication")), sub)
        }
    }
}

fn system_code(c: &Value) -> String {
    format!(
        "{}|{}",
        c["system"].as_str().unwrap_or_default(),
        c["code"].as_str().unwrap_or_default()
    )
}

/// The agents: the user (when there is one), the client app, the server.
fn agents(a: &Actor<'_>, refs: &mut Vec<(&'static str, String)>) -> Vec<Value> {
    let p = a.principal;
    let mut out = Vec::new();
    let has_user = p.username.is_some() || p.fhir_user.is_some();
    let network = a
        .peer
        .map(|addr| json!({"address": addr, "type": "2"}))
        .unwrap_or(Value::Null);
    if has_user {
        let mut who = serde_json::Map::new();
        if let Some(fu) = &p.fhir_user {
            who.insert("reference".into(), json!(fu));
            refs.push(("agent", fu.clone()));
        }
        if let Some(u) = &p.username {
            who.insert(
                "identifier".into(),
                json!({"system": USERNAME_SYSTEM, "value": u}),
            );
            refs.push(("agent", u.clone()));
        }
        let mut user = json!({
            "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", Some("information recipient"))]},
            "who": who,
            "requestor": true,
        });
        if let Some(role) = &p.role {
            user["role"] = json!([{"text": role}]);
        }
        if !a.purposes.is_empty() {
            user["purposeOfUse"] = Value::Array(
                a.purposes
                    .iter()
                    .map(|code| json!({"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", code, None)]}))
                    .collect(),
            );
        }
        out.push(user);
    }
    let client = match (p.kind, &p.client_id) {
        (_, Some(id)) => {
            refs.push(("agent", id.clone()));
            json!({"identifier": {"system": CLIENT_ID_SYSTEM, "value": id}})
        }
        (PrincipalKind::Open, None) => json!({"display": "local operator (no authorization)"}),
        _ => json!({"display": "anonymous (no valid token)"}),
    };
    let mut app = json!({
        "type": {"coding": [coding(DCM, "110153", Some("Source Role ID"))]},
        "who": client,
        "requestor": !has_user,
    });
    if !network.is_null() {
        app["network"] = network;
    }
    out.push(app);
    out.push(json!({
        "type": {"coding": [coding(DCM, "110152", Some("Destination Role ID"))]},
        "who": {"display": "Vesta"},
        "requestor": false,
        "network": {"address": a.server, "type": "5"},
    }));
    out
}

/// The AuditEvent for `facts`, recorded at `now`, as a row to append.
pub fn build(facts: &AuditFacts, actor: &Actor<'_>, now: Millis) -> AuditRow {
    // Time-ordered (UUIDv7), so the audit_log id index grows at its end
    // instead of dirtying a random page for every record.
    let id = uuid::Uuid::now_v7().to_string();
    let (type_coding, subtype) = type_and_subtype(&facts.kind);
    let mut refs: Vec<(&'static str, String)> = Vec::new();
    let agent = agents(actor, &mut refs);
    let mut entity: Vec<Value> = Vec::new();
    for p in &facts.patients {
        let reference = format!("Patient/{p}");
        refs.push(("patient", reference.clone()));
        entity.push(json!({
            "what": {"reference": reference},
            "type": coding(ENTITY_TYPE, "1", Some("Person")),
            "role": coding(OBJECT_ROLE, "1", Some("Patient")),
        }));
    }
    for e in &facts.entities {
        let plain: String = e.split("/_history/").next().unwrap_or(e).to_string();
        refs.push(("entity", plain));
        entity.push(json!({
            "what": {"reference": e},
            "type": coding(ENTITY_TYPE, "2", Some("System Object")),
            "role": coding(OBJECT_ROLE, "4", Some("Domain Resource")),
        }));
    }
    if let Some(q) = &facts.query {
        entity.push(json!({
            "type": coding(ENTITY_TYPE, "2", Some("System Object")),
            "role": coding(OBJECT_ROLE, "24", Some("Query")),
            "query": base64::engine::general_purpose::STANDARD.encode(q.as_bytes()),
        }));
    }
    if !actor.request_id.is_empty() {
        entity.push(json!({
            "what": {"identifier": {"value": actor.request_id}},
            "type": coding(BALP_ENTITY, "XrequestId", Some("X-Request-Id")),
        }));
    }
    let outcome = facts.outcome_code();
    let mut desc = format!("{} via {}", facts.status, actor.door);
    if let Some(t) = actor.tool {
        desc.push_str(" tool ");
        desc.push_str(t);
    }
    if let Some(d) = &facts.detail {
        desc.push_str(": ");
        desc.push_str(d);
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "meta": {"profile": [balp_profile(facts)]},
        "type": type_coding,
        "subtype": [subtype],
        "action": facts.action.code(),
        "recorded": format_instant(now),
        "outcome": outcome,
        "outcomeDesc": desc,
        "agent": agent,
        "source": {
            "observer": {"display": "Vesta"},
            "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", Some("Application Server"))],
        },
    });
    if facts.break_glass {
        event["purposeOfEvent"] = json!([{"coding": [coding(
            "http://terminology.hl7.org/CodeSystem/v3-ActReason", "BTG", Some("break the glass"))]}]);
        event["meta"]["security"] = json!([coding(
            "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "BTG",
            Some("break the glass")
        )]);
    }
    if !entity.is_empty() {
        event["entity"] = Value::Array(entity);
    }
    for (kind, c) in [("type", &type_coding), ("subtype", &subtype)] {
        refs.push((kind, system_code(c)));
        refs.push((kind, c["code"].as_str().unwrap_or_default().to_string()));
    }
    AuditRow {
        id,
        recorded_ms: now,
        type_code: system_code(&type_coding),
        subtype: system_code(&subtype),
        action: facts.action.code().to_string(),
        outcome: outcome.to_string(),
        content: event.to_string(),
        refs,
    }
}

macro_rules! balp {
    ($name:literal) => {
        concat!(
            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.",
            $name
        )
    };
}

/// The BALP profile an event follows.
fn balp_profile(facts: &AuditFacts) -> &'static str {
    let patient = !facts.patients.is_empty();
    let query = matches!(&facts.kind, EventKind::Rest(c) if c.starts_with("search"));
    match (&facts.kind, facts.action, patient) {
        (EventKind::Auth(_), _, _) => balp!("SAMLaccessTokenUse.Minimal"),
        (_, Action::Create, true) => balp!("PatientCreate"),
        (_, Action::Create, false) => balp!("Create"),
        (_, Action::Update, true) => balp!("PatientUpdate"),
        (_, Action::Update, false) => balp!("Update"),
        (_, Action::Delete, true) => balp!("PatientDelete"),
        (_, Action::Delete, false) => balp!("Delete"),
        _ if query && patient => balp!("PatientQuery"),
        _ if query => balp!("Query"),
        (_, _, true) => balp!("PatientRead"),
        (_, _, false) => balp!("Read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_read_is_a_valid_r4_audit_event() {
        let principal = Principal {
            kind: PrincipalKind::Token,
            client_id: Some("app".into()),
            username: Some("alice".into()),
            fhir_user: Some("Practitioner/dr-alice".into()),
            role: Some("clinician".into()),
            ..Principal::open()
        };
        let mut f = AuditFacts::new(EventKind::Rest("search-type"), Action::Read);
        f.patient("p1");
        f.entity("Observation/o1/_history/2".into());
        f.query = Some("Observation?subject=Patient/p1".into());
        let actor = Actor {
            principal: &principal,
            peer: Some("127.0.0.1"),
            request_id: "req-1",
            door: "rest",
            tool: None,
            server: "http://localhost/fhir",
            purposes: &["TREAT".to_string()],
        };
        let row = build(&f, &actor, 1_700_000_000_000);
        let v: Value = serde_json::from_str(&row.content).unwrap();
        if let Err(e) = crate::fhir::format::validate_resource(&v) {
            panic!("invalid AuditEvent: {e:?}\n{v:#}");
        }
        assert_eq!(row.outcome, "0");
        assert_eq!(
            v["agent"][0]["purposeOfUse"][0]["coding"][0]["code"],
            "TREAT"
        );
        assert_eq!(row.subtype, format!("{RESTFUL}|search-type"));
        assert!(row.refs.contains(&("patient", "Patient/p1".into())));
        assert!(row.refs.contains(&("entity", "Observation/o1".into())));
        assert!(row
            .refs
            .contains(&("agent", "Practitioner/dr-alice".into())));
        assert!(row.refs.contains(&("agent", "app".into())));
        assert_eq!(
            v["meta"]["profile"][0],
            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"
        );
    }
}
