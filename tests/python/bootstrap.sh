#!/usr/bin/env bash
# Make (idempotently) a Python environment holding tests/python/requirements.txt
# (fhirclient for tests/it/smart_fhirclient.rs, openapi-spec-validator for
# tests/it/openapi.rs) and print its python on stdout (the only, so the last,
# line of stdout).
#
#   PY=$(bash tests/python/bootstrap.sh "$CARGO_TARGET_DIR/vesta-pyenv")
#   "$PY" tests/python/smart_fhirclient.py --fhir-base ... 
#
# The environment is `python3 -m venv`; where venv cannot be made, virtualenv;
# failing both, `pip install --target DIR/site-packages` with DIR/bin/python a
# wrapper that puts it on PYTHONPATH. DIR/.requirements.sha256 holds the
# sha256 of requirements.txt once it is installed: a later run with the same
# requirements checks the environment still imports and does nothing more.
# Changed requirements rebuild the environment from scratch.
#
# Environment: PYTHON (default python3) is the interpreter to build on;
# VESTA_PYENV_METHOD=venv|virtualenv|target forces one way (default: the first
# that works). Everything but the final path goes to stderr.
set -euo pipefail

usage() { echo "usage: $0 ENV_DIR   (e.g. \$CARGO_TARGET_DIR/vesta-pyenv)" >&2; exit 2; }
[ $# -eq 1 ] && [ -n "$1" ] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
req="$here/requirements.txt"
[ -f "$req" ] || { echo "bootstrap: $req not found" >&2; exit 1; }

dir=$1
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
dir=${dir%/}
[ -n "$dir" ] && [ "$dir" != "/" ] || usage
py_host=${PYTHON:-python3}
method=${VESTA_PYENV_METHOD:-auto}
marker="$dir/.requirements.sha256"
tag="$dir/.vesta-pyenv"
env_py="$dir/bin/python"

command -v "$py_host" >/dev/null 2>&1 || { echo "bootstrap: $py_host not found" >&2; exit 1; }

if command -v sha256sum >/dev/null 2>&1; then
    want=$(sha256sum "$req" | cut -d' ' -f1)
else
    want=$("$py_host" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$req")
fi

# One bootstrap at a time per environment (parallel test runs share it).
mkdir -p "$(dirname "$dir")"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dir.lock"
    flock 9
fi

usable() {
    [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && [ -x "$env_py" ] \
        && "$env_py" -c 'import fhirclient, requests, openapi_spec_validator, mcp' >/dev/null 2>&1
}

if usable; then
    echo "$env_py"
    exit 0
fi

# Rebuild. Remove only a directory this script (or venv/virtualenv) made.
if [ -e "$dir" ]; then
    if [ -f "$tag" ] || [ -f "$dir/pyvenv.cfg" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
        rm -rf "$dir"
    else
        echo "bootstrap: $dir exists and is not an environment made here; not touching it" >&2
        exit 1
    fi
fi

pip_quiet=(-q --disable-pip-version-check --no-input)
export PIP_ROOT_USER_ACTION=ignore  # the --target fallback runs the host's pip, often as root

try_venv() {
    "$py_host" -m venv "$dir" >&2 && [ -x "$env_py" ] && "$env_py" -m pip --version >/dev/null 2>&1
}
try_virtualenv() {
    if "$py_host" -m virtualenv --version >/dev/null 2>&1; then
        "$py_host" -m virtualenv -q -p "$py_host" "$dir" >&2
    elif command -v virtualenv >/dev/null 2>&1; then
        virtualenv -q -p "$py_host" "$dir" >&2
    else
        return 1
    fi
    [ -x "$env_py" ] && "$env_py" -m pip --version >/dev/null 2>&1
}
try_target() {
    "$py_host" -m pip --version >/dev/null 2>&1 || return 1
    mkdir -p "$dir/bin" "$dir/site-packages"
    local host_abs
    host_abs=$("$py_host" -c 'import sys; print(sys.executable)')
    cat >"$env_py" <<EOF
#!/bin/sh
# Made by tests/python/bootstrap.sh (pip --target fallback).
PYTHONPATH="$dir/site-packages\${PYTHONPATH:+:\$PYTHONPATH}" exec "$host_abs" "\$@"
EOF
    chmod +x "$env_py"
}

made=
for m in venv virtualenv target; do
    [ "$method" = auto ] || [ "$method" = "$m" ] || continue
    rm -rf "$dir"
    if "try_$m"; then made=$m; break; fi
    echo "bootstrap: could not make the environment with $m" >&2
done
if [ -z "$made" ]; then
    rm -rf "$dir"
    echo "bootstrap: no way to make a Python environment (tried: ${method/auto/venv virtualenv target})" >&2
    exit 1
fi
touch "$tag"

echo "bootstrap: installing $(basename "$req") into $dir ($made)" >&2
if [ "$made" = target ]; then
    "$py_host" -m pip install "${pip_quiet[@]}" --target "$dir/site-packages" -r "$req" >&2
else
    "$env_py" -m pip install "${pip_quiet[@]}" -r "$req" >&2
fi
"$env_py" -c 'import fhirclient, requests, openapi_spec_validator, mcp' >&2

echo "$want" >"$marker"
echo "$env_py"
