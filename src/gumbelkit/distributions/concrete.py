"""Concrete (Gumbel-Softmax) distribution on the simplex, with a log-space density."""

from __future__ import annotations

import torch
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from .._validate import fail_if, first_index
from ._base import RoundedRelaxation
from ._common import simplex
from .exp_concrete import ExpConcrete, exp_concrete_log_density

__all__ = ["Concrete", "RelaxedOneHotCategorical"]


class Concrete(RoundedRelaxation):
    r"""The Concrete / Gumbel-Softmax distribution on the probability simplex.

    ``y = softmax((logits + G) / tau)`` with ``G_i`` i.i.d. standard Gumbel (Jang,
    Gu & Poole 2017; Maddison, Mnih & Teh 2017). Its density (w.r.t. Lebesgue
    measure on the first ``K - 1`` coordinates) is

    ``p(y) = Gamma(K) tau^(K-1) (sum_i pi_i / y_i^tau)^(-K) prod_i pi_i / y_i^(tau+1)``,

    evaluated in log space through the log-sample ``x = log y``:
    ``log p(y) = log p_ExpConcrete(x) - sum_i x_i`` (see :class:`ExpConcrete`).
    Same parameterisation as ``torch.distributions.RelaxedOneHotCategorical``
    (also exported under that name), but:

    * ``log_prob`` of own samples is finite down to ``tau = 0.01`` (torch's is
      NaN for most samples there): at low ``tau`` entries of ``y`` underflow to
      exactly 0, so ``rsample``/``sample`` keep the unrounded log-sample of the
      tensor they return and ``log_prob`` uses its value when given that tensor
      (or ``.detach()`` or an identity view of it) again; the gradient is that of
      scoring ``log(y)``, as for a new instance (the score function for a
      detached value). Any other value is scored through ``log(y)``;
      if an unmasked entry of it is exactly 0 the density is undefined there
      (on the boundary of the simplex it is 0, infinite or direction-dependent)
      and ``log_prob`` raises ``ValueError``: score such values with
      :class:`ExpConcrete` on log-samples instead.
    * ``validate_args`` accepts own samples (the sum-to-one check allows the
      rounding of ``K`` terms in the sample's dtype).
    * a per-row temperature has the batch shape and broadcasts in ``rsample``
      and ``log_prob`` alike; samples are seedable (``seed=``, ``generator=``).

    Masked categories (``logits = -inf`` / ``probs = 0``) are exactly 0 in every
    sample and drop out of the density.

    Args:
        temperature: ``tau > 0`` and finite: a float, or a tensor broadcasting to
            the batch shape ``logits.shape[:-1]`` (one temperature per row).
        probs: category probabilities along the last axis.
        logits: unnormalised log-probabilities along the last axis. Exactly one
            of ``probs``/``logits``.

    Example:
        >>> d = Concrete(0.01, logits=torch.randn(4, 5))
        >>> y = d.rsample((1000,), seed=0)
        >>> bool(d.log_prob(y).isfinite().all())
        True
    """

    arg_constraints = {"temperature": constraints.positive,
                       "logits": constraints.real_vector,
                       "probs": constraints.simplex}
    support = simplex
    has_rsample = True

    base_cls = ExpConcrete

    @lazy_property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        return x.exp()

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.log(y)

    def _at_boundary(self, y: torch.Tensor) -> torch.Tensor:
        return y == 0

    def _check_boundary(self, value: torch.Tensor, boundary: torch.Tensor) -> None:
        unmasked_zero = boundary & (self.logits > -torch.inf)
        fail_if(unmasked_zero, lambda: f"value is exactly 0 at index {first_index(unmasked_zero)} "
                "for a category with positive probability: the Concrete density is undefined "
                "on the boundary of the simplex. Pass the tensor rsample()/sample() returned "
                "(its log-sample is kept) or score log-samples with ExpConcrete",
                "value is exactly 0 for a category with positive probability")

    def log_prob_unrounded(self, x: torch.Tensor, value_dtype: torch.dtype) -> torch.Tensor:
        """``log p(y)`` from the log-sample ``x = log y``: ``log p_ExpConcrete(x) - sum_i x_i``
        (masked categories excluded), in the dtype of the parameters and the value."""
        log_p = exp_concrete_log_density(self.logits, self.temperature, x)
        jacobian = torch.where(self.logits == -torch.inf, 0.0, x.to(log_p.dtype)).sum(-1)
        return (log_p - jacobian).to(torch.promote_types(self.logits.dtype, value_dtype))


RelaxedOneHotCategorical = Concrete
