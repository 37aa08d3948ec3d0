"""Temperatures at the edge of the compute dtype, on the fused and the PyTorch path.

Every op that divides by a temperature either returns a correct finite result
(the Concrete gates saturate at exactly 0 or 1, with zero gradient) or raises a
``ValueError``: ``logits / temperature overflow`` naming the row when a row's
largest ``(logits + G) / tau`` leaves the compute dtype (its softmax would be
NaN), and ``tau must be > 0 and finite in float32`` for a temperature that
float32 cannot hold. Never a NaN, and the same on both paths.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import gumbelkit
from gumbelkit import functional as F
from gumbelkit._validate import check_temperature_range
from gumbelkit.estimators import estimate
from gumbelkit.kernels import _lib

OVERFLOW = "logits / temperature overflow"


@pytest.fixture(params=["fused", "pytorch"])
def path(request, monkeypatch):
    """Run the public functions on one path: the fused CPU kernels or pure PyTorch."""
    if request.param == "fused":
        if _lib.library() is None:
            pytest.skip("fused kernels not built")
    else:
        monkeypatch.setenv("GUMBELKIT_DISABLE_KERNELS", "1")
        monkeypatch.setattr(_lib, "_LIB", None)
    return request.param


def _row(values: list[float], cols: int, dtype=torch.float32) -> torch.Tensor:
    """A row of ``cols`` logits starting with ``values``, the rest 0."""
    x = torch.zeros(cols, dtype=torch.float64)
    x[: len(values)] = torch.tensor(values, dtype=torch.float64)
    return x.to(dtype)


# (logits of row 2 of 4, tau, dtype); the other rows are ordinary
OVERFLOWING = [
    ([3e38, 0.0, 1.0], 0.5, torch.float32),
    ([1e30, 0.0, 1.0], 1e-9, torch.float32),
    ([-1e30, -2e30, -1e30], 1e-9, torch.float32),  # every z / tau is -inf
    ([10.0, 0.0, 2.0], 1e-38, torch.float32),
    ([2.0, 1.0, 0.0], 1e-40, torch.float32),       # 1 / tau overflows float32
    ([1e308, 0.0, 1.0], 0.1, torch.float64),
]


def _batch(values, cols, dtype):
    x = torch.randn(4, cols, dtype=torch.float64).to(dtype)
    x[2] = _row([v for v in values], cols, dtype)
    if values[0] < 0:
        x[2, 3:] = -math.inf
    return x


@pytest.mark.parametrize("cols", [3, 40])  # short rows (lanes) and the row kernels
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("values,tau,dtype", OVERFLOWING)
def test_gumbel_softmax_overflow_names_the_row(path, values, tau, dtype, cols, per_row):
    x = _batch(values, cols, dtype)
    if per_row:  # only row 2 has the extreme temperature
        tau_arg = torch.ones(4, 1, dtype=dtype)
        tau_arg[2] = tau
    else:
        tau_arg = tau
    # a tiny temperature shared by every row may overflow the random rows too
    row = r"\d" if tau < 1e-30 and not per_row else "2"
    shown = float(torch.tensor(tau, dtype=dtype))  # tau as the op computes with it
    for hard in (False, True):
        for grad in (False, True):
            leaf = x.clone().requires_grad_(grad)
            with pytest.raises(ValueError, match=OVERFLOW) as error:
                gumbelkit.gumbel_softmax(leaf, tau_arg, hard=hard, seed=3)
            message = str(error.value)
            named = re.search(f"row ({row}) \\(along dim=1\\)", message)
            assert named and f"tau={shown:g}" in message
            assert f"largest logit {float(x[int(named.group(1))].max()):g}" in message
            assert f"below {torch.finfo(dtype).max:.6g}" in message
            reference = x.clone().requires_grad_(grad)
            with pytest.raises(ValueError) as expected:
                F._gumbel_softmax_reference(reference, tau_arg, hard, 1, 3, None)
            assert str(expected.value) == message


def test_per_row_temperature_overflow(path):
    x = torch.randn(2, 3, 5) * 3
    tau = torch.full((2, 3, 1), 0.5)
    tau[1, 2] = 1e-38
    x[1, 2, 4] = 50.0
    with pytest.raises(ValueError, match=r"overflow in row \(1, 2\) .*tau=1e-38"):
        gumbelkit.gumbel_softmax(x, tau, seed=0)
    with pytest.raises(ValueError, match=r"overflow in row \(2, 1\) \(along dim=0\)"):
        gumbelkit.gumbel_softmax(x.permute(2, 1, 0), tau.permute(2, 1, 0), dim=0, seed=0)


@pytest.mark.parametrize("tau", [1e39, 1e-46])
def test_temperature_that_float32_cannot_hold_is_rejected(path, tau):
    x = torch.randn(3, 4)
    calls = [
        lambda t: gumbelkit.gumbel_softmax(x, t, seed=0),
        lambda t: gumbelkit.gumbel_softmax(x, t, hard=True, seed=0),
        lambda t: gumbelkit.binary_concrete(x, t, seed=0),
        lambda t: gumbelkit.hard_concrete(x, t, seed=0),
        lambda t: gumbelkit.sparse_gumbel_softmax(x, 2, t, seed=0),
        lambda t: estimate(lambda y: y.sum(-1), x, "st", tau=t, seed=0),
        lambda t: estimate(lambda y: y.sum(-1), x, "rebar", tau=t, seed=0),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="tau must be > 0 and finite in float32.*"
                                             + re.escape(f"got {tau:g}")):
            call(tau)
        with pytest.raises(ValueError, match="tau must be > 0 and finite in float32"):
            call(torch.full((3, 1), tau, dtype=torch.float64))
    # float64 logits compute in float64, where these temperatures are ordinary
    y = gumbelkit.gumbel_softmax(x.double(), tau, seed=0)
    assert torch.isfinite(y).all() and torch.allclose(y.sum(-1), torch.ones(3, dtype=y.dtype))


def test_large_but_representable_quotients_are_fine(path):
    x = torch.tensor([[1e30, 0.0, -1e30], [3e38, 3e38, -3e38]])
    y = gumbelkit.gumbel_softmax(x, torch.tensor([[1e-7], [1.0]]), seed=1)
    assert torch.equal(y[0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.isfinite(y).all() and torch.allclose(y.sum(-1), torch.ones(2))


@pytest.mark.parametrize("op", ["binary_concrete", "binary_hard", "hard_concrete"])
def test_concrete_gates_saturate_with_finite_gradients(path, op):
    """sigmoid((x + L) / tau) with an overflowing quotient is exactly 0 or 1, and
    its gradients in the logits and the temperature are exactly 0 there."""
    x = torch.tensor([[3e38, -3e38, 1.0], [1e30, -1e30, 0.5]], requires_grad=True)
    tau = torch.tensor([[0.5], [1e-9]], requires_grad=True)
    if op == "hard_concrete":
        y = gumbelkit.hard_concrete(x, tau, seed=2)
    else:
        y = gumbelkit.binary_concrete(x, tau, hard=op == "binary_hard", seed=2)
    assert torch.equal(y[:, :2].detach(), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    (y * torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(tau.grad).all()
    assert torch.equal(x.grad[:, :2], torch.zeros(2, 2))


def test_far_below_the_max_gets_zero_weight_and_finite_gradients(path):
    """A category whose z / tau is -inf (but whose logit is finite) has weight and
    gradient 0, on both paths; the temperature's gradient stays finite."""
    x = torch.tensor([[0.0, -1e30, 1.0]], requires_grad=True)
    tau = torch.tensor([[1e-9]], requires_grad=True)
    y = gumbelkit.gumbel_softmax(x, tau, seed=4)
    assert y[0, 1] == 0
    (y * torch.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(tau.grad).all()
    assert x.grad[0, 1] == 0


def test_sparse_and_estimators_raise_on_overflow(path):
    x = torch.randn(3, 6)
    x[1, 4] = 3e38
    f = lambda y: (y * torch.arange(6.0)).sum(-1)  # noqa: E731
    calls = {
        "sparse k < V": lambda: gumbelkit.sparse_gumbel_softmax(x, 2, 0.5, seed=0),
        "sparse k = V": lambda: gumbelkit.sparse_gumbel_softmax(x, 6, 0.5, seed=0),
    }
    for method in ("st", "st_gumbel", "gapped_st", "gumbel_rao", "rebar", "gumbel_softmax"):
        calls[method] = lambda method=method: estimate(f, x, method, tau=0.5, seed=0)
    control = lambda y: y.sum(-1)  # noqa: E731
    calls["relax"] = lambda: estimate(f, x, "relax", tau=0.5, seed=0, control=control)
    for name, call in calls.items():
        with pytest.raises(ValueError, match=OVERFLOW) as error:
            call()
        assert "tau=0.5" in str(error.value), name
    with pytest.raises(ValueError, match=r"overflow in row 1 \(along dim=0\)"):
        gumbelkit.sparse_gumbel_softmax(x.t(), 2, 0.5, dim=0, seed=0)


@pytest.mark.parametrize("tau", [2.0**-150, math.nextafter(2.0**-150, 1.0), 2.0**-149, 1e-46,
                                 3.4028234663852886e38,
                                 math.nextafter(2.0**128 * (1 - 2.0**-25), 0.0),
                                 2.0**128 * (1 - 2.0**-25), 1e39, 0.5])
def test_float_tau_range_is_float32_rounding(tau):
    """A Python float tau is accepted exactly when float32 rounds it to a positive finite value."""
    with np.errstate(over="ignore"):
        fits = 0 < np.float32(tau) < np.inf
    if fits:
        check_temperature_range(tau, torch.float32)
    else:
        with pytest.raises(ValueError, match="must be > 0 and finite in float32"):
            check_temperature_range(tau, torch.float32)
