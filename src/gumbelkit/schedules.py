"""Temperature schedules: ``schedule(step) -> tau``.

Every schedule validates its arguments at construction, is a pure function of
the step (so resuming from a checkpoint needs only the step), and round-trips
its settings through ``state_dict()`` / ``load_state_dict()``.

Example:
    >>> sched = gumbelkit.schedules.ExponentialEvery(tau0=1.0, tau_min=0.5, rate=1e-4, every=1000)
    >>> sched(0), sched(999), round(sched(1000), 6)
    (1.0, 1.0, 0.904837)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

from ._validate import check_int_range, check_positive_real

__all__ = [
    "Schedule",
    "Constant",
    "Linear",
    "Exponential",
    "Step",
    "ExponentialEvery",
    "Cosine",
    "parse_schedule",
]


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    return step


def _check_order(tau_max: float, tau_min: float) -> None:
    if tau_min > tau_max:
        raise ValueError(f"tau_min must be <= tau_max, got tau_min={tau_min}, tau_max={tau_max}")


class Schedule(ABC):
    """Base class: subclasses set their fields in ``__init__`` and define ``value``."""

    _fields: tuple[str, ...] = ()

    @abstractmethod
    def value(self, step: int) -> float:
        """The temperature at ``step`` (already checked to be an int >= 0)."""

    def __call__(self, step: int) -> float:
        return self.value(_check_step(step))

    def state_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **{f: getattr(self, f) for f in self._fields}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("type") != type(self).__name__:
            raise ValueError(f"state is for a {state.get('type')} schedule, "
                             f"not {type(self).__name__}")
        fresh = type(self)(**{f: state[f] for f in self._fields})
        self.__dict__.update(fresh.__dict__)

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.state_dict() == other.state_dict()


class Constant(Schedule):
    """``tau(t) = tau``."""

    _fields = ("tau",)

    def __init__(self, tau: float = 1.0) -> None:
        self.tau = check_positive_real(tau, "tau")

    def value(self, step: int) -> float:
        return self.tau


class _Annealing(Schedule):
    """A schedule from ``tau_max`` at step 0 to ``tau_min`` at step ``steps``, then held."""

    _fields = ("tau_max", "tau_min", "steps")

    def __init__(self, tau_max: float = 1.0, tau_min: float = 0.5, steps: int = 10_000) -> None:
        self.tau_max = check_positive_real(tau_max, "tau_max")
        self.tau_min = check_positive_real(tau_min, "tau_min")
        _check_order(self.tau_max, self.tau_min)
        self.steps = check_int_range(steps, "steps", 1)


class Linear(_Annealing):
    """``tau(t) = tau_max + (tau_min - tau_max) min(t, T) / T``: linear, then held."""

    def value(self, step: int) -> float:
        frac = min(step, self.steps) / self.steps
        return self.tau_max + (self.tau_min - self.tau_max) * frac


class Exponential(_Annealing):
    """``tau(t) = max(tau_min, tau_max exp(-lambda t))``, ``lambda = log(tau_max/tau_min)/T``."""

    def value(self, step: int) -> float:
        rate = math.log(self.tau_max / self.tau_min) / self.steps
        return max(self.tau_min, self.tau_max * math.exp(-rate * step))


class Step(Schedule):
    """Piecewise constant: ``tau(t) = tau_j`` for the last milestone ``step_j <= t``.

    ``milestones`` is a list of ``(step, tau)`` pairs with strictly increasing
    steps, the first at step 0.
    """

    _fields = ("milestones",)

    def __init__(self, milestones: list[tuple[int, float]] | list[list[float]]) -> None:
        pairs = [(int(s), float(t)) for s, t in milestones] if milestones else []
        if not pairs or pairs[0][0] != 0:
            raise ValueError(f"milestones must be a non-empty list of (step, tau) starting at "
                             f"step 0, got {milestones!r}")
        for (s0, _), (s1, _) in zip(pairs, pairs[1:]):
            if s1 <= s0:
                raise ValueError(f"milestone steps must increase strictly, got {s0} then {s1}")
        for _, tau in pairs:
            check_positive_real(tau, "milestone tau")
        self.milestones = pairs

    def value(self, step: int) -> float:
        tau = self.milestones[0][1]
        for start, milestone_tau in self.milestones:
            if start > step:
                break
            tau = milestone_tau
        return tau

    def state_dict(self) -> dict[str, Any]:
        return {"type": "Step", "milestones": [list(p) for p in self.milestones]}


class ExponentialEvery(Schedule):
    """Jang et al. 2017: ``tau(t) = max(tau_min, tau0 exp(-rate N floor(t / N)))``.

    The temperature is recomputed every ``every`` (N) steps and held between.
    The paper uses ``tau0=1, tau_min=0.5, rate=1e-5 or 1e-4, every=500 or 1000``;
    ``parse_schedule("jang")`` gives ``(1, 0.5, 1e-4, 500)``.
    """

    _fields = ("tau0", "tau_min", "rate", "every")

    def __init__(self, tau0: float = 1.0, tau_min: float = 0.5, rate: float = 3e-5,
                 every: int = 1000) -> None:
        self.tau0 = check_positive_real(tau0, "tau0")
        self.tau_min = check_positive_real(tau_min, "tau_min")
        _check_order(self.tau0, self.tau_min)
        self.rate = float(rate)
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be >= 0 and finite, got {rate}")
        self.every = check_int_range(every, "every", 1)

    def value(self, step: int) -> float:
        held = (step // self.every) * self.every
        return max(self.tau_min, self.tau0 * math.exp(-self.rate * held))


class Cosine(_Annealing):
    """``tau(t) = tau_min + (tau_max - tau_min)(1 + cos(pi min(t, T) / T)) / 2``."""

    def value(self, step: int) -> float:
        frac = min(step, self.steps) / self.steps
        return self.tau_min + (self.tau_max - self.tau_min) * (1 + math.cos(math.pi * frac)) / 2


_SPEC_HELP = ("a number or one of linear:MAX:MIN:STEPS, exp:MAX:MIN:STEPS, cos:MAX:MIN:STEPS, "
              "jang:TAU0:MIN:RATE:EVERY (also exp:TAU0:MIN:RATE:EVERY), jang (the preset "
              "jang:1:0.5:1e-4:500), step:0=TAU,STEP=TAU,...")

# Jang et al. 2017, Section 4 (experiments): "tau = max(0.5, exp(-r t)) of the global
# training step t, where tau is updated every N steps. N in {500, 1000} and r in
# {1e-5, 1e-4} are hyperparameters". The preset takes the grid's fastest corner
# (r = 1e-4, N = 500), the only one that anneals noticeably within a few thousand steps
# (tau 0.61 at step 5000; r = 1e-5 leaves it at 0.95).
JANG_PRESET = (1.0, 0.5, 1e-4, 500)

_BY_NAME: dict[str, type[Schedule]] = {
    "const": Constant, "linear": Linear, "exp": Exponential, "cos": Cosine,
    "jang": ExponentialEvery,
}


def parse_schedule(text: str) -> Schedule:
    """A schedule from a short spec, as the command line takes it.

    ``"1.0"`` -> ``Constant(1.0)``; ``"linear:1.0:0.5:10000"``, ``"exp:1.0:0.5:10000"``
    and ``"cos:1.0:0.5:10000"`` -> (tau_max, tau_min, steps);
    ``"jang:1.0:0.5:3e-5:1000"`` and ``"exp:1.0:0.5:3e-5:1000"`` (four numbers) ->
    ``ExponentialEvery(tau0, tau_min, rate, every)``; ``"jang"`` alone -> the paper's
    protocol with ``JANG_PRESET`` = ``(1.0, 0.5, 1e-4, 500)``;
    ``"step:0=1.0,500=0.7"`` -> ``Step``.
    """
    text = text.strip()
    try:
        return Constant(float(text))
    except ValueError as exc:
        if "must be" in str(exc):
            raise
    name, _, rest = text.partition(":")
    try:
        if name == "step":
            pairs = [item.split("=") for item in rest.split(",")]
            return Step([(int(s), float(t)) for s, t in pairs])
        cls = _BY_NAME[name]
        numbers = [float(x) for x in rest.split(":")] if rest else []
        if text == "jang":
            numbers = list(JANG_PRESET)
        if cls is ExponentialEvery or (cls is Exponential and len(numbers) == 4):
            tau0, tau_min, rate, every = numbers
            return ExponentialEvery(tau0, tau_min, rate, int(every))
        if cls is Constant:
            return Constant(*numbers)
        tau_max, tau_min, steps = numbers
        return cls(tau_max, tau_min, int(steps))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ValueError) and "must" in str(exc):
            raise
        raise ValueError(f"cannot read temperature schedule {text!r}: "
                         f"expected {_SPEC_HELP}") from exc
