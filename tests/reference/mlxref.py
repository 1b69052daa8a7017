"""Shared helpers of the reference scripts (make_fixtures.py, mlx_eval.py).

mlx-lm's gpt-oss checkpoints are made for Apple GPUs (Metal). Here mlx runs on its CPU backend,
whose kernels for bf16 inputs do not follow the GPU's numerics (measured with mlx 0.32.4):
  - mx.gather_mm raises "[GatherMM::eval] Currently only supports float32" for bf16 (used by
    unquantized SwitchGLU experts);
  - mx.quantized_matmul and mx.gather_qmm with bf16 inputs have errors of ~2-4% of the output
    scale against the exact product (a 256-long dot product), i.e. they do not accumulate in
    float32; the Metal kernels accumulate in float32 and round the output once (spec §6).
install_cpu_workarounds() reroutes these three ops, for non-float32 inputs, to the same op on
float32 operands (bf16 -> float32 is exact; scales and biases likewise) followed by one rounding
of the result to the input dtype: float32 accumulation, bf16 output, as on the GPU. Float32
models take the original ops unchanged. Everything else (plain matmul, which does round once,
norms, rope, attention, elementwise ops) is mlx's own CPU code.
"""

import mlx.core as mx

_orig = {}


def _is_lowp(a):
    return a is not None and a.dtype in (mx.bfloat16, mx.float16)


def _up(a):
    return a.astype(mx.float32) if _is_lowp(a) else a


def _gather_mm(a, b, *args, **kwargs):
    if not (_is_lowp(a) or _is_lowp(b)):
        return _orig["gather_mm"](a, b, *args, **kwargs)
    out_dtype = a.dtype if _is_lowp(a) else b.dtype
    return _orig["gather_mm"](_up(a), _up(b), *args, **kwargs).astype(out_dtype)


def _quantized(name):
    """Wrapper of quantized_matmul / gather_qmm: (x, w, scales, biases, ...) positional or
    scales=/biases= keywords."""

    def f(x, w, *args, **kwargs):
        if not _is_lowp(x):
            return _orig[name](x, w, *args, **kwargs)
        args = [_up(a) if isinstance(a, mx.array) else a for a in args[:2]] + list(args[2:])
        for k in ("scales", "biases"):
            if isinstance(kwargs.get(k), mx.array):
                kwargs[k] = _up(kwargs[k])
        return _orig[name](x.astype(mx.float32), w, *args, **kwargs).astype(x.dtype)

    return f


def install_cpu_workarounds():
    """CPU device + the float32-accumulation wrappers above. mlx and mlx-lm look these ops up
    on the mx module at call time, so the replacement reaches them."""
    mx.set_default_device(mx.cpu)
    if _orig:
        return
    _orig["gather_mm"] = mx.gather_mm
    _orig["quantized_matmul"] = mx.quantized_matmul
    _orig["gather_qmm"] = mx.gather_qmm
    mx.gather_mm = _gather_mm
    mx.quantized_matmul = _quantized("quantized_matmul")
    mx.gather_qmm = _quantized("gather_qmm")
