"""GumbelSoftmax module: fixed, scheduled and learned temperatures, the step
counter in state_dict, eval modes, validation."""

from __future__ import annotations

import pytest
import torch

import gumbelkit
from gumbelkit.nn import GumbelSoftmax, LearnableTemperature
from gumbelkit.schedules import Exponential, Linear


def test_training_forward_is_the_functional_op():
    logits = torch.randn(4, 6)
    layer = GumbelSoftmax(0.5, hard=True)
    assert torch.equal(layer(logits, seed=3), gumbelkit.gumbel_softmax(logits, 0.5, True, seed=3))


def test_schedule_follows_the_step_counter_and_survives_state_dict():
    schedule = Exponential(tau_max=1.0, tau_min=0.1, steps=100)
    layer = GumbelSoftmax(schedule)
    for _ in range(30):
        layer.step()
    assert layer.tau == schedule(30)
    logits = torch.randn(3, 5)
    expected = gumbelkit.gumbel_softmax(logits, schedule(30), seed=1)
    assert torch.equal(layer(logits, seed=1), expected)
    state = layer.state_dict()
    assert int(state["num_steps"]) == 30
    fresh = GumbelSoftmax(Exponential(tau_max=2.0, tau_min=0.5, steps=7))
    fresh.load_state_dict(state)
    assert int(fresh.num_steps) == 30 and fresh.temperature == schedule
    assert fresh.tau == schedule(30)


def test_schedule_spec_string():
    layer = GumbelSoftmax("linear:1.0:0.5:10")
    assert layer.temperature == Linear(1.0, 0.5, 10)
    assert layer.step() == pytest.approx(0.95)


def test_state_with_schedule_does_not_load_into_a_fixed_tau():
    state = GumbelSoftmax(Linear(1.0, 0.5, 10)).state_dict()
    with pytest.raises(ValueError, match="schedule"):
        GumbelSoftmax(0.5).load_state_dict(state)


@pytest.mark.parametrize("saved,target,match", [
    (lambda: GumbelSoftmax(0.5), lambda: GumbelSoftmax(Linear(1.0, 0.5, 10)),
     "fixed tau=0.5 but this module has the schedule"),
    (lambda: GumbelSoftmax(Linear(1.0, 0.5, 10)), lambda: GumbelSoftmax(0.5),
     "schedule .* but this module has a fixed tau=0.5"),
    (lambda: GumbelSoftmax(LearnableTemperature()), lambda: GumbelSoftmax(Linear(1.0, 0.5, 10)),
     "learned temperature but this module has the schedule"),
])
def test_state_loads_only_into_the_same_kind_of_temperature(saved, target, match):
    layer = target()
    before = layer.tau
    with pytest.raises(ValueError, match=match):
        layer.load_state_dict(saved().state_dict(), strict=False)
    assert layer.tau == before


def test_state_without_a_kind_does_not_load_into_a_schedule():
    state = GumbelSoftmax(0.5).state_dict()
    state["_extra_state"] = {}  # as written before the kind was recorded
    with pytest.raises(ValueError, match="holds no temperature schedule"):
        GumbelSoftmax(Linear(1.0, 0.5, 10)).load_state_dict(state)
    GumbelSoftmax(0.7).load_state_dict(state)


def test_fixed_tau_travels_in_the_state():
    fresh = GumbelSoftmax(0.7)
    fresh.load_state_dict(GumbelSoftmax(0.5).state_dict())
    assert fresh.tau == 0.5


def test_learnable_temperature_gets_a_gradient():
    layer = GumbelSoftmax(LearnableTemperature(1.0, 0.1, 5.0))
    y = layer(torch.randn(8, 4), seed=0)
    (y * torch.randn(8, 4)).sum().backward()
    assert layer.temperature.theta.grad is not None and layer.temperature.theta.grad != 0
    assert "temperature.theta" in dict(layer.named_parameters())


def test_eval_modes():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, -1.0, float("-inf")]])
    assert torch.equal(GumbelSoftmax().eval()(logits), torch.tensor([[0.0, 1, 0], [1, 0, 0]]))
    soft = GumbelSoftmax(0.5, eval_mode="softmax").eval()(logits)
    assert torch.equal(soft, torch.softmax(logits / 0.5, -1))
    sample = GumbelSoftmax(0.5, eval_mode="sample").eval()(logits, seed=4)
    assert torch.equal(sample, gumbelkit.gumbel_softmax(logits, 0.5, seed=4))


def test_dim_and_repr():
    logits = torch.randn(5, 3)
    layer = GumbelSoftmax(0.3, dim=0)
    assert torch.allclose(layer(logits, seed=0).sum(0), torch.ones(3))
    assert "tau=0.3" in repr(layer) and "dim=0" in repr(layer) and "num_steps=0" in repr(layer)


@pytest.mark.parametrize("kwargs,match", [
    ({"tau": 0.0}, "tau must be > 0"),
    ({"tau": -1.0}, "tau must be > 0"),
    ({"tau": "warm:1"}, "cannot read temperature schedule"),
    ({"eval_mode": "mean"}, "eval_mode must be one of"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GumbelSoftmax(**kwargs)


def test_bad_logits_in_eval():
    with pytest.raises(ValueError, match="NaN"):
        GumbelSoftmax().eval()(torch.tensor([[0.0, float("nan")]]))
