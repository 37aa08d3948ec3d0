"""``torch.distributions`` subclasses for discrete choices and their relaxations.

Every class samples through :mod:`gumbelkit._rng` (``rsample(sample_shape, *,
seed=None, generator=None)``), computes its density in log space, accepts its
own samples under ``validate_args`` and takes per-row temperature tensors of the
batch shape. See ``docs/distributions.md``.
"""

from .binary_concrete import BinaryConcrete
from .concrete import Concrete, RelaxedOneHotCategorical
from .exp_concrete import ExpConcrete
from .gumbel_topk import GumbelTopK
from .hard_concrete import HardConcrete
from .logit_binary_concrete import LogitBinaryConcrete
from .straight_through import StraightThrough

__all__ = [
    "Concrete",
    "RelaxedOneHotCategorical",
    "ExpConcrete",
    "BinaryConcrete",
    "LogitBinaryConcrete",
    "HardConcrete",
    "StraightThrough",
    "GumbelTopK",
]
