"""Concrete / ExpConcrete: the density integrates to 1, samples fit it, torch agrees where
it is finite, low temperatures and masked categories stay finite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gumbelkit.distributions import Concrete, ExpConcrete, RelaxedOneHotCategorical
from stats import assert_chisquare

F64 = torch.float64


def _grid(low: float, high: float, n: int) -> tuple[torch.Tensor, float]:
    t = torch.linspace(low, high, n, dtype=F64)
    return t, float(t[1] - t[0])


def _density_k2(d: Concrete, t: torch.Tensor) -> torch.Tensor:
    """Density of t = log(y1 / y2): p(y) dy1/dt with dy1/dt = y1 y2."""
    y = torch.stack([torch.sigmoid(t), torch.sigmoid(-t)], -1)
    return (d.log_prob(y) + torch.log(y).sum(-1)).exp()


def _density_k3(d: Concrete, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """Density of (log y1/y3, log y2/y3): p(y) times the Jacobian y1 y2 y3."""
    y = torch.stack([t1, t2, torch.zeros_like(t1)], -1).softmax(-1)
    return (d.log_prob(y) + torch.log(y).sum(-1)).exp()


@pytest.mark.parametrize("tau", [0.3, 1.0, 3.0])
def test_density_integrates_to_one_k2(tau):
    d = Concrete(tau, logits=torch.tensor([0.4, -0.7], dtype=F64))
    half = 60.0 / tau  # tails of the scaled logistic beyond this are below e^-58
    t, h = _grid(-half, half, 20_001)
    assert abs(torch.trapezoid(_density_k2(d, t), dx=h).item() - 1) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_density_integrates_to_one_k3(tau):
    d = Concrete(tau, logits=torch.tensor([0.4, -0.7, 0.1], dtype=F64))
    half = 40.0 / tau
    t, h = _grid(-half, half, 601)
    t1, t2 = torch.meshgrid(t, t, indexing="ij")
    dens = _density_k3(d, t1, t2)
    total = torch.trapezoid(torch.trapezoid(dens, dx=h, dim=-1), dx=h).item()
    assert abs(total - 1) < 1e-5


def _midpoints(center: float, unit: float, per_unit: int,
               half_units: int) -> tuple[torch.Tensor, float]:
    """Midpoint-rule nodes around ``center``: cell edges at multiples of ``unit`` fall
    exactly between nodes, so every node lies inside one histogram cell."""
    h = unit / per_unit
    i = torch.arange(-half_units * per_unit, half_units * per_unit, dtype=F64)
    return center + (i + 0.5) * h, h


@pytest.mark.slow
def test_histogram_matches_density_k2():
    tau, logits = 0.6, torch.tensor([0.4, -0.7])
    d = Concrete(tau, logits=logits)
    x = ExpConcrete(tau, logits=logits).sample((60_000,), seed=21).double()
    t_samples = (x[:, 0] - x[:, 1]).numpy()
    center = float(logits[0] - logits[1]) / tau
    edges = center + np.array([-np.inf, -6, -3, -1.5, -0.5, 0, 0.5, 1.5, 3, 6, np.inf]) / tau
    counts = np.histogram(t_samples, edges)[0]
    t, h = _midpoints(center, 0.5 / tau, 20, 120)
    dens = _density_k2(Concrete(tau, logits=logits.double()), t) * h
    cell = np.digitize(t.numpy(), edges[1:-1])
    probs = np.bincount(cell, weights=dens.numpy(), minlength=len(edges) - 1)
    assert abs(probs.sum() - 1) < 1e-4
    assert_chisquare(counts, probs)
    assert d.log_prob(d.sample((10,), seed=1)).isfinite().all()


@pytest.mark.slow
def test_histogram_matches_density_k3():
    tau, logits = 0.7, torch.tensor([0.4, -0.7, 0.1])
    x = ExpConcrete(tau, logits=logits).sample((40_000,), seed=22).double()
    t1s, t2s = (x[:, 0] - x[:, 2]).numpy(), (x[:, 1] - x[:, 2]).numpy()
    c1, c2 = float(logits[0] - logits[2]) / tau, float(logits[1] - logits[2]) / tau
    steps = np.array([-np.inf, -3, -1, 0, 1, 3, np.inf]) / tau
    e1, e2 = c1 + steps, c2 + steps
    counts = np.histogram2d(t1s, t2s, [e1, e2])[0]
    g1, h = _midpoints(c1, 1 / tau, 8, 40)
    g2, _ = _midpoints(c2, 1 / tau, 8, 40)
    t1, t2 = torch.meshgrid(g1, g2, indexing="ij")
    dens = _density_k3(Concrete(tau, logits=logits.double()), t1, t2) * h * h
    cells = np.digitize(t1.numpy(), e1[1:-1]) * 6 + np.digitize(t2.numpy(), e2[1:-1])
    probs = np.bincount(cells.ravel(), weights=dens.numpy().ravel(), minlength=36)
    assert abs(probs.sum() - 1) < 1e-4
    assert_chisquare(counts.ravel(), probs)


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0, 2.0])
def test_agrees_with_torch_where_torch_is_finite(tau):
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(4), dtype=F64)
    ours = Concrete(tau, logits=logits)
    theirs = torch.distributions.RelaxedOneHotCategorical(torch.tensor(tau, dtype=F64),
                                                          logits=logits, validate_args=False)
    y = ours.sample((2_000,), seed=3)
    lp_cached = ours.log_prob(y)
    lp = ours.log_prob(y.clone())
    ref = theirs.log_prob(y)
    finite = ref.isfinite()
    assert finite.float().mean() > 0.5
    torch.testing.assert_close(lp[finite], ref[finite], rtol=1e-5, atol=0)
    torch.testing.assert_close(lp_cached, lp, rtol=1e-9, atol=1e-9)


def test_alias():
    assert RelaxedOneHotCategorical is Concrete


def test_low_temperature_uses_the_kept_log_sample():
    logits = torch.randn(5, generator=torch.Generator().manual_seed(1))
    d = Concrete(0.01, logits=logits, validate_args=True)
    y = d.rsample((2_000,), seed=0)
    assert (y == 0).any(-1).float().mean() > 0.9  # most samples have underflowed entries
    lp = d.log_prob(y)
    assert bool(lp.isfinite().all())
    torch.testing.assert_close(d.log_prob(y.detach()), lp, rtol=0, atol=0)
    x = ExpConcrete(0.01, logits=logits).rsample((2_000,), seed=0)
    torch.testing.assert_close(lp, ExpConcrete(0.01, logits=logits).log_prob(x) - x.sum(-1))
    with pytest.raises(ValueError, match="boundary of the simplex"):
        d.log_prob(y.clone())
    y.mul_(1.0)  # an in-place change invalidates the kept log-sample
    with pytest.raises(ValueError, match="boundary of the simplex"):
        d.log_prob(y)


def test_validation_accepts_own_samples_that_torch_rejects():
    """K = 10,000 float32 samples: the sum-to-one check allows for rounding."""
    d = Concrete(0.5, logits=torch.zeros(10_000), validate_args=True)
    y = d.sample((4,), seed=2)
    assert d.log_prob(y).isfinite().all()
    with pytest.raises(ValueError, match="Expected value argument"):
        d.log_prob(torch.full((10_000,), 2e-4))


def test_masked_categories():
    logits = torch.tensor([0.5, -math.inf, 1.0, -0.3], dtype=F64, requires_grad=True)
    tau = torch.tensor(0.5, dtype=F64, requires_grad=True)
    d = Concrete(tau, logits=logits, validate_args=True)
    y = d.rsample((1_000,), seed=5)
    assert bool((y[:, 1] == 0).all())
    lp = d.log_prob(y)
    assert bool(lp.isfinite().all())
    reduced = Concrete(0.5, logits=logits.detach()[[0, 2, 3]])
    torch.testing.assert_close(lp, reduced.log_prob(y.detach()[:, [0, 2, 3]]))
    (lp.sum() + (y * torch.arange(4.0, dtype=F64)).sum()).backward()
    assert bool(logits.grad.isfinite().all()) and logits.grad[1] == 0
    assert bool(tau.grad.isfinite())
    probs = Concrete(0.5, probs=torch.tensor([0.3, 0.0, 0.7]))
    assert bool((probs.sample((100,), seed=0)[:, 1] == 0).all())


def test_exp_concrete_off_support_values_have_zero_density():
    d = ExpConcrete(0.5, logits=torch.tensor([0.0, 1.0, -1.0]))
    on_simplex = torch.tensor([[0.0, 0.3, 0.7], [0.2, 0.5, 0.3]]).log()
    lp = d.log_prob(on_simplex)
    assert lp[0] == -math.inf and lp[1].isfinite()


@pytest.mark.parametrize("graph", [False, True], ids=["detached", "rsample"])
def test_low_temperature_gradient_is_the_log_space_one(graph):
    """At tau = 0.01 most samples have entries that underflow (to 0 or below the smallest
    normal float32): log_prob of a detached sample differentiates as the score function,
    and of the rsample'd tensor itself as the total derivative, both exactly as the
    log-space density of the unrounded log-sample does, and finite."""
    logits = (3 * torch.randn(4, 5, generator=torch.Generator().manual_seed(0))).requires_grad_()
    d = Concrete(0.01, logits=logits)
    y = d.rsample((2_000,), seed=0)
    tiny = torch.finfo(torch.float32).smallest_normal
    assert bool(((y > 0) & (y < tiny)).any()) and bool((y == 0).any())
    log_p = d.log_prob(y if graph else y.detach())
    (grad,) = torch.autograd.grad(log_p.sum(), logits)
    base = ExpConcrete(0.01, logits=logits)
    x = base.rsample((2_000,), seed=0)
    x = x if graph else x.detach()
    (expected,) = torch.autograd.grad((base.log_prob(x) - x.sum(-1)).sum(), logits)
    assert bool(grad.isfinite().all())
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-3)
