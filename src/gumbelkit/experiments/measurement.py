"""How biased and how noisy is each estimator: measured against the exact gradient."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._validate import check_int_range
from ..estimators.dispatch import ESTIMATORS, estimate
from ..estimators.relax import relax_variance_loss
from .problems import Problem, make_problem


@dataclass(frozen=True)
class GradientStats:
    """Bias and spread of one estimator on one problem, over ``n_draws`` draws.

    ``bias = ||mean(g) - g*||``, ``std = sqrt(E||g - mean(g)||**2)`` (the
    square root of the trace of the covariance), ``relative_bias =
    bias / ||g*||``, ``cosine`` = the mean over draws of ``cos(g, g*)``,
    ``bias_floor = std / sqrt(n_draws)`` (a bias below it is Monte Carlo
    noise), ``time_per_draw`` in seconds (all draws in one vectorised call).
    ``mean``, ``std_error`` (per coordinate) and ``exact`` are tensors of the
    logits' shape.
    """

    method: str
    problem: str
    n_draws: int
    bias: float
    std: float
    relative_bias: float
    cosine: float
    bias_floor: float
    time_per_draw: float
    mean: torch.Tensor
    std_error: torch.Tensor
    exact: torch.Tensor


def replicated(f: Callable[[torch.Tensor], torch.Tensor], n_draws: int
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f`` on samples with an extra leading batch axis of ``n_draws`` independent copies."""

    def f_draws(z: torch.Tensor) -> torch.Tensor:
        m = z.shape[0]
        values = f(z.reshape(m * n_draws, *z.shape[2:]))
        return values.reshape(m, n_draws, *values.shape[1:])

    return f_draws


def fit_control(problem: Problem, *, tau: float = 1.0, steps: int = 40, copies: int = 128,
                seed: int = 0, lr: float = 0.02) -> Callable[[torch.Tensor], torch.Tensor]:
    """A RELAX control ``c(y) = eta f(y) + sum(w * y)`` trained to minimise variance.

    The RELAX paper's form (Grathwohl et al. 2018, section 3.3: the relaxed
    objective plus a learned correction, here linear). ``eta`` starts at 1 and
    ``w`` at 0 (that is REBAR); ``steps`` Adam steps on
    :func:`relax_variance_loss` over ``copies`` replicated draws (seeds
    ``seed + 1 ...``). The fitted parameters are kept only if they lower the
    variance loss on held-out draws; otherwise the REBAR start is returned.
    """
    eta = torch.ones((), dtype=problem.logits.dtype, requires_grad=True)
    weight = torch.zeros(problem.logits.shape, dtype=problem.logits.dtype, requires_grad=True)
    n_axes = problem.logits.dim() - (problem.f(problem.logits.detach()[None]).dim() - 1)

    def control(y: torch.Tensor) -> torch.Tensor:
        return eta * problem.f(y) + (y * weight).flatten(-n_axes).sum(-1)

    f = replicated(problem.f, copies)
    c = replicated(control, copies)

    def variance_loss(draw_seed: int) -> torch.Tensor:
        logits = problem.logits.detach().expand(copies, *problem.logits.shape).clone()
        logits.requires_grad_()
        value = estimate(f, logits, "relax", tau=tau, seed=draw_seed, control=c)
        return relax_variance_loss(value, logits)[1]

    held_out = [seed + steps + 1 + i for i in range(4)]

    def held_out_loss() -> float:
        return sum(float(variance_loss(s).detach()) for s in held_out)

    start_loss = held_out_loss()
    optimizer = torch.optim.Adam([eta, weight], lr=lr)
    for step in range(steps):
        grads = torch.autograd.grad(variance_loss(seed + 1 + step), [eta, weight])
        for param, grad in zip((eta, weight), grads):
            param.grad = grad
        optimizer.step()
    if held_out_loss() >= start_loss:
        with torch.no_grad():
            eta.fill_(1.0)
            weight.zero_()
    eta.requires_grad_(False)
    weight.requires_grad_(False)
    return control


def draw_gradients(method: str, problem: Problem, n_draws: int, seed: int,
                   **options: object) -> tuple[torch.Tensor, float]:
    """``n_draws`` independent gradient estimates, shape ``(n_draws, *logits.shape)``,
    and the seconds the one vectorised call took.

    Draw ``i`` is batch element ``i`` of one :func:`estimate` call on the
    logits replicated ``n_draws`` times (a scalar seed keys the rows apart, so
    the draws are independent). For ``"relax"`` without a ``control``, one
    is trained first by :func:`fit_control`; a ``control`` given here acts
    on samples of the problem's shape ``(m, *problem.logits.shape)``.
    """
    f = replicated(problem.f, n_draws)
    options = {"n_samples": ESTIMATORS[method].min_samples, **options}
    if method == "relax":
        control = options.get("control") or fit_control(
            problem, tau=float(options.get("tau", 1.0)), seed=seed)
        options["control"] = replicated(control, n_draws)
    logits = problem.logits.detach().expand(n_draws, *problem.logits.shape).clone()
    logits.requires_grad_()
    start = time.perf_counter()
    value = estimate(f, logits, method, seed=seed, **options)
    (grad,) = torch.autograd.grad(value.sum(), logits)
    elapsed = time.perf_counter() - start
    return grad, elapsed


def gradient_stats(method: str, problem: str | Problem, *, n_draws: int, seed: int,
                   **options: object) -> GradientStats:
    """Bias, standard deviation, relative bias, cosine to the exact gradient and
    time per draw of ``method`` on ``problem``.

    Args:
        method: a name of :data:`ESTIMATORS`.
        problem: a :class:`Problem` or a name in :data:`PROBLEMS` (built with
            its defaults).
        n_draws: independent gradient draws, >= 2 (1 is used for ``"exact"``,
            which is deterministic).
        seed: int seed of the draws.
        options: passed to :func:`estimate` (``n_samples``, ``tau``, method
            options); ``n_samples`` defaults to the method's minimum.

    Example:
        >>> s = gradient_stats("rloo", "bernoulli_toy", n_draws=1000, seed=0, n_samples=2)
        >>> s.bias < 4 * s.bias_floor
        True
    """
    if method not in ESTIMATORS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(ESTIMATORS)}")
    check_int_range(n_draws, "n_draws", 2)
    if isinstance(problem, str):
        problem = make_problem(problem)
    draws = 1 if method == "exact" else n_draws
    grads, elapsed = draw_gradients(method, problem, draws, seed, **options)
    flat = grads.reshape(draws, -1)
    exact = problem.exact_gradient.reshape(-1).to(flat.dtype)
    mean = flat.mean(0)
    variance = flat.var(0) if draws > 1 else torch.zeros_like(mean)
    std = float(variance.sum().sqrt())
    exact_norm = float(exact.norm())
    bias = float((mean - exact).norm())
    cosine = float(torch.nn.functional.cosine_similarity(flat, exact.expand_as(flat), dim=1,
                                                         eps=1e-300).mean())
    return GradientStats(
        method=method, problem=problem.name, n_draws=draws, bias=bias, std=std,
        relative_bias=bias / exact_norm if exact_norm > 0 else math.inf, cosine=cosine,
        bias_floor=std / math.sqrt(draws), time_per_draw=elapsed / draws,
        mean=mean.reshape(problem.logits.shape),
        std_error=(variance / draws).sqrt().reshape(problem.logits.shape),
        exact=problem.exact_gradient)
