"""POSTs transaction Bundles to a FHIR base from N concurrent clients and
prints resources/s; used by bench/ingest_http.sh. Standard library only."""
import argparse
import concurrent.futures
import json
import pathlib
import time
import urllib.request


def post(base, token, path):
    body = path.read_bytes()
    entries = len(json.loads(body)["entry"])
    req = urllib.request.Request(
        base,
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/fhir+json",
            "Prefer": "return=minimal",
        },
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"{path.name}: HTTP {resp.status}")
    return entries


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--bundles", required=True)
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    files = sorted(pathlib.Path(a.bundles).glob("tx-*.json"))
    # The first bundle holds the shared Practitioners and Organizations
    # that the others reference: send it alone first.
    first, rest = files[0], files[1:]
    started = time.perf_counter()
    total = post(a.base, a.token, first)
    with concurrent.futures.ThreadPoolExecutor(a.clients) as pool:
        for n in pool.map(lambda p: post(a.base, a.token, p), rest):
            total += n
    secs = time.perf_counter() - started
    print(f"RESULT resources={total} bundles={len(files)} clients={a.clients} "
          f"seconds={secs:.2f} rate={total / secs:.0f}")


if __name__ == "__main__":
    main()
