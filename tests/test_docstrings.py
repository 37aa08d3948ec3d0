"""Every example in a public docstring runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

import gumbelkit

MODULES = [
    "gumbelkit._autograd",
    "gumbelkit.functional",
    "gumbelkit.schedules",
    "gumbelkit.nn.temperature",
    "gumbelkit.sparse",
    "gumbelkit.permutations",
    "gumbelkit.nn.gumbel_softmax",
    "gumbelkit.nn.router",
    "gumbelkit.nn.moe",
    "gumbelkit.nn.hard_concrete_gate",
    "gumbelkit.nn.l0_linear",
    "gumbelkit.nn.soft_embedding",
    "gumbelkit.nn.gumbel_quantizer",
    "gumbelkit.nn.mixed_op",
    "gumbelkit.experiments.training",
    "gumbelkit.experiments.preflight",
    "gumbelkit.experiments.data",
    "gumbelkit.sampling.sampler",
    "gumbelkit.sampling.beam_search",
    "gumbelkit.integrations.transformers._beam",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"torch": torch, "gumbelkit": gumbelkit},
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0
