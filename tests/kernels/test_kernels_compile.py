"""torch.compile(fullgraph=True) traces through the fused custom ops (no graph
breaks) and the compiled function matches eager. Few and small: compiling is slow."""

from __future__ import annotations

import pytest
import torch

import gumbelkit
from gumbelkit.kernels import _lib

pytestmark = pytest.mark.skipif(_lib.library() is None, reason="fused kernels not built")


def sample(logits: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, ...]:
    y = gumbelkit.gumbel_softmax(logits, tau, hard=True, dim=0, seed=3)
    index = gumbelkit.gumbel_max(logits, seed=4)
    gate = gumbelkit.hard_concrete(logits, seed=5)
    return (y * logits).sum(), index, gate


def test_compile_fullgraph_matches_eager_forward_and_backward():
    torch._dynamo.reset()
    logits = torch.randn(6, 9, requires_grad=True)
    tau = (torch.rand(1, 9) + 0.5).requires_grad_(True)
    compiled = torch.compile(sample, fullgraph=True, backend="aot_eager")
    eager_out = sample(logits, tau)
    compiled_out = compiled(logits, tau)
    for e, c in zip(eager_out, compiled_out):
        assert torch.equal(e, c)
    eager_grads = torch.autograd.grad(eager_out[0] + eager_out[2].sum(), (logits, tau))
    compiled_grads = torch.autograd.grad(compiled_out[0] + compiled_out[2].sum(), (logits, tau))
    for e, c in zip(eager_grads, compiled_grads):
        torch.testing.assert_close(e, c)
