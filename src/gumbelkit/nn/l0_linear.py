"""A linear layer whose input features are pruned by Hard Concrete gates."""

from __future__ import annotations

import torch
from torch import nn

from .._validate import check_int_range
from .hard_concrete_gate import HardConcreteGate


class L0Linear(nn.Module):
    """``y = (x * z) W^T + b`` with one Hard Concrete gate ``z_j`` per input feature.

    Louizos, Welling & Kingma 2018 (group sparsity over the input neurons of a
    fully connected layer). In training each example gets its own gate sample;
    in eval the deterministic gate is used, and inputs whose gate is exactly 0
    are pruned: :meth:`to_linear` exports a plain ``nn.Linear`` over the
    surviving inputs. :meth:`penalty` is the expected number of non-zero
    weights, ``out_features * sum_j P(z_j != 0)`` (each gate switches a column
    of ``W`` off), so ``loss + lam * penalty()`` is the paper's objective.

    Args:
        in_features, out_features: as in ``nn.Linear``.
        bias: learn an additive bias (never gated).
        droprate_init, tau, gamma, zeta: see :class:`HardConcreteGate`.

    Example:
        >>> layer = gumbelkit.nn.L0Linear(6, 3)
        >>> with torch.no_grad():
        ...     layer.gate.log_alpha[:2] = -10.0
        >>> linear, kept = layer.eval().to_linear()
        >>> linear, kept.tolist()
        (Linear(in_features=4, out_features=3, bias=True), [2, 3, 4, 5])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 droprate_init: float = 0.5, tau: float = 2.0 / 3.0,
                 gamma: float = -0.1, zeta: float = 1.1) -> None:
        super().__init__()
        self.in_features = check_int_range(in_features, "in_features", 1)
        self.out_features = check_int_range(out_features, "out_features", 1)
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.gate = HardConcreteGate(in_features, droprate_init, tau, gamma, zeta)

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.linear.bias

    def forward(self, x: torch.Tensor, *, seed: int | torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` of shape [..., in_features] -> [..., out_features]."""
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape [..., in_features={self.in_features}], "
                             f"got {tuple(x.shape)}")
        batch_shape = tuple(x.shape[:-1]) if self.training else ()
        z = self.gate(batch_shape, seed=seed, generator=generator)
        return self.linear(x * z.to(x.dtype))

    def penalty(self) -> torch.Tensor:
        """Expected number of non-zero weights (0-dim, differentiable)."""
        return self.out_features * self.gate.l0_penalty()

    def kept_features(self) -> torch.Tensor:
        """Indices of the inputs whose test-time gate is not 0 (int64, increasing)."""
        return (self.gate.deterministic_gate != 0).nonzero().squeeze(-1)

    @torch.no_grad()
    def to_linear(self) -> tuple[nn.Linear, torch.Tensor]:
        """``(linear, kept)``: ``linear(x[..., kept])`` equals this layer in eval mode.

        The test-time gates of the kept inputs are folded into the weight
        columns; ``kept`` holds the surviving input indices. At least one input
        is always kept (the one with the largest gate) so the export is a valid
        ``nn.Linear``; its weight column is then 0 if every gate is 0.
        """
        gate = self.gate.deterministic_gate
        kept = self.kept_features()
        if kept.numel() == 0:
            kept = gate.argmax().reshape(1)
        linear = nn.Linear(kept.numel(), self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        linear.weight.copy_(self.weight[:, kept] * gate[kept].to(self.weight.dtype))
        if self.bias is not None:
            linear.bias.copy_(self.bias)
        return linear, kept

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
