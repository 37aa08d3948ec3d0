"""Pieces shared by the distributions: parameters, temperatures, noise, the sample cache
and the support constraints that accept the distributions' own rounded samples."""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch.distributions import constraints

from .. import _rng
from .._rng import SeedLike as SeedLike  # the distributions import it from here
from .._validate import (
    Temperature,
    check_broadcasts_to,
    check_finite,
    check_logits,
    check_probs,
    check_temperature,
    check_unit_interval,
    dtype_name,
    fail_if,
    first_index,
)
from ..kernels import ops as _ops

ShapeLike = tuple[int, ...] | torch.Size
Parameter = torch.Tensor | float

NOISE_BOUND = 23.0
"""A bound on ``|noise|`` for every random word: Gumbel noise lies in about [-3.1, 22.87]
and logistic noise in about [-22.2, 22.2] (see :mod:`gumbelkit._rng`)."""


def as_tensor(value: Parameter | None) -> torch.Tensor | None:
    """A Python number as a tensor of the default dtype (as ``broadcast_all`` makes it in
    ``torch.distributions``); tensors and None pass unchanged."""
    if isinstance(value, Real) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.get_default_dtype())
    return value


def categorical_logits(probs: torch.Tensor | None, logits: torch.Tensor | None) -> torch.Tensor:
    """Normalised logits (``logsumexp = 0`` along the last axis) from exactly one of the two.

    ``-inf`` logits and zero probabilities are masked categories.
    """
    if (probs is None) == (logits is None):
        raise ValueError("give exactly one of probs or logits")
    if logits is not None:
        check_logits(logits, -1)
        return logits - logits.logsumexp(-1, keepdim=True)
    check_probs(probs, -1)
    return torch.log(probs / probs.sum(-1, keepdim=True))


def binary_logits(probs: Parameter | None, logits: Parameter | None) -> torch.Tensor:
    """Bernoulli logits from exactly one of finite ``logits`` or ``probs`` in (0, 1).

    Either may be a Python number (a tensor of the default dtype, batch shape ``()``).
    """
    probs, logits = as_tensor(probs), as_tensor(logits)
    if (probs is None) == (logits is None):
        raise ValueError("give exactly one of probs or logits")
    if logits is not None:
        check_finite(logits, "logits")
        return logits
    check_unit_interval(probs, "probs")
    return torch.log(probs) - torch.log1p(-probs)


def batch_temperature(temperature: Temperature, batch_shape: torch.Size,
                      like: torch.Tensor) -> torch.Tensor:
    """A temperature > 0 as a tensor expanded to ``batch_shape`` (noise dtype of ``like``).

    A tensor temperature gives one temperature per batch element: it must
    broadcast to the batch shape without enlarging it. Every temperature must
    be representable in the noise dtype (float32, or float64 for float64
    logits): one that rounds to 0 or infinity there is a ``ValueError``.
    """
    check_temperature(temperature, name="temperature")
    dtype = _rng.noise_dtype(like.dtype)
    if isinstance(temperature, torch.Tensor):
        check_broadcasts_to(temperature.shape, tuple(batch_shape), "temperature",
                            " (a per-row temperature has the batch shape, without a trailing "
                            "size-1 category axis)")
        converted = temperature.to(dtype=dtype, device=like.device)
    else:
        converted = torch.tensor(temperature, dtype=dtype, device=like.device)
    lost = (converted.detach() == 0) | torch.isinf(converted.detach())
    if bool(lost.any()):
        given = temperature.detach()[tuple(lost.nonzero()[0].tolist())] \
            if isinstance(temperature, torch.Tensor) and temperature.dim() > 0 else temperature
        finfo = torch.finfo(dtype)
        raise ValueError(f"logits / temperature overflow: temperature {float(given):.6g} does not "
                         f"fit {dtype_name(dtype)}, the dtype the distribution computes in "
                         f"(allowed: {finfo.smallest_normal * finfo.eps:.6g} <= temperature <= "
                         f"{finfo.max:.6g})")
    return converted.expand(batch_shape)


def check_scaled_range(logits: torch.Tensor, temperature: torch.Tensor, categorical: bool,
                       what: str = "sample") -> None:
    """Raise ``ValueError`` unless ``(logits + noise) / temperature`` fits the temperature's
    (noise) dtype for every noise value, i.e. ``(|logits| + NOISE_BOUND) / tau <= max``.

    Masked (``-inf``) logits are ignored. ``categorical``: ``logits`` has a category
    axis last and ``temperature`` one value per row. Where the scaled logits
    overflow, the relaxed sample (or its log-/logit-sample, which ``log_prob``
    scores) is not representable, so the distribution raises instead of
    returning ``inf``/NaN.
    """
    dtype = temperature.dtype
    largest = torch.finfo(dtype).max
    magnitude = logits.detach().to(dtype).abs().nan_to_num(posinf=0.0)
    tau = temperature.detach()
    if magnitude.numel() == 0 or (magnitude.max() + NOISE_BOUND) / tau.min() <= largest:
        return  # the largest logit over the smallest temperature fits: every element does
    if categorical:
        tau = tau.unsqueeze(-1)
    magnitude, tau = torch.broadcast_tensors(magnitude, tau)
    bad = ~((magnitude + NOISE_BOUND) / tau <= largest)

    def message() -> str:
        index = first_index(bad)
        return (f"logits / temperature overflow: |logits| = {float(magnitude[index]):.6g} with "
                f"temperature {float(tau[index]):.6g} (at index {index}) overflows "
                f"{dtype_name(dtype)} in the {what}; allowed: (|logits| + {NOISE_BOUND:g}) / "
                f"temperature <= {largest:.6g}"
                + (" (logits normalised to logsumexp 0 per row)" if categorical else ""))

    fail_if(bad, message, "logits / temperature overflow")


def noise(kind: str, shape: torch.Size, seed: SeedLike, generator: torch.Generator | None,
          like: torch.Tensor, sample_ndim: int = 0) -> torch.Tensor:
    """Noise of ``shape`` (noise dtype): rows are the leading axes, columns the last axis,
    exactly as the functional ops lay it out for logits of that shape (so a distribution
    and its functional op agree for the same int seed), drawn by the same op
    (``torch.ops.gumbelkit.noise``: the C fill on CPU).

    ``sample_ndim`` leading axes are ``sample_shape``. With an int seed rows are keyed
    by their flat index; with one seed per batch row, a row is keyed by its flat sample
    index, so draws along ``sample_shape`` are independent while each batch row's noise
    still depends only on its own seed.
    """
    grid = tuple(shape) if len(shape) > 0 else (1,)
    resolved = _rng.resolve_seed(seed, generator)
    row_keys = None
    if resolved.per_row is not None and sample_ndim > 0:
        sample_shape = grid[:sample_ndim]
        rows_ndim = len(grid) - 1
        row_keys = torch.arange(math.prod(sample_shape), device=like.device).reshape(
            sample_shape + (1,) * (rows_ndim - sample_ndim))
    out = _ops.draw_noise(kind, grid[:-1], grid[-1], resolved, _rng.noise_dtype(like.dtype),
                          like.device, row_keys)
    return out.reshape(shape)


def describe(name: str, **params: float | torch.Tensor) -> str:
    """``Name(param=value, ...)``: a scalar value in full, a larger tensor by its shape."""
    parts = []
    for key, value in params.items():
        if isinstance(value, torch.Tensor):
            shown = f"{value.item():.6g}" if value.numel() == 1 else f"size {list(value.shape)}"
            if value.numel() > 1 and bool((value == value.reshape(-1)[0]).all()):
                shown = f"{value.reshape(-1)[0].item():.6g}"
        else:
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    return f"{name}({', '.join(parts)})"


class SampleCache:
    """The last sample a distribution returned, with a companion computed with it.

    Relaxed samples round: a Concrete sample at temperature 0.01 has entries that
    underflow to exactly 0, a Binary Concrete sample entries that round to exactly
    0 or 1, and ``log(y)`` can no longer recover the density. ``rsample`` keeps the
    unrounded log- or logit-sample here and ``log_prob`` uses its value when it is
    given that very sample again (like ``TransformedDistribution`` with
    ``cache_size=1``). A value matches when it views the same memory with the same
    shape, strides, dtype and version counter: the returned tensor, ``.detach()``
    or an identity view of it, but not a copy, and not after an in-place change.
    How ``log_prob`` uses the companion without changing the gradient is
    described in :class:`gumbelkit.distributions._base.RoundedRelaxation`.
    """

    def __init__(self) -> None:
        self._sample: torch.Tensor | None = None
        self._key: tuple | None = None
        self._companion: torch.Tensor | None = None

    @staticmethod
    def _key_of(t: torch.Tensor) -> tuple:
        return (t.data_ptr(), tuple(t.shape), t.stride(), t.storage_offset(), t.dtype,
                t.device, t._version)

    def remember(self, sample: torch.Tensor, companion: torch.Tensor) -> None:
        self._sample, self._key, self._companion = sample, self._key_of(sample), companion

    def lookup(self, value: torch.Tensor) -> object | None:
        if self._sample is None or value.numel() == 0 or self._key_of(value) != self._key:
            return None
        return self._companion

    def holds(self, value: torch.Tensor) -> bool:
        """Whether ``value`` is the very tensor object remembered, unchanged."""
        return value is self._sample and self._key_of(value) == self._key


def _tolerance(value: torch.Tensor) -> float:
    """Rounding allowance for a sum (or logsumexp) of ``K`` entries in ``value``'s dtype."""
    return 8.0 * (value.shape[-1] + 1) * torch.finfo(value.dtype).eps


class _Simplex(constraints.Constraint):
    """Vectors with entries >= 0 summing to 1 within rounding (8 (K+1) eps of the dtype)."""

    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        total = value.sum(-1)
        return (value >= 0).all(-1) & ((total - 1).abs() <= _tolerance(value))


class _LogSimplex(constraints.Constraint):
    """Log-probability vectors: entries in [-inf, 0], logsumexp 0 within rounding."""

    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        tol = _tolerance(value)
        return (value <= tol).all(-1) & (value.logsumexp(-1).abs() <= tol)


class _OrderedSubset(constraints.Constraint):
    """``k`` distinct category indices in [0, K), in order."""

    is_discrete = True
    event_dim = 1

    def __init__(self, n_categories: int) -> None:
        self.n_categories = n_categories
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        in_range = ((value >= 0) & (value < self.n_categories) & (value == value.floor())).all(-1)
        ordered = value.sort(-1).values
        distinct = (ordered[..., 1:] != ordered[..., :-1]).all(-1)
        return in_range & distinct


simplex = _Simplex()
log_simplex = _LogSimplex()
ordered_subset = _OrderedSubset
