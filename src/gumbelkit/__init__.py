"""gumbelkit: learning through discrete choices in PyTorch."""

from . import distributions, estimators, nn, sampling, schedules
from .estimators import estimate
from .functional import (
    binary_concrete,
    gumbel_max,
    gumbel_noise,
    gumbel_softmax,
    gumbel_topk,
    hard_concrete,
    hard_concrete_deterministic_gate,
    hard_concrete_prob_nonzero,
    straight_through,
)
from .kernels import backend
from .permutations import gumbel_sinkhorn, matching, sinkhorn
from .sparse import sparse_gumbel_softmax

__version__ = "0.1.0"

__all__ = [
    "gumbel_noise",
    "gumbel_max",
    "gumbel_topk",
    "gumbel_softmax",
    "straight_through",
    "binary_concrete",
    "hard_concrete",
    "hard_concrete_prob_nonzero",
    "hard_concrete_deterministic_gate",
    "sparse_gumbel_softmax",
    "sinkhorn",
    "gumbel_sinkhorn",
    "matching",
    "backend",
    "schedules",
    "nn",
    "distributions",
    "estimate",
    "estimators",
    "sampling",
]
