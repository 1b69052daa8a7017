"""Shared helpers of the reference scripts (make_fixtures.py, mlx_eval.py)."""

import mlx.core as mx

_gather_mm = mx.gather_mm


def _gather_mm_any_float(a, b, *args, **kwargs):
    """mx.gather_mm for bf16/fp16 operands on the CPU backend.

    mlx 0.32.4's CPU GatherMM raises "Currently only supports float32" for bf16, which an
    unquantized gpt-oss SwitchGLU (mlx_lm.models.switch_layers.SwitchLinear) needs. The GPU
    kernels multiply bf16 inputs with float32 accumulation and round the output to bf16; the
    same is done here: bf16 -> float32 is exact, products and sums in float32, one rounding of
    the result to the input dtype."""
    if a.dtype == mx.float32 and b.dtype == mx.float32:
        return _gather_mm(a, b, *args, **kwargs)
    out_dtype = (a + mx.zeros((), dtype=b.dtype)).dtype  # mlx's type promotion
    r = _gather_mm(a.astype(mx.float32), b.astype(mx.float32), *args, **kwargs)
    return r.astype(out_dtype)


def install_cpu_workarounds():
    """Route everything to the CPU device and patch mx.gather_mm (see above). mlx-lm calls
    mx.gather_mm through the module attribute at call time, so the patch reaches it."""
    mx.set_default_device(mx.cpu)
    mx.gather_mm = _gather_mm_any_float
