"""Triton kernels for the ``cuda`` device: the ``noise`` op.

Imported only when Triton is installed (``ops.triton_noise``). The kernel
performs the operations of ``_rng.noise`` and ``csrc/noise.h`` in the same
order, so its noise is bit-identical to the CPU path:

* Philox4x32-10 with key ``(seed_lo, seed_hi)`` and counter
  ``(column // 4, stream, key_lo, key_hi)``; column ``c`` takes word ``c % 4``.
* The small side ``a = (float(r) + 1/2) 2**-32`` of the uniform and the
  fixed-operation logarithm (``_rng.det_log``): no ``log`` instruction,
  correctly rounded divisions (``tl.fdiv(..., ieee_rounding=True)`` in
  float32, where Triton's plain ``/`` is approximate; the plain ``/`` in
  float64, which is already ``div.rn.f64`` and which the precise form does not
  accept) and no floating-point contraction (every launch passes
  ``enable_fp_fusion=False``).

``TRITON_INTERPRET=1`` runs the same kernel on CPU tensors (NumPy arithmetic,
IEEE float32/float64), which is how the tests check the bits without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import triton
import triton.language as tl

from .. import _rng
from ._lib import KINDS

# Philox counters (4 columns each) per program
BLOCK = 128
# compile options every launch passes: a fused multiply-add rounds once where
# the reference rounds twice
COMPILE_OPTIONS = {"enable_fp_fusion": False}


@dataclass(frozen=True)
class Specialization:
    """One compiled form of a Triton kernel that a launcher can choose.

    ``signature`` maps every argument to its Triton type (``"*fp32"``,
    ``"i64"``, ``"constexpr"``...), ``constexprs`` gives the compile-time
    values, and ``exact`` says that the kernel computes noise whose bits must
    equal the CPU path's: its PTX may hold no approximate division or
    logarithm and no fused multiply-add. Every Triton module of this package
    lists its forms in a ``specializations()`` function, which is what the
    ahead-of-time compile (tests, ``gumbelkit doctor --cuda-compile``) walks.
    """

    name: str
    fn: triton.runtime.JITFunction
    signature: dict[str, str]
    constexprs: dict[str, object] = field(default_factory=dict)
    exact: bool = True
    options: dict[str, object] = field(default_factory=lambda: dict(COMPILE_OPTIONS))


# the Philox multipliers, Weyl increments and rounds of _rng (and csrc/noise.h)
_M0 = tl.constexpr(_rng.PHILOX_M0)
_M1 = tl.constexpr(_rng.PHILOX_M1)
_W0 = tl.constexpr(_rng.PHILOX_W0)
_W1 = tl.constexpr(_rng.PHILOX_W1)
_ROUNDS = tl.constexpr(_rng.PHILOX_ROUNDS)


@triton.jit
def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint32 tensors (``_rng.philox4x32``, ``gk_philox4x32_10``)."""
    for r in tl.static_range(_ROUNDS):
        if r > 0:
            k0 = k0 + _W0
            k1 = k1 + _W1
        hi0 = tl.umulhi(c0, _M0)
        lo0 = c0 * _M0
        hi1 = tl.umulhi(c2, _M1)
        lo1 = c2 * _M1
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@triton.jit
def _div(a, b, IS_F64: tl.constexpr):
    """``fl(a / b)``, correctly rounded (Triton's plain float32 ``/`` is approximate;
    float64 ``/`` is already ``div.rn.f64``, which the precise form does not accept)."""
    if IS_F64:
        return a / b
    else:
        return tl.fdiv(a, b, ieee_rounding=True)


@triton.jit
def _log_f32(x):
    """``gk_log_f32``: fdlibm's reduction and polynomial, float32."""
    ix = x.to(tl.int32, bitcast=True) + (0x3F800000 - 0x3F3504F3)
    k = (ix >> 23) - 0x7F
    m = ((ix & 0x007FFFFF) + 0x3F3504F3).to(tl.float32, bitcast=True)
    f = m - 1.0
    s = tl.fdiv(f, f + 2.0, ieee_rounding=True)
    z = s * s
    w = z * z
    t1 = w * (0.40000972152 + w * 0.24279078841)
    t2 = z * (0.66666662693 + w * 0.28498786688)
    r = t2 + t1
    hfsq = 0.5 * f * f
    dk = k.to(tl.float32)
    return s * (hfsq + r) + dk * 9.0580006145e-06 - hfsq + f + dk * 6.9313812256e-01


@triton.jit
def _log_f64(x):
    """``gk_log_f64``: fdlibm's reduction and polynomial, float64."""
    ix = x.to(tl.int64, bitcast=True) + (0x3FF0000000000000 - 0x3FE6A09E667F3BCD)
    k = (ix >> 52) - 0x3FF
    m = ((ix & 0x000FFFFFFFFFFFFF) + 0x3FE6A09E667F3BCD).to(tl.float64, bitcast=True)
    f = m - 1.0
    s = f / (f + 2.0)
    z = s * s
    w = z * z
    t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01
                                              + w * 1.531383769920937332e-01))
    t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01
                                              + w * (1.818357216161805012e-01
                                                     + w * 1.479819860511658591e-01)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    dk = k.to(tl.float64)
    return (s * (hfsq + r) + dk * 1.90821492927058770002e-10 - hfsq + f
            + dk * 6.93147180369123816490e-01)


@triton.jit
def _log(x, IS_F64: tl.constexpr):
    if IS_F64:
        return _log_f64(x)
    else:
        return _log_f32(x)


@triton.jit
def _log1m(a, IS_F64: tl.constexpr):
    """``gk_log1m``: log(1 - a) for a in (0, 1/2], with the bits 1 - a rounds away."""
    one_minus = 1.0 - a
    correction = (1.0 - one_minus) - a
    if IS_F64:
        return _log_f64(one_minus) + correction / one_minus
    else:
        return _log_f32(one_minus) + tl.fdiv(correction, one_minus, ieee_rounding=True)


@triton.jit
def _noise_from_word(w, KIND: tl.constexpr, IS_F64: tl.constexpr):
    """``gk_gumbel``/``gk_exponential``/``gk_logistic`` of uint32 words ``w``."""
    dtype = tl.float64 if IS_F64 else tl.float32
    upper = w >= 0x80000000
    r = tl.where(upper, 0xFFFFFFFF - w, w).to(tl.int32)
    a = (r.to(dtype) + 0.5) * 2.3283064365386963e-10  # 2**-32
    if KIND == 2:  # logistic
        lower_value = _log(a, IS_F64) - _log1m(a, IS_F64)
        value = tl.where(upper, -lower_value, lower_value)
    else:
        # a is at most 1/2, so the lower half's log is never 0 and both
        # branches may be evaluated: the where picks the one noise.h takes
        e = -tl.where(upper, _log1m(a, IS_F64), _log(a, IS_F64))
        if KIND == 0:  # gumbel
            value = -_log(e, IS_F64)
        else:  # exponential
            value = e
    return value


# stream stays a runtime integer (1 would be specialized into a constant)
@triton.jit(do_not_specialize=["stream"])
def _noise_kernel(out_ptr, seeds_ptr, keys_ptr, cols, stream,
                  KIND: tl.constexpr, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """``BLOCK`` Philox counters (4 columns each) of one row of ``[rows, cols]``
    noise; ``stream`` is a 32-bit word. The grid is one axis (row-major over
    rows and counter blocks): CUDA's second and third grid axes stop at 65535."""
    blocks = tl.cdiv(tl.cdiv(cols, 4), BLOCK)
    pid = tl.program_id(0).to(tl.int64)
    row = pid // blocks
    seed = tl.load(seeds_ptr + row)
    key = tl.load(keys_ptr + row)
    k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    k1 = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)
    key_lo = (key & 0xFFFFFFFF).to(tl.uint32)
    key_hi = ((key >> 32) & 0xFFFFFFFF).to(tl.uint32)
    counter = (pid % blocks) * BLOCK + tl.arange(0, BLOCK)
    c0 = counter.to(tl.uint32)
    zero = tl.zeros([BLOCK], dtype=tl.uint32)
    x0, x1, x2, x3 = _philox4x32_10(c0, zero + stream.to(tl.uint32), zero + key_lo,
                                    zero + key_hi, zero + k0, zero + k1)
    base = out_ptr + row * cols
    col = counter * 4
    tl.store(base + col, _noise_from_word(x0, KIND, IS_F64), mask=col < cols)
    tl.store(base + col + 1, _noise_from_word(x1, KIND, IS_F64), mask=col + 1 < cols)
    tl.store(base + col + 2, _noise_from_word(x2, KIND, IS_F64), mask=col + 2 < cols)
    tl.store(base + col + 3, _noise_from_word(x3, KIND, IS_F64), mask=col + 3 < cols)


def noise(seeds: torch.Tensor, keys: torch.Tensor, cols: int, stream: int, kind: str,
          dtype: torch.dtype) -> torch.Tensor:
    """The ``noise`` op's Triton kernel: ``[rows, cols]`` noise of ``kind`` in
    ``dtype`` (float32 or float64) for ``[rows]`` int64 ``seeds`` and ``keys``,
    on their device; the same values as ``_rng.noise``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    rows = int(seeds.shape[0])
    out = torch.empty((rows, cols), dtype=dtype, device=seeds.device)
    if out.numel() == 0:
        return out
    # named: the kernel reads them after this line
    seeds = seeds.to(torch.int64).contiguous()
    keys = keys.to(torch.int64).contiguous()
    grid = (rows * triton.cdiv(triton.cdiv(cols, 4), BLOCK),)
    _noise_kernel[grid](out, seeds, keys, cols, stream & 0xFFFFFFFF,
                        KIND=KINDS[kind], IS_F64=dtype == torch.float64, BLOCK=BLOCK,
                        **COMPILE_OPTIONS)
    return out


def specializations() -> list[Specialization]:
    """Every form of the noise kernel that ``noise`` launches."""
    forms = []
    for kind, code in KINDS.items():
        for dtype, is_f64 in (("fp32", False), ("fp64", True)):
            forms.append(Specialization(
                name=f"noise[{kind}, {dtype}]", fn=_noise_kernel,
                signature={"out_ptr": f"*{dtype}", "seeds_ptr": "*i64", "keys_ptr": "*i64",
                           "cols": "i32", "stream": "i64", "KIND": "constexpr",
                           "IS_F64": "constexpr", "BLOCK": "constexpr"},
                constexprs={"KIND": code, "IS_F64": is_f64, "BLOCK": BLOCK}))
    return forms
