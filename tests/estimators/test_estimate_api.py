"""estimate(): shapes, validation, seeds, numerics, gradients into f's parameters."""

import math

import pytest
import torch

import gumbelkit
from gumbelkit.estimators import ESTIMATORS, METHODS, SAMPLE_ESTIMATORS

INF = math.inf


def options_for(method, f):
    """Extra options a method needs (RELAX: a control variate; here REBAR's)."""
    return {"control": f} if method == "relax" else {}


def n_for(method):
    return max(2, ESTIMATORS[method].min_samples)


def weighted(z):
    """(m, *batch, V, K) -> (m, *batch): a smooth function of the one-hots."""
    w = torch.arange(z.shape[-1], dtype=z.dtype)
    return ((z * w).sum(-1).sum(-1) - 0.7) ** 2


@pytest.mark.parametrize("method", METHODS)
def test_shape_and_value(method):
    logits = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    value = gumbelkit.estimate(weighted, logits, method, n_samples=n_for(method), seed=0,
                               **options_for(method, weighted))
    assert value.shape == (4,)
    (grad,) = torch.autograd.grad(value.sum(), logits)
    assert grad.shape == logits.shape and torch.isfinite(grad).all()


@pytest.mark.parametrize("method", METHODS)
def test_empty_batch_scalar_result(method):
    logits = torch.zeros(3, 2, requires_grad=True)
    value = gumbelkit.estimate(weighted, logits, method, n_samples=n_for(method), seed=1,
                               **options_for(method, weighted))
    assert value.shape == ()


@pytest.mark.parametrize("method", METHODS)
def test_seed_reproducible(method):
    logits = torch.randn(5, 2, 2, generator=torch.Generator().manual_seed(2), requires_grad=True)
    grads = []
    for _ in range(2):
        value = gumbelkit.estimate(weighted, logits, method, n_samples=n_for(method), seed=7,
                                   **options_for(method, weighted))
        grads.append(torch.autograd.grad(value.sum(), logits)[0])
    assert torch.equal(grads[0], grads[1])
    torch.manual_seed(3)
    a = gumbelkit.estimate(weighted, logits, method, n_samples=n_for(method),
                           **options_for(method, weighted))
    torch.manual_seed(3)
    b = gumbelkit.estimate(weighted, logits, method, n_samples=n_for(method),
                           **options_for(method, weighted))
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_finite_for_huge_and_masked_logits(method):
    logits = torch.tensor([[1e4, -1e4], [-INF, 3e3], [2.0, -INF], [1e4, 1e4 - 0.5]],
                          requires_grad=True)
    value = gumbelkit.estimate(weighted, logits, method, n_samples=n_for(method), seed=0,
                               **options_for(method, weighted))
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert grad[1, 0] == 0 and grad[2, 1] == 0


@pytest.mark.parametrize("method", [m for m in METHODS if not ESTIMATORS[m].binary_only])
def test_finite_masked_categorical(method):
    logits = torch.tensor([[1e4, -INF, 0.0, -1e4, 3.0], [-INF, -INF, 2.0, 1.0, -INF]],
                          requires_grad=True)
    value = gumbelkit.estimate(weighted, logits, method, n_samples=n_for(method), seed=0,
                               **options_for(method, weighted))
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert (grad[logits.detach() == -INF] == 0).all()


@pytest.mark.parametrize("method", METHODS)
def test_gradient_reaches_parameters_of_f(method):
    weight = torch.tensor([0.3, -0.2], requires_grad=True)
    logits = torch.zeros(3, 2)

    def f(z):
        return ((z * weight).sum((-1, -2)) - 1.0) ** 2

    value = gumbelkit.estimate(f, logits, method, n_samples=n_for(method), seed=0,
                               **options_for(method, f))
    (grad,) = torch.autograd.grad(value, weight)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="valid methods: exact, reinforce"):
        gumbelkit.estimate(weighted, torch.zeros(2, 2), "bogus")


def test_unknown_option_names_allowed_ones():
    with pytest.raises(ValueError, match="its options: k"):
        gumbelkit.estimate(weighted, torch.zeros(2, 2), "gumbel_rao", kk=3)


@pytest.mark.parametrize("method", ["arm", "disarm"])
def test_binary_only(method):
    with pytest.raises(ValueError, match="K=2, got K=3"):
        gumbelkit.estimate(weighted, torch.zeros(2, 3), method)


def test_rloo_needs_two_samples():
    with pytest.raises(ValueError, match="n_samples must lie in"):
        gumbelkit.estimate(weighted, torch.zeros(2, 3), "rloo", n_samples=1)


def test_reinmax_needs_tau_at_least_one():
    with pytest.raises(ValueError, match="tau >= 1"):
        gumbelkit.estimate(weighted, torch.zeros(2, 3), "reinmax", tau=0.5)
    with pytest.raises(ValueError, match="tau >= 1"):
        gumbelkit.estimators.reinmax(torch.zeros(3), tau=torch.tensor([0.9]))


def test_relax_needs_control():
    with pytest.raises(ValueError, match="control"):
        gumbelkit.estimate(weighted, torch.zeros(2, 3), "relax")


def test_exact_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    gumbelkit.estimate(weighted, torch.zeros(2, 3), "exact")
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


def test_exact_refuses_above_limit():
    with pytest.raises(ValueError, match="max_configurations=65536"):
        gumbelkit.estimate(weighted, torch.zeros(17, 2), "exact")
    with pytest.raises(ValueError, match="3\\*\\*9 = 19683"):
        gumbelkit.estimate(weighted, torch.zeros(9, 3), "exact", max_configurations=19682)
    value = gumbelkit.estimate(weighted, torch.zeros(9, 3), "exact", max_configurations=19683)
    assert torch.isfinite(value)


def test_bad_inputs():
    with pytest.raises(ValueError, match="tau must be > 0"):
        gumbelkit.estimate(weighted, torch.zeros(2, 3), "st", tau=0.0)
    with pytest.raises(ValueError, match="NaN"):
        gumbelkit.estimate(weighted, torch.tensor([[0.0, math.nan]]), "st")
    with pytest.raises(ValueError, match="every logit is -inf"):
        gumbelkit.estimate(weighted, torch.tensor([[-INF, -INF]]), "reinforce")
    with pytest.raises(ValueError, match="f must map samples"):
        gumbelkit.estimate(lambda z: z.sum(), torch.zeros(2, 3), "st")
    with pytest.raises(ValueError, match="baseline must be"):
        gumbelkit.estimate(weighted, torch.zeros(2, 3), "reinforce", baseline="mean")


def test_reinforce_baselines_reduce_variance():
    logits = torch.zeros(2000, 3, 2, requires_grad=True)

    def f(z):
        return 5.0 + weighted(z)

    spreads = {}
    for name, baseline in [("none", None), ("ema", "ema"),
                           ("class", gumbelkit.estimators.EMABaseline(0.0))]:
        if name == "class":
            baseline(torch.full((1,), 5.0 + 0.7 ** 2))
        value = gumbelkit.estimate(f, logits, "reinforce", n_samples=4, seed=0,
                                   baseline=baseline)
        (grad,) = torch.autograd.grad(value.sum(), logits)
        spreads[name] = float(grad.std(0).mean())
    assert spreads["ema"] < spreads["none"] and spreads["class"] < spreads["none"]


@pytest.mark.parametrize("name", list(SAMPLE_ESTIMATORS))
def test_sample_level_common_signature(name):
    fn = SAMPLE_ESTIMATORS[name]
    logits = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = fn(logits, 1.0, dim=1, seed=0)
    assert y.shape == logits.shape and y.dtype == logits.dtype
    assert torch.allclose(y.sum(1), torch.ones(3, 5))
    if name != "gumbel_softmax":
        assert ((y == 0) | (y == 1)).all()
    again = fn(logits, 1.0, dim=1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(again, fn(logits, 1.0, dim=1, generator=torch.Generator().manual_seed(4)))
    (grad,) = torch.autograd.grad((y * torch.randn(3, 4, 5, generator=torch.Generator()
                                                   .manual_seed(1))).sum(), logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["st", "st_gumbel", "reinmax", "gumbel_rao", "gapped_st"])
def test_hard_samples_follow_gumbel_max(name):
    logits = torch.randn(50, 6, generator=torch.Generator().manual_seed(5))
    y = SAMPLE_ESTIMATORS[name](logits, 1.0, seed=11)
    assert torch.equal(y.argmax(-1), gumbelkit.gumbel_max(logits, seed=11))


def test_per_row_seed_tensor_batch_invariant():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(6), requires_grad=True)
    seeds = torch.tensor([3, 1, 4, 1])
    w = torch.randn(5, generator=torch.Generator().manual_seed(7))
    full = gumbelkit.estimators.gumbel_rao(logits, 0.5, k=3, seed=seeds)
    (g_full,) = torch.autograd.grad((full * w).sum(), logits)
    one = gumbelkit.estimators.gumbel_rao(logits[2:3], 0.5, k=3, seed=seeds[2:3])
    (g_one,) = torch.autograd.grad((one * w).sum(), logits)
    assert torch.equal(full[2:3], one)
    assert torch.allclose(g_full[2], g_one[2])


@pytest.mark.parametrize("method", METHODS)
def test_estimate_per_row_seeds_are_batch_invariant(method):
    """With one seed per categorical variable, a batch element's estimate and gradient
    are what it gets alone: the same seeds, the same draws, whatever its batchmates."""
    K = 2 if ESTIMATORS[method].binary_only else 4
    logits = torch.randn(3, 2, K, generator=torch.Generator().manual_seed(8), requires_grad=True)
    seeds = torch.tensor([[5, 6], [7, 8], [9, 10]])
    kw = dict(n_samples=n_for(method), tau=1.5, **options_for(method, weighted))
    full = gumbelkit.estimate(weighted, logits, method, seed=seeds, **kw)
    (g_full,) = torch.autograd.grad(full.sum(), logits)
    alone = gumbelkit.estimate(weighted, logits[1:2], method, seed=seeds[1:2], **kw)
    (g_alone,) = torch.autograd.grad(alone.sum(), logits)
    torch.testing.assert_close(full[1:2], alone)
    torch.testing.assert_close(g_full[1], g_alone[1])
    again = gumbelkit.estimate(weighted, logits, method, seed=seeds, **kw)
    assert torch.equal(full, again)
