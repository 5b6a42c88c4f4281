#!/usr/bin/env bash
# MCP tool-call overhead over REST for the same interaction (issue: MCP
# facade, bench). Builds the bench-fast profile, starts `vesta serve` on a
# fresh SQLite data folder, creates one Patient, mints one token whose
# audience covers the FHIR base and /mcp, and runs bench/mcp_overhead.py.
#
#   bash bench/mcp_overhead.sh            # N=2000 pairs
#   N=5000 bash bench/mcp_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vesta-target}"
N=${N:-2000}
PORT=${PORT:-18931}
cargo build --profile bench-fast -q
BIN="$CARGO_TARGET_DIR/bench-fast/vesta"
PY=$(bash tests/python/bootstrap.sh "$CARGO_TARGET_DIR/vesta-pyenv")
DIR=$(mktemp -d /tmp/vesta-mcp-bench.XXXXXX)
trap 'kill "$SERVER" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"' EXIT
# Budgets raised so that the benchmark measures serving, not throttling.
cat >"$DIR/vesta.toml" <<TOML
rate_limit_backend_per_minute = 100000
TOML
"$BIN" serve --config "$DIR/vesta.toml" --data-dir "$DIR/data" --addr "127.0.0.1:$PORT" >"$DIR/log" 2>&1 &
SERVER=$!
BASE="http://127.0.0.1:$PORT/fhir"
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break
    sleep 0.1
done
TOKEN=$("$BIN" token --data-dir "$DIR/data" --addr "127.0.0.1:$PORT" --client bench \
    --scopes 'system/*.cruds' --resource "http://127.0.0.1:$PORT/mcp")
curl -sf -X PUT "$BASE/Patient/bench-p1" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/fhir+json' \
    -d '{"resourceType":"Patient","id":"bench-p1","name":[{"family":"Bench","given":["Mark"]}],"birthDate":"1970-01-01"}' >/dev/null
echo "vesta $(git rev-parse --short HEAD), bench-fast build, SQLite, $(nproc) cores"
"$PY" bench/mcp_overhead.py --base "$BASE" --token "$TOKEN" --id bench-p1 --n "$N"
