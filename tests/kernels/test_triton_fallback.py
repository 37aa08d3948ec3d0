"""The Triton route when Triton is not installed: the ``cuda`` kernel of the
``noise`` op runs the PyTorch reference, and ``GUMBELKIT_BACKEND=triton`` is a
clear error instead of a silent switch back to the C kernel."""

from __future__ import annotations

import pytest
import torch

from gumbelkit import _rng
from gumbelkit.kernels import ops


def test_cuda_kernel_without_triton_runs_the_reference(without_triton):
    seeds = torch.tensor([5, -1], dtype=torch.int64)
    keys = torch.tensor([0, 9], dtype=torch.int64)
    got = ops._noise_cuda(seeds, keys, 7, 1, "exponential", torch.float64)
    ref = _rng.noise("exponential", (2,), 7, _rng.Seed(per_row=seeds), torch.float64,
                     row_keys=keys, stream=1)
    assert torch.equal(got, ref)


def test_triton_backend_without_triton_is_an_error(without_triton, monkeypatch):
    monkeypatch.setattr(ops, "_TRITON_ON_CPU", True)
    seeds = keys = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ImportError, match="GUMBELKIT_BACKEND=triton needs triton"):
        torch.ops.gumbelkit.noise(seeds, keys, 3, 0, "gumbel", torch.float32)
