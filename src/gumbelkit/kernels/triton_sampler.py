"""Triton kernel of the token sampler (``gumbelkit::sample``) for the ``cuda`` device.

Imported only when Triton is installed (``ops._triton_sample``). Per row, with
``z = fl32(x / T)`` (float64 for float64 logits), ``m = max z`` and
``w = exp(z - m)`` in float64 (``_exp_nonpos``, the operations of
``gk_exp_nonpos`` in ``csrc/sampler.c`` in the same order), the kernel keeps
the tokens of ``sampler_reference``'s definition and races them by
``fl32(z + G)``, every filter a threshold on the row found without sorting:

* **top-k**: the k-th largest logit ``L`` by a search over the order-preserving
  integer keys of the logits (``count(key >= t) >= k``, three keys tested per
  counting pass, sixteen per step on split rows); ``fl32(x / T)`` is monotone,
  so ``v_k = fl32(L / T)`` is the k-th largest z and top-k keeps ``z >= v_k``.
* **top-p**: the tie-inclusive nucleus is ``z >= z*`` with ``z*`` the smallest z
  whose preceding mass ``B(z) = sum_{kept j, z_j > z} w_j`` is below ``p S``.
  ``B(t)`` is non-increasing in the key ``t``, and computed in one fixed order
  (the same blocks and the same in-block reduction for every ``t``, on split
  rows the same segments too; rounding is monotone, so the computed ``B`` is
  too), so the same search over z's keys finds ``z*``.
* **min-p**: ``(double) z - m >= log(min_p)``, as on the CPU.
* **race**: the ``n`` best ``(key desc, index asc)`` of the kept tokens, one pass
  per token (each pass the best of those worse than the previous winner), the
  noise drawn by the Philox and ``_noise_from_word`` of the noise kernel.

Bit identity with the CPU path: the divisions are correctly rounded
(``tl.fdiv(..., ieee_rounding=True)``; float64 ``/`` is ``div.rn.f64``), the
noise and ``w`` are the CPU path's bits, and every launch passes
``enable_fp_fusion=False``; top-k, min-p, greedy rows, the race and the tie
rules are exact comparisons of the same values, so tokens are bit-identical.
The one exception is a sum: top-p compares float64 sums of ``w``, which
``sampler.c`` adds in its own order (the sorted candidates with top-k; per
histogram bin and radix bucket without), this kernel by blocks and trees, and
the PyTorch reference along the sorted row with ``torch.exp``. All three are
sums of the same non-negative terms, each within ``(V - 1) 2**-53`` (relative)
of the exact sum, so a token's top-p decision can differ between the paths
only when its preceding mass ``B`` lies within ``2 (V - 1) 2**-53 S`` of
``p S`` (plus one rounding of the product). Log-probabilities
``(z - m) - log(S_kept)`` agree to float32 rounding (the sum and the
logarithm, fdlibm's ``_log_f64``, differ from the CPU's by a few ulp of
float64).

Unsplit rows, one program each (``_sample_kernel``): the passes (scan, at most
16 passes for top-k and 17 for top-p, 32 and 33 for float64, one count, ``n``
race passes) each read the row in blocks of ``BLOCK`` columns; the searches test
three keys per pass and stop when they have found their key. A block that
cannot change a pass's result is skipped after its comparisons: its ``exp`` in
the top-p passes when it holds no top-k survivor above the lowest tested key (it
would add ``+0``), its noise in the race when it holds no kept token or
``fl(max z + 23.5)`` is below the best score so far (every Gumbel value is below
22.87).

Split rows: in a batch of fewer than ``TARGET_PROGRAMS`` rows of at least
``SPLIT_MIN_COLS`` columns, drawing at most ``SPLIT_MAX_N`` tokens per row
(``_segments``), every pass runs on rows x segments programs (segments a
multiple of ``BLOCK`` columns), each writing its segment's partial results to
``part`` (float64 ``[rows, segments, 16]``), followed by a second stage of one
program per row that combines them in segment order and keeps the row's state
in ``fstate`` / ``istate`` between launches (Triton has no barrier across
programs, so every step is a launch of its own):

* ``_scan_segment_kernel`` / ``_scan_reduce_kernel``: max and min x, NaN and
  +inf, the count of x > -inf; then the status, ``m`` and the top-k search's
  start;
* ``_search_segment_kernel`` / ``_search_reduce_kernel``, per search a fixed
  ``search_steps`` steps (8 for float32 keys, 16 for float64): each step tests
  16 keys ``t_i = lo + floor(i (hi - lo) / 16)`` of ``(lo, hi]`` at once and
  keeps the part where the test turns true, so 8 (16) steps narrow any
  interval of float32 (float64) keys to one key, whatever the data; a row with
  nothing to search (filter off, greedy or invalid row, or already found) has
  ``lo + 1 >= hi`` and its programs return at once. Top-k counts
  ``key(x) >= t`` (integers: exact in any order). Top-p sums ``w`` over the
  top-k survivors with ``key(z) > t``: each segment accumulates every key's
  sum element-wise over its blocks in turn into a ``[BLOCK, 16]`` tensor and
  reduces it along the block axis once (``tl.sum``: every column of the
  blocked layout is reduced by the same tree), and the second stage adds the
  segments in order, so ``B(t)`` is the same sum of the same terms in the
  same order for every ``t``, one monotone non-increasing function of ``t``
  (rounding is monotone and a term leaving the sum becomes ``+0``), and the
  search is well defined; ``S = B(key(v_k) - 1)`` is lane 0 of the first step.
  (Triton lowers a reduction alike for every output element: each thread's
  elements in register order, then across lanes, then across warps. Were two
  lanes' trees to differ, ``B`` would still be within rounding of one monotone
  function, the search would still end at a key where the computed ``B``
  crosses ``p S``, and only a token whose preceding mass lies within that
  rounding of ``p S`` could change: the exception above, nothing worse.)
  Its order is not the unsplit kernel's, so top-p keeps the exception above;
* ``_count_segment_kernel`` / ``_count_reduce_kernel``: the kept tokens'
  count (too few: ``_TOO_FEW``), mass and ties;
* per token, ``_race_segment_kernel`` finds each segment's best
  ``(score, index)`` after the previous winner and ``_race_reduce_kernel``
  takes the row's best (equal scores: lowest index), writes the token and
  records it for the next pass. Scores are the same bits and the reduction an
  exact comparison, so the tokens are those of the unsplit race.

So a split sample takes ``launches(rows, V, n, dtype) = 2 (2 + 2
search_steps + n)`` launches (38 for ``[1, 128000]`` float32 logits and one
token, whatever the filters), their grids fixed by the shapes: nothing is read
back to the host and the launch captures in a CUDA graph.

``TRITON_INTERPRET=1`` runs the same kernel on CPU tensors, which is how the
tests check the bits without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_kernels import (
    COMPILE_OPTIONS,
    Specialization,
    _div,
    _log_f64,
    _noise_from_word,
    _philox4x32_10,
)

# columns per block of a pass (a multiple of 4: one Philox counter per 4 columns);
# the tests lower it so that small rows take several blocks
BLOCK = 1024
# every pass over a row of at least SPLIT_MIN_COLS columns is split into segments of
# at least SEGMENT_COLS columns (at most MAX_SEGMENTS, one program each) when the
# batch has fewer than TARGET_PROGRAMS rows and at most SPLIT_MAX_N tokens are drawn
# per row; the tests lower the column counts so that small rows split
SPLIT_MIN_COLS = 8192
SEGMENT_COLS = 2048
TARGET_PROGRAMS = 128
MAX_SEGMENTS = 64
SPLIT_MAX_N = 16
# columns per block of a split search step, which tests 16 keys on each column at once
SEARCH_BLOCK = 256

# status codes of sampler_reference / csrc/sampler.c
_OK = tl.constexpr(0)
_BAD_LOGIT = tl.constexpr(1)
_NO_TOKEN = tl.constexpr(2)
_OVERFLOW = tl.constexpr(3)
_TOO_FEW = tl.constexpr(4)

# the state of a split row between launches: fstate (float64) holds v_k, m, max x,
# log S_kept, log ties, the previous winner's score and the top-p target p S; istate
# (int64) the top-p key, the previous winner's index and a search's (lo, hi]; part holds
# the _PARTS partial results of each (row, segment) of a pass
_FSTATE = tl.constexpr(7)
_ISTATE = tl.constexpr(4)
_PARTS = tl.constexpr(16)

# gk_exp_nonpos's Taylor coefficients (1/13! first), as the C compiler folds them
_E13 = tl.constexpr(1.0 / 6227020800.0)
_E12 = tl.constexpr(1.0 / 479001600.0)
_E11 = tl.constexpr(1.0 / 39916800.0)
_E10 = tl.constexpr(1.0 / 3628800.0)
_E9 = tl.constexpr(1.0 / 362880.0)
_E8 = tl.constexpr(1.0 / 40320.0)
_E7 = tl.constexpr(1.0 / 5040.0)
_E6 = tl.constexpr(1.0 / 720.0)
_E5 = tl.constexpr(1.0 / 120.0)
_E4 = tl.constexpr(1.0 / 24.0)
_E3 = tl.constexpr(1.0 / 6.0)


@triton.jit
def _exp_nonpos(d):
    """``gk_exp_nonpos`` on float64 ``d <= 0`` (-inf gives 0): Cody-Waite reduction,
    the Taylor polynomial to r**13 by Horner, times 2**k built from the bits."""
    keep = d >= -708.0
    d = tl.where(keep, d, -708.0)
    t = d * 1.4426950408889634 + 6755399441055744.0  # 0x1.8p52
    kd = t - 6755399441055744.0
    r = (d - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10
    p = r * _E13 + _E12
    p = p * r + _E11
    p = p * r + _E10
    p = p * r + _E9
    p = p * r + _E8
    p = p * r + _E7
    p = p * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    scale = ((t.to(tl.int64, bitcast=True) - 0x4338000000000000 + 1023) << 52).to(
        tl.float64, bitcast=True)
    return tl.where(keep, p * scale, 0.0)


@triton.jit
def _key(v, IS_F64: tl.constexpr):
    """Order-preserving int64 key of NaN-free floats (larger value, larger key; -0 and
    +0 share the key of +0)."""
    v = tl.where(v == 0.0, 0.0, v)
    if IS_F64:
        b = v.to(tl.int64, bitcast=True)
        return tl.where(b < 0, b ^ 0x7FFFFFFFFFFFFFFF, b)
    else:
        b = v.to(tl.int32, bitcast=True)
        return tl.where(b < 0, b ^ 0x7FFFFFFF, b).to(tl.int64)


@triton.jit
def _from_key(k, IS_F64: tl.constexpr):
    """The float whose ``_key`` is ``k``."""
    if IS_F64:
        return tl.where(k < 0, k ^ 0x7FFFFFFFFFFFFFFF, k).to(tl.float64, bitcast=True)
    else:
        k32 = k.to(tl.int32)
        return tl.where(k32 < 0, k32 ^ 0x7FFFFFFF, k32).to(tl.float32, bitcast=True)


@triton.jit
def _mid(lo, hi):
    """floor((lo + hi) / 2) without overflow."""
    return (lo >> 1) + (hi >> 1) + (lo & hi & 1)


@triton.jit
def _quarters(lo, hi):
    """The three keys ``t1 <= t2 <= t3`` that split ``(lo, hi]`` into quarters."""
    t2 = _mid(lo, hi)
    return _mid(lo, t2), t2, _mid(t2, hi)


@triton.jit
def _narrow(lo, hi, t1, t2, t3, turned1, turned2, turned3):
    """``(lo, hi]`` narrowed to the quarter where a monotone test turns true, from the
    tests at its ``_quarters`` (``turned_i``: true at ``t_i``)."""
    if turned1:
        hi = t1
    elif turned2:
        lo = t1
        hi = t2
    elif turned3:
        lo = t2
        hi = t3
    else:
        lo = t3
    return lo, hi


@triton.jit
def _block(row_ptr, start, V, T, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """Columns ``start .. start + BLOCK`` of a row: the logits ``x`` in the compute dtype
    (0 outside the row), ``z = fl(x / T)``, ``key(z)``, the column indices and the mask
    of those inside the row. (One function, not three: every call of a jitted function
    costs the interpreter a few milliseconds.)"""
    cols = start + tl.arange(0, BLOCK)
    inside = cols < V
    x = tl.load(row_ptr + cols, mask=inside, other=0.0)
    if IS_F64:
        x = x.to(tl.float64)
        z = x / T
        b = tl.where(z == 0.0, 0.0, z).to(tl.int64, bitcast=True)
        key = tl.where(b < 0, b ^ 0x7FFFFFFFFFFFFFFF, b)
    else:
        x = x.to(tl.float32)
        z = tl.fdiv(x, T, ieee_rounding=True)
        b = tl.where(z == 0.0, 0.0, z).to(tl.int32, bitcast=True)
        key = tl.where(b < 0, b ^ 0x7FFFFFFF, b).to(tl.int64)
    return x, z, key, cols, inside


@triton.jit
def _mass_above(row_ptr, V, T, m, vk, t1, t2, t3, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """``B(t)`` at three keys: the sums of ``w`` over the top-k survivors (``z > -inf``,
    ``z >= vk``) with ``key(z) > t``, each in one fixed order (blocks in turn, each
    reduced by ``tl.sum``), so ``B`` is the same function of ``t`` in every call."""
    b1 = tl.zeros([], dtype=tl.float64)
    b2 = tl.zeros([], dtype=tl.float64)
    b3 = tl.zeros([], dtype=tl.float64)
    for start in range(0, V, BLOCK):
        x, z, key, cols, inside = _block(row_ptr, start, V, T, IS_F64, BLOCK)
        # a block whose largest z is below v_k or has key <= t1 (<= t2 <= t3) would add
        # +0 to every sum, which changes none: skip its exp
        take = inside & (z > -float("inf")) & (z >= vk)
        if tl.max(tl.where(take, key, -0x7FFFFFFFFFFFFFFF - 1), axis=0) > t1:
            w = tl.where(take, _exp_nonpos(z.to(tl.float64) - m), 0.0)
            b1 += tl.sum(tl.where(key > t1, w, 0.0), axis=0)
            b2 += tl.sum(tl.where(key > t2, w, 0.0), axis=0)
            b3 += tl.sum(tl.where(key > t3, w, 0.0), axis=0)
    return b1, b2, b3


@triton.jit
def _count_at_least(row_ptr, V, t1, t2, t3, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """How many logits have ``key(x) >= t``, at three keys (``x / 1`` is ``x``)."""
    c1 = tl.zeros([], dtype=tl.int64)
    c2 = tl.zeros([], dtype=tl.int64)
    c3 = tl.zeros([], dtype=tl.int64)
    for start in range(0, V, BLOCK):
        x, z, key, cols, inside = _block(row_ptr, start, V, 1.0, IS_F64, BLOCK)
        key = tl.where(inside, key, -0x7FFFFFFFFFFFFFFF - 1)
        c1 += tl.sum((key >= t1).to(tl.int64), axis=0)
        c2 += tl.sum((key >= t2).to(tl.int64), axis=0)
        c3 += tl.sum((key >= t3).to(tl.int64), axis=0)
    return c1, c2, c3


@triton.jit
def _gumbel_block(start, s0, s1, key_lo, key_hi, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """The Gumbel noise of columns ``start .. start + BLOCK`` (``start`` a multiple of 4):
    Philox counter ``(column // 4, 0, key)``, column ``c`` taking word ``c % 4``."""
    c0 = (start // 4 + tl.arange(0, BLOCK // 4)).to(tl.uint32)
    zero = tl.zeros([BLOCK // 4], dtype=tl.uint32)
    w0, w1, w2, w3 = _philox4x32_10(c0, zero, zero + key_lo, zero + key_hi, zero + s0,
                                    zero + s1)
    words = tl.interleave(tl.interleave(w0, w2), tl.interleave(w1, w3))
    return _noise_from_word(words, 0, IS_F64)


@triton.jit
def _scan(row_ptr, lo, hi, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """The first pass over columns ``lo .. hi`` of a row: the largest and smallest logit
    (NaN aside), whether any is NaN or +inf, and how many are > -inf."""
    inf = float("inf")
    xmax = tl.full([], -inf, dtype=tl.float64 if IS_F64 else tl.float32)
    xmin = tl.full([], inf, dtype=tl.float64 if IS_F64 else tl.float32)
    bad = tl.zeros([], dtype=tl.int32)
    nfinite = tl.zeros([], dtype=tl.int32)
    for start in range(lo, hi, BLOCK):
        x, z, key, cols, inside = _block(row_ptr, start, hi, 1.0, IS_F64, BLOCK)
        nan = x != x
        bad = tl.maximum(bad, tl.max((inside & (nan | (x == inf))).to(tl.int32), axis=0))
        nfinite += tl.sum((inside & (x > -inf)).to(tl.int32), axis=0)
        xmax = tl.maximum(xmax, tl.max(tl.where(inside & ~nan, x, -inf), axis=0))
        xmin = tl.minimum(xmin, tl.min(tl.where(inside & ~nan, x, inf), axis=0))
    return xmax, xmin, bad, nfinite


@triton.jit
def _row_status(xmax, bad, nfinite, T, IS_F64: tl.constexpr):
    """From the first pass of a row: whether it is greedy (``T = 0``), the divisor of its
    logits, ``zmax = fl(max x / T)``, ``m`` (``zmax`` in float64) and its status."""
    inf = float("inf")
    greedy = T == 0.0
    div_t = tl.where(greedy, 1.0, T)  # greedy rows rank the logits themselves
    zmax = _div(xmax, div_t, IS_F64)
    m = zmax.to(tl.float64)
    status = tl.where(bad != 0, _BAD_LOGIT, tl.where(nfinite == 0, _NO_TOKEN, _OK))
    status = tl.where((status == _OK) & ((zmax == inf) | (zmax == -inf)), _OVERFLOW, status)
    return greedy, div_t, zmax, m, status


@triton.jit
def _kept(row_ptr, lo, hi, div_t, m, vk, p_key, log_min_p, greedy, xmax, want_lp,
          IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """The last pass before the race over columns ``lo .. hi``: how many tokens are kept,
    their mass ``sum w`` (when ``want_lp``) and (greedy rows) how many equal ``max x``."""
    inf = float("inf")
    kept_count = tl.zeros([], dtype=tl.int32)
    mass = tl.zeros([], dtype=tl.float64)
    ties = tl.zeros([], dtype=tl.int32)
    for start in range(lo, hi, BLOCK):
        x, z, key, cols, inside = _block(row_ptr, start, hi, div_t, IS_F64, BLOCK)
        d = z.to(tl.float64) - m
        kept = inside & (z > -inf)
        kept = tl.where(greedy, kept, kept & (z >= vk) & (key >= p_key) & (d >= log_min_p))
        kept_count += tl.sum(kept.to(tl.int32), axis=0)
        ties += tl.sum((inside & (x == xmax)).to(tl.int32), axis=0)
        if (want_lp != 0) & (tl.max(kept.to(tl.int32), axis=0) > 0):
            mass += tl.sum(tl.where(kept, _exp_nonpos(d), 0.0), axis=0)
    return kept_count, mass, ties


@triton.jit(do_not_specialize=["V", "n", "want_lp"])
def _sample_kernel(x_ptr, stride, V, temp_ptr, top_k_ptr, top_p_ptr, log_min_p_ptr, seeds_ptr,
                   keys_ptr, n, tokens_ptr, lp_ptr, status_ptr, want_lp,
                   IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """One row of ``gumbelkit::sample`` in one program: ``n`` tokens, their
    log-probabilities (when ``want_lp``) and the row's status."""
    row = tl.program_id(0).to(tl.int64)
    row_ptr = x_ptr + row * stride
    T = tl.load(temp_ptr + row)
    k = tl.load(top_k_ptr + row)
    p = tl.load(top_p_ptr + row)
    log_min_p = tl.load(log_min_p_ptr + row)
    seed = tl.load(seeds_ptr + row)
    rkey = tl.load(keys_ptr + row)
    if IS_F64:
        T = T.to(tl.float64)
    inf = float("inf")

    xmax, xmin, bad, nfinite = _scan(row_ptr, 0, V, IS_F64, BLOCK)
    greedy, div_t, zmax, m, status = _row_status(xmax, bad, nfinite, T, IS_F64)
    sampling = (status == _OK) & ~greedy

    # top-k: the k-th largest logit L by a search over keys, v_k = fl(L / T); both
    # searches narrow (lo, hi] to the one key where a monotone test turns true, testing
    # three keys per pass
    vk = tl.full([], -inf, dtype=tl.float64 if IS_F64 else tl.float32)
    if sampling & (k > 0) & (k < nfinite):
        lo = _key(xmin, IS_F64)  # count(key >= lo) >= k
        hi = _key(xmax, IS_F64) + 1  # count(key >= hi) = 0 < k
        while lo + 1 < hi:
            t1, t2, t3 = _quarters(lo, hi)
            c1, c2, c3 = _count_at_least(row_ptr, V, t1, t2, t3, IS_F64, BLOCK)
            lo, hi = _narrow(lo, hi, t1, t2, t3, c1 < k, c2 < k, c3 < k)
        vk = _div(_from_key(lo, IS_F64), T, IS_F64)

    # top-p: the smallest key t of z with B(t) < p S; kept: key(z) >= t
    p_key = _key(tl.full([], -inf, dtype=tl.float64 if IS_F64 else tl.float32), IS_F64)
    if sampling & (p < 1.0):
        lo = _key(vk, IS_F64) - 1  # B(lo) = S: not below p S
        total, unused1, unused2 = _mass_above(row_ptr, V, div_t, m, vk, lo, lo, lo, IS_F64,
                                              BLOCK)
        target = p * total
        hi = _key(zmax, IS_F64)  # B(hi) = 0 < p S
        while lo + 1 < hi:
            t1, t2, t3 = _quarters(lo, hi)
            b1, b2, b3 = _mass_above(row_ptr, V, div_t, m, vk, t1, t2, t3, IS_F64, BLOCK)
            lo, hi = _narrow(lo, hi, t1, t2, t3, b1 < target, b2 < target, b3 < target)
        p_key = hi

    kept_count, mass, ties = _kept(row_ptr, 0, V, div_t, m, vk, p_key, log_min_p, greedy, xmax,
                                   want_lp, IS_F64, BLOCK)
    status = tl.where((status == _OK) & (kept_count < n), _TOO_FEW, status)
    tl.store(status_ptr + row, status.to(tl.int8))
    _race_row(row_ptr, V, div_t, m, vk, p_key, log_min_p, seed, rkey, greedy, status, xmax,
              _log_f64(mass), _log_f64(ties.to(tl.float64)), n, tokens_ptr + row * n,
              lp_ptr + row * n, want_lp, IS_F64, BLOCK)



@triton.jit
def _seed_words(seed, rkey):
    """The Philox key words of a row: the seed's halves and the row key's halves."""
    s0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    s1 = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)
    key_lo = (rkey & 0xFFFFFFFF).to(tl.uint32)
    key_hi = ((rkey >> 32) & 0xFFFFFFFF).to(tl.uint32)
    return s0, s1, key_lo, key_hi


@triton.jit
def _race_pass(row_ptr, lo, hi, div_t, m, vk, p_key, log_min_p, greedy, s0, s1, key_lo, key_hi,
               prev_score, prev_index, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """One race pass over columns ``lo .. hi`` (``lo`` a multiple of ``BLOCK``): the best
    ``(score desc, index asc)`` of the kept tokens worse than ``(prev_score,
    prev_index)``, as ``(score, index, z)``; ``(-inf, -1, 0)`` when there is none.
    score = fl(z + G), or the logit for greedy rows."""
    inf = float("inf")
    best_score = tl.full([], -inf, dtype=tl.float64 if IS_F64 else tl.float32)
    best_index = tl.full([], -1, dtype=tl.int64)
    best_z = tl.zeros([], dtype=tl.float64 if IS_F64 else tl.float32)
    for start in range(lo, hi, BLOCK):
        x, z, key, cols, inside = _block(row_ptr, start, hi, div_t, IS_F64, BLOCK)
        d = z.to(tl.float64) - m
        kept = inside & (z > -inf)
        kept = tl.where(greedy, kept, kept & (z >= vk) & (key >= p_key) & (d >= log_min_p))
        # skip the noise of a block with no kept token, or whose every score
        # fl(z + G) <= fl(max z + 23.5) is below the best so far (G < 22.87)
        zb = tl.max(tl.where(kept, z, -inf), axis=0)
        bound = tl.where(greedy, zb, zb + 23.5)
        if (zb > -inf) & (bound >= best_score):
            if greedy:
                score = z
            else:
                score = z + _gumbel_block(start, s0, s1, key_lo, key_hi, IS_F64, BLOCK)
            idx = cols.to(tl.int64)
            after = (score < prev_score) | ((score == prev_score) & (idx > prev_index))
            take = kept & after
            top = tl.max(tl.where(take, score, -inf), axis=0)
            first = tl.min(tl.where(take & (score == top), idx, hi), axis=0)
            # an equal score in a later block has a larger index
            if top > best_score:
                best_score = top
                best_index = first
                best_z = tl.sum(tl.where(take & (idx == first), z, 0.0), axis=0)
    return best_score, best_index, best_z


@triton.jit
def _store_winner(tokens_ptr, lp_ptr, j, index, z, greedy, status, xmax, m, log_mass, log_ties,
                  want_lp, IS_F64: tl.constexpr):
    """Token ``j`` of a row and (when ``want_lp``) its log-probability."""
    inf = float("inf")
    tl.store(tokens_ptr + j, index)
    if want_lp != 0:
        lp = tl.where(greedy, tl.where(z == xmax, 0.0 - log_ties, -inf),
                      (z.to(tl.float64) - m) - log_mass)
        lp = tl.where(status == _OK, lp, -inf)
        if IS_F64:
            tl.store(lp_ptr + j, lp)
        else:
            tl.store(lp_ptr + j, lp.to(tl.float32))


@triton.jit
def _race_row(row_ptr, V, div_t, m, vk, p_key, log_min_p, seed, rkey, greedy, status, xmax,
              log_mass, log_ties, n, tokens_ptr, lp_ptr, want_lp,
              IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """The race of one unsplit row: pass j takes the best (score desc, index asc) of the
    kept tokens worse than winner j - 1."""
    inf = float("inf")
    s0, s1, key_lo, key_hi = _seed_words(seed, rkey)
    prev_score = tl.full([], inf, dtype=tl.float64 if IS_F64 else tl.float32)
    prev_index = tl.full([], -1, dtype=tl.int64)
    for j in range(n):
        best_score = tl.full([], -inf, dtype=tl.float64 if IS_F64 else tl.float32)
        best_index = tl.full([], -1, dtype=tl.int64)
        best_z = tl.zeros([], dtype=tl.float64 if IS_F64 else tl.float32)
        if status == _OK:
            best_score, best_index, best_z = _race_pass(
                row_ptr, 0, V, div_t, m, vk, p_key, log_min_p, greedy, s0, s1, key_lo, key_hi,
                prev_score, prev_index, IS_F64, BLOCK)
        _store_winner(tokens_ptr, lp_ptr, j, best_index, best_z, greedy, status, xmax, m,
                      log_mass, log_ties, want_lp, IS_F64)
        prev_score = best_score
        prev_index = best_index


@triton.jit
def _segment(x_ptr, stride, V, seg_cols):
    """The program's row (grid axis 0), a pointer to it, and the columns ``lo .. hi`` of
    its segment (grid axis 1)."""
    row = tl.program_id(0).to(tl.int64)
    lo = tl.program_id(1).to(tl.int64) * seg_cols
    return row, x_ptr + row * stride, lo, tl.minimum(lo + seg_cols, V)


@triton.jit
def _points(lo, hi):
    """The ``_PARTS`` keys tested by one step of a split search: ``t_i = lo + floor(i (hi -
    lo) / 16)`` for lanes ``i = 0 .. 15``, non-decreasing, ``t_0 = lo`` and ``t_15 < hi``
    when ``lo < hi``; each part ``(t_i, t_(i+1)]`` (and ``(t_15, hi]``) holds at most
    ``ceil((hi - lo) / 16)`` keys. The width (below ``2**64``) is taken as an unsigned
    integer, and ``floor(i w / 16)`` as ``(w >> 4) i + ((w & 15) i >> 4)``, so nothing
    overflows."""
    lanes = tl.arange(0, _PARTS).to(tl.uint64)
    width = (hi - lo).to(tl.uint64, bitcast=True)
    step = (width >> 4) * lanes + (((width & 15) * lanes) >> 4)
    return lo + step.to(tl.int64, bitcast=True)


@triton.jit(do_not_specialize=["V", "seg_cols", "segments"])
def _scan_segment_kernel(x_ptr, stride, V, seg_cols, segments, part_ptr,
                         IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """The first pass of a split row over one segment (grid: rows x segments): max x,
    min x, NaN / +inf and the count of x > -inf, widened to float64 (exactly) in
    ``part[row, segment, 0:4]``."""
    row, row_ptr, lo, hi = _segment(x_ptr, stride, V, seg_cols)
    xmax, xmin, bad, nfinite = _scan(row_ptr, lo, hi, IS_F64, BLOCK)
    out = part_ptr + (row * segments + tl.program_id(1)) * _PARTS
    tl.store(out + 0, xmax.to(tl.float64))
    tl.store(out + 1, xmin.to(tl.float64))
    tl.store(out + 2, bad.to(tl.float64))
    tl.store(out + 3, nfinite.to(tl.float64))


@triton.jit(do_not_specialize=["segments"])
def _scan_reduce_kernel(temp_ptr, top_k_ptr, status_ptr, fstate_ptr, istate_ptr, part_ptr,
                        segments, IS_F64: tl.constexpr):
    """The second stage of the first pass (one program per row): the row's status,
    ``m`` and ``max x``, and the start of its top-k search (``v_k`` when the search is
    already done; ``(lo, hi) = (0, 1)``, nothing to search, when top-k is off)."""
    row = tl.program_id(0).to(tl.int64)
    inf = float("inf")
    cd = tl.float64 if IS_F64 else tl.float32
    xmax = tl.full([], -inf, dtype=tl.float64)
    xmin = tl.full([], inf, dtype=tl.float64)
    bad = tl.zeros([], dtype=tl.float64)
    nfinite = tl.zeros([], dtype=tl.float64)
    for s in range(segments):
        q = part_ptr + (row * segments + s) * _PARTS
        xmax = tl.maximum(xmax, tl.load(q + 0))
        xmin = tl.minimum(xmin, tl.load(q + 1))
        bad = tl.maximum(bad, tl.load(q + 2))
        nfinite += tl.load(q + 3)
    xmax = xmax.to(cd)
    xmin = xmin.to(cd)
    nfinite = nfinite.to(tl.int32)
    T = tl.load(temp_ptr + row)
    if IS_F64:
        T = T.to(tl.float64)
    greedy, div_t, zmax, m, status = _row_status(xmax, bad.to(tl.int32), nfinite, T, IS_F64)
    k = tl.load(top_k_ptr + row)
    lo = tl.zeros([], dtype=tl.int64)
    hi = lo + 1
    vk = tl.full([], -inf, dtype=cd)
    if (status == _OK) & ~greedy & (k > 0) & (k < nfinite):
        lo = _key(xmin, IS_F64)  # count(key >= lo) >= k
        hi = _key(xmax, IS_F64) + 1  # count(key >= hi) = 0 < k
        vk = _div(_from_key(lo, IS_F64), T, IS_F64)
    tl.store(status_ptr + row, status.to(tl.int8))
    tl.store(fstate_ptr + row * _FSTATE + 0, vk.to(tl.float64))
    tl.store(fstate_ptr + row * _FSTATE + 1, m)
    tl.store(fstate_ptr + row * _FSTATE + 2, xmax.to(tl.float64))
    tl.store(istate_ptr + row * _ISTATE + 2, lo)
    tl.store(istate_ptr + row * _ISTATE + 3, hi)


@triton.jit(do_not_specialize=["V", "seg_cols", "segments"])
def _search_segment_kernel(x_ptr, stride, V, seg_cols, segments, temp_ptr, fstate_ptr,
                           istate_ptr, part_ptr, IS_F64: tl.constexpr, BLOCK: tl.constexpr,
                           TOP_P: tl.constexpr):
    """One step of a split search over one segment (grid: rows x segments), at the
    ``_PARTS`` keys ``t`` of ``_points(lo, hi)`` (nothing when ``lo + 1 >= hi``): top-k
    counts the logits with ``key(x) >= t``, top-p sums ``w`` over the top-k survivors
    with ``key(z) > t``, in ``part[row, segment, :]``. Each key's masses are added
    element-wise over the blocks in turn into column ``i`` of a ``[BLOCK, _PARTS]``
    tensor, reduced along the block axis once at the end: every column of the blocked
    layout is reduced by the same tree, so a key's sum is the same function of the key
    in every lane and step."""
    row, row_ptr, lo_col, hi_col = _segment(x_ptr, stride, V, seg_cols)
    lo = tl.load(istate_ptr + row * _ISTATE + 2)
    hi = tl.load(istate_ptr + row * _ISTATE + 3)
    if lo + 1 < hi:
        lowest = -0x7FFFFFFFFFFFFFFF - 1
        lanes = tl.arange(0, _PARTS)
        ts = _points(lo, hi)
        out = part_ptr + (row * segments + tl.program_id(1)) * _PARTS + lanes
        if TOP_P:
            T = tl.load(temp_ptr + row)
            if IS_F64:
                T = T.to(tl.float64)
            state_f = fstate_ptr + row * _FSTATE
            vk = tl.load(state_f + 0).to(tl.float64 if IS_F64 else tl.float32)
            m = tl.load(state_f + 1)
            mass = tl.zeros([BLOCK, _PARTS], dtype=tl.float64)
            for start in range(lo_col, hi_col, BLOCK):
                x, z, key, cols, inside = _block(row_ptr, start, hi_col, T, IS_F64, BLOCK)
                # a block with no survivor above lo (the lowest key tested) would add +0
                take = inside & (z > -float("inf")) & (z >= vk)
                if tl.max(tl.where(take, key, lowest), axis=0) > lo:
                    w = tl.where(take, _exp_nonpos(z.to(tl.float64) - m), 0.0)
                    mass += tl.where(key[:, None] > ts[None, :], w[:, None], 0.0)
            tl.store(out, tl.sum(mass, axis=0))
        else:
            # counts are exact in any order: reduced per block (a [BLOCK, _PARTS]
            # accumulator spills on sm_90)
            count = tl.zeros([_PARTS], dtype=tl.int32)
            for start in range(lo_col, hi_col, BLOCK):
                x, z, key, cols, inside = _block(row_ptr, start, hi_col, 1.0, IS_F64, BLOCK)
                key = tl.where(inside, key, lowest)
                count += tl.sum((key[:, None] >= ts[None, :]).to(tl.int32), axis=0)
            tl.store(out, count.to(tl.float64))


@triton.jit(do_not_specialize=["segments", "j", "steps"])
def _search_reduce_kernel(temp_ptr, top_k_ptr, top_p_ptr, status_ptr, fstate_ptr, istate_ptr,
                          part_ptr, segments, j, steps, IS_F64: tl.constexpr,
                          TOP_P: tl.constexpr):
    """The second stage of step ``j`` of ``steps`` of a split search (one program per
    row): the segments' counts or sums added in segment order, then ``(lo, hi]``
    narrowed to the part where the test turns true (top-k: ``count < k``; top-p:
    ``B(t) < p S``, with ``S = B(lo)`` from step 0). Top-k keeps ``v_k`` in ``fstate``
    and after its last step starts the top-p search; top-p keeps its key (``hi``)."""
    row = tl.program_id(0).to(tl.int64)
    inf = float("inf")
    lowest = -0x7FFFFFFFFFFFFFFF - 1
    cd = tl.float64 if IS_F64 else tl.float32
    state_f = fstate_ptr + row * _FSTATE
    state_i = istate_ptr + row * _ISTATE
    T = tl.load(temp_ptr + row)
    if IS_F64:
        T = T.to(tl.float64)
    lo = tl.load(state_i + 2)
    hi = tl.load(state_i + 3)
    if lo + 1 < hi:
        lanes = tl.arange(0, _PARTS)
        total = tl.zeros([_PARTS], dtype=tl.float64)
        for s in range(segments):
            total += tl.load(part_ptr + (row * segments + s) * _PARTS + lanes)
        if TOP_P:
            if j == 0:
                target = tl.load(top_p_ptr + row) * tl.max(tl.where(lanes == 0, total, -inf),
                                                           axis=0)
                tl.store(state_f + 6, target)
            else:
                target = tl.load(state_f + 6)
            below = total < target
        else:
            below = total < tl.load(top_k_ptr + row).to(tl.float64)
        # lane 0 is lo, where the test is false; the first lane where it is true (the
        # test is monotone) ends the new (lo, hi], or none does and hi stays
        first = tl.min(tl.where(below & (lanes > 0), lanes, _PARTS), axis=0)
        ts = _points(lo, hi)
        lo = tl.max(tl.where(lanes == first - 1, ts, lowest), axis=0)
        hi = tl.where(first < _PARTS, tl.max(tl.where(lanes == first, ts, lowest), axis=0), hi)
        tl.store(state_i + 2, lo)
        tl.store(state_i + 3, hi)
        if TOP_P:
            tl.store(state_i + 0, hi)
        else:
            tl.store(state_f + 0, _div(_from_key(lo, IS_F64), T, IS_F64).to(tl.float64))
    if not TOP_P:
        if j == steps - 1:
            # top-p: the smallest key t of z with B(t) < p S, between key(v_k) - 1
            # (B = S: not below p S) and key(zmax) (B = 0 < p S); kept: key(z) >= t
            p_lo = tl.zeros([], dtype=tl.int64)
            p_hi = p_lo + 1
            p_key = _key(tl.full([], -inf, dtype=cd), IS_F64)
            status = tl.load(status_ptr + row).to(tl.int32)
            if (status == _OK) & (T != 0.0) & (tl.load(top_p_ptr + row) < 1.0):
                p_lo = _key(tl.load(state_f + 0).to(cd), IS_F64) - 1
                p_hi = _key(tl.load(state_f + 1).to(cd), IS_F64)
                p_key = p_hi
            tl.store(state_i + 0, p_key)
            tl.store(state_i + 2, p_lo)
            tl.store(state_i + 3, p_hi)


@triton.jit(do_not_specialize=["V", "seg_cols", "segments", "want_lp"])
def _count_segment_kernel(x_ptr, stride, V, seg_cols, segments, temp_ptr, log_min_p_ptr,
                          fstate_ptr, istate_ptr, part_ptr, want_lp, IS_F64: tl.constexpr,
                          BLOCK: tl.constexpr):
    """The last pass before the race of a split row over one segment (grid: rows x
    segments): the kept tokens' count, mass and (greedy) the count of ``max x`` in
    ``part[row, segment, 0:3]``."""
    row, row_ptr, lo, hi = _segment(x_ptr, stride, V, seg_cols)
    cd = tl.float64 if IS_F64 else tl.float32
    T = tl.load(temp_ptr + row)
    if IS_F64:
        T = T.to(tl.float64)
    greedy = T == 0.0
    state_f = fstate_ptr + row * _FSTATE
    kept_count, mass, ties = _kept(
        row_ptr, lo, hi, tl.where(greedy, 1.0, T), tl.load(state_f + 1),
        tl.load(state_f + 0).to(cd), tl.load(istate_ptr + row * _ISTATE + 0),
        tl.load(log_min_p_ptr + row), greedy, tl.load(state_f + 2).to(cd), want_lp, IS_F64,
        BLOCK)
    out = part_ptr + (row * segments + tl.program_id(1)) * _PARTS
    tl.store(out + 0, kept_count.to(tl.float64))
    tl.store(out + 1, mass)
    tl.store(out + 2, ties.to(tl.float64))


@triton.jit(do_not_specialize=["segments", "n"])
def _count_reduce_kernel(status_ptr, fstate_ptr, istate_ptr, part_ptr, segments, n):
    """The second stage of the last pass (one program per row): the segments' counts and
    masses added in segment order; a row with fewer than ``n`` kept tokens is
    ``_TOO_FEW``; ``log S_kept``, ``log ties`` and the start of the race to ``fstate``."""
    row = tl.program_id(0).to(tl.int64)
    kept_count = tl.zeros([], dtype=tl.float64)
    mass = tl.zeros([], dtype=tl.float64)
    ties = tl.zeros([], dtype=tl.float64)
    for s in range(segments):
        q = part_ptr + (row * segments + s) * _PARTS
        kept_count += tl.load(q + 0)
        mass += tl.load(q + 1)
        ties += tl.load(q + 2)
    status = tl.load(status_ptr + row).to(tl.int32)
    status = tl.where((status == _OK) & (kept_count.to(tl.int32) < n), _TOO_FEW, status)
    tl.store(status_ptr + row, status.to(tl.int8))
    tl.store(fstate_ptr + row * _FSTATE + 3, _log_f64(mass))
    tl.store(fstate_ptr + row * _FSTATE + 4, _log_f64(ties))
    tl.store(fstate_ptr + row * _FSTATE + 5, float("inf"))
    tl.store(istate_ptr + row * _ISTATE + 1, -1)


@triton.jit(do_not_specialize=["V", "seg_cols", "segments"])
def _race_segment_kernel(x_ptr, stride, V, seg_cols, segments, temp_ptr, log_min_p_ptr,
                         seeds_ptr, keys_ptr, status_ptr, fstate_ptr, istate_ptr, seg_score_ptr,
                         seg_index_ptr, seg_z_ptr, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """One race pass of a split row over one segment (grid: rows x segments): the
    segment's best ``(score, index, z)`` after the previous winner in ``fstate`` /
    ``istate``, scores and z widened to float64 (exactly)."""
    row, row_ptr, lo, hi = _segment(x_ptr, stride, V, seg_cols)
    T = tl.load(temp_ptr + row)
    if IS_F64:
        T = T.to(tl.float64)
    greedy = T == 0.0
    div_t = tl.where(greedy, 1.0, T)
    cd = tl.float64 if IS_F64 else tl.float32
    state_f = fstate_ptr + row * _FSTATE
    state_i = istate_ptr + row * _ISTATE
    s0, s1, key_lo, key_hi = _seed_words(tl.load(seeds_ptr + row), tl.load(keys_ptr + row))
    best_score = tl.full([], -float("inf"), dtype=cd)
    best_index = tl.full([], -1, dtype=tl.int64)
    best_z = tl.zeros([], dtype=cd)
    if tl.load(status_ptr + row) == _OK:
        best_score, best_index, best_z = _race_pass(
            row_ptr, lo, hi, div_t, tl.load(state_f + 1), tl.load(state_f + 0).to(cd),
            tl.load(state_i + 0), tl.load(log_min_p_ptr + row), greedy, s0, s1, key_lo, key_hi,
            tl.load(state_f + 5).to(cd), tl.load(state_i + 1), IS_F64, BLOCK)
    out = row * segments + tl.program_id(1)
    tl.store(seg_score_ptr + out, best_score.to(tl.float64))
    tl.store(seg_index_ptr + out, best_index)
    tl.store(seg_z_ptr + out, best_z.to(tl.float64))


@triton.jit(do_not_specialize=["segments", "n", "j", "want_lp"])
def _race_reduce_kernel(temp_ptr, status_ptr, fstate_ptr, istate_ptr, seg_score_ptr,
                        seg_index_ptr, seg_z_ptr, segments, n, j, tokens_ptr, lp_ptr, want_lp,
                        IS_F64: tl.constexpr, SEGS: tl.constexpr):
    """The second stage of a split race pass (one program per row): the best
    ``(score desc, index asc)`` of the row's segments is winner ``j``; writes token
    ``j``, its log-probability, and the winner to ``fstate`` / ``istate`` for pass
    ``j + 1``."""
    row = tl.program_id(0).to(tl.int64)
    segs = tl.arange(0, SEGS)
    inside = segs < segments
    base = row * segments
    score = tl.load(seg_score_ptr + base + segs, mask=inside, other=-float("inf"))
    index = tl.load(seg_index_ptr + base + segs, mask=inside, other=-1)
    z = tl.load(seg_z_ptr + base + segs, mask=inside, other=0.0)
    top = tl.max(score, axis=0)
    found = inside & (score == top) & (index >= 0)
    best_index = tl.min(tl.where(found, index, 0x7FFFFFFFFFFFFFFF), axis=0)
    best_index = tl.where(top > -float("inf"), best_index, -1)
    best_z = tl.sum(tl.where(found & (index == best_index), z, 0.0), axis=0)
    T = tl.load(temp_ptr + row)
    status = tl.load(status_ptr + row).to(tl.int32)
    cd = tl.float64 if IS_F64 else tl.float32
    state = fstate_ptr + row * _FSTATE
    _store_winner(tokens_ptr + row * n, lp_ptr + row * n, j, best_index, best_z.to(cd),
                  T == 0.0, status, tl.load(state + 2).to(cd), tl.load(state + 1),
                  tl.load(state + 3), tl.load(state + 4), want_lp, IS_F64)
    tl.store(state + 5, top)
    tl.store(istate_ptr + row * _ISTATE + 1, best_index)


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer the kernels write or read back comes from here (the interpreter
    check poisons it, so that a read of an entry no launch wrote shows)."""
    return torch.empty(shape, dtype=dtype, device=device)


def sample(x: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
           top_p: torch.Tensor, log_min_p: torch.Tensor, seeds: torch.Tensor,
           keys: torch.Tensor, n: int, logprobs: bool
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``sample`` op's Triton kernel: ``(tokens [B, n], logprobs [B, n] or [B, 0],
    status [B] int8)`` for ``[B, V]`` float32/bfloat16/float16/float64 logits and the
    ``[B]`` controls of ``sampling._controls.Controls``, on the logits' device.

    Reads nothing back to the host (the launches depend on shapes only: one, or
    ``launches(B, V, n, dtype)`` when ``_segments`` splits the rows), so it can be
    captured in a CUDA graph. float64 logits compute in float64, the others in float32.
    """
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        raise ValueError(f"logits must be float32, bfloat16, float16 or float64, got {x.dtype}")
    rows, vocab = int(x.shape[0]), int(x.shape[1])
    cd = torch.float64 if x.dtype == torch.float64 else torch.float32
    device = x.device
    tokens = _empty((rows, n), torch.int64, device)
    lp = _empty((rows, n if logprobs else 0), cd, device)
    status = _empty((rows,), torch.int8, device)
    if rows == 0:
        return tokens, lp, status
    x = x.detach()
    if x.stride(1) != 1:
        x = x.contiguous()
    # named: the kernel reads them after these lines
    temperature = temperature.to(device, torch.float32).contiguous()
    top_k = top_k.to(device, torch.int64).contiguous()
    top_p = top_p.to(device, torch.float64).contiguous()
    log_min_p = log_min_p.to(device, torch.float64).contiguous()
    seeds = seeds.to(device, torch.int64).contiguous()
    keys = keys.to(device, torch.int64).contiguous()
    lp_out = lp if logprobs else _empty((1,), cd, device)
    is_f64 = x.dtype == torch.float64
    segments, seg_cols = _segments(rows, vocab, n)
    if segments == 1:
        _sample_kernel[(rows,)](
            x, x.stride(0), vocab, temperature, top_k, top_p, log_min_p, seeds, keys, n, tokens,
            lp_out, status, int(logprobs), IS_F64=is_f64, BLOCK=BLOCK, **COMPILE_OPTIONS)
        return tokens, lp, status

    # a split row: each pass over the row on (rows x segments) programs writing
    # partial results to part, then one program per row reducing them in segment order
    # and keeping the row's state in fstate / istate
    fstate = _empty((rows, _FSTATE), torch.float64, device)
    istate = _empty((rows, _ISTATE), torch.int64, device)
    part = _empty((rows, segments, _PARTS), torch.float64, device)
    grid = (rows, segments)
    split = (x, x.stride(0), vocab, seg_cols, segments)
    _scan_segment_kernel[grid](*split, part, IS_F64=is_f64, BLOCK=BLOCK,
                                            **COMPILE_OPTIONS)
    _scan_reduce_kernel[(rows,)](temperature, top_k, status, fstate, istate, part,
                                              segments, IS_F64=is_f64, **COMPILE_OPTIONS)
    steps = search_steps(x.dtype)
    for top_p_search in (False, True):
        for j in range(steps):
            _search_segment_kernel[grid](
                *split, temperature, fstate, istate, part, IS_F64=is_f64,
                BLOCK=min(BLOCK, SEARCH_BLOCK),
                TOP_P=top_p_search, **COMPILE_OPTIONS)
            _search_reduce_kernel[(rows,)](
                temperature, top_k, top_p, status, fstate, istate, part, segments, j, steps,
                IS_F64=is_f64, TOP_P=top_p_search, **COMPILE_OPTIONS)
    _count_segment_kernel[grid](
        *split, temperature, log_min_p, fstate, istate, part, int(logprobs), IS_F64=is_f64,
        BLOCK=BLOCK, **COMPILE_OPTIONS)
    _count_reduce_kernel[(rows,)](status, fstate, istate, part, segments, n,
                                               **COMPILE_OPTIONS)
    seg_score = _empty((rows, segments), torch.float64, device)
    seg_index = _empty((rows, segments), torch.int64, device)
    seg_z = _empty((rows, segments), torch.float64, device)
    for j in range(n):
        _race_segment_kernel[grid](
            *split, temperature, log_min_p, seeds, keys, status, fstate, istate, seg_score,
            seg_index, seg_z, IS_F64=is_f64, BLOCK=BLOCK, **COMPILE_OPTIONS)
        _race_reduce_kernel[(rows,)](
            temperature, status, fstate, istate, seg_score, seg_index, seg_z, segments, n, j,
            tokens, lp_out, int(logprobs), IS_F64=is_f64, SEGS=MAX_SEGMENTS, **COMPILE_OPTIONS)
    return tokens, lp, status


def search_steps(dtype: torch.dtype) -> int:
    """Steps of a split top-k or top-p search: the keys of float32 (float64) values span
    fewer than ``2**32`` (``2**64``) integers, and each step keeps one of ``_PARTS`` = 16
    parts of the interval, so 8 (16) steps narrow any interval to one key."""
    return 16 if dtype == torch.float64 else 8


def launches(rows: int, vocab: int, n: int, dtype: torch.dtype) -> int:
    """Kernel launches of ``sample`` for ``[rows, vocab]`` logits of ``dtype`` and ``n``
    tokens per row (``rows, vocab, n >= 0``): 0 for an empty batch, 1 unsplit; split
    (``_segments``), two per pass (segments, then reduction), ``2 (2 + 2 steps + n)``:
    the first pass, ``steps = search_steps(dtype)`` for top-k and as many for top-p,
    the count and ``n`` race passes, whatever the controls.

    >>> launches(1, 128_000, 1, torch.float32)  # a [1, 128000] row, one token
    38
    >>> launches(256, 128_000, 1, torch.float32)  # enough rows: one program per row
    1
    """
    if rows == 0:
        return 0
    if _segments(rows, vocab, n)[0] == 1:
        return 1
    return 2 * (2 + 2 * search_steps(dtype) + n)


def _segments(rows: int, vocab: int, n: int) -> tuple[int, int]:
    """(segments per row, columns per segment), from shapes only: a row of at least
    ``SPLIT_MIN_COLS`` columns in a batch of fewer than ``TARGET_PROGRAMS`` rows is
    split into segments of at least ``SEGMENT_COLS`` columns (a multiple of ``BLOCK``,
    so every block starts on a Philox counter), at most ``MAX_SEGMENTS``; every pass
    over the row (first pass, searches, count, race) then runs one program per segment.
    More than ``SPLIT_MAX_N`` tokens per row stay unsplit (each race pass costs two
    launches)."""
    if rows >= TARGET_PROGRAMS or vocab < SPLIT_MIN_COLS or n > SPLIT_MAX_N:
        return 1, vocab
    segments = min(MAX_SEGMENTS, triton.cdiv(TARGET_PROGRAMS, rows), vocab // SEGMENT_COLS)
    if segments < 2:
        return 1, vocab
    seg_cols = triton.cdiv(triton.cdiv(vocab, segments), BLOCK) * BLOCK
    segments = triton.cdiv(vocab, seg_cols)
    return segments, seg_cols


_TRITON_DTYPES = {"fp32": False, "bf16": False, "fp16": False, "fp64": True}


def specializations() -> list[Specialization]:
    """Every form of the sampler kernels that ``sample`` launches: the whole-row kernel
    (``sample``) per logit dtype; for split rows, the segment pass of each pass per logit
    dtype and its reduction per compute dtype (the count's reduction has one form)."""
    forms = []
    seg_args = {"stride": "i32", "V": "i32", "seg_cols": "i32", "segments": "i32"}
    state = {"fstate_ptr": "*fp64", "istate_ptr": "*i64"}
    for dtype, is_f64 in _TRITON_DTYPES.items():
        compute = "fp64" if is_f64 else "fp32"
        flags = {"IS_F64": is_f64, "BLOCK": BLOCK}
        const = {"IS_F64": "constexpr", "BLOCK": "constexpr"}
        forms.append(Specialization(
            name=f"sample[{dtype}]", fn=_sample_kernel,
            signature={"x_ptr": f"*{dtype}", "stride": "i32", "V": "i32", "temp_ptr": "*fp32",
                       "top_k_ptr": "*i64", "top_p_ptr": "*fp64", "log_min_p_ptr": "*fp64",
                       "seeds_ptr": "*i64", "keys_ptr": "*i64", "n": "i32",
                       "tokens_ptr": "*i64", "lp_ptr": f"*{compute}", "status_ptr": "*i8",
                       "want_lp": "i32", **const},
            constexprs=flags))
        forms.append(Specialization(
            name=f"sample-scan-segment[{dtype}]", fn=_scan_segment_kernel,
            signature={"x_ptr": f"*{dtype}", **seg_args, "part_ptr": "*fp64", **const},
            constexprs=flags))
        for search, top_p in (("topk", False), ("topp", True)):
            forms.append(Specialization(
                name=f"sample-{search}-segment[{dtype}]", fn=_search_segment_kernel,
                signature={"x_ptr": f"*{dtype}", **seg_args, "temp_ptr": "*fp32", **state,
                           "part_ptr": "*fp64", **const, "TOP_P": "constexpr"},
                constexprs={"IS_F64": is_f64, "BLOCK": SEARCH_BLOCK, "TOP_P": top_p}))
        forms.append(Specialization(
            name=f"sample-count-segment[{dtype}]", fn=_count_segment_kernel,
            signature={"x_ptr": f"*{dtype}", **seg_args, "temp_ptr": "*fp32",
                       "log_min_p_ptr": "*fp64", **state, "part_ptr": "*fp64",
                       "want_lp": "i32", **const},
            constexprs=flags))
        forms.append(Specialization(
            name=f"sample-race-segment[{dtype}]", fn=_race_segment_kernel,
            signature={"x_ptr": f"*{dtype}", **seg_args, "temp_ptr": "*fp32",
                       "log_min_p_ptr": "*fp64", "seeds_ptr": "*i64", "keys_ptr": "*i64",
                       "status_ptr": "*i8", **state, "seg_score_ptr": "*fp64",
                       "seg_index_ptr": "*i64", "seg_z_ptr": "*fp64", **const},
            constexprs=flags))
    for compute, is_f64 in (("fp32", False), ("fp64", True)):
        forms.append(Specialization(
            name=f"sample-scan-reduce[{compute}]", fn=_scan_reduce_kernel,
            signature={"temp_ptr": "*fp32", "top_k_ptr": "*i64", "status_ptr": "*i8", **state,
                       "part_ptr": "*fp64", "segments": "i32", "IS_F64": "constexpr"},
            constexprs={"IS_F64": is_f64}))
        for search, top_p in (("topk", False), ("topp", True)):
            forms.append(Specialization(
                name=f"sample-{search}-reduce[{compute}]", fn=_search_reduce_kernel,
                signature={"temp_ptr": "*fp32", "top_k_ptr": "*i64", "top_p_ptr": "*fp64",
                           "status_ptr": "*i8", **state, "part_ptr": "*fp64",
                           "segments": "i32", "j": "i32", "steps": "i32",
                           "IS_F64": "constexpr", "TOP_P": "constexpr"},
                constexprs={"IS_F64": is_f64, "TOP_P": top_p}))
        forms.append(Specialization(
            name=f"sample-race-reduce[{compute}]", fn=_race_reduce_kernel,
            signature={"temp_ptr": "*fp32", "status_ptr": "*i8", **state,
                       "seg_score_ptr": "*fp64", "seg_index_ptr": "*i64", "seg_z_ptr": "*fp64",
                       "segments": "i32", "n": "i32", "j": "i32", "tokens_ptr": "*i64",
                       "lp_ptr": f"*{compute}", "want_lp": "i32", "IS_F64": "constexpr",
                       "SEGS": "constexpr"},
            constexprs={"IS_F64": is_f64, "SEGS": MAX_SEGMENTS}))
    forms.append(Specialization(
        name="sample-count-reduce", fn=_count_reduce_kernel,
        signature={"status_ptr": "*i8", **state, "part_ptr": "*fp64", "segments": "i32",
                   "n": "i32"},
        constexprs={}))
    return forms
