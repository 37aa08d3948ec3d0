"""Estimators whose gradient is carried by a sample-level function (ST family)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _rng
from ._common import evaluate, seed_argument

SampleFn = Callable[..., torch.Tensor]


def pathwise(sample_fn: SampleFn) -> Callable[..., torch.Tensor]:
    """``estimate`` for a sample-level estimator: ``(1/n) sum_i f(y_i)``,
    ``y_i = sample_fn(logits)``.

    The gradient is whatever ``sample_fn``'s backward pass defines (straight-
    through, relaxed, ReinMax, Gumbel-Rao, gapped); options go to ``sample_fn``.
    """

    def estimator(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, *,
                  n_samples: int, tau: float | torch.Tensor, seed: _rng.Seed,
                  **options: object) -> torch.Tensor:
        expanded = logits.expand(n_samples, *logits.shape)
        samples = sample_fn(expanded, tau, dim=-1, seed=seed_argument(seed), **options)
        return evaluate(f, samples, logits).mean(0)

    estimator.__name__ = f"pathwise_{sample_fn.__name__}"
    estimator.__doc__ = f"Pathwise estimate through :func:`{sample_fn.__name__}`."
    return estimator
