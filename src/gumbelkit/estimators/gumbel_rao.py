"""Gumbel-Rao: Rao-Blackwellised straight-through Gumbel-Softmax (Paulus et al. 2021)."""

from __future__ import annotations

import torch

from .. import _rng
from .._validate import Temperature, check_int_range, check_logits, check_temperature
from ..functional import gumbel_max
from ._common import (
    STREAM_CONDITIONAL,
    SeedLike,
    category_noise,
    conditional_gumbels,
    forward_as,
    one_hot,
    seed_argument,
    shift,
    tempered_softmax,
)


def gumbel_rao(logits: torch.Tensor, tau: Temperature = 1.0, k: int = 10, *, dim: int = -1,
               seed: SeedLike = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel-Rao: a one-hot sample forward, the average of ``k`` conditional soft Jacobians back.

    Paulus, Maddison & Krause 2021, "Rao-Blackwellizing the straight-through
    Gumbel-Softmax gradient estimator". ``D = one_hot(argmax(logits + G))``;
    the backward pass is that of
    ``(1/k) sum_j softmax((logits + G_j) / tau)`` with ``G_j`` drawn from the
    Gumbel noise *conditioned on* ``argmax(logits + G_j) = D`` (top-down
    construction, all in log space, so logits of any magnitude are safe). Same
    forward and same expected gradient as :func:`st_gumbel`, with no more
    variance (the paper's Proposition 2); ``k`` trades cost for variance.

    Args:
        logits: floating tensor, categories along ``dim``; finite or ``-inf``.
        tau: temperature > 0 and finite (float, or a tensor with size 1 along ``dim``).
        k: number of conditional draws, >= 1.
        dim: the category axis.
        seed, generator: see :func:`gumbelkit.gumbel_noise`. The sample is the
            one :func:`st_gumbel` draws with the same seed.

    Example:
        >>> gumbel_rao(torch.tensor([100.0, 101.0, 99.0]), tau=0.5, k=4, seed=0)
        tensor([0., 1., 0.])
    """
    dim = check_logits(logits, dim)
    tau = check_temperature(tau, logits, dim)
    check_int_range(k, "k", 1)
    resolved = _rng.resolve_seed(seed, generator)
    index = gumbel_max(logits, dim, seed=seed_argument(resolved))
    work = logits.to(_rng.noise_dtype(logits.dtype))
    sample = one_hot(index, logits.shape[dim], dim, work.dtype)
    exponentials = category_noise("exponential", work, dim, resolved, STREAM_CONDITIONAL, copies=k)
    z = conditional_gumbels(work.detach(), sample, dim, exponentials)
    soft = tempered_softmax(z + shift(work), logits, tau, dim + 1, report_dim=dim).mean(0)
    return forward_as(sample, soft).to(logits.dtype)
