#!/usr/bin/env bash
# Read-by-id throughput and latency under concurrency (and a mixed
# read/search/update load), driven by wrk against `vesta serve`.
#
#   bash bench/read.sh                       # SQLite, PATIENTS=1000, 1/16/64 clients
#   VESTA_DATABASE_URL=postgres://… bash bench/read.sh
#   CLIENTS="16" RUNS=5 DURATION=20 MIX=1 bash bench/read.sh
#   EXTRA_CONFIG='max_connections = 4' bash bench/read.sh   # extra vesta.toml lines
#
# Every request is authenticated (a minted system token, verified per
# request) and writes its AuditEvent, as in production. wrk runs on the same
# machine, so it takes part of the CPU from the server. Each run also reports
# the server's CPU time per request (user + system, steady under a noisy
# host) and the host's steal time over the run (CPU the hypervisor gave to
# other guests: high steal makes requests/s and latency unreliable).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vesta-target}"
PATIENTS="${PATIENTS:-1000}"
CLIENTS="${CLIENTS:-1 16 64}"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-15}"
MIX="${MIX:-0}"
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }
VESTA_BIN="${VESTA_BIN:-$CARGO_TARGET_DIR/bench-fast/vesta}"
[ -x "$VESTA_BIN" ] || (cd "$here/.." && cargo build --profile bench-fast -q)
work="$(mktemp -d "${TMPDIR:-/tmp}/vesta-read.XXXXXX")"
store=(--data-dir "$work/data")
backend=sqlite
if [ -n "${VESTA_DATABASE_URL:-}" ]; then
    store=(--database-url "$VESTA_DATABASE_URL")
    backend=postgres
fi
python3 "$here/gen_data.py" --patients "$PATIENTS" --out "$work/gen" 2>"$work/gen.log"
gen="$work/gen"
"$VESTA_BIN" import --quiet "${store[@]}" "$gen"/Organization.ndjson "$gen"/Practitioner.ndjson \
    "$gen"/Patient.ndjson "$gen"/Encounter.ndjson "$gen"/Observation.ndjson >"$work/import.log"
port=$(free_port)
# Budget raised to its most (100,000 a minute per client app); the load is
# spread over APPS client apps (default 16), so that it measures serving, not
# throttling (a 429 would show as an error in the result line).
printf 'rate_limit_backend_per_minute = 100000\n%s\n' "${EXTRA_CONFIG:-}" >"$work/vesta.toml"
"$VESTA_BIN" serve --config "$work/vesta.toml" --addr "127.0.0.1:$port" "${store[@]}" >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP_TMP:-}" ] || rm -rf "$work"' EXIT
wait_ready "$port"
# One token per simulated client app: rate budgets are per client, and the
# most one client may have (100,000 a minute) is below the load measured here.
TOKENS=""
for n in $(seq 1 "${APPS:-16}"); do
    t=$("$VESTA_BIN" token "${store[@]}" --addr "127.0.0.1:$port" --client "bench-$n" --scopes 'system/*.cruds')
    TOKENS="$TOKENS${TOKENS:+,}$t"
done
TOKEN="${TOKENS%%,*}"
export TOKENS PATIENTS MIX
curl -sf -o /dev/null "http://127.0.0.1:$port/fhir/Patient/pat-000001" -H "Authorization: Bearer $TOKEN" \
    || { echo "warm-up read failed" >&2; tail -5 "$work/serve.log" >&2; exit 1; }
echo "# bench/read.sh vesta $(git -C "$here/.." rev-parse --short HEAD) backend=$backend patients=$PATIENTS mix=$MIX duration=${DURATION}s runs=$RUNS"
echo "# machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
for c in $CLIENTS; do
    threads=$(( c < 2 ? 1 : 2 ))
    wrk -t"$threads" -c"$c" -d5s -s "$here/read.lua" "http://127.0.0.1:$port" >/dev/null  # warm-up
    results=()
    for r in $(seq 1 "$RUNS"); do
        cpu0=$(proc_cpu_ticks "$pid"); steal0=$(host_steal)
        line=$(wrk -t"$threads" -c"$c" -d"${DURATION}s" -s "$here/read.lua" "http://127.0.0.1:$port" | grep '^RESULT')
        cpu1=$(proc_cpu_ticks "$pid"); steal1=$(host_steal)
        extra=$(python3 - "$line" "$cpu0" "$cpu1" "$steal0" "$steal1" "$(getconf CLK_TCK)" <<'PY'
import sys
line, c0, c1, s0, s1, hz = sys.argv[1:]
n = int(dict(kv.split("=", 1) for kv in line.split()[1:])["requests"])
s0, s1 = [list(map(int, s.split())) for s in (s0, s1)]
print(f"cpu_us_per_req={(int(c1) - int(c0)) / int(hz) * 1e6 / max(n, 1):.0f} "
      f"steal_pct={100 * (s1[0] - s0[0]) / max(1, s1[1] - s0[1]):.1f}")
PY
)
        echo "clients=$c run=$r ${line#RESULT } $extra"
        results+=("${line#RESULT } $extra")
    done
    printf '%s\n' "${results[@]}" | python3 "$here/median.py" "clients=$c"
done
echo "# server RSS: $(ps -o rss= -p $pid | awk '{printf "%.0f MiB", $1/1024}')"
if [ "$MIX" = 1 ]; then
    # Server-side latency by interaction over every run (warm-ups included),
    # from the server's own histograms: which part of the mix the tail is.
    curl -sf "http://127.0.0.1:$port/metrics" -H "Authorization: Bearer $TOKEN" \
        | python3 "$here/latency_by_interaction.py" read search-type update
fi
