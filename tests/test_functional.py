"""Functional ops: exact sampling probabilities, straight-through semantics,
masking, dtypes, the seed contract and every bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import gumbelkit
from gumbelkit.kernels import ops
from stats import assert_chisquare, assert_ks

INF = math.inf

# (name, logits) for the Gumbel-max frequency test; masked and very unequal rows included.
CATEGORICAL_CASES = [
    ("K=2", [0.3, -0.4]),
    ("K=5", [2.0, 1.0, 0.5, 0.0, -1.0]),
    ("K=5 masked", [1.0, -INF, 0.0, -INF, 0.5]),
    ("unequal", [8.0, 0.0, -2.0, 3.0]),
    ("K=50", list(np.linspace(-3, 3, 50))),
]


@pytest.mark.parametrize("name,logits", CATEGORICAL_CASES, ids=[c[0] for c in CATEGORICAL_CASES])
def test_gumbel_max_frequencies_match_softmax(name, logits):
    logits = torch.tensor(logits)
    n = 200_000
    draws = gumbelkit.gumbel_max(logits.expand(n, -1), seed=1234)
    counts = torch.bincount(draws, minlength=logits.numel())
    probs = torch.softmax(logits.double(), -1)
    assert counts[probs == 0].sum() == 0  # masked categories never drawn
    assert_chisquare(counts.numpy(), probs.numpy())


def test_gumbel_topk_matches_plackett_luce_on_ordered_pairs():
    logits = torch.tensor([1.0, 0.0, -0.5, 2.0, -INF])
    p = torch.softmax(logits.double(), -1).numpy()
    n = 200_000
    pairs = gumbelkit.gumbel_topk(logits.expand(n, -1), k=2, seed=7)
    assert pairs.shape == (n, 2)
    assert (pairs[:, 0] != pairs[:, 1]).all()
    codes = (pairs[:, 0] * 5 + pairs[:, 1]).numpy()
    counts = np.bincount(codes, minlength=25)
    probs = np.zeros(25)
    for i, j in itertools.permutations(range(5), 2):
        probs[i * 5 + j] = p[i] * p[j] / (1 - p[i]) if p[i] < 1 else 0.0
    assert_chisquare(counts, probs)


def test_gumbel_topk_first_is_gumbel_max():
    logits = torch.randn(64, 30)
    assert torch.equal(gumbelkit.gumbel_topk(logits, 4, seed=3)[:, 0],
                       gumbelkit.gumbel_max(logits, seed=3))


@pytest.mark.parametrize("tau", [0.1, 1.0, torch.tensor([[0.3], [2.0], [1.0]])])
def test_hard_gumbel_softmax_is_exact_one_hot_with_the_soft_gradient(tau):
    logits = torch.randn(3, 7, requires_grad=True)
    weights = torch.randn(3, 7)
    hard = gumbelkit.gumbel_softmax(logits, tau, hard=True, seed=5)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard.detach().sum(-1), torch.ones(3))
    assert torch.equal(hard.detach().argmax(-1), gumbelkit.gumbel_max(logits, seed=5))
    (g_hard,) = torch.autograd.grad((hard * weights).sum(), logits)
    soft = gumbelkit.gumbel_softmax(logits, tau, hard=False, seed=5)
    (g_soft,) = torch.autograd.grad((soft * weights).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft, rtol=0, atol=0)


def test_gumbel_softmax_is_softmax_of_perturbed_logits():
    logits = torch.randn(4, 6, dtype=torch.float64)
    g = gumbelkit.gumbel_noise((4, 6), seed=2, dtype=torch.float64)
    expected = torch.softmax((logits + g) / 0.7, -1)
    torch.testing.assert_close(gumbelkit.gumbel_softmax(logits, 0.7, seed=2), expected)


def test_masked_categories_have_zero_probability_and_gradient():
    logits = torch.tensor([[0.0, -INF, 1.0], [-INF, 2.0, -INF]], requires_grad=True)
    for hard in (False, True):
        for tau in (0.01, 1.0, 10.0):
            y = gumbelkit.gumbel_softmax(logits, tau, hard=hard, seed=0)
            (grad,) = torch.autograd.grad((y * torch.arange(3.0)).sum(), logits)
            assert torch.isfinite(y).all() and torch.isfinite(grad).all()
            assert (y.detach()[torch.isinf(logits.detach())] == 0).all()
            assert (grad[torch.isinf(logits.detach())] == 0).all()


def test_extreme_logits_and_low_temperature_stay_finite():
    logits = torch.tensor([[1e4, -1e4, 0.0], [3e4, 3e4, -INF]], requires_grad=True)
    y = gumbelkit.gumbel_softmax(logits, 0.01, seed=1)
    (grad,) = torch.autograd.grad(y[:, 0].sum(), logits)
    assert torch.isfinite(y).all() and torch.isfinite(grad).all()


def test_torch_gumbel_softmax_returns_nan_at_tau_zero_where_we_raise():
    """Documents the difference: torch divides by tau=0 and returns NaN; we refuse."""
    logits = torch.zeros(2, 3)
    assert torch.isnan(torch.nn.functional.gumbel_softmax(logits, tau=0.0)).any()
    with pytest.raises(ValueError, match="tau must be > 0"):
        gumbelkit.gumbel_softmax(logits, tau=0.0)


def test_per_row_temperature_equals_rowwise_calls():
    logits = torch.randn(3, 5)
    tau = torch.tensor([[0.2], [1.0], [4.0]])
    seeds = torch.tensor([10, 20, 30])
    batch = gumbelkit.gumbel_softmax(logits, tau, seed=seeds)
    for r in range(3):
        alone = gumbelkit.gumbel_softmax(logits[r:r + 1], float(tau[r]), seed=seeds[r:r + 1])
        torch.testing.assert_close(batch[r:r + 1], alone, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    logits = torch.randn(8, 11)
    y = gumbelkit.gumbel_softmax(logits.to(dtype), 0.5, seed=4)
    assert y.dtype == dtype
    ref = gumbelkit.gumbel_softmax(logits.to(dtype).float(), 0.5, seed=4)
    torch.testing.assert_close(y, ref.to(dtype))
    assert torch.equal(gumbelkit.gumbel_max(logits.to(dtype), seed=4),
                       gumbelkit.gumbel_max(logits.to(dtype).float(), seed=4))


def test_dim_and_memory_layout_do_not_change_the_noise():
    logits = torch.randn(6, 9)
    along0 = gumbelkit.gumbel_softmax(logits.T, 0.5, dim=0, seed=3)
    torch.testing.assert_close(along0.T, gumbelkit.gumbel_softmax(logits, 0.5, seed=3))
    non_contiguous = torch.randn(9, 6).T
    torch.testing.assert_close(gumbelkit.gumbel_softmax(non_contiguous, 0.5, seed=3),
                               gumbelkit.gumbel_softmax(non_contiguous.contiguous(), 0.5, seed=3))


def test_results_independent_of_thread_count():
    logits = torch.randn(40, 500)
    assert logits.numel() >= ops.PARALLEL_MIN_ELEMENTS  # else one thread runs both calls
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gumbelkit.gumbel_softmax(logits, 0.5, seed=8)
        torch.set_num_threads(2)
        two = gumbelkit.gumbel_softmax(logits, 0.5, seed=8)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, two)


def test_gradcheck_gumbel_softmax_float64():
    logits = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor([[0.5], [1.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, t: gumbelkit.gumbel_softmax(x, t, seed=1),
                                    (logits, tau))


def test_straight_through_forward_and_backward():
    soft = torch.tensor([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]], requires_grad=True)
    hard = gumbelkit.straight_through(soft)
    assert torch.equal(hard.detach(), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    upstream = torch.randn(2, 3)
    (grad,) = torch.autograd.grad(hard, soft, upstream)
    assert torch.equal(grad, upstream)


def test_binary_concrete_threshold_probability_and_cdf():
    a = torch.tensor([-1.5, 0.0, 0.8])
    tau = 0.4
    n = 100_000
    y = gumbelkit.binary_concrete(a.expand(n, -1), tau, seed=21)
    for j in range(3):
        ones = int((y[:, j] > 0.5).sum())
        p = float(torch.sigmoid(a[j]))
        assert_chisquare([ones, n - ones], [p, 1 - p])

    def cdf(v):
        with np.errstate(divide="ignore"):  # v == 1 exactly in float32 gives logit +inf
            return 1 / (1 + np.exp(-(tau * np.log(v / (1 - v)) - float(a[2]))))
    assert_ks(y[:20_000, 2].double().numpy(), cdf)


def test_binary_concrete_hard_is_zero_one_with_soft_gradient():
    a = torch.randn(50, requires_grad=True)
    hard = gumbelkit.binary_concrete(a, 0.5, hard=True, seed=3)
    soft = gumbelkit.binary_concrete(a, 0.5, seed=3)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard.detach(), (soft.detach() > 0.5).float())
    (g_hard,) = torch.autograd.grad(hard.sum(), a)
    (g_soft,) = torch.autograd.grad(soft.sum(), a)
    assert torch.equal(g_hard, g_soft)


def test_hard_concrete_endpoint_masses():
    a, tau, gamma, zeta = 0.3, 2 / 3, -0.1, 1.1
    n = 200_000
    z = gumbelkit.hard_concrete(torch.full((n,), a), tau, gamma, zeta, seed=5)
    p0 = 1 / (1 + math.exp(-(tau * math.log(-gamma / zeta) - a)))
    p1 = 1 / (1 + math.exp(-(a - tau * math.log((1 - gamma) / (zeta - 1)))))
    counts = [int((z == 0).sum()), int(((z > 0) & (z < 1)).sum()), int((z == 1).sum())]
    assert_chisquare(counts, [p0, 1 - p0 - p1, p1])
    nonzero = gumbelkit.hard_concrete_prob_nonzero(torch.tensor([a]), tau, gamma, zeta)
    assert abs(float(nonzero) - (1 - p0)) < 1e-6


def test_hard_concrete_gradient_is_pathwise_inside_and_zero_at_the_ends():
    a = torch.zeros(2000, requires_grad=True)
    z = gumbelkit.hard_concrete(a, seed=1)
    (grad,) = torch.autograd.grad(z.sum(), a)
    ends = (z.detach() == 0) | (z.detach() == 1)
    assert ends.any() and (~ends).any()
    assert (grad[ends] == 0).all() and (grad[~ends] > 0).all()


def test_hard_concrete_deterministic_gate():
    gate = gumbelkit.hard_concrete_deterministic_gate(torch.tensor([-10.0, 0.0, 10.0]))
    torch.testing.assert_close(gate, torch.tensor([0.0, 0.5, 1.0]))


# ----------------------------------------------------------------------------- bad input

BAD_CALLS = [
    ("tau=0", lambda: gumbelkit.gumbel_softmax(torch.zeros(3), 0.0), "tau must be > 0.*0.0"),
    ("tau<0", lambda: gumbelkit.gumbel_softmax(torch.zeros(3), -1.0), "got -1.0"),
    ("tau nan", lambda: gumbelkit.gumbel_softmax(torch.zeros(3), math.nan), "got nan"),
    ("tau inf", lambda: gumbelkit.gumbel_softmax(torch.zeros(3), math.inf), "got inf"),
    ("tau tensor 0", lambda: gumbelkit.gumbel_softmax(torch.zeros(2, 3),
                                                      torch.tensor([[1.0], [0.0]])),
     r"got 0.0 at index \(1, 0\)"),
    ("tau per column", lambda: gumbelkit.gumbel_softmax(torch.zeros(2, 3), torch.ones(3)),
     "size 1 along the category axis"),
    ("nan logits", lambda: gumbelkit.gumbel_max(torch.tensor([[0.0, 1.0], [math.nan, 0.0]])),
     "NaN or \\+inf in row 1"),
    ("+inf logits", lambda: gumbelkit.gumbel_softmax(torch.tensor([0.0, INF])), "\\+inf"),
    ("all masked", lambda: gumbelkit.gumbel_softmax(torch.tensor([[0.0, 1.0], [-INF, -INF]])),
     "every logit is -inf in row 1"),
    ("no categories", lambda: gumbelkit.gumbel_max(torch.zeros(2, 0)), "is empty"),
    ("bad dim", lambda: gumbelkit.gumbel_max(torch.zeros(2, 3), dim=2), "dim must lie in"),
    ("int logits", lambda: gumbelkit.gumbel_max(torch.zeros(3, dtype=torch.long)), "floating"),
    ("k>K", lambda: gumbelkit.gumbel_topk(torch.zeros(3), 4), r"k must lie in \[1, 3\], got 4"),
    ("k>unmasked", lambda: gumbelkit.gumbel_topk(torch.tensor([0.0, -INF, 1.0]), 3),
     "exceeds the 2 unmasked"),
    ("gamma>=0", lambda: gumbelkit.hard_concrete(torch.zeros(3), gamma=0.0), "gamma must be"),
    ("zeta<=1", lambda: gumbelkit.hard_concrete(torch.zeros(3), zeta=1.0), "zeta must be"),
    ("binary nan", lambda: gumbelkit.binary_concrete(torch.tensor([0.0, math.nan])),
     r"NaN at index \(1,\)"),
    ("binary tau", lambda: gumbelkit.binary_concrete(torch.zeros(3), 0.0), "tau must be > 0"),
]


@pytest.mark.parametrize("name,call,message", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_input_raises_with_the_value(name, call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("op", [
    lambda x: gumbelkit.gumbel_max(x, seed=0),
    lambda x: gumbelkit.gumbel_topk(x, 2, seed=0),
    lambda x: gumbelkit.gumbel_softmax(x, 0.5, seed=0),
    lambda x: gumbelkit.gumbel_softmax(x, 0.5, hard=True, seed=0),
    lambda x: gumbelkit.binary_concrete(x, seed=0),
    lambda x: gumbelkit.hard_concrete(x, seed=0),
], ids=["gumbel_max", "gumbel_topk", "soft", "hard", "binary_concrete", "hard_concrete"])
def test_empty_batch_gives_empty_result(op):
    out = op(torch.zeros(0, 3))
    assert out.shape[0] == 0
    assert gumbelkit.gumbel_noise((0, 3), seed=0).shape == (0, 3)
