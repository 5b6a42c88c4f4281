//! Builds one AuditEvent (IHE Basic Audit Log Patterns, BALP) from what the
//! service knows about an interaction: who (user, client app, network
//! address), what (type, subtype, action, outcome), on which resources and
//! patients, the query of a search, and the request id.

use std::collections::BTreeSet;

use base64::Engine;
use serde::Serialize;

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
/// Every system of the `AuditEvent.type` codes written here.
pub const TYPE_SYSTEMS: &[&str] = &[AUDIT_TYPE, DCM];
/// Every system of the `AuditEvent.subtype` codes written here.
pub const SUBTYPE_SYSTEMS: &[&str] = &[RESTFUL, VESTA_EVENT, DCM];
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

/// Reference asked, and through which door.
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

// The event is written with typed, borrowing structs rather than built as a
// `serde_json::Value`: one is written for every request, and a tree of maps
// costs an allocation per key.

#[derive(Serialize, Clone, Copy)]
struct Coding<'a> {
    system: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

impl Coding<'_> {
    /// `system|code`, as the columns and search keys hold it.
    fn system_code(&self) -> String {
        format!("{}|{}", self.system, self.code)
    }
}

fn coding<'a>(system: &'a str, code: &'a str, display: Option<&'a str>) -> Coding<'a> {
    Coding {
        system,
        code,
        display,
    }
}

#[derive(Serialize)]
struct Concept<'a> {
    coding: [Coding<'a>; 1],
}

fn concept(c: Coding<'_>) -> Concept<'_> {
    Concept { coding: [c] }
}

#[derive(Serialize)]
struct Identifier<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    value: &'a str,
}

/// A FHIR Reference: `agent.who`, `entity.what`, `source.observer`.
#[derive(Serialize, Default)]
struct Reference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identifier: Option<Identifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

#[derive(Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct Network<'a> {
    address: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Agent<'a> {
    #[serde(rename = "type")]
    kind: Concept<'a>,
    who: Reference<'a>,
    requestor: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    role: Vec<Text<'a>>,
    #[serde(rename = "purposeOfUse", skip_serializing_if = "Vec::is_empty")]
    purpose_of_use: Vec<Concept<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<Network<'a>>,
}

#[derive(Serialize)]
struct Entity<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    what: Option<Reference<'a>>,
    #[serde(rename = "type")]
    kind: Coding<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Coding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
}

impl<'a> Entity<'a> {
    /// An entity that names a resource (or patient) by reference.
    fn named(reference: &'a str, kind: Coding<'a>, role: Coding<'a>) -> Entity<'a> {
        Entity {
            what: Some(Reference {
                reference: Some(reference),
                ..Reference::default()
            }),
            kind,
            role: Some(role),
            query: None,
        }
    }
}

#[derive(Serialize)]
struct Meta<'a> {
    profile: [&'static str; 1],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    security: Vec<Coding<'a>>,
}

#[derive(Serialize)]
struct Source<'a> {
    observer: Reference<'a>,
    #[serde(rename = "type")]
    kind: [Coding<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    resource_type: &'static str,
    id: &'a str,
    meta: Meta<'a>,
    #[serde(rename = "type")]
    kind: Coding<'a>,
    subtype: [Coding<'a>; 1],
    action: &'static str,
    recorded: String,
    outcome: &'static str,
    outcome_desc: String,
    agent: Vec<Agent<'a>>,
    source: Source<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    purpose_of_event: Vec<Concept<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entity: Vec<Entity<'a>>,
}

const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

fn type_and_subtype(kind: &EventKind) -> (Coding<'_>, Coding<'_>) {
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

/// The agents: the user (when there is one), the client app, the server.
fn agents<'a>(a: &Actor<'a>, refs: &mut Vec<(&'static str, String)>) -> Vec<Agent<'a>> {
    let p = a.principal;
    let mut out = Vec::with_capacity(3);
    let has_user = p.username.is_some() || p.fhir_user.is_some();
    let network = || a.peer.map(|address| Network { address, kind: "2" });
    if has_user {
        if let Some(fu) = &p.fhir_user {
            refs.push(("agent", fu.clone()));
        }
        if let Some(u) = &p.username {
            refs.push(("agent", u.clone()));
        }
        out.push(Agent {
            kind: concept(coding(
                "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "IRCP",
                Some("information recipient"),
            )),
            who: Reference {
                reference: p.fhir_user.as_deref(),
                identifier: p.username.as_deref().map(|value| Identifier {
                    system: Some(USERNAME_SYSTEM),
                    value,
                }),
                display: None,
            },
            requestor: true,
            role: p
                .role
                .as_deref()
                .map(|text| Text { text })
                .into_iter()
                .collect(),
            purpose_of_use: a
                .purposes
                .iter()
                .map(|code| concept(coding(ACT_REASON, code, None)))
                .collect(),
            network: None,
        });
    }
    let client = match (p.kind, &p.client_id) {
        (_, Some(id)) => {
            refs.push(("agent", id.clone()));
            Reference {
                identifier: Some(Identifier {
                    system: Some(CLIENT_ID_SYSTEM),
                    value: id,
                }),
                ..Reference::default()
            }
        }
        (PrincipalKind::Open, None) => Reference {
            display: Some("local operator (no authorization)"),
            ..Reference::default()
        },
        _ => Reference {
            display: Some("anonymous (no valid token)"),
            ..Reference::default()
        },
    };
    out.push(Agent {
        kind: concept(coding(DCM, "110153", Some("Source Role ID"))),
        who: client,
        requestor: !has_user,
        role: Vec::new(),
        purpose_of_use: Vec::new(),
        network: network(),
    });
    out.push(Agent {
        kind: concept(coding(DCM, "110152", Some("Destination Role ID"))),
        who: Reference {
            display: Some("Vesta"),
            ..Reference::default()
        },
        requestor: false,
        role: Vec::new(),
        purpose_of_use: Vec::new(),
        network: Some(Network {
            address: a.server,
            kind: "5",
        }),
    });
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
    let patient_refs: Vec<String> = facts
        .patients
        .iter()
        .map(|p| format!("Patient/{p}"))
        .collect();
    let mut entity: Vec<Entity<'_>> =
        Vec::with_capacity(patient_refs.len() + facts.entities.len() + 2);
    for reference in &patient_refs {
        refs.push(("patient", reference.clone()));
        entity.push(Entity::named(
            reference,
            coding(ENTITY_TYPE, "1", Some("Person")),
            coding(OBJECT_ROLE, "1", Some("Patient")),
        ));
    }
    for e in &facts.entities {
        let plain = e.split("/_history/").next().unwrap_or(e);
        refs.push(("entity", plain.to_string()));
        entity.push(Entity::named(
            e,
            coding(ENTITY_TYPE, "2", Some("System Object")),
            coding(OBJECT_ROLE, "4", Some("Domain Resource")),
        ));
    }
    if let Some(q) = &facts.query {
        entity.push(Entity {
            what: None,
            kind: coding(ENTITY_TYPE, "2", Some("System Object")),
            role: Some(coding(OBJECT_ROLE, "24", Some("Query"))),
            query: Some(base64::engine::general_purpose::STANDARD.encode(q.as_bytes())),
        });
    }
    if !actor.request_id.is_empty() {
        entity.push(Entity {
            what: Some(Reference {
                identifier: Some(Identifier {
                    system: None,
                    value: actor.request_id,
                }),
                ..Reference::default()
            }),
            kind: coding(BALP_ENTITY, "XrequestId", Some("X-Request-Id")),
            role: None,
            query: None,
        });
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
    let btg = coding(ACT_REASON, "BTG", Some("break the glass"));
    let event = Event {
        resource_type: "AuditEvent",
        id: &id,
        meta: Meta {
            profile: [balp_profile(facts)],
            security: if facts.break_glass {
                vec![btg]
            } else {
                Vec::new()
            },
        },
        kind: type_coding,
        subtype: [subtype],
        action: facts.action.code(),
        recorded: format_instant(now),
        outcome,
        outcome_desc: desc,
        agent,
        source: Source {
            observer: Reference {
                display: Some("Vesta"),
                ..Reference::default()
            },
            kind: [coding(
                "http://terminology.hl7.org/CodeSystem/security-source-type",
                "4",
                Some("Application Server"),
            )],
        },
        purpose_of_event: if facts.break_glass {
            vec![concept(btg)]
        } else {
            Vec::new()
        },
        entity,
    };
    // Serialising these plain structs cannot fail (no maps with non-string
    // keys, no failing `Serialize` impls).
    let content = serde_json::to_string(&event).unwrap_or_default();
    AuditRow {
        id,
        recorded_ms: now,
        type_code: type_coding.system_code(),
        subtype: subtype.system_code(),
        action: facts.action.code().to_string(),
        outcome: outcome.to_string(),
        content,
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
    use serde_json::Value;

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
