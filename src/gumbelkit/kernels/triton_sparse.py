"""Triton kernel of the op ``perturbed_top_k`` (``sparse_gumbel_softmax``'s O(V) part)
for the ``cuda`` device.

Imported only when Triton is installed (``ops._triton_top_k``). Per row, with
``z = fl(x + G)`` (``G`` the Gumbel noise of the ``noise`` op for the row's seed
and key, stream 0, in float32, or float64 for float64 logits), the kernel writes
the columns of the ``k`` largest ``z`` in increasing order and ``G`` there, the
definition of ``row_reference.perturbed_top_k_rows``. One program per row, in
passes over the row in blocks of ``BLOCK`` columns; no [rows, V] buffer exists:

* **bounds** (logits only): the smallest and largest finite logit and how many
  are finite. Every Gumbel value lies in (-3.2, 22.9), so every finite ``z``
  lies in ``[fl(min x - 4), fl(max x + 24)]`` (rounding is monotone).
* **threshold**: the k-th largest ``z``'s order-preserving integer key ``T``
  (``triton_sampler._key``: larger value, larger key; -0 and +0 share one), by
  a search over keys that keeps ``count(key >= lo) >= k > count(key >= hi)``:
  each pass recomputes the noise and counts ``key >= t`` at the ``PARTS - 1``
  keys that split ``[lo, hi)`` into ``PARTS`` parts (repeated midpoints, so
  int64 never overflows), and keeps the highest part whose lower key still
  counts ``k``. float32 keys span 32 bits, float64 keys 64, so about 8 and 16
  passes. A block whose ``fl(max x + 24)`` lies below every tested key above
  ``lo`` adds nothing to those counts and skips its noise. With fewer than
  ``k`` finite logits the threshold is ``-inf`` without a search.
* **write**: the columns with ``key > T``, then as many columns with
  ``key == T`` as fill ``k``, lowest first (the tie rule of the reference),
  at output positions from ``tl.cumsum``; blocks once ``k`` are written, and
  blocks whose ``fl(max x + 24)`` is below ``T``, are skipped.

The noise is that of ``triton_kernels``'s noise kernel bit for bit (the same
Philox words and ``_noise_from_word``, correctly rounded divisions, no
contraction: every launch passes ``enable_fp_fusion=False``), and everything
else is exact comparisons of the same ``z``, so indices and noise are
bit-identical to the CPU path. ``TRITON_INTERPRET=1`` runs the kernel on CPU
tensors, which is how the tests check that without a GPU.

The launch depends on shapes only (grid ``(rows,)``) and reads nothing back, so
it traces with fake tensors and captures in a CUDA graph. A small batch of long
rows runs on few programs; splitting a row's passes across programs needs a
launch per pass (Triton has no grid-wide barrier) and is not done.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from .row_reference import check_top_k, compute_dtype
from .triton_kernels import COMPILE_OPTIONS, Specialization
from .triton_rows import _seed_args
from .triton_sampler import _gumbel_block, _key, _mid, _seed_words

# columns per block of a pass (a multiple of 4: one Philox counter per 4 columns);
# the tests lower it so that small rows take several blocks
BLOCK = 512
# the threshold search splits its key interval into 2**PART_BITS parts per pass
PART_BITS = 4
# bounds on the Gumbel noise: every value lies in (-3.2, 22.9)
_G_LOW = tl.constexpr(-4.0)
_G_HIGH = tl.constexpr(24.0)
_NO_KEY = tl.constexpr(-0x7FFFFFFFFFFFFFFF - 1)

_TRITON_DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16",
                  torch.float64: "fp64"}


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer the kernel writes comes from here (tests poison it)."""
    return torch.empty(shape, dtype=dtype, device=device)


@triton.jit
def _logits(x_row, xcs, start, V, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """Columns ``start .. start + BLOCK`` of a row: the logits in the compute dtype
    (-inf outside the row), the columns and the mask of those inside the row."""
    cols = start + tl.arange(0, BLOCK)
    inside = cols < V
    x = tl.load(x_row + cols.to(tl.int64) * xcs, mask=inside, other=-float("inf"))
    x = x.to(tl.float64 if IS_F64 else tl.float32)
    return x, cols, inside


@triton.jit
def _perturbed(x, inside, start, s0, s1, key_lo, key_hi, IS_F64: tl.constexpr,
               BLOCK: tl.constexpr):
    """The noise ``G`` of a block and the keys of ``fl(x + G)`` (the lowest key outside
    the row)."""
    g = _gumbel_block(start, s0, s1, key_lo, key_hi, IS_F64, BLOCK)
    return g, tl.where(inside, _key(x + g, IS_F64), _NO_KEY)


@triton.jit(do_not_specialize=["V", "k", "seed_stride", "key_stride", "row_keys"])
def _top_k_kernel(x_ptr, xrs, xcs, V, seeds_ptr, seed_stride, keys_ptr, key_stride, row_keys,
                  k, index_ptr, noise_ptr, IS_F64: tl.constexpr, BLOCK: tl.constexpr,
                  PART_BITS: tl.constexpr):
    """One row of ``perturbed_top_k``: ``k`` columns (increasing) into ``index_ptr`` and
    their noise into ``noise_ptr`` (both ``[rows, k]``, contiguous)."""
    inf = float("inf")
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * xrs
    seed = tl.load(seeds_ptr + row * seed_stride)
    rkey = tl.where(row_keys != 0, row, tl.load(keys_ptr + row * key_stride))
    s0, s1, key_lo, key_hi = _seed_words(seed, rkey)
    dtype = tl.float64 if IS_F64 else tl.float32

    # bounds: smallest and largest finite logit, how many are finite
    xmin = tl.full([], inf, dtype=dtype)
    xmax = tl.full([], -inf, dtype=dtype)
    finite = tl.zeros([], dtype=tl.int32)
    for start in range(0, V, BLOCK):
        x, cols, inside = _logits(x_row, xcs, start, V, IS_F64, BLOCK)
        live = inside & (x > -inf)
        finite += tl.sum(live.to(tl.int32), axis=0)
        xmin = tl.minimum(xmin, tl.min(tl.where(live, x, inf), axis=0))
        xmax = tl.maximum(xmax, tl.max(x, axis=0))

    # threshold: T = key of the k-th largest z, above = count(key > T)
    T = _key(tl.full([], -inf, dtype=dtype), IS_F64)
    above = finite
    if k <= finite:
        lo = _key(xmin + _G_LOW, IS_F64)  # count(key >= lo) >= finite >= k
        hi = _key(xmax + _G_HIGH, IS_F64) + 1  # count(key >= hi) = 0 < k
        at_hi = tl.zeros([], dtype=tl.int32)
        part = tl.arange(0, 2**PART_BITS)
        while lo + 1 < hi:
            # parts [plo, phi) tiling [lo, hi) in order (some empty when it is short)
            plo = tl.zeros([2**PART_BITS], dtype=tl.int64) + lo
            phi = tl.zeros([2**PART_BITS], dtype=tl.int64) + hi
            for level in tl.static_range(PART_BITS):
                mid = _mid(plo, phi)
                upper = ((part >> (PART_BITS - 1 - level)) & 1) != 0
                plo = tl.where(upper, mid, plo)
                phi = tl.where(upper, phi, mid)
            lowest = tl.sum(tl.where(part == 1, plo, 0), axis=0)
            counts = tl.zeros([2**PART_BITS], dtype=tl.int32)
            for start in range(0, V, BLOCK):
                x, cols, inside = _logits(x_row, xcs, start, V, IS_F64, BLOCK)
                # z <= fl(max x + 24): a block below every tested key above lo counts 0
                if _key(tl.max(x, axis=0) + _G_HIGH, IS_F64) >= lowest:
                    g, key = _perturbed(x, inside, start, s0, s1, key_lo, key_hi, IS_F64,
                                        BLOCK)
                    counts += tl.sum((key[:, None] >= plo[None, :]).to(tl.int32), axis=0)
            # part 0's count (at lo) is at least k and may miss skipped blocks: not read
            best = tl.max(tl.where((counts >= k) & (part >= 1), part, 0), axis=0)
            next_count = tl.sum(tl.where(part == best + 1, counts, 0), axis=0)
            at_hi = tl.where(best == 2**PART_BITS - 1, at_hi, next_count)
            lo = tl.sum(tl.where(part == best, plo, 0), axis=0)
            hi = tl.sum(tl.where(part == best, phi, 0), axis=0)
        T = lo
        above = at_hi

    # write: every key > T, then the lowest-column ties up to k
    need = k - above
    written = tl.zeros([], dtype=tl.int32)
    ties = tl.zeros([], dtype=tl.int32)
    out = row * k
    for start in range(0, V, BLOCK):
        x, cols, inside = _logits(x_row, xcs, start, V, IS_F64, BLOCK)
        if (written < k) & (_key(tl.max(x, axis=0) + _G_HIGH, IS_F64) >= T):
            g, key = _perturbed(x, inside, start, s0, s1, key_lo, key_hi, IS_F64, BLOCK)
            tie = (key == T).to(tl.int32)
            take = (key > T) | ((tie != 0) & (ties + tl.cumsum(tie, axis=0) <= need))
            at = out + written + tl.cumsum(take.to(tl.int32), axis=0) - 1
            tl.store(index_ptr + at, cols.to(tl.int64), mask=take)
            tl.store(noise_ptr + at, g, mask=take)
            written += tl.sum(take.to(tl.int32), axis=0)
            ties += tl.sum(tie, axis=0)


def perturbed_top_k(x: torch.Tensor, seeds: torch.Tensor, keys: torch.Tensor,
                    k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``perturbed_top_k`` op's Triton kernel: ``(indices [rows, k] int64, noise
    [rows, k])`` for ``[rows, V]`` float32/bfloat16/float16/float64 logits of any
    strides (read in place), ``seeds`` ``[rows]`` or ``[1]`` and ``keys`` ``[rows]``,
    ``[1]`` or ``[0]`` (row r keyed by r), on the logits' device; the values of
    ``row_reference.perturbed_top_k_rows``. ``1 <= k <= V``; no NaN in ``x``."""
    if x.dtype not in _TRITON_DTYPES:
        raise ValueError(f"logits must be float32, bfloat16, float16 or float64, got {x.dtype}")
    rows, cols = int(x.shape[0]), int(x.shape[1])
    check_top_k(k, cols)
    dtype = compute_dtype(x.dtype)
    indices = _empty((rows, k), torch.int64, x.device)
    noise = _empty((rows, k), dtype, x.device)
    if rows == 0:
        return indices, noise
    # named: the kernel reads them after this line
    seeds, keys = seeds.to(torch.int64), keys.to(torch.int64)
    wrap_triton(_top_k_kernel)[(rows,)](
        x, x.stride(0), x.stride(1), cols, *_seed_args(seeds, keys), k, indices, noise,
        IS_F64=dtype == torch.float64, BLOCK=BLOCK, PART_BITS=PART_BITS, **COMPILE_OPTIONS)
    return indices, noise


def specializations() -> list[Specialization]:
    """Every form of the kernel that ``perturbed_top_k`` launches: one per logit dtype
    (all exact: they form the noise)."""
    forms = []
    for dtype, name in _TRITON_DTYPES.items():
        compute = "fp64" if dtype == torch.float64 else "fp32"
        forms.append(Specialization(
            name=f"perturbed_top_k[{name}]", fn=_top_k_kernel,
            signature={"x_ptr": f"*{name}", "xrs": "i32", "xcs": "i32", "V": "i32",
                       "seeds_ptr": "*i64", "seed_stride": "i32", "keys_ptr": "*i64",
                       "key_stride": "i32", "row_keys": "i32", "k": "i32",
                       "index_ptr": "*i64", "noise_ptr": f"*{compute}",
                       "IS_F64": "constexpr", "BLOCK": "constexpr", "PART_BITS": "constexpr"},
            constexprs={"IS_F64": dtype == torch.float64, "BLOCK": BLOCK,
                        "PART_BITS": PART_BITS}))
    return forms
