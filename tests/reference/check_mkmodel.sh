#!/usr/bin/env bash
# Proof that mlx-lm loads what tools/mkmodel writes: for a tiny checkpoint of every MLX preset
# (and the Hugging Face MXFP4 layout, which mlx-lm's sanitize() converts), load it with mlx-lm,
# run a forward pass over a token sequence longer than the sliding window and require finite
# logits of the right shape. The Hugging Face bf16 layout must FAIL to load in mlx-lm (spec
# gpt-oss-mlx-format.md §1.5: sanitize() of mlx-lm HEAD cannot map it).
#
# Uses tests/reference/mlx_eval.py (the fixtures' evaluator) when present, else mlx-lm's
# load_model directly. Needs the venv of tests/reference/setup_venv.sh (build/venv).
#
#   bash tests/reference/check_mkmodel.sh [MKMODEL]      exit status 0 = all as expected
set -u
cd "$(dirname "$0")/../.."
MKMODEL=${1:-${MOECL_MKMODEL:-build/mkmodel}}
PY=${MOECL_VENV_PY:-build/venv/bin/python}
[ -x "$MKMODEL" ] || { echo "check_mkmodel: $MKMODEL not built (make build/mkmodel)"; exit 2; }
[ -x "$PY" ] || { echo "check_mkmodel: $PY missing (bash tests/reference/setup_venv.sh)"; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/moecl-check-mkmodel-XXXXXX")
trap 'rm -rf "$work"' EXIT

# 24 tokens > window 8 of the tiny config; ids < the reduced vocab.
printf '%s\n' 1 5 9 100 200 3 4 7 8 11 12 13 14 15 16 17 18 19 20 21 22 23 300 400 >"$work/tokens.txt"

cat >"$work/check.py" <<'EOF'
import os, subprocess, sys
from pathlib import Path
sys.path.insert(0, "tests/reference")
import mlxref
mlxref.install_cpu_workarounds()
import mlx.core as mx

ckpt, tokens_file, vocab = sys.argv[1], sys.argv[2], int(sys.argv[3])
flags = sys.argv[4:]
if "tok" in flags:
    # the whole mlx_lm.load path: config, weights, tokenizer.json, generation_config eos ids
    from mlx_lm import load
    _, tok = load(ckpt)
    ids = tok.encode("Hello world")
    if ids != [13225, 2375] or 200012 not in tok.eos_token_ids:
        print("tokenizer mismatch:", ids, tok.eos_token_ids)
        sys.exit(1)
    print("mlx_lm.load: tokenizer.json encodes 'Hello world' as", ids)
tokens = [int(t) for t in open(tokens_file).read().split()]
evaluator = Path("tests/reference/mlx_eval.py")
if evaluator.exists():
    out = os.path.join(ckpt, "..", "logits.safetensors")
    cmd = [sys.executable, str(evaluator), ckpt, "--tokens-file", tokens_file, "--out", out]
    r = subprocess.run(cmd + (["--decode"] if "decode" in flags else []),
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("mlx_eval.py failed:", (r.stderr or r.stdout).strip().splitlines()[-1:])
        sys.exit(1)
    arrays = mx.load(out)
    logits = [a for a in arrays.values() if a.ndim >= 2 and a.shape[-1] == vocab]
    if not logits:
        print("no logits of width", vocab, "in", {k: v.shape for k, v in arrays.items()})
        sys.exit(1)
    how = "mlx_eval.py"
else:
    from mlx_lm.utils import load_model
    model, _ = load_model(Path(ckpt))
    how = "mlx_lm.utils.load_model"
    logits = [model(mx.array([tokens]))]
ok = True
for l in logits:
    l = l.astype(mx.float32)
    mx.eval(l)
    finite = bool(mx.all(mx.isfinite(l)).item())
    ok = ok and finite and l.shape[-1] == vocab
    print(f"{how}: logits {tuple(l.shape)} finite={finite} std={mx.std(l).item():.3f}")
sys.exit(0 if ok else 1)
EOF

fail=0
vocab=512
run() { # name expect(ok|fail) check-flags mkmodel-args...
    local name=$1 expect=$2 flags=$3
    shift 3
    local dir="$work/$name/m"
    mkdir -p "$work/$name"
    if ! "$MKMODEL" --out "$dir" --tiny --vocab $vocab --quiet "$@" >"$work/$name.log" 2>&1; then
        echo "FAIL $name: mkmodel failed: $(tail -1 "$work/$name.log")"
        fail=1
        return
    fi
    local out
    out=$(set -o pipefail; "$PY" "$work/check.py" "$dir" "$work/tokens.txt" $vocab $flags 2>&1 | grep -v '^\[transformers\]')
    local rc=$?
    if [ "$expect" = ok ] && [ $rc -eq 0 ]; then
        echo "ok   $name: $(echo "$out" | tail -n +1 | paste -sd ';' | cut -c1-230)"
    elif [ "$expect" = fail ] && [ $rc -ne 0 ]; then
        echo "ok   $name: mlx-lm refuses it as expected: $(echo "$out" | tail -1 | cut -c1-120)"
    else
        echo "FAIL $name (expected $expect): $(echo "$out" | tail -3)"
        fail=1
    fi
}

run mlx-4bit ok "tok decode" --like mlx-4bit
run mlx-4bit-24layers ok "" --like mlx-4bit --layers 24
run mlx-5bit-gs32 ok decode --like mlx-5bit-gs32
run mlx-6bit ok "" --like mlx-6bit
run optiq-4bit ok "" --like optiq-4bit
run mixed-4-6 ok "" --like mixed-4-6 --layers 8
run mxfp4 ok decode --like mxfp4
run hf-mxfp4 ok decode --like hf-mxfp4
run bf16 ok "" --mode none
run f32 ok "" --mode none --dtype f32
run affine-3bit-g32 ok "" --mode affine --bits 3 --group 32
run affine-2bit-g128 ok "" --mode affine --bits 2 --group 128 --hidden 256
run affine-8bit-f16 ok "" --mode affine --bits 8 --dtype f16
run mxfp8 ok "" --mode mxfp8
run nvfp4 ok "" --mode nvfp4
run hf-bf16 fail "" --like hf-bf16

[ $fail -eq 0 ] && echo "check_mkmodel: all as expected" || echo "check_mkmodel: FAILED"
exit $fail
