"""The pure-PyTorch reference path (what runs without the C kernels, and on
devices other than the CPU): its temperature gradient, and its noise against
the noise the fused kernels draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gumbelkit
import gumbelkit.functional as F
from gumbelkit import _rng
from gumbelkit.kernels import _lib
from numpy_philox import words


def _reference(x, tau, seed):
    return F._gumbel_softmax_reference(x, tau, False, -1, seed, None)


def _fused(x, tau, seed):
    return gumbelkit.gumbel_softmax(x, tau, seed=seed)


def _tau_grad(sample, x, tau, weights, seed):
    leaf = tau.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((sample(x, leaf, seed) * weights).sum(), leaf)
    return grad


def _tau_grad_float64(x, tau, weights, seed):
    """d/dtau of sum(weights * softmax(z / tau)) in float64, from the float32
    z = x + G that both paths form, shifted by the row max (no cancellation)."""
    z = (x + gumbelkit.gumbel_noise(x.shape, seed=seed)).double()
    y = torch.softmax(z / tau.double(), -1)
    w = weights.double()
    softmax_grad = y * (w - (w * y).sum(-1, keepdim=True))
    shifted = z - z.amax(-1, keepdim=True)
    return -(softmax_grad * shifted).sum(-1, keepdim=True) / tau.double() ** 2


def test_temperature_gradient_of_huge_equal_logits_is_zero():
    """17 equal logits of -1.84e20: z = x + G rounds to x, the sample is uniform
    whatever tau is, so d/dtau is 0 (it was 1.1e12: the rounding left in the
    softmax backward's zero sum, times |z|)."""
    x = torch.full((1, 17), -1.84e20)
    tau = torch.tensor([[1.2564]])
    weights = torch.randn(1, 17, generator=torch.Generator().manual_seed(0))
    assert float(_tau_grad_float64(x, tau, weights, 3)) == 0.0
    assert abs(float(_tau_grad(_reference, x, tau, weights, 3))) <= 1e-6


def test_temperature_gradient_of_shifted_logits_as_accurate_as_fused():
    """Logits around 1e4: the error of d/dtau against float64 (median over 256
    rows) was 1.2e-3 on the reference path, 6x the fused kernel's."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 64, generator=gen) * 3 + 1e4
    tau = torch.rand(256, 1, generator=gen) + 0.5
    weights = torch.randn(256, 64, generator=gen)
    truth = _tau_grad_float64(x, tau, weights, 5)

    def median_error(sample):
        grad = _tau_grad(sample, x, tau, weights, 5).double()
        return float(((grad - truth).abs() / truth.abs()).median())

    reference, fused = median_error(_reference), median_error(_fused)
    assert reference <= 5e-4
    assert reference <= 2 * fused


@pytest.mark.parametrize("dim", [0, 1])
def test_reference_gradients_float64(dim):
    """gradcheck and gradgradcheck of the reference path with a per-row tau."""
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, dtype=torch.float64, generator=gen).requires_grad_(True)
    tau_shape = (3, 1) if dim == 1 else (1, 4)
    tau = (torch.rand(tau_shape, dtype=torch.float64, generator=gen) + 0.5).requires_grad_(True)

    def sample(x, t):
        return F._gumbel_softmax_reference(x, t, False, dim, 7, None)

    assert torch.autograd.gradcheck(sample, (logits, tau))
    assert torch.autograd.gradgradcheck(sample, (logits, tau))


@pytest.mark.parametrize("hard", [False, True])
def test_masked_temperature_gradient_is_finite(hard):
    logits = torch.tensor([[0.0, -torch.inf, 1.0], [-torch.inf, 2.0, 3.0]])
    tau = torch.tensor([[0.5], [2.0]], requires_grad=True)
    y = F._gumbel_softmax_reference(logits, tau, hard, -1, 4, None)
    (grad,) = torch.autograd.grad((y * torch.arange(3.0)).sum(), tau)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("tile_counters", [1, 3, 64])
@pytest.mark.parametrize("rows,cols", [(5, 37), (1, 13), (9, 4), (6, 1)])
def test_tiles_give_the_words_of_the_numpy_reference(monkeypatch, tile_counters, rows, cols):
    """The noise is formed in tiles of rows and 4-column blocks; no tile edge
    may change which word a column gets."""
    monkeypatch.setattr(_rng, "_TILE_COUNTERS", tile_counters)
    seed = 0x0123456789ABCDEF
    seeds, keys = _rng.row_keys_and_seeds(_rng.resolve_seed(seed), (rows,), torch.device("cpu"))
    ours = _rng.random_words(seeds, keys, cols, stream=3).numpy().astype(np.uint64)
    np.testing.assert_array_equal(ours, words(seed, np.arange(rows), cols, stream=3))


@pytest.mark.skipif(_lib.library() is None, reason="the C kernels are not built")
@pytest.mark.parametrize("kind", ["exponential", "gumbel", "logistic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tile_counters,map_counters", [(3, 3), (64, 5), (700, 129),
                                                       (32767, 8191)])
def test_tiled_noise_is_the_kernels_noise(monkeypatch, kind, dtype, tile_counters,
                                          map_counters):
    """Philox tiles and the maps' sub-tiles of any size give the kernels' noise."""
    monkeypatch.setattr(_rng, "_TILE_COUNTERS", tile_counters)
    monkeypatch.setattr(_rng, "_MAP_COUNTERS", map_counters)
    seeds = torch.tensor([5, -7, 2**62, 11, 0, -1, 3])
    keys = torch.tensor([0, 1, 2**40, 3, 2**33 + 5, 7, 9])
    for cols in (1, 6, 33, 1030, 2811):
        ours = _rng.noise(kind, (7,), cols, _rng.Seed(per_row=seeds), dtype,
                          row_keys=keys, stream=2)
        fused = torch.ops.gumbelkit.noise(seeds, keys, cols, 2, kind, dtype)
        assert torch.equal(ours, fused)
