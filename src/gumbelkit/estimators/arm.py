"""ARM: augment-REINFORCE-merge (Yin & Zhou 2019) for binary variables."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _rng
from ._common import antithetic_pair, binary_logit, evaluate, working


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
    work = working(logits)
    u, b, b_anti, stacked = antithetic_pair(work, n_samples, seed)
    values = evaluate(f, stacked, logits)
    f_b, f_anti = values.chunk(2, 0)
    _, alpha_shift = binary_logit(work)
    extra = u.dim() - f_b.dim()
    difference = (f_anti - f_b).detach().reshape(*f_b.shape, *([1] * extra))
    per_variable = difference * (u - 0.5) * alpha_shift
    surrogate = per_variable.reshape(n_samples, *f_b.shape[1:], -1).sum(-1)
    return ((f_b + f_anti) / 2 + surrogate).mean(0)
