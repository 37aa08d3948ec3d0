"""Gapped straight-through (Fan et al. 2022)."""

from __future__ import annotations

import torch

from .. import _rng
from .._validate import Temperature, check_logits, check_positive_real, check_temperature
from ..functional import gumbel_max
from ._common import SeedLike, forward_as, one_hot, tempered_softmax


def gapped_st(logits: torch.Tensor, tau: Temperature = 1.0, gap: float = 1.0, *,
              dim: int = -1, seed: SeedLike = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Gapped straight-through: a one-hot sample forward, a noise-free soft gradient back.

    Fan, Alvarez, Chen, Sun & Ding 2022, "Training discrete deep generative
    models via gapped straight-through estimator" (GST). Instead of random
    Gumbel noise, a deterministic perturbation ``m = logits + sg(delta)``
    makes the sampled category ``b`` the strict argmax by a margin ``gap``:
    ``m_b = max(logits)`` and ``m_i = min(logits_i, max(logits) - gap)`` for
    ``i != b``. The backward pass is that of ``softmax(m / tau)``.

    Args:
        logits: floating tensor, categories along ``dim``; finite or ``-inf``.
        tau: temperature > 0 and finite (float, or a tensor with size 1 along ``dim``).
        gap: the margin, > 0 and finite (the paper's GST-1.0 uses 1).
        dim: the category axis.
        seed, generator: see :func:`gumbelkit.gumbel_noise`.

    Example:
        >>> gapped_st(torch.tensor([2.0, 0.0, 1.0]), gap=1.0, seed=0).sum()
        tensor(1.)
    """
    dim = check_logits(logits, dim)
    tau = check_temperature(tau, logits, dim)
    gap = check_positive_real(gap, "gap")
    index = gumbel_max(logits, dim, seed=seed, generator=generator)
    work = logits.to(_rng.noise_dtype(logits.dtype))
    sample = one_hot(index, logits.shape[dim], dim, work.dtype)
    chosen = sample > 0
    value = work.detach()
    top = value.max(dim, keepdim=True).values
    raise_chosen = top - value.gather(dim, index.unsqueeze(dim))
    lower_others = torch.relu(value - top + gap)
    delta = torch.where(chosen, raise_chosen.expand_as(value), -lower_others)
    delta = torch.where(torch.isfinite(value), delta, torch.zeros_like(delta))
    soft = tempered_softmax(work + delta, logits, tau, dim)
    return forward_as(sample, soft).to(logits.dtype)
