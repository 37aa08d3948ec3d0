"""Triton kernels of the op ``perturbed_top_k`` (``sparse_gumbel_softmax``'s O(V) part)
for the ``cuda`` device.

Imported only when Triton is installed (``ops._triton_top_k``). Per row, with
``z = fl(x + G)`` (``G`` the Gumbel noise of the ``noise`` op for the row's seed
and key, stream 0, in float32, or float64 for float64 logits), the kernels write
the columns of the ``k`` largest ``z`` in increasing order and ``G`` there, the
definition of ``row_reference.perturbed_top_k_rows``. No [rows, V] buffer
exists; each row is read in passes of blocks of ``BLOCK`` columns:

* **threshold**: the k-th largest ``z``'s order-preserving integer key ``T``
  (``triton_sampler._key``: larger value, larger key; -0 and +0 share one), by
  a search over keys that keeps ``count(key >= lo) >= k > count(key >= hi)``,
  starting from ``lo = key(-inf)`` (every column counts) and ``hi = key(+inf) +
  1`` (none does): each pass recomputes the noise and counts ``key >= t`` at the
  ``2**PART_BITS - 1`` keys that split ``[lo, hi)`` into ``2**PART_BITS`` parts
  (repeated midpoints, so int64 never overflows), and keeps the highest part
  whose lower key still counts ``k``. float32 keys span fewer than 2**32
  values and float64 keys fewer than 2**64, so 8 and 16 passes. Every Gumbel
  value lies in (-3.2, 22.9), so ``z <= fl(max x + 24)`` in a block (rounding
  is monotone): a block below every tested key above ``lo`` counts nothing
  there and skips its noise. With fewer than ``k`` finite logits the search
  ends at ``T = key(-inf)``.
* **write**: the columns with ``key > T`` (``count(key >= hi)`` of them), then
  as many columns with ``key == T`` as fill ``k``, lowest first (the tie rule
  of the reference), at output positions from ``tl.cumsum``; blocks once ``k``
  are written, and blocks whose ``fl(max x + 24)`` lies below ``T``, skip
  their noise.

One program per row (``_top_k_kernel``), except for a small batch of long rows
(``_segments``), where the passes are split across ``rows x segments``
programs with a second stage per pass: ``_count_segment_kernel`` counts one
segment into ``[rows, segments, parts]``, ``_narrow_kernel`` sums a row's
segments in order and narrows its ``[lo, hi)`` (a fixed number of passes,
``_passes``: once a row has converged both return at once), then
``_split_at_kernel`` counts each segment's keys above and equal to ``T`` and
``_write_segment_kernel`` writes each segment after the outputs of the
segments before it. The counts are exact integers, so the split gives the
same bits as one program.

The noise is that of ``triton_kernels``'s noise kernel bit for bit (the same
Philox words and ``_noise_from_word``, correctly rounded divisions, no
contraction: every launch passes ``enable_fp_fusion=False``), and everything
else is exact comparisons of the same ``z``, so indices and noise are
bit-identical to the CPU path. ``TRITON_INTERPRET=1`` runs the kernels on CPU
tensors, which is how the tests check that without a GPU. The launches depend
on shapes only and read nothing back, so they capture in a CUDA graph.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .row_reference import check_top_k, compute_dtype
from .triton_kernels import COMPILE_OPTIONS, Specialization
from .triton_rows import _seed_args
from .triton_sampler import _gumbel_block, _key, _mid, _seed_words

# columns per block of a pass (a multiple of 4: one Philox counter per 4 columns);
# the tests lower it so that small rows take several blocks
BLOCK = 512
# the threshold search splits its key interval into 2**PART_BITS parts per pass
PART_BITS = 4
# a row of at least SPLIT_MIN_COLS columns in a batch of fewer than TARGET_PROGRAMS
# rows is split into segments of at least SEGMENT_COLS columns (a multiple of BLOCK),
# at most MAX_SEGMENTS, one program each; the tests lower the column counts
SPLIT_MIN_COLS = 8192
SEGMENT_COLS = 2048
TARGET_PROGRAMS = 128
MAX_SEGMENTS = 64
# every Gumbel value lies in (-3.2, 22.9): fl(x + G) <= fl(x + 24)
_G_HIGH = tl.constexpr(24.0)
_NO_KEY = tl.constexpr(-0x7FFFFFFFFFFFFFFF - 1)

# integer arguments the JIT would turn into constants when 1 (and so compile forms the
# ahead-of-time check never sees): the strides too, whose constant column stride 1
# makes the float32 whole-row kernel spill 8 bytes a thread on sm_80
_RUNTIME_INTS = ["xrs", "xcs", "V", "seed_stride", "key_stride", "row_keys"]

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


@triton.jit
def _parts(lo, hi, PART_BITS: tl.constexpr):
    """``(plo, phi)``: ``2**PART_BITS`` parts ``[plo, phi)`` tiling ``[lo, hi)`` in
    order, by repeated midpoints (some empty when the interval is short)."""
    part = tl.arange(0, 2**PART_BITS)
    plo = tl.zeros([2**PART_BITS], dtype=tl.int64) + lo
    phi = tl.zeros([2**PART_BITS], dtype=tl.int64) + hi
    for level in tl.static_range(PART_BITS):
        mid = _mid(plo, phi)
        upper = ((part >> (PART_BITS - 1 - level)) & 1) != 0
        plo = tl.where(upper, mid, plo)
        phi = tl.where(upper, phi, mid)
    return plo, phi


@triton.jit
def _count_at_least(x_row, xcs, c_lo, c_hi, plo, s0, s1, key_lo, key_hi,
                    IS_F64: tl.constexpr, BLOCK: tl.constexpr, PART_BITS: tl.constexpr):
    """``count(key >= plo[j])`` over columns ``c_lo .. c_hi`` (``c_lo`` a multiple of
    ``BLOCK``), exact for ``j >= 1``: a block whose ``fl(max x + 24)`` lies below
    ``plo[1]`` holds no ``z`` that reaches it and skips its noise."""
    part = tl.arange(0, 2**PART_BITS)
    lowest = tl.sum(tl.where(part == 1, plo, 0), axis=0)
    counts = tl.zeros([2**PART_BITS], dtype=tl.int32)
    for start in range(c_lo, c_hi, BLOCK):
        x, cols, inside = _logits(x_row, xcs, start, c_hi, IS_F64, BLOCK)
        if _key(tl.max(x, axis=0) + _G_HIGH, IS_F64) >= lowest:
            g, key = _perturbed(x, inside, start, s0, s1, key_lo, key_hi, IS_F64, BLOCK)
            counts += tl.sum((key[:, None] >= plo[None, :]).to(tl.int32), axis=0)
    return counts


@triton.jit
def _narrow(counts, plo, phi, at_hi, k, PART_BITS: tl.constexpr):
    """The part ``[lo, hi)`` that holds the k-th largest key: the highest part whose
    lower key still counts ``k`` (part 0's count, at the old ``lo``, is at least ``k``
    and not read), and ``count(key >= hi)``."""
    part = tl.arange(0, 2**PART_BITS)
    best = tl.max(tl.where((counts >= k) & (part >= 1), part, 0), axis=0)
    next_count = tl.sum(tl.where(part == best + 1, counts, 0), axis=0)
    at_hi = tl.where(best == 2**PART_BITS - 1, at_hi, next_count)
    lo = tl.sum(tl.where(part == best, plo, 0), axis=0)
    hi = tl.sum(tl.where(part == best, phi, 0), axis=0)
    return lo, hi, at_hi


@triton.jit
def _write(x_row, xcs, c_lo, c_hi, T, need, k, written, ties, index_out, noise_out, s0, s1,
           key_lo, key_hi, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """Over columns ``c_lo .. c_hi``, after ``written`` outputs and ``ties`` columns with
    key ``T``: every column with key above ``T`` and each tie while at most ``need``
    ties are taken, at the next output positions (``index_out``, ``noise_out``)."""
    for start in range(c_lo, c_hi, BLOCK):
        x, cols, inside = _logits(x_row, xcs, start, c_hi, IS_F64, BLOCK)
        if (written < k) & (_key(tl.max(x, axis=0) + _G_HIGH, IS_F64) >= T):
            g, key = _perturbed(x, inside, start, s0, s1, key_lo, key_hi, IS_F64, BLOCK)
            tie = (key == T).to(tl.int32)
            take = (key > T) | ((tie != 0) & (ties + tl.cumsum(tie, axis=0) <= need))
            at = written + tl.cumsum(take.to(tl.int32), axis=0) - 1
            tl.store(index_out + at, cols.to(tl.int64), mask=take)
            tl.store(noise_out + at, g, mask=take)
            written += tl.sum(take.to(tl.int32), axis=0)
            ties += tl.sum(tie, axis=0)


@triton.jit
def _row_words(seeds_ptr, seed_stride, keys_ptr, key_stride, row_keys, row):
    """The Philox key words of a row (``row_keys``: the row key is the row index)."""
    seed = tl.load(seeds_ptr + row * seed_stride)
    rkey = tl.where(row_keys != 0, row, tl.load(keys_ptr + row * key_stride))
    return _seed_words(seed, rkey)


@triton.jit(do_not_specialize=_RUNTIME_INTS + ["k"])
def _top_k_kernel(x_ptr, xrs, xcs, V, seeds_ptr, seed_stride, keys_ptr, key_stride, row_keys,
                  k, index_ptr, noise_ptr, IS_F64: tl.constexpr, BLOCK: tl.constexpr,
                  PART_BITS: tl.constexpr):
    """One whole row of ``perturbed_top_k``: ``k`` columns (increasing) into
    ``index_ptr`` and their noise into ``noise_ptr`` (both ``[rows, k]``, contiguous)."""
    inf = float("inf")
    dtype = tl.float64 if IS_F64 else tl.float32
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * xrs
    s0, s1, key_lo, key_hi = _row_words(seeds_ptr, seed_stride, keys_ptr, key_stride,
                                        row_keys, row)
    # count(key >= key(-inf)) = V >= k > 0 = count(key >= key(+inf) + 1)
    lo = _key(tl.full([], -inf, dtype=dtype), IS_F64)
    hi = _key(tl.full([], inf, dtype=dtype), IS_F64) + 1
    at_hi = tl.zeros([], dtype=tl.int32)
    while lo + 1 < hi:
        plo, phi = _parts(lo, hi, PART_BITS)
        counts = _count_at_least(x_row, xcs, 0, V, plo, s0, s1, key_lo, key_hi, IS_F64, BLOCK,
                                 PART_BITS)
        lo, hi, at_hi = _narrow(counts, plo, phi, at_hi, k, PART_BITS)
    _write(x_row, xcs, 0, V, lo, k - at_hi, k, tl.zeros([], dtype=tl.int32),
           tl.zeros([], dtype=tl.int32), index_ptr + row * k, noise_ptr + row * k, s0, s1,
           key_lo, key_hi, IS_F64, BLOCK)


@triton.jit(do_not_specialize=_RUNTIME_INTS + ["seg_cols", "segments"])
def _count_segment_kernel(x_ptr, xrs, xcs, V, seg_cols, segments, seeds_ptr, seed_stride,
                          keys_ptr, key_stride, row_keys, state_ptr, counts_ptr,
                          IS_F64: tl.constexpr, BLOCK: tl.constexpr, PART_BITS: tl.constexpr):
    """One search pass of a split row over one segment (grid: rows x segments): the
    segment's counts at the parts of the row's ``[lo, hi)`` (``state``: int64 ``[rows,
    3]``, lo, hi, count at hi) into ``counts`` (int32 ``[rows, segments, parts]``);
    zeros once the search has converged."""
    row = tl.program_id(0).to(tl.int64)
    seg = tl.program_id(1).to(tl.int64)
    lo = tl.load(state_ptr + row * 3)
    hi = tl.load(state_ptr + row * 3 + 1)
    counts = tl.zeros([2**PART_BITS], dtype=tl.int32)
    if lo + 1 < hi:
        s0, s1, key_lo, key_hi = _row_words(seeds_ptr, seed_stride, keys_ptr, key_stride,
                                            row_keys, row)
        plo, phi = _parts(lo, hi, PART_BITS)
        c_lo = seg * seg_cols
        counts = _count_at_least(x_ptr + row * xrs, xcs, c_lo, tl.minimum(c_lo + seg_cols, V),
                                 plo, s0, s1, key_lo, key_hi, IS_F64, BLOCK, PART_BITS)
    part = tl.arange(0, 2**PART_BITS)
    tl.store(counts_ptr + (row * segments + seg) * 2**PART_BITS + part, counts)


@triton.jit(do_not_specialize=["segments", "k"])
def _narrow_kernel(state_ptr, counts_ptr, segments, k, PART_BITS: tl.constexpr,
                   SEGS: tl.constexpr):
    """The second stage of a split search pass (one program per row): the row's counts
    (its segments' in order) narrow its ``[lo, hi)``."""
    row = tl.program_id(0).to(tl.int64)
    lo = tl.load(state_ptr + row * 3)
    hi = tl.load(state_ptr + row * 3 + 1)
    if lo + 1 < hi:
        part = tl.arange(0, 2**PART_BITS)
        seg = tl.arange(0, SEGS)
        at = (row * segments + seg[:, None]) * 2**PART_BITS + part[None, :]
        counts = tl.sum(tl.load(counts_ptr + at, mask=(seg < segments)[:, None], other=0), 0)
        plo, phi = _parts(lo, hi, PART_BITS)
        at_hi = tl.load(state_ptr + row * 3 + 2).to(tl.int32)
        lo, hi, at_hi = _narrow(counts, plo, phi, at_hi, k, PART_BITS)
        tl.store(state_ptr + row * 3, lo)
        tl.store(state_ptr + row * 3 + 1, hi)
        tl.store(state_ptr + row * 3 + 2, at_hi.to(tl.int64))


@triton.jit(do_not_specialize=_RUNTIME_INTS + ["seg_cols", "segments"])
def _split_at_kernel(x_ptr, xrs, xcs, V, seg_cols, segments, seeds_ptr, seed_stride,
                     keys_ptr, key_stride, row_keys, state_ptr, found_ptr,
                     IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """How many columns of one segment of a split row have a key above the threshold
    ``T`` (the converged ``lo``) and how many equal it, into ``found`` (int32 ``[rows,
    segments, 2]``)."""
    row = tl.program_id(0).to(tl.int64)
    seg = tl.program_id(1).to(tl.int64)
    T = tl.load(state_ptr + row * 3)
    s0, s1, key_lo, key_hi = _row_words(seeds_ptr, seed_stride, keys_ptr, key_stride,
                                        row_keys, row)
    x_row = x_ptr + row * xrs
    c_lo = seg * seg_cols
    c_hi = tl.minimum(c_lo + seg_cols, V)
    above = tl.zeros([], dtype=tl.int32)
    ties = tl.zeros([], dtype=tl.int32)
    for start in range(c_lo, c_hi, BLOCK):
        x, cols, inside = _logits(x_row, xcs, start, c_hi, IS_F64, BLOCK)
        if _key(tl.max(x, axis=0) + _G_HIGH, IS_F64) >= T:
            g, key = _perturbed(x, inside, start, s0, s1, key_lo, key_hi, IS_F64, BLOCK)
            above += tl.sum((key > T).to(tl.int32), axis=0)
            ties += tl.sum((key == T).to(tl.int32), axis=0)
    tl.store(found_ptr + (row * segments + seg) * 2, above)
    tl.store(found_ptr + (row * segments + seg) * 2 + 1, ties)


@triton.jit(do_not_specialize=_RUNTIME_INTS + ["seg_cols", "segments", "k"])
def _write_segment_kernel(x_ptr, xrs, xcs, V, seg_cols, segments, seeds_ptr, seed_stride,
                          keys_ptr, key_stride, row_keys, k, state_ptr, found_ptr, index_ptr,
                          noise_ptr, IS_F64: tl.constexpr, BLOCK: tl.constexpr,
                          SEGS: tl.constexpr):
    """The outputs of one segment of a split row: they follow those of the segments
    before it (their columns above ``T`` and their ties up to ``need``)."""
    row = tl.program_id(0).to(tl.int64)
    seg = tl.program_id(1).to(tl.int64)
    T = tl.load(state_ptr + row * 3)
    need = k - tl.load(state_ptr + row * 3 + 2).to(tl.int32)
    j = tl.arange(0, SEGS)
    before = j < seg
    at = (row * segments + j) * 2
    above = tl.sum(tl.load(found_ptr + at, mask=before, other=0), axis=0)
    ties = tl.sum(tl.load(found_ptr + at + 1, mask=before, other=0), axis=0)
    s0, s1, key_lo, key_hi = _row_words(seeds_ptr, seed_stride, keys_ptr, key_stride,
                                        row_keys, row)
    c_lo = seg * seg_cols
    _write(x_ptr + row * xrs, xcs, c_lo, tl.minimum(c_lo + seg_cols, V), T, need, k,
           above + tl.minimum(ties, need), ties, index_ptr + row * k, noise_ptr + row * k,
           s0, s1, key_lo, key_hi, IS_F64, BLOCK)


def _segments(rows: int, cols: int) -> tuple[int, int]:
    """(segments per row, columns per segment), from shapes only: a row of at least
    ``SPLIT_MIN_COLS`` columns in a batch of fewer than ``TARGET_PROGRAMS`` rows is
    split into segments of at least ``SEGMENT_COLS`` columns (a multiple of
    ``BLOCK``, so every block starts on a Philox counter), at most ``MAX_SEGMENTS``."""
    if rows >= TARGET_PROGRAMS or cols < SPLIT_MIN_COLS:
        return 1, cols
    segments = min(MAX_SEGMENTS, triton.cdiv(TARGET_PROGRAMS, rows), cols // SEGMENT_COLS)
    if segments < 2:
        return 1, cols
    seg_cols = triton.cdiv(triton.cdiv(cols, segments), BLOCK) * BLOCK
    return triton.cdiv(cols, seg_cols), seg_cols


# the search's first [lo, hi): key(-inf) and key(+inf) + 1, per compute dtype (float64
# or not); fewer than 2**32 (2**64) keys, so 32 (64) / PART_BITS passes narrow it to one
_KEY_RANGE = {False: (-2139095041, 2139095041),
              True: (-9218868437227405313, 9218868437227405313)}


def _passes(is_f64: bool) -> int:
    """Search passes of a split row: each keeps at most ceil(n / 2**PART_BITS) of n keys."""
    return triton.cdiv(64 if is_f64 else 32, PART_BITS)


def perturbed_top_k(x: torch.Tensor, seeds: torch.Tensor, keys: torch.Tensor,
                    k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``perturbed_top_k`` op's Triton kernels: ``(indices [rows, k] int64, noise
    [rows, k])`` for ``[rows, V]`` float32/bfloat16/float16/float64 logits of any
    strides (read in place), ``seeds`` ``[rows]`` or ``[1]`` and ``keys`` ``[rows]``,
    ``[1]`` or ``[0]`` (row r keyed by r), on the logits' device; the values of
    ``row_reference.perturbed_top_k_rows``. ``1 <= k <= V``; no NaN in ``x``.

    One launch of one program per row; a small batch of long rows (``_segments``)
    takes ``2 * _passes + 2`` launches over ``rows x segments`` programs instead.
    Nothing is read back to the host, so the launches follow from the shapes."""
    if x.dtype not in _TRITON_DTYPES:
        raise ValueError(f"logits must be float32, bfloat16, float16 or float64, got {x.dtype}")
    rows, cols = int(x.shape[0]), int(x.shape[1])
    check_top_k(k, cols)
    dtype = compute_dtype(x.dtype)
    is_f64 = dtype == torch.float64
    device = x.device
    indices = _empty((rows, k), torch.int64, device)
    noise = _empty((rows, k), dtype, device)
    if rows == 0:
        return indices, noise
    # named: the kernels read them after this line
    seeds, keys = seeds.to(torch.int64), keys.to(torch.int64)
    row_args = (x, x.stride(0), x.stride(1), cols)
    seed_args = _seed_args(seeds, keys)
    segments, seg_cols = _segments(rows, cols)
    if segments == 1:
        _top_k_kernel[(rows,)](
            *row_args, *seed_args, k, indices, noise, IS_F64=is_f64, BLOCK=BLOCK,
            PART_BITS=PART_BITS, **COMPILE_OPTIONS)
        return indices, noise
    lo, hi = _KEY_RANGE[is_f64]
    state = torch.zeros((rows, 3), dtype=torch.int64, device=device)
    state[:, 0] = lo
    state[:, 1] = hi
    counts = _empty((rows, segments, 2**PART_BITS), torch.int32, device)
    found = _empty((rows, segments, 2), torch.int32, device)
    split_args = (*row_args, seg_cols, segments, *seed_args)
    grid = (rows, segments)
    for _ in range(_passes(is_f64)):
        _count_segment_kernel[grid](
            *split_args, state, counts, IS_F64=is_f64, BLOCK=BLOCK, PART_BITS=PART_BITS,
            **COMPILE_OPTIONS)
        _narrow_kernel[(rows,)](
            state, counts, segments, k, PART_BITS=PART_BITS, SEGS=MAX_SEGMENTS,
            **COMPILE_OPTIONS)
    _split_at_kernel[grid](
        *split_args, state, found, IS_F64=is_f64, BLOCK=BLOCK, **COMPILE_OPTIONS)
    _write_segment_kernel[grid](
        *split_args, k, state, found, indices, noise, IS_F64=is_f64, BLOCK=BLOCK,
        SEGS=MAX_SEGMENTS, **COMPILE_OPTIONS)
    return indices, noise


def specializations() -> list[Specialization]:
    """Every form of the kernels that ``perturbed_top_k`` launches: the whole-row
    kernel and the split row's segment kernels per logit dtype, and the split search's
    second stage (all exact: no approximate division, logarithm or contraction)."""
    seeds = {"seeds_ptr": "*i64", "seed_stride": "i32", "keys_ptr": "*i64",
             "key_stride": "i32", "row_keys": "i32"}
    forms = []
    for dtype, name in _TRITON_DTYPES.items():
        is_f64 = dtype == torch.float64
        compute = "fp64" if is_f64 else "fp32"
        row = {"x_ptr": f"*{name}", "xrs": "i32", "xcs": "i32", "V": "i32"}
        split = {**row, "seg_cols": "i32", "segments": "i32", **seeds}
        constexprs = {"IS_F64": is_f64, "BLOCK": BLOCK}
        shape = {"IS_F64": "constexpr", "BLOCK": "constexpr"}
        forms += [
            Specialization(
                name=f"perturbed_top_k[{name}]", fn=_top_k_kernel,
                signature={**row, **seeds, "k": "i32", "index_ptr": "*i64",
                           "noise_ptr": f"*{compute}", **shape, "PART_BITS": "constexpr"},
                constexprs={**constexprs, "PART_BITS": PART_BITS}),
            Specialization(
                name=f"perturbed_top_k-count[{name}]", fn=_count_segment_kernel,
                signature={**split, "state_ptr": "*i64", "counts_ptr": "*i32", **shape,
                           "PART_BITS": "constexpr"},
                constexprs={**constexprs, "PART_BITS": PART_BITS}),
            Specialization(
                name=f"perturbed_top_k-split-at[{name}]", fn=_split_at_kernel,
                signature={**split, "state_ptr": "*i64", "found_ptr": "*i32", **shape},
                constexprs=constexprs),
            Specialization(
                name=f"perturbed_top_k-write[{name}]", fn=_write_segment_kernel,
                signature={**split, "k": "i32", "state_ptr": "*i64", "found_ptr": "*i32",
                           "index_ptr": "*i64", "noise_ptr": f"*{compute}", **shape,
                           "SEGS": "constexpr"},
                constexprs={**constexprs, "SEGS": MAX_SEGMENTS})]
    forms.append(Specialization(
        name="perturbed_top_k-narrow", fn=_narrow_kernel,
        signature={"state_ptr": "*i64", "counts_ptr": "*i32", "segments": "i32", "k": "i32",
                   "PART_BITS": "constexpr", "SEGS": "constexpr"},
        constexprs={"PART_BITS": PART_BITS, "SEGS": MAX_SEGMENTS}))
    return forms
