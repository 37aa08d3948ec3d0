"""StraightThrough: hard samples forward, the relaxed sample's gradient backward."""

from __future__ import annotations

import torch
from torch.distributions import constraints

from .._autograd import forward_as
from ..functional import straight_through
from ._base import SeededDistribution
from ._common import SampleCache, SeedLike, ShapeLike
from .binary_concrete import BinaryConcrete
from .concrete import Concrete

__all__ = ["StraightThrough"]


class StraightThrough(SeededDistribution):
    r"""Wraps :class:`Concrete` or :class:`BinaryConcrete`: hard forward, soft backward.

    ``rsample`` draws a relaxed sample ``y`` from the wrapped distribution and
    returns its hard value (the exact one-hot of ``argmax y`` for ``Concrete``,
    ``1[y > 1/2]`` for ``BinaryConcrete``) whose gradient is that of ``y``
    (Bengio et al. 2013; the straight-through Gumbel-Softmax of Jang et al.
    2017). ``log_prob`` of that hard sample is ``base_dist.log_prob(y)``: the
    density of the relaxed sample that produced it, as Pyro's
    ``RelaxedOneHotCategoricalStraightThrough`` does. The soft sample behind the
    most recent ``rsample``/``sample`` is kept for this (given that hard tensor,
    ``.detach()`` or an identity view of it); ``log_prob`` of any other value
    raises ``ValueError`` (a hard value alone has no density under the
    relaxation); score soft values with ``base_dist.log_prob``. The kept soft
    sample is a value, not a gradient path: the hard value stands in for it, so
    a detached hard sample gives the score function and the tensor ``rsample``
    returned adds the pathwise term, as ``base_dist.log_prob`` of the soft
    sample (detached, or as returned) would.

    Args:
        base_dist: a :class:`Concrete` or :class:`BinaryConcrete`.

    Example:
        >>> d = StraightThrough(Concrete(0.5, logits=torch.zeros(3, requires_grad=True)))
        >>> h = d.rsample(seed=0)
        >>> sorted(h.tolist()), bool(d.log_prob(h).isfinite())
        ([0.0, 0.0, 1.0], True)
    """

    arg_constraints: dict = {}
    has_rsample = True
    _batched = ("base_dist",)

    def __init__(self, base_dist: Concrete | BinaryConcrete,
                 validate_args: bool | None = None) -> None:
        if not isinstance(base_dist, (Concrete, BinaryConcrete)):
            raise TypeError(f"base_dist must be a Concrete or BinaryConcrete distribution, "
                            f"got {type(base_dist).__name__}")
        self.base_dist = base_dist
        self._refresh()
        super().__init__(base_dist.batch_shape, base_dist.event_shape,
                         validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        if isinstance(self.base_dist, Concrete):
            return constraints.one_hot
        return constraints.boolean

    def _refresh(self) -> None:
        self._cache = SampleCache()

    def rsample(self, sample_shape: ShapeLike = (), *, seed: SeedLike = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Hard sample (exact 0/1 values) with the relaxed sample's gradient."""
        soft = self.base_dist.rsample(sample_shape, seed=seed, generator=generator)
        if isinstance(self.base_dist, Concrete):
            hard = straight_through(soft)
        else:
            hard = forward_as((soft > 0.5).to(soft.dtype), soft)
        self._cache.remember(hard, (soft.detach(), self.base_dist.kept_sample(soft)))
        return hard

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``base_dist.log_prob`` of the soft sample behind the hard sample ``value``.

        The soft sample enters as a value: ``value`` stands in for it in the
        graph (straight-through), so the gradient is the score of the
        parameters for a detached ``value``, and for the tensor ``rsample``
        returned it adds the pathwise term of ``base_dist.log_prob(soft)``.
        """
        if self._validate_args:
            self._validate_sample(value)
        kept = self._cache.lookup(value)
        if kept is None:
            raise ValueError("StraightThrough.log_prob scores the relaxed sample behind a hard "
                             "sample, so value must be the tensor the most recent rsample() or "
                             "sample() returned; score relaxed values with base_dist.log_prob")
        soft, unrounded = kept
        stand_in = forward_as(soft, value)
        u = self.base_dist.unrounded(stand_in, unrounded, self._cache.holds(value))
        return self.base_dist.log_prob_unrounded(u, value.dtype)

    def __repr__(self) -> str:
        return f"StraightThrough({self.base_dist!r})"
