"""ReinMax: second-order straight-through (Liu et al. 2023)."""

from __future__ import annotations

import torch

from .. import _rng
from .._validate import Temperature, check_logits, check_temperature
from ..functional import gumbel_max
from ._common import SeedLike, forward_as, one_hot, shift, tempered_softmax


def _check_at_least_one(tau: Temperature) -> None:
    low = float(tau.detach().min()) if isinstance(tau, torch.Tensor) else tau
    if low < 1.0:
        raise ValueError(f"reinmax needs tau >= 1 (Liu et al. 2023 derive it for tau >= 1; "
                         f"below 1 it is unstable), got tau = {low}")


def reinmax(logits: torch.Tensor, tau: Temperature = 1.0, *, dim: int = -1,
            seed: SeedLike = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """ReinMax: a one-hot sample forward, Heun's-method (second-order) gradient back.

    Liu, Zhang, Zhang, Gao & Han 2023, "Bridging discrete and backpropagation:
    straight-through and beyond" (Algorithm 2). With ``pi0 = softmax(logits)``,
    ``D ~ one_hot(Categorical(pi0))`` and
    ``pi1 = (D + softmax(logits / tau)) / 2`` (a constant), the backward pass
    is that of ``2 softmax(log pi1 + logits - sg(logits)) - pi0 / 2``: for
    ``tau = 1`` and a quadratic ``f`` it is exact in expectation up to the
    second order, where straight-through is first order.

    Args:
        logits: floating tensor, categories along ``dim``; finite or ``-inf``.
        tau: >= 1 and finite (float, or a tensor with size 1 along ``dim``).
        dim: the category axis.
        seed, generator: see :func:`gumbelkit.gumbel_noise`.

    Example:
        >>> reinmax(torch.tensor([0.0, 1.0, -1.0]), tau=1.0, seed=0)
        tensor([0., 1., 0.])
    """
    dim = check_logits(logits, dim)
    tau = check_temperature(tau, logits, dim)
    _check_at_least_one(tau)
    index = gumbel_max(logits, dim, seed=seed, generator=generator)
    work = logits.to(_rng.noise_dtype(logits.dtype))
    sample = one_hot(index, logits.shape[dim], dim, work.dtype)
    pi0 = torch.softmax(work, dim)
    pi1_value = (sample + tempered_softmax(work.detach(), logits, tau, dim)) / 2
    pi1 = torch.softmax(torch.log(pi1_value) + shift(work), dim)
    return forward_as(sample, 2 * pi1 - pi0 / 2).to(logits.dtype)
