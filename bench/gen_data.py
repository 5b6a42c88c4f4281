#!/usr/bin/env python3
"""Deterministic generator of synthetic FHIR R4 (4.0.1) patient data.

Only the Python 3.11 standard library is used.  Output depends solely on the
command-line arguments (the seed in particular): there is no wall-clock or
environment dependence, so two runs with the same arguments produce
byte-identical files.

Usage:
    python3 bench/gen_data.py --patients N --out DIR [--seed 42]
        [--format ndjson|bundles|both] [--bundle-size 500]

Outputs:
    DIR/<Type>.ndjson              one compact JSON resource per line
    DIR/bundles/tx-00001.json ...  transaction Bundles (PUT Type/id)

Every patient gets on average ~32 resources (Patient, Encounters, vital-sign
and laboratory Observations, DiagnosticReports, Conditions,
MedicationRequests, AllergyIntolerances, Procedures, Immunizations), and a
shared pool of Practitioners and Organizations is referenced from them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import math
import os
import random
import sys
import time
import uuid

# ---------------------------------------------------------------------------
# Fixed reference point: "today" for the synthetic world.  Never use the
# wall clock, so that output is reproducible.
NOW = dt.datetime(2024, 12, 31, 12, 0, 0)
ENCOUNTER_WINDOW_DAYS = 5 * 365

# Code systems
SYS_MRN = "http://hospital.example.org/mrn"
SYS_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SYS_V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
SYS_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SYS_PARTTYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SYS_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
SYS_INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
SYS_OBSCAT = "http://terminology.hl7.org/CodeSystem/observation-category"
SYS_COND_CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
SYS_COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
SYS_COND_CAT = "http://terminology.hl7.org/CodeSystem/condition-category"
SYS_AI_CLIN = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
SYS_AI_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
SYS_ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
SYS_MR_CAT = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
SYS_LOINC = "http://loinc.org"
SYS_SNOMED = "http://snomed.info/sct"
SYS_ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SYS_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SYS_CVX = "http://hl7.org/fhir/sid/cvx"
SYS_UCUM = "http://unitsofmeasure.org"
SYS_NPI = "http://hl7.org/fhir/sid/us-npi"
SYS_LANG = "urn:ietf:bcp:47"

# Namespace for deterministic urn:uuid fullUrls in bundles.
UUID_NS = uuid.UUID("6f1c3a52-7d55-4c1e-9a0e-3b6b8f0e2a11")

# ---------------------------------------------------------------------------
# Vocabularies

GIVEN_MALE = [
    "James", "John", "Robert", "Michael", "William", "David", "Richard",
    "Joseph", "Thomas", "Charles", "Daniel", "Matthew", "Anthony", "Mark",
    "Steven", "Paul", "Andrew", "Joshua", "Kevin", "Brian", "George",
    "Edward", "Ronald", "Timothy", "Jason", "Jeffrey", "Ryan", "Jacob",
    "José", "Luis", "Carlos", "Juan", "Ahmed", "Wei", "Hiroshi", "Raj",
    "Olusegun", "Søren", "François", "Björn", "Mateo", "Liam", "Noah",
]
GIVEN_FEMALE = [
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara",
    "Susan", "Jessica", "Sarah", "Karen", "Lisa", "Nancy", "Betty",
    "Margaret", "Sandra", "Ashley", "Kimberly", "Emily", "Donna",
    "Michelle", "Carol", "Amanda", "Dorothy", "Melissa", "Deborah",
    "María", "Sofía", "Lucía", "Fatima", "Mei", "Yuki", "Priya", "Chloé",
    "Zoë", "Ingrid", "Amara", "Olivia", "Emma", "Ava", "Isabella",
]
FAMILY = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller",
    "Davis", "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez",
    "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark",
    "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King",
    "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green",
    "O'Brien", "Müller", "Schröder", "Núñez", "Kowalski", "Okafor",
    "Tanaka", "Chen", "Patel", "Singh", "Ivanova", "Haddad", "Van der Berg",
]
STREETS = [
    "Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Pine St", "Elm St",
    "Washington Blvd", "Lake Rd", "Hill St", "Park Ave", "Sunset Blvd",
    "River Rd", "Church St", "Highland Ave", "Mill Rd", "Spring St",
]
# (city, state, zip prefix, UTC offset in hours (standard time))
CITIES = [
    ("Boston", "MA", "021", -5), ("Springfield", "MA", "011", -5),
    ("New York", "NY", "100", -5), ("Albany", "NY", "122", -5),
    ("Philadelphia", "PA", "191", -5), ("Atlanta", "GA", "303", -5),
    ("Miami", "FL", "331", -5), ("Chicago", "IL", "606", -6),
    ("Houston", "TX", "770", -6), ("Austin", "TX", "787", -6),
    ("Minneapolis", "MN", "554", -6), ("Denver", "CO", "802", -7),
    ("Phoenix", "AZ", "850", -7), ("Seattle", "WA", "981", -8),
    ("Portland", "OR", "972", -8), ("San Diego", "CA", "921", -8),
    ("San Francisco", "CA", "941", -8), ("Honolulu", "HI", "968", -10),
]
ORG_SUFFIXES = [
    "General Hospital", "Medical Center", "Community Health Center",
    "Regional Hospital", "Family Clinic", "University Hospital",
]

# Encounter classes: (code, display, weight)
ENC_CLASSES = [
    ("AMB", "ambulatory", 75),
    ("EMER", "emergency", 15),
    ("IMP", "inpatient encounter", 10),
]
ENC_TYPES = {
    "AMB": [
        ("185349003", "Encounter for check up (procedure)"),
        ("185345009", "Encounter for symptom (procedure)"),
        ("390906007", "Follow-up encounter (procedure)"),
    ],
    "EMER": [("50849002", "Emergency room admission (procedure)")],
    "IMP": [("32485007", "Hospital admission (procedure)")],
}

# Vital signs: code -> (display, unit, ucum code)
VITALS = {
    "8867-4": ("Heart rate", "beats/minute", "/min"),
    "8480-6": ("Systolic blood pressure", "mmHg", "mm[Hg]"),
    "8462-4": ("Diastolic blood pressure", "mmHg", "mm[Hg]"),
    "8310-5": ("Body temperature", "°C", "Cel"),
    "29463-7": ("Body weight", "kg", "kg"),
    "8302-2": ("Body height", "cm", "cm"),
}

# Labs: code -> (display, unit, ucum, low, high, decimals)
LABS = {
    "2339-0": ("Glucose [Mass/volume] in Blood", "mg/dL", "mg/dL", 70, 99, 0),
    "718-7": ("Hemoglobin [Mass/volume] in Blood", "g/dL", "g/dL", 12.0, 17.5, 1),
    "2160-0": ("Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0.6, 1.3, 2),
    "2093-3": ("Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 125, 200, 0),
}
LAB_CODES = list(LABS)

# Conditions: (snomed, display, icd10, icd10 display, chronic, min age)
CONDITIONS = [
    ("44054006", "Diabetes mellitus type 2 (disorder)", "E11.9", "Type 2 diabetes mellitus without complications", True, 30),
    ("38341003", "Hypertensive disorder, systemic arterial (disorder)", "I10", "Essential (primary) hypertension", True, 30),
    ("55822004", "Hyperlipidemia (disorder)", "E78.5", "Hyperlipidemia, unspecified", True, 30),
    ("195967001", "Asthma (disorder)", "J45.909", "Unspecified asthma, uncomplicated", True, 3),
    ("13645005", "Chronic obstructive lung disease (disorder)", "J44.9", "Chronic obstructive pulmonary disease, unspecified", True, 45),
    ("35489007", "Depressive disorder (disorder)", "F32.9", "Major depressive disorder, single episode, unspecified", True, 14),
    ("197480006", "Anxiety disorder (disorder)", "F41.9", "Anxiety disorder, unspecified", True, 10),
    ("49436004", "Atrial fibrillation (disorder)", "I48.91", "Unspecified atrial fibrillation", True, 50),
    ("709044004", "Chronic kidney disease (disorder)", "N18.9", "Chronic kidney disease, unspecified", True, 40),
    ("84114007", "Heart failure (disorder)", "I50.9", "Heart failure, unspecified", True, 50),
    ("239873007", "Osteoarthritis of knee (disorder)", "M17.9", "Osteoarthritis of knee, unspecified", True, 40),
    ("414916001", "Obesity (disorder)", "E66.9", "Obesity, unspecified", True, 5),
    ("37796009", "Migraine (disorder)", "G43.909", "Migraine, unspecified, not intractable, without status migrainosus", True, 10),
    ("444814009", "Viral sinusitis (disorder)", "J01.90", "Acute sinusitis, unspecified", False, 0),
    ("68566005", "Urinary tract infectious disease (disorder)", "N39.0", "Urinary tract infection, site not specified", False, 0),
    ("233604007", "Pneumonia (disorder)", "J18.9", "Pneumonia, unspecified organism", False, 0),
    ("10509002", "Acute bronchitis (disorder)", "J20.9", "Acute bronchitis, unspecified", False, 0),
    ("161891005", "Backache (finding)", "M54.9", "Dorsalgia, unspecified", False, 16),
]

# Medications: (rxnorm, display, dosage text, frequency per day, treats snomed or None)
MEDICATIONS = [
    ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet", "Take 1 tablet by mouth once daily with evening meal", 1, "44054006"),
    ("314076", "lisinopril 10 MG Oral Tablet", "Take 1 tablet by mouth once daily", 1, "38341003"),
    ("197361", "amlodipine 5 MG Oral Tablet", "Take 1 tablet by mouth once daily", 1, "38341003"),
    ("310798", "hydrochlorothiazide 25 MG Oral Tablet", "Take 1 tablet by mouth every morning", 1, "38341003"),
    ("259255", "atorvastatin 80 MG Oral Tablet", "Take 1 tablet by mouth at bedtime", 1, "55822004"),
    ("312961", "simvastatin 20 MG Oral Tablet", "Take 1 tablet by mouth at bedtime", 1, "55822004"),
    ("895994", "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler", "Inhale 2 puffs twice daily", 2, "195967001"),
    ("745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "Inhale 2 puffs every 4 to 6 hours as needed", 4, "13645005"),
    ("312938", "sertraline 100 MG Oral Tablet", "Take 1 tablet by mouth once daily", 1, "35489007"),
    ("855332", "warfarin sodium 5 MG Oral Tablet", "Take 1 tablet by mouth once daily", 1, "49436004"),
    ("308182", "amoxicillin 250 MG Oral Capsule", "Take 1 capsule by mouth three times daily for 10 days", 3, "233604007"),
    ("310965", "ibuprofen 200 MG Oral Tablet", "Take 1 to 2 tablets by mouth every 6 hours as needed for pain", 4, "161891005"),
    ("313782", "acetaminophen 325 MG Oral Tablet", "Take 2 tablets by mouth every 6 hours as needed", 4, None),
]
MED_BY_CONDITION: dict[str, list[tuple]] = {}
for _m in MEDICATIONS:
    if _m[4]:
        MED_BY_CONDITION.setdefault(_m[4], []).append(_m)

# Allergies: (snomed, display, category, reactions [(snomed, display)])
ALLERGIES = [
    ("91936005", "Allergy to penicillin (finding)", "medication", [("247472004", "Wheal (finding)"), ("39579001", "Anaphylaxis (disorder)")]),
    ("91935009", "Allergy to peanuts (finding)", "food", [("39579001", "Anaphylaxis (disorder)"), ("247472004", "Wheal (finding)")]),
    ("300913006", "Shellfish allergy (finding)", "food", [("247472004", "Wheal (finding)"), ("422587007", "Nausea (finding)")]),
    ("417532002", "Allergy to fish (finding)", "food", [("247472004", "Wheal (finding)")]),
    ("418689008", "Allergy to grass pollen (finding)", "environment", [("76067001", "Sneezing (finding)"), ("49727002", "Cough (finding)")]),
    ("232347008", "Dander (animal) allergy (finding)", "environment", [("76067001", "Sneezing (finding)"), ("267036007", "Dyspnea (finding)")]),
    ("419474003", "Allergy to mould (finding)", "environment", [("49727002", "Cough (finding)")]),
    ("300916003", "Latex allergy (finding)", "environment", [("271807003", "Eruption of skin (disorder)")]),
]

# Procedures: (snomed, display, min age)
PROCEDURES = [
    ("430193006", "Medication reconciliation (procedure)", 0),
    ("171207006", "Depression screening (procedure)", 12),
    ("73761001", "Colonoscopy (procedure)", 45),
    ("117015009", "Throat culture (procedure)", 0),
    ("399208008", "Plain X-ray of chest (procedure)", 0),
    ("29303009", "Electrocardiographic procedure (procedure)", 18),
    ("127783003", "Spirometry (procedure)", 6),
    ("80146002", "Excision of appendix (procedure)", 5),
    ("24623002", "Screening mammography (procedure)", 40),
]

# Immunizations: (cvx, display, min age, max age)
VACCINES = [
    ("140", "Influenza, seasonal, injectable, preservative free", 0.5, 200),
    ("208", "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose", 12, 200),
    ("115", "Tdap", 11, 200),
    ("113", "Td (adult) preservative free", 18, 200),
    ("133", "Pneumococcal conjugate PCV 13", 0, 200),
    ("33", "pneumococcal polysaccharide vaccine, 23 valent", 65, 200),
    ("43", "Hep B, adult", 18, 200),
    ("62", "HPV, quadrivalent", 9, 26),
    ("187", "zoster vaccine recombinant", 50, 200),
    ("03", "MMR", 1, 200),
    ("21", "varicella", 1, 200),
]

VACCINE_SITES = [("LA", "Left arm"), ("RA", "Right arm")]

# Height by age (years) -> cm, roughly a 50th-percentile growth curve.
HEIGHT_CURVE = [
    (0, 50), (1, 75), (2, 87), (4, 102), (6, 115), (8, 128), (10, 138),
    (12, 149), (14, 160), (16, 168), (18, 172),
]

RESOURCE_TYPES = [
    "Organization", "Practitioner", "Patient", "Encounter", "Observation",
    "DiagnosticReport", "Condition", "MedicationRequest",
    "AllergyIntolerance", "Procedure", "Immunization",
]


# ---------------------------------------------------------------------------
# Helpers

def cc(system: str, code: str, display: str, text: str | None = None) -> dict:
    out = {"coding": [{"system": system, "code": code, "display": display}]}
    out["text"] = text if text is not None else display
    return out


def ref(rtype: str, rid: str, display: str | None = None) -> dict:
    r = {"reference": f"{rtype}/{rid}"}
    if display:
        r["display"] = display
    return r


def fmt_dt(t: dt.datetime, tz: str) -> str:
    """dateTime with seconds and a fixed UTC offset, e.g. 2023-04-05T10:15:00-05:00."""
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}{tz}"


def fmt_date(d: dt.date | dt.datetime) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def tz_string(hours: int) -> str:
    sign = "-" if hours < 0 else "+"
    return f"{sign}{abs(hours):02d}:00"


def age_years(birth: dt.date, at: dt.datetime) -> float:
    return (at.date() - birth).days / 365.25


def interp_height(age: float) -> float:
    if age >= HEIGHT_CURVE[-1][0]:
        return HEIGHT_CURVE[-1][1]
    for (a0, h0), (a1, h1) in zip(HEIGHT_CURVE, HEIGHT_CURVE[1:]):
        if a0 <= age < a1:
            return h0 + (h1 - h0) * (age - a0) / (a1 - a0)
    return HEIGHT_CURVE[0][1]


def clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def num(x: float, decimals: int):
    """Round for JSON output: ints for 0 decimals, else a rounded float."""
    if decimals == 0:
        return int(round(x))
    return round(x, decimals)


def quantity(value, unit: str, ucum: str) -> dict:
    return {"value": value, "unit": unit, "system": SYS_UCUM, "code": ucum}


# ---------------------------------------------------------------------------
# Shared pool: Organizations and Practitioners

def make_organizations(rng: random.Random, n: int) -> list[dict]:
    orgs = []
    for i in range(1, n + 1):
        city, state, zp, _tz = CITIES[(i - 1) % len(CITIES)]
        name = f"{city} {ORG_SUFFIXES[rng.randrange(len(ORG_SUFFIXES))]}"
        if i > len(CITIES):
            name += f" {(i - 1) // len(CITIES) + 1}"
        oid = f"org-{i:04d}"
        orgs.append({
            "resourceType": "Organization",
            "id": oid,
            "identifier": [{
                "system": "http://hospital.example.org/organization",
                "value": f"ORG{i:05d}",
            }],
            "active": True,
            "type": [cc(SYS_ORG_TYPE, "prov", "Healthcare Provider")],
            "name": name,
            "telecom": [{"system": "phone", "value": f"555-{100 + i % 900:03d}-{rng.randrange(10000):04d}", "use": "work"}],
            "address": [{
                "use": "work",
                "line": [f"{rng.randrange(1, 999)} {STREETS[rng.randrange(len(STREETS))]}"],
                "city": city, "state": state,
                "postalCode": f"{zp}{rng.randrange(100):02d}", "country": "US",
            }],
        })
    return orgs


def make_practitioners(rng: random.Random, n: int, orgs: list[dict]) -> list[dict]:
    pracs = []
    for i in range(1, n + 1):
        gender = "female" if rng.random() < 0.5 else "male"
        given = rng.choice(GIVEN_FEMALE if gender == "female" else GIVEN_MALE)
        family = rng.choice(FAMILY)
        org = orgs[(i - 1) % len(orgs)]
        addr = org["address"][0]
        pid = f"prac-{i:04d}"
        pracs.append({
            "resourceType": "Practitioner",
            "id": pid,
            "identifier": [{"system": SYS_NPI, "value": f"{1000000000 + i * 7919 % 999999999:010d}"}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr."]}],
            "telecom": [
                {"system": "phone", "value": f"555-{rng.randrange(200, 999):03d}-{rng.randrange(10000):04d}", "use": "work"},
                {"system": "email", "value": f"{pid}@hospital.example.org", "use": "work"},
            ],
            "address": [dict(addr)],
            "gender": gender,
        })
    return pracs


# ---------------------------------------------------------------------------
# Per-patient generation

class PatientGen:
    def __init__(self, idx: int, rng: random.Random, pracs: list[dict], orgs: list[dict]):
        self.idx = idx
        self.rng = rng
        self.pracs = pracs
        self.orgs = orgs
        self.pnum = f"{idx:06d}"
        self.pid = f"pat-{self.pnum}"
        self.obs_n = 0
        self.out: list[dict] = []

    # -- small helpers ------------------------------------------------------
    def prac(self) -> dict:
        return self.pracs[self.rng.randrange(len(self.pracs))]

    def prac_ref(self, p: dict) -> dict:
        n = p["name"][0]
        return ref("Practitioner", p["id"], f"Dr. {n['given'][0]} {n['family']}")

    def subject(self) -> dict:
        return ref("Patient", self.pid, self.display_name)

    def next_obs_id(self) -> str:
        self.obs_n += 1
        return f"obs-{self.pnum}-{self.obs_n:04d}"

    # -- main ---------------------------------------------------------------
    def generate(self) -> list[dict]:
        self.make_patient()
        # Conditions are chosen first so that labs/vitals/meds can correlate.
        ages_now = age_years(self.birth, NOW)
        self.condition_defs = self.pick_conditions(ages_now)
        self.cond_codes = {c[0] for c in self.condition_defs}
        self.make_encounters()
        self.make_vitals_and_labs()
        self.make_conditions()
        self.make_medications()
        self.make_allergies()
        self.make_procedures()
        self.make_immunizations()
        return self.out

    def make_patient(self) -> None:
        rng = self.rng
        r = rng.random()
        gender = "male" if r < 0.49 else "female" if r < 0.98 else ("other" if r < 0.99 else "unknown")
        name_pool = GIVEN_MALE if gender == "male" else GIVEN_FEMALE if gender == "female" else GIVEN_MALE + GIVEN_FEMALE
        given = [rng.choice(name_pool)]
        if rng.random() < 0.4:
            given.append(rng.choice(name_pool))
        family = rng.choice(FAMILY)
        # Age distribution: mostly adults, some children, a few very old.
        a = rng.random()
        if a < 0.18:
            age = rng.uniform(0.2, 18)
        elif a < 0.80:
            age = rng.uniform(18, 65)
        else:
            age = rng.uniform(65, 98)
        birth = (NOW - dt.timedelta(days=int(age * 365.25))).date()
        city, state, zp, tzh = CITIES[rng.randrange(len(CITIES))]
        self.tz = tz_string(tzh)
        self.gender = gender
        self.birth = birth
        self.display_name = f"{' '.join(given)} {family}"
        self.org = self.orgs[rng.randrange(len(self.orgs))]
        self.gp = self.prac()
        phone = f"555-{rng.randrange(200, 999):03d}-{rng.randrange(10000):04d}"
        email_local = f"{given[0]}.{family}".lower().replace(" ", "").replace("'", "")
        pat = {
            "resourceType": "Patient",
            "id": self.pid,
            "identifier": [{
                "use": "usual",
                "type": cc(SYS_V2_0203, "MR", "Medical record number", "Medical Record Number"),
                "system": SYS_MRN,
                "value": f"MRN{self.idx:08d}",
                "assigner": ref("Organization", self.org["id"], self.org["name"]),
            }],
            "active": True,
            "name": [{
                "use": "official",
                "text": self.display_name,
                "family": family,
                "given": given,
            }],
            "telecom": [
                {"system": "phone", "value": phone, "use": "home" if rng.random() < 0.5 else "mobile"},
                {"system": "email", "value": f"{email_local}{self.idx}@example.com", "use": "home"},
            ],
            "gender": gender,
            "birthDate": fmt_date(birth),
            "address": [{
                "use": "home",
                "type": "physical",
                "line": [f"{rng.randrange(1, 9999)} {STREETS[rng.randrange(len(STREETS))]}"],
                "city": city,
                "state": state,
                "postalCode": f"{zp}{rng.randrange(100):02d}",
                "country": "US",
            }],
            "generalPractitioner": [self.prac_ref(self.gp)],
            "managingOrganization": ref("Organization", self.org["id"], self.org["name"]),
        }
        if age >= 18:
            ms = rng.choice([("M", "Married"), ("S", "Never Married"), ("D", "Divorced"), ("W", "Widowed")])
            pat["maritalStatus"] = cc(SYS_MARITAL, ms[0], ms[1])
        if rng.random() < 0.2:
            pat["communication"] = [{"language": cc(SYS_LANG, "es", "Spanish"), "preferred": True}]
        else:
            pat["communication"] = [{"language": cc(SYS_LANG, "en-US", "English (United States)"), "preferred": True}]
        self.out.append(pat)

        # Physiological baseline (used for vitals).
        self.age_now = age
        if age >= 18:
            self.adult_height = rng.gauss(176, 7) if gender == "male" else rng.gauss(162, 6.5)
        else:
            self.adult_height = None
        self.height_factor = rng.gauss(1.0, 0.03)
        self.bmi = clamp(rng.gauss(27.5, 5), 17, 48)
        self.child_bmi = clamp(rng.gauss(17, 2), 13, 26)
        self.sys_base = rng.gauss(122, 10)
        self.dia_base = rng.gauss(78, 7)
        self.hr_base = rng.gauss(72, 8)

    def pick_conditions(self, age: float) -> list[tuple]:
        rng = self.rng
        n = rng.choices((0, 1, 2, 3), weights=(25, 30, 25, 20))[0]
        eligible = [c for c in CONDITIONS if c[5] <= age]
        rng.shuffle(eligible)
        return eligible[:n]

    def make_encounters(self) -> None:
        rng = self.rng
        n = rng.choices((2, 3, 4, 5, 6), weights=(35, 30, 18, 10, 7))[0]
        window_start = max(NOW - dt.timedelta(days=ENCOUNTER_WINDOW_DAYS),
                           dt.datetime.combine(self.birth, dt.time()) + dt.timedelta(days=3))
        span = (NOW - window_start).total_seconds()
        starts = sorted(rng.random() * span for _ in range(n))
        self.encounters = []
        for k, off in enumerate(starts, 1):
            cls_code, cls_disp, _w = rng.choices(ENC_CLASSES, weights=[c[2] for c in ENC_CLASSES])[0]
            start = window_start + dt.timedelta(seconds=off)
            # Clinic hours for ambulatory visits.
            if cls_code == "AMB":
                start = start.replace(hour=rng.randrange(8, 17), minute=rng.choice((0, 15, 30, 45)), second=0)
                dur = dt.timedelta(minutes=rng.choice((15, 20, 30, 45, 60)))
            elif cls_code == "EMER":
                start = start.replace(second=0)
                dur = dt.timedelta(minutes=rng.randrange(60, 8 * 60))
            else:
                start = start.replace(second=0)
                dur = dt.timedelta(hours=rng.randrange(24, 24 * 9))
            if start + dt.timedelta(minutes=15) > NOW:
                start = NOW - dur
            end = start + dur
            # Only the most recent encounter may still be running "now".
            in_progress = k == n and end > NOW
            if end > NOW and not in_progress:
                end = NOW
            etype = rng.choice(ENC_TYPES[cls_code])
            p = self.prac() if rng.random() < 0.4 else self.gp
            org = self.org if rng.random() < 0.8 else self.orgs[rng.randrange(len(self.orgs))]
            eid = f"enc-{self.pnum}-{k:02d}"
            period = {"start": fmt_dt(start, self.tz)}
            if not in_progress:
                period["end"] = fmt_dt(end, self.tz)
            enc = {
                "resourceType": "Encounter",
                "id": eid,
                "identifier": [{"system": "http://hospital.example.org/encounter", "value": f"V{self.idx:07d}{k:02d}"}],
                "status": "in-progress" if in_progress else "finished",
                "class": {"system": SYS_ACTCODE, "code": cls_code, "display": cls_disp},
                "type": [cc(SYS_SNOMED, etype[0], etype[1])],
                "subject": self.subject(),
                "participant": [{
                    "type": [cc(SYS_PARTTYPE, "PPRF" if cls_code == "AMB" else "ATND",
                                "primary performer" if cls_code == "AMB" else "attender")],
                    "individual": self.prac_ref(p),
                }],
                "period": period,
                "serviceProvider": ref("Organization", org["id"], org["name"]),
            }
            if cls_code == "IMP":
                enc["hospitalization"] = {
                    "dischargeDisposition": cc("http://terminology.hl7.org/CodeSystem/discharge-disposition",
                                               "home", "Home"),
                }
            self.out.append(enc)
            self.encounters.append({
                # "end" bounds the clinical activity of the visit (never after NOW).
                "id": eid, "start": start, "end": min(end, NOW), "class": cls_code,
                "prac": p, "org": org, "res": enc,
            })

    def vital_value(self, code: str, at: dt.datetime, enc_class: str):
        rng = self.rng
        age = age_years(self.birth, at)
        if code == "8867-4":
            base = 130 if age < 1 else 105 if age < 5 else 90 if age < 12 else self.hr_base
            if enc_class == "EMER":
                base += 12
            if "49436004" in self.cond_codes:
                base += 8
            return num(clamp(rng.gauss(base, 6), 40, 190), 0)
        if code == "8480-6":
            base = 95 if age < 12 else self.sys_base + max(0.0, age - 40) * 0.4
            if "38341003" in self.cond_codes:
                base += 18
            return num(clamp(rng.gauss(base, 7), 70, 220), 0)
        if code == "8462-4":
            base = 60 if age < 12 else self.dia_base
            if "38341003" in self.cond_codes:
                base += 9
            return num(clamp(rng.gauss(base, 5), 40, 130), 0)
        if code == "8310-5":
            if enc_class != "AMB" and rng.random() < 0.25:
                return num(rng.uniform(37.8, 39.8), 1)
            return num(clamp(rng.gauss(36.8, 0.25), 35.8, 37.6), 1)
        height = self.height_at(age)
        if code == "8302-2":
            return num(height + rng.gauss(0, 0.4), 1)
        if code == "29463-7":
            bmi = self.child_bmi if age < 18 else self.bmi
            if "414916001" in self.cond_codes:
                bmi = max(bmi, 31)
            if age < 2:
                bmi = 16.5
            w = bmi * (height / 100) ** 2 * rng.gauss(1.0, 0.01)
            return num(w, 1)
        raise ValueError(code)

    def height_at(self, age: float) -> float:
        if age >= 18 and self.adult_height is not None:
            return self.adult_height
        h = interp_height(age) * self.height_factor
        if age >= 12 and self.gender == "female":
            h *= 0.96
        return h

    def lab_value(self, code: str) -> float:
        rng = self.rng
        c = self.cond_codes
        if code == "2339-0":
            v = rng.gauss(165, 40) if "44054006" in c else rng.gauss(88, 10)
            return num(clamp(v, 45, 450), 0)
        if code == "718-7":
            v = rng.gauss(14.8, 1.2) if self.gender == "male" else rng.gauss(13.4, 1.1)
            if "709044004" in c:
                v -= 1.5
            return num(clamp(v, 6, 20), 1)
        if code == "2160-0":
            v = rng.gauss(2.2, 0.6) if "709044004" in c else rng.gauss(0.95, 0.18)
            return num(clamp(v, 0.3, 8), 2)
        if code == "2093-3":
            v = rng.gauss(235, 30) if "55822004" in c else rng.gauss(180, 25)
            return num(clamp(v, 100, 400), 0)
        raise ValueError(code)

    def make_vitals_and_labs(self) -> None:
        rng = self.rng
        # Vital signs: 3-8 per encounter.
        extras = ["8310-5", "29463-7", "8302-2"]
        for enc in self.encounters:
            n = rng.choices((3, 4, 5, 6, 7, 8), weights=(15, 25, 25, 15, 12, 8))[0]
            codes = ["8867-4", "8480-6", "8462-4"]
            if n <= 5:
                codes += rng.sample(extras, n - 3)
            else:
                codes += extras
                if n >= 7:
                    codes.append("8867-4")
                if n == 8:
                    codes = codes[:6] + ["8480-6", "8462-4"]
            t0 = enc["start"] + dt.timedelta(minutes=rng.randrange(2, 12))
            for j, code in enumerate(codes):
                # Repeat measurements later in the visit.
                t = t0 if j < 6 else t0 + dt.timedelta(minutes=rng.randrange(10, 30))
                if t > enc["end"]:
                    t = enc["end"]
                disp, unit, ucum = VITALS[code]
                val = self.vital_value(code, t, enc["class"])
                obs = {
                    "resourceType": "Observation",
                    "id": self.next_obs_id(),
                    "status": "final",
                    "category": [{
                        "coding": [{"system": SYS_OBSCAT, "code": "vital-signs", "display": "Vital Signs"}],
                        "text": "Vital Signs",
                    }],
                    "code": cc(SYS_LOINC, code, disp),
                    "subject": self.subject(),
                    "encounter": ref("Encounter", enc["id"]),
                    "effectiveDateTime": fmt_dt(t, self.tz),
                    "performer": [self.prac_ref(enc["prac"])],
                    "valueQuantity": quantity(val, unit, ucum),
                }
                self.out.append(obs)

        # Laboratory: 2-6 per patient, spread over encounters; 0-1
        # DiagnosticReport per encounter that has labs.
        n_labs = rng.randint(2, 6)
        by_enc: dict[int, list[str]] = {}
        for _ in range(n_labs):
            e = rng.randrange(len(self.encounters))
            by_enc.setdefault(e, []).append(LAB_CODES[rng.randrange(len(LAB_CODES))])
        dr_n = 0
        for e in sorted(by_enc):
            enc = self.encounters[e]
            t = enc["start"] + dt.timedelta(minutes=rng.randrange(15, 45))
            if t > enc["end"]:
                t = enc["end"]
            issued = t + dt.timedelta(minutes=rng.randrange(60, 6 * 60))
            if issued > NOW:
                issued = NOW
            ids = []
            for code in by_enc[e]:
                disp, unit, ucum, lo, hi, dec = LABS[code]
                val = self.lab_value(code)
                if val < lo:
                    interp = ("L", "Low")
                elif val > hi:
                    interp = ("H", "High")
                else:
                    interp = ("N", "Normal")
                oid = self.next_obs_id()
                ids.append(oid)
                obs = {
                    "resourceType": "Observation",
                    "id": oid,
                    "status": "final",
                    "category": [{
                        "coding": [{"system": SYS_OBSCAT, "code": "laboratory", "display": "Laboratory"}],
                        "text": "Laboratory",
                    }],
                    "code": cc(SYS_LOINC, code, disp),
                    "subject": self.subject(),
                    "encounter": ref("Encounter", enc["id"]),
                    "effectiveDateTime": fmt_dt(t, self.tz),
                    "issued": fmt_dt(issued, self.tz),
                    "performer": [ref("Organization", enc["org"]["id"], enc["org"]["name"])],
                    "valueQuantity": quantity(val, unit, ucum),
                    "interpretation": [cc(SYS_INTERP, interp[0], interp[1])],
                    "referenceRange": [{
                        "low": quantity(num(lo, dec), unit, ucum),
                        "high": quantity(num(hi, dec), unit, ucum),
                    }],
                }
                self.out.append(obs)
            if rng.random() < 0.7:
                dr_n += 1
                self.out.append({
                    "resourceType": "DiagnosticReport",
                    "id": f"dr-{self.pnum}-{dr_n:02d}",
                    "status": "final",
                    "category": [cc(SYS_V2_0074, "LAB", "Laboratory")],
                    "code": cc(SYS_LOINC, "11502-2", "Laboratory report"),
                    "subject": self.subject(),
                    "encounter": ref("Encounter", enc["id"]),
                    "effectiveDateTime": fmt_dt(t, self.tz),
                    "issued": fmt_dt(issued, self.tz),
                    "performer": [ref("Organization", enc["org"]["id"], enc["org"]["name"])],
                    "result": [ref("Observation", oid) for oid in ids],
                })

    def make_conditions(self) -> None:
        rng = self.rng
        self.condition_ids: dict[str, str] = {}
        for k, c in enumerate(self.condition_defs, 1):
            snomed, disp, icd, icd_disp, chronic, _min_age = c
            enc = self.encounters[rng.randrange(len(self.encounters))]
            recorded = enc["start"]
            if chronic:
                # Onset up to 10 years before diagnosis, never before birth.
                birth_dt = dt.datetime.combine(self.birth, dt.time(9, 0))
                max_back = min(10 * 365, (recorded - birth_dt).days)
                onset = recorded - dt.timedelta(days=rng.randrange(0, max(1, max_back)))
                clinical = rng.choices(("active", "remission", "inactive"), weights=(85, 10, 5))[0]
                category = ("problem-list-item", "Problem List Item")
            else:
                onset = recorded - dt.timedelta(days=rng.randrange(0, 5), hours=rng.randrange(0, 12))
                clinical = "resolved" if enc["end"] + dt.timedelta(days=7) < NOW else "active"
                category = ("encounter-diagnosis", "Encounter Diagnosis")
            if onset < dt.datetime.combine(self.birth, dt.time()):
                onset = dt.datetime.combine(self.birth, dt.time(9, 0))
            ver = ("confirmed", "Confirmed") if rng.random() < 0.9 else ("provisional", "Provisional")
            cid = f"cond-{self.pnum}-{k:02d}"
            self.condition_ids[snomed] = cid
            cond = {
                "resourceType": "Condition",
                "id": cid,
                "clinicalStatus": cc(SYS_COND_CLIN, clinical, clinical.capitalize()),
                "verificationStatus": cc(SYS_COND_VER, ver[0], ver[1]),
                "category": [cc(SYS_COND_CAT, category[0], category[1])],
                "code": {
                    "coding": [
                        {"system": SYS_SNOMED, "code": snomed, "display": disp},
                        {"system": SYS_ICD10, "code": icd, "display": icd_disp},
                    ],
                    "text": disp.rsplit(" (", 1)[0],
                },
                "subject": self.subject(),
                "encounter": ref("Encounter", enc["id"]),
                "onsetDateTime": fmt_dt(onset, self.tz),
                "recordedDate": fmt_dt(recorded, self.tz),
                "recorder": self.prac_ref(enc["prac"]),
            }
            if clinical in ("resolved", "inactive", "remission") and not chronic:
                abate = min(enc["end"] + dt.timedelta(days=rng.randrange(5, 21)), NOW)
                cond["abatementDateTime"] = fmt_dt(abate, self.tz)
            self.out.append(cond)

    def make_medications(self) -> None:
        rng = self.rng
        n = rng.choices((0, 1, 2, 3), weights=(25, 30, 25, 20))[0]
        chosen: list[tuple] = []
        # Prefer medications that treat the patient's conditions.
        for c in self.condition_defs:
            for m in MED_BY_CONDITION.get(c[0], ()):
                if len(chosen) < n and m not in chosen and rng.random() < 0.8:
                    chosen.append(m)
                    break
        pool = [m for m in MEDICATIONS if m not in chosen]
        rng.shuffle(pool)
        chosen += pool[: n - len(chosen)]
        for k, m in enumerate(chosen, 1):
            rx, disp, text, freq, treats = m
            enc = self.encounters[rng.randrange(len(self.encounters))]
            authored = enc["start"] + dt.timedelta(minutes=rng.randrange(5, 30))
            if authored > enc["end"]:
                authored = enc["end"]
            status = "active" if treats and treats in self.cond_codes else rng.choice(("active", "completed", "stopped"))
            mr = {
                "resourceType": "MedicationRequest",
                "id": f"med-{self.pnum}-{k:02d}",
                "status": status,
                "intent": "order",
                "category": [cc(SYS_MR_CAT, "outpatient", "Outpatient")],
                "medicationCodeableConcept": cc(SYS_RXNORM, rx, disp),
                "subject": self.subject(),
                "encounter": ref("Encounter", enc["id"]),
                "authoredOn": fmt_dt(authored, self.tz),
                "requester": self.prac_ref(enc["prac"]),
                "dosageInstruction": [{
                    "sequence": 1,
                    "text": text,
                    "timing": {"repeat": {"frequency": freq, "period": 1, "periodUnit": "d"}},
                    "asNeededBoolean": "as needed" in text,
                }],
            }
            if treats and treats in self.condition_ids:
                mr["reasonReference"] = [ref("Condition", self.condition_ids[treats])]
            self.out.append(mr)

    def make_allergies(self) -> None:
        rng = self.rng
        n = rng.choices((0, 1, 2), weights=(45, 35, 20))[0]
        for k, a in enumerate(rng.sample(ALLERGIES, n), 1):
            snomed, disp, category, reactions = a
            enc = self.encounters[rng.randrange(len(self.encounters))]
            birth_dt = dt.datetime.combine(self.birth, dt.time(12, 0))
            onset = birth_dt + dt.timedelta(days=rng.randrange(0, max(1, (enc["start"] - birth_dt).days)))
            react = reactions[rng.randrange(len(reactions))]
            severe = react[0] == "39579001"
            self.out.append({
                "resourceType": "AllergyIntolerance",
                "id": f"alg-{self.pnum}-{k:02d}",
                "clinicalStatus": cc(SYS_AI_CLIN, "active", "Active"),
                "verificationStatus": cc(SYS_AI_VER, "confirmed", "Confirmed"),
                "type": "allergy",
                "category": [category],
                "criticality": "high" if severe else rng.choice(("low", "unable-to-assess")),
                "code": cc(SYS_SNOMED, snomed, disp),
                "patient": self.subject(),
                "encounter": ref("Encounter", enc["id"]),
                "onsetDateTime": fmt_date(onset),
                "recordedDate": fmt_dt(enc["start"], self.tz),
                "recorder": self.prac_ref(enc["prac"]),
                "reaction": [{
                    "manifestation": [cc(SYS_SNOMED, react[0], react[1])],
                    "severity": "severe" if severe else rng.choice(("mild", "moderate")),
                }],
            })

    def make_procedures(self) -> None:
        rng = self.rng
        n = rng.choices((0, 1, 2), weights=(35, 40, 25))[0]
        k = 0
        for _ in range(n):
            enc = self.encounters[rng.randrange(len(self.encounters))]
            age = age_years(self.birth, enc["start"])
            eligible = [p for p in PROCEDURES if p[2] <= age
                        and not (p[0] == "24623002" and self.gender == "male")]
            code, disp, _min_age = eligible[rng.randrange(len(eligible))]
            k += 1
            start = enc["start"] + dt.timedelta(minutes=rng.randrange(5, 40))
            end = start + dt.timedelta(minutes=rng.choice((10, 15, 20, 30, 45, 60)))
            if end > enc["end"]:
                end = enc["end"]
                start = min(start, end)
            self.out.append({
                "resourceType": "Procedure",
                "id": f"proc-{self.pnum}-{k:02d}",
                "status": "completed",
                "code": cc(SYS_SNOMED, code, disp),
                "subject": self.subject(),
                "encounter": ref("Encounter", enc["id"]),
                "performedPeriod": {"start": fmt_dt(start, self.tz), "end": fmt_dt(end, self.tz)},
                "performer": [{"actor": self.prac_ref(enc["prac"])}],
            })

    def make_immunizations(self) -> None:
        rng = self.rng
        n = rng.choices((0, 1, 2, 3), weights=(30, 30, 25, 15))[0]
        amb = [e for e in self.encounters if e["class"] == "AMB"] or self.encounters
        for k in range(1, n + 1):
            enc = amb[rng.randrange(len(amb))]
            age = age_years(self.birth, enc["start"])
            eligible = [v for v in VACCINES if v[2] <= age <= v[3]] or [VACCINES[0]]
            cvx, disp, _lo, _hi = eligible[rng.randrange(len(eligible))]
            t = enc["start"] + dt.timedelta(minutes=rng.randrange(5, 15))
            if t > enc["end"]:
                t = enc["end"]
            site = VACCINE_SITES[rng.randrange(2)]
            self.out.append({
                "resourceType": "Immunization",
                "id": f"imm-{self.pnum}-{k:02d}",
                "status": "completed",
                "vaccineCode": cc(SYS_CVX, cvx, disp),
                "patient": self.subject(),
                "encounter": ref("Encounter", enc["id"]),
                "occurrenceDateTime": fmt_dt(t, self.tz),
                "recorded": fmt_dt(t, self.tz),
                "primarySource": True,
                "lotNumber": f"LOT{rng.randrange(100000, 999999)}",
                "site": cc("http://terminology.hl7.org/CodeSystem/v3-ActSite", site[0], site[1]),
                "route": cc("http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
                            "IM", "Injection, intramuscular"),
                "performer": [{"actor": self.prac_ref(enc["prac"])}],
            })


# ---------------------------------------------------------------------------
# Output

def dumps(res: dict) -> str:
    return json.dumps(res, separators=(",", ":"), ensure_ascii=False)


class BundleWriter:
    """Packs groups of resources (one group per patient) into transaction
    Bundles of at most `size` entries; a group is only split when it alone
    exceeds the bundle size."""

    def __init__(self, directory: str, size: int):
        self.dir = directory
        self.size = size
        self.entries: list[str] = []
        self.count = 0
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "tx-*.json")):
            os.remove(stale)

    @staticmethod
    def entry(res: dict, line: str) -> str:
        rtype, rid = res["resourceType"], res["id"]
        full = uuid.uuid5(UUID_NS, f"{rtype}/{rid}")
        return ('{"fullUrl":"urn:uuid:%s","resource":%s,"request":{"method":"PUT","url":"%s/%s"}}'
                % (full, line, rtype, rid))

    def add_group(self, group: list[tuple[dict, str]]) -> None:
        if self.entries and len(self.entries) + len(group) > self.size:
            self.flush()
        for res, line in group:
            if len(self.entries) >= self.size:
                self.flush()
            self.entries.append(self.entry(res, line))

    def flush(self) -> None:
        if not self.entries:
            return
        self.count += 1
        path = os.path.join(self.dir, f"tx-{self.count:05d}.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write('{"resourceType":"Bundle","type":"transaction","entry":[')
            f.write(",".join(self.entries))
            f.write("]}\n")
        self.entries = []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate deterministic synthetic FHIR R4 data.")
    ap.add_argument("--patients", type=int, required=True, help="number of patients")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    ap.add_argument("--format", choices=("ndjson", "bundles", "both"), default="ndjson")
    ap.add_argument("--bundle-size", type=int, default=500, help="max entries per transaction bundle")
    args = ap.parse_args(argv)
    if args.patients < 1:
        ap.error("--patients must be >= 1")
    if args.bundle_size < 1:
        ap.error("--bundle-size must be >= 1")

    t_start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    want_ndjson = args.format in ("ndjson", "both")
    want_bundles = args.format in ("bundles", "both")

    rng = random.Random(args.seed)
    n_orgs = max(2, math.ceil(args.patients / 200))
    n_pracs = max(5, math.ceil(args.patients / 50))
    orgs = make_organizations(rng, n_orgs)
    pracs = make_practitioners(rng, n_pracs, orgs)

    # Remove our own outputs that this run does not rewrite, so that a
    # directory never mixes data from runs with different arguments.
    if not want_ndjson:
        for t in RESOURCE_TYPES:
            stale = os.path.join(args.out, f"{t}.ndjson")
            if os.path.exists(stale):
                os.remove(stale)
    if not want_bundles:
        for stale in glob.glob(os.path.join(args.out, "bundles", "tx-*.json")):
            os.remove(stale)

    files = {}
    if want_ndjson:
        for t in RESOURCE_TYPES:
            files[t] = open(os.path.join(args.out, f"{t}.ndjson"), "w", encoding="utf-8", newline="\n")
    bundles = BundleWriter(os.path.join(args.out, "bundles"), args.bundle_size) if want_bundles else None
    counts = {t: 0 for t in RESOURCE_TYPES}

    def emit(group: list[dict]) -> None:
        lines = [(r, dumps(r)) for r in group]
        for r, line in lines:
            counts[r["resourceType"]] += 1
            if want_ndjson:
                files[r["resourceType"]].write(line + "\n")
        if bundles is not None:
            bundles.add_group(lines)

    # Shared pool first so that references resolve in bundle order.
    emit(orgs + pracs)
    if bundles is not None:
        bundles.flush()

    # Each patient gets its own RNG stream derived from (seed, index), so a
    # given patient's clinical content does not depend on the other patients.
    for i in range(1, args.patients + 1):
        prng = random.Random(args.seed * 1_000_003 + i)
        emit(PatientGen(i, prng, pracs, orgs).generate())

    if bundles is not None:
        bundles.flush()
    for f in files.values():
        f.close()

    elapsed = time.perf_counter() - t_start
    total = sum(counts.values())
    w = max(len(t) for t in RESOURCE_TYPES)
    err = sys.stderr
    print(f"gen_data: {args.patients} patients, seed {args.seed}, format {args.format} -> {args.out}", file=err)
    for t in RESOURCE_TYPES:
        print(f"  {t:<{w}} {counts[t]:>9}", file=err)
    print(f"  {'TOTAL':<{w}} {total:>9}  ({total / args.patients:.1f} per patient)", file=err)
    if bundles is not None:
        print(f"  bundles: {bundles.count} (max {args.bundle_size} entries)", file=err)
    print(f"  generated in {elapsed:.2f} s", file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
