#!/usr/bin/env bash
# Make (idempotently) the Node tools of tests/node/package-lock.json (the MCP
# Inspector CLI, driven by tests/it/mcp.rs) in DIR, outside the repository,
# and print DIR on stdout (the only line of stdout). Run them with
#
#   DIR=$(bash tests/node/bootstrap.sh "$CARGO_TARGET_DIR/vesta-node")
#   npx --no --prefix "$DIR" -- mcp-inspector --cli URL --method tools/list
#
# The install is `npm install` from the committed lock file (exact versions
# and integrity hashes; npm must not change it: when the registry gains a
# package the lock's packages name, as vite's optional
# napi-windows-process-start-time, the lock is regenerated), with install scripts off,
# npm's download cache in DIR/npm-cache, and bounded by VESTA_NPM_TIMEOUT_S
# seconds (default 300). DIR/.lock.sha256 holds the lock's sha256 once
# installed: a later run with the same lock checks the tool is there and
# does nothing more. A changed lock reinstalls from scratch.
#
# Exit status: 0 ready; 3 npm/npx not installed (callers skip); 1 otherwise.
# Everything but the final line goes to stderr.
set -euo pipefail

usage() { echo "usage: $0 DIR   (e.g. \$CARGO_TARGET_DIR/vesta-node)" >&2; exit 2; }
[ $# -eq 1 ] && [ -n "$1" ] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lock="$here/package-lock.json"
[ -f "$lock" ] && [ -f "$here/package.json" ] || { echo "bootstrap: $lock not found" >&2; exit 1; }

for tool in npm npx; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bootstrap: $tool not found" >&2; exit 3; }
done

dir=$1
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
dir=${dir%/}
[ -n "$dir" ] && [ "$dir" != "/" ] || usage
limit_s=${VESTA_NPM_TIMEOUT_S:-300}
marker="$dir/.lock.sha256"
tag="$dir/.vesta-node"

if command -v sha256sum >/dev/null 2>&1; then
    want=$(sha256sum "$lock" | cut -d' ' -f1)
else
    want=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$lock")
fi

# One bootstrap at a time per folder (parallel tests share it).
mkdir -p "$(dirname "$dir")"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dir.lock"
    flock 9
fi

usable() {
    [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] \
        && [ -x "$dir/node_modules/.bin/mcp-inspector" ]
}

if usable; then
    echo "$dir"
    exit 0
fi

# Reinstall. Remove only a folder this script made (or an empty one).
if [ -e "$dir" ]; then
    if [ -f "$tag" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
        rm -rf "$dir/node_modules" "$marker"
    else
        echo "bootstrap: $dir exists and was not made here; not touching it" >&2
        exit 1
    fi
fi
mkdir -p "$dir"
touch "$tag"
cp "$here/package.json" "$lock" "$dir/"

echo "bootstrap: installing $(basename "$lock") into $dir (at most ${limit_s} s)" >&2
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
if ! (cd "$dir" && timeout "$limit_s" npm install --no-audit --no-fund --loglevel=error \
        --ignore-scripts --prefer-offline --cache "$dir/npm-cache" >&2); then
    echo "bootstrap: npm install failed or took longer than ${limit_s} s" >&2
    exit 1
fi
if ! cmp -s "$lock" "$dir/package-lock.json"; then
    echo "bootstrap: npm changed the lock file: versions differ from tests/node/package-lock.json" >&2
    exit 1
fi
[ -x "$dir/node_modules/.bin/mcp-inspector" ] || { echo "bootstrap: mcp-inspector missing after install" >&2; exit 1; }

echo "$want" >"$marker"
echo "$dir"
