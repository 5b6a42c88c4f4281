#!/usr/bin/env python3
"""Search latency benchmark: runs the ten representative queries against a
running Vesta server (data from bench/gen_data.py) and prints p50/p95 per
query, one client, keep-alive HTTP. Standard library only.

Usage: python3 bench/search_queries.py --base http://127.0.0.1:8080/fhir [--runs 50] [--token T]
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
import urllib.parse

# The ten queries (issue: token, date range, chain, _has, _include, _sort with paging).
QUERIES = [
    ("token", "Observation?code=http://loinc.org|8867-4&_count=50"),
    ("token+patient", "Observation?patient=Patient/pat-000042&code=http://loinc.org|8480-6"),
    ("date range", "Observation?date=ge2020-01-01&date=lt2020-02-01&_count=50"),
    ("string", "Patient?family=smi&_count=50"),
    ("identifier", "Patient?identifier=http://hospital.example.org/mrn|MRN00000123"),
    ("chain", "Observation?subject:Patient.family=smith&code=http://loinc.org|2339-0&_count=50"),
    ("_has", "Patient?_has:Condition:patient:code=http://snomed.info/sct|44054006&_count=50"),
    ("_include", "MedicationRequest?status=active&_include=MedicationRequest:subject&_count=50"),
    ("_sort+paging", "Encounter?date=ge2019-01-01&_sort=-date&_count=20"),
    ("compartment", "Patient/pat-000042/Observation?category=vital-signs&_count=50"),
]


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:8080/fhir")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--token", default=None)
    args = ap.parse_args()
    u = urllib.parse.urlparse(args.base)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
    headers = {"Accept": "application/fhir+json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    print(f"# {sys.argv[0]} --base {args.base} --runs {args.runs}")
    print(f"{'query':<16} {'matches':>8} {'p50 ms':>8} {'p95 ms':>8}  request")
    for name, q in QUERIES:
        path = f"{u.path}/{q}"
        times = []
        matches = 0
        for i in range(args.warmup + args.runs):
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            dt_ms = (time.perf_counter() - t0) * 1000.0
            if resp.status != 200:
                print(f"{name}: HTTP {resp.status}: {body[:300]!r}", file=sys.stderr)
                return 1
            if i >= args.warmup:
                times.append(dt_ms)
            if i == 0:
                b = json.loads(body)
                matches = sum(1 for e in b.get("entry", []) if e.get("search", {}).get("mode") == "match")
        print(f"{name:<16} {matches:>8} {statistics.median(times):>8.2f} {percentile(times, 95):>8.2f}  {q}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
