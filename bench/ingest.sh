#!/usr/bin/env bash
# Bulk-ingest benchmark for `vesta import`.
#
# Generates deterministic synthetic FHIR R4 NDJSON with bench/gen_data.py and
# imports it RUNS times (default 3), timing each run, then reports
# resources/s per run and the median.
#
# Environment:
#   PATIENTS             patients to generate (default 3400, ~108k resources)
#   SEED                 generator seed (default 42)
#   RUNS                 number of timed runs (default 3)
#   VESTA_BIN            vesta binary (default $CARGO_TARGET_DIR/release/vesta,
#                        falling back to target/release/vesta)
#   VESTA_DATABASE_URL   if set, import into this database (--database-url)
#                        instead of a fresh embedded data dir per run
#   KEEP_TMP=1           keep the temp dir (generated data, logs) afterwards
#   PYTHON               python interpreter (default python3)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"

PATIENTS="${PATIENTS:-3400}"
SEED="${SEED:-42}"
RUNS="${RUNS:-3}"
PYTHON="${PYTHON:-python3}"
if ! [[ "$PATIENTS" =~ ^[1-9][0-9]*$ && "$RUNS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: PATIENTS and RUNS must be positive integers" >&2
    exit 1
fi

if [[ -z "${VESTA_BIN:-}" ]]; then
    if [[ -n "${CARGO_TARGET_DIR:-}" && -x "$CARGO_TARGET_DIR/release/vesta" ]]; then
        VESTA_BIN="$CARGO_TARGET_DIR/release/vesta"
    else
        VESTA_BIN="$repo_root/target/release/vesta"
    fi
fi
if [[ ! -x "$VESTA_BIN" ]]; then
    echo "error: vesta binary not found or not executable: $VESTA_BIN" >&2
    echo "       build it with 'cargo build --release' or set VESTA_BIN" >&2
    exit 1
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/vesta-ingest.XXXXXX")"
cleanup() {
    if [[ "${KEEP_TMP:-0}" == "1" ]]; then
        echo "kept temp dir: $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

# Hide the password of a database URL (scheme://user:pass@host/...).
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#g'; }

# ---------------------------------------------------------------------------
# Generate data
echo "== generating $PATIENTS patients (seed $SEED) into $tmp/gen" >&2
gen_start=$(date +%s.%N)
"$PYTHON" "$script_dir/gen_data.py" --patients "$PATIENTS" --seed "$SEED" \
    --format ndjson --out "$tmp/gen"
gen_end=$(date +%s.%N)
gen_secs=$(awk -v a="$gen_start" -v b="$gen_end" 'BEGIN { printf "%.2f", b - a }')

shopt -s nullglob
files=("$tmp"/gen/*.ndjson)
shopt -u nullglob
if (( ${#files[@]} == 0 )); then
    echo "error: generator produced no NDJSON files" >&2
    exit 1
fi
total=$(cat "${files[@]}" | wc -l | tr -d ' ')

if [[ -n "${VESTA_DATABASE_URL:-}" ]]; then
    backend="database ($(printf '%s' "$VESTA_DATABASE_URL" | sed -E 's#^([A-Za-z0-9+.-]+):.*#\1#'))"
    backend_note="runs share one database (not reset between runs): runs 2..$RUNS re-import (PUT) existing ids"
else
    backend="embedded data dir (fresh per run)"
    backend_note="each run imports into an empty $tmp/data"
fi

# ---------------------------------------------------------------------------
# Timed runs
declare -a secs rates
display_cmd=""
for ((i = 1; i <= RUNS; i++)); do
    if [[ -n "${VESTA_DATABASE_URL:-}" ]]; then
        cmd=("$VESTA_BIN" import --database-url "$VESTA_DATABASE_URL" "${files[@]}")
    else
        rm -rf "$tmp/data"
        cmd=("$VESTA_BIN" import --data-dir "$tmp/data" "${files[@]}")
    fi
    display_cmd="$(printf '%q ' "${cmd[@]}" | redact)"
    echo "== run $i/$RUNS" >&2
    log="$tmp/run-$i.log"
    start=$(date +%s.%N)
    rc=0
    "${cmd[@]}" >"$log" 2>&1 || rc=$?
    if (( rc != 0 )); then
        echo "error: import run $i failed (exit $rc); last lines of output:" >&2
        tail -n 30 "$log" | redact >&2
        exit 1
    fi
    end=$(date +%s.%N)
    s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
    r=$(awk -v n="$total" -v s="$s" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print 0 }')
    secs+=("$s")
    rates+=("$r")
    size=""
    if [[ -z "${VESTA_DATABASE_URL:-}" && -d "$tmp/data" ]]; then
        size=", data dir $(du -sh "$tmp/data" | cut -f1)"
    fi
    echo "   ${s} s, ${r} resources/s${size}" >&2
done

median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '
    { v[NR] = $1 }
    END {
        if (NR % 2) printf "%.0f", v[(NR + 1) / 2];
        else printf "%.0f", (v[NR / 2] + v[NR / 2 + 1]) / 2
    }')

# ---------------------------------------------------------------------------
# Report
cpu_model=$(grep -m1 -E '^(model name|Model name|cpu model|Hardware)[[:space:]]*:' /proc/cpuinfo 2>/dev/null \
    | cut -d: -f2- | sed -E 's/^[[:space:]]+//' || true)
if [[ -z "$cpu_model" ]] && command -v lscpu >/dev/null 2>&1; then
    cpu_model=$(lscpu | awk -F: '/^Model name/ { sub(/^[ \t]+/, "", $2); print $2; exit }')
fi
cpu_model="${cpu_model:-unknown}"
vesta_version=$("$VESTA_BIN" --version 2>/dev/null | head -n1 || true)
git_rev=$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo "unknown")

echo
echo "Vesta ingest benchmark"
echo "======================"
echo "command:    $display_cmd"
echo "binary:     $VESTA_BIN${vesta_version:+ ($vesta_version)}"
echo "git rev:    $git_rev"
echo "backend:    $backend"
echo "            $backend_note"
echo "machine:    nproc=$(nproc), arch=$(uname -m), cpu=$cpu_model"
echo "data:       $PATIENTS patients, seed $SEED, ${#files[@]} NDJSON files, generated in ${gen_secs} s"
echo "resources:  $total"
for ((i = 0; i < RUNS; i++)); do
    printf 'run %d:      %s s  %s resources/s\n' "$((i + 1))" "${secs[$i]}" "${rates[$i]}"
done
echo "median:     $median resources/s"
