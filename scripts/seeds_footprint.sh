#!/usr/bin/env bash
# The seeds' table: for each seed recipe, moecl's planned footprint (no file) and the measured
# one (a full-size checkpoint written by mkmodel, loaded with its pages prefaulted, 16 tokens
# prefilled) at the same context. Writes each checkpoint under $OUT (default build/models),
# measures it and deletes it again unless it is the shared mlx-4bit one.
#   bash scripts/seeds_footprint.sh [CTX]        (default 4096; ~2-3 min and up to 17 GB per recipe)
set -euo pipefail
ctx=${1:-4096}
out=${OUT:-build/models}
moecl=${MOECL:-build/moecl}
mkmodel=${MKMODEL:-build/mkmodel}
shared4=${SHARED_4BIT:-/work/main/build/models/gpt-oss-20b-mlx-4bit}
mkdir -p "$out"
for like in mlx-4bit optiq-4bit mlx-5bit-gs32 mlx-6bit; do
    echo "=== $like, context $ctx"
    "$moecl" footprint --like "$like" --ctx "$ctx" | sed -n '/^total/p;/^verdict/p'
    dir="$out/seed-$like"
    made=0
    if [ "$like" = mlx-4bit ] && [ -d "$shared4" ]; then
        dir=$shared4
    else
        /usr/bin/time -f "mkmodel: %e s" "$mkmodel" --full --like "$like" --out "$dir" --quiet
        made=1
    fi
    du -sb "$dir" | awk '{printf "on disk: %.2f GB\n", $1 / 1e9}'
    /usr/bin/time -f "measure: %e s, peak RSS %M KB" "$moecl" footprint "$dir" --ctx "$ctx" \
        --batch 16 --measure --measure-tokens 16 --populate | sed -n '/^measured/,$p'
    if [ "$made" = 1 ]; then rm -rf "$dir"; fi
done
