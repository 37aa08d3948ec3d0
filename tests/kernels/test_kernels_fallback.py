"""The install without the compiled kernels (no C compiler, GUMBELKIT_NO_EXT=1)
and the run-time switch GUMBELKIT_DISABLE_KERNELS=1: the package imports, warns
once (only when the kernels are missing, not when disabled on purpose), says
``backend() == "pytorch"``, and its pure-PyTorch path gives the same samples
as the fused path. Exercised in a subprocess, so it runs in every `make test`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import gumbelkit
from gumbelkit.kernels import _lib

SRC = str(Path(gumbelkit.__file__).parents[1])

SCRIPT = r"""
import json, sys, warnings
if sys.argv[1] == "missing":
    sys.modules["gumbelkit.kernels._gk"] = None  # as if never compiled
import torch
import gumbelkit
x = torch.tensor(json.loads(sys.argv[2]))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    index = gumbelkit.gumbel_max(x, seed=11)
    soft = gumbelkit.gumbel_softmax(x, 0.5, dim=0, seed=12)
    top = gumbelkit.gumbel_topk(x, 2, seed=13)
    gate = gumbelkit.hard_concrete(x, seed=14)
print(json.dumps({"backend": gumbelkit.backend(),
                  "warnings": [str(w.message) for w in caught],
                  "index": index.tolist(), "soft": soft.tolist(), "top": top.tolist(),
                  "gate": gate.tolist()}))
"""


def _run(mode: str, x: torch.Tensor) -> dict:
    env = dict(os.environ, PYTHONPATH=SRC)
    env.pop("GUMBELKIT_DISABLE_KERNELS", None)
    result = subprocess.run([sys.executable, "-c", SCRIPT, mode, json.dumps(x.tolist())],
                            env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


def test_pure_pytorch_install_matches_fused_path():
    x = torch.randn(5, 7) * 2
    out = _run("missing", x)
    assert out["backend"] == "pytorch"
    assert len(out["warnings"]) == 1 and "not built" in out["warnings"][0]
    assert out["index"] == gumbelkit.gumbel_max(x, seed=11).tolist()
    assert out["top"] == gumbelkit.gumbel_topk(x, 2, seed=13).tolist()
    torch.testing.assert_close(torch.tensor(out["soft"]),
                               gumbelkit.gumbel_softmax(x, 0.5, dim=0, seed=12))
    torch.testing.assert_close(torch.tensor(out["gate"]), gumbelkit.hard_concrete(x, seed=14))


def test_disabled_on_purpose_is_silent(monkeypatch, recwarn):
    monkeypatch.setenv("GUMBELKIT_DISABLE_KERNELS", "1")
    assert _lib._load() is None
    monkeypatch.setattr(_lib, "_LIB", None)
    monkeypatch.setattr(_lib, "_warned", False)
    assert gumbelkit.backend() == "pytorch"
    x = torch.randn(3, 4)
    assert gumbelkit.gumbel_max(x, seed=1).tolist() == \
        gumbelkit.functional._gumbel_max_reference(x, -1, 1, None).tolist()
    assert len(recwarn) == 0
