"""A vector of Hard Concrete gates with its closed-form L0 penalty."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._rng import check_seed_source
from .._validate import check_int_range, check_positive_real, check_stretch
from ..functional import (
    hard_concrete,
    hard_concrete_deterministic_gate,
    hard_concrete_prob_nonzero,
)


def check_droprate(droprate_init: float) -> float:
    """A starting drop rate strictly inside (0, 1)."""
    if isinstance(droprate_init, bool) or not isinstance(droprate_init, (int, float)) \
            or not 0.0 < droprate_init < 1.0:
        raise ValueError(f"droprate_init must lie strictly inside (0, 1), got {droprate_init!r}")
    return float(droprate_init)


class HardConcreteGate(nn.Module):
    """``n`` gates ``z_j`` in [0, 1], exactly 0 or 1 with positive probability.

    Louizos, Welling & Kingma 2018, "Learning Sparse Neural Networks through
    L0 Regularization". Each gate has a trainable ``log_alpha``; in training
    ``z = hard_concrete(log_alpha, tau, gamma, zeta)`` (a fresh
    sample per call, per element of ``batch_shape``), in eval the
    deterministic gate ``min(1, max(0, sigmoid(log_alpha)(zeta - gamma) +
    gamma))`` (eq. 13). ``l0_penalty()`` is the expected number of non-zero
    gates, ``sum_j sigmoid(log_alpha_j - tau log(-gamma / zeta))``
    (eq. 12), differentiable in ``log_alpha``; ``prob_nonzero`` and
    ``deterministic_gate`` are the per-gate ``P(z_j != 0)`` and the eval gate
    (as on :class:`gumbelkit.distributions.HardConcrete`).

    Args:
        n: number of gates, >= 1.
        droprate_init: in (0, 1); ``log_alpha`` starts at
            ``log((1 - droprate_init) / droprate_init)`` (the paper's code),
            i.e. the underlying Concrete variable is above 1/2 with probability
            ``1 - droprate_init``.
        tau: temperature > 0 (the paper's beta, default 2/3).
        gamma, zeta: the stretch interval, gamma < 0 < 1 < zeta.

    Example:
        >>> gate = gumbelkit.nn.HardConcreteGate(4, droprate_init=0.5)
        >>> gate(seed=0).shape, round(gate.l0_penalty().item(), 4)
        (torch.Size([4]), 3.3273)
        >>> gate.eval()().tolist()
        [0.5, 0.5, 0.5, 0.5]
    """

    def __init__(self, n: int, droprate_init: float = 0.5, tau: float = 2.0 / 3.0,
                 gamma: float = -0.1, zeta: float = 1.1) -> None:
        super().__init__()
        self.n = check_int_range(n, "n", 1)
        self.droprate_init = check_droprate(droprate_init)
        self.tau = check_positive_real(tau, "tau")
        self.gamma, self.zeta = check_stretch(gamma, zeta)
        start = math.log(1.0 - self.droprate_init) - math.log(self.droprate_init)
        self.log_alpha = nn.Parameter(torch.full((n,), start))

    def forward(self, batch_shape: tuple[int, ...] = (), *,
                seed: int | torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Gates of shape ``batch_shape + (n,)``: sampled in training, deterministic in eval."""
        check_seed_source(seed, generator)
        if not self.training:
            return self.deterministic_gate.expand(*batch_shape, self.n)
        logits = self.log_alpha.expand(*batch_shape, self.n)
        return hard_concrete(logits, self.tau, self.gamma, self.zeta, seed=seed,
                             generator=generator)

    @property
    def deterministic_gate(self) -> torch.Tensor:
        """The deterministic test-time gates (eq. 13), shape [n], whatever the mode."""
        return hard_concrete_deterministic_gate(self.log_alpha, self.gamma, self.zeta)

    @property
    def prob_nonzero(self) -> torch.Tensor:
        """``P(z_j != 0)`` for every gate, shape [n]."""
        return hard_concrete_prob_nonzero(self.log_alpha, self.tau, self.gamma, self.zeta)

    def l0_penalty(self) -> torch.Tensor:
        """Expected number of non-zero gates (0-dim, differentiable)."""
        return self.prob_nonzero.sum()

    def sparsity(self) -> float:
        """Fraction of gates that are exactly 0 at test time (the eval-mode gate)."""
        return (self.deterministic_gate == 0).double().mean().item()

    def extra_repr(self) -> str:
        return (f"n={self.n}, droprate_init={self.droprate_init}, "
                f"tau={self.tau:.4g}, gamma={self.gamma}, zeta={self.zeta}")
