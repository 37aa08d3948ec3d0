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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["gumbel_noise"]

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


def _mulhilo(x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of x * m for 32-bit x and constant m, in int64."""
    p_lo = x * (m & 0xFFFF)
    p_hi = x * (m >> 16)
    s = p_lo + ((p_hi & 0xFFFF) << 16)
    return (s >> 32) + (p_hi >> 16), s & MASK32


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


def random_words(seeds: torch.Tensor, keys: torch.Tensor, n_cols: int,
                 stream: int = 0) -> torch.Tensor:
    """32-bit words, int64 tensor of shape [rows, n_cols], for the given rows."""
    device = seeds.device
    k0, k1 = split64(seeds[:, None])
    r0, r1 = split64(keys[:, None])
    blocks = torch.arange((n_cols + 3) // 4, dtype=torch.int64, device=device)[None, :]
    stream_word = torch.tensor(stream & MASK32, dtype=torch.int64, device=device)
    words = philox4x32((blocks, stream_word, r0, r1), (k0, k1))
    rows = seeds.shape[0]
    stacked = torch.stack(torch.broadcast_tensors(*words), dim=-1)
    return stacked.reshape(rows, 4 * blocks.shape[1])[:, :n_cols]


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


def det_log(x: torch.Tensor) -> torch.Tensor:
    """Natural log of positive, normal, finite x (float32 or float64), < 1 ulp.

    The same operation sequence as ``gk_log_f32``/``gk_log_f64`` in
    ``kernels/csrc/noise.h``; no fused multiply-add, so results are identical.
    """
    itype, mbits, shift, base, bias, mmask = _FLOAT_BITS[x.dtype]
    ix = x.view(itype) + shift
    k = (ix >> mbits) - bias
    m = ((ix & mmask) + base).view(x.dtype)
    f = m - 1
    s = f / (f + 2)
    z = s * s
    w = z * z
    lg = _LG[x.dtype]
    if x.dtype == torch.float32:
        t1 = w * (lg[1] + w * lg[3])
        t2 = z * (lg[0] + w * lg[2])
    else:
        t1 = w * (lg[1] + w * (lg[3] + w * lg[5]))
        t2 = z * (lg[0] + w * (lg[2] + w * (lg[4] + w * lg[6])))
    r = t2 + t1
    hfsq = 0.5 * f * f
    dk = k.to(x.dtype)
    return s * (hfsq + r) + dk * _LN2_LO[x.dtype] - hfsq + f + dk * _LN2_HI[x.dtype]


def det_log1m(a: torch.Tensor) -> torch.Tensor:
    """log(1 - a) for a in (0, 1/2], keeping the bits of a that 1 - a rounds away."""
    one_minus = 1 - a
    correction = (1 - one_minus) - a
    return det_log(one_minus) + correction / one_minus


# --------------------------------------------------------------------------- words -> noise


def noise_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype noise is computed in: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _small_side(words: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(upper, a): upper = (u >= 1/2); a = u on the lower half and 1 - u on the upper."""
    upper = words >= 2**31
    r = torch.where(upper, MASK32 - words, words)
    a = (r.to(dtype) + 0.5) * 2.0**-32
    return upper, a


def exponential_from_words(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """E = -log u, in [2**-33, 33 log 2]."""
    upper, a = _small_side(words, dtype)
    return -torch.where(upper, det_log1m(a), det_log(a))


def gumbel_from_words(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """G = -log(-log u), in about [-3.1, 22.87]."""
    return -det_log(exponential_from_words(words, dtype))


def logistic_from_words(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """L = log u - log(1 - u), antisymmetric in the word, in about [-22.2, 22.2]."""
    upper, a = _small_side(words, dtype)
    lower_value = det_log(a) - det_log1m(a)
    return torch.where(upper, -lower_value, lower_value)


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
    words = random_words(seeds, keys, n_cols, stream)
    return _TRANSFORMS[kind](words, dtype).reshape(*batch_shape, n_cols)


def gumbel_noise(shape: tuple[int, ...] | torch.Size | list[int], *,
                 seed: int | torch.Tensor | None = None,
                 generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Standard Gumbel noise ``G = -log(-log U)``, counter-based and reproducible.

    The last axis is the column axis; the leading axes are rows. Element
    ``(row, col)`` is a pure function of ``(seed, row key, col)`` (see
    ``DESIGN.md``, the noise contract): with an ``int`` seed the row key is
    the flat row index; a per-row seed tensor must broadcast to ``shape[:-1]``
    and then a row's noise depends on its own seed only. Values are finite,
    in about [-3.1, 22.87].

    Args:
        shape: output shape, at least one axis.
        seed: ``int`` in [-2**63, 2**64), or integer tensor of per-row seeds.
        generator: a seed is drawn from it; with neither ``seed`` nor
            ``generator``, from the global torch RNG. Giving both is a
            ``ValueError``.
        dtype: float32 or float64 (float16/bfloat16 are computed in float32
            and rounded).
        device: output device.

    Example:
        >>> g = gumbelkit.gumbel_noise((2, 5), seed=0)
        >>> torch.equal(g, gumbelkit.gumbel_noise((2, 5), seed=0))
        True
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0 or any(s < 0 for s in shape):
        raise ValueError(f"shape must have at least one axis and no negative sizes, got {shape}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    resolved = resolve_seed(seed, generator)
    out = noise("gumbel", shape[:-1], shape[-1], resolved, noise_dtype(dtype), device)
    return out.to(dtype)
