"""Modules built from gumbelkit's ops."""

from .gumbel_quantizer import CodebookUsage, GumbelQuantizer, QuantizerOutput, codebook_usage
from .gumbel_softmax import GumbelSoftmax
from .hard_concrete_gate import HardConcreteGate
from .l0_linear import L0Linear
from .mixed_op import MixedOp, Zero, architecture_parameters, derive_architecture, mixed_ops
from .moe import MoE, MoEOutput
from .router import GumbelRouter, RouterOutput
from .soft_embedding import SoftEmbedding
from .temperature import LearnableTemperature

__all__ = [
    "LearnableTemperature",
    "GumbelSoftmax",
    "GumbelRouter",
    "RouterOutput",
    "MoE",
    "MoEOutput",
    "HardConcreteGate",
    "L0Linear",
    "SoftEmbedding",
    "GumbelQuantizer",
    "QuantizerOutput",
    "codebook_usage",
    "CodebookUsage",
    "MixedOp",
    "Zero",
    "mixed_ops",
    "derive_architecture",
    "architecture_parameters",
]
