"""Permutations: the Sinkhorn operator, the Gumbel-Sinkhorn relaxation and exact matchings.

Mena, Belanger, Linderman & Snoek, "Learning Latent Permutations with
Gumbel-Sinkhorn Networks", ICLR 2018. A score matrix ``X`` (``[..., n, n]``,
row ``i`` the item, column ``j`` the position) defines the matching
``M(X) = argmax_P <P, X>`` over permutation matrices ``P`` (the Hungarian
algorithm). The Sinkhorn operator ``S(X / tau)`` is its relaxation: it
alternately normalises the rows and the columns of ``exp(X / tau)`` and tends
to ``M(X)`` as ``tau -> 0``. Gumbel-Sinkhorn perturbs every entry with its own
standard Gumbel variable, ``S((X + G) / tau)``; its hard form is the matching
of the perturbed scores ``M(X + G)``, a sample of the Gumbel-matching
distribution, with the relaxed sample's gradient (straight-through).

Noise keying (the noise contract, docs/concepts.md): the noise of
``gumbel_sinkhorn(log_alpha, n_samples=S, seed=s)`` with an ``int`` seed is
``gumbel_noise((S, *batch, n, n), seed=s)`` (without ``n_samples``, the
``S = 1`` draw without its leading axis): matrix rows are keyed by their flat
index, so sample 0 of ``n_samples=S`` is the draw without ``n_samples``, and
every matrix of the batch gets its own noise. With a seed tensor (one seed
per matrix, broadcasting to the batch shape ``log_alpha.shape[:-2]``), row
``i`` of sample ``k`` of a matrix is keyed by ``k * n + i`` under that
matrix's own seed: a matrix's samples depend on its own scores and seed only,
never on where it sits in the batch.
"""

from __future__ import annotations

import numpy as np
import torch

from . import _rng
from ._autograd import divide_by_temperature, forward_as
from ._rng import SeedLike
from ._validate import (
    Temperature,
    check_broadcasts_to,
    check_floating,
    check_int_range,
    check_temperature,
    check_temperature_range,
    dtype_name,
    fail_if,
    first_index,
)
from .kernels import ops

__all__ = ["sinkhorn", "gumbel_sinkhorn", "matching"]

_SCIPY_MISSING = ("{what} needs scipy (scipy.optimize.linear_sum_assignment, the Hungarian "
                  "algorithm); install it with pip install scipy, or pip install "
                  "'gumbelkit[permutations]'")


def _check_scores(log_alpha: torch.Tensor, name: str = "log_alpha") -> int:
    """A floating ``[..., n, n]`` tensor with n >= 1 and every entry finite; returns n."""
    check_floating(log_alpha, name)
    if log_alpha.dim() < 2 or log_alpha.shape[-1] != log_alpha.shape[-2]:
        raise ValueError(f"{name} must be square in its last two axes ([..., n, n]), got shape "
                         f"{tuple(log_alpha.shape)}")
    n = log_alpha.shape[-1]
    if n == 0:
        raise ValueError(f"{name} must have n >= 1 (shape [..., n, n]), got shape "
                         f"{tuple(log_alpha.shape)}")
    detached = log_alpha.detach()
    bad = ~torch.isfinite(detached)
    fail_if(bad, lambda: f"{name} must be finite everywhere, got "
            f"{float(detached[first_index(bad)])} at index {first_index(bad)}",
            f"{name} must be finite")
    return n


def _check_tau(tau: Temperature, log_alpha: torch.Tensor, dtype: torch.dtype) -> Temperature:
    """A temperature > 0 and finite in ``dtype``: a float, or a tensor with one value per
    matrix (size 1 in both matrix axes, broadcasting against ``log_alpha``)."""
    tau = check_temperature(tau, log_alpha)
    if isinstance(tau, torch.Tensor) and tau.dim() >= 1 and (
            tau.shape[-1] != 1 or (tau.dim() >= 2 and tau.shape[-2] != 1)):
        raise ValueError(f"tau must have size 1 in both matrix axes (one temperature per "
                         f"matrix, e.g. shape [..., 1, 1]), got shape {tuple(tau.shape)}")
    check_temperature_range(tau, dtype)
    return tau


def _check_overflow(scaled: torch.Tensor, tau: Temperature) -> None:
    """``scores / tau`` must be finite: entries beyond the compute dtype's range
    have no Sinkhorn normalisation (``inf - inf`` in the first row step)."""
    bad = ~torch.isfinite(scaled.detach())
    shown = f"{float(tau):g}" if not isinstance(tau, torch.Tensor) else "its tau"
    fail_if(bad, lambda: f"log_alpha / tau overflows {dtype_name(scaled.dtype)} "
            f"at index {first_index(bad)} (tau={shown}): |log_alpha / tau| must stay below "
            f"{torch.finfo(scaled.dtype).max:.6g}; rescale the scores or raise tau",
            "log_alpha / tau overflows")


def _sinkhorn(z: torch.Tensor, n_iters: int) -> torch.Tensor:
    """``n_iters`` rounds of row then column normalisation of ``exp(z)``.

    The rounds run in log space: each subtracts the rows' ``logsumexp`` and then
    the columns'. After a row step every row's largest entry lies in
    ``[-log n, 0]``, after a column step every column's, so no row or column
    ever becomes all ``-inf`` and no NaN can appear for finite ``z``. The last
    column step is a softmax over each column, which divides the column's own
    exponentials by their sum: the columns sum to 1 to rounding even where a
    column's log-weights lie far below 0 (at a small tau), whose subtraction
    in log space would leave an error proportional to their size.
    """
    for i in range(n_iters):
        z = z - torch.logsumexp(z, dim=-1, keepdim=True)
        if i < n_iters - 1:
            z = z - torch.logsumexp(z, dim=-2, keepdim=True)
    return torch.softmax(z, dim=-2)


def sinkhorn(log_alpha: torch.Tensor, tau: Temperature = 1.0, n_iters: int = 20) -> torch.Tensor:
    """The Sinkhorn operator ``S(log_alpha / tau)``: a doubly stochastic matrix.

    ``S(X) = T_c(T_r(... T_c(T_r(exp X))))`` with ``n_iters`` rounds of row
    normalisation ``T_r`` then column normalisation ``T_c`` (Sinkhorn 1964;
    Adams & Zemel 2011; Mena et al. 2018, eq. 1), computed in log space
    (``logsumexp``), so it is finite for every finite input down to small
    temperatures. The last step normalises the columns, so columns sum to 1 to
    rounding; the rows' error shrinks geometrically with ``n_iters``, much
    more slowly at a small ``tau`` (docs/permutations.md has measured
    tolerances). Converged, it maximises ``<P, log_alpha> + tau H(P)`` over
    doubly stochastic ``P``, so as ``tau -> 0`` it tends to :func:`matching`
    of ``log_alpha``, each entry within ``tau n log n / gap`` of it (``gap``:
    the best permutation's score minus the second best's). Differentiable in
    ``log_alpha`` and a tensor ``tau``.

    Args:
        log_alpha: floating tensor ``[..., n, n]``, every entry finite.
        tau: temperature > 0 and finite (also in the compute dtype: float32
            unless the input is float64): a float, or a tensor with one value
            per matrix (size 1 in the last two axes). ``|log_alpha / tau|``
            must stay finite (else ``ValueError``).
        n_iters: rounds of row and column normalisation, >= 1.

    Returns:
        The matrix, of the input's shape and dtype (computed in float32, or
        float64 for float64 input).

    Example:
        >>> p = gumbelkit.sinkhorn(torch.randn(3, 3), tau=0.5)
        >>> torch.allclose(p.sum(-2), torch.ones(3))
        True
    """
    _check_scores(log_alpha)
    check_int_range(n_iters, "n_iters", 1)
    dtype = _rng.noise_dtype(log_alpha.dtype)
    tau = _check_tau(tau, log_alpha, dtype)
    scaled = _divide(log_alpha.to(dtype), tau, dtype)
    return _sinkhorn(scaled, n_iters).to(log_alpha.dtype)


def _divide(z: torch.Tensor, tau: Temperature, dtype: torch.dtype) -> torch.Tensor:
    scaled = divide_by_temperature(z, tau.to(dtype) if isinstance(tau, torch.Tensor) else tau)
    _check_overflow(scaled, tau)
    return scaled


def _linear_sum_assignment(what: str):
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        raise ImportError(_SCIPY_MISSING.format(what=what)) from None
    return linear_sum_assignment


def _matching_matrix(scores: torch.Tensor, what: str) -> torch.Tensor:
    """The permutation matrix of ``argmax_P <P, scores>`` for every matrix of ``scores``
    (shape and dtype of ``scores``): Hungarian algorithm in float64 on the host."""
    solve = _linear_sum_assignment(what)
    n = scores.shape[-1]
    flat = scores.detach().reshape(-1, n, n).to("cpu", torch.float64).numpy()
    columns = np.empty((flat.shape[0], n), dtype=np.int64)
    for b, matrix in enumerate(flat):
        rows, cols = solve(matrix, maximize=True)
        columns[b, rows] = cols
    index = torch.from_numpy(columns).to(scores.device).reshape(scores.shape[:-1])
    hard = torch.zeros(scores.shape, dtype=scores.dtype, device=scores.device)
    return hard.scatter_(-1, index.unsqueeze(-1), 1.0)


def matching(log_alpha: torch.Tensor) -> torch.Tensor:
    """The exact permutation matrix ``M(X) = argmax_P sum_ij P_ij X_ij`` of every matrix.

    Maximum-weight perfect matching by the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``, computed in float64; Kuhn 1955).
    Row ``i`` has its 1 in the column (position) it is matched to. It is the
    limit of :func:`sinkhorn` as ``tau -> 0`` (Mena et al. 2018, Theorem 1)
    and has no gradient. Needs scipy (``pip install scipy``); without it, an
    ``ImportError`` saying so.

    Args:
        log_alpha: floating tensor ``[..., n, n]``, every entry finite.

    Returns:
        0/1 tensor of the input's shape and dtype.

    Example:
        >>> gumbelkit.matching(torch.tensor([[0.0, 2.0], [1.0, 0.0]]))
        tensor([[0., 1.],
                [1., 0.]])
    """
    _check_scores(log_alpha)
    return _matching_matrix(log_alpha, "matching")


def _matrix_noise(log_alpha: torch.Tensor, n_samples: int | None, seed: SeedLike,
                  generator: torch.Generator | None, dtype: torch.dtype) -> torch.Tensor:
    """Gumbel noise ``[S, *batch, n, n]`` keyed as the module docstring says."""
    batch, n = tuple(log_alpha.shape[:-2]), log_alpha.shape[-1]
    samples = 1 if n_samples is None else n_samples
    resolved = _rng.resolve_seed(seed, generator)
    keys = None
    if resolved.per_row is not None:
        check_broadcasts_to(resolved.per_row.shape, batch, "seed",
                            " (one seed per matrix, the shape of log_alpha without its last "
                            "two axes)")
        # seed [*batch] -> [*batch, 1] broadcasts over (sample, *batch, row)
        resolved = _rng.Seed(per_row=resolved.per_row.unsqueeze(-1))
        keys = (torch.arange(samples, dtype=torch.int64).reshape(samples, *[1] * len(batch), 1)
                * n + torch.arange(n, dtype=torch.int64))
    noise = ops.draw_noise("gumbel", (samples, *batch, n), n, resolved, dtype,
                           log_alpha.device, row_keys=keys)
    return noise if n_samples is not None else noise[0]


def gumbel_sinkhorn(log_alpha: torch.Tensor, tau: Temperature = 1.0, n_iters: int = 20,
                    hard: bool = False, *, n_samples: int | None = None,
                    seed: SeedLike = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel-Sinkhorn sample: ``S((log_alpha + G) / tau)``, ``G_ij ~ Gumbel(0, 1)`` i.i.d.

    Mena, Belanger, Linderman & Snoek, ICLR 2018: the relaxation of a sample of
    the Gumbel-matching distribution ``M(log_alpha + G)`` (``M`` the
    maximum-weight matching, :func:`matching`) to a doubly stochastic matrix,
    as Gumbel-Softmax relaxes Gumbel-max. :func:`sinkhorn` describes the
    operator and its tolerance. ``hard=True`` returns the exact permutation
    matrix ``M(log_alpha + G)`` of the same noise (Hungarian algorithm on the
    host, which needs scipy) with the relaxed sample's gradient
    (straight-through). Noise keys: see the module docstring (an ``int`` seed
    gives the noise of ``gumbel_noise((n_samples, *batch, n, n), seed)``).

    Args:
        log_alpha: floating tensor ``[..., n, n]`` of scores (row: item,
            column: position), every entry finite.
        tau: temperature > 0 and finite: a float, or a tensor with one value
            per matrix (size 1 in the last two axes).
        n_iters: Sinkhorn rounds, >= 1.
        hard: exact permutation matrix forward, relaxed gradient backward.
        n_samples: draws in one call, >= 1: the result gains a leading axis of
            this size (``None``: one draw, no extra axis).
        seed: an ``int``, or an integer tensor with one seed per matrix
            (broadcasting to ``log_alpha.shape[:-2]``).
        generator: a seed is drawn from it; with neither, from the global
            torch RNG. Giving both is a ``ValueError``.

    Returns:
        ``[n_samples, ..., n, n]`` (or ``[..., n, n]``) in the input's dtype.

    Example:
        >>> p = gumbelkit.gumbel_sinkhorn(torch.zeros(4, 4), tau=0.1, hard=True, seed=0)
        >>> p.sum(-1).tolist(), p.sum(-2).tolist()
        ([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    """
    _check_scores(log_alpha)
    check_int_range(n_iters, "n_iters", 1)
    if n_samples is not None:
        check_int_range(n_samples, "n_samples", 1)
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be a bool, got {hard!r} of type {type(hard).__name__}")
    dtype = _rng.noise_dtype(log_alpha.dtype)
    tau = _check_tau(tau, log_alpha, dtype)
    if hard:
        _linear_sum_assignment("gumbel_sinkhorn(hard=True)")  # before any work
    perturbed = log_alpha.to(dtype) + _matrix_noise(log_alpha, n_samples, seed, generator, dtype)
    soft = _sinkhorn(_divide(perturbed, tau, dtype), n_iters)
    if not hard:
        return soft.to(log_alpha.dtype)
    # the matching of the scores before dividing: z / tau can round two sums to one value
    permutation = _matching_matrix(perturbed, "gumbel_sinkhorn(hard=True)")
    return forward_as(permutation, soft).to(log_alpha.dtype)

