"""Every example in a docstring of the package runs and prints what it says.

The modules are found by walking the package, so a new module's examples run
without being listed here. The estimators' examples (and the measurement
helpers that use them) see the estimator functions by name.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import gumbelkit
import gumbelkit.estimators as estimators


def _modules_with_examples() -> list[str]:
    found = []
    for info in pkgutil.walk_packages(gumbelkit.__path__, "gumbelkit."):
        if info.name.endswith("__main__"):  # importing it runs the command line
            continue
        module = importlib.import_module(info.name)
        if any(test.examples for test in doctest.DocTestFinder().find(module)):
            found.append(info.name)
    return found


MODULES = _modules_with_examples()
WITH_ESTIMATOR_NAMES = ("gumbelkit.estimators.", "gumbelkit.experiments.measurement")


def test_the_walk_finds_the_modules_with_examples():
    for name in ("gumbelkit.functional", "gumbelkit.distributions.concrete",
                 "gumbelkit.estimators.st", "gumbelkit.sampling.sampler",
                 "gumbelkit.integrations.transformers._generate"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    names = {"torch": torch, "gumbelkit": gumbelkit}
    if name.startswith(WITH_ESTIMATOR_NAMES):
        names.update({n: getattr(estimators, n) for n in estimators.__all__})
    result = doctest.testmod(module, extraglobs=names, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
