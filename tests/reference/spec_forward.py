#!/usr/bin/env python3
"""An independent check of the spec (shared/spec/gpt-oss-mlx-format.md) against mlx-lm.

Reads each fixture folder with its own safetensors parser (numpy only, no mlx), decodes the
weights with the spec's rules (config quantization map §4.3, affine LSB-first bit stream §3.2,
mxfp4 E2M1 codes and E8M0 scales §3.3, HF blocks §5.2, HF bf16 expert layout §1.5), runs the
spec's forward pass (§2: RMSNorm, YaRN with mlx-lm's truncated correction range, GQA attention
with sinks and sliding window, top-k then softmax routing, clamped SwiGLU) in float64, and
compares its prefill logits (and long_logits where present) with mlx-lm's reference.

    spec_forward.py [FIXTURES_DIR] [--only NAME,...]

float32 fixtures must agree to max|d| <= 1e-3 * max|ref|; bf16 fixtures are reported as mean
KL and top-1 agreement over the rows whose reference top1-top2 gap is >= 0.5 (mlx-lm computes
those in bf16, this script in float64). Exit status 1 if a float32 fixture is off or a bf16
fixture has mean KL > 1e-2.
"""

import argparse
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "U32": np.uint32, "U8": np.uint8,
          "I32": np.int32, "U16": np.uint16, "I64": np.int64}
FP4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])


def load_st(path):
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        if info["dtype"] == "BF16":
            u = np.frombuffer(data[a:b], dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(data[a:b], dtype=np.dtype(DTYPES[info["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"])
    return out


def unpack_codes(w, bits):
    """uint32 [..., n*bits/32] -> codes [..., n]: one LSB-first bit stream per row."""
    by = np.ascontiguousarray(w.astype("<u4")).view(np.uint8)
    bitstream = np.unpackbits(by, axis=-1, bitorder="little")
    n = bitstream.shape[-1] // bits
    b = bitstream.reshape(*bitstream.shape[:-1], n, bits).astype(np.int64)
    return (b << np.arange(bits)).sum(-1)


def dequant(w, scales, biases, group_size, bits, mode):
    if mode == "affine":
        q = unpack_codes(w, bits).astype(np.float64)
        G = scales.shape[-1]
        q = q.reshape(*q.shape[:-1], G, -1)
        return (q * scales[..., None] + biases[..., None]).reshape(*q.shape[:-2], -1)
    if mode == "mxfp4":
        q = FP4[unpack_codes(w, 4)]
        G = scales.shape[-1]
        q = q.reshape(*q.shape[:-1], G, -1)
        s = np.exp2(scales.astype(np.float64) - 127.0)
        return (q * s[..., None]).reshape(*q.shape[:-2], -1)
    raise ValueError(mode)


def from_hf(w):
    """HF layouts -> MLX names with dense or packed expert tensors (spec §1.5, §5.1)."""
    out = {}
    for k, v in w.items():
        if k.endswith("gate_up_proj_blocks") or k.endswith("down_proj_blocks"):
            packed = np.ascontiguousarray(v).view("<u4").reshape(*v.shape[:-2], -1)
            base = k[: -len("_blocks")]
            if "gate_up" in k:
                p = base[: -len("gate_up_proj")]
                out[p + "gate_proj.weight"] = packed[..., 0::2, :]
                out[p + "up_proj.weight"] = packed[..., 1::2, :]
            else:
                out[base + ".weight"] = packed
        elif k.endswith("gate_up_proj_scales"):
            p = k[: -len("gate_up_proj_scales")]
            out[p + "gate_proj.scales"] = v[..., 0::2, :]
            out[p + "up_proj.scales"] = v[..., 1::2, :]
        elif k.endswith("down_proj_scales"):
            out[k[: -len("_scales")] + ".scales"] = v
        elif k.endswith("gate_up_proj_bias"):
            p = k[: -len("gate_up_proj_bias")]
            out[p + "gate_proj.bias"] = v[..., 0::2]
            out[p + "up_proj.bias"] = v[..., 1::2]
        elif k.endswith("down_proj_bias"):
            out[k[: -len("_bias")] + ".bias"] = v
        elif k.endswith("experts.gate_up_proj"):  # bf16 [E, in, 2*out], interleaved last axis
            p = k[: -len("gate_up_proj")]
            out[p + "gate_proj.weight"] = np.swapaxes(v[..., 0::2], -1, -2)
            out[p + "up_proj.weight"] = np.swapaxes(v[..., 1::2], -1, -2)
        elif k.endswith("experts.down_proj"):  # bf16 [E, in, out]
            out[k + ".weight"] = np.swapaxes(v, -1, -2)
        else:
            out[k] = v
    return out


def dense_weights(folder):
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    w = {}
    for f in sorted(folder.glob("model*.safetensors")):
        w.update(load_st(f))
    if not any(k.endswith("gate_proj.weight") for k in w):
        w = from_hf(w)
    quant = cfg.get("quantization")
    if quant is None and cfg.get("quantization_config", {}).get("quant_method") == "mxfp4":
        quant = {"group_size": 32, "bits": 4, "mode": "mxfp4"}
    dense = {}
    for k, v in w.items():
        if k.endswith(".scales") or k.endswith(".biases"):
            continue
        if k.endswith(".weight") and (k[: -len(".weight")] + ".scales") in w:
            p = k[: -len(".weight")]
            params = dict(quant)
            entry = quant.get(p)
            if isinstance(entry, dict):
                params = {"mode": "affine", **entry}  # an entry without mode is affine
            mode = params.get("mode", "affine")
            defaults = {"affine": (64, 4), "mxfp4": (32, 4)}[mode]
            gs = params.get("group_size") or defaults[0]
            bits = params.get("bits") or defaults[1]
            dense[k] = dequant(v, w[p + ".scales"].astype(np.float64),
                               w.get(p + ".biases", np.zeros(1)).astype(np.float64), gs, bits, mode)
        else:
            dense[k] = v.astype(np.float64)
    return cfg, dense


def yarn_inv_freq(cfg):
    d, base = cfg["head_dim"], float(cfg["rope_theta"])
    rs = cfg["rope_scaling"]
    f, L0 = rs["factor"], rs["original_max_position_embeddings"]

    def corr(r):
        return d * math.log(L0 / (r * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(corr(rs["beta_fast"])), 0)  # mlx-lm truncates, ignoring "truncate"
    high = min(math.ceil(corr(rs["beta_slow"])), d - 1)
    if low == high:
        high += 0.001
    i = np.arange(d // 2)
    ramp = np.clip((i - low) / (high - low), 0, 1)
    e = 1 - ramp
    b = base ** (2 * i / d)
    inv = e / b + (1 - e) / (f * b)
    mscale = 0.1 * math.log(f) + 1.0
    return inv, mscale


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def forward(cfg, W, tokens, start=0):
    """Prefill logits of tokens (absolute positions start..) — whole sequence, no cache."""
    T = len(tokens)
    H, D = cfg["hidden_size"], cfg["head_dim"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    eps, k_top = cfg["rms_norm_eps"], cfg["num_experts_per_tok"]
    inv, mscale = yarn_inv_freq(cfg)
    pos = np.arange(T) + start
    ang = pos[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):
        x = x * mscale
        a, b = x[..., : D // 2], x[..., D // 2 :]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], -1)

    qi, kj = np.arange(T)[:, None], np.arange(T)[None, :]
    x = W["model.embed_tokens.weight"][tokens]
    for li, lt in enumerate(cfg["layer_types"]):
        p = f"model.layers.{li}."
        a = p + "self_attn."
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[a + "q_proj.weight"].T + W[a + "q_proj.bias"]).reshape(T, nq, D)
        k = (h @ W[a + "k_proj.weight"].T + W[a + "k_proj.bias"]).reshape(T, nkv, D)
        v = (h @ W[a + "v_proj.weight"].T + W[a + "v_proj.bias"]).reshape(T, nkv, D)
        q, k = rope(q), rope(k)
        allowed = kj <= qi
        if lt == "sliding_attention":
            allowed &= kj > qi - cfg["sliding_window"]
        o = np.zeros((T, nq, D))
        for hh in range(nq):
            g = hh // (nq // nkv)
            s = (q[:, hh] @ k[:, g].T) / math.sqrt(D)
            s = np.where(allowed, s, -np.inf)
            sink = W[a + "sinks"][hh]
            m = np.maximum(s.max(-1, keepdims=True), sink)
            e = np.exp(s - m)
            o[:, hh] = (e @ v[:, g]) / (e.sum(-1, keepdims=True) + np.exp(sink - m))
        x = x + o.reshape(T, nq * D) @ W[a + "o_proj.weight"].T + W[a + "o_proj.bias"]
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        m = p + "mlp."
        g = h @ W[m + "router.weight"].T + W[m + "router.bias"]
        top = np.argsort(-g, axis=-1, kind="stable")[:, :k_top]
        gv = np.take_along_axis(g, top, -1)
        wts = np.exp(gv - gv.max(-1, keepdims=True))
        wts /= wts.sum(-1, keepdims=True)
        e = m + "experts."
        y = np.zeros_like(x)
        for t in range(T):
            for j in range(k_top):
                ex = top[t, j]
                gate = W[e + "gate_proj.weight"][ex] @ h[t] + W[e + "gate_proj.bias"][ex]
                up = W[e + "up_proj.weight"][ex] @ h[t] + W[e + "up_proj.bias"][ex]
                gate = np.minimum(gate, 7.0)
                up = np.clip(up, -7.0, 7.0)
                act = gate / (1 + np.exp(-1.702 * gate)) * (up + 1)
                out = W[e + "down_proj.weight"][ex] @ act + W[e + "down_proj.bias"][ex]
                y[t] += wts[t, j] * out
        x = x + y
    x = rms(x, W["model.norm.weight"], eps)
    return x @ W["lm_head.weight"].T


def stats(got, ref):
    """Agreement numbers of logits got vs ref ([rows, V]): max |d| (absolute and relative to
    max |ref|), KL(softmax(ref) || softmax(got)) mean/median/max, top-1 agreement over rows
    whose ref top1-top2 gap is >= 0.5."""
    lp = ref - ref.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    lq = got - got.max(-1, keepdims=True)
    lq = lq - np.log(np.exp(lq).sum(-1, keepdims=True))
    kl = (np.exp(lp) * (lp - lq)).sum(-1)
    s = np.sort(ref, -1)
    rows = (s[:, -1] - s[:, -2]) >= 0.5
    d = np.abs(got - ref).max()
    return {
        "max_abs_diff": float(d),
        "max_abs_diff_rel": float(d / np.abs(ref).max()),
        "kl_mean": float(kl.mean()),
        "kl_median": float(np.median(kl)),
        "kl_max": float(kl.max()),
        "top1_agreement": float((got.argmax(-1) == ref.argmax(-1))[rows].mean()),
        "top1_rows": int(rows.sum()),
    }


def check_folder(folder, tolerance, long=True):
    """spec forward of a fixture folder vs its reference.safetensors: {"prefill": stats,
    "long": stats (if present and long)}."""
    cfg, W = dense_weights(folder)
    ref = load_st(Path(folder) / "reference.safetensors")
    got = forward(cfg, W, ref["tokens"].astype(np.int64))
    out = {"prefill": stats(got, ref["prefill_logits"].astype(np.float64))}
    if "prefill_logits_f32act" in ref:
        out["prefill_f32act"] = stats(got, ref["prefill_logits_f32act"].astype(np.float64))
    if long and "long_logits" in ref:
        n = ref["long_logits"].shape[0]
        tail = forward(cfg, W, ref["long_tokens"].astype(np.int64))[-n:]
        out["long"] = stats(tail, ref["long_logits"].astype(np.float64))
    return out


def compare(name, got, ref, tol_class):
    if tol_class == "float32":
        d = float(np.abs(got - ref).max())
        lim = 1e-3 * float(np.abs(ref).max())
        return d <= lim, f"max|d| {d:.2e} (limit {lim:.2e})"
    lp = ref - ref.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    lq = got - got.max(-1, keepdims=True)
    lq = lq - np.log(np.exp(lq).sum(-1, keepdims=True))
    kl = (np.exp(lp) * (lp - lq)).sum(-1)
    s = np.sort(ref, -1)
    ok_rows = (s[:, -1] - s[:, -2]) >= 0.5
    agree = (got.argmax(-1) == ref.argmax(-1))[ok_rows].mean()
    return kl.mean() <= 1e-2, (f"mean KL {kl.mean():.2e}, top-1 agreement {agree:.3f} over "
                               f"{int(ok_rows.sum())} rows with gap >= 0.5")


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", nargs="?", type=Path, default=here.parent / "fixtures")
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    manifest = json.loads((args.dir / "manifest.json").read_text())
    bad = 0
    for fx in manifest["fixtures"]:
        if args.only and fx["name"] not in args.only.split(","):
            continue
        folder = args.dir / fx["name"]
        cfg, W = dense_weights(folder)
        ref = load_st(folder / "reference.safetensors")
        got = forward(cfg, W, ref["tokens"].astype(np.int64))
        ok, msg = compare(fx["name"], got, ref["prefill_logits"].astype(np.float64), fx["tolerance"])
        if "long_logits" in ref:
            lt = ref["long_tokens"].astype(np.int64)
            # attention over the whole long sequence, but only the last 64 rows are compared;
            # the forward is O(T^2) per head, fine for 4160 tokens and hidden 64
            tail = forward_tail(cfg, W, lt, ref["long_logits"].shape[0])
            ok2, msg2 = compare(fx["name"], tail, ref["long_logits"].astype(np.float64),
                                fx["tolerance"])
            ok, msg = ok and ok2, msg + f"; long: {msg2}"
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {fx['name']:16s} {fx['tolerance']:8s} {msg}", flush=True)
    return 1 if bad else 0


def forward_tail(cfg, W, tokens, n):
    """Logits of the last n positions of a long sequence (full forward, rows sliced)."""
    return forward(cfg, W, tokens)[-n:]


if __name__ == "__main__":
    sys.exit(main())
