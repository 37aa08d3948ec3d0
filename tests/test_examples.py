"""The worked examples run end to end (a one-epoch smoke run; the full runs are
in the README)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name,expect", [
    ("l0_pruned_mlp", ["plain MLP", "exported nn.Linear over kept", "pixels pruned"]),
    ("moe_digits", ["balance coef", "load CV"]),
    ("dvae_digits", ["gumbel soft", "gumbel straight-through", "VQ (nearest)", "dead codes"]),
    ("nas_digits", ["derived edges", "DARTS / GDAS", "derive_architecture"]),
])
def test_example_smoke_run(name, expect, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module = importlib.import_module(name)
    threads = torch.get_num_threads()
    try:
        assert module.main(["--epochs", "1", "--batch", "720", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop(name, None)
    out = capsys.readouterr().out
    for text in expect:
        assert text in out


def test_sort_numbers_smoke_run(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module = importlib.import_module("sort_numbers")
    threads = torch.get_num_threads()
    try:
        assert module.main(["--sizes", "4,6", "--steps", "5", "--test", "20"]) == 0
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("sort_numbers", None)
    out = capsys.readouterr().out
    for text in ("prop. any wrong", "prop. wrong", "not reproduced here"):
        assert text in out


def test_token_passing_smoke_run(capsys, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module = importlib.import_module("token_passing")
    threads = torch.get_num_threads()
    try:
        assert module.main(["--steps", "4", "--consumer-steps", "4", "--batch", "16",
                            "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("token_passing", None)
    out = capsys.readouterr().out
    for text in ["ST, tau 2->0.5", "soft, tau 1", "exact match", "split tokens",
                 "consumer parameters that received a gradient: 0 of 28"]:
        assert text in out


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--batch", "-3"], ["--threads", "x"]])
def test_token_passing_rejects_bad_options(argv, capsys, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module = importlib.import_module("token_passing")
    try:
        with pytest.raises(SystemExit) as exit_info:
            module.main(argv)
    finally:
        sys.modules.pop("token_passing", None)
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err
