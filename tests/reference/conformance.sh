#!/usr/bin/env bash
# moecl against mlx-lm on a freshly generated fixture set with a random seed, so that the
# conformance tests are not tuned to the committed fixtures' seed.
# Usage: bash tests/reference/conformance.sh [SEED]   (MOECL_KEEP_FIXTURES=1 keeps the folder)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
seed="${1:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/moecl-conformance.XXXXXX")"
if [ "${MOECL_KEEP_FIXTURES:-0}" = 1 ]; then
    echo "conformance: keeping $tmp"
else
    trap 'rm -rf "$tmp"' EXIT
fi
echo "conformance: seed $seed (rerun: bash tests/reference/conformance.sh $seed)"
bash tests/reference/make_fixtures.sh "$tmp" "$seed"
make -j2 --no-print-directory build/moecl_tests
set +e
MOECL_FIXTURES_DIR="$tmp" build/moecl_tests conformance_
rc=$?
set -e
echo "conformance: seed $seed, exit status $rc"
exit $rc
