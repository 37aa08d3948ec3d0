"""StraightThrough and GumbelTopK: exact hard forwards, soft gradients, Plackett-Luce
probabilities against sample frequencies and the relaxed k-hot sample."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from gumbelkit.distributions import (
    BinaryConcrete,
    Concrete,
    ExpConcrete,
    GumbelTopK,
    StraightThrough,
)
from stats import assert_chisquare

F64 = torch.float64


def test_straight_through_concrete():
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).requires_grad_()
    weights = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(1))
    d = StraightThrough(Concrete(0.5, logits=logits), validate_args=True)
    hard = d.rsample((5,), seed=6)
    soft = Concrete(0.5, logits=logits).rsample((5,), seed=6)
    expected = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    assert torch.equal(hard, expected)
    (grad_hard,) = torch.autograd.grad((hard * weights).sum(), logits)
    (grad_soft,) = torch.autograd.grad((soft * weights).sum(), logits)
    torch.testing.assert_close(grad_hard, grad_soft)
    torch.testing.assert_close(d.log_prob(hard), Concrete(0.5, logits=logits).log_prob(soft))
    with pytest.raises(ValueError, match="most recent rsample"):
        d.log_prob(hard.clone())


def test_straight_through_binary():
    logits = torch.linspace(-2, 2, 7, requires_grad=True)
    d = StraightThrough(BinaryConcrete(0.3, logits=logits), validate_args=True)
    hard = d.rsample((10,), seed=8)
    soft = BinaryConcrete(0.3, logits=logits).rsample((10,), seed=8)
    assert torch.equal(hard, (soft > 0.5).float())
    (grad_hard,) = torch.autograd.grad(hard.sum(), logits)
    (grad_soft,) = torch.autograd.grad(soft.sum(), logits)
    torch.testing.assert_close(grad_hard, grad_soft)
    assert bool(d.log_prob(hard).isfinite().all())
    with pytest.raises(TypeError, match="Concrete or BinaryConcrete"):
        StraightThrough(GumbelTopK(logits.detach(), k=2))


def _plackett_luce(probs: torch.Tensor, subset: tuple[int, ...]) -> float:
    total, used = 0.0, 0.0
    for i in subset:
        total += math.log(float(probs[i])) - math.log(1 - used)
        used += float(probs[i])
    return total


def test_topk_log_prob_is_plackett_luce_and_normalised():
    logits = torch.tensor([0.2, -0.5, 1.0, 0.0, -1.3], dtype=F64)
    d = GumbelTopK(logits, k=3)
    subsets = torch.tensor(list(itertools.permutations(range(5), 3)))
    lp = d.log_prob(subsets)
    expected = [_plackett_luce(logits.softmax(-1), tuple(s.tolist())) for s in subsets]
    torch.testing.assert_close(lp, torch.tensor(expected, dtype=F64))
    assert abs(lp.exp().sum().item() - 1) < 1e-12


@pytest.mark.slow
def test_topk_sample_frequencies():
    logits = torch.tensor([0.2, -0.5, 1.0, 0.0])
    d = GumbelTopK(logits, k=2)
    pairs = list(itertools.permutations(range(4), 2))
    samples = d.sample((20_000,), seed=51)
    codes = (samples[:, 0] * 4 + samples[:, 1]).numpy()
    counts = np.bincount(codes, minlength=16)[[a * 4 + b for a, b in pairs]]
    probs = d.log_prob(torch.tensor(pairs)).exp().double().numpy()
    assert counts.sum() == 20_000
    assert_chisquare(counts, probs)


def test_topk_masked_and_probs():
    d = GumbelTopK(probs=torch.tensor([0.5, 0.0, 0.3, 0.2]), k=3, validate_args=True)
    s = d.sample((500,), seed=2)
    assert not bool((s == 1).any())
    assert d.log_prob(torch.tensor([0, 1, 2])) == -math.inf
    tau = torch.tensor(0.5, requires_grad=True)
    relaxed = d.relaxed_rsample(tau, (20,), seed=2)
    assert bool((relaxed[..., 1] == 0).all())
    (relaxed * torch.arange(4.0)).sum().backward()
    assert bool(tau.grad.isfinite())
    with pytest.raises(ValueError, match="Expected value argument"):
        d.log_prob(torch.tensor([0, 0, 2]))


@pytest.mark.parametrize("tau", [0.01, 0.5, 2.0])
def test_relaxed_topk(tau):
    logits = torch.randn(3, 6, generator=torch.Generator().manual_seed(3)).requires_grad_()
    d = GumbelTopK(logits, k=3)
    soft = d.relaxed_rsample(tau, (4,), seed=9)
    hard = d.relaxed_rsample(tau, (4,), hard=True, seed=9)
    chosen = d.sample((4,), seed=9)
    assert torch.equal(hard, torch.zeros(4, 3, 6).scatter_(-1, chosen, 1.0))
    torch.testing.assert_close(soft.sum(-1), torch.full((4, 3), 3.0), rtol=0, atol=1e-5)
    assert bool((soft >= 0).all())
    (grad_soft,) = torch.autograd.grad((soft * torch.arange(6.0)).sum(), logits,
                                       retain_graph=True)
    (grad_hard,) = torch.autograd.grad((hard * torch.arange(6.0)).sum(), logits)
    assert bool(grad_soft.isfinite().all())
    torch.testing.assert_close(grad_hard, grad_soft)


def test_relaxed_topk_tends_to_the_hard_draw():
    """Entries stay soft only where perturbed logits are within a few tau of each other."""
    d = GumbelTopK(torch.randn(50, 6, generator=torch.Generator().manual_seed(3)), k=3)
    hard = d.relaxed_rsample(1.0, (20,), hard=True, seed=9)
    gaps = [(d.relaxed_rsample(tau, (20,), seed=9) - hard).abs().mean().item()
            for tau in (0.1, 0.01, 0.001)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 2e-3, gaps


def test_relaxed_topk_gradcheck():
    logits = torch.randn(2, 4, dtype=F64, generator=torch.Generator().manual_seed(4))
    tau = torch.tensor([0.4, 1.3], dtype=F64)
    logits.requires_grad_()
    tau.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda l, t: GumbelTopK(l, k=2).relaxed_rsample(t, seed=5), (logits, tau))



@pytest.mark.parametrize("make", [
    lambda logits: Concrete(0.5, logits=logits),
    lambda logits: ExpConcrete(0.5, logits=logits),
    lambda logits: GumbelTopK(logits, 2),
    lambda logits: BinaryConcrete(0.5, logits=logits),
], ids=["Concrete", "ExpConcrete", "GumbelTopK", "BinaryConcrete"])
def test_per_row_seeds_give_independent_draws_along_sample_shape(make):
    """One seed per batch row: draws along sample_shape differ, and each row's draws
    are the same alone or in the batch (rows are keyed by their sample index; relaxed
    values agree to float32 rounding, since torch's sigmoid rounds by tensor size)."""
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    seeds = torch.tensor([1, 2, 3])
    draws = make(logits).sample((6,), seed=seeds)
    assert not any(torch.equal(draws[0], draws[i]) for i in range(1, 6))
    for r in range(3):
        alone = make(logits[r:r + 1]).sample((6,), seed=seeds[r:r + 1])
        torch.testing.assert_close(alone[:, 0], draws[:, r], rtol=1e-6, atol=1e-7)
