"""BinaryConcrete, LogitBinaryConcrete and HardConcrete: goodness of fit against cdf,
cdf/density consistency, endpoint masses and the expected L0 against Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

import gumbelkit
from gumbelkit.distributions import BinaryConcrete, HardConcrete, LogitBinaryConcrete
from stats import assert_close_z, assert_ks, draws_for

F64 = torch.float64


def _cdf_of(d):
    return lambda v: d.cdf(torch.from_numpy(np.asarray(v, dtype=np.float64))).numpy()


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_binary_concrete_ks(tau):
    # float64 so that no sample rounds to exactly 0 or 1 (that would be a tie)
    d = BinaryConcrete(tau, logits=torch.tensor(0.8, dtype=F64))
    assert_ks(d.sample((20_000,), seed=31).numpy(), _cdf_of(d))


@pytest.mark.parametrize("tau", [0.01, 0.1, 2.0])
def test_logit_binary_concrete_ks(tau):
    d = LogitBinaryConcrete(tau, logits=torch.tensor(-0.6, dtype=F64))
    assert_ks(d.sample((20_000,), seed=32).numpy(), _cdf_of(d))


@pytest.mark.parametrize("cls, grid", [
    (BinaryConcrete, torch.linspace(0.01, 0.99, 99, dtype=F64)),
    (LogitBinaryConcrete, torch.linspace(-8, 8, 101, dtype=F64)),
    (HardConcrete, torch.linspace(0.01, 0.99, 99, dtype=F64)),
])
@pytest.mark.parametrize("tau", [0.3, 1.0, 2.5])
def test_density_is_the_derivative_of_cdf(cls, grid, tau):
    logits = torch.tensor(0.4, dtype=F64)
    d = cls(tau, logits=logits)
    h = 1e-6
    slope = (d.cdf(grid + h) - d.cdf(grid - h)) / (2 * h)
    torch.testing.assert_close(d.log_prob(grid).exp(), slope, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cls", [BinaryConcrete, LogitBinaryConcrete])
def test_icdf_inverts_cdf(cls):
    d = cls(torch.tensor([0.5, 2.0], dtype=F64), logits=torch.tensor([-1.0, 1.5], dtype=F64))
    q = torch.tensor([[0.001], [0.3], [0.5], [0.9]], dtype=F64)
    torch.testing.assert_close(d.cdf(d.icdf(q)), q.expand(4, 2))
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        d.icdf(torch.tensor(1.5, dtype=F64))


def test_binary_concrete_endpoints():
    """Own samples that round to 0/1 use the kept logit-sample; other 0/1 get the limit."""
    d = BinaryConcrete(0.01, logits=torch.tensor(0.3), validate_args=True)
    y = d.rsample((5_000,), seed=2)
    assert ((y == 0) | (y == 1)).float().mean() > 0.5
    assert bool(d.log_prob(y).isfinite().all())
    ends = torch.tensor([0.0, 1.0], dtype=F64)
    logit = torch.tensor(0.3, dtype=F64)
    assert d.log_prob(ends.float()).tolist() == [math.inf, math.inf]
    assert BinaryConcrete(2.0, logits=logit).log_prob(ends).tolist() == [-math.inf, -math.inf]
    torch.testing.assert_close(BinaryConcrete(1.0, logits=logit).log_prob(ends),
                               torch.tensor([-0.3, 0.3], dtype=F64))


@pytest.mark.slow
def test_hard_concrete_masses_mean_and_l0_match_monte_carlo():
    logits = torch.tensor([-1.0, 0.5, 2.0])
    tau = torch.tensor([0.3, 2 / 3, 1.5])
    d = HardConcrete(tau, logits=logits)
    n = draws_for(0.5, 0.01)  # 4 standard errors of a frequency <= 0.01
    z = d.sample((n,), seed=41).double()
    for estimate, truth in [((z == 0).double(), d.prob_zero), ((z == 1).double(), d.prob_one),
                            ((z != 0).double(), d.prob_nonzero), (z, d.mean)]:
        for i in range(3):
            col = estimate[:, i]
            assert_close_z(col.mean().item(), float(truth[i]), col.std().item() / math.sqrt(n))
    torch.testing.assert_close(d.prob_nonzero, 1 - d.prob_zero)


@pytest.mark.slow
def test_hard_concrete_interior_ks():
    d = HardConcrete(0.5, logits=torch.tensor(0.3, dtype=F64))
    z = d.sample((40_000,), seed=42)
    inside = z[(z > 0) & (z < 1)].numpy()
    p0, p1 = float(d.prob_zero), float(d.prob_one)
    cdf = _cdf_of(d)
    assert_ks(inside, lambda v: (cdf(v) - p0) / (1 - p0 - p1))


@pytest.mark.parametrize("tau", [0.01, 0.1, 2 / 3, 5.0])
@pytest.mark.parametrize("logit", [-3.0, 0.0, 2.0])
def test_hard_concrete_mass_and_mean_by_quadrature(tau, logit):
    d = HardConcrete(tau, logits=torch.tensor(logit, dtype=F64))
    density, _ = integrate.quad(lambda v: math.exp(d.log_prob(torch.tensor(v, dtype=F64))),
                                0, 1, limit=200, epsabs=1e-12, epsrel=1e-12)
    assert abs(density + float(d.prob_zero) + float(d.prob_one) - 1) < 1e-8
    survival, _ = integrate.quad(lambda v: 1 - float(d.cdf(torch.tensor(v, dtype=F64))),
                                 0, 1, limit=200, epsabs=1e-13, epsrel=1e-13)
    assert abs(float(d.mean) - survival) < 1e-10


def test_hard_concrete_log_prob_and_gate():
    logits = torch.tensor([-4.0, 0.0, 3.0])
    d = HardConcrete(logits=logits, validate_args=True)
    lp = d.log_prob(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]))
    torch.testing.assert_close(lp[0], d.prob_zero.log())
    torch.testing.assert_close(lp[1], d.prob_one.log())
    assert bool(lp[2].isfinite().all())
    expected = torch.clamp(torch.sigmoid(logits) * 1.2 - 0.1, 0, 1)
    torch.testing.assert_close(d.deterministic_gate, expected)
    assert d.deterministic_gate[0] == 0 and d.deterministic_gate[2] == 1
    with pytest.raises(ValueError, match="Expected value argument"):
        d.log_prob(torch.tensor(1.5))


def test_hard_concrete_rsample_gradient():
    logits = torch.zeros(2_000, dtype=F64, requires_grad=True)
    z = HardConcrete(logits=logits).rsample(seed=3)
    z.sum().backward()
    at_end = (z == 0) | (z == 1)
    assert bool(at_end.any()) and bool((~at_end).any())
    assert bool((logits.grad[at_end] == 0).all()) and bool((logits.grad[~at_end] > 0).all())
    torch.testing.assert_close(z, gumbelkit.hard_concrete(logits, seed=3))


@pytest.mark.parametrize("graph", [False, True], ids=["detached", "rsample"])
def test_binary_concrete_low_temperature_gradient_is_the_log_space_one(graph):
    """At tau = 0.01 most samples round to 0 or 1: the gradient of log_prob is that of the
    logit-space density of the unrounded logit-sample (score only for a detached
    sample, score plus pathwise for the rsample'd tensor itself)."""
    logits = (3 * torch.randn(4, 5, generator=torch.Generator().manual_seed(0))).requires_grad_()
    d = BinaryConcrete(0.01, logits=logits)
    y = d.rsample((2_000,), seed=0)
    assert ((y == 0) | (y == 1)).float().mean() > 0.5
    (grad,) = torch.autograd.grad(d.log_prob(y if graph else y.detach()).sum(), logits)
    base = LogitBinaryConcrete(0.01, logits=logits)
    x = base.rsample((2_000,), seed=0)
    x = x if graph else x.detach()
    jacobian = torch.nn.functional.softplus(x) + torch.nn.functional.softplus(-x)
    (expected,) = torch.autograd.grad((base.log_prob(x) + jacobian).sum(), logits)
    assert bool(grad.isfinite().all())
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-3)
