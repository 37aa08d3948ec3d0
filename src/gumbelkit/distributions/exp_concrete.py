"""ExpConcrete: the Concrete distribution over log-samples (the numerically safe form)."""

from __future__ import annotations

import torch
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from .._autograd import divide_by_temperature
from .._validate import Temperature, dtype_name, fail_if, first_index
from ._base import DirectRelaxation
from ._common import (
    SeedLike,
    ShapeLike,
    batch_temperature,
    categorical_logits,
    check_scaled_range,
    log_simplex,
    noise,
)

__all__ = ["ExpConcrete"]


def exp_concrete_log_density(logits: torch.Tensor, temperature: torch.Tensor,
                             x: torch.Tensor) -> torch.Tensor:
    """log p(x) of the ExpConcrete distribution, shape ``x.shape[:-1]``.

    Computed in the wider of the temperature's (noise) dtype and ``x``'s dtype.

    With ``a_i = log pi_i - tau x_i`` over the ``n`` unmasked categories:
    ``log p(x) = log Gamma(n) + (n - 1) log tau + sum_i a_i - n logsumexp_i a_i``.
    Masked categories (``logits = -inf``) drop out; an unmasked ``x_i = -inf``,
    or a masked ``x_i > -inf``, has density 0.
    """
    dtype = torch.promote_types(temperature.dtype, x.dtype)
    temperature = temperature.to(dtype)
    logits, x = torch.broadcast_tensors(logits.to(dtype), x.to(dtype))
    tau = temperature.unsqueeze(-1)
    masked = logits == -torch.inf
    off_support = (masked & (x > -torch.inf)) | (~masked & (x == -torch.inf))
    drop = masked | off_support
    scaled = tau * torch.where(drop, 0.0, x)
    overflow = torch.isinf(scaled.detach())

    def message() -> str:
        index = first_index(overflow)
        return (f"temperature * log-sample overflow in log_prob: temperature "
                f"{float(tau.detach().expand_as(x)[index]):.6g} times x = "
                f"{float(x.detach()[index]):.6g} (at index {index}) overflows "
                f"{dtype_name(dtype)}; allowed: |temperature * x| <= "
                f"{torch.finfo(dtype).max:.6g}")

    fail_if(overflow, message, "temperature * log-sample overflow in log_prob")
    a = torch.where(drop, 0.0, logits) - scaled
    n = (~masked).sum(-1).to(dtype)
    lse = a.masked_fill(masked, -torch.inf).logsumexp(-1)
    # sum_i (a_i - lse): each term is <= 0, so the sum cannot overflow where sum_i a_i would
    body = (a - lse.unsqueeze(-1)).masked_fill(masked, 0.0).sum(-1)
    log_p = torch.lgamma(n) + (n - 1) * torch.log(temperature) + body
    return log_p.masked_fill(off_support.any(-1), -torch.inf)


class ExpConcrete(DirectRelaxation):
    r"""The Concrete distribution over log-samples ``x = log y``.

    ``x = log_softmax((logits + G) / tau)`` with ``G_i`` i.i.d. standard Gumbel
    (Maddison, Mnih & Teh 2017, "The Concrete Distribution", appendix C), so
    ``exp(x)`` is a :class:`Concrete` sample. With ``a_i = log pi_i - tau x_i``,

    ``log p(x) = log Gamma(K) + (K - 1) log tau + sum_i a_i - K logsumexp_i a_i``,

    evaluated in log space: finite for every own sample down to ``tau = 0.01``
    and up to ``K = 10,000`` (``torch.distributions.ExpRelaxedCategorical`` uses
    the same formula but has no seeds and no per-row temperature). Masked
    categories (``logits = -inf`` or ``probs = 0``) have ``x_i = -inf`` and drop
    out of the density (``K`` counts the unmasked ones).

    Args:
        temperature: ``tau > 0`` and finite: a float, or a tensor broadcasting to
            the batch shape ``logits.shape[:-1]`` (one temperature per row).
        probs: category probabilities, last axis (normalised; zeros are masked).
        logits: unnormalised log-probabilities, last axis (``-inf`` masked).
            Give exactly one of ``probs``/``logits``.

    Example:
        >>> d = ExpConcrete(0.1, logits=torch.zeros(3))
        >>> x = d.rsample((2,), seed=0)
        >>> d.log_prob(x).isfinite().all()
        tensor(True)
    """

    arg_constraints = {"temperature": constraints.positive,
                       "logits": constraints.real_vector,
                       "probs": constraints.simplex}
    support = log_simplex
    has_rsample = True

    def __init__(self, temperature: Temperature, probs: torch.Tensor | None = None,
                 logits: torch.Tensor | None = None, validate_args: bool | None = None) -> None:
        self.logits = categorical_logits(probs, logits)
        batch_shape = self.logits.shape[:-1]
        self.temperature = batch_temperature(temperature, batch_shape, self.logits)
        super().__init__(batch_shape, self.logits.shape[-1:], validate_args=validate_args)

    @lazy_property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()

    def sample_in_noise_dtype(self, sample_shape: ShapeLike = (), *, seed: SeedLike = None,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """``log_softmax((logits + G) / tau)`` in the noise dtype (float32, or float64).

        With an int seed the Gumbel noise of element ``(row, i)`` is keyed by the flat
        row index over ``sample_shape + batch_shape``, as in
        :func:`gumbelkit.gumbel_softmax` on logits expanded to that shape; ``seed`` may
        also be one seed per batch row (rows are then keyed by their sample index).
        """
        check_scaled_range(self.logits, self.temperature, categorical=True)
        sample_shape = torch.Size(sample_shape)
        shape = self._extended_shape(sample_shape)
        g = noise("gumbel", shape, seed, generator, self.logits, len(sample_shape))
        perturbed = self.logits.to(g.dtype) + g
        return divide_by_temperature(perturbed, self.temperature.unsqueeze(-1)).log_softmax(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_p = exp_concrete_log_density(self.logits, self.temperature, value)
        return log_p.to(torch.promote_types(self.logits.dtype, value.dtype))
