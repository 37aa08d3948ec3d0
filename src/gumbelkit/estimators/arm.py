"""ARM: augment-REINFORCE-merge (Yin & Zhou 2019) for binary variables."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _rng
from ._common import antithetic_estimate


def arm(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, *, n_samples: int,
        tau: float, seed: _rng.Seed) -> torch.Tensor:
    """ARM: ``g_alpha_v = (f(b_anti) - f(b)) (u_v - 1/2)``, averaged over ``n`` pairs.

    Yin & Zhou 2019, "ARM: augment-REINFORCE-merge gradient for stochastic
    binary networks": ``b = 1[u < sigmoid(alpha)]`` and
    ``b_anti = 1[u > sigmoid(-alpha)]`` share one uniform per variable, and
    ``alpha = logits_1 - logits_0``. Unbiased. ``logits`` must have K=2
    (category 1 is "on"); ``f`` is called once on ``2 n`` stacked samples and
    the value is the average over all of them.
    """
    return antithetic_estimate(f, logits, n_samples, seed, _coefficient)


def _coefficient(difference: torch.Tensor, u: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
    """``(f(b_anti) - f(b)) (u - 1/2)``; ``difference`` is ``f(b) - f(b_anti)``."""
    return -difference * (u - 0.5)
