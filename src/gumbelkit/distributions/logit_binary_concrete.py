"""LogitBinaryConcrete: the relaxed Bernoulli over logit-samples (the numerically safe form)."""

from __future__ import annotations

import torch
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from .._autograd import divide_by_temperature
from .._validate import Temperature, check_unit_interval, dtype_name, fail_if, first_index
from ._base import DirectRelaxation
from ._common import (
    Parameter,
    SeedLike,
    ShapeLike,
    batch_temperature,
    binary_logits,
    check_scaled_range,
    noise,
)

__all__ = ["LogitBinaryConcrete"]


def logistic_log_density(x: torch.Tensor, logits: torch.Tensor,
                         temperature: torch.Tensor) -> torch.Tensor:
    """``log p(x) = log tau + u - 2 softplus(u)`` with ``u = logits - tau x``.

    Evaluated as ``log tau - |u| - 2 log1p(exp(-|u|))`` (the same function), which
    stays finite wherever ``u`` is: ``2 softplus(u)`` alone overflows for ``u``
    above half the largest float.
    """
    u = logits - temperature * x
    magnitude = u.abs()
    return torch.log(temperature) - magnitude - 2 * torch.log1p(torch.exp(-magnitude))


def logit(q: torch.Tensor) -> torch.Tensor:
    """``log q - log(1 - q)``, exact near both ends of (0, 1)."""
    return torch.log(q) - torch.log1p(-q)


class LogitBinaryConcrete(DirectRelaxation):
    r"""The relaxed Bernoulli over logit-samples: ``x = (logits + L) / tau``.

    ``L = log U - log(1 - U)`` is standard logistic noise (Maddison, Mnih & Teh
    2017, appendix B), so ``sigmoid(x)`` is a :class:`BinaryConcrete` sample. ``x``
    is logistic with location ``logits / tau`` and scale ``1 / tau``:

    ``log p(x) = log tau + u - 2 softplus(u)``, ``u = logits - tau x``;
    ``cdf(x) = sigmoid(tau x - logits)``; ``icdf(q) = (logits + logit(q)) / tau``.

    The counterpart of ``torch.distributions.relaxed_bernoulli.LogitRelaxedBernoulli``
    with seedable samples, per-element temperatures, ``cdf`` and ``icdf``.

    Args:
        temperature: ``tau > 0`` and finite: a float or a tensor broadcasting to
            the batch shape (the shape of ``logits``).
        probs: Bernoulli probabilities strictly inside (0, 1), a tensor or a number.
        logits: finite Bernoulli logits, a tensor or a number. Exactly one of
            ``probs``/``logits``.

    Example:
        >>> d = LogitBinaryConcrete(0.5, logits=torch.tensor([0.0, 2.0]))
        >>> x = d.rsample((3,), seed=0)
        >>> x.shape
        torch.Size([3, 2])
    """

    arg_constraints = {"temperature": constraints.positive,
                       "logits": constraints.real,
                       "probs": constraints.unit_interval}
    support = constraints.real
    has_rsample = True

    def __init__(self, temperature: Temperature, probs: Parameter | None = None,
                 logits: Parameter | None = None, validate_args: bool | None = None) -> None:
        self.logits = binary_logits(probs, logits)
        self.temperature = batch_temperature(temperature, self.logits.shape, self.logits)
        super().__init__(self.logits.shape, torch.Size(), validate_args=validate_args)

    @lazy_property
    def probs(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    def sample_in_noise_dtype(self, sample_shape: ShapeLike = (), *, seed: SeedLike = None,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """``(logits + L) / tau`` in the noise dtype (float32, or float64).

        The logistic noise is laid out as in :func:`gumbelkit.binary_concrete` on
        logits expanded to ``sample_shape + batch_shape``: the last axis is the
        column axis, the leading axes are rows keyed by flat index.
        """
        check_scaled_range(self.logits, self.temperature, categorical=False)
        sample_shape = torch.Size(sample_shape)
        shape = self._extended_shape(sample_shape)
        noise_l = noise("logistic", shape, seed, generator, self.logits, len(sample_shape))
        return divide_by_temperature(self.logits.to(noise_l.dtype) + noise_l, self.temperature)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dtype = torch.promote_types(self.temperature.dtype, value.dtype)
        log_p = logistic_log_density(value.to(dtype), self.logits.to(dtype),
                                     self.temperature.to(dtype))
        return log_p.to(torch.promote_types(self.logits.dtype, value.dtype))

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X <= x) = sigmoid(tau x - logits)``."""
        if self._validate_args:
            self._validate_sample(value)
        return torch.sigmoid(self.temperature * value - self.logits)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """``(logits + logit(q)) / tau`` for ``q`` in [0, 1] (``-inf``/``+inf`` at the ends).

        Raises ``ValueError`` where the quotient overflows for ``q`` inside (0, 1).
        """
        check_unit_interval(value, "q", closed=True)
        x = (self.logits + logit(value)) / self.temperature
        overflow = torch.isinf(x.detach()) & (value > 0) & (value < 1)

        def message() -> str:
            index = first_index(overflow)
            numerator = (self.logits + logit(value)).detach().expand(x.shape)[index]
            tau = self.temperature.detach().expand(x.shape)[index]
            return (f"logits / temperature overflow: (logits + logit(q)) = "
                    f"{float(numerator):.6g} over temperature {float(tau):.6g} (at index "
                    f"{index}) overflows {dtype_name(x.dtype)}; allowed: "
                    f"|logits + logit(q)| / temperature <= {torch.finfo(x.dtype).max:.6g}")

        fail_if(overflow, message, "logits / temperature overflow")
        return x
