"""A mixture-of-experts router that samples its experts with Gumbel noise."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from .. import _rng
from .._validate import check_int_range, check_positive_real
from ..estimators import SAMPLE_ESTIMATORS
from ..estimators._common import seed_argument

BALANCE_LOSSES = ("switch", "none")


class RouterOutput(NamedTuple):
    """What :class:`GumbelRouter` returns.

    ``weights``: [..., n_experts], exactly ``k`` non-zeros per token (the
    chosen experts' mixing weights, summing to 1 for hard estimators);
    ``indices``: [..., k] int64, the chosen experts in the order they were
    drawn; ``balance_loss``: 0-dim, the load-balancing loss (0 when
    ``balance_loss="none"``); ``probs``: [..., n_experts], ``softmax(logits)``.
    """

    weights: torch.Tensor
    indices: torch.Tensor
    balance_loss: torch.Tensor
    probs: torch.Tensor


def switch_balance_loss(probs: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer load-balancing loss ``E sum_i f_i P_i``.

    Fedus, Zoph & Shazeer 2021 (eqs. 4-6): ``f_i`` is the fraction of the
    ``T k`` token-to-expert assignments that go to expert ``i`` (a constant),
    ``P_i`` the mean router probability of expert ``i`` over the ``T`` tokens
    (differentiable). It is 1 when both are uniform, and at least
    ``E max_i f_i P_i``; scale it by a small coefficient (the paper: 0.01).

    Args:
        probs: [..., E] router probabilities.
        indices: [..., k] chosen experts.

    Example:
        >>> probs = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
        >>> gumbelkit.nn.router.switch_balance_loss(probs, torch.tensor([[0], [0]]))
        tensor(1.1000)
    """
    n_experts = probs.shape[-1]
    flat_probs = probs.reshape(-1, n_experts)
    flat_indices = indices.reshape(-1)
    counts = torch.bincount(flat_indices, minlength=n_experts).to(probs.dtype)
    fraction = counts / max(flat_indices.numel(), 1)
    mean_prob = flat_probs.mean(0)
    return n_experts * (fraction * mean_prob).sum()


def _renormalised(logits: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """``p_i / sum_{j in S} p_j`` on the chosen set S, exactly 0 elsewhere."""
    return torch.softmax(logits.masked_fill(~chosen, -math.inf), dim=-1)


class GumbelRouter(nn.Module):
    """Routes each token to ``k`` experts drawn by Gumbel-top-k, differentiably.

    ``logits = x W`` (a bias-free linear map). In training, expert ``s_1`` is
    the sample of the estimator ``est`` (one of
    :data:`gumbelkit.estimators.SAMPLE_ESTIMATORS`): ``y_1 = est(logits)``,
    ``s_1 = argmax y_1``; round ``r`` repeats this with the experts already
    chosen masked to ``-inf`` and the same noise seed, so ``S = {s_1, ...,
    s_k}`` are the ``k`` largest ``logits + G`` -- an exact sample without
    replacement (Gumbel-top-k; Vieira 2014, Kool et al. 2019). With
    ``m = y_1 + ... + y_k`` and the renormalised probabilities
    ``c_i = p_i / sum_{j in S} p_j`` (``p = softmax(logits)``), the weights are

        ``w_i = m_i c_i`` for ``i`` in S, and ``w_i = 0`` (forward) with the
        gradient of ``m_i`` (backward) for ``i`` outside S.

    For the one-hot estimators (``st``, ``st_gumbel``, ``reinmax``,
    ``gumbel_rao``, ``gapped_st``) ``m`` is the indicator of S, so the forward
    weights are the renormalised top-k probabilities (as in Mixtral), they sum
    to 1, and the gradient is the exact one of ``c`` plus the estimator's
    gradient of each draw, scaled by ``c``. For ``k = 1``, ``c_s = 1`` with
    zero gradient and ``w`` is exactly the estimator's sample, value and
    gradient. With the relaxed estimator ``gumbel_softmax`` the weights on S
    are the relaxed values ``m_i c_i`` (they sum to less than 1) and the
    others are cut to 0, so every token still has exactly ``k`` non-zeros
    (unless a weight underflows, i.e. ``c_i < 1e-38``).

    In eval mode routing is deterministic: S is the top-k of the logits and
    ``w = c``.

    Args:
        d_model: input width.
        n_experts: number of experts, >= 1.
        k: experts per token, 1 <= k <= n_experts.
        tau: estimator temperature, > 0 (``reinmax`` needs >= 1).
        estimator: a key of ``SAMPLE_ESTIMATORS``.
        balance_loss: ``"switch"`` (:func:`switch_balance_loss`) or ``"none"``.
        estimator_options: extra keyword arguments for the estimator (e.g.
            ``{"k": 10}`` for ``gumbel_rao``, ``{"gap": 1.0}`` for ``gapped_st``).

    Example:
        >>> router = gumbelkit.nn.GumbelRouter(d_model=8, n_experts=4, k=2)
        >>> out = router(torch.randn(5, 8), seed=0)
        >>> (out.weights != 0).sum(-1).tolist(), out.indices.shape
        ([2, 2, 2, 2, 2], torch.Size([5, 2]))
    """

    def __init__(self, d_model: int, n_experts: int, k: int = 1, tau: float = 1.0,
                 estimator: str = "st_gumbel", balance_loss: str = "switch",
                 estimator_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.d_model = check_int_range(d_model, "d_model", 1)
        self.n_experts = check_int_range(n_experts, "n_experts", 1)
        self.k = check_int_range(k, "k", 1, n_experts)
        self.tau = check_positive_real(tau, "tau")
        if estimator not in SAMPLE_ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; valid names: "
                             f"{', '.join(sorted(SAMPLE_ESTIMATORS))}")
        if balance_loss not in BALANCE_LOSSES:
            raise ValueError(f"balance_loss must be one of {BALANCE_LOSSES}, "
                             f"got {balance_loss!r}")
        self.estimator = estimator
        self.balance_loss = balance_loss
        self.estimator_options = dict(estimator_options or {})
        self.gate = nn.Linear(d_model, n_experts, bias=False)
        # Surface bad tau/options for the estimator now rather than at the first batch.
        self._estimate(torch.zeros(1, n_experts), 0)

    def _estimate(self, logits: torch.Tensor, seed: int | torch.Tensor) -> torch.Tensor:
        fn = SAMPLE_ESTIMATORS[self.estimator]
        return fn(logits, self.tau, dim=-1, seed=seed, **self.estimator_options)

    def forward(self, x: torch.Tensor, *, seed: int | torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> RouterOutput:
        """Route ``x`` of shape [..., d_model]; see the class docstring."""
        _rng.check_seed_source(seed, generator)
        if x.dim() == 0 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape [..., d_model={self.d_model}], "
                             f"got {tuple(x.shape)}")
        logits = self.gate(x)
        if self.training:
            weights, indices = self._sample(logits, seed, generator)
        else:
            indices = logits.detach().topk(self.k, dim=-1).indices
            chosen = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, indices, True)
            weights = _renormalised(logits, chosen)
        probs = torch.softmax(logits, dim=-1)
        if self.balance_loss == "switch":
            loss = switch_balance_loss(probs, indices)
        else:
            loss = logits.new_zeros(())
        return RouterOutput(weights, indices, loss, probs)

    def _sample(self, logits: torch.Tensor, seed: int | torch.Tensor | None,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        shared_seed = seed_argument(_rng.resolve_seed(seed, generator))
        chosen = torch.zeros_like(logits, dtype=torch.bool)
        draws = []
        total = torch.zeros_like(logits)
        for _ in range(self.k):
            y = self._estimate(logits.masked_fill(chosen, -math.inf), shared_seed)
            index = y.detach().argmax(-1, keepdim=True)
            chosen = chosen.scatter(-1, index, True)
            draws.append(index)
            total = total + y
        weights = torch.where(chosen, total * _renormalised(logits, chosen),
                              total - total.detach())
        return weights, torch.cat(draws, dim=-1)

    def extra_repr(self) -> str:
        options = f", estimator_options={self.estimator_options}" if self.estimator_options else ""
        return (f"d_model={self.d_model}, n_experts={self.n_experts}, k={self.k}, "
                f"tau={self.tau}, estimator={self.estimator!r}, "
                f"balance_loss={self.balance_loss!r}{options}")
