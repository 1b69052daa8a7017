#!/usr/bin/env bash
# Float16 vs float32 KV cache on the fixtures, measured with `moecl perplexity`: the f32-KV run
# saves full log-probability rows, the f16-KV run compares against them (exact KL per position).
# 1024 seeded random token ids per fixture, windows of 256 tokens evaluated in steps of 16 (so
# every step after the first reads the KV ring).
#   bash scripts/kv_f16_kl.sh [FIXTURE...]     (default: f32 f32_b4_g64 bf16 affine_b4_g64 mxfp4_q8)
set -euo pipefail
moecl=${MOECL:-build/moecl}
fx=${MOECL_FIXTURES_DIR:-tests/fixtures}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(f32 f32_b4_g64 bf16 affine_b4_g64 mxfp4_q8)
printf '| fixture | mean KL | p99 KL | max KL | same top token | PPL ratio |\n'
printf '|---|---|---|---|---|---|\n'
for n in "${names[@]}"; do
    vocab=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$fx/$n/config.json")
    awk -v v="$vocab" 'BEGIN { srand(5); for (i = 0; i < 1024; i++) printf "%d ", int(rand() * v); print "" }' \
        > "$tmp/$n.tok"
    common=(-m "$fx/$n" --tokens "$tmp/$n.tok" --ctx 256 --batch 16 --no-progress)
    "$moecl" perplexity "${common[@]}" --save-logits-full --save-logits "$tmp/$n.ref" > /dev/null
    "$moecl" perplexity "${common[@]}" --kv-type f16 --kl-divergence "$tmp/$n.ref" > "$tmp/$n.kl"
    get() { sed -n "s/^ *$1: *\([^ ]*\).*/\1/p" "$tmp/$n.kl"; }
    printf '| %s | %s | %s | %s | %s | %s |\n' "$n" "$(get 'mean KL')" \
        "$(get 'p99 KL')" "$(get 'max KL')" "$(get 'same top token')" "$(get 'PPL ratio')"
done
