"""BinaryConcrete: the relaxed Bernoulli on [0, 1], with a log-space density."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from .._validate import check_unit_interval
from ._base import RoundedRelaxation
from .logit_binary_concrete import LogitBinaryConcrete, logistic_log_density, logit

__all__ = ["BinaryConcrete"]


class BinaryConcrete(RoundedRelaxation):
    r"""Binary Concrete (relaxed Bernoulli): ``y = sigmoid((logits + L) / tau)``.

    ``L`` is standard logistic noise (Maddison, Mnih & Teh 2017; Jang et al.
    2017). With ``alpha = exp(logits)`` the density on (0, 1) is

    ``p(y) = tau alpha y^(-tau-1) (1-y)^(-tau-1) / (alpha y^(-tau) + (1-y)^(-tau))^2``,

    evaluated in log space through the logit-sample ``x = logit(y)``:
    ``log p(y) = log p_LogitBinaryConcrete(x) + softplus(x) + softplus(-x)``.
    ``cdf(y) = sigmoid(tau logit(y) - logits)``, ``icdf(q) = sigmoid((logits +
    logit(q)) / tau)``; ``P(y > 1/2) = sigmoid(logits)`` at every ``tau``.

    Replaces ``torch.distributions.RelaxedBernoulli``: at low ``tau`` samples
    round to exactly 0 or 1, so ``rsample``/``sample`` keep the unrounded
    logit-sample of the tensor they return and ``log_prob`` uses its value when
    given that tensor (or ``.detach()`` or an identity view of it) again, which
    keeps ``log_prob`` of own samples finite; the gradient is that of scoring
    ``logit(y)``, as for a new instance. Any other value is scored through
    ``logit(y)``; at exactly 0 or 1 that is the limit of the density: ``+inf``
    for ``tau < 1``, ``-inf`` for ``tau > 1``, ``log tau -+ logits`` (at 0 / at
    1) for ``tau = 1``.

    Args:
        temperature: ``tau > 0`` and finite: a float or a tensor broadcasting to
            the batch shape (the shape of ``logits``).
        probs: Bernoulli probabilities strictly inside (0, 1), a tensor or a number.
        logits: finite Bernoulli logits, a tensor or a number. Exactly one of
            ``probs``/``logits``.

    Example:
        >>> d = BinaryConcrete(0.01, logits=torch.zeros(5))
        >>> y = d.rsample((100,), seed=0)
        >>> bool(d.log_prob(y).isfinite().all())
        True
    """

    arg_constraints = {"temperature": constraints.positive,
                       "logits": constraints.real,
                       "probs": constraints.unit_interval}
    support = constraints.unit_interval
    has_rsample = True

    base_cls = LogitBinaryConcrete

    @lazy_property
    def probs(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return logit(y)

    def _at_boundary(self, y: torch.Tensor) -> torch.Tensor:
        return (y == 0) | (y == 1)

    def log_prob_unrounded(self, x: torch.Tensor, value_dtype: torch.dtype) -> torch.Tensor:
        """``log p(y)`` from the logit-sample ``x = logit(y)``:
        ``log p_LogitBinaryConcrete(x) + softplus(x) + softplus(-x)``, the end limits
        at ``x = -+inf``, in the dtype of the parameters and the value."""
        dtype = torch.promote_types(self.temperature.dtype, x.dtype)
        x = x.to(dtype)
        logits, tau = self.logits.to(dtype), self.temperature.to(dtype)
        at_end = torch.isinf(x)
        safe_x = torch.where(at_end, 0.0, x)
        inside = logistic_log_density(safe_x, logits, tau) + F.softplus(safe_x) \
            + F.softplus(-safe_x)
        growth = torch.where(tau < 1, torch.inf, torch.where(tau > 1, -torch.inf, 0.0))
        end_limit = torch.log(tau) + torch.where(x > 0, logits, -logits) + growth
        log_p = torch.where(at_end, end_limit, inside)
        return log_p.to(torch.promote_types(self.logits.dtype, value_dtype))

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(Y <= y) = sigmoid(tau logit(y) - logits)`` (0 at y = 0, 1 at y = 1)."""
        if self._validate_args:
            self._validate_sample(value)
        return torch.sigmoid(self.temperature * logit(value) - self.logits)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """``sigmoid((logits + logit(q)) / tau)`` for ``q`` in [0, 1]."""
        check_unit_interval(value, "q", closed=True)
        # not through base_dist.icdf: where (logits + logit(q)) / tau overflows, the
        # logit-sample has no float value but sigmoid of the infinity is the exact 0 or 1
        return torch.sigmoid((self.logits + logit(value)) / self.temperature)
