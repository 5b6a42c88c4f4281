#!/usr/bin/env bash
# Ingest through HTTP: transaction Bundles (bench/gen_data.py --format
# bundles) POSTed to /fhir by CLIENTS concurrent clients (default 8), each
# run into a fresh SQLite data folder (or VESTA_DATABASE_URL, not reset).
#
#   bash bench/ingest_http.sh                        # PATIENTS=1000, RUNS=3
#   PATIENTS=3400 CLIENTS=8 BUNDLE_SIZE=500 bash bench/ingest_http.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vesta-target}"
PATIENTS="${PATIENTS:-1000}"
RUNS="${RUNS:-3}"
CLIENTS="${CLIENTS:-8}"
BUNDLE_SIZE="${BUNDLE_SIZE:-500}"
VESTA_BIN="${VESTA_BIN:-$CARGO_TARGET_DIR/bench-fast/vesta}"
[ -x "$VESTA_BIN" ] || (cd "$here/.." && cargo build --profile bench-fast -q)
work="$(mktemp -d "${TMPDIR:-/tmp}/vesta-ingest-http.XXXXXX")"
trap 'kill ${pid:-} 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP_TMP:-}" ] || rm -rf "$work"' EXIT
python3 "$here/gen_data.py" --patients "$PATIENTS" --out "$work/gen" --format bundles \
    --bundle-size "$BUNDLE_SIZE" 2>"$work/gen.log"
echo "# bench/ingest_http.sh vesta $(git -C "$here/.." rev-parse --short HEAD) patients=$PATIENTS clients=$CLIENTS bundle_size=$BUNDLE_SIZE $(grep TOTAL "$work/gen.log" | tr -s ' ')"
echo "# machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
printf 'rate_limit_backend_per_minute = 100000\n' >"$work/vesta.toml"
rates=()
for r in $(seq 1 "$RUNS"); do
    store=(--data-dir "$work/data-$r")
    [ -n "${VESTA_DATABASE_URL:-}" ] && store=(--database-url "$VESTA_DATABASE_URL")
    port=$(free_port)
    "$VESTA_BIN" serve --config "$work/vesta.toml" --addr "127.0.0.1:$port" "${store[@]}" >"$work/serve-$r.log" 2>&1 &
    pid=$!
    wait_ready "$port"
    token=$("$VESTA_BIN" token "${store[@]}" --addr "127.0.0.1:$port" --client bench-ingest --scopes 'system/*.cruds')
    line=$(python3 "$here/ingest_http.py" --base "http://127.0.0.1:$port/fhir" --token "$token" \
        --bundles "$work/gen/bundles" --clients "$CLIENTS" | grep '^RESULT')
    echo "run=$r ${line#RESULT }"
    rates+=("$(echo "$line" | sed 's/.*rate=//')")
    kill "$pid"; wait "$pid" 2>/dev/null || true
done
printf '%s\n' "${rates[@]}" | python3 -c 'import sys, statistics; print("MEDIAN resources/s:", statistics.median(int(x) for x in sys.stdin.read().split()))'
