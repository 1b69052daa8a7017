#!/usr/bin/env python3
"""Runs mlx-lm on any gpt-oss checkpoint folder and writes its logits for given tokens.

    mlx_eval.py DIR --tokens-file F --out OUT.safetensors [--decode]

DIR is loaded with mlx_lm.utils.load_model (exactly what mlx_lm.load does for the weights:
sanitize, config quantization map, shape-inferred quantization), so a folder that mlx-lm
cannot load fails here with mlx-lm's own error (exit status 1).
F holds the token ids: a .safetensors file with an integer tensor "tokens", a .npy file, a
JSON list, or text with ids separated by spaces, commas or newlines.
OUT gets `tokens` I32 [T] and `prefill_logits` F32 [T, V] (one forward of the whole sequence);
with --decode also `decode_logits` F32 [T, V] (one token per call with make_prompt_cache).
Run with the project's venv: build/venv/bin/python (bash tests/reference/setup_venv.sh).
"""

import argparse
import json
import re
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlxref import install_cpu_workarounds  # noqa: E402


def read_tokens(path):
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        toks = load_file(str(path))["tokens"]
    elif path.suffix == ".npy":
        toks = np.load(path)
    else:
        text = path.read_text().strip()
        if text.startswith("["):
            toks = np.array(json.loads(text))
        else:
            toks = np.array([int(t) for t in re.split(r"[\s,]+", text) if t])
    toks = np.asarray(toks).reshape(-1)
    if toks.size == 0 or not np.issubdtype(toks.dtype, np.integer):
        raise SystemExit(f"{path}: expected a non-empty list of integer token ids")
    return toks.astype(np.int32)


def main():
    ap = argparse.ArgumentParser(description="mlx-lm logits for a checkpoint folder")
    ap.add_argument("dir", type=Path)
    ap.add_argument("--tokens-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--decode", action="store_true", help="also token-by-token logits")
    args = ap.parse_args()
    install_cpu_workarounds()
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.utils import load_model

    tokens = read_tokens(args.tokens_file)
    try:
        model, config = load_model(args.dir)
    except Exception as e:  # report mlx-lm's refusal plainly
        print(f"mlx_eval: mlx-lm cannot load {args.dir}: {type(e).__name__}: {e}",
              file=sys.stderr)
        return 1
    vocab = config.get("vocab_size")
    if vocab is not None and int(tokens.max()) >= vocab:
        print(f"mlx_eval: token id {int(tokens.max())} >= vocab_size {vocab}", file=sys.stderr)
        return 1
    out = {"tokens": tokens}
    out["prefill_logits"] = np.array(model(mx.array(tokens)[None])[0].astype(mx.float32))
    if args.decode:
        cache = make_prompt_cache(model)
        rows = [np.array(model(mx.array([[int(t)]]), cache=cache)[0, -1].astype(mx.float32))
                for t in tokens]
        out["decode_logits"] = np.stack(rows)
    save_file(out, args.out)
    print(f"mlx_eval: {args.dir}: {len(tokens)} tokens -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
