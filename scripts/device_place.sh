#!/usr/bin/env bash
# Heterogeneous placement, measured: prefill and decode tokens/s (median of REPS runs) and the
# memory report (--report-memory) of all-GPU, all-CPU, --cpu-moe and --n-cpu-moe N.
#
# On the NVIDIA machine, from the repository root:
#   bash .device/run.sh 'make -j16 UNICODE_DIR=$PWD/build/unicode build/moecl build/mkmodel &&
#                        bash scripts/device_place.sh'
# It writes a full-size synthetic gpt-oss-20b MLX 4-bit checkpoint (build/mkmodel --full --like
# mlx-4bit, 11.8 GB) into $MODEL (default /tmp/moecl-place-20b) unless one is already there.
#
# Locally, with two PoCL devices standing in for the GPU and the CPU:
#   POCL_DEVICES="pthread pthread" GPU=pocl:1 CPU=pocl:0 N_CPU_MOE=2 \
#       MODEL=$(build/moecl generate --max-tokens 1 -p x 2>&1 >/dev/null | sed -n 's/.*model \(\/[^ ]*\).*/\1/p') \
#       bash scripts/device_place.sh
#
# Environment: MODEL, GPU (default gpu), CPU (default cpu), N_CPU_MOE (12), PROMPT_WORDS (128,
# about one token each), DECODE_TOKENS (32), REPS (3), MICRO_BATCH (64: the last row, --cpu-moe
# with prefill micro-batches pipelined across the devices), MOECL (build/moecl).
set -euo pipefail

MOECL=${MOECL:-build/moecl}
MODEL=${MODEL:-/tmp/moecl-place-20b}
GPU=${GPU:-gpu}
CPU=${CPU:-cpu}
N_CPU_MOE=${N_CPU_MOE:-12}
PROMPT_WORDS=${PROMPT_WORDS:-128}
DECODE_TOKENS=${DECODE_TOKENS:-32}
REPS=${REPS:-3}
MICRO_BATCH=${MICRO_BATCH:-64}
export MOECL_CL_CACHE_DIR=${MOECL_CL_CACHE_DIR:-/tmp/moecl-clcache}

if [ ! -f "$MODEL/config.json" ]; then
    echo "device_place: writing $MODEL (build/mkmodel --full --like mlx-4bit)" >&2
    /usr/bin/time -f "device_place: mkmodel %e s, max RSS %M KiB" \
        build/mkmodel --full --like mlx-4bit --out "$MODEL" >&2
fi

"$MOECL" devices >&2 || true

words=(the quick brown fox jumps over a lazy dog while seven bright stars shine)
prompt=""
for ((i = 0; i < PROMPT_WORDS; i++)); do
    prompt+="${words[i % ${#words[@]}]} "
done

median() { sort -g | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print "nan"}'; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
declare -a names args envs
names=("all-GPU ($GPU)" "all-CPU ($CPU)" "--cpu-moe" "--n-cpu-moe $N_CPU_MOE"
       "--cpu-moe, pipelined $MICRO_BATCH")
args=("--device $GPU" "--device $CPU" "--device $GPU --cpu-moe" "--device $GPU --n-cpu-moe $N_CPU_MOE"
      "--device $GPU --cpu-moe")
# the last row: prefill in micro-batches of MICRO_BATCH rows pipelined across the two devices
envs=("" "" "" "" "MOECL_MICRO_BATCH=$MICRO_BATCH")

printf '%-26s %14s %14s   %s\n' "placement" "prefill tok/s" "decode tok/s" "(median of $REPS; prompt ~$PROMPT_WORDS words, $DECODE_TOKENS generated)" >"$out/table"
for k in "${!names[@]}"; do
    : >"$out/pre"
    : >"$out/dec"
    ok=1
    for ((r = 0; r < REPS; r++)); do
        # shellcheck disable=SC2086
        if ! env ${envs[k]} "$MOECL" generate -m "$MODEL" ${args[k]} -p "$prompt" --max-tokens "$DECODE_TOKENS" \
            --temp 0 --report-memory >/dev/null 2>"$out/err"; then
            echo "device_place: ${names[k]} failed:" >&2
            tail -5 "$out/err" >&2
            ok=0
            break
        fi
        sed -n 's/^prompt: \([0-9]*\) tokens, \([0-9.]*\) tokens\/s.*/\2/p' "$out/err" >>"$out/pre"
        sed -n 's/.*| generation: \([0-9]*\) tokens, \([0-9.]*\) tokens\/s.*/\2/p' "$out/err" >>"$out/dec"
    done
    if [ $ok = 1 ]; then
        printf '%-26s %14s %14s\n' "${names[k]}" "$(median <"$out/pre")" "$(median <"$out/dec")" >>"$out/table"
        echo "== ${names[k]}: ${envs[k]} moecl generate ${args[k]} (last run)"
        sed -n '/^prompt:/p;/^memory report/,$p' "$out/err"
    else
        printf '%-26s %14s %14s\n' "${names[k]}" "failed" "failed" >>"$out/table"
    fi
done
echo
cat "$out/table"
