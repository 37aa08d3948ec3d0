"""Exact expectation and gradient by enumerating every joint configuration."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import _rng
from .._validate import check_int_range
from ._common import evaluate, joint_log_prob, one_hot, working

DEFAULT_MAX_CONFIGURATIONS = 2**16


def infer_batch_ndim(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> int:
    """How many leading axes of ``logits`` are batch axes: ``f``'s output rank - 1.

    ``f`` is called once, without gradient, on the one-hot of ``argmax(logits)``.
    """
    with torch.no_grad():
        mode = one_hot(logits.argmax(-1), logits.shape[-1], -1, logits.dtype)
        return evaluate(f, mode.unsqueeze(0), logits).dim() - 1


def exact(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, *, n_samples: int,
          tau: float, seed: _rng.Seed, max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
          batch_ndim: int | None = None) -> torch.Tensor:
    """``E[f(z)] = sum_c p(c) f(c)`` over all ``K**V`` joint configurations ``c``.

    ``V`` is the number of variables per batch element (``logits`` is
    ``(*batch, *variables, K)``; the batch rank is ``f``'s output rank - 1,
    found by one probe call unless ``batch_ndim`` is given). ``f`` is called
    once on all configurations, stacked on the sample axis. The gradient is
    the true gradient, through ``p`` and through ``f``. ``n_samples``, ``tau``
    and the seed are unused.

    Options:
        max_configurations: refuse (``ValueError``) when ``K**V`` exceeds it
            (default 2**16).
        batch_ndim: the number of batch axes, to skip the probe call.
    """
    check_int_range(max_configurations, "max_configurations", 1)
    if batch_ndim is None:
        batch_ndim = infer_batch_ndim(f, logits)
    check_int_range(batch_ndim, "batch_ndim", 0, logits.dim() - 1)
    work = working(logits)
    n_categories = logits.shape[-1]
    batch_shape = tuple(logits.shape[:batch_ndim])
    variable_shape = tuple(logits.shape[batch_ndim:-1])
    n_variables = math.prod(variable_shape)
    n_configurations = n_categories ** n_variables
    if n_configurations > max_configurations:
        raise ValueError(
            f"exact enumeration needs K**V = {n_categories}**{n_variables} = {n_configurations} "
            f"configurations, more than max_configurations={max_configurations}; raise "
            f"max_configurations or use a sampling method")
    codes = torch.arange(n_configurations, device=logits.device)
    powers = n_categories ** torch.arange(n_variables - 1, -1, -1, device=logits.device)
    index = (codes[:, None] // powers) % n_categories
    index = index.reshape((n_configurations,) + (1,) * batch_ndim + variable_shape)
    index = index.expand((n_configurations,) + batch_shape + variable_shape)
    values = evaluate(f, one_hot(index, n_categories, -1, work.dtype), logits)
    if values.dim() - 1 != batch_ndim:
        raise ValueError(f"f returned values of shape {tuple(values.shape)}, expected "
                         f"({n_configurations}, *{batch_shape}) for batch_ndim={batch_ndim}")
    weights = torch.exp(joint_log_prob(work, index, batch_ndim))
    return (weights * values).sum(0)
