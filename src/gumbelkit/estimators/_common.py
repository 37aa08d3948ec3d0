"""Pieces shared by the estimators: seeds, noise along the category axis,
one-hot samples, forward-as-hard/backward-as-surrogate, conditional Gumbels.

Every random draw goes through :mod:`gumbelkit._rng`; an estimator resolves
its seed once and takes each kind of noise from its own Philox stream, so the
category drawn, the conditional noise of Gumbel-Rao/REBAR/RELAX and the
antithetic uniforms of ARM never share random words.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import _rng
from .._autograd import divide_by_temperature
from .._autograd import forward_as as forward_as  # the estimators import it from here
from .._rng import SeedLike as SeedLike  # the estimators import it from here
from .._validate import Temperature, check_temperature_range
from ..functional import _check_overflow, gumbel_max
from ..kernels import ops

# Philox streams (the counter word 1): one per kind of noise.
STREAM_SAMPLE = 0        # the Gumbel noise of the sample itself (same as gumbel_max)
STREAM_CONDITIONAL = 1   # exponentials for conditional Gumbels given the sample
STREAM_BINARY = 2        # logistic noise of ARM / DisARM


def seed_argument(seed: _rng.Seed) -> int | torch.Tensor:
    """A resolved seed in the form the public ops accept (``seed=``)."""
    return seed.scalar if seed.per_row is None else seed.per_row


def category_noise(kind: str, logits: torch.Tensor, dim: int, seed: _rng.Seed,
                   stream: int, copies: int | None = None) -> torch.Tensor:
    """Noise shaped like ``logits`` (with a leading axis of ``copies`` if given).

    Columns run along ``dim``; the noise dtype is float64 for float64 logits,
    else float32. With per-row seeds the copies are told apart by their row
    key (the copy index), so they differ while each row still depends only on
    its own seed.
    """
    moved = logits.movedim(dim, -1).shape
    rows = tuple(moved[:-1])
    row_keys = None
    if copies is not None:
        if seed.per_row is not None:
            row_keys = torch.arange(copies, dtype=torch.int64, device=logits.device)
            row_keys = row_keys.reshape((copies,) + (1,) * len(rows))
        rows = (copies,) + rows
    noise = ops.draw_noise(kind, rows, moved[-1], seed, _rng.noise_dtype(logits.dtype),
                           logits.device, row_keys=row_keys, stream=stream)
    lead = 1 if copies is not None else 0
    return noise.movedim(-1, dim + lead)


def one_hot(index: torch.Tensor, n_categories: int, dim: int,
            dtype: torch.dtype) -> torch.Tensor:
    """One-hot along ``dim`` of an index tensor (the logits' shape without ``dim``)."""
    dim = dim % (index.dim() + 1)
    shape = list(index.shape)
    shape.insert(dim, n_categories)
    out = torch.zeros(shape, dtype=dtype, device=index.device)
    return out.scatter_(dim, index.unsqueeze(dim), 1.0)


def finite_part(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` with masked (-inf) entries replaced by 0 (their gradient is 0)."""
    return torch.where(torch.isfinite(logits), logits, torch.zeros_like(logits))


def shift(logits: torch.Tensor) -> torch.Tensor:
    """``logits - logits.detach()`` without NaN at masked entries: value 0, gradient 1."""
    finite = finite_part(logits)
    return finite - finite.detach()


def conditional_gumbels(logits: torch.Tensor, sample: torch.Tensor, dim: int,
                        exponentials: torch.Tensor) -> torch.Tensor:
    """Perturbed logits ``z ~ logits + Gumbel`` conditioned on ``argmax z = sample``.

    With ``E_i ~ Exp(1)`` and ``L = logsumexp(logits)`` (Maddison et al. 2014,
    top-down construction; Tucker et al. 2017, appendix):
    ``z_b = L - log E_b`` for the sampled category ``b`` (the maximum is
    ``Gumbel(L)``) and ``z_i = -log(E_i exp(-logits_i) + E_b exp(-L))`` for
    the others (a Gumbel with location ``logits_i`` truncated below ``z_b``),
    computed as ``-logaddexp(log E_i - logits_i, log E_b - L)``. Differentiable
    in ``logits`` (the reparameterisation REBAR and RELAX need); masked
    categories give ``-inf`` with zero gradient.

    ``sample`` is a one-hot of the logits' shape (or with leading copy axes);
    ``exponentials`` has the sample's shape.
    """
    dim = dim - logits.dim() if dim >= 0 else dim  # counted from the right: copies lead
    finite = torch.isfinite(logits)
    safe = finite_part(logits)
    log_norm = torch.logsumexp(logits, dim, keepdim=True)
    log_e = torch.log(exponentials)
    chosen = sample > 0
    log_e_b = torch.where(chosen, log_e, torch.zeros_like(log_e)).sum(dim, keepdim=True)
    top = log_norm - log_e_b
    others = -torch.logaddexp(log_e - safe, log_e_b - log_norm)
    z = torch.where(chosen, top, others)
    return torch.where(finite, z, torch.full_like(z, -math.inf))


# --------------------------------------------------------------------------- estimate() helpers


def evaluate(f: Callable[[torch.Tensor], torch.Tensor], samples: torch.Tensor,
             logits: torch.Tensor) -> torch.Tensor:
    """``f(samples)``, checked to have shape ``(m, *batch)`` with ``batch`` a
    prefix of ``logits.shape[:-1]`` (``m`` = the samples' leading size)."""
    values = f(samples)
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"f must return a torch.Tensor, got {type(values).__name__}")
    m = samples.shape[0]
    prefix = tuple(logits.shape[:-1])
    shape = tuple(values.shape)
    if len(shape) < 1 or shape[0] != m or shape[1:] != prefix[:len(shape) - 1]:
        raise ValueError(f"f must map samples of shape {tuple(samples.shape)} to values of shape "
                         f"({m}, *batch) with batch a prefix of {prefix}, got {shape}")
    return values


def draw_index(logits: torch.Tensor, n_samples: int, seed: _rng.Seed) -> torch.Tensor:
    """``n_samples`` categorical draws by Gumbel-max: int64 of shape (n, *logits.shape[:-1])."""
    expanded = logits.detach().expand(n_samples, *logits.shape)
    return gumbel_max(expanded, -1, seed=seed_argument(seed))


def joint_log_prob(logits: torch.Tensor, index: torch.Tensor, batch_ndim: int) -> torch.Tensor:
    """log p(sample) summed over the variable axes: shape (n, *batch).

    ``index`` has shape (n, *logits.shape[:-1]); ``logits`` broadcasts against it.
    """
    log_p = torch.log_softmax(logits, -1).expand(*index.shape, logits.shape[-1])
    per_variable = log_p.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    variable_axes = tuple(range(1 + batch_ndim, per_variable.dim()))
    return per_variable.sum(variable_axes) if variable_axes else per_variable


def score_surrogate(values: torch.Tensor, coefficient: torch.Tensor,
                    log_prob: torch.Tensor) -> torch.Tensor:
    """Per-sample surrogate: value ``values``, gradient ``grad f + coefficient grad log p``."""
    return values + coefficient * (log_prob - log_prob.detach())


def tempered_softmax(z: torch.Tensor, logits: torch.Tensor, tau: Temperature, dim: int,
                     report_dim: int | None = None) -> torch.Tensor:
    """``softmax(z / tau)`` along ``dim`` (``z`` in the working dtype; ``logits``
    broadcast against it) with the temperature checks of the functional ops:
    ``tau`` must stay > 0 and finite in ``z``'s dtype, and a row whose largest
    ``z / tau`` overflows it is a ``ValueError`` naming the row (not a NaN row)."""
    check_temperature_range(tau, z.dtype)
    t = tau.to(z.dtype) if isinstance(tau, torch.Tensor) else tau
    scaled = divide_by_temperature(z, t, dim)
    _check_overflow(scaled, logits, t, dim, report_dim)
    return torch.softmax(scaled, dim)


def working(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` in the dtype of the estimators' internal math (float32 or float64)."""
    return logits.to(_rng.noise_dtype(logits.dtype))


def relaxed_pair(work: torch.Tensor, n_samples: int, seed: _rng.Seed
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """REBAR/RELAX noise: ``(index, sample, z, z_tilde)``, each with a leading n axis.

    ``z = logits + G`` (the Gumbel noise :func:`draw_index` uses with the same
    seed), ``b = argmax z`` (``index``; ``sample`` is its one-hot) and
    ``z_tilde ~ z | argmax z = b`` reparameterised in ``logits`` by
    :func:`conditional_gumbels` with its own noise stream. Both ``z`` and
    ``z_tilde`` are differentiable in ``work``.
    """
    expanded = work.expand(n_samples, *work.shape)
    gumbels = category_noise("gumbel", expanded, expanded.dim() - 1, seed, STREAM_SAMPLE)
    z = expanded + gumbels
    index = z.detach().argmax(-1)
    sample = one_hot(index, work.shape[-1], -1, work.dtype)
    exponentials = category_noise("exponential", expanded, expanded.dim() - 1, seed,
                                  STREAM_CONDITIONAL)
    z_tilde = conditional_gumbels(expanded, sample, -1, exponentials)
    return index, sample, z, z_tilde


def binary_logit(work: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, alpha_shift)`` of K=2 logits: ``alpha = logits_1 - logits_0``.

    ``alpha_shift`` has value 0 and gradient ``+1`` into ``logits_1`` and
    ``-1`` into ``logits_0`` (0 where a category is masked).
    """
    if work.shape[-1] != 2:
        raise ValueError(f"arm and disarm are for binary variables: the category axis must "
                         f"have size K=2, got K={work.shape[-1]}")
    moved = shift(work)
    alpha = work.detach()[..., 1] - work.detach()[..., 0]
    return alpha, moved[..., 1] - moved[..., 0]


def antithetic_estimate(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor,
                        n_samples: int, seed: _rng.Seed,
                        coefficient: Callable[..., torch.Tensor]) -> torch.Tensor:
    """ARM-family estimate for K=2 logits from antithetic pairs ``(b, b_anti)``.

    With ``u ~ U(0, 1)`` per variable (as ``u = sigmoid(L)``, ``L`` logistic):
    ``b = 1[u < sigmoid(alpha)]`` and ``b_anti = 1[1 - u < sigmoid(alpha)]``,
    both Bernoulli(sigmoid(alpha)), ``alpha = logits_1 - logits_0``. ``f`` is
    called once on the ``2 n`` stacked one-hot samples; the value is their
    mean and the gradient with respect to ``alpha_v`` is
    ``coefficient(difference=f(b) - f(b_anti), u=u, b=b, b_anti=b_anti,
    alpha=alpha)`` (per variable, broadcast over the variable axes).
    """
    work = working(logits)
    alpha, alpha_shift = binary_logit(work)
    if seed.per_row is None:  # a sample is a row, the variables its columns
        flat = alpha.reshape(-1).shape[0]
        logistic = ops.draw_noise("logistic", (n_samples,), flat, seed, work.dtype,
                                  work.device, stream=STREAM_BINARY)
    else:  # every variable its own seed, keyed by the sample index
        samples = torch.arange(n_samples, device=work.device).reshape(
            (n_samples,) + (1,) * alpha.dim())
        logistic = ops.draw_noise("logistic", (n_samples, *alpha.shape), 1, seed, work.dtype,
                                  work.device, row_keys=samples, stream=STREAM_BINARY)
    logistic = logistic.reshape(n_samples, *alpha.shape)
    b = (logistic < alpha).to(work.dtype)
    b_anti = (-logistic < alpha).to(work.dtype)
    both = torch.cat([b, b_anti])
    values = evaluate(f, torch.stack([1 - both, both], -1), logits)
    f_b, f_anti = values.chunk(2, 0)
    extra = b.dim() - f_b.dim()
    difference = (f_b - f_anti).detach().reshape(*f_b.shape, *([1] * extra))
    per_variable = coefficient(difference=difference, u=torch.sigmoid(logistic), b=b,
                               b_anti=b_anti, alpha=alpha) * alpha_shift
    surrogate = per_variable.reshape(n_samples, *f_b.shape[1:], -1).sum(-1)
    return ((f_b + f_anti) / 2 + surrogate).mean(0)
