"""A trainable temperature that can never reach 0 or run off to infinity."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validate import check_positive_real


class LearnableTemperature(nn.Module):
    """``tau = min + (max - min) sigmoid(theta)``, with ``theta`` a trainable parameter.

    The map keeps ``tau`` strictly inside ``(min, max)`` whatever the optimizer
    does, so a learned temperature neither collapses to 0 (infinite-variance
    gradients, NaN samples) nor grows without bound (a uniform relaxation).

    Args:
        init: starting temperature, strictly inside ``(min, max)``.
        min: lower bound, > 0.
        max: upper bound, > ``min`` and finite.

    Example:
        >>> temp = gumbelkit.nn.LearnableTemperature(init=1.0, min=0.1, max=5.0)
        >>> round(temp().item(), 6)
        1.0
    """

    def __init__(self, init: float = 1.0, min: float = 0.1, max: float = 5.0) -> None:
        super().__init__()
        low = check_positive_real(min, "min")
        high = check_positive_real(max, "max")
        start = check_positive_real(init, "init")
        if not low < high:
            raise ValueError(f"min must be < max, got min={low}, max={high}")
        if not low < start < high:
            raise ValueError(f"init must lie strictly inside (min, max) = ({low}, {high}), "
                             f"got {start}")
        self.register_buffer("min", torch.tensor(low, dtype=torch.float64))
        self.register_buffer("max", torch.tensor(high, dtype=torch.float64))
        frac = (start - low) / (high - low)
        self.theta = nn.Parameter(torch.tensor(math.log(frac) - math.log1p(-frac)))

    def forward(self) -> torch.Tensor:
        """The current temperature, a 0-dim tensor differentiable in ``theta``."""
        span = (self.max - self.min).to(self.theta.dtype)
        return self.min.to(self.theta.dtype) + span * torch.sigmoid(self.theta)

    def extra_repr(self) -> str:
        return f"tau={self().item():.4g}, min={self.min.item():.4g}, max={self.max.item():.4g}"
