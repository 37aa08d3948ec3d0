"""Every example in the estimators' docstrings runs and prints what it says."""

import doctest
import importlib

import pytest
import torch

import gumbelkit
import gumbelkit.estimators as estimators

MODULES = [f"gumbelkit.estimators.{name}" for name in
           ("st", "st_gumbel", "reinmax", "gumbel_rao", "gapped_st", "reinforce", "relax",
            "dispatch")] + ["gumbelkit.experiments.measurement"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    names = {n: getattr(estimators, n) for n in estimators.__all__}
    result = doctest.testmod(module, extraglobs={"torch": torch, "gumbelkit": gumbelkit, **names},
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0
