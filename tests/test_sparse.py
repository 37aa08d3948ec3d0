"""sparse_gumbel_softmax: equal to the dense relaxation at k = V, an exact sample
at every k, O(k) memory for autograd, and every bad input."""

from __future__ import annotations

import math

import pytest
import torch

import gumbelkit
from gumbelkit import _rng, sparse
from gumbelkit.kernels import _lib, library, row_reference
from gumbelkit.sparse import sparse_gumbel_softmax, sparse_to_dense

SEEDS = [7, torch.arange(12).reshape(3, 4) * 1000 + 5]


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("seed", SEEDS, ids=["int seed", "per-row seeds"])
def test_k_equal_v_is_bitwise_the_dense_gumbel_softmax(hard, dtype, seed):
    logits = torch.randn(3, 4, 37, generator=torch.Generator().manual_seed(0)).to(dtype)
    logits[0, 1, 5] = -math.inf
    logits.requires_grad_(True)
    dense = gumbelkit.gumbel_softmax(logits, 0.7, hard, seed=seed)
    idx, w = sparse_gumbel_softmax(logits, 37, 0.7, hard, seed=seed)
    assert torch.equal(idx, torch.arange(37).expand(3, 4, 37))
    assert w.dtype == dtype
    assert torch.equal(sparse_to_dense(idx, w, 37), dense)
    probe = torch.randn(3, 4, 37, generator=torch.Generator().manual_seed(1)).to(dtype)
    (g_dense,) = torch.autograd.grad((dense * probe).sum(), logits)
    (g_sparse,) = torch.autograd.grad((w * probe).sum(), logits)
    assert torch.equal(g_dense, g_sparse)
    assert g_sparse[0, 1, 5] == 0


@pytest.mark.parametrize("dim", [0, 1])
def test_k_equal_v_along_another_dim(dim):
    logits = torch.randn(6, 5, 4, generator=torch.Generator().manual_seed(2))
    n = logits.shape[dim]
    tau = torch.rand(1, 5, 4) + 0.2 if dim == 0 else torch.rand(6, 1, 4) + 0.2
    dense = gumbelkit.gumbel_softmax(logits, tau, dim=dim, seed=3)
    idx, w = sparse_gumbel_softmax(logits, n, tau, dim=dim, seed=3)
    assert idx.shape == w.shape == logits.shape
    assert torch.equal(sparse_to_dense(idx, w, n, dim=dim), dense)


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("seed", SEEDS, ids=["int seed", "per-row seeds"])
def test_truncated_path_with_nothing_dropped_is_the_dense_relaxation(hard, dim, seed):
    """The O(k) code itself, run with k = V, against the dense op (same noise)."""
    logits = torch.randn(3, 4, 37, generator=torch.Generator().manual_seed(5),
                         dtype=torch.float64)
    logits[1, 2, 3] = -math.inf
    logits = logits.movedim(-1, dim).contiguous().requires_grad_(True)
    dense = gumbelkit.gumbel_softmax(logits, 0.7, hard, dim, seed=seed)
    idx, w = sparse._truncated(logits, 37, 0.7, hard, dim % 3, _rng.resolve_seed(seed))
    sparse_dense = sparse_to_dense(idx, w, 37, dim=dim)
    if hard:
        assert torch.equal(sparse_dense, dense)
    torch.testing.assert_close(sparse_dense, dense, rtol=1e-12, atol=1e-15)
    probe = torch.randn(dense.shape, dtype=torch.float64)
    (g_dense,) = torch.autograd.grad((dense * probe).sum(), logits)
    (g_sparse,) = torch.autograd.grad((sparse_dense * probe).sum(), logits)
    torch.testing.assert_close(g_sparse, g_dense, rtol=1e-10, atol=1e-12)


def test_masked_kept_categories_give_no_nan_to_a_learned_temperature():
    logits = torch.tensor([[0.0, -math.inf, 1.0, -math.inf, 2.0]], requires_grad=True)
    tau = torch.tensor([[0.5]], requires_grad=True)
    idx, w = sparse_gumbel_softmax(logits, 4, tau, seed=0)
    (w * torch.arange(4.0)).sum().backward()
    assert torch.isfinite(tau.grad).all() and tau.grad != 0
    assert torch.isfinite(logits.grad).all()


def test_top_weight_is_the_gumbel_max_sample_and_others_are_the_largest():
    logits = torch.randn(64, 500, generator=torch.Generator().manual_seed(4))
    idx, w = sparse_gumbel_softmax(logits, 16, 0.5, seed=11)
    top = idx.gather(-1, w.argmax(-1, keepdim=True)).squeeze(-1)
    assert torch.equal(top, gumbelkit.gumbel_max(logits, seed=11))
    # The kept categories are the 16 largest of the dense relaxed sample, renormalised.
    dense = gumbelkit.gumbel_softmax(logits, 0.5, seed=11)
    expected = dense.topk(16, -1).indices.sort(-1).values
    assert torch.equal(idx, expected)
    kept = dense.gather(-1, idx)
    torch.testing.assert_close(w, kept / kept.sum(-1, keepdim=True), rtol=1e-5, atol=1e-7)
    assert torch.all(idx.diff(dim=-1) > 0)


def test_hard_forward_is_one_hot_over_the_k_slots_with_soft_gradient():
    logits = torch.randn(5, 100, requires_grad=True)
    idx, w = sparse_gumbel_softmax(logits, 4, 0.5, hard=True, seed=2)
    assert torch.equal(w.sum(-1), torch.ones(5))
    assert set(w.unique().tolist()) == {0.0, 1.0}
    _, soft = sparse_gumbel_softmax(logits, 4, 0.5, seed=2)
    probe = torch.randn(5, 4)
    (g_hard,) = torch.autograd.grad((w * probe).sum(), logits)
    (g_soft,) = torch.autograd.grad((soft * probe).sum(), logits)
    assert torch.equal(g_hard, g_soft)
    outside = torch.ones(5, 100, dtype=torch.bool).scatter_(-1, idx, False)
    assert torch.all(g_hard[outside] == 0) and torch.any(g_hard != 0)


def test_chunked_noise_equals_one_block(monkeypatch):
    logits = torch.randn(2, 9, 300)
    whole = sparse_gumbel_softmax(logits, 5, seed=9)
    monkeypatch.setattr(row_reference, "TOP_K_CHUNK_ELEMENTS", 700)  # two rows per chunk
    chunked = sparse_gumbel_softmax(logits, 5, seed=9)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])


def test_per_row_seed_is_batch_invariant():
    logits = torch.randn(4, 200)
    seeds = torch.tensor([10, 20, 30, 40])
    idx, w = sparse_gumbel_softmax(logits, 6, seed=seeds)
    idx2, w2 = sparse_gumbel_softmax(logits[2:3], 6, seed=seeds[2:3])
    assert torch.equal(idx[2:3], idx2) and torch.equal(w[2:3], w2)


def test_seed_generator_and_global_rng_reproduce():
    logits = torch.randn(3, 50)
    a = sparse_gumbel_softmax(logits, 4, generator=torch.Generator().manual_seed(5))
    b = sparse_gumbel_softmax(logits, 4, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(1)
    c = sparse_gumbel_softmax(logits, 4)
    torch.manual_seed(1)
    d = sparse_gumbel_softmax(logits, 4)
    assert torch.equal(a[1], b[1]) and torch.equal(c[1], d[1])


def test_masked_categories_fill_short_rows_with_weight_and_gradient_zero():
    logits = torch.tensor([[0.0, -math.inf, 1.0, -math.inf]], requires_grad=True)
    idx, w = sparse_gumbel_softmax(logits, 3, seed=0)
    assert idx.tolist() == [[0, 1, 2]]  # the lowest-index masked category fills the row
    masked = torch.isinf(logits.detach()).gather(-1, idx)
    assert masked.sum() == 1 and w[masked].item() == 0
    w.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 1] == 0


def test_autograd_keeps_o_k_memory_not_o_v():
    """Everything saved for backward is a [rows, k] tensor (or smaller)."""
    logits = torch.randn(16, 5000, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sparse_gumbel_softmax(logits, 8, hard=True, seed=0)
        sparse_saved = list(saved)
        gumbelkit.gumbel_softmax(logits, seed=0)
    dense_saved = saved[len(sparse_saved):]
    assert sparse_saved and max(sparse_saved) <= 16 * 8 < 16 * 5000 <= max(dense_saved)


@pytest.mark.parametrize("k", [0, 11, 2.0, True])
def test_bad_k(k):
    with pytest.raises((ValueError, TypeError), match="k must"):
        sparse_gumbel_softmax(torch.zeros(2, 10), k)


@pytest.mark.parametrize("tau", [0.0, -1.0, math.inf, math.nan])
def test_bad_tau(tau):
    with pytest.raises(ValueError, match="tau"):
        sparse_gumbel_softmax(torch.zeros(2, 10), 3, tau)


def test_bad_logits():
    with pytest.raises(ValueError, match="NaN"):
        sparse_gumbel_softmax(torch.tensor([[0.0, math.nan]]), 1)
    with pytest.raises(ValueError, match="every logit is -inf"):
        sparse_gumbel_softmax(torch.full((1, 3), -math.inf), 1)
    with pytest.raises(ValueError, match="floating"):
        sparse_gumbel_softmax(torch.zeros(2, 3, dtype=torch.int64), 1)


def test_sparse_to_dense_checks_shapes():
    with pytest.raises(ValueError, match="same shape"):
        sparse_to_dense(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 4), 5)


@pytest.mark.skipif(library() is None, reason="fused kernels not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_c_noise_fill_and_pytorch_noise_give_the_same_result(dtype, monkeypatch):
    logits = torch.randn(3, 5, 301, dtype=dtype)
    seeds = [12345, torch.arange(15).reshape(3, 5) * 7]
    fused = [sparse_gumbel_softmax(logits, 9, 0.5, seed=s) for s in seeds]
    monkeypatch.setattr(_lib, "_LIB", None)
    reference = [sparse_gumbel_softmax(logits, 9, 0.5, seed=s) for s in seeds]
    for (i1, w1), (i2, w2) in zip(fused, reference):
        assert torch.equal(i1, i2) and torch.equal(w1, w2)
