"""SoftEmbedding: ids, dense soft tokens and sparse (indices, weights) agree;
gradients reach the soft-token logits; bad input is rejected."""

from __future__ import annotations

import pytest
import torch

import gumbelkit
from gumbelkit.nn import SoftEmbedding
from gumbelkit.sparse import sparse_to_dense


def test_one_hot_input_equals_the_lookup():
    torch.manual_seed(0)
    emb = SoftEmbedding(11, 4)
    ids = torch.randint(0, 11, (3, 5))
    one_hot = torch.nn.functional.one_hot(ids, 11).float()
    assert torch.equal(emb(ids), torch.nn.functional.embedding(ids, emb.weight))
    assert torch.equal(emb(one_hot), emb(ids))
    ones = torch.ones(3, 5)
    torch.testing.assert_close(emb((ids[..., None], ones[..., None])), emb(ids))


def test_sparse_input_equals_the_dense_weighted_sum():
    emb = SoftEmbedding(50, 6).double()
    idx, w = gumbelkit.sparse_gumbel_softmax(torch.randn(2, 3, 50, dtype=torch.float64), 7,
                                             seed=1)
    dense = sparse_to_dense(idx, w, 50)
    torch.testing.assert_close(emb((idx, w)), dense @ emb.weight, rtol=0, atol=1e-12)


@pytest.mark.parametrize("form", ["dense", "sparse", "sparse hard"])
def test_gradients_reach_the_soft_token_logits_and_the_table(form):
    emb = SoftEmbedding(30, 5)
    logits = torch.randn(4, 30, requires_grad=True)
    if form == "dense":
        out = emb(gumbelkit.gumbel_softmax(logits, 0.5, seed=0))
    else:
        out = emb(gumbelkit.sparse_gumbel_softmax(logits, 6, 0.5, hard=form == "sparse hard",
                                                  seed=0))
    (out * torch.randn(4, 5)).sum().backward()
    assert logits.grad.abs().sum() > 0 and emb.weight.grad.abs().sum() > 0


def test_from_pretrained_copies_and_freezes():
    base = torch.nn.Embedding(8, 3)
    emb = SoftEmbedding.from_pretrained(base)
    ids = torch.tensor([1, 7])
    assert torch.equal(emb(ids), base(ids)) and not emb.weight.requires_grad
    assert SoftEmbedding.from_pretrained(base.weight, freeze=False).weight.requires_grad
    assert "freeze=True" in repr(emb)


@pytest.mark.parametrize("tokens,match", [
    (torch.zeros(2, 9), r"soft tokens must have shape \[..., num_embeddings=10\]"),
    (torch.tensor([0, 10]), r"token ids must lie in \[0, 9\]"),
    (torch.tensor([-1, 3]), r"token ids must lie in \[0, 9\]"),
    (torch.tensor([True]), "integer dtype"),
    ((torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 4)), "same shape"),
    ((torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.int64)), "floating"),
    ((torch.full((2, 3), 12), torch.zeros(2, 3)), r"sparse token indices must lie in \[0, 9\]"),
])
def test_bad_input(tokens, match):
    with pytest.raises(ValueError, match=match):
        SoftEmbedding(10, 4)(tokens)


def test_bad_construction():
    with pytest.raises(ValueError, match="num_embeddings must lie in"):
        SoftEmbedding(0, 4)
    with pytest.raises(ValueError, match=r"weight must have shape"):
        SoftEmbedding(5, 4, weight=torch.zeros(5, 3))


def test_tied_shares_the_table_without_copying():
    base = torch.nn.Embedding(8, 3)
    emb = SoftEmbedding.tied(base)
    assert emb.weight is base.weight and (emb.num_embeddings, emb.embedding_dim) == (8, 3)
    logits = torch.randn(2, 8, requires_grad=True)
    emb(gumbelkit.gumbel_softmax(logits, 0.5, seed=0)).sum().backward()
    assert base.weight.grad is not None and logits.grad.abs().sum() > 0
    with torch.no_grad():
        base.weight.add_(1.0)
    ids = torch.tensor([0, 5])
    assert torch.equal(emb(ids), base(ids))
    assert "freeze=False" in repr(emb)


def test_tied_to_a_frozen_table_sends_gradients_only_to_the_tokens():
    table = torch.nn.Parameter(torch.randn(6, 4), requires_grad=False)
    emb = SoftEmbedding.tied(table)
    logits = torch.randn(3, 6, requires_grad=True)
    emb(gumbelkit.gumbel_softmax(logits, 1.0, hard=True, seed=2)).pow(2).sum().backward()
    assert table.grad is None and logits.grad.abs().sum() > 0
    assert "freeze=True" in repr(emb)


class ScaledEmbedding(torch.nn.Embedding):
    """A lookup times ``embed_scale``, like Hugging Face's scaled word embeddings."""

    def __init__(self, n: int, d: int, embed_scale: float) -> None:
        super().__init__(n, d)
        self.embed_scale = embed_scale

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids) * self.embed_scale


def test_tied_reproduces_a_scaled_embedding():
    base = ScaledEmbedding(9, 4, embed_scale=2.0)
    emb = SoftEmbedding.tied(base)
    ids = torch.tensor([[0, 8], [3, 3]])
    torch.testing.assert_close(emb(ids), base(ids), rtol=0, atol=0)
    torch.testing.assert_close(emb(torch.nn.functional.one_hot(ids, 9).float()), base(ids))
    torch.testing.assert_close(emb((ids[..., None], torch.ones(2, 2, 1))), base(ids))
    assert "embed_scale=2.0" in repr(emb)
    with pytest.raises(ValueError, match="embed_scale must be finite, got inf"):
        SoftEmbedding.tied(ScaledEmbedding(3, 2, embed_scale=float("inf")))


@pytest.mark.parametrize("table,error,match", [
    (torch.randn(4, 3), TypeError, "nn.Embedding or an nn.Parameter, got Tensor"),
    (torch.nn.Parameter(torch.randn(4)), ValueError, r"2-D \[V, D\].*got \(4,\)"),
    (torch.nn.Parameter(torch.randn(0, 3)), ValueError, r"got \(0, 3\)"),
])
def test_tied_rejects_what_is_not_a_table(table, error, match):
    with pytest.raises(error, match=match):
        SoftEmbedding.tied(table)
