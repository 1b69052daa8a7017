#!/usr/bin/env bash
# KL divergence and same-top-token rates of the fixture recipes against the float32 checkpoint,
# as a Markdown table for the README (`make kl-table`):
#   bash scripts/kl_table.sh [FIXTURES_DIR] [MOECL]
# Every fixture is made by mlx-lm from the same seeded base weights (tests/fixtures/manifest.json),
# so each row measures what its storage recipe loses. The text is the fixtures' evaluation text
# (perplexity/tokens.txt: 512 ids the f32 model sampled itself); windows of 64, stride 64.
# The reference run saves full rows, so the KL values are exact.
set -euo pipefail
fx="${1:-tests/fixtures}"
moecl="${2:-build/moecl}"
ctx=64
tokens="$fx/perplexity/tokens.txt"
[ -f "$tokens" ] || { echo "kl_table: $tokens missing (make fixtures makes it)" >&2; exit 1; }
tmp="$(mktemp -d "${TMPDIR:-/tmp}/moecl-kl-table.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
export POCL_DEVICES="${POCL_DEVICES:-pthread}"

"$moecl" perplexity --no-progress -m "$fx/f32" --tokens "$tokens" --ctx "$ctx" \
    --save-logits "$tmp/f32.lp" --save-logits-full > "$tmp/base.txt"
base_ppl="$(sed -n 's/^perplexity: \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p' "$tmp/base.txt")"

recipes="bf16 affine_b8_g64 affine_b6_g64 affine_b5_g64 affine_b4_g64 affine_b3_g64 affine_b2_g64
affine_b8_g32 affine_b6_g32 affine_b5_g32 affine_b4_g32 affine_b3_g32 affine_b2_g32 affine_b4_g128
mixed_4_6 permodule_4_8 mxfp4_q8 hf_mxfp4 f32_b4_g64 top2_b4_g64"

echo "KL(f32 ‖ recipe) on $(sed -n 's/^text: \([0-9]*\) tokens.*/\1/p' "$tmp/base.txt") tokens, window = stride = $ctx, \
$(sed -n 's/.*windows, \([0-9]*\) scored.*/\1/p' "$tmp/base.txt") scored positions; f32 PPL $base_ppl"
echo
echo "| recipe | bits/weight | PPL | PPL ratio | mean KL | median KL | p99 KL | p99.9 KL | same top |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in $recipes; do
    [ -d "$fx/$r" ] || continue
    out="$("$moecl" perplexity --no-progress -m "$fx/$r" --kl-divergence "$tmp/f32.lp")"
    bpw="$("$moecl" inspect "$fx/$r" --json | sed -n 's/.*"bits_per_weight": \([0-9.]*\),.*/\1/p')"
    val() { printf '%s\n' "$out" | sed -n "s/^  $1: *\([-0-9.e+]*\).*/\1/p"; }
    printf '| %s | %.2f | %.4g | %.4g | %.4g | %.4g | %.4g | %.4g | %.2f%% |\n' "$r" "$bpw" \
        "$(val 'this PPL')" "$(val 'PPL ratio')" "$(val 'mean KL')" "$(val 'median KL')" \
        "$(val 'p99 KL')" "$(val 'p99.9 KL')" "$(val 'same top token')"
done
