"""Gumbel-Sinkhorn, the Sinkhorn operator and exact matchings (gumbelkit.permutations)."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
import torch
from scipy import stats as sps

import gumbelkit
from gumbelkit import gumbel_sinkhorn, matching, sinkhorn
from stats import ALPHA


def _scores(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _permutation_matrices(n: int) -> tuple[list[tuple[int, ...]], torch.Tensor]:
    perms = list(itertools.permutations(range(n)))
    eye = torch.eye(n, dtype=torch.float64)
    return perms, torch.stack([eye[list(p)] for p in perms])  # row i has its 1 in column p[i]


def _brute_force_matching(scores: torch.Tensor) -> torch.Tensor:
    """argmax over every permutation matrix of <P, scores>, matrix by matrix."""
    n = scores.shape[-1]
    _, mats = _permutation_matrices(n)
    flat = scores.detach().reshape(-1, n, n).double()
    best = torch.einsum("bij,pij->bp", flat, mats).argmax(-1)
    return mats[best].reshape(scores.shape).to(scores.dtype)


# ------------------------------------------------------------------ the operator


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau", [1.0, 0.1, 0.01])
def test_columns_sum_to_one_to_rounding(dtype, tau):
    """The last Sinkhorn step normalises the columns: they sum to 1 whatever n_iters."""
    for n_iters in (1, 20):
        p = gumbel_sinkhorn(_scores(8, 6, 6, dtype=dtype) * 3, tau, n_iters, seed=0)
        assert p.dtype == dtype and bool((p >= 0).all())
        assert (p.sum(-2) - 1).abs().max() <= 8 * torch.finfo(dtype).eps


@pytest.mark.parametrize("n", [3, 6, 20, 100])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_rows_sum_to_one_within_the_stated_tolerance(n, dtype, tol):
    """docs/permutations.md: scores whose spread (max - min) / tau is at most 2 have
    rows within 1e-9 of 1 after the default 20 iterations (float64; float32 adds
    its rounding)."""
    x = 2 * torch.rand(max(4, 2000 // n**2), n, n, generator=torch.Generator().manual_seed(n),
                       dtype=dtype)
    p = sinkhorn(x, 1.0, 20)
    assert (p.sum(-1) - 1).abs().max() <= tol


def test_row_error_falls_with_n_iters_at_small_tau():
    """At tau = 0.1 Sinkhorn converges slowly (the docs' table): the rows' worst
    error keeps falling as n_iters grows."""
    x = _scores(16, 6, 6, dtype=torch.float64)
    errors = [float((gumbel_sinkhorn(x, 0.1, k, seed=0).sum(-1) - 1).abs().max())
              for k in (1, 10, 100, 300)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("scale", [1.0, 10.0, 1e4, 1e30])
def test_finite_for_finite_input_down_to_tau_001(scale):
    x = _scores(4, 7, 7) * scale
    for tau in (1.0, 0.1, 0.01):
        p = gumbel_sinkhorn(x, tau, seed=1)
        assert bool(torch.isfinite(p).all()), (scale, tau)
        assert (p.sum(-2) - 1).abs().max() <= 1e-5


def test_gradients_are_finite_at_tau_001():
    x = (_scores(2, 6, 6) * 100).requires_grad_()
    tau = torch.tensor(0.01, requires_grad=True)
    (gumbel_sinkhorn(x, tau, seed=0) * _scores(2, 6, 6, seed=1)).sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(tau.grad))


def _gap_to_second_best(scores: torch.Tensor) -> torch.Tensor:
    """Per matrix: best permutation score minus the second best (brute force)."""
    n = scores.shape[-1]
    _, mats = _permutation_matrices(n)
    totals = torch.einsum("bij,pij->bp", scores.reshape(-1, n, n).double(), mats)
    top2 = totals.topk(2, dim=-1).values
    return top2[:, 0] - top2[:, 1]


def test_soft_sample_approaches_the_hard_permutation_as_tau_goes_to_zero():
    """The converged Sinkhorn matrix maximises <P, z> + tau H(P) over doubly
    stochastic P, and H <= n log n, so its weight off the best permutation M is
    at most tau n log n / gap (gap: best minus second-best permutation score):
    every entry lies within that bound of M's (plus the rows' remaining error
    after n_iters). The bound is checked matrix by matrix, with the perturbed
    scores of the documented noise, and the distance falls with tau."""
    n = 5
    x = _scores(16, n, n, dtype=torch.float64)
    z = x + gumbelkit.gumbel_noise((16, n, n), seed=3, dtype=torch.float64)
    hard = gumbel_sinkhorn(x, 1.0, hard=True, seed=3)
    bound = n * np.log(n) / _gap_to_second_best(z)
    medians = []
    for tau in (1.0, 0.3, 0.1, 0.03, 0.01):
        soft = gumbel_sinkhorn(x, tau, 1000, seed=3)
        distance = (soft - hard).abs().amax((-2, -1))
        row_error = (soft.sum(-1) - 1).abs().amax(-1)
        assert bool((distance <= tau * bound + row_error + 1e-12).all()), (tau, distance, bound)
        medians.append(float(distance.median()))
    assert all(a > b for a, b in zip(medians, medians[1:])), medians
    assert medians[-1] < 1e-2, medians


def test_the_noise_follows_the_documented_keys():
    """An int seed gives the noise of gumbel_noise((n_samples, *batch, n, n), seed)."""
    x = _scores(2, 3, 4, 4)
    g = gumbelkit.gumbel_noise((5, 2, 3, 4, 4), seed=11)
    assert torch.equal(gumbel_sinkhorn(x, 0.7, 9, n_samples=5, seed=11), sinkhorn(x + g, 0.7, 9))
    assert torch.equal(gumbel_sinkhorn(x, 0.7, 9, seed=11), sinkhorn(x + g[0], 0.7, 9))
    hard = gumbel_sinkhorn(x, 0.7, hard=True, n_samples=5, seed=11)
    assert torch.equal(hard, _brute_force_matching(x + g))


def test_matching_is_the_brute_force_argmax():
    x = _scores(50, 5, 5)
    m = matching(x)
    assert torch.equal(m, _brute_force_matching(x))
    assert m.dtype == x.dtype and torch.equal(m.sum(-1), torch.ones(50, 5))


# ------------------------------------------------------------------ hard samples


def _hard_permutation_index(p: torch.Tensor) -> np.ndarray:
    """Index (into itertools.permutations order) of each n=3 permutation matrix."""
    perms, _ = _permutation_matrices(3)
    lookup = {perm: k for k, perm in enumerate(perms)}
    cols = p.argmax(-1).reshape(-1, 3).tolist()
    return np.array([lookup[tuple(c)] for c in cols])


@pytest.mark.slow
def test_hard_samples_follow_the_gumbel_matching_distribution():
    """n = 3: the frequencies of the 6 hard permutations match an independent
    Monte Carlo estimate of P(argmax_P <P, X + G> = P) (NumPy's Gumbel noise,
    brute force over the 6 permutations): a two-sample chi-square test on the
    2 x 6 table, false-failure rate ALPHA = 1e-4. The scores are chosen so that
    a 3-cycle and its inverse have probabilities 0.13 apart, so a transposed
    matching (row/column confusion) fails the same test, which is checked."""
    x = torch.tensor([[2.0, 0.0, 0.5], [0.0, 1.0, 1.5], [1.2, 0.3, 0.0]])
    draws, ref_draws = 20_000, 200_000
    hard = gumbel_sinkhorn(x, 0.05, hard=True, n_samples=draws, seed=2024)
    counts = np.bincount(_hard_permutation_index(hard), minlength=6)

    _, mats = _permutation_matrices(3)
    g = np.random.default_rng(7).gumbel(size=(ref_draws, 3, 3))
    totals = np.einsum("bij,pij->bp", x.double().numpy() + g, mats.numpy())
    reference = np.bincount(totals.argmax(-1), minlength=6)

    assert sps.chi2_contingency(np.stack([counts, reference])).pvalue > ALPHA, (counts, reference)
    transposed = np.bincount(_hard_permutation_index(hard.transpose(-1, -2)), minlength=6)
    assert sps.chi2_contingency(np.stack([transposed, reference])).pvalue < ALPHA


def test_hard_sample_is_a_permutation_with_the_relaxed_gradient():
    x = _scores(3, 5, 5, dtype=torch.float64).requires_grad_()
    w = _scores(3, 5, 5, seed=1, dtype=torch.float64)
    hard = gumbel_sinkhorn(x, 0.5, hard=True, seed=4)
    ones = torch.ones(3, 5, dtype=torch.float64)
    assert torch.equal(hard.sum(-1), ones) and torch.equal(hard.sum(-2), ones)
    assert bool(((hard == 0) | (hard == 1)).all())
    (grad_hard,) = torch.autograd.grad((hard * w).sum(), x)
    (grad_soft,) = torch.autograd.grad((gumbel_sinkhorn(x, 0.5, seed=4) * w).sum(), x)
    assert torch.equal(grad_hard, grad_soft)


def test_gradcheck_float64():
    x = _scores(2, 3, 3, dtype=torch.float64).requires_grad_()
    tau = torch.tensor([[[0.7]], [[1.3]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, t: gumbel_sinkhorn(a, t, 5, seed=5), (x, tau))
    assert torch.autograd.gradcheck(lambda a, t: sinkhorn(a, t, 5), (x, tau))


# ------------------------------------------------------------------ seeds


def test_seeds_reproduce_exactly():
    x = _scores(3, 5, 5)
    assert torch.equal(gumbel_sinkhorn(x, seed=1), gumbel_sinkhorn(x, seed=1))
    assert not torch.equal(gumbel_sinkhorn(x, seed=1), gumbel_sinkhorn(x, seed=2))
    gen = [torch.Generator().manual_seed(9) for _ in range(2)]
    assert torch.equal(gumbel_sinkhorn(x, generator=gen[0]), gumbel_sinkhorn(x, generator=gen[1]))
    torch.manual_seed(4)
    first = gumbel_sinkhorn(x, hard=True, n_samples=3)
    torch.manual_seed(4)
    assert torch.equal(first, gumbel_sinkhorn(x, hard=True, n_samples=3))


def test_n_samples_share_one_call_and_differ():
    x = _scores(2, 6, 6)
    many = gumbel_sinkhorn(x, 0.5, n_samples=4, seed=3)
    assert many.shape == (4, 2, 6, 6)
    assert torch.equal(many[0], gumbel_sinkhorn(x, 0.5, seed=3))
    assert all(not torch.equal(many[i], many[j]) for i, j in itertools.combinations(range(4), 2))
    assert not torch.equal(many[:, 0], many[:, 1])  # batch matrices get their own noise


def test_per_matrix_seeds_are_batch_invariant():
    x = _scores(3, 4, 4)
    seeds = torch.tensor([10, 20, 30])
    batch = gumbel_sinkhorn(x, 0.5, n_samples=2, seed=seeds)
    for b in range(3):
        alone = gumbel_sinkhorn(x[b], 0.5, n_samples=2, seed=seeds[b])
        assert torch.equal(batch[:, b], alone)
    swapped = gumbel_sinkhorn(x.flip(0), 0.5, n_samples=2, seed=seeds.flip(0))
    assert torch.equal(swapped, batch.flip(1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32(dtype):
    x = _scores(2, 5, 5)
    p = gumbel_sinkhorn(x.to(dtype), 0.5, seed=0)
    assert p.dtype == dtype
    assert torch.equal(p, gumbel_sinkhorn(x.to(dtype).float(), 0.5, seed=0).to(dtype))


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("call, error, match", [
    (lambda: gumbel_sinkhorn(torch.zeros(3, 4)), ValueError, r"square .* got shape \(3, 4\)"),
    (lambda: gumbel_sinkhorn(torch.zeros(4)), ValueError, r"square .* got shape \(4,\)"),
    (lambda: gumbel_sinkhorn(torch.zeros(2, 0, 0)), ValueError, r"n >= 1"),
    (lambda: sinkhorn(torch.zeros(2, 3)), ValueError, r"square"),
    (lambda: matching(torch.zeros(2, 3)), ValueError, r"square"),
    (lambda: gumbel_sinkhorn(torch.zeros(3, 3), n_iters=0), ValueError,
     r"n_iters must lie in \[1, inf\), got 0"),
    (lambda: sinkhorn(torch.zeros(3, 3), n_iters=-2), ValueError, r"n_iters .* got -2"),
    (lambda: gumbel_sinkhorn(torch.zeros(3, 3), n_iters=2.0), TypeError, r"n_iters must be an int"),
    (lambda: gumbel_sinkhorn(torch.zeros(3, 3), 0.0), ValueError, r"tau must be > 0 .* got 0.0"),
    (lambda: gumbel_sinkhorn(torch.zeros(3, 3), -1.0), ValueError, r"tau .* got -1.0"),
    (lambda: sinkhorn(torch.zeros(3, 3), float("nan")), ValueError, r"tau .* got nan"),
    (lambda: gumbel_sinkhorn(torch.zeros(3, 3), 1e-46), ValueError, r"tau must be > 0 and finite "
                                                                    r"in float32"),
    (lambda: gumbel_sinkhorn(torch.zeros(3, 3), torch.tensor([-1.0])), ValueError,
     r"tau must be > 0"),
    (lambda: gumbel_sinkhorn(torch.zeros(3, 3), torch.ones(3, 3)), ValueError,
     r"size 1 in both matrix axes"),
    (lambda: gumbel_sinkhorn(torch.tensor([[0.0, float("nan")], [0.0, 0.0]])), ValueError,
     r"log_alpha must be finite everywhere, got nan at index \(0, 1\)"),
    (lambda: sinkhorn(torch.tensor([[0.0, -float("inf")], [0.0, 0.0]])), ValueError,
     r"finite everywhere, got -inf"),
    (lambda: gumbel_sinkhorn(torch.full((2, 2), 3e38), 0.5), ValueError,
     r"log_alpha / tau overflows float32 at index \(0, 0\) \(tau=0.5\)"),
    (lambda: gumbel_sinkhorn(torch.zeros(3, 3), n_samples=0), ValueError,
     r"n_samples must lie in \[1, inf\), got 0"),
    (lambda: gumbel_sinkhorn(torch.zeros(2, 3, 3), seed=torch.arange(3)), ValueError,
     r"seed of shape \(3,\) does not broadcast to the batch shape \(2,\) \(one seed per matrix"),
    (lambda: gumbel_sinkhorn(torch.zeros(3, 3), hard=1), TypeError, r"hard must be a bool"),
    (lambda: gumbel_sinkhorn(torch.zeros(3, 3, dtype=torch.int64)), ValueError,
     r"floating dtype"),
])
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_hard_without_scipy_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # import raises ImportError
    x = torch.zeros(3, 3)
    gumbel_sinkhorn(x, seed=0)  # the relaxed sample needs no scipy
    for call in (lambda: gumbel_sinkhorn(x, hard=True, seed=0), lambda: matching(x)):
        with pytest.raises(ImportError, match=r"needs scipy .* pip install scipy"):
            call()
