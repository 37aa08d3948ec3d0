"""DisARM: antithetic REINFORCE with the uniform integrated out (Dong et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _rng
from ._common import antithetic_pair, binary_logit, evaluate, working


def disarm(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, *, n_samples: int,
           tau: float, seed: _rng.Seed) -> torch.Tensor:
    """DisARM, per variable ``v`` and pair ``(b, b_anti)``:
    ``g_alpha_v = 1/2 (f(b) - f(b_anti)) (-1)**b_anti_v 1[b_v != b_anti_v] sigmoid(|alpha_v|)``.

    Dong, Mnih & Tucker 2020, "DisARM: an antithetic gradient estimator for
    binary latent variables" (eq. 7): ARM with the continuous noise integrated
    out given the antithetic pair, never more variant than ARM. Unbiased;
    ``logits`` must have K=2; ``f`` is called once on ``2 n`` stacked samples.
    """
    work = working(logits)
    _, b, b_anti, stacked = antithetic_pair(work, n_samples, seed)
    values = evaluate(f, stacked, logits)
    f_b, f_anti = values.chunk(2, 0)
    alpha, alpha_shift = binary_logit(work)
    extra = b.dim() - f_b.dim()
    difference = (f_b - f_anti).detach().reshape(*f_b.shape, *([1] * extra))
    weight = (1 - 2 * b_anti) * (b != b_anti).to(work.dtype) * torch.sigmoid(alpha.abs())
    per_variable = 0.5 * difference * weight * alpha_shift
    surrogate = per_variable.reshape(n_samples, *f_b.shape[1:], -1).sum(-1)
    return ((f_b + f_anti) / 2 + surrogate).mean(0)
