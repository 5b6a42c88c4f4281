#!/usr/bin/env python3
"""Median overhead of an MCP tool call over the same interaction through REST.

Against a running Vesta (started by bench/mcp_overhead.sh), with one token
whose audience covers both the FHIR base and the MCP endpoint, it times in
the same run, alternating so both see the same machine state:

  REST: GET {base}/Patient/{id}
  MCP:  POST {root}/mcp  tools/call fhir_read {type: Patient, id}

over one keep-alive connection each, and prints the medians, p95 and the
difference of medians. Only the Python standard library and `requests`
(already in the test environment) are used.

    python3 bench/mcp_overhead.py --base http://127.0.0.1:8099/fhir --token T --id bench-p1 --n 2000
"""

import argparse
import json
import statistics
import time

import requests


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    a = ap.parse_args()
    root = a.base.rsplit("/fhir", 1)[0]
    auth = {"Authorization": f"Bearer {a.token}"}
    rest = requests.Session()
    rest.headers.update(auth)
    mcp = requests.Session()
    mcp.headers.update(auth)
    mcp.headers.update({
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    })
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "fhir_read",
                                  "arguments": {"type": "Patient", "id": a.id}}})
    url = f"{a.base}/Patient/{a.id}"

    def one_rest():
        t = time.perf_counter()
        r = rest.get(url)
        dt = time.perf_counter() - t
        assert r.status_code == 200, r.text
        return dt

    def one_mcp():
        t = time.perf_counter()
        r = mcp.post(f"{root}/mcp", data=call)
        dt = time.perf_counter() - t
        body = r.json()
        assert r.status_code == 200 and not body["result"].get("isError"), r.text
        return dt

    for _ in range(a.warmup):
        one_rest()
        one_mcp()
    rest_t, mcp_t = [], []
    for _ in range(a.n):
        rest_t.append(one_rest())
        mcp_t.append(one_mcp())
    ms = lambda x: x * 1000
    mr, mm = statistics.median(rest_t), statistics.median(mcp_t)
    print(f"n={a.n} (after {a.warmup} warm-up pairs), one client, alternating")
    print(f"REST GET Patient/id      median {ms(mr):.3f} ms  p95 {ms(percentile(rest_t, 95)):.3f} ms")
    print(f"MCP  tools/call fhir_read median {ms(mm):.3f} ms  p95 {ms(percentile(mcp_t, 95)):.3f} ms")
    print(f"overhead (median MCP - median REST): {ms(mm - mr):.3f} ms")


if __name__ == "__main__":
    main()
