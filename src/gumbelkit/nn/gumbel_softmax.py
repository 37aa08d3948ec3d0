"""Gumbel-Softmax as a module, with a fixed, scheduled or learned temperature."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._rng import check_seed_source
from .._validate import check_dim_type, check_logits, check_positive_real
from ..functional import gumbel_softmax
from ..schedules import Schedule, parse_schedule
from .temperature import LearnableTemperature

EVAL_MODES = ("argmax", "sample", "softmax")


class GumbelSoftmax(nn.Module):
    """``y = softmax((logits + G) / tau)`` in training; a deterministic choice in eval.

    Jang et al. 2017; Maddison et al. 2017 (see :func:`gumbelkit.gumbel_softmax`).
    The temperature is a float, a :class:`gumbelkit.schedules.Schedule`
    evaluated at the module's step counter, or a
    :class:`gumbelkit.nn.LearnableTemperature`. The step counter is a buffer
    (``num_steps``), advanced by :meth:`step` (call it once per optimizer
    step), so ``state_dict()`` / ``load_state_dict()`` resume the schedule
    where it was; the schedule's own settings (or the fixed tau) travel in
    the state dict too, and a state loads only into a module with the same
    kind of temperature (fixed, scheduled or learned).

    Args:
        tau: float > 0, a ``Schedule``, a schedule spec string such as
            ``"exp:1.0:0.5:10000"`` (see :func:`gumbelkit.schedules.parse_schedule`),
            or a ``LearnableTemperature``.
        hard: straight-through: exact one-hot forward, soft gradient.
        dim: the category axis.
        eval_mode: what ``forward`` does when ``self.training`` is False:
            ``"argmax"`` (default) the exact one-hot of ``argmax(logits)``;
            ``"sample"`` the same random relaxation as in training;
            ``"softmax"`` the noiseless ``softmax(logits / tau)``.

    Example:
        >>> layer = gumbelkit.nn.GumbelSoftmax(gumbelkit.schedules.Linear(1.0, 0.5, steps=10))
        >>> y = layer(torch.zeros(4, 3), seed=0)
        >>> layer.step(), layer.step()
        (0.95, 0.9)
        >>> layer.eval()(torch.tensor([[0.0, 2.0, 1.0]]))
        tensor([[0., 1., 0.]])
    """

    def __init__(self, tau: float | str | Schedule | LearnableTemperature = 1.0,
                 hard: bool = False, dim: int = -1, eval_mode: str = "argmax") -> None:
        super().__init__()
        if isinstance(tau, str):
            tau = parse_schedule(tau)
        if isinstance(tau, LearnableTemperature):
            self.temperature: float | Schedule | LearnableTemperature = tau
        elif isinstance(tau, Schedule):
            self.temperature = tau
        else:
            self.temperature = check_positive_real(tau, "tau")
        if not isinstance(hard, bool):
            raise TypeError(f"hard must be a bool, got {type(hard).__name__}")
        check_dim_type(dim)
        if eval_mode not in EVAL_MODES:
            raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}")
        self.hard = hard
        self.dim = dim
        self.eval_mode = eval_mode
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.int64))

    @property
    def tau(self) -> float | torch.Tensor:
        """The temperature now: ``schedule(num_steps)``, the float, or the learned tensor."""
        if isinstance(self.temperature, Schedule):
            return self.temperature(int(self.num_steps))
        if isinstance(self.temperature, LearnableTemperature):
            return self.temperature()
        return self.temperature

    def step(self) -> float | torch.Tensor:
        """Advance the step counter by one; returns the new temperature."""
        self.num_steps += 1
        return self.tau

    def forward(self, logits: torch.Tensor, *, seed: int | torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """A relaxed sample (training) or the ``eval_mode`` output, shaped like ``logits``."""
        check_seed_source(seed, generator)
        if self.training or self.eval_mode == "sample":
            return gumbel_softmax(logits, self.tau, self.hard, self.dim, seed=seed,
                                  generator=generator)
        dim = check_logits(logits, self.dim)
        if self.eval_mode == "softmax":
            return torch.softmax(logits / self.tau, dim)
        index = logits.argmax(dim, keepdim=True)
        return torch.zeros_like(logits).scatter_(dim, index, 1.0)

    def _kind(self) -> str:
        if isinstance(self.temperature, Schedule):
            return "schedule"
        if isinstance(self.temperature, LearnableTemperature):
            return "learned"
        return "fixed"

    def get_extra_state(self) -> dict[str, Any]:
        if isinstance(self.temperature, Schedule):
            return {"kind": "schedule", "schedule": self.temperature.state_dict()}
        if isinstance(self.temperature, LearnableTemperature):
            return {"kind": "learned"}  # its parameter travels in the state dict itself
        return {"kind": "fixed", "tau": self.temperature}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        # A state without "kind" was saved before the kind was recorded: a schedule's
        # holds "schedule", a fixed or learned temperature's is empty.
        saved = state.get("kind", "schedule" if "schedule" in state else None)
        mine = self._kind()
        if saved is None:
            if mine == "schedule":
                raise ValueError("the state holds no temperature schedule (it comes from a "
                                 "module with a fixed or learned tau) but this module has the "
                                 f"schedule {self.temperature!r}")
            return
        if saved != mine:
            held = {"schedule": f"a temperature schedule {state.get('schedule')!r}",
                    "fixed": f"a fixed tau={state.get('tau')!r}",
                    "learned": "a learned temperature"}[saved]
            here = {"schedule": f"the schedule {self.temperature!r}",
                    "fixed": f"a fixed tau={self.temperature!r}",
                    "learned": "a learned temperature"}[mine]
            raise ValueError(f"the state holds {held} but this module has {here}; "
                             f"load it into a module with the same kind of temperature")
        if saved == "schedule":
            self.temperature.load_state_dict(state["schedule"])
        elif saved == "fixed":
            self.temperature = check_positive_real(state["tau"], "tau")

    def extra_repr(self) -> str:
        tau = self.temperature if isinstance(self.temperature, (float, Schedule)) else "learned"
        return (f"tau={tau!r}, hard={self.hard}, dim={self.dim}, eval_mode={self.eval_mode!r}, "
                f"num_steps={int(self.num_steps)}")
