"""Every estimator measured against the exact gradient on the problem registry.

Unbiased methods must agree with the exact gradient coordinate by coordinate
within 4 standard errors (fixed seeds; false-failure rate about 6e-5 per
coordinate, under 1e-3 per test for the <= 15 coordinates used here).
"""

import pytest
import torch

import gumbelkit
from gumbelkit.estimators import ESTIMATORS
from gumbelkit.experiments.measurement import (
    draw_gradients,
    fit_control,
    gradient_stats,
)
from gumbelkit.experiments.problems import (
    PROBLEMS,
    Problem,
    bernoulli_toy,
    categorical_toy,
    make_problem,
    poly,
)
from stats import assert_close_z

N_DRAWS = 2000


def linear_control(problem: Problem):
    """A RELAX control variate unrelated to f: a fixed random linear function."""
    w = torch.randn(problem.logits.shape, generator=torch.Generator().manual_seed(9),
                    dtype=torch.float64)

    def control(y):
        return (y * w).flatten(-problem.logits.dim()).sum(-1) + 0.3

    return control


UNBIASED = [m for m, e in ESTIMATORS.items() if e.unbiased and m != "exact"]
CASES = [(m, p) for m in UNBIASED for p in ("bernoulli_toy_45", "bernoulli_toy_499",
                                             "categorical_toy")
         if not (ESTIMATORS[m].binary_only and p == "categorical_toy")]
BUILDERS = {
    "bernoulli_toy_45": lambda: bernoulli_toy(0.45),
    "bernoulli_toy_499": lambda: bernoulli_toy(0.499),
    "categorical_toy": lambda: categorical_toy(),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method,problem", CASES)
def test_unbiased_within_four_standard_errors(method, problem):
    pr = BUILDERS[problem]()
    options = {"control": linear_control(pr)} if method == "relax" else {}
    if method == "reinforce":
        options["baseline"] = "ema"
    grads, _ = draw_gradients(method, pr, N_DRAWS, seed=123, **options)
    flat = grads.reshape(N_DRAWS, -1)
    mean, se = flat.mean(0), flat.std(0) / N_DRAWS ** 0.5
    for est, truth, err in zip(mean.tolist(), pr.exact_gradient.reshape(-1).tolist(),
                               se.tolist()):
        assert_close_z(est, truth, err)


def test_biased_methods_are_detectably_biased():
    """The test above has power: straight-through fails it on the same problem."""
    pr = categorical_toy()
    s = gradient_stats("st", pr, n_draws=N_DRAWS, seed=123)
    assert s.bias > 8 * s.bias_floor


@pytest.mark.parametrize("t", [0.45, 0.499])
def test_exact_equals_analytic_gradient(t):
    pr = bernoulli_toy(t)
    logits = pr.logits.clone().requires_grad_()
    value = gumbelkit.estimate(pr.f, logits, "exact")
    (grad,) = torch.autograd.grad(value, logits)
    assert abs(float(value.detach()) - pr.exact_value) < 1e-12
    assert torch.allclose(grad, pr.exact_gradient, atol=1e-6, rtol=0)
    assert torch.allclose(grad[..., 1], (1 - 2 * t) * torch.sigmoid(logits[..., 1]).detach()
                          * torch.sigmoid(-logits[..., 1]).detach(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("p", [1.5, 2.0, 3.0])
def test_exact_equals_analytic_gradient_poly(p):
    pr = poly(p=p, n_variables=10)
    logits = pr.logits.clone().requires_grad_()
    value = gumbelkit.estimate(pr.f, logits, "exact")
    (grad,) = torch.autograd.grad(value, logits)
    assert abs(float(value.detach()) - pr.exact_value) < 1e-6
    assert torch.allclose(grad, pr.exact_gradient, atol=1e-6, rtol=0)


def test_exact_with_batch_axes_and_gradcheck():
    logits = torch.randn(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                         requires_grad=True)
    w = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def f(z):
        return ((z * w).sum((-1, -2)) - 0.5) ** 2

    assert torch.autograd.gradcheck(lambda x: gumbelkit.estimate(f, x, "exact"), (logits,))
    value = gumbelkit.estimate(f, logits, "exact")
    one = gumbelkit.estimate(f, logits[1], "exact")
    assert value.shape == (2,) and torch.allclose(value[1], one)


def test_gumbel_rao_no_more_variance_than_st_gumbel():
    """Paulus et al. 2021, Proposition 2, on simplex_qp (paired: same seed, same samples)."""
    st = gradient_stats("st_gumbel", "simplex_qp", n_draws=N_DRAWS, seed=5, tau=0.5)
    rao = gradient_stats("gumbel_rao", "simplex_qp", n_draws=N_DRAWS, seed=5, tau=0.5, k=10)
    assert rao.std < st.std
    assert_close_z(float(rao.mean.sum()), 0.0, 1e-9)
    diff = (rao.mean - st.mean).abs().max()
    assert float(diff) < 4 * float((rao.std_error ** 2 + st.std_error ** 2).sqrt().max())


def test_fit_control_reduces_relax_variance():
    """relax_variance_loss trains the control: its variance drops below REBAR's (c = f)."""
    pr = categorical_toy()
    rebar_like = gradient_stats("relax", pr, n_draws=N_DRAWS, seed=3, control=pr.f)
    fitted = gradient_stats("relax", pr, n_draws=N_DRAWS, seed=3,
                            control=fit_control(pr, steps=40, seed=3))
    assert fitted.std < rebar_like.std


def test_problem_registry():
    for name in PROBLEMS:
        pr = make_problem(name)
        assert pr.exact_gradient.shape == pr.logits.shape
        assert torch.isfinite(pr.exact_gradient).all()
    with pytest.raises(ValueError, match="valid problems"):
        make_problem("nope")
    pr = make_problem("poly", p=2.0, logit_scale=0.0)
    assert abs(pr.exact_value - 0.2525) < 1e-12


def test_gradient_stats_fields():
    s = gradient_stats("disarm", "bernoulli_toy", n_draws=200, seed=0)
    assert s.n_draws == 200 and s.std > 0 and -1 <= s.cosine <= 1 and s.time_per_draw > 0
    assert s.relative_bias == pytest.approx(s.bias / float(s.exact.norm()))
    e = gradient_stats("exact", "simplex_qp", n_draws=10, seed=0)
    assert e.bias < 1e-12 and e.std == 0 and e.cosine == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n_draws must lie in"):
        gradient_stats("st", "simplex_qp", n_draws=1, seed=0)
