"""DisARM: antithetic REINFORCE with the uniform integrated out (Dong et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _rng
from ._common import antithetic_estimate


def disarm(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, *, n_samples: int,
           tau: float, seed: _rng.Seed) -> torch.Tensor:
    """DisARM, per variable ``v`` and pair ``(b, b_anti)``:
    ``g_alpha_v = 1/2 (f(b) - f(b_anti)) (-1)**b_anti_v 1[b_v != b_anti_v] sigmoid(|alpha_v|)``.

    Dong, Mnih & Tucker 2020, "DisARM: an antithetic gradient estimator for
    binary latent variables" (eq. 7): ARM with the continuous noise integrated
    out given the antithetic pair, never more variant than ARM. Unbiased;
    ``logits`` must have K=2; ``f`` is called once on ``2 n`` stacked samples.
    """
    return antithetic_estimate(f, logits, n_samples, seed, _coefficient)


def _coefficient(difference: torch.Tensor, b: torch.Tensor, b_anti: torch.Tensor,
                 alpha: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
    """``1/2 (f(b) - f(b_anti)) (-1)**b_anti 1[b != b_anti] sigmoid(|alpha|)``."""
    return 0.5 * difference * (1 - 2 * b_anti) * (b != b_anti).to(b.dtype) \
        * torch.sigmoid(alpha.abs())
