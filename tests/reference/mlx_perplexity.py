#!/usr/bin/env python3
"""mlx-lm's perplexity and KL divergence on the fixture models: the reference for
`moecl perplexity` (tests/test_perplexity.c).

    mlx_perplexity.py --fixtures DIR [--seed N]

Writes DIR/perplexity/tokens.txt (the evaluation text: token ids, whitespace-separated) and
adds a "perplexity" section to DIR/manifest.json (made by make_fixtures.py, which this script
runs after; make_fixtures.sh calls both). Nothing else in DIR changes.

The text: N_TOKENS ids sampled at temperature 1 from the f32 fixture model (mlx-lm, one token
per step with make_prompt_cache, numpy's seeded generator drawing from the float64 softmax),
starting from one seeded random id. Text the base model itself would write, so its perplexity
is that of fluent text, not of random ids.

Per model (PPL_MODELS) and window plan (PLANS: ctx, stride):
  - stride == ctx: mlx_lm.perplexity.eval_ppl itself (the tokens cut into rows of ctx, logits
    of row[:-1] against row[1:], standard error = std(ddof=1)/sqrt(n) * ppl);
  - stride < ctx: mlx-lm's logits of each window (model(window[None])) scored as
    moecl_ppl_plan documents: window 0 its targets 1..ctx-1, later windows their last
    `stride` tokens (llama.cpp --ppl-stride, Hugging Face's sliding window).
KL: KL(P_f32 || Q) over the full vocabulary per scored position of the (ctx, ctx) plan, with
mlx-lm's logits of both models; mean, median, p99, max and the same-top-token rate (argmax,
lowest id on ties), for every quantized fixture made from the same base weights.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlxref import install_cpu_workarounds  # noqa: E402

N_TOKENS = 512
PLANS = [(64, 64), (64, 16)]
PPL_MODELS = ["f32", "bf16", "affine_b4_g64", "affine_b8_g64", "mxfp4_q8"]
KL_BASE = "f32"
KL_MODELS = [
    "bf16",
    "affine_b8_g64", "affine_b6_g64", "affine_b5_g64", "affine_b4_g64", "affine_b3_g64",
    "affine_b2_g64",
    "affine_b8_g32", "affine_b6_g32", "affine_b5_g32", "affine_b4_g32", "affine_b3_g32",
    "affine_b2_g32",
    "affine_b4_g128", "mixed_4_6", "permodule_4_8", "mxfp4_q8", "hf_mxfp4", "top2_b4_g64",
    "f32_b4_g64",
]


def log_softmax64(logits):
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def sample_text(model, seed):
    from mlx_lm.models.cache import make_prompt_cache

    rng = np.random.default_rng([seed, 7])
    vocab = model.args.vocab_size
    tokens = [int(rng.integers(0, vocab))]
    cache = make_prompt_cache(model)
    logits = np.array(model(mx.array([tokens]), cache=cache)[0, -1].astype(mx.float32))
    while len(tokens) < N_TOKENS:
        p = np.exp(log_softmax64(logits))
        t = int(rng.choice(vocab, p=p / p.sum()))
        tokens.append(t)
        logits = np.array(model(mx.array([[t]]), cache=cache)[0, -1].astype(mx.float32))
    return np.array(tokens, dtype=np.int32)


def windows(n, ctx, stride):
    """(start, first_target) of every whole window: moecl_ppl_plan's rule."""
    out = []
    k = 0
    while k * stride + ctx <= n:
        start = k * stride
        prev_end = start - stride + ctx if k > 0 else 0
        out.append((start, max(prev_end, start + 1)))
        k += 1
    return out


def window_logprobs(model, tokens, ctx, stride):
    """[(target position, log-softmax row over the vocabulary)] in moecl's row order."""
    rows = []
    for start, first in windows(len(tokens), ctx, stride):
        w = tokens[start : start + ctx]
        lsm = log_softmax64(np.array(model(mx.array(w)[None])[0].astype(mx.float32)))
        for t in range(first, start + ctx):
            rows.append((t, lsm[t - 1 - start]))
    return rows


def ppl_of_nll(nll):
    nll = np.asarray(nll, dtype=np.float64)
    mean = float(nll.mean())
    se = float(nll.std(ddof=1) / math.sqrt(nll.size))
    return {"ppl": math.exp(mean), "ppl_se": math.exp(mean) * se, "mean_nll": mean,
            "scored": int(nll.size)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=None, help="default: the manifest's seed")
    args = ap.parse_args()
    install_cpu_workarounds()
    from mlx_lm.perplexity import eval_ppl
    from mlx_lm.utils import load_model

    root = args.fixtures.resolve()
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    seed = args.seed if args.seed is not None else int(manifest.get("seed", 1234))
    names = {f["name"] for f in manifest["fixtures"]}

    models = {}

    def get(name):
        if name not in models:
            models[name] = load_model(root / name)[0]
        return models[name]

    tokens = sample_text(get(KL_BASE), seed)
    out_dir = root / "perplexity"
    out_dir.mkdir(exist_ok=True)
    lines = [" ".join(str(int(t)) for t in tokens[i : i + 16]) for i in range(0, len(tokens), 16)]
    (out_dir / "tokens.txt").write_text("\n".join(lines) + "\n")

    ppl = []
    for name in PPL_MODELS:
        if name not in names:
            continue
        model = get(name)
        for ctx, stride in PLANS:
            entry = {"model": name, "ctx": ctx, "stride": stride}
            if stride == ctx:
                data = mx.array(tokens[: (len(tokens) // ctx) * ctx].reshape(-1, ctx))
                value, se = eval_ppl(model, data, batch_size=8)
                entry.update(ppl=float(value), ppl_se=float(se),
                             scored=int(data.shape[0] * (ctx - 1)),
                             method="mlx_lm.perplexity.eval_ppl")
            else:
                rows = window_logprobs(model, tokens, ctx, stride)
                entry.update(ppl_of_nll([-lsm[tokens[t]] for t, lsm in rows]))
                entry["method"] = "mlx-lm logits per window, moecl_ppl_plan's scoring"
            ppl.append(entry)
            print(f"{name:16s} ctx {ctx:3d} stride {stride:3d}  PPL {entry['ppl']:.4f} "
                  f"+/- {entry['ppl_se']:.4f}", flush=True)

    ctx = PLANS[0][0]
    base_rows = window_logprobs(get(KL_BASE), tokens, ctx, ctx)
    base = np.stack([r for _, r in base_rows])
    kl = []
    for name in KL_MODELS:
        if name not in names:
            continue
        q = np.stack([r for _, r in window_logprobs(get(name), tokens, ctx, ctx)])
        per_row = np.maximum((np.exp(base) * (base - q)).sum(axis=1), 0.0)
        same = float(np.mean(base.argmax(axis=1) == q.argmax(axis=1)))
        kl.append({"model": name, "kl_mean": float(per_row.mean()),
                   "kl_median": float(np.median(per_row)),
                   "kl_p99": float(np.percentile(per_row, 99)),
                   "kl_max": float(per_row.max()), "same_top": same})
        print(f"KL({KL_BASE} || {name:14s}) mean {per_row.mean():.5g} same top {same:.4f}",
              flush=True)
        models.pop(name, None) if name not in PPL_MODELS else None

    manifest["perplexity"] = {
        "generator": "tests/reference/mlx_perplexity.py",
        "tokens": "perplexity/tokens.txt",
        "n_tokens": int(len(tokens)),
        "text": f"{N_TOKENS} ids sampled at temperature 1 from the {KL_BASE} fixture (seed {seed})",
        "ppl": ppl,
        "kl_base": KL_BASE,
        "kl_ctx": ctx,
        "kl": kl,
        "kl_method": "full-vocabulary KL(P_base || Q) per scored position of the (ctx, ctx) "
                     "plan, mlx-lm logits of both; same_top = argmax agreement",
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    print(f"mlx_perplexity: wrote {out_dir / 'tokens.txt'} and the manifest's perplexity section")
    return 0


if __name__ == "__main__":
    sys.exit(main())
