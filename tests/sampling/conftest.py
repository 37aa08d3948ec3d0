"""Shared pieces of the sampler tests: both paths, and an independent reference."""

import numpy as np
import pytest
import torch

from gumbelkit.kernels import ops

FUSED_BUILT = ops.sampler_kernel_available(torch.zeros(1, 1))


@pytest.fixture(params=["fused", "pytorch"])
def path(request, monkeypatch):
    """Run the public functions on one path: the fused CPU kernel or pure PyTorch."""
    if request.param == "fused":
        if not FUSED_BUILT:
            pytest.skip("fused kernels not built")
    else:
        monkeypatch.setattr(ops, "sampler_kernel_available", lambda x: False)
    return request.param


def filtered_probs(logits, temperature=1.0, top_k=None, top_p=None, min_p=None):
    """The filtered, renormalised distribution, written from the definitions (float64)."""
    x = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        top = x == x.max()
        return top / top.sum()
    z = x / temperature
    keep = np.isfinite(z)
    if top_k is not None and 0 < top_k < len(z):
        keep &= z >= np.sort(z)[::-1][top_k - 1]
    w = np.where(keep, np.exp(z - z[keep].max()), 0.0)
    if top_p is not None and top_p < 1:
        q = w / w.sum()
        keep &= np.array([q[keep & (z > zi)].sum() < top_p for zi in z])
    if min_p is not None:
        keep &= w >= min_p * w[keep].max()
    w = np.where(keep, w, 0.0)
    return w / w.sum()


@pytest.fixture
def reference():
    return filtered_probs


@pytest.fixture(autouse=True)
def _every_test_on_one_thread(one_thread):
    """Every sampling test runs with ``one_thread`` (tests/conftest.py)."""
