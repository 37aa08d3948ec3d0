"""A mixture of small MLP experts behind a :class:`GumbelRouter`."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from .._validate import check_int_range
from ._dispatch import groups
from .router import GumbelRouter, RouterOutput

ACTIVATIONS = {"gelu": nn.functional.gelu, "relu": nn.functional.relu}


class MoEOutput(NamedTuple):
    """``output`` [..., d_model], ``balance_loss`` (0-dim) and the router's output."""

    output: torch.Tensor
    balance_loss: torch.Tensor
    router: RouterOutput


class MoE(nn.Module):
    """``y = sum_{e in S(x)} w_e(x) MLP_e(x)``, with ``S``, ``w`` from a :class:`GumbelRouter`.

    Each expert is ``MLP_e(x) = act(x W1_e + b1_e) W2_e + b2_e`` (Shazeer et
    al. 2017; Fedus et al. 2021 for the Switch balance loss). Dispatch is
    sparse: the ``T k`` token-to-expert assignments are sorted by expert, each
    expert gathers its tokens (``index_select``), and the weighted results are
    summed back with ``index_add``; no ``[tokens, experts, d]`` tensor is ever
    formed, and an expert with no tokens costs nothing. Add
    ``coef * balance_loss`` (e.g. ``coef = 0.01``) to the training loss.

    Args:
        d_model: token width.
        d_hidden: hidden width of each expert MLP.
        n_experts: number of experts.
        k: experts per token, 1 <= k <= n_experts.
        activation: ``"gelu"`` or ``"relu"``.
        **router_options: passed to :class:`GumbelRouter` (``tau``,
            ``estimator``, ``balance_loss``, ``estimator_options``).

    Example:
        >>> moe = gumbelkit.nn.MoE(d_model=8, d_hidden=16, n_experts=4, k=2)
        >>> out = moe(torch.randn(3, 5, 8), seed=0)
        >>> out.output.shape, out.router.indices.shape
        (torch.Size([3, 5, 8]), torch.Size([3, 5, 2]))
    """

    def __init__(self, d_model: int, d_hidden: int, n_experts: int, k: int = 1,
                 activation: str = "gelu", **router_options: Any) -> None:
        super().__init__()
        check_int_range(d_hidden, "d_hidden", 1)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.router = GumbelRouter(d_model, n_experts, k, **router_options)
        self.d_model, self.d_hidden, self.n_experts = d_model, d_hidden, n_experts
        self.activation = activation
        self.w1 = nn.Parameter(torch.empty(n_experts, d_model, d_hidden))
        self.b1 = nn.Parameter(torch.empty(n_experts, d_hidden))
        self.w2 = nn.Parameter(torch.empty(n_experts, d_hidden, d_model))
        self.b2 = nn.Parameter(torch.empty(n_experts, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each expert initialised like a pair of ``nn.Linear`` layers."""
        for weight, bias, fan_in in ((self.w1, self.b1, self.d_model),
                                     (self.w2, self.b2, self.d_hidden)):
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """``MLP_e(x)`` for tokens ``x`` of shape [n, d_model]."""
        hidden = ACTIVATIONS[self.activation](x @ self.w1[e] + self.b1[e])
        return hidden @ self.w2[e] + self.b2[e]

    def forward(self, x: torch.Tensor, *, seed: int | torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> MoEOutput:
        """Mix the chosen experts' outputs for ``x`` of shape [..., d_model]."""
        routed = self.router(x, seed=seed, generator=generator)
        tokens = x.reshape(-1, self.d_model)
        k = routed.indices.shape[-1]
        expert_of = routed.indices.reshape(-1)
        weight_of = routed.weights.reshape(-1, self.n_experts).gather(
            -1, routed.indices.reshape(-1, k)).reshape(-1)
        token_of = torch.arange(tokens.shape[0], device=x.device).repeat_interleave(k)
        output = torch.zeros_like(tokens)
        for e, slot in groups(expert_of, self.n_experts):
            rows = token_of[slot]
            contribution = self.expert(e, tokens.index_select(0, rows)) * weight_of[slot, None]
            output = output.index_add(0, rows, contribution.to(output.dtype))
        return MoEOutput(output.reshape(x.shape), routed.balance_loss, routed)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_hidden={self.d_hidden}, "
                f"n_experts={self.n_experts}, activation={self.activation!r}")
