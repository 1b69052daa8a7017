#!/usr/bin/env bash
# Creates (or reuses) the Python venv build/venv with the pinned packages of
# tests/reference/requirements.txt. Idempotent: when the venv exists and was last
# installed from an identical requirements.txt (stamp file), nothing is done.
# Usage: bash tests/reference/setup_venv.sh   (prints the venv's python path last)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${MOECL_VENV:-$root/build/venv}"
req="$root/tests/reference/requirements.txt"
stamp="$venv/.moecl-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    "$venv/bin/python" -c 'import mlx.core, mlx_lm, numpy, safetensors' 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi

python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    echo "setup_venv: creating $venv" >&2
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv" >&2
fi
echo "setup_venv: installing pinned packages from $req" >&2
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" >&2
"$venv/bin/python" -c 'import mlx.core, mlx_lm, numpy, safetensors' >&2
echo "$want" >"$stamp"
echo "$venv/bin/python"
