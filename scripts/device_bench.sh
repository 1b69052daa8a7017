#!/usr/bin/env bash
# Speed of moecl on the NVIDIA machine (issue 8), the lead's final measurement. Run from the
# repository root on the device machine, through the set-up wrapper:
#
#   bash .device/run.sh 'bash scripts/device_bench.sh'
#
# (with `.device` and `build/unicode` carried). It builds moecl, writes two full-size synthetic
# gpt-oss-20b checkpoints into $MODELS (default /tmp/moecl-models): mlx-4bit (affine 4-bit g64)
# and mxfp4 (mxfp4 experts), then runs `moecl bench -p 512 -n 128` on each with everything on
# the GPU, and, when this build has the placement options, attention on the GPU with the
# experts on PoCL's CPU device (--cpu-moe). Markdown goes to stdout; JSON and logs to $OUT
# (default ./device-bench-out).
#
# Each configuration runs with both numerics (--numerics exact, the default, then fast).
# Environment: REPS (repetitions, default 3), PP (default 512), TG (default 128), MODELS, OUT,
# KEEP=1 to keep the checkpoints, SKIP_MXFP4=1 to measure the 4-bit one only; for a dry run of
# the script elsewhere: DEVICE=cpu SIZE=--tiny (defaults gpu and --full).
set -euo pipefail

REPS=${REPS:-3}
PP=${PP:-512}
TG=${TG:-128}
MODELS=${MODELS:-/tmp/moecl-models}
OUT=${OUT:-./device-bench-out}
DEVICE=${DEVICE:-gpu}
SIZE=${SIZE:---full}
JOBS=$(nproc 2>/dev/null || echo 8)
mkdir -p "$MODELS" "$OUT"

make -j"$JOBS" UNICODE_DIR="$PWD/build/unicode" build/moecl build/mkmodel >"$OUT/build.log" 2>&1 ||
    { tail -30 "$OUT/build.log"; exit 1; }

./build/moecl devices | tee "$OUT/devices.txt"
if [ "$DEVICE" = gpu ] && ! ./build/moecl devices | grep -q ' gpu '; then
    echo "device_bench: no GPU listed (is NVIDIA's ICD registered? see .device/README.md)" >&2
    exit 1
fi

presets=(mlx-4bit)
[ "${SKIP_MXFP4:-0}" = 1 ] || presets+=(mxfp4)

# placement: attention on the GPU, experts on the CPU device, if this build has it
place_args=()
if ./build/moecl bench --help 2>&1 | grep -q -- '--cpu-moe'; then
    place_args=(--cpu-moe)
fi

for preset in "${presets[@]}"; do
    dir="$MODELS/gpt-oss-20b-$preset$SIZE"
    if [ ! -f "$dir/config.json" ]; then
        echo "== writing $dir"
        /usr/bin/time -f "%e s, %M KB max RSS" ./build/mkmodel "$SIZE" --like "$preset" --out "$dir" \
            --quiet 2>&1 | tail -1
    fi
    for num in exact fast; do
    echo "== $preset, everything on $DEVICE, $num numerics"
    ./build/moecl bench -m "$dir" --device "$DEVICE" -p "$PP" -n "$TG" -r "$REPS" --membw --fma \
        --numerics "$num" --profile | tee "$OUT/$preset-gpu-$num.md"
    if [ ${#place_args[@]} -gt 0 ]; then
        echo "== $preset, attention on the GPU, experts on the CPU (${place_args[*]}), $num numerics"
        ./build/moecl bench -m "$dir" --device "$DEVICE" "${place_args[@]}" -p 0 -n 32 \
            -r "$REPS" --membw --numerics "$num" --profile | tee "$OUT/$preset-cpu-moe-$num.md"
        # the bound that matters there: host memory bandwidth for the expert bytes
        ./build/moecl bench --device cpu --membw -r 5 | tee "$OUT/cpu-membw.md"
    else
        echo "== placement options not in this build: attention-on-GPU/experts-on-CPU skipped"
    fi
    done
    [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
done
