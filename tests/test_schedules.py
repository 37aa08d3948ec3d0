"""Temperature schedules and the learnable temperature."""

from __future__ import annotations

import math

import pytest
import torch

from gumbelkit import schedules
from gumbelkit.nn import LearnableTemperature

# (schedule, [(step, expected tau)]): one entry per schedule drives every shared test.
SCHEDULES = [
    (schedules.Constant(0.7), [(0, 0.7), (10**6, 0.7)]),
    (schedules.Linear(1.0, 0.5, 100), [(0, 1.0), (50, 0.75), (100, 0.5), (1000, 0.5)]),
    (schedules.Exponential(2.0, 0.5, 100), [(0, 2.0), (50, 1.0), (100, 0.5), (500, 0.5)]),
    (schedules.Step([(0, 1.0), (10, 0.7), (20, 0.3)]),
     [(0, 1.0), (9, 1.0), (10, 0.7), (19, 0.7), (20, 0.3), (999, 0.3)]),
    (schedules.ExponentialEvery(1.0, 0.5, 1e-3, 100),
     [(0, 1.0), (99, 1.0), (100, math.exp(-0.1)), (250, math.exp(-0.2)), (10**5, 0.5)]),
    (schedules.Cosine(1.0, 0.2, 100), [(0, 1.0), (50, 0.6), (100, 0.2), (200, 0.2)]),
]
IDS = [type(s).__name__ for s, _ in SCHEDULES]


@pytest.mark.parametrize("schedule,expected", SCHEDULES, ids=IDS)
def test_schedule_values(schedule, expected):
    for step, tau in expected:
        assert schedule(step) == pytest.approx(tau, rel=1e-12)


@pytest.mark.parametrize("schedule,expected", SCHEDULES, ids=IDS)
def test_schedule_state_dict_round_trip(schedule, expected):
    fresh = type(schedule)(**{k: v for k, v in schedule.state_dict().items() if k != "type"})
    assert fresh == schedule
    other = schedules.Constant(3.0) if not isinstance(schedule, schedules.Constant) \
        else schedules.Constant(9.0)
    if isinstance(schedule, schedules.Constant):
        other.load_state_dict(schedule.state_dict())
        assert other == schedule
    else:
        with pytest.raises(ValueError, match="schedule"):
            other.load_state_dict(schedule.state_dict())
    assert repr(schedule).startswith(type(schedule).__name__ + "(")


@pytest.mark.parametrize("schedule,expected", SCHEDULES, ids=IDS)
def test_schedule_is_positive_and_never_below_its_floor(schedule, expected):
    values = [schedule(t) for t in range(0, 3000, 7)]
    assert min(values) > 0
    assert min(values) >= min(tau for _, tau in expected) - 1e-12


@pytest.mark.parametrize("make,message", [
    (lambda: schedules.Constant(0.0), "tau must be > 0"),
    (lambda: schedules.Linear(0.5, 1.0, 10), "tau_min must be <= tau_max"),
    (lambda: schedules.Exponential(1.0, 0.5, 0), r"steps must lie in \[1, inf\)"),
    (lambda: schedules.Step([(5, 1.0)]), "starting at step 0"),
    (lambda: schedules.Step([(0, 1.0), (0, 0.5)]), "increase strictly"),
    (lambda: schedules.Step([(0, -1.0)]), "milestone tau must be > 0"),
    (lambda: schedules.ExponentialEvery(1.0, 0.5, -1.0, 10), "rate must be >= 0"),
    (lambda: schedules.Cosine(1.0, math.inf, 10), "tau_min must be > 0 and finite"),
])
def test_bad_schedule_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_step():
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        schedules.Constant(1.0)(-1)


@pytest.mark.parametrize("spec,expected", [
    ("0.5", schedules.Constant(0.5)),
    ("linear:1:0.5:100", schedules.Linear(1.0, 0.5, 100)),
    ("exp:1:0.5:100", schedules.Exponential(1.0, 0.5, 100)),
    ("cos:1:0.5:100", schedules.Cosine(1.0, 0.5, 100)),
    ("jang:1.0:0.5:3e-5:1000", schedules.ExponentialEvery(1.0, 0.5, 3e-5, 1000)),
    ("jang", schedules.ExponentialEvery(1.0, 0.5, 1e-4, 500)),
    ("step:0=1.0,500=0.7", schedules.Step([(0, 1.0), (500, 0.7)])),
])
def test_parse_schedule(spec, expected):
    assert schedules.parse_schedule(spec) == expected


@pytest.mark.parametrize("spec", ["fast", "exp:1:0.5", "linear:a:b:c", "-1", "step:5=1.0"])
def test_parse_schedule_rejects_bad_specs(spec):
    with pytest.raises(ValueError):
        schedules.parse_schedule(spec)


def test_learnable_temperature_stays_in_bounds_and_trains():
    temp = LearnableTemperature(init=1.0, min=0.1, max=5.0)
    assert temp().item() == pytest.approx(1.0, rel=1e-6)
    optimizer = torch.optim.SGD(temp.parameters(), lr=100.0)
    for _ in range(50):  # push hard towards 0: it must stop above min
        optimizer.zero_grad()
        temp().backward()
        optimizer.step()
    assert 0.1 <= temp().item() < 0.2
    state = temp.state_dict()
    other = LearnableTemperature(init=2.0, min=0.1, max=5.0)
    other.load_state_dict(state)
    assert other().item() == temp().item()
    assert "min=0.1" in repr(temp)


@pytest.mark.parametrize("kwargs,message", [
    ({"init": 0.1}, "strictly inside"),
    ({"init": 6.0}, "strictly inside"),
    ({"min": 0.0}, "min must be > 0"),
    ({"min": 5.0, "max": 1.0, "init": 2.0}, "min must be < max"),
    ({"max": math.inf}, "max must be > 0 and finite"),
])
def test_learnable_temperature_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LearnableTemperature(**kwargs)
