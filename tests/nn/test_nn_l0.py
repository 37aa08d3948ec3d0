"""HardConcreteGate and L0Linear: gate distribution, the closed-form L0 penalty,
export to a plain nn.Linear, validation."""

from __future__ import annotations

import math

import pytest
import torch

import gumbelkit
from gumbelkit.nn import HardConcreteGate, L0Linear
from stats import draws_for


def test_training_gates_are_hard_concrete_samples():
    gate = HardConcreteGate(5, droprate_init=0.3)
    z = gate((4,), seed=2)
    assert z.shape == (4, 5)
    logits = gate.log_alpha.detach().expand(4, 5)
    assert torch.equal(z, gumbelkit.hard_concrete(logits, 2 / 3, -0.1, 1.1, seed=2))


def test_fraction_of_nonzero_gates_matches_l0_penalty():
    gate = HardConcreteGate(4, droprate_init=0.7)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-2.0, -0.5, 0.0, 1.5]))
    p = gate.prob_nonzero.detach()
    n = draws_for(0.5, 0.02)  # 4 standard errors <= 0.02
    freq = (gate((n,), seed=5) != 0).double().mean(0)
    se = torch.sqrt(p * (1 - p) / n).double()
    assert torch.all((freq - p.double()).abs() <= 4 * se), (freq, p)
    assert gate.l0_penalty().item() == pytest.approx(p.sum().item())
    expected = torch.sigmoid(gate.log_alpha.detach() - 2 / 3 * math.log(0.1 / 1.1))
    torch.testing.assert_close(p, expected)


def test_deterministic_gate_sparsity_and_gradient():
    gate = HardConcreteGate(4)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-5.0, 0.0, 5.0, -3.0]))
    gate.eval()
    z = gate((2,))
    assert z.shape == (2, 4)
    assert torch.equal(z[0], gumbelkit.hard_concrete_deterministic_gate(gate.log_alpha.detach()))
    assert gate.sparsity() == 0.5  # sigmoid(-5) * 1.2 - 0.1 < 0 and sigmoid(-3) * 1.2 - 0.1 < 0
    gate.train()
    (gate((16,), seed=0).sum() + gate.l0_penalty()).backward()
    assert gate.log_alpha.grad is not None and torch.all(gate.log_alpha.grad != 0)


@pytest.mark.parametrize("kwargs,match", [
    ({"droprate_init": 0.0}, "droprate_init must lie strictly inside"),
    ({"droprate_init": 1.0}, "droprate_init must lie strictly inside"),
    ({"droprate_init": -0.2}, "droprate_init must lie strictly inside"),
    ({"tau": 0.0}, "tau must be > 0"),
    ({"gamma": 0.1}, "gamma must be"),
    ({"zeta": 1.0}, "zeta must be"),
])
def test_bad_gate_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HardConcreteGate(3, **kwargs)
    with pytest.raises(ValueError, match=match):
        L0Linear(3, 2, **kwargs)


def test_bad_gate_size():
    with pytest.raises(ValueError, match="n must lie in"):
        HardConcreteGate(0)


@pytest.mark.parametrize("bias", [True, False])
def test_to_linear_equals_the_eval_layer(bias):
    torch.manual_seed(0)
    layer = L0Linear(12, 5, bias=bias).double()
    with torch.no_grad():
        layer.gate.log_alpha.copy_(torch.linspace(-6, 4, 12, dtype=torch.float64))
    layer.eval()
    linear, kept = layer.to_linear()
    assert isinstance(linear, torch.nn.Linear) and type(linear) is torch.nn.Linear
    assert torch.equal(kept, layer.kept_features())
    assert 0 < kept.numel() < 12 and linear.in_features == kept.numel()
    x = torch.randn(7, 12, dtype=torch.float64)
    torch.testing.assert_close(linear(x[:, kept]), layer(x), rtol=0, atol=1e-12)


def test_to_linear_with_every_gate_closed_keeps_one_zero_column():
    layer = L0Linear(4, 3)
    with torch.no_grad():
        layer.gate.log_alpha.fill_(-20.0)
    linear, kept = layer.eval().to_linear()
    x = torch.randn(2, 4)
    assert kept.numel() == 1 and torch.equal(linear.weight, torch.zeros(3, 1))
    torch.testing.assert_close(linear(x[:, kept]), layer(x))


def test_l0linear_training_gradients_and_penalty():
    layer = L0Linear(6, 3)
    x = torch.randn(8, 6)
    y = layer(x, seed=1)
    assert y.shape == (8, 3)
    (y.square().mean() + 0.1 * layer.penalty()).backward()
    assert layer.gate.log_alpha.grad.abs().sum() > 0 and layer.weight.grad.abs().sum() > 0
    assert layer.penalty().item() == pytest.approx(3 * layer.gate.l0_penalty().item())
    assert "in_features=6" in repr(layer) and "droprate_init=0.5" in repr(layer)


def test_l0linear_bad_input():
    with pytest.raises(ValueError, match="in_features=6"):
        L0Linear(6, 3)(torch.randn(2, 5))
