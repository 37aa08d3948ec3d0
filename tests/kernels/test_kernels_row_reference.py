"""The row ops' PyTorch bodies (what a device without a kernel runs) against the C
kernels on CPU: indices and one-hots exact, relaxed values and gradients to float32
rounding, the same errors for the same bad rows."""

import math

import pytest
import torch

from gumbelkit.kernels import _lib, ops, row_reference

pytestmark = pytest.mark.skipif(_lib.library() is None, reason="fused kernels not built")

TOL = {torch.float32: dict(rtol=2e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-14)}


def _rows(rows, cols, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, cols, generator=g, dtype=torch.float64) * 3).to(dtype)
    x[torch.rand(rows, cols, generator=g) < 0.2] = -math.inf
    x[:, 0] = 1.0  # never a whole row masked
    return x


def _seed_forms(rows):
    """Compact and per-row seed/key forms the ops accept."""
    return [(torch.tensor([7]), torch.empty(0, dtype=torch.int64)),
            (torch.arange(rows) * 3 + 1, torch.arange(rows) + 100)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cols", [1, 5, 300])
def test_gumbel_max_and_softmax_bodies_equal_the_kernels(dtype, cols):
    x = _rows(6, cols, dtype)
    tau = torch.linspace(0.3, 2.0, 6, dtype=ops.compute_dtype(dtype))
    for seeds, keys in _seed_forms(6):
        assert torch.equal(row_reference.gumbel_max_rows(x, seeds, keys, [6], 1),
                           ops.gumbel_max(x, seeds, keys, [6], 1))
        for hard in (False, True):
            ref = row_reference.gumbel_softmax_rows(x, tau, seeds, keys, hard, True, [6], 1)
            got = ops.gumbel_softmax(x, tau, seeds, keys, hard, True, [6], 1)
            if hard:
                assert torch.equal(ref[0], got[0])
            torch.testing.assert_close(ref[1] if hard else ref[0], got[1] if hard else got[0],
                                       **TOL[dtype])
        soft = ref[1]
        grad = torch.randn(soft.shape, dtype=soft.dtype)
        for a, b in zip(row_reference.gumbel_softmax_backward_rows(grad, soft, tau, True),
                        ops.gumbel_softmax_backward(grad, soft, tau, True)):
            torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", [ops.BINARY_SOFT, ops.BINARY_HARD, ops.HARD_CONCRETE])
def test_concrete_bodies_equal_the_kernels(dtype, mode):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(5, 40, generator=g, dtype=torch.float64) * 2).to(dtype)
    tau = (torch.rand(5, 40, generator=g, dtype=torch.float64) + 0.3).to(ops.compute_dtype(dtype))
    seeds, keys = _seed_forms(5)[1]
    ref = row_reference.concrete_rows(x, tau, seeds, keys, mode, True, -0.1, 1.2, [5, 40])
    got = ops.concrete(x, tau, seeds, keys, mode, True, -0.1, 1.2, [5, 40])
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b, **TOL[dtype])
    saved = ref[1] if mode == ops.BINARY_HARD else ref[0]
    grad = torch.randn(saved.shape, generator=g, dtype=saved.dtype)
    for a, b in zip(row_reference.concrete_backward_rows(grad, saved, tau, mode, -0.1, 1.2, True),
                    ops.concrete_backward(grad, saved, tau, mode, -0.1, 1.2, True)):
        torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("bad, message", [
    (lambda x: x.__setitem__((2, 1), math.nan), "NaN or \\+inf in row 2"),
    (lambda x: x.__setitem__(3, -math.inf), "every logit is -inf in row 3"),
    (lambda x: x.__setitem__((1, 2), 3e38), "logits / temperature overflow in row 1"),
])
def test_bodies_report_the_kernels_errors(bad, message):
    x = _rows(5, 8, torch.float32)
    bad(x)
    tau = torch.full((5,), 0.5)
    seeds, keys = _seed_forms(5)[0]
    for fn in (row_reference.gumbel_softmax_rows, ops.gumbel_softmax):
        with pytest.raises(ValueError, match=message):
            fn(x, tau, seeds, keys, False, False, [5], 1)
