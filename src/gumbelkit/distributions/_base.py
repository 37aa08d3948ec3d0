"""Behaviour every gumbelkit distribution shares: seeded ``sample``, generic ``expand`` and
``repr``, and the kept unrounded sample of the relaxations whose values round."""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from .._autograd import forward_as
from .._validate import Temperature
from ._common import Parameter, SampleCache, SeedLike, ShapeLike, describe


class SeededDistribution(Distribution):
    """``sample`` is ``rsample`` without gradient, with the same ``seed``/``generator``.

    Subclasses list their batch-leading parameters in ``_batched`` (tensors, or
    distributions, expanded by ``expand``), their other settings in ``_shared``
    (copied), and the fields ``repr`` shows in ``_shown``.
    """

    _batched: tuple[str, ...] = ("logits", "temperature")
    _shared: tuple[str, ...] = ()
    _shown: tuple[str, ...] = ("temperature", "logits")

    def sample(self, sample_shape: ShapeLike = (), *, seed: SeedLike = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape, seed=seed, generator=generator)

    def expand(self, batch_shape: ShapeLike, _instance=None) -> SeededDistribution:
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        n_batch = len(self.batch_shape)
        for name in self._batched:
            value = getattr(self, name)
            if isinstance(value, Distribution):
                setattr(new, name, value.expand(batch_shape))
            else:
                setattr(new, name, value.expand(batch_shape + value.shape[n_batch:]))
        for name in self._shared:
            setattr(new, name, getattr(self, name))
        new._refresh()
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _refresh(self) -> None:
        """Rebuild what derives from the parameters (after ``__init__`` or ``expand``)."""

    def __repr__(self) -> str:
        return describe(type(self).__name__, **{name: getattr(self, name) for name in self._shown})


class RoundedRelaxation(SeededDistribution):
    """A relaxation ``y = transform(u)`` of a base distribution over unrounded ``u``.

    ``rsample`` keeps ``u`` (in the noise dtype) of the tensor it returns, so
    ``log_prob`` can score that tensor even where ``y`` rounded to a boundary
    value (see :class:`SampleCache`). Subclasses set ``base_cls`` (whose
    ``sample_in_noise_dtype`` draws ``u``) and define ``_transform``, its
    inverse ``_inverse``, ``_at_boundary`` (where the inverse is infinite) and
    ``log_prob_unrounded`` (the log density from ``u``).

    The kept ``u`` enters ``log_prob`` as a value only: ``log_prob(value)`` has
    the autograd graph of ``log_prob_unrounded(_inverse(value))``, the score of the
    parameters plus the dependence on ``value`` (and through it on whatever
    produced ``value``), exactly as for a new instance that never sampled.
    Where ``value`` is on the boundary (an entry rounded to 0 or 1) the
    derivative of the inverse is infinite, and below the smallest normal number
    it overflows; at such entries of a value with a kept ``u`` the gradient
    with respect to ``value`` is 0, and, for the tensor ``rsample`` returned
    itself, the dependence on the parameters through the sample runs through
    ``u`` (the chain rule through the rounded entry would give ``inf * 0``).
    """

    base_cls: type
    _batched = ("base_dist",)

    def __init__(self, temperature: Temperature, probs: Parameter | None = None,
                 logits: Parameter | None = None, validate_args: bool | None = None) -> None:
        self.base_dist = self.base_cls(temperature, probs=probs, logits=logits,
                                       validate_args=False)
        self._refresh()
        super().__init__(self.base_dist.batch_shape, self.base_dist.event_shape,
                         validate_args=validate_args)

    def _refresh(self) -> None:
        self.logits = self.base_dist.logits
        self.temperature = self.base_dist.temperature
        self._cache = SampleCache()

    def rsample(self, sample_shape: ShapeLike = (), *, seed: SeedLike = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample, shape ``sample_shape + batch_shape + event_shape``.

        Equals the functional op on the logits expanded to that shape with the
        same ``seed`` (up to rounding): the noise rows are keyed by their flat
        index over ``sample_shape + batch_shape``.
        """
        u = self.base_dist.sample_in_noise_dtype(sample_shape, seed=seed, generator=generator)
        y = self._transform(u).to(self.logits.dtype)
        self._cache.remember(y, u)
        return y

    def kept_sample(self, value: torch.Tensor) -> torch.Tensor | None:
        """The unrounded ``u`` behind ``value`` if ``value`` is the last sample, else None."""
        return self._cache.lookup(value)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        u = self.unrounded(value, self._cache.lookup(value), self._cache.holds(value))
        return self.log_prob_unrounded(u, value.dtype)

    def unrounded(self, value: torch.Tensor, kept: torch.Tensor | None,
                  is_sample: bool) -> torch.Tensor:
        """``_inverse(value)`` with the autograd graph of computing it from ``value``.

        ``kept``: the unrounded ``u`` behind ``value`` (or None): its value
        replaces ``_inverse(value)``, which rounding may have moved or made
        infinite. ``is_sample``: ``value`` is the tensor ``rsample`` returned
        with ``kept``, so its graph is ``transform(kept)`` and ``kept``'s own
        graph stands in for it at rounded entries (on the boundary, or below
        the smallest normal number, where ``1 / value`` overflows and the chain
        rule through ``value`` would give ``inf * 0``).
        """
        boundary = self._at_boundary(value)
        inverse = self._inverse(torch.where(boundary, 0.5, value))
        if kept is None:
            self._check_boundary(value, boundary)
            return torch.where(boundary, self._inverse(value.detach()), inverse)
        exact = kept.detach()
        # forward: exactly the kept value; backward: the derivative of the inverse at value
        reattached = forward_as(exact, inverse)
        rounded = boundary | (value.abs() < torch.finfo(value.dtype).smallest_normal)
        return torch.where(rounded, kept if is_sample else exact, reattached)

    def _check_boundary(self, value: torch.Tensor, boundary: torch.Tensor) -> None:
        """Raise where a boundary value has no density (a value without a kept sample)."""


class DirectRelaxation(SeededDistribution):
    """A relaxation sampled directly from the noise: ``rsample`` rounds the subclass's
    ``sample_in_noise_dtype`` (float32, or float64) to the parameters' dtype."""

    def rsample(self, sample_shape: ShapeLike = (), *, seed: SeedLike = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample, shape ``sample_shape + batch_shape + event_shape``."""
        u = self.sample_in_noise_dtype(sample_shape, seed=seed, generator=generator)
        return u.to(self.logits.dtype)
