"""REINFORCE, the score-function estimator (Williams 1992), with baselines."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _rng
from ._common import draw_index, evaluate, joint_log_prob, one_hot, score_surrogate, working

Baseline = str | Callable[[torch.Tensor], torch.Tensor] | None


class EMABaseline:
    """A baseline that is an exponential moving average of past values, across calls.

    ``b(values)`` returns the current average (0 before the first call) and
    then folds in ``values.mean()``: ``m <- decay m + (1 - decay) mean``. The
    baseline never depends on the samples it is subtracted from, so REINFORCE
    stays unbiased. Keep one instance per objective across training steps.

    Example:
        >>> ema = EMABaseline(0.9)
        >>> estimate(f, logits, "reinforce", n_samples=4, baseline=ema)  # doctest: +SKIP
    """

    def __init__(self, decay: float = 0.99) -> None:
        decay = float(decay)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.mean: float | None = None

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        current = 0.0 if self.mean is None else self.mean
        observed = float(values.detach().mean())
        self.mean = observed if self.mean is None else \
            self.decay * self.mean + (1 - self.decay) * observed
        return torch.full((), current, dtype=values.dtype, device=values.device)

    def __repr__(self) -> str:
        return f"EMABaseline(decay={self.decay}, mean={self.mean})"


def _running_average(values: torch.Tensor, decay: float) -> torch.Tensor:
    """Baseline of sample i: the EMA of samples 0..i-1 (0 for sample 0)."""
    out = torch.zeros_like(values)
    for i in range(1, values.shape[0]):
        previous = values[i - 1] if i == 1 else decay * out[i - 1] + (1 - decay) * values[i - 1]
        out[i] = previous
    return out


def baseline_values(baseline: Baseline, values: torch.Tensor, ema_decay: float) -> torch.Tensor:
    """The (detached) baseline for each sample's value."""
    values = values.detach()
    if baseline is None:
        return torch.zeros_like(values)
    if isinstance(baseline, str):
        if baseline != "ema":
            raise ValueError(f"baseline must be None, 'ema' or a callable, got {baseline!r}")
        return _running_average(values, ema_decay)
    if not callable(baseline):
        raise TypeError(f"baseline must be None, 'ema' or a callable, got {type(baseline)}")
    b = torch.as_tensor(baseline(values), dtype=values.dtype, device=values.device).detach()
    try:
        return b.broadcast_to(values.shape)
    except RuntimeError:
        raise ValueError(f"the baseline returned shape {tuple(b.shape)}, which does not "
                         f"broadcast to the values' shape {tuple(values.shape)}") from None


def reinforce(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, *,
              n_samples: int, tau: float, seed: _rng.Seed, baseline: Baseline = None,
              ema_decay: float = 0.9) -> torch.Tensor:
    """``(1/n) sum_i [f(b_i) - c_i] grad log p(b_i)``: unbiased for any baseline
    ``c_i`` independent of ``b_i`` (Williams 1992, "Simple statistical
    gradient-following algorithms for connectionist reinforcement learning").

    Options:
        baseline: None; ``"ema"`` (sample i's baseline is the moving average,
            decay ``ema_decay`` in [0, 1), of the values of samples 0..i-1);
            or a callable ``values -> baseline`` that must not use a sample's
            own value (e.g. :class:`EMABaseline`, an average across calls).
        ema_decay: decay of the ``"ema"`` baseline (default 0.9).
    """
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
    work = working(logits)
    index = draw_index(work, n_samples, seed)
    values = evaluate(f, one_hot(index, logits.shape[-1], -1, work.dtype), logits)
    log_prob = joint_log_prob(work, index, values.dim() - 1)
    coefficient = values.detach() - baseline_values(baseline, values, ema_decay)
    return score_surrogate(values, coefficient, log_prob).mean(0)
