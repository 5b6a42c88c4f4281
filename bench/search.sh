#!/usr/bin/env bash
# Search benchmark at scale: generate PATIENTS patients (31,500 ≈ 1,000,000
# resources), import them with `vesta import`, serve, and time the ten
# representative queries (p50/p95, bench/search_queries.py); then print the
# database's plan for each query (`vesta explain`).
#
# Environment:
#   PATIENTS            patients to generate (default 31500)
#   VESTA_BIN           the binary (default $CARGO_TARGET_DIR/bench-fast/vesta)
#   VESTA_DATABASE_URL  PostgreSQL instead of SQLite in a temp data dir
#   DATA_DIR            reuse this data dir / generated data (skips generation
#                       and import when DATA_DIR/imported exists)
#   RUNS                timed runs per query (default 50)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
PATIENTS="${PATIENTS:-31500}"
RUNS="${RUNS:-50}"
VESTA_BIN="${VESTA_BIN:-${CARGO_TARGET_DIR:-$here/../target}/bench-fast/vesta}"
[ -x "$VESTA_BIN" ] || { echo "build first: cargo build --profile bench-fast" >&2; exit 1; }
work="${DATA_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/vesta-search.XXXXXX")}"
mkdir -p "$work"
store=(--data-dir "$work/data")
backend="sqlite"
if [ -n "${VESTA_DATABASE_URL:-}" ]; then
    store=(--database-url "$VESTA_DATABASE_URL")
    backend="postgres"
fi
echo "# bench/search.sh  PATIENTS=$PATIENTS backend=$backend binary=$VESTA_BIN"
echo "# machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
if [ ! -e "$work/imported-$backend" ]; then
    if [ ! -e "$work/gen/Patient.ndjson" ]; then
        python3 "$here/gen_data.py" --patients "$PATIENTS" --out "$work/gen" 2>"$work/gen.log"
        tail -2 "$work/gen.log"
    fi
    total=$(cat "$work"/gen/*.ndjson | wc -l)
    echo "# importing $total resources"
    /usr/bin/time -v "$VESTA_BIN" import --quiet "${store[@]}" "$work"/gen/*.ndjson 2>"$work/import-time.log" | tee "$work/import.log"
    grep -E "Maximum resident|Elapsed" "$work/import-time.log"
    touch "$work/imported-$backend"
fi
port=$(free_port)
"$VESTA_BIN" serve --addr "127.0.0.1:$port" "${store[@]}" >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
wait_ready "$port"
# A system token, as a backend client would hold: every query is
# authorised, Consent-checked and audited as in production.
token=$("$VESTA_BIN" token "${store[@]}" --addr "127.0.0.1:$port" --client bench-search --scopes 'system/*.rs')
python3 "$here/search_queries.py" --base "http://127.0.0.1:$port/fhir" --runs "$RUNS" --token "$token"
echo "# server RSS after the queries: $(ps -o rss= -p $pid | awk '{printf "%.0f MiB", $1/1024}')"
kill $pid; wait $pid 2>/dev/null || true
trap - EXIT
if [ -n "${EXPLAIN:-1}" ]; then
    python3 - "$here/search_queries.py" <<'PY' | while IFS= read -r q; do
import importlib.util, sys
spec = importlib.util.spec_from_file_location("q", sys.argv[1]); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
for name, q in m.QUERIES:
    print(q)
PY
        case "$q" in
            Patient/*/*) continue ;;  # compartment searches are planned like type searches
        esac
        echo "## $q"
        "$VESTA_BIN" explain "${store[@]}" "$q" | sed -n '/-- plan:/,$p' | tail -n +2
    done
fi
echo "# data kept in $work"
