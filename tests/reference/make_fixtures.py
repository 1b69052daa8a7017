#!/usr/bin/env python3
"""Reference fixtures for moecl, made by mlx-lm (the runtime the gpt-oss MLX checkpoints were
made for).

Builds one tiny gpt-oss model (real architecture: alternating sliding/full attention layers,
attention sinks, GQA, YaRN with gpt-oss's constants, biases everywhere, 8 experts top-4,
clamped SwiGLU) from seeded random weights, writes it as one checkpoint folder per storage kind
through mlx-lm's own functions (quantize_model with its predicates, the gpt_oss router
predicate, convert's mixed-recipe predicate builder, save_model, save_config), then LOADS EACH
FOLDER BACK with mlx_lm.utils.load_model and records its logits in <folder>/reference.safetensors.
tests/fixtures/manifest.json describes every fixture (see README.md beside this file).

Usage: make_fixtures.py --out DIR [--seed N] [--only NAME,...]
"""

import argparse
import copy
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_map_with_path
from safetensors.numpy import save_file

import mlx_lm
from mlx_lm.convert import mixed_quant_predicate_builder
from mlx_lm.models import gpt_oss
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.utils import load_model, quantize_model, save_config, save_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlxref import install_cpu_workarounds  # noqa: E402
import spec_forward  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Architecture. hidden 64 = 64*odd: groups 32 and 64 divide every input width (64, 256), group
# 128 divides only o_proj's 256, so at group 128 every module whose gpt-oss-20b input width is
# 2880 (embed, q/k/v, router, experts, lm_head) stays float exactly as in 20b (2880 % 128 != 0).
# intermediate == hidden as in gpt-oss-20b and -120b (square down_proj). The size keeps all
# fixtures together near 20 MB.
# ---------------------------------------------------------------------------------------------
HIDDEN = 64
INTER = 64
LAYERS = 4
Q_HEADS = 4
KV_HEADS = 2
HEAD_DIM = 64
VOCAB = 384  # > 256 so token ids do not fit a byte; small for the ~20 MB budget
EXPERTS = 8
WINDOW = 8
T = 40  # >= 4 * WINDOW
GREEDY_PROMPT = 8
GREEDY_STEPS = 32
LONG_T = 4160  # > original_max_position_embeddings (4096): YaRN's interpolated range
LONG_TAIL = 64
PREFILL_STEP = 2048  # mlx_lm.generate's default prefill_step_size
# Calls of mixed sizes on one cache over the first tokens: a prompt longer than the window,
# single tokens (the sliding layers' RotatingKVCache trims, then writes in place: its buffer
# holds the window rotated, which orders the attention sums), a multi-token call after the
# rotation (back to time order), and single tokens again.
CALLS = [11, 1, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1]
assert sum(CALLS) <= T and CALLS[0] > WINDOW and CALLS[0] % WINDOW

ROPE_SCALING = {
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "factor": 32.0,
    "original_max_position_embeddings": 4096,
    "rope_type": "yarn",
    "truncate": False,
}


def hf_config(top_k=4):
    """config.json as the openai/gpt-oss release writes it, with the tiny dimensions."""
    layer_types = ["sliding_attention", "full_attention"] * (LAYERS // 2)
    return {
        "architectures": ["GptOssForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "eos_token_id": VOCAB - 2,
        "experts_per_token": top_k,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initial_context_length": 4096,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "layer_types": layer_types,
        "max_position_embeddings": 131072,
        "model_type": "gpt_oss",
        "num_attention_heads": Q_HEADS,
        "num_experts_per_tok": top_k,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "num_local_experts": EXPERTS,
        "output_router_logits": False,
        "pad_token_id": VOCAB - 3,
        "rms_norm_eps": 1e-05,
        "rope_scaling": dict(ROPE_SCALING),
        "rope_theta": 150000,
        "router_aux_loss_coef": 0.9,
        "sliding_window": WINDOW,
        "swiglu_limit": 7.0,
        "tie_word_embeddings": False,
        "transformers_version": "4.55.0.dev0",
        "use_cache": True,
        "vocab_size": VOCAB,
    }


# Weight scales (standard deviations of the seeded normal draws; "in" = input width).
# Chosen so every part of the model matters and the logits are peaked:
#  - attention scores 0.125*mscale^2*q.k have std ~2.5 (q/k weights 1.2/sqrt(in)), sinks
#    N(0, 1.5^2) so the sink takes a visible share; sliding-window layers then differ from full;
#  - router logits std ~2.5: the top-4 selection is mostly decisive;
#  - expert gate/up pre-activations std ~4 (weights 0.5), so the SwiGLU clamps (gate <= 7,
#    |up| <= 7) are hit by a few percent of the values;
#  - lm_head gain LM_HEAD_GAIN with log-normal row norms: logits std ~5, max |logit| ~50
#    (below 64, where the bf16 ulp becomes 0.5); see the manifest's statistics.
SCALE = {
    "embed": 1.0,
    "qk": 1.2,
    "v": 1.0,
    "o": 0.6,
    "sink": 1.5,
    "router": 2.5,
    "router_bias": 0.5,
    "gate_up": 4.0,
    "expert_bias": 1.0,
    "down": 0.08,
    "attn_bias": 0.2,
    "norm_spread": 0.2,
}
LM_HEAD_GAIN = 4.0
LM_HEAD_ROW_SIGMA = 0.5


def make_base_weights(seed):
    """float32 numpy weights in MLX layout (names = mlx-lm module paths)."""
    rng = np.random.default_rng(seed)

    def n(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def lin(out_dim, in_dim, gain):
        return n((out_dim, in_dim), gain / math.sqrt(in_dim))

    w = {}
    w["model.embed_tokens.weight"] = n((VOCAB, HIDDEN), SCALE["embed"])
    qw, kvw = Q_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1.0 + n((HIDDEN,), SCALE["norm_spread"])
        w[p + "post_attention_layernorm.weight"] = 1.0 + n((HIDDEN,), SCALE["norm_spread"])
        a = p + "self_attn."
        w[a + "q_proj.weight"] = lin(qw, HIDDEN, SCALE["qk"])
        w[a + "q_proj.bias"] = n((qw,), SCALE["attn_bias"])
        w[a + "k_proj.weight"] = lin(kvw, HIDDEN, SCALE["qk"])
        w[a + "k_proj.bias"] = n((kvw,), SCALE["attn_bias"])
        w[a + "v_proj.weight"] = lin(kvw, HIDDEN, SCALE["v"])
        w[a + "v_proj.bias"] = n((kvw,), SCALE["attn_bias"])
        w[a + "o_proj.weight"] = lin(HIDDEN, qw, SCALE["o"])
        w[a + "o_proj.bias"] = n((HIDDEN,), SCALE["attn_bias"])
        w[a + "sinks"] = n((Q_HEADS,), SCALE["sink"])
        m = p + "mlp."
        w[m + "router.weight"] = lin(EXPERTS, HIDDEN, SCALE["router"])
        w[m + "router.bias"] = n((EXPERTS,), SCALE["router_bias"])
        e = m + "experts."
        w[e + "gate_proj.weight"] = n((EXPERTS, INTER, HIDDEN), SCALE["gate_up"] / math.sqrt(HIDDEN))
        w[e + "gate_proj.bias"] = n((EXPERTS, INTER), SCALE["expert_bias"])
        w[e + "up_proj.weight"] = n((EXPERTS, INTER, HIDDEN), SCALE["gate_up"] / math.sqrt(HIDDEN))
        w[e + "up_proj.bias"] = n((EXPERTS, INTER), SCALE["expert_bias"])
        w[e + "down_proj.weight"] = n((EXPERTS, HIDDEN, INTER), SCALE["down"] / math.sqrt(INTER))
        w[e + "down_proj.bias"] = n((EXPERTS, HIDDEN), SCALE["attn_bias"])
    w["model.norm.weight"] = 1.0 + n((HIDDEN,), SCALE["norm_spread"])
    # lm_head rows with log-normal norms (like token-frequency-dependent norms of trained
    # models): the logit distribution gets a heavier upper tail, hence fewer near-ties at the
    # top than with plain Gaussian rows (measured: rows with top1-top2 gap < 1% of max|logit|
    # 8.5% -> 6%) and a peaked softmax (median top-1 probability ~0.98).
    row_norm = np.exp(LM_HEAD_ROW_SIGMA * rng.standard_normal((VOCAB, 1))).astype(np.float32)
    w["lm_head.weight"] = lin(VOCAB, HIDDEN, LM_HEAD_GAIN) * row_norm
    return w


def fixed_tokens(seed):
    rng = np.random.default_rng([seed, 1])
    tokens = rng.integers(0, VOCAB, size=T, dtype=np.int64).astype(np.int32)
    prompt = rng.integers(0, VOCAB, size=GREEDY_PROMPT, dtype=np.int64).astype(np.int32)
    long_tokens = rng.integers(0, VOCAB, size=LONG_T, dtype=np.int64).astype(np.int32)
    return tokens, prompt, long_tokens


# ---------------------------------------------------------------------------------------------
# Building checkpoints with mlx-lm's functions
# ---------------------------------------------------------------------------------------------


def build_model(base, config, dtype):
    """An mlx-lm gpt_oss.Model holding the base weights cast to dtype (convert's set_dtype)."""
    args = gpt_oss.ModelArgs.from_dict(config)
    model = gpt_oss.Model(args)
    model.load_weights([(k, mx.array(v)) for k, v in base.items()], strict=True)

    def set_dtype(_, v):
        return v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v

    model.update(tree_map_with_path(set_dtype, model.parameters()))
    mx.eval(model.parameters())
    return model


def write_mlx(folder, model, config):
    save_model(folder, model)
    save_config(copy.deepcopy(config), config_path=Path(folder) / "config.json")


def quantized(base, config, dtype, group_size, bits, mode="affine", predicate=None):
    model = build_model(base, config, dtype)
    model, qconfig = quantize_model(
        model, config, group_size, bits, mode=mode, quant_predicate=predicate
    )
    mx.eval(model.parameters())
    return model, qconfig


def sensitivity_predicate(path, module):
    """A per-module 4/8-bit map like sensitivity-driven tools (mlx-optiq style) write: every
    quantized module gets an explicit dict. 8-bit: the router, lm_head, v_proj everywhere,
    all of the first and last layers' attention, and the experts' down_proj of layer 0;
    4-bit: everything else (embedding, q/k/o, gate/up experts). The 8-bit entries carry no
    "mode" (mlx-lm reads a dict without mode as affine), the 4-bit ones say "affine"."""
    eight = {"group_size": 64, "bits": 8}
    four = {"group_size": 64, "bits": 4, "mode": "affine"}
    parts = path.split(".")
    layer = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else -1
    if path.endswith("router") or path == "lm_head" or path.endswith("v_proj"):
        return eight
    if ".self_attn." in path and layer in (0, LAYERS - 1):
        return eight
    if path.endswith("experts.down_proj") and layer == 0:
        return eight
    return four


def bf16_np(a):
    """mx array -> numpy, keeping bf16 as its raw uint16 pattern (numpy has no bf16)."""
    if a.dtype == mx.bfloat16:
        return np.array(a.view(mx.uint16))
    return np.array(a)


def write_hf_mxfp4(folder, base):
    """The openai/gpt-oss release layout: experts as MXFP4 *_blocks/_scales (uint8) with
    gate/up interleaved on the output-row axis (row 2j = gate_j, 2j+1 = up_j), *_bias in bf16,
    everything else bf16 under the same names as MLX; config with quantization_config
    {quant_method: mxfp4} and no "quantization". The MXFP4 codes are mx.quantize(mode="mxfp4")
    of the bf16 experts (bit-identical layout, spec §1.5/§3.3)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, v in base.items():
        if ".mlp.experts." in k:
            continue
        out[k] = mx.array(v).astype(mx.bfloat16)
    for i in range(LAYERS):
        e = f"model.layers.{i}.mlp.experts."

        def q(name):
            wb = mx.array(base[e + name + ".weight"]).astype(mx.bfloat16)
            wq, sc = mx.quantize(wb, group_size=32, bits=4, mode="mxfp4")
            E, O, _ = wq.shape
            blocks = wq.view(mx.uint8).reshape(E, O, -1, 16)
            return blocks, sc

        gb, gs = q("gate_proj")
        ub, us = q("up_proj")
        out[e + "gate_up_proj_blocks"] = mx.stack([gb, ub], axis=2).reshape(
            EXPERTS, 2 * INTER, HIDDEN // 32, 16
        )
        out[e + "gate_up_proj_scales"] = mx.stack([gs, us], axis=2).reshape(
            EXPERTS, 2 * INTER, HIDDEN // 32
        )
        gbias = mx.array(base[e + "gate_proj.bias"]).astype(mx.bfloat16)
        ubias = mx.array(base[e + "up_proj.bias"]).astype(mx.bfloat16)
        out[e + "gate_up_proj_bias"] = mx.stack([gbias, ubias], axis=2).reshape(
            EXPERTS, 2 * INTER
        )
        db, ds = q("down_proj")
        out[e + "down_proj_blocks"] = db
        out[e + "down_proj_scales"] = ds
        out[e + "down_proj_bias"] = mx.array(base[e + "down_proj.bias"]).astype(mx.bfloat16)
    mx.eval(out)
    mx.save_safetensors(str(folder / "model.safetensors"), out, metadata={"format": "pt"})
    write_hf_index(folder, out)
    cfg = hf_config()
    cfg["quantization_config"] = {
        "modules_to_not_convert": [
            "model.layers.*.self_attn",
            "model.layers.*.mlp.router",
            "model.embed_tokens",
            "lm_head",
        ],
        "quant_method": "mxfp4",
    }
    with open(folder / "config.json", "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def write_hf_index(folder, tensors):
    index = {
        "metadata": {"total_size": int(sum(v.nbytes for v in tensors.values()))},
        "weight_map": {k: "model.safetensors" for k in sorted(tensors)},
    }
    with open(Path(folder) / "model.safetensors.index.json", "w") as f:
        json.dump(index, f, indent=2)


def write_hf_bf16(folder, base):
    """A bf16 fine-tune in transformers' layout: experts input-major,
    gate_up_proj [E, hidden(in), 2*inter(out)] with gate/up interleaved on the LAST axis
    (even = gate, odd = up), gate_up_proj_bias [E, 2*inter], down_proj [E, inter(in),
    hidden(out)], down_proj_bias [E, hidden] (spec §1.5). mlx-lm cannot load it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, v in base.items():
        if ".mlp.experts." in k:
            continue
        out[k] = mx.array(v).astype(mx.bfloat16)
    for i in range(LAYERS):
        e = f"model.layers.{i}.mlp.experts."
        g = mx.array(base[e + "gate_proj.weight"]).astype(mx.bfloat16)  # [E, I, H]
        u = mx.array(base[e + "up_proj.weight"]).astype(mx.bfloat16)
        gu = mx.stack([g.swapaxes(1, 2), u.swapaxes(1, 2)], axis=3)  # [E, H, I, 2]
        out[e + "gate_up_proj"] = gu.reshape(EXPERTS, HIDDEN, 2 * INTER)
        gbias = mx.array(base[e + "gate_proj.bias"]).astype(mx.bfloat16)
        ubias = mx.array(base[e + "up_proj.bias"]).astype(mx.bfloat16)
        out[e + "gate_up_proj_bias"] = mx.stack([gbias, ubias], axis=2).reshape(
            EXPERTS, 2 * INTER
        )
        d = mx.array(base[e + "down_proj.weight"]).astype(mx.bfloat16)  # [E, H, I]
        out[e + "down_proj"] = d.swapaxes(1, 2)  # [E, I(in), H(out)]
        out[e + "down_proj_bias"] = mx.array(base[e + "down_proj.bias"]).astype(mx.bfloat16)
    out = {k: mx.contiguous(v) for k, v in out.items()}
    mx.eval(out)
    mx.save_safetensors(str(folder / "model.safetensors"), out, metadata={"format": "pt"})
    write_hf_index(folder, out)
    cfg = hf_config()
    cfg["torch_dtype"] = "bfloat16"
    with open(folder / "config.json", "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def hf_bf16_to_mlx(hf_folder, mlx_folder):
    """The equivalent MLX-layout checkpoint of an hf_bf16 folder (spec §1.5 mapping: gate =
    W[:, :, 0::2]^T, up = W[:, :, 1::2]^T, down = W^T), written with mlx-lm's save_model."""
    w = mx.load(str(Path(hf_folder) / "model.safetensors"))
    out = {}
    for k, v in w.items():
        if k.endswith("experts.gate_up_proj"):
            p = k[: -len("gate_up_proj")]
            out[p + "gate_proj.weight"] = v[:, :, 0::2].swapaxes(1, 2)
            out[p + "up_proj.weight"] = v[:, :, 1::2].swapaxes(1, 2)
        elif k.endswith("experts.gate_up_proj_bias"):
            p = k[: -len("gate_up_proj_bias")]
            out[p + "gate_proj.bias"] = v[:, 0::2]
            out[p + "up_proj.bias"] = v[:, 1::2]
        elif k.endswith("experts.down_proj"):
            out[k + ".weight"] = v.swapaxes(1, 2)
        elif k.endswith("experts.down_proj_bias"):
            out[k[: -len("_bias")] + ".bias"] = v
        else:
            out[k] = v
    with open(Path(hf_folder) / "config.json") as f:
        config = json.load(f)
    model = gpt_oss.Model(gpt_oss.ModelArgs.from_dict(config))
    model.load_weights([(k, mx.contiguous(v)) for k, v in out.items()], strict=True)
    mx.eval(model.parameters())
    write_mlx(mlx_folder, model, config)


# ---------------------------------------------------------------------------------------------
# References: always from the model mlx-lm LOADS from the written folder
# ---------------------------------------------------------------------------------------------


def f32(a):
    return np.array(a.astype(mx.float32))


def top_gap(row):
    s = np.sort(row)
    return float(s[-1] - s[-2])


def compute_reference(folder, tokens, prompt, long_tokens):
    model, _ = load_model(Path(folder))
    ref = {"tokens": tokens.copy()}
    ref["prefill_logits"] = f32(model(mx.array(tokens)[None])[0])

    cache = make_prompt_cache(model)
    rows = []
    for t in tokens:
        out = model(mx.array([[int(t)]]), cache=cache)
        rows.append(f32(out[0, -1]))
    ref["decode_logits"] = np.stack(rows)

    cache = make_prompt_cache(model)
    logits = f32(model(mx.array(prompt)[None], cache=cache)[0, -1])
    greedy, gaps = [], []
    for _ in range(GREEDY_STEPS):
        tok = int(np.argmax(logits))
        greedy.append(tok)
        gaps.append(top_gap(logits))
        logits = f32(model(mx.array([[tok]]), cache=cache)[0, -1])
    ref["greedy_prompt"] = prompt.copy()
    cache = make_prompt_cache(model)
    rows, done = [], 0
    for n in CALLS:
        out = model(mx.array(tokens[done : done + n])[None], cache=cache)
        rows.append(f32(out[0, -1]))
        done += n
    ref["calls"] = np.array(CALLS, dtype=np.int32)
    ref["calls_logits"] = np.stack(rows)
    ref["greedy_tokens"] = np.array(greedy, dtype=np.int32)
    ref["greedy_gap"] = np.array(gaps, dtype=np.float32)

    if long_tokens is not None:
        cache = make_prompt_cache(model)
        head = LONG_T - LONG_TAIL
        for s in range(0, head, PREFILL_STEP):
            chunk = long_tokens[s : min(s + PREFILL_STEP, head)]
            mx.eval(model(mx.array(chunk)[None], cache=cache))
        tail = model(mx.array(long_tokens[head:])[None], cache=cache)
        ref["long_tokens"] = long_tokens.copy()
        ref["long_logits"] = f32(tail[0])
    if any(v.dtype != mx.float32 for _, v in tree_flatten(model.parameters())
           if mx.issubdtype(v.dtype, mx.floating)):
        # Same loaded checkpoint, every floating parameter upcast to float32 (exact: quantized
        # weights dequantize to the same values), float32 activations: an exact-arithmetic
        # reference for the quantized kernels, free of bf16 rounding noise.
        model.update(tree_map_with_path(
            lambda _, v: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v,
            model.parameters()))
        ref["prefill_logits_f32act"] = f32(model(mx.array(tokens)[None])[0])
    ref = {k: np.ascontiguousarray(v) for k, v in ref.items()}
    for k in ("tokens", "greedy_prompt", "greedy_tokens", "long_tokens", "calls"):
        if k in ref:
            ref[k] = ref[k].astype(np.int32)
    save_file(ref, str(Path(folder) / "reference.safetensors"))
    return ref


def peak_stats(ref):
    """Logit peakedness over the prefill and decode rows: top1-top2 gaps, spread of logits."""
    rows = np.concatenate([ref["prefill_logits"], ref["decode_logits"]])
    gaps = np.array([top_gap(r) for r in rows])
    std = rows.std(axis=1)
    probs = np.exp(rows - rows.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return {
        "rows": int(len(rows)),
        "logit_std_mean": round(float(std.mean()), 4),
        "max_abs_logit": round(float(np.abs(rows).max()), 4),
        "top1_top2_gap_min": round(float(gaps.min()), 4),
        "top1_top2_gap_p10": round(float(np.percentile(gaps, 10)), 4),
        "top1_top2_gap_median": round(float(np.median(gaps)), 4),
        "frac_gap_below_0_25": round(float((gaps < 0.25).mean()), 4),
        "frac_gap_below_0_5": round(float((gaps < 0.5).mean()), 4),
        "frac_gap_below_1": round(float((gaps < 1.0).mean()), 4),
        "top1_prob_median": round(float(np.median(probs.max(axis=1))), 4),
        "greedy_gap_min": round(float(ref["greedy_gap"].min()), 4),
    }


def spec_check(folder, tolerance):
    """Runs tests/reference/spec_forward.py's independent float64 forward (numpy, the spec's
    formulas and bit layouts) on the folder and compares with mlx-lm's reference. It must agree
    to 1e-4 of max|logit| (long_logits: KL max 1e-2, top-1 95%) with every float32 reference
    (float32 fixtures, and the prefill_logits_f32act of bf16 fixtures), else the generator or the spec is wrong and
    generation stops; for the bf16 references the numbers show the distance between mlx-lm's
    bf16 arithmetic and exact arithmetic on this model (what a non-bit-faithful engine sees)."""
    res = spec_forward.check_folder(folder, tolerance)
    rounded = {part: {k: (round(v, 6) if isinstance(v, float) else v) for k, v in st.items()}
               for part, st in res.items()}
    for part, st in res.items():
        if tolerance == "float32" or part == "prefill_f32act":
            # positions 4096.. : mlx's float32 rope angles p*inv_freq carry ~2^-24*4096 rad of
            # rounding, which a sharp attention row of a random model amplifies in single logits
            # (max|d| 5.2e-3 relative at seed 12, 3.4e-2 at seed 2615021819, with KL max 1.8e-3
            # and 7.7e-4, top-1 100%); so the long part is judged by its distributions: a wrong
            # formula or layout moves them by O(1)
            if part == "long":
                bad = st["kl_max"] > 1e-2 or st["top1_agreement"] < 0.95
            else:
                bad = st["max_abs_diff_rel"] > 1e-4
            if bad:
                raise SystemExit(f"{folder}: spec forward differs from mlx-lm ({part}): {st}")
    return rounded


# ---------------------------------------------------------------------------------------------
# The fixture set
# ---------------------------------------------------------------------------------------------

AFFINE_BITS = (2, 3, 4, 5, 6, 8)
AFFINE_GROUPS = (32, 64)


def fixture_specs():
    """name -> description; the build function is chosen in build_fixture()."""
    specs = []
    specs.append(("f32", "float32"))
    specs.append(("bf16", "bfloat16"))
    for b in AFFINE_BITS:
        for g in AFFINE_GROUPS:
            specs.append((f"affine_b{b}_g{g}", "affine"))
    specs += [
        ("affine_b4_g128", "affine"),
        ("mixed_4_6", "mixed"),
        ("permodule_4_8", "permodule"),
        ("mxfp4_q8", "mxfp4"),
        ("hf_mxfp4", "hf_mxfp4"),
        ("hf_bf16", "hf_bf16"),
        ("top2_b4_g64", "top2"),
        ("f32_b4_g64", "f32_affine"),
    ]
    return specs


def build_fixture(name, out, base, work):
    """Writes fixture `name` into out/name; returns its manifest entry (without stats)."""
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    cfg = hf_config()
    entry = {
        "name": name,
        "layout": "mlx",
        "tolerance": "bf16",
        "base_dtype": "bfloat16",
        "top_k": 4,
        "reference": "mlx-lm load_model on this folder",
        "long": False,
    }
    router8 = "gpt_oss Model.quant_predicate (router -> {group_size: 64, bits: 8})"
    if name == "f32":
        model = build_model(base, cfg, mx.float32)
        write_mlx(folder, model, cfg)
        entry.update(tolerance="float32", base_dtype="float32", long=True,
                     recipe={"quantized": False, "dtype": "float32"})
    elif name == "bf16":
        model = build_model(base, cfg, mx.bfloat16)
        write_mlx(folder, model, cfg)
        entry.update(long=True, recipe={"quantized": False, "dtype": "bfloat16"})
    elif name.startswith("affine_"):
        b, g = (int(x[1:]) for x in name.split("_")[1:])
        model, qcfg = quantized(base, cfg, mx.bfloat16, g, b)
        write_mlx(folder, model, qcfg)
        entry["recipe"] = {"mode": "affine", "bits": b, "group_size": g, "predicate": router8,
                           "tool": "mlx_lm.utils.quantize_model"}
        if g == 128:
            entry["recipe"]["note"] = ("modules whose input width (64, the 2880-like ones) is not "
                                       "divisible by 128 stay bf16 (quantize_model skips them); "
                                       "only o_proj (input 256) is quantized")
    elif name == "mixed_4_6":
        model = build_model(base, cfg, mx.bfloat16)
        # mlx_lm.convert -q --quant-predicate mixed_4_6 with the CLI's default
        # --q-group-size (None): the builder gets None, exactly as convert() passes it.
        pred = mixed_quant_predicate_builder("mixed_4_6", model, None)
        model, qcfg = quantize_model(model, cfg, None, None, quant_predicate=pred)
        mx.eval(model.parameters())
        write_mlx(folder, model, qcfg)
        entry["recipe"] = {"mode": "affine", "bits": "4/6", "group_size": "null (default 64)",
                           "predicate": "mlx_lm.convert.mixed_quant_predicate_builder('mixed_4_6', "
                                        "model, None), as `mlx_lm.convert -q --quant-predicate "
                                        "mixed_4_6` with default --q-group-size",
                           "tool": "mlx_lm.utils.quantize_model"}
    elif name == "permodule_4_8":
        model, qcfg = quantized(base, cfg, mx.bfloat16, 64, 4, predicate=sensitivity_predicate)
        write_mlx(folder, model, qcfg)
        entry["recipe"] = {"mode": "affine", "bits": "4/8", "group_size": 64,
                           "predicate": "explicit per-module dicts (tests/reference/"
                                        "make_fixtures.py sensitivity_predicate)",
                           "tool": "mlx_lm.utils.quantize_model"}
    elif name == "hf_mxfp4":
        write_hf_mxfp4(folder, base)
        entry.update(layout="hf_mxfp4",
                     reference="mlx-lm load_model on this folder (Model.sanitize + "
                               "quantization_config.quant_method mxfp4)")
        entry["recipe"] = {"mode": "mxfp4 (experts)", "bits": 4, "group_size": 32,
                           "rest": "bfloat16",
                           "tool": "mx.quantize(mode='mxfp4') of the bf16 experts, re-laid as "
                                   "OpenAI *_blocks/_scales"}
    elif name == "mxfp4_q8":
        src = out / "hf_mxfp4"
        if not (src / "model.safetensors").exists():
            write_hf_mxfp4(work / "hf_mxfp4_src", base)
            src = work / "hf_mxfp4_src"
        # What `mlx_lm.convert --hf-path <hf_mxfp4> -q --q-bits 8 --q-group-size 64` does:
        # load (experts become mxfp4 QuantizedSwitchLinear), quantize the rest affine.
        model, lcfg = load_model(src, lazy=True)
        model, qcfg = quantize_model(model, lcfg, 64, 8, mode="affine")
        mx.eval(model.parameters())
        write_mlx(folder, model, qcfg)
        entry["recipe"] = {"mode": "mxfp4 experts + affine 8-bit g64 rest", "bits": 8,
                           "group_size": 64, "predicate": router8,
                           "tool": "mlx_lm.utils.load_model(hf_mxfp4) + quantize_model "
                                   "(fine-grained per-module entries, as convert writes)"}
    elif name == "hf_bf16":
        write_hf_bf16(folder, base)
        eq = work / "hf_bf16_as_mlx"
        if eq.exists():
            shutil.rmtree(eq)
        hf_bf16_to_mlx(folder, eq)
        entry.update(layout="hf_bf16",
                     reference="mlx-lm load_model on the equivalent MLX-layout bf16 checkpoint "
                               "made from this folder's tensors (mlx-lm cannot load the HF bf16 "
                               "expert layout); identical to the bf16 fixture's reference",
                     recipe={"quantized": False, "dtype": "bfloat16"})
        entry["_reference_folder"] = str(eq)
    elif name == "top2_b4_g64":
        cfg = hf_config(top_k=2)
        model, qcfg = quantized(base, cfg, mx.bfloat16, 64, 4)
        write_mlx(folder, model, qcfg)
        entry.update(top_k=2)
        entry["recipe"] = {"mode": "affine", "bits": 4, "group_size": 64, "predicate": router8,
                           "tool": "mlx_lm.utils.quantize_model", "num_experts_per_tok": 2}
    elif name == "f32_b4_g64":
        model, qcfg = quantized(base, cfg, mx.float32, 64, 4)
        write_mlx(folder, model, qcfg)
        entry.update(tolerance="float32", base_dtype="float32")
        entry["recipe"] = {"mode": "affine", "bits": 4, "group_size": 64, "predicate": router8,
                           "tool": "mlx_lm.utils.quantize_model", "scales_dtype": "float32"}
    else:
        raise ValueError(f"unknown fixture {name}")
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--only", default=None, help="comma-separated fixture names")
    args = ap.parse_args()
    install_cpu_workarounds()
    t_start = time.time()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = make_base_weights(args.seed)
    tokens, prompt, long_tokens = fixed_tokens(args.seed)
    names = [n for n, _ in fixture_specs()]
    if args.only:
        unknown = set(args.only.split(",")) - set(names)
        if unknown:
            raise SystemExit(f"unknown fixture(s): {sorted(unknown)}")
        names = [n for n in names if n in args.only.split(",")]
    else:
        # a full run replaces the set: drop fixture folders that are no longer made
        for d in out.iterdir():
            if d.is_dir() and d.name not in names and (d / "reference.safetensors").exists():
                shutil.rmtree(d)
    fixtures = []
    refs = {}
    with tempfile.TemporaryDirectory(prefix="moecl-fixtures-") as tmp:
        work = Path(tmp)
        for name in names:
            t0 = time.time()
            entry = build_fixture(name, out, base, work)
            ref_folder = Path(entry.pop("_reference_folder", out / name))
            ref = compute_reference(ref_folder, tokens, prompt, long_tokens if entry["long"] else None)
            if ref_folder != out / name:
                shutil.copy(ref_folder / "reference.safetensors", out / name / "reference.safetensors")
            refs[name] = ref
            if name == "hf_bf16" and "bf16" in refs:
                for k in ("prefill_logits", "decode_logits", "greedy_tokens"):
                    if not np.array_equal(refs["bf16"][k], ref[k]):
                        raise SystemExit(f"hf_bf16: equivalent MLX checkpoint's {k} differs "
                                         "from the bf16 fixture's (layout mapping is wrong)")
                entry["reference_equals"] = "bf16"
            entry["peakedness"] = peak_stats(ref)
            entry["float64_spec_forward"] = spec_check(out / name, entry["tolerance"])
            entry["files"] = sorted(p.name for p in (out / name).iterdir())
            fixtures.append(entry)
            print(f"{name:16s} {time.time() - t0:6.1f}s  gap median "
                  f"{entry['peakedness']['top1_top2_gap_median']}", flush=True)
    manifest = {
        "about": "Reference fixtures for moecl, computed by mlx-lm from checkpoints it loaded "
                 "from each folder. Regenerate: make fixtures (tests/reference/make_fixtures.sh "
                 "tests/fixtures). See tests/reference/README.md.",
        "regenerate": "make fixtures",
        "generator": "tests/reference/make_fixtures.py",
        "versions": {"mlx": mx.__version__, "mlx_lm": mlx_lm.__version__,
                     "numpy": np.__version__, "python": sys.version.split()[0]},
        "seed": args.seed,
        "architecture": {
            "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
            "num_attention_heads": Q_HEADS, "num_key_value_heads": KV_HEADS,
            "head_dim": HEAD_DIM, "vocab_size": VOCAB, "num_local_experts": EXPERTS,
            "sliding_window": WINDOW, "rope_theta": 150000, "rope_scaling": ROPE_SCALING,
            "layer_types": hf_config()["layer_types"],
        },
        "sequences": {
            "T": T, "greedy_prompt": GREEDY_PROMPT, "greedy_steps": GREEDY_STEPS, "calls": CALLS,
            "long_T": LONG_T, "long_tail": LONG_TAIL, "long_prefill_chunk": PREFILL_STEP,
            "decode": "one token per call with mlx_lm.models.cache.make_prompt_cache "
                      "(KVCache for full layers, RotatingKVCache(max_size=window) for sliding)",
            "calls": "tokens fed to one such cache in calls of these sizes; calls_logits holds "
                     "each call's last row",
            "long": "long_tokens fed with the cache in chunks of 2048 up to position 4096, then "
                    "positions 4096..4159 as one chunk whose logits are long_logits",
        },
        "reference_numerics": (
            "mlx on its CPU backend with tests/reference/mlxref.py: for bf16/fp16 inputs "
            "mx.gather_mm (unsupported for bf16 on CPU), mx.quantized_matmul and mx.gather_qmm "
            "(which do not accumulate in float32 on CPU) run on exactly upcast float32 operands "
            "with one rounding of the output to bf16, as mlx's GPU kernels do (float32 "
            "accumulation). Everything else is mlx's own CPU code."),
        "extra_tensors": {
            "prefill_logits_f32act": (
                "bf16 fixtures only: prefill logits of the same loaded checkpoint with every "
                "floating parameter upcast to float32 (exact, so quantized weights dequantize to "
                "the same values) and float32 activations: checks dequantization and the forward "
                "pass at float32 tolerance, free of bf16 rounding noise"),
        },
        "float64_spec_forward": (
            "per fixture: tests/reference/spec_forward.py (numpy float64, the spec's formulas "
            "and bit layouts, no mlx) against each reference: max|d| (abs, relative to max|ref|), "
            "KL(ref||spec) mean/median/max and top-1 agreement on rows with ref gap >= 0.5. "
            "float32 references agree to ~1e-6 relative; the bf16 rows measure how far mlx-lm's "
            "bf16 arithmetic is from exact on this model (MoE routing flips make a few rows "
            "diverge)"),
        "tolerances": {
            "float32": "max |logit - ref| <= 1e-3 * max |ref logit| (per array)",
            "bf16": "mean KL(softmax(ref) || softmax(moecl)) <= 1e-3 and top-1 agreement >= 99%",
        },
        "peakedness_method": (
            f"seeded normal weights; lm_head rows N(0, ({LM_HEAD_GAIN}/sqrt(hidden))^2) times a "
            f"per-row log-normal norm exp({LM_HEAD_ROW_SIGMA}*N(0,1)), so logits have std ~5 "
            f"and a heavy upper tail; attention q/k gain {SCALE['qk']}, router gain {SCALE['router']}, "
            f"expert gate/up gain {SCALE['gate_up']} (SwiGLU clamps are hit), sinks "
            f"N(0,{SCALE['sink']}^2); per fixture 'peakedness' gives the top1-top2 gap "
            f"statistics over prefill+decode rows"),
        "weight_scales": SCALE,
        "fixtures": fixtures,
    }
    with open(out / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"wrote {len(fixtures)} fixtures to {out} in {time.time() - t_start:.1f}s")


if __name__ == "__main__":
    main()
