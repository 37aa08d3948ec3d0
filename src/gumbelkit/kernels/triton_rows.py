"""Triton kernels for the ``cuda`` device: the row ops ``gumbel_softmax``,
``gumbel_softmax_backward``, ``gumbel_max``, ``concrete`` and
``concrete_backward``.

Imported only when Triton is installed (``ops._triton_rows``). Each launcher
takes and returns what its op in ``ops.py`` does (2-D ``[rows, cols]`` inputs
of any strides, read in place; ``seeds`` ``[rows]`` or ``[1]``; ``keys``
``[rows]``, ``[1]`` or ``[0]`` for "row r is keyed by r") plus the status the
C kernels report, which ``ops.py`` turns into the same errors.

The noise is that of ``csrc/noise.h`` bit for bit (``triton_kernels``: the
same Philox words, ``_noise_from_word``, correctly rounded divisions, no
contraction), so ``x + G`` is exactly the CPU path's and the Gumbel-max
indices, hard samples' indices and Binary Concrete decisions agree with it
bit for bit. The relaxed values use ``tl.exp`` (float64: ``_exp_f64``) and
agree to float32 rounding. Every kernel works on tiles of ``ROWS`` rows by ``BLOCK``
columns: short rows pack many rows per program, long rows take one row per
program and, when the batch is too small to fill the GPU, split each row
into ``segments`` programs whose partial results a second kernel combines.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_kernels import (
    COMPILE_OPTIONS,
    Specialization,
    _div,
    _noise_from_word,
    _philox4x32_10,
)

# tiles (rows per program, columns per step): short rows, long rows; float64 short
# rows take four rows a program (sixteen rows of float64 noise spill registers in
# the statistics kernel: 1200 bytes a thread on sm_90)
SHORT_TILE = (16, 64)
SHORT_TILE_F64 = (4, 64)
LONG_TILE = (1, 1024)
# rows of at most this many columns take the short tile
SHORT_COLS = SHORT_TILE[1]
# a long row is split into segments of at least this many columns when the
# batch has fewer than TARGET_PROGRAMS programs; at most MAX_SEGMENTS per row
# (their lengths are multiples of 4, so each starts on a Philox counter)
SPLIT_MIN_COLS = 2048
TARGET_PROGRAMS = 512
MAX_SEGMENTS = 64

_GUMBEL = tl.constexpr(0)
_LOGISTIC = tl.constexpr(2)
# per-row state of the Gumbel-Softmax kernels besides 0 (OK), as gk_soft_row
# returns it
ROW_BAD, ROW_EMPTY, ROW_OVERFLOW = 1, 2, 3
# "no NaN in this tile" in the Concrete kernel's status
_NO_NAN = 2**62


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer a kernel writes comes from here (tests poison it)."""
    return torch.empty(shape, dtype=dtype, device=device)


# runtime flags and strides the JIT would otherwise compile a variant for when 1
_SEED_FLAGS = ["seed_stride", "key_stride", "row_keys"]


# ------------------------------------------------------------ jit helpers


@triton.jit
def _exp_f64(x):
    """exp(x) in float64 with fdlibm's reduction and rational approximation (error
    below 1 ulp): libdevice's exp contracts into fused multiply-adds, which the
    exact forms' PTX must not hold."""
    t = tl.minimum(tl.maximum(x, -746.0), 710.0)
    k = tl.floor(t * 1.44269504088896338700e+00 + 0.5)
    hi = t - k * 6.93147180369123816490e-01
    lo = k * 1.90821492927058770002e-10
    r = hi - lo
    r2 = r * r
    c = r - r2 * (1.66666666666666019037e-01 + r2 * (-2.77777777770155933842e-03 + r2 * (
        6.61375632143793436117e-05 + r2 * (-1.65339022054652515390e-06
                                           + r2 * 4.13813679705723846039e-08))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    # 2**k in two normal factors, so that subnormal results round once
    k1 = k.to(tl.int64) // 2
    k2 = k.to(tl.int64) - k1
    y = y * ((k1 + 1023) << 52).to(tl.float64, bitcast=True)
    y = y * ((k2 + 1023) << 52).to(tl.float64, bitcast=True)
    y = tl.where(x > 7.09782712893383973096e+02, float("inf"), y)
    y = tl.where(x < -7.45133219101941108420e+02, 0.0, y)
    return tl.where(x != x, x, y)


@triton.jit
def _exp(x, IS_F64: tl.constexpr):
    if IS_F64:
        return _exp_f64(x)
    else:
        return tl.exp(x)


@triton.jit
def _row_seeds(seeds_ptr, seed_stride, keys_ptr, key_stride, row_keys, r, rmask):
    """The 64-bit seed and row key of rows ``r`` (``row_keys``: key row r by r)."""
    seed = tl.load(seeds_ptr + r * seed_stride, mask=rmask, other=0)
    key = tl.load(keys_ptr + r * key_stride, mask=rmask, other=0)
    return seed, tl.where(row_keys != 0, r, key)


@triton.jit
def _noise_tile(seed, key, c0, KIND: tl.constexpr, IS_F64: tl.constexpr,
                ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """``[ROWS, BLOCK]`` noise of columns ``c0 + arange(BLOCK)`` (``c0`` a multiple
    of 4) for rows with ``seed`` and ``key`` (``[ROWS, 1]``): one Philox call per 4
    columns, its words interleaved back into column order."""
    zero = tl.zeros([ROWS, BLOCK // 4], dtype=tl.uint32)
    counter = (c0 // 4 + tl.arange(0, BLOCK // 4))[None, :].to(tl.uint32) + zero
    k0 = (seed & 0xFFFFFFFF).to(tl.uint32) + zero
    k1 = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32) + zero
    key_lo = (key & 0xFFFFFFFF).to(tl.uint32) + zero
    key_hi = ((key >> 32) & 0xFFFFFFFF).to(tl.uint32) + zero
    w0, w1, w2, w3 = _philox4x32_10(counter, zero, key_lo, key_hi, k0, k1)
    w = tl.interleave(tl.interleave(w0, w2), tl.interleave(w1, w3))
    return _noise_from_word(w, KIND, IS_F64)


@triton.jit
def _tile_rows(rows, cols, seg_cols, segments, ROWS: tl.constexpr):
    """This program's segment, its rows (``[ROWS]``) and which of them exist, and the
    segment's columns ``[start, end)``: the programs run over row tiles, each tile's
    segments side by side."""
    pid = tl.program_id(0).to(tl.int64)
    seg = pid % segments
    r1 = (pid // segments) * ROWS + tl.arange(0, ROWS).to(tl.int64)
    start = seg * seg_cols
    return seg, r1, r1 < rows, start, tl.minimum(start + seg_cols, cols)


# ---------------------------------------------------------- Gumbel-Softmax


@triton.jit(do_not_specialize=_SEED_FLAGS + ["tau_stride", "segments", "want_soft"])
def _softmax_stats_kernel(x_ptr, xrs, xcs, tau_ptr, tau_stride, seeds_ptr, seed_stride,
                          keys_ptr, key_stride, row_keys, s_ptr, smax_ptr, ssum_ptr, sarg_ptr,
                          sbad_ptr, rows, cols, seg_cols, segments, want_soft,
                          IS_F64: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """Stage one over one segment of ``ROWS`` rows: the max and first argmax of
    ``z = x + G`` (exact noise), whether some ``z`` is NaN or +inf and, if
    ``want_soft``, ``s = z / tau`` into ``s_ptr`` with its max ``m`` and
    ``sum exp(s - m)``."""
    dtype = tl.float64 if IS_F64 else tl.float32
    seg, r1, rm1, start, end = _tile_rows(rows, cols, seg_cols, segments, ROWS)
    r, rmask = r1[:, None], rm1[:, None]
    seed, key = _row_seeds(seeds_ptr, seed_stride, keys_ptr, key_stride, row_keys, r, rmask)
    tau = tl.load(tau_ptr + r * tau_stride, mask=rmask, other=1.0)
    inv = _div(tl.full(tau.shape, 1.0, dtype), tau, IS_F64)
    best = tl.full([ROWS], float("-inf"), dtype)
    arg = tl.full([ROWS], -1, tl.int64)
    bad = tl.zeros([ROWS], dtype=tl.int32)
    m = tl.full([ROWS], float("-inf"), dtype)
    total = tl.zeros([ROWS], dtype=dtype)
    for c0 in range(start, end, BLOCK):
        c = c0 + tl.arange(0, BLOCK)[None, :].to(tl.int64)
        live = rmask & (c < end)
        x = tl.load(x_ptr + r * xrs + c * xcs, mask=live, other=float("-inf")).to(dtype)
        z = x + _noise_tile(seed, key, c0, _GUMBEL, IS_F64, ROWS, BLOCK)
        z = tl.where(live, z, float("-inf"))
        bad = tl.maximum(bad, tl.max((~(z < float("inf"))).to(tl.int32), 1))
        top = tl.max(z, 1)
        at = tl.min(tl.where(z == top[:, None], c, 2**62), 1)
        better = top > best
        arg = tl.where(better, at, arg)
        best = tl.where(better, top, best)
        if want_soft != 0:
            s = z * inv
            tl.store(s_ptr + r * cols + c, s, mask=live)
            m_new = tl.maximum(m, tl.max(s, 1))
            scale = tl.where(m == float("-inf"), 0.0, _exp(m - m_new, IS_F64))
            e = tl.where(s == float("-inf"), 0.0, _exp(s - m_new[:, None], IS_F64))
            total = total * scale + tl.sum(e, 1)
            m = m_new
    at_seg = r1 * segments + seg
    tl.store(smax_ptr + at_seg, best, mask=rm1)
    tl.store(sarg_ptr + at_seg, arg, mask=rm1)
    tl.store(sbad_ptr + at_seg, bad, mask=rm1)
    tl.store(ssum_ptr + at_seg, tl.where(m == float("-inf"), 0.0, total), mask=rm1)


@triton.jit(do_not_specialize=["tau_stride", "segments", "want_soft", "one_hot"])
def _softmax_finish_kernel(tau_ptr, tau_stride, s_ptr, y_ptr, index_ptr, state_ptr, smax_ptr,
                           ssum_ptr, sarg_ptr, sbad_ptr, rows, cols, seg_cols, segments,
                           want_soft, one_hot, IS_F64: tl.constexpr, ROWS: tl.constexpr,
                           BLOCK: tl.constexpr, SEGS: tl.constexpr):
    """Stage two over one segment: every program combines its rows' segment
    results (the row's argmax, state, softmax max and sum); the first segment's
    program writes the index and state; the relaxed sample ``exp(s - M) / S`` is
    normalized in place and the one-hot written for rows in the OK state."""
    dtype = tl.float64 if IS_F64 else tl.float32
    seg, r1, rm1, start, end = _tile_rows(rows, cols, seg_cols, segments, ROWS)
    r, rmask = r1[:, None], rm1[:, None]
    j = tl.arange(0, SEGS)[None, :]
    at = r * segments + j
    used = rmask & (j < segments)
    seg_best = tl.load(smax_ptr + at, mask=used, other=float("-inf"))
    best = tl.max(seg_best, 1)
    arg = tl.min(tl.where(used & (seg_best == best[:, None]),
                          tl.load(sarg_ptr + at, mask=used, other=2**62), 2**62), 1)
    bad = tl.max(tl.load(sbad_ptr + at, mask=used, other=0), 1)
    tau = tl.load(tau_ptr + r1 * tau_stride, mask=rm1, other=1.0)
    inv = _div(tl.full(tau.shape, 1.0, dtype), tau, IS_F64)
    top = best * inv
    state = tl.where(bad != 0, 1, tl.where(best == float("-inf"), 2,
                                           tl.where(tl.abs(top) < float("inf"), 0, 3)))
    if seg == 0:
        tl.store(state_ptr + r1, state.to(tl.int8), mask=rm1)
        tl.store(index_ptr + r1, arg, mask=rm1)
    ok = rmask & (state[:, None] == 0)
    scale = tl.zeros([ROWS], dtype=dtype)
    if want_soft != 0:
        seg_total = tl.load(ssum_ptr + at, mask=used, other=0.0)
        seg_m = seg_best * inv[:, None]
        weight = tl.where(seg_best == float("-inf"), 0.0, _exp(seg_m - top[:, None], IS_F64))
        total = tl.sum(seg_total * weight, 1)
        scale = _div(tl.full(total.shape, 1.0, dtype), total, IS_F64)
    for c0 in range(start, end, BLOCK):
        c = c0 + tl.arange(0, BLOCK)[None, :].to(tl.int64)
        live = ok & (c < end)
        if want_soft != 0:
            s = tl.load(s_ptr + r * cols + c, mask=live, other=float("-inf"))
            p = tl.where(s == float("-inf"), 0.0, _exp(s - top[:, None], IS_F64))
            tl.store(s_ptr + r * cols + c, p * scale[:, None], mask=live)
        if one_hot != 0:
            tl.store(y_ptr + r * cols + c, tl.where(c == arg[:, None], 1.0, 0.0).to(dtype),
                     mask=live)


def _tile(cols: int, dtype: torch.dtype) -> tuple[int, int]:
    """The tile of rows of ``cols`` columns computed in ``dtype``."""
    if cols > SHORT_COLS:
        return LONG_TILE
    return SHORT_TILE_F64 if dtype == torch.float64 else SHORT_TILE


def _segments(rows: int, cols: int, tile: tuple[int, int]) -> tuple[int, int]:
    """(segments per row, columns per segment): a long row is split when the batch
    alone gives fewer than TARGET_PROGRAMS programs."""
    if tile != LONG_TILE or rows >= TARGET_PROGRAMS or cols < 2 * SPLIT_MIN_COLS:
        return 1, max(cols, 1)
    segments = min(MAX_SEGMENTS, triton.cdiv(TARGET_PROGRAMS, rows), cols // SPLIT_MIN_COLS)
    seg_cols = triton.cdiv(triton.cdiv(cols, segments), 4) * 4
    return triton.cdiv(cols, seg_cols), seg_cols


def _seed_args(seeds: torch.Tensor, keys: torch.Tensor) -> tuple:
    """(seeds, seed stride, keys, key stride, row_keys) for the kernels."""
    row_keys = keys.shape[0] == 0
    keys = seeds if row_keys else keys
    return (seeds, 0 if seeds.shape[0] == 1 else seeds.stride(0), keys,
            0 if keys.shape[0] == 1 else keys.stride(0), int(row_keys))


def _status_of(state: torch.Tensor) -> torch.Tensor:
    """The C kernels' status ``[3]`` (first bad, all -inf and overflowing row, or
    -1) from the per-row states, on the device (read back by the caller)."""
    rows = state.shape[0]
    codes = torch.tensor([ROW_BAD, ROW_EMPTY, ROW_OVERFLOW], device=state.device,
                         dtype=state.dtype)
    index = torch.arange(rows, device=state.device)
    first = torch.where(state[None, :] == codes[:, None], index, rows).amin(1)
    return torch.where(first == rows, -1, first)


def _empty_status(device: torch.device) -> torch.Tensor:
    return torch.full((3,), -1, dtype=torch.int64, device=device)


def softmax_rows(x: torch.Tensor, tau: torch.Tensor, seeds: torch.Tensor, keys: torch.Tensor,
                 hard: bool, save_soft: bool, index: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, soft, index, status)``: the outputs of ``ops.gumbel_softmax`` (``y`` and
    ``soft`` empty when ``index``: ``ops.gumbel_max``, no sample formed), the
    argmax of ``x + G`` per row, and the C kernels' status."""
    rows, cols = int(x.shape[0]), int(x.shape[1])
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    device = x.device
    empty = torch.empty(0, dtype=dtype, device=device)
    y = empty if index else _empty((rows, cols), dtype, device)
    # the buffer of the relaxed sample: y itself, the soft output, or none
    relaxed = None if index or (hard and not save_soft) else y if not hard else \
        _empty((rows, cols), dtype, device)
    soft = relaxed if hard and relaxed is not None else empty
    arg = _empty((rows,), torch.int64, device)
    if rows == 0:
        return y, soft, arg, _empty_status(device)
    tile = _tile(cols, dtype)
    segments, seg_cols = _segments(rows, cols, tile)
    programs = triton.cdiv(rows, tile[0]) * segments
    stats = rows * segments
    smax = _empty((stats,), dtype, device)
    ssum = _empty((stats,), dtype, device)
    sarg = _empty((stats,), torch.int64, device)
    sbad = _empty((stats,), torch.int32, device)
    state = _empty((rows,), torch.int8, device)
    tau = tau.to(dtype)
    tau_stride = 0 if tau.shape[0] == 1 else tau.stride(0)
    want_soft = relaxed is not None
    # a buffer the kernels never touch stands in for the ones they do not write
    s_buf = relaxed if want_soft else smax
    is_f64 = dtype == torch.float64
    _softmax_stats_kernel[(programs,)](
        x, x.stride(0), x.stride(1), tau, tau_stride, *_seed_args(seeds, keys), s_buf, smax,
        ssum, sarg, sbad, rows, cols, seg_cols, segments, int(want_soft), IS_F64=is_f64,
        ROWS=tile[0], BLOCK=tile[1], **COMPILE_OPTIONS)
    _softmax_finish_kernel[(programs,)](
        tau, tau_stride, s_buf, y if hard and not index else smax, arg, state, smax, ssum,
        sarg, sbad, rows, cols, seg_cols, segments, int(want_soft), int(hard and not index),
        IS_F64=is_f64, ROWS=tile[0], BLOCK=tile[1], SEGS=MAX_SEGMENTS, **COMPILE_OPTIONS)
    return y, soft, arg, _status_of(state)


@triton.jit(do_not_specialize=["segments"])
def _softmax_dot_kernel(g_ptr, grs, gcs, y_ptr, yrs, ycs, dot_ptr, rows, cols, seg_cols,
                        segments, IS_F64: tl.constexpr, ROWS: tl.constexpr,
                        BLOCK: tl.constexpr):
    """``<g, y>`` over one segment of ``ROWS`` rows."""
    dtype = tl.float64 if IS_F64 else tl.float32
    seg, r1, rm1, start, end = _tile_rows(rows, cols, seg_cols, segments, ROWS)
    r, rmask = r1[:, None], rm1[:, None]
    acc = tl.zeros([ROWS], dtype=dtype)
    for c0 in range(start, end, BLOCK):
        c = c0 + tl.arange(0, BLOCK)[None, :].to(tl.int64)
        live = rmask & (c < end)
        g = tl.load(g_ptr + r * grs + c * gcs, mask=live, other=0.0).to(dtype)
        y = tl.load(y_ptr + r * yrs + c * ycs, mask=live, other=0.0).to(dtype)
        acc += tl.sum(g * y, 1)
    tl.store(dot_ptr + r1 * segments + seg, acc, mask=rm1)


@triton.jit(do_not_specialize=["tau_stride", "segments", "need_tau"])
def _softmax_grad_kernel(g_ptr, grs, gcs, y_ptr, yrs, ycs, tau_ptr, tau_stride, dot_ptr,
                         gx_ptr, gtau_ptr, rows, cols, seg_cols, segments, need_tau,
                         IS_F64: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
                         SEGS: tl.constexpr):
    """``gx = y (g - <g, y>) / tau`` over one segment and, if ``need_tau``, the
    segment's part of ``gtau = -sum gx log y`` (terms with y = 0 left out)."""
    dtype = tl.float64 if IS_F64 else tl.float32
    seg, r1, rm1, start, end = _tile_rows(rows, cols, seg_cols, segments, ROWS)
    r, rmask = r1[:, None], rm1[:, None]
    j = tl.arange(0, SEGS)[None, :]
    dot = tl.sum(tl.load(dot_ptr + r * segments + j, mask=rmask & (j < segments), other=0.0),
                 1)[:, None]
    tau = tl.load(tau_ptr + r * tau_stride, mask=rmask, other=1.0).to(dtype)
    inv = _div(tl.full(tau.shape, 1.0, dtype), tau, IS_F64)
    acc = tl.zeros([ROWS], dtype=dtype)
    for c0 in range(start, end, BLOCK):
        c = c0 + tl.arange(0, BLOCK)[None, :].to(tl.int64)
        live = rmask & (c < end)
        g = tl.load(g_ptr + r * grs + c * gcs, mask=live, other=0.0).to(dtype)
        y = tl.load(y_ptr + r * yrs + c * ycs, mask=live, other=0.0).to(dtype)
        gx = y * (g - dot) * inv
        tl.store(gx_ptr + r * cols + c, gx, mask=live)
        if need_tau != 0:
            positive = live & (y > 0)
            acc -= tl.sum(tl.where(positive, gx * tl.log(tl.where(positive, y, 1.0)), 0.0), 1)
    if need_tau != 0:
        tl.store(gtau_ptr + r1 * segments + seg, acc, mask=rm1)


def softmax_backward_rows(grad: torch.Tensor, soft: torch.Tensor, tau: torch.Tensor,
                          need_tau: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs of ``ops.gumbel_softmax_backward``: ``(gx, gtau)``."""
    rows, cols = int(soft.shape[0]), int(soft.shape[1])
    dtype = soft.dtype
    device = soft.device
    gx = _empty((rows, cols), dtype, device)
    if rows == 0 or cols == 0:
        gx.zero_()
        return gx, torch.zeros((rows,) if need_tau else (0,), dtype=dtype, device=device)
    grad = grad.to(dtype)
    tau = tau.to(dtype)
    tau_stride = 0 if tau.shape[0] == 1 else tau.stride(0)
    tile = _tile(cols, dtype)
    segments, seg_cols = _segments(rows, cols, tile)
    programs = triton.cdiv(rows, tile[0]) * segments
    dot = _empty((rows * segments,), dtype, device)
    parts = _empty((rows, segments) if need_tau else (1,), dtype, device)
    is_f64 = dtype == torch.float64
    _softmax_dot_kernel[(programs,)](
        grad, grad.stride(0), grad.stride(1), soft, soft.stride(0), soft.stride(1), dot, rows,
        cols, seg_cols, segments, IS_F64=is_f64, ROWS=tile[0], BLOCK=tile[1],
        **COMPILE_OPTIONS)
    _softmax_grad_kernel[(programs,)](
        grad, grad.stride(0), grad.stride(1), soft, soft.stride(0), soft.stride(1), tau,
        tau_stride, dot, gx, parts, rows, cols, seg_cols, segments, int(need_tau),
        IS_F64=is_f64, ROWS=tile[0], BLOCK=tile[1], SEGS=MAX_SEGMENTS, **COMPILE_OPTIONS)
    gtau = parts.sum(1) if need_tau else torch.empty(0, dtype=dtype, device=device)
    return gx, gtau


# ----------------------------------------------------- Binary/Hard Concrete


@triton.jit(do_not_specialize=_SEED_FLAGS + ["mode", "save_soft"])
def _concrete_kernel(x_ptr, xrs, xcs, tau_ptr, trs, tcs, seeds_ptr, seed_stride, keys_ptr,
                     key_stride, row_keys, y_ptr, soft_ptr, nan_ptr, stretch_ptr, rows, cols,
                     mode, save_soft, IS_F64: tl.constexpr, ROWS: tl.constexpr,
                     BLOCK: tl.constexpr):
    """One ``[ROWS, BLOCK]`` tile of ``s = 1 / (1 + exp(-(x + L) / tau))``: mode 0
    writes s, 1 writes ``s > 1/2`` (and s to ``soft_ptr`` if ``save_soft``), 2
    ``clamp(s span + gamma, 0, 1)`` (``stretch_ptr`` holds gamma, span);
    ``nan_ptr[pid]`` gets the tile's first NaN (flat index ``r cols + c``, or 2**62)."""
    dtype = tl.float64 if IS_F64 else tl.float32
    pid = tl.program_id(0).to(tl.int64)
    blocks = tl.cdiv(cols, BLOCK)
    r = (pid // blocks) * ROWS + tl.arange(0, ROWS)[:, None].to(tl.int64)
    c0 = (pid % blocks) * BLOCK
    c = c0 + tl.arange(0, BLOCK)[None, :].to(tl.int64)
    rmask = r < rows
    live = rmask & (c < cols)
    seed, key = _row_seeds(seeds_ptr, seed_stride, keys_ptr, key_stride, row_keys, r, rmask)
    x = tl.load(x_ptr + r * xrs + c * xcs, mask=live, other=0.0).to(dtype)
    tau = tl.load(tau_ptr + r * trs + c * tcs, mask=live, other=1.0).to(dtype)
    nan = live & (x != x)
    tl.store(nan_ptr + pid, tl.min(tl.min(tl.where(nan, r * cols + c, 2**62), 1), 0))
    v = _div(x + _noise_tile(seed, key, c0, _LOGISTIC, IS_F64, ROWS, BLOCK), tau, IS_F64)
    one = tl.full(v.shape, 1.0, dtype)
    s = _div(one, one + _exp(-v, IS_F64), IS_F64)
    gamma = tl.load(stretch_ptr)
    span = tl.load(stretch_ptr + 1)
    gate = tl.minimum(tl.maximum(s * span + gamma, 0.0), 1.0)
    y = tl.where(mode == 1, tl.where(s > 0.5, 1.0, 0.0).to(dtype), tl.where(mode == 2, gate, s))
    tl.store(y_ptr + r * cols + c, y, mask=live)
    if save_soft != 0:
        tl.store(soft_ptr + r * cols + c, s, mask=live)


def _stretch(gamma: float, span: float, dtype: torch.dtype, device: torch.device
             ) -> torch.Tensor:
    """(gamma, span) in the compute dtype, on the device (a kernel argument would
    be float32 even for float64 inputs); filled on the device, no host copy."""
    stretch = torch.full((2,), span, dtype=dtype, device=device)
    stretch[0] = gamma
    return stretch


def concrete_rows(x: torch.Tensor, tau: torch.Tensor, seeds: torch.Tensor, keys: torch.Tensor,
                  mode: int, save_soft: bool, gamma: float, span: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, soft, first_nan)``: the outputs of ``ops.concrete`` and the flat index
    of the first NaN logit (a 0-d int64 tensor, -1 if none) on the device."""
    rows, cols = int(x.shape[0]), int(x.shape[1])
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    device = x.device
    with_soft = mode == 1 and save_soft
    y = _empty((rows, cols), dtype, device)
    soft = _empty((rows, cols) if with_soft else (0,), dtype, device)
    if rows == 0 or cols == 0:
        return y, soft, torch.tensor(-1, device=device)
    tile = _tile(cols, dtype)
    programs = triton.cdiv(rows, tile[0]) * triton.cdiv(cols, tile[1])
    nan = _empty((programs,), torch.int64, device)
    tau = tau.to(dtype)
    _concrete_kernel[(programs,)](
        x, x.stride(0), x.stride(1), tau, tau.stride(0), tau.stride(1), *_seed_args(seeds, keys),
        y, soft if with_soft else y, nan, _stretch(gamma, span, dtype, device), rows, cols,
        mode, int(with_soft), IS_F64=dtype == torch.float64, ROWS=tile[0], BLOCK=tile[1],
        **COMPILE_OPTIONS)
    first = nan.amin()
    return y, soft, torch.where(first == _NO_NAN, -1, first)


@triton.jit(do_not_specialize=["mode", "need_tau"])
def _concrete_backward_kernel(g_ptr, grs, gcs, s_ptr, srs, scs, tau_ptr, trs, tcs, gx_ptr,
                              gtau_ptr, stretch_ptr, rows, cols, mode, need_tau,
                              IS_F64: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """One tile of the Concrete backward from the saved sample (``gk_concrete_backward``):
    mode 0 from the sigmoid, mode 2 from the Hard Concrete gate (no gradient where it
    is 0 or 1)."""
    dtype = tl.float64 if IS_F64 else tl.float32
    pid = tl.program_id(0).to(tl.int64)
    blocks = tl.cdiv(cols, BLOCK)
    r = (pid // blocks) * ROWS + tl.arange(0, ROWS)[:, None].to(tl.int64)
    c = (pid % blocks) * BLOCK + tl.arange(0, BLOCK)[None, :].to(tl.int64)
    live = (r < rows) & (c < cols)
    gy = tl.load(g_ptr + r * grs + c * gcs, mask=live, other=0.0).to(dtype)
    z = tl.load(s_ptr + r * srs + c * scs, mask=live, other=0.5).to(dtype)
    t = tl.load(tau_ptr + r * trs + c * tcs, mask=live, other=1.0).to(dtype)
    gamma = tl.load(stretch_ptr)
    span = tl.load(stretch_ptr + 1)
    hard = mode == 2
    gated = ~hard | ((z > 0) & (z < 1))
    y = tl.where(hard, _div(z - gamma, tl.full(z.shape, 1.0, dtype) * span, IS_F64), z)
    gy = tl.where(hard, gy * span, gy)
    gv = gy * (1.0 - y) * y
    tl.store(gx_ptr + r * cols + c, tl.where(gated, _div(gv, t, IS_F64), 0.0), mask=live)
    if need_tau != 0:
        inside = (y > 0) & (y < 1)
        safe = tl.where(inside, y, 0.5)
        v = tl.where(inside, tl.log(safe) - tl.log(1.0 - safe), 0.0)
        gt = tl.where(gated, _div(-gv * v, t, IS_F64), 0.0)
        tl.store(gtau_ptr + r * cols + c, gt, mask=live)


def concrete_backward_rows(grad: torch.Tensor, saved: torch.Tensor, tau: torch.Tensor,
                           mode: int, gamma: float, span: float,
                           need_tau: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs of ``ops.concrete_backward``: ``(gx, gtau)``."""
    rows, cols = int(saved.shape[0]), int(saved.shape[1])
    dtype = saved.dtype
    device = saved.device
    gx = _empty((rows, cols), dtype, device)
    gtau = _empty((rows, cols) if need_tau else (0,), dtype, device)
    if rows == 0 or cols == 0:
        return gx, gtau
    grad = grad.to(dtype)
    tau = tau.to(dtype)
    tile = _tile(cols, dtype)
    programs = triton.cdiv(rows, tile[0]) * triton.cdiv(cols, tile[1])
    _concrete_backward_kernel[(programs,)](
        grad, grad.stride(0), grad.stride(1), saved, saved.stride(0), saved.stride(1), tau,
        tau.stride(0), tau.stride(1), gx, gtau if need_tau else gx,
        _stretch(gamma, span, dtype, device), rows, cols, 2 if mode == 2 else 0,
        int(need_tau), IS_F64=dtype == torch.float64,
        ROWS=tile[0], BLOCK=tile[1], **COMPILE_OPTIONS)
    return gx, gtau


# --------------------------------------------------------- compiled forms


def _signature(fn: triton.runtime.JITFunction, pointers: dict[str, str]) -> dict[str, str]:
    """Every argument's Triton type: the given pointers, the constexprs, and 32-bit
    integers for the rest (sizes, strides and flags below 2**31, as launched)."""
    constexprs = {"IS_F64", "ROWS", "BLOCK", "SEGS"}
    return {name: pointers.get(name, "constexpr" if name in constexprs else "i32")
            for name in fn.arg_names}


def specializations() -> list[Specialization]:
    """Every form of the row kernels that the launchers above can choose: per
    input dtype (for the kernels reading the logits) or compute dtype, and tile.
    The forward kernels, which form the noise, are ``exact``; the backward ones
    take ``tl.log`` of the saved sample and are not."""
    forms = []
    for ct, tiles in (("fp32", (SHORT_TILE, LONG_TILE)), ("fp64", (SHORT_TILE_F64, LONG_TILE))):
        x_dtypes = ("fp32", "bf16", "fp16") if ct == "fp32" else ("fp64",)
        for tile in tiles:
            forms += _tile_forms(ct, x_dtypes, tile)
    return forms


def _tile_forms(ct: str, x_dtypes: tuple[str, ...], tile: tuple[int, int]
                ) -> list[Specialization]:
    """The forms of every row kernel computing in ``ct`` on ``tile``, the forward ones
    for each logit dtype of ``x_dtypes``."""
    shape = {"ROWS": tile[0], "BLOCK": tile[1]}
    name = f"{tile[0]}x{tile[1]}"
    constexprs = {"IS_F64": ct == "fp64", **shape}
    seeds = {"seeds_ptr": "*i64", "keys_ptr": "*i64"}
    forms = []
    for xt in x_dtypes:
        forms.append(Specialization(
            name=f"softmax_stats[{xt}, {name}]", fn=_softmax_stats_kernel,
            signature=_signature(_softmax_stats_kernel, {
                "x_ptr": f"*{xt}", "tau_ptr": f"*{ct}", "s_ptr": f"*{ct}",
                "smax_ptr": f"*{ct}", "ssum_ptr": f"*{ct}", "sarg_ptr": "*i64",
                "sbad_ptr": "*i32", **seeds}),
            constexprs=constexprs))
        forms.append(Specialization(
            name=f"concrete[{xt}, {name}]", fn=_concrete_kernel,
            signature=_signature(_concrete_kernel, {
                "x_ptr": f"*{xt}", "tau_ptr": f"*{ct}", "y_ptr": f"*{ct}",
                "soft_ptr": f"*{ct}", "nan_ptr": "*i64", "stretch_ptr": f"*{ct}", **seeds}),
            constexprs=constexprs))
    forms.append(Specialization(
        name=f"softmax_finish[{ct}, {name}]", fn=_softmax_finish_kernel,
        signature=_signature(_softmax_finish_kernel, {
            "tau_ptr": f"*{ct}", "s_ptr": f"*{ct}", "y_ptr": f"*{ct}", "index_ptr": "*i64",
            "state_ptr": "*i8", "smax_ptr": f"*{ct}", "ssum_ptr": f"*{ct}",
            "sarg_ptr": "*i64", "sbad_ptr": "*i32"}),
        constexprs={**constexprs, "SEGS": MAX_SEGMENTS}))
    forms.append(Specialization(
        name=f"softmax_dot[{ct}, {name}]", fn=_softmax_dot_kernel,
        signature=_signature(_softmax_dot_kernel, {
            "g_ptr": f"*{ct}", "y_ptr": f"*{ct}", "dot_ptr": f"*{ct}"}),
        constexprs=constexprs))
    forms.append(Specialization(
        name=f"softmax_grad[{ct}, {name}]", fn=_softmax_grad_kernel,
        signature=_signature(_softmax_grad_kernel, {
            "g_ptr": f"*{ct}", "y_ptr": f"*{ct}", "tau_ptr": f"*{ct}", "dot_ptr": f"*{ct}",
            "gx_ptr": f"*{ct}", "gtau_ptr": f"*{ct}"}),
        constexprs={**constexprs, "SEGS": MAX_SEGMENTS}, exact=False))
    forms.append(Specialization(
        name=f"concrete_backward[{ct}, {name}]", fn=_concrete_backward_kernel,
        signature=_signature(_concrete_backward_kernel, {
            "g_ptr": f"*{ct}", "s_ptr": f"*{ct}", "tau_ptr": f"*{ct}", "gx_ptr": f"*{ct}",
            "gtau_ptr": f"*{ct}", "stretch_ptr": f"*{ct}"}),
        constexprs=constexprs, exact=False))
    return forms
