"""Prints, per FHIR interaction, the share of requests under each latency
bucket of the server's `vesta_fhir_request_duration_seconds` histogram
(Prometheus text on stdin). Arguments: the interactions to show."""

import re
import sys

BUCKET = re.compile(
    r'^vesta_fhir_request_duration_seconds_bucket\{interaction="([^"]+)",le="([^"]+)"\}\s+(\S+)'
)
SHOWN = ("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25")


def main() -> None:
    wanted = sys.argv[1:]
    buckets: dict[str, list[tuple[str, float]]] = {}
    for line in sys.stdin:
        m = BUCKET.match(line)
        if m and (not wanted or m.group(1) in wanted):
            buckets.setdefault(m.group(1), []).append((m.group(2), float(m.group(3))))
    for name in wanted or sorted(buckets):
        rows = buckets.get(name)
        if not rows or rows[-1][1] == 0:
            continue
        total = rows[-1][1]
        shares = " ".join(
            f"<={float(le) * 1000:g}ms:{count / total:.2f}" for le, count in rows if le in SHOWN
        )
        print(f"# server latency {name} n={total:.0f} {shares}")


if __name__ == "__main__":
    main()
