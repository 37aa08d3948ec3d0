"""REINFORCE leave-one-out (Kool, van Hoof & Welling 2019)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _rng
from ._common import draw_index, evaluate, joint_log_prob, one_hot, score_surrogate, working


def rloo(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, *, n_samples: int,
         tau: float, seed: _rng.Seed) -> torch.Tensor:
    """``(1/n) sum_i [f(b_i) - (1/(n-1)) sum_{j != i} f(b_j)] grad log p(b_i)``.

    Each sample's baseline is the mean of the other samples' values, so it is
    independent of the sample and the estimator is unbiased (Kool et al. 2019,
    "Buy 4 REINFORCE samples, get a baseline for free!"). Needs n_samples >= 2.
    """
    if n_samples < 2:
        raise ValueError(f"rloo needs n_samples >= 2 (a leave-one-out baseline), got {n_samples}")
    work = working(logits)
    index = draw_index(work, n_samples, seed)
    values = evaluate(f, one_hot(index, logits.shape[-1], -1, work.dtype), logits)
    log_prob = joint_log_prob(work, index, values.dim() - 1)
    detached = values.detach()
    others = (detached.sum(0, keepdim=True) - detached) / (n_samples - 1)
    return score_surrogate(values, detached - others, log_prob).mean(0)
