"""top-p and min-p without top-k: the fused kernel's threshold search against the reference.

The kernel finds the nucleus boundary by a histogram and a radix walk instead of
sorting; these rows aim at what that search could get wrong: flat rows whose
nucleus is most of the vocabulary, all-equal logits, tie groups (+0 and -0
among them) at the boundary, masks, p next to 0 and 1, per-row controls.
The size of the kept set is read exactly from sample_without_replacement's
status: n kept tokens succeed, n + 1 are too few.
"""

import math

import numpy as np
import pytest
import torch

from gumbelkit.kernels import ops, sampler_reference
from gumbelkit.sampling import _controls, sample
from stats import assert_chisquare

needs_fused = pytest.mark.skipif(not ops.sampler_kernel_available(torch.zeros(1, 1)),
                                 reason="fused kernels not built")

P_VALUES = [1e-300, 0.1, 0.5, 0.9, 0.999, 1 - 2**-53]


def _rows(kind: str, rows: int = 6, vocab: int = 20_000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    if kind.startswith("normal"):
        return torch.randn(rows, vocab, generator=gen) * float(kind.split()[1])
    if kind == "equal":
        return torch.full((rows, vocab), 0.25)
    if kind == "levels":   # few distinct values: every boundary is a tie group
        x = torch.randint(0, 5, (rows, vocab), generator=gen).float() * 0.75
        x[:, ::7] = -math.inf
        x[1, 3:] = -math.inf
        return x
    if kind == "zeros":   # the boundary group holds both +0 and -0
        x = torch.randn(rows, vocab, generator=gen).abs() * -1 - 1.0
        x[:, :40] = 2.0
        x[:, 100:3000] = 0.0
        x[:, 3000:6000] = -0.0
        return x
    raise AssertionError(kind)


def _controls_for(rows: int, **kw) -> _controls.Controls:
    kw.setdefault("temperature", 0.8)
    ctl, _ = _controls.controls(rows, top_k=kw.pop("top_k", None), min_p=kw.pop("min_p", None),
                                seed=torch.arange(rows), positions=None, generator=None, **kw)
    return ctl


def _fused(x, ctl, n, logprobs, threads=None):
    return ops.sample_fused(x, *ctl, n, logprobs, threads=threads)


def _reference(x, ctl, n, logprobs):
    return sampler_reference.sample_rows(x, *ctl, n, logprobs)


def _kept(sample_rows, x: torch.Tensor, ctl: _controls.Controls) -> list[int]:
    """Size of each row's kept set, by bisection on the without-replacement status."""
    sizes = []
    for r in range(x.shape[0]):
        row = _controls.Controls(*(c[r:r + 1] for c in ctl))
        lo, hi = 1, int((x[r] > -math.inf).sum())   # lo tokens fit; hi + 1 do not
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if sample_rows(x[r:r + 1], row, mid, False)[2][0] == sampler_reference.OK:
                lo = mid
            else:
                hi = mid - 1
        sizes.append(lo)
    return sizes


@needs_fused
@pytest.mark.parametrize("kind", ["normal 0.3", "normal 1", "normal 3", "normal 10", "equal",
                                  "levels", "zeros"])
def test_top_p_tokens_and_logprobs_equal_the_reference(kind):
    x = _rows(kind)
    for p in P_VALUES:
        for min_p in (None, 0.05):
            ctl = _controls_for(x.shape[0], top_p=p, min_p=min_p)
            for n in (1, 3):
                fused = _fused(x, ctl, n, True)
                ref = _reference(x, ctl, n, True)
                assert torch.equal(fused[2], ref[2]), (kind, p, min_p, n)
                assert torch.equal(fused[0], ref[0]), (kind, p, min_p, n)
                torch.testing.assert_close(fused[1], ref[1], rtol=1e-5, atol=1e-5)


@needs_fused
@pytest.mark.parametrize("kind", ["normal 0.3", "normal 1", "equal", "levels", "zeros"])
def test_top_p_kept_set_size_equals_the_reference(kind):
    """The nucleus boundary itself, tie-inclusive, not only the token it lets win."""
    x = _rows(kind, rows=3, vocab=6000)
    ctl = _controls_for(3, top_p=torch.tensor([0.3, 0.9, 0.999], dtype=torch.float64),
                        min_p=torch.tensor([0.0, 0.0, 0.02]))
    assert _kept(_fused, x, ctl) == _kept(_reference, x, ctl)


@needs_fused
def test_top_p_boundary_tie_group_is_kept_whole():
    """40 tokens at 2, then 5900 at +-0: p just above the top group's mass keeps them all."""
    x = _rows("zeros", rows=1, vocab=6000)
    z = x[0].double() / 0.8
    w = torch.exp(z - z.max())
    top = float(w[:40].sum() / w.sum())
    for p, kept in ((top * 0.999, 40), (top * 1.001, 5940)):
        ctl = _controls_for(1, top_p=p)
        assert _kept(_fused, x, ctl) == [kept]
        assert _kept(_reference, x, ctl) == [kept]


@needs_fused
def test_per_row_top_p_and_min_p_equal_the_reference():
    gen = torch.Generator().manual_seed(3)
    rows = 32
    x = torch.randn(rows, 5000, generator=gen) * torch.logspace(-1, 1, rows)[:, None]
    x[::5, :2500] = -math.inf
    ctl = _controls_for(rows, temperature=torch.rand(rows, generator=gen) + 0.2,
                        top_p=torch.rand(rows, generator=gen, dtype=torch.float64),
                        min_p=torch.rand(rows, generator=gen) * 0.2)
    for n in (1, 2):
        fused = _fused(x, ctl, n, True)
        ref = _reference(x, ctl, n, True)
        assert torch.equal(fused[2], ref[2])
        assert torch.equal(fused[0], ref[0])
        torch.testing.assert_close(fused[1], ref[1], rtol=1e-5, atol=1e-5)
        one = _fused(x, ctl, n, True, threads=1)
        assert all(torch.equal(a, b) for a, b in zip(one, fused))


def test_flat_row_with_a_tied_boundary_follows_the_filtered_distribution(path, reference):
    """64 tokens on four levels, top-p ending inside a tie group; chi-square at 1e-4."""
    logits = [0.5 * (i % 4) for i in range(64)]
    counts = np.bincount(sample(torch.tensor(logits).expand(20_000, -1), top_p=0.6,
                                seed=99).tokens.numpy(), minlength=64)
    assert_chisquare(counts, reference(logits, top_p=0.6))


@needs_fused
def test_top_p_boundary_within_a_relative_1e_12_of_a_group_mass():
    """p * S just above / just below the mass before a group keeps / drops that group."""
    x = _rows("normal 1", rows=1, vocab=6000)
    z = (x[0] / 0.8).double()
    w = torch.exp(z - z.max()).sort(descending=True).values
    before = torch.cat([torch.zeros(1, dtype=torch.float64), w.cumsum(0)[:-1]])
    total = float(w.sum())
    for g in (1, 700, 3000, 5500):   # z has no ties here: group g is token g in order
        for scale, kept in ((1 + 1e-12, g + 1), (1 - 1e-12, g)):
            ctl = _controls_for(1, top_p=float(before[g]) / total * scale)
            assert _kept(_fused, x, ctl) == [kept], (g, scale)
