#!/usr/bin/env bash
# Regenerates the mlx-lm reference fixtures: bash tests/reference/make_fixtures.sh DIR [SEED]
# (make fixtures = DIR tests/fixtures, seed 1234). Creates build/venv on first use.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 DIR [SEED]" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
python="$(bash "$here/setup_venv.sh" | tail -n 1)"
start=$(date +%s)
"$python" "$here/make_fixtures.py" --out "$1" --seed "${2:-1234}"
# mlx-lm's perplexity and KL on those fixtures (the manifest's "perplexity" section)
"$python" "$here/mlx_perplexity.py" --fixtures "$1"
echo "make_fixtures: $(($(date +%s) - start)) s, $(du -sh "$1" | cut -f1) in $1"
