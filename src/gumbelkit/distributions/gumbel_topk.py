"""GumbelTopK: ordered k-subsets without replacement (Plackett-Luce) and their relaxation."""

from __future__ import annotations

import torch
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from .. import _rng
from .._autograd import divide_by_temperature, forward_as
from .._validate import Temperature, check_int_range, check_k_unmasked
from ._base import SeededDistribution
from ._common import (
    SeedLike,
    ShapeLike,
    batch_temperature,
    categorical_logits,
    check_scaled_range,
    noise,
    ordered_subset,
)

__all__ = ["GumbelTopK"]


def _log1m_softmax(a: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """``log(1 - softmax(a))`` without cancellation.

    Only the largest entry can have ``p > 1/2``; its ``log(1 - p)`` is the
    logsumexp of the other entries minus that of all, every other one is
    ``log1p(-p)``.
    """
    top = torch.zeros_like(a, dtype=torch.bool).scatter_(-1, a.argmax(-1, keepdim=True), True)
    others = a.masked_fill(top, -torch.inf).logsumexp(-1, keepdim=True)
    top_value = others - a.logsumexp(-1, keepdim=True)
    rest = torch.log1p(-torch.exp(log_p.masked_fill(top, -1.0)))
    return torch.where(top, top_value, rest)


class GumbelTopK(SeededDistribution):
    r"""Ordered ``k``-subsets without replacement: the Plackett-Luce model.

    The indices of the ``k`` largest ``logits_i + G_i`` (``G_i`` i.i.d. standard
    Gumbel) in decreasing order are an ordered sample without replacement
    (Vieira 2014; Kool, van Hoof & Welling 2019), with

    ``log P(i_1, ..., i_k) = sum_j [log pi_(i_j) - log(1 - sum_(l<j) pi_(i_l))]``,

    evaluated exactly as ``sum_j [logits_(i_j) - logsumexp(logits over the
    categories not yet chosen)]``. ``relaxed_rsample`` gives the differentiable
    k-hot relaxation of Xie & Ermon 2019 ("Reparameterizable Subset Sampling via
    Continuous Relaxations"): with ``alpha_1 = logits + G``, ``p_j =
    softmax(alpha_j / tau)``, ``alpha_(j+1) = alpha_j + log(1 - p_j)``, the sample
    is ``sum_j p_j`` (entries >= 0 summing to ``k``; it tends to the k-hot of the
    draw as ``tau -> 0``, but where perturbed logits are within about ``tau`` of
    each other an entry can exceed 1 slightly); ``hard=True`` makes its forward
    the exact k-hot of the same draw with the relaxed gradient.
    Replaces hand-written ``torch.topk(logits + gumbel)`` code: no torch or Pyro
    class exists for it.

    Args:
        logits: unnormalised log-probabilities along the last axis (``-inf``
            masked); or ``probs``. Exactly one of the two.
        k: subset size, 1 <= k <= K; every row needs at least ``k`` unmasked
            categories.

    Example:
        >>> d = GumbelTopK(torch.tensor([0.0, 1.0, 2.0, 3.0]), k=2)
        >>> s = d.sample((5,), seed=0)
        >>> s.shape, bool(d.log_prob(s).isfinite().all())
        (torch.Size([5, 2]), True)
    """

    arg_constraints = {"logits": constraints.real_vector, "probs": constraints.simplex}
    has_rsample = False
    _batched = ("logits",)
    _shared = ("k",)
    _shown = ("logits", "k")

    def __init__(self, logits: torch.Tensor | None = None, k: int | None = None,
                 probs: torch.Tensor | None = None, validate_args: bool | None = None) -> None:
        self.logits = categorical_logits(probs, logits)
        n_categories = self.logits.shape[-1]
        self.k = check_int_range(k, "k", 1, n_categories)
        check_k_unmasked(self.logits, self.k, -1)
        super().__init__(self.logits.shape[:-1], torch.Size((self.k,)),
                         validate_args=validate_args)

    @lazy_property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()

    @property
    def support(self) -> constraints.Constraint:
        return ordered_subset(self.logits.shape[-1])

    def _perturbed(self, sample_shape: ShapeLike, seed: SeedLike,
                   generator: torch.Generator | None) -> torch.Tensor:
        """``logits + G`` in the noise dtype, shape ``sample_shape + batch_shape + (K,)``."""
        sample_shape = torch.Size(sample_shape)
        logits = self.logits.expand(sample_shape + self.logits.shape)
        g = noise("gumbel", logits.shape, seed, generator, logits, len(sample_shape))
        return logits.to(g.dtype) + g

    def sample(self, sample_shape: ShapeLike = (), *, seed: SeedLike = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """int64 indices, shape ``sample_shape + batch_shape + (k,)``: the top ``k`` of
        ``logits + G`` (for an int seed, what :func:`gumbelkit.gumbel_topk` draws)."""
        with torch.no_grad():
            return self._perturbed(sample_shape, seed, generator).topk(self.k, -1).indices

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact log-probability of the ordered subset ``value`` (last axis, length k)."""
        if self._validate_args:
            self._validate_sample(value)
        index = value.long()
        logits = self.logits.to(_rng.noise_dtype(self.logits.dtype))
        remaining = logits.expand(index.shape[:-1] + logits.shape[-1:])
        log_p = remaining.gather(-1, index).sum(-1)
        for j in range(self.k):
            log_p = log_p - remaining.logsumexp(-1)
            remaining = remaining.scatter(-1, index[..., j:j + 1], -torch.inf)
        return log_p.to(self.logits.dtype)

    def relaxed_rsample(self, temperature: Temperature,
                        sample_shape: ShapeLike = (), hard: bool = False, *,
                        seed: SeedLike = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Relaxed k-hot sample, shape ``sample_shape + batch_shape + (K,)``.

        Args:
            temperature: ``tau > 0``: a float or a tensor of the batch shape.
            hard: forward the exact k-hot of the draw (the categories
                :meth:`sample` returns for the same ``seed``), backward the
                relaxed gradient.
        """
        tau = batch_temperature(temperature, self.batch_shape, self.logits)
        check_scaled_range(self.logits, tau, categorical=True, what="relaxed sample")
        tau = tau.unsqueeze(-1)
        perturbed = self._perturbed(sample_shape, seed, generator)
        alpha = perturbed
        khot = torch.zeros_like(perturbed)
        for j in range(self.k):
            a = divide_by_temperature(alpha, tau)
            log_p = a.log_softmax(-1)
            khot = khot + log_p.exp()
            if j + 1 < self.k:
                alpha = alpha + _log1m_softmax(a, log_p)
        if hard:
            chosen = perturbed.detach().topk(self.k, -1).indices
            exact = torch.zeros_like(khot).scatter_(-1, chosen, 1.0)
            khot = forward_as(exact, khot)
        return khot.to(self.logits.dtype)
