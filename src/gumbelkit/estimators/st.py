"""Straight-through estimator (Bengio, Leonard & Courville 2013)."""

from __future__ import annotations

import torch

from .. import _rng
from .._validate import Temperature, check_logits, check_temperature
from ..functional import gumbel_max
from ._common import SeedLike, forward_as, one_hot, tempered_softmax


def st(logits: torch.Tensor, tau: Temperature = 1.0, *, dim: int = -1, seed: SeedLike = None,
       generator: torch.Generator | None = None) -> torch.Tensor:
    """Straight-through: an exact one-hot sample forward, ``softmax(logits / tau)``'s gradient back.

    Forward ``D = one_hot(b)``, ``b ~ Categorical(softmax(logits))`` (drawn by
    Gumbel-max, the same category :func:`gumbelkit.gumbel_max` gives for the
    same seed); backward ``dD/dlogits := d softmax(logits / tau)/dlogits``
    (Bengio et al. 2013, "Estimating or propagating gradients through
    stochastic neurons"). Biased; cheap; no noise in the gradient path.

    Args:
        logits: floating tensor, categories along ``dim``; finite or ``-inf``
            (masked: never sampled, gradient exactly 0).
        tau: temperature of the backward softmax, > 0 and finite (float, or a
            tensor with size 1 along ``dim``).
        dim: the category axis.
        seed, generator: see :func:`gumbelkit.gumbel_noise`.

    Example:
        >>> y = st(torch.zeros(2, 3, requires_grad=True), seed=0)
        >>> y.sum(-1)
        tensor([1., 1.], grad_fn=<SumBackward1>)
    """
    dim = check_logits(logits, dim)
    tau = check_temperature(tau, logits, dim)
    index = gumbel_max(logits, dim, seed=seed, generator=generator)
    work = logits.to(_rng.noise_dtype(logits.dtype))
    soft = tempered_softmax(work, logits, tau, dim)
    return forward_as(one_hot(index, logits.shape[dim], dim, soft.dtype), soft).to(logits.dtype)
