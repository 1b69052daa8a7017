#!/usr/bin/env bash
# Planned vs measured memory with GPU placements on the full-size synthetic checkpoint: for each
# placement, `moecl footprint --measure --populate` loads the checkpoint with every page of the
# mapping prefaulted (as if every expert had been used), prefills a few tokens, and prints the
# plan beside the unified-memory manager's measured bytes per device and class, and the host
# plan beside RSS and the mapping's Rss.
#
# On the NVIDIA machine, from the repository root:
#   bash .device/run.sh 'make -j16 UNICODE_DIR=$PWD/build/unicode build/moecl build/mkmodel &&
#                        bash scripts/device_footprint.sh'
# It writes a full-size gpt-oss-20b MLX 4-bit checkpoint (build/mkmodel --full --like mlx-4bit,
# 11.8 GB, about a minute) into $MODEL (default /tmp/moecl-place-20b, the one
# scripts/device_place.sh writes) unless one is already there.
#
# Locally, with the second PoCL device standing in for the GPU:
#   POCL_DEVICES="pthread pthread" GPU=pocl:1 CPU=pocl:0 \
#       MODEL=/work/main/build/models/gpt-oss-20b-mlx-4bit bash scripts/device_footprint.sh
#
# Environment: MODEL, GPU (default gpu), CPU (default cpu), CTX (4096), TOKENS (16),
# KV (f32), N_CPU_MOE (12), MOECL (build/moecl).
set -euo pipefail

MOECL=${MOECL:-build/moecl}
MODEL=${MODEL:-/tmp/moecl-place-20b}
GPU=${GPU:-gpu}
CPU=${CPU:-cpu}
CTX=${CTX:-4096}
TOKENS=${TOKENS:-16}
KV=${KV:-f32}
N_CPU_MOE=${N_CPU_MOE:-12}
export MOECL_CL_CACHE_DIR=${MOECL_CL_CACHE_DIR:-/tmp/moecl-clcache}

if [ ! -f "$MODEL/config.json" ]; then
    echo "device_footprint: writing $MODEL (build/mkmodel --full --like mlx-4bit)" >&2
    /usr/bin/time -f "device_footprint: mkmodel %e s" \
        build/mkmodel --full --like mlx-4bit --out "$MODEL" --quiet >&2
fi
"$MOECL" devices >&2 || true

run() {
    local name=$1
    shift
    echo
    echo "=================== $name: $*"
    /usr/bin/time -f "device_footprint: $name %e s, peak RSS %M KiB" \
        "$MOECL" footprint "$MODEL" --ctx "$CTX" --batch "$TOKENS" --kv-type "$KV" \
        --measure --measure-tokens "$TOKENS" --populate "$@" || echo "device_footprint: $name: exit $?"
}

run all-gpu --place "all=$GPU"
run attn-gpu-experts-cpu --place "all=$GPU,experts=$CPU"
run "n-cpu-moe-$N_CPU_MOE" --place "all=$GPU" --n-cpu-moe "$N_CPU_MOE"
run all-cpu --place "all=$CPU"
