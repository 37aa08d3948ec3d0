"""Straight-through Gumbel-Softmax (Jang, Gu & Poole 2017)."""

from __future__ import annotations

import torch

from .._validate import Temperature
from ..functional import gumbel_softmax
from ._common import SeedLike


def st_gumbel(logits: torch.Tensor, tau: Temperature = 1.0, *, dim: int = -1,
              seed: SeedLike = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Straight-through Gumbel-Softmax: one-hot of ``argmax(logits + G)`` forward,
    the gradient of ``softmax((logits + G) / tau)`` backward.

    ``gumbel_softmax(logits, tau, hard=True)`` under the estimators' common
    signature (Jang et al. 2017, "Categorical reparameterization with
    Gumbel-Softmax", section 2.2). Biased; its gradient carries the Gumbel
    noise that :func:`gumbel_rao` averages away.

    Args:
        logits, tau, dim, seed, generator: as in :func:`gumbelkit.gumbel_softmax`.

    Example:
        >>> st_gumbel(torch.zeros(3), tau=0.5, seed=0).sum()
        tensor(1.)
    """
    return gumbel_softmax(logits, tau, hard=True, dim=dim, seed=seed, generator=generator)
