"""Medians of the RESULT lines (key=value pairs) read from stdin; used by bench/read.sh."""
import statistics
import sys

label = sys.argv[1] if len(sys.argv) > 1 else ""
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in sys.stdin if line.strip()]
if not rows:
    sys.exit("no results")


def med(key):
    return statistics.median(float(r[key]) for r in rows)


print(
    f"{label} MEDIAN of {len(rows)}: rps={med('rps'):.0f} p50_ms={med('p50_ms'):.2f} "
    f"p95_ms={med('p95_ms'):.2f} p99_ms={med('p99_ms'):.2f} "
    f"errors={sum(int(r['errors']) for r in rows)}"
    + (
        f" cpu_us_per_req={med('cpu_us_per_req'):.0f} steal_pct={med('steal_pct'):.1f}"
        if all("cpu_us_per_req" in r for r in rows)
        else ""
    )
)
