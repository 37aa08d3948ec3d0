"""``estimate``: every gradient estimator behind one call, and their registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import _rng
from .._validate import Temperature, check_int_range, check_logits, check_temperature
from ..functional import gumbel_softmax
from .arm import arm
from .disarm import disarm
from .exact import exact
from .gapped_st import gapped_st
from .gumbel_rao import gumbel_rao
from .pathwise import pathwise
from .rebar import rebar
from .reinforce import reinforce
from .reinmax import reinmax
from .relax import relax
from .rloo import rloo
from .st import st
from .st_gumbel import st_gumbel


@dataclass(frozen=True)
class Estimator:
    """One entry of the registry.

    ``fn(f, logits, *, n_samples, tau, seed, **options)``; ``options`` names
    the keyword options it accepts; ``unbiased`` says whether its expected
    gradient is the exact one; ``binary_only`` whether it needs K=2;
    ``relaxed_f`` whether ``f`` is also called on relaxed (non-one-hot) samples.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    options: tuple[str, ...]
    unbiased: bool
    binary_only: bool = False
    relaxed_f: bool = False
    min_samples: int = 1


ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (
    Estimator("exact", exact, ("max_configurations", "batch_ndim"), unbiased=True),
    Estimator("reinforce", reinforce, ("baseline", "ema_decay"), unbiased=True),
    Estimator("rloo", rloo, (), unbiased=True, min_samples=2),
    Estimator("st", pathwise(st), (), unbiased=False),
    Estimator("gumbel_softmax", pathwise(gumbel_softmax), (), unbiased=False, relaxed_f=True),
    Estimator("st_gumbel", pathwise(st_gumbel), (), unbiased=False),
    Estimator("reinmax", pathwise(reinmax), (), unbiased=False),
    Estimator("gumbel_rao", pathwise(gumbel_rao), ("k",), unbiased=False),
    Estimator("gapped_st", pathwise(gapped_st), ("gap",), unbiased=False),
    Estimator("rebar", rebar, ("eta",), unbiased=True, relaxed_f=True),
    Estimator("relax", relax, ("control",), unbiased=True),
    Estimator("arm", arm, (), unbiased=True, binary_only=True),
    Estimator("disarm", disarm, (), unbiased=True, binary_only=True),
)}

METHODS: tuple[str, ...] = tuple(ESTIMATORS)


def estimate(f: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, method: str, *,
             n_samples: int = 1, tau: Temperature = 1.0, seed: int | None = None,
             generator: torch.Generator | None = None, **options: object) -> torch.Tensor:
    """Monte Carlo estimate of ``E_{z ~ Categorical(softmax(logits))}[f(z)]`` whose
    gradient is the named estimator's.

    ``logits`` has shape ``(*batch, *variables, K)``: independent categorical
    variables, categories last. ``f`` receives one-hot samples of shape
    ``(m, *logits.shape)`` and returns values of shape ``(m, *batch)`` (batch
    may be empty); ``m`` is ``n_samples`` for most methods, ``2 n`` for
    arm/disarm, ``3 n`` for rebar, ``K**V`` for exact, so ``f`` must treat the
    leading axis as independent samples of any length. The result has shape
    ``(*batch)``; its gradient with respect to ``logits`` and to parameters
    inside ``f`` is the estimator's.

    Methods (``METHODS``): ``"exact"`` (enumeration), ``"reinforce"``,
    ``"rloo"``, ``"st"``, ``"gumbel_softmax"`` (``f`` sees relaxed samples),
    ``"st_gumbel"``, ``"reinmax"`` (tau >= 1), ``"gumbel_rao"`` (option ``k``),
    ``"gapped_st"`` (option ``gap``), ``"rebar"`` (option ``eta``; ``f`` must
    accept relaxed samples), ``"relax"`` (option ``control``, see
    :func:`relax_variance_loss`), ``"arm"`` and ``"disarm"`` (K=2 only).
    Unbiased: exact, reinforce, rloo, rebar, relax, arm, disarm.

    Args:
        f: objective, differentiable in its input for the pathwise methods.
        logits: floating tensor, finite or ``-inf`` (masked categories).
        method: one of ``METHODS``.
        n_samples: Monte Carlo samples (pairs for arm/disarm), >= 1 (>= 2 for rloo).
        tau: temperature of the relaxation, > 0 (>= 1 for reinmax); ignored by
            exact, reinforce, rloo, arm, disarm.
        seed, generator: see :func:`gumbelkit.gumbel_noise`: an int, or an integer
            tensor of one seed per categorical variable (broadcasting to
            ``logits.shape[:-1]``), with which a variable's draws depend only on
            its own seed (the same estimate alone or in any batch).
        options: method options (listed above); unknown ones are an error.

    Example:
        >>> logits = torch.zeros(3, 4, requires_grad=True)   # 3 variables, K=4
        >>> f = lambda z: (z * torch.arange(4.0)).sum((-1, -2))
        >>> value = estimate(f, logits, "rloo", n_samples=8, seed=0)
        >>> value.backward()
    """
    if method not in ESTIMATORS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    entry = ESTIMATORS[method]
    check_logits(logits, -1)
    tau = check_temperature(tau, logits, -1)
    check_int_range(n_samples, "n_samples", entry.min_samples)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        allowed = ", ".join(entry.options) or "none"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; "
                         f"its options: {allowed}")
    # exact draws nothing: it must not advance the global RNG either.
    _rng.check_seed_source(seed, generator)
    resolved = _rng.Seed(scalar=0) if method == "exact" else _rng.resolve_seed(seed, generator)
    return entry.fn(f, logits, n_samples=n_samples, tau=tau, seed=resolved, **options)
