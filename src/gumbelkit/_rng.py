"""Counter-based noise: every random number in gumbelkit is drawn here.

The noise for one element is a pure function of ``(seed, row key, column)``:

* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
  SC 2011) with key ``(seed_lo, seed_hi)`` and counter
  ``(column // 4, stream, row_lo, row_hi)`` gives four 32-bit words; column
  ``c`` takes word ``c % 4``.
* A word ``w`` is one uniform ``u = (w + 1/2) / 2**32``, strictly inside (0, 1).
  Its small side is kept exactly: with ``r = w`` if ``w < 2**31`` else
  ``2**32 - 1 - w``, the number ``a = (float(r) + 1/2) * 2**-32`` equals ``u``
  (lower half) or ``1 - u`` (upper half), so ``-log u``, ``-log(1 - u)`` and
  the logistic ``log u - log(1 - u)`` never round to 0 or infinity.
* Exponential ``E = -log u`` lies in [2**-33, 33 log 2]; Gumbel ``G = -log E``
  lies in about [-3.1, 22.87]; logistic ``L`` in about [-22.2, 22.2].

Logarithms use one fixed sequence of correctly rounded operations (the
reduction and polynomial of fdlibm's ``log``), never the platform ``log``, so
the fused C kernels (``kernels/csrc/noise.h``) reproduce this file bit for bit.
The noise is float32 for every input dtype except float64, which gets float64.
The public entry is :func:`gumbelkit.gumbel_noise` (in ``functional``), which
draws through the ``noise`` op; this module is its reference body. Seeds and
row keys are decided here for every package (:func:`resolve_seed`,
:func:`row_keys_and_seeds`); docs/architecture.md has the map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MASK32 = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10


# --------------------------------------------------------------------------- seeds

# What every random function takes as ``seed=``: an int, one seed per row, or None.
SeedLike = int | torch.Tensor | None


@dataclass(frozen=True)
class Seed:
    """A resolved seed: one 64-bit ``scalar``, or an int64 tensor ``per_row``.

    With a scalar seed, row ``r`` (flat index over the batch) has row key ``r``.
    With ``per_row`` seeds (broadcast to the batch shape), every row has row key
    0 unless the caller passes explicit row keys (the token sampler passes
    positions), so a row's noise never depends on where it sits in the batch.
    """

    scalar: int | None = None
    per_row: torch.Tensor | None = None


def _draw_seed(generator: torch.Generator | None) -> int:
    halves = torch.randint(0, 2**32, (2,), generator=generator, dtype=torch.int64,
                           device=generator.device if generator is not None else "cpu")
    lo, hi = (int(h) for h in halves.tolist())
    return lo | (hi << 32)


def check_seed_source(seed: object, generator: object) -> None:
    """Raise ``ValueError`` when both ``seed=`` and ``generator=`` are given.

    A seed fixes the noise, so a generator beside it would be ignored; the
    caller meant one of the two. Every public function that accepts both calls
    this (through :func:`resolve_seed`) before any work starts.
    """
    if seed is not None and generator is not None:
        shown = (f"a tensor of shape {tuple(seed.shape)}" if isinstance(seed, torch.Tensor)
                 else repr(seed))
        raise ValueError(f"seed= and generator= are both given (seed={shown}, "
                         f"generator={generator!r}); pass only one: seed= fixes the noise, "
                         f"generator= draws a seed from its state")


def resolve_seed(seed: int | torch.Tensor | None,
                 generator: torch.Generator | None = None) -> Seed:
    """Resolve ``seed=`` / ``generator=`` / the global torch RNG.

    At most one of ``seed`` and ``generator`` may be given (``ValueError``
    otherwise); with neither, a seed is drawn from the global torch RNG.

    Args:
        seed: an ``int`` in [-2**63, 2**64) (taken modulo 2**64), or an integer
            tensor with one seed per row (int64 values are 64-bit words).
        generator: a ``torch.Generator`` from which a 64-bit seed is drawn.
    """
    check_seed_source(seed, generator)
    if seed is None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator)}")
        return Seed(scalar=_draw_seed(generator))
    if isinstance(seed, torch.Tensor):
        if seed.dtype.is_floating_point or seed.dtype.is_complex or seed.dtype == torch.bool:
            raise ValueError(f"a seed tensor must have an integer dtype, got {seed.dtype}")
        return Seed(per_row=seed.to(torch.int64))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, an integer tensor or None, got {type(seed)}")
    if not -(2**63) <= seed < 2**64:
        raise ValueError(f"seed must lie in [-2**63, 2**64), got {seed}")
    return Seed(scalar=seed & 0xFFFFFFFFFFFFFFFF)


def split64(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Low and high 32-bit halves of int64 words (two's complement), as int64."""
    return x & MASK32, (x >> 32) & MASK32


def as_int64(word: int) -> int:
    """A 64-bit word in [0, 2**64) as the int64 value with the same bits."""
    return word - 2**64 if word >= 2**63 else word


def row_keys_and_seeds(seed: Seed, batch_shape: tuple[int, ...], device: torch.device,
                       row_keys: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat per-row (key word pair, row key) as two int64 tensors of length ``rows``.

    Returns ``(seeds, keys)``: the 64-bit seed of every row and its row key.
    """
    rows = math.prod(batch_shape)
    if seed.per_row is not None:
        try:
            seeds = seed.per_row.to(device).broadcast_to(batch_shape).reshape(rows)
        except RuntimeError:
            raise ValueError(
                f"a per-row seed tensor of shape {tuple(seed.per_row.shape)} does not broadcast "
                f"to the batch shape {batch_shape}") from None
        default_keys = torch.zeros(rows, dtype=torch.int64, device=device)
    else:
        seeds = torch.full((rows,), as_int64(seed.scalar), dtype=torch.int64, device=device)
        default_keys = torch.arange(rows, dtype=torch.int64, device=device)
    if row_keys is None:
        return seeds, default_keys
    keys = row_keys.to(device=device, dtype=torch.int64).broadcast_to(batch_shape).reshape(rows)
    return seeds, keys


# --------------------------------------------------------------------------- Philox
# The PyTorch path runs one op at a time, so its speed is the number of passes
# over memory and the allocations between them: the noise is formed in tiles
# of at most _TILE_COUNTERS Philox counters (4 columns each), every op writes
# into one of a few buffers allocated once per call (a tile's buffers stay in
# cache), and a 32x32-bit product is one int64 multiply (its 64 bits are the
# exact product, wrapped to int64: the words are masked out of it). On the CPU
# every op stays under the 32768 elements below which PyTorch runs an
# elementwise op on the calling thread, so the ~200 ops per tile cost no
# thread fork and join each, which on a loaded machine cost many times the
# arithmetic: Philox's ops run on a tile's counters, the float maps on
# sub-tiles of at most _MAP_COUNTERS counters (4 elements each). Other devices
# take large tiles: fewer launches.
_TILE_COUNTERS = 32767
_MAP_COUNTERS = 8191
_DEVICE_TILE_COUNTERS = 1 << 20


def _mulhilo(x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of x * m for 32-bit x and constant m, in int64."""
    p = x * m
    return (p >> 32) & MASK32, p & MASK32


def philox4x32(counter: tuple[torch.Tensor, ...], key: tuple[torch.Tensor, torch.Tensor],
               rounds: int = PHILOX_ROUNDS) -> tuple[torch.Tensor, ...]:
    """Philox4x32 on int64 tensors holding 32-bit words (broadcasting)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        if r > 0:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        hi0, lo0 = _mulhilo(c0, PHILOX_M0)
        hi1, lo1 = _mulhilo(c2, PHILOX_M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _high_xor(p: torch.Tensor, c: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``hi(p) ^ c ^ k`` in place in the product ``p`` (>> is arithmetic: mask)."""
    return p.bitwise_right_shift_(32).bitwise_and_(MASK32).bitwise_xor_(c).bitwise_xor_(k)


def _philox_tile(key: tuple[torch.Tensor, torch.Tensor], row: tuple[torch.Tensor, torch.Tensor],
                 block0: int, n_blocks: int, stream: int,
                 buffers: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """:func:`philox4x32` of the counters ``(block0 + j, stream, row_lo, row_hi)``
    for ``[rows, n_blocks]`` tiles, with the ``[rows, 1]`` key and row words.

    The first two rounds see a counter whose words vary along the rows or the
    blocks only, so most of their products are ``[rows, 1]`` or ``[1, n_blocks]``;
    the rest runs in place in the six ``[rows, n_blocks]`` int64 ``buffers``,
    which end holding the four words.
    """
    k0, k1 = key
    shape = (k0.shape[0], n_blocks)
    full = [b[:shape[0] * n_blocks].view(shape) for b in buffers]
    blocks = torch.arange(block0, block0 + n_blocks, dtype=torch.int64, device=k0.device)
    # round 1: counter (block, stream, row_lo, row_hi)
    hi0, lo0 = _mulhilo(blocks[None, :], PHILOX_M0)
    hi1, lo1 = _mulhilo(row[0], PHILOX_M1)
    c0, c1, c3 = hi1 ^ stream ^ k0, lo1, lo0
    c2 = torch.bitwise_xor(hi0, row[1], out=full[0]).bitwise_xor_(k1)
    # round 2: c0, c1 vary along the rows only, c3 along the blocks only
    k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
    hi0, lo0 = _mulhilo(c0, PHILOX_M0)
    p1 = torch.mul(c2, PHILOX_M1, out=full[1])
    c1_next = torch.bitwise_and(p1, MASK32, out=full[2])
    c0 = _high_xor(p1, c1, k0)
    c2 = torch.bitwise_xor(hi0, c3, out=full[0]).bitwise_xor_(k1)
    c1, c3 = c1_next, lo0
    free = full[3:]
    for _ in range(2, PHILOX_ROUNDS):
        k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
        p0 = torch.mul(c0, PHILOX_M0, out=free.pop())
        p1 = torch.mul(c2, PHILOX_M1, out=free.pop())
        c1_next = torch.bitwise_and(p1, MASK32, out=c2)
        c3_next = torch.bitwise_and(p0, MASK32, out=c0)
        c0, c2 = _high_xor(p1, c1, k0), _high_xor(p0, c3, k1)
        free += [t for t in (c1, c3) if t.shape == shape]
        c1, c3 = c1_next, c3_next
    return c0, c1, c2, c3


def _tiles(rows: int, n_cols: int, counters: int) -> tuple[int, int]:
    """(rows, blocks of 4 columns) of a tile of at most ``counters`` counters:
    whole rows when they are short."""
    blocks = (n_cols + 3) // 4
    tile_blocks = max(1, min(blocks, counters))
    return max(1, min(rows, counters // tile_blocks)), tile_blocks


def _tile_counters(device: torch.device, sub_tile: bool = False) -> int:
    if device.type != "cpu":
        return _DEVICE_TILE_COUNTERS
    return min(_MAP_COUNTERS, _TILE_COUNTERS) if sub_tile else _TILE_COUNTERS


def _int_buffers(count: int, numel: int, device: torch.device) -> list[torch.Tensor]:
    return [torch.empty(numel, dtype=torch.int64, device=device) for _ in range(count)]


def random_words(seeds: torch.Tensor, keys: torch.Tensor, n_cols: int,
                 stream: int = 0) -> torch.Tensor:
    """32-bit words, int64 tensor of shape [rows, n_cols], for the given rows."""
    rows = seeds.shape[0]
    out = torch.empty(rows, n_cols, dtype=torch.int64, device=seeds.device)
    if out.numel() == 0:
        return out
    key, row = split64(seeds[:, None]), split64(keys[:, None])
    tile_rows, tile_blocks = _tiles(rows, n_cols, _tile_counters(seeds.device))
    buffers = _int_buffers(6, tile_rows * tile_blocks, seeds.device)
    for r0 in range(0, rows, tile_rows):
        r1 = min(rows, r0 + tile_rows)
        for b0 in range(0, (n_cols + 3) // 4, tile_blocks):
            n_blocks = min(tile_blocks, (n_cols + 3) // 4 - b0)
            words = _philox_tile((key[0][r0:r1], key[1][r0:r1]), (row[0][r0:r1], row[1][r0:r1]),
                                 b0, n_blocks, stream & MASK32, buffers)
            c0, c1 = 4 * b0, min(n_cols, 4 * (b0 + n_blocks))
            stacked = torch.stack(words, dim=-1).view(r1 - r0, 4 * n_blocks)
            out[r0:r1, c0:c1] = stacked[:, :c1 - c0]
    return out


# --------------------------------------------------------------------------- log

# fdlibm's log: x = 2**k * m with m in [sqrt(2)/2, sqrt(2)), f = m - 1,
# s = f / (2 + f), log(1 + f) = 2 atanh(s) = f - f**2/2 + s (f**2/2 + R(s**2)).
_LN2_HI = {torch.float32: 6.9313812256e-01, torch.float64: 6.93147180369123816490e-01}
_LN2_LO = {torch.float32: 9.0580006145e-06, torch.float64: 1.90821492927058770002e-10}
_LG = {
    torch.float32: (0.66666662693, 0.40000972152, 0.28498786688, 0.24279078841),
    torch.float64: (6.666666666666735130e-01, 3.999999999940941908e-01,
                    2.857142874366239149e-01, 2.222219843214978396e-01,
                    1.818357216161805012e-01, 1.531383769920937332e-01,
                    1.479819860511658591e-01),
}
_FLOAT_BITS = {
    torch.float32: (torch.int32, 23, 0x3F800000 - 0x3F3504F3, 0x3F3504F3, 0x7F, 0x007FFFFF),
    torch.float64: (torch.int64, 52, 0x3FF0000000000000 - 0x3FE6A09E667F3BCD,
                    0x3FE6A09E667F3BCD, 0x3FF, 0x000FFFFFFFFFFFFF),
}
# scratch tensors _det_log_into needs besides its input
_LOG_SCRATCH = 7


def _horner_into(w: torch.Tensor, coeffs: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    """``out = c0 + w (c1 + w (... + w c_n))``, innermost product first."""
    torch.mul(w, coeffs[-1], out=out)
    for c in reversed(coeffs[1:-1]):
        out.add_(c).mul_(w)
    return out.add_(coeffs[0])


def _det_log_into(x: torch.Tensor, scratch: list[torch.Tensor]) -> torch.Tensor:
    """:func:`det_log` of ``x`` in ``scratch`` (7 tensors shaped like ``x``, none
    of them ``x``, which is kept); returns the scratch tensor holding the log."""
    itype, mbits, shift, base, bias, mmask = _FLOAT_BITS[x.dtype]
    f, s, z, w, t1, t2, dk = scratch[:_LOG_SCRATCH]
    ix = torch.add(x.view(itype), shift, out=f.view(itype))
    k = torch.bitwise_right_shift(ix, mbits, out=s.view(itype)).sub_(bias)
    dk.copy_(k)
    ix.bitwise_and_(mmask).add_(base)
    f.sub_(1)
    torch.div(f, torch.add(f, 2, out=s), out=s)
    torch.mul(s, s, out=z)
    torch.mul(z, z, out=w)
    lg = _LG[x.dtype]
    _horner_into(w, lg[1::2], t1).mul_(w)
    r = _horner_into(w, lg[0::2], t2).mul_(z).add_(t1)
    hfsq = torch.mul(f, 0.5, out=z).mul_(f)
    r.add_(hfsq).mul_(s).add_(torch.mul(dk, _LN2_LO[x.dtype], out=t1))
    return r.sub_(hfsq).add_(f).add_(dk.mul_(_LN2_HI[x.dtype]))


def det_log(x: torch.Tensor) -> torch.Tensor:
    """Natural log of positive, normal, finite x (float32 or float64), < 1 ulp.

    The same operation sequence as ``gk_log_f32``/``gk_log_f64`` in
    ``kernels/csrc/noise.h``; no fused multiply-add, so results are identical.
    """
    return _det_log_into(x, [torch.empty_like(x) for _ in range(_LOG_SCRATCH)])


def det_log1m(a: torch.Tensor) -> torch.Tensor:
    """log(1 - a) for a in (0, 1/2], keeping the bits of a that 1 - a rounds away."""
    one_minus = 1 - a
    correction = (1 - one_minus) - a
    return det_log(one_minus) + correction / one_minus


# --------------------------------------------------------------------------- words -> noise
# Each map takes the small side a and the half flag of a tile (see the module
# docstring), a list of scratch tensors shaped like them, and writes into
# ``dest``, which may be narrower than the tile (its first columns).


def noise_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype noise is computed in: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _small_side_into(words: tuple[torch.Tensor, ...], a: torch.Tensor, upper: torch.Tensor,
                     spare: torch.Tensor) -> None:
    """``upper[..., j] = (u >= 1/2)`` and ``a[..., j] = float(r)`` for the small
    side ``r`` of ``words[j]`` (``w`` on the lower half, ``2**32 - 1 - w`` on
    the upper; :func:`_scale_small_side_` makes it ``a``); the words are
    overwritten."""
    for j, w in enumerate(words):
        torch.ge(w, 2**31, out=upper[..., j])
        torch.minimum(w, torch.bitwise_xor(w, MASK32, out=spare), out=w)  # MASK32 - w above
        a[..., j].copy_(w)


def _scale_small_side_(r: torch.Tensor) -> torch.Tensor:
    """``a = (float(r) + 1/2) * 2**-32`` in place."""
    return r.add_(0.5).mul_(2.0**-32)


def _one_minus_into(a: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.neg(a, out=out).add_(1)


def _log1m_correction_into(a: torch.Tensor, one_minus: torch.Tensor,
                           out: torch.Tensor) -> torch.Tensor:
    """``((1 - one_minus) - a) / one_minus``: the part of ``log(1 - a)`` that
    ``det_log(one_minus)`` misses (``1 - a`` rounds ``a``'s low bits away)."""
    return _one_minus_into(one_minus, out).sub_(a).div_(one_minus)


def _minus_exponential(a: torch.Tensor, upper: torch.Tensor,
                       scratch: list[torch.Tensor]) -> torch.Tensor:
    """``log u = -E`` in a scratch tensor: ``det_log(a)`` on the lower half and
    ``det_log1m(a)`` on the upper, with one logarithm per element."""
    v, correction = scratch[:2]
    torch.where(upper, _one_minus_into(a, v), a, out=v)
    log = _det_log_into(v, scratch[2:])
    _log1m_correction_into(a, v, correction)
    return log.add_(correction.mul_(upper))  # + 0 on the lower half: log is never 0 there


def _exponential_tile(a: torch.Tensor, upper: torch.Tensor, scratch: list[torch.Tensor],
                      dest: torch.Tensor) -> None:
    torch.neg(_minus_exponential(a, upper, scratch)[..., :dest.shape[-1]], out=dest)


def _gumbel_tile(a: torch.Tensor, upper: torch.Tensor, scratch: list[torch.Tensor],
                 dest: torch.Tensor) -> None:
    log_u = _minus_exponential(a, upper, scratch)
    e = log_u.neg_()
    log_e = _det_log_into(e, [t for t in scratch + [a] if t is not e])
    torch.neg(log_e[..., :dest.shape[-1]], out=dest)


def _logistic_tile(a: torch.Tensor, upper: torch.Tensor, scratch: list[torch.Tensor],
                   dest: torch.Tensor) -> None:
    log_a = _det_log_into(a, scratch)
    rest = [t for t in scratch if t is not log_a]
    v, correction = rest[:2]
    log_v = _det_log_into(_one_minus_into(a, v), rest[2:])
    log_v.add_(_log1m_correction_into(a, v, correction))
    width = dest.shape[-1]
    lower_value = log_a.sub_(log_v)[..., :width]
    torch.where(upper[..., :width], torch.neg(lower_value, out=log_v[..., :width]), lower_value,
                out=dest)


_TILE_MAPS = {
    "exponential": _exponential_tile,
    "gumbel": _gumbel_tile,
    "logistic": _logistic_tile,
}
# scratch tensors each map needs besides a and the half flag
_MAP_SCRATCH = 2 + _LOG_SCRATCH + 1


def _from_words(kind: str, words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    flat = words.reshape(1, -1).to(torch.int64, copy=True)
    a = torch.empty(flat.shape + (1,), dtype=dtype, device=words.device)
    upper = torch.empty(a.shape, dtype=torch.bool, device=words.device)
    _small_side_into((flat,), a, upper, torch.empty_like(flat))
    _scale_small_side_(a)
    out = torch.empty(flat.shape, dtype=dtype, device=words.device)
    scratch = [torch.empty_like(out) for _ in range(_MAP_SCRATCH)]
    _TILE_MAPS[kind](a.view(flat.shape), upper.view(flat.shape), scratch, out)
    return out.view(words.shape)


def exponential_from_words(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """E = -log u, in [2**-33, 33 log 2]."""
    return _from_words("exponential", words, dtype)


def gumbel_from_words(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """G = -log(-log u), in about [-3.1, 22.87]."""
    return _from_words("gumbel", words, dtype)


def logistic_from_words(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """L = log u - log(1 - u), antisymmetric in the word, in about [-22.2, 22.2]."""
    return _from_words("logistic", words, dtype)


_TRANSFORMS = {
    "exponential": exponential_from_words,
    "gumbel": gumbel_from_words,
    "logistic": logistic_from_words,
}


def noise(kind: str, batch_shape: tuple[int, ...], n_cols: int, seed: Seed,
          dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
          row_keys: torch.Tensor | None = None, stream: int = 0) -> torch.Tensor:
    """Noise of shape ``batch_shape + (n_cols,)``: the pure-PyTorch reference path.

    ``kind`` is "exponential", "gumbel" or "logistic"; ``dtype`` is float32 or
    float64 (the noise dtype, see :func:`noise_dtype`).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    seeds, keys = row_keys_and_seeds(seed, batch_shape, device, row_keys)
    rows = seeds.shape[0]
    out = torch.empty(rows, n_cols, dtype=dtype, device=device)
    if out.numel() > 0:
        _fill(out, kind, seeds, keys, stream)
    return out.reshape(*batch_shape, n_cols)


def _fill(out: torch.Tensor, kind: str, seeds: torch.Tensor, keys: torch.Tensor,
          stream: int) -> None:
    """Noise of ``kind`` into ``out`` ([rows, cols]): Philox tile by tile, the
    float maps sub-tile by sub-tile."""
    rows, n_cols = out.shape
    n_blocks_all = (n_cols + 3) // 4
    tile_rows, tile_blocks = _tiles(rows, n_cols, _tile_counters(out.device))
    sub_rows, sub_blocks = _tiles(tile_rows, 4 * tile_blocks,
                                  _tile_counters(out.device, sub_tile=True))
    ints = _int_buffers(6, tile_rows * tile_blocks, out.device)
    small = torch.empty(4 * tile_rows * tile_blocks, dtype=out.dtype, device=out.device)
    flags = torch.empty(small.shape, dtype=torch.bool, device=out.device)
    floats = [torch.empty(4 * sub_rows * sub_blocks, dtype=out.dtype, device=out.device)
              for _ in range(_MAP_SCRATCH)]
    key, row = split64(seeds[:, None]), split64(keys[:, None])
    for r0 in range(0, rows, tile_rows):
        r1 = min(rows, r0 + tile_rows)
        for b0 in range(0, n_blocks_all, tile_blocks):
            n_blocks = min(tile_blocks, n_blocks_all - b0)
            words = _philox_tile((key[0][r0:r1], key[1][r0:r1]), (row[0][r0:r1], row[1][r0:r1]),
                                 b0, n_blocks, stream & MASK32, ints)
            taken = {w.data_ptr() for w in words}
            spare = next(b for b in ints if b.data_ptr() not in taken)
            shape = (r1 - r0, n_blocks, 4)
            a = small[:math.prod(shape)].view(shape)
            upper = flags[:math.prod(shape)].view(shape)
            _small_side_into(words, a, upper, spare[:math.prod(shape[:2])].view(shape[:2]))
            a, upper = a.view(shape[0], -1), upper.view(shape[0], -1)
            for s0 in range(0, shape[0], sub_rows):
                s1 = min(shape[0], s0 + sub_rows)
                for t0 in range(0, n_blocks, sub_blocks):
                    t1 = min(n_blocks, t0 + sub_blocks)
                    sub_shape = (s1 - s0, 4 * (t1 - t0))
                    scratch = [f[:math.prod(sub_shape)].view(sub_shape) for f in floats]
                    columns = slice(4 * (b0 + t0), min(n_cols, 4 * (b0 + t1)))
                    _TILE_MAPS[kind](_scale_small_side_(a[s0:s1, 4 * t0:4 * t1]),
                                     upper[s0:s1, 4 * t0:4 * t1], scratch,
                                     out[r0 + s0:r0 + s1, columns])
