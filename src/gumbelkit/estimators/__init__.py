"""Gradient estimators for categorical variables, one per file, behind :func:`estimate`.

Sample-level estimators return a (one-hot or relaxed) sample whose backward
pass is the estimator's: :func:`st`, :func:`gumbel_softmax`,
:func:`st_gumbel`, :func:`reinmax`, :func:`gumbel_rao`, :func:`gapped_st`
(``SAMPLE_ESTIMATORS`` maps their names to them; common signature
``fn(logits, tau=1.0, *, dim=-1, seed=None, generator=None, **options)``).
:func:`estimate` wraps every method, including the score-function family
(reinforce, rloo, rebar, relax, arm, disarm) and exact enumeration.
The harness that measures an estimator's bias and spread against the exact
gradient (``gradient_stats`` and its research problems) belongs to the app,
``gumbelkit.experiments.measurement`` and ``gumbelkit.experiments.problems``.
"""

from collections.abc import Callable

import torch

from ..functional import gumbel_softmax
from .dispatch import ESTIMATORS, METHODS, Estimator, estimate
from .gapped_st import gapped_st
from .gumbel_rao import gumbel_rao
from .reinforce import EMABaseline
from .reinmax import reinmax
from .relax import relax_variance_loss
from .st import st
from .st_gumbel import st_gumbel

SAMPLE_ESTIMATORS: dict[str, Callable[..., torch.Tensor]] = {
    "st": st,
    "gumbel_softmax": gumbel_softmax,
    "st_gumbel": st_gumbel,
    "reinmax": reinmax,
    "gumbel_rao": gumbel_rao,
    "gapped_st": gapped_st,
}

__all__ = [
    "estimate",
    "ESTIMATORS",
    "METHODS",
    "Estimator",
    "SAMPLE_ESTIMATORS",
    "st",
    "gumbel_softmax",
    "st_gumbel",
    "reinmax",
    "gumbel_rao",
    "gapped_st",
    "EMABaseline",
    "relax_variance_loss",
]
